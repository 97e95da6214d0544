"""Vertex fitting kernels: straight-line Billoir fits, IP, flight distance, decay time, corrected mass.

Pure numpy, vectorised over many vertices at once: every input carries a leading
vertex axis ``n`` and a daughter axis ``k`` (arrays ``(n, k, ...)``); a boolean
``mask`` ``(n, k)`` marks the daughters that take part, so vertices of different
multiplicity share one call.

Track model.  A daughter is a straight line described by its state
``(x, y, tx, ty, w)`` at a reference ``z`` with a 5 × 5 covariance, ``w = 1/p``
(1/MeV; a track's ``q/p`` with ``|q| = 1`` gives ``w = |q/p|``), plus a mass
(the hypothesis of a track; the fitted, uncertain mass of a composite, with its
variance and its covariance with the state).  Straight-line extrapolation is
exact enough near the vertex because the LHCb VELO sits in an essentially
field-free region (the dipole's stray field there is below ~1 mT·m integrated;
LHCb's own vertex fitters propagate VELO states as straight lines, [VELO] Sec. 5).

Fits (all linearised least squares, iterated a fixed number of times so that the
work does not depend on the data):

* :func:`fit_vertex` -- Billoir (fast vertex fit): common vertex ``V`` and, for
  each daughter, the momentum parameters ``(tx, ty, w)`` at the vertex, from
  ``5k`` measurements: ``ndf = 2k − 3``.  Returns the position, its 3 × 3
  covariance, χ², the composite's 4-momentum (given the daughter masses) and the
  full 7 × 7 covariance of ``(x, y, z, px, py, pz, E)`` (LHCb ``Particle``
  convention).  :func:`composite_daughters` turns a fitted composite into a
  daughter for the next level (bottom-up fits of composites of composites);
  :func:`constrain_mass` puts a mass constraint on such a daughter before the
  parent fit (the ``_DTF_M``-like constrained mass).
* :func:`impact_parameter` -- IP (3-D distance of closest approach) and IPχ² (2 dof,
  residual in the plane ``z = z_PV`` with the track and PV covariances) of lines
  w.r.t. every PV; :func:`best_pv` -- smallest IPχ².
* :func:`flight` -- FD, FDχ² and DIRA; :func:`decay_time` -- τ and σ_τ from a
  constrained fit of PV, decay vertex and momentum (``SV = PV + (cτ/m)·p``; the
  equivalent of LHCb's ``LifetimeFitter``); :func:`corrected_mass` -- MCORR with
  its propagated error.

Units: mm, MeV, ns; ``c = 299.792458 mm/ns``.

Sources:

* [VELO] LHCb VELO group, "Performance of the LHCb Vertex Locator", JINST 9 (2014)
  P09007, arXiv:1405.7808.
* [BILLOIR] P. Billoir, R. Frühwirth, M. Regler, "Track element merging strategy and
  vertex fitting in complex modular detectors", NIM A 241 (1985) 115; P. Billoir,
  S. Qian, "Fast vertex fitting with a local parametrization of tracks", NIM A 311
  (1992) 139.
* [AVERY] P. Avery, "Applied fitting theory VI: formulas for kinematic fitting",
  CBX 98-37 (1998) (linearised constrained fits with unmeasured parameters).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from mambah import kinematics as kin
from mambah.errors import DataError

__all__ = (
    "C_LIGHT",
    "Daughters",
    "VertexFit",
    "best_pv",
    "composite_daughters",
    "composite_line",
    "constrain_mass",
    "corrected_mass",
    "decay_time",
    "fit_vertex",
    "fit_vertices",
    "flight",
    "impact_parameter",
    "refit_pv",
    "stack_daughters",
    "track_daughters",
)

C_LIGHT = 299.792458
"""Speed of light in mm/ns."""

_EYE3 = np.eye(3)


@dataclass(frozen=True)
class Daughters:
    """Fit inputs: k straight-line daughters of each of n vertices.

    Attributes:
        z: ``(n, k)`` reference z of each state (mm).
        state: ``(n, k, 5)`` ``(x, y, tx, ty, w)`` at ``z``; ``w = 1/p`` (1/MeV).
        cov: ``(n, k, 5, 5)`` covariance of ``state``.
        mass: ``(n, k)`` mass (MeV): the hypothesis of a track, the fitted mass of a composite.
        mass_var: ``(n, k)`` variance of ``mass`` (MeV²); 0 for tracks.
        mass_cov: ``(n, k, 5)`` covariance of ``mass`` with ``state``; 0 for tracks.
        charge: ``(n, k)`` charge (e).
        mask: ``(n, k)`` bool, the daughters that take part.
    """

    z: np.ndarray
    state: np.ndarray
    cov: np.ndarray
    mass: np.ndarray
    mass_var: np.ndarray
    mass_cov: np.ndarray
    charge: np.ndarray
    mask: np.ndarray

    @property
    def shape(self) -> tuple[int, int]:
        """``(n, k)``."""
        return (int(self.z.shape[0]), int(self.z.shape[1]))


@dataclass(frozen=True)
class VertexFit:
    """Result of :func:`fit_vertex` for n vertices.

    Attributes:
        position: ``(n, 3)`` fitted vertex (mm).
        cov: ``(n, 3, 3)`` its covariance (mm²).
        chi2: ``(n,)`` fit χ².
        ndof: ``(n,)`` int, ``2·k_used − 3``.
        momentum: ``(n, 4)`` composite ``(px, py, pz, E)`` (MeV) at the vertex.
        cov7: ``(n, 7, 7)`` covariance of ``(x, y, z, px, py, pz, E)``.
        charge: ``(n,)`` total charge.
        daughter_momenta: ``(n, k, 4)`` fitted daughter 4-momenta (0 for masked daughters).
        converged: ``(n,)`` bool, the last iteration moved the vertex by less than 1 µm
            (False for near-parallel daughters, whose vertex z is not determined).
    """

    position: np.ndarray
    cov: np.ndarray
    chi2: np.ndarray
    ndof: np.ndarray
    momentum: np.ndarray
    cov7: np.ndarray
    charge: np.ndarray
    daughter_momenta: np.ndarray
    converged: np.ndarray

    @property
    def mass(self) -> np.ndarray:
        """``(n,)`` invariant mass (MeV), ``sqrt(max(E² − p², 0))``."""
        p = self.momentum
        return kin.mass(p[:, 0], p[:, 1], p[:, 2], p[:, 3])

    @property
    def mass_err(self) -> np.ndarray:
        """``(n,)`` propagated mass uncertainty (MeV)."""
        p = self.momentum
        m = np.maximum(self.mass, 1e-9)
        jac = np.concatenate([-p[:, :3], p[:, 3:4]], axis=1) / m[:, None]
        var = np.einsum("ni,nij,nj->n", jac, self.cov7[:, 3:, 3:], jac)
        return np.sqrt(np.maximum(var, 0.0))


def _t(a: np.ndarray) -> np.ndarray:
    return np.swapaxes(a, -1, -2)


def _check(name: str, arr: ArrayLike, shape: tuple[int, ...]) -> np.ndarray:
    out = np.asarray(arr, dtype=np.float64)
    if out.shape != shape:
        raise DataError(f"vertexing: {name} has shape {out.shape}; expected {shape}")
    return out


def track_daughters(
    z: ArrayLike,
    state: ArrayLike,
    cov: ArrayLike,
    mass: ArrayLike,
    mask: ArrayLike | None = None,
) -> Daughters:
    """Daughters from track states ``(x, y, tx, ty, q/p)`` with unit charges.

    Args:
        z: ``(n, k)`` state z (mm).
        state: ``(n, k, 5)`` ``(x, y, tx, ty, q/p)``, q/p in 1/MeV (|q| = 1).
        cov: ``(n, k, 5, 5)`` covariance of ``state``.
        mass: ``(n, k)`` or ``(k,)`` mass hypotheses (MeV).
        mask: ``(n, k)`` bool; default all.

    Raises:
        DataError: Shapes disagree, q/p is 0, or a used value is not finite.
    """
    z = np.asarray(z, dtype=np.float64)
    if z.ndim != 2:
        raise DataError(f"vertexing: z has shape {z.shape}; expected (n, k)")
    n, k = z.shape
    state = _check("state", state, (n, k, 5))
    cov = _check("cov", cov, (n, k, 5, 5))
    mass = np.broadcast_to(np.asarray(mass, dtype=np.float64), (n, k))
    use = np.ones((n, k), bool) if mask is None else np.asarray(mask, dtype=bool)
    if use.shape != (n, k):
        raise DataError(f"vertexing: mask has shape {use.shape}; expected {(n, k)}")
    bad = use & ~(np.isfinite(state).all(axis=2) & np.isfinite(cov).all(axis=(2, 3)) & np.isfinite(z))
    if bad.any():
        raise DataError(f"vertexing: {int(bad.sum())} used track state(s) hold NaN or inf")
    qop = np.where(use, state[..., 4], 1.0)
    if np.any(qop == 0):
        raise DataError("vertexing: a track state has q/p = 0; tracks need a charge and a finite momentum")
    sign = np.sign(qop)
    st = state.copy()
    st[..., 4] = np.abs(qop)
    jac = np.ones((n, k, 5))
    jac[..., 4] = sign
    cv = cov * jac[..., :, None] * jac[..., None, :]
    # masked slots: harmless placeholders (unit covariance, unit w) so every matrix stays invertible
    st = np.where(use[..., None], st, np.array([0.0, 0.0, 0.0, 0.0, 1.0]))
    cv = np.where(use[..., None, None], cv, np.eye(5))
    z0 = np.where(use, z, 0.0)
    return Daughters(
        z=z0, state=st, cov=cv, mass=np.where(use, mass, 0.0), mass_var=np.zeros((n, k)),
        mass_cov=np.zeros((n, k, 5)), charge=np.where(use, sign, 0.0), mask=use,
    )


def stack_daughters(parts: Sequence[Daughters]) -> Daughters:
    """Concatenate daughter sets of the same n vertices along the daughter axis."""
    if not parts:
        raise DataError("vertexing: stack_daughters needs at least one Daughters")
    n = parts[0].shape[0]
    for p in parts:
        if p.shape[0] != n:
            raise DataError(f"vertexing: stack_daughters got {p.shape[0]} and {n} vertices; expected equal n")
    return Daughters(**{f: np.concatenate([getattr(p, f) for p in parts], axis=1) for f in (
        "z", "state", "cov", "mass", "mass_var", "mass_cov", "charge", "mask")})


def _initial_vertex(d: Daughters) -> np.ndarray:
    """Least-squares point closest to all lines (unit weights), ``(n, 3)``; fallback mean state point."""
    w = d.mask.astype(np.float64)
    u = np.stack([d.state[..., 2], d.state[..., 3], np.ones(d.shape)], axis=-1)
    u /= np.linalg.norm(u, axis=-1, keepdims=True)
    a = np.stack([d.state[..., 0], d.state[..., 1], d.z], axis=-1)
    proj = _EYE3 - u[..., :, None] * u[..., None, :]
    m = np.einsum("nk,nkij->nij", w, proj)
    b = np.einsum("nk,nkij,nkj->ni", w, proj, a)
    m = m + 1e-9 * _EYE3
    return np.linalg.solve(m, b[..., None])[..., 0]


def _predict(d: Daughters, v: np.ndarray, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Predicted states h ``(n, k, 5)`` and the lever arms ``dz = z − v_z`` ``(n, k)``.

    The Jacobians are A = dh/dV = [[1, 0, −tx], [0, 1, −ty], 0, 0, 0] and
    B = dh/dq = [[dz, 0, 0], [0, dz, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]]; the
    products with them are written out in :func:`_at`, :func:`_bt` (no dense matmul).
    """
    dz = d.z - v[:, None, 2]
    tx, ty = q[..., 0], q[..., 1]
    h = np.stack([v[:, None, 0] + tx * dz, v[:, None, 1] + ty * dz, tx, ty, q[..., 2]], axis=-1)
    return h, dz


