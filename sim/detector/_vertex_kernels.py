"""Compiled (numba) per-vertex loop of the Billoir fit of :mod:`sim.detector.vertexing`.

The same arithmetic as the numpy kernel (``vertexing._fit_chunk``, kept there as the
reference), written as one loop over vertices so that each vertex's ``k`` daughters stay
in registers instead of a few hundred ``(k, n)`` numpy temporaries: the unit-weight start
(``_initial_vertex``), the Gauss-Newton steps in the vertex coordinates with the daughter
parameters profiled out (``_profile``/``_normal``), the same damping (``max_step``), the
same per-vertex stop rule (a step below 0.1 µm ends that vertex's iterations), then χ²,
the 3 × 3 covariance, the daughter 4-momenta, the 7 × 7 covariance of
``(x, y, z, px, py, pz, E)`` and, with a slot, the mass-constrained (DTF-like) mass.
The operations are done in the numpy kernel's order (sums over daughters in daughter
order, no fast-math), so the two agree to float64 rounding (the matrix products of the
momentum covariance are the only place where the association differs).

Importing this module imports numba and compiles (or loads from numba's cache) the kernel,
so :mod:`sim.detector.vertexing` imports it only on the first fit.  Compiled and cached by
:func:`sim.core.jit.njit_cached`.
"""

from __future__ import annotations

import math

import numpy as np

from sim.core.jit import njit_cached
from sim.detector.vertexing import _ip_terms


@njit_cached
def _inv_sym3(a: float, b: float, c: float, d: float, e: float, f: float) -> tuple[float, ...]:
    """Inverse of the symmetric 3 × 3 with upper triangle ``(a, b, c, d, e, f)``, as its upper triangle."""
    i00 = d * f - e * e
    i01 = c * e - b * f
    i02 = b * e - c * d
    inv_det = 1.0 / (a * i00 + b * i01 + c * i02)
    return (i00 * inv_det, i01 * inv_det, i02 * inv_det, (a * f - c * c) * inv_det, (b * c - a * e) * inv_det,
            (a * d - b * b) * inv_det)


@njit_cached
def _profile_normal(
    x: np.ndarray, y: np.ndarray, tx: np.ndarray, ty: np.ndarray, zr: np.ndarray, use: np.ndarray, c: np.ndarray,
    vx: float, vy: float, vz: float, out: np.ndarray,
) -> tuple[float, ...]:
    """``_profile`` + ``_normal`` of one vertex: fills ``out`` ``(10, k)`` with
    ``dz, w00, w01, w11, rx, ry, g0, g1, thx, thy`` and returns the normal matrix
    (upper triangle), ``−½ ∇χ²`` and χ²."""
    k = x.shape[0]
    m0 = m1 = m2 = m3 = m4 = m5 = 0.0
    b0 = b1 = b2 = 0.0
    chi2 = 0.0
    for j in range(k):
        dz = vz - zr[j]
        c02, c12, c03, c13 = c[j, 0, 2], c[j, 1, 2], c[j, 0, 3], c[j, 1, 3]
        c22, c23, c33 = c[j, 2, 2], c[j, 2, 3], c[j, 3, 3]
        u20 = c02 + dz * c22
        u21 = c12 + dz * c23
        u30 = c03 + dz * c23
        u31 = c13 + dz * c33
        s00 = c[j, 0, 0] + dz * (c02 + u20)
        s01 = c[j, 0, 1] + dz * (c03 + u21)
        s11 = c[j, 1, 1] + dz * (c13 + u31)
        inv_det = use[j] / (s00 * s11 - s01 * s01)
        w00 = s11 * inv_det
        w01 = -s01 * inv_det
        w11 = s00 * inv_det
        rx = x[j] + tx[j] * dz - vx
        ry = y[j] + ty[j] * dz - vy
        g0 = w00 * rx + w01 * ry
        g1 = w01 * rx + w11 * ry
        thx = tx[j] - (u20 * g0 + u21 * g1)
        thy = ty[j] - (u30 * g0 + u31 * g1)
        a0 = w00 * thx + w01 * thy
        a1 = w01 * thx + w11 * thy
        m0 += w00
        m1 += w01
        m2 += a0
        m3 += w11
        m4 += a1
        m5 += a0 * thx + a1 * thy
        b0 += g0
        b1 += g1
        b2 += thx * g0 + thy * g1
        chi2 += rx * g0 + ry * g1
        out[0, j] = dz
        out[1, j] = w00
        out[2, j] = w01
        out[3, j] = w11
        out[4, j] = rx
        out[5, j] = ry
        out[6, j] = g0
        out[7, j] = g1
        out[8, j] = thx
        out[9, j] = thy
    return m0, m1, -m2, m3, -m4, m5, b0, b1, -b2, chi2


