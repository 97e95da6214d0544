"""Tests of sim/training/models.py: shapes, standard layers only, bad settings."""

from __future__ import annotations

import numpy as np
import pytest

from mambah.errors import ConfigError
from sim.training.models import build_classifier, build_critic, build_generator


def _layer_types(model) -> set[str]:
    return {type(layer).__name__ for layer in model.layers}


def test_shapes_and_layers() -> None:
    clf = build_classifier(3, hidden=(8,))
    multi = build_classifier(3, n_classes=4, hidden=(8, 8))
    gen = build_generator(2, 5, 3, hidden=(8,))
    crit = build_critic(2, 3, hidden=(8,), n_features_out=6)
    assert clf.output_shape == (None, 1) and multi.output_shape == (None, 4)
    assert gen.input_shape == (None, 7) and gen.output_shape == (None, 3)
    assert crit.input_shape == (None, 5) and crit.output_shape == (None, 6)
    for model in (clf, multi, gen, crit):
        assert _layer_types(model) <= {"InputLayer", "Dense", "LeakyReLU"}
    p = np.asarray(multi(np.zeros((4, 3), np.float32)))
    np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-5)
    p1 = np.asarray(clf(np.zeros((4, 3), np.float32)))
    assert np.all((p1 > 0) & (p1 < 1))


@pytest.mark.parametrize(
    "call",
    [
        lambda: build_classifier(0),
        lambda: build_classifier(2, hidden=()),
        lambda: build_generator(1, 0, 1),
        lambda: build_critic(1, 1, hidden=(8, -1)),
    ],
)
def test_bad_settings(call) -> None:
    with pytest.raises(ConfigError):
        call()
