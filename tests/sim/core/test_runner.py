from __future__ import annotations

import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import pytest

import mambah
from sim import Generator, Pipeline, RunConfig, run
from sim.core.pipeline import PASS_KINDS, Kernel, Pass
from sim.core.resources import process_cpus
from sim.core.runner import batch_threads

SMALL = RunConfig(events=3000, batch_size=1000, seed=11)


def _tables(path):
    with mambah.EventStore.open(path, read_only=True) as s:
        return {name: s.table(name) for name in (*mambah.DATA_TABLES, "batches")}


def test_same_seed_same_store_and_different_seed_differs(tmp_path):
    run(Pipeline((Generator(),), SMALL), tmp_path / "a.duckdb", progress=False)
    run(Pipeline((Generator(),), SMALL), tmp_path / "b.duckdb", progress=False)
    run(Pipeline((Generator(),), RunConfig(events=3000, batch_size=1000, seed=12)), tmp_path / "c.duckdb", progress=False)
    a, b, c = (_tables(tmp_path / f"{x}.duckdb") for x in "abc")
    for name in a:
        assert a[name].equals(b[name]), name
    assert not a["mc_particles"].equals(c["mc_particles"])


def test_batch_contents_do_not_depend_on_order(tmp_path):
    full = _tables_after(tmp_path / "full.duckdb", RunConfig(events=3000, batch_size=1000, seed=11))
    # only batch 2 of the same run, made alone
    from sim.core.pipeline import build_kernels, run_batch

    pl = Pipeline((Generator(),), SMALL)
    kernels = build_kernels(pl)
    store = mambah.EventStore.memory()
    b = pl.run.batches()[2]
    with store.batch_transaction(mambah.BatchRecord(b.batch, b.n_events, b.seed)) as con:
        run_batch(kernels, con, b)
    alone = store.table("mc_particles")
    assert alone.equals(full["mc_particles"].filter(full["mc_particles"]["batch"].to_numpy() == 2))


def _tables_after(path, runcfg):
    run(Pipeline((Generator(),), runcfg), path, progress=False)
    return _tables(path)


def test_interrupted_run_resumes_to_the_same_store(tmp_path, interrupt_once):
    pl = Pipeline((Generator(), interrupt_once(marker=str(tmp_path / "marker"))), SMALL)
    out = tmp_path / "r.duckdb"
    with pytest.raises(KeyboardInterrupt):
        run(pl, out, progress=False)
    with mambah.EventStore.open(out, read_only=True) as s:
        assert s.batches() == [0]  # batch 1 rolled back entirely
        assert s.count("events") == 1000
    with pytest.raises(mambah.StoreExistsError):
        run(pl, out, progress=False)
    summary = run(pl, out, resume=True, progress=False)
    assert summary.batches_run == 2
    ref = _tables_after(tmp_path / "ref.duckdb", SMALL)
    got = _tables(out)
    for name in ref:
        assert got[name].equals(ref[name]), name
    # resuming with other settings is refused
    with pytest.raises(mambah.ConfigError, match="cannot resume"):
        run(Pipeline(pl.passes, RunConfig(events=3000, batch_size=1000, seed=99)), out, resume=True, progress=False)


