"""``Pythia.defer_truth``: the truth handed to the preselect pass, laid out and written only for the events it keeps.

What the preselect pass reads from the generator's arrays must be, bit for bit, what it reads
from the store (:data:`~sim.generation.preselect.PARTICLES_SQL`); a copy laid out on its own must
be its rows in the layout of all copies; and a run with ``--drop-skipped`` after Pythia must give
the store of the run that writes every event's truth and deletes the skipped events'.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

import mambah
from mambah.errors import ConfigError
from mambah.store import BatchRecord
from sim.core.pipeline import BatchContext, Pipeline, RunConfig
from sim.generation._event_tables import (
    DEFERRED_TRUTH,
    DeferredTruth,
)
from sim.generation.preselect import particles_sql, pipeline_digest

SIGNAL = "[B+ -> (J/psi -> mu+ mu-) K+]cc"
ROWS = ("event", "pid", "mother_pid", "px", "py", "pz", "origin_dx", "origin_dy", "origin_dz")


def _assert_rows_equal(got: dict[str, np.ndarray], want: dict[str, np.ndarray], what: str) -> None:
    for col in ROWS:
        g, w = np.asarray(got[col]), np.asarray(want[col])
        assert g.dtype == w.dtype, (what, col, g.dtype, w.dtype)
        np.testing.assert_array_equal(g, w, err_msg=f"{what}: {col}")


def _batch_tables(defer: bool, **kw: object) -> tuple[dict[str, pa.Table], DeferredTruth | None, dict[str, object]]:
    """One batch of the pythia kernel in a staging store: its tables and the truth it deferred."""
    pytest.importorskip("pythia8mc")
    from sim.generation.pythia import Pythia

    cfg = Pythia(preset="bbbar", decay=SIGNAL, defer_truth=defer, **kw)  # type: ignore[arg-type]
    b = RunConfig(events=40, batch_size=40, seed=9).batch(0)
    store = mambah.EventStore.memory()
    with store.staged_batch(BatchRecord(b.batch, b.n_events, b.seed)) as con:
        ctx = BatchContext(con, b)
        cfg.build()(ctx)
        truth = getattr(ctx, DEFERRED_TRUTH, None)
        sql = {which: ctx.query(particles_sql("p.batch = $batch", which)) for which in ("signal", "all")}
        tabs = {t: ctx.query(f'SELECT * FROM {t} ORDER BY ALL') for t in ("events", "mc_particles", "mc_vertices")}
        if truth is not None:  # what the preselect pass writes, keeping every second event
            keep = np.asarray(truth.events["event"], np.int64)[::2]
            truth.write(ctx, keep)
            tabs["kept_particles"] = ctx.query('SELECT * FROM mc_particles ORDER BY ALL')
            tabs["kept_vertices"] = ctx.query('SELECT * FROM mc_vertices ORDER BY ALL')
    return tabs, truth, {k: {c: v.column(c).to_numpy(zero_copy_only=False) for c in v.column_names} for k, v in sql.items()}


@pytest.mark.parametrize("kw", [{"redecay": 4}, {"redecay": 1}, {"redecay": 3, "daughters_in_acceptance": True}],
                         ids=["redecay", "no-redecay", "redecay-cut"])
def test_deferred_truth_reads_and_writes_what_the_store_holds(kw: dict[str, object]) -> None:
    written, none, sql = _batch_tables(False, **kw)
    assert none is None
    deferred, truth, _ = _batch_tables(True, **kw)
    assert truth is not None
    assert deferred["mc_particles"].num_rows == 0 and deferred["mc_vertices"].num_rows == 0  # nothing written yet
    assert deferred["events"].equals(written["events"])
    for which in ("signal", "all"):
        _assert_rows_equal(truth.particles(which == "signal"), sql[which], f"{kw} {which}")  # type: ignore[arg-type]
    # the events kept: their rows of the store written in full, nothing of the others
    for table, kept in (("mc_particles", "kept_particles"), ("mc_vertices", "kept_vertices")):
        full = written[table]
        rows = pc.is_in(full["event"], pa.array(np.arange(0, 1000, 2), pa.int32()))
        assert deferred[kept].equals(full.filter(rows)), table


def test_a_deferring_generator_needs_the_preselect_pass_and_is_no_part_of_the_digest() -> None:
    pytest.importorskip("pythia8mc")
    from sim.detector.acceptance import Acceptance
    from sim.generation.pythia import Pythia

    run = RunConfig(events=10, batch_size=10)
    with pytest.raises(ConfigError, match="reads mc_particles, mc_vertices, which no pass before it writes .upstream writes: events, generator_truth"):
        Pipeline((Pythia(decay=SIGNAL, defer_truth=True), Acceptance()), run).validate()
    Pipeline((Pythia(decay=SIGNAL), Acceptance()), run).validate()
    plain = Pipeline((Pythia(decay=SIGNAL, redecay=5), Acceptance()), run)
    deferring = Pipeline((Pythia(decay=SIGNAL, redecay=5, defer_truth=True), Acceptance()), run)
    assert pipeline_digest(plain) == pipeline_digest(deferring)
    assert pipeline_digest(plain) != pipeline_digest(plain.replace("pythia", redecay=6))
    back = Pipeline.from_toml(deferring.to_toml())
    assert back.passes[0] == deferring.passes[0] and back.passes[0].writes == ("events", "generator_truth")
    with pytest.raises(ConfigError, match="defer_truth must be true or false"):
        Pythia(decay=SIGNAL, defer_truth=1)  # type: ignore[arg-type]


SELECTION = 'SELECT DISTINCT batch, event FROM mc_particles WHERE is_signal AND abs(pid) = 321 AND pz > 40000'


@pytest.fixture(scope="module")
def pythia_job(tmp_path_factory: pytest.TempPathFactory) -> tuple[Pipeline, str, str]:
    """A ReDecay chain (truth-level detector passes) and a selection model trained for it on independent events."""
    pytest.importorskip("pythia8mc")
    from sim.core.io import save_model
    from sim.detector.acceptance import Acceptance
    from sim.detector.efficiency import Efficiency
    from sim.detector.occupancy import Occupancy
    from sim.generation.pythia import Pythia
    from sim.training.recipes.selection import simulate_sample, train_selection_pair

    passes = (Pythia(decay=SIGNAL, redecay=5), Occupancy(), Acceptance(), Efficiency())
    sample = simulate_sample(Pipeline(passes, RunConfig(events=600, batch_size=300, seed=41)))
    pair = train_selection_pair(sample, selection=SELECTION, seed=1, epochs=3, validation_fraction=0.3,
                                weights_retention=0.95, weights_epochs=3, particles="signal")
    folder = tmp_path_factory.mktemp("sel")
    path = save_model(pair.model, folder / "selection.keras")
    assert pair.weights is not None
    weights = save_model(pair.weights, folder / "selection_weights.keras")
    return Pipeline(passes, RunConfig(events=240, batch_size=120, seed=42)), str(path), str(weights)


def _store_tables(path: Path) -> dict[str, pa.Table]:
    with mambah.EventStore.open(path, read_only=True) as s:
        return {t: s.query(f"SELECT * FROM {t} ORDER BY ALL") for t in (*mambah.DATA_TABLES, "batches")}


def test_drop_skipped_after_pythia_writes_the_store_of_write_then_delete(pythia_job: tuple[Pipeline, str, str],
                                                                        tmp_path: Path) -> None:
    from sim.core.runner import run
    from sim.generation.preselect import with_preselect

    base, model, _ = pythia_job
    dropped = with_preselect(base, model, retention=0.95, drop_skipped=True)
    assert dropped.passes[0].defer_truth  # type: ignore[attr-defined]  # set by with_preselect
    undeferred = dropped.replace("pythia", defer_truth=False)
    kept = with_preselect(base, model, retention=0.95)
    assert not kept.passes[0].defer_truth  # type: ignore[attr-defined]
    paths = {}
    for name, pipe in (("deferred", dropped), ("undeferred", undeferred), ("kept", kept)):
        paths[name] = tmp_path / f"{name}.duckdb"
        run(pipe, paths[name], progress=False)
    a, b, k = (_store_tables(paths[n]) for n in ("deferred", "undeferred", "kept"))
    for table, t in a.items():
        assert t.equals(b[table]), table  # bit for bit, every table
    skipped = k["events"].filter(pc.invert(k["events"]["simulated"]))
    assert 0 < skipped.num_rows < k["events"].num_rows  # the pass skipped some events and kept others
    for table in ("mc_particles", "mc_vertices"):  # the simulated events' truth is the run's that keeps all truth
        gone = pc.is_in(pc.add(pc.multiply(k[table]["batch"], 1 << 24), k[table]["event"]),
                                pc.add(pc.multiply(skipped["batch"], 1 << 24), skipped["event"]))
        assert a[table].equals(k[table].filter(pc.invert(gone))), table


def test_drop_skipped_with_weights_after_pythia(pythia_job: tuple[Pipeline, str, str], tmp_path: Path) -> None:
    """With the reweighting model the truth of every event is written first (it reads their signal from the store)."""
    from sim.core.runner import run
    from sim.generation.preselect import with_preselect

    base, model, weights = pythia_job
    dropped = with_preselect(base, model, retention=0.95, drop_skipped=True, weights=weights)
    assert dropped.passes[0].defer_truth  # type: ignore[attr-defined]
    stores = []
    for name, pipe in (("deferred", dropped), ("undeferred", dropped.replace("pythia", defer_truth=False))):
        run(pipe, tmp_path / f"{name}.duckdb", progress=False)
        stores.append(_store_tables(tmp_path / f"{name}.duckdb"))
    for table, t in stores[0].items():
        assert t.equals(stores[1][table]), table
    ev = stores[0]["events"]
    assert pc.sum(pc.invert(ev["simulated"])).as_py() > 0 and pc.min(ev["weight"]).as_py() == 0.0
    assert pc.max(ev["weight"]).as_py() > 1.0  # kept events weighted up