def _fit_loop(
    z: np.ndarray, state: np.ndarray, cov: np.ndarray, mass: np.ndarray, mass_var: np.ndarray,
    mass_cov: np.ndarray, use: np.ndarray, n_iter: int, momentum: bool, max_step: float, slot: int, target: float,
    pos: np.ndarray, cov_v: np.ndarray, chi2: np.ndarray, step: np.ndarray, mom_tot: np.ndarray, cov7: np.ndarray,
    dmom: np.ndarray, dtf: np.ndarray,
) -> None:
    """The fit of each of n vertices (inputs as :class:`~sim.detector.vertexing.Daughters`, ``use``
    the mask as float); writes ``pos (n, 3)``, ``cov_v (n, 3, 3)``, ``chi2 (n,)``, ``step (n,)``
    (the last step, mm), and with ``momentum`` ``mom_tot (n, 4)``, ``cov7 (n, 7, 7)``,
    ``dmom (n, k, 4)``; with ``slot >= 0`` ``dtf (n, 3)`` = (constrained mass, its error, Δχ²)."""
    n, k = z.shape
    pr = np.empty((10, k))
    c6 = np.empty((6, 6))
    u0, u1, k0, k1, xr = np.empty(4), np.empty(4), np.empty(4), np.empty(4), np.empty(4)
    own = np.empty((4, 4))
    fm = np.empty((4, 3))
    jac = np.zeros((4, 4))  # (P component, (tx, ty, w, m)); the structural zeros are not used
    hm = np.empty((4, 3))
    c_own = np.empty((4, 4))
    own_s, jac_s, fm_s = np.empty((4, 4)), np.empty((4, 4)), np.empty(3)  # of daughter `slot`
    cpm, pc, g = np.empty(4), np.empty(4), np.empty(4)
    m_slot = 0.0
    for i in range(n):
        x = state[i, :, 0]
        y = state[i, :, 1]
        tx = state[i, :, 2]
        ty = state[i, :, 3]
        zr = z[i]
        us = use[i]
        c = cov[i]
        # unit-weight start: the point closest to all lines (_initial_vertex)
        q0 = q1 = q2 = q3 = q4 = q5 = 0.0
        r0 = r1 = r2 = 0.0
        for j in range(k):
            w = us[j]
            inv = 1.0 / (1.0 + tx[j] * tx[j] + ty[j] * ty[j])
            ux = tx[j] * inv
            uy = ty[j] * inv
            p00 = w - w * tx[j] * ux
            p01 = -w * tx[j] * uy
            p02 = -w * ux
            p11 = w - w * ty[j] * uy
            p12 = -w * uy
            p22 = w - w * inv
            q0 += p00
            q1 += p01
            q2 += p02
            q3 += p11
            q4 += p12
            q5 += p22
            r0 += p00 * x[j] + p01 * y[j] + p02 * zr[j]
            r1 += p01 * x[j] + p11 * y[j] + p12 * zr[j]
            r2 += p02 * x[j] + p12 * y[j] + p22 * zr[j]
        i00, i01, i02, i11, i12, i22 = _inv_sym3(q0 + 1e-9, q1, q2, q3 + 1e-9, q4, q5 + 1e-9)
        vx = i00 * r0 + i01 * r1 + i02 * r2
        vy = i01 * r0 + i11 * r1 + i12 * r2
        vz = i02 * r0 + i12 * r1 + i22 * r2
        last = np.inf
        for _ in range(n_iter):
            nm = _profile_normal(x, y, tx, ty, zr, us, c, vx, vy, vz, pr)
            i00, i01, i02, i11, i12, i22 = _inv_sym3(nm[0], nm[1], nm[2], nm[3], nm[4], nm[5])
            d0 = i00 * nm[6] + i01 * nm[7] + i02 * nm[8]
            d1 = i01 * nm[6] + i11 * nm[7] + i12 * nm[8]
            d2 = i02 * nm[6] + i12 * nm[7] + i22 * nm[8]
            st = math.sqrt(d0 * d0 + d1 * d1 + d2 * d2)
            den = 1e-300 if st < 1e-300 else st  # np.maximum: NaN stays NaN
            fac = max_step / den
            if fac > 1.0:  # np.minimum(1, ·): NaN stays NaN (min() would not keep it)  # noqa: PLR1730
                fac = 1.0
            vx += d0 * fac
            vy += d1 * fac
            vz += d2 * fac
            last = st
            if not st >= 1e-4:  # converged to 0.1 µm (or NaN): not moved again
                break
        step[i] = last
        pos[i, 0] = vx
        pos[i, 1] = vy
        pos[i, 2] = vz
        nm = _profile_normal(x, y, tx, ty, zr, us, c, vx, vy, vz, pr)
        chi2[i] = nm[9]
        i00, i01, i02, i11, i12, i22 = _inv_sym3(nm[0], nm[1], nm[2], nm[3], nm[4], nm[5])
        cov_v[i, 0, 0] = i00
        cov_v[i, 0, 1] = cov_v[i, 1, 0] = i01
        cov_v[i, 0, 2] = cov_v[i, 2, 0] = i02
        cov_v[i, 1, 1] = i11
        cov_v[i, 1, 2] = cov_v[i, 2, 1] = i12
        cov_v[i, 2, 2] = i22
        if not momentum:
            continue
        for r in range(4):
            for col in range(3):
                hm[r, col] = 0.0
            for s_ in range(4):
                c_own[r, s_] = 0.0
        for j in range(k):
            # daughter j's 6 × 6 covariance of (x, y, tx, ty, w, m) from the upper triangles (as _cc)
            for a in range(5):
                for b in range(a, 5):
                    c6[a, b] = c6[b, a] = c[j, a, b]
                c6[a, 5] = c6[5, a] = mass_cov[i, j, a]
            c6[5, 5] = mass_var[i, j]
            dz = pr[0, j]
            w00, w01, w11 = pr[1, j], pr[2, j], pr[3, j]
            g0, g1, thx, thy = pr[6, j], pr[7, j], pr[8, j], pr[9, j]
            for a in range(4):
                u0[a] = c6[0, a + 2] + dz * c6[2, a + 2]  # (C Hᵀ)[a, 0]
                u1[a] = c6[1, a + 2] + dz * c6[3, a + 2]  # (C Hᵀ)[a, 1]
                k0[a] = u0[a] * w00 + u1[a] * w01
                k1[a] = u0[a] * w01 + u1[a] * w11
            w_hat = state[i, j, 4] - (u0[2] * g0 + u1[2] * g1)
            m_hat = mass[i, j] - (u0[3] * g0 + u1[3] * g1)
            for a in range(4):
                for b in range(a, 4):
                    own[a, b] = own[b, a] = c6[a + 2, b + 2] - (k0[a] * u0[b] + k1[a] * u1[b])
                fm[a, 0] = -k0[a]
                fm[a, 1] = -k1[a]
                fm[a, 2] = k0[a] * thx + k1[a] * thy
            u = us[j]
            pmag = 1.0 / w_hat
            nrm2 = 1.0 + thx * thx + thy * thy
            pz = pmag / math.sqrt(nrm2)
            e = math.sqrt(pmag * pmag + m_hat * m_hat)
            dmom[i, j, 0] = thx * pz * u
            dmom[i, j, 1] = thy * pz * u
            dmom[i, j, 2] = pz * u
            dmom[i, j, 3] = e * u
            upz = pz * u
            dtx = -upz * thx / nrm2
            dty = -upz * thy / nrm2
            dw = -upz * pmag
            jac[0, 0] = upz + thx * dtx
            jac[0, 1] = thx * dty
            jac[0, 2] = thx * dw
            jac[1, 0] = thy * dtx
            jac[1, 1] = upz + thy * dty
            jac[1, 2] = thy * dw
            jac[2, 0] = dtx
            jac[2, 1] = dty
            jac[2, 2] = dw
            jac[3, 2] = -u * math.pow(pmag, 3.0) / e
            jac[3, 3] = u * m_hat / e
            # dP/dV = −Σ_j J_j F_j (4 × 3) and Σ_j J_j Cov_own,j J_jᵀ (4 × 4): rows 0-2 of J use
            # (tx, ty, w), row 3 (w, m)
            for r in range(4):
                a_lo = 2 if r == 3 else 0
                a_hi = 4 if r == 3 else 3
                for col in range(3):
                    t = 0.0
                    for a in range(a_lo, a_hi):
                        t += jac[r, a] * fm[a, col]
                    hm[r, col] += t
                for b in range(4):
                    t = 0.0
                    for a in range(a_lo, a_hi):
                        t += jac[r, a] * own[a, b]
                    xr[b] = t
                for s_ in range(r, 4):
                    b_lo = 2 if s_ == 3 else 0
                    b_hi = 4 if s_ == 3 else 3
                    t = 0.0
                    for b in range(b_lo, b_hi):
                        t += xr[b] * jac[s_, b]
                    c_own[r, s_] += t
            if j == slot:
                m_slot = m_hat
                for a in range(4):
                    for b in range(4):
                        jac_s[a, b] = jac[a, b]
                        own_s[a, b] = own[a, b]
                for col in range(3):
                    fm_s[col] = fm[3, col]
        for r in range(4):
            for col in range(3):
                hm[r, col] = -hm[r, col]
            for s_ in range(r + 1, 4):
                c_own[s_, r] = c_own[r, s_]
        cv = cov_v[i]
        c7 = cov7[i]
        for a in range(3):
            for b in range(3):
                c7[a, b] = cv[a, b]
        for r in range(4):  # C_V Hᵀ
            for a in range(3):
                t = 0.0
                for b in range(3):
                    t += cv[a, b] * hm[r, b]
                c7[a, 3 + r] = t
                c7[3 + r, a] = t
        for r in range(4):  # H C_V Hᵀ + C_own (symmetric by construction)
            for s_ in range(r, 4):
                t = 0.0
                for a in range(3):
                    t += hm[r, a] * c7[a, 3 + s_]
                c7[3 + r, 3 + s_] = c7[3 + s_, 3 + r] = t + c_own[r, s_]
        for a in range(4):
            t = 0.0
            for j in range(k):
                t += dmom[i, j, a]
            mom_tot[i, a] = t
        if slot < 0:
            continue
        # the constrained fitted mass of daughter `slot` (vertexing._fit_chunk, `constrain`)
        f0, f1, f2 = fm_s[0], fm_s[1], fm_s[2]
        cf0 = i00 * f0 + i01 * f1 + i02 * f2
        cf1 = i01 * f0 + i11 * f1 + i12 * f2
        cf2 = i02 * f0 + i12 * f1 + i22 * f2
        var_m = own_s[3, 3] + (f0 * cf0 + f1 * cf1 + f2 * cf2)
        resid = target - m_slot
        for r in range(4):
            a_lo = 2 if r == 3 else 0
            a_hi = 4 if r == 3 else 3
            t = 0.0
            for a in range(a_lo, a_hi):
                t += jac_s[r, a] * own_s[a, 3]
            cpm[r] = t - (hm[r, 0] * cf0 + hm[r, 1] * cf1 + hm[r, 2] * cf2)
        for r in range(4):
            pc[r] = mom_tot[i, r] + cpm[r] * (resid / var_m)
        m2 = pc[3] * pc[3] - (pc[0] * pc[0] + pc[1] * pc[1] + pc[2] * pc[2])
        m_c = math.sqrt(0.0 if m2 < 0.0 else m2)
        den = 1e-9 if m_c < 1e-9 else m_c
        g[0], g[1], g[2], g[3] = -pc[0] / den, -pc[1] / den, -pc[2] / den, pc[3] / den
        var = 0.0
        for r in range(4):
            t = 0.0
            for s_ in range(4):
                t += (c7[3 + r, 3 + s_] - cpm[r] * cpm[s_] / var_m) * g[s_]
            var += g[r] * t
        dtf[i, 0] = m_c
        dtf[i, 1] = math.sqrt(0.0 if var < 0.0 else var)
        dtf[i, 2] = resid * resid / var_m


