"""Shared fixtures: small stores made once per session."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


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
