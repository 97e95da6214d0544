"""PID calibration samples with sWeights, as LHCb's PIDCalib.

Each species is calibrated on a clean decay reconstructed over combinatorial
background in a mass variable; the background is statistically subtracted with
sPlot weights from an extended unbinned maximum-likelihood fit of the mass
(zfit), computed with :func:`hepstats.splot.compute_sweights`:

=======  ===================================  ==============================
species  decay (mass variable)                mass model (signal / background)
=======  ===================================  ==============================
K, pi    D*+ -> D0(-> K- pi+) pi+ (m(K pi))   Gaussian / exponential
p        Lambda -> p pi- (m(p pi))            Gaussian / Chebyshev (order 1)
mu       J/psi -> mu+ mu- (m(mu mu))          Gaussian / exponential
e        J/psi -> e+ e- (m(e e))              Crystal Ball (brem tail) / exponential
=======  ===================================  ==============================

Masses come from the ``particle`` package.  Every channel has its own momentum,
pseudorapidity and occupancy spectra for the signal track (the reason PID
efficiencies must be conditioned on p, eta, n_tracks), and the combinatorial
background tracks have their own softer spectra, busier events and a species
mixture (70 % pi, 20 % K, 10 % p by default).  The PID response of every track
comes from :func:`sim.reference.pid.simulate_pid` for its true species, with the
calorimeter electron likelihood ``EcalPIDe`` of the reference ECAL through the
calorimeter pass's reconstruction (:func:`sim.reference.ecal_pid.reference_ecal_pid`:
``PIDe = RichDLLe + EcalPIDe``, correlated with E/p by construction).  Within
each component the mass is independent of the PID variables, which the sPlot
technique requires.

Units: MeV.  The signal J/psi -> mu mu peak has no radiative tail (documented
simplification); the sWeights keep their negative values.
"""

from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from mambah.errors import ConfigError, DataError
from sim.reference.ecal_pid import reference_ecal_pid
from sim.reference.pid import PIDConfig, simulate_pid

__all__ = (
    "CALIBRATION_CHANNELS",
    "CalibrationChannel",
    "fit_calibration",
    "make_calibration_sample",
)

log = logging.getLogger(__name__)

_PARAM_COUNTER = itertools.count()


@dataclass(frozen=True)
class CalibrationChannel:
    """One calibration decay and the spectra of its tracks.

    Attributes:
        decay: decay descriptor, for documentation.
        track_pid: PDG id of the calibrated track for charge +1 (sign flips with charge
            as particle/antiparticle).
        mother_pid: PDG id of the resonance whose mass is fitted (mass from ``particle``).
        mass_resolution: Gaussian mass resolution [MeV] (LHCb-like: D0 -> K pi ~ 8,
            Lambda -> p pi ~ 2, J/psi -> mu mu ~ 13, J/psi -> e e core ~ 25).
        window: fit window as offsets (low, high) from the mother mass [MeV].
        signal_shape: ``"gauss"`` or ``"crystalball"``.
        background_shape: ``"exponential"`` or ``"chebyshev"``.
        background_slope: exponential slope [1/MeV], or the linear Chebyshev
            coefficient (on the window mapped to [-1, 1]).
        brem_fraction, brem_mean: fraction of signal candidates with a radiative
            (bremsstrahlung) loss and its mean [MeV], exponential (electrons only).
        p_offset, p_mean, p_shape: signal-track momentum 2 GeV + Gamma(shape, mean) [MeV].
        eta_mean, eta_sigma: signal-track pseudorapidity, Gaussian clipped to [2, 4.8].
        ntracks_mean, ntracks_shape: event occupancy, Gamma(shape, mean).
    """

    decay: str
    track_pid: int
    mother_pid: int
    mass_resolution: float
    window: tuple[float, float]
    signal_shape: str
    background_shape: str
    background_slope: float
    p_mean: float
    p_shape: float
    eta_mean: float
    eta_sigma: float
    ntracks_mean: float
    ntracks_shape: float = 4.0
    p_offset: float = 2000.0
    brem_fraction: float = 0.0
    brem_mean: float = 0.0


