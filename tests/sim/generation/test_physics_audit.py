"""Physics audit: samples made through the public API against independent analytic computations.

Every expectation below is computed here from the physics (helicity formalism, phase space,
CLN form factors, PDG lifetimes, the soft-photon eikonal), not from Mambah's kernels.  The
samples come from ``load_decay`` + ``generate_tables`` (what ``mambah run --decay`` calls) with
``descriptor_models="physical"`` (the ``Generator``/CLI default) unless a test says otherwise.
Statistical tests at fixed seeds; thresholds p > 1e-3 (or |pull| < 4).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from sim.generation.decay import C_LIGHT, load_decay
from sim.generation.generator import generate_tables

M_MU = 105.6583755  # PDG 2024 [MeV]
ALPHA = 7.2973525693e-3
#: stable set that keeps the table away from the final state (fast: no table completions)
STABLE = ("e-", "mu-", "pi+", "K+", "p+", "n0", "gamma", "nu_e", "nu_mu", "nu_tau", "K_L0", "pi0", "D*+")


class Sample:
    """A generated sample with mother links resolved (rows sorted by event, index)."""

    def __init__(
        self, decay: str | None, n: int, seed: int, *, dec_file: Path | None = None, models: str = "physical", cc_fraction: float = 0.5, **kw: object
    ) -> None:
        if dec_file is not None:
            model = load_decay(dec_file=dec_file, **kw)  # type: ignore[arg-type]
        else:
            model = load_decay(decay, descriptor_models=models, **kw)  # type: ignore[arg-type]
        tabs = generate_tables(model, n, np.random.default_rng(seed), cc_fraction=cc_fraction)
        self.p: pd.DataFrame = tabs["mc_particles"].to_pandas()
        self.v: pd.DataFrame = tabs["mc_vertices"].to_pandas()
        self.ev = self.p.event.to_numpy()
        self.start = np.searchsorted(self.ev, np.arange(self.ev.max() + 1))
        self.pid = self.p.pid.to_numpy()
        self.p4 = self.p[["px", "py", "pz", "e"]].to_numpy()
        m = self.p.mother.to_numpy()
        self.mrow = np.where(m >= 0, self.start[self.ev] + np.maximum(m, 0), -1)
        self.mpid = np.where(m >= 0, self.pid[np.maximum(self.mrow, 0)], 0)

    def rows(self, pid: int, mother_pid: int | None = None) -> np.ndarray:
        sel = self.pid == pid
        if mother_pid is not None:
            sel &= self.mpid == mother_pid
        return np.flatnonzero(sel)


def boost_to(p4: np.ndarray, frame: np.ndarray) -> np.ndarray:
    """``(n, 4)`` four-vectors in the rest frame of ``frame`` ``(n, 4)``."""
    b = frame[:, :3] / frame[:, 3:4]
    b2 = np.sum(b * b, axis=1)
    g = 1.0 / np.sqrt(1.0 - b2)
    bp = np.sum(b * p4[:, :3], axis=1)
    g2 = np.where(b2 > 0, (g - 1) / np.where(b2 > 0, b2, 1.0), 0.0)
    return np.column_stack([p4[:, :3] + (g2 * bp - g * p4[:, 3])[:, None] * b, g * (p4[:, 3] - bp)])


def helicity_cos(d: np.ndarray, parent: np.ndarray, grand: np.ndarray) -> np.ndarray:
    """cosθ of daughter d in the parent's rest frame, w.r.t. the parent's flight direction in the grandparent's frame."""
    dd, gg = boost_to(d, parent)[:, :3], boost_to(grand, parent)[:, :3]
    return -np.sum(dd * gg, axis=1) / np.linalg.norm(dd, axis=1) / np.linalg.norm(gg, axis=1)


def inv_mass(p4: np.ndarray) -> np.ndarray:
    return np.sqrt(np.maximum(p4[:, 3] ** 2 - np.sum(p4[:, :3] ** 2, axis=1), 0.0))


def pstar(big_m: np.ndarray | float, m1: np.ndarray | float, m2: np.ndarray | float) -> np.ndarray:
    """Two-body momentum [MeV] (Källén function)."""
    a, b, c = np.asarray(big_m) ** 2, np.asarray(m1) ** 2, np.asarray(m2) ** 2
    return np.sqrt(np.maximum(a * a + b * b + c * c - 2 * a * b - 2 * a * c - 2 * b * c, 0.0)) / (2 * np.sqrt(a))


