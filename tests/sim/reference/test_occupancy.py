"""Tests of the reference occupancy and luminous region, sim/reference/occupancy.py."""

from __future__ import annotations

import numpy as np
import pytest

from mambah.errors import ConfigError
from sim.reference import (
    LuminousRegion,
    OccupancyConfig,
    sample_primary_vertices,
    simulate_occupancy,
)


@pytest.fixture(scope="module")
def run2() -> dict[str, np.ndarray]:
    return simulate_occupancy(200_000, np.random.default_rng(101))


def test_output_schema(run2: dict[str, np.ndarray]) -> None:
    assert set(run2) == {"n_pv", "n_tracks"}
    for arr in run2.values():
        assert arr.shape == (200_000,)
        assert arr.dtype == np.int64
    assert run2["n_pv"].min() >= 1
    assert run2["n_tracks"].min() >= 0


def test_run2_pile_up(run2: dict[str, np.ndarray]) -> None:
    """Visible μ ≈ 1.1 and ε_PV = 0.75: mean nPV = 1 + 0.825 ≈ 1.8."""
    assert 1.7 < run2["n_pv"].mean() < 1.9
    # the pile-up is Poisson: variance of nPV − 1 equals its mean
    assert abs(np.var(run2["n_pv"]) / (run2["n_pv"].mean() - 1) - 1) < 0.03


def test_run2_n_tracks(run2: dict[str, np.ndarray]) -> None:
    """Run 2 PIDCalib-like nTracks: peak ≈ 80–150, mean ≈ 150, tail to ≈ 600."""
    n_tracks = run2["n_tracks"]
    assert 135 < n_tracks.mean() < 165
    counts, edges = np.histogram(n_tracks, bins=np.arange(0, 800, 20))
    peak = edges[np.argmax(counts)] + 10
    assert 70 <= peak <= 150, peak
    assert 0.002 < np.mean(n_tracks > 400) < 0.05
    assert np.mean(n_tracks > 800) < 1e-3


def test_n_pv_and_n_tracks_correlated(run2: dict[str, np.ndarray]) -> None:
    r = np.corrcoef(run2["n_pv"], run2["n_tracks"])[0, 1]
    assert r > 0.3
    means = [run2["n_tracks"][run2["n_pv"] == k].mean() for k in (1, 2, 3)]
    assert means[0] < means[1] < means[2]


def test_run3_preset() -> None:
    """ν ≈ 7.6, visible μ ≈ 5.3, ε_PV = 0.9: mean nPV ≈ 5.8; many more tracks."""
    cfg = OccupancyConfig(run="run3")
    assert cfg.mu_visible == pytest.approx(5.3)
    out = simulate_occupancy(50_000, np.random.default_rng(102), cfg)
    assert 5.0 < out["n_pv"].mean() < 6.5
    assert out["n_tracks"].mean() > 2.5 * 150


def test_override_keeps_other_preset_values() -> None:
    cfg = OccupancyConfig(run="run2", mu_visible=0.0)
    assert cfg.pv_efficiency == pytest.approx(0.75)
    out = simulate_occupancy(1_000, np.random.default_rng(103), cfg)
    assert np.all(out["n_pv"] == 1)


def test_same_seed_same_output() -> None:
    a = simulate_occupancy(1_000, np.random.default_rng(5))
    b = simulate_occupancy(1_000, np.random.default_rng(5))
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])
    pa = sample_primary_vertices(100, np.random.default_rng(6))
    pb = sample_primary_vertices(100, np.random.default_rng(6))
    for key in pa:
        np.testing.assert_array_equal(pa[key], pb[key])


def test_luminous_region_widths() -> None:
    region = LuminousRegion()
    pv = sample_primary_vertices(200_000, np.random.default_rng(104), region)
    assert set(pv) == {"pv_x", "pv_y", "pv_z", "pv_t"}
    for key, mean, sigma in (
        ("pv_x", 0.8, 0.040),
        ("pv_y", -0.2, 0.040),
        ("pv_z", 0.0, 45.0),
        ("pv_t", 0.0, 0.19),
    ):
        assert abs(pv[key].mean() - mean) < 5 * sigma / np.sqrt(200_000), key
        assert abs(pv[key].std() / sigma - 1) < 0.01, key
    # an OccupancyConfig hands over its luminous region
    narrow = OccupancyConfig(luminous_region=LuminousRegion(sigma_z=10.0))
    assert sample_primary_vertices(10_000, np.random.default_rng(1), narrow)["pv_z"].std() < 11


def test_bad_configuration_refused() -> None:
    with pytest.raises(ConfigError, match="run4"):
        OccupancyConfig(run="run4")
    with pytest.raises(ConfigError, match="pv_efficiency"):
        OccupancyConfig(pv_efficiency=1.5)
    with pytest.raises(ConfigError, match="sigma_z"):
        LuminousRegion(sigma_z=-1.0)
    with pytest.raises(ConfigError, match="n="):
        simulate_occupancy(-1, np.random.default_rng(0))
    with pytest.raises(ConfigError, match="expected LuminousRegion"):
        sample_primary_vertices(3, np.random.default_rng(0), {"sigma_z": 1.0})  # type: ignore[arg-type]