def _decay_time_loop(
    d0: np.ndarray, p0: np.ndarray, mass: np.ndarray, c7: np.ndarray, pv_cov: np.ndarray, n_iter: int, block: int,
    c_light: float, tau_out: np.ndarray, err_out: np.ndarray, chi2_out: np.ndarray,
) -> None:
    """``vertexing._decay_time_rows`` on blocks of ``block`` rows (the iterations stop when every row
    of the block moved τ by < 1e-10 ns, as there): ``d0 (n, 3)`` = SV − PV, ``p0 (n, 4)``, ``mass (n,)``,
    ``c7 (n, 7, 7)``, ``pv_cov (n, 3, 3)``; writes τ (ns), σ_τ and χ² (NaN where undetermined)."""
    n = d0.shape[0]
    nb = min(block, n)
    tau = np.empty(nb)
    a_p = np.empty((nb, 4))
    lam = np.zeros((nb, 3))
    s_up = np.empty((nb, 6))
    v_e = np.empty(nb)
    pairs = ((0, 0), (0, 1), (0, 2), (1, 1), (1, 2), (2, 2))
    w = np.empty(4)
    dw = np.empty(4)
    u = np.empty(3)
    dd = np.empty(3)
    e = np.empty(3)
    for start in range(0, n, block):
        stop = min(start + block, n)
        for r in range(stop - start):
            i = start + r
            p_sq = p0[i, 0] ** 2 + p0[i, 1] ** 2 + p0[i, 2] ** 2
            tau[r] = mass[i] * (d0[i, 0] * p0[i, 0] + d0[i, 1] * p0[i, 1] + d0[i, 2] * p0[i, 2]) / (c_light * p_sq)
            for a in range(4):
                a_p[r, a] = p0[i, a]
            for a in range(3):
                lam[r, a] = 0.0
            for q in range(6):
                a, b = pairs[q]
                s_up[r, q] = c7[i, a, b] + pv_cov[i, a, b]
            v_e[r] = 0.0
        for it in range(max(n_iter, 1)):
            big = 0.0
            nan = False
            for r in range(stop - start):
                i = start + r
                pa0, pa1, pa2, ea = a_p[r, 0], a_p[r, 1], a_p[r, 2], a_p[r, 3]
                m2 = ea * ea - (pa0**2 + pa1**2 + pa2**2)
                if m2 < 1e-12:  # np.maximum: NaN stays NaN  # noqa: PLR1730
                    m2 = 1e-12
                m = math.sqrt(m2)
                f = c_light * tau[r] / m
                g = f / (m * m)
                w[0], w[1], w[2], w[3] = -pa0, -pa1, -pa2, ea
                for a in range(4):
                    t = 0.0
                    for b in range(4):
                        t += c7[i, 3 + a, 3 + b] * w[b]
                    dw[a] = t
                wdw = 0.0
                for a in range(4):
                    wdw += w[a] * dw[a]
                for a in range(3):
                    t = 0.0
                    for b in range(4):
                        t += c7[i, a, 3 + b] * w[b]
                    u[a] = t - f * dw[a]
                for q in range(6):
                    a, b = pairs[q]
                    s_up[r, q] = ((c7[i, a, b] + pv_cov[i, a, b]) - f * (c7[i, a, 3 + b] + c7[i, b, 3 + a])
                                  + f * f * c7[i, 3 + a, 3 + b] + g * (u[a] * a_p[r, b] + a_p[r, a] * u[b])
                                  + (g * g * wdw) * a_p[r, a] * a_p[r, b])
                for a in range(3):
                    dd[a] = d0[i, a] - f * a_p[r, a]
                if it:
                    gwd = 0.0
                    for a in range(4):
                        gwd += w[a] * (p0[i, a] - a_p[r, a])
                    gwd = g * gwd
                    for a in range(3):
                        dd[a] = dd[a] - f * (p0[i, a] - a_p[r, a]) + gwd * a_p[r, a]
                for a in range(3):
                    e[a] = -(c_light / m) * a_p[r, a]
                i00, i01, i02, i11, i12, i22 = _inv_sym3(s_up[r, 0], s_up[r, 1], s_up[r, 2], s_up[r, 3], s_up[r, 4],
                                                         s_up[r, 5])
                l0 = i00 * dd[0] + i01 * dd[1] + i02 * dd[2]
                l1 = i01 * dd[0] + i11 * dd[1] + i12 * dd[2]
                l2 = i02 * dd[0] + i12 * dd[1] + i22 * dd[2]
                ve0 = i00 * e[0] + i01 * e[1] + i02 * e[2]
                ve1 = i01 * e[0] + i11 * e[1] + i12 * e[2]
                ve2 = i02 * e[0] + i12 * e[1] + i22 * e[2]
                v_e[r] = 1.0 / (e[0] * ve0 + e[1] * ve1 + e[2] * ve2)
                dtau = -v_e[r] * (e[0] * l0 + e[1] * l1 + e[2] * l2)
                tau[r] = tau[r] + dtau
                lam[r, 0] = l0 + ve0 * dtau
                lam[r, 1] = l1 + ve1 * dtau
                lam[r, 2] = l2 + ve2 * dtau
                if it + 1 < n_iter:
                    pl = g * (pa0 * lam[r, 0] + pa1 * lam[r, 1] + pa2 * lam[r, 2])
                    q0 = -f * lam[r, 0] - pl * pa0
                    q1 = -f * lam[r, 1] - pl * pa1
                    q2 = -f * lam[r, 2] - pl * pa2
                    q3 = pl * ea
                    for b in range(4):
                        t = 0.0
                        for a in range(3):
                            t += c7[i, a, 3 + b] * lam[r, a]
                        a_p[r, b] = p0[i, b] - (t + (c7[i, 3 + b, 3] * q0 + c7[i, 3 + b, 4] * q1
                                                     + c7[i, 3 + b, 5] * q2 + c7[i, 3 + b, 6] * q3))
                adt = abs(dtau)
                if adt > big:
                    big = adt
                elif math.isnan(adt):  # np.max: a NaN wins
                    nan = True
            if big < 1e-10 and not nan:  # every row of the block converged to 1e-4 fs
                break
        for r in range(stop - start):
            i = start + r
            s00, s01, s02, s11, s12, s22 = s_up[r, 0], s_up[r, 1], s_up[r, 2], s_up[r, 3], s_up[r, 4], s_up[r, 5]
            l0, l1, l2 = lam[r, 0], lam[r, 1], lam[r, 2]
            chi2 = s00 * l0 * l0 + s11 * l1 * l1 + s22 * l2 * l2 + 2.0 * (s01 * l0 * l1 + s02 * l0 * l2 + s12 * l1 * l2)
            ve_r, tau_r = v_e[r], tau[r]
            ok = math.isfinite(ve_r) and ve_r > 0 and math.isfinite(tau_r) and math.isfinite(chi2)
            tau_out[i] = tau_r if ok else np.nan
            err_out[i] = math.sqrt(ve_r) if ok else np.nan
            chi2_out[i] = chi2 if ok else np.nan


