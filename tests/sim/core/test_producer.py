"""The producer process (sim.core.producer): the next batch's Pythia work in a child, the same store as in-process."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

import mambah
from mambah.errors import DecayError, MambahError
from sim.core import producer as P
from sim.core.pipeline import Batch, Pipeline, RunConfig
from sim.core.runner import run

SIGNAL = "[B+ -> (J/psi -> mu+ mu-) K+]cc"
TABLES = ("events", "mc_particles", "mc_vertices", "metadata")


class _Plain:
    """Stands for a pass that is not prefetchable."""

    name = "gun"
    prefetchable = False


class _Ahead(_Plain):
    name = "pythia"
    prefetchable = True


def test_which_runs_use_a_producer(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(P.ENV, raising=False)
    ahead = _Ahead()
    assert P.wants_producer([ahead, _Plain()], n_pending=2, cpus=2) is ahead  # type: ignore[list-item]
    assert P.wants_producer([_Plain(), ahead], 5, 2) is None  # type: ignore[list-item]  # only a first pass
    assert P.wants_producer([ahead], 1, 2) is None  # type: ignore[list-item]  # one batch: nothing to overlap
    assert P.wants_producer([ahead], 5, 1) is None  # type: ignore[list-item]  # one CPU
    assert P.wants_producer([], 5, 2) is None
    monkeypatch.setenv(P.ENV, "0")
    assert P.wants_producer([ahead], 5, 2) is None  # type: ignore[list-item]


pythia = pytest.importorskip("sim.generation.pythia")


def _needs_pythia() -> None:
    pytest.importorskip("pythia8mc")


def _dump(path: Path) -> dict[str, object]:
    with mambah.EventStore.open(path, read_only=True) as s:
        return {t: s.query_df(f"SELECT * FROM {t} ORDER BY ALL") for t in TABLES}


def test_store_with_the_producer_equals_the_in_process_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Three batches of bb̄ events with pile-up and the signal decayed by Mambah: batches 1 and 2 made in the
    child (counted), every table equal to the run that makes all three in its own process."""
    _needs_pythia()
    pipe = Pipeline((pythia.Pythia(preset="bbbar", decay=SIGNAL),), RunConfig(events=15, batch_size=5, seed=3))
    made: list[int] = []
    real = P.prefetch_products

    def counted(*a: object, **k: object):  # type: ignore[no-untyped-def]
        for b, product in real(*a, **k):  # type: ignore[arg-type]
            if product is not None:
                made.append(b.batch)
            yield b, product

    monkeypatch.delenv(P.ENV, raising=False)
    monkeypatch.setattr(P, "prefetch_products", counted)
    monkeypatch.setattr("sim.core.runner.process_cpus", lambda: 2)  # a 1-CPU CI box still takes this path
    run(pipe, tmp_path / "child.duckdb", progress=False)
    assert made == [1, 2]
    monkeypatch.setenv(P.ENV, "0")
    run(pipe, tmp_path / "here.duckdb", progress=False)
    assert made == [1, 2]  # no producer the second time
    a, b = _dump(tmp_path / "child.duckdb"), _dump(tmp_path / "here.duckdb")
    for t in TABLES:
        assert a[t].equals(b[t]), t  # type: ignore[attr-defined]


def test_an_error_in_the_child_is_raised_in_the_run() -> None:
    """A signal minimum bias does not make within max_tries: the child's DecayError, its message, in the parent."""
    _needs_pythia()
    prod = P.Producer(pythia.Pythia(preset="minbias", decay=SIGNAL, max_tries=1, nu=0))
    try:
        prod.submit(Batch(1, 3, 11))
        with pytest.raises(DecayError, match="max_tries 1"):
            prod.result()
    finally:
        prod.close()


def test_a_dead_child_is_named() -> None:
    _needs_pythia()
    prod = P.Producer(pythia.Pythia(preset="minbias", nu=0))
    try:
        prod.submit(Batch(0, 200, 1))
        os.kill(prod._proc.pid, signal.SIGKILL)
        with pytest.raises(MambahError, match=r"producer process of pass pythia \(pythia\) ended \(exit status -9\)"):
            prod.result()
    finally:
        prod.close()
    assert prod._proc.poll() is not None


def test_no_producer_when_two_batches_do_not_fit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _needs_pythia()
    from sim.core.resources import batch_memory_bytes

    pipe = Pipeline((pythia.Pythia(preset="minbias", nu=0),), RunConfig(events=10, batch_size=5, seed=1))
    used: list[object] = []
    real = P.prefetch_products

    def counted(*a: object, **k: object):  # type: ignore[no-untyped-def]
        used.append(a)
        yield from real(*a, **k)  # type: ignore[arg-type]

    monkeypatch.delenv(P.ENV, raising=False)
    monkeypatch.setattr(P, "prefetch_products", counted)
    monkeypatch.setattr("sim.core.runner.process_cpus", lambda: 2)
    monkeypatch.setattr("sim.core.runner.machine_memory_bytes", lambda: int(1.5 * batch_memory_bytes(pipe)))
    run(pipe, tmp_path / "a.duckdb", progress=False)
    assert used == []
    monkeypatch.setattr("sim.core.runner.machine_memory_bytes", lambda: int(3 * batch_memory_bytes(pipe)))
    run(pipe, tmp_path / "b.duckdb", progress=False)
    assert len(used) == 1


def test_the_childs_log_records_are_emitted_by_the_run(caplog: pytest.LogCaptureFixture) -> None:
    """Records the child sends before its result go through the run's logging, once each, with their logger."""
    import logging
    import socket
    import subprocess
    import sys
    from multiprocessing.connection import Connection

    a, b = socket.socketpair()
    ours, theirs = Connection(a.detach()), Connection(b.detach())
    child = P._Forward(theirs)
    prod = object.__new__(P.Producer)
    prod._conn, prod._busy, prod.name = ours, True, "pythia (pythia)"
    prod._proc = subprocess.Popen([sys.executable, "-c", "pass"])
    child.emit(logging.makeLogRecord({"name": "sim.generation.decay", "levelno": logging.WARNING,
                                      "levelname": "WARNING", "msg": "bound raised to %s", "args": (3,)}))
    theirs.send(("ok", 42))
    with caplog.at_level(logging.WARNING):
        assert prod.result() == 42
    assert [(r.name, r.getMessage()) for r in caplog.records] == [("sim.generation.decay", "bound raised to 3")]
    prod._proc.wait()
    ours.close()
    theirs.close()
