"""Helicity-amplitude engine: angular distributions of EvtGen models against their analytic forms.

Events are flat phase space from :mod:`sim.generation.sampling` (numpy, fixed seeds), boosted
to the lab, weighted by :func:`chain_weight` and unweighted by accept–reject against
:func:`model_weight_bound`; the analytic distributions are written out here independently
(Wigner d-functions by hand).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scipy import stats

from mambah.errors import DecayError
from sim.generation.amplitudes import (
    SUPPORTED_MODELS,
    NodeSpec,
    chain_weight,
    helicity_couplings,
    model_weight_bound,
    wigner_d,
    wigner_small_d,
)
from sim.generation.sampling import rest_frame, two_body

M_B0, M_BP, M_JPSI, M_KST, M_K, M_PI, M_MU = 5279.66, 5279.34, 3096.9, 895.55, 493.677, 139.57, 105.658
M_DST, M_D0, M_D2 = 2010.26, 1864.84, 2461.1


def _head(n: int, mass: float, rng: np.random.Generator) -> np.ndarray:
    """Heads flying in random lab directions with 5–80 GeV momentum (exercises the frames)."""
    p = rng.uniform(5000.0, 80000.0, n)
    c = rng.uniform(-1, 1, n)
    ph = rng.uniform(-np.pi, np.pi, n)
    s = np.sqrt(1 - c * c)
    p3 = np.stack([s * np.cos(ph), s * np.sin(ph), c], axis=1) * p[:, None]
    return np.concatenate([p3, np.sqrt(mass**2 + p**2)[:, None]], axis=1)


def _unweight(nodes: list[NodeSpec], p4: list[np.ndarray], rng: np.random.Generator) -> np.ndarray:
    w = chain_weight(nodes, p4)
    bound = model_weight_bound(nodes)
    assert bound is not None
    assert np.all(w <= bound * (1 + 1e-9)), (w.max(), bound)
    return rng.random(len(w)) * bound < w


def _helicity_cos(child: np.ndarray, parent: np.ndarray, grand: np.ndarray) -> np.ndarray:
    """cos of the helicity angle: ``child`` in ``parent``'s rest frame vs ``parent``'s direction in ``grand``'s."""
    par_g = rest_frame(parent, grand)
    ch = rest_frame(rest_frame(child, grand), par_g)
    return np.sum(ch[:, :3] * par_g[:, :3], axis=1) / np.linalg.norm(ch[:, :3], axis=1) / np.linalg.norm(par_g[:, :3], axis=1)


def _ks(x: np.ndarray, pdf: Callable[[np.ndarray], np.ndarray]) -> float:
    grid = np.linspace(-1.0, 1.0, 20001)
    dens = pdf(grid)
    cdf = np.concatenate([[0.0], np.cumsum(0.5 * (dens[1:] + dens[:-1]) * np.diff(grid))])
    cdf /= cdf[-1]
    return float(stats.kstest(x, lambda v: np.interp(v, grid, cdf)).pvalue)


def test_wigner_functions_closed_forms_and_unitarity() -> None:
    t = np.linspace(0.0, math.pi, 7)
    c, s = np.cos(t), np.sin(t)
    np.testing.assert_allclose(wigner_small_d(2, 2, 0, t), -s / math.sqrt(2), atol=1e-12)
    np.testing.assert_allclose(wigner_small_d(2, 0, 0, t), c, atol=1e-12)
    np.testing.assert_allclose(wigner_small_d(2, 1 * 2, -2, t), (1 - c) / 2, atol=1e-12)
    np.testing.assert_allclose(wigner_small_d(1, 1, -1, t), -np.sin(t / 2), atol=1e-12)
    np.testing.assert_allclose(wigner_small_d(4, 0, 2, t), math.sqrt(1.5) * s * c, atol=1e-12)
    np.testing.assert_allclose(wigner_small_d(4, 0, 0, t), 0.5 * (3 * c * c - 1), atol=1e-12)
    a, b, g = np.array([0.3]), np.array([1.1]), np.array([-0.7])
    for j2 in (1, 2, 3, 4):
        ms = range(j2, -j2 - 1, -2)
        d = np.array([[wigner_d(j2, m, k, a, b, g)[0] for k in ms] for m in ms])
        np.testing.assert_allclose(d @ d.conj().T, np.eye(j2 + 1), atol=1e-12)


