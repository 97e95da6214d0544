"""The interaction PVs of a batch are made once per batch context and remade when the batch's particles change."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest


def _store(path: Path) -> None:
    import mambah
    from mambah.store import BatchRecord
    from sim.generation._event_tables import GeneratorRecord, layout_tables

    pv = np.array([[0.1, -0.1, 10.0, 0.0], [0.3, 0.2, -40.0, 0.1]])
    p4 = np.array([[100.0, 0, 5000, 5001], [-80, 0, 4000, 4001], [0, 300, 9000, 9020], [50, 150, 4500, 4510], [-50, 150, 4500, 4510]])
    rec = GeneratorRecord(
        n_events=1, event=np.zeros(5, np.int64), pid=np.array([211, -211, 310, 211, -211]), status=np.array([1, 1, 2, 1, 1]),
        p4=p4, mass=np.array([139.57, 139.57, 497.6, 139.57, 139.57]), parent=np.array([-1, -1, -1, 2, 2]),
        decay_pos=np.array([[np.nan] * 4, [np.nan] * 4, [0.3, 0.5, 60.0, 0.4], [np.nan] * 4, [np.nan] * 4]),
        interaction=np.array([0, 1, 1, 1, 1]), n_interactions=np.array([2]), pv=pv, is_signal=np.zeros(5, bool),
    )
    tables = layout_tables(rec)
    with mambah.EventStore.create(path) as s:
        s.write_batch(BatchRecord(0, 1, 1), {name: {"batch": np.zeros(len(t["event"]), np.int32), **t} for name, t in tables.items()})


def test_interaction_pvs_made_once_per_batch_context(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import mambah
    from sim.core.pipeline import Batch, BatchContext
    from sim.detector import features

    path = tmp_path / "two.duckdb"
    _store(path)
    calls = []
    real = features.interaction_pvs

    def counted(*args: object) -> object:
        calls.append(1)
        return real(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(features, "interaction_pvs", counted)
    with mambah.EventStore.open(path) as s:
        ctx = BatchContext(s._con, Batch(0, 1, 1))
        first = features.query_truth(ctx, features.truth_sql(), "test")
        again = features.query_truth(ctx, features.truth_sql(with_acceptance=True), "test")
        assert len(calls) == 1  # the second pass's query reused the batch's interaction PVs
        for k in ("pv_x", "pv_y", "pv_z"):
            assert np.array_equal(first[k], again[k])
        # a vertex more in the batch: the PVs are made anew (the same here: nothing points to it)
        s._con.execute('INSERT INTO mc_vertices SELECT * REPLACE (99 AS "index") FROM mc_vertices WHERE batch = 0 AND "index" = 0')
        changed = features.query_truth(ctx, features.truth_sql(), "test")
        assert len(calls) == 2
        features.query_truth(ctx, features.truth_sql(), "test")
        assert len(calls) == 2
        fresh = features.query_truth(BatchContext(s._con, Batch(0, 1, 1)), features.truth_sql(), "test")
        assert len(calls) == 3
        for k in ("mc_index", "pv_x", "pv_z"):
            assert np.array_equal(changed[k], fresh[k])
            assert np.array_equal(changed[k], first[k])