def chi2_pvalue(obs_x: np.ndarray, edges: np.ndarray, expected_frac: np.ndarray) -> float:
    """χ² p-value of a histogram of ``obs_x`` against expected bin fractions (bins with > 20 expected)."""
    obs, _ = np.histogram(obs_x, edges)
    exp = expected_frac / expected_frac.sum() * obs.sum()
    k = exp > 20
    c2 = float(np.sum((obs - exp)[k] ** 2 / exp[k]))
    return float(stats.chi2.sf(c2, int(k.sum()) - 1))


# ----------------------------------------------------------------------------- helicity angles


def test_dstar_from_b0_to_dstar_pi_is_longitudinal_cos2() -> None:
    """B0 -> D*- pi+ (SVS), D*- -> anti-D0 pi- (VSS): a spin-0 parent gives the D* helicity 0, so the pion's
    helicity angle is |d^1_00|² = cos²θ: density 3/2 cos²θ, CDF (c³ + 1)/2."""
    s = Sample("B0 -> (D*- -> (anti-D0 -> K+ pi-) pi-) pi+", 60_000, 1)
    rd, rpi = s.rows(-413, 511), s.rows(-211, -413)
    c = helicity_cos(s.p4[rpi], s.p4[rd], s.p4[s.mrow[rd]])
    assert stats.kstest(c, lambda x: (x**3 + 1) / 2).pvalue > 1e-3
    assert stats.kstest(c, stats.uniform(-1, 2).cdf).pvalue < 1e-10  # not flat


def test_jpsi_muon_helicity_angle_from_b_to_jpsi_k() -> None:
    """B+ -> J/psi K+, J/psi -> mu+ mu-: helicity-0 J/psi; the vector current gives non-flip amplitudes ∝ M
    (|d^1_{0,±1}|² = sin²θ/2) and flip ones ∝ 2m (|d^1_00|² = cos²θ): dΓ/dcosθ ∝ 1 − β² cos²θ, β² = 1 − 4m²/M²."""
    s = Sample("B+ -> (J/psi -> mu+ mu-) K+", 100_000, 2)
    rj, rmu = s.rows(443, 521), s.rows(-13, 443)
    c = helicity_cos(s.p4[rmu], s.p4[rj], s.p4[s.mrow[rj]])
    b2 = 1 - 4 * M_MU**2 / 3096.9**2
    norm = 2 - 2 * b2 / 3
    assert stats.kstest(c, lambda x: ((x + 1) - b2 * (x**3 + 1) / 3) / norm).pvalue > 1e-3
    # 1 + cos²θ (a transverse J/psi) is excluded
    assert stats.kstest(c, lambda x: ((x + 1) + (x**3 + 1) / 3) / (8 / 3)).pvalue < 1e-10


def test_b0_to_jpsi_kstar_svv_helamp_three_projections() -> None:
    """B0 -> J/psi K*0 with DECAY_LHCB.DEC's SVV_HELAMP (|H+| 0.159 arg 1.563, |H0| 0.775, |H−| 0.612 arg 2.712).

    Integrating the helicity amplitude Σ_λ H_λ d^1_{λ0}(θ_K) d^1_{λσ}(θ_ℓ) e^{iλχ} over two angles:
    cosθ_K ∝ 2 f_L cos² + (1 − f_L) sin², cosθ_ℓ ∝ f_L L(c) + (1 − f_L) T(c) (with the muon-mass
    flip terms), |⟨e^{2iχ}⟩| = |H+||H−| / (2 Σ|H|²), f_L = |H0|²/Σ|H|²."""
    s = Sample("B0 -> (J/psi -> mu+ mu-) (K*0 -> K+ pi-)", 60_000, 5)
    rj, rk = s.rows(443, 511), s.rows(313, 511)
    rmup, rmum, rK, rpi = s.rows(-13, 443), s.rows(13, 443), s.rows(321, 313), s.rows(-211, 313)
    big_b = s.p4[s.mrow[rj]]
    hp, h0, hm = 0.159 * np.exp(1.563j), 0.775 + 0j, 0.612 * np.exp(2.712j)
    tot = abs(hp) ** 2 + abs(h0) ** 2 + abs(hm) ** 2
    f_l = abs(h0) ** 2 / tot
    ck = helicity_cos(s.p4[rK], s.p4[rk], big_b)
    assert stats.kstest(ck, lambda x: f_l * (x**3 + 1) / 2 + (1 - f_l) * 0.75 * ((x + 1) - (x**3 + 1) / 3)).pvalue > 1e-3
    cl = helicity_cos(s.p4[rmup], s.p4[rj], big_b)
    e = 4 * M_MU**2 / 3096.9**2  # 1 − β²

    def cdf_l(x: np.ndarray) -> np.ndarray:
        lon = ((x + 1) - (x**3 + 1) / 3) + e * (x**3 + 1) / 3
        tra = 0.5 * ((x + 1) + (x**3 + 1) / 3) + e * 0.5 * ((x + 1) - (x**3 + 1) / 3)
        return np.asarray((f_l * lon + (1 - f_l) * tra) / (4 / 3 + 2 * e / 3))

    assert stats.kstest(cl, cdf_l).pvalue > 1e-3
    # decay-plane angle: normals of (mu+, mu-) and (K+, pi-) in the B frame
    a1, a2, b1, b2 = (boost_to(s.p4[r], big_b)[:, :3] for r in (rmup, rmum, rK, rpi))
    axis = (a1 + a2) / np.linalg.norm(a1 + a2, axis=1)[:, None]
    na, nb = np.cross(a1, a2), np.cross(b1, b2)
    na /= np.linalg.norm(na, axis=1)[:, None]
    nb /= np.linalg.norm(nb, axis=1)[:, None]
    chi = np.arctan2(np.sum(np.cross(na, nb) * axis, axis=1), np.sum(na * nb, axis=1))
    moment = np.mean(np.exp(2j * chi))
    err = 1 / math.sqrt(2 * len(chi))
    assert abs(abs(moment) - abs(hp) * abs(hm) / (2 * tot)) < 4 * err
    # its phase is the strong-phase difference (up to the sign convention of χ and a π)
    dphi = float(np.angle(hp * np.conj(hm)))
    assert min(abs(np.angle(moment * np.exp(-1j * x))) for x in (dphi, -dphi, dphi + math.pi, -dphi + math.pi)) < 4 * err / abs(moment)