def test_all_phsp_chain_weighs_one() -> None:
    rng = np.random.default_rng(3)
    pb = _head(1000, M_BP, rng)
    pj, pk = two_body(pb, M_JPSI, M_K, rng)
    m1, m2 = two_body(pj, M_MU, M_MU, rng)
    nodes = [
        NodeSpec(521, "PHSP", (), (1, 2), -1),
        NodeSpec(443, "PHSP", (), (3, 4), 0),
        NodeSpec(321, "", (), (), 0),
        NodeSpec(-13, "", (), (), 1),
        NodeSpec(13, "", (), (), 1),
    ]
    np.testing.assert_array_equal(chain_weight(nodes, [pb, pj, pk, m1, m2]), 1.0)
    assert model_weight_bound(nodes) == 1.0


def _jpsi_k(n: int, seed: int, model_jpsi: str) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    pb = _head(n, M_BP, rng)
    pj, pk = two_body(pb, M_JPSI, M_K, rng)
    m1, m2 = two_body(pj, M_MU, M_MU, rng)
    nodes = [
        NodeSpec(521, "SVS", (), (1, 2), -1),
        NodeSpec(443, model_jpsi, (), (3, 4), 0),
        NodeSpec(321, "", (), (), 0),
        NodeSpec(-13, "", (), (), 1),
        NodeSpec(13, "", (), (), 1),
    ]
    keep = _unweight(nodes, [pb, pj, pk, m1, m2], rng)
    return _helicity_cos(m1, pj, pb)[keep], keep


def test_svs_vll_muon_helicity_angle_is_sin2() -> None:
    cos, keep = _jpsi_k(120_000, 11, "VLL")
    eps = 4 * M_MU**2 / M_JPSI**2  # helicity-flip term of V -> l l with massive leptons
    assert _ks(cos, lambda c: 1 - c * c + eps * c * c) > 0.01
    assert _ks(cos, np.ones_like) < 1e-10  # flat is excluded: the test can fail
    assert 0.62 < keep.mean() < 0.71  # bound 3/2 = the maximum: efficiency 2/3


def test_vss_pion_helicity_angle_is_cos2_from_a_scalar_parent() -> None:
    rng = np.random.default_rng(12)
    n = 100_000
    pb = _head(n, M_B0, rng)
    pds, ppi = two_body(pb, M_DST, M_PI, rng)
    pd0, pslow = two_body(pds, M_D0, M_PI, rng)
    nodes = [
        NodeSpec(511, "SVS", (), (1, 2), -1),
        NodeSpec(-413, "VSS", (), (3, 4), 0),
        NodeSpec(211, "", (), (), 0),
        NodeSpec(-421, "", (), (), 1),
        NodeSpec(-211, "", (), (), 1),
    ]
    keep = _unweight(nodes, [pb, pds, ppi, pd0, pslow], rng)
    cos = _helicity_cos(pslow, pds, pb)[keep]
    assert _ks(cos, lambda c: c * c) > 0.01
    assert _ks(cos, np.ones_like) < 1e-10


def test_vsp_pwave_photon_angle_of_a_longitudinal_vector_is_sin2() -> None:
    rng = np.random.default_rng(16)
    n = 60_000
    pb = _head(n, M_BP, rng)
    pds, ppi = two_body(pb, 2006.85, M_PI, rng)
    pd0, pg = two_body(pds, M_D0, 0.0, rng)
    nodes = [
        NodeSpec(-521, "SVS", (), (1, 2), -1),
        NodeSpec(423, "VSP_PWAVE", (), (3, 4), 0),
        NodeSpec(-211, "", (), (), 0),
        NodeSpec(421, "", (), (), 1),
        NodeSpec(22, "", (), (), 1),
    ]
    keep = _unweight(nodes, [pb, pds, ppi, pd0, pg], rng)
    cos = _helicity_cos(pg, pds, pb)[keep]
    assert _ks(cos, lambda c: 1 - c * c) > 0.01


