"""The acceptance pass: a trained classifier gives P(in acceptance | truth); a Bernoulli draw sets it.

Candidates are the final-state charged particles (neutrinos excluded) inside the η
window of the detector (``eta_min < η < eta_max``, a fixed geometric cut); the
classifier learns the rest of the geometric acceptance of the reference detector
(magnet aperture, bending out of the T stations by the dipole, which depends on
charge × polarity and momentum, and the origin of the particle).  The shipped model was
trained for MagUp (polarity +1, recorded in its sidecar).

Reads ``mc_particles``, ``mc_vertices``, ``events``; writes ``mc_particles.in_acceptance``
(false for every other particle of the batch).
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
from sim.detector.features import forward_mask

__all__ = ("Acceptance", "ACCEPTANCE_INPUTS", "draw_acceptance")

log = logging.getLogger(__name__)

#: Default classifier inputs (see :func:`sim.core.modelio.truth_features`).
ACCEPTANCE_INPUTS: tuple[str, ...] = ("log10_p", "eta", "phi", "charge", "origin_x", "origin_y", "origin_z")


def draw_acceptance(proba: np.ndarray, forward: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Bernoulli draw of the acceptance flag.

    Args:
        proba: ``(n,)`` P(in acceptance) of the classifier (ignored outside ``forward``).
        forward: ``(n,)`` bool, inside the η window.
        rng: the batch's generator for this pass; draws exactly ``n`` uniforms.

    Returns:
        ``(n,)`` bool.
    """
    u = rng.random(len(forward))
    return np.asarray(forward, dtype=bool) & (u < proba)


@register_pass
@dataclass(frozen=True)
class Acceptance(Pass):
    """Geometric acceptance from a trained classifier.

    Args:
        name: pass name.
        model: ``.keras`` model file (sidecar ``.json`` next to it); default the shipped
            ``sim/models/acceptance.keras``.
        inputs: feature names the model takes, in order (checked against its sidecar).
        eta_min, eta_max: η window of the detector (fixed cut before the classifier); default the card's.
        card: the detector card (:mod:`sim.detector.card`) the defaults come from; the model must be trained on it.
    """

    kind: ClassVar[str] = "acceptance"
    concurrent: ClassVar[bool] = True
    reads: ClassVar[tuple[str, ...]] = ("mc_particles", "mc_vertices", "events")
    writes: ClassVar[tuple[str, ...]] = ("mc_particles.in_acceptance",)

    name: str = "acceptance"
    model: str | None = None
    inputs: tuple[str, ...] = ACCEPTANCE_INPUTS
    eta_min: float | None = None
    eta_max: float | None = None
    card: str = DEFAULT_CARD

    def __post_init__(self) -> None:
        object.__setattr__(self, "inputs", tuple(self.inputs))
        fill_from_card(self, "eta_min", "eta_max")
        if not self.eta_min < self.eta_max:  # type: ignore[operator]
            raise ConfigError(f"pass {self.name!r}: eta_min={self.eta_min} must be below eta_max={self.eta_max}")

    def build(self) -> Kernel:
        trained = load_pass_model(self.model, "acceptance", kind="classifier", inputs=self.inputs, pass_name=self.name)
        check_model_card(trained.provenance, self.card, what=f"pass {self.name!r}: the acceptance model")
        model = CompiledModel(trained)
        name, inputs = self.name, self.inputs
        eta_min, eta_max = float(self.eta_min), float(self.eta_max)  # type: ignore[arg-type]  # filled by __post_init__

        def kernel(ctx: BatchContext) -> None:
            shared = sharing.shared_truth(ctx, f"pass {name!r}")  # one truth query, shared with the next passes
            truth, feats = shared.truth, shared.features
            forward = forward_mask(feats, eta_min, eta_max)
            proba = np.zeros(forward.size)
            if forward.any():
                x = feature_matrix({k: v[forward] for k, v in feats.items()}, inputs, f"pass {name!r}")
                proba[forward] = model.predict_proba(x)
            accepted = draw_acceptance(proba, forward, ctx.rng(name))
            ctx.con.execute(f"UPDATE mc_particles SET in_acceptance = false WHERE batch = {int(ctx.batch.batch)}")
            ctx.update(
                "mc_particles",
                {
                    "batch": np.full(int(accepted.sum()), ctx.batch.batch, np.int32),
                    "event": truth["event"][accepted],
                    "index": truth["mc_index"][accepted],
                    "in_acceptance": np.ones(int(accepted.sum()), bool),
                },
            )
            shared.in_acceptance, shared.stamp = accepted, sharing.store_stamp(ctx)

        return kernel
