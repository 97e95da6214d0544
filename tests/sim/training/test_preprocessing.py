"""Tests of sim/training/preprocessing.py: round trips, JSON, Gaussianity, weights."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import stats

from mambah.errors import DataError, ModelError
from sim.training.preprocessing import (
    Identity,
    QuantileGaussian,
    Standardizer,
    preprocessor_from_dict,
)


@pytest.fixture
def sample() -> np.ndarray:
    rng = np.random.default_rng(3)
    return np.column_stack([rng.exponential(2000.0, 20_000), rng.uniform(2.0, 5.0, 20_000)])


def test_quantile_gaussian_is_gaussian(sample: np.ndarray) -> None:
    z = QuantileGaussian(500).fit(sample).transform(sample)
    for j in range(z.shape[1]):
        assert abs(z[:, j].mean()) < 0.01
        assert abs(z[:, j].std() - 1.0) < 0.02
        assert stats.kstest(z[:, j], "norm").statistic < 0.01


def test_quantile_gaussian_round_trip(sample: np.ndarray) -> None:
    qg = QuantileGaussian(1000).fit(sample)
    back = qg.inverse_transform(qg.transform(sample))
    # The two extreme values sit at probability 0 / 1, clipped to 1e-7 / 1 - 1e-7.
    interior = np.all((sample > sample.min(axis=0)) & (sample < sample.max(axis=0)), axis=1)
    np.testing.assert_allclose(back[interior], sample[interior], rtol=1e-6, atol=1e-6)
    span = sample.max(axis=0) - sample.min(axis=0)
    assert np.all(np.abs(back - sample) <= 1e-4 * span)


@pytest.mark.parametrize("prep", [QuantileGaussian(200), Standardizer(), Identity()])
def test_json_round_trip(prep, sample: np.ndarray) -> None:
    prep.fit(sample)
    text = json.dumps(prep.to_dict())
    again = preprocessor_from_dict(json.loads(text))
    assert type(again) is type(prep)
    np.testing.assert_array_equal(again.transform(sample[:100]), prep.transform(sample[:100]))
    np.testing.assert_array_equal(
        again.inverse_transform(sample[:100]), prep.inverse_transform(sample[:100])
    )


def test_standardizer_weighted() -> None:
    x = np.array([[0.0], [10.0]])
    st = Standardizer().fit(x, weights=np.array([3.0, 1.0]))
    assert st.mean_[0] == pytest.approx(2.5)
    np.testing.assert_allclose(st.inverse_transform(st.transform(x)), x)


def test_weighted_quantiles_follow_weights() -> None:
    """Weights 0 on a contaminating component remove it from the quantiles."""
    rng = np.random.default_rng(5)
    signal, bkg = rng.normal(0.0, 1.0, 10_000), rng.normal(6.0, 1.0, 10_000)
    x = np.concatenate([signal, bkg])[:, None]
    w = np.concatenate([np.ones(10_000), -np.ones(10_000) * 0.0])
    qg = QuantileGaussian(500).fit(x, weights=w)
    assert qg.quantiles_[250, 0] == pytest.approx(0.0, abs=0.05)  # median of the signal
    unweighted = QuantileGaussian(500).fit(x)
    assert unweighted.quantiles_[250, 0] > 2.0
    # negative weights are accepted (clipped to zero for the quantiles)
    neg = QuantileGaussian(500).fit(x, weights=np.where(w > 0, 1.0, -0.3))
    np.testing.assert_allclose(neg.quantiles_, qg.quantiles_)


def test_discrete_column_maps_to_middle() -> None:
    x = np.repeat([0.0, 1.0], 500)[:, None]
    z = QuantileGaussian(100).fit(x).transform(np.array([[0.0], [1.0]]))
    assert z[0, 0] < 0 < z[1, 0]
    assert z[0, 0] == pytest.approx(-z[1, 0], rel=1e-6)


def test_errors(sample: np.ndarray) -> None:
    with pytest.raises(ModelError, match="not fitted"):
        QuantileGaussian().transform(sample)
    with pytest.raises(DataError, match="NaN"):
        QuantileGaussian().fit(np.array([[1.0], [np.nan], [2.0]]))
    qg = QuantileGaussian(10).fit(sample)
    with pytest.raises(DataError, match="expected 2 columns"):
        qg.transform(sample[:, :1])
    with pytest.raises(ModelError, match="unknown preprocessing type 'nope'"):
        preprocessor_from_dict({"type": "nope"})
    with pytest.raises(ModelError, match="malformed"):
        preprocessor_from_dict({"type": "quantile_gaussian", "n_quantiles": 3, "references": [0, 1]})


def test_conditional_quantile_gaussian_follows_a_moving_edge() -> None:
    """Targets bounded by a function of the condition: round trip, Gaussian, and any output below the edge."""
    from sim.training.preprocessing import ConditionalQuantileGaussian, inverse_transform, transform

    rng = np.random.default_rng(3)
    c = rng.uniform(1.0, 10.0, (20_000, 2))
    y = c[:, :1] * rng.uniform(0.0, 1.0, (20_000, 1))  # 0 <= y <= c0
    prep = ConditionalQuantileGaussian(64, n_bins=10).fit(y, conditions=c)
    z = transform(prep, y, c)
    assert abs(z.mean()) < 0.05 and abs(z.std() - 1.0) < 0.05
    # conditional, not marginal: z is independent of the condition
    assert abs(np.corrcoef(z[:, 0], c[:, 0])[0, 1]) < 0.03
    np.testing.assert_allclose(prep.inverse_transform(z, c), y, atol=0.1)
    wild = inverse_transform(prep, rng.normal(0.0, 3.0, (20_000, 1)), c)
    assert np.all(wild[:, 0] <= c[:, 0] + 1.0)  # the edge moves with c, within a bin width (a marginal transform reaches 10)
    back = preprocessor_from_dict(json.loads(json.dumps(prep.to_dict())))
    np.testing.assert_array_equal(back.transform(y, c), z)
    with pytest.raises(ModelError, match="needs the raw conditions"):
        prep.transform(y)
    with pytest.raises(ModelError, match="malformed"):
        preprocessor_from_dict({**prep.to_dict(), "centers": [1.0, 2.0]})


def test_conditional_quantile_gaussian_edges_and_differences_keep_an_exact_tie() -> None:
    """Below an edge where x1 == x0 in every row, any generated x1 equals x0 exactly; above, it does not.

    The plain momentum-following transform interpolates its tables across the edge and
    generates x1 - x0 != 0 below it (the proton RICH GAN's p -> K excess, docs/pid.md).
    """
    from sim.training.preprocessing import ConditionalQuantileGaussian, inverse_transform, transform

    rng = np.random.default_rng(4)
    n, edge = 20_000, 9.3
    c = np.column_stack([rng.uniform(2.0, 20.0, n), rng.uniform(2.0, 5.0, n)])
    x0 = rng.normal(0.0, 1.0, n) * c[:, 0]
    x1 = x0 + np.where(c[:, 0] < edge, 0.0, rng.normal(0.0, 1.0, n) * (c[:, 0] - edge))
    y = np.column_stack([x0, x1])
    prep = ConditionalQuantileGaussian(64, 12, edges=(edge,), differences=((1, 0),)).fit(y, conditions=c)
    assert list(prep.centers_).count(edge) == 2  # both segments' outer tables anchored at the edge
    z = transform(prep, y, c)
    assert np.mean(np.abs(inverse_transform(prep, z, c) - y) < 1e-9) > 0.98  # all but the clipped extremes
    wild = inverse_transform(prep, rng.normal(0.0, 2.0, (n, 2)), c)
    below = c[:, 0] < edge
    assert np.array_equal(wild[below, 1], wild[below, 0])
    assert np.mean(wild[~below, 1] == wild[~below, 0]) < 0.01
    plain = ConditionalQuantileGaussian(64, 12, differences=((1, 0),)).fit(y, conditions=c)
    leak = inverse_transform(plain, rng.normal(0.0, 2.0, (n, 2)), c)
    assert np.mean(leak[below, 1] != leak[below, 0]) > 0.05  # the test can fail: without the edge it leaks
    # the point mass sits at z = 0 in the model's space; spread (training targets), it is a standard normal
    assert np.all(z[below, 1] == 0.0)
    spread = transform(prep, y, c, np.random.default_rng(5))
    assert abs(spread[below, 1].mean()) < 0.05 and 0.9 < spread[below, 1].std() < 1.0  # truncated at the table's ends
    np.testing.assert_array_equal(spread[~below], z[~below])  # no tie above the edge: unchanged
    back_spread = inverse_transform(prep, spread, c)
    assert np.array_equal(back_spread[below, 1], back_spread[below, 0])  # still exact
    back = preprocessor_from_dict(json.loads(json.dumps(prep.to_dict())))
    np.testing.assert_array_equal(back.inverse_transform(z, c), inverse_transform(prep, z, c))
    assert "edges" not in ConditionalQuantileGaussian(64, 12).fit(y, conditions=c).to_dict()  # old form kept
    for bad in ({"edges": (5.0, 3.0)}, {"differences": ((1, 1),)}, {"differences": ((1, 0), (0, 1))}):
        with pytest.raises(DataError, match="ConditionalQuantileGaussian"):
            ConditionalQuantileGaussian(64, 12, **bad)  # type: ignore[arg-type]
    with pytest.raises(DataError, match="beyond the 2 target"):
        ConditionalQuantileGaussian(64, 12, differences=((2, 0),)).fit(y, conditions=c)
