"""Tests of sim/passes/occupancy.py: count rounding, reconstructed PVs, the shipped generator."""

from __future__ import annotations

import numpy as np
import pytest

from mambah.errors import ModelError
from sim.core.modelio import load_pass_model
from sim.detector.occupancy import OCCUPANCY_TARGETS, Occupancy, reconstruct_pvs, samples_to_counts
from sim.reference.occupancy import OccupancyConfig, simulate_occupancy


def test_samples_to_counts_rounds_and_clips() -> None:
    n_pv, n_tracks = samples_to_counts(np.array([[0.2, np.log(101.2)], [2.6, -3.0], [1.4, np.log(1.0)]]))
    np.testing.assert_array_equal(n_pv, [1, 3, 1])
    np.testing.assert_array_equal(n_tracks, [100, 0, 0])


def test_reconstruct_pvs_bookkeeping_and_resolution() -> None:
    rng = np.random.default_rng(4)
    n = 20_000
    pv = {"event": np.arange(n), "pv_x": np.full(n, 0.8), "pv_y": np.full(n, -0.2), "pv_z": rng.normal(0, 45, n)}
    n_pv = rng.integers(1, 5, n)
    n_tracks = rng.integers(20, 400, n)
    v = reconstruct_pvs(pv, n_pv, n_tracks, rng)
    assert v["event"].size == n_pv.sum()
    np.testing.assert_array_equal(np.bincount(v["event"], weights=v["n_tracks"]).astype(int), n_tracks)
    first = v["index"] == 0
    assert first.sum() == n and np.all(v["mc_vertex"][first] == 0) and np.all(v["mc_vertex"][~first] == -1)
    # signal PV: pull of the smeared position is a unit normal
    pull = (v["x"][first] - 0.8) / np.sqrt(v["cov_xx"][first])
    assert np.std(pull) == pytest.approx(1.0, abs=0.03)
    pull_z = (v["z"][first] - pv["pv_z"]) / np.sqrt(v["cov_zz"][first])
    assert np.std(pull_z) == pytest.approx(1.0, abs=0.03)
    # 25-track PV: 13 µm transverse resolution (LHCb detector performance)
    assert reconstruct_pvs({k: a[:1] for k, a in pv.items()}, [1], [25], rng)["cov_xx"][0] == pytest.approx(0.013**2)


def test_shipped_occupancy_model_matches_the_reference() -> None:
    from sim.training.validation import ks_distance

    model = load_pass_model(None, "occupancy", kind="generator", inputs=(), outputs=OCCUPANCY_TARGETS,
                            pass_name="occupancy")
    n = 20_000
    n_pv, n_tracks = samples_to_counts(model.sample(np.zeros((n, 0)), np.random.default_rng(8)))
    ref = simulate_occupancy(n, np.random.default_rng(9), OccupancyConfig(run="run2"))
    assert ks_distance(ref["n_pv"], n_pv) < 0.05
    assert ks_distance(ref["n_tracks"], n_tracks) < 0.05
    assert np.mean(n_tracks) == pytest.approx(np.mean(ref["n_tracks"]), rel=0.05)
    # more PVs, more tracks: the correlation is kept
    corr_ref = np.corrcoef(ref["n_pv"], ref["n_tracks"])[0, 1]
    assert np.corrcoef(n_pv, n_tracks)[0, 1] == pytest.approx(corr_ref, abs=0.1)


def test_occupancy_model_must_be_an_unconditional_generator() -> None:
    with pytest.raises(ModelError, match="classifier"):
        Occupancy(model=str(load_pass_model.__globals__["MODELS_DIR"] / "acceptance.keras")).build()
