"""The occupancy pass: a generative model of (nPV, nTracks) per event, and reconstructed PVs.

Model: an unconditional Cramér GAN (:func:`sim.training.train_gan` with zero
conditions) on the two targets ``n_pv`` and ``log_n_tracks`` (= ln(nTracks + 1)), both
dequantised with a uniform deviate in training; sampling rounds back to integers
(``n_pv >= 1``, ``n_tracks >= 0``).  A GAN keeps the correlation between the two (more
PVs, more tracks) without assuming a parametric form.

Reconstructed primary vertices (:func:`reconstruct_pvs`, parametric, not trained):
vertex 0 is the generated signal PV smeared with the PV resolution, matched to
``mc_vertices`` index 0; the other ``n_pv − 1`` are pile-up collisions drawn from the
luminous region (no MC match, ``mc_vertex = -1``).  The event's tracks are shared among
its PVs in proportion to the per-PV multiplicities of the Run 2 reference (signal 90,
pile-up 70).  The resolution scales as ``1/sqrt(n_tracks_pv / 25)`` from 13 µm (x, y)
and 69 µm (z) at 25 tracks (LHCb detector performance, IJMPA 30 (2015) 1530022, Sec. 3).

Full events (a generator that made the whole event, ``events.n_interactions`` set) take
their nPV and nTracks from the event instead (:mod:`sim.detector.full_occupancy`).

Reads ``events``; writes ``events.n_pv``, ``events.n_tracks`` and ``vertices``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from mambah.errors import ConfigError
from sim.core.modelio import CompiledModel, load_pass_model
from sim.core.pipeline import BatchContext, Kernel, Pass
from sim.core.registry import register_pass
from sim.detector.card import DEFAULT_CARD, card, check_model_card, fill_from_card
from sim.detector.features import arrow_columns
from sim.generation.gun import LuminousRegion

__all__ = ("Occupancy", "OCCUPANCY_TARGETS", "samples_to_counts", "reconstruct_pvs")

log = logging.getLogger(__name__)

OCCUPANCY_TARGETS: tuple[str, ...] = ("n_pv", "log_n_tracks")


_CARD = card()


def samples_to_counts(samples: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Generator outputs ``(n, 2)`` (n_pv, ln(nTracks + 1)) → integer ``n_pv >= 1`` and ``n_tracks >= 0`` (int64)."""
    s = np.asarray(samples, dtype=np.float64)
    n_pv = np.maximum(np.rint(s[:, 0]), 1).astype(np.int64)
    n_tracks = np.maximum(np.rint(np.exp(np.minimum(s[:, 1], 20.0)) - 1.0), 0).astype(np.int64)
    return n_pv, n_tracks


def reconstruct_pvs(
    pv: Mapping[str, np.ndarray],
    n_pv: np.ndarray,
    n_tracks: np.ndarray,
    rng: np.random.Generator,
    region: LuminousRegion = LuminousRegion(),
    *,
    sigma_xy_25: float = _CARD.pv_sigma_xy_25,
    sigma_z_25: float = _CARD.pv_sigma_z_25,
    share_signal: float = _CARD.pv_share_signal,
    share_pileup: float = _CARD.pv_share_pileup,
) -> dict[str, np.ndarray]:
    """Reconstructed PVs of each event (pure, vectorised).

    Args:
        pv: ``event, pv_x, pv_y, pv_z`` (mm) of the generated signal PVs, shape (n,).
        n_pv, n_tracks: per-event counts, shape (n,).
        rng: source of randomness.
        region: luminous region of the pile-up collisions.
        sigma_xy_25, sigma_z_25: PV resolution (mm) at 25 tracks.
        share_signal, share_pileup: relative multiplicity of the signal and pile-up PVs.

    Returns:
        ``vertices`` columns (no ``batch``), one row per PV: ``event, index, x, y, z,
        cov_xx, cov_yy, cov_zz, chi2, ndof, n_tracks, is_primary, mc_vertex``.
    """
    n_pv = np.asarray(n_pv, dtype=np.int64)
    event = np.repeat(np.asarray(pv["event"]), n_pv)
    ev_row = np.repeat(np.arange(n_pv.size), n_pv)
    start = np.cumsum(n_pv) - n_pv
    index = np.arange(event.size) - np.repeat(start, n_pv)
    signal = index == 0
    weight = np.where(signal, share_signal, share_pileup)
    total = share_signal + share_pileup * (n_pv - 1)
    ntrk_ev = np.asarray(n_tracks, dtype=np.int64)
    ntrk = np.floor(ntrk_ev[ev_row] * weight / total[ev_row]).astype(np.int64)
    assigned = np.bincount(ev_row, weights=ntrk, minlength=n_pv.size).astype(np.int64)
    ntrk[signal] += ntrk_ev - assigned  # remainder to the signal PV
    scale = np.sqrt(25.0 / np.maximum(ntrk, 4))
    sxy, sz = sigma_xy_25 * scale, sigma_z_25 * scale
    n = event.size
    centre_x = np.where(signal, np.asarray(pv["pv_x"])[ev_row], region.x0 + region.sigma_x * rng.standard_normal(n))
    centre_y = np.where(signal, np.asarray(pv["pv_y"])[ev_row], region.y0 + region.sigma_y * rng.standard_normal(n))
    centre_z = np.where(signal, np.asarray(pv["pv_z"])[ev_row], region.z0 + region.sigma_z * rng.standard_normal(n))
    ndof = np.maximum(2 * ntrk - 3, 1)
    return {
        "event": event.astype(np.int32),
        "index": index.astype(np.int32),
        "x": centre_x + sxy * rng.standard_normal(n),
        "y": centre_y + sxy * rng.standard_normal(n),
        "z": centre_z + sz * rng.standard_normal(n),
        "cov_xx": sxy**2,
        "cov_yy": sxy**2,
        "cov_zz": sz**2,
        "chi2": rng.chisquare(ndof).astype(np.float64),
        "ndof": ndof.astype(np.int32),
        "n_tracks": ntrk.astype(np.int32),
        "is_primary": np.ones(n, bool),
        "mc_vertex": np.where(signal, 0, -1).astype(np.int32),
    }


