"""Semileptonic models: dΓ/dq² and the lepton/hadron angles of chain_weight against independent formulas.

Flat three-body phase space (numpy) is weighted by :func:`chain_weight`; its weighted q² and
cosθ_ℓ histograms are compared (χ² with the weights' own variance) with

* mesons: the helicity-amplitude formula d²Γ/dq²dcosθ of Körner & Schuler (written in
  ``formfactors.dgamma_dq2_dcos``), integrated numerically over each bin;
* Λb → Λc: Dirac traces of the hadronic and leptonic tensors with explicit γ matrices,
  integrated over the lepton direction by quadrature — no spinor, no helicity convention.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
from particle import Particle

from mambah.errors import DecayError
from mambah.kinematics import boost
from sim.generation import formfactors as ff
from sim.generation.amplitudes import NodeSpec, chain_weight, model_weight_bound
from sim.generation.sampling import rest_frame, three_body, two_body

M_MU = 105.658
N_BINS = 10

CASES = [
    # parent, hadron, lepton, neutrino, model, DecFile parameters
    (-511, 413, 13, -14, "HQET2", (1.122, 0.908, 1.270, 0.852)),
    (511, -413, -13, 14, "HQET2", (1.122, 0.908, 1.270, 0.852)),
    (-511, 411, 13, -14, "HQET2", (1.131, 1.081)),
    (-521, 421, 13, -14, "ISGW2", ()),
    (-521, 423, 13, -14, "ISGW2", ()),
    (-511, 211, 13, -14, "ISGW2", ()),
    (421, -321, -13, 14, "ISGW2", ()),
    (421, -323, -13, 14, "ISGW2", ()),
    (-521, 10421, 13, -14, "ISGW2", ()),  # P-wave daughters: D_0*0, D_10, D'_10
    (-521, 10423, 13, -14, "ISGW2", ()),
    (-521, 20423, 13, -14, "ISGW2", ()),
    (-521, 425, 13, -14, "ISGW2", ()),  # a tensor: D_2*0
    (521, -425, -13, 14, "ISGW2", ()),
]


def _mass(pid: int) -> float:
    return float(Particle.from_pdgid(pid).mass)


def _q2_cos(px: np.ndarray, pl: np.ndarray, pn: np.ndarray, pb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    q = pl + pn
    q2 = (q[:, 3] ** 2 - np.sum(q[:, :3] ** 2, axis=1)) * 1e-6
    qb = rest_frame(q, pb)
    lw = rest_frame(rest_frame(pl, pb), qb)
    cos = np.sum(lw[:, :3] * qb[:, :3], 1) / np.linalg.norm(lw[:, :3], axis=1) / np.linalg.norm(qb[:, :3], axis=1)
    return q2, cos


def _midpoints(lo: float, hi: float, n: int) -> np.ndarray:
    """Centres of n equal cells of [lo, hi] (each histogram bin gets the same number)."""
    return lo + (np.arange(n) + 0.5) * (hi - lo) / n


def _chi2(values: np.ndarray, weights: np.ndarray, edges: np.ndarray, expected: np.ndarray) -> float:
    """χ²/ndf of a weighted histogram against expected bin fractions."""
    h, _ = np.histogram(values, edges, weights=weights)
    v, _ = np.histogram(values, edges, weights=weights**2)
    total = h.sum()
    pred = expected / expected.sum() * total
    return float(np.sum((h - pred) ** 2 / np.maximum(v, 1e-300)) / (len(h) - 1))


def _generate(par: int, had: int, lep: int, nu: int, n: int, seed: int) -> tuple[list[np.ndarray], np.random.Generator]:
    rng = np.random.default_rng(seed)
    pb = np.zeros((n, 4))
    pb[:, 2] = 30000.0
    pb[:, 3] = np.hypot(_mass(par), 30000.0)
    px, pl, pn = three_body(pb, _mass(had), M_MU, 0.0, rng)
    return [pb, px, pl, pn], rng


def _analytic_bins(par: int, had: int, model: str, params: tuple[float, ...], q_edges: np.ndarray, c_edges: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mb, mx = _mass(par) * 1e-3, _mass(had) * 1e-3
    qq = _midpoints(q_edges[0], q_edges[-1], 300 * N_BINS)
    cs = _midpoints(-1.0, 1.0, 40 * N_BINS)
    q2, c = (a.ravel() for a in np.meshgrid(qq, cs, indexing="ij"))
    f = ff.form_factors(model, par, had, params, q2, mb, mx)
    if len(f) == 2:
        h0, ht = ff.helicity_pp(f[0], f[1], q2, mb, mx)
        hp = hm = np.zeros_like(h0)
    elif Particle.from_pdgid(had).J == 2:
        # P → T: e^μ = ε*^{μν}(λ) p_ν is c_λ ε*^μ(λ), c_± = M|p|/(√2 m), c_0 = √(2/3) M|p|/m (helicity ±2: 0);
        # EvtGen's tensor current is the vector one of e with V = −h(M+m), A1 = −k/(M+m), A2 = b+(M+m),
        # A0 = A3 − q² b−/(2m), times 1/q²_max
        h, k, bp, bm = f
        a1, a2, v = -k / (mb + mx), bp * (mb + mx), -h * (mb + mx)
        a0 = ((mb + mx) * a1 - (mb - mx) * a2) / (2 * mx) - q2 * bm / (2 * mx)
        hp, hm, h0, ht = ff.helicity_pv(a1, a2, v, a0, q2, mb, mx)
        cl = mb * ff._pmag(mb, mx, q2) / mx / (mb - mx) ** 2
        hp, hm, h0, ht = hp * cl / np.sqrt(2), hm * cl / np.sqrt(2), h0 * cl * np.sqrt(2 / 3), ht * cl * np.sqrt(2 / 3)
    else:
        a1, a2, v, a0 = f
        if abs(par) in (411, 421, 431):
            v = -v  # EvtGen's costhl_flag: for c -> s the antiquark-like helicity structure (H+ dominates in the CP image)
        hp, hm, h0, ht = ff.helicity_pv(a1, a2, v, a0, q2, mb, mx)
    d = ff.dgamma_dq2_dcos(hp, hm, h0, ht, q2, c, M_MU * 1e-3, mb, mx).reshape(len(qq), len(cs))
    by_q = np.array([d[(qq >= a) & (qq < b)].sum() for a, b in itertools.pairwise(q_edges)])
    by_c = np.array([d[:, (cs >= a) & (cs < b)].sum() for a, b in itertools.pairwise(c_edges)])
    return by_q, by_c


@pytest.mark.parametrize(("par", "had", "lep", "nu", "model", "params"), CASES)
def test_meson_dgamma_dq2_and_lepton_angle(par: int, had: int, lep: int, nu: int, model: str, params: tuple[float, ...]) -> None:
    p4, _ = _generate(par, had, lep, nu, 60_000, 100 + abs(had))
    nodes = [NodeSpec(par, model, params, (1, 2, 3), -1), NodeSpec(had, "", (), (), 0), NodeSpec(lep, "", (), (), 0), NodeSpec(nu, "", (), (), 0)]
    assert model_weight_bound(nodes) is None
    w = chain_weight(nodes, p4)
    q2, cos = _q2_cos(p4[1], p4[2], p4[3], p4[0])
    q_edges = np.linspace((M_MU * 1e-3) ** 2, ((_mass(par) - _mass(had)) * 1e-3) ** 2, N_BINS + 1)
    c_edges = np.linspace(-1, 1, N_BINS + 1)
    by_q, by_c = _analytic_bins(par, had, model, params, q_edges, c_edges)
    assert _chi2(q2, w, q_edges, by_q) < 2.5
    assert _chi2(cos, w, c_edges, by_c) < 2.5
    # the same events are far from phase space and from the mirrored lepton angle: the test can fail
    assert _chi2(q2, np.ones_like(w), q_edges, by_q) > 10
    if not np.allclose(by_c, by_c[::-1], rtol=0.1):  # forward-backward asymmetric: its mirror image is excluded
        assert _chi2(cos, w, c_edges, by_c[::-1]) > 10


def test_semileptonic_vector_feeds_its_decay_the_right_polarisation() -> None:
    """B0bar -> D*+ mu- nu (HQET2), D*+ -> D0 pi+ (VSS): slow-pion angle = f_L cos² + (1 - f_L) sin²/2."""
    par, had, params = -511, 413, (1.122, 0.908, 1.270, 0.852)
    p4, rng = _generate(par, had, 13, -14, 80_000, 7)
    pd0, ppi = two_body(p4[1], _mass(421), _mass(211), rng)
    nodes = [
        NodeSpec(par, "HQET2", params, (1, 2, 3), -1),
        NodeSpec(had, "VSS", (), (4, 5), 0),
        NodeSpec(13, "", (), (), 0),
        NodeSpec(-14, "", (), (), 0),
        NodeSpec(421, "", (), (), 1),
        NodeSpec(211, "", (), (), 1),
    ]
    w = chain_weight(nodes, [*p4, pd0, ppi])
    # f_L: the D* helicity-0 share of the rate (|H0|² and |Ht|² terms), integrated over q²
    mb, mx, ml = _mass(par) * 1e-3, _mass(had) * 1e-3, M_MU * 1e-3
    q2 = np.linspace(ml**2, (mb - mx) ** 2, 4001)[1:-1]
    hp, hm, h0, ht = ff.helicity_pv(*ff.hqet2_vector(params, q2, mb, mx), q2, mb, mx)
    common = ff._pmag(mb, mx, q2) * q2 * (1 - ml**2 / q2) ** 2
    long_ = np.sum(common * (h0**2 * (1 + ml**2 / (2 * q2)) + 1.5 * ml**2 / q2 * ht**2))
    tran = np.sum(common * (hp**2 + hm**2) * (1 + ml**2 / (2 * q2)))
    f_l = long_ / (long_ + tran)
    assert 0.4 < f_l < 0.6
    ds_b = rest_frame(p4[1], p4[0])
    pi_ds = rest_frame(rest_frame(ppi, p4[0]), ds_b)
    cos = np.sum(pi_ds[:, :3] * ds_b[:, :3], 1) / np.linalg.norm(pi_ds[:, :3], axis=1) / np.linalg.norm(ds_b[:, :3], axis=1)
    edges = np.linspace(-1, 1, N_BINS + 1)
    grid = _midpoints(-1.0, 1.0, 200 * N_BINS)
    dens = f_l * 1.5 * grid**2 + (1 - f_l) * 0.75 * (1 - grid**2)
    expected = np.array([dens[(grid >= a) & (grid < b)].sum() for a, b in itertools.pairwise(edges)])
    assert _chi2(cos, w, edges, expected) < 2.5
    assert _chi2(cos, np.ones_like(w), edges, expected) > 10


# ----------------------------------------------------------------------------- Λb → Λc: Dirac traces

_I2 = np.eye(2)
_S = [np.array([[0, 1], [1, 0]], complex), np.array([[0, -1j], [1j, 0]]), np.array([[1, 0], [0, -1]], complex)]
_Z = np.zeros((2, 2))
_G = [np.block([[_I2, _Z], [_Z, -_I2]]).astype(complex)] + [np.block([[_Z, s], [-s, _Z]]) for s in _S]
_G5 = np.block([[_Z, _I2], [_I2, _Z]]).astype(complex)
_ETA = np.diag([1.0, -1.0, -1.0, -1.0])


def _slash(p: np.ndarray) -> np.ndarray:
    """p̸ of a (E, px, py, pz) vector."""
    return p[0] * _G[0] - p[1] * _G[1] - p[2] * _G[2] - p[3] * _G[3]


def _bar(m: np.ndarray) -> np.ndarray:
    return _G[0] @ m.conj().T @ _G[0]


def _lambda_b_config(q2: float, cos_l: np.ndarray, phi_l: np.ndarray, mb: float, mx: float, ml: float) -> list[np.ndarray]:
    """Λb at rest, Λc along −z, ℓ⁻ at (cos_l, phi_l) in the W rest frame: (E, px, py, pz) [GeV] of Λb, Λc, ℓ, ν."""
    n = len(cos_l)
    e_x = (mb * mb + mx * mx - q2) / (2 * mb)
    px = np.sqrt(max(e_x * e_x - mx * mx, 0.0))
    e_w, pw = mb - e_x, px
    gamma_w, beta_w = e_w / np.sqrt(q2), pw / e_w
    el = (q2 + ml * ml) / (2 * np.sqrt(q2))
    kl = (q2 - ml * ml) / (2 * np.sqrt(q2))
    s = np.sqrt(1 - cos_l**2)
    lw = np.stack([np.full(n, el), kl * s * np.cos(phi_l), kl * s * np.sin(phi_l), kl * cos_l], axis=1)
    nw = np.concatenate([np.full((n, 1), kl), -lw[:, 1:]], axis=1)

    def to_lab(v: np.ndarray) -> np.ndarray:
        return np.stack([gamma_w * (v[:, 0] + beta_w * v[:, 3]), v[:, 1], v[:, 2], gamma_w * (v[:, 3] + beta_w * v[:, 0])], axis=1)

    return [np.tile([mb, 0, 0, 0.0], (n, 1)), np.tile([e_x, 0, 0, -px], (n, 1)), to_lab(lw), to_lab(nw)]


def _slashes(v: np.ndarray) -> np.ndarray:
    return np.einsum("nm,mab->nab", v * np.array([1.0, -1.0, -1.0, -1.0]), np.stack(_G))


def _trace_rate(
    config: list[np.ndarray],
    mb: float,
    mx: float,
    ml: float,
    f: tuple[float, ...],
    spin_z: bool = False,
    spin: np.ndarray | None = None,
    opposite_parity: bool = False,
) -> np.ndarray:
    """|M|² of Λb → Λc ℓ⁻ ν̄ from Dirac traces: spin-averaged, or the Λb (at rest) polarised along
    +z (``spin_z``) or along the unit 3-vector ``spin``: u ū = (p̸+M)(1+γ5 s̸)/2, s̸ = −ŝ·γ⃗."""
    f1, f2, f3, g1, g2, g3 = f
    p, pp, pl, pn = config
    v, vp = p[0] / mb, pp[0] / mx
    gam = [f1 * _G[m] + (f2 * v[m] + f3 * vp[m]) * np.eye(4) - (g1 * _G[m] + (g2 * v[m] + g3 * vp[m]) * np.eye(4)) @ _G5 for m in range(4)]
    rho_b = _slash(p[0]) + mb * np.eye(4)
    if spin_z:
        spin = np.array([0.0, 0.0, 1.0])
    if spin is not None:
        s_slash = -(spin[0] * _G[1] + spin[1] * _G[2] + spin[2] * _G[3])
        rho_b = rho_b @ (np.eye(4) + _G5 @ s_slash) / 2
    else:
        rho_b = rho_b / 2
    if opposite_parity:  # 1/2+ -> 1/2- (EvtSLBaryonAmp: γ5 u_B): (γ5 u)(γ5 u)‾ = −γ5 u ū γ5
        rho_b = -_G5 @ rho_b @ _G5
    rho_x = _slash(pp[0]) + mx * np.eye(4)
    had = np.array([[np.trace(rho_x @ gam[m] @ rho_b @ _bar(gam[k])) for k in range(4)] for m in range(4)])
    gp = np.stack([g @ (np.eye(4) - _G5) for g in _G])  # γ^μ (1 − γ5)
    lep = np.einsum("nab,mbc,ncd,kda->nmk", _slashes(pl) + ml * np.eye(4), gp, _slashes(pn), gp)  # Tr[(l̸+m) γ^μ P ν̸ γ^ν P]
    return np.real(np.einsum("mk,nmk->n", _ETA @ had @ _ETA, lep))


def _mev_xyz(v: np.ndarray) -> np.ndarray:
    return v[:, [1, 2, 3, 0]] * 1e3


def test_lambda_b_baryonpcr_matrix_element_equals_dirac_traces() -> None:
    """Point by point over (q², cosθ_ℓ, φ_ℓ): chain_weight == the trace |M|², unpolarised and polarised Λb."""
    par, had = 5122, 4122
    mb, mx, ml = _mass(par) * 1e-3, _mass(had) * 1e-3, M_MU * 1e-3
    cos, phi = (a.ravel() for a in np.meshgrid(np.linspace(-0.95, 0.95, 5), np.linspace(0.0, 6.0, 4), indexing="ij"))
    for had in (4122, 14122):  # Λc+ (1/2+) and Λc(2593)+ (1/2−)
        mx = _mass(had) * 1e-3
        for q2 in (0.3, 2.0, 5.5, 8.0):
            config = _lambda_b_config(q2, cos, phi, mb, mx, ml)
            f = tuple(float(v[0]) for v in ff.pcr_dirac(np.array([q2]), mb, np.array([mx]), had))
            p4 = [_mev_xyz(c) for c in config]
            for params, spin_z in (((1.0, 0.0, 0.0, 1.0), False), ((1.0, 0.0, 0.0, 0.0), True)):
                nodes = [NodeSpec(par, "BaryonPCR", params, (1, 2, 3), -1), NodeSpec(had, "", (), (), 0), NodeSpec(13, "", (), (), 0), NodeSpec(-14, "", (), (), 0)]
                expected = _trace_rate(config, mb, mx, ml, f, spin_z, opposite_parity=had == 14122)
                np.testing.assert_allclose(chain_weight(nodes, p4), expected, rtol=1e-6)
    mx = _mass(4122) * 1e-3
    # a polarised Λb is not an unpolarised one: the comparison can fail
    config = _lambda_b_config(5.5, cos, phi, mb, mx, ml)
    f = tuple(float(v[0]) for v in ff.pcr_dirac(np.array([5.5]), mb, np.array([mx])))
    assert not np.allclose(_trace_rate(config, mb, mx, ml, f, True), _trace_rate(config, mb, mx, ml, f, False), rtol=1e-2)


def _pcr_q2_bins(q_edges: np.ndarray, mb: float, mx: float, ml: float) -> np.ndarray:
    """dΓ/dq² of Λb → Λc ℓ ν̄ (BaryonPCR) integrated over q² bins: traces × dΦ3, Gauss–Legendre."""
    x, wq = np.polynomial.legendre.leggauss(8)
    cos, phi = (a.ravel() for a in np.meshgrid(np.linspace(-1, 1, 21), np.linspace(0, 2 * np.pi, 4, endpoint=False), indexing="ij"))
    by_q = np.zeros(len(q_edges) - 1)
    for i, (a, b) in enumerate(itertools.pairwise(q_edges)):
        for xi, wi in zip(x, wq, strict=True):
            qq = 0.5 * (a + b) + 0.5 * (b - a) * xi
            f = tuple(float(v[0]) for v in ff.pcr_dirac(np.array([qq]), mb, np.array([mx])))
            rate = _trace_rate(_lambda_b_config(qq, cos, phi, mb, mx, ml), mb, mx, ml, f).reshape(21, 4).mean(axis=1)
            ps = ff._pmag(mb, mx, np.array([qq]))[0] * (qq - ml * ml) / qq  # dΦ3 ∝ |p_X| (1 − m²/q²) dq² dcosθ
            by_q[i] += wi * ps * np.trapezoid(rate, np.linspace(-1, 1, 21))
    return by_q


def test_lambda_b_spin_density_is_taken_in_the_helicity_frame_of_its_flight() -> None:
    """A flying Λb: BaryonPCR's density in the helicity basis along its lab direction (EvtGen's (φ, θ, 0))."""
    par, had = 5122, 4122
    mb, mx, ml = _mass(par) * 1e-3, _mass(had) * 1e-3, M_MU * 1e-3
    cos, phi = (a.ravel() for a in np.meshgrid(np.linspace(-0.9, 0.9, 4), np.linspace(0.3, 5.0, 3), indexing="ij"))
    q2 = 4.0
    config = _lambda_b_config(q2, cos, phi, mb, mx, ml)
    f = tuple(float(v[0]) for v in ff.pcr_dirac(np.array([q2]), mb, np.array([mx])))
    theta_b, phi_b = 1.1, 0.7
    n = np.array([np.sin(theta_b) * np.cos(phi_b), np.sin(theta_b) * np.sin(phi_b), np.cos(theta_b)])
    x_axis = np.array([np.cos(theta_b) * np.cos(phi_b), np.cos(theta_b) * np.sin(phi_b), -np.sin(theta_b)])
    gamma_b, pmag = 7.0, mb * np.sqrt(48.0)
    frame = np.concatenate([n * pmag * 1e3, [gamma_b * mb * 1e3]])
    p4 = [boost(_mev_xyz(c), np.broadcast_to(frame, (len(cos), 4))) for c in config]
    for params, spin in (((1.0, 0.0, 0.0, 0.0), n), ((0.0, 0.0, 0.0, 1.0), -n), ((1.0, 1.0, 1.0, 1.0), x_axis)):
        nodes = [NodeSpec(par, "BaryonPCR", params, (1, 2, 3), -1), NodeSpec(had, "", (), (), 0), NodeSpec(13, "", (), (), 0), NodeSpec(-14, "", (), (), 0)]
        np.testing.assert_allclose(chain_weight(nodes, p4), _trace_rate(config, mb, mx, ml, f, spin=spin), rtol=1e-6)


def test_lambda_b_baryonpcr_q2_spectrum() -> None:
    """The default job's Λb → Λc μ ν̄ (BaryonPCR 1 1 1 1): weighted q² histogram vs the trace-integrated dΓ/dq²."""
    par, had = 5122, 4122
    mb, mx, ml = _mass(par) * 1e-3, _mass(had) * 1e-3, M_MU * 1e-3
    p4, _ = _generate(par, had, 13, -14, 60_000, 9)
    nodes = [NodeSpec(par, "BaryonPCR", (1.0, 1.0, 1.0, 1.0), (1, 2, 3), -1), NodeSpec(had, "", (), (), 0), NodeSpec(13, "", (), (), 0), NodeSpec(-14, "", (), (), 0)]
    w = chain_weight(nodes, p4)
    q2, _cos = _q2_cos(p4[1], p4[2], p4[3], p4[0])
    q_edges = np.linspace(ml**2, (mb - mx) ** 2, N_BINS + 1)
    by_q = _pcr_q2_bins(q_edges, mb, mx, ml)
    assert _chi2(q2, w, q_edges, by_q) < 2.5
    assert _chi2(q2, np.ones_like(w), q_edges, by_q) > 10


