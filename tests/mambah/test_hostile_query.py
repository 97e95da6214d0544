"""`mambah query` on hostile SQL: nothing outside the store is written, results are bounded, files atomic."""

from __future__ import annotations

import hashlib
import resource
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from mambah import BatchRecord, EventStore
from mambah.cli import main


def _events(n: int, batch: int) -> dict[str, pa.Table]:
    ev = np.arange(n, dtype=np.int32)
    return {"events": pa.table({
        "batch": np.full(n, batch, np.int32), "event": ev,
        "pv_x": np.zeros(n), "pv_y": np.zeros(n), "pv_z": np.linspace(-1, 1, n), "pv_t": np.zeros(n),
    })}


def make_store(path: Path, n_batches: int = 3, n: int = 500) -> Path:
    with EventStore.create(path) as s:
        for b in range(n_batches):
            s.write_batch(BatchRecord(b, n, 100 + b), _events(n, b))
    return path


@pytest.fixture
def store(tmp_path: Path) -> Path:
    return make_store(tmp_path / "s.duckdb")


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


WRITES = [
    "COPY (SELECT 1) TO '{tmp}/x.csv'",
    "COPY events TO '{tmp}/other.duckdb'",
    "ATTACH '{tmp}/new.duckdb'",
    "ATTACH '{tmp}/other.duckdb' AS other",
    "INSTALL httpfs",
    "LOAD httpfs",
    "SET threads = 1",
    "SET enable_external_access = true",
    "RESET memory_limit",
    "PRAGMA enable_profiling",
    "EXPORT DATABASE '{tmp}/exported'",
    "CREATE TEMP TABLE t AS SELECT 1",
    "CREATE TABLE t AS SELECT 1",
    "INSERT INTO events SELECT * FROM events",
    "DELETE FROM events",
    "UPDATE events SET pv_x = 1",
    "DROP TABLE events",
    "CHECKPOINT",
    "EXPLAIN ANALYZE COPY (SELECT 1) TO '{tmp}/x.csv'",
    "SELECT 1; COPY (SELECT 1) TO '{tmp}/x.csv'",
    "USE other",
]


@pytest.mark.parametrize("sql", WRITES)
def test_statements_that_write_are_refused(store: Path, tmp_path: Path, sql: str, capsys: pytest.CaptureFixture[str], one_line_error: Callable[[], str]) -> None:
    other = make_store(tmp_path / "other.duckdb", n_batches=1)
    before = {p: _digest(p) for p in (store, other)}
    listing = sorted(tmp_path.iterdir())
    assert main(["query", str(store), sql.format(tmp=tmp_path)]) == 2
    err = one_line_error()
    assert "read-only" in err or "one SQL statement" in err, err
    assert {p: _digest(p) for p in (store, other)} == before
    assert sorted(tmp_path.iterdir()) == listing  # no file created


def test_attach_then_delete_in_another_store_is_refused(store: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], one_line_error: Callable[[], str]) -> None:
    other = make_store(tmp_path / "other.duckdb", n_batches=1)
    before = _digest(other)
    sql = f"ATTACH '{other}' AS o; DELETE FROM o.events"
    assert main(["query", str(store), sql]) == 2
    one_line_error()
    assert _digest(other) == before