decay_time_loop = njit_cached(_decay_time_loop)
"""The compiled :func:`_decay_time_loop`."""

fit_loop = njit_cached(_fit_loop)
"""The compiled :func:`_fit_loop` (same arguments)."""


# IP and IPχ² of one line (``c``: its 5 × 5 covariance) w.r.t. one PV (``p``: 3 × 3): the formula of
# ``vertexing.impact_parameter``, compiled
_ip_one_jit = njit_cached(_ip_terms)


def _solve3(a: np.ndarray, b: np.ndarray, out: np.ndarray) -> None:
    """``out = a⁻¹ b`` for one 3 × 3 ``a`` (LU with partial pivoting, as LAPACK ``dgesv``; ``a`` is overwritten)."""
    piv = [0, 1, 2]
    for col in range(3):
        best, arg = abs(a[col, col]), col
        for r in range(col + 1, 3):
            if abs(a[r, col]) > best:
                best, arg = abs(a[r, col]), r
        if arg != col:
            for q in range(3):
                a[col, q], a[arg, q] = a[arg, q], a[col, q]
            piv[col], piv[arg] = piv[arg], piv[col]
        inv = 1.0 / a[col, col]
        for r in range(col + 1, 3):
            a[r, col] *= inv
            f = a[r, col]
            for q in range(col + 1, 3):
                a[r, q] -= f * a[col, q]
    y0 = b[piv[0]]
    y1 = b[piv[1]] - a[1, 0] * y0
    y2 = b[piv[2]] - a[2, 0] * y0 - a[2, 1] * y1
    out[2] = y2 / a[2, 2]
    out[1] = (y1 - a[1, 2] * out[2]) / a[1, 1]
    out[0] = (y0 - a[0, 1] * out[1] - a[0, 2] * out[2]) / a[0, 0]


