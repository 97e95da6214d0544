"""A Pythia full-event run killed with SIGKILL after its first committed batch, then ``--resume``d.

The run is the command users type (``mambah run`` with the pythia generator and every
detector pass), in a subprocess; the test polls the store's ``batches`` records through a
read-only snapshot of the file and its write-ahead log (DuckDB locks the file it writes, so
another process cannot open it while the run holds it), kills the run the moment a batch is
complete, and finishes it with ``--resume``.  Every table must equal the one of an
uninterrupted run with the same settings, row for row.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("pythia8mc")

import mambah

ROOT = Path(mambah.__file__).resolve().parents[1]
#: minimum bias, 3 batches of 8 events: the whole chain of ``mambah run --pythia``
ARGS = ("--pythia", "minbias", "--events", "24", "--batch-size", "8", "--seed", "13")
N_BATCHES = 3


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [env.get("PYTHONPATH")])])
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    return env


def _mambah(*argv: str) -> list[str]:
    return [sys.executable, "-m", "mambah.cli", *argv]


def _committed_batches(out: Path, snap: Path) -> list[int]:
    """Complete batches of the store being written, read from a copy (file + write-ahead log), never the file itself."""
    for f in (snap, Path(f"{snap}.wal")):
        with contextlib.suppress(FileNotFoundError):
            f.unlink()
    try:
        shutil.copyfile(out, snap)
        if Path(f"{out}.wal").exists():
            shutil.copyfile(f"{out}.wal", f"{snap}.wal")
        with mambah.EventStore.open(snap, read_only=True) as s:
            return s.batches()
    except Exception:  # not created yet, or copied in the middle of a write / checkpoint: look again
        return []


def _tables(path: Path) -> dict[str, object]:
    with mambah.EventStore.open(path, read_only=True) as s:
        names = [t for t in (*mambah.DATA_TABLES, "batches") if s.count(t) > 0]
        return {t: s.table(t) for t in names}


@pytest.mark.slow
def test_kill_9_after_first_batch_then_resume_equals_uninterrupted(tmp_path: Path) -> None:
    """Three fresh interpreters (reference, killed, resumed): about 50 s on an idle machine."""
    from mambah.cli import main

    env = _env()
    cfg = tmp_path / "job.toml"
    assert main(["run", *ARGS, "--save-config", str(cfg)]) == 0
    ref = tmp_path / "ref.duckdb"
    res = subprocess.run(_mambah("run", "--config", str(cfg), "-o", str(ref), "--no-progress"), env=env, cwd=tmp_path,
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr

    out = tmp_path / "killed.duckdb"
    proc = subprocess.Popen(_mambah("run", "--config", str(cfg), "-o", str(out), "--no-progress"), env=env, cwd=tmp_path,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    seen: list[int] = []
    try:
        while time.time() < deadline and proc.poll() is None and not seen:
            seen = _committed_batches(out, tmp_path / "snapshot.duckdb")
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)  # no handler, no clean-up: what a crash or the OOM killer does
    finally:
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, f"the run ended ({proc.returncode}) before it could be killed"
    assert seen, "no batch was committed within the time limit"
    with mambah.EventStore.open(out, read_only=True) as s:
        kept = s.batches()
    assert 1 <= len(kept) < N_BATCHES, kept  # killed part way: complete batches kept, the rest to do

    res = subprocess.run(_mambah("run", "--config", str(cfg), "-o", str(out), "--resume", "--no-progress"), env=env,
                         cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert f"{N_BATCHES - len(kept)} batch(es) run" in res.stdout, res.stdout
    got, want = _tables(out), _tables(ref)
    assert sorted(got) == sorted(want)
    assert {"events", "mc_particles", "mc_vertices", "protoparticles"} <= set(want)
    for name, table in want.items():
        assert got[name].equals(table), name  # type: ignore[attr-defined]