def test_sts_tvs_pwave_d_wave_chain() -> None:
    """B- -> D2*0 pi- (STS): D2* longitudinal; D2* -> D*+ pi- in a D wave: <2 0; 1 0|2 0> = 0, D* transverse."""
    rng = np.random.default_rng(14)
    n = 120_000
    pb = _head(n, M_BP, rng)
    pd2, ppi = two_body(pb, M_D2, M_PI, rng)
    pds, ppi2 = two_body(pd2, M_DST, M_PI, rng)
    pd0, pslow = two_body(pds, M_D0, M_PI, rng)
    nodes = [
        NodeSpec(-521, "STS", (), (1, 2), -1),
        NodeSpec(425, "TVS_PWAVE", (0.0, 0.0, 1.0, 0.0, 0.0, 0.0), (3, 4), 0),
        NodeSpec(-211, "", (), (), 0),
        NodeSpec(413, "VSS", (), (5, 6), 1),
        NodeSpec(-211, "", (), (), 1),
        NodeSpec(421, "", (), (), 3),
        NodeSpec(211, "", (), (), 3),
    ]
    keep = _unweight(nodes, [pb, pd2, ppi, pds, ppi2, pd0, pslow], rng)
    cos_ds = _helicity_cos(pds, pd2, pb)[keep]
    assert _ks(cos_ds, lambda c: c * c * (1 - c * c)) > 0.01  # |d^2_{0,±1}|² ∝ sin²θ cos²θ
    # the slow pion's angle in the D* frame (D* reached from the D2* frame): transverse D* -> sin²
    pd2_b = rest_frame(pd2, pb)
    ds_in = rest_frame(rest_frame(pds, pb), pd2_b)
    sl_in = rest_frame(rest_frame(rest_frame(pslow, pb), pd2_b), ds_in)
    cos_sl = np.sum(sl_in[:, :3] * ds_in[:, :3], 1) / np.linalg.norm(sl_in[:, :3], axis=1) / np.linalg.norm(ds_in[:, :3], axis=1)
    assert _ks(cos_sl[keep], lambda c: 1 - c * c) > 0.01


SVV = (0.159, 1.563, 0.775, 0.0, 0.612, 2.712)  # |H+| arg |H0| arg |H-| arg (B0 -> J/psi K*0 DecFiles)


def _jpsi_kst(n: int, seed: int, model: str, params: tuple[float, ...]) -> tuple[list[np.ndarray], list[NodeSpec]]:
    rng = np.random.default_rng(seed)
    pb = _head(n, M_B0, rng)
    pj, pks = two_body(pb, M_JPSI, M_KST, rng)
    mp, mm = two_body(pj, M_MU, M_MU, rng)
    kp, pim = two_body(pks, M_K, M_PI, rng)
    nodes = [
        NodeSpec(511, model, params, (1, 2), -1),
        NodeSpec(443, "VLL", (), (3, 4), 0),
        NodeSpec(313, "VSS", (), (5, 6), 0),
        NodeSpec(-13, "", (), (), 1),
        NodeSpec(13, "", (), (), 1),
        NodeSpec(321, "", (), (), 2),
        NodeSpec(-211, "", (), (), 2),
    ]
    return [pb, pj, pks, mp, mm, kp, pim], nodes


