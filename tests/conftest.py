"""Shared fixtures: small stores made once per session."""

from __future__ import annotations

import os
import signal

import pytest

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