def test_kill_9_leaves_complete_batches_and_resume_finishes(tmp_path):
    out = tmp_path / "k.duckdb"
    cmd = [sys.executable, "-m", "mambah.cli", "run", "--events", "40000", "--batch-size", "2000", "--seed", "5", "-o", str(out), "--no-progress"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while time.time() < deadline and not ((out.exists() and out.stat().st_size > 1_000_000) or Path(str(out) + ".wal").exists()):
        time.sleep(0.2)
    time.sleep(1.0)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    with mambah.EventStore.open(out, read_only=True) as s:
        done = s.batches()
        n_ev = s.count("events")
        assert n_ev == 2000 * len(done)  # complete batches only
        assert s.count("mc_particles") == 7 * n_ev
    assert len(done) < 20
    subprocess.run([*cmd[:-1], "--resume", "--no-progress"], check=True, capture_output=True)
    subprocess.run([sys.executable, "-m", "mambah.cli", "run", "--events", "40000", "--batch-size", "2000", "--seed", "5", "-o", str(tmp_path / "ref.duckdb"), "--no-progress"], check=True, capture_output=True)
    got, ref = _tables(out), _tables(tmp_path / "ref.duckdb")
    for name in ref:
        assert got[name].equals(ref[name]), name


# ---- batches side by side (threads): the same store as one batch after the other


@dataclass(frozen=True)
class _Uneven(Pass):
    """Test pass (concurrent): batch 1 takes longer than the batches after it, so they finish out of order;
    raises DataError in batch ``fail_at`` while ``marker`` does not exist (then creates it)."""

    kind: ClassVar[str] = "test-uneven"
    concurrent: ClassVar[bool] = True
    name: str = "uneven"
    fail_at: int = -1
    marker: str = ""

    def build(self) -> Kernel:
        def kernel(ctx) -> None:  # type: ignore[no-untyped-def]
            if ctx.batch.batch == 1:
                time.sleep(0.6)
            if ctx.batch.batch == self.fail_at and not Path(self.marker).exists():
                Path(self.marker).write_text("x")
                raise mambah.DataError(f"test failure in batch {self.fail_at}")
        return kernel


@pytest.fixture
def uneven(monkeypatch):
    monkeypatch.setitem(PASS_KINDS, _Uneven.kind, f"{__name__}:_Uneven")
    return _Uneven


def test_default_job_side_by_side_equals_one_batch_at_a_time(tmp_path):
    from sim.defaults import default_pipeline

    pl = default_pipeline(events=5000, batch_size=1000, seed=4)
    assert batch_threads(pl) == min(2, process_cpus())  # the default (sim.core.runner.BATCH_THREADS)
    for t in (1, 2, 3):
        run(pl, tmp_path / f"t{t}.duckdb", progress=False, threads=t)
    one = _tables(tmp_path / "t1.duckdb")
    for t in (2, 3):
        got = _tables(tmp_path / f"t{t}.duckdb")
        for name in one:
            assert got[name].equals(one[name]), (t, name)
    assert one["protoparticles"].num_rows > 0 and one["batches"].num_rows == 5


def test_batches_are_written_and_hooked_in_order_when_they_finish_out_of_order(tmp_path, uneven):
    order: list[int] = []
    pl = Pipeline((Generator(), uneven()), RunConfig(events=5000, batch_size=1000, seed=3))
    run(pl, tmp_path / "o.duckdb", progress=False, threads=3, on_batch=lambda store, b: order.append((b.batch, store.batches()[-1])))
    assert order == [(i, i) for i in range(5)]
    run(pl, tmp_path / "s.duckdb", progress=False, threads=1)
    a, b = _tables(tmp_path / "o.duckdb"), _tables(tmp_path / "s.duckdb")
    for name in a:
        assert a[name].equals(b[name]), name


def test_failure_side_by_side_keeps_the_batches_before_it_and_resumes(tmp_path, uneven):
    pl = Pipeline((Generator(), uneven(fail_at=2, marker=str(tmp_path / "marker"))), RunConfig(events=5000, batch_size=1000, seed=3))
    out = tmp_path / "f.duckdb"
    t0 = time.perf_counter()
    with pytest.raises(mambah.DataError, match="batch 2"):
        run(pl, out, progress=False, threads=2)
    assert time.perf_counter() - t0 < 60  # the batch in flight was stopped, not the whole run finished
    with mambah.EventStore.open(out, read_only=True) as s:
        assert s.batches() == [0, 1]  # batch 1 (slow) written before batch 2's error; nothing of 2, 3, 4
        assert s.count("events") == 2000
    run(pl, out, resume=True, progress=False, threads=2)
    run(Pipeline(pl.passes, pl.run), tmp_path / "ref.duckdb", progress=False, threads=1)
    got, ref = _tables(out), _tables(tmp_path / "ref.duckdb")
    for name in ref:
        assert got[name].equals(ref[name]), name


def test_a_serial_executors_thread_count_is_the_runs(tmp_path, batch_thread_names):
    """``run(executor=SerialExecutor(threads=N))`` (what ``mambah run --threads N`` passes) computes N batches at once.

    Before: the executor's count was dropped and every batch ran in the calling thread.
    """
    import threading

    from sim.core.executors import SerialExecutor

    where = batch_thread_names
    pl = Pipeline((Generator(),), SMALL)
    run(pl, tmp_path / "e.duckdb", progress=False, executor=SerialExecutor(threads=2))
    assert len(where) == 3 and all(name.startswith("mambah-batch") for name in where)
    where.clear()
    run(pl, tmp_path / "one.duckdb", progress=False, executor=SerialExecutor(threads=1))
    assert where == [threading.current_thread().name] * 3
    with pytest.raises(mambah.ConfigError, match=r"threads=3 and SerialExecutor\(threads=2\) disagree"):
        run(pl, tmp_path / "x.duckdb", progress=False, executor=SerialExecutor(threads=2), threads=3)
    assert not (tmp_path / "x.duckdb").exists()


def test_threads_are_refused_for_a_pass_that_runs_one_batch_at_a_time(tmp_path, interrupt_once):
    pl = Pipeline((Generator(), interrupt_once(marker=str(tmp_path / "m"))), SMALL)
    assert batch_threads(pl) == 1  # the default: silently one at a time
    with pytest.raises(mambah.ConfigError, match=r"'interrupt-once' \(test-interrupt-once\) runs one batch at a time.*--workers"):
        run(pl, tmp_path / "x.duckdb", progress=False, threads=2)
    assert not (tmp_path / "x.duckdb").exists()
    for bad in (0, -1, True, 1.5):
        with pytest.raises(mambah.ConfigError, match="threads must be a positive integer"):
            batch_threads(pl, bad)
