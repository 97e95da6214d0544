"""The interaction PVs of a batch are made once per batch context and remade when the batch's particles change."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest


def test_interaction_pvs_made_once_per_batch_context(two_interaction_store: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import mambah
    from sim.core.pipeline import Batch, BatchContext
    from sim.detector import features

    path = two_interaction_store
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