@register_pass
@dataclass(frozen=True)
class Occupancy(Pass):
    """Per-event nPV and nTracks from a trained generator, and reconstructed PVs.

    Args:
        name: pass name.
        model: ``.keras`` generator file; default the shipped ``sim/models/occupancy.keras``.
        luminous_region: where pile-up PVs are placed (mm).
        card: the detector card (:mod:`sim.detector.card`) the defaults come from; the model must be trained on it.
        pv_sigma_xy_25, pv_sigma_z_25: reconstructed-PV resolution at 25 tracks [mm] (default: the card's).
        pv_share_signal, pv_share_pileup: relative track multiplicity of signal and pile-up PVs (default: the card's).
    """

    kind: ClassVar[str] = "occupancy"
    concurrent: ClassVar[bool] = True
    reads: ClassVar[tuple[str, ...]] = ("events",)
    writes: ClassVar[tuple[str, ...]] = ("events.n_pv", "events.n_tracks", "vertices")

    name: str = "occupancy"
    model: str | None = None
    luminous_region: LuminousRegion = field(default_factory=LuminousRegion)
    card: str = DEFAULT_CARD
    pv_sigma_xy_25: float | None = None
    pv_sigma_z_25: float | None = None
    pv_share_signal: float | None = None
    pv_share_pileup: float | None = None

    def __post_init__(self) -> None:
        keys = ("pv_sigma_xy_25", "pv_sigma_z_25", "pv_share_signal", "pv_share_pileup")
        fill_from_card(self, *keys)
        for key in keys:
            value = getattr(self, key)
            if not value > 0:
                raise ConfigError(f"pass {self.name!r}: {key}={value!r} must be > 0")

    def build(self) -> Kernel:
        trained = load_pass_model(self.model, "occupancy", kind="generator", inputs=(), outputs=OCCUPANCY_TARGETS,
                                  pass_name=self.name)
        check_model_card(trained.provenance, self.card, what=f"pass {self.name!r}: the occupancy model")
        model = CompiledModel(trained)
        name, region, detector = self.name, self.luminous_region, card(self.card)
        pv_resolution = {"sigma_xy_25": self.pv_sigma_xy_25, "sigma_z_25": self.pv_sigma_z_25,
                         "share_signal": self.pv_share_signal, "share_pileup": self.pv_share_pileup}
        # full events (Pythia, HepMC: n_interactions set) are counted, not drawn (sim.detector.full_occupancy)
        sql = ("SELECT event, pv_x, pv_y, pv_z FROM events WHERE batch = $batch AND n_interactions IS NULL"
               " AND coalesce(simulated, true) ORDER BY event")  # preselect-skipped events: no detector

        def kernel(ctx: BatchContext) -> None:
            from sim.detector.full_occupancy import full_event_occupancy

            full_event_occupancy(ctx, ctx.rng(name + ":full-events"), detector)
            ev = arrow_columns(ctx.query(sql))
            n = ev["event"].size
            if n == 0:
                return
            rng = ctx.rng(name)
            n_pv, n_tracks = samples_to_counts(model.sample(np.zeros((n, 0)), rng))
            b = np.full(n, ctx.batch.batch, np.int32)
            ctx.update("events", {"batch": b, "event": ev["event"], "n_pv": n_pv.astype(np.int16),
                                  "n_tracks": n_tracks.astype(np.int32)}, keys=("batch", "event"))
            pvs = reconstruct_pvs(ev, n_pv, n_tracks, rng, region, **pv_resolution)  # type: ignore[arg-type]
            ctx.insert("vertices", {"batch": np.full(pvs["event"].size, ctx.batch.batch, np.int32), **pvs})

        return kernel
