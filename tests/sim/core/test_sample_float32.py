"""CompiledModel.sample_float32: the same numbers as sample(), in float32 (the shower generator's path)."""

from __future__ import annotations

import numpy as np
import pytest

from mambah.errors import ModelError
from sim.core.modelio import CompiledModel
from sim.detector.calorimeter import (
    _pixels_to_matrices,
    generate_showers,
    load_shower_model,
    shower_conditions,
    targets_to_matrices,
)


def _conditions(n: int, seed: int = 1) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    pid = rng.choice([22, 11, -11, 211, 13], n)
    e = rng.uniform(1000.0, 50000.0, n)
    x, y = rng.uniform(-2000.0, 2000.0, n), rng.uniform(-1500.0, 1500.0, n)
    return pid, e, x, y, x / 12500.0, y / 12500.0


@pytest.mark.parametrize("graph_min_rows", [10**9, 16])  # numpy below the threshold, the traced graph above it
def test_sample_float32_is_sample_bit_for_bit(graph_min_rows: int) -> None:
    shape = load_shower_model().shape
    model = CompiledModel(shape.trained, graph_min_rows=graph_min_rows)
    cond = shower_conditions(*_conditions(40))
    a = model.sample(cond, np.random.default_rng(4))
    b = model.sample_float32(cond, np.random.default_rng(4))
    assert a.dtype == np.float64 and b.dtype == np.float32
    assert np.array_equal(a, b.astype(np.float64))
    # sample() again after sample_float32 (two traced graphs of one network) still agrees
    assert np.array_equal(model.sample(cond, np.random.default_rng(4)), a)


def test_sample_float32_refuses_other_output_preprocessing() -> None:
    energy = load_shower_model().energy  # QuantileGaussian outputs
    with pytest.raises(ModelError, match="QuantileGaussian"):
        energy.sample_float32(np.zeros((3, 2)), np.random.default_rng(0))


def test_generate_showers_equals_the_float64_path() -> None:
    """The pass's float32 path gives the matrices of targets_to_matrices(sample(...)) with the energy GANs' totals."""
    model = load_shower_model()
    pid, e, x, y, tx, ty = _conditions(60, seed=3)
    got = generate_showers(model, pid, e, x, y, tx, ty, np.random.default_rng(9))
    rng = np.random.default_rng(9)
    cond = shower_conditions(pid, e, x, y, tx, ty)
    out = model.shape.sample(cond, rng)
    em = (np.abs(pid) == 11) | (pid == 22)
    out[em, -1] = model.energy.sample(cond[em][:, [4, 5]], rng)[:, 0]
    out[~em, -1] = model.hadron_energy.sample(cond[~em][:, [4, 7]], rng)[:, 0]
    eps = float(model.shape.trained.provenance["image"]["eps"])
    want = targets_to_matrices(out, e, eps, 30)
    assert got.dtype == want.dtype == np.float32
    assert np.array_equal(got, want)
    # the in-place pixel arithmetic of a float64 input casts it first, as targets_to_matrices does
    assert np.array_equal(_pixels_to_matrices(out[:, :900], out[:, 900], e, eps, 30), want)
