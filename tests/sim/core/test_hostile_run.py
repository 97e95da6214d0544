"""Runs against hostile stores and faults: locked, damaged, mixed-seed, duplicated, interrupted, terminated, full disks."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import duckdb
import pytest

import mambah
from mambah.errors import ConfigError, StoreError
from sim.core.pipeline import Pass, Pipeline, RunConfig
from sim.core.runner import run
from sim.generation.generator import Generator

SMALL = RunConfig(events=3000, batch_size=1000, seed=11)


def _tables(path: Path) -> dict[str, Any]:
    with mambah.EventStore.open(path, read_only=True) as s:
        return {name: s.table(name) for name in (*mambah.DATA_TABLES, "batches")}


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("ref") / "ref.duckdb"
    run(Pipeline((Generator(),), SMALL), path, progress=False)
    return path


@pytest.fixture
def store(tmp_path: Path, reference: Path) -> Path:
    path = tmp_path / "s.duckdb"
    shutil.copy(reference, path)
    return path


#: the ``mambah`` console script (what users run), else the module
_SCRIPT = Path(sys.executable).with_name("mambah")
MAMBAH = [str(_SCRIPT)] if _SCRIPT.is_file() else [sys.executable, "-m", "mambah.cli"]


def _cli(*argv: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*MAMBAH, *argv], capture_output=True, text=True, timeout=timeout)


def _config(tmp_path: Path, runcfg: RunConfig = SMALL) -> Path:
    cfg = tmp_path / "gen.toml"
    Pipeline((Generator(),), runcfg).save(cfg)
    return cfg


# ---------------------------------------------------------------------------- resume
def test_resume_removes_stray_rows_instead_of_duplicating(store: Path, reference: Path) -> None:
    con = duckdb.connect(str(store))
    con.execute("DELETE FROM batches WHERE batch = 1")  # its rows stay: what a foreign writer could leave
    con.close()
    summary = run(Pipeline((Generator(),), SMALL), store, resume=True, progress=False)
    assert summary.batches_run == 1
    got, ref = _tables(store), _tables(reference)
    for name in ref:
        assert got[name].equals(ref[name]), name


def test_resume_refuses_a_store_without_recorded_settings(tmp_path: Path) -> None:
    out = tmp_path / "bare.duckdb"
    mambah.EventStore.create(out).close()  # what an old Mambah killed before its metadata left
    with pytest.raises(StoreError, match="does not record the pipeline and run settings"):
        run(Pipeline((Generator(),), SMALL), out, resume=True, progress=False)


def test_resume_refuses_batches_of_another_seed(store: Path) -> None:
    con = duckdb.connect(str(store))
    con.execute("UPDATE batches SET seed = seed + 1 WHERE batch = 0")
    con.close()
    with pytest.raises(ConfigError, match="batch 0 .* is not a batch of this run"):
        run(Pipeline((Generator(),), SMALL), store, resume=True, progress=False)
    with pytest.raises(ConfigError, match="another pipeline or run settings"):
        run(Pipeline((Generator(),), RunConfig(events=3000, batch_size=1000, seed=99)), store, resume=True, progress=False)


@pytest.mark.parametrize("damage", ["truncate", "events"])
def test_resume_refuses_a_damaged_store(store: Path, damage: str) -> None:
    if damage == "truncate":
        data = store.read_bytes()
        store.write_bytes(data[: len(data) // 2])
    else:
        con = duckdb.connect(str(store))
        con.execute("DELETE FROM events WHERE batch = 2 AND event < 5")
        con.close()
    before = store.read_bytes()
    with pytest.raises(StoreError, match="s.duckdb"):
        run(Pipeline((Generator(),), SMALL), store, resume=True, progress=False)
    assert store.read_bytes() == before
    res = _cli("run", "--config", str(_config(store.parent)), "-o", str(store), "--resume", "--no-progress")
    assert res.returncode == 2 and "Traceback" not in res.stderr and "batch(es) run" not in res.stdout
    assert len(res.stderr.strip().splitlines()) == 1, res.stderr


@pytest.mark.parametrize("damage", ["truncate", "flip"])
def test_export_of_a_damaged_store_is_one_line(store: Path, tmp_path: Path, damage: str, capsys: pytest.CaptureFixture[str]) -> None:
    from mambah.cli import main

    if damage == "flip":  # a byte of a block the export reads (mc_particles.pid): its checksum fails
        import duckdb

        con = duckdb.connect(str(store), read_only=True)
        block, offset = con.execute(
            "SELECT block_id, block_offset FROM pragma_storage_info('mc_particles') "
            "WHERE column_name = 'pid' AND block_id >= 0 ORDER BY block_id LIMIT 1").fetchall()[0]
        block_size = con.execute("SELECT block_size FROM pragma_database_size()").fetchall()[0][0]
        con.close()
    data = bytearray(store.read_bytes())
    if damage == "truncate":
        data = data[: len(data) // 2]
    else:
        data[3 * 4096 + int(block) * int(block_size) + int(offset) + 64] ^= 0xFF  # after the file's 3 headers
    store.write_bytes(bytes(data))
    out = tmp_path / "x.root"
    code = main(["export", str(store), str(out), "--all-candidates", "--no-progress"])
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err and f"store '{store}' is damaged" in err, err
    assert not out.exists() and not list(tmp_path.glob(".x.root*"))


# ---------------------------------------------------------------------------- overwrite and locks
@pytest.fixture
def holder(store: Path) -> Iterator[subprocess.Popen[str]]:
    code = f"import duckdb, sys\nc = duckdb.connect({str(store)!r})\nprint('ok', flush=True)\nsys.stdin.read()\n"
    proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ok"
    yield proc
    proc.communicate("")


def test_overwrite_of_a_store_in_use_is_refused(store: Path, holder: subprocess.Popen[str]) -> None:
    before = store.read_bytes()
    res = _cli("run", "--config", str(_config(store.parent)), "-o", str(store), "--overwrite", "--no-progress")
    assert res.returncode == 2, res.stderr
    assert "in use by another process" in res.stderr and "Traceback" not in res.stderr
    assert "batch(es) run" not in res.stdout
    assert store.read_bytes() == before


def test_new_store_appears_complete_with_its_settings(tmp_path: Path) -> None:
    out = tmp_path / "n.duckdb"
    run(Pipeline((Generator(),), RunConfig(events=500, batch_size=500, seed=3)), out, progress=False)
    with mambah.EventStore.open(out, read_only=True) as s:
        assert s.get_metadata("pipeline") is not None and '"seed": 3' in (s.get_metadata("run") or "")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["n.duckdb"]  # no temporary file left


@dataclass(frozen=True)
class Explode(Pass):
    """Test pass: raises ``error`` in batch ``at``."""

    kind: ClassVar[str] = "test-explode"
    reads: ClassVar[tuple[str, ...]] = ()
    writes: ClassVar[tuple[str, ...]] = ()
    name: str = "explode"
    at: int = 0
    error: str = "runtime"

    def build(self):
        at, error = self.at, self.error

        def kernel(ctx: Any) -> None:
            if ctx.batch.batch == at:
                if error == "interrupt":
                    raise KeyboardInterrupt
                raise RuntimeError("boom")

        return kernel


@pytest.mark.parametrize("error", ["runtime", "interrupt"])
def test_failure_in_the_first_batch_removes_the_new_store(tmp_path: Path, error: str) -> None:
    out = tmp_path / "f.duckdb"
    with pytest.raises((RuntimeError, KeyboardInterrupt)):
        run(Pipeline((Generator(), Explode(at=0, error=error)), SMALL), out, progress=False)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(RuntimeError):
        run(Pipeline((Generator(), Explode(at=1)), SMALL), out, progress=False)
    with mambah.EventStore.open(out, read_only=True) as s:
        assert s.batches() == [0]  # a later failure keeps the complete batches


def test_two_wide_resonances_stay_inside_the_mother(tmp_path: Path) -> None:
    """K*(892) and rho(770) (widths 47 and 149 MeV) from a D0: sampled masses never exceed the D0's."""
    out = tmp_path / "wide.duckdb"
    decay = "D0 -> (K*(892)~0 -> K- pi+) (rho(770)0 -> pi+ pi-)"
    run(Pipeline((Generator(decay=decay),), RunConfig(events=20_000, batch_size=10_000, seed=1)), out, progress=False)
    with mambah.EventStore.open(out, read_only=True) as s:
        sums = s.query(
            "SELECT max(sum_m - mother_m) AS excess, count(*) AS n FROM (SELECT any_value(m.mass) AS mother_m, sum(d.mass) AS sum_m "
            "FROM mc_particles m JOIN mc_particles d ON d.batch = m.batch AND d.event = m.event AND d.mother = m.\"index\" "
            "WHERE m.pid = 421 GROUP BY m.batch, m.event)"
        ).to_pylist()[0]
        assert sums["n"] == 20_000
    sums = sums["excess"]
    assert sums <= 1e-6  # m(K*) + m(rho) <= m(D0) in every event


