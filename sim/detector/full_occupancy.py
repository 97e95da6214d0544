"""Occupancy of full events (Pythia, HepMC): a property of the event, not a GAN draw.

When the generator made the rest of the event (``events.n_interactions`` is set), the
occupancy pass counts instead of drawing:

* **PVs** (:func:`full_event_pvs`): an interaction is reconstructed as a PV when at
  least ``min_tracks`` (5) charged final-state particles in the VELO acceptance
  (2 < η < 5) come from within ``max_distance`` (1 mm) of it (model choice: a PV
  finder needs a handful of tracks; the LHCb finders seed with ≥ 4–5).  PV 0 (the
  signal's, or the first, interaction) is always kept, so every event has one.
  Positions are the MC vertex smeared with the PV resolution of the detector card
  at the PV's own track count (13 µm x/y, 69 µm z at 25 tracks, IJMPA 30 (2015)
  1530022); ``mc_vertex`` is the interaction's PV index.
* **nTracks**: first a provisional count (charged final-state particles with
  2 < η < 5 and p > 2 GeV, what the efficiency model sees), then, once the
  efficiency pass has made the tracks, :class:`TrackCount` sets it to the
  reconstructed Long + Downstream tracks, the LHCb ``nTracks`` definition
  (``mambah run --pythia/--hepmc`` inserts it right after the efficiency pass).

Units: MeV, mm.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from mambah.codes import NEUTRINOS, TrackType
from sim.core.pipeline import BatchContext, Kernel, Pass
from sim.core.registry import register_pass

__all__ = ("FULL_EVENT_SQL", "TrackCount", "full_event_occupancy", "full_event_pvs")

#: Charged final-state particles of the full events of a batch, with their origin.
FULL_EVENT_SQL = f"""
    SELECT p.event, p.px, p.py, p.pz, v.x, v.y, v.z
    FROM mc_particles AS p
    JOIN mc_vertices AS v ON v.batch = p.batch AND v.event = p.event AND v."index" = p.prod_vertex
    JOIN events AS e ON e.batch = p.batch AND e.event = p.event
    WHERE p.batch = $batch AND v.batch = $batch AND e.batch = $batch AND e.n_interactions IS NOT NULL
      AND coalesce(e.simulated, true) AND p.decay_vertex < 0 AND p.charge <> 0 AND coalesce(p.status, 1) = 1
      AND abs(p.pid) NOT IN ({", ".join(str(n) for n in NEUTRINOS)})
"""
_PV_SQL = """
    SELECT v.event, v."index", v.x, v.y, v.z
    FROM mc_vertices AS v JOIN events AS e ON e.batch = v.batch AND e.event = v.event
    WHERE v.batch = $batch AND e.batch = $batch AND e.n_interactions IS NOT NULL AND v."index" < e.n_interactions
      AND coalesce(e.simulated, true)
    ORDER BY v.event, v."index"