#: Calibration channels by species.  Signal spectra are model choices, deliberately
#: different from each other (D* kaons/pions harder than Lambda protons, J/psi leptons
#: hardest; J/psi events are muon-triggered and quieter).
CALIBRATION_CHANNELS: dict[str, CalibrationChannel] = {
    "K": CalibrationChannel(
        decay="D*+ -> (D0 -> K- pi+) pi+", track_pid=321, mother_pid=421, mass_resolution=8.0,
        window=(-70.0, 70.0), signal_shape="gauss", background_shape="exponential",
        background_slope=-0.006, p_mean=32e3, p_shape=2.5, eta_mean=3.2, eta_sigma=0.55,
        ntracks_mean=170.0,
    ),
    "pi": CalibrationChannel(
        decay="D*+ -> (D0 -> K- pi+) pi+", track_pid=211, mother_pid=421, mass_resolution=8.0,
        window=(-70.0, 70.0), signal_shape="gauss", background_shape="exponential",
        background_slope=-0.006, p_mean=26e3, p_shape=2.2, eta_mean=3.3, eta_sigma=0.6,
        ntracks_mean=170.0,
    ),
    "p": CalibrationChannel(
        decay="Lambda0 -> p+ pi-", track_pid=2212, mother_pid=3122, mass_resolution=2.0,
        window=(-20.0, 25.0), signal_shape="gauss", background_shape="chebyshev",
        background_slope=0.3, p_mean=38e3, p_shape=2.0, eta_mean=3.0, eta_sigma=0.5,
        ntracks_mean=150.0,
    ),
    "mu": CalibrationChannel(
        decay="J/psi(1S) -> mu+ mu-", track_pid=-13, mother_pid=443, mass_resolution=13.0,
        window=(-150.0, 150.0), signal_shape="gauss", background_shape="exponential",
        background_slope=-0.003, p_mean=45e3, p_shape=3.0, eta_mean=3.3, eta_sigma=0.6,
        ntracks_mean=130.0,
    ),
    "e": CalibrationChannel(
        decay="J/psi(1S) -> e+ e-", track_pid=-11, mother_pid=443, mass_resolution=25.0,
        window=(-500.0, 200.0), signal_shape="crystalball", background_shape="exponential",
        background_slope=-0.002, p_mean=40e3, p_shape=3.0, eta_mean=3.3, eta_sigma=0.6,
        ntracks_mean=130.0, brem_fraction=0.4, brem_mean=80.0,
    ),
}

#: Combinatorial-background track mixture (|PDG id|, fraction).
BACKGROUND_MIXTURE: tuple[tuple[int, float], ...] = ((211, 0.7), (321, 0.2), (2212, 0.1))
_SPECIES_NAME = {11: "e", 13: "mu", 211: "pi", 321: "K", 2212: "p"}


def _channel(species: str) -> CalibrationChannel:
    if species not in CALIBRATION_CHANNELS:
        raise ConfigError(f"unknown calibration species {species!r}; valid: {sorted(CALIBRATION_CHANNELS)}")
    return CALIBRATION_CHANNELS[species]


def _mother_mass(channel: CalibrationChannel) -> float:
    from particle import Particle

    mass = Particle.from_pdgid(channel.mother_pid).mass
    if mass is None:
        raise ConfigError(f"calibration channel mother {channel.mother_pid} has no PDG mass")
    return float(mass)


def _mass_range(channel: CalibrationChannel) -> tuple[float, float]:
    m0 = _mother_mass(channel)
    return m0 + channel.window[0], m0 + channel.window[1]


