"""Reference ("full simulation") electromagnetic calorimeter of an LHCb-like detector.

A parametric, per-particle shower model of the LHCb shashlik ECAL, standing in for
Geant4 (which cannot run here).  The fast calorimeter model is trained on it and judged
against it, so every number is a visible, documented field of :class:`ECALConfig`.

Units: MeV, mm; depths in radiation lengths X0 where stated; PDG ids.

Sources (abbreviated below):

* [TDR]  LHCb collaboration, "LHCb calorimeters technical design report",
  CERN-LHCC-2000-036.
* [DET]  LHCb collaboration, "The LHCb detector at the LHC", JINST 3 (2008) S08005, Sec. 6.2.
* [PERF] LHCb collaboration, "LHCb detector performance", Int. J. Mod. Phys. A 30 (2015)
  1530022, arXiv:1412.6352, Sec. 5.
* [GP]   G. Grindhammer and S. Peters, "The parameterized simulation of electromagnetic
  showers in homogeneous and sampling calorimeters", arXiv:hep-ex/0001020.
* [PDG]  Particle Data Group, "Passage of particles through matter" (Bethe–Heitler
  bremsstrahlung and pair production in the complete-screening limit).

Model, all vectorised over particles:

1. Geometry.  Front face at ``z_front``; three regions of square cells, 40.4 / 60.6 /
   121.2 mm ([DET]), in boxes that are whole 121.2 mm modules, and a beam hole.  Every
   cell edge lies on a lattice of pitch 20.2 mm (40.4/2 = 60.6/3 = 121.2/6), so the
   shower matrix — ``grid_n x grid_n`` (30 x 30) fine cells of 20.2 mm, "20 mm" as in the
   LHCb ECAL GAN — is aligned to that lattice: its fine cells sum exactly into real cells
   (:func:`matrix_to_cells`; the geometry and digitisation functions live in
   :mod:`sim.detector.ecal_geometry`, shared with the fast pass, and are re-exported
   here).  The entry point lies in fine cell ``(15, 15)`` (row = y,
   column = x), at fractional offset ``(u_x, u_y)`` in ``[0, 1)``.
2. Longitudinal profile.  e/γ: Γ profile ``dE/dt ∝ (βt)^(α-1) e^(-βt)`` with
   ``ln T`` and ``ln α`` Gaussian-distributed and correlated shower by shower ([GP]
   Sec. 2.1.2, homogeneous-medium parameters with the effective Z and critical energy of
   the Pb/scintillator mixture), starting in the preshower's 2.5 X0 of lead in front;
   photons start after an exponential conversion depth (mean 9/7 X0).  The energy
   beyond ``depth_x0`` leaks out.  The depth is cut into
   ``n_slices`` slices.
3. Lateral profile per slice.  A core and a tail 2-D Gaussian whose median radii follow
   the [GP] ``R_C(τ)``, ``R_T(τ)`` and core weight ``p(τ)`` (Sec. 2.2), scaled by
   ``lateral_scale`` (one Molière radius then contains 90 % of the energy, the
   definition of R_M, [PDG]); each slice is centred on the particle's line, so inclined
   showers are asymmetric.  Gaussians make the fine-cell integrals exact (erf products).
4. Sampling fluctuations.  Each fine cell's energy ``e`` becomes Gamma-distributed with
   mean ``e`` and variance ``a² · 1 GeV · e``: summed over the shower this is exactly the
   stochastic term ``a/√E``.  The constant term is a per-shower calibration factor
   ``1 + b'·N(0, 1)``, ``b' = b ⊖ σ_leak`` (see ``constant``).
5. Muons, and hadrons that do not interact in the ECAL's 1.1 λ_I ([DET]), leave a MIP
   (Moyal-distributed, narrow, along the line); interacting hadrons a hadronic shower
   with a Beta-distributed visible fraction, wider lateral profile and larger stochastic
   term (model).
6. Digitisation (:func:`digitise`), shared by the reference and the fast model: the
   fine cells are summed into real cells per event, each touched cell gets Gaussian
   electronic noise of ``noise_et`` in transverse energy, and cells below the
   ``threshold_et`` zero suppression are dropped.
7. Material before the magnet (``material_x0``): electrons radiate Bethe–Heitler
   bremsstrahlung photons and photons convert (:func:`bremsstrahlung`,
   :func:`convert_photons`).

What it leaves out (documented simplifications): the SPD/PS in front of the ECAL, the
HCAL behind it, noise clusters in cells no particle touched, and cell-to-cell
calibration spread beyond the per-shower constant term.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Mapping
from dataclasses import dataclass, fields

import numpy as np

from mambah.errors import ConfigError, DataError
from sim.core.configcheck import check_fields_finite
from sim.detector.ecal_geometry import (
    ECALGeometry,
    bremsstrahlung,
    cell_geometry,
    cell_of,
    check_layout,
    convert_photons,
    digitise,
    ecal_entry,
    grid_offset,
    grid_origin,
    matrix_to_cells,
)

__all__ = (
    "SHOWER_TYPES",
    "ECALConfig",
    "bremsstrahlung",
    "calibration_spread",
    "cell_geometry",
    "cell_of",
    "convert_photons",
    "digitise",
    "ecal_entry",
    "grid_offset",
    "grid_origin",
    "leakage_spread",
    "matrix_to_cells",
    "shower_sample",
    "shower_type",
    "simulate_showers",
    "write_shower_sample",
)

_log = logging.getLogger(__name__)

SHOWER_TYPES: tuple[str, ...] = ("photon", "electron", "hadron", "muon")
"""Response classes, in the order of :func:`shower_type`'s codes 0, 1, 2, 3."""

