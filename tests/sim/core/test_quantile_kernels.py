"""The compiled inverse quantile transforms (sim.core._quantile_kernels) give numpy's numbers bit for bit."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mambah.errors import DataError
from sim.core import preprocessing as P
from sim.core.modelio import MODELS_DIR


def _both(monkeypatch: pytest.MonkeyPatch, fn, *args):  # type: ignore[no-untyped-def]
    monkeypatch.setattr(P, "COMPILED_MIN_VALUES", 1)
    fast = fn(*args)
    monkeypatch.setattr(P, "COMPILED_MIN_VALUES", 10**15)
    slow = fn(*args)
    return fast, slow


def _z(n: int, d: int, seed: int) -> np.ndarray:
    z = np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32).astype(np.float64) * 2.0
    z[:7] = [[-40.0], [40.0], [0.0], [5.3], [-5.3], [1e-300], [-1e-300]]  # beyond the clip, exact zero, tiny
    return z


@pytest.mark.parametrize("name", ["pid/pi_rich", "pid/p_rich", "pid/K_global", "pid/mu_rich", "resolution", "occupancy"])
def test_shipped_output_transforms_bit_for_bit(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    prep = P.preprocessor_from_dict(json.loads((MODELS_DIR / f"{name}.json").read_text())["preprocessing"]["outputs"])
    d = prep.n_features_
    z = _z(20_000, d, 1)
    rng = np.random.default_rng(2)
    cond = np.column_stack([rng.lognormal(10.0, 1.2, len(z)), rng.uniform(1.5, 5.5, len(z)), rng.uniform(0, 400, len(z))])
    cond[:50, 0] = np.asarray(getattr(prep, "centers_", np.ones(1)))[np.arange(50) % len(getattr(prep, "centers_", [1]))]
    args = (z, cond) if getattr(prep, "conditional", False) else (z,)
    fast, slow = _both(monkeypatch, prep.inverse_transform, *args)
    assert fast.dtype == slow.dtype == np.float64
    assert np.array_equal(fast, slow)


def test_ties_and_edges_bit_for_bit(monkeypatch: pytest.MonkeyPatch) -> None:
    """Repeated quantiles (a discrete column), flat tables and probabilities on the grid points."""
    rng = np.random.default_rng(3)
    qg = P.QuantileGaussian(64).fit(np.column_stack([rng.integers(0, 3, 5000), rng.normal(size=5000), np.zeros(5000)]))
    z = _z(5000, 3, 4)
    z[7:69] = P.ndtri(qg.references_[1:-1, None])  # exactly on (or next to) the grid points
    fast, slow = _both(monkeypatch, qg.inverse_transform, z)
    assert np.array_equal(fast, slow)


def test_nan_raises_the_numpy_error(monkeypatch: pytest.MonkeyPatch) -> None:
    qg = P.QuantileGaussian(32).fit(np.random.default_rng(5).normal(size=(1000, 2)))
    z = np.zeros((100, 2))
    z[50, 1] = np.nan
    monkeypatch.setattr(P, "COMPILED_MIN_VALUES", 1)
    with pytest.raises(DataError, match=r"NaN or inf in column\(s\) \[1\]"):
        qg.inverse_transform(z)
    z[50, 1] = np.inf
    with pytest.raises(DataError, match=r"NaN or inf"):
        qg.inverse_transform(z)


def test_cell_index_starts_at_or_below() -> None:
    from sim.core._quantile_kernels import cell_index

    xp = np.array([[0.0, 0.0, 1.0, 1.0, 2.0, 10.0], [5.0, 5.0, 5.0, 5.0, 5.0, 5.0]])
    first, x0, inv_width = cell_index(xp, cells=8)
    assert first.shape == (2, 9) and np.all(first >= 0) and np.all(first <= 4)
    assert x0.tolist() == [0.0, 5.0] and inv_width[1] == 0.0
    assert np.all(np.diff(first[0]) >= 0)
