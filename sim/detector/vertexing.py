"""Vertex fitting kernels: straight-line Billoir fits, IP, flight distance, decay time, corrected mass.

Vectorised over many vertices at once: every input carries a leading
vertex axis ``n`` and a daughter axis ``k`` (arrays ``(n, k, ...)``); a boolean
``mask`` ``(n, k)`` marks the daughters that take part, so vertices of different
multiplicity share one call.  The Billoir fit, a composite's line, the lifetime fit and
the export's per-row steps (:func:`track_states`, :func:`track_daughters_rows`,
:func:`own_pv_quantities`, :func:`line_ip`) run by default as compiled (numba) loops
(:mod:`sim.detector._vertex_kernels`, ``kernel="compiled"``); the numpy kernels
(``kernel="numpy"``) are the reference they are tested against (same operations in the
same order: equal bit for bit but matrix products, the 3 × 3 solve of FDχ² and sums that
numpy associates differently, which agree to rounding).  The rest is numpy.

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
  ``5k`` measurements: ``ndf = 2k − 3``.  For a fixed vertex the model is linear,
  so the daughter parameters are eliminated exactly (each daughter contributes
  ``rᵀ S⁻¹ r`` of its 2-D residual at ``z = v_z``) and the iterations are 3-D
  Gauss-Newton steps, on ``(k, n)`` component arrays in cache-sized blocks.
  Returns the position, its 3 × 3 covariance, χ², the composite's 4-momentum
  (given the daughter masses) and the full 7 × 7 covariance of
  ``(x, y, z, px, py, pz, E)`` (LHCb ``Particle`` convention).  :func:`composite_daughters` turns a fitted composite into a
  daughter for the next level (bottom-up fits of composites of composites);
  :func:`constrain_mass` puts a mass constraint on such a daughter before the
  parent fit (the ``_DTF_M``-like constrained mass).
  :func:`fit_vertex_dtf` gets that constrained mass from the unconstrained parent fit.
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
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from mambah import kinematics as kin
from mambah.errors import ConfigError, DataError

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
    "fit_vertex_dtf",
    "fit_vertices",
    "flight",
    "impact_parameter",
    "line_ip",
    "own_pv_quantities",
    "refit_pv",
    "stack_daughters",
    "track_daughters",
    "track_daughters_rows",
    "track_states",
)

C_LIGHT = 299.792458
"""Speed of light in mm/ns."""

#: daughters (vertices × k) per block of :func:`fit_vertex`: its ``(k, block)`` temporaries stay in the cache.
_CHUNK = 8192


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
    qop = np.where(use, state[..., 4], 1.0) if mask is not None else state[..., 4]
    if np.any(qop == 0):
        raise DataError("vertexing: a track state has q/p = 0; tracks need a charge and a finite momentum")
    sign = np.sign(qop)
    if mask is None:  # every slot used: the same values without the placeholders' np.where copies
        st = state.copy()
        st[..., 4] = np.abs(qop)
        cv = cov.copy()
        cv[..., 4, :] *= sign[..., None]  # = cov * jac_a * jac_b with jac = (1, 1, 1, 1, sign), exactly
        cv[..., :, 4] *= sign[..., None]
        return Daughters(
            z=z.copy(), state=st, cov=cv, mass=np.array(mass), mass_var=np.zeros((n, k)),
            mass_cov=np.zeros((n, k, 5)), charge=sign, mask=use,
        )
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


def track_daughters_rows(
    rows: ArrayLike, tracks: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]], mass: ArrayLike, *,
    kernel: str = "compiled",
) -> Daughters:
    """:func:`track_daughters` of the rows ``rows`` of k tracks' arrays, without gathering them first.

    Args:
        rows: ``(n,)`` int: vertex i takes row ``rows[i]`` of every track.
        tracks: k tuples ``(z (N,), state (N, 5), cov (N, 5, 5))``, one per daughter slot, as
            :func:`track_daughters` takes them (``q/p`` in the state).
        mass: ``(k,)`` mass hypotheses (MeV).
        kernel: ``"compiled"`` (a numba loop per slot) or ``"numpy"`` (:func:`track_daughters` of the
            gathered rows, the reference; the same values bit for bit).

    Raises:
        DataError: a used state holds NaN or inf or has q/p = 0.
        ConfigError: ``kernel`` is not one of ``"compiled"``, ``"numpy"``.
    """
    _check_kernel(kernel)
    at = np.asarray(rows, dtype=np.int64)
    k = len(tracks)
    if kernel == "numpy" or k == 0:
        z, state, cov = (np.stack([np.asarray(t[i])[at] for t in tracks], axis=1) if k else np.zeros((at.size, 0, *shape))
                         for i, shape in enumerate(((), (5,), (5, 5))))
        return track_daughters(z, state, cov, mass)
    from sim.detector._vertex_kernels import track_slot_loop

    n = at.size
    f8 = np.float64
    z, st, cv, charge = np.empty((n, k)), np.empty((n, k, 5)), np.empty((n, k, 5, 5)), np.empty((n, k))
    for j, (tz, ts, tc) in enumerate(tracks):
        bad = track_slot_loop(at, np.ascontiguousarray(tz, dtype=f8), np.ascontiguousarray(ts, dtype=f8),
                              np.ascontiguousarray(tc, dtype=f8), j, z, st, cv, charge)
        if bad:
            raise DataError(f"vertexing: {bad} used track state(s) hold NaN or inf or have q/p = 0; "
                            "tracks need a finite state and covariance, a charge and a finite momentum")
    return Daughters(z=z, state=st, cov=cv, mass=np.array(np.broadcast_to(np.asarray(mass, dtype=f8), (n, k))),
                     mass_var=np.zeros((n, k)), mass_cov=np.zeros((n, k, 5)), charge=charge, mask=np.ones((n, k), bool))


def track_states(
    columns: Mapping[str, ArrayLike], *, kernel: str = "compiled"
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Track states of ``protoparticles`` columns and whether each can enter a fit.

    Args:
        columns: ``(N,)`` columns ``x, y, z, tx, ty, charge, px, py, pz``, ``track_type`` and the 15
            ``cov_*`` columns (:data:`sim.detector.trackcov.COV_COLUMNS`), any float dtype.
        kernel: ``"compiled"`` (one numba pass) or ``"numpy"``
            (:func:`sim.detector.trackcov.states_from_columns`, the reference; the same values bit for bit).

    Returns:
        ``z (N,)``, ``state (N, 5)`` ``(x, y, tx, ty, q/p)``, ``cov (N, 5, 5)`` and ``ok (N,)`` bool: matched
        (``track_type > 0``), every value finite and ``q/p != 0``.

    Raises:
        DataError: a column is missing.
        ConfigError: ``kernel`` is not one of ``"compiled"``, ``"numpy"``.
    """
    from sim.detector.trackcov import COV_COLUMNS, states_from_columns

    _check_kernel(kernel)
    need = ("x", "y", "z", "tx", "ty", "charge", "px", "py", "pz")
    missing = [c for c in (*need, "track_type", *COV_COLUMNS) if c not in columns]
    if missing:
        raise DataError(f"track_states: missing column(s) {missing}; expected {list(need)}, track_type and the cov_* columns")
    if kernel == "numpy":
        z, state, cov = states_from_columns(columns)
        ok = ((np.asarray(columns["track_type"]) > 0) & np.isfinite(state).all(axis=1) & np.isfinite(cov).all(axis=(1, 2))
              & np.isfinite(z) & (state[:, 4] != 0))
        return z, state, cov, ok
    from sim.detector._vertex_kernels import track_states_loop

    n = len(np.asarray(columns[need[0]]))
    base, covc = np.empty((len(need), n)), np.empty((len(COV_COLUMNS), n))
    for out, names in ((base, need), (covc, COV_COLUMNS)):
        for i, c in enumerate(names):
            out[i] = columns[c]  # one copy per column (float32 -> float64 is exact)
    z, state, cov, ok = np.empty(n), np.empty((n, 5)), np.empty((n, 5, 5)), np.empty(n, bool)
    track_states_loop(base, covc, np.ascontiguousarray(columns["track_type"], dtype=np.int64), z, state, cov, ok)
    return z, state, cov, ok


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


