"""Tests of sim/passes/acceptance.py: the draw, a tiny training run, bad models, pass order."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mambah.errors import ConfigError, DataError, ModelError
from sim.core.pipeline import Pipeline
from sim.detector.acceptance import ACCEPTANCE_INPUTS, Acceptance, draw_acceptance
from sim.detector.efficiency import Efficiency
from sim.detector.occupancy import Occupancy
from sim.generation.generator import Generator
from sim.reference.sample import make_reference_sample
from sim.training.recipes.acceptance import train_acceptance


@pytest.fixture(scope="module")
def sample_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_reference_sample(tmp_path_factory.mktemp("acc") / "ref.parquet", 6000, seed=3)


def test_draw_acceptance_is_a_bernoulli_draw() -> None:
    n = 200_000
    proba = np.linspace(0, 1, n)
    forward = np.arange(n) % 4 != 0
    acc = draw_acceptance(proba, forward, np.random.default_rng(1))
    assert not acc[~forward].any()
    assert acc[forward].mean() == pytest.approx(proba[forward].mean(), abs=0.005)
    again = draw_acceptance(proba, forward, np.random.default_rng(1))
    np.testing.assert_array_equal(acc, again)


def test_tiny_training_learns_the_momentum_dependence(sample_file: Path) -> None:
    """A few epochs on 6000 events: the loss falls and the low-momentum loss is learnt."""
    import pyarrow.parquet as pq

    model = train_acceptance(sample_file, seed=1, epochs=6, batch_size=256, hidden=(32, 32))
    loss = model.history["loss"]
    assert loss[-1] < loss[0]
    t = pq.read_table(sample_file).to_pandas()
    t = t[t["forward"]]
    proba = model.predict_proba(t[list(ACCEPTANCE_INPUTS)].to_numpy())
    for lo, hi in ((0, 3e3), (3e3, 1e4), (1e4, 1e6)):
        sel = ((t["p"] >= lo) & (t["p"] < hi)).to_numpy()
        assert proba[sel].mean() == pytest.approx(t["in_acceptance"][sel].mean(), abs=0.07), (lo, hi)
    low = (t["p"] < 3e3).to_numpy()
    assert proba[low].mean() < 0.6 < proba[~low].mean()


def test_training_data_missing_column_is_named(sample_file: Path) -> None:
    with pytest.raises(DataError, match="no_such_feature"):
        train_acceptance(sample_file, inputs=("log10_p", "no_such_feature"), epochs=1)
    with pytest.raises(DataError, match="sweight"):
        train_acceptance(sample_file, weight="sweight", epochs=1)


def test_missing_and_corrupt_models_fail_in_build(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="does not exist"):
        Acceptance(model=str(tmp_path / "none.keras")).build()
    bad = tmp_path / "bad.keras"
    bad.write_bytes(b"not a zip archive")
    bad.with_suffix(".json").write_text('{"format": "mambah-model", "format_version": 1}')
    with pytest.raises(ModelError, match="bad.keras"):
        Acceptance(model=str(bad)).build()
    bad.with_suffix(".json").write_text("{not json")
    with pytest.raises(ModelError, match="JSON"):
        Acceptance(model=str(bad)).build()


def test_model_inputs_must_match_the_pass_config() -> None:
    with pytest.raises(ModelError, match="inputs"):
        Acceptance(inputs=("eta", "log10_p")).build()


def test_pipeline_order_is_checked() -> None:
    Pipeline((Generator(), Occupancy(), Acceptance(), Efficiency())).validate()
    with pytest.raises(ConfigError, match="mc_particles.in_acceptance"):
        Pipeline((Generator(), Occupancy(), Efficiency(), Acceptance())).validate()
    with pytest.raises(ConfigError, match="events.n_tracks"):
        Pipeline((Generator(), Acceptance(), Efficiency(), Occupancy())).validate()


def test_config_round_trip_and_checks() -> None:
    from sim.detector.resolution import Resolution

    p = Pipeline((Generator(), Occupancy(), Acceptance(eta_max=4.5), Efficiency(), Resolution(model="r.keras")))
    assert Pipeline.from_toml(p.to_toml()) == p
    with pytest.raises(ConfigError, match="eta_min"):
        Acceptance(eta_min=5.0, eta_max=2.0)


def test_training_from_a_root_file(sample_file: Path, tmp_path: Path) -> None:
    import pyarrow.parquet as pq
    import uproot

    table = pq.read_table(sample_file)
    cols = {c: table.column(c).to_numpy().astype(np.float64) for c in (*ACCEPTANCE_INPUTS, "in_acceptance", "forward")}
    path = tmp_path / "sample.root"
    with uproot.recreate(path) as f:
        f.mktree("reference", dict.fromkeys(cols, np.float64))
        f["reference"].extend(cols)
    model = train_acceptance(path, epochs=1, tree="reference", hidden=(8,))
    assert model.input_names == ACCEPTANCE_INPUTS
    assert model.provenance["data_file"] == str(path)
