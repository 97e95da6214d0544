"""Thread limits of a run's matrix products (sim.core.resources.blas_threads)."""

from __future__ import annotations

import numpy as np
import pytest
import threadpoolctl

import mambah
from mambah.errors import ConfigError
from sim import Generator, Pipeline, RunConfig, run
from sim.core.resources import blas_threads, check_blas_threads, limit_blas_threads


def _blas() -> list[int]:
    """Threads of every BLAS library loaded (numpy's and scipy's OpenBLAS)."""
    import scipy.linalg  # noqa: F401 - scipy's OpenBLAS, loaded in a run
    np.dot(np.ones((2, 2)), np.ones((2, 2)))
    return [p["num_threads"] for p in threadpoolctl.threadpool_info() if p["user_api"] == "blas"]


def test_blas_threads_limits_inside_and_restores_after():
    before = _blas()
    assert before, "numpy has no BLAS threadpool to limit"
    with threadpoolctl.threadpool_limits(limits=2):
        with blas_threads(1):
            assert set(_blas()) == {1}
        assert set(_blas()) == {2}
        with blas_threads(None):  # the libraries' own setting is left as it is
            assert set(_blas()) == {2}
    assert _blas() == before


def test_run_batch_loop_uses_one_blas_thread_unless_asked(tmp_path):
    seen: list[set[int]] = []
    pipeline = Pipeline((Generator(),), RunConfig(events=200, batch_size=100, seed=3))
    _blas()
    with threadpoolctl.threadpool_limits(limits=2):
        expect = {2}
        run(pipeline, tmp_path / "a.duckdb", progress=False, on_batch=lambda store, b: seen.append(set(_blas())))
        assert seen == [{1}, {1}]
        assert set(_blas()) == expect  # restored after the run
        seen.clear()
        run(pipeline, tmp_path / "b.duckdb", progress=False, blas_threads=None,
            on_batch=lambda store, b: seen.append(set(_blas())))
        assert seen == [expect, expect]
    with mambah.EventStore.open(tmp_path / "a.duckdb") as a, mambah.EventStore.open(tmp_path / "b.duckdb") as b:
        q = "SELECT * FROM mc_particles ORDER BY ALL"
        assert a.query_df(q).equals(b.query_df(q))


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "2"])
def test_bad_thread_counts_are_one_line_errors(bad):
    with pytest.raises(ConfigError, match="BLAS threads must be a positive integer"), blas_threads(bad):
        pass
    with pytest.raises(ConfigError, match="BLAS threads must be a positive integer"):
        limit_blas_threads(bad)
    with pytest.raises(ConfigError, match="BLAS threads must be a positive integer"):
        check_blas_threads(bad)


def test_bad_thread_count_refused_before_the_store_exists(tmp_path):
    from sim import Generator, Pipeline, RunConfig, run

    assert check_blas_threads(None) is None and check_blas_threads(2) == 2
    out = tmp_path / "out.duckdb"
    with pytest.raises(ConfigError, match="BLAS threads must be a positive integer"):
        run(Pipeline((Generator(),), RunConfig(events=100, batch_size=100)), out, progress=False, blas_threads=0)
    assert not out.exists()


def test_a_worker_limits_blas_loaded_before_it_was_configured():
    """configure_worker acts on a BLAS loaded already (a worker of an existing cluster): env vars alone would not."""
    import subprocess
    import sys

    code = ("import numpy, scipy.linalg, threadpoolctl\n"
            "threadpoolctl.threadpool_limits(2)\n"
            "from sim.core.distributed import configure_worker\n"
            "configure_worker(1)\n"
            "print(sorted({p['num_threads'] for p in threadpoolctl.threadpool_info() if p['user_api'] == 'blas'}))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "[1]"
