"""``mambah export`` and ``mambah run --export`` (streaming hook), exit statuses."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pyarrow.parquet as pq
import pytest
import uproot

from ficino.cli import parse_aliases
from mambah.cli import main
from mambah.errors import ExportError
from sim.core.pipeline import Pass, Pipeline, RunConfig


@dataclass(frozen=True)
class HandBuilt(Pass):
    """A stand-in for generator + detector passes: writes the hand-built tables of the tests."""

    kind: ClassVar[str] = "ficino_hand_built"
    writes: ClassVar[tuple[str, ...]] = ("events", "mc_particles", "mc_vertices", "protoparticles")
    name: str = "hand_built"
    tables: ClassVar[Callable[..., dict[str, Any]] | None] = None  # set by the fixture below

    def build(self):
        make = type(self).tables

        def kernel(ctx) -> None:
            for name, table in make(ctx.batch.batch, ctx.batch.n_events).items():
                ctx.insert(name, table)

        return kernel


@pytest.fixture(autouse=True)
def _hand_built_tables(batch_tables, monkeypatch):
    monkeypatch.setattr(HandBuilt, "tables", staticmethod(batch_tables))


@pytest.fixture(scope="module")
def store_file(tmp_path_factory, make_store):
    path = tmp_path_factory.mktemp("store") / "s.duckdb"
    make_store(str(path), batches=2, n=50).close()
    return path


def test_parse_aliases():
    assert parse_aliases(None) is None
    assert parse_aliases("a, b,c") == ["a", "b", "c"]
    assert parse_aliases("Lb=B,Lc=C") == {"Lb": "B", "Lc": "C"}
    with pytest.raises(ExportError, match="OLD=NEW"):
        parse_aliases("Lb=B,Lc")


def test_export_command(store_file, tmp_path, capsys):
    out = tmp_path / "o.root"
    rc = main(["export", str(store_file), str(out), "--variables", "Lc_M,eventNumber", "--cut", "Lc_M > 0",
               "--tree", "T", "--compression", "ZLIB", "--no-progress"])
    assert rc == 0
    assert "100 rows x 2 columns (root)" in capsys.readouterr().out
    with uproot.open(out) as f:
        assert f["T"].num_entries == 100
    rc = main(["export", str(store_file), str(tmp_path / "o.csv"), "--aliases", "Lc=C", "--variables", "C_M",
               "--all-candidates", "--no-progress"])
    assert rc == 0


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--variables", "Lx_PT"], "unknown variable 'Lx_PT'"),
        (["--aliases", "Lx=B"], "unknown alias"),
        (["--decay", "B+ -> K+ pi0"], "matches nothing"),
        (["--cut", "Lc_M >"], "does not parse"),
        (["--format", "parquet", "--compression", "LZMA"], "o.root' is named as a root file but the format is parquet"),
        # the bad-input corpus
        (["--variables", ""], "--variables '' names no variable; give e.g. 'PT,M'"),  # was a uproot traceback, rc 1
        (["--variables", "PT,MASSS"], "unknown variable 'MASSS'; variables are PX"),
        (["--decay", ""], "empty decay descriptor"),
        (["--decay", "Lambda_c+ -> p+ K- pion+"], "unknown particle 'pion+'"),
        (["--cut", "1; DROP TABLE events"], "does not parse: one condition expected"),
        (["--cut", "Lc_MASS > 2200"], "cannot evaluate cut 'Lc_MASS > 2200'"),
        (["--cut", ""], "empty cut"),
        (["--compression", "BROTLI"], "unknown compression 'BROTLI'; choose LZ4, ZLIB"),
        (["--compression", "ZLIB:99"], "must be between 0 and 22"),
        (["--tree", ""], "bad tree name ''"),
    ],
)
def test_export_command_errors(store_file, tmp_path, capsys, extra, message):
    assert main(["export", str(store_file), str(tmp_path / "o.root"), "--no-progress", *extra]) == 2
    err = capsys.readouterr().err
    assert err.startswith("mambah: error: ") and message in err and err.count("\n") == 1
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("suffix", ["root", "parquet", "csv"])
def test_export_onto_a_read_only_file_system_names_the_output(store_file, suffix, capsys):
    if not Path("/proc").is_dir():
        pytest.skip("no /proc")
    assert main(["export", str(store_file), f"/proc/x.{suffix}", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"mambah: error: cannot create '/proc/x.{suffix}': ") and len(err.splitlines()) == 1, err
    assert ".tmp" not in err, err  # the temporary file beside the output is not what the user named


def test_export_command_output_exists_and_empty_store(store_file, tmp_path, capsys):
    (tmp_path / "o.root").write_text("x")
    assert main(["export", str(store_file), str(tmp_path / "o.root"), "--no-progress"]) == 2
    assert "exists" in capsys.readouterr().err
    empty = tmp_path / "e.duckdb"
    import mambah

    mambah.EventStore.create(empty).close()
    assert main(["export", str(empty), str(tmp_path / "e.root"), "--no-progress"]) == 2
    assert "is empty" in capsys.readouterr().err


def test_runner_on_batch_streams_committed_batches(tmp_path):
    from ficino.hook import Export
    from sim.core.runner import run

    hook = Export(str(tmp_path / "run.parquet"), variables=("Lc_M", "runNumber")).open()
    seen = []

    def on_batch(store, batch):
        hook(store, batch)
        seen.append((batch.batch, hook.writer.rows))

    pipeline = Pipeline((HandBuilt(),), RunConfig(events=300, batch_size=100, seed=2))
    run(pipeline, tmp_path / "run.duckdb", progress=False, on_batch=on_batch)
    assert seen == [(0, 100), (1, 200), (2, 300)]  # appended as each batch committed
    summary = hook.finish(tmp_path / "run.duckdb")
    assert summary.rows == 300
    np.testing.assert_array_equal(pq.read_table(tmp_path / "run.parquet")["runNumber"].to_numpy(), np.repeat([0, 1, 2], 100))


def test_mambah_run_export(tmp_path, monkeypatch, capsys):
    import sim.defaults

    monkeypatch.setattr(sim.defaults, "default_pipeline", lambda **kw: Pipeline((HandBuilt(),), RunConfig()))
    store, out = tmp_path / "r.duckdb", tmp_path / "r.root"
    rc = main(["run", "--events", "200", "--batch-size", "100", "-o", str(store), "--export", str(out),
               "--export-cut", "Lc_M > 0", "--no-progress"])
    assert rc == 0
    assert "200 rows" in capsys.readouterr().out
    with uproot.open(out) as f:
        assert f["DecayTree"].num_entries == 200
    # resume with nothing left to do rewrites the ntuple from the store; a bad cut fails before the run
    assert main(["run", "--events", "200", "--batch-size", "100", "-o", str(store), "--resume", "--export", str(out),
                 "--no-progress"]) == 0
    assert main(["run", "--events", "200", "--batch-size", "100", "-o", str(tmp_path / "x.duckdb"), "--export",
                 str(tmp_path / "x.root"), "--export-cut", "Lc_M >", "--no-progress"]) == 2
    assert "does not parse" in capsys.readouterr().err
    assert not (tmp_path / "x.duckdb").exists() and not (tmp_path / "x.root").exists()
    # an export decay that matches nothing: one line, no ntuple, and it says the complete store is kept
    assert main(["run", "--events", "200", "--batch-size", "100", "-o", str(tmp_path / "y.duckdb"), "--export",
                 str(tmp_path / "y.root"), "--export-decay", "B0 -> K+ pi-", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "matches no candidate" in err, err
    assert err.endswith(f"the store '{tmp_path / 'y.duckdb'}' is complete (export it with 'mambah export {tmp_path / 'y.duckdb'} OUT')")
    assert not (tmp_path / "y.root").exists() and not list(tmp_path.glob(".y.root*"))


# the bad-input and fault corpus, second part: the export's build worker (mambah export --build)

_LIMITED = """
import resource, sys
resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, {limit}))
from mambah.cli import main
from ficino import _worker
rc = main(sys.argv[1:])
print("worker-left", _worker.worker_running(), file=sys.stdout)
sys.exit(rc)
"""


@pytest.mark.parametrize(("suffix", "build", "limit", "message"), [
    # the worker's shared memory is a memfd, which RLIMIT_FSIZE counts: was an OSError traceback, rc 1
    ("root", "process", 20_000, "cannot grow the export's shared memory to "),
    ("parquet", "process", 20_000, "cannot grow the export's shared memory to "),
    ("csv", "serial", 20_000, "cannot write '{out}': [Errno 27]"),  # was named the hidden temporary file
])
def test_export_past_the_file_size_limit_is_one_line_and_leaves_nothing(store_file, tmp_path, suffix, build, limit,
                                                                           message):
    import subprocess
    import sys

    from ficino import _worker

    if _worker.available() is not None and build == "process":
        pytest.skip("no build worker on this platform")
    out = tmp_path / f"o.{suffix}"
    p = subprocess.run([sys.executable, "-c", _LIMITED.format(limit=limit), "export", str(store_file), str(out),
                        "--build", build, "--no-progress"], capture_output=True, text=True, timeout=120)
    err = p.stderr.strip()
    assert p.returncode == 2, err
    assert err.startswith("mambah: error: ") and len(err.splitlines()) == 1, err
    assert message.format(out=out) in err, err
    assert "worker-left False" in p.stdout
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("suffix", ["root", "parquet", "csv"])
def test_export_of_no_candidate_in_the_worker_warns_and_writes_an_empty_ntuple(store_file, tmp_path, suffix, caplog):
    from ficino import _worker

    if _worker.available() is not None:
        pytest.skip("no build worker on this platform")
    out = tmp_path / f"o.{suffix}"
    assert main(["export", str(store_file), str(out), "--build", "process", "--cut", "Lc_M < 0", "--no-progress"]) == 0
    assert "no candidate passed the selection" in caplog.text
    assert [p.name for p in tmp_path.iterdir()] == [out.name]
    assert not _worker.worker_running()  # the command stops its worker
