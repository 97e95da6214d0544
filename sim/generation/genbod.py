"""Vectorised n-body phase space (Raubold–Lynch / GENBOD) and resonance masses for the decay engine, pure numpy.

Every function works on many decays at once: row ``i`` of the inputs is one
decaying particle with its own mass and its own daughter masses, so one call
decays all instances of one (particle, mode) group.

* :func:`genbod` — momenta of ``K`` daughters in the parent's rest frame with
  the Raubold–Lynch weight ``w = Π p*_i`` (F. James, "Monte Carlo phase space",
  CERN 68-15 (1968); the algorithm of CERNLIB GENBOD): intermediate invariant
  masses ``M_i = Σ_{j≤i} m_j + r_i T`` with sorted uniforms ``r_i`` and the
  kinetic energy ``T = M - Σ m_j``; successive two-body splittings in random
  directions.  At fixed daughter masses the phase-space density is ``∝ w``
  (the simplex volume ``T^(K-2)/(K-2)!`` is constant); with variable daughter
  masses it is ``∝ T^(K-2) w`` (:func:`phase_space_weight`).
* :func:`weight_bound` — the analytic upper bound of ``w``
  (``Π pdk(M_i^max, M_{i-1}^min, m_i)``), for accept–reject without a presample.
* :func:`truncated_breit_wigner` — inverse-CDF sampling of a Breit–Wigner
  ``∝ 1 / ((m - m0)² + Γ²/4)`` truncated to ``[lo, hi]`` (per row).
* :func:`boost` — Lorentz boost of rest-frame four-vectors to the frame in which
  the parent has a given four-momentum.

Four-vectors are ``(px, py, pz, E)`` in MeV.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ("boost", "genbod", "mass_of", "pdk", "phase_space_weight", "truncated_breit_wigner", "weight_bound")


def pdk(a: np.ndarray | float, b: np.ndarray | float, c: np.ndarray | float) -> np.ndarray:
    """Momentum [MeV] of the daughters of a two-body decay ``a -> b c`` in the rest frame of ``a``.

    Args:
        a, b, c: masses [MeV] (broadcast); the result is zero where the decay is forbidden.
    """
    a, b, c = np.asarray(a, float), np.asarray(b, float), np.asarray(c, float)
    x = (a * a - (b + c) ** 2) * (a * a - (b - c) ** 2)
    safe = np.where(a > 0, a, 1.0)
    return np.where(a > 0, np.sqrt(np.maximum(x, 0.0)) / (2.0 * safe), 0.0)


def mass_of(p4: np.ndarray) -> np.ndarray:
    """Invariant mass [MeV] of four-vectors ``(..., 4)`` (0 for space-like round-off)."""
    return np.sqrt(np.maximum(p4[..., 3] ** 2 - np.sum(p4[..., :3] ** 2, axis=-1), 0.0))


def _random_directions(n: int, rng: np.random.Generator) -> np.ndarray:
    cos_t = rng.uniform(-1.0, 1.0, n)
    phi = rng.uniform(0.0, 2.0 * math.pi, n)
    sin_t = np.sqrt(np.maximum(1.0 - cos_t * cos_t, 0.0))
    return np.stack([sin_t * np.cos(phi), sin_t * np.sin(phi), cos_t], axis=1)


def boost(p4: np.ndarray, parent: np.ndarray, parent_mass: np.ndarray | None = None) -> np.ndarray:
    """Boost rest-frame four-vectors to the frame where the parent has four-momentum ``parent``.

    Args:
        p4: ``(n, K, 4)`` four-vectors in the parent's rest frame [MeV].
        parent: ``(n, 4)`` parent four-momentum in the target frame [MeV].
        parent_mass: ``(n,)`` parent masses [MeV] (computed from ``parent`` if not given).

    Returns:
        ``(n, K, 4)`` boosted four-vectors.
    """
    m = mass_of(parent) if parent_mass is None else np.asarray(parent_mass, float)
    m = np.maximum(m, 1e-12)
    b = parent[:, :3] / m[:, None]  # γβ
    gamma = parent[:, 3] / m
    p, e = p4[..., :3], p4[..., 3]
    bp = np.einsum("nsk,nk->ns", p, b)
    out = np.empty_like(p4)
    out[..., :3] = p + b[:, None, :] * (bp / (1.0 + gamma[:, None]) + e)[..., None]
    out[..., 3] = gamma[:, None] * e + bp
    return out


def genbod(masses: np.ndarray, parent_mass: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Weighted ``K``-body phase-space decays at rest (Raubold–Lynch).

    Args:
        masses: ``(n, K)`` daughter masses [MeV], ``K >= 2``.
        parent_mass: ``(n,)`` parent masses [MeV]; ``parent_mass > masses.sum(1)`` required.
        rng: random generator.

    Returns:
        ``(p4, w)``: daughters' four-momenta ``(n, K, 4)`` in the parent's rest frame
        [MeV], and the Raubold–Lynch weights ``(n,)`` (``Π p*_i`` [MeV^(K-1)]).
    """
    masses = np.asarray(masses, float)
    n, k = masses.shape
    big_m = np.asarray(parent_mass, float)
    cum = np.cumsum(masses, axis=1)
    t = big_m - cum[:, -1]
    inter = np.empty((n, k))
    inter[:, 0] = masses[:, 0]
    inter[:, -1] = big_m
    if k > 2:
        r = np.sort(rng.random((n, k - 2)), axis=1)
        inter[:, 1:-1] = cum[:, 1:-1] + r * t[:, None]
    # p*_i: momentum of daughter i+1 (and of the system 0..i) in the frame of inter[i+1]
    pstar = pdk(inter[:, 1:], inter[:, :-1], masses[:, 1:])
    w = np.prod(pstar, axis=1)
    p4 = np.zeros((n, k, 4))
    d = _random_directions(n, rng) * pstar[:, 0:1]
    p4[:, 0, :3] = d
    p4[:, 1, :3] = -d
    p4[:, 0, 3] = np.sqrt(pstar[:, 0] ** 2 + masses[:, 0] ** 2)
    p4[:, 1, 3] = np.sqrt(pstar[:, 0] ** 2 + masses[:, 1] ** 2)
    for i in range(2, k):
        # the system 0..i-1 (mass inter[i-1]) recoils against daughter i in the frame of inter[i]
        d = _random_directions(n, rng)
        ps = pstar[:, i - 1]
        sys = np.concatenate([d * ps[:, None], np.sqrt(ps**2 + inter[:, i - 1] ** 2)[:, None]], axis=1)
        p4[:, :i] = boost(p4[:, :i], sys, inter[:, i - 1])
        p4[:, i, :3] = -d * ps[:, None]
        p4[:, i, 3] = np.sqrt(ps**2 + masses[:, i] ** 2)
    return p4, w