# ----------------------------------------------------------------------------- phase space


def test_d0_to_k_pi_pi0_phase_space_dalitz_is_flat() -> None:
    """D0 -> K- pi+ pi0 (PHSP as written): uniform in (m²(Kπ), m²(ππ0)); the m²(Kπ) marginal is the
    slice length ∝ p*(M; m12, m3) p*(m12; m1, m2) / m12, and the 2-D histogram is flat in every cell
    that lies entirely inside the Dalitz plot."""
    s = Sample("D0 -> K- pi+ pi0", 200_000, 4, stable=STABLE)
    k, pi, pz = s.p4[s.rows(-321, 421)], s.p4[s.rows(211, 421)], s.p4[s.rows(111, 421)]
    big_m, mk, mpi, mpz = 1864.84, 493.677, 139.57039, 134.9768
    s12, s23 = inv_mass(k + pi) ** 2, inv_mass(pi + pz) ** 2
    edges = np.linspace((mk + mpi) ** 2, (big_m - mpz) ** 2, 41)
    fine = np.linspace(edges[0], edges[-1], 40_001)
    r = np.sqrt(fine)
    dens = pstar(big_m, r, mpz) * pstar(r, mk, mpi) / r
    cum = np.concatenate([[0.0], np.cumsum((dens[1:] + dens[:-1]) / 2 * np.diff(fine))])
    assert chi2_pvalue(s12, edges, np.diff(np.interp(edges, fine, cum))) > 1e-3
    h2, xe, ye = np.histogram2d(s12, s23, bins=30)
    gx, gy = np.meshgrid(xe[0] + (xe[-1] - xe[0]) * (np.arange(1200) + 0.5) / 1200, ye[0] + (ye[-1] - ye[0]) * (np.arange(1200) + 0.5) / 1200, indexing="ij")
    e2, e3 = (gx - mk**2 + mpi**2) / (2 * np.sqrt(gx)), (big_m**2 - gx - mpz**2) / (2 * np.sqrt(gx))
    q2, q3 = np.sqrt(np.maximum(e2**2 - mpi**2, 0)), np.sqrt(np.maximum(e3**2 - mpz**2, 0))
    inside = (e3 > mpz) & (gy > (e2 + e3) ** 2 - (q2 + q3) ** 2) & (gy < (e2 + e3) ** 2 - (q2 - q3) ** 2)
    frac = inside.reshape(30, 40, 30, 40).mean(axis=(1, 3))
    full = frac > 0.999
    exp = frac[full] / frac.sum() * len(s12)
    c2 = float(np.sum((h2[full] - exp) ** 2 / exp))
    assert stats.chi2.sf(c2, int(full.sum()) - 1) > 1e-3


