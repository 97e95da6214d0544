"""Regressed sWeights (sim/training/sweights.py): E[sWeight | x], the sums of the sWeights with a small per-event spread."""

from __future__ import annotations

import numpy as np
import pytest

from mambah.errors import ConfigError, DataError
from sim.training.sweights import regress_sweights


def _sample(rng: np.random.Generator, n_sig: int = 6000, n_bkg: int = 12000) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Signal at x ~ N(+2, 1), background at x ~ N(-2, 1); sWeight-like weights: +1 on average for
    the signal, 0 on average for the background (+-1.5, either sign), independent of x in each."""
    x = np.concatenate([rng.normal(2.0, 1.0, n_sig), rng.normal(-2.0, 1.0, n_bkg)])
    is_sig = np.concatenate([np.ones(n_sig, bool), np.zeros(n_bkg, bool)])
    w = np.where(is_sig, 1.0 + 0.3 * rng.standard_normal(x.size), rng.choice([-1.5, 1.5], x.size))
    return x[:, None], w, is_sig


def test_regressed_weights_keep_the_sums_with_a_small_per_event_spread() -> None:
    x, w, is_sig = _sample(np.random.default_rng(3), 3000, 6000)
    reg = regress_sweights(x, w, seed=1)
    bkg_only = x[:, 0] < -1.0  # a region holding (almost) background alone
    # per event: +-1.5 raw, about +-0.15 regressed (a leaf's mean of >= 100 weights): a GAN's
    # minibatch no longer has to cancel large weights of either sign
    assert np.std(reg[bkg_only]) < 0.15 * np.std(w[bkg_only])
    # the sums over regions are those of the sWeights (within the raw statistical spread)
    for sel in (bkg_only, ~bkg_only, np.ones(w.size, bool)):
        assert abs(reg[sel].sum() - w[sel].sum()) < 1.5 * np.sqrt(sel.sum())  # 1 sigma of the raw sum
    assert reg[is_sig & (x[:, 0] > 3.0)].mean() == pytest.approx(1.0, abs=0.06)  # signal probability 1 there
    assert np.any(reg < 0)  # signed: no clipping bias


def test_cross_fitted_and_reproducible() -> None:
    x, w, _ = _sample(np.random.default_rng(4), 2000, 2000)
    a, b = regress_sweights(x, w, seed=2), regress_sweights(x, w, seed=2)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, regress_sweights(x, w, seed=3))


def test_bad_input_is_refused() -> None:
    x, w, _ = _sample(np.random.default_rng(5), 1000, 1000)
    with pytest.raises(DataError, match="features of shape"):
        regress_sweights(x[:-1], w)
    with pytest.raises(DataError, match="NaN or inf"):
        regress_sweights(x, np.where(np.arange(w.size) == 3, np.nan, w))
    with pytest.raises(DataError, match="too few"):
        regress_sweights(x[:500], w[:500])
    with pytest.raises(ConfigError, match="folds=1"):
        regress_sweights(x, w, folds=1)