def test_form_factor_models_refuse_what_they_cannot_do() -> None:
    with pytest.raises(DecayError, match="ISGW2 transition D0 -> .* is not implemented; ISGW2 has"):
        ff.check_model("ISGW2", 421, -325, ())  # D0 -> K_2*-: tensors only from b hadrons
    with pytest.raises(DecayError, match=r"HQET2 for .* \(vector\) needs 4 or 5 parameters"):
        ff.check_model("HQET2", -511, 413, (1.1, 0.9))
    with pytest.raises(DecayError, match="BaryonPCR is implemented for Lambda_b0 -> Lambda_c"):  # p: not PCR's
        ff.check_model("BaryonPCR", 5122, 2212, (1, 1, 1, 1))
    nodes = [NodeSpec(-511, "HQET2", (1.1, 0.9), (1, 2, 3), -1), NodeSpec(413, "", (), (), 0), NodeSpec(13, "", (), (), 0), NodeSpec(-14, "", (), (), 0)]
    with pytest.raises(DecayError, match="HQET2"):
        model_weight_bound(nodes)


def test_cln_form_factors_at_zero_recoil() -> None:
    """At w = 1 (q² = (M−m)²): h_A1 = h_A1(1), R1 = R1(1), R2 = R2(1) by construction of the CLN parametrisation."""
    mb, mx = 5.27966, 2.01026
    params = (1.122, 0.908, 1.270, 0.852)
    q2 = np.array([(mb - mx) ** 2])
    a1, a2, v, _a0 = ff.hqet2_vector(params, q2, mb, mx)
    rstar = 2 * np.sqrt(mb * mx) / (mb + mx)
    np.testing.assert_allclose(a1 * rstar / (1 - q2 / (mb + mx) ** 2), 0.908)
    np.testing.assert_allclose(v / a1 * (1 - q2 / (mb + mx) ** 2), 1.270)
    np.testing.assert_allclose(a2 / a1 * (1 - q2 / (mb + mx) ** 2), 0.852)


