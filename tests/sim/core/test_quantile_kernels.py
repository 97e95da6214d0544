"""The compiled quantile transforms (sim.core._quantile_kernels) give numpy's numbers bit for bit."""

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


@pytest.mark.parametrize(("method", "infinity"), [("inverse_transform", np.inf), ("transform", -np.inf)])
def test_nan_raises_the_numpy_error(monkeypatch: pytest.MonkeyPatch, method: str, infinity: float) -> None:
    """The compiled forward and inverse loops hand a NaN or inf to the numpy steps, which name its column."""
    qg = P.QuantileGaussian(32).fit(np.random.default_rng(5).normal(size=(1000, 2)))
    x = np.zeros((100, 2))
    x[50, 1] = np.nan
    monkeypatch.setattr(P, "COMPILED_MIN_VALUES", 1)
    with pytest.raises(DataError, match=r"NaN or inf in column\(s\) \[1\]"):
        getattr(qg, method)(x)
    x[50, 1] = infinity
    with pytest.raises(DataError, match=r"NaN or inf"):
        getattr(qg, method)(x)


def test_padded_tables() -> None:
    from sim.core._quantile_kernels import KNOTS, padded

    t = padded(np.array([[0.0, 0.5, 1.0], [1.0, 2.0, 2.0]]))
    assert t.shape == (2, KNOTS) and t[:, :3].tolist() == [[0.0, 0.5, 1.0], [1.0, 2.0, 2.0]]
    assert np.all(t[:, 3:] == np.inf)
    for bad in (np.zeros(1), np.zeros(KNOTS + 1)):
        with pytest.raises(ValueError, match="knots"):
            padded(bad)


@pytest.mark.parametrize("m", [2, 3, 1024])
def test_table_sizes_at_the_bisection_limits_bit_for_bit(monkeypatch: pytest.MonkeyPatch, m: int) -> None:
    """The smallest tables and the largest the unrolled bisection covers, both directions."""
    rng = np.random.default_rng(m)
    data = np.column_stack([rng.normal(size=5000), rng.integers(0, 4, 5000)])
    qg = P.QuantileGaussian(m).fit(data)
    assert qg.references_.size == m
    fast, slow = _both(monkeypatch, qg.transform, _raw(qg, 20_000, 1))
    assert np.array_equal(fast, slow)
    fast, slow = _both(monkeypatch, qg.inverse_transform, _z(20_000, 2, 2))
    assert np.array_equal(fast, slow)


# ----------------------------------------------------------------------------- the forward transform


def _raw(qg: P.QuantileGaussian, n: int, seed: int) -> np.ndarray:
    """Raw values around each column's table: on knots (repeated ones too), between them, beyond both edges."""
    rng = np.random.default_rng(seed)
    q = np.asarray(qg.quantiles_)
    cols = []
    for c in range(q.shape[1]):
        lo, hi = q[0, c], q[-1, c]
        span = max(hi - lo, 1.0)
        kinds = rng.integers(0, 4, n)
        on_knot = q[rng.integers(0, q.shape[0], n), c]
        inside = rng.uniform(lo, hi, n)
        beyond = np.where(rng.random(n) < 0.5, lo - rng.exponential(span, n), hi + rng.exponential(span, n))
        cols.append(np.select([kinds == 0, kinds == 1, kinds == 2], [on_knot, inside, beyond], np.round(inside)))
    return np.column_stack(cols)


_INPUT_MODELS = ["acceptance", "efficiency", "resolution", "calorimeter", "pid/K_global", "pid/p_rich", "pid/mu_ismuon"]


@pytest.mark.parametrize("name", _INPUT_MODELS)
def test_shipped_input_transforms_bit_for_bit(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    prep = P.preprocessor_from_dict(json.loads((MODELS_DIR / f"{name}.json").read_text())["preprocessing"]["inputs"])
    x = _raw(prep, 20_000, 6)
    fast, slow = _both(monkeypatch, prep.transform, x)
    assert fast.dtype == slow.dtype == np.float64 and fast.shape == slow.shape == x.shape
    assert np.array_equal(fast, slow)


def test_forward_ties_and_edges_bit_for_bit(monkeypatch: pytest.MonkeyPatch) -> None:
    """Discrete columns with runs of equal knots at both ends and inside, a flat column, a float32 input, -0.0."""
    rng = np.random.default_rng(7)
    data = np.column_stack([rng.integers(0, 3, 5000), rng.normal(size=5000), np.zeros(5000),
                            np.where(rng.random(5000) < 0.4, 0.0, rng.exponential(size=5000))])
    qg = P.QuantileGaussian(100).fit(data)
    x = _raw(qg, 30_000, 8)
    x[:4] = [[0.0, -0.0, -0.0, -0.0], [2.0, 1e300, 0.0, 1e-300], [-1e300, -1e-300, 1.0, 0.0], [1.0, 0.0, -1.0, 5.0]]
    fast, slow = _both(monkeypatch, qg.transform, x)
    assert np.array_equal(fast, slow)
    fast, slow = _both(monkeypatch, qg.transform, x[4:].astype(np.float32))
    assert np.array_equal(fast, slow)


@pytest.mark.parametrize("kernel", ["qg_forward", "qg_inverse", "cqg_inverse"])
def test_tables_beyond_the_unrolled_depth_run_numpy(monkeypatch: pytest.MonkeyPatch, kernel: str) -> None:
    """A table of more knots than the compiled bisection reaches stays on the numpy path, and the two
    constants (the preprocessing's numba-free copy and the kernel's) agree."""
    from sim.core import _quantile_kernels as K

    assert P._KNOTS == K.KNOTS
    rng = np.random.default_rng(9)
    monkeypatch.setattr(K, kernel, None)  # would fail if called
    monkeypatch.setattr(P, "COMPILED_MIN_VALUES", 1)
    if kernel == "cqg_inverse":
        cq = P.ConditionalQuantileGaussian(2 * K.KNOTS + 2, 2).fit(rng.normal(size=(20_000, 1)), conditions=rng.uniform(size=20_000))
        assert cq.references_.size > K.KNOTS
        assert cq.inverse_transform(np.zeros((10, 1)), np.full(10, 0.5)).shape == (10, 1)
        return
    qg = P.QuantileGaussian(K.KNOTS + 1).fit(rng.normal(size=(5000, 1)))
    method = qg.transform if kernel == "qg_forward" else qg.inverse_transform
    assert method(np.zeros((10, 1))).shape == (10, 1)
    with pytest.raises(ValueError, match="knots"):
        K.forward_tables(qg.quantiles_, qg.references_)