_REGION_CELL = {0: 40.4, 1: 60.6, 2: 121.2}
_GeV = 1000.0


_LAYOUT = ECALGeometry()


@dataclass(frozen=True)
class ECALConfig:
    """Numbers of the reference ECAL (LHCb Run 1/2 defaults).

    Units: MeV, mm; depths in X0 or λ_I as named.  "model" marks modelling choices.

    Attributes:
        z_front: z (mm) of the ECAL front face, 12.62 m ([DET] Fig. 6.1 layout; the
            ECAL sits at about 12.5 m, after SPD/PS).
        cell_inner, cell_middle, cell_outer: Cell sizes (mm) of the three regions, 40.4 /
            60.6 / 121.2 mm ([DET] Sec. 6.2; [TDR]).
        inner_x_half, inner_y_half: Half-sizes (mm) of the inner region, 1.94 m × 1.45 m
            ([DET] Sec. 6.2).
        middle_x_half, middle_y_half: Half-sizes (mm) of the middle region, 3.88 m × 2.42 m.
        outer_x_half, outer_y_half: Half-sizes (mm) of the whole ECAL, 7.76 m × 6.30 m.
        hole_half: Half-size (mm) of the square beam hole, 323.2 mm = 25.6 mrad at
            ``z_front`` (the calorimeter inner acceptance is θ ≈ 25 mrad, [DET] Sec. 6.1;
            rounded to 8 inner cells, model).
        grid_n: Fine cells per side of the shower matrix, 30 (LHCb ECAL GAN).
        grid_pitch: Fine-cell size (mm), 20.2 = 40.4/2 = 60.6/3 = 121.2/6.
        x0: Radiation length (mm) of the shashlik stack: 66 layers of 2 mm Pb + 4 mm
            scintillator, 42 cm deep for 25 X0 ([DET] Sec. 6.2) → 16.8 mm.
        depth_x0: Depth in X0, 25 ([DET] Sec. 6.2).
        depth_lambda: Depth in nuclear interaction lengths, 1.1 ([DET] Sec. 6.2).
        moliere: Molière radius (mm), 35 ([DET] Sec. 6.2: 3.5 cm).
        z_eff: Effective atomic number in the [GP] formulas: the stack is 98 % lead by
            mass (2 mm Pb at 11.35 g/cm³ against 4 mm polystyrene), so Z ≈ 80 (model).
        critical_energy: Effective critical energy (MeV), the X0-weighted mean of Pb
            (7.43 MeV, 97.4 % of the X0) and polystyrene (93 MeV) ([PDG]): 9.7 MeV.
        stochastic: Stochastic term a of σ_E/E = a/√E[GeV] ⊕ b, 10 % ([DET] Sec. 6.2;
            [PERF] Sec. 5.1: (9–10) %/√E ⊕ 1 %).
        constant: Constant term b, 1 % ([DET]; [PERF]), the total: the per-shower
            calibration factor gets ``b ⊖ σ_leak(50 GeV)`` (:func:`calibration_spread`), the
            model's longitudinal-leakage fluctuation the rest.  Fitted on 1–100 GeV
            photons (7 energies × 3000): a = 0.1008 ± 0.0007, b = 0.0101 ± 0.0002.
        noise_et: Electronic noise (MeV of E_T) per cell: 1.2 ADC counts of 2.5 MeV E_T
            (12-bit ADC for E_T up to 10 GeV, [DET] Sec. 6.2; noise of order one count, model).
        threshold_et: Zero-suppression threshold (MeV of E_T) per cell (model, ≈ 2σ noise).
        n_slices: Longitudinal slices of the shower (model).
        lateral_scale: Factor on the [GP] radii (model).  At 1.0 one Molière radius
            holds 0.90 of a 10 GeV photon's energy (the definition of R_M, [PDG]); the
            3 × 3 cells around a cell hit at its centre hold 0.988 (inner), 0.997 (middle)
            and 0.9999 (outer) of a 10 GeV photon, the hit cell 0.85 / 0.91 / 0.99.
        mip_mpv: Most probable MIP signal (MeV, EM scale): 66 × 4 mm scintillator at
            ≈ 2 MeV/cm ≈ 53 MeV visible over an EM sampling fraction ≈ 0.18 (model).
        mip_width: Width parameter of the Moyal MIP distribution relative to the MPV (model).
        mip_sigma: Lateral width (mm) of a MIP deposit (model).
        hadron_frac_a, hadron_frac_b: Beta(a, b) shape of the visible fraction of an
            interacting hadron's energy (model: mean 0.36).
        hadron_core, hadron_tail: Lateral Gaussian widths (mm) of hadron showers (model).
        hadron_core_weight: Core weight of hadron showers (model).
        hadron_stochastic: Stochastic term of hadronic deposits (model).
        ps_x0: The preshower's lead converter, 2.5 X0 ([DET] Sec. 6.1), in front of the
            ECAL: e/γ showers start there and its energy is counted with the ECAL's, as
            the LHCb reconstruction adds the PS energy back (model: one device).
        material_x0: Material before the magnet in X0, 0.2 (VELO + RICH1 + TT: LHCb
            quotes ≈ 0.2–0.25 X0 before the magnet, [PERF] Sec. 2).
        brem_y_min: Lowest photon energy fraction generated in bremsstrahlung (model:
            softer photons are invisible; 0.005 of the electron energy).
    """

    # the layout is the fast detector's (one home: sim.detector.ecal_geometry.ECALGeometry)
    z_front: float = _LAYOUT.z_front
    cell_inner: float = _LAYOUT.cell_inner
    cell_middle: float = _LAYOUT.cell_middle
    cell_outer: float = _LAYOUT.cell_outer
    inner_x_half: float = _LAYOUT.inner_x_half
    inner_y_half: float = _LAYOUT.inner_y_half
    middle_x_half: float = _LAYOUT.middle_x_half
    middle_y_half: float = _LAYOUT.middle_y_half
    outer_x_half: float = _LAYOUT.outer_x_half
    outer_y_half: float = _LAYOUT.outer_y_half
    hole_half: float = _LAYOUT.hole_half
    grid_n: int = _LAYOUT.grid_n
    grid_pitch: float = _LAYOUT.grid_pitch
    x0: float = 16.8
    depth_x0: float = 25.0
    depth_lambda: float = 1.1
    moliere: float = 35.0
    z_eff: float = 80.0
    critical_energy: float = 9.7
    stochastic: float = 0.10
    constant: float = 0.01
    noise_et: float = 3.0
    threshold_et: float = 6.0
    n_slices: int = 10
    lateral_scale: float = 1.0
    mip_mpv: float = 300.0
    mip_width: float = 0.08
    mip_sigma: float = 3.0
    hadron_frac_a: float = 2.0
    hadron_frac_b: float = 3.5
    hadron_core: float = 30.0
    hadron_tail: float = 90.0
    hadron_core_weight: float = 0.6
    hadron_stochastic: float = 0.5
    ps_x0: float = 2.5
    material_x0: float = 0.2
    brem_y_min: float = 0.005

    def __post_init__(self) -> None:
        check_fields_finite(self, "ECALConfig")
        non_negative = ("noise_et", "threshold_et", "material_x0", "constant")
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in non_negative:
                if value < 0:
                    raise ConfigError(f"ECALConfig.{f.name}={value!r}; expected a number >= 0")
            elif value <= 0:
                raise ConfigError(f"ECALConfig.{f.name}={value!r}; expected a positive number")
        for name in ("grid_n", "n_slices"):
            if int(getattr(self, name)) != getattr(self, name):
                raise ConfigError(f"ECALConfig.{name}={getattr(self, name)!r}; expected an integer")
        check_layout(self, "ECALConfig")
        if not 0.0 < self.brem_y_min < 1.0:
            raise ConfigError(f"ECALConfig.brem_y_min={self.brem_y_min!r}; expected a number in (0, 1)")

    @classmethod
    def from_mapping(cls, options: Mapping[str, object]) -> ECALConfig:
        """Build a config from a mapping, refusing unknown keys.

        Raises:
            ConfigError: A key is not a field of :class:`ECALConfig`.
        """
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise ConfigError(f"unknown ECALConfig option(s) {unknown}; known options: {sorted(known)}")
        return cls(**options)  # type: ignore[arg-type]

    def cell_size(self, region: int) -> float:
        """Cell size (mm) of region 0 (inner), 1 (middle) or 2 (outer)."""
        return (self.cell_inner, self.cell_middle, self.cell_outer)[region]


