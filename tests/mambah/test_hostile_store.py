"""Corrupt, truncated, locked and inconsistent stores: one line and exit 2, never a traceback or a silent success."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pytest

from mambah import BatchRecord, EventStore
from mambah.check import check_store, duckdb_error_line
from mambah.cli import main
from mambah.errors import StoreError, StoreExistsError


def _tables(n: int, batch: int) -> dict[str, pa.Table]:
    ev = np.arange(n, dtype=np.int32)
    rng = np.random.default_rng(batch)
    return {
        "events": pa.table({
            "batch": np.full(n, batch, np.int32), "event": ev,
            "pv_x": rng.normal(size=n), "pv_y": rng.normal(size=n), "pv_z": rng.normal(size=n), "pv_t": rng.normal(size=n),
        }),
        "mc_particles": pa.table({
            "batch": np.full(n, batch, np.int32), "event": ev, "index": np.zeros(n, np.int32),
            "pid": np.full(n, 521, np.int32), "px": rng.normal(size=n), "py": rng.normal(size=n),
            "pz": rng.normal(size=n), "e": rng.normal(size=n), "mass": np.full(n, 5279.0),
            "charge": np.ones(n, np.int16), "mother": np.full(n, -1, np.int32),
            "first_daughter": np.full(n, -1, np.int32), "last_daughter": np.full(n, -1, np.int32),
            "prod_vertex": np.zeros(n, np.int32), "decay_vertex": np.full(n, -1, np.int32),
            "is_signal": np.ones(n, bool),
        }),
    }


def make_store(path: Path, n_batches: int = 3, n: int = 20_000) -> Path:
    run = json.dumps({"events": n_batches * n, "batch_size": n, "seed": 1})
    with EventStore.create(path, metadata={"run": run, "pipeline": "[run]\n"}) as s:
        for b in range(n_batches):
            s.write_batch(BatchRecord(b, n, 100 + b), _tables(n, b))
    return path


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    path = make_store(tmp_path_factory.mktemp("pristine") / "s.duckdb")
    return path.read_bytes()


@pytest.fixture
def store(tmp_path: Path, pristine: bytes) -> Path:
    path = tmp_path / "s.duckdb"
    path.write_bytes(pristine)
    return path


def test_check_passes_a_sound_store(store: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", str(store)]) == 0
    out = capsys.readouterr().out
    assert "ok" in out and "3 batch(es)" in out


def test_check_refuses_what_is_not_a_store(tmp_path: Path, capsys: pytest.CaptureFixture[str], one_line_error: Callable[[], str]) -> None:
    assert main(["check", str(tmp_path / "missing.duckdb")]) == 2
    assert "does not exist" in one_line_error()
    junk = tmp_path / "junk.duckdb"
    junk.write_bytes(b"\x89PNG\r\n" * 1000)
    assert main(["check", str(junk)]) == 2
    err = capsys.readouterr().err
    assert "junk.duckdb" in err and "Traceback" not in err and "in use" not in err


@pytest.fixture(scope="module")
def pristine_big(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    path = make_store(tmp_path_factory.mktemp("pristine_big") / "s.duckdb", n=60_000)  # > 5 MB (pv_x/y/z are rounded)
    return path.read_bytes()


@pytest.mark.parametrize("cut", ["4MB", "half"])
def test_truncated_store(tmp_path: Path, pristine_big: bytes, cut: str, capsys: pytest.CaptureFixture[str], one_line_error: Callable[[], str]) -> None:
    store = tmp_path / "s.duckdb"
    store.write_bytes(pristine_big)
    data = store.read_bytes()
    assert len(data) > 5 * 2**20
    store.write_bytes(data[: len(data) - 4 * 2**20] if cut == "4MB" else data[: len(data) // 2])
    assert main(["check", str(store)]) == 2
    err = capsys.readouterr().err
    assert "s.duckdb" in err and "Traceback" not in err
    # the header's block count against the file size: refused on open, even where DuckDB would answer
    # from its catalogue (info, count(*) gave exit 0 before), and one line from check (was one per table, twice)
    truncated = f"store '{store}' is damaged (run 'mambah check {store}'): the file is truncated, {len(store.read_bytes()):,} bytes"
    assert err.strip().splitlines() == [f"mambah: error: {truncated} where its header records {len(data):,}"], err
    for argv in (["info", str(store)], ["query", str(store), "SELECT count(*) FROM events"],
                 ["query", str(store), "SELECT sum(pv_x) FROM events"], ["export", str(store), str(tmp_path / "x.root")]):
        assert main(argv) == 2, argv
        err = one_line_error()
        assert truncated in err, err
    assert sorted(q.name for q in tmp_path.iterdir()) == ["s.duckdb"]


def test_output_on_a_read_only_file_system_names_the_output(capsys: pytest.CaptureFixture[str]) -> None:
    """/proc takes no new files (as root too): the line names the output, not the temporary file beside it."""
    if not Path("/proc").is_dir():
        pytest.skip("no /proc")
    with pytest.raises(StoreError, match=r"(cannot write output|of output) '/proc/x.duckdb'") as info:
        EventStore.create("/proc/x.duckdb")
    assert ".tmp-" not in str(info.value) and len(str(info.value).splitlines()) == 1


def test_flipped_byte_in_a_data_block_is_found(store: Path, capsys: pytest.CaptureFixture[str]) -> None:
    b = bytearray(store.read_bytes())
    b[len(b) // 2] ^= 0xFF
    store.write_bytes(bytes(b))
    assert main(["check", str(store)]) == 2
    err = capsys.readouterr().err
    assert "damaged" in err and "checksum" in err and "Traceback" not in err
    assert main(["query", str(store), "SELECT sum(pv_x), sum(pv_y), sum(pv_z), sum(pv_t) FROM events"]) in (0, 2)
    assert "Traceback" not in capsys.readouterr().err


def test_corrupt_header_is_not_called_in_use(store: Path, capsys: pytest.CaptureFixture[str]) -> None:
    b = bytearray(store.read_bytes())
    for i in (100, 5000, 9000):
        b[i] ^= 0xFF
    store.write_bytes(bytes(b))
    for argv in (["info", str(store)], ["check", str(store)], ["query", str(store), "SELECT 1"]):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert "in use" not in err and "Traceback" not in err and "s.duckdb" in err


@pytest.fixture
def holder(store: Path) -> Iterator[subprocess.Popen[str]]:
    """Another process holding the store open for writing (its DuckDB file lock)."""
    code = f"import duckdb, sys, time\nc = duckdb.connect({str(store)!r})\nprint('ok', flush=True)\nsys.stdin.read()\n"
    proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ok"
    yield proc
    proc.communicate("")


def test_real_lock_conflict_is_called_in_use(store: Path, holder: subprocess.Popen[str], capsys: pytest.CaptureFixture[str], one_line_error: Callable[[], str]) -> None:
    assert main(["info", str(store)]) == 2
    assert "in use by another process" in one_line_error()


def test_overwrite_takes_the_lock_first(store: Path, holder: subprocess.Popen[str]) -> None:
    before = hashlib.sha256(store.read_bytes()).hexdigest()
    with pytest.raises(StoreError, match="in use by another process"):
        EventStore.create(store, overwrite=True)
    assert hashlib.sha256(store.read_bytes()).hexdigest() == before
    assert sorted(p.name for p in store.parent.iterdir()) == ["s.duckdb"]


def test_overwrite_replaces_atomically(store: Path) -> None:
    with EventStore.create(store, overwrite=True, metadata={"run": "x"}) as s:
        assert s.batches() == [] and s.get_metadata("run") == "x"
    assert sorted(p.name for p in store.parent.iterdir()) == ["s.duckdb"]
    with pytest.raises(StoreExistsError):
        EventStore.create(store)


def test_creation_is_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import mambah.store as ms

    path = tmp_path / "new.duckdb"
    real = ms.create_ddl

    def failing(**kw: bool) -> list[str]:
        return [*real(**kw)[:2], "CREATE TABLE broken (x NOSUCHTYPE)"]

    monkeypatch.setattr(ms, "create_ddl", failing)
    with pytest.raises(StoreError):
        EventStore.create(path)
    assert list(tmp_path.iterdir()) == []  # neither the store nor a temporary file


def test_batches_row_missing_but_rows_present(store: Path, capsys: pytest.CaptureFixture[str]) -> None:
    con = duckdb.connect(str(store))
    con.execute("DELETE FROM batches WHERE batch = 1")
    con.close()
    report = check_store(store)
    assert report.stray_batches == [1] and not report.problems
    assert main(["check", str(store)]) == 2
    assert "not recorded as complete" in capsys.readouterr().err
    # re-writing batch 1 removes its stray rows in the same transaction: no duplicates
    with EventStore.open(store) as s:
        s.write_batch(BatchRecord(1, 20_000, 101), _tables(20_000, 1))
        assert s.count("events") == 60_000 and s.count("mc_particles") == 60_000
    assert check_store(store).ok


def test_event_counts_that_do_not_match_batches(store: Path, capsys: pytest.CaptureFixture[str]) -> None:
    con = duckdb.connect(str(store))
    con.execute("DELETE FROM events WHERE batch = 2 AND event < 10")
    con.execute("UPDATE batches SET n_events = 7 WHERE batch = 0")
    con.close()
    report = check_store(store)
    assert len(report.problems) == 3, report.problems  # batch 0 twice (rows and run record), batch 2 once
    assert main(["check", str(store)]) == 2
    err = capsys.readouterr().err
    assert "batch 2 is recorded with 20000 events but table 'events' holds 19990" in err


def test_schema_version_and_missing_tables(store: Path, capsys: pytest.CaptureFixture[str]) -> None:
    con = duckdb.connect(str(store))
    con.execute("UPDATE metadata SET value = '99' WHERE key = 'schema_version'")
    con.close()
    assert main(["check", str(store)]) == 2
    assert "schema version 99" in capsys.readouterr().err
    other = store.parent / "plain.duckdb"
    duckdb.connect(str(other)).execute("CREATE TABLE x (a INT)").close()
    assert main(["check", str(other)]) == 2
    assert "not a complete Mambah store" in capsys.readouterr().err


def test_error_lines() -> None:
    lock = duckdb.IOException('IO Error: Could not set lock on file "/x.duckdb": Conflicting lock is held in python (PID 1)')
    assert "in use by another process" in duckdb_error_line(lock, "/x.duckdb")
    corrupt = duckdb.Error("Corrupt database file: computed checksum 1 does not match stored checksum 2 in block at location 0")
    line = duckdb_error_line(corrupt, "/x.duckdb")
    assert "damaged" in line and "in use" not in line
    full = duckdb.IOException("IO Error: Could not write file \"/x.duckdb\": No space left on device")
    assert duckdb_error_line(full, "/x.duckdb").startswith("no space left on device writing '/x.duckdb'")


@pytest.mark.parametrize("what", ["empty", "text", "plain-dir", "missing"])
@pytest.mark.parametrize("command", ["info", "query", "check", "export", "run-resume"])
def test_what_is_not_a_store_is_one_line_for_every_command(tmp_path: Path, what: str, command: str,
                                                           capsys: pytest.CaptureFixture[str], one_line_error: Callable[[], str]) -> None:
    path = tmp_path / "s.duckdb"
    if what == "empty":
        path.write_bytes(b"")
    elif what == "text":
        path.write_text("hello\n")
    elif what == "plain-dir":
        path.mkdir()
    before = sorted(p.name for p in tmp_path.iterdir())
    argv = {"info": ["info", str(path)], "query": ["query", str(path), "SELECT 1"], "check": ["check", str(path)],
            "export": ["export", str(path), str(tmp_path / "x.root"), "--no-progress"],
            "run-resume": ["run", "-o", str(path), "--resume", "--events", "100", "--no-progress"]}[command]
    if what == "missing" and command == "run-resume":
        return  # --resume of nothing starts the run (documented: sim.core.runner.open_output, mambah run --help)
    assert main(argv) == 2
    err = one_line_error()
    assert str(path) in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == before
