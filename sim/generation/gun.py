"""The particle gun: heavy-hadron kinematics and primary vertices.

Spectra are frozen dataclasses with a ``kind`` (used in config files) and a
``sample(n, mass, rng) -> (px, py, pz)`` method [MeV].  φ is always flat.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar, Protocol

import numpy as np

from mambah.errors import ConfigError
from sim.core.registry import register_config

__all__ = (
    "SPECTRA",
    "FixedMomentum",
    "HeavyHadronSpectrum",
    "LuminousRegion",
    "Spectrum",
    "UniformSpectrum",
    "sample_primary_vertices",
)

# The luminous region is the beam's (sim.generation.beam); the gun re-exports it.
from sim.generation.beam import LuminousRegion, sample_primary_vertices


class Spectrum(Protocol):
    kind: ClassVar[str]

    def sample(self, n: int, mass: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]: ...


#: largest momentum a gun may give [MeV]: the LHC design beam energy, 7 TeV
#: (LHC Design Report Vol. I, CERN-2004-003); no particle of a pp collision exceeds it.
MAX_MOMENTUM = 7.0e6
#: largest |pseudorapidity| or |rapidity| a gun may give: at 15 the polar angle is 6e-7 rad,
#: far beyond any detector (LHCb covers 2 < eta < 5) and still finite in float64 (cosh, sinh).
MAX_ETA = 15.0


def _check_range(name: str, r: tuple[float, ...], lo: float = -math.inf, hi: float = math.inf) -> None:
    if len(r) != 2 or not all(isinstance(v, (int, float)) and math.isfinite(v) for v in r) or not (lo <= r[0] < r[1] <= hi):
        raise ConfigError(f"{name} range must be (min, max) with {lo:g} <= min < max <= {hi:g}, got {tuple(r)}")


def _from_pt_eta(pt: np.ndarray, eta: np.ndarray, phi: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta)


@dataclass(frozen=True)
class FixedMomentum:
    """Every particle with the same momentum magnitude ``p`` [MeV] at pseudorapidity ``eta``; φ flat."""

    kind: ClassVar[str] = "fixed"
    p: float = 100_000.0
    eta: float = 3.5

    def __post_init__(self) -> None:
        if not (self.p > 0 and math.isfinite(self.p)) or self.p > MAX_MOMENTUM:
            raise ConfigError(f"fixed momentum p must be in (0, {MAX_MOMENTUM:g}] MeV (the LHC beam energy), got {self.p}")
        if not (math.isfinite(self.eta) and abs(self.eta) <= MAX_ETA):
            raise ConfigError(f"fixed momentum eta must be in [-{MAX_ETA:g}, {MAX_ETA:g}], got {self.eta}")

    def sample(self, n: int, mass: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        phi = rng.uniform(-math.pi, math.pi, n)
        pt = np.full(n, self.p / math.cosh(self.eta))
        return _from_pt_eta(pt, np.full(n, self.eta), phi)


@dataclass(frozen=True)
class UniformSpectrum:
    """Uniform in ``variable`` ('p' or 'pt', [MeV]) within ``range`` and uniform in η within ``eta``."""

    kind: ClassVar[str] = "uniform"
    variable: str = "p"
    range: tuple[float, float] = (2_000.0, 200_000.0)
    eta: tuple[float, float] = (2.0, 5.0)

    def __post_init__(self) -> None:
        if self.variable not in ("p", "pt"):
            raise ConfigError(f"uniform spectrum variable must be 'p' or 'pt', got {self.variable!r}")
        _check_range(f"uniform {self.variable} [MeV]", tuple(self.range), 0.0, MAX_MOMENTUM)
        _check_range("eta", tuple(self.eta), -MAX_ETA, MAX_ETA)
        object.__setattr__(self, "range", tuple(float(v) for v in self.range))
        object.__setattr__(self, "eta", tuple(float(v) for v in self.eta))

    def sample(self, n: int, mass: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        x = rng.uniform(*self.range, n)
        eta = rng.uniform(*self.eta, n)
        phi = rng.uniform(-math.pi, math.pi, n)
        pt = x if self.variable == "pt" else x / np.cosh(eta)
        return _from_pt_eta(pt, eta, phi)


@dataclass(frozen=True)
class HeavyHadronSpectrum:
    """b- or c-hadron production spectrum in pp collisions, factorised in pT and rapidity y.

    pT: the FONLL-like form ``dσ/dpT ∝ pT / (1 + (pT/p0)²)^n`` used for heavy-flavour
    spectra by CDF (Phys. Rev. D 71, 032001 (2005), J/ψ and b-hadron fits) and by
    LHCb/ALICE in cross-section extrapolations (Bossù et al., arXiv:1103.2394).
    Defaults at √s = 13 TeV: b hadrons p0 = 6.5 GeV, n = 3.0 (⟨pT⟩ ≈ 5.1 GeV,
    pT⁻⁵ tail, matching the LHCb b-hadron spectra of JHEP 12 (2017) 026 and
    FONLL in 2 < y < 4.5); c hadrons p0 = 3.5 GeV, n = 3.0 (⟨pT⟩ ≈ 2.7 GeV, cf.
    LHCb prompt-charm JHEP 03 (2016) 159).  At 14 TeV p0 is scaled by
    (14/13)^0.25 (FONLL's slow growth of ⟨pT⟩ with √s).

    y: Gaussian around 0 of width σy (b: 2.9 at 13 TeV, c: 2.6; FONLL
    dσ/dy is flat to |y|≈2.5 and falls over the LHCb range by about a factor 2).
    σy(b) is the maximum-likelihood width of the b hadrons (B0, B+, B_s0, Λb0, B_c+, Ξb, Ω_b;
    each once) of Pythia 8.317 ``HardQCD:hardbbbar`` events at 13 TeV (what ``--pythia bbbar``
    runs): 2.85 ± 0.03 in 1.5 < y < 5.5, 2.96 ± 0.07 in 2 < y < 4.5 (40 000 b hadrons,
    20 000 events); dN/dy then falls by 2.2 from y = 2 to 4.5, as Pythia's (2.2) — the 2.4
    used before fell by 3.1 and a KS test against those events gave p = 1e-63.  The rapidity
    is restricted to ``y_range`` (a generator-level cut like LHCb's DecProdCut;
    default 1.5 < y < 5.5, slightly wider than the 2 < η < 5 acceptance).
    """

    kind: ClassVar[str] = "heavy-hadron"
    flavour: str = "b"
    sqrt_s: float = 13.0
    y_range: tuple[float, float] = (1.5, 5.5)

    _PARAMS: ClassVar[dict[str, tuple[float, float, float]]] = {"b": (6_500.0, 3.0, 2.9), "c": (3_500.0, 3.0, 2.6)}

    def __post_init__(self) -> None:
        if self.flavour not in self._PARAMS:
            raise ConfigError(f"heavy-hadron flavour must be 'b' or 'c', got {self.flavour!r}")
        if self.sqrt_s not in (13.0, 13.6, 14.0):
            raise ConfigError(f"sqrt_s must be 13, 13.6 or 14 [TeV], got {self.sqrt_s}")
        _check_range("y", tuple(self.y_range), -MAX_ETA, MAX_ETA)
        object.__setattr__(self, "y_range", tuple(float(v) for v in self.y_range))

    @property
    def p0(self) -> float:
        """pT scale [MeV]."""
        return self._PARAMS[self.flavour][0] * (self.sqrt_s / 13.0) ** 0.25

    @property
    def n(self) -> float:
        return self._PARAMS[self.flavour][1]

    @property
    def sigma_y(self) -> float:
        return self._PARAMS[self.flavour][2]

    def pt_cdf(self, pt: np.ndarray) -> np.ndarray:
        """Cumulative distribution of pT (analytic), for tests."""
        return 1.0 - (1.0 + (np.asarray(pt) / self.p0) ** 2) ** (1.0 - self.n)

    def sample(self, n: int, mass: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        # pT by inverse CDF: F = 1 - (1 + (pt/p0)^2)^(1-n)
        u = rng.random(n)
        pt = self.p0 * np.sqrt((1.0 - u) ** (1.0 / (1.0 - self.n)) - 1.0)
        # truncated Gaussian rapidity by inverse CDF
        from scipy.special import ndtr, ndtri

        lo, hi = ndtr(np.array(self.y_range) / self.sigma_y)
        y = self.sigma_y * ndtri(lo + rng.random(n) * (hi - lo))
        phi = rng.uniform(-math.pi, math.pi, n)
        mt = np.sqrt(pt**2 + mass**2)
        return pt * np.cos(phi), pt * np.sin(phi), mt * np.sinh(y)


SPECTRA: dict[str, type] = {s.kind: s for s in (FixedMomentum, UniformSpectrum, HeavyHadronSpectrum)}
for _spectrum in SPECTRA.values():
    register_config("spectrum")(_spectrum)