DEC_LB = """Decay Lambda_b0
1.0 Lambda_c+ mu- anti-nu_mu BaryonPCR 1 1 1 1;
Enddecay
Decay Lambda_c+
1.0 p+ K- pi+ PHSP;
Enddecay
End
"""


def test_engine_dec_file_lambda_b_q2_spectrum(tmp_path: Path) -> None:
    """End to end: a DecFile's Λb0 → Λc+ μ− ν̄ (BaryonPCR) through the decay engine has the PCR q² spectrum."""
    from sim import load_decay

    path = tmp_path / "lb.dec"
    path.write_text(DEC_LB)
    chain = load_decay(dec_file=path).chains[0]
    pids = [nd.pid for nd in chain.nodes]
    assert pids[:4] == [5122, 4122, 13, -14]
    rest = chain.generate_rest_frame(30_000, seed=41)
    q = rest[:, 2] + rest[:, 3]
    q2 = (q[:, 3] ** 2 - np.sum(q[:, :3] ** 2, axis=1)) * 1e-6
    mb, mx, ml = _mass(5122) * 1e-3, _mass(4122) * 1e-3, M_MU * 1e-3
    q_edges = np.linspace(ml**2, (mb - mx) ** 2, N_BINS + 1)
    by_q = _pcr_q2_bins(q_edges, mb, mx, ml)
    assert _chi2(q2, np.ones_like(q2), q_edges, by_q) < 2.5
    flat = np.array([ff._pmag(mb, mx, np.array([0.5 * (a + b)]))[0] * (1 - ml * ml / (0.5 * (a + b))) for a, b in itertools.pairwise(q_edges)])
    assert _chi2(q2, np.ones_like(q2), q_edges, flat) > 10  # phase space is excluded


