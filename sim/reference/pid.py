"""Reference PID response of the reference detector (plays the part of full simulation).

The kernel :func:`simulate_pid` turns true particles (species, reconstructed momentum,
event occupancy) into the particle-identification variables LHCb analyses use:

* **RICH** (``RichDLLe, RichDLLmu, RichDLLK, RichDLLp``, ``has_rich``): two gas
  radiators, RICH1 (C4F10) and RICH2 (CF4).  For every track and radiator the signal
  photoelectrons are drawn from Poisson(N0 sin^2 theta_c) at the Cherenkov angle of the
  *true* mass (cos theta_c = 1/(n beta)), each photon smeared by the single-photon
  resolution plus one common track-direction error (a fraction of the rings loses part
  of its photons, which the likelihood does not know: :class:`RadiatorConfig`
  ``loss_probability``); occupancy-dependent background
  photons (Poisson, mean linear in ``n_tracks``) are spread uniformly over the
  ring-search window.  The log-likelihood of each mass hypothesis h is the extended
  photon likelihood

      ln L_h = -(mu_h + b) + sum_photons ln( mu_h G(theta_i; theta_h, sigma) + b / W ),

  summed over both radiators (Poisson count term + angular term; a hypothesis below
  threshold predicts mu_h = 0, which gives the threshold "veto").  DLLx = ln L_x -
  ln L_pi.  Tracks without RICH information (``has_rich`` false: p < ``p_min_rich`` or
  outside both acceptances) get DLL = 0, as LHCb fills absent likelihoods with 0 in
  the combined DLLs.
* **Muon system** (``is_muon``, ``MuonMuLL``, ``MuonBkgLL``): the IsMuon station
  requirement by momentum (3-6 GeV: M2+M3; 6-10 GeV: M2+M3+(M4 or M5); > 10 GeV:
  M2-M5; LHCb muon ID, JINST 8 (2013) P10020, arXiv:1306.0249), penetration by range
  with straggling, per-station efficiency, and for hadrons the three misID sources:
  decays in flight (pi -> mu nu, K -> mu nu (pi0)) between the tracking stations and
  the calorimeter,
  punch-through, and random hits in the field of interest growing with occupancy.
  ``MuonMuLL``/``MuonBkgLL`` are the log-densities of a normalised hit-distance
  variable D^2 under the muon and non-muon hypotheses (Gamma models); they are only
  defined for ``is_muon`` tracks and hold :data:`MUON_LL_SENTINEL` (-1000, the DaVinci
  ``PPINFO(..., -1000)`` default used in PIDCalib tuples) otherwise.
* **Global** (``PIDe, PIDmu, PIDK, PIDp``): RICH DLL + muon-system term
  (MuonMuLL - MuonBkgLL for mu, when ``is_muon``) + the calorimeter electron
  likelihood ``EcalPIDe`` for e: ``PIDe = RichDLLe + EcalPIDe``.  ``EcalPIDe`` is an
  optional input column, the value the calorimeter reconstruction gives the track
  (:func:`sim.detector.calorimeter.electron_dll` of the matched cluster's E/p; for the
  calibration samples the reference ECAL through the same reconstruction,
  :func:`sim.reference.ecal_pid.reference_ecal_pid`); without it, or for a track type
  that does not reach the ECAL (Upstream), the calorimeter term is 0, as for a track
  without a matched cluster.
* **ProbNN-like** (``ProbNNe, ProbNNmu, ProbNNpi, ProbNNk, ProbNNp, ProbNNghost``): a
  softmax of the combined log-likelihoods (plus the IsMuon Bernoulli term and log
  priors) with a temperature and small Gaussian noise on the logits.  This is a
  *ProbNN-like* probability, not LHCb's ANN.

Track types (optional column ``track_type``, default 3 = Long): a track gives
information only in the sub-detectors its type traverses (:data:`sim.detector.reach.REACH`):
Upstream tracks (VELO + TT, bent out before the T stations) cross RICH1 but not RICH2,
the calorimeters or the muon stations, so they get RICH1 information only, no
calorimeter term and never ``is_muon`` (muon likelihoods = :data:`MUON_LL_SENTINEL`);
Long and Downstream tracks traverse everything.

Species: the photon emission uses the true mass of ``|pid|`` from the ``particle``
package, so any charged long-lived particle (e, mu, pi, K, p, but also Sigma, Xi,
deuterons) gets a physical RICH response; only pi and K decay to muons in flight,
the calorimeter term comes from the ``EcalPIDe`` column.  Neutral, unknown and ghost (``pid == 0``)
ids raise :class:`~mambah.errors.DataError`: ghosts have no truth species to simulate.

Units: MeV for momenta and masses, mm for lengths, mrad for angles.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, fields
from functools import lru_cache
from typing import Any

import numpy as np
from scipy.special import gammaln

from mambah.codes import MUON_LL_SENTINEL, PID_COLUMNS
from mambah.errors import ConfigError, DataError
from sim.detector.card import card
from sim.detector.reach import REACH

__all__ = (
    "MUON_LL_SENTINEL",
    "PID_COLUMNS",
    "PIDConfig",
    "RadiatorConfig",
    "simulate_pid",
)

log = logging.getLogger(__name__)

# MUON_LL_SENTINEL (the DaVinci ``PPINFO(LHCb.ProtoParticle.MuonMuLL, -1000)`` default of
# PIDCalib tuples) and PID_COLUMNS live with the schema's codes (mambah.codes).


_REQUIRED = ("pid", "charge", "px", "py", "pz", "n_tracks")
# Mass hypotheses, in the order of the likelihood arrays (pi is the reference).
_HYPOTHESES = (11, 13, 211, 321, 2212)
_I_E, _I_MU, _I_PI, _I_K, _I_P = range(5)


@dataclass(frozen=True)
class RadiatorConfig:
    """One RICH gas radiator.

    Attributes:
        n_minus_1: refractive index minus one at ~400 nm.  C4F10: 1.4e-3 (thresholds
            pi 2.6, K 9.3, p 17.7 GeV), CF4: 5e-4 (K threshold 15.6 GeV);
            LHCb RICH, EPJC 73 (2013) 2431, arXiv:1211.6759, Sect. 2.
        n_pe_saturated: mean detected photoelectrons for a beta = 1 track; HPD-era
            averages 30 (RICH1) and 22 (RICH2), D'Ambrosio et al., arXiv:1703.09927,
            Table 1 (Upgrade I: 40 / 30).
        sigma_photon: single-photon Cherenkov-angle resolution [mrad]; 1.618 (C4F10)
            and 0.68 (CF4) measured in 2011 data, arXiv:1211.6759, Table 2.
        sigma_track: per-track error on the ring centre from the track direction
            [mrad], common to all photons of the track (model choice, tuned so that
            the integrated K/pi performance matches arXiv:1211.6759, Fig. 17).
        theta_min, theta_max: polar-angle acceptance [mrad]; RICH1 25-300, RICH2
            15-120 (LHCb detector paper, JINST 3 (2008) S08005).
        bkg_const, bkg_per_track: mean number of background photons in the
            ring-search window, ``bkg_const + bkg_per_track * n_tracks`` (overlapping
            rings, scattered light; model choice).
        window: width of the ring-search window in Cherenkov angle [mrad] over
            which background photons are uniform.
        overlap_per_track, overlap_photons, overlap_spread: ring overlaps.  With
            probability ``1 - exp(-overlap_per_track * n_tracks)`` a neighbour's ring
            adds Poisson(``overlap_photons``) foreign photons clustered (spread
            ``overlap_spread * sigma_photon``) at a random apparent angle between half
            and the full saturated angle.  The likelihood does not model them (it
            assumes uniform background), which gives the non-Gaussian misID tails
            and most of the occupancy dependence (model choice, tuned to the
            integrated K/pi performance of arXiv:1211.6759, Fig. 17).
        loss_probability, loss_max: unmodelled photon losses.  With probability
            ``loss_probability`` a track's ring loses a fraction ``U(0, loss_max)`` of
            its photons (ring partly outside the photodetector planes, HPD gaps,
            shortened path in the radiator); the likelihood keeps the nominal yield.
            Losses are one-sided: a pion with missing photons looks like a heavier
            hypothesis, a kaon does not look like a pion, which gives the published
            asymmetry of a ~10 % pi -> K misID at a ~95 % K efficiency for
            DLL(K-pi) > 0 (arXiv:1211.6759, Sect. 5; model choice, tuned to it).
    """

    name: str
    n_minus_1: float
    n_pe_saturated: float
    sigma_photon: float
    sigma_track: float
    theta_min: float
    theta_max: float
    bkg_const: float
    bkg_per_track: float
    window: float
    overlap_per_track: float
    overlap_photons: float
    overlap_spread: float
    loss_probability: float = 0.0
    loss_max: float = 1.0

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name != "name" and not (np.isfinite(value) and value >= 0):
                raise ConfigError(f"RadiatorConfig {self.name!r}: {f.name}={value!r} must be finite and >= 0")
        if self.bkg_const <= 0 or self.window <= 0 or self.sigma_photon <= 0:
            raise ConfigError(
                f"RadiatorConfig {self.name!r}: bkg_const, window and sigma_photon must be > 0"
            )
        if self.theta_min >= self.theta_max:
            raise ConfigError(f"RadiatorConfig {self.name!r}: theta_min must be below theta_max")
        if self.loss_probability > 1 or self.loss_max > 1:
            raise ConfigError(f"RadiatorConfig {self.name!r}: loss_probability={self.loss_probability!r} and "
                              f"loss_max={self.loss_max!r} must be <= 1")

    @property
    def n0(self) -> float:
        """Photon-yield constant N0 with N = N0 sin^2(theta_c)."""
        n = 1.0 + self.n_minus_1
        return self.n_pe_saturated / (1.0 - 1.0 / n**2)

    @property
    def theta_saturated(self) -> float:
        """Cherenkov angle of a beta = 1 track [mrad]."""
        return 1e3 * float(np.arccos(1.0 / (1.0 + self.n_minus_1)))


#: The detector card whose geometry the reference PID defaults follow.
_CARD = card()

RICH1_C4F10 = RadiatorConfig(
    name="RICH1 C4F10",
    n_minus_1=1.4e-3,
    n_pe_saturated=30.0,
    sigma_photon=1.62,
    sigma_track=1.0,
    theta_min=_CARD.rich1_theta[0],
    theta_max=_CARD.rich1_theta[1],
    bkg_const=2.0,
    bkg_per_track=0.15,
    window=65.0,
    overlap_per_track=0.010,
    overlap_photons=4.0,
    overlap_spread=1.0,
    loss_probability=0.35,
)
RICH2_CF4 = RadiatorConfig(
    name="RICH2 CF4",
    n_minus_1=5.0e-4,
    n_pe_saturated=22.0,
    sigma_photon=0.68,
    sigma_track=0.45,
    theta_min=_CARD.rich2_theta[0],
    theta_max=_CARD.rich2_theta[1],
    bkg_const=1.0,
    bkg_per_track=0.08,
    window=40.0,
    overlap_per_track=0.008,
    overlap_photons=3.0,
    overlap_spread=1.0,
    loss_probability=0.35,
)


@dataclass(frozen=True)
class PIDConfig:
    """Parameters of the reference PID response (MeV, mm, mrad).

    Attributes:
        rich1, rich2: the two gas radiators, see :class:`RadiatorConfig`.
        p_min_rich: minimum momentum for RICH information [MeV] (LHCb RICH covers
            2-100 GeV, arXiv:1211.6759 abstract).
        muon_theta_min, muon_theta_max: muon-system acceptance [mrad] (20-306 mrad
            horizontal, JINST 3 (2008) S08005; rounded).
        is_muon_p_edges: IsMuon momentum regions [MeV]: below the first no IsMuon;
            M2+M3 / M2+M3+(M4|M5) / M2-M5 above; JINST 8 (2013) P10020, Table 1.
        station_reach_p: momentum a muon needs to reach M2, M3, M4, M5 [MeV]
            (calorimeters + iron filters; ~6 GeV to cross all stations, LHCb muon
            TDR CERN-LHCC-2001-010; intermediate values interpolated).
        range_straggling: relative Gaussian straggling of the range.
        station_efficiency: hit efficiency per station in the FOI (> 99 %,
            JINST 8 (2013) P10020, Sect. 3).
        dif_path: flight path over which a pi/K decay gives a muon matched to the
            hadron's Long track [mm]: from the last T station (z ~ 9.4 m) to the ECAL
            (z ~ 12.6 m), plus ~1 m upstream where the kink stays within the track
            fit; earlier decays spoil the Long track (or leave the muon's momentum,
            outside the calibration mass peak).  4 m (model choice; it brings the
            IsMuon misID of D* kaons from 0.03 to ~0.013, JINST 8 (2013) P10020
            abstract: 'to the level of 1 %').
        dif_match_probability: fraction of such decays in which the daughter muon
            stays in the FOI of the hadron track (model choice, tuned so that the pi
            IsMuon misID above 10 GeV is ~ 1 %, JINST 8 (2013) P10020, Fig. 7).
        br_mu_pion, br_mu_kaon: muonic branching fractions (pi -> mu nu 0.9999;
            K -> mu nu 0.6356 + K -> pi0 mu nu 0.0335; PDG 2024).
        punch_through: probability that a hadron shower leaks hits into M2..M5
            (nested); IsMuon punch-through therefore falls with p as the station
            requirement deepens (model choice; proton IsMuon misID ~ 0.3-1 %).
        random_hit_const, random_hit_per_track, random_hit_p_scale: probability
            of an uncorrelated hit in one station's FOI,
            ``(const + per_track * n_tracks) * (1 + p_scale / p)`` (FOI ~ 1/p).
        d2_scale_muon, d2_scale_dif, d2_scale_background: mean of the normalised
            hit distance D^2 for true muons, decay-in-flight muons of pions and random /
            punch-through hits; D^2 ~ Gamma(N, scale/N) for N required stations.
        d2_scale_dif_kaon: the same for decay-in-flight muons of kaons: the kink of
            K -> mu nu (p* = 236 MeV) is 8x that of pi -> mu nu (p* = 30 MeV), and both
            the kink's displacement at the muon stations and the FOI scale as 1/p, so
            the kaon's daughter hits lie further from the extrapolation (model choice).
        muon_efficiency_prior, muon_misid_prior: IsMuon Bernoulli term of the
            ProbNN-like likelihood (0.97 and 0.01: the IsMuon efficiency and hadron
            misID of JINST 8 (2013) P10020, abstract).
        probnn_priors: prior abundances (e, mu, pi, K, p, ghost) of the ProbNN-like
            softmax (inclusive b-event-like abundances; model choice).
        probnn_temperature: softmax temperature (> 1 flattens, as trained ANNs are
            less sharp than the likelihood).
        probnn_noise: Gaussian noise added to each logit.
    """

    rich1: RadiatorConfig = RICH1_C4F10
    rich2: RadiatorConfig = RICH2_CF4
    p_min_rich: float = _CARD.p_min_rich
    muon_theta_min: float = _CARD.muon_theta[0]
    muon_theta_max: float = _CARD.muon_theta[1]
    is_muon_p_edges: tuple[float, float, float] = _CARD.is_muon_p_edges
    station_reach_p: tuple[float, float, float, float] = (2200.0, 2700.0, 4500.0, 6000.0)
    range_straggling: float = 0.08
    station_efficiency: float = 0.995
    dif_path: float = 4000.0
    dif_match_probability: float = 0.8
    br_mu_pion: float = 0.9999
    br_mu_kaon: float = 0.6691
    punch_through: tuple[float, float, float, float] = (0.012, 0.006, 0.004, 0.003)
    random_hit_const: float = 0.015
    random_hit_per_track: float = 0.0003
    random_hit_p_scale: float = 5000.0
    d2_scale_muon: float = 1.0
    d2_scale_dif: float = 1.5
    d2_scale_dif_kaon: float = 3.0
    d2_scale_background: float = 3.0
    muon_efficiency_prior: float = 0.97
    muon_misid_prior: float = 0.01
    probnn_priors: tuple[float, float, float, float, float, float] = (0.02, 0.02, 0.65, 0.15, 0.08, 0.08)
    probnn_temperature: float = 1.5
    probnn_noise: float = 0.2

    def __post_init__(self) -> None:
        probabilities = ("station_efficiency", "dif_match_probability", "br_mu_pion", "br_mu_kaon",
                         "muon_efficiency_prior", "muon_misid_prior")
        for name in probabilities:
            value = getattr(self, name)
            if not 0.0 < value <= 1.0:
                raise ConfigError(f"PIDConfig.{name}={value!r} must be in (0, 1]")
        if list(self.is_muon_p_edges) != sorted(self.is_muon_p_edges):
            raise ConfigError(f"PIDConfig.is_muon_p_edges={self.is_muon_p_edges!r} must be increasing")
        if list(self.station_reach_p) != sorted(self.station_reach_p):
            raise ConfigError(f"PIDConfig.station_reach_p={self.station_reach_p!r} must be increasing")
        if any(not 0.0 < x < 1.0 for x in self.probnn_priors):
            raise ConfigError(f"PIDConfig.probnn_priors={self.probnn_priors!r} must lie in (0, 1)")
        if self.probnn_temperature <= 0:
            raise ConfigError(f"PIDConfig.probnn_temperature={self.probnn_temperature!r} must be > 0")

    @classmethod
    def from_mapping(cls, options: Mapping[str, Any]) -> PIDConfig:
        """Build a config from keyword options, refusing unknown keys.

        Args:
            options: option name -> value; radiators may be given as mappings.

        Raises:
            ConfigError: an unknown option, naming the valid ones.
        """
        valid = sorted(f.name for f in fields(cls))
        unknown = sorted(set(options) - set(valid))
        if unknown:
            raise ConfigError(f"unknown PIDConfig option(s) {unknown}; valid options: {valid}")
        kwargs = dict(options)
        for key in ("rich1", "rich2"):
            if isinstance(kwargs.get(key), Mapping):
                base = getattr(cls(), key)
                rad_valid = sorted(f.name for f in fields(RadiatorConfig))
                bad = sorted(set(kwargs[key]) - set(rad_valid))
                if bad:
                    raise ConfigError(f"unknown {key} option(s) {bad}; valid options: {rad_valid}")
                kwargs[key] = RadiatorConfig(**{**{f.name: getattr(base, f.name) for f in fields(base)},
                                                **kwargs[key]})
        for key in ("is_muon_p_edges", "station_reach_p", "punch_through", "probnn_priors"):
            if key in kwargs:
                kwargs[key] = tuple(kwargs[key])
        return cls(**kwargs)


# ---------------------------------------------------------------------------- inputs


@lru_cache(maxsize=256)
def _particle_props(abs_pid: int) -> tuple[float, float, int]:
    """(mass [MeV], ctau [mm], |charge|) of a PDG id from the ``particle`` package."""
    from particle import InvalidParticle, Particle, ParticleNotFound

    try:
        part = Particle.from_pdgid(abs_pid)
    except (ParticleNotFound, InvalidParticle, ValueError) as err:
        raise DataError(f"unknown PDG id {abs_pid} in column 'pid'; give charged particle ids "
                        f"such as 11, 13, 211, 321, 2212") from err
    if part.mass is None or not part.charge:
        raise DataError(f"PDG id {abs_pid} ({part.name}) in column 'pid' is neutral or massless; "
                        f"PID needs charged tracks such as 11, 13, 211, 321, 2212")
    ctau = part.ctau if part.ctau is not None else np.inf
    return float(part.mass), float(ctau), int(abs(part.charge))


def _validate(truth: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    missing = [key for key in _REQUIRED if key not in truth]
    if missing:
        raise DataError(f"simulate_pid: missing column(s) {missing}; required: {list(_REQUIRED)}")
    arrays = {key: np.asarray(truth[key]) for key in _REQUIRED}
    n = arrays["pid"].shape[0] if arrays["pid"].ndim == 1 else -1
    for key, arr in arrays.items():
        if arr.ndim != 1 or arr.shape[0] != n:
            raise DataError(f"simulate_pid: column {key!r} has shape {arr.shape}; all columns must be "
                            f"1-D with the length of 'pid' ({arrays['pid'].shape})")
        if not np.issubdtype(arr.dtype, np.number) and arr.dtype != bool:
            raise DataError(f"simulate_pid: column {key!r} has non-numeric dtype {arr.dtype}")
        if not np.all(np.isfinite(arr)):
            raise DataError(f"simulate_pid: column {key!r} holds NaN or inf at "
                            f"{int(np.sum(~np.isfinite(arr)))} track(s)")
    if np.any(arrays["pid"] != np.round(arrays["pid"])):
        raise DataError("simulate_pid: column 'pid' must hold integer PDG ids")
    if np.any(arrays["pid"] == 0):
        raise DataError("simulate_pid: column 'pid' holds 0 (ghost / unmatched track); the reference "
                        "PID needs a true species: drop ghosts or assign a PDG id")
    if np.any(arrays["charge"] == 0):
        raise DataError("simulate_pid: column 'charge' holds 0; PID needs charged tracks (+1 / -1)")
    if np.any(arrays["n_tracks"] < 0):
        raise DataError("simulate_pid: column 'n_tracks' holds negative occupancies")
    if "EcalPIDe" in truth:
        calo = np.asarray(truth["EcalPIDe"], dtype=np.float64)
        if calo.shape != arrays["pid"].shape:
            raise DataError(f"simulate_pid: column 'EcalPIDe' has shape {calo.shape}; expected {arrays['pid'].shape}")
        if not np.all(np.isfinite(calo)):
            raise DataError("simulate_pid: column 'EcalPIDe' holds NaN or inf; give 0 for tracks without a cluster")
        arrays["EcalPIDe"] = calo
    else:
        arrays["EcalPIDe"] = np.zeros(arrays["pid"].shape)
    if "track_type" in truth:
        tt = np.asarray(truth["track_type"])
        if tt.shape != arrays["pid"].shape:
            raise DataError(f"simulate_pid: column 'track_type' has shape {tt.shape}; expected {arrays['pid'].shape}")
        bad = ~np.isin(tt, list(REACH))
        if bad.any():
            raise DataError(f"simulate_pid: column 'track_type' holds {int(tt[bad][0])}; expected "
                            f"{sorted(REACH)} (Long, Upstream, Downstream): not-reconstructed tracks have no PID")
        arrays["track_type"] = tt.astype(np.int64)
    else:
        arrays["track_type"] = np.full(arrays["pid"].shape, 3, dtype=np.int64)
    return arrays


# ------------------------------------------------------------------------- kinematics


def _cherenkov_angle(p: np.ndarray, mass: np.ndarray | float, n_minus_1: float) -> np.ndarray:
    """Cherenkov angle [mrad], 0 below threshold; cos(theta) = 1 / (n beta)."""
    inv_beta = np.sqrt(1.0 + (np.asarray(mass) / p) ** 2)
    cos_theta = inv_beta / (1.0 + n_minus_1)
    return np.where(cos_theta < 1.0, 1e3 * np.arccos(np.minimum(cos_theta, 1.0)), 0.0)


def _rich_loglik(
    p: np.ndarray,
    mass: np.ndarray,
    in_acc: np.ndarray,
    n_tracks: np.ndarray,
    hyp_masses: np.ndarray,
    rad: RadiatorConfig,
    rng: np.random.Generator,
) -> np.ndarray:
    """Per-track log-likelihood of each mass hypothesis in one radiator, shape (n, 5)."""
    n = p.shape[0]
    sigma = rad.sigma_photon
    theta_true = _cherenkov_angle(p, mass, rad.n_minus_1)
    mu_true = np.where(in_acc, rad.n0 * np.sin(1e-3 * theta_true) ** 2, 0.0)
    bkg = np.where(in_acc, rad.bkg_const + rad.bkg_per_track * n_tracks, 0.0)

    lossy = rng.random(n) < rad.loss_probability
    kept = np.where(lossy, 1.0 - rad.loss_max * rng.random(n), 1.0)
    n_sig = rng.poisson(mu_true * kept)
    n_bkg = rng.poisson(bkg)
    idx_sig = np.repeat(np.arange(n), n_sig)
    idx_bkg = np.repeat(np.arange(n), n_bkg)
    shift = rng.normal(0.0, rad.sigma_track, size=(n,))  # common ring-centre error
    theta_sig = theta_true[idx_sig] + shift[idx_sig] + rng.normal(0.0, sigma, size=idx_sig.size)
    theta_bkg = rng.uniform(0.0, rad.window, size=idx_bkg.size)
    # Overlapping ring of a neighbour track: a coherent cluster of foreign photons at a
    # random apparent angle, not described by the uniform background of the likelihood.
    overlap = in_acc & (rng.random(n) < -np.expm1(-rad.overlap_per_track * n_tracks))
    n_ov = np.where(overlap, rng.poisson(rad.overlap_photons, size=n), 0)
    idx_ov = np.repeat(np.arange(n), n_ov)
    theta_ov_centre = rng.uniform(0.5 * rad.theta_saturated, rad.theta_saturated, size=(n,))
    theta_ov = theta_ov_centre[idx_ov] + rng.normal(0.0, rad.overlap_spread * sigma, size=idx_ov.size)
    idx = np.concatenate([idx_sig, idx_bkg, idx_ov])
    theta = np.concatenate([theta_sig, theta_bkg, theta_ov])
    bkg_density = (bkg / rad.window)[idx]

    loglik = np.zeros((n, len(hyp_masses)))
    norm = 1.0 / (sigma * np.sqrt(2.0 * np.pi))
    for j, m_hyp in enumerate(hyp_masses):
        theta_h = _cherenkov_angle(p, m_hyp, rad.n_minus_1)
        mu_h = np.where(in_acc, rad.n0 * np.sin(1e-3 * theta_h) ** 2, 0.0)
        dens = mu_h[idx] * norm * np.exp(-0.5 * ((theta - theta_h[idx]) / sigma) ** 2) + bkg_density
        loglik[:, j] = -(mu_h + bkg) + np.bincount(idx, weights=np.log(dens), minlength=n)
    return loglik


def _gamma_logpdf(x: np.ndarray, shape: np.ndarray, scale: np.ndarray | float) -> np.ndarray:
    return (shape - 1.0) * np.log(x) - x / scale - gammaln(shape) - shape * np.log(scale)


def _muon_system(
    p: np.ndarray,
    theta: np.ndarray,
    abs_pid: np.ndarray,
    mass: np.ndarray,
    ctau: np.ndarray,
    n_tracks: np.ndarray,
    cfg: PIDConfig,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """IsMuon decision and muon-system log-likelihoods, each shape (n,)."""
    n = p.shape[0]
    m_mu, _, _ = _particle_props(13)
    is_true_mu = abs_pid == 13

    # Decay in flight before the calorimeter: P = BR (1 - exp(-L / (beta gamma c tau))) * match.
    br = np.where(abs_pid == 211, cfg.br_mu_pion, np.where(abs_pid == 321, cfg.br_mu_kaon, 0.0))
    beta_gamma = p / mass
    with np.errstate(divide="ignore", invalid="ignore"):
        decay_prob = -np.expm1(-cfg.dif_path / (beta_gamma * ctau))
    decay_prob = np.where(np.isfinite(decay_prob), decay_prob, 0.0)
    is_dif = rng.random(n) < br * decay_prob * cfg.dif_match_probability
    # Two-body decay in flight: muon momentum fraction uniform in [(m_mu/m)^2, 1].
    x_min = np.minimum((m_mu / mass) ** 2, 1.0)
    x = x_min + (1.0 - x_min) * rng.random(n)
    p_mu = np.where(is_true_mu, p, np.where(is_dif, x * p, 0.0))

    # Range with straggling; a (true or decay) muon reaches station k if above its range.
    reach_p = p_mu * (1.0 + cfg.range_straggling * rng.standard_normal(n))
    reach = reach_p[:, None] > np.asarray(cfg.station_reach_p)[None, :]
    # Hadron punch-through: nested depth M2..M5.
    u_pt = rng.random((n,))
    punch = (~is_true_mu)[:, None] & (u_pt[:, None] < np.asarray(cfg.punch_through)[None, :])
    genuine = reach & (rng.random((n, 4)) < cfg.station_efficiency)
    q_random = np.clip((cfg.random_hit_const + cfg.random_hit_per_track * n_tracks)
                       * (1.0 + cfg.random_hit_p_scale / p), 0.0, 1.0)
    random_hit = rng.random((n, 4)) < q_random[:, None]
    hit = genuine | punch | random_hit

    in_acc = (theta >= cfg.muon_theta_min) & (theta <= cfg.muon_theta_max)
    p1, p2, p3 = cfg.is_muon_p_edges
    m2, m3, m4, m5 = hit.T
    region = np.digitize(p, [p1, p2, p3])  # 0: below, 1: M2M3, 2: +(M4|M5), 3: M2-M5
    is_muon = in_acc & (
        ((region == 1) & m2 & m3)
        | ((region == 2) & m2 & m3 & (m4 | m5))
        | ((region == 3) & m2 & m3 & m4 & m5)
    )

    # Hit-distance variable D^2 ~ Gamma(N, scale / N); genuine muon hits are close.
    n_req = np.choose(np.clip(region, 1, 3) - 1, [2.0, 3.0, 4.0])
    g2, g3, g4, g5 = genuine.T
    all_genuine = np.where(region == 3, g2 & g3 & g4 & g5,
                           np.where(region == 2, g2 & g3 & (g4 | g5), g2 & g3))
    d2_dif = np.where(abs_pid == 321, cfg.d2_scale_dif_kaon, cfg.d2_scale_dif)
    scale = np.where(all_genuine & is_true_mu, cfg.d2_scale_muon,
                     np.where(all_genuine, d2_dif, cfg.d2_scale_background))
    d2 = rng.gamma(n_req, scale / n_req)
    mu_ll = _gamma_logpdf(d2, n_req, cfg.d2_scale_muon / n_req)
    bkg_ll = _gamma_logpdf(d2, n_req, cfg.d2_scale_background / n_req)
    mu_ll = np.where(is_muon, mu_ll, MUON_LL_SENTINEL)
    bkg_ll = np.where(is_muon, bkg_ll, MUON_LL_SENTINEL)
    return is_muon, mu_ll, bkg_ll


# ---------------------------------------------------------------------------- kernel


def simulate_pid(
    truth: Mapping[str, np.ndarray],
    rng: np.random.Generator,
    config: PIDConfig = PIDConfig(),
) -> dict[str, np.ndarray]:
    """Simulate the reference-detector PID response of reconstructed tracks.

    Args:
        truth: 1-D arrays of length n, one entry per track: ``pid`` (true PDG id;
            the sign is ignored), ``charge`` (+1 / -1), ``px, py, pz`` (reconstructed
            momentum [MeV]) and ``n_tracks`` (occupancy of the track's event);
            optionally ``track_type`` (3 Long, 4 Upstream, 5 Downstream; default 3),
            which limits the sub-detectors giving information (module docstring),
            and ``EcalPIDe`` (the calorimeter electron likelihood of the track's
            matched cluster, 0 without one; default 0 for every track).
        rng: source of randomness.
        config: detector parameters, see :class:`PIDConfig`.

    Returns:
        The columns :data:`PID_COLUMNS`, each shape (n,): ``has_rich`` and
        ``is_muon`` bool, the others float64 (DLLs are ln L(x) - ln L(pi);
        ``MuonMuLL``/``MuonBkgLL`` are :data:`MUON_LL_SENTINEL` unless ``is_muon``;
        ProbNN-like columns are in [0, 1] and sum to 1 per track).

    Raises:
        DataError: a missing column, NaN/inf, mismatched shapes, a zero charge, a
            negative occupancy, or a ghost / neutral / unknown PDG id.
    """
    arrays = _validate(truth)
    abs_pid = np.abs(arrays["pid"]).astype(np.int64)
    px, py, pz = (arrays[k].astype(float) for k in ("px", "py", "pz"))
    n_tracks = arrays["n_tracks"].astype(float)
    n = abs_pid.shape[0]

    codes, inverse = np.unique(abs_pid, return_inverse=True)
    props = np.array([_particle_props(int(c)) for c in codes]).reshape(-1, 3)
    mass = props[inverse, 0]
    ctau = props[inverse, 1]

    pt = np.hypot(px, py)
    p = np.sqrt(pt**2 + pz**2)
    if np.any(p <= 0):
        raise DataError("simulate_pid: columns 'px, py, pz' give a zero momentum")
    theta = 1e3 * np.arctan2(pt, pz)  # polar angle [mrad]; backward tracks > pi/2
    hyp_masses = np.array([_particle_props(h)[0] for h in _HYPOTHESES])

    track_type = arrays["track_type"]

    def traverses(detector: str) -> np.ndarray:
        return np.isin(track_type, [code for code, dets in REACH.items() if detector in dets])

    # ---- RICH (only the radiators the track type traverses)
    rich_ll = np.zeros((n, len(_HYPOTHESES)))
    has_rich = np.zeros(n, dtype=bool)
    for rad, key in ((config.rich1, "rich1"), (config.rich2, "rich2")):
        in_acc = (p > config.p_min_rich) & (theta >= rad.theta_min) & (theta <= rad.theta_max) & traverses(key)
        has_rich |= in_acc
        rich_ll += _rich_loglik(p, mass, in_acc, n_tracks, hyp_masses, rad, rng)
    rich_dll = rich_ll - rich_ll[:, [_I_PI]]

    # ---- Muon system
    is_muon, mu_ll, bkg_ll = _muon_system(p, theta, abs_pid, mass, ctau, n_tracks, config, rng)
    is_muon &= traverses("muon")  # Upstream tracks never reach the muon stations
    mu_ll = np.where(is_muon, mu_ll, MUON_LL_SENTINEL)
    bkg_ll = np.where(is_muon, bkg_ll, MUON_LL_SENTINEL)
    muon_dll = np.where(is_muon, mu_ll - bkg_ll, 0.0)

    # ---- Calorimeter electron term: the calorimeter reconstruction's EcalPIDe (0 without a cluster)
    calo_e = np.where(traverses("ecal"), arrays["EcalPIDe"], 0.0)

    pid_e = rich_dll[:, _I_E] + calo_e
    pid_mu = rich_dll[:, _I_MU] + muon_dll
    pid_k = rich_dll[:, _I_K]
    pid_p = rich_dll[:, _I_P]

    # ---- ProbNN-like: softmax of combined log-likelihoods (relative to pi) + IsMuon term.
    ismu_mu = np.where(is_muon, np.log(config.muon_efficiency_prior), np.log1p(-config.muon_efficiency_prior))
    ismu_had = np.where(is_muon, np.log(config.muon_misid_prior), np.log1p(-config.muon_misid_prior))
    logits = np.stack(
        [pid_e + ismu_had, pid_mu + ismu_mu, ismu_had, pid_k + ismu_had, pid_p + ismu_had,
         np.zeros(n) + ismu_had],
        axis=1,
    )
    logits = (logits + np.log(np.asarray(config.probnn_priors))[None, :]) / config.probnn_temperature
    logits += rng.normal(0.0, config.probnn_noise, size=logits.shape)
    logits -= logits.max(axis=1, keepdims=True)
    prob = np.exp(logits)
    prob /= prob.sum(axis=1, keepdims=True)

    out: dict[str, np.ndarray] = {
        "has_rich": has_rich,
        "RichDLLe": rich_dll[:, _I_E],
        "RichDLLmu": rich_dll[:, _I_MU],
        "RichDLLK": rich_dll[:, _I_K],
        "RichDLLp": rich_dll[:, _I_P],
        "is_muon": is_muon,
        "MuonMuLL": mu_ll,
        "MuonBkgLL": bkg_ll,
        "PIDe": pid_e,
        "PIDmu": pid_mu,
        "PIDK": pid_k,
        "PIDp": pid_p,
        "ProbNNe": prob[:, 0],
        "ProbNNmu": prob[:, 1],
        "ProbNNpi": prob[:, 2],
        "ProbNNk": prob[:, 3],
        "ProbNNp": prob[:, 4],
        "ProbNNghost": prob[:, 5],
    }
    log.debug("simulate_pid: %d tracks, %d with RICH, %d IsMuon", n, has_rich.sum(), is_muon.sum())
    return out