def _components(d: Daughters) -> tuple[dict[str, np.ndarray], dict[tuple[int, int], np.ndarray]]:
    """Contiguous ``(k, n)`` copies of the fit inputs: state, z, mask and the upper triangle of the
    6 × 6 covariance of ``(x, y, tx, ty, w, m)`` (index 5 = the mass)."""
    s = {name: np.ascontiguousarray(d.state[..., i].T) for i, name in enumerate(("x", "y", "tx", "ty", "w"))}
    s["z"] = np.ascontiguousarray(d.z.T)
    s["m"] = np.ascontiguousarray(d.mass.T)
    s["use"] = np.ascontiguousarray(d.mask.T).astype(np.float64)
    c = {(a, b): np.ascontiguousarray(d.cov[..., a, b].T) for a in range(5) for b in range(a, 5)}
    for a in range(5):
        c[a, 5] = np.ascontiguousarray(d.mass_cov[..., a].T)
    c[5, 5] = np.ascontiguousarray(d.mass_var.T)
    return s, c


def _cc(c: Mapping[tuple[int, int], np.ndarray], a: int, b: int) -> np.ndarray:
    return c[(a, b) if a <= b else (b, a)]


def _initial_vertex(s: Mapping[str, np.ndarray]) -> np.ndarray:
    """Least-squares point closest to all lines (unit weights), ``(n, 3)``."""
    tx, ty, w = s["tx"], s["ty"], s["use"]
    inv = 1.0 / (1.0 + tx * tx + ty * ty)  # |(tx, ty, 1)|^-2
    ux, uy = tx * inv, ty * inv  # u_i u_j / |.|^2 with u = (tx, ty, 1)
    p00, p01, p02 = w - w * tx * ux, -w * tx * uy, -w * ux
    p11, p12, p22 = w - w * ty * uy, -w * uy, w - w * inv
    x, y, z = s["x"], s["y"], s["z"]
    m = [p00.sum(0) + 1e-9, p01.sum(0), p02.sum(0), p11.sum(0) + 1e-9, p12.sum(0), p22.sum(0) + 1e-9]
    b = [(p00 * x + p01 * y + p02 * z).sum(0), (p01 * x + p11 * y + p12 * z).sum(0),
         (p02 * x + p12 * y + p22 * z).sum(0)]
    return np.stack(_solve_sym3(m, b), axis=1)