# ----------------------------------------------------------------------------- importance-sampled semileptonic decays


def test_semileptonic_proposal_ratio_reweights_to_phase_space() -> None:
    """Proposal events weighted by their dΦ3/g ratio are flat three-body phase space: the q² density
    |p_X|·(1 − m²/q²) (massless ν) and a flat cosθ_ℓ — whatever |M|² the proposal was built from."""
    from sim.generation.sampling import build_semileptonic_proposal

    big_m, mx, ml = _mass(5122), _mass(4122), M_MU

    def toy(p4: np.ndarray) -> np.ndarray:  # a steep, asymmetric |M|²: q² and cosθ_ℓ dependence
        q = p4[:, 1] + p4[:, 2]
        q2 = q[:, 3] ** 2 - np.sum(q[:, :3] ** 2, axis=1)
        return (1.0 + q2 / 4e6) ** 2 * (1.0 + np.sum(p4[:, 1, :3] * q[:, :3], axis=1) / np.maximum(q[:, 3] * 1e3, 1.0))

    prop = build_semileptonic_proposal(toy, (big_m, mx, ml, 0.0), seed=3)
    p4, ratio = prop.sample(100_000, np.random.default_rng(11))
    np.testing.assert_allclose(p4.sum(axis=1), np.tile([0.0, 0.0, 0.0, big_m], (len(p4), 1)), atol=1e-6)
    np.testing.assert_allclose(sampling_masses(p4), np.tile([mx, ml, 0.0], (len(p4), 1)), atol=1e-3)  # [MeV]
    pb = np.tile([0.0, 0.0, 0.0, big_m], (len(p4), 1))
    q2, cos = _q2_cos(p4[:, 0], p4[:, 1], p4[:, 2], pb)
    mb_g, mx_g, ml_g = big_m * 1e-3, mx * 1e-3, ml * 1e-3
    q_edges = np.linspace(ml_g**2, (mb_g - mx_g) ** 2, N_BINS + 1)
    x, wq = np.polynomial.legendre.leggauss(8)
    flat = np.array([
        sum(wi * ff._pmag(mb_g, mx_g, np.array([0.5 * (a + b) + 0.5 * (b - a) * xi]))[0] * (1 - ml_g**2 / (0.5 * (a + b) + 0.5 * (b - a) * xi))
            for xi, wi in zip(x, wq, strict=True))
        for a, b in itertools.pairwise(q_edges)
    ])  # fmt: skip
    c_edges = np.linspace(-1, 1, N_BINS + 1)
    assert _chi2(q2, ratio, q_edges, flat) < 2.5
    assert _chi2(cos, ratio, c_edges, np.ones(N_BINS)) < 2.5
    assert _chi2(q2, np.ones_like(ratio), q_edges, flat) > 10  # unweighted, the proposal follows the toy, not phase space


