"""Training and validation samples: generator + reference detector → Parquet.

One row per final-state charged particle (neutrinos excluded), the particles the fast
detector passes see.  Columns:

* truth: ``event, mc_index, pid, charge, px, py, pz, e`` (MeV), ``origin_x/y/z``,
  ``pv_x/y/z`` (mm), ``n_pv, n_tracks`` (reference occupancy of the event);
* features (:func:`sim.core.modelio.truth_features`): ``p, pt, log10_p, log10_pt,
  eta, phi, tx_true, ty_true, origin_rho, origin_dz``, and ``forward`` (inside the
  η window of the passes);
* reference response (:func:`sim.reference.tracking.simulate_tracking`):
  ``in_acceptance, reconstructed, track_type, track_class`` (0 none, 1 Long,
  2 Upstream, 3 Downstream), ``reco_px/py/pz, tx, ty, x, y, z, ip, ip_chi2,
  track_chi2ndof, ghost_prob``;
* resolution targets (:func:`sim.detector.resolution.residual_targets`).

Float outputs are 0 (not NaN) where the particle is not reconstructed, so that the
readers' NaN checks stay meaningful; select rows with ``reconstructed``.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from mambah.errors import ConfigError

__all__ = ("make_reference_sample", "reference_sample_arrays")

log = logging.getLogger(__name__)


def reference_sample_arrays(
    n_events: int,
    seed: int,
    *,
    decay: str | None = None,
    run: str = "run2",
) -> dict[str, np.ndarray]:
    """Generate ``n_events`` events and pass their charged final-state particles through the reference detector.

    Args:
        n_events: number of events.
        seed: seed of everything (generator, occupancy, tracking).
        decay: decay descriptor; default the default job's decay.
        run: occupancy preset of :class:`sim.reference.occupancy.OccupancyConfig`.

    Returns:
        Column name → 1-D array (see the module docstring).
    """
    from sim.detector.acceptance import Acceptance
    from sim.detector.features import TRACK_TYPES, forward_mask, truth_features
    from sim.detector.resolution import residual_targets
    from sim.generation.decay import load_decay
    from sim.generation.generator import DEFAULT_DECAY, generate_tables
    from sim.reference.occupancy import OccupancyConfig, simulate_occupancy
    from sim.reference.tracking import simulate_tracking

    if isinstance(n_events, bool) or not isinstance(n_events, (int, np.integer)) or n_events < 1:
        raise ConfigError(f"n_events must be a positive integer, got {n_events!r}")
    ss = np.random.SeedSequence(int(seed))
    rng_gen, rng_occ, rng_trk = (np.random.default_rng(s) for s in ss.spawn(3))
    model = load_decay(decay or DEFAULT_DECAY)
    tables = generate_tables(model, int(n_events), rng_gen)
    parts = tables["mc_particles"].to_pandas()
    verts = tables["mc_vertices"].to_pandas()
    events = tables["events"].to_pandas()
    occ = simulate_occupancy(int(n_events), rng_occ, OccupancyConfig(run=run))

    keep = (parts["decay_vertex"].to_numpy() < 0) & (parts["charge"].to_numpy() != 0) & ~np.isin(
        np.abs(parts["pid"].to_numpy()), (12, 14, 16)
    )
    parts = parts[keep]
    ev = parts["event"].to_numpy()
    # mc_vertices is sorted by (event, index) with indices 0..k-1 in each event
    first_vertex = np.searchsorted(verts["event"].to_numpy(), ev)
    origin = verts.iloc[first_vertex + parts["prod_vertex"].to_numpy()]
    truth: dict[str, np.ndarray] = {
        "event": ev.astype(np.int32),
        "mc_index": parts["index"].to_numpy().astype(np.int32),
        "pid": parts["pid"].to_numpy().astype(np.int64),
        "charge": parts["charge"].to_numpy().astype(np.float64),
        "px": parts["px"].to_numpy(),
        "py": parts["py"].to_numpy(),
        "pz": parts["pz"].to_numpy(),
        "e": parts["e"].to_numpy(),
        "origin_x": origin["x"].to_numpy(),
        "origin_y": origin["y"].to_numpy(),
        "origin_z": origin["z"].to_numpy(),
        "pv_x": events["pv_x"].to_numpy()[ev],
        "pv_y": events["pv_y"].to_numpy()[ev],
        "pv_z": events["pv_z"].to_numpy()[ev],
        "n_pv": occ["n_pv"][ev],
        "n_tracks": occ["n_tracks"][ev],
    }
    ref = simulate_tracking(truth, rng_trk)
    feats = truth_features(truth)
    acc = Acceptance()
    out: dict[str, np.ndarray] = {**truth, **{k: v for k, v in feats.items() if k not in truth}}
    out["forward"] = forward_mask(feats, float(acc.eta_min), float(acc.eta_max))  # type: ignore[arg-type]
    out["in_acceptance"] = ref["in_acceptance"]
    out["track_type"] = ref["track_type"].astype(np.int16)
    out["track_class"] = np.searchsorted(TRACK_TYPES, ref["track_type"]).astype(np.int16)
    for key in ("reco_px", "reco_py", "reco_pz", "tx", "ty", "x", "y", "z", "ip", "ip_chi2",
                "track_chi2ndof", "ghost_prob"):
        out[key] = np.where(ref["reconstructed"], ref[key], 0.0)
    out["reconstructed"] = ref["reconstructed"]
    out.update(residual_targets(feats, truth, ref))
    log.info("reference sample: %d events, %d particles, %d reconstructed", n_events, ev.size,
             int(ref["reconstructed"].sum()))
    return out


def make_reference_sample(
    path: str | Path,
    n_events: int,
    seed: int,
    *,
    decay: str | None = None,
    run: str = "run2",
) -> Path:
    """Write :func:`reference_sample_arrays` to a Parquet file ``path``; returns the path."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    arrays = reference_sample_arrays(n_events, seed, decay=decay, run=run)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(arrays), path)
    log.info("wrote %s", path)
    return path
