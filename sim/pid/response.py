"""The ``pid`` pass: GAN particle identification of every reconstructed track.

Reads the reconstructed momentum of each ``protoparticles`` row, the occupancy
``events.n_tracks`` of its event and the true species (``|mc_particles.pid|`` of the
matched MC particle), and fills the PID columns of :data:`sim.reference.pid.PID_COLUMNS`
with the chained per-species models of :mod:`sim.pid.models`, vectorised per species
over the whole batch.  Species without a model (and ghosts, ``mc_particle = -1``) use
the pion model.  Tracks with ``track_type = 0`` (not reconstructed) are left untouched;
the track type of the others limits the sub-detectors that give information (Upstream
tracks: RICH1 only, no IsMuon, no calorimeter term; :mod:`sim.pid.models`).

The calorimeter electron likelihood ``protoparticles.EcalPIDe`` (written by the
``calorimeter`` pass, which runs before ``pid`` in the default pipeline; 0 for a track
without a matched cluster) enters the global model: ``PIDe = RichDLLe + EcalPIDe +
dPIDe`` and ``ProbNNe`` (and the other ProbNNs) are conditioned on it, as in the
reference detector.  In a pipeline without a calorimeter pass ``EcalPIDe`` is NULL:
every track is then treated as a track without a cluster (``EcalPIDe = 0``: ``PIDe``
is the RICH term alone, electrons lose their calorimeter separation) and the pass logs
one warning line saying so.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from mambah import kinematics
from mambah.errors import DataError
from sim.core.pipeline import BatchContext, Kernel, Pass
from sim.core.registry import register_pass
from sim.detector.card import DEFAULT_CARD, card, check_model_card

__all__ = ("PID", "fast_pid")

log = logging.getLogger(__name__)

_QUERY = """
SELECT t.event, t."index", t.px, t.py, t.pz, t.track_type, t."EcalPIDe", e.n_tracks, m.pid AS mc_pid
FROM protoparticles AS t
JOIN events AS e ON e.batch = t.batch AND e.event = t.event
LEFT JOIN mc_particles AS m ON m.batch = t.batch AND m.event = t.event AND m."index" = t.mc_particle
WHERE t.batch = $batch AND t.track_type <> 0
ORDER BY t.event, t."index"
"""


def fast_pid(
    models: object,
    mc_pid: np.ndarray,
    px: np.ndarray,
    py: np.ndarray,
    pz: np.ndarray,
    n_tracks: np.ndarray,
    rng: np.random.Generator,
    track_type: np.ndarray | None = None,
    ecal_pid: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """PID columns for ``n`` tracks (pure function on arrays).

    Args:
        models: a :class:`sim.pid.models.PIDModelSet`.
        mc_pid: ``(n,)`` true PDG id (0 for ghosts; sign ignored; unknown → pion model).
        px, py, pz: ``(n,)`` reconstructed momentum [MeV].
        n_tracks: ``(n,)`` occupancy of each track's event.
        rng: source of randomness.
        track_type: ``(n,)`` codes 3 (Long), 4 (Upstream), 5 (Downstream); default all Long.
        ecal_pid: ``(n,)`` calorimeter electron likelihood ``EcalPIDe`` (0 without a
            matched cluster); default 0 for every track (no calorimeter).

    Returns:
        :data:`~sim.reference.pid.PID_COLUMNS` → ``(n,)`` arrays.

    Raises:
        DataError: NaN/inf momenta or occupancies, a zero momentum, or a track type
            other than 3, 4, 5.
    """
    from sim.pid.models import species_of_pid

    px, py, pz = (np.asarray(a, dtype=np.float64) for a in (px, py, pz))
    n_tracks = np.asarray(n_tracks, dtype=np.float64)
    ecal = None if ecal_pid is None else np.asarray(ecal_pid, dtype=np.float64)
    for name, arr in (("px", px), ("py", py), ("pz", pz), ("n_tracks", n_tracks), ("EcalPIDe", ecal)):
        if arr is not None and not np.all(np.isfinite(arr)):
            raise DataError(f"pid pass: column {name!r} holds NULL/NaN/inf values")
    pt = np.hypot(px, py)
    p = np.hypot(pt, pz)
    if np.any(p <= 0):
        raise DataError("pid pass: a track has zero momentum (px, py, pz)")
    eta = kinematics.eta(px, py, pz)
    return models.generate(species_of_pid(mc_pid), p, eta, n_tracks, rng,  # type: ignore[attr-defined]
                           track_type=track_type, ecal_pid=ecal)


@register_pass
@dataclass(frozen=True)
class PID(Pass):
    """GAN PID response per species (see module docstring).

    Args:
        name: pass name.
        model_dir: folder of the ``<species>_<part>.keras`` models (default: shipped).
        species: species with their own models; every other track uses ``"pi"``.

    Reads ``protoparticles`` (kinematics, and ``EcalPIDe`` when a calorimeter pass ran:
    without one every track gets ``EcalPIDe = 0`` and one warning line),
    ``events`` (``n_tracks``), ``mc_particles`` (``pid``); updates the PID columns of
    ``protoparticles``.
    """

    kind: ClassVar[str] = "pid"
    concurrent: ClassVar[bool] = True
    reads: ClassVar[tuple[str, ...]] = ("protoparticles.kinematics", "events.n_tracks", "mc_particles")
    writes: ClassVar[tuple[str, ...]] = ("protoparticles.pid",)

    name: str = "pid"
    model_dir: str | None = None
    species: tuple[str, ...] = ("e", "mu", "pi", "K", "p")
    card: str = DEFAULT_CARD

    def __post_init__(self) -> None:
        card(self.card)

    def build(self) -> Kernel:
        from sim.pid.models import load_pid_models

        loaded = load_pid_models(self.model_dir, tuple(self.species), config=card(self.card))
        for sp, sm in loaded.models.items():
            for part, m in sm.parts().items():
                check_model_card(m.provenance, self.card, what=f"pass {self.name!r}: the {sp} {part} PID model")
        models = loaded.compiled()
        # Run every network once on a few rows before any batch (eagerly: no tracing), so a model that cannot run fails here.
        n = 4 * len(models.models)
        models.generate(np.repeat(np.array(list(models.models), dtype=object), 4), np.full(n, 2e4),
                        np.full(n, 3.0), np.full(n, 150.0), np.random.default_rng(0))
        name = self.name
        warned: list[bool] = []

        def kernel(ctx: BatchContext) -> None:
            tab = ctx.query(_QUERY)
            if tab.num_rows == 0:
                return
            cols = {c: tab.column(c).to_numpy(zero_copy_only=False) for c in ("event", "index", "px", "py", "pz")}
            n_tracks = tab.column("n_tracks")
            if n_tracks.null_count:
                raise DataError(f"pid pass {name!r}: events.n_tracks is NULL in batch {ctx.batch.batch}; "
                                "run the occupancy pass before pid")
            mc_pid = tab.column("mc_pid").fill_null(0).to_numpy(zero_copy_only=False)
            ecal_col = tab.column("EcalPIDe")
            if ecal_col.null_count == tab.num_rows and not warned:
                warned.append(True)
                log.warning("pid pass %r: protoparticles.EcalPIDe is NULL (no calorimeter pass before pid): "
                            "EcalPIDe = 0 for every track, PIDe and ProbNNe carry no calorimeter term", name)
            ecal = ecal_col.fill_null(0.0).to_numpy(zero_copy_only=False)
            out = fast_pid(models, mc_pid, cols["px"], cols["py"], cols["pz"],
                           n_tracks.to_numpy(zero_copy_only=False), ctx.rng(name),
                           track_type=tab.column("track_type").to_numpy(zero_copy_only=False), ecal_pid=ecal)
            batch = np.full(tab.num_rows, ctx.batch.batch, dtype=np.int32)
            ctx.update("protoparticles", {"batch": batch, "event": cols["event"], "index": cols["index"], **out})

        return kernel
