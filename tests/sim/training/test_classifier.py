"""Tests of sim/training/classifier.py: a known efficiency shape is learnt."""

from __future__ import annotations

import numpy as np
import pytest

from mambah.errors import ConfigError, DataError
from sim.training.classifier import train_classifier


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def test_learns_efficiency_shape() -> None:
    rng = np.random.default_rng(11)
    x = rng.uniform(-2.5, 2.5, 10_000)
    passed = rng.random(x.size) < _sigmoid(2.0 * x)
    model = train_classifier(
        x, passed, epochs=6, batch_size=256, learning_rate=3e-3, seed=1,
        validation_split=0.2, progress=False, hidden=(16, 16), input_names=["x"],
    )
    loss = model.history["loss"]
    assert loss[-1] < loss[0]
    assert "val_loss" in model.history
    grid = np.linspace(-2.0, 2.0, 41)
    assert np.max(np.abs(model.predict_proba(grid[:, None]) - _sigmoid(2.0 * grid))) < 0.05
    assert model.provenance["seed"] == 1 and model.input_names == ("x",)


def test_multiclass_and_weights() -> None:
    rng = np.random.default_rng(2)
    x = rng.normal(size=(3000, 2))
    y = (x[:, 0] > 0).astype(int) + (x[:, 1] > 0).astype(int)  # 0, 1, 2
    w = rng.uniform(0.5, 1.5, x.shape[0])
    model = train_classifier(x, y, w, n_classes=3, epochs=4, batch_size=128, learning_rate=3e-3,
                             seed=0, validation_split=0.0, progress=False, hidden=(16,))
    proba = model.predict_proba(np.array([[-1.5, -1.5], [1.5, 1.5]]))
    assert proba.shape == (2, 3)
    assert proba[0].argmax() == 0 and proba[1].argmax() == 2


def test_bad_input() -> None:
    x = np.zeros((10, 2))
    with pytest.raises(DataError, match=r"labels \[2\] outside the allowed \[0, 1\]"):
        train_classifier(x, np.full(10, 2), epochs=1, progress=False)
    with pytest.raises(DataError, match="NaN"):
        train_classifier(np.full((10, 2), np.nan), np.zeros(10), epochs=1, progress=False)
    with pytest.raises(ConfigError, match="validation_split"):
        train_classifier(x, np.zeros(10), epochs=1, validation_split=1.0, progress=False)