def test_svv_helamp_helicity_fractions_and_angles() -> None:
    p4, nodes = _jpsi_kst(150_000, 21, "SVV_HELAMP", SVV)
    rng = np.random.default_rng(22)
    keep = _unweight(nodes, p4, rng)
    pb, pj, pks, mp, _mm, kp, _pi = (p[keep] for p in p4)
    hp, h0, hm = (SVV[0] * np.exp(1j * SVV[1]), SVV[2] * np.exp(1j * SVV[3]), SVV[4] * np.exp(1j * SVV[5]))
    total = abs(hp) ** 2 + abs(h0) ** 2 + abs(hm) ** 2
    f_l = abs(h0) ** 2 / total
    r = 2 * M_MU**2 / M_JPSI**2
    # K* helicity angle: f_L cos² + (1 - f_L) sin²/2 ; muon helicity angle: f_L L(c) + (1 - f_L) T(c)
    cos_k = _helicity_cos(kp, pks, pb)
    assert _ks(cos_k, lambda c: f_l * 1.5 * c * c + (1 - f_l) * 0.75 * (1 - c * c)) > 0.01
    assert _ks(cos_k, np.ones_like) < 1e-10

    def lon(c: np.ndarray) -> np.ndarray:
        return (1 - c * c + 2 * r * c * c) / (4 / 3 + 4 * r / 3)

    def tra(c: np.ndarray) -> np.ndarray:
        return ((1 + c * c) / 2 + r * (1 - c * c)) / (4 / 3 + 4 * r / 3)

    cos_l = _helicity_cos(mp, pj, pb)
    assert _ks(cos_l, lambda c: f_l * lon(c) + (1 - f_l) * tra(c)) > 0.01
    # angle between the decay planes: dΓ/dχ ∝ Σ|H|² − Re(H+ H−* e^{±2iχ}) (muon-mass terms neglected)
    jb = rest_frame(pj, pb)
    z = jb[:, :3] / np.linalg.norm(jb[:, :3], axis=1)[:, None]
    a = rest_frame(mp, pb)[:, :3]
    b = rest_frame(kp, pb)[:, :3]
    a -= np.sum(a * z, 1)[:, None] * z
    b -= np.sum(b * z, 1)[:, None] * z
    chi = np.arctan2(np.sum(np.cross(a, b) * z, 1), np.sum(a * b, 1))
    moment = np.mean(np.exp(2j * chi))
    sigma = math.sqrt(0.5 / len(chi))
    assert abs(abs(moment) - abs(hp) * abs(hm) / (2 * total)) < 4 * sigma
    expected = [np.angle(-np.conj(hp * np.conj(hm))), np.angle(-hp * np.conj(hm))]  # χ orientation: either sign
    assert min(abs(np.angle(moment * np.exp(-1j * e))) for e in expected) < 4 * sigma / abs(moment)


def test_helamp_with_svv_amplitudes_equals_svv_helamp() -> None:
    p4, nodes = _jpsi_kst(2000, 23, "SVV_HELAMP", SVV)
    _, nodes_h = _jpsi_kst(1, 23, "HELAMP", SVV)
    np.testing.assert_allclose(chain_weight(nodes_h, p4), chain_weight(nodes, p4), rtol=1e-10)


def test_unsupported_model_names_it_and_the_supported_list() -> None:
    rng = np.random.default_rng(5)
    pb = _head(10, M_BP, rng)
    pj, pk = two_body(pb, M_JPSI, M_K, rng)
    nodes = [NodeSpec(521, "BTOSLLBALL", (), (1, 2), -1), NodeSpec(443, "", (), (), 0), NodeSpec(321, "", (), (), 0)]
    with pytest.raises(DecayError, match=r"'BTOSLLBALL' of B\+ is not supported; supported: .*SVV_HELAMP") as err:
        chain_weight(nodes, [pb, pj, pk])
    assert "\n" not in str(err.value)
    with pytest.raises(DecayError, match="BTOSLLBALL"):
        model_weight_bound(nodes)
    assert {"PHSP", "SVS", "VSS", "VLL", "SVV_HELAMP", "HELAMP", "ISGW2", "HQET2", "BaryonPCR"} <= SUPPORTED_MODELS