def _at(x: np.ndarray, tx: np.ndarray, ty: np.ndarray) -> np.ndarray:
    """Aᵀ·x for x ``(n, k, 5, m)`` → ``(n, k, 3, m)``."""
    return np.stack([x[..., 0, :], x[..., 1, :], -tx[..., None] * x[..., 0, :] - ty[..., None] * x[..., 1, :]], axis=-2)


def _bt(x: np.ndarray, dz: np.ndarray) -> np.ndarray:
    """Bᵀ·x for x ``(n, k, 5, m)`` → ``(n, k, 3, m)``."""
    return np.stack([dz[..., None] * x[..., 0, :] + x[..., 2, :], dz[..., None] * x[..., 1, :] + x[..., 3, :],
                     x[..., 4, :]], axis=-2)


def _inv3(m: np.ndarray) -> np.ndarray:
    """Inverse of symmetric-or-not 3 × 3 matrices ``(..., 3, 3)`` by the adjugate (fast for many small ones)."""
    a, b, c = m[..., 0, 0], m[..., 0, 1], m[..., 0, 2]
    d, e, f = m[..., 1, 0], m[..., 1, 1], m[..., 1, 2]
    g, h, i = m[..., 2, 0], m[..., 2, 1], m[..., 2, 2]
    co = np.stack([
        np.stack([e * i - f * h, c * h - b * i, b * f - c * e], axis=-1),
        np.stack([f * g - d * i, a * i - c * g, c * d - a * f], axis=-1),
        np.stack([d * h - e * g, b * g - a * h, a * e - b * d], axis=-1),
    ], axis=-2)
    det = a * co[..., 0, 0] + b * co[..., 1, 0] + c * co[..., 2, 0]
    return co / det[..., None, None]


