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

The generator's side of the occupancy is checked against a published LHCb
measurement: :func:`fiducial_multiplicity` counts the prompt charged particles of an
event in the fiducial region of [MULT] (2.0 < η < 4.8, p > 2 GeV/c,
pT > 0.2 GeV/c), whose distribution in events with at least one such particle
is :data:`LHCB_7TEV_MULTIPLICITY` (:func:`multiplicity_summary` compares the two).

Sources:

* [MULT] LHCb collaboration, "Measurement of charged particle multiplicities and
  densities in pp collisions at √s = 7 TeV in the forward region", Eur. Phys. J. C 74
  (2014) 2888, arXiv:1402.4430; Fig. 3, HEPData ins1281685 Table 3 (values read from
  the Rivet reference file LHCB_2014_I1281685.yoda, d03-x01-y01).  Prompt: the paper
  counts particles whose ancestors' lifetimes sum to less than 10 ps (as remembered,
  unverified); here: no ancestor among the long-lived strange hadrons
  (:data:`LONG_LIVED_ANCESTORS`), so b- and c-hadron daughters count.

Units: MeV, mm.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from mambah.codes import NEUTRINOS, TrackType
from mambah.errors import DataError
from sim.core.pipeline import BatchContext, Kernel, Pass
from sim.core.registry import register_pass

__all__ = (
    "FULL_EVENT_SQL",
    "LHCB_7TEV_MULTIPLICITY",
    "LONG_LIVED_ANCESTORS",
    "TrackCount",
    "fiducial_multiplicity",
    "full_event_occupancy",
    "full_event_pvs",
    "multiplicity_summary",
)

#: [MULT] Fig. 3: P(n) x 10^3 of the prompt charged multiplicity n = 1 ... 50 in 2.0 < η < 4.8,
#: p > 2 GeV/c, pT > 0.2 GeV/c, events with n >= 1 (pp, 7 TeV), and its total uncertainty
#: (statistical and systematic in quadrature), as published.
LHCB_7TEV_MULTIPLICITY: dict[str, tuple[float, ...]] = {
    "p_1e3": (
        58.16, 69.99, 73.96, 72.36, 67.47, 61.15, 54.68, 48.73, 43.57, 39.20, 35.52, 32.39, 29.68, 27.28, 25.13,
        23.16, 21.35, 19.67, 18.11, 16.65, 15.29, 14.03, 12.85, 11.76, 10.74, 9.80, 8.94, 8.13, 7.40, 6.72, 6.09,
        5.52, 4.99, 4.51, 4.07, 3.67, 3.31, 2.98, 2.67, 2.40, 2.15, 1.93, 1.73, 1.54, 1.38, 1.23, 1.10, 0.98, 0.87, 0.77,
    ),
    "err_1e3": (
        13.94, 9.22, 4.50, 2.97, 4.18, 3.20, 1.68, 1.43, 1.45, 1.50, 1.26, 0.918, 0.725, 0.690, 0.712, 0.712, 0.685,
        0.680, 0.671, 0.681, 0.713, 0.758, 0.784, 0.819, 0.850, 0.881, 0.895, 0.899, 0.894, 0.881, 0.859, 0.841, 0.805,
        0.760, 0.720, 0.680, 0.640, 0.595, 0.564, 0.519, 0.483, 0.447, 0.421, 0.380, 0.336, 0.318, 0.300, 0.268, 0.251,
        0.233,
    ),
}  # fmt: skip
#: Long-lived (τ > 10 ps) strange hadrons whose descendants are not prompt in [MULT]: K0S, K0L, Λ, Σ+, Σ-, Ξ0, Ξ-, Ω-.
LONG_LIVED_ANCESTORS: tuple[int, ...] = (310, 130, 3122, 3222, 3112, 3322, 3312, 3334)
#: Multiplicity bins of :func:`multiplicity_summary` (inclusive).
MULTIPLICITY_BINS: tuple[tuple[int, int], ...] = ((1, 5), (6, 10), (11, 20), (21, 50))

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


