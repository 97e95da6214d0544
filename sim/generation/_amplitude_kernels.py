"""Compiled (numba) hadronic current of the 1/2 → 1/2 semileptonic amplitude (BaryonPCR, :mod:`sim.generation.formfactors`).

:func:`baryon_current` computes, in one loop over the decays, what
:func:`sim.generation.formfactors.semileptonic_tensor` builds for a spin-½ daughter from
whole-array numpy steps (:func:`~sim.generation.formfactors._bilinears` of the ten Dirac
matrices, then the form-factor sum): per decay, the bilinears ``ū_X Γ u_B`` as sums of
``(Γ_ij ū_X,i) u_B,j`` over Γ's non-zero entries in their row-major order, and

    had^μ = f1 ū γ^μ u + (ū u)(f2 v^μ + f3 v'^μ) − g1 ū γ^μ γ5 u − (ū γ5 u)(g2 v^μ + g3 v'^μ),

summed left to right as the numpy expression.  The arithmetic is the same operations in
the same order, except the exact zeros the numpy form leaves out (which change no sum) and
the complex products' rounding where numpy's loops fuse a multiply-add (none is fused here):
the Λb → Λc μ ν̄ weights of 85 000 flying decays came out equal bit for bit; the test
(``tests/sim/generation/test_amplitude_kernels.py``) allows 1e-12 relative.  The numpy
form costs ≈ 120 array operations on ``(n, 2)`` complex temporaries per call: the weight
of 85 000 candidates (a batch of 50 000 events' first round) 299-345 → 204-267 CPU ms.

Imported on the first call with at least
:data:`sim.generation.formfactors.COMPILED_MIN_DECAYS` decays (numba and the kernel's
cache load then, ≈ 0.5 CPU s); compiled and cached by :func:`sim.core.jit.njit_cached`.
"""

from __future__ import annotations

import numpy as np

from sim.core.jit import njit_cached

__all__ = ("baryon_current",)


@njit_cached
def baryon_current(ux: np.ndarray, ub: np.ndarray, ops: np.ndarray, ff: np.ndarray, v: np.ndarray, vp: np.ndarray,
                   out: np.ndarray) -> None:
    """The hadronic current ``(n, s_B, s_X, μ)`` of 1/2 → 1/2 decays into ``out``.

    Args:
        ux: ``(n, 2, 4)`` barred daughter spinors ū_X (rows, by spin).
        ub: ``(n, 2, 4)`` parent spinors u_B (by spin).
        ops: ``(10, 4, 4)`` complex: 1, γ5, γ^0..γ^3, γ^0γ5..γ^3γ5.
        ff: ``(6, n)`` the form factors f1, f2, f3, g1, g2, g3.
        v, vp: ``(n, 4)`` four-velocities of parent and daughter (time component first).
        out: ``(n, 2, 2, 4)`` complex128.
    """
    n = ux.shape[0]
    nz_i = np.empty((10, 16), np.int64)
    nz_j = np.empty((10, 16), np.int64)
    nz_n = np.zeros(10, np.int64)
    for k in range(10):
        for i in range(4):
            for j in range(4):
                if ops[k, i, j] != 0:
                    nz_i[k, nz_n[k]] = i
                    nz_j[k, nz_n[k]] = j
                    nz_n[k] += 1
    bil = np.empty(10, np.complex128)
    for e in range(n):
        f1, f2, f3, g1, g2, g3 = ff[0, e], ff[1, e], ff[2, e], ff[3, e], ff[4, e], ff[5, e]
        for b in range(2):
            for a in range(2):
                for k in range(10):
                    acc = 0j
                    for t in range(nz_n[k]):
                        i, j = nz_i[k, t], nz_j[k, t]
                        acc += ops[k, i, j] * ux[e, a, i] * ub[e, b, j]
                    bil[k] = acc
                sca, pse = bil[0], bil[1]
                for mu in range(4):
                    vterm = f2 * v[e, mu] + f3 * vp[e, mu]
                    aterm = g2 * v[e, mu] + g3 * vp[e, mu]
                    out[e, b, a, mu] = f1 * bil[2 + mu] + sca * vterm - g1 * bil[6 + mu] - pse * aterm