_solve3_jit = njit_cached(_solve3)


def _own_pv_loop(
    rows: np.ndarray, lz: np.ndarray, lstate: np.ndarray, lcov: np.ndarray, pv: np.ndarray, pv_cov: np.ndarray,
    pv_mask: np.ndarray, sv: np.ndarray, sv_cov: np.ndarray, vis: np.ndarray, cov7: np.ndarray,
    best: np.ndarray, ip: np.ndarray, ipchi2: np.ndarray, fd: np.ndarray, fdchi2: np.ndarray, dira: np.ndarray,
    mcorr: np.ndarray, mcorr_err: np.ndarray,
) -> None:
    """``vertexing.own_pv_quantities`` row by row: for row ``i`` (line ``i``, PVs ``rows[i]``) the PV with
    the smallest IPχ² among ``pv_mask`` (``numpy.argmin`` rules: the first NaN wins, else the first
    minimum), IP and IPχ² w.r.t. it, FD, FDχ², DIRA of ``sv`` (with ``sv_cov``) and ``vis`` (the
    momentum of DIRA and MCORR), MCORR and its error (``pv_cov ⊕ cov7``, the gradient of
    ``vertexing.corrected_mass``).  Shapes: ``rows (n,)``, ``lz (n,)``, ``lstate (n, 5)``,
    ``lcov (n, 5, 5)``, ``pv (N, m, 3)``, ``pv_cov (N, m, 3, 3)``, ``pv_mask (N, m)``, ``sv (n, 3)``,
    ``sv_cov (n, 3, 3)``, ``vis (n, 4)``, ``cov7 (n, 7, 7)``; outputs ``(n,)``."""
    n = rows.shape[0]
    m = pv.shape[1]
    c = np.empty((3, 3))
    d = np.empty(3)
    sol = np.empty(3)
    jac = np.empty(10)
    for i in range(n):
        r = rows[i]
        x, y, tx, ty, zz = lstate[i, 0], lstate[i, 1], lstate[i, 2], lstate[i, 3], lz[i]
        b = 0
        bv = np.inf
        bip = bc = np.nan
        for j in range(m):
            ipj, cj = _ip_one_jit(zz, x, y, tx, ty, lcov[i], pv[r, j, 0], pv[r, j, 1], pv[r, j, 2], pv_cov[r, j])
            v = cj if pv_mask[r, j] else np.inf
            if j == 0 or math.isnan(v) or v < bv:
                b, bv, bip, bc = j, v, ipj, cj
                if math.isnan(v):
                    break
        best[i] = b
        ip[i] = bip
        ipchi2[i] = bc  # the IPχ² itself (bv is inf where the chosen PV is masked out)
        # flight: d = SV - PV, FDχ² = dᵀ (C_SV + C_PV)⁻¹ d
        for a in range(3):
            d[a] = sv[i, a] - pv[r, b, a]
            for q in range(3):
                c[a, q] = sv_cov[i, a, q] + pv_cov[r, b, a, q]
        dist = math.sqrt(d[0] * d[0] + d[1] * d[1] + d[2] * d[2])
        fd[i] = dist
        _solve3_jit(c, d, sol)
        fdchi2[i] = d[0] * sol[0] + d[1] * sol[1] + d[2] * sol[2]
        p0, p1, p2, e = vis[i, 0], vis[i, 1], vis[i, 2], vis[i, 3]
        pn = math.sqrt(p0 * p0 + p1 * p1 + p2 * p2)
        dira[i] = (d[0] * p0 + d[1] * p1 + d[2] * p2) / (dist * pn)
        # corrected mass s + pT' and its error (vertexing.corrected_mass)
        u0, u1, u2 = d[0] / dist, d[1] / dist, d[2] / dist
        pu = p0 * u0 + p1 * u1 + p2 * u2
        q0, q1, q2 = p0 - pu * u0, p1 - pu * u1, p2 - pu * u2
        pt = math.sqrt(q0 * q0 + q1 * q1 + q2 * q2)
        s2 = e * e - pu * pu
        s = math.sqrt(s2 if s2 > 1e-12 or math.isnan(s2) else 1e-12)
        spt = pt if pt > 1e-12 or math.isnan(pt) else 1e-12
        gd = pu * (1.0 / s + 1.0 / spt) / dist
        jac[0], jac[1], jac[2] = gd * q0, gd * q1, gd * q2  # -g_d (PV)
        jac[3], jac[4], jac[5] = -gd * q0, -gd * q1, -gd * q2  # g_d (SV)
        jac[6] = -(pu / s) * u0 + q0 / spt
        jac[7] = -(pu / s) * u1 + q1 / spt
        jac[8] = -(pu / s) * u2 + q2 / spt
        jac[9] = e / s
        # Σ_a Σ_q J_a C_aq J_q over the block-diagonal 10 × 10 C = C_PV ⊕ cov7 (zeros included), one
        # accumulator in row-major order: the order of numpy's einsum("ni,nij,nj->n") there
        var = 0.0
        for a in range(10):
            for q in range(10):
                if a < 3 and q < 3:
                    caq = pv_cov[r, b, a, q]
                elif a >= 3 and q >= 3:
                    caq = cov7[i, a - 3, q - 3]
                else:
                    caq = 0.0
                var += jac[a] * caq * jac[q]
        mcorr[i] = s + pt
        mcorr_err[i] = math.sqrt(var if var > 0.0 or math.isnan(var) else 0.0)


