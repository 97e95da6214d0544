"""The mambah CLI: default job, info/query, and one-line errors with exit status 2 on bad input."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest

import mambah
import sim
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
    names = ["generator", "occupancy", "acceptance", "efficiency", "resolution", "ghosts", "calorimeter", "pid"]
    pipeline = out.split("pipeline:", 1)[1].splitlines()
    assert pipeline[0].strip().startswith("8 passes") and [line.split()[0] for line in pipeline[1:]] == names
    assert "decay = 'Lambda_b0 -> (Lambda_c+ -> p+ K- pi+) mu- anti-nu_mu'" in pipeline[1]
    assert main(["info", str(small_store), "--pipeline"]) == 0
    toml = capsys.readouterr().out
    assert toml.startswith("[run]") and toml.count("[[passes]]") == 8
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


#: the shipped selection model (a --preselect MODEL that exists)
SELECTION = str(Path(sim.__file__).parent / "models" / "selection.keras")

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
    # the bad-input corpus (issue: a request the program cannot honour is an error that names it)
    (["--decay", "Lambda_b0 -> K+ pi-"], r"baryon number not conserved in Lambda_b0 -> K\+ pi-.*has baryon number \+1, daughters sum to \+0"),
    (["--decay", "p+ -> e+ pi0"], r"baryon number not conserved in p\+ -> e\+ pi0"),
    (["--decay", "B+ -> K+"], r"one-body decay B\+ -> K\+ .*cannot conserve energy: B\+ has 5279\.\d MeV, its only daughter 493\.7 MeV"),
    (["--decay", ""], "^mambah: error: empty decay descriptor$"),
    (["--decay", "[B0 -> K+ pi-]xx"], r"square brackets only wrap the whole descriptor, as '\[\.\.\. -> \.\.\.\]cc'"),
    (["--decay", "[B0 -> K+ pi-"], "malformed decay descriptor '\\[B0 -> K\\+ pi-': square brackets"),
    (["--decay", "B0 -> K+ pion-"], "unknown particle 'pion-'.*did you mean 'pi-'"),
    (["--decay", "B+ -> J/psi -> mu+ mu-) K+"], "unexpected '->' \\(put a decaying daughter in parentheses\\)"),
    (["--decay-table", "DECAY_FOO.DEC"], "decay table '.*DECAY_FOO.DEC' is neither a shipped table \\(DECAY_LHCB.DEC, DECAY_BELLE2.DEC\\)"),
    (["--preselect", SELECTION, "--threshold", "nan"], "threshold=nan must be a finite score"),
    (["--cc-fraction", "nan"], r"cc_fraction must be a number in \[0, 1\], got nan"),
    (["--seed", "1.5"], "--seed: expected a non-negative integer, got '1.5'"),
    (["--events", "100000000000000000000000"], "at most 2,147,483,647 batches"),
    (["--decay", "B0 -> K+ pi-", "--dec-file", "x.dec"], "give only one of --decay and --dec-file"),
    (["--decay", "B0 -> K+ pi- SVS"], "unknown particle 'SVS'.*a decay model such as SVS goes in a .dec file \\(mambah run --dec-file"),
    (["--dec-file", "/"], "DecFile '/' is a directory, not a .dec file"),
    (["--config", "/"], "config file '/' is a directory; give a .toml or .yaml file"),
    # the corpus's second part (surfaces new on 1 Dec)
    (["--pythia", ""], "unknown Pythia preset ''; presets: minbias, bbbar, ccbar"),  # was the default job, rc 0
    (["--pythia", "bbbarr"], "unknown Pythia preset 'bbbarr'; presets: minbias, bbbar, ccbar"),
    (["--redecay", "0", "--pythia", "bbbar"], "--redecay: expected a positive integer, got '0'"),
    (["--redecay", "2.5", "--pythia", "bbbar"], "--redecay: expected a positive integer, got '2.5'"),
    (["--redecay", "3"], "--redecay needs Pythia events: add --pythia PRESET"),
    (["--drop-skipped"], "--drop-skipped need --preselect MODEL"),
    (["--preselect", SELECTION, "--retention", "2"], r"retention=2.0 must be in \(0, 1\]"),
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

        assert len(err.splitlines()) == 1 and re.search(match, err), (args, err)
        assert before == {p: _digest(p) for p in (small_store, notdb)}
    assert not (tmp_path / "x.duckdb").exists()


def test_run_outputs_that_cannot_be_honoured(tmp_path, capsys):
    """--save-config into a missing directory (a traceback, exit 1, before) and -o naming an ntuple format."""
    cases = [
        (["run", "--save-config", str(tmp_path / "nodir" / "c.toml")], f"directory '{tmp_path / 'nodir'}' of config file"),
        (["run", "--save-config", str(tmp_path)], f"cannot write config file '{tmp_path}': Is a directory"),
        (["run", "-o", str(tmp_path / "y.root"), "--events", "100"],
         f"-o {tmp_path / 'y.root'} names an ntuple; mambah run writes a DuckDB store: give -o {tmp_path / 'y.duckdb'} and --export"),
        (["run", "-o", str(tmp_path / "y.parquet"), "--events", "100"], "names an ntuple"),
    ]
    for args, match in cases:
        assert main([*args, "--no-progress"]) == 2, args
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and match in err, (args, err)
    assert list(tmp_path.iterdir()) == []


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


#: DecFiles a user could write: (text, extra arguments, what the one line must say)
BAD_DECS = [
    ("Decay B0\n1.0 K+ pi- PHSP;\nEnd\n", [], r"malformed decay '.*bad.dec': Unexpected token"),
    ("Decay B0\n-0.5 K+ pi- PHSP;\n1.5 pi+ pi- PHSP;\nEnddecay\nEnd\n", [],
     r"branching fraction -0.5 of B0 -> K\+ pi- in '.*bad.dec' must be a finite number >= 0"),
    ("Decay B0\n1.0 K+ pi- FOOBARMODEL;\nEnddecay\nEnd\n", [],
     r"model FOOBARMODEL of B0 -> K\+ pi- \(.*bad.dec\) is not supported \(not an EvtGen model\); supported: .*PHSP.*"
     r"or use --unsupported-models phase-space\|skip$"),
    ("Decay B0\n1.0 K+ pi- PHSPP;\nEnddecay\nEnd\n", [], r"model PHSPP .* \(not an EvtGen model; did you mean 'PHSP'"),
    ("Decay B0\n1.0 K+ pi- BTOXSGAMMA 2;\nEnddecay\nEnd\n", [], r"model BTOXSGAMMA of B0 -> K\+ pi- .* is not supported; supported"),
    ("Decay Lambda_b0\n1.0 K+ pi- PHSP;\nEnddecay\nEnd\n", [], r"baryon number not conserved in Lambda_b0 -> K\+ pi-"),
    ("Decay B0\n1.0 K+ pi+ PHSP;\nEnddecay\nEnd\n", [], r"charge not conserved in B0 -> K\+ pi\+"),
    ("Decay D0\n1.0 p+ anti-p- pi+ pi- PHSP;\nEnddecay\nEnd\n", [], r"kinematically forbidden: D0 -> p\+ anti-p- pi\+ pi-"),
    ("Decay B0\n1.0 Kplus pi- PHSP;\nEnddecay\nEnd\n", [], r"unknown particle 'Kplus'; did you mean 'K\+'"),
    ("Decay B0\n0.0 K+ pi- PHSP;\nEnddecay\nEnd\n", [], r"no mode of B0 \(.*bad.dec\) is left to generate"),
    ("", [], r"DecFile '.*bad.dec' has no Decay block"),
    ("Decay B0\n1.0 K+ pi- PHSP;\nEnddecay\nEnd\n", ["--mother", "B+"], r"has no Decay block for 'B\+'; it has B0"),
]


@pytest.mark.parametrize(("text", "extra", "match"), BAD_DECS)
def test_bad_dec_file_exit_2_one_line(tmp_path, text, extra, match, capsys):
    dec = tmp_path / "bad.dec"
    dec.write_text(text)
    out = tmp_path / "o.duckdb"
    code = main(["run", "--dec-file", str(dec), *extra, "-o", str(out), "--events", "100", "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert re.search(match, err), err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.dec"]  # no store, no temporary file


def test_unknown_models_as_phase_space_warn_once_each(tmp_path, capsys, caplog):
    """--unsupported-models phase-space: one warning line per substituted model, however often it is written."""
    dec = tmp_path / "two.dec"
    dec.write_text("Decay B0\n0.4 K+ pi- FOOBARMODEL;\n0.3 pi+ pi- FOOBARMODEL;\n0.3 K+ K- BTOXSGAMMA 2;\nEnddecay\nEnd\n")
    cfg = tmp_path / "gen.toml"
    cfg.write_text('[run]\nevents = 200\nbatch_size = 100\nseed = 1\n[[passes]]\nkind = "generator"\n')
    out = tmp_path / "o.duckdb"
    with caplog.at_level("WARNING"):
        code = main(["run", "--config", str(cfg), "--dec-file", str(dec), "--unsupported-models", "phase-space",
                     "-o", str(out), "--no-progress"])
    assert code == 0, capsys.readouterr().err
    warned = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warned) == 2, warned
    assert sorted(w.split()[1] for w in warned) == ["BTOXSGAMMA", "FOOBARMODEL"]
    assert all("generated as phase space" in w and "--unsupported-models phase-space" in w for w in warned)
    with mambah.EventStore.open(out, read_only=True) as s:
        assert s.count("events") == 200
