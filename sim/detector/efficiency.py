"""The efficiency pass: a multiclass classifier over track types, then a categorical draw.

For each final-state charged particle inside the η window the classifier gives
P(not reconstructed), P(Long), P(Upstream), P(Downstream) from its momentum,
direction, charge, origin vertex (distance from the beam line, z), the event's
nTracks and its acceptance flag.  Track types the geometry forbids are removed
before the draw (Long and Downstream tracks reach the T stations, so they need
``in_acceptance``; Upstream tracks are bent out of them, so they need its absence),
their probability going to "not reconstructed".  One uniform per particle from the
batch's generator picks the class.

Reads ``mc_particles`` (with ``in_acceptance``), ``mc_vertices``, ``events``
(``n_tracks``); inserts one ``protoparticles`` row per reconstructed particle
(``mc_particle``, ``track_type``, ``charge``; kinematics come from the resolution pass).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from mambah.errors import ConfigError
from sim.core.modelio import CompiledModel, feature_matrix, load_pass_model
from sim.core.pipeline import BatchContext, Kernel, Pass
from sim.core.registry import register_pass
from sim.detector import shared as sharing
from sim.detector.card import DEFAULT_CARD, check_model_card, fill_from_card
from sim.detector.features import TRACK_TYPES, forward_mask, truth_sql

__all__ = ("Efficiency", "EFFICIENCY_INPUTS", "EFFICIENCY_CLASSES", "draw_track_type", "track_indices")

log = logging.getLogger(__name__)

#: Default classifier inputs (``in_acceptance`` as 0/1).
EFFICIENCY_INPUTS: tuple[str, ...] = (
    "log10_p", "eta", "phi", "charge", "origin_rho", "origin_dz", "origin_z", "n_tracks", "in_acceptance",
)  # fmt: skip
#: Class names of the classifier output, in :data:`TRACK_TYPES` order.
EFFICIENCY_CLASSES: tuple[str, ...] = ("none", "long", "upstream", "downstream")


def draw_track_type(
    proba: np.ndarray, in_acceptance: np.ndarray, forward: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """Draw the track type of each particle.

    Args:
        proba: ``(n, 4)`` class probabilities (none, Long, Upstream, Downstream).
        in_acceptance: ``(n,)`` bool acceptance flags.
        forward: ``(n,)`` bool, inside the η window (others are never reconstructed).
        rng: draws exactly ``n`` uniforms.

    Returns:
        ``(n,)`` int16 track type codes (0, 3, 4, 5).
    """
    p = np.clip(np.asarray(proba, dtype=np.float64), 0.0, 1.0).copy()
    acc = np.asarray(in_acceptance, dtype=bool)
    p[acc, 2] = 0.0
    p[~acc, 1] = 0.0
    p[~acc, 3] = 0.0
    p[~np.asarray(forward, dtype=bool), 1:] = 0.0
    reco = p[:, 1:]
    total = reco.sum(axis=1)
    over = total > 1.0
    reco[over] /= total[over, None]
    cum = np.cumsum(reco, axis=1)
    u = rng.random(len(p))
    cls = np.where(u < cum[:, -1], 1 + (u[:, None] >= cum).sum(axis=1), 0)
    return np.asarray(TRACK_TYPES, dtype=np.int16)[np.minimum(cls, 3)]


_VELO_TRUTH = ("px", "py", "pz", "origin_x", "origin_y", "origin_z", "pv_x", "pv_y")


def velo_possible(truth: dict[str, np.ndarray]) -> np.ndarray:
    """Whether a particle's straight line crosses at least two VELO stations (bool, (n,)).

    The same geometry the resolution pass fits VELO tracks with
    (:func:`sim.detector.trackcov.crossed_velo_stations`); a particle made downstream of
    the VELO (a K_L0 or Λ decay metres away in a full event) can be Downstream at most.
    """
    from sim.detector.trackcov import TrackErrorModel, crossed_velo_stations

    pz = np.where(truth["pz"] != 0, truth["pz"], 1e-9)
    crossed = crossed_velo_stations(
        truth["origin_x"] - truth["pv_x"], truth["origin_y"] - truth["pv_y"], np.asarray(truth["origin_z"], np.float64),
        truth["px"] / pz, truth["py"] / pz, TrackErrorModel(),
    )
    return np.asarray(crossed.sum(axis=1) >= 2)


def track_indices(event: np.ndarray) -> np.ndarray:
    """Index of each track within its event, for rows sorted by event (int32, (n,))."""
    event = np.asarray(event)
    if event.size == 0:
        return np.zeros(0, np.int32)
    start = np.r_[0, np.flatnonzero(np.diff(event)) + 1]
    first = np.repeat(start, np.diff(np.r_[start, event.size]))
    return (np.arange(event.size) - first).astype(np.int32)


@register_pass
@dataclass(frozen=True)
class Efficiency(Pass):
    """Track reconstruction efficiency and track type from a trained multiclass classifier.

    Args:
        name: pass name.
        model: ``.keras`` model file; default the shipped ``sim/models/efficiency.keras``.
        inputs: feature names the model takes (checked against its sidecar).
        eta_min, eta_max: η window (particles outside are never reconstructed); default the card's.
        card: the detector card (:mod:`sim.detector.card`) the defaults come from; the model must be trained on it.
    """

    kind: ClassVar[str] = "efficiency"
    concurrent: ClassVar[bool] = True
    reads: ClassVar[tuple[str, ...]] = (
        "mc_particles", "mc_vertices", "events", "events.n_tracks", "mc_particles.in_acceptance",
    )  # fmt: skip
    writes: ClassVar[tuple[str, ...]] = ("protoparticles",)

    name: str = "efficiency"
    model: str | None = None
    inputs: tuple[str, ...] = EFFICIENCY_INPUTS
    eta_min: float | None = None
    eta_max: float | None = None
    card: str = DEFAULT_CARD

    def __post_init__(self) -> None:
        object.__setattr__(self, "inputs", tuple(self.inputs))
        fill_from_card(self, "eta_min", "eta_max")
        if not self.eta_min < self.eta_max:  # type: ignore[operator]
            raise ConfigError(f"pass {self.name!r}: eta_min={self.eta_min} must be below eta_max={self.eta_max}")

    def build(self) -> Kernel:
        trained = load_pass_model(self.model, "efficiency", kind="classifier", inputs=self.inputs,
                                outputs=EFFICIENCY_CLASSES, pass_name=self.name)
        check_model_card(trained.provenance, self.card, what=f"pass {self.name!r}: the efficiency model")
        model = CompiledModel(trained)
        name, inputs = self.name, self.inputs
        eta_min, eta_max = float(self.eta_min), float(self.eta_max)  # type: ignore[arg-type]  # filled by __post_init__
        sql = truth_sql(with_acceptance=True)

        def kernel(ctx: BatchContext) -> None:
            shared = sharing.reuse_truth(ctx, "acceptance")  # the acceptance pass's truth and flags, if just written
            if shared is None or shared.in_acceptance is None:
                shared = sharing.shared_truth(ctx, f"pass {name!r}", sql)
                shared.in_acceptance = np.nan_to_num(shared.truth["in_acceptance"].astype(np.float64)).astype(bool)
            truth, acc = shared.truth, shared.in_acceptance
            feats = {**shared.features, "in_acceptance": acc.astype(np.float64)}
            forward = forward_mask(feats, eta_min, eta_max)
            proba = np.zeros((forward.size, 4))
            proba[:, 0] = 1.0
            if forward.any():
                x = feature_matrix({k: v[forward] for k, v in feats.items()}, inputs, f"pass {name!r}")
                proba[forward] = model.predict_proba(x)
            if forward.any():  # no Long/Upstream track without two VELO hits (others are never reconstructed)
                fwd = np.flatnonzero(forward)
                no_velo = fwd[~velo_possible({k: truth[k][fwd] for k in _VELO_TRUTH})]
                proba[no_velo, 1:3] = 0.0
            track_type = draw_track_type(proba, acc, forward, ctx.rng(name))
            reco = track_type > 0
            event = truth["event"][reco]
            ctx.insert(
                "protoparticles",
                {
                    "batch": np.full(event.size, ctx.batch.batch, np.int32),
                    "event": event,
                    "index": track_indices(event),
                    "mc_particle": truth["mc_index"][reco],
                    "track_type": track_type[reco],
                    "charge": truth["charge"][reco].astype(np.int16),
                },
            )
            shared.track_type, shared.stamp = track_type, sharing.store_stamp(ctx)

        return kernel
