"""The resolution pass: track states drawn from their covariance; a conditional GAN gives χ²/ndf and ghost probability.

Track states.  Each reconstructed track gets the 5 × 5 covariance of its state
``(x, y, tx, ty, q/p)`` from the error model of :mod:`sim.detector.trackcov` (VELO
hit resolution + multiple scattering, an analytic function of p, the slopes, the
origin and the track type — the same function the reference detector uses, so the
fast pass evaluates it rather than learning it; it does not depend on the
occupancy), and its residuals are drawn from that covariance
(:func:`sim.detector.trackcov.reconstruct_states`); the IP and IPχ² follow from the
state and its covariance.  The 15 ``cov_*`` columns of ``protoparticles`` carry the
covariance (:data:`sim.detector.trackcov.COV_COLUMNS`).

GAN.  The generator (trained on the reference before the covariance model, kept
unchanged) still draws the full residual vector below; the pass uses its
``track_chi2ndof`` and ``ghost_prob``.  :func:`residual_targets` /
:func:`apply_residuals` keep the residual representation for training and validation.

The generator (trained with :func:`sim.training.train_gan`, Cramér GAN) draws, for each
reconstructed track, the residual vector (:data:`RESOLUTION_TARGETS`)

* ``dp_rel`` = p_reco / p − 1;
* ``dtx_p, dty_p`` = (t_reco − t_true) · p / GeV, slope residuals scaled by the
  multiple-scattering law (rad·GeV);
* ``dx_pt, dy_pt`` = offset of the reconstructed line from the true one in the plane
  z = z_PV, times pT / GeV (mm·GeV), the impact-parameter scaling;
* ``log10_sigma_ip``: log10 of the IP uncertainty (mm) the track fit assigns;
* ``track_chi2ndof``, ``ghost_prob``,

conditioned on the true kinematics, the origin vertex, nTracks and the track type
(:data:`RESOLUTION_CONDITIONS`).  :func:`apply_residuals` then builds the reconstructed
momentum, slopes, the state at the point of closest approach to the beam line (at
``downstream_state_z`` for Downstream tracks), the 3-D IP to the PV and its χ², with
the same geometry as :mod:`sim.reference.tracking`.

Reads ``protoparticles``, ``mc_particles``, ``mc_vertices``, ``events``; writes
``protoparticles.kinematics`` (px, py, pz, tx, ty, x, y, z, ip, ip_chi2,
track_chi2ndof, ghost_prob, charge, cov_x_x … cov_qop_qop).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from mambah.errors import ConfigError
from sim.core.modelio import CompiledModel, feature_matrix, load_pass_model
from sim.core.pipeline import BatchContext, Kernel, Pass
from sim.core.registry import register_pass
from sim.detector.card import DEFAULT_CARD, card, check_model_card
from sim.detector.features import (
    INTERACTION_PV_COLUMNS,
    INTERACTION_PV_CTE,
    INTERACTION_PV_JOIN,
    add_derived,
    query_truth,
    truth_features,
)
from sim.detector.trackcov import (
    TrackErrorModel,
    cov_to_columns,
    reconstruct_states,
    state_z,
)

__all__ = (
    "RESOLUTION_CONDITIONS",
    "RESOLUTION_TARGETS",
    "Resolution",
    "apply_residuals",
    "pass_residuals",
    "residual_targets",
    "track_truth_sql",
)

log = logging.getLogger(__name__)

RESOLUTION_CONDITIONS: tuple[str, ...] = (
    "log10_p", "log10_pt", "eta", "origin_rho", "origin_dz", "n_tracks", "is_upstream", "is_downstream",
)  # fmt: skip
RESOLUTION_TARGETS: tuple[str, ...] = (
    "dp_rel", "dtx_p", "dty_p", "dx_pt", "dy_pt", "log10_sigma_ip", "track_chi2ndof", "ghost_prob",
)  # fmt: skip

_GEV = 1000.0


def residual_targets(
    features: Mapping[str, np.ndarray], truth: Mapping[str, np.ndarray], ref: Mapping[str, np.ndarray]
) -> dict[str, np.ndarray]:
    """Residuals of reference tracks (the GAN targets); 0 where not reconstructed.

    Args:
        features: :func:`~sim.core.modelio.truth_features` of the particles.
        truth: ``origin_x/y/z``, ``pv_x/y/z`` (mm).
        ref: reference outputs ``reco_px/py/pz, tx, ty, x, y, z, ip, ip_chi2``.

    Returns:
        ``dp_rel, dtx_p, dty_p, dx_pt, dy_pt, log10_sigma_ip`` (float64, (n,)).
    """
    reco = np.isfinite(ref["reco_pz"])
    p, pt = features["p"] / _GEV, features["pt"] / _GEV
    with np.errstate(invalid="ignore", divide="ignore"):
        p_reco = np.sqrt(ref["reco_px"] ** 2 + ref["reco_py"] ** 2 + ref["reco_pz"] ** 2) / _GEV
        dz_state = truth["pv_z"] - ref["z"]
        x_reco = ref["x"] + ref["tx"] * dz_state
        y_reco = ref["y"] + ref["ty"] * dz_state
        dz_true = truth["pv_z"] - truth["origin_z"]
        x_true = truth["origin_x"] + features["tx_true"] * dz_true
        y_true = truth["origin_y"] + features["ty_true"] * dz_true
        sigma_ip = ref["ip"] / np.sqrt(np.maximum(ref["ip_chi2"], 1e-300))
        out = {
            "dp_rel": p_reco / p - 1.0,
            "dtx_p": (ref["tx"] - features["tx_true"]) * p,
            "dty_p": (ref["ty"] - features["ty_true"]) * p,
            "dx_pt": (x_reco - x_true) * pt,
            "dy_pt": (y_reco - y_true) * pt,
            "log10_sigma_ip": np.log10(sigma_ip),
        }
    return {k: np.where(reco & np.isfinite(v), v, 0.0) for k, v in out.items()}


def apply_residuals(
    features: Mapping[str, np.ndarray],
    truth: Mapping[str, np.ndarray],
    track_type: np.ndarray,
    residuals: np.ndarray,
    downstream_state_z: float = 2485.0,
) -> dict[str, np.ndarray]:
    """Reconstructed track parameters from truth and sampled residuals (pure, vectorised).

    Args:
        features: :func:`~sim.core.modelio.truth_features` of the tracks' particles.
        truth: ``origin_x/y/z, pv_x/y/z`` (mm).
        track_type: ``(n,)`` codes 3, 4, 5.
        residuals: ``(n, 8)`` in :data:`RESOLUTION_TARGETS` order.
        downstream_state_z: z (mm) of the first state of Downstream tracks.

    The state is placed at :func:`sim.detector.trackcov.state_z` (the reference z of
    the reference detector's states).

    Returns:
        ``px, py, pz`` (MeV), ``tx, ty``, ``x, y, z`` (mm), ``ip`` (mm), ``ip_chi2``,
        ``track_chi2ndof``, ``ghost_prob``: float64 arrays of shape (n,).
    """
    r = np.asarray(residuals, dtype=np.float64)
    p, pt = features["p"], features["pt"]
    p_reco = p * np.maximum(1.0 + r[:, 0], 1e-3)
    tx = features["tx_true"] + r[:, 1] / (p / _GEV)
    ty = features["ty_true"] + r[:, 2] / (p / _GEV)
    norm = np.sqrt(1.0 + tx * tx + ty * ty)
    pz = p_reco / norm
    dz_true = truth["pv_z"] - truth["origin_z"]
    qx = truth["origin_x"] + features["tx_true"] * dz_true + r[:, 3] / (pt / _GEV)
    qy = truth["origin_y"] + features["ty_true"] * dz_true + r[:, 4] / (pt / _GEV)
    qz = np.asarray(truth["pv_z"], dtype=np.float64)
    dx, dy = qx - truth["pv_x"], qy - truth["pv_y"]
    ip = np.sqrt(dx * dx + dy * dy + (dx * ty - dy * tx) ** 2) / norm
    sigma_ip = 10.0 ** r[:, 5]
    # the state sits at the reference z of the covariance model (true line's closest approach)
    zs = state_z(features["tx_true"], features["ty_true"], truth["origin_x"] - truth["pv_x"],
                 truth["origin_y"] - truth["pv_y"], truth["origin_z"], track_type, downstream_state_z)
    s = zs - qz
    return {
        "px": tx * pz,
        "py": ty * pz,
        "pz": pz,
        "tx": tx,
        "ty": ty,
        "x": qx + tx * s,
        "y": qy + ty * s,
        "z": qz + s,
        "ip": ip,
        "ip_chi2": (ip / sigma_ip) ** 2,
        "track_chi2ndof": np.maximum(r[:, 6], 0.0),
        "ghost_prob": np.clip(r[:, 7], 0.0, 1.0),
    }


def pass_residuals(
    features: Mapping[str, np.ndarray],
    truth: Mapping[str, np.ndarray],
    track_type: np.ndarray,
    gan: np.ndarray,
    rng: np.random.Generator,
    errors: TrackErrorModel | None = None,
) -> np.ndarray:
    """The residual vector (:data:`RESOLUTION_TARGETS` order) of what the pass produces.

    State residuals (``dp_rel … log10_sigma_ip``) from the covariance draw of
    :func:`sim.detector.trackcov.reconstruct_states`, ``track_chi2ndof`` and
    ``ghost_prob`` from the GAN samples: what validation compares with the reference.

    Args:
        features: :func:`~sim.detector.features.truth_features` of the tracks' particles.
        truth: ``charge, px, py, pz`` (MeV), ``origin_x/y/z, pv_x/y/z`` (mm), ``(n,)``.
        track_type: ``(n,)`` codes 3, 4, 5.
        gan: ``(n, 8)`` generator samples.
        rng: source of the state draws.
        errors: the error model (default :class:`~sim.detector.trackcov.TrackErrorModel`).

    Returns:
        ``(n, 8)`` float64.
    """
    n = np.asarray(track_type).shape[0]
    st = reconstruct_states(dict(truth), track_type, rng.standard_normal((n, 5)), errors or TrackErrorModel())
    ref = {"reco_px": st["px"], "reco_py": st["py"], "reco_pz": st["pz"],
           **{k: st[k] for k in ("tx", "ty", "x", "y", "z", "ip", "ip_chi2")}}
    res = residual_targets(features, truth, ref)
    g = np.asarray(gan, dtype=np.float64)
    return np.column_stack([res[k] for k in RESOLUTION_TARGETS[:6]] + [np.maximum(g[:, 6], 0.0), np.clip(g[:, 7], 0.0, 1.0)])


def track_truth_sql() -> str:
    """SQL of the reconstructed tracks of one batch joined with their particle's truth (PV of its own interaction)."""
    return f"""
        {INTERACTION_PV_CTE}
        SELECT t.event, t."index" AS track_index, t.track_type, p.charge, p.px, p.py, p.pz,
               v.x AS origin_x, v.y AS origin_y, v.z AS origin_z,
               {INTERACTION_PV_COLUMNS}, coalesce(e.n_tracks, 0) AS n_tracks
        FROM protoparticles AS t
        JOIN mc_particles AS p ON p.batch = t.batch AND p.event = t.event AND p."index" = t.mc_particle
        JOIN mc_vertices AS v ON v.batch = p.batch AND v.event = p.event AND v."index" = p.prod_vertex
        JOIN events AS e ON e.batch = t.batch AND e.event = t.event
        {INTERACTION_PV_JOIN}
        WHERE t.batch = $batch AND p.batch = $batch AND v.batch = $batch AND e.batch = $batch
        ORDER BY t.event, t."index"
    """


def _tracks_truth(ctx: BatchContext, sql: str, where: str) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Truth and :func:`truth_features` of the batch's tracks, in :func:`track_truth_sql` order.

    From the efficiency pass's shared truth when it was the last write
    (:func:`sim.detector.features.reuse_truth`: its reconstructed rows, which it inserted
    in this order), else from :func:`track_truth_sql`.
    """
    from sim.detector import shared as sharing
    from sim.detector.efficiency import track_indices

    shared = sharing.reuse_truth(ctx, "efficiency")
    if shared is None or shared.track_type is None:
        truth = query_truth(ctx, sql, where)
        return truth, truth_features(truth)
    reco = shared.track_type > 0
    truth = {k: v[reco] for k, v in shared.truth.items()}
    truth["track_type"] = shared.track_type[reco]
    truth["track_index"] = track_indices(truth["event"])
    return truth, {k: v[reco] for k, v in shared.features.items()}


@register_pass
@dataclass(frozen=True)
class Resolution(Pass):
    """Reconstructed track parameters from a conditional GAN.

    Args:
        name: pass name.
        model: ``.keras`` generator file; default the shipped ``sim/models/resolution.keras``.
        conditions: condition names the generator takes (checked against its sidecar).
        downstream_state_z: z (mm) of the first state of Downstream tracks (TT); must
            equal ``errors.downstream_z``.
        errors: the track-state error model (:class:`sim.detector.trackcov.TrackErrorModel`).
    """

    kind: ClassVar[str] = "resolution"
    concurrent: ClassVar[bool] = True
    reads: ClassVar[tuple[str, ...]] = ("protoparticles", "mc_particles", "mc_vertices", "events", "events.n_tracks")
    writes: ClassVar[tuple[str, ...]] = ("protoparticles.kinematics",)

    name: str = "resolution"
    model: str | None = None
    conditions: tuple[str, ...] = RESOLUTION_CONDITIONS
    downstream_state_z: float = 2485.0
    errors: TrackErrorModel = field(default_factory=TrackErrorModel)
    card: str = DEFAULT_CARD

    def __post_init__(self) -> None:
        card(self.card)
        object.__setattr__(self, "conditions", tuple(self.conditions))
        if self.downstream_state_z != self.errors.downstream_z:
            raise ConfigError(
                f"pass {self.name!r}: downstream_state_z={self.downstream_state_z} differs from "
                f"errors.downstream_z={self.errors.downstream_z}; give both the same z"
            )

    def build(self) -> Kernel:
        trained = load_pass_model(self.model, "resolution", kind="generator", inputs=self.conditions,
                                  outputs=RESOLUTION_TARGETS, pass_name=self.name)
        check_model_card(trained.provenance, self.card, what=f"pass {self.name!r}: the resolution model")
        model = CompiledModel(trained)
        name, conditions, errors = self.name, self.conditions, self.errors
        sql = track_truth_sql()

        def kernel(ctx: BatchContext) -> None:
            truth, feats = _tracks_truth(ctx, sql, f"pass {name!r}")
            n = truth["event"].size
            if n == 0:
                return
            feats = add_derived({**feats, "track_type": truth["track_type"]})
            cond = feature_matrix(feats, conditions, f"pass {name!r}")
            gan = model.sample(cond, ctx.rng(name))
            st = reconstruct_states(truth, truth["track_type"], ctx.rng(f"{name}.state").standard_normal((n, 5)),
                                    errors)
            out = {k: st[k] for k in ("px", "py", "pz", "tx", "ty", "x", "y", "z", "ip", "ip_chi2")}
            out["track_chi2ndof"] = np.maximum(gan[:, 6], 0.0)
            out["ghost_prob"] = np.clip(gan[:, 7], 0.0, 1.0)
            out.update(cov_to_columns(st["cov"]))
            ctx.update(
                "protoparticles",
                {
                    "batch": np.full(n, ctx.batch.batch, np.int32),
                    "event": truth["event"],
                    "index": truth["track_index"],
                    "charge": truth["charge"].astype(np.int16),
                    **out,
                },
            )

        return kernel