def _four_momentum(q: np.ndarray, mass: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """4-momenta ``(..., 4)`` from ``(tx, ty, w)`` and mass, and the Jacobian ``(..., 4, 4)`` w.r.t. (tx, ty, w, m)."""
    tx, ty, w = q[..., 0], q[..., 1], q[..., 2]
    p = 1.0 / w
    nrm = np.sqrt(1.0 + tx * tx + ty * ty)
    pz = p / nrm
    px, py = tx * pz, ty * pz
    e = np.sqrt(p * p + mass * mass)
    mom = np.stack([px, py, pz, e], axis=-1)
    jac = np.zeros((*q.shape[:-1], 4, 4))
    dpz_dtx = -pz * tx / nrm**2
    dpz_dty = -pz * ty / nrm**2
    dp_dw = -p * p
    jac[..., 0, 0] = pz + tx * dpz_dtx
    jac[..., 0, 1] = tx * dpz_dty
    jac[..., 0, 2] = tx * pz / p * dp_dw
    jac[..., 1, 0] = ty * dpz_dtx
    jac[..., 1, 1] = pz + ty * dpz_dty
    jac[..., 1, 2] = ty * pz / p * dp_dw
    jac[..., 2, 0] = dpz_dtx
    jac[..., 2, 1] = dpz_dty
    jac[..., 2, 2] = pz / p * dp_dw
    jac[..., 3, 2] = p / e * dp_dw
    jac[..., 3, 3] = mass / e
    return mom, jac


def fit_vertex(d: Daughters, n_iter: int = 5, *, momentum: bool = True, max_step: float = 100.0) -> VertexFit:
    """Billoir fit of a common vertex of k straight-line daughters, vectorised over n vertices.

    Args:
        d: the daughters (:func:`track_daughters`, :func:`composite_daughters`,
            :func:`stack_daughters`); at least 2 used per vertex.
        n_iter: maximum Gauss-Newton iterations (the only non-linearity is ``t·(z − v_z)``;
            3-4 converge to < 1 µm from the unit-weight start unless the daughters are
            near-parallel, see ``VertexFit.converged``); the loop stops early once every
            vertex moved by less than 0.01 µm.
        momentum: also compute the composite 4-momentum and its 7 × 7 covariance
            (``False`` for PV fits: ``momentum``/``cov7``/``daughter_momenta`` are NaN).
        max_step: largest vertex move (mm) per iteration, a damping for ill-determined
            (near-parallel) vertices.

    Returns:
        :class:`VertexFit`.

    Raises:
        DataError: A vertex has fewer than 2 used daughters.
    """
    n, k = d.shape
    n_used = d.mask.sum(axis=1)
    if np.any(n_used < 2):
        raise DataError(f"vertexing: {int((n_used < 2).sum())} vertex(es) have fewer than 2 daughters; need >= 2")
    use = d.mask
    w = use[..., None, None]
    g = np.linalg.inv(d.cov) * w
    v = _initial_vertex(d)
    q = d.state[..., 2:5].copy()
    eye_q = np.where(w, 0.0, _EYE3)

    def blocks(
        dd: Daughters, gg: np.ndarray, eq: np.ndarray, v: np.ndarray, q: np.ndarray
    ) -> tuple[np.ndarray, ...]:
        h, dz = _predict(dd, v, q)
        tx, ty = q[..., 0], q[..., 1]
        r = dd.state - h
        ga = _t(_at(gg, tx, ty))  # G A (n,k,5,3), G symmetric
        gb = _t(_bt(gg, dz))  # G B
        d0 = np.sum(_at(ga, tx, ty), axis=1)  # sum A^T G A (n,3,3)
        di = _at(gb, tx, ty)  # A^T G B (n,k,3,3)
        ei = _bt(gb, dz) + eq  # B^T G B
        einv = _inv3(ei)
        de = di @ einv
        mat = d0 - np.sum(de @ _t(di), axis=1)
        return r, dz, ga, gb, di, einv, de, mat

    # Gauss-Newton on the vertices still moving (a vertex's iterations depend on it alone)
    step = np.full(n, np.inf)
    active = np.arange(n)
    for _ in range(n_iter):
        every = active.size == n
        da = d if every else Daughters(*(getattr(d, f.name)[active] for f in dataclasses.fields(d)))
        ga_, eq_ = (g, eye_q) if every else (g[active], eye_q[active])
        va, qa = v[active], q[active]
        r, dz, ga, gb, di, einv, de, mat = blocks(da, ga_, eq_, va, qa)
        ti = np.einsum("nkij,nki->nj", ga, r)  # sum A^T G r
        ui = np.einsum("nkij,nki->nkj", gb, r)  # B^T G r
        rhs = ti - np.einsum("nkij,nkj->ni", de, ui)
        dv = np.linalg.solve(mat, rhs[..., None])[..., 0]
        st = np.linalg.norm(dv, axis=1)
        dv = dv * np.minimum(1.0, max_step / np.maximum(st, 1e-300))[:, None]
        dq = np.einsum("nkij,nkj->nki", einv, ui - np.einsum("nkji,nj->nki", di, dv))
        v[active] = va + dv
        q[active] = qa + np.where(da.mask[..., None], dq, 0.0)
        step[active] = st
        active = active[st >= 1e-4]  # converged to 0.1 µm (resolutions are >= 10 µm): leave it
        if active.size == 0:
            break
    converged = step < 1e-3 if n_iter > 0 else np.zeros(n, bool)
    r, dz, ga, gb, di, einv, de, mat = blocks(d, g, eye_q, v, q)
    chi2 = np.einsum("nki,nkij,nkj->n", r, g, r)
    cov_v = _inv3(mat)
    cov_v = 0.5 * (cov_v + _t(cov_v))
    ndof = (2 * n_used - 3).astype(np.int64)
    charge = np.sum(d.charge * use, axis=1)
    if not momentum:
        nan = np.full((n, 4), np.nan)
        return VertexFit(v, cov_v, chi2, ndof, nan, np.full((n, 7, 7), np.nan), charge, np.full((n, k, 4), np.nan),
                         converged)

    # Billoir covariance blocks: Cov(V, q_i) = −C_V·(E_i⁻¹ D_iᵀ)ᵀ, Cov(q_i, q_j) = δ_ij E_i⁻¹ + (E_i⁻¹ D_iᵀ) C_V (..)ᵀ.
    # Extended daughter parameters (tx, ty, w, m): m̂ = m − K r with K = c_msᵀ C⁻¹ (the conditional
    # update of a parameter measured once; exact for the linear model), so dm̂ = K (A dV + B dq_i) + ε,
    # Var ε = σ_m² − K c_ms.
    kgain = np.einsum("nki,nkij->nkj", d.mass_cov, g)  # (n,k,5)
    m_hat = d.mass - np.einsum("nki,nki->nk", kgain, r)
    m_res_var = np.maximum(d.mass_var - np.einsum("nki,nki->nk", kgain, d.mass_cov), 0.0) * use
    ka = _at(kgain[..., None], q[..., 0], q[..., 1])[..., 0]  # (n,k,3) dm/dV
    kb = _bt(kgain[..., None], dz)[..., 0]  # (n,k,3) dm/dq_i
    mom_i, jac4 = _four_momentum(q, m_hat)
    mom_i = mom_i * use[..., None]
    jq = (jac4[..., :3] + jac4[..., 3:4] * kb[..., None, :]) * w  # (n,k,4,3) dP_i/dq_i
    jv = np.sum(jac4[..., 3:4] * ka[..., None, :] * w, axis=1)  # (n,4,3) dP/dV
    # with F = sum_i jq_i E_i^-1 D_i^T and H = jv - F: Cov(P) = H C_V H^T + sum_i jq_i E_i^-1 jq_i^T,
    # Cov(V, P) = C_V H^T
    hmat = jv - np.sum(jq @ _t(de), axis=1)
    c_pp = hmat @ cov_v @ _t(hmat) + np.sum(jq @ einv @ _t(jq), axis=1)
    c_pp = c_pp + np.einsum("nk,nki,nkj->nij", m_res_var, jac4[..., 3], jac4[..., 3])
    c_vp = cov_v @ _t(hmat)
    cov7 = np.zeros((n, 7, 7))
    cov7[:, :3, :3] = cov_v
    cov7[:, :3, 3:] = c_vp
    cov7[:, 3:, :3] = _t(c_vp)
    cov7[:, 3:, 3:] = 0.5 * (c_pp + _t(c_pp))
    return VertexFit(v, cov_v, chi2, ndof, mom_i.sum(axis=1), cov7, charge, mom_i, converged)


def fit_vertices(
    z: ArrayLike,
    state: ArrayLike,
    cov: ArrayLike,
    mass: ArrayLike,
    mask: ArrayLike | None = None,
    n_iter: int = 5,
) -> VertexFit:
    """Fit a common vertex to each of n sets of k tracks (the Python entry point).

    Args:
        z: ``(n, k)`` z (mm) of each track state.
        state: ``(n, k, 5)`` ``(x, y, tx, ty, q/p)`` (mm, rad, 1/MeV), as in ``protoparticles``.
        cov: ``(n, k, 5, 5)`` state covariances (the ``protoparticles`` ``cov_*`` columns).
        mass: ``(n, k)`` or ``(k,)`` mass hypotheses (MeV).
        mask: ``(n, k)`` bool, tracks to use (default all; at least 2 per vertex).
        n_iter: Gauss-Newton iterations.

    Returns:
        :class:`VertexFit` (position, covariance, χ², ndf, 4-momentum and 7 × 7 covariance).

    Example:
        >>> fit = fit_vertices(z, state, cov, [105.66, 105.66])  # doctest: +SKIP
        >>> fit.position, fit.chi2 / fit.ndof, fit.mass
    """
    return fit_vertex(track_daughters(z, state, cov, mass, mask), n_iter)


def refit_pv(d: Daughters, exclude: np.ndarray, n_iter: int = 4) -> VertexFit:
    """Position-only refit of PVs without the tracks flagged in ``exclude`` ``(n, k)`` (e.g. a candidate's).

    Raises:
        DataError: Fewer than 2 tracks remain in a PV.
    """
    ex = np.asarray(exclude, dtype=bool)
    if ex.shape != d.shape:
        raise DataError(f"vertexing: exclude has shape {ex.shape}; expected {d.shape}")
    kept = Daughters(d.z, d.state, d.cov, d.mass, d.mass_var, d.mass_cov, d.charge, d.mask & ~ex)
    return fit_vertex(kept, n_iter, momentum=False)


def _state_of(fit: VertexFit) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Composite as a line: z, state (x,y,tx,ty,w), 5x5 cov, mass, mass var, mass-state cov."""
    v, p4 = fit.position, fit.momentum
    px, py, pz, e = p4[:, 0], p4[:, 1], p4[:, 2], p4[:, 3]
    p = np.sqrt(px * px + py * py + pz * pz)
    m = np.sqrt(np.maximum(e * e - p * p, 1e-12))
    tx, ty = px / pz, py / pz
    state = np.stack([v[:, 0], v[:, 1], tx, ty, 1.0 / p], axis=1)
    n = v.shape[0]
    jac = np.zeros((n, 6, 7))  # (x, y, tx, ty, w, m) at fixed z_ref = vz w.r.t. (x, y, z, px, py, pz, E)
    jac[:, 0, 0] = 1.0
    jac[:, 0, 2] = -tx
    jac[:, 1, 1] = 1.0
    jac[:, 1, 2] = -ty
    jac[:, 2, 3] = 1.0 / pz
    jac[:, 2, 5] = -px / pz**2
    jac[:, 3, 4] = 1.0 / pz
    jac[:, 3, 5] = -py / pz**2
    jac[:, 4, 3:6] = -p4[:, :3] / p[:, None] ** 3
    jac[:, 5, 3:6] = -p4[:, :3] / m[:, None]
    jac[:, 5, 6] = e / m
    c6 = jac @ fit.cov7 @ _t(jac)
    c6 = 0.5 * (c6 + _t(c6))
    return v[:, 2], state, c6[:, :5, :5], m, c6


def composite_daughters(fit: VertexFit) -> Daughters:
    """A fitted composite as one daughter (k = 1) for a parent fit: the line from its
    vertex along its momentum, with the covariance of its 7 × 7 matrix.

    This is the treatment of a flying intermediate (D, Λc, K_S: its decay point is not
    the parent's vertex, only its line passes through it).  A resonance without flight
    (J/ψ, φ, K*) is better fitted through its tracks: the line drops the information
    of where along it the resonance decayed (for B+ → J/ψ K+ the decay-time resolution
    goes from 45 fs with three tracks to 133 fs bottom-up, both with unit pulls).

    Raises:
        DataError: The composite's pz is not positive (the straight-line state needs pz > 0).
    """
    if np.any(~(fit.momentum[:, 2] > 0)):
        raise DataError("vertexing: a composite daughter has pz <= 0 or NaN; fit it with momentum=True first")
    z, state, c5, m, c6 = _state_of(fit)
    return Daughters(
        z=z[:, None], state=state[:, None], cov=c5[:, None], mass=m[:, None], mass_var=c6[:, None, 5, 5],
        mass_cov=c6[:, None, 5, :5], charge=fit.charge[:, None].astype(np.float64),
        mask=np.ones((z.size, 1), bool),
    )


def composite_line(fit: VertexFit) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A composite's line ``z (n,), state (n, 5), cov (n, 5, 5)`` for :func:`impact_parameter`."""
    d = composite_daughters(fit)
    return d.z[:, 0], d.state[:, 0], d.cov[:, 0]


def constrain_mass(d: Daughters, slot: int, mass: float) -> Daughters:
    """Constrain the mass of daughter ``slot`` (a composite) to ``mass`` (MeV) before the parent fit.

    The mass is a coordinate of the daughter's parameters, so the constraint is the
    exact conditional update ``s' = s + c_ms (M − m)/σ_m²``, ``C' = C − c_ms c_msᵀ/σ_m²``
    (a DecayTreeFitter-like mass constraint on one intermediate, restricted to the
    straight-line model).

    Raises:
        DataError: ``slot`` is out of range or that daughter has no mass uncertainty (a track).
    """
    k = d.shape[1]
    if not 0 <= slot < k:
        raise DataError(f"vertexing: constrain_mass slot {slot} out of range; daughters 0..{k - 1}")
    var = d.mass_var[:, slot]
    if np.any(d.mask[:, slot] & ~(var > 0)):
        raise DataError(f"vertexing: daughter {slot} has no mass uncertainty (a track?); constrain a composite")
    var = np.where(var > 0, var, 1.0)
    c_ms = d.mass_cov[:, slot]
    state = d.state.copy()
    cov = d.cov.copy()
    state[:, slot] += c_ms * ((mass - d.mass[:, slot]) / var)[:, None]
    cov[:, slot] -= c_ms[:, :, None] * c_ms[:, None, :] / var[:, None, None]
    cov[:, slot] = 0.5 * (cov[:, slot] + _t(cov[:, slot]))
    m = d.mass.copy()
    m[:, slot] = mass
    mv = d.mass_var.copy()
    mv[:, slot] = 0.0
    mc = d.mass_cov.copy()
    mc[:, slot] = 0.0
    return Daughters(d.z, state, cov, m, mv, mc, d.charge, d.mask)


def _line(
    z: np.ndarray, state: np.ndarray, cov: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    z = np.asarray(z, dtype=np.float64)
    state = np.asarray(state, dtype=np.float64)
    cov = np.asarray(cov, dtype=np.float64)
    if state.ndim != 2 or state.shape[1] != 5 or cov.shape != (state.shape[0], 5, 5) or z.shape != state.shape[:1]:
        raise DataError(
            f"vertexing: line z/state/cov have shapes {z.shape}/{state.shape}/{cov.shape}; expected (n,)/(n, 5)/(n, 5, 5)"
        )
    return z, state, cov


def impact_parameter(
    z: np.ndarray,
    state: np.ndarray,
    cov: np.ndarray,
    pv: np.ndarray,
    pv_cov: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """IP and IPχ² of n lines w.r.t. m PVs each.

    Args:
        z: ``(n,)`` state z (mm).
        state: ``(n, 5)`` ``(x, y, tx, ty, ·)`` (the 5th entry is not used).
        cov: ``(n, 5, 5)`` state covariance.
        pv: ``(n, m, 3)`` PV positions (mm).
        pv_cov: ``(n, m, 3, 3)`` PV covariances (mm²).

    Returns:
        ``ip`` ``(n, m)``: 3-D distance of closest approach (mm); ``ip_chi2`` ``(n, m)``:
        ``rᵀ S⁻¹ r`` of the 2-D residual ``r`` of the line at ``z = z_PV``, ``S`` the
        sum of the projected track and PV covariances (χ² with 2 dof for a track from that PV).
    """
    z, state, cov = _line(z, state, cov)
    pv = np.asarray(pv, dtype=np.float64)
    pv_cov = np.asarray(pv_cov, dtype=np.float64)
    n = state.shape[0]
    if pv.ndim != 3 or pv.shape[0] != n or pv.shape[2] != 3 or pv_cov.shape != (*pv.shape, 3):
        raise DataError(f"vertexing: pv/pv_cov have shapes {pv.shape}/{pv_cov.shape}; expected (n, m, 3)/(n, m, 3, 3)")
    x, y, tx, ty = (state[:, None, i] for i in range(4))
    dz = pv[..., 2] - z[:, None]
    rx = x + tx * dz - pv[..., 0]
    ry = y + ty * dz - pv[..., 1]
    m = pv.shape[1]
    js = np.zeros((n, m, 2, 5))
    js[..., 0, 0] = 1.0
    js[..., 1, 1] = 1.0
    js[..., 0, 2] = dz
    js[..., 1, 3] = dz
    jp = np.zeros((n, m, 2, 3))
    jp[..., 0, 0] = -1.0
    jp[..., 1, 1] = -1.0
    jp[..., 0, 2] = np.broadcast_to(tx, (n, m))
    jp[..., 1, 2] = np.broadcast_to(ty, (n, m))
    s = js @ cov[:, None] @ _t(js) + jp @ pv_cov @ _t(jp)
    det = s[..., 0, 0] * s[..., 1, 1] - s[..., 0, 1] * s[..., 1, 0]
    chi2 = (s[..., 1, 1] * rx * rx - 2.0 * s[..., 0, 1] * rx * ry + s[..., 0, 0] * ry * ry) / det
    origin = np.stack([rx + pv[..., 0], ry + pv[..., 1], pv[..., 2]], axis=-1)
    direction = np.stack(np.broadcast_arrays(tx, ty, np.ones_like(tx)), axis=-1)
    return kin.ip(origin, direction, pv), chi2


def best_pv(ip_chi2: np.ndarray, pv_mask: np.ndarray | None = None) -> np.ndarray:
    """Index ``(n,)`` of the PV with the smallest IPχ² (``pv_mask`` ``(n, m)`` marks real PVs).

    Raises:
        DataError: A row has no PV.
    """
    c = np.asarray(ip_chi2, dtype=np.float64)
    if pv_mask is not None:
        c = np.where(np.asarray(pv_mask, dtype=bool), c, np.inf)
    if c.shape[1] == 0 or np.any(~np.isfinite(c).any(axis=1)):
        raise DataError("vertexing: best_pv got a row without any PV")
    return np.argmin(np.where(np.isfinite(c), c, np.inf), axis=1)


def flight(pv: np.ndarray, pv_cov: np.ndarray, fit: VertexFit) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Flight distance FD (mm), FDχ² and DIRA of composites w.r.t. one PV each.

    FDχ² = dᵀ (C_SV + C_PV)⁻¹ d with d = SV − PV (PV refitted without the
    composite's tracks, so the two are independent); DIRA = cos of the angle
    between d and the composite momentum.

    Args:
        pv: ``(n, 3)``; pv_cov: ``(n, 3, 3)``; fit: the composites' :class:`VertexFit`.

    Returns:
        ``fd, fd_chi2, dira``, each ``(n,)``.
    """
    d = fit.position - np.asarray(pv, dtype=np.float64)
    c = fit.cov + np.asarray(pv_cov, dtype=np.float64)
    fd = np.linalg.norm(d, axis=1)
    fd_chi2 = np.einsum("ni,ni->n", d, np.linalg.solve(c, d[..., None])[..., 0])
    p3 = fit.momentum[:, :3]
    dira = np.einsum("ni,ni->n", d, p3) / (fd * np.linalg.norm(p3, axis=1))
    return fd, fd_chi2, dira


def _pv_sv_p(pv: np.ndarray, pv_cov: np.ndarray, fit: VertexFit) -> tuple[np.ndarray, np.ndarray]:
    """alpha = (PV, SV, P4) (n,10) and its block covariance (n,10,10)."""
    pv = np.asarray(pv, dtype=np.float64)
    n = pv.shape[0]
    alpha = np.concatenate([pv, fit.position, fit.momentum], axis=1)
    cov = np.zeros((n, 10, 10))
    cov[:, :3, :3] = pv_cov
    cov[:, 3:, 3:] = fit.cov7
    return alpha, cov


def decay_time(
    pv: np.ndarray, pv_cov: np.ndarray, fit: VertexFit, n_iter: int = 3
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Decay time τ (ns), its error and the fit χ² (2 dof), a lifetime-fitter equivalent.

    Constrained least squares [AVERY] of the measured ``α = (PV, SV, p, E)``
    (covariance ``C_PV ⊕ cov7``) with one free parameter τ and the three constraints
    ``SV − PV − (c τ / m) p = 0``, ``m = sqrt(E² − p²)``, linearised and iterated
    (the method of LHCb's ``LifetimeFitter``/``PropertimeFitter``).

    Args:
        pv: ``(n, 3)``; pv_cov: ``(n, 3, 3)``; fit: composites with momentum.
        n_iter: iterations.

    Returns:
        ``tau, tau_err, chi2``, each ``(n,)``.
    """
    alpha0, v0 = _pv_sv_p(pv, pv_cov, fit)
    n = alpha0.shape[0]
    d = fit.position - np.asarray(pv, dtype=np.float64)
    p3 = fit.momentum[:, :3]
    tau = fit.mass * np.einsum("ni,ni->n", d, p3) / (C_LIGHT * np.sum(p3 * p3, axis=1))
    alpha = alpha0.copy()
    lam = np.zeros((n, 3))
    v_e = np.zeros(n)
    vd = np.zeros((n, 3, 3))
    for _ in range(n_iter):
        pva, sva, pa, ea = alpha[:, :3], alpha[:, 3:6], alpha[:, 6:9], alpha[:, 9]
        m = np.sqrt(np.maximum(ea * ea - np.sum(pa * pa, axis=1), 1e-12))
        f = C_LIGHT * tau / m
        h = sva - pva - f[:, None] * pa
        dmat = np.zeros((n, 3, 10))
        dmat[:, :, :3] = -_EYE3
        dmat[:, :, 3:6] = _EYE3
        # d(f p_a)/d p_j = f delta_aj + c tau p_a p_j / m^3 ; d(f p_a)/dE = -c tau p_a E / m^3
        g3 = (C_LIGHT * tau / m**3)[:, None, None] * pa[:, :, None] * pa[:, None, :]
        dmat[:, :, 6:9] = -(f[:, None, None] * _EYE3 + g3)
        dmat[:, :, 9] = (C_LIGHT * tau * ea / m**3)[:, None] * pa
        emat = -(C_LIGHT / m)[:, None] * pa  # (n,3)
        dd = h + (dmat @ (alpha0 - alpha)[..., None])[..., 0]
        s_mat = dmat @ v0 @ _t(dmat)
        vd = _inv3(s_mat)
        v_e = 1.0 / np.einsum("ni,nij,nj->n", emat, vd, emat)
        lam0 = np.einsum("nij,nj->ni", vd, dd)
        dtau = -v_e * np.einsum("ni,ni->n", emat, lam0)
        tau = tau + dtau
        lam = lam0 + np.einsum("nij,nj->ni", vd, emat * dtau[:, None])
        alpha = alpha0 - (v0 @ (_t(dmat) @ lam[..., None]))[..., 0]
        if np.max(np.abs(dtau), initial=0.0) < 1e-10:  # converged to 1e-4 fs
            break
    chi2 = np.einsum("ni,nij,nj->n", lam, s_mat, lam)
    return tau, np.sqrt(v_e), chi2


def _numeric_error(
    func: Callable[[np.ndarray], np.ndarray], alpha: np.ndarray, cov: np.ndarray, rel: float = 1e-6
) -> np.ndarray:
    """σ of ``func(alpha)`` ``(n,)`` by a central-difference Jacobian and ``J C Jᵀ``."""
    n, dim = alpha.shape
    step = rel * np.maximum(np.abs(alpha), 1.0)
    jac = np.zeros((n, dim))
    for i in range(dim):
        up, dn = alpha.copy(), alpha.copy()
        up[:, i] += step[:, i]
        dn[:, i] -= step[:, i]
        jac[:, i] = (func(up) - func(dn)) / (2.0 * step[:, i])
    return np.sqrt(np.maximum(np.einsum("ni,nij,nj->n", jac, cov, jac), 0.0))


def _mcorr_of(alpha: np.ndarray) -> np.ndarray:
    d = alpha[:, 3:6] - alpha[:, :3]
    p3, e = alpha[:, 6:9], alpha[:, 9]
    m2 = e * e - np.sum(p3 * p3, axis=1)
    dhat = d / np.linalg.norm(d, axis=1, keepdims=True)
    pt = np.linalg.norm(np.cross(p3, dhat), axis=1)
    return np.sqrt(np.maximum(m2, 0.0) + pt * pt) + pt


def corrected_mass(pv: np.ndarray, pv_cov: np.ndarray, fit: VertexFit) -> tuple[np.ndarray, np.ndarray]:
    """Corrected mass ``MCORR = sqrt(M² + p_T'²) + p_T'`` (MeV) and its propagated error.

    ``p_T'`` is the composite momentum transverse to the flight direction SV − PV; the
    error propagates ``C_PV ⊕ cov7`` through a numerical Jacobian.

    Returns:
        ``mcorr, mcorr_err``, each ``(n,)``.
    """
    alpha, cov = _pv_sv_p(pv, pv_cov, fit)
    d = alpha[:, 3:6] - alpha[:, :3]
    p3, e = alpha[:, 6:9], alpha[:, 9]
    dist = np.linalg.norm(d, axis=1)
    u = d / dist[:, None]
    pu = np.einsum("ni,ni->n", p3, u)
    perp = p3 - pu[:, None] * u  # p transverse to the flight direction
    pt = np.linalg.norm(perp, axis=1)
    s = np.sqrt(np.maximum(e * e - pu * pu, 1e-12))  # sqrt(M^2 + pT'^2)
    safe_pt = np.maximum(pt, 1e-12)
    # MCORR = s + pT': analytic gradient w.r.t. (PV, SV, p, E)
    g_p = -(pu / s)[:, None] * u + perp / safe_pt[:, None]
    g_d = -(pu * (1.0 / s + 1.0 / safe_pt) / dist)[:, None] * perp
    jac = np.concatenate([-g_d, g_d, g_p, (e / s)[:, None]], axis=1)
    err = np.sqrt(np.maximum(np.einsum("ni,nij,nj->n", jac, cov, jac), 0.0))
    return s + pt, err
