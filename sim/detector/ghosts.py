"""The ghost pass: fake Long tracks (wrong hit combinations), with no MC particle.

LHCb's ghosts are tracks the pattern recognition builds from hits of different
particles (a VELO segment matched to the wrong T-station segment, or random hit
combinations); their number grows faster than the number of real tracks as the
occupancy rises ([PERF] Sec. 2.2; the ghost-probability classifier that removes most of
them: [GHOSTNN]).  The reference detector makes them with
:func:`sim.reference.tracking.simulate_ghosts`; this pass reproduces it with a model
trained on the reference (:mod:`sim.training.ghosts`, shipped as
``sim/models/ghosts.json``):

* **multiplicity**: per event ``Poisson(r(nTracks) · N_long)``, ``N_long`` the event's
  truth-matched Long tracks already in ``protoparticles`` and ``r(n) = a · (n / n_ref)^b``
  the ghost-to-real ratio fitted to the reference (the stored event is a part of the
  physical one, so the ghost fraction of its Long tracks is the physical fraction at its
  occupancy);
* **kinematics and fit quality**: ``log10 p``, ``η``, ``track_chi2ndof`` and ``ghost_prob``
  from a Gaussian copula (:class:`GhostSampler`: each marginal as a quantile table,
  their dependence as the correlation of the normal scores), φ uniform, charge ±1;
* **state**: :func:`ghost_states`, shared with the reference detector (the one home of
  how a ghost's state is measured, as :mod:`sim.detector.trackcov` is for real tracks):
  position and slopes from the VELO segment of a real, softer particle from the PV, the
  momentum from the wrong T segment, the covariance that of the reconstructed momentum,
  so the IPχ² of ghosts is larger than that of prompt real tracks.

Reads ``protoparticles`` (``mc_particle``, ``track_type``, ``index``) and ``events``
(``n_tracks``, ``pv_x/y/z``); inserts one ``protoparticles`` row per ghost with
``mc_particle = -1`` (never truth-matched), ``track_type = 3`` and the kinematic and
fit-quality columns of the resolution pass, indices after the event's last track.  It
runs after ``resolution`` and before ``calorimeter`` and ``pid``, so ghosts enter the
ECAL matching and get PID columns (the pion model, as every track without a true
species, :mod:`sim.pid.response`) and, downstream, every combination.

Sources: [PERF] LHCb collaboration, Int. J. Mod. Phys. A 30 (2015) 1530022,
arXiv:1412.6352; [GHOSTNN] M. De Cian et al., LHCb-PUB-2017-011 (CDS 2255039).
Units: MeV, mm.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from mambah.codes import TrackType
from mambah.errors import ConfigError, DataError, ModelError
from sim.core.pipeline import BatchContext, Kernel, Pass
from sim.core.registry import register_pass
from sim.detector.card import DEFAULT_CARD, card, check_model_card
from sim.detector.trackcov import (
    TrackErrorModel,
    cov_to_columns,
    crossed_velo_stations,
    reconstruct_states,
    state_covariance,
)
from sim.detector.vertexing import impact_parameter

__all__ = (
    "GHOST_FEATURES",
    "GHOST_VELO_SOFTENING",
    "GhostModel",
    "GhostSampler",
    "Ghosts",
    "ghost_counts",
    "ghost_states",
    "load_ghost_model",
    "make_ghosts",
)

log = logging.getLogger(__name__)

#: The ghost features the sampler generates, in its column order.
GHOST_FEATURES: tuple[str, ...] = ("log10_p", "eta", "track_chi2ndof", "ghost_prob")

#: Width of ``log10(p / p_VELO)``, ``|N(0, s)|``: the VELO segment of a ghost belongs to a
#: particle softer than the momentum the wrong T segment gives it (model).
GHOST_VELO_SOFTENING = 0.3

_MODEL_PATH = Path(__file__).resolve().parent.parent / "models" / "ghosts.json"


def ghost_counts(n_long: np.ndarray, n_tracks: np.ndarray, ratio_ref: float, occupancy_ref: float,
                 power: float, rng: np.random.Generator) -> np.ndarray:
    """Ghosts per event, ``Poisson(a · (nTracks / n_ref)^b · N_long)``.

    Args:
        n_long: ``(n_events,)`` real (truth-matched) Long tracks of each event.
        n_tracks: ``(n_events,)`` the events' occupancy nTracks.
        ratio_ref: ``a``, ghosts per real Long track at ``nTracks = occupancy_ref``.
        occupancy_ref: ``n_ref``.
        power: ``b``.
        rng: draws one Poisson number per event.

    Returns:
        ``(n_events,)`` int64 counts.
    """
    n_long = np.asarray(n_long, dtype=np.float64)
    occ = np.maximum(np.asarray(n_tracks, dtype=np.float64), 0.0)
    if not (np.all(np.isfinite(n_long)) and np.all(np.isfinite(occ))):
        raise DataError("ghost_counts: NaN/inf in the Long-track counts or nTracks")
    mean = ratio_ref * (occ / occupancy_ref) ** power * n_long
    return rng.poisson(mean).astype(np.int64)


def ghost_states(
    charge: np.ndarray,
    p: np.ndarray,
    eta: np.ndarray,
    phi: np.ndarray,
    pv: np.ndarray,
    n_tracks: np.ndarray,
    rng: np.random.Generator,
    errors: TrackErrorModel = TrackErrorModel(),
    velo_softening: float = GHOST_VELO_SOFTENING,
) -> dict[str, np.ndarray]:
    """Measured states of ghost Long tracks (shared by the reference detector and the pass).

    The VELO segment is that of a real particle from the PV with the ghost's direction and
    momentum ``p · 10^(-|N(0, velo_softening)|)``: its position and slopes are drawn from
    that particle's covariance (:func:`sim.detector.trackcov.reconstruct_states`).  The
    momentum is the ghost's ``p`` (from the wrong T segment) and the stored covariance is
    that of a Long track of momentum ``p`` (the fit does not know the segment is softer), so
    IP and IPχ² (:func:`sim.detector.vertexing.impact_parameter`) come out wider than those
    of real prompt tracks.

    Args:
        charge: ``(n,)`` ±1.
        p: ``(n,)`` reconstructed momentum [MeV].
        eta, phi: ``(n,)`` direction.
        pv: ``(n, 3)`` the event's PV [mm].
        n_tracks: ``(n,)`` the event's occupancy.
        rng: draws ``n`` normals, then ``(n, 5)`` normals.
        errors: the track error model.
        velo_softening: see :data:`GHOST_VELO_SOFTENING`.

    Returns:
        ``(n,)`` arrays ``px, py, pz, tx, ty, x, y, z, ip, ip_chi2``, the 15
        :data:`sim.detector.trackcov.COV_COLUMNS` and ``valid`` (bool): the direction
        crosses at least 3 VELO stations from the PV (a ghost needs a VELO segment); the
        callers drop the other rows (their columns are those of a placeholder direction).
    """
    p, eta, phi, charge = (np.asarray(a, dtype=np.float64) for a in (p, eta, phi, charge))
    pv = np.asarray(pv, dtype=np.float64).reshape(-1, 3)
    n = p.size
    slope = 1.0 / np.sinh(eta)
    valid = crossed_velo_stations(np.zeros(n), np.zeros(n), pv[:, 2], slope * np.cos(phi), slope * np.sin(phi),
                                  errors).sum(axis=1) >= 3
    eta = np.where(valid, eta, 3.5)  # placeholder direction of the rows dropped by the caller
    pv = np.where(valid[:, None], pv, 0.0)
    soft = 10.0 ** (-np.abs(rng.normal(0.0, velo_softening, n)))
    pt = p * soft / np.cosh(eta)
    velo = {
        "charge": charge, "px": pt * np.cos(phi), "py": pt * np.sin(phi), "pz": pt * np.sinh(eta),
        "n_tracks": np.asarray(n_tracks, dtype=np.float64),
        **{f"origin_{a}": pv[:, i] for i, a in enumerate("xyz")},
        **{f"pv_{a}": pv[:, i] for i, a in enumerate("xyz")},
    }
    long_ = np.full(n, int(TrackType.LONG))
    st = reconstruct_states(velo, long_, rng.standard_normal((n, 5)), errors)
    tx, ty = st["tx"], st["ty"]
    tx0, ty0 = velo["px"] / velo["pz"], velo["py"] / velo["pz"]  # the segment's true slopes (its geometry)
    _, cov = state_covariance(p, tx0, ty0, np.zeros(n), np.zeros(n), pv[:, 2], long_, errors, velo["n_tracks"])
    state = np.column_stack([st["x"], st["y"], tx, ty, charge / p])
    ip, ip_chi2 = impact_parameter(st["z"], state, cov, pv[:, None, :], np.zeros((n, 1, 3, 3)))
    pz = p / np.sqrt(1.0 + tx * tx + ty * ty)
    return {"px": tx * pz, "py": ty * pz, "pz": pz, "tx": tx, "ty": ty, "x": st["x"], "y": st["y"], "z": st["z"],
            "ip": ip[:, 0], "ip_chi2": ip_chi2[:, 0], **cov_to_columns(cov), "valid": valid}


@dataclass(frozen=True)
class GhostSampler:
    """Gaussian copula of :data:`GHOST_FEATURES`.

    Attributes:
        levels: ``(k,)`` increasing probability levels in [0, 1] of the quantile tables.
        quantiles: per feature, ``(k,)`` its quantiles at ``levels`` (non-decreasing).
        correlation: ``(d, d)`` correlation of the normal scores ``Φ⁻¹(F(x))``.
    """

    levels: tuple[float, ...]
    quantiles: tuple[tuple[float, ...], ...]
    correlation: tuple[tuple[float, ...], ...]

    def __post_init__(self) -> None:
        lv = np.asarray(self.levels, dtype=np.float64)
        q = np.asarray(self.quantiles, dtype=np.float64)
        c = np.asarray(self.correlation, dtype=np.float64)
        d = len(GHOST_FEATURES)
        if lv.ndim != 1 or lv.size < 3 or lv[0] != 0.0 or lv[-1] != 1.0 or np.any(np.diff(lv) <= 0):
            raise ModelError("ghost sampler: levels must increase from 0 to 1 (at least 3)")
        if q.shape != (d, lv.size) or not np.all(np.isfinite(q)) or np.any(np.diff(q, axis=1) < 0):
            raise ModelError(f"ghost sampler: quantiles must be {d} finite non-decreasing tables of {lv.size}")
        if c.shape != (d, d) or not np.allclose(c, c.T) or np.any(np.linalg.eigvalsh(c) <= 0):
            raise ModelError(f"ghost sampler: correlation must be a {d} x {d} positive-definite symmetric matrix")

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """``(n, d)`` draws; ``rng`` draws ``(n, d)`` normals."""
        from scipy.special import ndtr

        z = rng.standard_normal((int(n), len(GHOST_FEATURES))) @ np.linalg.cholesky(
            np.asarray(self.correlation)).T
        u = ndtr(z)
        lv = np.asarray(self.levels)
        return np.column_stack([np.interp(u[:, j], lv, q) for j, q in enumerate(self.quantiles)])

    @classmethod
    def fit(cls, data: np.ndarray, n_levels: int = 201) -> GhostSampler:
        """Fit to ``(n, d)`` reference ghosts (columns :data:`GHOST_FEATURES`)."""
        from scipy.special import ndtri

        x = np.asarray(data, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != len(GHOST_FEATURES) or x.shape[0] < 100 or not np.all(np.isfinite(x)):
            raise DataError(f"ghost sampler: need (n >= 100, {len(GHOST_FEATURES)}) finite training rows, "
                            f"got {x.shape}")
        levels = np.linspace(0.0, 1.0, n_levels)
        quantiles = np.quantile(x, levels, axis=0).T
        ranks = (np.argsort(np.argsort(x, axis=0), axis=0) + 0.5) / x.shape[0]
        corr = np.corrcoef(ndtri(ranks), rowvar=False)
        return cls(tuple(float(v) for v in levels), tuple(tuple(float(v) for v in row) for row in quantiles),
                   tuple(tuple(float(v) for v in row) for row in corr))


@dataclass(frozen=True)
class GhostModel:
    """A trained ghost model: multiplicity law and kinematic sampler (see the module docstring).

    Attributes:
        ratio_ref: ghosts per real Long track at ``nTracks = occupancy_ref``.
        occupancy_ref: the reference occupancy ``n_ref``.
        power: the exponent ``b`` of ``r(n) = a · (n / n_ref)^b``.
        sampler: the kinematic sampler.
        provenance: training record (detector card, sample, seed, date, reference numbers).
    """

    ratio_ref: float
    occupancy_ref: float
    power: float
    sampler: GhostSampler
    provenance: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("ratio_ref", "occupancy_ref"):
            v = getattr(self, name)
            if not (np.isfinite(v) and v > 0):
                raise ModelError(f"ghost model: {name}={v!r} must be a positive number")
        if not (np.isfinite(self.power) and 0.0 <= self.power <= 5.0):
            raise ModelError(f"ghost model: power={self.power!r} must be in [0, 5]")

    def to_dict(self) -> dict[str, Any]:
        s = self.sampler
        return {"kind": "ghosts", "features": list(GHOST_FEATURES), "ratio_ref": self.ratio_ref,
                "occupancy_ref": self.occupancy_ref, "power": self.power,
                "sampler": {"levels": [round(v, 6) for v in s.levels],
                            "quantiles": [[round(v, 6) for v in q] for q in s.quantiles],
                            "correlation": [[round(v, 6) for v in row] for row in s.correlation]},
                "provenance": dict(self.provenance)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], where: str = "ghost model") -> GhostModel:
        try:
            if d.get("kind") != "ghosts" or tuple(d["features"]) != GHOST_FEATURES:
                raise ModelError(f"{where}: not a ghost model of features {list(GHOST_FEATURES)}")
            s = d["sampler"]
            sampler = GhostSampler(tuple(s["levels"]), tuple(tuple(q) for q in s["quantiles"]),
                                   tuple(tuple(r) for r in s["correlation"]))
            return cls(float(d["ratio_ref"]), float(d["occupancy_ref"]), float(d["power"]), sampler,
                       dict(d.get("provenance", {})))
        except (KeyError, TypeError, ValueError) as err:
            raise ModelError(f"{where}: malformed ghost model ({type(err).__name__}: {err})") from err

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.write_text(json.dumps(self.to_dict(), indent=None, separators=(",", ":")) + "\n")
        return path


def load_ghost_model(path: str | Path | None = None) -> GhostModel:
    """The ghost model at ``path`` (default: the shipped ``sim/models/ghosts.json``).

    Raises:
        ModelError: a missing, unreadable or malformed file.
    """
    where = Path(path) if path else _MODEL_PATH
    try:
        d = json.loads(where.read_text())
    except FileNotFoundError:
        raise ModelError(f"ghost model {str(where)!r} not found; train one with "
                         "scripts/train_ghost_model.py or give the pass's model") from None
    except (OSError, json.JSONDecodeError) as err:
        raise ModelError(f"ghost model {str(where)!r} cannot be read: {err}") from err
    return GhostModel.from_dict(d, where=f"ghost model {str(where)!r}")


_QUERY = """
SELECT e.event, e.n_tracks, e.pv_x, e.pv_y, e.pv_z,
       COALESCE(t.n_long, 0) AS n_long, COALESCE(t.last_index, -1) AS last_index