own_pv_loop = njit_cached(_own_pv_loop)
"""The compiled :func:`_own_pv_loop`."""


def _line_ip_loop(
    rows: np.ndarray, z: np.ndarray, state: np.ndarray, cov: np.ndarray, pv: np.ndarray, pv_cov: np.ndarray,
    ip: np.ndarray, ipchi2: np.ndarray,
) -> None:
    """IP and IPχ² of line ``rows[i]`` (``z (N,)``, ``state (N, 5)``, ``cov (N, 5, 5)``) w.r.t. PV ``i``
    (``pv (n, 3)``, ``pv_cov (n, 3, 3)``), NaN where the line's z, state or covariance is not finite."""
    n = rows.shape[0]
    for i in range(n):
        r = rows[i]
        ok = math.isfinite(z[r])
        for a in range(5):
            ok = ok and math.isfinite(state[r, a])
            for q in range(5):
                ok = ok and math.isfinite(cov[r, a, q])
        if not ok:
            ip[i] = np.nan
            ipchi2[i] = np.nan
            continue
        ip[i], ipchi2[i] = _ip_one_jit(z[r], state[r, 0], state[r, 1], state[r, 2], state[r, 3], cov[r],
                                       pv[i, 0], pv[i, 1], pv[i, 2], pv_cov[i])