def test_bad_parameters_and_spins_are_errors() -> None:
    bad = [NodeSpec(511, "SVV_HELAMP", (1.0, 0.0), (1, 2), -1), NodeSpec(443, "", (), (), 0), NodeSpec(313, "", (), (), 0)]
    with pytest.raises(DecayError, match="SVV_HELAMP decay of B0 needs 6 parameters"):
        model_weight_bound(bad)
    spins = [NodeSpec(521, "VSS", (), (1, 2), -1), NodeSpec(443, "", (), (), 0), NodeSpec(321, "", (), (), 0)]
    with pytest.raises(DecayError, match="VSS needs parent, daughters with spins"):
        model_weight_bound(spins)
    zero = [NodeSpec(10323, "VVS_PWAVE", (0.0,) * 6, (1, 2), -1), NodeSpec(313, "", (), (), 0), NodeSpec(211, "", (), (), 0)]
    with pytest.raises(DecayError, match="all helicity amplitudes are zero"):
        model_weight_bound(zero)


def test_partial_waves_convert_to_the_known_helicity_ratios() -> None:
    """V → V S: S wave H± = H0; D wave (p̂·ε)(p̂·ε'*) − ε·ε'*/3 gives H0/H± = −2; P wave H0 = 0, H+ = −H−."""
    s_wave = helicity_couplings("PARTWAVE", 20213, (113, 211), (1.0, 0.0, 0.0, 0.0, 0.0, 0.0))[2].ravel()
    p_wave = helicity_couplings("PARTWAVE", 20213, (113, 211), (0.0, 0.0, 1.0, 0.0, 0.0, 0.0))[2].ravel()
    d_wave = helicity_couplings("PARTWAVE", 20213, (113, 211), (0.0, 0.0, 0.0, 0.0, 1.0, 0.0))[2].ravel()
    np.testing.assert_allclose(s_wave, [1, 1, 1])
    np.testing.assert_allclose(p_wave[1], 0, atol=1e-12)
    np.testing.assert_allclose(p_wave[0], -p_wave[2])
    np.testing.assert_allclose(d_wave[1] / d_wave[0], -2.0)
    np.testing.assert_allclose(d_wave[2], d_wave[0])
    for params in ((1.0, 0.0, 0.0, 0.0, 0.0, 0.0), (0.0, 0.0, 0.0, 0.0, 1.0, 0.0), (1.0, 0.0, 0.3, 1.0, 0.5, 2.0)):
        vvs = helicity_couplings("VVS_PWAVE", 20213, (113, 211), params)[2]
        np.testing.assert_allclose(vvs, helicity_couplings("PARTWAVE", 20213, (113, 211), params)[2])
    tvs = helicity_couplings("TVS_PWAVE", 225, (113, 211), (0.0, 0.0, 1.0, 0.0, 0.0, 0.0))[2].ravel()
    part = helicity_couplings("PARTWAVE", 225, (113, 211), (0.0, 0.0, 1.0, 0.0, 0.0, 0.0))[2].ravel()
    np.testing.assert_allclose(tvs, part)
    with pytest.raises(DecayError, match="PARTWAVE decay of .* needs 6 parameters"):
        helicity_couplings("PARTWAVE", 20213, (113, 211), (1.0, 0.0))


# ----------------------------------------------------------------------------- end to end through the engine

DEC_JPSI_K = """Decay B+
1.0 J/psi K+ SVS;
Enddecay
Decay J/psi
1.0 mu+ mu- VLL;
Enddecay
End
"""

DEC_JPSI_KST = f"""Decay B0
1.0 J/psi K*0 SVV_HELAMP {" ".join(str(v) for v in SVV)};
Enddecay
Decay J/psi
1.0 mu+ mu- VLL;
Enddecay
Decay K*0
1.0 K+ pi- VSS;
Enddecay
End
"""


def test_engine_dec_file_svs_vll_gives_sin2(tmp_path: Path) -> None:
    from sim import load_decay

    path = tmp_path / "b2jpsik.dec"
    path.write_text(DEC_JPSI_K)
    chain = load_decay(dec_file=path).chains[0]
    assert [(nd.pid, nd.model) for nd in chain.nodes] == [(521, "SVS"), (443, "VLL"), (321, ""), (-13, ""), (13, "")]
    rest = chain.generate_rest_frame(40_000, seed=31)
    cos = _helicity_cos(rest[:, 3], rest[:, 1], rest[:, 0])
    eps = 4 * M_MU**2 / M_JPSI**2
    assert _ks(cos, lambda c: 1 - c * c + eps * c * c) > 0.01
    assert _ks(cos, np.ones_like) < 1e-10