# --------------------------------------------------------------------------- geometry


def shower_type(pid: np.ndarray) -> np.ndarray:
    """Response class of each particle: 0 photon, 1 electron, 2 hadron, 3 muon (int8, (n,)).

    Args:
        pid: ``(n,)`` PDG ids.  Neutrinos and other invisible particles are hadrons here;
            the caller selects what reaches the ECAL.
    """
    a = np.abs(np.asarray(pid, dtype=np.int64))
    out = np.full(a.shape, 2, dtype=np.int8)
    out[a == 22] = 0
    out[a == 11] = 1
    out[a == 13] = 3
    return out


# --------------------------------------------------------------------------- showers


def _phi(z: np.ndarray) -> np.ndarray:
    from scipy.special import ndtr  # type: ignore[import-untyped]

    return np.asarray(ndtr(z))


def _em_slices(
    energy: np.ndarray, is_photon: np.ndarray, rng: np.random.Generator, cfg: ECALConfig
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per-slice energy fractions and lateral shape of e/γ showers ([GP]).

    Returns:
        ``(weight, sigma_core, sigma_tail, core_fraction, depth_mm)``, each ``(n, L)``.
    """
    from scipy.special import gammainc  # type: ignore[import-untyped]

    n, L = energy.shape[0], int(cfg.n_slices)
    y = np.maximum(energy / cfg.critical_energy, 3.0)
    ln_y = np.log(y)
    z = cfg.z_eff
    # [GP] Eqs. (4)-(7): means, widths and correlation of ln T and ln alpha (homogeneous media)
    mean_lnt = np.log(np.maximum(ln_y - 0.812, 0.1))
    sig_lnt = 1.0 / np.maximum(-1.4 + 1.26 * ln_y, 0.5)
    mean_lna = np.log(0.81 + (0.458 + 2.26 / z) * ln_y)
    sig_lna = 1.0 / np.maximum(-0.58 + 0.86 * ln_y, 0.5)
    rho = np.clip(0.705 + 0.023 * ln_y, -0.99, 0.99)
    z1 = rng.standard_normal(n)
    z2 = rng.standard_normal(n)
    t_max = np.exp(mean_lnt + sig_lnt * z1)
    alpha = np.exp(mean_lna + sig_lna * (rho * z1 + np.sqrt(1.0 - rho * rho) * z2))
    alpha = np.maximum(alpha, 1.05)
    beta = (alpha - 1.0) / t_max
    # photons convert first, at an exponential depth of mean 9/7 X0 ([PDG])
    t0 = np.where(is_photon, rng.exponential(9.0 / 7.0, n), 0.0)
    edges = np.linspace(-cfg.ps_x0, cfg.depth_x0, L + 1)
    s = np.clip(edges[None, :] + cfg.ps_x0 - t0[:, None], 0.0, None)
    cdf = gammainc(alpha[:, None], beta[:, None] * s)
    weight = np.diff(cdf, axis=1)
    mid = 0.5 * (edges[1:] + edges[:-1])
    tau = np.clip((mid[None, :] + cfg.ps_x0 - t0[:, None]) / t_max[:, None], 0.0, None)
    e_gev = np.maximum(energy / _GeV, 1e-3)[:, None]
    ln_e = np.log(e_gev)
    # [GP] Eqs. (13)-(16): core radius, tail radius, core weight (units of R_M)
    r_core = (0.0251 + 0.00319 * ln_e) + (0.1162 - 0.000381 * z) * tau
    k4 = 0.3585 + 0.0421 * ln_e
    r_tail = (0.659 - 0.00309 * z) * (np.exp(-2.59 * (tau - 0.645)) + np.exp(k4 * (tau - 0.645)))
    p3 = np.maximum(1.313 - 0.0686 * ln_e, 0.3)
    arg = ((0.401 + 0.00187 * z) - tau) / p3
    p_core = np.clip((2.632 - 0.00094 * z) * np.exp(arg - np.exp(arg)), 0.0, 1.0)
    median_to_sigma = 1.0 / np.sqrt(2.0 * np.log(2.0))
    scale = cfg.moliere * cfg.lateral_scale * median_to_sigma
    sig_core = np.maximum(r_core * scale, 0.5)
    sig_tail = np.maximum(r_tail * scale, sig_core)
    return weight, sig_core, sig_tail, p_core, mid[None, :] * cfg.x0 * np.ones((n, 1))


def _moyal(rng: np.random.Generator, n: int) -> np.ndarray:
    """Moyal-distributed numbers (Landau approximation): ``-ln(Z²)``, ``Z ~ N(0, 1)``."""
    zz = rng.standard_normal(n)
    return -np.log(np.maximum(zz * zz, 1e-30))


def simulate_showers(
    pid: np.ndarray,
    energy: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    tx: np.ndarray,
    ty: np.ndarray,
    rng: np.random.Generator,
    config: ECALConfig | None = None,
) -> np.ndarray:
    """Energy deposits of single particles on the fine grid around their entry point.

    Args:
        pid: ``(n,)`` PDG ids (see :func:`shower_type`).
        energy: ``(n,)`` energies (MeV) at the ECAL.
        x, y: ``(n,)`` entry points (mm) on the front face.
        tx, ty: ``(n,)`` slopes dx/dz, dy/dz of the particle at the ECAL.
        rng: random generator.
        config: the ECAL.

    Returns:
        ``(n, grid_n, grid_n)`` float32 deposits (MeV, EM scale), row = y, column = x.
        Fine cell ``(i, j)`` spans ``x ∈ [g_x + j·pitch, g_x + (j+1)·pitch)`` with
        ``g_x = pitch·(floor(x/pitch) - grid_n//2)`` (likewise y): see :func:`grid_origin`.

    Raises:
        DataError: arrays of different lengths, NaN/inf or non-positive energies.
    """
    cfg = config or ECALConfig()
    arrays = [np.asarray(a, dtype=np.float64) for a in (energy, x, y, tx, ty)]
    pid = np.asarray(pid, dtype=np.int64)
    n = pid.shape[0]
    for name, arr in zip(("energy", "x", "y", "tx", "ty"), arrays, strict=True):
        if arr.shape != (n,):
            raise DataError(f"simulate_showers: {name} has shape {arr.shape}; expected ({n},) like pid")
        if not np.all(np.isfinite(arr)):
            raise DataError(f"simulate_showers: {name} holds NaN or inf")
    energy, x, y, tx, ty = arrays
    if np.any(energy <= 0):
        raise DataError("simulate_showers: energy must be positive (MeV)")
    L = int(cfg.n_slices)
    kind = shower_type(pid)
    weight = np.zeros((n, L))
    sig_c = np.full((n, L), cfg.mip_sigma)
    sig_t = np.full((n, L), cfg.mip_sigma)
    p_c = np.ones((n, L))
    depth = np.broadcast_to((np.arange(L) + 0.5) * cfg.depth_x0 * cfg.x0 / L, (n, L)).copy()
    stoch = np.full(n, cfg.stochastic)
    e_dep = energy.copy()

    em = kind <= 1
    if em.any():
        w, sc, st, pc, d = _em_slices(energy[em], kind[em] == 0, rng, cfg)
        weight[em], sig_c[em], sig_t[em], p_c[em], depth[em] = w, sc, st, pc, d

    had = kind == 2
    interacts = had & (rng.random(n) < 1.0 - np.exp(-cfg.depth_lambda))
    mip = (kind == 3) | (had & ~interacts)
    if mip.any():
        m = int(mip.sum())
        signal = cfg.mip_mpv * (1.0 + cfg.mip_width * _moyal(rng, m))
        e_dep[mip] = np.clip(signal, 0.2 * cfg.mip_mpv, None)
        e_dep[mip] = np.minimum(e_dep[mip], energy[mip])
        weight[mip] = 1.0 / L
        stoch[mip] = 0.0
    if interacts.any():
        m = int(interacts.sum())
        # interaction depth: exponential in lambda_I, truncated to the ECAL depth
        u = rng.random(m) * (1.0 - np.exp(-cfg.depth_lambda))
        t_int = -np.log1p(-u) / cfg.depth_lambda  # fraction of the depth
        frac = rng.beta(cfg.hadron_frac_a, cfg.hadron_frac_b, m)
        e_dep[interacts] = energy[interacts] * frac
        slice_mid = (np.arange(L) + 0.5) / L
        w = np.where(slice_mid[None, :] >= t_int[:, None], 1.0, 0.0)
        w[w.sum(axis=1) == 0, -1] = 1.0
        weight[interacts] = w / w.sum(axis=1, keepdims=True)
        sig_c[interacts] = cfg.hadron_core
        sig_t[interacts] = cfg.hadron_tail
        p_c[interacts] = cfg.hadron_core_weight
        stoch[interacts] = cfg.hadron_stochastic

    pitch, g = cfg.grid_pitch, int(cfg.grid_n)
    gx, gy = grid_origin(x, y, cfg)
    edges = np.arange(g + 1) * pitch
    # slice centres relative to the grid's lower-left corner, (n, L)
    cx = (x - gx)[:, None] + tx[:, None] * depth
    cy = (y - gy)[:, None] + ty[:, None] * depth

    def integrals(c: np.ndarray, sig: np.ndarray) -> np.ndarray:
        cdf = _phi((edges[None, None, :] - c[:, :, None]) / sig[:, :, None])
        return np.diff(cdf, axis=2)  # (n, L, g)

    core = np.einsum("nl,nli,nlj->nij", weight * p_c, integrals(cy, sig_c), integrals(cx, sig_c))
    tail = np.einsum("nl,nli,nlj->nij", weight * (1.0 - p_c), integrals(cy, sig_t), integrals(cx, sig_t))
    mean = (core + tail) * e_dep[:, None, None]
    # sampling fluctuations: Gamma with mean e and variance a^2 * 1 GeV * e per fine cell
    theta = (stoch * stoch * _GeV)[:, None, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        shape = np.where(theta > 0, mean / np.where(theta > 0, theta, 1.0), 0.0)
    fluct = np.where(shape > 0, rng.gamma(np.maximum(shape, 1e-300)) * theta, 0.0)
    deposits = np.where(theta > 0, fluct, mean)
    calib = np.where(stoch > 0, 1.0 + calibration_spread(cfg) * rng.standard_normal(n), 1.0)
    return (deposits * calib[:, None, None]).astype(np.float32)


@functools.lru_cache(maxsize=16)
def leakage_spread(config: ECALConfig, energy: float = 50_000.0, n: int = 200_000) -> float:
    """Relative spread of the longitudinally contained fraction of photon showers.

    Computed from the Γ profile alone (no lateral integration, no sampling), at a fixed
    seed: the r.m.s. of ``CDF(α, β·(depth - t0))`` over ``n`` photons of ``energy`` (MeV).
    """
    rng = np.random.default_rng(12345)
    w, *_ = _em_slices(np.full(n, float(energy)), np.ones(n, dtype=bool), rng, config)
    contained = w.sum(axis=1)
    return float(np.std(contained) / np.mean(contained))


def calibration_spread(config: ECALConfig) -> float:
    """Per-shower calibration spread: ``constant ⊖ leakage_spread`` at 50 GeV.

    [DET]'s constant term (1 %) is the total: calibration, non-uniformity and leakage.
    The model's longitudinal leakage already fluctuates, so the calibration factor gets
    the rest, ``sqrt(b² - σ_leak²(50 GeV))`` (0 if the leakage alone exceeds ``b``).
    """
    leak = leakage_spread(config)
    return float(np.sqrt(max(config.constant**2 - leak**2, 0.0)))


# --------------------------------------------------------------------------- samples

SAMPLE_MIX: tuple[tuple[int, float], ...] = ((22, 0.4), (11, 0.4), (211, 0.15), (13, 0.05))
"""Default species mix (PDG id, fraction) of :func:`shower_sample`."""


def shower_sample(
    n: int,
    rng: np.random.Generator,
    config: ECALConfig | None = None,
    *,
    mix: tuple[tuple[int, float], ...] = SAMPLE_MIX,
    e_min: float = 1000.0,
    e_max: float = 100_000.0,
) -> dict[str, np.ndarray]:
    """Single-particle reference showers for training and validating a fast model.

    Energies log-uniform in ``[e_min, e_max]`` (MeV), entry points uniform over the ECAL
    face (outside the hole), slopes pointing back to the origin (``tx = x / z_front``),
    charges' sign random.

    Returns:
        Columns ``pid, energy, x, y, tx, ty`` ``(n,)`` and ``matrix`` ``(n, g, g)`` (MeV).
    """
    cfg = config or ECALConfig()
    if int(n) != n or n < 1:
        raise ConfigError(f"shower_sample: n={n!r} must be an integer >= 1")
    pids = np.array([p for p, _ in mix], dtype=np.int64)
    frac = np.array([f for _, f in mix], dtype=np.float64)
    if np.any(frac < 0) or frac.sum() <= 0:
        raise ConfigError(f"shower_sample: mix {mix!r} needs non-negative fractions with a positive sum")
    x = np.empty(0)
    y = np.empty(0)
    while x.size < n:
        cx = rng.uniform(-cfg.outer_x_half, cfg.outer_x_half, 2 * n)
        cy = rng.uniform(-cfg.outer_y_half, cfg.outer_y_half, 2 * n)
        ok = cell_of(cx, cy, cfg) >= 0
        x, y = np.concatenate([x, cx[ok]]), np.concatenate([y, cy[ok]])
    x, y = x[:n], y[:n]
    pid = pids[rng.choice(len(pids), size=n, p=frac / frac.sum())]
    pid = np.where((pid != 22) & (rng.random(n) < 0.5), -pid, pid)
    energy = np.exp(rng.uniform(np.log(e_min), np.log(e_max), n))
    tx, ty = x / cfg.z_front, y / cfg.z_front
    matrix = simulate_showers(pid, energy, x, y, tx, ty, rng, cfg)
    return {"pid": pid, "energy": energy, "x": x, "y": y, "tx": tx, "ty": ty, "matrix": matrix}


def write_shower_sample(sample: Mapping[str, np.ndarray], path: str) -> None:
    """Write :func:`shower_sample` output to Parquet (``matrix`` as a fixed-size list column)."""
    import pyarrow as pa  # type: ignore[import-untyped]
    import pyarrow.parquet as pq  # type: ignore[import-untyped]

    m = np.asarray(sample["matrix"], dtype=np.float32)
    cols = {k: pa.array(np.asarray(v)) for k, v in sample.items() if k != "matrix"}
    cols["matrix"] = pa.FixedSizeListArray.from_arrays(pa.array(m.reshape(-1)), m.shape[1] * m.shape[2])
    pq.write_table(pa.table(cols), path)
