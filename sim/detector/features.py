"""Shared truth inputs of the detector passes: the truth query and the feature builder.

The acceptance, efficiency and resolution passes all start from the same truth:
final-state charged particles of ``mc_particles`` (neutrinos excluded) joined with
their production vertex (``mc_vertices`` on ``prod_vertex``), the primary vertex of
their own interaction (in full events with pile-up the interaction's PV, found through
the mother links; else the event's) and the occupancy (``events``).  The SQL lives here once (:func:`truth_sql`), as does
the pure-numpy feature builder (:func:`truth_features`) that the passes, the reference
sample writer (:mod:`sim.reference.sample`) and the trainers share, so a model always
sees the features it was trained on.

Units: MeV, mm; ``log10_p`` is log10(p / MeV).
"""

from __future__ import annotations

import weakref
from collections.abc import Mapping
from typing import Any

import numpy as np

from mambah import kinematics
from mambah.codes import NEUTRINOS, TRACK_TYPES
from sim.core.modelio import check_inputs_finite

__all__ = (
    "INTERACTION_PV_COLUMNS",
    "INTERACTION_PV_CTE",
    "INTERACTION_PV_JOIN",
    "TRACK_TYPES",
    "interaction_pvs",
    "TRUTH_COLUMNS",
    "truth_sql",
    "truth_features",
    "forward_mask",
    "query_truth",
    "arrow_columns",
    "add_derived",
)

#: Columns returned by :func:`truth_sql` (plus ``in_acceptance`` when asked).
TRUTH_COLUMNS: tuple[str, ...] = (
    "event", "mc_index", "pid", "charge", "px", "py", "pz", "e",
    "origin_x", "origin_y", "origin_z", "pv_x", "pv_y", "pv_z", "n_tracks",
)  # fmt: skip

_NEUTRINOS = ", ".join(str(n) for n in NEUTRINOS)

#: The PV of each particle's own interaction in events with pile-up (``n_interactions > 1``),
#: as a CTE over the relation ``_interaction_pvs`` that :func:`query_truth` registers for the
#: batch (:func:`interaction_pvs`: down the mother links from the particles without mother,
#: beams and prompt particles, whose production vertex is their interaction's PV).  Join it
#: with :data:`INTERACTION_PV_JOIN` (``p`` = ``mc_particles``, ``e`` = ``events``) and select
#: :data:`INTERACTION_PV_COLUMNS`; events with one interaction keep ``events.pv_*``.
INTERACTION_PV_CTE = "WITH _ipv AS (SELECT event, idx, x, y, z FROM _interaction_pvs)"
_IPV_RELATION = "_interaction_pvs"
_ANCESTRY_SQL = """
    SELECT p.event, p."index" AS idx, p.mother, p.prod_vertex
    FROM mc_particles AS p JOIN events AS e ON e.batch = p.batch AND e.event = p.event
    WHERE p.batch = $batch AND e.batch = $batch AND e.n_interactions > 1
    ORDER BY p.event, p."index"
"""
_PILEUP_PV_SQL = """
    SELECT v.event, v."index" AS idx, v.x, v.y, v.z
    FROM mc_vertices AS v JOIN events AS e ON e.batch = v.batch AND e.event = v.event
    WHERE v.batch = $batch AND e.batch = $batch AND e.n_interactions > 1 AND v."index" < e.n_interactions
    ORDER BY v.event, v."index"
"""
INTERACTION_PV_JOIN = 'LEFT JOIN _ipv ON _ipv.event = p.event AND _ipv.idx = p."index"'
INTERACTION_PV_COLUMNS = "coalesce(_ipv.x, e.pv_x) AS pv_x, coalesce(_ipv.y, e.pv_y) AS pv_y, coalesce(_ipv.z, e.pv_z) AS pv_z"


def truth_sql(*, with_acceptance: bool = False, accepted_only: bool = False) -> str:
    """SQL of the truth inputs of one batch: final-state charged particles, not neutrinos.

    Args:
        with_acceptance: also select ``mc_particles.in_acceptance``.
        accepted_only: keep only particles with ``in_acceptance`` true.

    Returns:
        SQL text with ``$batch`` placeholders; rows ordered by (event, mc_index).
        ``pv_x/y/z`` is the PV of the particle's own interaction (:data:`INTERACTION_PV_CTE`).
        ``n_tracks`` is 0 where the occupancy pass has not filled it.
        Events skipped by the preselect pass (``events.simulated = false``) are left out.
    """
    extra = ", p.in_acceptance" if with_acceptance else ""
    cut = " AND p.in_acceptance" if accepted_only else ""
    return f"""
        {INTERACTION_PV_CTE}
        SELECT p.event, p."index" AS mc_index, p.pid, p.charge, p.px, p.py, p.pz, p.e,
               v.x AS origin_x, v.y AS origin_y, v.z AS origin_z,
               {INTERACTION_PV_COLUMNS}, coalesce(e.n_tracks, 0) AS n_tracks{extra}
        FROM mc_particles AS p
        JOIN mc_vertices AS v ON v.batch = p.batch AND v.event = p.event AND v."index" = p.prod_vertex
        JOIN events AS e ON e.batch = p.batch AND e.event = p.event
        {INTERACTION_PV_JOIN}
        WHERE p.batch = $batch AND v.batch = $batch AND e.batch = $batch
          AND p.decay_vertex < 0 AND p.charge <> 0 AND abs(p.pid) NOT IN ({_NEUTRINOS}){cut}
          AND coalesce(e.simulated, true)
        ORDER BY p.event, p."index"
    """


