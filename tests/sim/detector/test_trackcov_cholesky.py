"""reconstruct_states' written-out Cholesky factor equals LAPACK's factor of the full 5 x 5 covariance to round-off."""

from __future__ import annotations

import numpy as np
import pytest

from mambah.errors import DataError
from sim.detector.trackcov import TrackErrorModel, _cholesky_residuals, crossed_velo_stations, state_covariance


def test_block_factor_equals_lapack() -> None:
    rng = np.random.default_rng(5)
    n = 20_000
    p = rng.lognormal(9.0, 1.0, n)
    tx, ty = rng.normal(0.0, 0.1, n), rng.normal(0.0, 0.1, n)
    x0, y0, z0 = rng.normal(0.0, 0.05, n), rng.normal(0.0, 0.05, n), rng.normal(0.0, 40.0, n)
    tt = rng.choice([3, 4, 5], n)
    model = TrackErrorModel()
    keep = (crossed_velo_stations(x0, y0, z0, tx, ty, model).sum(axis=1) >= 2) | (tt == 5)  # what the passes give it
    p, tx, ty, x0, y0, z0, tt = (a[keep] for a in (p, tx, ty, x0, y0, z0, tt))
    n = int(keep.sum())
    _z, cov = state_covariance(p, tx, ty, x0, y0, z0, tt, model, rng.integers(0, 300, n))
    normal = rng.standard_normal((n, 5))
    got = _cholesky_residuals(cov, normal)
    want = np.einsum("nij,nj->ni", np.linalg.cholesky(cov), normal)
    # round-off: the factors' last bits (LAPACK may divide by a reciprocal's product), where the two
    # terms of a slope residual cancel relative to the column's scale
    scale = np.abs(want).max(axis=0)
    assert np.all(np.abs(got - want) <= 1e-13 * np.abs(want) + 1e-12 * scale)


def test_not_positive_definite_is_refused() -> None:
    cov = np.eye(5)[None].repeat(3, axis=0)
    cov[1, 0, 2] = cov[1, 2, 0] = 2.0  # c_xt² > c_xx c_tt
    with pytest.raises(DataError, match="not positive definite"):
        _cholesky_residuals(cov, np.ones((3, 5)))