# ---------------------------------------------------------------------------- signals
def _resume_equals_an_uninterrupted_run(cfg: Path, out: Path, runcfg: RunConfig, tmp_path: Path) -> None:
    """``mambah run --resume`` finishes ``out``, and every table then equals a run that was never stopped."""
    res = _cli("run", "--config", str(cfg), "-o", str(out), "--resume", "--no-progress")
    assert res.returncode == 0, res.stderr
    ref = tmp_path / "ref.duckdb"
    run(Pipeline((Generator(),), runcfg), ref, progress=False)
    got, want = _tables(out), _tables(ref)
    for name in want:
        assert got[name].equals(want[name]), name


def _wait_for_batches(out: Path, proc: subprocess.Popen[str], timeout: float = 180) -> None:
    """Wait until the run has committed its first batch (``out``'s write-ahead log appears)."""
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        if Path(f"{out}.wal").exists():
            return
        time.sleep(0.05)


@pytest.mark.slow
def test_sigterm_is_like_ctrl_c(tmp_path: Path) -> None:
    out = tmp_path / "t.duckdb"
    cfg = _config(tmp_path, RunConfig(events=400_000, batch_size=500, seed=5))
    proc = subprocess.Popen([*MAMBAH, "run", "--config", str(cfg), "-o", str(out), "--no-progress"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _wait_for_batches(out, proc)
    time.sleep(4.0)  # batches of 500 events take a fraction of a second
    proc.send_signal(signal.SIGTERM)
    _stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 143, (proc.returncode, stderr)
    assert stderr.strip().splitlines() == ["mambah: terminated (SIGTERM); complete batches are kept (finish with --resume)"]
    with mambah.EventStore.open(out, read_only=True) as s:
        done = s.batches()
        assert 0 < len(done) < 800 and s.count("events") == 500 * len(done)
    assert not mambah.EventStore.open(out, read_only=True).check().problems


@pytest.mark.slow
@pytest.mark.parametrize("delay", [0.15, 0.4, 1.2, 2.5, 5.0, 9.0])
def test_ctrl_c_at_any_moment_is_one_line_and_130(tmp_path: Path, delay: float) -> None:
    out = tmp_path / "c.duckdb"
    cfg = _config(tmp_path, RunConfig(events=40_000, batch_size=2000, seed=5))
    proc = subprocess.Popen([*MAMBAH, "run", "--config", str(cfg), "-o", str(out), "--no-progress"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(delay)
    proc.send_signal(signal.SIGINT)
    _stdout, stderr = proc.communicate(timeout=120)
    if proc.returncode == 0:  # the run finished before the signal (a fast machine)
        return
    if proc.returncode == -signal.SIGINT and "Traceback" in stderr:
        # the signal came while the interpreter was still starting (site, the console script's own
        # import line), before the first line of Mambah ran: outside what Mambah can handle
        frames = re.findall(r'File "([^"]+)"', stderr)
        assert not [f for f in frames if "/mambah/" in f or "/sim/" in f], stderr
        return
    assert proc.returncode == 130, (proc.returncode, stderr)
    assert "Traceback" not in stderr
    assert stderr.strip().splitlines()[-1] == "mambah: interrupted; complete batches are kept (finish with --resume)", stderr
    if out.exists():
        with mambah.EventStore.open(out, read_only=True) as s:
            assert s.count("events") == 2000 * len(s.batches())


@pytest.mark.slow
def test_kill_9_keeps_complete_batches_and_resume_finishes(tmp_path: Path) -> None:
    """SIGKILL (no handler runs): info and check see complete batches only; --resume equals the uninterrupted run."""
    out = tmp_path / "k.duckdb"
    runcfg = RunConfig(events=4000, batch_size=100, seed=5)  # 40 small batches: a few seconds
    cfg = _config(tmp_path, runcfg)
    proc = subprocess.Popen([*MAMBAH, "run", "--config", str(cfg), "-o", str(out), "--no-progress"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _wait_for_batches(out, proc)
    time.sleep(1.0)
    proc.kill()
    proc.communicate(timeout=60)
    if proc.returncode == 0:  # finished before the signal (a fast machine): nothing to check
        return
    assert proc.returncode == -signal.SIGKILL
    res = _cli("info", str(out))
    assert res.returncode == 0, res.stderr
    with mambah.EventStore.open(out, read_only=True) as s:
        done = s.batches()
        assert 0 < len(done) < 40 and s.count("events") == 100 * len(done)
        assert s.query("SELECT count(DISTINCT batch) AS n FROM mc_particles").to_pylist()[0]["n"] == len(done)
    assert f"events:         {100 * len(done)}" in res.stdout
    assert _cli("check", str(out)).returncode == 0
    _resume_equals_an_uninterrupted_run(cfg, out, runcfg, tmp_path)


# ---------------------------------------------------------------------------- full disk
@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mnt = tmp_path / "disk"
    mnt.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a small tmpfs needs root and mount(8)")
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=10m", "tmpfs", str(mnt)], capture_output=True, text=True)
    if res.returncode != 0:
        pytest.skip(f"mount of a tmpfs not permitted here: {res.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


@pytest.mark.slow
def test_disk_full_is_one_line_and_resume_finishes(small_disk: Path, tmp_path: Path) -> None:
    out = small_disk / "full.duckdb"
    runcfg = RunConfig(events=60_000, batch_size=3000, seed=8)
    cfg = _config(tmp_path, runcfg)
    res = _cli("run", "--config", str(cfg), "-o", str(out), "--no-progress")
    assert res.returncode == 2, res.stderr
    assert "Traceback" not in res.stderr and len(res.stderr.strip().splitlines()) == 1, res.stderr
    line = res.stderr.strip()
    assert line.startswith(f"mambah: error: no space left on device writing '{out}': "), line
    assert line.endswith("complete batch(es) kept; free space and run --resume"), line
    kept = int(line.split(": ")[-1].split(" complete")[0])
    with mambah.EventStore.open(out, read_only=True) as s:
        assert len(s.batches()) == kept >= 1 and s.count("events") == 3000 * kept
    # a query's result file on the full disk: one line, no partial file
    q = small_disk / "q.csv"
    res = _cli("query", str(out), "SELECT * FROM range(5000000)", "--format", "csv", "-o", str(q))
    assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr
    assert not q.exists() and not [p for p in small_disk.iterdir() if p.name.startswith(".q.csv")]
    # free space (move the store to a roomy disk) and resume: equals the uninterrupted run
    roomy = tmp_path / "full.duckdb"
    shutil.copy(out, roomy)
    if Path(f"{out}.wal").exists():  # committed batches not yet checkpointed into the file
        shutil.copy(f"{out}.wal", f"{roomy}.wal")
    store_files = sorted(p.name for p in small_disk.iterdir())
    # an export onto the full disk: one line naming the file, nothing partial left
    for name in ("x.root", "x.parquet", "x.csv"):
        res = _cli("export", str(roomy), str(small_disk / name), "--all-candidates", "--no-progress")
        assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr
        assert len(res.stderr.strip().splitlines()) == 1 and "No space left on device" in res.stderr.replace("no space", "No space"), res.stderr
        assert name in res.stderr, res.stderr
        assert sorted(p.name for p in small_disk.iterdir()) == store_files, name
    _resume_equals_an_uninterrupted_run(cfg, roomy, runcfg, tmp_path)


@pytest.mark.slow
def test_ctrl_c_in_a_workers_run_is_one_line(tmp_path: Path) -> None:
    pytest.importorskip("distributed")
    out = tmp_path / "w.duckdb"
    cfg = _config(tmp_path, RunConfig(events=200_000, batch_size=2000, seed=5))
    # a terminal's Ctrl-C goes to the whole process group: driver and Dask workers
    proc = subprocess.Popen([*MAMBAH, "run", "--config", str(cfg), "-o", str(out), "--workers", "2", "--no-progress"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    _wait_for_batches(out, proc)
    time.sleep(2.0)
    os.killpg(proc.pid, signal.SIGINT)
    _stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, (proc.returncode, stderr)
    lines = [ln for ln in stderr.strip().splitlines() if "leaked semaphore" not in ln and "warnings.warn" not in ln]
    assert lines == ["mambah: interrupted; complete batches are kept (finish with --resume)"], stderr
    with mambah.EventStore.open(out, read_only=True) as s:
        assert s.count("events") == 2000 * len(s.batches())
    # no worker left behind (a zombie of the exited driver is reaped by init: not counted)
    deadline = time.time() + 15
    while time.time() < deadline:
        states = subprocess.run(["ps", "-o", "stat=", "-g", str(proc.pid)], capture_output=True, text=True).stdout.split()
        if not [st for st in states if not st.startswith("Z")]:
            break
        time.sleep(0.5)
    assert not [st for st in states if not st.startswith("Z")], states
