"""The engine's n-body kernels against analytic phase space: two-body momentum, flat Dalitz plot, bounds, BW."""

from __future__ import annotations

import numpy as np
from scipy import stats

from sim.generation.genbod import boost, genbod, mass_of, pdk, phase_space_weight, truncated_breit_wigner, weight_bound

M_LC, M_P, M_K, M_PI = 2286.46, 938.272, 493.677, 139.570


def _pstar(a: float, b: float, c: float) -> float:
    """Two-body momentum written out independently of the kernel (Källén function)."""
    lam = (a**2 - (b + c) ** 2) * (a**2 - (b - c) ** 2)
    return float(np.sqrt(lam) / (2 * a))


def test_two_body_momentum_and_isotropy():
    rng = np.random.default_rng(1)
    n = 50_000
    p4, w = genbod(np.tile([M_K, M_PI], (n, 1)), np.full(n, 1864.84), rng)
    expected = _pstar(1864.84, M_K, M_PI)
    np.testing.assert_allclose(np.linalg.norm(p4[:, 0, :3], axis=1), expected, rtol=1e-10)
    np.testing.assert_allclose(w, expected, rtol=1e-10)
    np.testing.assert_allclose(p4.sum(axis=1), np.tile([0, 0, 0, 1864.84], (n, 1)), atol=1e-8)
    cos_t = p4[:, 0, 2] / np.linalg.norm(p4[:, 0, :3], axis=1)
    assert stats.kstest(cos_t, stats.uniform(-1, 2).cdf).pvalue > 1e-3
    phi = np.arctan2(p4[:, 0, 1], p4[:, 0, 0])
    assert stats.kstest(phi, stats.uniform(-np.pi, 2 * np.pi).cdf).pvalue > 1e-3


def test_unweighted_three_body_dalitz_plot_is_flat():
    """Accept-reject on w / weight_bound: m12² density = length of the allowed m23² range (flat Dalitz)."""
    rng = np.random.default_rng(2)
    n = 200_000
    m = np.tile([M_P, M_K, M_PI], (n, 1))
    big = np.full(n, M_LC)
    p4, w = genbod(m, big, rng)
    bound = weight_bound(m, big)
    assert np.all(w <= bound * (1 + 1e-12))
    keep = rng.random(n) * bound < w
    p4 = p4[keep]
    s12 = mass_of(p4[:, 0] + p4[:, 1]) ** 2
    lo, hi = (M_P + M_K) ** 2, (M_LC - M_PI) ** 2

    def span(x: np.ndarray) -> np.ndarray:  # PDG kinematics review, Dalitz-plot boundary
        m12 = np.sqrt(x)
        e2 = (x - M_P**2 + M_K**2) / (2 * m12)
        e3 = (M_LC**2 - x - M_PI**2) / (2 * m12)
        p2, p3 = np.sqrt(np.maximum(e2**2 - M_K**2, 0)), np.sqrt(np.maximum(e3**2 - M_PI**2, 0))
        return 4 * p2 * p3

    edges = np.linspace(lo, hi, 31)
    fine = np.linspace(lo, hi, 30_001)
    cum = np.concatenate([[0], np.cumsum((span(fine[1:]) + span(fine[:-1])) / 2 * np.diff(fine))])
    expected = np.diff(np.interp(edges, fine, cum)) / cum[-1] * len(s12)
    observed, _ = np.histogram(s12, edges)
    chi2 = float(np.sum((observed - expected) ** 2 / expected))
    assert stats.chi2.sf(chi2, len(expected) - 1) > 1e-3, chi2


def test_many_body_conservation_and_masses():
    rng = np.random.default_rng(3)
    n = 20_000
    m = np.tile([M_PI] * 6, (n, 1))
    big = rng.uniform(1500.0, 5000.0, n)
    p4, w = genbod(m, big, rng)
    np.testing.assert_allclose(p4[..., :3].sum(axis=1), 0.0, atol=1e-7)
    np.testing.assert_allclose(p4[..., 3].sum(axis=1), big, rtol=1e-12)
    np.testing.assert_allclose(mass_of(p4), M_PI, rtol=1e-7)
    assert np.all(w <= weight_bound(m, big) * (1 + 1e-12))
    np.testing.assert_allclose(phase_space_weight(w, m, big), w * (big - 6 * M_PI) ** 4)


def test_boost_keeps_masses_and_moves_the_rest_frame():
    rng = np.random.default_rng(4)
    n = 1000
    p4, _ = genbod(np.tile([M_K, M_PI], (n, 1)), np.full(n, 1864.84), rng)
    parent = np.column_stack([rng.normal(0, 3000, (n, 3)), np.zeros(n)])
    parent[:, 3] = np.sqrt(np.sum(parent[:, :3] ** 2, axis=1) + 1864.84**2)
    lab = boost(p4, parent)
    np.testing.assert_allclose(lab.sum(axis=1), parent, rtol=1e-9, atol=1e-6)
    np.testing.assert_allclose(mass_of(lab), [M_K, M_PI] * np.ones((n, 1)), rtol=1e-6)


def test_truncated_breit_wigner_cdf():
    rng = np.random.default_rng(5)
    m0, g = 895.5, 47.3
    lo, hi = np.full(40_000, 633.2), np.full(40_000, 1200.0)
    m = truncated_breit_wigner(m0, g, lo, hi, rng)
    assert m.min() >= 633.2 and m.max() <= 1200.0

    def cdf(x: np.ndarray) -> np.ndarray:  # truncated Cauchy, written out
        a, b = np.arctan(2 * (633.2 - m0) / g), np.arctan(2 * (1200.0 - m0) / g)
        return (np.arctan(2 * (np.asarray(x) - m0) / g) - a) / (b - a)

    assert stats.kstest(m, cdf).pvalue > 1e-3
    assert pdk(100.0, 60.0, 60.0) == 0.0  # forbidden decays have zero momentum