line_ip_loop = njit_cached(_line_ip_loop)
"""The compiled :func:`_line_ip_loop`."""


def _track_states_loop(
    base: np.ndarray, covc: np.ndarray, track_type: np.ndarray, z: np.ndarray, state: np.ndarray, cov: np.ndarray,
    ok: np.ndarray,
) -> None:
    """``trackcov.states_from_columns`` row by row, and whether each state is usable in a fit: ``base (9, N)``
    the columns ``x, y, z, tx, ty, charge, px, py, pz``, ``covc (15, N)`` the ``cov_*`` columns (upper
    triangle, row-major), ``track_type (N,)``; writes ``z (N,)``, ``state (N, 5)`` ``(x, y, tx, ty, q/p)``,
    ``cov (N, 5, 5)`` and ``ok (N,)`` (matched, every value finite, q/p != 0)."""
    n = base.shape[1]
    for r in range(n):
        px, py, pz = base[6, r], base[7, r], base[8, r]
        qop = base[5, r] / math.sqrt(px * px + py * py + pz * pz)
        z[r] = base[2, r]
        state[r, 0], state[r, 1], state[r, 2], state[r, 3], state[r, 4] = base[0, r], base[1, r], base[3, r], base[4, r], qop
        good = track_type[r] > 0 and math.isfinite(z[r]) and qop != 0.0
        q = 0
        for a in range(5):
            good = good and math.isfinite(state[r, a])
            for b in range(a, 5):
                v = covc[q, r]
                cov[r, a, b] = v
                cov[r, b, a] = v
                good = good and math.isfinite(v)
                q += 1
        ok[r] = good


