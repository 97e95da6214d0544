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
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from mambah.errors import ConfigError

__all__ = ("DISPLACED_DECAYS", "PROMPT", "TRAINING_MIX", "make_reference_sample", "reference_sample_arrays")

log = logging.getLogger(__name__)


#: Name of the prompt-gun component of a sample mix (see :func:`reference_sample_arrays`).
PROMPT = "prompt"

#: Decays with long-lived daughters: K_S0 and Λ fly 0.1-3 m before they decay
#: (:mod:`sim.generation.decay`), so their daughters are born where VELO tracks are
#: rare and Downstream (TT + T) tracks common.
DISPLACED_DECAYS: tuple[str, ...] = (
    "B0 -> (J/psi -> mu+ mu-) (K_S0 -> pi+ pi-)",
    "Lambda_b0 -> (J/psi -> mu+ mu-) (Lambda0 -> p+ pi-)",
)

#: The mix of the shipped detector models' training sample
#: (``scripts/train_detector_models.py``): fraction of the events per component, the
#: rest the default (or given) decay.  The default Λb0 → Λc+ μ− ν̄ decay has
#: essentially prompt origins (a few mm from the PV), so without the displaced decays
#: the acceptance and efficiency classifiers, which take the origin as input, would
#: extrapolate for K_S0/Λ daughters (measured: Downstream 0.7 % fast vs 27 % reference
#: for the K_S0 daughters of B0 → J/ψ K_S0); the prompt gun covers origins at the PV
#: and the momentum range of the published tracking figures (2-300 GeV, log-uniform).
TRAINING_MIX: tuple[tuple[str, float], ...] = (
    (DISPLACED_DECAYS[0], 0.2),
    (DISPLACED_DECAYS[1], 0.2),
    (PROMPT, 0.1),
)

_PROMPT_SPECIES = np.array([211, 321, 2212, 13, 11], dtype=np.int64)
_PROMPT_PER_EVENT = 4


