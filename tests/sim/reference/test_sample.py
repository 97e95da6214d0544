"""Tests of sim/reference_sample.py."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from mambah.errors import ConfigError
from sim.reference.sample import make_reference_sample, reference_sample_arrays


@pytest.fixture(scope="module")
def sample() -> dict[str, np.ndarray]:
    return reference_sample_arrays(2000, seed=5)


def test_rows_are_the_charged_final_state(sample: dict[str, np.ndarray]) -> None:
    # Λb0 → Λc+(p K− π+) μ− ν̄μ: four charged tracks per event, the neutrino dropped
    assert sample["event"].size == 4 * 2000
    assert set(np.abs(sample["pid"])) == {2212, 321, 211, 13}
    assert np.all(sample["charge"] != 0)
    assert set(np.unique(sample["track_type"])) <= {0, 3, 4, 5}
    np.testing.assert_array_equal(sample["track_class"], np.searchsorted([0, 3, 4, 5], sample["track_type"]))
    assert np.all(sample["reconstructed"] == (sample["track_type"] > 0))
    assert np.all(sample["n_pv"] >= 1)


def test_physics_of_the_sample(sample: dict[str, np.ndarray]) -> None:
    fwd = sample["forward"]
    assert np.all((sample["eta"][fwd] > 2) & (sample["eta"][fwd] < 5))
    assert not sample["in_acceptance"][~fwd].any()
    # the Λc+ daughters are born displaced, the muon at the Λb0 vertex: never at the PV
    assert np.all(sample["origin_dz"] != 0)
    rec = sample["reconstructed"]
    assert 0.55 < rec.mean() < 0.8
    assert np.median(np.abs(sample["dp_rel"][rec & (sample["track_type"] == 3)])) < 0.01
    assert np.all(sample["dp_rel"][~rec] == 0)
    for key in ("ip", "ip_chi2", "track_chi2ndof", "ghost_prob", "dx_pt"):
        assert np.all(np.isfinite(sample[key])), key


def test_parquet_file_and_reproducibility(tmp_path: Path, sample: dict[str, np.ndarray]) -> None:
    path = make_reference_sample(tmp_path / "s.parquet", 2000, seed=5)
    table = pq.read_table(path)
    assert table.num_rows == sample["event"].size
    np.testing.assert_array_equal(table.column("ghost_prob").to_numpy(), sample["ghost_prob"])
    other = reference_sample_arrays(200, seed=6)
    assert not np.array_equal(other["px"][:10], sample["px"][:10])


def test_bad_event_count() -> None:
    with pytest.raises(ConfigError, match="n_events"):
        reference_sample_arrays(0, seed=1)


def test_training_mix_components() -> None:
    from sim.reference.sample import PROMPT, TRAINING_MIX

    mixed = reference_sample_arrays(1000, seed=5, mix=TRAINING_MIX)
    main = reference_sample_arrays(1000 - 500, seed=5)
    # the main decay's events come first and are the main-only sample of as many events
    n_main = main["event"].size
    np.testing.assert_array_equal(mixed["px"][:n_main], main["px"])
    assert mixed["event"].max() == 999 and np.all(np.diff(mixed["event"]) >= 0)
    rest = {k: v[n_main:] for k, v in mixed.items()}
    # prompt gun: 100 events x 4 particles born exactly at their PV
    prompt = rest["origin_dz"] == 0
    assert prompt.sum() == 4 * 100 and np.all(rest["origin_rho"][prompt] == 0)
    # K_S0 / Lambda daughters: pions (and protons) born far from the PV, many Downstream tracks
    far = rest["origin_dz"] > 300.0
    assert far.sum() > 400 and set(np.abs(rest["pid"][far])) <= {211, 2212}
    assert np.mean(rest["track_type"][far] == 5) > 0.15
    with pytest.raises(ConfigError, match="sum to 1.2"):
        reference_sample_arrays(100, seed=1, mix=[(PROMPT, 0.6), (PROMPT, 0.6)])
    with pytest.raises(ConfigError, match="fraction of 'prompt'"):
        reference_sample_arrays(100, seed=1, mix=[(PROMPT, -0.1)])
