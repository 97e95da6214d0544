from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import mambah
from sim import Generator, Pipeline, RunConfig, run

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
