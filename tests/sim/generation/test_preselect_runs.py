"""A preselected run (with --preselect-weights) resumes to the same store and runs the same on 2 Dask workers."""

from __future__ import annotations

from pathlib import Path

import pytest

import mambah
from sim.core.pipeline import Pipeline
from sim.core.runner import run
from sim.defaults import default_pipeline
from sim.generation.preselect import with_preselect

SHIPPED = str(Path(__file__).resolve().parents[3] / "sim" / "models" / "selection.keras")


def _job() -> Pipeline:
    return with_preselect(default_pipeline(events=900, batch_size=300, seed=9), SHIPPED, retention=0.99, weights=True)


def _tables(path: Path) -> dict:
    with mambah.EventStore.open(path, read_only=True) as s:
        return {name: s.table(name) for name in (*mambah.DATA_TABLES, "batches")}


def _same(a: Path, b: Path) -> None:
    ta, tb = _tables(a), _tables(b)
    for name in ta:
        assert ta[name].num_rows == tb[name].num_rows, name
        for col in ta[name].column_names:
            assert ta[name][col].equals(tb[name][col]), f"{name}.{col} differs"


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("preselect-ref") / "ref.duckdb"
    run(_job(), out, progress=False)
    with mambah.EventStore.open(out, read_only=True) as s:
        rows = s.query("SELECT simulated, count(*) AS n FROM events GROUP BY simulated").to_pylist()
        counts = {r["simulated"]: r["n"] for r in rows}
        assert counts.get(False, 0) > 100 and counts.get(True, 0) > 100  # the pass did skip events
        w = s.query("SELECT min(weight) AS lo, max(weight) AS hi FROM events WHERE simulated").to_pylist()[0]
        # w = scale / P(kept | kinematics, pass): never below the model's normalisation (~ the kept fraction), not constant
        assert 0.9 < w["lo"] < w["hi"]
    return out


def test_interrupted_preselected_run_resumes_to_the_same_store(tmp_path: Path, interrupt_once: type) -> None:
    marker = tmp_path / "marker"
    job = _job()
    pl = Pipeline((*job.passes, interrupt_once(marker=str(marker))), job.run)
    out = tmp_path / "r.duckdb"
    with pytest.raises(KeyboardInterrupt):
        run(pl, out, progress=False)
    with mambah.EventStore.open(out, read_only=True) as s:
        assert s.batches() == [0]  # batch 1 rolled back, preselect columns included
    summary = run(pl, out, resume=True, progress=False)
    assert summary.batches_run == 2
    ref = tmp_path / "ref.duckdb"
    run(pl, ref, progress=False)  # uninterrupted (the marker exists now)
    _same(ref, out)


@pytest.mark.slow  # two fresh worker processes each import TensorFlow and load the default job's models
def test_two_dask_workers_equal_the_serial_run(tmp_path: Path, reference: Path) -> None:
    pytest.importorskip("distributed")
    from sim.core.distributed import run_distributed

    out = tmp_path / "dist.duckdb"
    summary = run_distributed(_job(), out, workers=2, progress=False)
    assert (summary.batches_run, summary.workers) == (3, 2)
    _same(reference, out)