def _inv_sym3(m: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Inverse of symmetric 3 × 3 matrices given as their upper triangle ``(00, 01, 02, 11, 12, 22)``."""
    a, b, c, d, e, f = m
    i00, i01, i02 = d * f - e * e, c * e - b * f, b * e - c * d
    inv_det = 1.0 / (a * i00 + b * i01 + c * i02)
    return [i00 * inv_det, i01 * inv_det, i02 * inv_det, (a * f - c * c) * inv_det, (b * c - a * e) * inv_det,
            (a * d - b * b) * inv_det]


def _solve_sym3(m: Sequence[np.ndarray], b: Sequence[np.ndarray]) -> list[np.ndarray]:
    """``m⁻¹ b`` for symmetric 3 × 3 ``m`` (upper triangle) and ``b`` (3 components)."""
    return _solve_sym3_inv(_inv_sym3(m), b)


def _solve_sym3_inv(inv: Sequence[np.ndarray], b: Sequence[np.ndarray] | np.ndarray) -> list[np.ndarray]:
    """``inv · b`` for the upper triangle ``inv`` of a symmetric 3 × 3 and ``b`` (3 components or ``(n, 3)``)."""
    i00, i01, i02, i11, i12, i22 = inv
    b0, b1, b2 = (b[0], b[1], b[2]) if not isinstance(b, np.ndarray) else (b[:, 0], b[:, 1], b[:, 2])
    return [i00 * b0 + i01 * b1 + i02 * b2, i01 * b0 + i11 * b1 + i12 * b2, i02 * b0 + i12 * b1 + i22 * b2]


def _sym3(m: Sequence[np.ndarray]) -> np.ndarray:
    """``(n, 3, 3)`` from the upper triangle ``(00, 01, 02, 11, 12, 22)``."""
    a, b, c, d, e, f = m
    return np.stack([a, b, c, b, d, e, c, e, f], axis=-1).reshape(*a.shape, 3, 3)


def _profile(
    s: Mapping[str, np.ndarray], c: Mapping[tuple[int, int], np.ndarray], v: np.ndarray
) -> dict[str, np.ndarray]:
    """Each daughter's χ² contribution at vertex ``v`` with its momentum parameters profiled out.

    For fixed ``v`` the straight-line model is linear, so the best daughter parameters
    are the conditional update of the measured state given the 2 constraints ``H μ = (v_x, v_y)``,
    ``H = [[1, 0, Δz, 0, 0], [0, 1, 0, Δz, 0]]``, ``Δz = v_z − z``: residual
    ``r = H s − (v_x, v_y)``, ``S = H C Hᵀ``, ``W = S⁻¹``, χ² = ``rᵀ W r``, fitted slopes
    ``t̂ = t − (C Hᵀ W r)_t``.  Minimising Σ χ² over ``v`` is the Billoir fit (the nuisance
    parameters eliminated exactly), and its Gauss-Newton normal matrix with the fitted
    slopes, ``Σ R̂ᵀ W R̂``, ``R̂ = [[−1, 0, t̂x], [0, −1, t̂y]]``, is Billoir's
    ``D0 − Σ D_i E_i⁻¹ D_iᵀ``.  All arrays ``(k, n)``.
    """
    dz = v[:, 2] - s["z"]
    c02, c12, c03, c13, c22, c23, c33 = c[0, 2], c[1, 2], c[0, 3], c[1, 3], c[2, 2], c[2, 3], c[3, 3]
    # C H^T, rows x..ty (columns 0, 1)
    u20, u21 = c02 + dz * c22, c12 + dz * c23
    u30, u31 = c03 + dz * c23, c13 + dz * c33
    s00 = c[0, 0] + dz * (c02 + u20)
    s01 = c[0, 1] + dz * (c03 + u21)
    s11 = c[1, 1] + dz * (c13 + u31)
    inv_det = s["use"] / (s00 * s11 - s01 * s01)
    w00, w01, w11 = s11 * inv_det, -s01 * inv_det, s00 * inv_det
    rx = s["x"] + s["tx"] * dz - v[:, 0]
    ry = s["y"] + s["ty"] * dz - v[:, 1]
    g0, g1 = w00 * rx + w01 * ry, w01 * rx + w11 * ry
    thx = s["tx"] - (u20 * g0 + u21 * g1)
    thy = s["ty"] - (u30 * g0 + u31 * g1)
    return {"dz": dz, "w00": w00, "w01": w01, "w11": w11, "rx": rx, "ry": ry, "g0": g0, "g1": g1,
            "thx": thx, "thy": thy}


def _normal(p: Mapping[str, np.ndarray]) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Normal matrix ``Σ R̂ᵀ W R̂`` (upper triangle, each ``(n,)``) and ``−½ ∇χ²`` w.r.t. the vertex."""
    w00, w01, w11, thx, thy, g0, g1 = (p[k] for k in ("w00", "w01", "w11", "thx", "thy", "g0", "g1"))
    a0, a1 = w00 * thx + w01 * thy, w01 * thx + w11 * thy
    m = [w00.sum(0), w01.sum(0), -a0.sum(0), w11.sum(0), -a1.sum(0), (a0 * thx + a1 * thy).sum(0)]
    b = [g0.sum(0), g1.sum(0), -(thx * g0 + thy * g1).sum(0)]
    return m, b


def fit_vertex(
    d: Daughters, n_iter: int = 10, *, momentum: bool = True, max_step: float = 100.0, kernel: str = "compiled"
) -> VertexFit:
    """Billoir fit of a common vertex of k straight-line daughters, vectorised over n vertices.

    The daughters' momentum parameters are eliminated exactly (:func:`_profile`: for a
    fixed vertex the model is linear), so the iterations are Gauss-Newton steps in the
    3 vertex coordinates on ``(k, n)`` component arrays; at the solution the position,
    χ², fitted daughter parameters and covariances are those of the full Billoir fit.

    Args:
        d: the daughters (:func:`track_daughters`, :func:`composite_daughters`,
            :func:`stack_daughters`); at least 2 used per vertex.
        n_iter: maximum Gauss-Newton iterations (the only non-linearity is ``t·(z − v_z)``;
            2-4 converge to < 0.1 µm from the unit-weight start unless the daughters are
            near-parallel, see ``VertexFit.converged``); a vertex that moved by less than
            0.1 µm is not moved again, so its result does not depend on the other vertices
            of the call.
        momentum: also compute the composite 4-momentum and its 7 × 7 covariance
            (``False`` for PV fits: ``momentum``/``cov7``/``daughter_momenta`` are NaN).
        max_step: largest vertex move (mm) per iteration, a damping for ill-determined
            (near-parallel) vertices.
        kernel: ``"compiled"`` (the numba loop over vertices of :mod:`sim.detector._vertex_kernels`)
            or ``"numpy"`` (the vectorised reference kernel; the same results to float64 rounding).

    Returns:
        :class:`VertexFit`.

    Raises:
        DataError: A vertex has fewer than 2 used daughters.
        ConfigError: ``kernel`` is not one of ``"compiled"``, ``"numpy"``.
    """
    n, k = d.shape
    _check_kernel(kernel)
    n_used = d.mask.sum(axis=1)
    if np.any(n_used < 2):
        raise DataError(f"vertexing: {int((n_used < 2).sum())} vertex(es) have fewer than 2 daughters; need >= 2")
    if kernel == "compiled":
        return _fit_compiled(d, n_iter, momentum, max_step)
    chunk = max(64, _CHUNK // max(k, 1))
    if n <= chunk:
        return _fit_chunk(d, n_iter, momentum, max_step)
    # blocks of vertices whose (k, block) temporaries stay in the cache (each vertex is fitted alone)
    parts = [_fit_chunk(_slice_daughters(d, slice(i, i + chunk)), n_iter, momentum, max_step)
             for i in range(0, n, chunk)]
    return VertexFit(*(np.concatenate([getattr(p, f.name) for p in parts]) for f in dataclasses.fields(VertexFit)))


_KERNELS = ("compiled", "numpy")


def _check_kernel(kernel: str) -> None:
    if kernel not in _KERNELS:
        raise ConfigError(f"vertexing: unknown fit kernel {kernel!r}; choose one of {', '.join(_KERNELS)}")


def _fit_compiled(
    d: Daughters, n_iter: int, momentum: bool, max_step: float, constrain: tuple[int, float] | None = None,
    extra: list[tuple[np.ndarray, ...]] | None = None,
) -> VertexFit:
    """:func:`_fit_chunk` by the compiled per-vertex loop (all n vertices in one call; inputs checked)."""
    from sim.detector._vertex_kernels import fit_loop  # numba: imported (and compiled or loaded) on first use

    n, k = d.shape
    f8 = np.float64
    args = [np.ascontiguousarray(a, dtype=f8) for a in (d.z, d.state, d.cov, d.mass, d.mass_var, d.mass_cov)]
    use = np.ascontiguousarray(d.mask, dtype=f8)
    pos, cov_v, chi2, step = np.empty((n, 3)), np.empty((n, 3, 3)), np.empty(n), np.empty(n)
    if momentum:
        mom, cov7, dmom = np.empty((n, 4)), np.empty((n, 7, 7)), np.empty((n, k, 4))
    else:
        mom, cov7, dmom = np.full((n, 4), np.nan), np.full((n, 7, 7), np.nan), np.full((n, k, 4), np.nan)
    dtf = np.empty((n if constrain is not None else 0, 3))
    slot, target = constrain if constrain is not None else (-1, 0.0)
    # a degenerate vertex (singular normal matrix or S) gives inf/NaN as in the numpy kernel, silently
    fit_loop(*args, use, int(n_iter), bool(momentum), float(max_step), int(slot), float(target),
             pos, cov_v, chi2, step, mom, cov7, dmom, dtf)
    if constrain is not None and extra is not None:
        extra.append((dtf[:, 0].copy(), dtf[:, 1].copy(), dtf[:, 2].copy()))
    converged = step < 1e-3 if n_iter > 0 else np.zeros(n, bool)
    ndof = (2 * d.mask.sum(axis=1) - 3).astype(np.int64)
    charge = np.sum(d.charge * d.mask, axis=1)
    return VertexFit(pos, cov_v, chi2, ndof, mom, cov7, charge, dmom, converged)


def _slice_daughters(d: Daughters, rows: slice | np.ndarray) -> Daughters:
    return Daughters(*(getattr(d, f.name)[rows] for f in dataclasses.fields(Daughters)))


def _fit_rows(fit: VertexFit, rows: slice | np.ndarray) -> VertexFit:
    """The fits of ``rows``."""
    return VertexFit(*(getattr(fit, f.name)[rows] for f in dataclasses.fields(VertexFit)))


def _by_rows(func: Callable[[slice], tuple[np.ndarray, ...]], n: int, block: int = 2048) -> tuple[np.ndarray, ...]:
    """``func`` on row blocks ``slice(i, i + block)`` of n rows, outputs concatenated (small
    per-row matrices: the block's temporaries stay in the cache)."""
    if n <= block:
        return func(slice(0, n))
    parts = [func(slice(i, i + block)) for i in range(0, n, block)]
    return tuple(np.concatenate(p) for p in zip(*parts))


def _fit_chunk(
    d: Daughters, n_iter: int, momentum: bool, max_step: float,
    constrain: tuple[int, float] | None = None, extra: list[tuple[np.ndarray, ...]] | None = None,
) -> VertexFit:
    """:func:`fit_vertex` on one block of vertices (inputs checked); with ``constrain``
    (slot, mass) also appends ``(dtf_mass, dtf_mass_err, dchi2)`` to ``extra``
    (:func:`fit_vertex_dtf`)."""
    n, k = d.shape
    n_used = d.mask.sum(axis=1)
    s, c = _components(d)
    v = _initial_vertex(s)
    step = np.full(n, np.inf)
    rows = np.arange(n)  # the working set: every vertex, then only the ones still moving
    sw, cw = s, c
    active = np.ones(n, bool)  # aligned with rows
    for _ in range(n_iter):
        m, b = _normal(_profile(sw, cw, v[rows]))
        dv = np.stack(_solve_sym3(m, b), axis=1)
        st = np.sqrt(np.sum(dv * dv, axis=1))
        dv *= np.minimum(1.0, max_step / np.maximum(st, 1e-300))[:, None]
        v[rows] += np.where(active[:, None], dv, 0.0)  # not dv * active: a left vertex's NaN step would leak in
        step[rows] = np.where(active, st, step[rows])
        active &= st >= 1e-4  # converged to 0.1 µm (resolutions are >= 10 µm): leave it
        if not active.any():
            break
        if active.mean() < 0.5:  # iterate on the few that still move only
            rows = rows[active]
            sw = {key: a[:, active] for key, a in sw.items()}
            cw = {key: a[:, active] for key, a in cw.items()}
            active = np.ones(rows.size, bool)
    converged = step < 1e-3 if n_iter > 0 else np.zeros(n, bool)
    p = _profile(s, c, v)
    m, _ = _normal(p)
    chi2 = (p["rx"] * p["g0"] + p["ry"] * p["g1"]).sum(0)
    cv = _inv_sym3(m)
    cov_v = _sym3(cv)
    ndof = (2 * n_used - 3).astype(np.int64)
    charge = np.sum(d.charge * d.mask, axis=1)
    if not momentum:
        nan = np.full((n, 4), np.nan)
        return VertexFit(v, cov_v, chi2, ndof, nan, np.full((n, 7, 7), np.nan), charge, np.full((n, k, 4), np.nan),
                         converged)

    # fitted daughter parameters (tx, ty, w, m) = measured − (C Hᵀ)(W r); with K = C Hᵀ W and
    # F = K R̂: Cov(μ̂_i) = C_i − K_i S_i K_iᵀ + F_i C_V F_iᵀ, Cov(μ̂_i, V) = −F_i C_V,
    # Cov(μ̂_i, μ̂_j≠i) = F_i C_V F_jᵀ (the exact propagation of the linearised estimator)
    dz = p["dz"]
    u0 = [_cc(c, 0, a) + dz * _cc(c, 2, a) for a in (2, 3, 4, 5)]  # (C H^T)[a, 0]
    u1 = [_cc(c, 1, a) + dz * _cc(c, 3, a) for a in (2, 3, 4, 5)]  # (C H^T)[a, 1]
    w00, w01, w11, g0, g1, thx, thy = (p[kk] for kk in ("w00", "w01", "w11", "g0", "g1", "thx", "thy"))
    k0 = [a0 * w00 + a1 * w01 for a0, a1 in zip(u0, u1)]
    k1 = [a0 * w01 + a1 * w11 for a0, a1 in zip(u0, u1)]
    w_hat = s["w"] - (u0[2] * g0 + u1[2] * g1)
    m_hat = s["m"] - (u0[3] * g0 + u1[3] * g1)
    own = {(a, b): _cc(c, a + 2, b + 2) - (k0[a] * u0[b] + k1[a] * u1[b]) for a in range(4) for b in range(a, 4)}
    fm = [[-k0[a], -k1[a], k0[a] * thx + k1[a] * thy] for a in range(4)]
    # four-momentum (px, py, pz, E) of each daughter and its sparse Jacobian w.r.t. (tx, ty, w, m)
    use = s["use"]
    pmag = 1.0 / w_hat
    nrm2 = 1.0 + thx * thx + thy * thy
    pz = pmag / np.sqrt(nrm2)
    e = np.sqrt(pmag * pmag + m_hat * m_hat)
    mom_i = [thx * pz * use, thy * pz * use, pz * use, e * use]
    upz = pz * use
    dtx, dty = -upz * thx / nrm2, -upz * thy / nrm2  # dpz/dtx, dpz/dty
    dw = -upz * pmag  # dpz/dw
    jac: list[list[tuple[int, np.ndarray]]] = [
        [(0, upz + thx * dtx), (1, thx * dty), (2, thx * dw)],
        [(0, thy * dtx), (1, upz + thy * dty), (2, thy * dw)],
        [(0, dtx), (1, dty), (2, dw)],
        [(2, -use * pmag**3 / e), (3, use * m_hat / e)],
    ]
    # dP/dV = −Σ_i J_i F_i (4 × 3), Σ_i J_i Cov_own,i J_iᵀ (4 × 4)
    hm = np.empty((n, 4, 3))
    c_own = np.empty((n, 4, 4))
    for r in range(4):
        for col in range(3):
            hm[:, r, col] = -sum(jv * fm[a][col] for a, jv in jac[r]).sum(0)
        xr = [sum(jv * _cc(own, a, b) for a, jv in jac[r]) for b in range(4)]  # (J Cov_own)[r, b]
        for s_ in range(r, 4):
            c_own[:, r, s_] = c_own[:, s_, r] = sum(xr[b] * jv for b, jv in jac[s_]).sum(0)
    hmat = hm
    c_pp = hmat @ cov_v @ _t(hmat) + c_own
    c_vp = cov_v @ _t(hmat)
    cov7 = np.empty((n, 7, 7))
    cov7[:, :3, :3] = cov_v
    cov7[:, :3, 3:] = c_vp
    cov7[:, 3:, :3] = _t(c_vp)
    cov7[:, 3:, 3:] = 0.5 * (c_pp + _t(c_pp))
    mom = np.stack(mom_i, axis=-1)  # (k, n, 4)
    p_tot = mom.sum(axis=0)
    if constrain is not None and extra is not None:
        # the fitted mass m̂ of daughter `slot`: Var(m̂) = Cov_own[m, m] + F_m C_V F_mᵀ and
        # Cov(P, m̂) = J Cov_own[:, m] − (dP/dV) C_V F_mᵀ; the constraint m̂ = M is then the exact
        # conditional update of (P, m̂) (the linearised fit with the constrained daughter)
        slot, target = constrain
        f_m = [fm[3][col][slot] for col in range(3)]
        cvf = np.stack(_solve_sym3_inv(cv, f_m), axis=1)  # C_V F_mᵀ (n, 3)
        var_m = own[3, 3][slot] + np.sum(np.stack(f_m, axis=1) * cvf, axis=1)
        cov_pm = np.stack([sum(jv[slot] * _cc(own, a, 3)[slot] for a, jv in jac[r]) for r in range(4)], axis=1)
        cov_pm = cov_pm - np.einsum("nrc,nc->nr", hmat, cvf)
        resid = target - m_hat[slot]
        p_c = p_tot + cov_pm * (resid / var_m)[:, None]
        c_c = cov7[:, 3:, 3:] - cov_pm[:, :, None] * cov_pm[:, None, :] / var_m[:, None, None]
        m_c = np.sqrt(np.maximum(p_c[:, 3] ** 2 - np.sum(p_c[:, :3] ** 2, axis=1), 0.0))
        g = np.concatenate([-p_c[:, :3], p_c[:, 3:4]], axis=1) / np.maximum(m_c, 1e-9)[:, None]
        err = np.sqrt(np.maximum(np.einsum("ni,nij,nj->n", g, c_c, g), 0.0))
        extra.append((m_c, err, resid * resid / var_m))
    return VertexFit(v, cov_v, chi2, ndof, p_tot, cov7, charge, np.swapaxes(mom, 0, 1), converged)


def fit_vertex_dtf(
    d: Daughters, slot: int, mass: float, n_iter: int = 10, *, kernel: str = "compiled"
) -> tuple[VertexFit, np.ndarray, np.ndarray, np.ndarray]:
    """:func:`fit_vertex` and, from the same fit, the mass with daughter ``slot``'s mass constrained.

    Equivalent (for the linearised fit) to :func:`fit_vertex` of
    :func:`constrain_mass` ``(d, slot, mass)`` with the constraint's own χ² added, at the
    cost of one fit: the constraint is applied to the fitted daughter mass m̂ with its
    fitted covariance with the composite momentum.

    Args:
        d: the daughters, as :func:`fit_vertex`.
        slot: the daughter (a composite) whose mass is constrained.
        mass: the constraint (MeV).
        n_iter: as :func:`fit_vertex`.
        kernel: as :func:`fit_vertex`.

    Returns:
        ``(fit, dtf_mass, dtf_mass_err, dchi2)``: the unconstrained fit, the constrained
        mass and its error (MeV) and the χ² the constraint adds (1 dof), each ``(n,)``.

    Raises:
        DataError: as :func:`fit_vertex`; ``slot`` out of range or without mass uncertainty.
        ConfigError: ``kernel`` is not one of ``"compiled"``, ``"numpy"``.
    """
    n, k = d.shape
    _check_kernel(kernel)
    if not 0 <= slot < k:
        raise DataError(f"vertexing: fit_vertex_dtf slot {slot} out of range; daughters 0..{k - 1}")
    if np.any(d.mask[:, slot] & ~(d.mass_var[:, slot] > 0)):
        raise DataError(f"vertexing: daughter {slot} has no mass uncertainty (a track?); constrain a composite")
    n_used = d.mask.sum(axis=1)
    if np.any(n_used < 2):
        raise DataError(f"vertexing: {int((n_used < 2).sum())} vertex(es) have fewer than 2 daughters; need >= 2")
    extra: list[tuple[np.ndarray, ...]] = []
    if kernel == "compiled":
        fit = _fit_compiled(d, n_iter, True, 100.0, (slot, float(mass)), extra)
        return fit, extra[0][0], extra[0][1], extra[0][2]
    chunk = max(64, _CHUNK // max(k, 1))
    parts = [_fit_chunk(_slice_daughters(d, slice(i, i + chunk)), n_iter, True, 100.0, (slot, float(mass)), extra)
             for i in range(0, n, chunk)]
    fit = VertexFit(*(np.concatenate([getattr(p, f.name) for p in parts]) for f in dataclasses.fields(VertexFit)))
    m_c, err, dchi2 = (np.concatenate([e[i] for e in extra]) for i in range(3))
    return fit, m_c, err, dchi2


def fit_vertices(
    z: ArrayLike,
    state: ArrayLike,
    cov: ArrayLike,
    mass: ArrayLike,
    mask: ArrayLike | None = None,
    n_iter: int = 10,
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


def _state_of(
    fit: VertexFit, kernel: str = "compiled"
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Composite as a line: z, state (x,y,tx,ty,w), 5x5 cov, mass, mass var, mass-state cov
    (``kernel`` as :func:`fit_vertex`: ``J C Jᵀ`` by a compiled loop or by numpy ``matmul``)."""
    v, p4 = fit.position, fit.momentum
    n = v.shape[0]
    if kernel == "compiled":
        from sim.detector._vertex_kernels import composite_line_loop

        state, m, c6 = np.empty((n, 5)), np.empty(n), np.empty((n, 6, 6))
        f8 = np.float64
        p4 = np.ascontiguousarray(p4, dtype=f8)
        p_cubed = np.sqrt(p4[:, 0] * p4[:, 0] + p4[:, 1] * p4[:, 1] + p4[:, 2] * p4[:, 2]) ** 3  # as below, bit for bit
        composite_line_loop(np.ascontiguousarray(v, dtype=f8), p4, p_cubed, np.ascontiguousarray(fit.cov7, dtype=f8),
                            state, m, c6)
        return v[:, 2], state, c6[:, :5, :5], m, c6
    px, py, pz, e = p4[:, 0], p4[:, 1], p4[:, 2], p4[:, 3]
    p = np.sqrt(px * px + py * py + pz * pz)
    m = np.sqrt(np.maximum(e * e - p * p, 1e-12))
    tx, ty = px / pz, py / pz
    state = np.stack([v[:, 0], v[:, 1], tx, ty, 1.0 / p], axis=1)
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


def composite_daughters(fit: VertexFit, *, kernel: str = "compiled") -> Daughters:
    """A fitted composite as one daughter (k = 1) for a parent fit: the line from its
    vertex along its momentum, with the covariance of its 7 × 7 matrix.

    This is the treatment of a flying intermediate (D, Λc, K_S: its decay point is not
    the parent's vertex, only its line passes through it).  A resonance without flight
    (J/ψ, φ, K*) is better fitted through its tracks: the line drops the information
    of where along it the resonance decayed (for B+ → J/ψ K+ the decay-time resolution
    goes from 45 fs with three tracks to 133 fs bottom-up, both with unit pulls).

    Args:
        fit: the composites' fits (with momentum).
        kernel: as :func:`fit_vertex` (the line covariance ``J cov7 Jᵀ`` compiled or numpy).

    Raises:
        DataError: The composite's pz is not positive (the straight-line state needs pz > 0).
        ConfigError: ``kernel`` is not one of ``"compiled"``, ``"numpy"``.
    """
    _check_kernel(kernel)
    if np.any(~(fit.momentum[:, 2] > 0)):
        raise DataError("vertexing: a composite daughter has pz <= 0 or NaN; fit it with momentum=True first")
    z, state, c5, m, c6 = _state_of(fit, kernel)
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
    c = {(i, j): cov[:, None, i, j] for i in range(4) for j in range(i, 4)}
    p = {(i, j): pv_cov[..., i, j] for i in range(3) for j in range(i, 3)}
    return _ip_terms(z[:, None], x, y, tx, ty, c, pv[..., 0], pv[..., 1], pv[..., 2], p)


def _ip_terms(z: Any, x: Any, y: Any, tx: Any, ty: Any, c: Any, pvx: Any, pvy: Any, pvz: Any, p: Any) -> tuple[Any, Any]:
    """IP and IPχ² of a line ``(x, y, tx, ty)`` at ``z`` w.r.t. a PV: the one formula of both kernels.

    Elementwise arithmetic only, so it serves :func:`impact_parameter` on broadcast arrays
    (``c``, ``p``: mappings ``(i, j) → array`` of the upper triangles of the line's 5 × 5 and the
    PV's 3 × 3 covariances) and, compiled by numba, the per-line loops of
    :mod:`sim.detector._vertex_kernels` on floats (``c``, ``p``: 2-D arrays) — the same
    operations in the same order, so both give the same numbers.
    """
    dz = pvz - z
    rx = x + tx * dz - pvx
    ry = y + ty * dz - pvy
    # S = J_s C J_sᵀ + J_p C_PV J_pᵀ, J_s = [[1, 0, Δz, 0, 0], [0, 1, 0, Δz, 0]], J_p = [[−1, 0, tx], [0, −1, ty]]
    s00 = c[0, 0] + dz * (2.0 * c[0, 2] + dz * c[2, 2]) + p[0, 0] - tx * (2.0 * p[0, 2] - tx * p[2, 2])
    s01 = (c[0, 1] + dz * (c[0, 3] + c[1, 2] + dz * c[2, 3])
           + p[0, 1] - tx * p[1, 2] - ty * p[0, 2] + tx * ty * p[2, 2])
    s11 = c[1, 1] + dz * (2.0 * c[1, 3] + dz * c[3, 3]) + p[1, 1] - ty * (2.0 * p[1, 2] - ty * p[2, 2])
    chi2 = (s11 * rx * rx - 2.0 * s01 * rx * ry + s00 * ry * ry) / (s00 * s11 - s01 * s01)
    # distance of the PV to the line through (PV_x + r_x, PV_y + r_y, PV_z) along (tx, ty, 1): |r × u| / |u|
    cross = rx * ty - ry * tx
    ip = np.sqrt((rx * rx + ry * ry + cross * cross) / (1.0 + tx * tx + ty * ty))
    return ip, chi2


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
    pv: np.ndarray, pv_cov: np.ndarray, fit: VertexFit, n_iter: int = 2, *, kernel: str = "compiled"
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Decay time τ (ns), its error and the fit χ² (2 dof), a lifetime-fitter equivalent.

    Constrained least squares [AVERY] of the measured ``α = (PV, SV, p, E)``
    (covariance ``C_PV ⊕ cov7``) with one free parameter τ and the three constraints
    ``SV − PV − (c τ / m) p = 0``, ``m = sqrt(E² − p²)``, linearised and iterated
    (the method of LHCb's ``LifetimeFitter``/``PropertimeFitter``).

    Args:
        pv: ``(n, 3)``; pv_cov: ``(n, 3, 3)``; fit: composites with momentum.
        n_iter: iterations.
        kernel: as :func:`fit_vertex` (a compiled loop, or the numpy reference).

    Returns:
        ``tau, tau_err, chi2``, each ``(n,)``; NaN where the decay time is undetermined (``eᵀ S⁻¹ e <= 0``,
        e.g. a momentum unknown along the flight direction).

    Raises:
        ConfigError: ``kernel`` is not one of ``"compiled"``, ``"numpy"``.
    """
    _check_kernel(kernel)
    pv = np.asarray(pv, dtype=np.float64)
    pv_cov = np.asarray(pv_cov, dtype=np.float64)
    if kernel == "compiled":
        from sim.detector._vertex_kernels import decay_time_loop

        n = pv.shape[0]
        tau, err, chi2 = np.empty(n), np.empty(n), np.empty(n)
        f8 = np.float64
        decay_time_loop(np.ascontiguousarray(fit.position - pv), np.ascontiguousarray(fit.momentum, dtype=f8),
                        np.ascontiguousarray(fit.mass, dtype=f8), np.ascontiguousarray(fit.cov7, dtype=f8),
                        np.ascontiguousarray(pv_cov), int(n_iter), 4096, C_LIGHT, tau, err, chi2)
        return tau, err, chi2
    # a degenerate row (S singular: no flight information) gives inf/NaN there, set to NaN below
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        tau, err, chi2 = _by_rows(lambda r: _decay_time_rows(pv[r], pv_cov[r], _fit_rows(fit, r), n_iter),
                                  pv.shape[0], 4096)
    return tau, err, chi2


def _decay_time_rows(
    pv: np.ndarray, pv_cov: np.ndarray, fit: VertexFit, n_iter: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`decay_time` on one block of rows."""
    # The constraint SV − PV = (cτ/m) p involves PV and SV only through d = SV − PV, so the fit
    # is the one of α = (d, p, E) with covariance [[C_PV + A, B], [Bᵀ, D]] (cov7 = [[A, B], [Bᵀ, D]]):
    # constraint Jacobian [1 | Q], Q = −f [1 | 0] + g p wᵀ (f = cτ/m, g = cτ/m³, w = (−p, E)),
    # S = C_dd + B Qᵀ + Q Bᵀ + Q D Qᵀ in closed form; every array below is (n,).
    c7 = fit.cov7
    d0 = [np.ascontiguousarray(fit.position[:, a] - pv[:, a]) for a in range(3)]
    p0 = [np.ascontiguousarray(fit.momentum[:, a]) for a in range(4)]
    cdd = [[c7[:, a, b] + pv_cov[:, a, b] for b in range(3)] for a in range(3)]
    bm = [[np.ascontiguousarray(c7[:, a, 3 + b]) for b in range(4)] for a in range(3)]
    dm = [[np.ascontiguousarray(c7[:, 3 + a, 3 + b]) for b in range(4)] for a in range(4)]
    p_sq = p0[0] ** 2 + p0[1] ** 2 + p0[2] ** 2
    tau = fit.mass * (d0[0] * p0[0] + d0[1] * p0[1] + d0[2] * p0[2]) / (C_LIGHT * p_sq)
    a_p = p0
    lam = [np.zeros_like(tau)] * 3
    v_e = np.zeros_like(tau)
    s_up = [cdd[0][0], cdd[0][1], cdd[0][2], cdd[1][1], cdd[1][2], cdd[2][2]]
    pairs = ((0, 0), (0, 1), (0, 2), (1, 1), (1, 2), (2, 2))
    for it in range(max(n_iter, 1)):
        pa, ea = a_p[:3], a_p[3]
        m = np.sqrt(np.maximum(ea * ea - (pa[0] ** 2 + pa[1] ** 2 + pa[2] ** 2), 1e-12))
        f = C_LIGHT * tau / m
        g = f / (m * m)
        w = [-pa[0], -pa[1], -pa[2], ea]
        dw = [sum(dm[a][b] * w[b] for b in range(4)) for a in range(4)]
        wdw = sum(w[a] * dw[a] for a in range(4))
        u = [sum(bm[a][b] * w[b] for b in range(4)) - f * dw[a] for a in range(3)]
        s_up = [cdd[a][b] - f * (bm[a][b] + bm[b][a]) + f * f * dm[a][b] + g * (u[a] * pa[b] + pa[a] * u[b])
                + (g * g * wdw) * pa[a] * pa[b] for a, b in pairs]
        dd = [d0[a] - f * pa[a] for a in range(3)]
        if it:  # Q (α0 − α) for the momentum part (zero on the first pass, α = α0)
            dp = [p0[a] - a_p[a] for a in range(4)]
            gwd = g * sum(w[a] * dp[a] for a in range(4))
            dd = [dd[a] - f * dp[a] + gwd * pa[a] for a in range(3)]
        e = [-(C_LIGHT / m) * pa[a] for a in range(3)]
        inv = _inv_sym3(s_up)
        lam0 = _solve_sym3_inv(inv, dd)
        ve = _solve_sym3_inv(inv, e)  # S^-1 e
        v_e = 1.0 / (e[0] * ve[0] + e[1] * ve[1] + e[2] * ve[2])
        dtau = -v_e * (e[0] * lam0[0] + e[1] * lam0[1] + e[2] * lam0[2])
        tau = tau + dtau
        lam = [lam0[a] + ve[a] * dtau for a in range(3)]
        if it + 1 < n_iter:
            pl = g * (pa[0] * lam[0] + pa[1] * lam[1] + pa[2] * lam[2])
            qtl = [-f * lam[a] - pl * pa[a] for a in range(3)] + [pl * ea]
            a_p = [p0[b] - (sum(bm[a][b] * lam[a] for a in range(3)) + sum(dm[b][c] * qtl[c] for c in range(4)))
                   for b in range(4)]
        if np.max(np.abs(dtau), initial=0.0) < 1e-10:  # converged to 1e-4 fs
            break
    s00, s01, s02, s11, s12, s22 = s_up
    l0, l1, l2 = lam
    chi2 = s00 * l0 * l0 + s11 * l1 * l1 + s22 * l2 * l2 + 2.0 * (s01 * l0 * l1 + s02 * l0 * l2 + s12 * l1 * l2)
    # an undetermined decay time (momentum unknown along the flight: eᵀ S⁻¹ e <= 0 in rounding) is NaN
    ok = np.isfinite(v_e) & (v_e > 0) & np.isfinite(tau) & np.isfinite(chi2)
    if not ok.all():
        tau, v_e, chi2 = (np.where(ok, x, np.nan) for x in (tau, v_e, chi2))
    return tau, np.sqrt(v_e), chi2


def _mv(m: np.ndarray, v: np.ndarray) -> np.ndarray:
    """``(n, i, j) · (n, j) → (n, i)``."""
    return np.matmul(m, v[..., None])[..., 0]


def _mv_sym3(m: Sequence[np.ndarray], v: np.ndarray) -> np.ndarray:
    """Symmetric 3 × 3 (upper triangle, :func:`_inv_sym3`) times ``v`` ``(n, 3)``."""
    return np.stack(_solve_sym3_inv(m, v), axis=1)


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


def own_pv_quantities(
    z: np.ndarray, state: np.ndarray, cov: np.ndarray, pv: np.ndarray, pv_cov: np.ndarray, pv_mask: np.ndarray,
    fit: VertexFit, visible: np.ndarray, rows: np.ndarray | None = None, *, kernel: str = "compiled",
) -> dict[str, np.ndarray]:
    """A composite's own PV and the quantities w.r.t. it, in one pass (the export's vertex columns).

    The own PV is, among the PVs of ``pv_mask``, the one with the smallest IPχ² of the
    composite's line (:func:`impact_parameter`; ``numpy.argmin`` rules: a NaN IPχ² wins, all
    masked gives the first slot); then IP and IPχ² w.r.t. it, :func:`flight` (FD, FDχ², DIRA)
    and :func:`corrected_mass` (MCORR and its error), both with ``visible`` as the momentum.

    Args:
        z, state, cov: ``(n,)``, ``(n, 5)``, ``(n, 5, 5)``: the composites' lines (:func:`composite_line`).
        pv, pv_cov, pv_mask: ``(N, m, 3)``, ``(N, m, 3, 3)``, ``(N, m)`` bool: the PVs of each row (mm, mm²).
        fit: the composites' :class:`VertexFit` (``n`` rows: position, cov, cov7).
        visible: ``(n, 4)`` momentum ``(px, py, pz, E)`` (MeV) for DIRA and MCORR.
        rows: ``(n,)`` the PV row of each composite (default ``0..n-1``, ``N = n``).
        kernel: ``"compiled"`` (one numba loop over rows) or ``"numpy"`` (the reference:
            :func:`impact_parameter`, ``argmin``, :func:`flight`, :func:`corrected_mass`).

    Returns:
        ``best`` (int64, the PV slot), ``ip`` (mm), ``ipchi2``, ``fd`` (mm), ``fdchi2``, ``dira``,
        ``mcorr``, ``mcorrerr`` (MeV), each ``(n,)``.

    Raises:
        DataError: there is no PV slot (``m = 0``).
        ConfigError: ``kernel`` is not one of ``"compiled"``, ``"numpy"``.
    """
    _check_kernel(kernel)
    n = np.shape(state)[0]
    at = np.arange(n) if rows is None else np.asarray(rows, dtype=np.int64)
    if pv.ndim != 3 or pv.shape[1] == 0:
        raise DataError(f"vertexing: own_pv_quantities got PVs of shape {pv.shape}; expected (N, m >= 1, 3)")
    if kernel == "numpy":
        pv_r, cov_r = np.asarray(pv, dtype=np.float64)[at], np.asarray(pv_cov, dtype=np.float64)[at]
        ip_all, ipchi2_all = impact_parameter(z, state, cov, pv_r, cov_r)
        best = np.argmin(np.where(np.asarray(pv_mask, dtype=bool)[at], ipchi2_all, np.inf), axis=1)
        i = np.arange(n)
        own, own_cov = pv_r[i, best], cov_r[i, best]
        fit_vis = dataclasses.replace(fit, momentum=np.asarray(visible, dtype=np.float64))
        fd, fdchi2, dira = flight(own, own_cov, fit_vis)
        mcorr, mcorrerr = corrected_mass(own, own_cov, fit_vis)
        return {"best": best.astype(np.int64), "ip": ip_all[i, best], "ipchi2": ipchi2_all[i, best], "fd": fd,
                "fdchi2": fdchi2, "dira": dira, "mcorr": mcorr, "mcorrerr": mcorrerr}
    from sim.detector._vertex_kernels import own_pv_loop

    z, state, cov = _line(z, state, cov)
    f8 = np.float64
    out = {k: np.empty(n) for k in ("ip", "ipchi2", "fd", "fdchi2", "dira", "mcorr", "mcorrerr")}
    best = np.empty(n, np.int64)
    # a degenerate row (zero flight, singular covariance) gives inf/NaN as in the numpy reference, silently
    own_pv_loop(np.ascontiguousarray(at), np.ascontiguousarray(z), np.ascontiguousarray(state), np.ascontiguousarray(cov),
                np.ascontiguousarray(pv, dtype=f8), np.ascontiguousarray(pv_cov, dtype=f8),
                np.ascontiguousarray(pv_mask, dtype=np.bool_), np.ascontiguousarray(fit.position, dtype=f8),
                np.ascontiguousarray(fit.cov, dtype=f8), np.ascontiguousarray(visible, dtype=f8),
                np.ascontiguousarray(fit.cov7, dtype=f8), best, out["ip"], out["ipchi2"], out["fd"], out["fdchi2"],
                out["dira"], out["mcorr"], out["mcorrerr"])
    return {"best": best, **out}


def line_ip(
    rows: np.ndarray, z: np.ndarray, state: np.ndarray, cov: np.ndarray, pv: np.ndarray, pv_cov: np.ndarray,
    *, kernel: str = "compiled",
) -> tuple[np.ndarray, np.ndarray]:
    """IP and IPχ² of lines ``rows`` w.r.t. one PV each (a track w.r.t. its composite's own PV).

    Args:
        rows: ``(n,)`` int, the lines to take from ``z (N,)``, ``state (N, 5)``, ``cov (N, 5, 5)``.
        pv, pv_cov: ``(n, 3)``, ``(n, 3, 3)``: the PV of each of the n rows (mm, mm²).
        kernel: ``"compiled"`` (a numba loop) or ``"numpy"`` (:func:`impact_parameter` on the gathered rows).

    Returns:
        ``ip, ip_chi2``, each ``(n,)``; NaN where the line's z, state or covariance is not finite.

    Raises:
        ConfigError: ``kernel`` is not one of ``"compiled"``, ``"numpy"``.
    """
    _check_kernel(kernel)
    at = np.asarray(rows, dtype=np.int64)
    n = at.size
    if kernel == "numpy":
        zr, sr, cr = (np.asarray(v, dtype=np.float64)[at] for v in (z, state, cov))
        ok = np.isfinite(sr).all(axis=1) & np.isfinite(cr).all(axis=(1, 2)) & np.isfinite(zr)
        ip, ipc = np.full(n, np.nan), np.full(n, np.nan)
        if ok.any():
            a, b = impact_parameter(zr[ok], sr[ok], cr[ok], np.asarray(pv, dtype=np.float64)[ok, None],
                                    np.asarray(pv_cov, dtype=np.float64)[ok, None])
            ip[ok], ipc[ok] = a[:, 0], b[:, 0]
        return ip, ipc
    from sim.detector._vertex_kernels import line_ip_loop

    f8 = np.float64
    ip, ipc = np.empty(n), np.empty(n)
    line_ip_loop(np.ascontiguousarray(at), np.ascontiguousarray(z, dtype=f8), np.ascontiguousarray(state, dtype=f8),
                 np.ascontiguousarray(cov, dtype=f8), np.ascontiguousarray(pv, dtype=f8),
                 np.ascontiguousarray(pv_cov, dtype=f8), ip, ipc)
    return ip, ipc