def sampling_masses(p4: np.ndarray) -> np.ndarray:
    return np.sqrt(np.maximum(p4[..., 3] ** 2 - np.sum(p4[..., :3] ** 2, axis=-1), 0.0))


def _pcr_cos_bins(c_edges: np.ndarray, mb: float, mx: float, ml: float) -> np.ndarray:
    """dΓ/dcosθ_ℓ of Λb → Λc ℓ ν̄ (BaryonPCR, unpolarised) integrated over q² and cosθ_ℓ bins: traces × dΦ3."""
    xq, wq = np.polynomial.legendre.leggauss(6)
    xc, wc = np.polynomial.legendre.leggauss(4)
    q_edges = np.linspace(ml * ml, (mb - mx) ** 2, 9)
    cos = np.concatenate([0.5 * (a + b) + 0.5 * (b - a) * xc for a, b in itertools.pairwise(c_edges)])
    wcos = np.concatenate([0.5 * (b - a) * wc for a, b in itertools.pairwise(c_edges)])
    out = np.zeros(len(c_edges) - 1)
    for a, b in itertools.pairwise(q_edges):
        for xi, wi in zip(xq, wq, strict=True):
            qq = 0.5 * (a + b) + 0.5 * (b - a) * xi
            f = tuple(float(v[0]) for v in ff.pcr_dirac(np.array([qq]), mb, np.array([mx])))
            rate = _trace_rate(_lambda_b_config(qq, cos, np.zeros_like(cos), mb, mx, ml), mb, mx, ml, f)
            ps = ff._pmag(mb, mx, np.array([qq]))[0] * (qq - ml * ml) / qq
            out += 0.5 * (b - a) * wi * ps * (rate * wcos).reshape(len(out), -1).sum(axis=1)
    return out


