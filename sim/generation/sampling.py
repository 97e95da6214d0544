"""Vectorised numpy phase-space sampling: isotropic two-body decays and flat three-body decays.

Small and exact, independent of the decay engine's Raubold–Lynch road
(:mod:`sim.generation.genbod`): the angular-distribution tests of
:mod:`sim.generation.amplitudes`, :mod:`sim.generation.formfactors` and
:mod:`sim.generation.photos` generate with it.  Four-vectors are (px, py, pz, E) [MeV].
"""

from __future__ import annotations

import numpy as np

from mambah.kinematics import boost

__all__ = ("invariant_mass", "rest_frame", "three_body", "two_body")


def invariant_mass(p4: np.ndarray) -> np.ndarray:
    """``(...,)`` invariant masses [MeV] of ``(..., 4)`` four-vectors."""
    p4 = np.asarray(p4, dtype=np.float64)
    return np.sqrt(np.maximum(p4[..., 3] ** 2 - np.sum(p4[..., :3] ** 2, axis=-1), 0.0))


def rest_frame(p4: np.ndarray, frame: np.ndarray) -> np.ndarray:
    """Four-momenta ``p4`` seen in the rest frame of ``frame`` (pure boost; both ``(..., 4)``)."""
    inv = np.array(frame, dtype=np.float64, copy=True)
    inv[..., :3] = -inv[..., :3]
    return boost(p4, inv)


def _pstar(m: np.ndarray, m1: np.ndarray, m2: np.ndarray) -> np.ndarray:
    lam = (m * m - (m1 + m2) ** 2) * (m * m - (m1 - m2) ** 2)
    return np.sqrt(np.maximum(lam, 0.0)) / (2.0 * m)


def two_body(
    parent: np.ndarray, m1: float | np.ndarray, m2: float | np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Isotropic two-body decays (in the parent's rest frame) of ``parent`` ``(n, 4)``.

    Args:
        parent: ``(n, 4)`` four-momenta [MeV] in the frame of interest.
        m1, m2: daughter masses [MeV], scalars or ``(n,)``.
        rng: random generator.

    Returns:
        (p1, p2), each ``(n, 4)`` in the same frame as ``parent``.
    """
    parent = np.asarray(parent, dtype=np.float64)
    n = parent.shape[0]
    m = invariant_mass(parent)
    a1 = np.broadcast_to(np.asarray(m1, dtype=np.float64), (n,))
    a2 = np.broadcast_to(np.asarray(m2, dtype=np.float64), (n,))
    p = _pstar(m, a1, a2)
    cos = rng.uniform(-1.0, 1.0, n)
    phi = rng.uniform(-np.pi, np.pi, n)
    sin = np.sqrt(1.0 - cos * cos)
    d = np.stack([sin * np.cos(phi), sin * np.sin(phi), cos], axis=1) * p[:, None]
    q1 = np.concatenate([d, np.sqrt(a1 * a1 + p * p)[:, None]], axis=1)
    q2 = np.concatenate([-d, np.sqrt(a2 * a2 + p * p)[:, None]], axis=1)
    return boost(q1, parent), boost(q2, parent)


def three_body(
    parent: np.ndarray, m1: float, m2: float, m3: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Flat (unweighted) three-body phase space of ``parent`` ``(n, 4)`` (all rows of one mass).

    The invariant mass squared s23 of (2, 3) is drawn with density ∝ p1*(s23)·p2*(s23)/√s23
    (accept–reject), then two isotropic two-body decays follow: exactly dΦ3.

    Returns:
        (p1, p2, p3), each ``(n, 4)`` [MeV] in the frame of ``parent``.
    """
    parent = np.asarray(parent, dtype=np.float64)
    n = parent.shape[0]
    big_m = float(invariant_mass(parent[:1])[0])
    lo, hi = (m2 + m3) ** 2, (big_m - m1) ** 2

    def density(s: np.ndarray) -> np.ndarray:
        r = np.sqrt(s)
        return _pstar(np.full_like(s, big_m), np.full_like(s, m1), r) * _pstar(r, np.full_like(s, m2), np.full_like(s, m3)) / r

    grid = np.linspace(lo, hi, 4001)[1:-1]
    dmax = float(np.max(density(grid))) * 1.02
    chosen = np.empty(0)
    while chosen.size < n:
        s = rng.uniform(lo, hi, 2 * n + 16)
        chosen = np.concatenate([chosen, s[rng.uniform(0.0, dmax, s.size) < density(s)]])
    s23 = chosen[:n]
    p1, p23 = two_body(parent, m1, np.sqrt(s23), rng)
    p2, p3 = two_body(p23, m2, m3, rng)
    return p1, p2, p3