def _decay_truth(decay: str, n_events: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Charged final-state particles of ``n_events`` generated events of ``decay`` (event numbers from 0)."""
    from sim.generation.decay import load_decay
    from sim.generation.generator import generate_tables

    tables = generate_tables(load_decay(decay), int(n_events), rng)
    parts = tables["mc_particles"].to_pandas()
    verts = tables["mc_vertices"].to_pandas()
    events = tables["events"].to_pandas()
    keep = (parts["decay_vertex"].to_numpy() < 0) & (parts["charge"].to_numpy() != 0) & ~np.isin(
        np.abs(parts["pid"].to_numpy()), (12, 14, 16)
    )
    parts = parts[keep]
    ev = parts["event"].to_numpy()
    # mc_vertices is sorted by (event, index) with indices 0..k-1 in each event
    first_vertex = np.searchsorted(verts["event"].to_numpy(), ev)
    origin = verts.iloc[first_vertex + parts["prod_vertex"].to_numpy()]
    return {
        "event": ev.astype(np.int64),
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
    }


def _prompt_truth(n_events: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """A prompt gun: 4 charged particles per event born at the event's PV (luminous region).

    Species uniform among π, K, p, μ, e (charge ±1 with equal probability), log-uniform
    2 < p < 300 GeV, uniform 1.8 < η < 5.2 (the η window and a margin) and φ.
    """
    from particle import Particle

    from sim.generation.beam import sample_primary_vertices

    n = int(n_events) * _PROMPT_PER_EVENT
    pv = sample_primary_vertices(int(n_events), rng)
    ev = np.repeat(np.arange(int(n_events), dtype=np.int64), _PROMPT_PER_EVENT)
    kind = rng.integers(0, _PROMPT_SPECIES.size, n)
    species = _PROMPT_SPECIES[kind]
    charge = rng.choice(np.array([-1.0, 1.0]), n)
    # PDG sign: positive ids are the positive hadrons and the negative leptons
    pid = np.where(np.isin(species, (11, 13)), -charge, charge).astype(np.int64) * species
    m = np.array([float(Particle.from_pdgid(int(s)).mass or 0.0) for s in _PROMPT_SPECIES])[kind]
    p = np.exp(rng.uniform(np.log(2e3), np.log(3e5), n))
    eta = rng.uniform(1.8, 5.2, n)
    phi = rng.uniform(-np.pi, np.pi, n)
    pt = p / np.cosh(eta)
    x, y, z = (pv[f"pv_{a}"][ev] for a in "xyz")
    return {
        "event": ev,
        "mc_index": np.tile(np.arange(_PROMPT_PER_EVENT, dtype=np.int32), int(n_events)),
        "pid": pid, "charge": charge,
        "px": pt * np.cos(phi), "py": pt * np.sin(phi), "pz": pt * np.sinh(eta),
        "e": np.sqrt(p * p + m * m),
        "origin_x": x, "origin_y": y, "origin_z": z, "pv_x": x, "pv_y": y, "pv_z": z,
    }


def _check_mix(mix: Sequence[tuple[str, float]]) -> list[tuple[str, float]]:
    out = []
    for item in mix:
        if not (isinstance(item, (tuple, list)) and len(item) == 2 and isinstance(item[0], str)):
            raise ConfigError(f"sample mix entry {item!r}; expected (decay descriptor or {PROMPT!r}, fraction)")
        name, frac = item[0], item[1]
        if isinstance(frac, bool) or not isinstance(frac, (int, float)) or not 0.0 <= float(frac) < 1.0:
            raise ConfigError(f"sample mix fraction of {name!r} is {frac!r}; expected a number in [0, 1)")
        out.append((name, float(frac)))
    total = sum(f for _, f in out)
    if total >= 1.0:
        raise ConfigError(f"sample mix fractions sum to {total:g}; expected below 1 (the rest is the main decay)")
    return out


def reference_sample_arrays(
    n_events: int,
    seed: int,
    *,
    decay: str | None = None,
    run: str = "run2",
    mix: Sequence[tuple[str, float]] = (),
) -> dict[str, np.ndarray]:
    """Generate ``n_events`` events and pass their charged final-state particles through the reference detector.

    Args:
        n_events: number of events.
        seed: seed of everything (generator, occupancy, tracking).
        decay: decay descriptor; default the default job's decay.
        run: occupancy preset of :class:`sim.reference.occupancy.OccupancyConfig`.
        mix: other components, ``(decay descriptor, fraction of the events)`` or
            ``(PROMPT, fraction)`` for the prompt gun (:func:`_prompt_truth`); the rest
            of the events are ``decay``.  :data:`TRAINING_MIX` is the shipped models'
            mix.  The components' events follow the main decay's, in ``mix`` order, one
            random stream each; with no mix the sample is that of the main decay alone.

    Returns:
        Column name → 1-D array (see the module docstring).

    Raises:
        ConfigError: ``n_events`` is not a positive integer, or a bad ``mix``.
    """
    from sim.detector.acceptance import Acceptance
    from sim.detector.features import TRACK_TYPES, forward_mask, truth_features
    from sim.detector.resolution import residual_targets
    from sim.generation.generator import DEFAULT_DECAY
    from sim.reference.occupancy import OccupancyConfig, simulate_occupancy
    from sim.reference.tracking import simulate_tracking

    if isinstance(n_events, bool) or not isinstance(n_events, (int, np.integer)) or n_events < 1:
        raise ConfigError(f"n_events must be a positive integer, got {n_events!r}")
    components = _check_mix(mix)
    counts = [int(round(int(n_events) * f)) for _, f in components]
    n_main = int(n_events) - sum(counts)
    if n_main < 1:
        raise ConfigError(f"sample mix leaves {n_main} event(s) of the main decay out of {n_events}; "
                          "give more events or smaller fractions")
    ss = np.random.SeedSequence(int(seed))
    children = ss.spawn(3 + len(components))
    rng_gen, rng_occ, rng_trk = (np.random.default_rng(s) for s in children[:3])
    pieces = [_decay_truth(decay or DEFAULT_DECAY, n_main, rng_gen)]
    offset = n_main
    for (name, _), count, child in zip(components, counts, children[3:], strict=True):
        if count == 0:
            continue
        rng = np.random.default_rng(child)
        piece = _prompt_truth(count, rng) if name == PROMPT else _decay_truth(name, count, rng)
        piece["event"] = piece["event"] + offset
        pieces.append(piece)
        offset += count
    truth = {k: np.concatenate([piece[k] for piece in pieces]) for k in pieces[0]}
    ev = truth["event"]
    truth["event"] = ev.astype(np.int32)
    occ = simulate_occupancy(int(n_events), rng_occ, OccupancyConfig(run=run))
    truth["n_pv"] = occ["n_pv"][ev]
    truth["n_tracks"] = occ["n_tracks"][ev]
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
    log.info("reference sample: %d events (%d of the main decay), %d particles, %d reconstructed", n_events,
             n_main, ev.size, int(ref["reconstructed"].sum()))
    return out


def make_reference_sample(
    path: str | Path,
    n_events: int,
    seed: int,
    *,
    decay: str | None = None,
    run: str = "run2",
    mix: Sequence[tuple[str, float]] = (),
) -> Path:
    """Write :func:`reference_sample_arrays` to a Parquet file ``path``; returns the path."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    arrays = reference_sample_arrays(n_events, seed, decay=decay, run=run, mix=mix)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(arrays), path)
    log.info("wrote %s", path)
    return path