def test_default_job_lambda_b_is_baryonpcr_and_its_unweighted_spectra_follow_the_traces() -> None:
    """The default job (descriptor, form factors): unweighted q² and cosθ_ℓ of Λb → Λc μ ν̄ vs the Dirac-trace rate."""
    from sim import Generator
    from sim.generation.decay import LAMBDA_B_UNPOLARISED

    model = Generator().load()
    chain = model.chains[0]
    assert (chain.nodes[0].model, chain.nodes[0].params) == ("BaryonPCR", LAMBDA_B_UNPOLARISED)
    assert model.engine.chain_inline(chain)  # sampled in (q², cosθ_ℓ), not accept–reject on the whole chain
    rest = chain.generate_rest_frame(40_000, seed=23)
    np.testing.assert_allclose(rest[:, 1] - rest[:, 4] - rest[:, 5] - rest[:, 6], 0.0, atol=1e-6)  # Λc → p K π below it
    q2, cos = _q2_cos(rest[:, 1], rest[:, 2], rest[:, 3], rest[:, 0])
    mb, mx, ml = _mass(5122) * 1e-3, _mass(4122) * 1e-3, M_MU * 1e-3
    q_edges = np.linspace(ml**2, (mb - mx) ** 2, N_BINS + 1)
    c_edges = np.linspace(-1, 1, N_BINS + 1)
    by_q = _pcr_q2_bins(q_edges, mb, mx, ml)
    by_c = _pcr_cos_bins(c_edges, mb, mx, ml)
    ones = np.ones_like(q2)
    assert _chi2(q2, ones, q_edges, by_q) < 2.5
    assert _chi2(cos, ones, c_edges, by_c) < 2.5
    flat_q = np.array([ff._pmag(mb, mx, np.array([0.5 * (a + b)]))[0] * (1 - ml * ml / (0.5 * (a + b))) for a, b in itertools.pairwise(q_edges)])
    assert _chi2(q2, ones, q_edges, flat_q) > 10  # phase space is excluded
    assert _chi2(cos, ones, c_edges, by_c[::-1]) > 10  # so is the mirrored lepton angle


