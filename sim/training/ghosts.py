"""Training of the fast ghost model (:mod:`sim.detector.ghosts`) on the reference ghosts.

The reference sample: events of the default (or given) decay through the reference
detector (:func:`sim.reference.sample.reference_sample_arrays`, Run 2 occupancy), their
real Long tracks counted per event, and the reference ghosts of those events
(:func:`sim.reference.tracking.simulate_ghosts`).  The model:

* the multiplicity law ``Poisson(a · (n / n_ref)^b · N_long)``: ``a`` and ``b`` by maximum
  likelihood over the events (``n_ref`` fixed at 150);
* the kinematic sampler: a Gaussian copula of ``log10 p``, ``η``, ``track_chi2ndof`` and
  ``ghost_prob`` (:meth:`sim.detector.ghosts.GhostSampler.fit`).

``scripts/train_ghost_model.py`` writes the shipped ``sim/models/ghosts.json``.
"""

from __future__ import annotations

import datetime as _dt
import logging
from dataclasses import asdict

import numpy as np

from mambah.errors import ConfigError
from sim.detector.card import DEFAULT_CARD
from sim.detector.ghosts import GHOST_FEATURES, GhostModel, GhostSampler

__all__ = ("OCCUPANCY_REF", "fit_multiplicity", "ghost_features", "reference_ghost_sample", "train_ghost_model")

log = logging.getLogger(__name__)

#: The reference occupancy ``n_ref`` of the multiplicity law.
OCCUPANCY_REF = 150.0


def reference_ghost_sample(n_events: int, seed: int, *, decay: str | None = None) -> dict[str, dict[str, np.ndarray]]:
    """Reference events, their real Long tracks and their ghosts.

    Args:
        n_events: events of the decay.
        seed: seed of the sample (the ghosts use the child stream ``seed`` + 1).
        decay: decay descriptor; default the default job's.

    Returns:
        ``{"events": {event, n_tracks, n_long, pv_x/y/z}, "tracks": every column of
        reference_sample_arrays for the real Long tracks, "ghosts": simulate_ghosts' columns}``.
    """
    from sim.reference.sample import reference_sample_arrays
    from sim.reference.tracking import simulate_ghosts

    if isinstance(n_events, bool) or not isinstance(n_events, (int, np.integer)) or n_events < 1:
        raise ConfigError(f"n_events must be a positive integer, got {n_events!r}")
    s = reference_sample_arrays(int(n_events), int(seed), decay=decay)
    n_ev = int(n_events)
    is_long = s["track_type"] == 3
    first = np.minimum(np.searchsorted(s["event"], np.arange(n_ev)), s["event"].size - 1)
    present = s["event"][first] == np.arange(n_ev)
    events = {"event": np.arange(n_ev, dtype=np.int64),
              "n_tracks": np.where(present, s["n_tracks"][first], 0).astype(np.float64),
              "n_long": np.bincount(s["event"][is_long], minlength=n_ev).astype(np.int64),
              **{f"pv_{a}": np.where(present, s[f"pv_{a}"][first], 0.0) for a in "xyz"}}
    tracks = {k: v[is_long] for k, v in s.items()}
    ghosts = simulate_ghosts(events, np.random.default_rng(np.random.SeedSequence([int(seed), 1])))
    return {"events": events, "tracks": tracks, "ghosts": ghosts}


def ghost_features(ghosts: dict[str, np.ndarray]) -> np.ndarray:
    """``(n, 4)`` :data:`~sim.detector.ghosts.GHOST_FEATURES` of ghost tracks."""
    return np.column_stack([np.log10(ghosts["p"]), ghosts["eta"], ghosts["track_chi2ndof"], ghosts["ghost_prob"]])


def fit_multiplicity(n_ghosts: np.ndarray, n_long: np.ndarray, n_tracks: np.ndarray,
                     occupancy_ref: float = OCCUPANCY_REF) -> tuple[float, float]:
    """Maximum-likelihood ``(a, b)`` of ``n_ghosts ~ Poisson(a · (n_tracks / n_ref)^b · n_long)``."""
    from scipy.optimize import minimize

    g, w = np.asarray(n_ghosts, np.float64), np.asarray(n_long, np.float64)
    use = (w > 0) & (np.asarray(n_tracks) > 0)
    if g[use].sum() < 10:
        raise ConfigError(f"fit_multiplicity: {int(g[use].sum())} ghosts in the sample; need at least 10")
    g, w, x = g[use], w[use], np.log(np.asarray(n_tracks, np.float64)[use] / occupancy_ref)

    def nll(theta: np.ndarray) -> float:
        log_mu = theta[0] + theta[1] * x + np.log(w)
        return float(np.sum(np.exp(log_mu) - g * log_mu))

    def grad(theta: np.ndarray) -> np.ndarray:
        r = np.exp(theta[0] + theta[1] * x + np.log(w)) - g
        return np.array([r.sum(), (r * x).sum()])

    start = np.array([np.log(g.sum() / w.sum()), 1.0])
    res = minimize(nll, start, jac=grad, method="BFGS")
    return float(np.exp(res.x[0])), float(res.x[1])


def train_ghost_model(n_events: int = 40_000, seed: int = 1, *, decay: str | None = None) -> GhostModel:
    """Train the fast ghost model on the reference (see the module docstring).

    Args:
        n_events: events of the reference sample (40 000: about 11 000 ghosts).
        seed: sample seed (the validation in ``mambah validate published`` uses 2031 + 3).
        decay: decay descriptor; default the default job's.

    Returns:
        The :class:`~sim.detector.ghosts.GhostModel`, its provenance recording the card,
        the sample and the reference's ghost fraction.
    """
    from sim.reference.tracking import GhostConfig

    sample = reference_ghost_sample(n_events, seed, decay=decay)
    ev, ghosts = sample["events"], sample["ghosts"]
    n_ghosts = np.bincount(np.asarray(ghosts["event"], np.int64), minlength=ev["event"].size)
    a, b = fit_multiplicity(n_ghosts, ev["n_long"], ev["n_tracks"])
    sampler = GhostSampler.fit(ghost_features(ghosts))
    n_g, n_l = int(n_ghosts.sum()), int(ev["n_long"].sum())
    provenance = {
        "detector_card": DEFAULT_CARD, "trained": _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "sample": f"reference ghosts of {n_events} events of {decay or 'the default decay'}, run2 occupancy",
        "seed": int(seed), "n_events": int(n_events), "n_ghosts": n_g, "n_real_long": n_l,
        "reference_ghost_fraction": n_g / max(n_g + n_l, 1), "reference_config": asdict(GhostConfig()),
        "features": list(GHOST_FEATURES), "recipe": "scripts/train_ghost_model.py",
    }
    log.info("ghost model: a = %.4f, b = %.3f (%d ghosts, %d real Long tracks)", a, b, n_g, n_l)
    return GhostModel(a, OCCUPANCY_REF, b, sampler, provenance)