track_states_loop = njit_cached(_track_states_loop)
"""The compiled :func:`_track_states_loop`."""


def _track_slot_loop(
    idx: np.ndarray, z: np.ndarray, state: np.ndarray, cov: np.ndarray, j: int, z_out: np.ndarray,
    st_out: np.ndarray, cv_out: np.ndarray, charge_out: np.ndarray,
) -> int:
    """``vertexing.track_daughters`` of tracks ``idx`` of one track's ``z (N,)``, ``state (N, 5)``,
    ``cov (N, 5, 5)`` into daughter slot ``j`` of ``z_out (n, k)``, ``st_out (n, k, 5)``,
    ``cv_out (n, k, 5, 5)``, ``charge_out (n, k)`` (``w = |q/p|``, the q/p row and column of the
    covariance times the sign); returns the number of rows with a non-finite value or q/p = 0."""
    bad = 0
    for i in range(idx.shape[0]):
        r = idx[i]
        q = state[r, 4]
        s = 1.0 if q > 0 else (-1.0 if q < 0 else q)  # numpy.sign (0 and NaN stay)
        good = math.isfinite(z[r]) and math.isfinite(q) and q != 0.0
        z_out[i, j] = z[r]
        for a in range(4):
            st_out[i, j, a] = state[r, a]
            good = good and math.isfinite(state[r, a])
        st_out[i, j, 4] = abs(q)
        for a in range(5):
            for b in range(5):
                v = cov[r, a, b]
                good = good and math.isfinite(v)
                if a == 4:
                    v = v * s
                if b == 4:
                    v = v * s
                cv_out[i, j, a, b] = v
        charge_out[i, j] = s
        if not good:
            bad += 1
    return bad


track_slot_loop = njit_cached(_track_slot_loop)
"""The compiled :func:`_track_slot_loop`."""


def _composite_line_loop(pos: np.ndarray, p4: np.ndarray, p_cubed: np.ndarray, cov7: np.ndarray, state: np.ndarray,
                         mass: np.ndarray, out: np.ndarray) -> None:
    """``vertexing._state_of`` row by row: the line state ``(x, y, tx, ty, 1/p)`` ``(n, 5)``, the mass
    ``(n,)`` and the 6 × 6 covariance of ``(x, y, tx, ty, w, m)`` ``(n, 6, 6)`` of fitted composites
    (``pos (n, 3)``, ``p4 (n, 4)``, ``cov7 (n, 7, 7)``; ``p_cubed (n,)`` = ``|p|³`` from numpy's ``**``,
    whose SIMD power differs from libm's ``pow`` in the last bit): the Jacobian built per row, then
    ``½ (J C Jᵀ + (J C Jᵀ)ᵀ)`` with ``J C`` first, as numpy's ``(J @ C) @ Jᵀ``."""
    n = pos.shape[0]
    jac = np.zeros((6, 7))
    jc = np.empty((6, 7))
    for i in range(n):
        px, py, pz, e = p4[i, 0], p4[i, 1], p4[i, 2], p4[i, 3]
        p = math.sqrt(px * px + py * py + pz * pz)
        m2 = e * e - p * p
        m = math.sqrt(m2 if m2 > 1e-12 or math.isnan(m2) else 1e-12)
        tx, ty = px / pz, py / pz
        state[i, 0], state[i, 1], state[i, 2], state[i, 3], state[i, 4] = pos[i, 0], pos[i, 1], tx, ty, 1.0 / p
        mass[i] = m
        p3 = p_cubed[i]
        jac[0, 0] = 1.0
        jac[0, 2] = -tx
        jac[1, 1] = 1.0
        jac[1, 2] = -ty
        jac[2, 3] = 1.0 / pz
        jac[2, 5] = -px / (pz * pz)
        jac[3, 4] = 1.0 / pz
        jac[3, 5] = -py / (pz * pz)
        for a in range(3):
            jac[4, 3 + a] = -p4[i, a] / p3
            jac[5, 3 + a] = -p4[i, a] / m
        jac[5, 6] = e / m
        for a in range(6):
            for b in range(7):
                t = 0.0
                for c in range(7):
                    t += jac[a, c] * cov7[i, c, b]
                jc[a, b] = t
        for a in range(6):
            for b in range(a, 6):
                t = 0.0
                u = 0.0
                for c in range(7):
                    t += jc[a, c] * jac[b, c]
                    u += jc[b, c] * jac[a, c]
                out[i, a, b] = out[i, b, a] = 0.5 * (t + u)


composite_line_loop = njit_cached(_composite_line_loop)
"""The compiled :func:`_composite_line_loop`."""
