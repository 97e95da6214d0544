"""Tests of sim/training/io.py: save/load round trip, sidecar, corrupt files, safe mode."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mambah.errors import DataError, ModelError
from sim.training.io import TrainedModel, load_model, save_model
from sim.training.models import build_classifier, build_generator
from sim.training.preprocessing import Identity, QuantileGaussian


@pytest.fixture
def generator() -> TrainedModel:
    import keras

    keras.utils.set_random_seed(1)
    rng = np.random.default_rng(0)
    cond, targ = rng.normal(size=(500, 2)), rng.exponential(size=(500, 3))
    return TrainedModel(
        model=build_generator(2, 4, 3, hidden=(16, 16)),
        kind="generator",
        input_names=("p", "eta"),
        output_names=("dx", "dy", "dp"),
        input_preprocessor=QuantileGaussian(100).fit(cond),
        output_preprocessor=QuantileGaussian(100).fit(targ),
        n_noise=4,
        provenance={"seed": 1, "algorithm": "cramer", "data_file": "train.parquet"},
        history={"generator_loss": [1.0, 0.5]},
    )


@pytest.fixture
def classifier() -> TrainedModel:
    rng = np.random.default_rng(0)
    return TrainedModel(
        model=build_classifier(2, hidden=(8,)),
        kind="classifier",
        input_names=("p", "eta"),
        output_names=("eff",),
        input_preprocessor=QuantileGaussian(50).fit(rng.normal(size=(200, 2))),
        output_preprocessor=Identity(1),
    )


def test_generator_round_trip(tmp_path: Path, generator: TrainedModel) -> None:
    path = save_model(generator, tmp_path / "res" / "gen.keras")
    assert path.stat().st_size < 500_000
    meta = json.loads(path.with_suffix(".json").read_text())
    assert meta["kind"] == "generator" and meta["inputs"] == ["p", "eta"]
    assert meta["outputs"] == ["dx", "dy", "dp"] and meta["n_noise"] == 4
    assert meta["provenance"]["data_file"] == "train.parquet"
    assert {"date", "versions", "git_sha", "seed", "algorithm"} <= set(meta["provenance"])
    loaded = load_model(path, expect_inputs=["p", "eta"])
    cond = np.random.default_rng(2).normal(size=(1000, 2))
    np.testing.assert_array_equal(loaded.sample(cond, 7), generator.sample(cond, 7))
    assert loaded.sample(cond, 7).shape == (1000, 3)
    # a mapping of named columns works too
    named = loaded.sample({"eta": cond[:, 1], "p": cond[:, 0]}, np.random.default_rng(7))
    np.testing.assert_array_equal(named, generator.sample(cond, 7))
    assert loaded.history == generator.history


def test_classifier_round_trip(tmp_path: Path, classifier: TrainedModel) -> None:
    path = save_model(classifier, tmp_path / "eff.keras")
    loaded = load_model(path)
    x = np.random.default_rng(1).normal(size=(300, 2))
    proba = loaded.predict_proba(x)
    assert proba.shape == (300,)
    np.testing.assert_array_equal(proba, classifier.predict_proba(x))
    with pytest.raises(ModelError, match="predict_proba needs a classifier"):
        TrainedModel(**{**vars(loaded), "kind": "generator"}).predict_proba(x)
    with pytest.raises(DataError, match="expected shape"):
        loaded.predict_proba(x[:, :1])


def test_expect_inputs_mismatch(tmp_path: Path, classifier: TrainedModel) -> None:
    path = save_model(classifier, tmp_path / "eff.keras")
    with pytest.raises(ModelError, match=r"expected \['eta', 'p'\], found \['p', 'eta'\]"):
        load_model(path, expect_inputs=["eta", "p"])


def test_missing_files(tmp_path: Path, classifier: TrainedModel) -> None:
    with pytest.raises(ModelError, match="nope.keras does not exist"):
        load_model(tmp_path / "nope.keras")
    path = save_model(classifier, tmp_path / "eff.keras")
    path.with_suffix(".json").unlink()
    with pytest.raises(ModelError, match=r"eff.keras has no sidecar eff.json"):
        load_model(path)


def test_corrupt_files(tmp_path: Path, classifier: TrainedModel) -> None:
    path = save_model(classifier, tmp_path / "eff.keras")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])  # truncated zip
    with pytest.raises(ModelError, match=f"cannot load model {path}"):
        load_model(path)
    for junk in (b"", b"garbage" * 1000):  # Keras called these "File not found" (the file is there)
        path.write_bytes(junk)
        with pytest.raises(ModelError, match=f"cannot load model {path}: BadZipFile: File is not a zip file") as info:
            load_model(path)
        assert "not found" not in str(info.value)
    path.write_bytes(data)
    path.with_suffix(".json").write_text("{not json")
    with pytest.raises(ModelError, match="not valid JSON"):
        load_model(path)


def test_unwritable_model_path(tmp_path: Path, classifier: TrainedModel) -> None:
    from sim.core.io import check_model_output

    if not Path("/proc").is_dir():
        pytest.skip("no /proc")
    for check in (check_model_output, lambda p: save_model(classifier, p)):
        with pytest.raises(ModelError, match=r"^cannot write model /proc/m.keras: "):
            check("/proc/m.keras")
    assert check_model_output(tmp_path / "new" / "dir" / "m.keras") == tmp_path / "new" / "dir" / "m.keras"
    assert list(tmp_path.iterdir()) == []  # the check makes no directory and leaves no probe


def test_safe_mode_refuses_lambda(tmp_path: Path, classifier: TrainedModel) -> None:
    import keras

    inputs = keras.Input(shape=(2,))
    outputs = keras.layers.Lambda(lambda t: t * 2.0)(keras.layers.Dense(1)(inputs))
    unsafe = TrainedModel(**{**vars(classifier), "model": keras.Model(inputs, outputs)})
    path = save_model(unsafe, tmp_path / "unsafe.keras")
    with pytest.raises(ModelError, match="cannot load model .*unsafe.keras.*Lambda"):
        load_model(path)


def test_sidecar_shape_mismatch(tmp_path: Path, classifier: TrainedModel) -> None:
    path = save_model(classifier, tmp_path / "eff.keras")
    sidecar = path.with_suffix(".json")
    meta = json.loads(sidecar.read_text())
    meta["inputs"] = ["p"]
    sidecar.write_text(json.dumps(meta))
    with pytest.raises(ModelError, match="takes 2 inputs but its sidecar lists 1 inputs"):
        load_model(path)