def interaction_pvs(particles: Mapping[str, np.ndarray], pvs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The PV of each particle's own interaction (pure, vectorised: pointer doubling up the mothers).

    Args:
        particles: every particle of the events, sorted by (event, index), indices 0 … n-1 per
            event: ``event, idx, mother, prod_vertex``.
        pvs: the events' primary vertices ``event, idx, x, y, z`` [mm] (index < n_interactions).

    Returns:
        ``event, idx`` (int32) and ``x, y, z`` [mm] of the PV of the interaction each
        particle comes from: the production vertex of its ancestor without mother.

    Raises:
        DataError: a top ancestor's production vertex is not a PV of its event.
    """
    from mambah.errors import DataError

    ev = np.asarray(particles["event"], np.int64)
    n = ev.size
    counts = np.bincount(ev) if n else np.zeros(0, np.int64)
    base = (np.cumsum(counts) - counts)[ev] if n else ev
    mother = np.asarray(particles["mother"], np.int64)
    up = np.where(mother >= 0, base + np.maximum(mother, 0), np.arange(n))
    for _ in range(64):  # up[i] jumps 1, 2, 4, ... generations: log2(depth) rounds
        nxt = up[up]
        if np.array_equal(nxt, up):
            break
        up = nxt
    pv_index = np.asarray(particles["prod_vertex"], np.int64)[up]
    pe, pi = np.asarray(pvs["event"], np.int64), np.asarray(pvs["idx"], np.int64)
    width = int(max(pi.max(initial=0), pv_index.max(initial=0))) + 1
    keys = pe * width + pi
    want = ev * width + pv_index
    row = np.minimum(np.searchsorted(keys, want), max(keys.size - 1, 0))
    if n and (keys.size == 0 or np.any(keys[row] != want)):
        bad = int(np.flatnonzero((keys[row] != want) if keys.size else np.ones(n, bool))[0])
        raise DataError(f"particle {int(particles['idx'][bad])} of event {int(ev[bad])} comes from vertex {int(pv_index[bad])}, not a PV of its event")
    return {
        "event": ev.astype(np.int32), "idx": np.asarray(particles["idx"]).astype(np.int32),
        "x": np.asarray(pvs["x"], np.float64)[row] if n else np.zeros(0), "y": np.asarray(pvs["y"], np.float64)[row] if n else np.zeros(0),
        "z": np.asarray(pvs["z"], np.float64)[row] if n else np.zeros(0),
    }


def _arrow_to_numpy(table: Any) -> dict[str, np.ndarray]:
    """Arrow table → dict of 1-D numpy arrays (no nulls expected)."""
    return {name: table.column(name).to_numpy(zero_copy_only=False) for name in table.column_names}


def truth_features(truth: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Model features of particles from their truth (pure, vectorised).

    Args:
        truth: 1-D arrays of length n: ``px, py, pz`` (MeV), ``charge`` (e),
            ``origin_x/y/z`` and ``pv_x/y/z`` (mm), ``n_tracks``.

    Returns:
        Dict of float64 arrays of length n: ``p, pt`` (MeV), ``log10_p, log10_pt``,
        ``eta, phi``, ``tx_true, ty_true`` (slopes), ``charge``, ``origin_x/y/z``,
        ``origin_rho`` (transverse distance of the origin from the beam line through the
        PV, mm), ``origin_dz`` (origin z − PV z, mm), ``n_tracks``.
    """
    px, py, pz = (np.asarray(truth[k], dtype=np.float64) for k in ("px", "py", "pz"))
    pt = np.hypot(px, py)
    p = np.sqrt(pt * pt + pz * pz)
    safe_pt = np.where(pt > 0, pt, 1e-9)
    safe_pz = np.where(pz != 0, pz, 1e-9)
    ox, oy, oz = (np.asarray(truth[k], dtype=np.float64) for k in ("origin_x", "origin_y", "origin_z"))
    pvx, pvy, pvz = (np.asarray(truth[k], dtype=np.float64) for k in ("pv_x", "pv_y", "pv_z"))
    return {
        "p": p,
        "pt": pt,
        "log10_p": np.log10(np.maximum(p, 1e-9)),
        "log10_pt": np.log10(safe_pt),
        "eta": kinematics.eta(px, py, pz),
        "phi": np.arctan2(py, px),
        "tx_true": px / safe_pz,
        "ty_true": py / safe_pz,
        "charge": np.asarray(truth["charge"], dtype=np.float64),
        "origin_x": ox,
        "origin_y": oy,
        "origin_z": oz,
        "origin_rho": np.hypot(ox - pvx, oy - pvy),
        "origin_dz": oz - pvz,
        "n_tracks": np.asarray(truth["n_tracks"], dtype=np.float64),
    }


def forward_mask(features: Mapping[str, np.ndarray], eta_min: float, eta_max: float) -> np.ndarray:
    """``pz > 0`` and ``eta_min < η < eta_max``: the geometric window of the detector (bool, (n,))."""
    eta = features["eta"]
    return (eta > eta_min) & (eta < eta_max)


_TRUTH_FLOATS = ("px", "py", "pz", "origin_x", "origin_y", "origin_z", "pv_x", "pv_y", "pv_z")


def query_truth(ctx: Any, sql: str, where: str) -> dict[str, np.ndarray]:
    """Run a truth query in a batch and check its kinematics and vertices are finite.

    A query joining :data:`INTERACTION_PV_CTE` gets the batch's interaction PVs registered first.

    Raises:
        DataError: naming the pass, the column and the batch when a value is NaN or inf.
    """
    if _IPV_RELATION in sql:  # the interaction PVs of the batch's pile-up events, for the query's join
        ctx.con.register(_IPV_RELATION, _batch_interaction_pvs(ctx))
        try:
            truth = _arrow_to_numpy(ctx.query(sql))
        finally:
            ctx.con.unregister(_IPV_RELATION)
    else:
        truth = _arrow_to_numpy(ctx.query(sql))
    present = [c for c in _TRUTH_FLOATS if c in truth]
    check_inputs_finite(truth, present, f"{where}, batch {ctx.batch.batch}")
    return truth


_IPV_STAMP_SQL = """
    SELECT (SELECT count(*) FROM mc_particles WHERE batch = $batch) AS n_particles,
           (SELECT count(*) FROM mc_vertices WHERE batch = $batch) AS n_vertices,
           (SELECT count(*) FROM events WHERE batch = $batch AND n_interactions > 1) AS n_pileup
"""
_IPV_CACHE: weakref.WeakKeyDictionary[Any, tuple[tuple[int, ...], Any]] = weakref.WeakKeyDictionary()


def _batch_interaction_pvs(ctx: Any) -> Any:
    """The Arrow table of :func:`interaction_pvs` for the batch of ``ctx``, made once per batch context.

    The acceptance and resolution passes both join it (two ancestry queries and pointer
    doublings of every particle of the batch, ≈ 56 CPU ms per 500 full bb̄ events); it is
    kept with the context and reused while the batch's counts of particles, vertices and
    pile-up events are those it was made from (no pass of the default chain changes
    mother links or vertices; a pass that adds particles or vertices makes it anew).
    """
    import pyarrow as pa

    row = ctx.query(_IPV_STAMP_SQL).to_pylist()[0]
    stamp = (int(ctx.batch.batch), *(int(row[k] or 0) for k in ("n_particles", "n_vertices", "n_pileup")))
    try:
        hit = _IPV_CACHE.get(ctx)
    except TypeError:  # a context that cannot be weakly referenced: nothing is kept
        hit = None
    if hit is not None and hit[0] == stamp:
        return hit[1]
    table = pa.table(interaction_pvs(_arrow_to_numpy(ctx.query(_ANCESTRY_SQL)), _arrow_to_numpy(ctx.query(_PILEUP_PV_SQL))))
    try:
        _IPV_CACHE[ctx] = (stamp, table)
    except TypeError:
        pass
    return table


def arrow_columns(table: Any) -> dict[str, np.ndarray]:
    """Arrow table → dict of 1-D numpy arrays."""
    return _arrow_to_numpy(table)


def add_derived(data: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Add the one-hot track-type flags ``is_long, is_upstream, is_downstream`` if ``track_type`` is there."""
    if "track_type" in data:
        tt = np.asarray(data["track_type"])
        data = {**data, "is_long": (tt == 3).astype(np.float64), "is_upstream": (tt == 4).astype(np.float64),
                "is_downstream": (tt == 5).astype(np.float64)}
    return data