def weight_bound(min_masses: np.ndarray, parent_mass: np.ndarray) -> np.ndarray:
    """Upper bound of the Raubold–Lynch weight for daughters at least as heavy as ``min_masses``.

    ``pdk(a, b, c)`` grows with ``a`` and falls with ``b`` and ``c``, so the bound
    computed with the smallest daughter masses holds for every mass configuration
    above them (James, CERN 68-15, WTMAX).

    Args:
        min_masses: ``(n, K)`` lower bounds of the daughter masses [MeV].
        parent_mass: ``(n,)`` parent masses [MeV].

    Returns:
        ``(n,)`` bounds [MeV^(K-1)].
    """
    m = np.asarray(min_masses, float)
    big_m = np.asarray(parent_mass, float)
    t = big_m - m.sum(axis=1)
    cum = np.cumsum(m, axis=1)
    emmax = t[:, None] + cum  # largest invariant mass the system 0..i can have
    out = np.ones(len(big_m))
    for i in range(1, m.shape[1]):
        out *= pdk(emmax[:, i], cum[:, i - 1], m[:, i])
    return out


def phase_space_weight(w: np.ndarray, masses: np.ndarray, parent_mass: np.ndarray) -> np.ndarray:
    """Phase-space density of a weighted GENBOD decay when daughter masses vary: ``T^(K-2) w``.

    Args:
        w: ``(n,)`` Raubold–Lynch weights from :func:`genbod`.
        masses: ``(n, K)`` the daughter masses used [MeV].
        parent_mass: ``(n,)`` parent masses [MeV].
    """
    k = masses.shape[1]
    if k <= 2:
        return np.asarray(w, float)
    t = np.maximum(np.asarray(parent_mass, float) - masses.sum(axis=1), 0.0)
    return np.asarray(w, float) * t ** (k - 2)


def truncated_breit_wigner(
    m0: float, width: float, lo: np.ndarray, hi: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """Masses [MeV] from a Breit–Wigner ``∝ 1/((m - m0)² + Γ²/4)`` truncated to ``[lo, hi]`` (per row).

    Args:
        m0: pole mass [MeV].
        width: full width Γ [MeV] (> 0).
        lo, hi: ``(n,)`` limits [MeV], ``lo < hi``.
        rng: random generator.
    """
    lo, hi = np.asarray(lo, float), np.asarray(hi, float)
    a = np.arctan(2.0 * (lo - m0) / width)
    b = np.arctan(2.0 * (hi - m0) / width)
    u = rng.random(len(lo))
    m = m0 + 0.5 * width * np.tan(a + u * (b - a))
    return np.clip(m, lo, hi)
