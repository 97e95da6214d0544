"""Final-state radiation: the photon-energy fraction, spectrum and angles against the radiator's analytic forms."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from mambah.errors import DecayError
from sim.generation.photos import ALPHA_EM, add_fsr, eikonal_radiator, hardest_photon_fraction, radiator
from sim.generation.sampling import invariant_mass, rest_frame, three_body, two_body

M_MU, M_B, M_JPSI, M_K, M_PI = 105.658, 5279.34, 3096.9, 493.677, 139.57


def _lab_parent(n: int, mass: float, rng: np.random.Generator) -> np.ndarray:
    p = rng.uniform(10_000.0, 100_000.0, n)
    c = rng.uniform(-1, 1, n)
    s = np.sqrt(1 - c * c)
    ph = rng.uniform(-np.pi, np.pi, n)
    return np.concatenate([(np.stack([s * np.cos(ph), s * np.sin(ph), c], 1) * p[:, None]), np.sqrt(mass**2 + p**2)[:, None]], axis=1)


def test_radiator_limits() -> None:
    b = np.array([1e-5, 0.5, 0.999999])
    r = radiator(b)
    assert r[0] == pytest.approx(2 * b[0] ** 2 / 3, rel=1e-6)
    assert r[1] == pytest.approx(2 * math.log(3) - 2, rel=1e-12)
    gamma = 1 / math.sqrt(1 - b[2] ** 2)
    assert r[2] == pytest.approx(2 * math.log(2 * gamma) - 2, rel=1e-3)  # 2 ln(2E/m) − 2


def _lepton_neutrino(n: int, seed: int) -> tuple[np.ndarray, np.random.Generator]:
    rng = np.random.default_rng(seed)
    parent = _lab_parent(n, M_B, rng)
    mu, nu = two_body(parent, M_MU, 0.0, rng)
    return np.stack([mu, nu], axis=1), rng


def test_fraction_and_spectrum_of_hard_photons_match_the_radiator() -> None:
    n = 200_000
    p4, rng = _lepton_neutrino(n, 1)
    out = add_fsr(p4, [1, 0], rng, k_min=1.0)
    assert not out.emitted[:, 1].any()  # the neutrino does not radiate
    parent = p4.sum(axis=1)
    e_gamma = rest_frame(out.photons[:, 0], parent)[:, 3]
    e_mu = (M_B**2 + M_MU**2) / (2 * M_B)
    beta = math.sqrt(1 - (M_MU / e_mu) ** 2)
    k_max = ((M_B - 0.0) ** 2 - M_MU**2) / (2 * M_B)
    for threshold in (5.0, 50.0, 500.0):
        expected = float(hardest_photon_fraction(np.array([beta]), np.array([k_max]), threshold)[0])
        seen = float(np.mean(out.emitted[:, 0] & (e_gamma > threshold)))
        assert abs(seen - expected) < 4 * math.sqrt(expected * (1 - expected) / n), (threshold, seen, expected)
    assert 0.02 < float(hardest_photon_fraction(np.array([beta]), np.array([k_max]), 50.0)[0]) < 0.1
    # spectrum above 5 MeV: P(k < K | k > 5) from (K/k_max)^a
    a = ALPHA_EM / math.pi * float(radiator(np.array([beta]))[0])
    hard = e_gamma[out.emitted[:, 0] & (e_gamma > 5.0)]
    lo = (5.0 / k_max) ** a

    def cdf(x: np.ndarray) -> np.ndarray:
        return ((np.clip(x, 5.0, k_max) / k_max) ** a - lo) / (1 - lo)

    assert stats.kstest(hard, cdf).pvalue > 0.01
    assert stats.kstest(hard, lambda x: (np.clip(x, 5.0, k_max) - 5.0) / (k_max - 5.0)).pvalue < 1e-6  # not flat


def test_photon_angle_to_the_emitter_follows_the_eikonal_pattern() -> None:
    n = 100_000
    rng = np.random.default_rng(2)
    parent = _lab_parent(n, 1000.0, rng)
    pi, nu = two_body(parent, M_PI, 0.0, rng)  # β = 0.96: a wide pattern the KS test resolves
    p4 = np.stack([pi, nu], axis=1)
    out = add_fsr(p4, [-1, 0], rng, k_min=0.5)
    sel = out.emitted[:, 0]
    g = rest_frame(out.photons[sel, 0], parent[sel])
    # emitter direction before radiation (the photon's axis)
    e = rest_frame(pi[sel], parent[sel])
    cos = np.sum(g[:, :3] * e[:, :3], 1) / np.linalg.norm(g[:, :3], axis=1) / np.linalg.norm(e[:, :3], axis=1)
    beta = math.sqrt(1 - (2 * 1000.0 * M_PI / (1000.0**2 + M_PI**2)) ** 2)
    grid = np.linspace(-1, 1, 20001)
    dens = (1 - grid**2) / (1 - beta * grid) ** 2
    cdf = np.concatenate([[0], np.cumsum(0.5 * (dens[1:] + dens[:-1]) * np.diff(grid))])
    cdf /= cdf[-1]
    assert stats.kstest(cos, lambda x: np.interp(x, grid, cdf)).pvalue > 0.01
    assert stats.kstest(cos, lambda x: (x + 1) / 2).pvalue < 1e-6


def test_four_momentum_conservation_and_masses_with_fsr() -> None:
    n = 20_000
    rng = np.random.default_rng(3)
    parent = _lab_parent(n, M_B, rng)
    jpsi, _k = two_body(parent, M_JPSI, M_K, rng)
    mup, mum = two_body(jpsi, M_MU, M_MU, rng)
    for daughters, charges in ((np.stack([mup, mum], 1), [1, -1]), (np.stack(three_body(parent, M_K, M_PI, M_PI, rng), 1), [1, -1, 1])):
        out = add_fsr(daughters, charges, rng, k_min=0.1)
        total = out.daughters.sum(axis=1) + out.photons.sum(axis=1)
        np.testing.assert_allclose(total, daughters.sum(axis=1), rtol=0, atol=1e-6 * np.max(np.abs(daughters)))
        np.testing.assert_allclose(invariant_mass(out.daughters), invariant_mass(daughters), atol=1e-3)
        g = out.photons[out.emitted]
        assert np.all(g[:, 3] > 0)
        np.testing.assert_allclose(invariant_mass(g), 0.0, atol=1e-3 * g[:, 3].max())
        assert 0.01 < out.emitted.any(axis=1).mean() < 0.3


def test_eikonal_radiator_against_the_closed_forms() -> None:
    """One daughter of a charged parent: Jackson's A(β); a neutral parent's back-to-back ± pair:
    (1+β²)/β ln((1+β)/(1−β)) − 2 (Weinberg QFT I §13.2), more than two independent emitters."""
    rng = np.random.default_rng(6)
    rest = np.zeros((3, 4))
    rest[:, 3] = M_JPSI
    mup, mum = two_body(rest, M_MU, M_MU, rng)
    beta = math.sqrt(1 - (2 * M_MU / M_JPSI) ** 2)
    log = math.log((1 + beta) / (1 - beta))
    pair = eikonal_radiator(np.stack([mup, mum], 1), np.array([1, -1]))
    np.testing.assert_allclose(pair, (1 + beta**2) / beta * log - 2, rtol=1e-9)
    assert (pair > 2 * radiator(np.array([beta]))).all()
    np.testing.assert_allclose(pair, 2 * math.log(M_JPSI**2 / M_MU**2) - 2, rtol=0.01)  # the leading logarithm
    np.testing.assert_allclose(eikonal_radiator(np.stack([mup, mum], 1), np.array([1, 0])), radiator(np.full(3, beta)), rtol=1e-9)
    # same-sign pair from a doubly charged parent at rest: the parent's charge interferes too, the total is still >= 0
    assert (eikonal_radiator(np.stack([mup, mum], 1), np.array([1, 1])) >= 0).all()


def test_two_emitters_radiate_the_full_eikonal_rate() -> None:
    """J/psi -> mu+ mu-: the photons above E make the pair's full eikonal fraction 1 − (E/k_max)^(α/π · A_tot)
    (not the 17 % smaller one of two independent emitters)."""
    n = 100_000
    rng = np.random.default_rng(4)
    jpsi = _lab_parent(n, M_JPSI, rng)
    mup, mum = two_body(jpsi, M_MU, M_MU, rng)
    out = add_fsr(np.stack([mup, mum], 1), [1, -1], rng, k_min=1.0)
    e_gamma = np.stack([rest_frame(out.photons[:, j], jpsi)[:, 3] for j in range(2)], 1)
    beta = math.sqrt(1 - (2 * M_MU / M_JPSI) ** 2)
    a_tot = ALPHA_EM / math.pi * ((1 + beta**2) / beta * math.log((1 + beta) / (1 - beta)) - 2)
    k_max = ((M_JPSI - M_MU) ** 2 - M_MU**2) / (2 * (M_JPSI - M_MU))  # first emitter: the rest is the other muon
    for threshold in (10.0, 50.0, 300.0):
        f_each = 1 - (threshold / k_max) ** (a_tot / 2)
        seen = np.mean(out.emitted & (e_gamma > threshold), axis=0)
        assert abs(seen[0] - f_each) < 4 * math.sqrt(f_each * (1 - f_each) / n)  # the first emitter exactly
        assert abs(seen[1] - f_each) < 0.05 * f_each + 4 * math.sqrt(f_each * (1 - f_each) / n)  # the second after the recoil
        f_any = 1 - (threshold / k_max) ** a_tot
        any_seen = np.mean((out.emitted & (e_gamma > threshold)).any(axis=1))
        assert abs(any_seen - f_any) < 0.03 * f_any + 4 * math.sqrt(f_any * (1 - f_any) / n)
    independent = 1 - (10.0 / k_max) ** (2 * ALPHA_EM / math.pi * float(radiator(np.array([beta]))[0]))
    assert np.mean((out.emitted & (e_gamma > 10.0)).any(axis=1)) > independent * 1.12


def test_bad_input_is_an_error() -> None:
    rng = np.random.default_rng(0)
    with pytest.raises(DecayError, match=r"add_fsr needs p4 of shape \(n, k, 4\) and k charges"):
        add_fsr(np.zeros((3, 2, 4)), [1, -1, 0], rng)
    with pytest.raises(DecayError, match="k_min must be > 0"):
        add_fsr(np.zeros((3, 2, 4)), [1, -1], rng, k_min=0.0)


def test_single_neutrino_recoil_conserves_four_momentum() -> None:
    """τ+ → π+ ν̄ flying up to 100 GeV: the lone neutrino is set to the exact recoil (no boost through a
    massless frame), so every decay balances, masses are kept and the radiated fraction is the radiator's."""
    n, m_tau = 100_000, 1776.86
    rng = np.random.default_rng(17)
    parent = _lab_parent(n, m_tau, rng)
    pi, nu = two_body(parent, M_PI, 0.0, rng)
    p4 = np.stack([pi, nu], 1)
    out = add_fsr(p4, [1, 0], rng, k_min=1.0)
    total = out.daughters.sum(axis=1) + out.photons.sum(axis=1)
    np.testing.assert_allclose(total, p4.sum(axis=1), rtol=0, atol=1e-9 * parent[:, 3].max())
    np.testing.assert_allclose(invariant_mass(out.daughters[:, 0]), M_PI, atol=1e-3)
    e_nu = out.daughters[:, 1, 3]
    assert np.all(invariant_mass(out.daughters[:, 1]) < 1e-6 * e_nu.max() + 1e-3)
    # in the τ frame the ν recoils against π + γ, with |p_ν| = E_ν
    rest_nu = rest_frame(out.daughters[:, 1], parent)
    np.testing.assert_allclose(np.linalg.norm(rest_nu[:, :3], axis=1), rest_nu[:, 3], rtol=1e-6)
    e_pi = (m_tau**2 + M_PI**2) / (2 * m_tau)
    beta = math.sqrt(1 - (M_PI / e_pi) ** 2)
    k_max = (m_tau**2 - M_PI**2) / (2 * m_tau)
    e_gamma = rest_frame(out.photons[:, 0], parent)[:, 3]
    for threshold in (5.0, 50.0):
        expected = float(hardest_photon_fraction(np.array([beta]), np.array([k_max]), threshold)[0])
        seen = float(np.mean(out.emitted[:, 0] & (e_gamma > threshold)))
        assert abs(seen - expected) < 4 * math.sqrt(expected * (1 - expected) / n), (threshold, seen, expected)
    assert out.emitted[:, 0].mean() > 0.04  # it radiates (above 1 MeV in ≈ 5 % of decays): nothing was switched off