def test_engine_dec_file_svv_helamp_fractions(tmp_path: Path) -> None:
    from sim import load_decay

    path = tmp_path / "b2jpsikst.dec"
    path.write_text(DEC_JPSI_KST)
    chain = load_decay(dec_file=path).chains[0]
    pids = [nd.pid for nd in chain.nodes]
    assert pids[:3] == [511, 443, 313]
    rest = chain.generate_rest_frame(40_000, seed=32)
    k_plus = pids.index(321)
    f_l = SVV[2] ** 2 / (SVV[0] ** 2 + SVV[2] ** 2 + SVV[4] ** 2)
    cos_k = _helicity_cos(rest[:, k_plus], rest[:, 2], rest[:, 0])
    assert _ks(cos_k, lambda c: f_l * 1.5 * c * c + (1 - f_l) * 0.75 * (1 - c * c)) > 0.01
    assert _ks(cos_k, lambda c: 1.5 * c * c) < 1e-10  # not fully longitudinal


def test_vvs_pwave_d_wave_chain_polarises_the_vector() -> None:
    """B- -> D_10 pi- (SVS: D_1 longitudinal), D_1 -> D*+ pi- (VVS_PWAVE D wave), D*+ -> D0 pi+ (VSS).

    D wave: H0 = −2 H± (Σ|H|² = 3 → |H0|² = 2, |H±|² = 1/2), so the D* helicity angle in the
    D_1 frame follows |H0|² |d¹₀₀|² + |H±|² (|d¹₀₁|² + |d¹₀₋₁|²) = 2 cos²θ + sin²θ/2.
    """
    rng = np.random.default_rng(15)
    n = 120_000
    m_d1 = 2422.1
    pb = _head(n, M_BP, rng)
    pd1, ppi = two_body(pb, m_d1, M_PI, rng)
    pds, ppi2 = two_body(pd1, M_DST, M_PI, rng)
    pd0, pslow = two_body(pds, M_D0, M_PI, rng)
    nodes = [
        NodeSpec(-521, "SVS", (), (1, 2), -1),
        NodeSpec(10423, "VVS_PWAVE", (0.0, 0.0, 0.0, 0.0, 1.0, 0.0), (3, 4), 0),
        NodeSpec(-211, "", (), (), 0),
        NodeSpec(413, "VSS", (), (5, 6), 1),
        NodeSpec(-211, "", (), (), 1),
        NodeSpec(421, "", (), (), 3),
        NodeSpec(211, "", (), (), 3),
    ]
    keep = _unweight(nodes, [pb, pd1, ppi, pds, ppi2, pd0, pslow], rng)
    cos_ds = _helicity_cos(pds, pd1, pb)[keep]
    assert _ks(cos_ds, lambda c: 2.0 * c * c + 0.5 * (1 - c * c)) > 0.01
    assert _ks(cos_ds, np.ones_like) < 1e-10  # an S wave (EvtGen's covariant D term) would be flat


TABLE_JPSI = """Decay B+
1.0 J/psi K+ SVS;
Enddecay
Decay J/psi
0.5 mu+ mu- VLL;
0.5 e+ e- VLL;
Enddecay
End
"""