def _kinematics(
    n: int,
    rng: np.random.Generator,
    *,
    p_offset: float,
    p_mean: float,
    p_shape: float,
    eta_mean: float,
    eta_sigma: float,
    ntracks_mean: float,
    ntracks_shape: float,
) -> dict[str, np.ndarray]:
    """Track p [MeV], eta, phi, px/py/pz/pt [MeV] and event n_tracks, each shape (n,)."""
    p = p_offset + rng.gamma(p_shape, p_mean / p_shape, n)
    eta = np.clip(rng.normal(eta_mean, eta_sigma, n), 2.0, 4.8)
    phi = rng.uniform(-np.pi, np.pi, n)
    pt = p / np.cosh(eta)
    n_tracks = np.round(rng.gamma(ntracks_shape, ntracks_mean / ntracks_shape, n)).astype(np.int64)
    return {"p": p, "pt": pt, "eta": eta, "px": pt * np.cos(phi), "py": pt * np.sin(phi),
            "pz": pt * np.sinh(eta), "n_tracks": n_tracks}


def _draw_signal_mass(channel: CalibrationChannel, n: int, rng: np.random.Generator) -> np.ndarray:
    lo, hi = _mass_range(channel)
    m0 = _mother_mass(channel)
    out = np.empty(0)
    while out.size < n:  # rejection into the window (windows are >= 5 sigma wide)
        m = m0 + rng.normal(0.0, channel.mass_resolution, 2 * n)
        if channel.brem_fraction > 0:
            brem = rng.random(2 * n) < channel.brem_fraction
            m -= np.where(brem, rng.exponential(channel.brem_mean, 2 * n), 0.0)
        out = np.concatenate([out, m[(m > lo) & (m < hi)]])
    return out[:n]


def _draw_background_mass(channel: CalibrationChannel, n: int, rng: np.random.Generator) -> np.ndarray:
    lo, hi = _mass_range(channel)
    u = rng.random(n)
    if channel.background_shape == "exponential":
        lam = channel.background_slope  # inverse CDF of exp(lam x) on [lo, hi]
        return lo + np.log1p(u * np.expm1(lam * (hi - lo))) / lam
    # Linear density 1 + a t on t in [-1, 1]: inverse CDF of (t + 1) + a (t^2 - 1) / 2.
    a = channel.background_slope
    t = (-1.0 + np.sqrt((1.0 - a) ** 2 + 4.0 * a * u)) / a if a != 0 else 2.0 * u - 1.0
    return lo + (t + 1.0) * (hi - lo) / 2.0


