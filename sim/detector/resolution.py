"""The resolution pass: a conditional GAN samples track residuals; geometry turns them into tracks.

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
track_chi2ndof, ghost_prob, charge).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from sim.core.pipeline import BatchContext, Kernel, Pass
from sim.core.registry import register_pass
from sim.core.modelio import CompiledModel, feature_matrix, load_pass_model
from sim.detector.features import add_derived, query_truth, truth_features

__all__ = (
    "Resolution",
    "RESOLUTION_CONDITIONS",
    "RESOLUTION_TARGETS",
    "apply_residuals",
    "residual_targets",
    "train_resolution",
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
    t2 = tx * tx + ty * ty
    s_poca = -(dx * tx + dy * ty) / np.where(t2 > 0, t2, 1.0)
    s = np.where(np.asarray(track_type) == 5, downstream_state_z - qz, s_poca)
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


def track_truth_sql() -> str:
    """SQL of the reconstructed tracks of one batch joined with their particle's truth."""
    return """
        SELECT t.event, t."index" AS track_index, t.track_type, p.charge, p.px, p.py, p.pz,
               v.x AS origin_x, v.y AS origin_y, v.z AS origin_z,
               e.pv_x, e.pv_y, e.pv_z, coalesce(e.n_tracks, 0) AS n_tracks
        FROM protoparticles AS t
        JOIN mc_particles AS p ON p.batch = t.batch AND p.event = t.event AND p."index" = t.mc_particle
        JOIN mc_vertices AS v ON v.batch = p.batch AND v.event = p.event AND v."index" = p.prod_vertex
        JOIN events AS e ON e.batch = t.batch AND e.event = t.event
        WHERE t.batch = $batch AND p.batch = $batch AND v.batch = $batch AND e.batch = $batch
        ORDER BY t.event, t."index"
    """


@register_pass
@dataclass(frozen=True)
class Resolution(Pass):
    """Reconstructed track parameters from a conditional GAN.

    Args:
        name: pass name.
        model: ``.keras`` generator file; default the shipped ``sim/models/resolution.keras``.
        conditions: condition names the generator takes (checked against its sidecar).
        downstream_state_z: z (mm) of the first state of Downstream tracks (TT).
    """

    kind: ClassVar[str] = "resolution"
    reads: ClassVar[tuple[str, ...]] = ("protoparticles", "mc_particles", "mc_vertices", "events", "events.n_tracks")
    writes: ClassVar[tuple[str, ...]] = ("protoparticles.kinematics",)

    name: str = "resolution"
    model: str | None = None
    conditions: tuple[str, ...] = RESOLUTION_CONDITIONS
    downstream_state_z: float = 2485.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "conditions", tuple(self.conditions))

    def build(self) -> Kernel:
        model = CompiledModel(load_pass_model(self.model, "resolution", kind="generator", inputs=self.conditions,
                                outputs=RESOLUTION_TARGETS, pass_name=self.name))
        name, conditions, z_down = self.name, self.conditions, self.downstream_state_z
        sql = track_truth_sql()

        def kernel(ctx: BatchContext) -> None:
            truth = query_truth(ctx, sql, f"pass {name!r}")
            n = truth["event"].size
            if n == 0:
                return
            feats = add_derived({**truth_features(truth), "track_type": truth["track_type"]})
            cond = feature_matrix(feats, conditions, f"pass {name!r}")
            residuals = model.sample(cond, ctx.rng(name))
            out = apply_residuals(feats, truth, truth["track_type"], residuals, z_down)
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


def train_resolution(
    data: str | Path,
    *,
    conditions: Sequence[str] = RESOLUTION_CONDITIONS,
    targets: Sequence[str] = RESOLUTION_TARGETS,
    weight: str | None = None,
    select: str | None = "reconstructed",
    seed: int = 0,
    epochs: int = 10,
    batch_size: int = 512,
    algorithm: str = "cramer",
    learning_rate: float = 1e-3,
    lr_schedule: str = "constant",
    ema: float | None = None,
    max_rows: int | None = None,
    progress: bool = False,
    tree: str | None = None,
    extra_provenance: Mapping[str, Any] | None = None,
) -> Any:
    """Train the residual GAN on the reconstructed tracks of a reference sample.

    Args:
        data: Parquet/ROOT file with ``track_type``, the truth feature columns and the
            targets (``reconstructed`` selects the rows; default).
        conditions, targets: column names (``is_upstream``/``is_downstream``/``is_long``
            are derived from ``track_type``).
        weight: optional weight column.
        select: boolean column selecting the rows; ``None`` for all.
        seed, epochs, batch_size, algorithm, learning_rate, lr_schedule, ema:
            :func:`sim.training.train_gan` settings.
        max_rows: use at most this many rows (the first ones).
        tree: TTree of a ROOT ``data`` file (default: the first).

    Returns:
        :class:`sim.training.TrainedModel` (generator).
    """
    from sim.training.passdata import read_training_data

    from sim.training.gan import train_gan

    derived = {"is_long", "is_upstream", "is_downstream"}
    need = [c for c in conditions if c not in derived] + list(targets)
    if derived & set(conditions):
        need.append("track_type")
    cols = add_derived(read_training_data(data, need, weight=weight, tree=tree, select=select))
    rows = slice(None, max_rows)
    c = np.column_stack([np.asarray(cols[k], dtype=np.float64)[rows] for k in conditions])
    t = np.column_stack([np.asarray(cols[k], dtype=np.float64)[rows] for k in targets])
    w = np.asarray(cols[weight], dtype=np.float64)[rows] if weight else None
    return train_gan(
        c, t, w, algorithm=algorithm, epochs=epochs, batch_size=batch_size, seed=seed, progress=progress,
        learning_rate=learning_rate, lr_schedule=lr_schedule, ema=ema,
        n_noise=8, hidden_generator=(64, 64, 64), hidden_critic=(64, 64, 64), n_quantiles=300,
        condition_names=tuple(conditions), target_names=tuple(targets),
        provenance={"data_file": str(data), "select": select, **(dict(extra_provenance) if extra_provenance else {})},
    )
