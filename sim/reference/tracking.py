"""Reference (\"full simulation\") tracking response of an LHCb-like spectrometer.

A parametric, per-particle model of the LHCb Run 1/Run 2 tracking system (VELO,
TT, dipole magnet, T stations).  It is the truth against which the neural-network
fast passes of Mambah are trained and judged, so every number is a visible,
documented field of :class:`TrackingConfig`.

Units: MeV, mm, ns; charges in units of e; PDG ids for particle species.

Sources (abbreviated in the docstrings below):

* [PERF]  LHCb collaboration, "LHCb detector performance",
  Int. J. Mod. Phys. A 30 (2015) 1530022, arXiv:1412.6352.
* [TRKEFF] LHCb collaboration, "Measurement of the track reconstruction
  efficiency at LHCb", JINST 10 (2015) P02007, arXiv:1408.1251.
* [VELO]  LHCb VELO group, "Performance of the LHCb Vertex Locator",
  JINST 9 (2014) P09007, arXiv:1405.7808.
* [DET]   LHCb collaboration, "The LHCb detector at the LHC",
  JINST 3 (2008) S08005.
* [UPG]   LHCb collaboration, "The LHCb Upgrade I", JINST 19 (2024) P05065,
  arXiv:2305.10515 (Run 3 numbers, quoted for reference only).

Where a number is a modelling choice rather than a published value, its
docstring says so.

Model, in order (all vectorised over particles):

1. Geometry.  Straight line from the production vertex to the dipole kick plane,
   a transverse-momentum kick ``Δp_x = -q·polarity·p_kick`` there (``p_kick`` =
   0.3·∫B dl), straight line to the T stations.  VELO hits are counted on
   discrete stations (a hit where the line crosses a station between the inner
   and outer sensor radius, measured from the beam line), TT and T acceptance
   are boxes.  ``in_acceptance`` = charged, not a neutrino, 2 < η < 5 and
   reaching the T-station box after the kick.
2. Track type.  Long (≥3 VELO hits and T), Upstream (VELO and TT, but bent out
   of the T stations), Downstream (no VELO track, origin upstream of the TT,
   TT and T), each with an efficiency that is a product of documented factors.
3. Measurement.  Each track's state ``(x, y, tx, ty, q/p)`` gets its 5 × 5
   covariance from the hit-resolution + multiple-scattering model of
   :mod:`sim.detector.trackcov` (``TrackingConfig.errors``), and its residuals are
   drawn from that covariance (a correlated Gaussian), so the pulls are unit
   Gaussian by construction; the IP and IPχ² follow from the state, its covariance
   and the PV (:func:`sim.detector.vertexing.impact_parameter`); then χ²/ndf and
   ghost probability.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field, fields

import numpy as np

from mambah.errors import ConfigError, DataError
from sim.core.configcheck import check_fields_finite
from sim.detector.trackcov import (
    COV_COLUMNS,
    VELO_RUN2_STATION_Z,
    TrackErrorModel,
    cov_to_columns,
    crossed_velo_stations,
    reconstruct_states,
)

__all__ = (
    "GhostConfig",
    "OUTPUT_KEYS",
    "TRACK_DOWNSTREAM",
    "TRACK_LONG",
    "TRACK_NONE",
    "TRACK_UPSTREAM",
    "TRUTH_KEYS",
    "VELO_RUN2_STATION_Z",
    "TrackingConfig",
    "simulate_ghosts",
    "simulate_tracking",
)

_log = logging.getLogger(__name__)

TRACK_NONE = 0
"""Track type code: not reconstructed (LHCb ``Track::Types``)."""
TRACK_LONG = 3
"""Track type code: Long track (VELO + T, optionally TT)."""
TRACK_UPSTREAM = 4
"""Track type code: Upstream track (VELO + TT)."""
TRACK_DOWNSTREAM = 5
"""Track type code: Downstream track (TT + T)."""

TRUTH_KEYS: tuple[str, ...] = (
    "pid",
    "charge",
    "px",
    "py",
    "pz",
    "e",
    "origin_x",
    "origin_y",
    "origin_z",
    "pv_x",
    "pv_y",
    "pv_z",
    "n_tracks",
)
"""Keys :func:`simulate_tracking` reads from its ``truth`` mapping."""

OUTPUT_KEYS: tuple[str, ...] = (
    "in_acceptance",
    "reconstructed",
    "track_type",
    "reco_px",
    "reco_py",
    "reco_pz",
    "tx",
    "ty",
    "x",
    "y",
    "z",
    "ip",
    "ip_chi2",
    "track_chi2ndof",
    "ghost_prob",
    *COV_COLUMNS,
)
"""Keys of the dict :func:`simulate_tracking` returns, in order (the last 15: the state
covariance, :data:`sim.detector.trackcov.COV_COLUMNS`)."""

# VELO_RUN2_STATION_Z (the VELO station z) lives in sim.detector.trackcov with the error model.


_NEUTRINOS = np.array([12, 14, 16], dtype=np.int64)


@dataclass(frozen=True)
class TrackingConfig:
    """Numbers of the reference tracking model (Run 1/2 LHCb-like defaults).

    Units: MeV, mm; efficiencies and fractions are plain numbers in [0, 1].
    Every field documents its source; "model" marks modelling choices.

    Attributes:
        polarity: Dipole polarity, +1 MagUp (field along +y; positive
            particles bend towards −x) or −1 MagDown ([DET] Sec. 4).
        eta_min: Lower pseudorapidity edge of the acceptance, 2 ([PERF] Sec. 1).
        eta_max: Upper pseudorapidity edge of the acceptance, 5 ([PERF] Sec. 1).
        magnet_z: z (mm) of the effective kick plane of the dipole; the field
            integral is centred at about z ≈ 5.2–5.3 m ([DET] Sec. 4, Fig. 4.3).
        magnet_pt_kick: Transverse-momentum kick (MeV) = 0.3·∫B dl with
            ∫B dl ≈ 4 Tm for 10 m tracks ([DET] Sec. 4; [PERF] Sec. 2.1).
        magnet_tx_max: Horizontal half-aperture of the magnet, 300 mrad,
            as a slope at the kick plane seen from z = 0 ([DET] Sec. 4).
        magnet_ty_max: Vertical half-aperture of the magnet, 250 mrad ([DET] Sec. 4).
        t_z: z (mm) where the T-station box acceptance is tested, the last
            station T3 at z ≈ 9.4 m ([DET] Sec. 5.4).
        t_x_half: Horizontal half-size (mm) of the T stations, ≈ 3 m (the Outer
            Tracker active area is about 6 m × 5 m, [DET] Sec. 5.4).
        t_y_half: Vertical half-size (mm) of the T stations, ≈ 2.5 m ([DET] Sec. 5.4).
        t_x_centre: Horizontal offset (mm) of the T-station box (model).  A
            left–right (A/C side) asymmetry of the downstream acceptance,
            standing in for the detector-induced charge-detection asymmetries
            that LHCb observes at low momentum, which flip sign with the magnet
            polarity and cancel in the MagUp/MagDown average.  With a centred
            box the model would have no charge asymmetry at all.
        velo_station_z: z (mm) of the VELO stations, :data:`VELO_RUN2_STATION_Z`.
        velo_r_min: Inner radius (mm) of the VELO sensitive area, 8.2 mm
            ([VELO] Sec. 2); 5.1 mm in Run 3 ([UPG]).
        velo_r_max: Outer radius (mm) of the VELO sensitive area, ≈ 42 mm
            ([VELO] Sec. 2).
        velo_hit_efficiency: Probability that a crossed station gives a hit,
            > 99 % ([VELO] Sec. 6: cluster finding efficiency above 99 %).
        velo_min_hits: Minimum number of VELO stations for a VELO track, 3
            (the VELO tracking needs three space points, [PERF] Sec. 2.2).
        tt_z: z (mm) where the TT box acceptance is tested, the middle of the
            two TT stations at z ≈ 2.35 and 2.6 m ([DET] Sec. 5.2).
        tt_z_first: Downstream tracks need the origin before the first TT
            layer, z < 2300 mm ([DET] Sec. 5.2; the Upgrade UT starts at a
            similar z, [UPG]).
        tt_x_half: Horizontal half-size (mm) of TT, ≈ 150 cm wide ([DET] Sec. 5.2).
        tt_y_half: Vertical half-size (mm) of TT, ≈ 130 cm high ([DET] Sec. 5.2).
        long_efficiency: Plateau efficiency of Long tracks before the
            occupancy, η-edge and φ-crack factors, 0.99: [TRKEFF] measures
            above 96 % on average for 5 < p < 200 GeV, 2 < η < 5 in 2011–2012
            data; the factors below bring the mean there (tuned with
            ``few_hits_loss``: prompt muons of ``mambah validate published``,
            5 < p < 200 GeV in the acceptance, give 0.955; with the earlier
            0.985 and 0.2 they gave 0.939).
        low_p_loss: Amplitude of the low-momentum loss, ε ∝ 1 − A·exp(−p/p_s)
            (model, shaped after the efficiency-vs-p curves of [TRKEFF] Fig. 9).
        low_p_scale: Momentum scale p_s (MeV) of the low-momentum loss (model).
        low_pt_loss: Amplitude of the low-pT loss, ε ∝ 1 − A·exp(−pT/pT_s) (model).
        low_pt_scale: pT scale (MeV) of the low-pT loss (model).
        eta_edge_loss_low: Loss at η = eta_min, decaying as
            exp(−(η−η_min)/w) (model after [TRKEFF] Fig. 9, efficiency vs η).
        eta_edge_loss_high: Loss at η = eta_max, decaying as exp(−(η_max−η)/w) (model).
        eta_edge_width: Width w of the η-edge losses (model).
        phi_crack_loss: Loss in the vertical crack between the two VELO halves
            and the T-station boxes, at |φ| ≈ π/2 (model; Gaussian in φ).
        phi_crack_width: Gaussian width (rad) of the φ crack (model).
        occupancy_slope: Linear efficiency loss per track of the event, 5e-5:
            −2 % from nTracks ≈ 50 to 450 ([TRKEFF] Fig. 10, efficiency vs
            nTracks and nPV, drops by a few per cent; model of that trend).
        occupancy_max_loss: Cap of the occupancy loss (model).
        few_hits_loss: Loss for VELO tracks with few hits, ε ∝
            1 − A·exp(−(n_hits − n_min)/s), 0.1 (model: displaced tracks with a
            short VELO segment are found less often, [PERF] Sec. 2.2; tuned
            with ``long_efficiency`` to the [TRKEFF] plateau: 0.2 took 2 % off
            prompt tracks at the η edges, where the line crosses few stations).
        few_hits_scale: Scale s (hits) of the few-hits loss (model).
        displaced_loss: Loss of VELO-based (Long, Upstream) tracks born away
            from the beam line, ε ∝ 1 − A·min(ρ/velo_r_max, 1)², ρ the
            transverse distance of the origin from the beam line (model: the
            VELO pattern recognition favours tracks pointing to the beam line;
            K_S/Λ daughters are found less often as Long tracks, [PERF] Sec. 2.2).
        upstream_efficiency: Plateau efficiency of Upstream (VELO–TT) tracks (model).
        downstream_efficiency: Plateau efficiency of Downstream (TT–T) tracks
            (model; of order 80–90 % for K_S daughters, [PERF] Sec. 2.2).
        errors: The track-state error model (hit resolution, multiple scattering,
            momentum resolution): :class:`sim.detector.trackcov.TrackErrorModel`, the
            one home of those numbers, shared with the fast resolution pass.  Its VELO
            geometry must equal ``velo_station_z``, ``velo_r_min``, ``velo_r_max``.
        chi2_low_p_excess: Relative excess of χ²/ndf at low momentum, χ²/ndf
            ∝ 1 + A·exp(−p/p_c) (model: residual multiple scattering).
        chi2_low_p_scale: Momentum scale p_c (MeV) of the χ²/ndf excess (model).
        chi2_tail_fraction: Fraction of tracks with a χ²/ndf tail (model).
        chi2_tail_mean: Mean of the exponential added to χ²/ndf in the tail (model).
        downstream_chi2_scale: χ²/ndf scale of Downstream/Upstream tracks (model).
        ghost_beta_a: Shape α of the Beta distribution of ghost_prob of real
            tracks (model after the ghost-probability distributions of
            [PERF] Sec. 2.4: real tracks peak at 0).
        ghost_beta_b: Shape β of that Beta distribution at zero occupancy (model).
        ghost_occupancy_scale: β is divided by 1 + nTracks/scale, so real tracks
            look more ghost-like at high occupancy (model).
        ghost_chi2_coupling: ghost_prob → 1 − (1 − g)·exp(−c·max(χ²/ndf − 1.5, 0))
            (model: the ghost classifier uses the track χ²).
        non_long_ghost_factor: β of Upstream/Downstream tracks is divided by
            this factor (model: fewer hits, weaker classifier).
    """

    polarity: int = 1
    eta_min: float = 2.0
    eta_max: float = 5.0
    magnet_z: float = 5250.0
    magnet_pt_kick: float = 1200.0
    magnet_tx_max: float = 0.30
    magnet_ty_max: float = 0.25
    t_z: float = 9400.0
    t_x_half: float = 3000.0
    t_y_half: float = 2500.0
    t_x_centre: float = 20.0
    velo_station_z: tuple[float, ...] = VELO_RUN2_STATION_Z
    velo_r_min: float = 8.2
    velo_r_max: float = 42.0
    velo_hit_efficiency: float = 0.99
    velo_min_hits: int = 3
    tt_z: float = 2485.0
    tt_z_first: float = 2300.0
    tt_x_half: float = 750.0
    tt_y_half: float = 650.0
    long_efficiency: float = 0.99
    low_p_loss: float = 0.5
    low_p_scale: float = 1200.0
    low_pt_loss: float = 0.05
    low_pt_scale: float = 200.0
    eta_edge_loss_low: float = 0.04
    eta_edge_loss_high: float = 0.05
    eta_edge_width: float = 0.25
    phi_crack_loss: float = 0.03
    phi_crack_width: float = 0.08
    occupancy_slope: float = 5e-5
    occupancy_max_loss: float = 0.10
    few_hits_loss: float = 0.1
    few_hits_scale: float = 1.0
    displaced_loss: float = 0.3
    upstream_efficiency: float = 0.85
    downstream_efficiency: float = 0.85
    errors: TrackErrorModel = field(default_factory=TrackErrorModel)
    chi2_low_p_excess: float = 0.3
    chi2_low_p_scale: float = 5000.0
    chi2_tail_fraction: float = 0.03
    chi2_tail_mean: float = 1.5
    downstream_chi2_scale: float = 1.2
    ghost_beta_a: float = 1.0
    ghost_beta_b: float = 40.0
    ghost_occupancy_scale: float = 200.0
    ghost_chi2_coupling: float = 0.3
    non_long_ghost_factor: float = 2.0

    def __post_init__(self) -> None:
        if self.polarity not in (1, -1):
            raise ConfigError(
                f"TrackingConfig.polarity={self.polarity!r}; expected +1 (MagUp) or -1 (MagDown)"
            )
        if not self.eta_min < self.eta_max:
            raise ConfigError(
                f"TrackingConfig eta range ({self.eta_min}, {self.eta_max}) is empty; "
                "expected eta_min < eta_max"
            )
        if len(self.velo_station_z) == 0:
            raise ConfigError("TrackingConfig.velo_station_z is empty; give the station z (mm)")
        object.__setattr__(self, "velo_station_z", tuple(float(z) for z in self.velo_station_z))
        fractions = (
            "velo_hit_efficiency",
            "long_efficiency",
            "upstream_efficiency",
            "downstream_efficiency",
            "chi2_tail_fraction",
            "low_p_loss",
            "low_pt_loss",
            "eta_edge_loss_low",
            "eta_edge_loss_high",
            "phi_crack_loss",
            "occupancy_max_loss",
            "few_hits_loss",
            "displaced_loss",
        )
        for name in fractions:
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ConfigError(f"TrackingConfig.{name}={value!r}; expected a number in [0, 1]")
        positives = (
            "magnet_z",
            "t_z",
            "t_x_half",
            "t_y_half",
            "tt_z",
            "tt_x_half",
            "tt_y_half",
            "velo_r_max",
            "low_p_scale",
            "low_pt_scale",
            "eta_edge_width",
            "phi_crack_width",
            "few_hits_scale",
            "chi2_low_p_scale",
            "ghost_beta_a",
            "ghost_beta_b",
            "ghost_occupancy_scale",
            "non_long_ghost_factor",
        )
        for name in positives:
            value = getattr(self, name)
            if not (np.isfinite(value) and value > 0):
                raise ConfigError(f"TrackingConfig.{name}={value!r}; expected a positive number")
        if isinstance(self.errors, Mapping):
            known_err = {f.name for f in fields(TrackErrorModel)}
            unknown_err = sorted(set(self.errors) - known_err)
            if unknown_err:
                raise ConfigError(
                    f"unknown TrackingConfig.errors option(s) {unknown_err}; known options: {sorted(known_err)}"
                )
            object.__setattr__(self, "errors", TrackErrorModel(**self.errors))
        if not isinstance(self.errors, TrackErrorModel):
            raise ConfigError(f"TrackingConfig.errors={self.errors!r}; expected a TrackErrorModel")
        e = self.errors
        if (e.velo_station_z, e.velo_r_min, e.velo_r_max) != (self.velo_station_z, self.velo_r_min, self.velo_r_max):
            raise ConfigError(
                "TrackingConfig VELO geometry (velo_station_z, velo_r_min, velo_r_max) differs from "
                "errors' (TrackErrorModel); give both the same geometry"
            )

    @classmethod
    def from_mapping(cls, options: Mapping[str, object]) -> TrackingConfig:
        """Build a config from a mapping, refusing unknown keys.

        Args:
            options: Field names and values, e.g. from a pipeline config file.

        Raises:
            ConfigError: A key is not a field of :class:`TrackingConfig`.
        """
        from sim.core.pipeline import config_from_mapping

        return config_from_mapping(cls, options, "TrackingConfig")  # type: ignore[no-any-return]


def _validate_truth(truth: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Check keys, shapes and finiteness of the truth arrays; return float/int copies."""
    missing = [key for key in TRUTH_KEYS if key not in truth]
    if missing:
        raise DataError(
            f"simulate_tracking: truth is missing key(s) {missing}; expected {list(TRUTH_KEYS)}"
        )
    out: dict[str, np.ndarray] = {}
    n: int | None = None
    for key in TRUTH_KEYS:
        arr = np.asarray(truth[key])
        if arr.ndim != 1:
            raise DataError(f"simulate_tracking: truth[{key!r}] has shape {arr.shape}; expected 1-D")
        if n is None:
            n = arr.shape[0]
        elif arr.shape[0] != n:
            raise DataError(
                f"simulate_tracking: truth[{key!r}] has length {arr.shape[0]}; "
                f"expected {n} like truth[{TRUTH_KEYS[0]!r}]"
            )
        if not np.issubdtype(arr.dtype, np.number) and arr.dtype != np.bool_:
            raise DataError(
                f"simulate_tracking: truth[{key!r}] has dtype {arr.dtype}; expected numbers"
            )
        if np.issubdtype(arr.dtype, np.floating) and not np.all(np.isfinite(arr)):
            raise DataError(f"simulate_tracking: truth[{key!r}] holds NaN or inf")
        if key in ("pid", "n_tracks"):
            if np.issubdtype(arr.dtype, np.floating) and np.any(arr != np.round(arr)):
                raise DataError(f"simulate_tracking: truth[{key!r}] holds non-integer values")
            out[key] = arr.astype(np.int64)
        else:
            out[key] = arr.astype(np.float64)
    return out


