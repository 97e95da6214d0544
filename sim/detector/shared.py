"""One truth query per batch, shared by the acceptance, efficiency and resolution passes.

The acceptance pass queries the truth of the batch's final-state charged particles
(:func:`sim.detector.features.truth_sql`) and builds their features once; the
efficiency pass takes them (with the acceptance flags just drawn) and the resolution
pass the rows of the reconstructed tracks, instead of joining ``mc_particles``,
``mc_vertices`` and ``events`` again: two of the three joins and feature builds of a
batch are saved, with the same numbers (the same rows in the same order).

A pass reuses the entry only if the previous sharer was the last to write and the
store still shows the counts it left (:func:`store_stamp`); a pass between them that
changes the acceptance flags, the occupancy, the skipped events or the tracks makes
the next sharer query again.  Entries live as long as the batch's context.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import Any

import numpy as np

from sim.detector.features import query_truth, truth_features, truth_sql

__all__ = ("SharedTruth", "shared_truth", "reuse_truth", "store_stamp")


@dataclass
class SharedTruth:
    """The truth of a batch's final-state charged particles, queried once and shared by the detector passes.

    The acceptance pass queries :func:`truth_sql` and builds :func:`truth_features`
    once; it records its drawn flags in ``in_acceptance``, the efficiency pass its
    track types in ``track_type`` (rows in :func:`truth_sql` order), and the next pass
    takes the rows from here instead of joining ``mc_particles``, ``mc_vertices`` and
    ``events`` again (the resolution pass: the rows with ``track_type > 0``, in the
    order of its own query).  ``stamp`` is :func:`store_stamp` after the last
    recorded write: a pass reuses the entry only if the store still shows that stamp
    (another pass in between that changed the acceptance flags, the occupancy or the
    tracks makes it query again).

    Attributes:
        batch: the batch number.
        truth: :data:`TRUTH_COLUMNS` arrays, ``(n,)``.
        features: :func:`truth_features` of ``truth``.
        in_acceptance: ``(n,)`` bool once the acceptance pass has written it.
        track_type: ``(n,)`` int16 codes (0 = not reconstructed) once the efficiency pass has.
        stamp: the store's :func:`store_stamp` after the last of those writes.
    """

    batch: int
    truth: dict[str, np.ndarray]
    features: dict[str, np.ndarray]
    in_acceptance: np.ndarray | None = None
    track_type: np.ndarray | None = None
    stamp: tuple[int, ...] | None = None


_SHARED: weakref.WeakKeyDictionary[Any, SharedTruth] = weakref.WeakKeyDictionary()

_STAMP_SQL = """
    SELECT (SELECT count(*) FROM mc_particles WHERE batch = $batch) AS n_particles,
           (SELECT count(*) FROM mc_particles WHERE batch = $batch AND in_acceptance) AS n_accepted,
           (SELECT coalesce(sum(n_tracks), 0) FROM events WHERE batch = $batch) AS n_tracks,
           (SELECT count(*) FROM events WHERE batch = $batch AND NOT coalesce(simulated, true)) AS n_skipped,
           (SELECT count(*) FROM protoparticles WHERE batch = $batch) AS n_proto
"""


def store_stamp(ctx: Any) -> tuple[int, ...]:
    """Counts of the batch that a pass between two sharers would change: particles, accepted, Σ nTracks, skipped events, tracks."""
    row = ctx.query(_STAMP_SQL).to_pylist()[0]
    return tuple(int(row[k] or 0) for k in ("n_particles", "n_accepted", "n_tracks", "n_skipped", "n_proto"))


def shared_truth(ctx: Any, where: str, sql: str | None = None) -> SharedTruth:
    """Query the batch's truth (``sql``, default :func:`truth_sql`), build its features and keep them for the later passes."""
    truth = query_truth(ctx, sql or truth_sql(), where)
    entry = SharedTruth(int(ctx.batch.batch), truth, truth_features(truth))
    try:
        _SHARED[ctx] = entry
    except TypeError:  # a context that cannot be weakly referenced: nothing is shared
        pass
    return entry


def reuse_truth(ctx: Any, stage: str) -> SharedTruth | None:
    """The batch's :class:`SharedTruth` if ``stage`` (``"acceptance"`` or ``"efficiency"``) was its last write and the store still shows it."""
    try:
        entry = _SHARED.get(ctx)
    except TypeError:
        return None
    if entry is None or entry.batch != int(ctx.batch.batch) or entry.stamp is None:
        return None
    last = "efficiency" if entry.track_type is not None else "acceptance" if entry.in_acceptance is not None else ""
    if last != stage or store_stamp(ctx) != entry.stamp:
        return None
    return entry