def test_polarised_lambda_b_through_the_sampler_has_the_trace_asymmetry(tmp_path: Path) -> None:
    """BaryonPCR 1 1 1 1 (transverse Λb spin, EvtGen's reading), Λb flying: the Λc direction in the Λb
    frame along the spin axis is 1 + a·c, a from the traces with the spin along ±Λc."""
    from sim import load_decay
    from sim.generation.dectable import DEFAULT_STABLE

    path = tmp_path / "lb.dec"
    path.write_text("Decay Lambda_b0\n1.0 Lambda_c+ mu- anti-nu_mu BaryonPCR 1 1 1 1;\nEnddecay\nEnd\n")
    model = load_decay(dec_file=path, stable=(*DEFAULT_STABLE, "Lambda_c+"))
    chain = model.chains[0]
    assert model.engine.chain_inline(chain)
    n = 40_000
    theta_b, phi_b = 1.1, 0.7
    nvec = np.array([np.sin(theta_b) * np.cos(phi_b), np.sin(theta_b) * np.sin(phi_b), np.cos(theta_b)])
    axis = np.array([np.cos(theta_b) * np.cos(phi_b), np.cos(theta_b) * np.sin(phi_b), -np.sin(theta_b)])
    mbm = _mass(5122)
    head = np.tile(np.concatenate([nvec * 7.0 * mbm, [np.hypot(7.0, 1.0) * mbm]]), (n, 1))
    rows = model.engine.generate(np.full(n, chain.root, np.int64), head, np.random.default_rng(31))
    p4 = rows.chain_p4(chain)
    lc = rest_frame(p4[:, 1], p4[:, 0])
    c = lc[:, :3] @ axis / np.linalg.norm(lc[:, :3], axis=1)
    # a from the traces: spin along +z (Λc along −z, c = −1) and −z (c = +1), integrated over q², cosθ_ℓ
    mb, mx, ml = mbm * 1e-3, _mass(4122) * 1e-3, M_MU * 1e-3
    xq, wq = np.polynomial.legendre.leggauss(24)
    cos = np.linspace(-1, 1, 41)
    rate = {+1: 0.0, -1: 0.0}
    for xi, wi in zip(xq, wq, strict=True):
        qq = ml * ml + 0.5 * ((mb - mx) ** 2 - ml * ml) * (1 + xi)
        f = tuple(float(v[0]) for v in ff.pcr_dirac(np.array([qq]), mb, np.array([mx])))
        ps = ff._pmag(mb, mx, np.array([qq]))[0] * (qq - ml * ml) / qq
        cfg = _lambda_b_config(qq, cos, np.zeros_like(cos), mb, mx, ml)
        for sgn in (+1, -1):
            rate[sgn] += wi * ps * np.trapezoid(_trace_rate(cfg, mb, mx, ml, f, spin=np.array([0.0, 0.0, float(sgn)])), cos)
    a = (rate[-1] - rate[+1]) / (rate[-1] + rate[+1])
    assert abs(a) > 0.1
    edges = np.linspace(-1, 1, N_BINS + 1)
    expected = np.array([(hi - lo) + 0.5 * a * (hi * hi - lo * lo) for lo, hi in itertools.pairwise(edges)])
    assert _chi2(c, np.ones(n), edges, expected) < 2.5
    assert _chi2(c, np.ones(n), edges, np.ones(N_BINS)) > 10  # unpolarised is excluded


