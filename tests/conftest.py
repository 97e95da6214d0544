"""Shared fixtures: small stores made once per session."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import pytest

from sim.core.pipeline import PASS_KINDS, Kernel, Pass

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# The Ctrl-C tests send SIGINT to the CLI (in this process and in child processes).  A suite
# started in the background of a non-interactive shell (``./.ci/run &``) inherits SIGINT
# *ignored*, which Python and every child then keep (as they should: that is how nohup'd jobs
# stay alive), so those tests could not pass there; the suite takes Python's own handler back,
# and the children, started by exec, get the default disposition.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(scope="session")
def generated_store(tmp_path_factory: pytest.TempPathFactory):
    """A store with 2 batches × 2000 events of the default decay (generator only)."""
    import mambah
    from sim import Generator, Pipeline, RunConfig, run

    path = tmp_path_factory.mktemp("gen") / "gen.duckdb"
    run(Pipeline((Generator(),), RunConfig(events=4000, batch_size=2000, seed=7)), path, progress=False)
    store = mambah.EventStore.open(path, read_only=True)
    yield store
    store.close()



@dataclass(frozen=True)
class InterruptOnce(Pass):
    """Test pass: raises KeyboardInterrupt in batch ``at`` while ``marker`` does not exist (then creates it)."""

    kind: ClassVar[str] = "test-interrupt-once"
    name: str = "interrupt-once"
    at: int = 1
    marker: str = ""

    def build(self) -> Kernel:
        def kernel(ctx) -> None:  # type: ignore[no-untyped-def]
            if ctx.batch.batch == self.at and not Path(self.marker).exists():
                Path(self.marker).write_text("x")
                raise KeyboardInterrupt
        return kernel


@pytest.fixture
def interrupt_once(monkeypatch: pytest.MonkeyPatch) -> type[InterruptOnce]:
    """:class:`InterruptOnce`, registered as a pass kind for the test (the runner records the
    pipeline by kind, so a resumed run rebuilds it from this module)."""
    monkeypatch.setitem(PASS_KINDS, InterruptOnce.kind, f"{InterruptOnce.__module__}:InterruptOnce")
    return InterruptOnce


@pytest.fixture
def one_line_error(capsys: pytest.CaptureFixture[str]) -> Callable[[], str]:
    """What the command wrote to stderr so far, asserted to be one line without a traceback (the brief's
    rule for bad input), stripped; the test's own ``capsys`` is the same capture."""

    def read() -> str:
        err = capsys.readouterr().err.strip()
        assert "Traceback" not in err, err
        assert len(err.splitlines()) == 1, err
        return err

    return read


@pytest.fixture
def batch_thread_names(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The name of the thread each batch of a serial run is computed in, in the order they start
    (``sim.core.runner._stage`` wrapped for the test)."""
    import threading

    from sim.core import runner

    names: list[str] = []
    real_stage = runner._stage

    def stage(kernels, batch, stop):  # type: ignore[no-untyped-def]
        names.append(threading.current_thread().name)
        return real_stage(kernels, batch, stop)

    monkeypatch.setattr(runner, "_stage", stage)
    return names
