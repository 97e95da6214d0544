"""mambah.kinematics against scikit-hep vector (an independent implementation)."""

from __future__ import annotations

import numpy as np
import pytest
import vector

from mambah import kinematics as kin


@pytest.fixture
def momenta() -> np.ndarray:
    rng = np.random.default_rng(3)
    p = rng.normal(0.0, 5000.0, size=(2000, 3))
    p[:, 2] = np.abs(p[:, 2]) * 5
    p[:10, :2] = 0.0  # pT = 0 along the beam
    p[10:12] = 0.0  # p = 0
    return p


def test_eta_pt_phi_theta_as_vector(momenta: np.ndarray) -> None:
    px, py, pz = momenta.T
    v = vector.array({"px": px, "py": py, "pz": pz})
    np.testing.assert_allclose(kin.pt(px, py), v.pt, rtol=1e-12)
    np.testing.assert_allclose(kin.p(px, py, pz), v.mag, rtol=1e-12)
    np.testing.assert_allclose(kin.phi(px, py), v.phi, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(kin.theta(px, py, pz), v.theta, rtol=1e-12, atol=1e-12)
    ok = kin.pt(px, py) > 0
    np.testing.assert_allclose(kin.eta(px, py, pz)[ok], v.eta[ok], rtol=1e-12)
    # one convention at pT = 0: pT taken as PT_FLOOR, finite with the sign of pz, 0 at p = 0
    eta = kin.eta(px, py, pz)
    assert np.all(np.isfinite(eta))
    np.testing.assert_allclose(eta[:10], np.arcsinh(pz[:10] / kin.PT_FLOOR))
    assert np.all(eta[:10] > 20) and np.all(eta[10:12] == 0.0)


def test_mass_and_boost_as_vector() -> None:
    rng = np.random.default_rng(4)
    m_parent, m_d = 5279.0, 493.677
    n = 500
    # daughters at rest-frame momentum along random directions, parents with random lab momenta
    cos, ph = rng.uniform(-1, 1, n), rng.uniform(-np.pi, np.pi, n)
    q = 1200.0
    d = np.column_stack([q * np.sqrt(1 - cos**2) * np.cos(ph), q * np.sqrt(1 - cos**2) * np.sin(ph), q * cos,
                         np.full(n, np.hypot(q, m_d))])
    parent_p = rng.normal(0, 20_000.0, size=(n, 3))
    parent = np.column_stack([parent_p, np.sqrt(np.sum(parent_p**2, axis=1) + m_parent**2)])
    lab = kin.boost(d, parent)
    vd = vector.array({"px": d[:, 0], "py": d[:, 1], "pz": d[:, 2], "E": d[:, 3]})
    vp = vector.array({"px": parent[:, 0], "py": parent[:, 1], "pz": parent[:, 2], "E": parent[:, 3]})
    ref = vd.boost_p4(vp)
    np.testing.assert_allclose(lab[:, 0], ref.px, rtol=1e-9, atol=1e-6)
    np.testing.assert_allclose(lab[:, 2], ref.pz, rtol=1e-9, atol=1e-6)
    np.testing.assert_allclose(lab[:, 3], ref.E, rtol=1e-9, atol=1e-6)
    np.testing.assert_allclose(kin.mass(*lab.T), m_d, rtol=1e-8)


def test_impact_parameter_of_a_straight_line() -> None:
    origin = np.array([[1.0, 0.0, 0.0], [0.0, 2.0, 10.0]])
    direction = np.array([[0.0, 0.0, 1.0], [1.0, 0.0, 1.0]])
    pv = np.zeros((2, 3))
    np.testing.assert_allclose(kin.ip(origin, direction, pv), [1.0, np.hypot(2.0, 10.0 / np.sqrt(2.0))])
    x, y, tx, ty = kin.state_at_z(origin, direction, np.array([5.0, 20.0]))
    np.testing.assert_allclose([x[1], y[1], tx[1], ty[1]], [10.0, 2.0, 1.0, 0.0])


def test_nan_stays_in_its_row() -> None:
    """NaN in one row: NaN in that row's result only, never a finite substitute, and no numpy warning."""
    nan = np.nan
    px, py, pz, e = (np.array([1.0, nan, 0.0]), np.array([2.0, 1.0, 0.0]), np.array([3.0, 1.0, 5.0]),
                     np.array([10.0, 5.0, 6.0]))
    for name, value in (("pt", kin.pt(px, py)), ("p", kin.p(px, py, pz)), ("eta", kin.eta(px, py, pz)),
                        ("phi", kin.phi(px, py)), ("theta", kin.theta(px, py, pz)), ("mass", kin.mass(px, py, pz, e))):
        assert np.isnan(value[1]) and np.isfinite(value[[0, 2]]).all(), name  # eta was 21.4 for the NaN row
    assert kin.eta(px, py, pz)[2] == pytest.approx(np.arcsinh(5.0 / kin.PT_FLOOR))  # pT = 0 keeps its convention
    origin = np.array([[0.0, 0.0, 0.0], [nan, 0.0, 0.0]])
    direction = np.array([[0.0, 1.0, 1.0], [0.0, 0.0, 1.0]])
    ip = kin.ip(origin, direction, np.array([[1.0, 0.0, 0.0]] * 2))
    assert ip[0] == pytest.approx(1.0) and np.isnan(ip[1])


@pytest.mark.parametrize("frame", [[0.0, 0.0, 5.0, 5.0], [0.0, 3.0, 4.0, 4.0], [0.0, 0.0, 0.0, -1.0], [0.0, 0.0, 0.0, 0.0],
                                   [np.nan, 0.0, 0.0, 5.0]])
def test_boost_into_a_frame_without_rest_frame_is_an_error(frame) -> None:
    """A lightlike, spacelike, negative-energy or NaN frame has no rest frame: one line naming it, not inf/NaN momenta."""
    from mambah.errors import DataError

    frames = np.array([[0.0, 0.0, 3.0, 5.0], frame])
    with pytest.raises(DataError, match=r"boost: frame 1 \(of 2\) has no rest frame.*needs E > \|p\| \(1 such frame"):
        kin.boost(np.array([[0.0, 0.0, 0.0, 1.0]] * 2), frames)
    np.testing.assert_allclose(kin.boost(np.array([0.0, 0.0, 0.0, 1.0]), frames[0]), [0.0, 0.0, 0.75, 1.25])