def test_engine_hqet2_dstar_unweighted_q2_and_lepton_angle(tmp_path: Path) -> None:
    """B̄0 → D*+ μ− ν̄ (HQET2) through the engine's sampler: unweighted q², cosθ_ℓ vs Körner–Schuler."""
    from sim import load_decay
    from sim.generation.dectable import DEFAULT_STABLE

    par, had, params = -511, 413, (1.122, 0.908, 1.270, 0.852)
    path = tmp_path / "b.dec"
    path.write_text(f"Decay anti-B0\n1.0 D*+ mu- anti-nu_mu HQET2 {' '.join(map(str, params))};\nEnddecay\nEnd\n")
    model = load_decay(dec_file=path, stable=(*DEFAULT_STABLE, "D*+"))
    chain = model.chains[0]
    assert model.engine.chain_inline(chain)
    rest = chain.generate_rest_frame(40_000, seed=5)
    q2, cos = _q2_cos(rest[:, 1], rest[:, 2], rest[:, 3], rest[:, 0])
    q_edges = np.linspace((M_MU * 1e-3) ** 2, ((_mass(par) - _mass(had)) * 1e-3) ** 2, N_BINS + 1)
    c_edges = np.linspace(-1, 1, N_BINS + 1)
    by_q, by_c = _analytic_bins(par, had, "HQET2", params, q_edges, c_edges)
    ones = np.ones_like(q2)
    assert _chi2(q2, ones, q_edges, by_q) < 2.5
    assert _chi2(cos, ones, c_edges, by_c) < 2.5
    assert _chi2(cos, ones, c_edges, by_c[::-1]) > 10


def test_descriptor_models_choice_and_same_seed_same_batch() -> None:
    """descriptor_models: physical (default) / phase-space / refused; a batch depends on its seed only."""
    from mambah.errors import ConfigError
    from sim import Generator
    from sim.generation.decay import descriptor_form_factor
    from sim.generation.dectable import ModeSpec
    from sim.generation.generator import generate_tables

    assert Generator(descriptor_models="phase-space").load().chains[0].nodes[0].model == "PHSP"
    with pytest.raises(ConfigError, match="descriptor_models must be one of physical, phase-space, got 'cln'"):
        Generator(descriptor_models="cln")
    hqet = ModeSpec(0.05, ("D*+", "mu-", "anti-nu_mu"), "HQET2", (1.122, 0.908, 1.270, 0.852))
    assert descriptor_form_factor(-511, (413, 13, -14), hqet) == ("HQET2", (1.122, 0.908, 1.270, 0.852))
    assert descriptor_form_factor(-511, (413, 13, -14)) == ("ISGW2", ())
    assert descriptor_form_factor(-5122, (-4122, -13, 14)) == ("BaryonPCR", (1.0, 0.0, 0.0, 1.0))
    assert descriptor_form_factor(5122, (2212, 13, -14)) is None  # no model for Λb → p: phase space
    assert descriptor_form_factor(521, (443, 321)) is None
    gen = Generator()
    a, b = gen.load(), gen.load()
    spectrum = gen.resolved_spectrum(a)
    first = generate_tables(a, 500, np.random.default_rng(5), spectrum=spectrum)
    generate_tables(b, 700, np.random.default_rng(9), spectrum=spectrum)  # another batch before it in that process
    again = generate_tables(b, 500, np.random.default_rng(5), spectrum=spectrum)
    for name in first:
        assert first[name].equals(again[name])
