"""The compiled crossed_velo_stations loop (sim.detector._trackcov_kernels) gives the numpy form's stations bit for bit."""

from __future__ import annotations

import numpy as np
import pytest

from sim.detector import trackcov
from sim.detector.trackcov import TrackErrorModel, crossed_velo_stations


def test_compiled_stations_equal_numpy(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(8)
    n = 30_000
    model = TrackErrorModel()
    x0, y0 = rng.normal(0.0, 2.0, n), rng.normal(0.0, 2.0, n)
    z0 = rng.uniform(-300.0, 800.0, n)
    tx, ty = rng.normal(0.0, 0.15, n), rng.normal(0.0, 0.15, n)
    k = len(model.velo_station_z)
    z0[:k] = model.velo_station_z  # origins on a station (dz = 0: not downstream)
    tx[k : k + 14], ty[k : k + 14], x0[k : k + 14], y0[k : k + 14] = 0.0, 0.0, model.velo_r_min, 0.0  # on the inner edge
    monkeypatch.setattr(trackcov, "COMPILED_MIN_TRACKS", 1)
    fast = crossed_velo_stations(x0, y0, z0, tx, ty, model)
    monkeypatch.setattr(trackcov, "COMPILED_MIN_TRACKS", 10**12)
    slow = crossed_velo_stations(x0, y0, z0, tx, ty, model)
    assert fast.dtype == slow.dtype == np.bool_ and fast.shape == slow.shape == (n, k)
    assert 0 < slow.mean() < 1
    assert np.array_equal(fast, slow)