def make_calibration_sample(
    species: str,
    n_signal: int,
    n_background: int,
    rng: np.random.Generator,
    *,
    pid_config: PIDConfig = PIDConfig(),
    fit: bool = True,
) -> pd.DataFrame:
    """Generate a PIDCalib-like calibration sample, optionally with sWeights.

    Args:
        species: calibrated species, one of ``CALIBRATION_CHANNELS`` (K, pi, p, mu, e).
        n_signal: signal candidates in the mass window.
        n_background: combinatorial candidates in the mass window.
        rng: source of randomness.
        pid_config: reference PID parameters passed to ``simulate_pid``.
        fit: fit the mass and fill ``sweight`` (zfit + hepstats); if false, ``sweight``
            is NaN and :func:`fit_calibration` can be called later.

    Returns:
        DataFrame with n_signal + n_background rows (shuffled): truth ``species``
        (str) and ``is_signal`` (bool) and ``pid`` (PDG id) for tests only; ``p, pt``
        [MeV], ``eta``, ``n_tracks``, ``charge``, ``mass`` [MeV], ``EcalPIDe`` and
        ``calo_e_over_p`` (reference ECAL; 0 and NaN without a cluster), every column of
        :data:`sim.reference.pid.PID_COLUMNS`, and ``sweight`` (signal sWeight).
        ``df.attrs["species"]`` names the channel.

    Raises:
        ConfigError: unknown species or negative sizes.
    """
    channel = _channel(species)
    if n_signal < 0 or n_background < 0 or n_signal + n_background == 0:
        raise ConfigError(f"n_signal={n_signal}, n_background={n_background}: need non-negative "
                          f"sizes with a positive sum")
    sig = _kinematics(n_signal, rng, p_offset=channel.p_offset, p_mean=channel.p_mean,
                      p_shape=channel.p_shape, eta_mean=channel.eta_mean, eta_sigma=channel.eta_sigma,
                      ntracks_mean=channel.ntracks_mean, ntracks_shape=channel.ntracks_shape)
    bkg = _kinematics(n_background, rng, p_offset=2000.0, p_mean=12e3, p_shape=1.5, eta_mean=3.4,
                      eta_sigma=0.7, ntracks_mean=1.3 * channel.ntracks_mean,
                      ntracks_shape=channel.ntracks_shape)
    codes = np.array([c for c, _ in BACKGROUND_MIXTURE])
    fractions = np.array([f for _, f in BACKGROUND_MIXTURE])
    bkg_abs = rng.choice(codes, size=n_background, p=fractions / fractions.sum())

    charge = rng.choice(np.array([-1, 1]), size=n_signal + n_background)
    abs_pid = np.concatenate([np.full(n_signal, abs(channel.track_pid)), bkg_abs])
    lepton = np.isin(abs_pid, (11, 13))
    pid = np.where(lepton, -charge, charge) * abs_pid  # mu+ is -13, pi+ is 211

    kin = {k: np.concatenate([sig[k], bkg[k]]) for k in sig}
    mass = np.concatenate([_draw_signal_mass(channel, n_signal, rng),
                           _draw_background_mass(channel, n_background, rng)])
    calo = reference_ecal_pid(pid, charge, kin["px"], kin["py"], kin["pz"], rng)
    pid_out = simulate_pid({"pid": pid, "charge": charge, "px": kin["px"], "py": kin["py"],
                            "pz": kin["pz"], "n_tracks": kin["n_tracks"], "EcalPIDe": calo["EcalPIDe"]},
                           rng, pid_config)
    df = pd.DataFrame({
        "species": [_SPECIES_NAME.get(int(a), str(int(a))) for a in abs_pid],
        "is_signal": np.arange(n_signal + n_background) < n_signal,
        "pid": pid.astype(np.int64),
        "p": kin["p"], "pt": kin["pt"], "eta": kin["eta"], "n_tracks": kin["n_tracks"],
        "charge": charge.astype(np.int64),
        "mass": mass,
        "EcalPIDe": calo["EcalPIDe"], "calo_e_over_p": calo["calo_e_over_p"],
        **pid_out,
        "sweight": np.full(n_signal + n_background, np.nan),
    })
    df = df.iloc[rng.permutation(len(df))].reset_index(drop=True)
    df.attrs["species"] = species
    if fit:
        df, _ = fit_calibration(df)
    return df


