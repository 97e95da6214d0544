"""Tests of sim/training/validation.py: two-sample test, KS, efficiencies, plots."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy.stats import ks_2samp
from threadpoolctl import threadpool_limits

from mambah.errors import ConfigError, DataError
from sim.training.validation import (
    efficiency_ratio,
    ks_distance,
    plot_efficiency,
    plot_histograms,
    two_sample_test,
)


@pytest.fixture(autouse=True)
def _one_openmp_thread():
    """HistGradientBoosting's OpenMP threads crawl on the shared 2-core CI machine."""
    with threadpool_limits(1, user_api="openmp"):
        yield


def test_two_sample_identical_vs_shifted() -> None:
    rng = np.random.default_rng(0)
    ref = rng.normal(size=(3000, 2))
    same = rng.normal(size=(3000, 2))
    shifted = rng.normal(size=(3000, 2)) + [1.0, 0.0]
    res_same = two_sample_test(ref, same, seed=1)
    res_shift = two_sample_test(ref, shifted, seed=1)
    assert res_same["auc"] < 0.56 and res_same["ks"] < 0.1
    assert res_shift["auc"] > 0.7 and res_shift["ks"] > 0.3


def test_two_sample_conditions_and_weights() -> None:
    """A wrong conditional dependence is seen only when the conditions are given;
    weights that remove a contamination make the samples agree again."""
    rng = np.random.default_rng(1)
    c = rng.normal(size=3000)
    ref = rng.normal(c, 0.3)[:, None]
    gen = rng.normal(-c, 0.3)[:, None]  # same marginal, wrong dependence on c
    assert two_sample_test(ref, gen, seed=0)["auc"] < 0.56
    assert two_sample_test(ref, gen, conditions_ref=c, conditions_gen=c, seed=0)["auc"] > 0.9
    contaminated = np.concatenate([rng.normal(size=3000), rng.normal(4.0, 0.5, 1500)])[:, None]
    w = np.concatenate([np.ones(3000), np.zeros(1500)])
    clean = rng.normal(size=(3000, 1))
    assert two_sample_test(clean, contaminated, seed=0)["auc"] > 0.6
    assert two_sample_test(clean, contaminated, weights_gen=w, seed=0)["auc"] < 0.56


def test_ks_distance() -> None:
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=500), rng.normal(0.3, 1.0, size=700)
    expected = ks_2samp(a, b).statistic
    assert ks_distance(a, b) == pytest.approx(expected)
    # the weighted implementation agrees with scipy for unit weights ...
    assert ks_distance(a, b, np.ones(500), np.ones(700)) == pytest.approx(expected)
    # ... and integer weights act as repeated entries
    wa = rng.integers(1, 4, 500).astype(float)
    assert ks_distance(a, b, wa, None) == pytest.approx(ks_2samp(np.repeat(a, wa.astype(int)), b).statistic)
    with pytest.raises(DataError, match="empty"):
        ks_distance(a[:0], b)


def test_efficiency_ratio() -> None:
    rng = np.random.default_rng(3)
    p_ref, p_fast = rng.uniform(0, 10, 20_000), rng.uniform(0, 10, 20_000)
    pass_ref = rng.random(20_000) < 0.5 + 0.04 * p_ref
    pass_fast = rng.random(20_000) < 0.5 + 0.04 * p_fast
    out = efficiency_ratio(pass_ref, None, pass_fast, None, {"p": np.linspace(0, 10, 6)},
                           {"p": p_ref}, {"p": p_fast})
    eff = out["p"]
    truth = 0.5 + 0.04 * np.array([1, 3, 5, 7, 9])
    assert np.all(np.abs(eff.ref - truth) < 4 * eff.ref_err)
    n = np.histogram(p_ref, bins=eff.edges)[0]
    np.testing.assert_allclose(eff.ref_err, np.sqrt(eff.ref * (1 - eff.ref) / n))
    assert np.all(np.abs(eff.ratio - 1.0) < 4 * eff.ratio_err)
    # weights: sum w^2 formula; doubling every weight leaves efficiency and error unchanged
    doubled = efficiency_ratio(pass_ref, np.full(20_000, 2.0), pass_fast, None,
                               {"p": eff.edges}, {"p": p_ref}, {"p": p_fast})["p"]
    np.testing.assert_allclose(doubled.ref, eff.ref)
    np.testing.assert_allclose(doubled.ref_err, eff.ref_err)
    empty = efficiency_ratio(pass_ref, None, pass_fast, None, {"p": [20.0, 30.0]},
                             {"p": p_ref}, {"p": p_fast})["p"]
    assert np.isnan(empty.ref[0]) and np.isnan(empty.ratio[0])
    with pytest.raises(ConfigError, match="'eta' not in"):
        efficiency_ratio(pass_ref, None, pass_fast, None, {"eta": [2, 5]}, {"p": p_ref}, {"p": p_fast})


def test_plots(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    ref, gen = rng.normal(size=(500, 2)), rng.normal(size=(400, 2))
    paths = plot_histograms(ref, gen, ["dx", "dy"], tmp_path / "report", weights_gen=np.ones(400))
    assert [p.name for p in paths] == ["dx.png", "dy.png"]
    x = rng.uniform(0, 1, 500)
    eff = efficiency_ratio(x < 0.5, None, x < 0.6, None, {"x": [0, 0.5, 1]}, {"x": x}, {"x": x})
    paths += plot_efficiency(eff, tmp_path / "report")
    for path in paths:
        assert path.read_bytes()[:4] == b"\x89PNG"