def test_kstar_line_shape_is_breit_wigner_times_phase_space() -> None:
    """B0 -> J/psi (K*0 -> K+ pi-), all PHSP: the documented line shape, non-relativistic BW(m0, Γ) × p*(B; J/psi, m)
    × p*(m; K, π), on [m_K + m_π, m_B − m_J/ψ] — computed here and compared by KS."""
    s = Sample("B0 -> (J/psi -> mu+ mu-) (K*0 -> K+ pi-)", 50_000, 12, models="phase-space")
    m = s.p.mass.to_numpy()[s.rows(313, 511)]
    from particle import Particle

    kst = Particle.from_pdgid(313)  # the particle package's K*(892)0: 895.56, 47.1 (PDG 2024: 895.55 ± 0.20, 47.3 ± 0.5)
    m0, gam = float(kst.mass or 0.0), float(kst.width or 0.0)
    lo, hi = 493.677 + 139.57039, 5279.72 - 3096.9
    grid = np.linspace(lo, hi, 200_001)
    dens = pstar(5279.72, 3096.9, grid) * pstar(grid, 493.677, 139.57039) / ((grid - m0) ** 2 + gam**2 / 4)
    cum = np.concatenate([[0.0], np.cumsum((dens[1:] + dens[:-1]) / 2 * np.diff(grid))])
    cum /= cum[-1]
    assert stats.kstest(m, lambda x: np.interp(x, grid, cum)).pvalue > 1e-3
    # and it is not the bare Breit–Wigner (the p* factors matter near threshold)
    bw = np.arctan((grid - m0) * 2 / gam)
    bw = (bw - bw[0]) / (bw[-1] - bw[0])
    assert stats.kstest(m, lambda x: np.interp(x, grid, bw)).pvalue < 1e-6


# ----------------------------------------------------------------------------- lifetimes and flight

#: PDG 2024 mean lives (R. L. Workman et al. / S. Navas et al., Phys. Rev. D 110 (2024) 030001) [ns] and errors
PDG_TAU = {
    511: (1.517e-3, 0.004e-3), 521: (1.638e-3, 0.004e-3), 531: (1.520e-3, 0.005e-3), 5122: (1.468e-3, 0.009e-3),
    421: (0.4103e-3, 0.0010e-3), 411: (1.033e-3, 0.005e-3), 431: (0.5012e-3, 0.0022e-3),
    310: (0.08954, 0.00004), 3122: (0.2617, 0.0010),
}