def fiducial_multiplicity(
    particles: dict[str, np.ndarray],
    *,
    eta_range: tuple[float, float] = (2.0, 4.8),
    p_min: float = 2000.0,
    pt_min: float = 200.0,
) -> np.ndarray:
    """Prompt charged particles of each event in LHCb's fiducial region of [MULT] (pure, vectorised).

    Args:
        particles: ``mc_particles`` columns of whole events sorted by (event, index), events
            numbered 0 … n-1: ``event, pid, charge, px, py, pz`` [MeV], ``mother``, ``decay_vertex``.
        eta_range: pseudorapidity window.
        p_min, pt_min: momentum and transverse momentum thresholds [MeV].

    Returns:
        ``(n_events,)`` int64 counts: stable (``decay_vertex < 0``) charged particles in the
        window with no ancestor in :data:`LONG_LIVED_ANCESTORS`.
    """
    ev = np.asarray(particles["event"], np.int64)
    n_ev = int(ev.max()) + 1 if ev.size else 0
    counts = np.bincount(ev, minlength=n_ev)
    base = (np.cumsum(counts) - counts)[ev]
    mother = np.asarray(particles["mother"], np.int64)
    long_lived = np.isin(np.abs(np.asarray(particles["pid"], np.int64)), LONG_LIVED_ANCESTORS)
    non_prompt = np.zeros(ev.size, bool)
    cur = mother.copy()
    while np.any(cur >= 0):  # walk up the mothers: one step per generation
        has = cur >= 0
        row = base + np.maximum(cur, 0)
        non_prompt |= has & long_lived[row]
        cur = np.where(has, mother[row], -1)
    px, py, pz = (np.asarray(particles[k], np.float64) for k in ("px", "py", "pz"))
    pt = np.hypot(px, py)
    eta = np.arcsinh(pz / np.where(pt > 0, pt, 1e-9))
    fid = (
        (np.asarray(particles["decay_vertex"]) < 0) & (np.asarray(particles["charge"]) != 0) & ~non_prompt
        & (eta > eta_range[0]) & (eta < eta_range[1]) & (np.hypot(pt, pz) > p_min) & (pt > pt_min)
    )
    return np.bincount(ev[fid], minlength=n_ev).astype(np.int64)


def multiplicity_summary(counts: np.ndarray) -> dict[str, tuple[float, float, float, float]]:
    """Fiducial multiplicities of events compared with [MULT] (events with 1 … 50 particles, as published).

    Args:
        counts: ``(n_events,)`` from :func:`fiducial_multiplicity`.

    Returns:
        ``{"mean": ..., "P(1-5)": ..., ...}`` (bins :data:`MULTIPLICITY_BINS`), each
        ``(simulated, its statistical error, published, published uncertainty)``.  The
        published uncertainties are taken fully correlated across n (conservative:
        the systematic ones are).
    """
    p = np.asarray(LHCB_7TEV_MULTIPLICITY["p_1e3"]) / 1e3
    err = np.asarray(LHCB_7TEV_MULTIPLICITY["err_1e3"]) / 1e3
    n = np.arange(1, p.size + 1)
    norm = p.sum()
    mean = float((n * p).sum() / norm)
    c = np.asarray(counts, np.int64)
    c = c[(c >= 1) & (c <= p.size)]
    if c.size < 2:
        raise DataError(f"multiplicity_summary needs at least 2 events with 1 to {p.size} particles, got {c.size}")
    out = {"mean": (float(c.mean()), float(c.std(ddof=1) / np.sqrt(c.size)), mean, float(np.abs((n - mean) / norm * err).sum()))}
    for lo, hi in MULTIPLICITY_BINS:
        sel = (n >= lo) & (n <= hi)
        f = float(np.mean((c >= lo) & (c <= hi)))
        out[f"P({lo}-{hi})"] = (f, float(np.sqrt(f * (1 - f) / c.size)), float(p[sel].sum() / norm), float(err[sel].sum() / norm))
    return out


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
    concurrent: ClassVar[bool] = True
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