"""


def full_event_pvs(
    particles: dict[str, np.ndarray],
    pvs: dict[str, np.ndarray],
    rng: np.random.Generator,
    *,
    sigma_xy_25: float,
    sigma_z_25: float,
    min_tracks: int = 5,
    max_distance: float = 1.0,
    eta_range: tuple[float, float] = (2.0, 5.0),
    p_min: float = 2000.0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """nPV, provisional nTracks and reconstructed PVs of full events (pure, vectorised).

    Args:
        particles: charged final-state particles: ``event, px, py, pz`` [MeV], ``x, y, z`` origin [mm].
        pvs: MC primary vertices ``event, index, x, y, z`` [mm], sorted by (event, index).
        rng: randomness (PV smearing, chi2).
        sigma_xy_25, sigma_z_25: PV resolution [mm] at 25 tracks.
        min_tracks: in-acceptance tracks an interaction needs to be a reconstructed PV.
        max_distance: largest distance [mm] of a track's origin from its PV.
        eta_range: VELO / tracking acceptance in η.
        p_min: momentum [MeV] of the provisional nTracks count.

    Returns:
        ``events`` (sorted event numbers), ``n_pv``, ``n_tracks`` (provisional), and the
        ``vertices`` columns (no ``batch``) of the reconstructed PVs.
    """
    pe, pi = np.asarray(pvs["event"], np.int64), np.asarray(pvs["index"], np.int64)
    events, first = np.unique(pe, return_index=True)
    n_int = np.diff(np.r_[first, pe.size])
    ev_pos = np.searchsorted(events, np.asarray(particles["event"], np.int64))
    px, py, pz = (np.asarray(particles[k], np.float64) for k in ("px", "py", "pz"))
    pt = np.hypot(px, py)
    eta = np.arcsinh(pz / np.where(pt > 0, pt, 1e-9))
    acc = (eta > eta_range[0]) & (eta < eta_range[1])
    n_tracks = np.bincount(ev_pos[acc & (np.sqrt(pt**2 + pz**2) > p_min)], minlength=events.size)
    # each in-acceptance particle to the nearest PV of its event, if within max_distance
    ox, oy, oz = (np.asarray(particles[k], np.float64) for k in ("x", "y", "z"))
    best = np.full(ev_pos.size, np.inf)
    best_k = np.full(ev_pos.size, -1, np.int64)
    for k in range(int(n_int.max(initial=0))):
        has = k < n_int[ev_pos]
        row = first[ev_pos] + np.minimum(k, n_int[ev_pos] - 1)
        d = np.sqrt((ox - pvs["x"][row]) ** 2 + (oy - pvs["y"][row]) ** 2 + (oz - pvs["z"][row]) ** 2)
        better = has & (d < best)
        best[better], best_k[better] = d[better], k
    near = acc & (best < max_distance)
    ntrk_pv = np.zeros(pe.size, np.int64)
    np.add.at(ntrk_pv, first[ev_pos[near]] + best_k[near], 1)
    reco = (ntrk_pv >= min_tracks) | (pi == 0)
    n_pv = np.bincount(np.searchsorted(events, pe[reco]), minlength=events.size)
    ntrk = ntrk_pv[reco]
    scale = np.sqrt(25.0 / np.maximum(ntrk, 4))
    sxy, sz = sigma_xy_25 * scale, sigma_z_25 * scale
    n = int(reco.sum())
    ev_r = pe[reco]
    idx = np.arange(n) - np.repeat(np.cumsum(n_pv) - n_pv, n_pv)
    ndof = np.maximum(2 * ntrk - 3, 1)
    vertices = {
        "event": ev_r.astype(np.int32), "index": idx.astype(np.int32),
        "x": pvs["x"][reco] + sxy * rng.standard_normal(n), "y": pvs["y"][reco] + sxy * rng.standard_normal(n),
        "z": pvs["z"][reco] + sz * rng.standard_normal(n),
        "cov_xx": sxy**2, "cov_yy": sxy**2, "cov_zz": sz**2, "chi2": rng.chisquare(ndof).astype(np.float64),
        "ndof": ndof.astype(np.int32), "n_tracks": ntrk.astype(np.int32), "is_primary": np.ones(n, bool),
        "mc_vertex": pi[reco].astype(np.int32),
    }
    return events, n_pv, n_tracks, vertices


def full_event_occupancy(ctx: BatchContext, rng: np.random.Generator, card: Any) -> np.ndarray:
    """Fill ``events.n_pv``, provisional ``events.n_tracks`` and ``vertices`` for the batch's full events.

    Returns:
        The event numbers handled (empty when the batch holds gun events only).
    """
    from sim.detector.features import arrow_columns

    pvs = arrow_columns(ctx.query(_PV_SQL))
    if pvs["event"].size == 0:
        return np.zeros(0, np.int64)
    parts = arrow_columns(ctx.query(FULL_EVENT_SQL))
    events, n_pv, n_tracks, vertices = full_event_pvs(
        parts, pvs, rng, sigma_xy_25=card.pv_sigma_xy_25, sigma_z_25=card.pv_sigma_z_25
    )
    b = ctx.batch.batch
    ctx.update("events", {"batch": np.full(events.size, b, np.int32), "event": events.astype(np.int32),
                          "n_pv": n_pv.astype(np.int16), "n_tracks": n_tracks.astype(np.int32)}, keys=("batch", "event"))
    ctx.insert("vertices", {"batch": np.full(vertices["event"].size, b, np.int32), **vertices})
    return events


@register_pass
@dataclass(frozen=True)
class TrackCount(Pass):
    """``events.n_tracks`` of full events = their reconstructed Long + Downstream tracks.

    Gun events (``n_interactions`` NULL) keep the occupancy model's draw.
    """

    kind: ClassVar[str] = "track_count"
    reads: ClassVar[tuple[str, ...]] = ("events", "protoparticles")
    writes: ClassVar[tuple[str, ...]] = ("events.n_tracks",)

    name: str = "track_count"

    def build(self) -> Kernel:
        types = f"{int(TrackType.LONG)}, {int(TrackType.DOWNSTREAM)}"

        def kernel(ctx: BatchContext) -> None:
            b = int(ctx.batch.batch)
            ctx.con.execute(f"""
                UPDATE events AS e SET n_tracks = coalesce(c.n, 0)
                FROM (SELECT e2.event, t.n FROM events AS e2 LEFT JOIN (
                        SELECT event, count(*) AS n FROM protoparticles
                        WHERE batch = {b} AND track_type IN ({types}) GROUP BY event) AS t ON t.event = e2.event
                      WHERE e2.batch = {b} AND e2.n_interactions IS NOT NULL) AS c
                WHERE e.batch = {b} AND e.event = c.event""")

        return kernel