def test_reading_files_and_describing_stays_allowed(store: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    csv = tmp_path / "in.csv"
    csv.write_text("a,b\n1,2\n3,4\n")
    assert main(["query", str(store), f"SELECT sum(a + b) AS s FROM read_csv('{csv}')"]) == 0
    assert "10" in capsys.readouterr().out
    for sql in ("DESCRIBE events", "SHOW TABLES", "PRAGMA table_info('events')", "EXPLAIN SELECT * FROM events",
                "SUMMARIZE events", "FROM events LIMIT 2", "WITH x AS (SELECT 1 AS a) SELECT * FROM x"):
        assert main(["query", str(store), sql]) == 0, sql
    capsys.readouterr()


def test_huge_result_is_streamed_not_materialised(store: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    t0 = time.perf_counter()
    assert main(["query", str(store), "SELECT * FROM range(1500000000)"]) == 0
    dt = time.perf_counter() - t0
    out = capsys.readouterr().out
    assert dt < 10.0, f"{dt:.1f} s to print 50 rows"
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0) / 1024
    assert grown_mb < 300, f"memory grew by {grown_mb:.0f} MB"
    assert len([ln for ln in out.splitlines() if ln.strip().isdigit()]) == 50
    assert "more rows" in out


def test_row_count_message_when_all_rows_fit(store: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["query", str(store), "SELECT event FROM events WHERE batch = 0 ORDER BY event", "--max-rows", "10"]) == 0
    out = capsys.readouterr().out
    assert "more rows" in out
    assert main(["query", str(store), "SELECT count(*) AS n FROM events"]) == 0
    out = capsys.readouterr().out
    assert "1500" in out and "more rows" not in out


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_output_that_is_a_directory_or_in_a_missing_directory(store: Path, tmp_path: Path, fmt: str, capsys: pytest.CaptureFixture[str], one_line_error: Callable[[], str]) -> None:
    d = tmp_path / "adir"
    d.mkdir()
    assert main(["query", str(store), "SELECT * FROM events", "--format", fmt, "-o", str(d)]) == 2
    assert "is a directory" in one_line_error()
    missing = tmp_path / "nope" / f"q.{fmt}"
    assert main(["query", str(store), "SELECT * FROM events", "--format", fmt, "-o", str(missing)]) == 2
    assert "does not exist" in one_line_error()
    assert not missing.parent.exists()
    if Path("/proc").is_dir():  # a file system that takes no new file (as root too): the line names the output
        assert main(["query", str(store), "SELECT * FROM events", "--format", fmt, "-o", f"/proc/q.{fmt}"]) == 2
        err = one_line_error()
        assert f"cannot write '/proc/q.{fmt}'" in err and ".tmp-" not in err, err


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_failing_query_leaves_no_partial_file(store: Path, tmp_path: Path, fmt: str, capsys: pytest.CaptureFixture[str], one_line_error: Callable[[], str]) -> None:
    out = tmp_path / f"q.{fmt}"
    # the error comes after ~2e5 rows were streamed (several record batches written)
    sql = "SELECT CASE WHEN range < 200000 THEN range ELSE error('boom at row ' || range) END AS x FROM range(400000)"
    assert main(["query", str(store), sql, "--format", fmt, "-o", str(out)]) == 2
    assert "boom" in one_line_error()
    assert list(tmp_path.iterdir()) == [tmp_path / "s.duckdb"]
    # an existing file is refused without --overwrite, and left as it was by a failing query with it
    out.write_text("old")
    assert main(["query", str(store), "SELECT 1", "--format", fmt, "-o", str(out)]) == 2
    assert f"output '{out}' exists; pass --overwrite to replace it" in one_line_error()
    assert main(["query", str(store), sql, "--format", fmt, "-o", str(out), "--overwrite"]) == 2
    assert "boom" in one_line_error()
    assert out.read_text() == "old"
    assert main(["query", str(store), "SELECT 1 AS x", "--format", fmt, "-o", str(out), "--overwrite"]) == 0
    capsys.readouterr()
    assert out.read_bytes() != b"old"


def test_result_files_are_complete(store: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import pyarrow.parquet as pq

    out = tmp_path / "q.parquet"
    assert main(["query", str(store), "SELECT * FROM range(300000)", "--format", "parquet", "-o", str(out)]) == 0
    assert pq.read_table(out).num_rows == 300000
    csv = tmp_path / "q.csv"
    assert main(["query", str(store), "SELECT * FROM events ORDER BY batch, event", "--format", "csv", "-o", str(csv)]) == 0
    assert len(csv.read_text().splitlines()) == 1501
    assert sorted(p.name for p in tmp_path.iterdir()) == ["q.csv", "q.parquet", "s.duckdb"]
    capsys.readouterr()


@pytest.mark.slow
def test_ctrl_c_stops_a_long_query(store: Path) -> None:
    import signal
    import subprocess
    import sys

    script = Path(sys.executable).with_name("mambah")
    cmd = [str(script)] if script.is_file() else [sys.executable, "-m", "mambah.cli"]
    sql = "SELECT count(*) FROM range(100000000000) WHERE hash(range) % 7 = 3"  # minutes of work
    proc = subprocess.Popen([*cmd, "query", str(store), sql], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(4.0)
    t0 = time.perf_counter()
    proc.send_signal(signal.SIGINT)
    try:
        _out, err = proc.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        pytest.fail("Ctrl-C did not stop the query within 20 s")
    assert time.perf_counter() - t0 < 10.0
    assert proc.returncode == 130, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    # into a result file: its temporary copy is removed before the process leaves (was left: '.q.parquet.tmp-…')
    out = store.parent / "q.parquet"
    proc = subprocess.Popen([*cmd, "query", str(store), sql, "--format", "parquet", "-o", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(4.0)
    proc.send_signal(signal.SIGINT)
    _out, err = proc.communicate(timeout=20)
    assert proc.returncode == 130, err
    assert sorted(p.name for p in store.parent.iterdir() if not p.name.startswith("s.duckdb")) == [], err


def test_interrupt_waits_for_the_helpers_cleanup() -> None:
    """Ctrl-C while the helper thread works: it is told to stop and its cleanup runs before the interrupt goes on.

    ``Thread.join`` interrupted by a KeyboardInterrupt marks the thread stopped while it still runs
    (CPython gh-90882): the second join returned at once and the process left before the cleanup.
    """
    import _thread
    import threading

    from mambah.readonly import run_interruptible

    stop, cleaned = threading.Event(), threading.Event()

    class Con:
        def interrupt(self) -> None:
            stop.set()

    def work() -> None:
        try:
            stop.wait(30.0)
        finally:
            time.sleep(0.3)  # e.g. closing and deleting a half-written result file
            cleaned.set()

    timer = threading.Timer(0.3, _thread.interrupt_main)
    timer.start()
    with pytest.raises(KeyboardInterrupt):
        run_interruptible(Con(), work)  # type: ignore[arg-type]
    timer.join()
    assert stop.is_set() and cleaned.is_set()
