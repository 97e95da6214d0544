"""Reference ECAL: resolution, containment, geometry, digitisation, material effects."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import curve_fit  # type: ignore[import-untyped]
from scipy.special import erf  # type: ignore[import-untyped]

from mambah.errors import ConfigError, DataError
from sim.reference.ecal import (
    ECALConfig,
    _em_slices,
    bremsstrahlung,
    calibration_spread,
    cell_geometry,
    cell_of,
    convert_photons,
    digitise,
    ecal_entry,
    matrix_to_cells,
    simulate_showers,
)

CFG = ECALConfig()


def _photons(energy: float, x: float, y: float, n: int, rng: np.random.Generator) -> np.ndarray:
    return simulate_showers(np.full(n, 22), np.full(n, energy), np.full(n, x), np.full(n, y),
                            np.zeros(n), np.zeros(n), rng, CFG)


def test_resolution_fit_reproduces_configured_terms() -> None:
    """σ/E fitted on 1-100 GeV photons gives back the configured a and b within 2σ."""
    rng = np.random.default_rng(7)
    energies = np.array([1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0]) * 1000.0
    n = 2500
    res, err = [], []
    for e in energies:
        m = simulate_showers(np.full(n, 22), np.full(n, e), rng.uniform(1000, 1200, n),
                             rng.uniform(300, 600, n), np.zeros(n), np.zeros(n), rng, CFG)
        s = m.sum(axis=(1, 2)).astype(np.float64)
        res.append(s.std() / s.mean())
        err.append(res[-1] / np.sqrt(2.0 * (n - 1)))

    def model(e: np.ndarray, a: float, b: float) -> np.ndarray:
        return np.sqrt(a * a / (e / 1000.0) + b * b)

    (a, b), cov = curve_fit(model, energies, np.array(res), p0=(0.1, 0.01), sigma=np.array(err),
                            absolute_sigma=True)
    da, db = np.sqrt(np.diag(cov))
    assert abs(a - CFG.stochastic) < 2.0 * da, (a, da)
    assert abs(b - CFG.constant) < 2.0 * db, (b, db)
    # a wrong configuration is seen: a 12 % stochastic term is far outside the errors
    assert abs(a - 0.12) > 10.0 * da


def test_resolution_sees_a_changed_stochastic_term() -> None:
    """The fit follows the configuration (the test above can fail)."""
    cfg = ECALConfig(stochastic=0.15)
    rng = np.random.default_rng(3)
    n = 3000
    m = simulate_showers(np.full(n, 22), np.full(n, 4000.0), np.full(n, 1100.0), np.full(n, 500.0),
                         np.zeros(n), np.zeros(n), rng, cfg)
    s = m.sum(axis=(1, 2)).astype(np.float64)
    expected = np.sqrt(0.15**2 / 4.0 + 0.01**2)
    assert abs(s.std() / s.mean() - expected) < 4.0 * expected / np.sqrt(2 * n)


def _analytic_square(energy: float, half: float, n: int, seed: int) -> float:
    """Mean fraction in a centred square of half-size ``half`` from the slice parameters."""
    w, sc, st, pc, _ = _em_slices(np.full(n, energy), np.ones(n, dtype=bool), np.random.default_rng(seed), CFG)
    inside = w * (pc * erf(half / (np.sqrt(2.0) * sc)) ** 2 + (1 - pc) * erf(half / (np.sqrt(2.0) * st)) ** 2)
    return float(inside.sum() / w.sum())


@pytest.mark.parametrize(("x", "y", "size", "documented"), [
    (626.2, 20.2, 40.4, 0.988),     # inner cell centre
    (1242.3, 30.3, 60.6, 0.997),    # middle cell centre
    (2121.0, 2121.0, 121.2, 0.9999),  # outer cell centre
])
def test_containment_3x3_at_cell_centre(x: float, y: float, size: float, documented: float) -> None:
    """E(3x3)/E of 10 GeV photons at a cell centre, as documented and as the profile integral."""
    cid = cell_of(np.array([x]), np.array([y]), CFG)
    cx, cy, s = cell_geometry(cid, CFG)
    assert s[0] == pytest.approx(size)
    assert (cx[0], cy[0]) == pytest.approx((x, y))
    n, seed = 1500, 11
    m = _photons(10_000.0, x, y, n, np.random.default_rng(seed))
    _shower, cell, e = matrix_to_cells(m, np.full(n, x), np.full(n, y), CFG)
    assert e.sum() == pytest.approx(float(m.sum(dtype=np.float64)), rel=1e-6)  # nothing lost
    ccx, ccy, _ = cell_geometry(cell, CFG)
    in3 = (np.abs(ccx - x) < 1.5 * size) & (np.abs(ccy - y) < 1.5 * size)
    frac = e[in3].sum() / e.sum()
    assert frac == pytest.approx(documented, abs=0.004)
    assert frac == pytest.approx(_analytic_square(10_000.0, 1.5 * size, n, seed), abs=0.003)


def test_moliere_radius_contains_90_percent() -> None:
    """A centred Gaussian mixture's fraction inside R_M (exact formula) is 0.90 ± 0.03."""
    w, sc, st, pc, _ = _em_slices(np.full(4000, 10_000.0), np.ones(4000, dtype=bool),
                                  np.random.default_rng(5), CFG)
    r = CFG.moliere
    inside = w * (pc * (1 - np.exp(-r * r / (2 * sc * sc))) + (1 - pc) * (1 - np.exp(-r * r / (2 * st * st))))
    assert inside.sum() / w.sum() == pytest.approx(0.90, abs=0.03)


