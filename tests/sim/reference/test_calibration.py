"""Tests of the PIDCalib-like calibration samples (sim/calibration.py)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

from mambah.errors import ConfigError, DataError
from sim.reference.calibration import CALIBRATION_CHANNELS, fit_calibration, make_calibration_sample
from sim.reference.pid import PID_COLUMNS


@pytest.fixture(scope="module")
def kaon_fit() -> tuple[pd.DataFrame, dict[str, Any]]:
    df = make_calibration_sample("K", 12_000, 20_000, np.random.default_rng(11), fit=False)
    return fit_calibration(df)


def _weighted_cdf(x: np.ndarray, w: np.ndarray, grid: np.ndarray) -> np.ndarray:
    order = np.argsort(x)
    cum = np.cumsum(w[order]) / np.sum(w)
    idx = np.searchsorted(x[order], grid, side="right")
    return np.where(idx > 0, cum[np.maximum(idx - 1, 0)], 0.0)


def test_columns_and_truth(kaon_fit: tuple[pd.DataFrame, dict[str, Any]]) -> None:
    df, _ = kaon_fit
    expected = {"species", "is_signal", "p", "pt", "eta", "n_tracks", "mass", "sweight", "charge"}
    assert expected.union(PID_COLUMNS) <= set(df.columns)
    assert len(df) == 32_000
    assert df["is_signal"].sum() == 12_000
    assert set(df.loc[df["is_signal"], "species"]) == {"K"}
    assert set(df.loc[~df["is_signal"], "species"]) == {"pi", "K", "p"}
    assert np.all(df["p"] > 2000.0)
    assert (df["sweight"] < 0).any()  # negative sWeights are kept


def test_fitted_yield_and_sweight_sum(kaon_fit: tuple[pd.DataFrame, dict[str, Any]]) -> None:
    df, summary = kaon_fit
    assert summary["valid"]
    n_true = int(df["is_signal"].sum())
    assert abs(summary["n_signal"] - n_true) < 3 * summary["n_signal_error"]
    assert df["sweight"].sum() == pytest.approx(summary["n_signal"], rel=1e-3)


def test_sweighted_pid_matches_signal_truth(kaon_fit: tuple[pd.DataFrame, dict[str, Any]]) -> None:
    df, _ = kaon_fit
    x = df["RichDLLK"].to_numpy()
    w = df["sweight"].to_numpy()
    truth = x[df["is_signal"].to_numpy()]
    mean_w = np.sum(w * x) / np.sum(w)
    err_w = np.sqrt(np.sum(w**2 * (x - mean_w) ** 2)) / np.sum(w)
    assert abs(mean_w - truth.mean()) < max(3 * err_w, 0.01 * abs(truth.mean()))
    assert abs(mean_w / truth.mean() - 1) < 0.05
    assert abs(x.mean() / truth.mean() - 1) > 0.5  # unweighted: polluted by background

    grid = np.quantile(truth, np.linspace(0.02, 0.98, 49))
    cdf_truth = _weighted_cdf(truth, np.ones_like(truth), grid)
    d_weighted = np.max(np.abs(_weighted_cdf(x, w, grid) - cdf_truth))
    d_unweighted = np.max(np.abs(_weighted_cdf(x, np.ones_like(x), grid) - cdf_truth))
    assert d_weighted < 0.03
    assert d_unweighted > 0.2


def test_channels_have_distinct_spectra() -> None:
    rng = np.random.default_rng(3)
    k = make_calibration_sample("K", 3000, 10, rng, fit=False)
    p = make_calibration_sample("p", 3000, 10, rng, fit=False)
    assert k.loc[k["is_signal"], "eta"].mean() > p.loc[p["is_signal"], "eta"].mean() + 0.1
    assert p["sweight"].isna().all()
    assert p.attrs["species"] == "p"
    lo, hi = 1115.683 - 20.0, 1115.683 + 25.0
    assert p["mass"].between(lo, hi).all()
    mu = make_calibration_sample("mu", 500, 500, rng, fit=False)
    assert set(mu.loc[mu["is_signal"], "pid"]) <= {13, -13}
    assert mu.loc[mu["is_signal"] & (mu["p"] > 6000), "is_muon"].mean() > 0.9


def test_errors() -> None:
    rng = np.random.default_rng(0)
    with pytest.raises(ConfigError, match="valid"):
        make_calibration_sample("kaon", 10, 10, rng)
    with pytest.raises(ConfigError, match="n_signal"):
        make_calibration_sample("K", -1, 10, rng)
    df = make_calibration_sample("pi", 50, 50, rng, fit=False)
    with pytest.raises(ConfigError, match="valid"):
        fit_calibration(df, species="proton")
    with pytest.raises(DataError, match="mass"):
        fit_calibration(df.drop(columns="mass"), species="pi")
    assert set(CALIBRATION_CHANNELS) == {"K", "pi", "p", "mu", "e"}