def fit_calibration(df: pd.DataFrame, species: str | None = None) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Fit the mass of a calibration sample and attach signal sWeights.

    Extended unbinned maximum-likelihood fit (``zfit.loss.ExtendedUnbinnedNLL``,
    ``zfit.minimize.Minuit``, HESSE errors) of signal + background in the channel's
    mass window, then sPlot weights from ``hepstats.splot.compute_sweights``.

    Args:
        df: sample from :func:`make_calibration_sample` (needs ``mass``).
        species: channel; defaults to ``df.attrs["species"]``.

    Returns:
        (copy of ``df`` with ``sweight`` filled, summary) where the summary holds
        ``species, n_signal, n_signal_error, n_background, n_background_error,
        valid, converged, edm, fmin`` and ``params`` (name -> value).

    Raises:
        ConfigError: unknown or missing species.
        DataError: ``mass`` missing, non-finite or outside the window.
    """
    if species is None:
        species = df.attrs.get("species")
        if species is None:
            raise ConfigError(f"fit_calibration: no species given and none in df.attrs; "
                              f"valid: {sorted(CALIBRATION_CHANNELS)}")
    channel = _channel(species)
    if "mass" not in df.columns:
        raise DataError(f"fit_calibration: column 'mass' missing; columns: {list(df.columns)}")
    mass = df["mass"].to_numpy(dtype=float)
    lo, hi = _mass_range(channel)
    if not np.all(np.isfinite(mass)) or np.any((mass < lo) | (mass > hi)):
        raise DataError(f"fit_calibration: column 'mass' holds NaN/inf or values outside [{lo:.1f}, {hi:.1f}] MeV")

    import zfit
    from hepstats.splot import compute_sweights

    tag = f"{species}_{next(_PARAM_COUNTER)}"
    n = float(len(mass))
    m0 = _mother_mass(channel)
    sig_w = channel.mass_resolution
    obs = zfit.Space(f"mass_{tag}", lo, hi)
    n_sig = zfit.Parameter(f"n_sig_{tag}", 0.5 * n, 0.0, 2.0 * n)
    n_bkg = zfit.Parameter(f"n_bkg_{tag}", 0.5 * n, 0.0, 2.0 * n)
    mu = zfit.Parameter(f"mu_{tag}", m0, m0 - 3 * sig_w, m0 + 3 * sig_w)
    sigma = zfit.Parameter(f"sigma_{tag}", sig_w, 0.2 * sig_w, 5.0 * sig_w)
    if channel.signal_shape == "crystalball":
        alpha = zfit.Parameter(f"alpha_{tag}", 1.0, 0.1, 10.0)
        n_cb = zfit.Parameter(f"ncb_{tag}", 3.0, 0.5, 50.0)
        signal = zfit.pdf.CrystalBall(mu=mu, sigma=sigma, alpha=alpha, n=n_cb, obs=obs, extended=n_sig)
    else:
        signal = zfit.pdf.Gauss(mu=mu, sigma=sigma, obs=obs, extended=n_sig)
    if channel.background_shape == "exponential":
        lam = zfit.Parameter(f"lam_{tag}", -1.0 / (hi - lo), -1.0, 1.0)
        background = zfit.pdf.Exponential(lam=lam, obs=obs, extended=n_bkg)
    else:
        c1 = zfit.Parameter(f"c1_{tag}", 0.0, -1.0, 1.0)
        background = zfit.pdf.Chebyshev(obs=obs, coeffs=[c1], extended=n_bkg)
    model = zfit.pdf.SumPDF([signal, background])
    data = zfit.Data.from_numpy(obs=obs, array=mass)
    nll = zfit.loss.ExtendedUnbinnedNLL(model=model, data=data)
    result = zfit.minimize.Minuit().minimize(nll)
    result.hesse()
    if not result.valid:
        log.warning("fit_calibration(%s): the mass fit is not valid (edm=%g)", species, result.edm)

    weights = compute_sweights(model, data)
    out = df.copy()
    out["sweight"] = np.asarray(weights[n_sig], dtype=float)

    def _err(param: Any) -> float:
        return float(result.params[param]["hesse"]["error"])

    summary: dict[str, Any] = {
        "species": species,
        "n_signal": float(n_sig.value()),
        "n_signal_error": _err(n_sig),
        "n_background": float(n_bkg.value()),
        "n_background_error": _err(n_bkg),
        "valid": bool(result.valid),
        "converged": bool(result.converged),
        "edm": float(result.edm),
        "fmin": float(result.fmin),
        "params": {p.name.rsplit(f"_{tag}", 1)[0]: float(p.value()) for p in result.params},
    }
    log.info("fit_calibration(%s): N_sig = %.0f +- %.0f, N_bkg = %.0f +- %.0f", species,
             summary["n_signal"], summary["n_signal_error"], summary["n_background"],
             summary["n_background_error"])
    return out, summary
