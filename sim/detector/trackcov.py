"""Track-state covariance: the hit-resolution + multiple-scattering error model of a track.

One home for the 5 × 5 covariance of the state ``(x, y, tx, ty, q/p)`` that the
reference detector (:mod:`sim.reference.tracking`) draws its residuals from and that
the fast resolution pass (:mod:`sim.detector.resolution`) gives every track.  The
covariance is an analytic function of the true kinematics (p, slopes — i.e. η, φ),
the origin, the track type and the VELO geometry, so the fast pass evaluates the
same function instead of learning it.  It depends on the occupancy through the VELO
hit resolution (``TrackErrorModel.hit_occupancy_slope``, a labelled model assumption),
so both the reference and the fast pass condition it on the event's ``n_tracks``.

Model (per transverse projection, x and y independent):

* VELO-based tracks (Long, Upstream): straight-line least-squares fit of one hit of
  resolution ``hit_resolution`` (best at the optimal track angle, worse towards normal
  incidence: ``hit_angle_factor``) on every VELO station the true line crosses inside
  the sensor radii, giving the 2 × 2 covariance of (position, slope) at the state
  z (the closest approach of the line to the beam line), plus one effective
  scatterer (RF foil and first sensors, ``ms_x0`` radiation lengths at normal
  incidence, path ∝ sqrt(1 + tx² + ty²)) at the first crossed station: with
  θ₀ = 13.6 MeV/p·sqrt(X)(1 + 0.038 ln X) (Highland, PDG RPP Sec. 34.3) and lever
  arm L to the state, it adds θ₀²·[[L², −L], [−L, 1]].  The ``hit_resolution``,
  ``hit_angle_factor`` and ``ms_x0`` defaults are tuned so that σ(IP_x) of prompt Long
  tracks follows the published (11.6 + 23.4/pT[GeV]) µm ([PERF] Sec. 3.2, Fig. 11) to a
  few per cent and the PV of 25 tracks the published 13 / 71 µm (x / z, [VELO] abstract)
  within 15 %; the VELO's best hit resolution is ≈ 4 µm ([VELO] Sec. 4.2).
* Downstream tracks: state at the TT, position σ ``downstream_position_resolution``,
  slope σ ``downstream_slope_scale``·hypot(``slope_res_const``, ``slope_res_ms``/p)
  (model: TT + T stations through the fringe field).
* q/p: σ(q/p) = (σ_p/p)/p, uncorrelated with the geometry (model); σ_p/p = a ⊕ b·p
  for Long tracks ([PERF] Sec. 2.3: 0.5 % at low p to 1.0 % at 200 GeV), ×1.5 for
  Downstream, 15 % for Upstream (model).

Units: mm, MeV, rad; q/p in 1/MeV.

Sources:

* [PERF] LHCb collaboration, "LHCb detector performance", Int. J. Mod. Phys. A 30
  (2015) 1530022, arXiv:1412.6352.
* [VELO] LHCb VELO group, "Performance of the LHCb Vertex Locator", JINST 9 (2014)
  P09007, arXiv:1405.7808.
* [DET]  LHCb collaboration, "The LHCb Detector at the LHC", JINST 3 (2008) S08005.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields

import numpy as np
from numpy.typing import ArrayLike

from mambah.codes import TrackType
from mambah.errors import ConfigError, DataError
from sim.detector.vertexing import impact_parameter

__all__ = (
    "COV_COLUMNS",
    "STATE_NAMES",
    "VELO_RUN2_STATION_Z",
    "TrackErrorModel",
    "cov_from_columns",
    "cov_to_columns",
    "crossed_velo_stations",
    "reconstruct_states",
    "state_covariance",
    "state_z",
    "states_from_columns",
)

VELO_RUN2_STATION_Z: tuple[float, ...] = (
    -175.0, -145.0, -115.0, -85.0, -55.0, -25.0, 5.0, 35.0, 65.0, 95.0, 125.0,
    155.0, 185.0, 215.0, 245.0, 275.0, 435.0, 585.0, 635.0, 685.0, 735.0,
)  # fmt: skip
"""z (mm) of the 21 Run 1/2 VELO stations: [DET] Sec. 5.1 and [VELO] Sec. 2 give
21 stations spanning about −175 < z < +750 mm, 30 mm apart around the
interaction region and wider downstream.  The individual positions here are an
approximation of that layout (30 mm pitch up to 275 mm, five sparse stations
after), not the survey values."""

STATE_NAMES: tuple[str, ...] = ("x", "y", "tx", "ty", "qop")
"""Order of the state vector (mm, mm, rad, rad, 1/MeV)."""

COV_COLUMNS: tuple[str, ...] = tuple(
    f"cov_{STATE_NAMES[i]}_{STATE_NAMES[j]}" for i in range(5) for j in range(i, 5)
)
"""The 15 independent covariance elements, upper triangle row by row:
``cov_x_x, cov_x_y, cov_x_tx, cov_x_ty, cov_x_qop, cov_y_y, …, cov_qop_qop``."""

_IU = np.triu_indices(5)


@dataclass(frozen=True)
class TrackErrorModel:
    """Numbers of the track-state error model (module docstring).

    Attributes:
        velo_station_z: z (mm) of the VELO stations, :data:`VELO_RUN2_STATION_Z`.
        velo_r_min: inner radius (mm) of the VELO sensors, 8.2 mm ([VELO] Sec. 2).
        velo_r_max: outer radius (mm), ≈ 42 mm ([VELO] Sec. 2).
        hit_resolution: effective σ (mm) of one VELO hit per coordinate at the optimal
            track angle, 7.5 µm (tuned with ``ms_x0`` and ``hit_angle_factor`` so that
            σ(IP_x) of the prompt muons of ``mambah validate published``, fitted as
            a + b/pT over 0.3 < 1/pT < 3 GeV⁻¹, gives a = 11.6 µm, b = 24.2 µm·GeV against
            the published 11.6 and 23.4 of [VELO] Sec. 6 / [PERF] Sec. 3.2; the earlier
            angle-independent 17 µm gave 16.3 and 21.9, out of tolerance).  [VELO] abstract:
            "a best hit resolution of 4 µm is achieved at the optimal track angle" for the
            smallest (40 µm) strip pitch; averaged over the 40–100 µm pitches a few µm more.
            The fit here ignores alignment and the scattering between hits, which this
            number absorbs.
        hit_angle_factor: growth of the hit resolution towards normal incidence,
            σ_hit(θ) = hit_resolution·(1 + factor·max(1 − θ/θ_opt, 0)), θ the track's polar
            angle: 2.0, i.e. 3× the optimum for tracks crossing the sensors at right angles
            (high η), where a strip's charge is not shared with its neighbour and the
            resolution tends to the binary pitch/√12 ≈ 12–29 µm ([VELO] Sec. 4.2: the
            resolution improves with the projected angle up to the optimum).  Besides the
            IP constant it sets the PV z/x ratio: large-angle tracks, which measure the PV
            z, are the best measured (the PV of 25 tracks of ``mambah validate published``:
            11.4 / 75.9 µm in x / z against the published 13 / 71; at the same IP constant
            without it 11.3 / 79.3).  0 switches it off.
        hit_angle_optimum: θ_opt (rad) of the hit resolution, 0.15 rad ≈ 8.6° (model:
            [VELO] Sec. 4.2, best resolution at projected angles of about 8–10°).
        hit_occupancy_slope: relative growth of ``hit_resolution`` per reconstructed track
            of the event, σ_hit(n) = hit_resolution·(1 + slope·n): 2e-4, i.e. +2 % per 100
            tracks (a model assumption, not a published number: merged and shared clusters
            and spill-over grow with the occupancy; the tuning of ``hit_resolution`` above
            is the n = 0 limit).  0 switches the occupancy dependence off.
        ms_x0: effective material (radiation lengths at normal incidence) before the
            first measurement, 0.047 (tuned as above, the IP slope; 0.05 before; the RF foil and first sensor are
            ≈ 0.02 X0 at normal incidence, [VELO] Sec. 2, crossed at grazing angles
            by the foil's corrugations).
        sigma_p_const: constant term of σ_p/p of Long tracks, 0.5 % ([PERF] Sec. 2.3).
        sigma_p_slope: linear term (1/MeV), 1.0 % at 200 GeV ([PERF] Sec. 2.3).
        upstream_sigma_p: σ_p/p of Upstream tracks, 15 % (model).
        downstream_sigma_p_scale: σ_p/p of Downstream relative to Long, ×1.5 (model).
        downstream_z: z (mm) of the Downstream state, the TT, 2485 mm ([DET] Sec. 5.2).
        downstream_position_resolution: σ (mm) of the Downstream state position (model).
        slope_res_const: constant term (rad) of the slope resolution used for
            Downstream tracks (model, 0.04 mrad before the scale).
        slope_res_ms: multiple-scattering term (rad·MeV), 1.5 mrad·GeV/p (model).
        downstream_slope_scale: Downstream slope resolution relative to that, ×5 (model).
    """

    velo_station_z: tuple[float, ...] = VELO_RUN2_STATION_Z
    velo_r_min: float = 8.2
    velo_r_max: float = 42.0
    hit_resolution: float = 0.0075
    hit_occupancy_slope: float = 2e-4
    hit_angle_factor: float = 2.0
    hit_angle_optimum: float = 0.15
    ms_x0: float = 0.047
    sigma_p_const: float = 0.005
    sigma_p_slope: float = 4.330127e-8
    upstream_sigma_p: float = 0.15
    downstream_sigma_p_scale: float = 1.5
    downstream_z: float = 2485.0
    downstream_position_resolution: float = 0.1
    slope_res_const: float = 4e-5
    slope_res_ms: float = 1.5
    downstream_slope_scale: float = 5.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "velo_station_z", tuple(float(z) for z in self.velo_station_z))
        if len(self.velo_station_z) < 3 or list(self.velo_station_z) != sorted(self.velo_station_z):
            raise ConfigError(
                f"TrackErrorModel.velo_station_z={self.velo_station_z!r}; expected >= 3 increasing z values"
            )
        for f in fields(self):
            if f.name == "velo_station_z":
                continue
            value = getattr(self, f.name)
            if f.name in ("hit_occupancy_slope", "hit_angle_factor"):
                if not (np.isfinite(value) and value >= 0):
                    raise ConfigError(f"TrackErrorModel.{f.name}={value!r}; expected a number >= 0")
                continue
            if f.name != "downstream_z" and not (np.isfinite(value) and value > 0):
                raise ConfigError(f"TrackErrorModel.{f.name}={value!r}; expected a positive number")
        if not self.velo_r_min < self.velo_r_max:
            raise ConfigError(
                f"TrackErrorModel.velo_r_min={self.velo_r_min} must be below velo_r_max={self.velo_r_max}"
            )


#: :func:`crossed_velo_stations` of at least this many tracks runs one compiled loop (the same numbers bit for
#: bit; :mod:`sim.detector._trackcov_kernels`); fewer stay numpy, so a small run does not import numba.
COMPILED_MIN_TRACKS = 16_384


def crossed_velo_stations(
    x0: np.ndarray, y0: np.ndarray, z0: np.ndarray, tx: np.ndarray, ty: np.ndarray, model: TrackErrorModel
) -> np.ndarray:
    """Stations ``(n, n_stations)`` bool that the line crosses downstream of its origin inside the sensors.

    Args:
        x0, y0: origin relative to the beam line (mm), ``(n,)``; z0: origin z (mm).
        tx, ty: slopes, ``(n,)``.
        model: geometry.
    """
    if len(x0) >= COMPILED_MIN_TRACKS:  # one compiled loop, the same numbers (sim.detector._trackcov_kernels)
        from sim.detector._trackcov_kernels import crossed_loop

        arrays = [np.ascontiguousarray(a, dtype=np.float64) for a in (x0, y0, z0, tx, ty)]
        zs1 = np.ascontiguousarray(model.velo_station_z, dtype=np.float64)
        out = np.empty((len(arrays[0]), len(zs1)), dtype=bool)
        crossed_loop(*arrays, zs1, float(model.velo_r_min**2), float(model.velo_r_max**2), out)
        return out
    zs = np.asarray(model.velo_station_z)[None, :]
    dz = zs - z0[:, None]
    xs = x0[:, None] + tx[:, None] * dz
    ys = y0[:, None] + ty[:, None] * dz
    r2 = xs * xs + ys * ys
    return (dz > 0) & (r2 > model.velo_r_min**2) & (r2 < model.velo_r_max**2)


def state_z(
    tx: np.ndarray, ty: np.ndarray, x0: np.ndarray, y0: np.ndarray, z0: np.ndarray, track_type: np.ndarray,
    downstream_z: float,
) -> np.ndarray:
    """Reference z ``(n,)`` of a track's state (mm): where the true line (origin ``x0, y0``
    relative to the beam line, ``z0``; slopes ``tx, ty``) passes closest to the beam
    line, or ``downstream_z`` for Downstream tracks (code 5)."""
    tx, ty, x0, y0, z0 = (np.asarray(a, dtype=np.float64) for a in (tx, ty, x0, y0, z0))
    t2 = tx * tx + ty * ty
    s_poca = -(x0 * tx + y0 * ty) / np.where(t2 > 0, t2, 1.0)
    return np.where(np.asarray(track_type) == TrackType.DOWNSTREAM, downstream_z, z0 + s_poca)


def state_covariance(
    p: np.ndarray,
    tx: np.ndarray,
    ty: np.ndarray,
    x0: np.ndarray,
    y0: np.ndarray,
    z0: np.ndarray,
    track_type: np.ndarray,
    model: TrackErrorModel = TrackErrorModel(),
    n_tracks: ArrayLike | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """State z and 5 × 5 covariance of each track's ``(x, y, tx, ty, q/p)``.

    Args:
        p: true momentum (MeV), ``(n,)``.
        tx, ty: true slopes, ``(n,)``.
        x0, y0: origin relative to the beam line (mm), ``(n,)``.
        z0: origin z (mm), ``(n,)``.
        track_type: ``(n,)`` codes 3 Long, 4 Upstream, 5 Downstream (others: NaN rows).
        model: numbers of the error model.
        n_tracks: ``(n,)`` reconstructed tracks of each track's event (the occupancy):
            the VELO hit resolution is ``hit_resolution·(1 + hit_occupancy_slope·n_tracks)``;
            ``None`` is an empty event (n = 0, the tuning point).

    Returns:
        ``z_state`` ``(n,)`` (mm): the z of the true line's closest approach to the beam
        line for Long/Upstream tracks, ``model.downstream_z`` for Downstream;
        ``cov`` ``(n, 5, 5)``.  Rows of other track types are NaN.

    Raises:
        DataError: A VELO track crosses fewer than 2 stations (no straight-line fit), or
            ``n_tracks`` has the wrong shape or a negative or non-finite entry.
    """
    p = np.asarray(p, dtype=np.float64)
    tx = np.asarray(tx, dtype=np.float64)
    ty = np.asarray(ty, dtype=np.float64)
    x0 = np.asarray(x0, dtype=np.float64)
    y0 = np.asarray(y0, dtype=np.float64)
    z0 = np.asarray(z0, dtype=np.float64)
    tt = np.asarray(track_type)
    n = p.shape[0]
    velo = (tt == TrackType.LONG) | (tt == TrackType.UPSTREAM)
    down = tt == TrackType.DOWNSTREAM
    t2 = tx * tx + ty * ty
    z_state = state_z(tx, ty, x0, y0, z0, tt, model.downstream_z)

    crossed = crossed_velo_stations(x0, y0, z0, tx, ty, model)
    n_crossed = crossed.sum(axis=1)
    if np.any(velo & (n_crossed < 2)):
        raise DataError(
            f"state_covariance: {int((velo & (n_crossed < 2)).sum())} VELO track(s) cross fewer than 2 "
            "VELO stations; check the track types against the geometry"
        )
    u = np.asarray(model.velo_station_z)[None, :] - z_state[:, None]
    theta = np.arctan(np.sqrt(t2))
    sigma_hit = model.hit_resolution * (
        1.0 + model.hit_angle_factor * np.maximum(1.0 - theta / model.hit_angle_optimum, 0.0)
    )
    if n_tracks is not None:
        occ = np.asarray(n_tracks, dtype=np.float64)
        if occ.shape != (n,) or not np.all(np.isfinite(occ) & (occ >= 0)):
            raise DataError(f"state_covariance: n_tracks must be {n} finite counts >= 0; got shape {occ.shape}")
        sigma_hit = sigma_hit * (1.0 + model.hit_occupancy_slope * occ)
    w = crossed / (sigma_hit**2)[:, None]
    s0, s1, s2 = w.sum(axis=1), (w * u).sum(axis=1), (w * u * u).sum(axis=1)
    det = np.where(velo, s0 * s2 - s1 * s1, 1.0)
    c_xx, c_xt, c_tt = s2 / det, -s1 / det, s0 / det
    z_first = np.min(np.where(crossed, np.asarray(model.velo_station_z)[None, :], np.inf), axis=1)
    lever = np.where(velo, np.maximum(z_first - z_state, 0.0), 0.0)
    safe_p = np.where(p > 0, p, 1.0)
    x_rad = model.ms_x0 * np.sqrt(1.0 + t2)
    theta0 = 13.6 / safe_p * np.sqrt(x_rad) * (1.0 + 0.038 * np.log(x_rad))
    c_xx = c_xx + (theta0 * lever) ** 2
    c_xt = c_xt - theta0**2 * lever
    c_tt = c_tt + theta0**2

    sigma_t_down = model.downstream_slope_scale * np.hypot(model.slope_res_const, model.slope_res_ms / safe_p)
    c_xx = np.where(down, model.downstream_position_resolution**2, c_xx)
    c_xt = np.where(down, 0.0, c_xt)
    c_tt = np.where(down, sigma_t_down**2, c_tt)

    sigma_long = np.hypot(model.sigma_p_const, model.sigma_p_slope * p)
    sigma_rel = np.select(
        [tt == TrackType.UPSTREAM, down], [np.full(n, model.upstream_sigma_p), model.downstream_sigma_p_scale * sigma_long],
        default=sigma_long,
    )
    cov = np.zeros((n, 5, 5))
    for a, b in ((0, 2), (1, 3)):
        cov[:, a, a] = c_xx
        cov[:, a, b] = cov[:, b, a] = c_xt
        cov[:, b, b] = c_tt
    cov[:, 4, 4] = (sigma_rel / safe_p) ** 2
    ok = velo | down
    cov[~ok] = np.nan
    return np.where(ok, z_state, np.nan), cov


def _cholesky_residuals(cov: np.ndarray, normal: np.ndarray) -> np.ndarray:
    """``L @ normal`` per row, ``C = L Lᵀ`` the Cholesky factor of :func:`state_covariance`'s ``(n, 5, 5)``.

    The covariance has two equal 2 × 2 blocks, ``(x, tx)`` and ``(y, ty)``, and the ``q/p``
    variance, nothing else: the factor is written out (``l00 = √c_xx``, ``l20 = c_xt / l00``,
    ``l22 = √(c_tt − l20²)``, ``l44 = √c_44``), the same numbers as LAPACK's factor of the
    full matrix up to its rounding (it may divide by multiplying with a reciprocal), in
    place of ``np.linalg.cholesky`` on ``(n, 5, 5)`` and an ``einsum`` (issue #19: 0.07 CPU s
    per batch of 50 000 events).

    Raises:
        DataError: a block is not positive definite (as ``np.linalg.cholesky`` refuses it).
    """
    out = np.empty_like(normal)
    for a, b in ((0, 2), (1, 3)):
        cxx, cxt, ctt = cov[:, a, a], cov[:, a, b], cov[:, b, b]
        with np.errstate(invalid="ignore", divide="ignore"):
            l00 = np.sqrt(cxx)
            l20 = cxt / l00
            l22 = np.sqrt(ctt - l20 * l20)
        out[:, a] = l00 * normal[:, a]
        out[:, b] = l20 * normal[:, a] + l22 * normal[:, b]
        if not (np.all(l00 > 0) and np.all(l22 > 0)):
            raise DataError("reconstruct_states: a track-state covariance is not positive definite")
    l44 = np.sqrt(cov[:, 4, 4])
    if not np.all(l44 > 0):
        raise DataError("reconstruct_states: a track-state covariance is not positive definite")
    out[:, 4] = l44 * normal[:, 4]
    return out


def reconstruct_states(
    truth: dict[str, np.ndarray],
    track_type: np.ndarray,
    normal: np.ndarray,
    model: TrackErrorModel = TrackErrorModel(),
) -> dict[str, np.ndarray]:
    """Reconstructed track states: the true state plus residuals drawn from its covariance.

    The one place where both the reference detector and the fast resolution pass turn
    truth into a measured state: ``residual = L·normal`` with ``C = L Lᵀ``
    (:func:`state_covariance`), so ``(reco − true)`` has exactly the covariance ``C``.

    Args:
        truth: ``(n,)`` arrays ``charge`` (e), ``px, py, pz`` (MeV), ``origin_x/y/z`` and
            ``pv_x/y/z`` (mm; the PV defines the beam line and the IP reference point),
            optionally ``n_tracks`` (the event's occupancy, :func:`state_covariance`;
            absent: an empty event).
        track_type: ``(n,)`` codes 3, 4, 5 (other codes give NaN rows).
        normal: ``(n, 5)`` standard-normal deviates (from the caller's Generator).
        model: the error model.

    Returns:
        ``(n,)`` float64 arrays ``px, py, pz`` (MeV), ``tx, ty``, ``x, y, z`` (mm, the state
        at its reference z), ``qop`` (1/MeV), ``ip`` (mm, 3-D, w.r.t. the PV), ``ip_chi2``
        (2 dof, with the state covariance), and ``cov`` ``(n, 5, 5)``.
    """
    tt = np.asarray(track_type)
    px, py, pz = (np.asarray(truth[k], dtype=np.float64) for k in ("px", "py", "pz"))
    charge = np.asarray(truth["charge"], dtype=np.float64)
    x0, y0, z0 = (np.asarray(truth[k], dtype=np.float64) for k in ("origin_x", "origin_y", "origin_z"))
    pv = np.column_stack([np.asarray(truth[k], dtype=np.float64) for k in ("pv_x", "pv_y", "pv_z")])
    n = px.shape[0]
    known = (tt == TrackType.LONG) | (tt == TrackType.UPSTREAM) | (tt == TrackType.DOWNSTREAM)
    p = np.sqrt(px * px + py * py + pz * pz)
    safe_pz = np.where(known & (pz > 0), pz, 1.0)
    tx_true, ty_true = px / safe_pz, py / safe_pz
    zs, cov = state_covariance(p, tx_true, ty_true, x0 - pv[:, 0], y0 - pv[:, 1], z0,
                               np.where(known, tt, TrackType.NONE), model, truth.get("n_tracks"))
    safe_cov = np.where(known[:, None, None], cov, np.eye(5))
    res = _cholesky_residuals(safe_cov, np.asarray(normal, dtype=np.float64))
    zs0 = np.where(known, zs, 0.0)
    dz = zs0 - z0
    state = np.column_stack([
        x0 + tx_true * dz, y0 + ty_true * dz, tx_true, ty_true, charge / np.where(p > 0, p, 1.0),
    ]) + res
    tx, ty, qop = state[:, 2], state[:, 3], state[:, 4]
    p_reco = 1.0 / np.maximum(np.abs(qop), 1e-12)
    pz_reco = p_reco / np.sqrt(1.0 + tx * tx + ty * ty)
    ip, ip_chi2 = impact_parameter(zs0, state, safe_cov, pv[:, None, :], np.zeros((n, 1, 3, 3)))
    out = {
        "px": tx * pz_reco, "py": ty * pz_reco, "pz": pz_reco, "tx": tx, "ty": ty,
        "x": state[:, 0], "y": state[:, 1], "z": zs0, "qop": qop, "ip": ip[:, 0], "ip_chi2": ip_chi2[:, 0],
    }
    out = {k: np.where(known, v, np.nan) for k, v in out.items()}
    out["cov"] = cov
    return out


def cov_to_columns(cov: np.ndarray) -> dict[str, np.ndarray]:
    """The 15 :data:`COV_COLUMNS` of ``(n, 5, 5)`` covariances, each ``(n,)``."""
    c = np.asarray(cov, dtype=np.float64)
    return {name: c[:, i, j] for name, i, j in zip(COV_COLUMNS, *_IU, strict=True)}


def cov_from_columns(columns: Mapping[str, ArrayLike]) -> np.ndarray:
    """``(n, 5, 5)`` symmetric covariances from the 15 :data:`COV_COLUMNS`.

    Raises:
        DataError: A column is missing.
    """
    missing = [c for c in COV_COLUMNS if c not in columns]
    if missing:
        raise DataError(f"cov_from_columns: missing column(s) {missing}; expected {list(COV_COLUMNS)}")
    first = np.asarray(columns[COV_COLUMNS[0]], dtype=np.float64)
    cov = np.zeros((first.shape[0], 5, 5))
    for name, i, j in zip(COV_COLUMNS, *_IU, strict=True):
        cov[:, i, j] = cov[:, j, i] = np.asarray(columns[name], dtype=np.float64)
    return cov


def states_from_columns(columns: Mapping[str, ArrayLike]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Track states of ``protoparticles`` rows, ready for :func:`sim.detector.vertexing.fit_vertices`.

    Args:
        columns: ``(m,)`` columns ``x, y, z, tx, ty, charge, px, py, pz`` and the 15
            :data:`COV_COLUMNS` (a dict of arrays, a pandas DataFrame, ...).

    Returns:
        ``z`` ``(m,)`` (mm), ``state`` ``(m, 5)`` ``(x, y, tx, ty, q/p)``, ``cov`` ``(m, 5, 5)``;
        NaN where a column is NULL.

    Raises:
        DataError: A column is missing.

    Example:
        >>> rows = store.query_df("SELECT * FROM protoparticles WHERE batch = 0 ORDER BY event, index")  # doctest: +SKIP
        >>> z, state, cov = states_from_columns(rows)  # doctest: +SKIP
    """
    need = ("x", "y", "z", "tx", "ty", "charge", "px", "py", "pz")
    missing = [c for c in need if c not in columns]
    if missing:
        raise DataError(f"states_from_columns: missing column(s) {missing}; expected {list(need)} and the cov_* columns")
    c = {k: np.asarray(columns[k], dtype=np.float64) for k in need}
    with np.errstate(divide="ignore", invalid="ignore"):
        qop = c["charge"] / np.sqrt(c["px"] ** 2 + c["py"] ** 2 + c["pz"] ** 2)
    state = np.column_stack([c["x"], c["y"], c["tx"], c["ty"], qop])
    cov = cov_from_columns({k: np.asarray(columns[k], dtype=np.float64) for k in COV_COLUMNS if k in columns})
    return c["z"], state, cov
