"""The truth shared by acceptance, efficiency and resolution gives the tables of three separate queries."""

from __future__ import annotations

import hashlib

import pytest

import mambah
from sim.defaults import default_pipeline


def _digests(events: int = 600) -> dict[str, str]:
    from sim import run

    store = mambah.EventStore.memory()
    run(default_pipeline(events=events, batch_size=300, seed=11), store=store, progress=False)
    out = {}
    for table in ("mc_particles", "protoparticles"):
        df = store.query_df(f"SELECT * FROM {table} ORDER BY ALL")
        out[table] = hashlib.sha256(df.to_csv(index=False).encode()).hexdigest()
    store.close()
    return out


def test_sharing_the_truth_changes_no_number(monkeypatch: pytest.MonkeyPatch) -> None:
    from sim.detector import shared

    calls: list[str] = []
    real = shared.reuse_truth

    def counted(ctx: object, stage: str) -> shared.SharedTruth | None:
        entry = real(ctx, stage)
        calls.append(f"{stage}:{entry is not None}")
        return entry

    monkeypatch.setattr(shared, "reuse_truth", counted)
    with_sharing = _digests()
    assert calls.count("acceptance:True") == 2 and calls.count("efficiency:True") == 2  # both batches shared
    monkeypatch.setattr(shared, "reuse_truth", lambda ctx, stage: None)  # every pass runs its own query
    assert _digests() == with_sharing


def test_a_pass_writing_in_between_makes_the_next_pass_query_again() -> None:
    from mambah.store import BatchRecord
    from sim.core.pipeline import Batch, BatchContext, build_kernels
    from sim.detector.shared import reuse_truth

    pl = default_pipeline(events=200, batch_size=200, seed=3)
    names = [p.name for p in pl.passes]
    kernels = dict(zip(names, build_kernels(pl)))
    store = mambah.EventStore.memory()
    b: Batch = next(iter(pl.run.batches()))
    with store.batch_transaction(BatchRecord(b.batch, b.n_events, b.seed)) as con:
        ctx = BatchContext(con, b)
        for name in ("generator", "occupancy", "acceptance"):
            kernels[name](ctx)
        assert reuse_truth(ctx, "acceptance") is not None
        assert reuse_truth(ctx, "efficiency") is None  # acceptance was the last sharer
        con.execute(f"UPDATE events SET n_tracks = n_tracks + 1 WHERE batch = {b.batch} AND event = 0")
        assert reuse_truth(ctx, "acceptance") is None  # the occupancy changed since
    store.close()