def _muon_cos_of_table_completed(model: Any, n: int, seed: int) -> np.ndarray:
    """cosθ of the μ+ in the J/ψ frame (J/ψ direction in the B frame), B at rest, J/ψ decayed by the table."""
    chain = model.chains[0]
    head = np.zeros((n, 4))
    head[:, 3] = chain.nodes[0].mass
    rows = model.engine.generate(np.full(n, chain.root, np.int64), head, np.random.default_rng(seed))
    r = rows.chain_rows(chain)
    jpsi = r[:, [nd.pid for nd in chain.nodes].index(443)]
    first = rows.first[jpsi]
    mup = first + np.argmax(np.stack([model.engine.pid[rows.species[first + k]] for k in range(2)], axis=1) == -13, axis=1)
    is_mumu = np.isin(model.engine.pid[rows.species[first]], (13, -13))
    return _helicity_cos(rows.p4[mup[is_mumu]], rows.p4[jpsi[is_mumu]], rows.p4[r[is_mumu, 0]])


def test_table_completed_vll_under_a_user_svs_keeps_the_spin_correlation(tmp_path: Path) -> None:
    """The user writes only B+ → J/ψ K+ (SVS), the table decays J/ψ → μμ (VLL): weighted jointly, sin²θ."""
    from sim import load_decay

    table = tmp_path / "table.dec"
    table.write_text(TABLE_JPSI)
    dec = tmp_path / "b.dec"
    dec.write_text("Decay B+\n1.0 J/psi K+ SVS;\nEnddecay\nEnd\n")
    model = load_decay(dec_file=dec, decay_table=str(table))
    chain = model.chains[0]
    assert model.engine.joint_leaves(chain) == (1,)  # the J/ψ
    cos = _muon_cos_of_table_completed(model, 40_000, 41)
    assert 15_000 < len(cos) < 25_000  # half the J/ψ go to μμ
    eps = 4 * M_MU**2 / M_JPSI**2
    assert _ks(cos, lambda c: 1 - c * c + eps * c * c) > 0.01
    assert _ks(cos, np.ones_like) < 1e-10  # the one-level table block alone gives flat: excluded


def test_descriptor_b_to_jpsi_k_takes_the_table_models(tmp_path: Path) -> None:
    """descriptor_models = physical: `B+ -> J/psi K+` takes the table's SVS, the table's J/ψ → μμ its VLL:
    sin²θ; phase-space: the J/ψ is unpolarised (flat).  DECAY_LHCB.DEC gives the same models."""
    from sim import Generator
    from sim.generation.decay import descriptor_spin_model
    from sim.generation.dectable import read_table

    table = tmp_path / "table.dec"
    table.write_text(TABLE_JPSI)
    model = Generator(decay="B+ -> J/psi K+", decay_table=str(table)).load()
    assert [nd.model for nd in model.chains[0].nodes] == ["SVS", "", ""]
    cos = _muon_cos_of_table_completed(model, 30_000, 43)
    eps = 4 * M_MU**2 / M_JPSI**2
    assert _ks(cos, lambda c: 1 - c * c + eps * c * c) > 0.01
    assert _ks(cos, np.ones_like) < 1e-10
    flat = Generator(decay="B+ -> J/psi K+", decay_table=str(table), descriptor_models="phase-space").load()
    assert [nd.model for nd in flat.chains[0].nodes] == ["PHSP", "", ""]
    cos = _muon_cos_of_table_completed(flat, 30_000, 43)
    assert _ks(cos, np.ones_like) > 0.01
    # a user-written sub-decay is a chain node: B+ -> (J/psi -> mu+ mu-) K+ is SVS + VLL
    both = Generator(decay="B+ -> (J/psi -> mu+ mu-) K+", decay_table=str(table)).load()
    assert [nd.model for nd in both.chains[0].nodes][:2] == ["SVS", "VLL"]
    lhcb = read_table("DECAY_LHCB.DEC")

    def line(mother: str, daughters: tuple[str, ...]) -> Any:
        return next(m for m in lhcb.blocks[mother] if tuple(sorted(m.daughters)) == tuple(sorted(daughters)))

    assert descriptor_spin_model(521, (443, 321), line("B+", ("J/psi", "K+"))) == ("SVS", ())
    assert descriptor_spin_model(443, (-13, 13), line("J/psi", ("mu+", "mu-"))) == ("VLL", ())
    assert descriptor_spin_model(421, (-321, 211), line("D0", ("K-", "pi+"))) is None  # PHSP in the table