FROM events AS e
LEFT JOIN (
    SELECT event, count(*) FILTER (WHERE track_type = 3 AND mc_particle >= 0) AS n_long,
           max("index") AS last_index
    FROM protoparticles WHERE batch = $batch GROUP BY event
) AS t ON t.event = e.event
WHERE e.batch = $batch AND coalesce(e.simulated, true)  -- preselect-skipped events: no detector, no ghosts
ORDER BY e.event
"""


def make_ghosts(model: GhostModel, events: Mapping[str, np.ndarray], rng: np.random.Generator,
                errors: TrackErrorModel = TrackErrorModel()) -> dict[str, np.ndarray]:
    """The ghosts of a batch's events (pure function on arrays).

    Args:
        model: the trained ghost model.
        events: ``(n_events,)`` arrays ``event``, ``n_tracks``, ``pv_x/y/z``, ``n_long``,
            ``last_index`` (the event's largest protoparticle index, -1 for none).
        rng: source of randomness.
        errors: the track error model.

    Returns:
        ``(n_ghosts,)`` arrays ``event``, ``index``, ``charge`` and the columns of
        :func:`ghost_states` plus ``track_chi2ndof``, ``ghost_prob``, ``p``, ``eta``.
    """
    occ = np.asarray(events["n_tracks"], dtype=np.float64)
    if not np.all(np.isfinite(occ)):
        raise DataError("ghosts pass: events.n_tracks holds NULL/NaN (run an occupancy pass before it)")
    counts = ghost_counts(events["n_long"], occ, model.ratio_ref, model.occupancy_ref, model.power, rng)
    n = int(counts.sum())
    ev_pos = np.repeat(np.arange(counts.size), counts)
    x = model.sampler.sample(n, rng)
    p = 10.0 ** x[:, 0]
    eta = x[:, 1]
    phi = rng.uniform(-np.pi, np.pi, n)
    charge = rng.choice(np.array([-1.0, 1.0]), n)
    pv = np.column_stack([np.asarray(events[f"pv_{a}"], dtype=np.float64)[ev_pos] for a in "xyz"])
    st = ghost_states(charge, p, eta, phi, pv, occ[ev_pos], rng, errors)
    out = {"event": np.asarray(events["event"])[ev_pos].astype(np.int32),
           "charge": charge, **st, "track_chi2ndof": np.maximum(x[:, 2], 0.0),
           "ghost_prob": np.clip(x[:, 3], 0.0, 1.0), "p": p, "eta": eta}
    keep = out.pop("valid")
    out = {k: v[keep] for k, v in out.items()}
    out["index"] = (np.asarray(events["last_index"], dtype=np.int64)[ev_pos[keep]] + 1
                    + _within(out["event"])).astype(np.int32)
    return out


def _within(event: np.ndarray) -> np.ndarray:
    """Position of each row within its run of equal ``event`` values (rows grouped by event)."""
    if event.size == 0:
        return np.zeros(0, np.int64)
    start = np.r_[0, np.flatnonzero(np.diff(event)) + 1]
    return np.arange(event.size) - np.repeat(start, np.diff(np.r_[start, event.size]))


@register_pass
@dataclass(frozen=True)
class Ghosts(Pass):
    """Ghost Long tracks from the trained ghost model (see the module docstring).

    Args:
        name: pass name.
        model: ghost model JSON; default the shipped ``sim/models/ghosts.json``.
        scale: multiplies the ghost-to-real ratio (1: the reference's; 0: no ghosts).
        errors: the track error model of the states (the resolution pass's default).
        card: the detector card; the model must be trained on it.
    """

    kind: ClassVar[str] = "ghosts"
    concurrent: ClassVar[bool] = True
    reads: ClassVar[tuple[str, ...]] = ("protoparticles", "protoparticles.kinematics", "events", "events.n_tracks")
    writes: ClassVar[tuple[str, ...]] = ("protoparticles",)

    name: str = "ghosts"
    model: str | None = None
    scale: float = 1.0
    errors: TrackErrorModel = field(default_factory=TrackErrorModel)
    card: str = DEFAULT_CARD

    def __post_init__(self) -> None:
        card(self.card)
        if isinstance(self.scale, bool) or not isinstance(self.scale, (int, float)) or not (
                np.isfinite(self.scale) and self.scale >= 0):
            raise ConfigError(f"pass {self.name!r}: scale={self.scale!r} must be a number >= 0")

    def build(self) -> Kernel:
        import dataclasses

        trained = load_ghost_model(self.model)
        check_model_card(dict(trained.provenance), self.card, what=f"pass {self.name!r}: the ghost model")
        model = dataclasses.replace(trained, ratio_ref=trained.ratio_ref * float(self.scale)) if self.scale > 0 \
            else None
        name, errors = self.name, self.errors

        def kernel(ctx: BatchContext) -> None:
            if model is None:
                return
            table = ctx.query(_QUERY)
            ev = {k: table.column(k).to_numpy(zero_copy_only=False) for k in table.column_names}
            g = make_ghosts(model, ev, ctx.rng(name), errors)
            n = g["event"].size
            if n == 0:
                return
            cols = ("px", "py", "pz", "tx", "ty", "x", "y", "z", "ip", "ip_chi2", "track_chi2ndof", "ghost_prob")
            ctx.insert("protoparticles", {
                "batch": np.full(n, ctx.batch.batch, np.int32), "event": g["event"], "index": g["index"],
                "mc_particle": np.full(n, -1, np.int32), "track_type": np.full(n, int(TrackType.LONG), np.int16),
                "charge": g["charge"].astype(np.int16), **{k: g[k] for k in cols},
                **{k: v for k, v in g.items() if k.startswith("cov_")}})

        return kernel
