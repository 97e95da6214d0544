"""The VELO hit resolution's track-angle dependence in the error model (TrackErrorModel.hit_angle_factor, #16)."""

from __future__ import annotations

import numpy as np
import pytest

from mambah.errors import ConfigError
from sim.detector.trackcov import TrackErrorModel, state_covariance


def _cov(model: TrackErrorModel, theta: float) -> np.ndarray:
    """Covariance of one prompt Long track at polar angle ``theta`` with negligible scattering (p = 10^13 MeV)."""
    one = np.ones(1)
    _, cov = state_covariance(1e13 * one, np.tan(theta) * one, 0.0 * one, 0.0 * one, 0.0 * one, 0.0 * one,
                              np.array([3]), model)
    return cov[0]


@pytest.mark.parametrize("theta", [0.03, 0.08, 0.12])
def test_hit_term_grows_towards_normal_incidence(theta: float) -> None:
    flat, tilted = TrackErrorModel(hit_angle_factor=0.0), TrackErrorModel(hit_angle_factor=2.0, hit_angle_optimum=0.15)
    ratio = _cov(tilted, theta)[0, 0] / _cov(flat, theta)[0, 0]
    # σ_hit scales by 1 + 2 (1 - θ/0.15); the fitted variances by its square (same stations)
    np.testing.assert_allclose(ratio, (1.0 + 2.0 * (1.0 - theta / 0.15)) ** 2, rtol=1e-9)
    np.testing.assert_allclose(_cov(tilted, theta)[2, 2] / _cov(flat, theta)[2, 2], ratio, rtol=1e-9)


def test_no_change_beyond_the_optimum() -> None:
    flat, tilted = TrackErrorModel(hit_angle_factor=0.0), TrackErrorModel(hit_angle_factor=2.0, hit_angle_optimum=0.15)
    np.testing.assert_allclose(_cov(tilted, 0.2), _cov(flat, 0.2), rtol=1e-12)


def test_bad_angle_settings() -> None:
    with pytest.raises(ConfigError, match="hit_angle_factor"):
        TrackErrorModel(hit_angle_factor=-1.0)
    with pytest.raises(ConfigError, match="hit_angle_optimum"):
        TrackErrorModel(hit_angle_optimum=0.0)
