"""Vectorised numpy phase-space sampling: two-body, flat three-body, and a semileptonic proposal.

:func:`two_body` and :func:`three_body` are small and exact, independent of the decay
engine's Raubold–Lynch road (:mod:`sim.generation.genbod`): the angular-distribution tests
of :mod:`sim.generation.amplitudes`, :mod:`sim.generation.formfactors` and
:mod:`sim.generation.photos` generate with them.

:class:`SemileptonicProposal` is the decay engine's importance sampler for P → X ℓ ν
(form-factor models): (q², cosθ_ℓ) drawn from a piecewise-constant density built once from
the model's own rate, the other angles flat, so accept–reject only has to remove the small
residual (see :func:`build_semileptonic_proposal`).  Four-vectors are (px, py, pz, E) [MeV].
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from mambah.kinematics import boost

__all__ = (
    "SemileptonicProposal",
    "build_semileptonic_proposal",
    "invariant_mass",
    "rest_frame",
    "semileptonic_kinematics",
    "three_body",
    "two_body",
)


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


# ----------------------------------------------------------------------------- semileptonic proposal


def _pdk(a: np.ndarray, b: float, c: float) -> np.ndarray:
    lam = (a * a - (b + c) ** 2) * (a * a - (b - c) ** 2)
    return np.sqrt(np.maximum(lam, 0.0)) / (2.0 * np.maximum(a, 1e-300))


def semileptonic_phase_space(q2: np.ndarray, big_m: float, mx: float, ml: float, mnu: float) -> np.ndarray:
    """The q² factor of three-body phase space, dΦ3 ∝ |p_X| p*_ℓ / √q² dq² dΩ_W dΩ*_ℓ (arbitrary units).

    Args:
        q2: ``(n,)`` ℓν invariant mass squared [MeV²].
        big_m, mx, ml, mnu: parent, hadron, lepton and neutrino masses [MeV].
    """
    w = np.sqrt(np.maximum(q2, 0.0))
    return _pdk(np.full_like(w, big_m), mx, w) * _pdk(w, ml, mnu) / np.maximum(w, 1e-300)


def semileptonic_kinematics(
    q2: np.ndarray, cos_l: np.ndarray, big_m: float, mx: float, ml: float, mnu: float, rng: np.random.Generator
) -> np.ndarray:
    """P → X ℓ ν in the parent's rest frame at given q² and lepton helicity angle; other angles flat.

    The W (ℓν system) goes in a random direction n, X opposite; in the W rest frame the
    charged lepton makes the angle θ_ℓ (``cos_l``) with n, at a random azimuth around it.

    Args:
        q2: ``(n,)`` [MeV²], inside [(ml+mnu)², (M−mx)²].
        cos_l: ``(n,)`` cosθ_ℓ.
        big_m, mx, ml, mnu: masses [MeV].
        rng: random generator (three uniforms per decay: cosθ_W, φ_W, azimuth of ℓ).

    Returns:
        ``(n, 3, 4)`` four-momenta of (X, ℓ, ν) [MeV] in the parent's rest frame.
    """
    n = len(q2)
    w = np.sqrt(q2)
    p = _pdk(np.full(n, big_m), mx, w)
    ps = _pdk(w, ml, mnu)
    u = rng.random((n, 3))
    ct = 2.0 * u[:, 0] - 1.0
    st = np.sqrt(np.maximum(1.0 - ct * ct, 0.0))
    ph = 2.0 * np.pi * u[:, 1]
    nw = np.stack([st * np.cos(ph), st * np.sin(ph), ct], axis=1)
    e1 = np.stack([ct * np.cos(ph), ct * np.sin(ph), -st], axis=1)  # ⟂ n (the θ unit vector)
    e2 = np.stack([-np.sin(ph), np.cos(ph), np.zeros(n)], axis=1)
    chi = 2.0 * np.pi * u[:, 2]
    sl = np.sqrt(np.maximum(1.0 - cos_l * cos_l, 0.0))
    d = cos_l[:, None] * nw + sl[:, None] * (np.cos(chi)[:, None] * e1 + np.sin(chi)[:, None] * e2)
    lep = np.concatenate([ps[:, None] * d, np.sqrt(ps * ps + ml * ml)[:, None]], axis=1)
    nu = np.concatenate([-ps[:, None] * d, np.sqrt(ps * ps + mnu * mnu)[:, None]], axis=1)
    wvec = np.concatenate([p[:, None] * nw, np.sqrt(p * p + q2)[:, None]], axis=1)
    x = np.concatenate([-p[:, None] * nw, np.sqrt(p * p + mx * mx)[:, None]], axis=1)
    return np.stack([x, boost(lep, wvec), boost(nu, wvec)], axis=1)


@dataclass(frozen=True)
class SemileptonicProposal:
    """A piecewise-constant density g(q², cosθ_ℓ) on a grid of cells, for P → X ℓ ν at a fixed parent mass.

    Attributes:
        masses: (M, m_X, m_ℓ, m_ν) [MeV].
        q2_edges: ``(nq+1,)`` [MeV²]; cos_edges: ``(nc+1,)``.
        density: ``(nq, nc)`` g per unit q² and cosθ (normalised: Σ g·area = 1).
        cdf: ``(nq·nc,)`` cumulative cell probabilities (last = 1).
    """

    masses: tuple[float, float, float, float]
    q2_edges: np.ndarray
    cos_edges: np.ndarray
    density: np.ndarray
    cdf: np.ndarray

    def sample(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """``n`` decays from the proposal.

        Returns:
            ``(p4, ratio)``: ``(n, 3, 4)`` (X, ℓ, ν) in the parent's rest frame [MeV], and
            ``(n,)`` dΦ3/g (phase space over the proposal, arbitrary constant): an event's
            accept–reject weight is its |M|² times this ratio.
        """
        big_m, mx, ml, mnu = self.masses
        nc = len(self.cos_edges) - 1
        u = rng.random((n, 3))
        cell = np.minimum(np.searchsorted(self.cdf, u[:, 0], side="right"), len(self.cdf) - 1)
        iq, ic = np.divmod(cell, nc)
        q2 = self.q2_edges[iq] + u[:, 1] * (self.q2_edges[iq + 1] - self.q2_edges[iq])
        cos = self.cos_edges[ic] + u[:, 2] * (self.cos_edges[ic + 1] - self.cos_edges[ic])
        p4 = semileptonic_kinematics(q2, cos, big_m, mx, ml, mnu, rng)
        ratio = semileptonic_phase_space(q2, big_m, mx, ml, mnu) / self.density[iq, ic]
        return p4, ratio


def build_semileptonic_proposal(
    weight: Callable[[np.ndarray], np.ndarray],
    masses: tuple[float, float, float, float],
    *,
    n_q2: int = 40,
    n_cos: int = 12,
    n_avg: int = 24,
    refine: int = 3,
    seed: int = 0,
) -> SemileptonicProposal:
    """The proposal for a model's |M|²: cell value = the largest, over a (refine+1)² grid of nodes
    of the cell, of dΦ3/dq²dcosθ × |M|² averaged over the other angles (``n_avg`` fixed-seed directions).

    The unweighted events follow |M|² dΦ3 exactly whatever the proposal is (the engine
    accepts with |M|²·dΦ3/g against a presampled bound); a close proposal only makes the
    acceptance high.  Cells whose corners all vanish get a small floor (1e-3 of the mean)
    so no allowed region has zero density.

    Args:
        weight: |M|² of ``(n, 3, 4)`` (X, ℓ, ν) decays in the parent's rest frame → ``(n,)``.
        masses: (M, m_X, m_ℓ, m_ν) [MeV].
        n_q2, n_cos: grid cells in q² (from (m_ℓ+m_ν)² to (M−m_X)², smaller towards both
            ends: q² = lo + span·(3t² − 2t³), t uniform) and cosθ_ℓ (uniform).
        n_avg: angle samples per node (1 is enough for an unpolarised parent: its |M|² is a
            function of (q², cosθ_ℓ) alone).
        refine: nodes per cell edge (the cell's maximum is searched on them).
        seed: seed of those samples (fixed: the proposal is the same in every process).
    """
    big_m, mx, ml, mnu = masses
    lo, span = (ml + mnu) ** 2, (big_m - mx) ** 2 - (ml + mnu) ** 2

    def smoothstep(t: np.ndarray) -> np.ndarray:  # cells dense at both ends, where the rate turns on and off
        return lo + span * t * t * (3.0 - 2.0 * t)

    q_edges = smoothstep(np.linspace(0.0, 1.0, n_q2 + 1))
    c_edges = np.linspace(-1.0, 1.0, n_cos + 1)
    # nodes: the cell corners and `refine - 1` points between them on each axis, slightly
    # inside the q² boundary (the phase space vanishes on it)
    qn = np.clip(smoothstep(np.linspace(0.0, 1.0, refine * n_q2 + 1)), lo + 1e-7 * span, lo + (1.0 - 1e-7) * span)
    cn = np.linspace(-1.0, 1.0, refine * n_cos + 1)
    qq, cc = np.meshgrid(qn, cn, indexing="ij")
    qf = np.repeat(qq.ravel(), n_avg)
    cf = np.repeat(cc.ravel(), n_avg)
    p4 = semileptonic_kinematics(qf, cf, big_m, mx, ml, mnu, np.random.default_rng(seed))
    avg = np.asarray(weight(p4), float).reshape(-1, n_avg).mean(axis=1).reshape(qq.shape)
    g = avg * semileptonic_phase_space(qq, big_m, mx, ml, mnu)
    cellv = np.full((n_q2, n_cos), -np.inf)
    for a in range(refine + 1):
        for b in range(refine + 1):
            cellv = np.maximum(cellv, g[a : a + refine * n_q2 : refine, b : b + refine * n_cos : refine])
    cellv = np.maximum(cellv, 1e-3 * float(cellv.mean()))
    area = np.diff(q_edges)[:, None] * np.diff(c_edges)[None, :]
    norm = float(np.sum(cellv * area))
    density = cellv / norm
    cdf = np.cumsum((density * area).ravel())
    cdf[-1] = 1.0
    return SemileptonicProposal((big_m, mx, ml, mnu), q_edges, c_edges, density, cdf)
