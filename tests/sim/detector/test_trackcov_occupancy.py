"""The track covariance's occupancy dependence: VELO hit resolution growing with the event's n_tracks."""

from __future__ import annotations

import numpy as np
import pytest

from mambah.errors import ConfigError, DataError
from sim.detector.trackcov import TrackErrorModel, reconstruct_states, state_covariance


def _tracks(n: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(3)
    eta = rng.uniform(2.5, 4.5, n)
    phi = rng.uniform(-np.pi, np.pi, n)
    p = np.full(n, 1e8)  # 100 TeV: multiple scattering negligible, the hit term alone
    pz = p / np.sqrt(1.0 + 1.0 / np.sinh(eta) ** 2)
    return {"p": p, "tx": np.cos(phi) / np.sinh(eta), "ty": np.sin(phi) / np.sinh(eta), "pz": pz}


def test_position_and_slope_variances_scale_with_the_hit_resolution_squared() -> None:
    t = _tracks(200)
    zero = np.zeros(200)
    args = (t["p"], t["tx"], t["ty"], zero, zero, zero, np.full(200, 3))
    model = TrackErrorModel()
    _, base = state_covariance(*args, model)
    n_tracks = np.repeat([0.0, 100.0, 400.0, 1000.0], 50)
    _, busy = state_covariance(*args, model, n_tracks=n_tracks)
    expected = (1.0 + model.hit_occupancy_slope * n_tracks) ** 2  # independent: sigma_hit(n)^2 / sigma_hit(0)^2
    for i, j in ((0, 0), (0, 2), (2, 2), (1, 3)):
        np.testing.assert_allclose(busy[:, i, j] / base[:, i, j], expected, rtol=1e-6)
    np.testing.assert_array_equal(busy[:, 4, 4], base[:, 4, 4])  # momentum resolution: no occupancy term
    _, off = state_covariance(*args, TrackErrorModel(hit_occupancy_slope=0.0), n_tracks=n_tracks)
    np.testing.assert_array_equal(off, base)


def test_reconstructed_states_follow_the_occupancy() -> None:
    n = 4000
    t = _tracks(n)
    truth = {"charge": np.ones(n), "px": t["tx"] * t["pz"], "py": t["ty"] * t["pz"], "pz": t["pz"],
             **{f"origin_{a}": np.zeros(n) for a in "xyz"}, **{f"pv_{a}": np.zeros(n) for a in "xyz"}}
    normal = np.random.default_rng(5).standard_normal((n, 5))
    quiet = reconstruct_states(truth, np.full(n, 3), normal)
    busy = reconstruct_states({**truth, "n_tracks": np.full(n, 500.0)}, np.full(n, 3), normal)
    ratio = np.sqrt(busy["cov"][:, 0, 0] / quiet["cov"][:, 0, 0])
    np.testing.assert_allclose(ratio, 1.0 + 500 * TrackErrorModel().hit_occupancy_slope, rtol=1e-6)
    assert abs(np.mean(busy["ip_chi2"]) - 2.0) < 0.15  # IP chi2 of prompt tracks stays chi2(2) with the larger covariance


def test_bad_occupancy_inputs_are_refused() -> None:
    t = _tracks(3)
    zero = np.zeros(3)
    with pytest.raises(DataError, match="n_tracks"):
        state_covariance(t["p"], t["tx"], t["ty"], zero, zero, zero, np.full(3, 3), n_tracks=np.array([1.0, -1.0, 2.0]))
    with pytest.raises(ConfigError, match="hit_occupancy_slope"):
        TrackErrorModel(hit_occupancy_slope=-0.1)