def _flight(s: Sample, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(proper time from the flight distance [ns], lab time [ns], flight vectors (n, 3) [mm], γ)."""
    vi = s.v.set_index(["event", "index"])[["x", "y", "z", "t"]]
    ev = s.ev[rows]
    pv = vi.loc[list(zip(ev, s.p.prod_vertex.to_numpy()[rows], strict=True))].to_numpy()
    dv = vi.loc[list(zip(ev, s.p.decay_vertex.to_numpy()[rows], strict=True))].to_numpy()
    p4 = s.p4[rows]
    m, pm = inv_mass(p4), np.linalg.norm(p4[:, :3], axis=1)
    d = dv[:, :3] - pv[:, :3]
    return np.linalg.norm(d, axis=1) * m / pm / C_LIGHT, dv[:, 3] - pv[:, 3], d, p4[:, 3] / m


@pytest.mark.parametrize(
    ("decay", "pid", "mother"),
    [
        ("B0 -> K+ pi-", 511, None), ("B+ -> K+ pi0", 521, None), ("B_s0 -> K+ K-", 531, None), ("Lambda_b0 -> p+ K-", 5122, None),
        ("D0 -> K- pi+", 421, None), ("D+ -> K- pi+ pi+", 411, None), ("D_s+ -> K+ K- pi+", 431, None),
        ("B0 -> (J/psi -> mu+ mu-) K_S0", 310, 511), ("Lambda_b0 -> (J/psi -> mu+ mu-) Lambda0", 3122, 5122),
    ],
)
def test_proper_time_is_exponential_with_the_pdg_lifetime(decay: str, pid: int, mother: int | None) -> None:
    """Proper time from |decay − production vertex| · m/|p| / c: exponential (KS) with the PDG 2024 τ (the mean,
    the MLE, within 4σ of stat ⊕ PDG error); the lab time is γ t and the flight is along the momentum.  K_S0 and
    Λ are decayed by the table where they fly."""
    s = Sample(decay, 40_000, 7)
    rows = s.rows(pid, mother)
    rows = rows[s.p.decay_vertex.to_numpy()[rows] >= 0]
    assert len(rows) == 40_000
    t, t_lab, d, gamma = _flight(s, rows)
    tau, err = PDG_TAU[pid]
    assert abs(t.mean() - tau) < 4 * math.hypot(t.mean() / math.sqrt(len(t)), err)
    assert stats.kstest(t, stats.expon(scale=tau).cdf).pvalue > 1e-3
    np.testing.assert_allclose(t_lab, gamma * t, rtol=1e-8, atol=1e-15)
    cosd = np.sum(d * s.p4[rows, :3], axis=1) / np.linalg.norm(d, axis=1) / np.linalg.norm(s.p4[rows, :3], axis=1)
    assert cosd.min() > 1 - 1e-9


def test_long_lived_fraction_decaying_beyond_one_metre() -> None:
    """K_S0 from B0 -> J/psi K_S0: P(L > 1 m) = ⟨exp(−1 m / (βγ c τ))⟩ over the sample's own momenta (binomial)."""
    s = Sample("B0 -> (J/psi -> mu+ mu-) K_S0", 40_000, 3)
    rows = s.rows(310, 511)
    _, _, d, _ = _flight(s, rows)
    bgct = np.linalg.norm(s.p4[rows, :3], axis=1) / inv_mass(s.p4[rows]) * C_LIGHT * PDG_TAU[310][0]
    expected = float(np.mean(np.exp(-1000.0 / bgct)))
    observed = float(np.mean(np.linalg.norm(d, axis=1) > 1000.0))
    assert abs(observed - expected) < 4 * math.sqrt(expected * (1 - expected) / len(rows))
    assert 0.2 < expected < 0.6  # a real fraction of them fly past a metre


# ----------------------------------------------------------------------------- semileptonic


def test_b0_to_dstar_mu_nu_hqet2_spectra_against_cln() -> None:
    """B0 -> D*- mu+ nu_mu (the descriptor gets DECAY_LHCB.DEC's HQET2 1.207 0.920 1.406 0.853, no R0):
    q², lepton energy in the B frame and cosθ_ℓ against CLN form factors (Caprini, Lellouch, Neubert,
    Nucl. Phys. B 530 (1998) 153) with the helicity amplitudes H±, H0 and the massive-lepton rate
    dΓ ∝ |p| q² (1 − m²/q²)² [(1+c)²H−² + (1−c)²H+² + 2 sin²θ H0² + m²/q² (sin²θ (H+² + H−²) + 2 cos²θ H0²)]
    (H_t = 0 without R0, as in EvtGen), θ the charged lepton's angle to the W direction in the W frame."""
    s = Sample("B0 -> D*- mu+ nu_mu", 60_000, 8, stable=STABLE)
    rb, rmu, rnu = s.rows(511), s.rows(-13, 511), s.rows(14, 511)
    big_b, mu, nu = s.p4[rb], s.p4[rmu], s.p4[rnu]
    w4 = mu + nu
    q2, e_l, cth = inv_mass(w4) ** 2, boost_to(mu, big_b)[:, 3], helicity_cos(mu, w4, big_b)
    big_m, m, ml = 5279.72, 2010.26, M_MU
    rho2, ha1_1, r1_1, r2_1 = 1.207, 0.920, 1.406, 0.853

    def rate(q: np.ndarray, c: np.ndarray) -> np.ndarray:
        w = (big_m**2 + m**2 - q) / (2 * big_m * m)
        z = (np.sqrt(w + 1) - math.sqrt(2)) / (np.sqrt(w + 1) + math.sqrt(2))
        r = 2 * math.sqrt(big_m * m) / (big_m + m)
        ha1 = ha1_1 * (1 - 8 * rho2 * z + (53 * rho2 - 15) * z**2 - (231 * rho2 - 91) * z**3)
        a1, a2 = (w + 1) / 2 * r * ha1, (r2_1 + 0.11 * (w - 1) - 0.06 * (w - 1) ** 2) * ha1 / r
        v = (r1_1 - 0.12 * (w - 1) + 0.05 * (w - 1) ** 2) * ha1 / r
        pp = pstar(big_m, m, np.sqrt(q))
        hp, hm = (big_m + m) * a1 - 2 * big_m * pp / (big_m + m) * v, (big_m + m) * a1 + 2 * big_m * pp / (big_m + m) * v
        h0 = ((big_m**2 - m**2 - q) * (big_m + m) * a1 - 4 * big_m**2 * pp**2 / (big_m + m) * a2) / (2 * m * np.sqrt(q))
        e = ml**2 / q
        amp = (1 + c) ** 2 * hm**2 + (1 - c) ** 2 * hp**2 + 2 * (1 - c * c) * h0**2 + e * ((1 - c * c) * (hp**2 + hm**2) + 2 * h0**2 * c * c)
        return np.asarray(pp * q * (1 - e) ** 2 * amp)

    lo, hi = ml**2, (big_m - m) ** 2
    qg, cg = np.meshgrid(lo + (hi - lo) * (np.arange(3000) + 0.5) / 3000, -1 + 2 * (np.arange(200) + 0.5) / 200, indexing="ij")
    dens = rate(qg, cg)
    e_w, p_w = (big_m**2 + qg - m**2) / (2 * big_m), pstar(big_m, m, np.sqrt(qg))
    e_s, p_s = (qg + ml**2) / (2 * np.sqrt(qg)), (qg - ml**2) / (2 * np.sqrt(qg))
    e_grid = (e_w * e_s + p_w * p_s * cg) / np.sqrt(qg)
    for x, grid, edges in (
        (q2, qg, np.linspace(lo, hi, 41)),
        (e_l, e_grid, np.linspace(ml, float(e_grid.max()) * 1.0001, 41)),
        (cth, cg, np.linspace(-1, 1, 41)),
    ):
        expected, _ = np.histogram(grid.ravel(), edges, weights=dens.ravel())
        assert chi2_pvalue(x, edges, expected) > 1e-3
    # sensitivity: phase space (|M|² = 1) is excluded in q²
    ps, _ = np.histogram(qg.ravel(), np.linspace(lo, hi, 41), weights=(pstar(big_m, m, np.sqrt(qg)) * qg * (1 - ml**2 / qg) ** 2 / qg).ravel())
    assert chi2_pvalue(q2, np.linspace(lo, hi, 41), ps) < 1e-10


# ----------------------------------------------------------------------------- branching fractions, CC, conservation


def test_dec_block_mode_fractions_and_cdecay(tmp_path: Path) -> None:
    """Three modes 0.5 / 0.3 / 0.2 (multinomial χ²) and a CDecay: both flavours, half each (binomial)."""
    dec = tmp_path / "b0.dec"
    dec.write_text("Decay B0\n0.5 K+ pi- PHSP;\n0.3 K+ K- PHSP;\n0.2 pi+ pi- pi0 PHSP;\nEnddecay\nCDecay anti-B0\nEnd\n")
    s = Sample(None, 60_000, 9, dec_file=dec, mother="B0", stable=STABLE)
    heads = s.pid[s.p.mother.to_numpy() == -1]
    assert stats.binomtest(int((heads == 511).sum()), len(heads), 0.5).pvalue > 1e-3
    kids = s.p[s.p.mother == 0]
    modes = kids.groupby("event").pid.apply(lambda x: tuple(sorted(abs(x)))).value_counts()
    obs = np.array([modes.get((211, 321), 0), modes.get((321, 321), 0), modes.get((111, 211, 211), 0)])
    assert obs.sum() == 60_000
    assert stats.chisquare(obs, obs.sum() * np.array([0.5, 0.3, 0.2])).pvalue > 1e-3
    # the conjugate's daughters are the conjugates: the K from B0 is K+, from anti-B0 K-
    b = pd.Series(heads, index=s.p[s.p.mother == -1].event)
    kaon = kids[(abs(kids.pid) == 321) & kids.event.isin(b.index[b.abs() == 511])]
    two = kaon.groupby("event").pid.sum()
    kpi = two[two != 0]  # K+ K- pairs sum to zero
    assert (np.sign(kpi) == np.sign(b.reindex(kpi.index))).all()


def test_cc_fraction_and_mirrored_kinematics() -> None:
    """[B+ -> J/psi(mu+ mu-) K+]cc at cc_fraction 0.3: 30 % B− (binomial); the CP image has the same mu+ (B+) /
    mu− (B−) helicity-angle and K± lab-momentum distributions (two-sample KS)."""
    s = Sample("[B+ -> (J/psi -> mu+ mu-) K+]cc", 60_000, 13, cc_fraction=0.3)
    heads = s.pid[s.p.mother.to_numpy() == -1]
    assert stats.binomtest(int((heads == -521).sum()), len(heads), 0.3).pvalue > 1e-3
    cos = {}
    pk = {}
    for sign in (1, -1):
        rj, rmu = s.rows(443, 521 * sign), s.rows(-13 * sign, 443)
        rmu = rmu[np.isin(s.mrow[rmu], rj)]
        cos[sign] = helicity_cos(s.p4[rmu], s.p4[s.mrow[rmu]], s.p4[s.mrow[s.mrow[rmu]]])
        pk[sign] = np.linalg.norm(s.p4[s.rows(321 * sign, 521 * sign), :3], axis=1)
    assert stats.ks_2samp(cos[1], cos[-1]).pvalue > 1e-3
    assert stats.ks_2samp(pk[1], pk[-1]).pvalue > 1e-3


def test_full_table_tree_conserves_four_momentum_and_charge_with_masses_on_shell() -> None:
    """B0 -> D*- pi+ completed by DECAY_LHCB.DEC (D* -> D π, D0 -> anything, PHOTOS, K_S0, π0 ...): at every vertex
    Σ daughters = mother (1e-8 relative) and Σ charges = mother's charge; narrow particles (Γ < 0.1 MeV) at the
    PDG mass; wide ones above their daughters' sum."""
    from particle import Particle

    s = Sample("B0 -> D*- pi+", 3_000, 14)
    kid = np.flatnonzero(s.mrow >= 0)
    n = len(s.p)
    sums, charges = np.zeros((n, 4)), np.zeros(n)
    np.add.at(sums, s.mrow[kid], s.p4[kid])
    np.add.at(charges, s.mrow[kid], s.p.charge.to_numpy()[kid])
    dec = np.flatnonzero(s.p.first_daughter.to_numpy() >= 0)
    assert np.max(np.abs(sums[dec] - s.p4[dec]) / s.p4[dec, 3:4]) < 1e-8
    assert (charges[dec] == s.p.charge.to_numpy()[dec]).all()
    mass = s.p.mass.to_numpy()
    np.testing.assert_allclose(inv_mass(s.p4[dec]), mass[dec], rtol=1e-6, atol=1e-3)
    for pid in np.unique(s.pid):
        part = Particle.from_pdgid(int(pid))
        rows = s.pid == pid
        assert (np.sign(s.p.charge.to_numpy()[rows]) == np.sign(float(part.charge or 0))).all()
        if part.mass is not None and (part.width is None or part.width < 0.1):
            np.testing.assert_allclose(mass[rows], part.mass, rtol=1e-9, atol=1e-9, err_msg=part.name)
    wide = dec[mass[dec] > 0]
    kid_mass = np.zeros(n)
    np.add.at(kid_mass, s.mrow[kid], mass[kid])
    assert (mass[wide] >= kid_mass[wide] - 1e-6).all()


def test_photos_jpsi_to_mu_mu_radiates_the_eikonal_fraction(tmp_path: Path) -> None:
    """J/psi -> mu+ mu- with PHOTOS, through the engine: the fraction of decays with a photon above E in the J/psi
    frame is the soft-photon (α/π·log) estimate of the ± pair, 1 − (E/k_max)^((α/π)[(1+β²)/β ln((1+β)/(1−β)) − 2])
    (YFS / Weinberg eikonal with the interference of the two charges; → (2α/π)(ln(M²/m²) − 1) ln(k_max/E))."""
    dec = tmp_path / "b.dec"
    dec.write_text("Decay B+\n1.0 J/psi K+ SVS;\nEnddecay\nDecay J/psi\n1.0 mu+ mu- PHOTOS VLL;\nEnddecay\nEnd\n")
    n = 100_000
    s = Sample(None, n, 10, dec_file=dec)
    rg = s.rows(22, 443)
    e_gamma = boost_to(s.p4[rg], s.p4[s.mrow[rg]])[:, 3]
    big_m, m = 3096.9, M_MU
    beta = math.sqrt(1 - 4 * m * m / big_m**2)
    exponent = ALPHA / math.pi * ((1 + beta**2) / beta * math.log((1 + beta) / (1 - beta)) - 2)
    k_max = ((big_m - m) ** 2 - m * m) / (2 * (big_m - m))
    for threshold in (10.0, 50.0, 300.0):
        expected = 1 - (threshold / k_max) ** exponent
        observed = len(np.unique(s.ev[rg][e_gamma > threshold])) / n
        assert abs(observed - expected) < 0.02 * expected + 4 * math.sqrt(expected * (1 - expected) / n), (threshold, observed, expected)


def test_dstar_polarisation_from_hqet2_reaches_its_decay() -> None:
    """B0 -> (D*- -> anti-D0 pi-) mu+ nu_mu: the pion's helicity angle in the D* frame is
    3/2 f_L cos²θ + 3/4 (1 − f_L) sin²θ with f_L = ∫ H0² / ∫ (H+² + H−² + H0²) over the CLN q² spectrum
    (the same amplitudes as above, massive muon: each helicity rate × (1 + m²/2q²)); ≈ 0.52, far from 1/3."""
    s = Sample("B0 -> (D*- -> anti-D0 pi-) mu+ nu_mu", 60_000, 21, stable=(*STABLE, "D0"))
    big_m, m, ml = 5279.72, 2010.26, M_MU
    q = np.linspace(ml**2, (big_m - m) ** 2, 20_001)[1:]
    w = (big_m**2 + m**2 - q) / (2 * big_m * m)
    z = (np.sqrt(w + 1) - math.sqrt(2)) / (np.sqrt(w + 1) + math.sqrt(2))
    r = 2 * math.sqrt(big_m * m) / (big_m + m)
    ha1 = 0.920 * (1 - 8 * 1.207 * z + (53 * 1.207 - 15) * z**2 - (231 * 1.207 - 91) * z**3)
    a1, a2, v = (w + 1) / 2 * r * ha1, (0.853 + 0.11 * (w - 1) - 0.06 * (w - 1) ** 2) * ha1 / r, (1.406 - 0.12 * (w - 1) + 0.05 * (w - 1) ** 2) * ha1 / r
    pp = pstar(big_m, m, np.sqrt(q))
    hp, hm = (big_m + m) * a1 - 2 * big_m * pp / (big_m + m) * v, (big_m + m) * a1 + 2 * big_m * pp / (big_m + m) * v
    h0 = ((big_m**2 - m**2 - q) * (big_m + m) * a1 - 4 * big_m**2 * pp**2 / (big_m + m) * a2) / (2 * m * np.sqrt(q))
    weight = pp * q * (1 - ml**2 / q) ** 2 * (1 + ml**2 / (2 * q))
    f_l = float(np.trapezoid(weight * h0**2, q) / np.trapezoid(weight * (hp**2 + hm**2 + h0**2), q))
    rd, rpi = s.rows(-413, 511), s.rows(-211, -413)
    c = helicity_cos(s.p4[rpi], s.p4[rd], s.p4[s.mrow[rd]])
    assert stats.kstest(c, lambda x: f_l * (x**3 + 1) / 2 + (1 - f_l) * 0.75 * ((x + 1) - (x**3 + 1) / 3)).pvalue > 1e-3
    assert 0.45 < f_l < 0.6


def test_table_decays_of_a_user_leaf_keep_the_spin_chain_and_the_table_fractions() -> None:
    """B0 -> D*- pi+ with the D*- left to DECAY_LHCB.DEC: its D π modes keep the helicity-0 cos²θ, and the K_S0 of
    B0 -> J/psi K_S0 decays to π+π−(γ) / π0π0 in the table's proportions (multinomial χ²)."""
    s = Sample("B0 -> D*- pi+", 20_000, 22, stable=(*(x for x in STABLE if x != "D*+"), "D0"))
    rpi = s.rows(-211, -413)
    c = helicity_cos(s.p4[rpi], s.p4[s.mrow[rpi]], s.p4[s.mrow[s.mrow[rpi]]])
    assert stats.kstest(c, lambda x: (x**3 + 1) / 2).pvalue > 1e-3
    k = Sample("B0 -> (J/psi -> mu+ mu-) K_S0", 20_000, 31)
    ks = k.rows(310, 511)
    kids = k.p.iloc[np.flatnonzero(np.isin(k.mrow, ks))]
    charged = kids.groupby("event").pid.apply(lambda x: bool(((x == 211) | (x == -211)).sum() == 2 and (x == 111).sum() == 0))
    neutral = kids.groupby("event").pid.apply(lambda x: sorted(x) == [111, 111])
    n = len(ks)
    # DECAY_LHCB.DEC: pi+ pi- 0.691086, pi+ pi- gamma 0.001722, pi+ pi- e+ e- 0.0000428 (charged-pion pairs), pi0 pi0 0.305986
    total = 0.691086452 + 0.305986452 + 0.000000201 + 0.001722185 + 0.000042831 + 0.000000025 + 0.000002399 + 2 * 0.000344328 + 2 * 0.000235400
    f_ch, f_neu = (0.691086452 + 0.001722185) / total, 0.305986452 / total
    obs = np.array([charged.sum(), neutral.sum(), n - charged.sum() - neutral.sum()])
    exp = n * np.array([f_ch, f_neu, 1 - f_ch - f_neu])
    assert stats.chisquare(obs[:2], exp[:2] * obs[:2].sum() / exp[:2].sum()).pvalue > 1e-3