def _velo_hits(
    x0: np.ndarray,
    y0: np.ndarray,
    z0: np.ndarray,
    tx: np.ndarray,
    ty: np.ndarray,
    u_hits: np.ndarray,
    config: TrackingConfig,
) -> np.ndarray:
    """Number of VELO stations with a hit, shape (n,).

    Args:
        x0, y0: Origin relative to the beam line (mm), shape (n,).
        z0: Origin z (mm), shape (n,).
        tx, ty: True slopes, shape (n,).
        u_hits: Uniform deviates, shape (n, n_stations), for the hit efficiency.
        config: Geometry.
    """
    crossed = crossed_velo_stations(x0, y0, z0, tx, ty, config.errors)
    hit = crossed & (u_hits < config.velo_hit_efficiency)
    return hit.sum(axis=1)


def _t_station_acceptance(
    x0: np.ndarray,
    y0: np.ndarray,
    z0: np.ndarray,
    px: np.ndarray,
    py: np.ndarray,
    pz: np.ndarray,
    charge: np.ndarray,
    config: TrackingConfig,
) -> np.ndarray:
    """Whether the track passes the magnet aperture and reaches the T-station box.

    Single kick at ``magnet_z``: ``Δp_x = −q·polarity·magnet_pt_kick``, the
    momentum in the bending (x–z) plane keeps its magnitude; a track whose
    ``|p_x|`` after the kick exceeds it curls up.  Shapes (n,), mm and MeV.
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        tx = px / pz
        ty = py / pz
        dzm = config.magnet_z - z0
        xm = x0 + tx * dzm
        ym = y0 + ty * dzm
        aperture = (np.abs(xm) < config.magnet_tx_max * config.magnet_z) & (
            np.abs(ym) < config.magnet_ty_max * config.magnet_z
        )
        pxz = np.hypot(px, pz)
        px_out = px - charge * config.polarity * config.magnet_pt_kick
        survives = np.abs(px_out) < pxz
        pz_out = np.sqrt(np.where(survives, pxz * pxz - px_out * px_out, 1.0))
        tx_out = px_out / pz_out
        ty_out = py / pz_out
        dzt = config.t_z - config.magnet_z
        xt = xm + tx_out * dzt
        yt = ym + ty_out * dzt
        in_box = (np.abs(xt - config.t_x_centre) < config.t_x_half) & (
            np.abs(yt) < config.t_y_half
        )
    return (pz > 0) & (dzm > 0) & aperture & survives & in_box


def _draws(n: int, rng: np.random.Generator, cfg: TrackingConfig) -> dict[str, np.ndarray]:
    """Stage 1, random draws: a fixed pattern that depends only on n, never on the data values."""
    n_st = len(cfg.velo_station_z)
    return {
        "u_hits": rng.random((n, n_st)),
        "u_eff": rng.random(n),
        "z_state": rng.standard_normal((n, 5)),
        "u_chi2_tail": rng.random(n),
        "e_chi2_tail": rng.exponential(cfg.chi2_tail_mean, n),
    }


def _kinematics(t: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """p, pT [MeV], η (±inf for pT = 0), φ and the true slopes of each particle."""
    px, py, pz = t["px"], t["py"], t["pz"]
    pt = np.hypot(px, py)
    with np.errstate(divide="ignore", invalid="ignore"):
        eta = np.where(pt > 0, np.arcsinh(pz / np.where(pt > 0, pt, 1.0)), np.inf * np.sign(pz))
    safe_pz = np.where(pz > 0, pz, 1.0)
    return {"p": np.sqrt(px * px + py * py + pz * pz), "pt": pt, "eta": eta, "phi": np.arctan2(py, px),
            "tx_true": px / safe_pz, "ty_true": py / safe_pz}


def _geometry(
    t: Mapping[str, np.ndarray], kin: Mapping[str, np.ndarray], draws: Mapping[str, np.ndarray], cfg: TrackingConfig
) -> dict[str, np.ndarray]:
    """Stage 2, geometry: VELO hits, TT and T-station acceptance, the candidates of each track type."""
    pz, charge = t["pz"], t["charge"]
    eta = kin["eta"]
    is_neutrino = np.isin(np.abs(t["pid"]), _NEUTRINOS)
    charged = (charge != 0) & ~is_neutrino
    in_eta = (pz > 0) & (eta > cfg.eta_min) & (eta < cfg.eta_max)
    forward = charged & in_eta
    x0, y0, z0 = t["origin_x"], t["origin_y"], t["origin_z"]
    tx_true, ty_true = kin["tx_true"], kin["ty_true"]
    n_hits = _velo_hits(x0 - t["pv_x"], y0 - t["pv_y"], z0, tx_true, ty_true, draws["u_hits"], cfg)
    has_velo = n_hits >= cfg.velo_min_hits
    has_t = _t_station_acceptance(x0, y0, z0, t["px"], t["py"], pz, charge, cfg)
    dz_tt = cfg.tt_z - z0
    x_tt = x0 + tx_true * dz_tt
    y_tt = y0 + ty_true * dz_tt
    has_tt = (z0 < cfg.tt_z_first) & (np.abs(x_tt) < cfg.tt_x_half) & (np.abs(y_tt) < cfg.tt_y_half)
    in_acceptance = forward & has_t
    return {
        "n_hits": n_hits,
        "in_acceptance": in_acceptance,
        "long_cand": in_acceptance & has_velo,
        "up_cand": forward & has_velo & has_tt & ~has_t,
        "down_cand": in_acceptance & ~has_velo & has_tt,
    }


def _efficiency(
    t: Mapping[str, np.ndarray],
    kin: Mapping[str, np.ndarray],
    geo: Mapping[str, np.ndarray],
    draws: Mapping[str, np.ndarray],
    cfg: TrackingConfig,
) -> np.ndarray:
    """Stage 3, efficiency: the track type found (int8 codes) from p, pT, η, φ, occupancy, hits, origin."""
    p, pt, eta, phi = kin["p"], kin["pt"], kin["eta"], kin["phi"]
    n_hits = geo["n_hits"]
    f_p = 1.0 - cfg.low_p_loss * np.exp(-p / cfg.low_p_scale)
    f_pt = 1.0 - cfg.low_pt_loss * np.exp(-pt / cfg.low_pt_scale)
    eta_c = np.clip(np.where(np.isfinite(eta), eta, cfg.eta_max), cfg.eta_min, cfg.eta_max)
    f_eta = (
        1.0
        - cfg.eta_edge_loss_low * np.exp(-(eta_c - cfg.eta_min) / cfg.eta_edge_width)
        - cfg.eta_edge_loss_high * np.exp(-(cfg.eta_max - eta_c) / cfg.eta_edge_width)
    )
    f_phi = 1.0 - cfg.phi_crack_loss * np.exp(
        -0.5 * ((np.abs(phi) - 0.5 * np.pi) / cfg.phi_crack_width) ** 2
    )
    f_occ = 1.0 - np.minimum(cfg.occupancy_slope * t["n_tracks"], cfg.occupancy_max_loss)
    f_hits = 1.0 - cfg.few_hits_loss * np.exp(
        -np.maximum(n_hits - cfg.velo_min_hits, 0) / cfg.few_hits_scale
    )
    rho = np.hypot(t["origin_x"] - t["pv_x"], t["origin_y"] - t["pv_y"])
    f_rho = 1.0 - cfg.displaced_loss * np.minimum(rho / cfg.velo_r_max, 1.0) ** 2
    common = f_p * f_pt * f_eta * f_phi * f_occ
    long_cand, up_cand, down_cand = geo["long_cand"], geo["up_cand"], geo["down_cand"]
    eff = np.select(
        [long_cand, up_cand, down_cand],
        [
            cfg.long_efficiency * common * f_hits * f_rho,
            cfg.upstream_efficiency * common * f_hits * f_rho,
            cfg.downstream_efficiency * common,
        ],
        default=0.0,
    )
    found = draws["u_eff"] < eff
    return np.select(
        [found & long_cand, found & up_cand, found & down_cand],
        [TRACK_LONG, TRACK_UPSTREAM, TRACK_DOWNSTREAM],
        default=TRACK_NONE,
    ).astype(np.int8)


def _fit_quality(
    t: Mapping[str, np.ndarray],
    kin: Mapping[str, np.ndarray],
    n_hits: np.ndarray,
    track_type: np.ndarray,
    draws: Mapping[str, np.ndarray],
    rng: np.random.Generator,
    cfg: TrackingConfig,
) -> tuple[np.ndarray, np.ndarray]:
    """Stage 5, fit quality: track χ²/ndf and ghost probability (after the states, stage 4)."""
    p = kin["p"]
    is_long = track_type == TRACK_LONG
    is_up = track_type == TRACK_UPSTREAM
    is_down = track_type == TRACK_DOWNSTREAM
    ndf = np.where(is_down, 14, np.where(is_up, 2 * n_hits + 4 - 5, 2 * n_hits + 24 - 5))
    ndf = np.maximum(ndf, 1)
    chi2_ndf = rng.chisquare(ndf) / ndf
    chi2_ndf *= 1.0 + cfg.chi2_low_p_excess * np.exp(-p / cfg.chi2_low_p_scale)
    chi2_ndf += np.where(draws["u_chi2_tail"] < cfg.chi2_tail_fraction, draws["e_chi2_tail"], 0.0)
    chi2_ndf = np.where(is_long, chi2_ndf, cfg.downstream_chi2_scale * chi2_ndf)
    beta = cfg.ghost_beta_b / (1.0 + t["n_tracks"] / cfg.ghost_occupancy_scale)
    beta = np.where(is_long, beta, beta / cfg.non_long_ghost_factor)
    ghost = rng.beta(cfg.ghost_beta_a, beta)
    ghost = 1.0 - (1.0 - ghost) * np.exp(-cfg.ghost_chi2_coupling * np.maximum(chi2_ndf - 1.5, 0))
    return chi2_ndf, np.clip(ghost, 0.0, 1.0)


def simulate_tracking(
    truth: Mapping[str, np.ndarray],
    rng: np.random.Generator,
    config: TrackingConfig = TrackingConfig(),
) -> dict[str, np.ndarray]:
    """Reference tracking response for generated particles.

    Args:
        truth: 1-D arrays of equal length n, one entry per generated particle:
            ``pid`` (PDG id), ``charge`` (e), ``px, py, pz, e`` (MeV),
            ``origin_x, origin_y, origin_z`` (production vertex, mm),
            ``pv_x, pv_y, pv_z`` (the event's primary vertex, mm), ``n_tracks``
            (the event's number of reconstructed tracks).
        rng: Source of randomness; the output is a pure function of the inputs
            and the generator state (the number of draws does not depend on
            the data values, only on n).
        config: Model numbers, see :class:`TrackingConfig`.

    Returns:
        Dict of arrays of length n (keys :data:`OUTPUT_KEYS`):

        * ``in_acceptance`` (bool): charged, not a neutrino, eta_min < η <
          eta_max, inside the magnet aperture and reaching the T-station box
          after the dipole kick.
        * ``reconstructed`` (bool), ``track_type`` (int8: 0 none, 3 Long,
          4 Upstream, 5 Downstream).
        * ``reco_px, reco_py, reco_pz`` (MeV): reconstructed momentum;
          ``tx, ty``: reconstructed slopes (``reco_px/reco_pz``, ``reco_py/reco_pz``).
        * ``x, y, z`` (mm): reconstructed state; ``z`` is the reference z of the
          state covariance: the z where the true line passes closest to the beam
          line (the line parallel to z through the PV's x, y) for Long and Upstream
          tracks, ``errors.downstream_z`` (the TT, first measurement) for
          Downstream tracks.  The residuals of ``(x, y, tx, ty, q/p)`` at that z
          are drawn from the covariance below.
        * ``ip`` (mm): 3-D distance of closest approach of the reconstructed
          line to the (true) PV.
        * ``ip_chi2``: χ² of the 2-D residual of the line at the PV's z with the
          projected state covariance (χ² with two degrees of freedom for prompt
          tracks, by construction).
        * ``track_chi2ndof``: track fit χ²/ndf; ``ghost_prob``: in [0, 1].
        * ``cov_x_x … cov_qop_qop``: the 15 independent elements of the 5 × 5
          covariance of ``(x, y, tx, ty, q/p)`` (mm, rad, 1/MeV),
          :data:`sim.detector.trackcov.COV_COLUMNS`.

        Floats of not-reconstructed entries are NaN.

    Raises:
        DataError: A key is missing, arrays differ in length or are not 1-D,
            or a value is NaN/inf.
    """
    t = _validate_truth(truth)
    n = t["pid"].shape[0]
    draws = _draws(n, rng, config)
    kin = _kinematics(t)
    geo = _geometry(t, kin, draws, config)
    track_type = _efficiency(t, kin, geo, draws, config)
    reco = track_type != TRACK_NONE
    is_long = track_type == TRACK_LONG
    is_up = track_type == TRACK_UPSTREAM
    is_down = track_type == TRACK_DOWNSTREAM
    # --- state: residuals drawn from the state covariance; IP from the state ------
    st = reconstruct_states(t, track_type, draws["z_state"], config.errors)
    reco_px, reco_py, reco_pz = st["px"], st["py"], st["pz"]
    tx, ty, sx, sy, sz, ip, ip_chi2, cov = (st[k] for k in ("tx", "ty", "x", "y", "z", "ip", "ip_chi2", "cov"))
    chi2_ndf, ghost = _fit_quality(t, kin, geo["n_hits"], track_type, draws, rng, config)
    in_acceptance = geo["in_acceptance"]

    def masked(values: np.ndarray) -> np.ndarray:
        return np.where(reco, values, np.nan).astype(np.float64)

    _log.debug(
        "simulate_tracking: %d particles, %d in acceptance, %d Long, %d Upstream, %d Downstream",
        n,
        int(in_acceptance.sum()),
        int(is_long.sum()),
        int(is_up.sum()),
        int(is_down.sum()),
    )
    return {
        "in_acceptance": in_acceptance,
        "reconstructed": reco,
        "track_type": track_type,
        "reco_px": masked(reco_px),
        "reco_py": masked(reco_py),
        "reco_pz": masked(reco_pz),
        "tx": masked(tx),
        "ty": masked(ty),
        "x": masked(sx),
        "y": masked(sy),
        "z": masked(sz),
        "ip": masked(ip),
        "ip_chi2": masked(ip_chi2),
        "track_chi2ndof": masked(chi2_ndf),
        "ghost_prob": masked(ghost),
        **{k: masked(v) for k, v in cov_to_columns(cov).items()},
    }


# --------------------------------------------------------------------------- ghost tracks


@dataclass(frozen=True)
class GhostConfig:
    """Numbers of the reference ghost (fake) Long tracks, :func:`simulate_ghosts`.

    A ghost is a track built from hits of different particles; the probability of a
    wrong combination grows with the hit density, so the number of ghosts per real track
    rises with the occupancy ([PERF] Sec. 2.2: ghost rate vs the number of PVs / tracks).
    No published ghost rate could be read here (``sim/reference/published.py``,
    ``ghost_rate_long``): the level below is a model choice, stated as such; the
    ghost-probability spectrum is tuned to the one read number, [GHOSTNN]'s abstract
    (the cut keeping 99 % of the real tracks removes 60 % of the ghosts).

    Attributes:
        ratio_ref: Ghosts per real Long track at ``nTracks = occupancy_ref``, 0.11
            (model: a ghost fraction of 10 % of the Long tracks at the mean Run 2
            occupancy of :class:`sim.reference.occupancy.OccupancyConfig`).
        occupancy_ref: The reference occupancy, 150 tracks (the run2 preset's mean, 151).
        power: ``r(n) = ratio_ref · (n / occupancy_ref)^power``, 1 (model: the chance that a
            track's search window holds a wrong hit is proportional to the hit density, so
            the ghost fraction grows linearly with nTracks, the ghost count quadratically).
        p_min: Lowest ghost momentum (MeV), 1.5 GeV (model: a Long track must reach the T
            stations through the dipole; real Long tracks start near 2 GeV, [TRKEFF]).
        p_shape, p_scale: ``p − p_min ~ Gamma(shape, scale)`` (MeV), 1.5 and 2.7 GeV: a soft
            spectrum, mean 5.5 GeV (model: wrong combinations are dominated by the many soft
            particles; the T segment of a ghost has no matching VELO curvature).
        eta_a, eta_b: ``η = eta_min + (eta_max − eta_min) · Beta(a, b)``, 2 and 2.5: η peaks
            near 3.2 inside the acceptance (model: the hit density is highest at small radius,
            but the ghosts' VELO segments come from real particles in the acceptance).
        chi2_shape, chi2_scale: ``χ²/ndf = 1 + Gamma(shape, scale)``, 2 and 0.5: mean 2.0
            against about 1.1 for real tracks (model: mismatched segments fit worse).
        ghost_a, ghost_b: the classifier's raw ghost probability ``Beta(a, b)`` before the
            χ² coupling of :class:`TrackingConfig` (``ghost_chi2_coupling``), 0.6 and 1.0:
            tuned so that the cut keeping 99 % of the real Long tracks (at ghost_prob ≈ 0.35
            in default-decay events) removes 60 % of the ghosts ([GHOSTNN] abstract; measured
            0.604 on 10 000 events; ``mambah validate published``, ``ghostprob_rejection``);
            the ghosts' mean ghost_prob is then 0.46, the real tracks' 0.04.

    [GHOSTNN]: M. De Cian, S. Farry, P. Seyfert, S. Stahl, "Fast neural-net based fake
    track rejection in the LHCb reconstruction", LHCb-PUB-2017-011 (CDS 2255039).
    """

    ratio_ref: float = 0.11
    occupancy_ref: float = 150.0
    power: float = 1.0
    p_min: float = 1500.0
    p_shape: float = 1.5
    p_scale: float = 2700.0
    eta_a: float = 2.0
    eta_b: float = 2.5
    chi2_shape: float = 2.0
    chi2_scale: float = 0.5
    ghost_a: float = 0.6
    ghost_b: float = 1.0

    def __post_init__(self) -> None:
        check_fields_finite(self, "GhostConfig")
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "power":
                if not 0.0 <= value <= 5.0:
                    raise ConfigError(f"GhostConfig.power={value!r}; expected a number in [0, 5]")
            elif f.name == "ratio_ref":
                if value < 0:
                    raise ConfigError(f"GhostConfig.ratio_ref={value!r}; expected a number >= 0")
            elif value <= 0:
                raise ConfigError(f"GhostConfig.{f.name}={value!r}; expected a positive number")

    @classmethod
    def from_mapping(cls, options: Mapping[str, object]) -> GhostConfig:
        """Build a config from a mapping, refusing unknown keys."""
        from sim.core.pipeline import config_from_mapping

        return config_from_mapping(cls, options, "GhostConfig")  # type: ignore[no-any-return]


def simulate_ghosts(
    events: Mapping[str, np.ndarray],
    rng: np.random.Generator,
    config: GhostConfig = GhostConfig(),
    tracking: TrackingConfig = TrackingConfig(),
) -> dict[str, np.ndarray]:
    """Reference ghost Long tracks of a set of events.

    Per event ``Poisson(r(nTracks) · N_long)`` ghosts (:class:`GhostConfig`; ``N_long`` the
    event's real Long tracks: a stored event is a part of the physical one, and its ghosts
    are in proportion), each with soft kinematics, a worse track χ²/ndf, a high ghost
    probability (the same χ² coupling as real tracks, :func:`_fit_quality`) and a state
    measured by :func:`sim.detector.ghosts.ghost_states` (shared with the fast pass).
    Ghosts have no MC particle: they are never truth-matched.  A ghost whose direction
    crosses fewer than 3 VELO stations from the PV (no VELO segment) is dropped.

    Args:
        events: ``(n_events,)`` arrays ``event``, ``n_tracks``, ``n_long``, ``pv_x/y/z``.
        rng: source of randomness (the number of draws depends on the ghost count).
        config: the ghost model numbers.
        tracking: the tracking config (η window, ghost-probability χ² coupling, errors).

    Returns:
        ``(n_ghosts,)`` arrays ``event``, ``charge``, ``p``, ``eta``, ``phi`` and the columns
        of :func:`sim.detector.ghosts.ghost_states` (``px … ip_chi2``, covariance), plus
        ``track_chi2ndof`` and ``ghost_prob``.

    Raises:
        DataError: a key is missing or a value is NaN/inf.
    """
    from sim.detector.ghosts import ghost_counts, ghost_states

    need = ("event", "n_tracks", "n_long", "pv_x", "pv_y", "pv_z")
    missing = [k for k in need if k not in events]
    if missing:
        raise DataError(f"simulate_ghosts: missing event column(s) {missing}; expected {list(need)}")
    ev = {k: np.asarray(events[k]) for k in need}
    for k in need[1:]:
        if not np.all(np.isfinite(ev[k].astype(np.float64))):
            raise DataError(f"simulate_ghosts: column {k!r} holds NaN/inf")
    c = config
    counts = ghost_counts(ev["n_long"], ev["n_tracks"], c.ratio_ref, c.occupancy_ref, c.power, rng)
    n = int(counts.sum())
    pos = np.repeat(np.arange(counts.size), counts)
    p = c.p_min + rng.gamma(c.p_shape, c.p_scale, n)
    eta = tracking.eta_min + (tracking.eta_max - tracking.eta_min) * rng.beta(c.eta_a, c.eta_b, n)
    phi = rng.uniform(-np.pi, np.pi, n)
    charge = rng.choice(np.array([-1.0, 1.0]), n)
    chi2 = 1.0 + rng.gamma(c.chi2_shape, c.chi2_scale, n)
    raw = rng.beta(c.ghost_a, c.ghost_b, n)
    ghost = 1.0 - (1.0 - raw) * np.exp(-tracking.ghost_chi2_coupling * np.maximum(chi2 - 1.5, 0.0))
    pv = np.column_stack([ev[f"pv_{a}"].astype(np.float64)[pos] for a in "xyz"])
    st = ghost_states(charge, p, eta, phi, pv, ev["n_tracks"].astype(np.float64)[pos], rng, tracking.errors)
    keep = st.pop("valid")
    _log.debug("simulate_ghosts: %d events, %d real Long tracks, %d ghosts (%d without a VELO segment dropped)",
               counts.size, int(ev["n_long"].sum()), int(keep.sum()), n - int(keep.sum()))
    out = {"event": ev["event"][pos], "charge": charge, "p": p, "eta": eta, "phi": phi, **st,
           "track_chi2ndof": chi2, "ghost_prob": np.clip(ghost, 0.0, 1.0)}
    return {k: v[keep] for k, v in out.items()}
