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

#: The PV of each particle's own interaction in events with pile-up (``n_interactions > 1``):
#: a ``WITH RECURSIVE`` clause walking down from the particles without mother (beams and
#: prompt particles, whose production vertex is their interaction's PV) to every descendant.
#: Join it with :data:`INTERACTION_PV_JOIN` (``p`` = ``mc_particles``, ``e`` = ``events``) and
#: select :data:`INTERACTION_PV_COLUMNS`; events with one interaction keep ``events.pv_*``.
INTERACTION_PV_CTE = """
    WITH RECURSIVE _top(event, idx, pv) AS (
        SELECT p.event, p."index", p.prod_vertex
        FROM mc_particles AS p JOIN events AS e ON e.batch = p.batch AND e.event = p.event
        WHERE p.batch = $batch AND e.batch = $batch AND e.n_interactions > 1 AND p.mother < 0
      UNION ALL
        SELECT c.event, c."index", t.pv
        FROM _top AS t JOIN mc_particles AS c ON c.batch = $batch AND c.event = t.event AND c.mother = t.idx
    ),
    _ipv AS (
        SELECT t.event, t.idx, w.x, w.y, w.z
        FROM _top AS t JOIN mc_vertices AS w ON w.batch = $batch AND w.event = t.event AND w."index" = t.pv
    )
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

    Raises:
        DataError: naming the pass, the column and the batch when a value is NaN or inf.
    """
    truth = _arrow_to_numpy(ctx.query(sql))
    present = [c for c in _TRUTH_FLOATS if c in truth]
    check_inputs_finite(truth, present, f"{where}, batch {ctx.batch.batch}")
    return truth


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


