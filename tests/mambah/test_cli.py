"""The mambah CLI: default job, info/query, and one-line errors with exit status 2 on bad input."""

from __future__ import annotations

import hashlib

import pytest

import mambah
from mambah.cli import main
from mambah.schema import SCHEMA_VERSION


def _digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def small_store(tmp_path_factory):
    path = tmp_path_factory.mktemp("cli") / "s.duckdb"
    assert main(["run", "--events", "600", "--batch-size", "300", "--seed", "3", "-o", str(path), "--no-progress"]) == 0
    return path


def test_run_info_query(small_store, capsys, tmp_path):
    with mambah.EventStore.open(small_store, read_only=True) as s:
        assert s.batches() == [0, 1] and s.count("events") == 600
    capsys.readouterr()
    assert main(["info", str(small_store)]) == 0
    out = capsys.readouterr().out
    assert f"schema version: {SCHEMA_VERSION}" in out and "seed=3" in out and "mc_particles" in out
    # one line per pass, not the pipeline TOML (issue #12: 114 lines, 100 of them TOML)
    assert "[[passes]]" not in out and len(out.splitlines()) < 30
    names = ["generator", "occupancy", "acceptance", "efficiency", "resolution", "calorimeter", "pid"]
    pipeline = out.split("pipeline:", 1)[1].splitlines()
    assert pipeline[0].strip().startswith("7 passes") and [line.split()[0] for line in pipeline[1:]] == names
    assert "decay = 'Lambda_b0 -> (Lambda_c+ -> p+ K- pi+) mu- anti-nu_mu'" in pipeline[1]
    assert main(["info", str(small_store), "--pipeline"]) == 0
    toml = capsys.readouterr().out
    assert toml.startswith("[run]") and toml.count("[[passes]]") == 7
    import sim

    assert [p.name for p in sim.Pipeline.from_toml(toml).passes] == names  # usable as a config again
    assert main(["query", str(small_store), "SELECT pid, count(*) AS n FROM mc_particles GROUP BY pid ORDER BY pid"]) == 0
    assert "5122" in capsys.readouterr().out
    csv = tmp_path / "q.csv"
    assert main(["query", str(small_store), "SELECT * FROM events", "--format", "csv", "-o", str(csv)]) == 0
    assert len(csv.read_text().splitlines()) == 601
    pq = tmp_path / "q.parquet"
    assert main(["query", str(small_store), "SELECT * FROM events", "--format", "parquet", "-o", str(pq)]) == 0
    import pyarrow.parquet

    assert pyarrow.parquet.read_table(pq).num_rows == 600


def test_save_config_and_run_from_it(tmp_path, capsys):
    cfg = tmp_path / "job.toml"
    assert main(["run", "--decay", "B0 -> (J/psi -> mu+ mu-) (K_S0 -> pi+ pi-)", "--events", "100", "--save-config", str(cfg)]) == 0
    assert "J/psi" in cfg.read_text()
    out = tmp_path / "o.duckdb"
    assert main(["run", "--config", str(cfg), "-o", str(out), "--no-progress"]) == 0
    with mambah.EventStore.open(out, read_only=True) as s:
        assert s.count("events") == 100
        assert s.query_df("SELECT count(*) AS n FROM mc_particles WHERE pid = 443").n[0] == 100


BAD_RUNS = [
    (["--decay", "B+ -> Kplus pi+ pi-"], "unknown particle 'Kplus'.*did you mean 'K\\+'"),
    (["--decay", "D0 -> p+ anti-p- pi+ pi-"], "kinematically forbidden"),
    (["--decay", "B+ -> K+ pi-"], "charge not conserved"),
    (["--decay", "B+ -> (J/psi -> mu+ mu- K+"], "malformed decay descriptor"),
    (["--events", "0"], "positive integer"),
    (["--batch-size", "-3"], "positive integer"),
    (["--events", "ten"], "positive integer"),
    (["--spectrum", "q"], "invalid choice: 'q'.*'mambah run --help' lists the options"),
    (["--bogus"], "unrecognized arguments: --bogus.*'mambah run --help'"),
]


@pytest.mark.parametrize(("args", "match"), BAD_RUNS)
def test_bad_run_input_exit_2_one_line(small_store, args, match, capsys):
    before = _digest(small_store)
    code = None
    try:
        code = main(["run", "-o", str(small_store), "--overwrite", "--no-progress", *args])
    except SystemExit as exc:  # argparse errors
        code = exc.code
    err = capsys.readouterr().err.strip()
    assert code == 2
    import re

    assert re.search(match, err), err
    assert len(err.splitlines()) == 1, err  # argparse's usage block is not printed
    assert "Traceback" not in err
    assert _digest(small_store) == before  # the existing store is untouched


def test_bad_files(tmp_path, small_store, capsys):
    cases = []
    dec = tmp_path / "bad.dec"
    dec.write_text("Decay B0\n1.0 K+ pi- PHSP\nEnddecay\nEnd\n")
    cases.append((["run", "--dec-file", str(dec), "-o", str(tmp_path / "x.duckdb")], "malformed decay"))
    cfg = tmp_path / "bad.toml"
    cfg.write_text('[[passes]]\nkind = "generator"\ncolour = "blue"\n')
    cases.append((["run", "--config", str(cfg), "-o", str(tmp_path / "x.duckdb")], "unknown key.*'colour'"))
    cases.append((["run", "-o", str(small_store)], "exists; pass --overwrite"))
    notdb = tmp_path / "notdb.duckdb"
    notdb.write_bytes(b"\x00garbage" * 1000)
    cases.append((["info", str(notdb)], "not a readable DuckDB store"))
    cases.append((["run", "-o", str(notdb), "--resume"], "not a readable DuckDB store"))
    cases.append((["query", str(small_store), "SELEKT 1"], "query failed"))
    cases.append((["run", "-o", str(tmp_path / "missing" / "dir" / "x.duckdb")], "does not exist"))
    for args, match in cases:
        before = {p: _digest(p) for p in (small_store, notdb)}
        assert main(args) == 2, args
        err = capsys.readouterr().err.strip()
        import re

        assert len(err.splitlines()) == 1 and re.search(match, err), (args, err)
        assert before == {p: _digest(p) for p in (small_store, notdb)}
    assert not (tmp_path / "x.duckdb").exists()


def test_other_schema_version_refused(tmp_path, capsys):
    import duckdb

    path = tmp_path / "old.duckdb"
    mambah.EventStore.create(path).close()
    con = duckdb.connect(str(path))
    con.execute("UPDATE metadata SET value = '0' WHERE key = 'schema_version'")
    con.close()
    assert main(["info", str(path)]) == 2
    assert "schema version 0" in capsys.readouterr().err


def test_only_the_named_command_is_registered():
    """``mambah run`` builds only run's parser (with ficino's --export options), not the trainers (#19 start-up)."""
    import subprocess
    import sys

    code = (
        "import sys; from mambah.cli import build_parser; p = build_parser('run'); "
        "sub = next(a for a in p._actions if a.dest == 'command'); "
        "print(sorted(sub.choices), '--export' in sub.choices['run'].format_help(), "
        "'sim.training.classifier' in sys.modules, 'sim.validation' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["['check',", "'info',", "'merge',", "'query',", "'run']", "True", "False", "False"], out
    from mambah.cli import build_parser

    for command in (None, "nope"):  # no command or an unknown one: every command, for the help and the error
        sub = next(a for a in build_parser(command)._actions if a.dest == "command")
        assert {"run", "train", "validate", "export", "info"} <= set(sub.choices)