def test_geometry() -> None:
    x = np.array([0.0, 400.0, 1000.0, 2500.0, 4000.0, -969.5, 0.0])
    y = np.array([0.0, 0.0, 0.0, 0.0, 0.0, -727.1, 3200.0])
    cid = cell_of(x, y, CFG)
    assert cid[0] == -1 and cid[4] == -1 and cid[6] == -1  # hole, outside in x and in y
    assert (cid[[1, 5]] // 1_000_000 == 0).all() and cid[2] // 1_000_000 == 1 and cid[3] // 1_000_000 == 2
    cx, cy, s = cell_geometry(cid[cid >= 0], CFG)
    assert np.all(np.abs(cx - x[cid >= 0]) <= s / 2 + 1e-9) and np.all(np.abs(cy - y[cid >= 0]) <= s / 2 + 1e-9)
    assert np.array_equal(cell_of(cx, cy, CFG), cid[cid >= 0])
    # neutral straight line vs a charged particle bent by the kick
    ex, _ey, tx, _, ok = ecal_entry((np.zeros(2), np.zeros(2), np.zeros(2)),
                                   (np.array([300.0, 300.0]), np.zeros(2), np.full(2, 10_000.0)),
                                   np.array([0.0, 1.0]), CFG)
    assert ex[0] == pytest.approx(378.6) and ok[0]
    assert ex[1] == pytest.approx(0.03 * 5250.0 + (300.0 - 1200.0) / 10_000.0 * (12620.0 - 5250.0))
    assert tx[1] == pytest.approx((300.0 - 1200.0) / 10_000.0) and ok[1]


def test_digitise_noise_and_threshold() -> None:
    rng = np.random.default_rng(2)
    n = 20_000
    cid = np.full(n, 1_000_000 + 20 * 1000 + 5)  # one middle cell, many events
    cx, cy, _ = cell_geometry(cid[:1], CFG)
    sin_t = np.hypot(cx[0], cy[0]) / np.sqrt(cx[0] ** 2 + cy[0] ** 2 + CFG.z_front**2)
    sigma = CFG.noise_et / sin_t
    ev, cell, e = digitise(np.arange(n), np.arange(n), cid, np.full(n, 2000.0), rng, CFG)
    assert ev.size == n and np.all(cell == cid)
    assert e.std() == pytest.approx(sigma, rel=0.03)
    # a deposit at zero: only noise above the threshold survives, the Gaussian tail fraction
    ev, _, e = digitise(np.arange(n), np.arange(n), cid, np.zeros(n), rng, CFG)
    expected = 0.5 * (1 - erf(CFG.threshold_et / sin_t / sigma / np.sqrt(2)))
    assert ev.size / n == pytest.approx(expected, abs=4 * np.sqrt(expected / n))


def test_bremsstrahlung_matches_bethe_heitler() -> None:
    """Photon multiplicity and mean kept energy, E[prod(1 - y)] = exp(-t k), analytic."""
    rng = np.random.default_rng(4)
    n = 40_000
    e = np.full(n, 20_000.0)
    electron, k = bremsstrahlung(e, rng, CFG)
    t, y0 = CFG.material_x0, CFG.brem_y_min
    n_per_x0 = 4 / 3 * np.log(1 / y0) - 4 / 3 * (1 - y0) + 0.5 * (1 - y0**2)
    assert electron.size / n == pytest.approx(t * n_per_x0, rel=0.02)
    kept = e - np.bincount(electron, weights=k, minlength=n)
    k_loss = 1 - (4 / 3 * y0 - 2 / 3 * y0**2 + y0**3 / 3)
    assert kept.mean() / 20_000.0 == pytest.approx(np.exp(-t * k_loss), abs=0.004)
    assert np.all(kept > 0) and np.all(k > y0 * 0.0)


def test_conversions() -> None:
    rng = np.random.default_rng(6)
    n = 100_000
    conv, x = convert_photons(n, rng, CFG)
    p = 1 - np.exp(-7 / 9 * CFG.material_x0)
    assert conv.mean() == pytest.approx(p, abs=4 * np.sqrt(p / n))
    xs = x[conv]
    assert np.mean(xs * (1 - xs)) == pytest.approx(11 / 70, abs=0.004)  # ∫x(1-x)(1-4/3x(1-x)) / (7/9)
    assert np.all(x[~conv] == 0)


def test_muon_mip_and_hadron_interaction_fraction() -> None:
    rng = np.random.default_rng(8)
    n = 4000
    m = simulate_showers(np.full(n, 13), np.full(n, 20_000.0), np.full(n, 1100.0), np.full(n, 500.0),
                         np.zeros(n), np.zeros(n), rng, CFG)
    s = m.sum(axis=(1, 2))
    assert np.median(s) == pytest.approx(CFG.mip_mpv * (1 + CFG.mip_width * 0.787), rel=0.02)  # Moyal median -ln(0.455)
    h = simulate_showers(np.full(n, 211), np.full(n, 20_000.0), np.full(n, 1100.0), np.full(n, 500.0),
                         np.zeros(n), np.zeros(n), rng, CFG)
    # non-interacting pions leave a MIP (< 2 MPV); a fraction exp(-1.1) of them
    frac_mip = np.mean(h.sum(axis=(1, 2)) < 600.0)
    assert frac_mip == pytest.approx(np.exp(-CFG.depth_lambda), abs=0.03)


def test_bad_input() -> None:
    with pytest.raises(ConfigError, match="unknown ECALConfig option"):
        ECALConfig.from_mapping({"stochastik": 0.1})
    with pytest.raises(ConfigError, match="not a multiple"):
        ECALConfig(cell_inner=41.0)
    with pytest.raises(DataError, match="NaN"):
        simulate_showers(np.array([22]), np.array([np.nan]), np.zeros(1), np.zeros(1), np.zeros(1),
                         np.zeros(1), np.random.default_rng(0))
    assert 0 < calibration_spread(CFG) < CFG.constant
