"""Inference without Keras: GraphNet against Keras, the compiled inverse transforms against numpy."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest

from sim.core.modelio import MODELS_DIR

SHIPPED = sorted(p for p in MODELS_DIR.rglob("*.keras"))


def test_every_shipped_network_but_the_selection_models_is_a_graphnet_equal_to_keras() -> None:
    import keras

    from sim.core.netgraph import GraphNet, read_network

    rng = np.random.default_rng(3)
    covered = 0
    for path in SHIPPED:
        net = read_network(path)
        if path.stem.startswith("selection"):  # Embedding / Conv1D / Cropping1D: loaded with Keras
            assert net is None
            continue
        assert isinstance(net, GraphNet), path
        covered += 1
        if path.parent.name == "pid" and not path.stem.startswith("K_"):
            continue  # the other species have the same four architectures as K
        ref = keras.saving.load_model(path, compile=False, safe_mode=True)
        assert net.input_shape == tuple(ref.input_shape) and net.output_shape == tuple(ref.output_shape)
        x = rng.standard_normal((300, int(ref.input_shape[-1]))).astype(np.float32)
        want = np.asarray(ref(x, training=False))
        np.testing.assert_allclose(np.asarray(net(x)), want, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(net.numpy(x), want, rtol=1e-5, atol=2e-6 * max(1.0, float(np.abs(want).max())))
    assert covered >= 26  # the detector, calorimeter and 20 PID networks


def test_an_archive_with_an_unknown_layer_is_loaded_with_keras(tmp_path: Path) -> None:
    from sim.core.io import load_model
    from sim.core.netgraph import read_network

    src = MODELS_DIR / "acceptance.keras"
    dst = tmp_path / "acceptance.keras"
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for item in zin.namelist():
            data = zin.read(item)
            if item == "config.json":
                cfg = json.loads(data)
                for layer in cfg["config"]["layers"]:
                    if layer["class_name"] == "LeakyReLU":
                        layer["config"]["negative_slope"] = 0.25
                        layer["class_name"] = "ELU"  # a real Keras layer GraphNet does not apply
                        layer["config"] = {"name": layer["config"]["name"], "trainable": True, "dtype": "float32",
                                           "alpha": 1.0}
                        break
                data = json.dumps(cfg).encode()
            zout.writestr(item, data)
    (tmp_path / "acceptance.json").write_text((MODELS_DIR / "acceptance.json").read_text())
    assert read_network(dst) is None
    model = load_model(dst, inference=True)
    assert type(model.model).__module__.startswith("keras")


def test_a_corrupt_archive_is_a_model_error(tmp_path: Path) -> None:
    from mambah.errors import ModelError
    from sim.core.netgraph import read_network

    bad = tmp_path / "bad.keras"
    bad.write_bytes(b"not a zip")
    with pytest.raises(ModelError, match="bad.keras"):
        read_network(bad)


def _fitted(kind: str, rng: np.random.Generator) -> tuple[object, np.ndarray]:
    from sim.core.preprocessing import ConditionalQuantileGaussian, QuantileGaussian, Standardizer

    n = 20_000
    cond = np.column_stack([rng.exponential(2e4, n), rng.uniform(2, 5, n)])
    targets = np.column_stack([
        rng.normal(cond[:, 0] / 1e4, 1.0),
        rng.integers(0, 4, n).astype(np.float64),  # discrete: repeated quantiles
        rng.gamma(2.0, 3.0, n),
    ])
    if kind == "quantile":
        return QuantileGaussian(256).fit(targets), cond
    if kind == "conditional":
        return ConditionalQuantileGaussian(64, 8, condition=0).fit(targets, conditions=cond), cond
    if kind == "conditional-edges":  # no interpolation across 2e4, column 2 learned as x2 - x0
        targets[cond[:, 0] < 2e4, 2] = targets[cond[:, 0] < 2e4, 0]
        prep = ConditionalQuantileGaussian(64, 8, condition=0, edges=(2e4,), differences=((2, 0),))
        return prep.fit(targets, conditions=cond), cond
    return Standardizer().fit(targets), cond


@pytest.mark.parametrize("kind", ["quantile", "conditional", "conditional-edges", "standardizer"])
def test_compiled_inverse_equals_the_numpy_inverse(kind: str) -> None:
    import tensorflow as tf

    from sim.core.preprocessing import compiled_inverse, inverse_transform

    rng = np.random.default_rng(11)
    prep, cond = _fitted(kind, rng)
    z = rng.normal(0.0, 2.5, (cond.shape[0], 3))  # reaches the clipped tails too
    z[:5] = [[-9.0, 9.0, 0.0]] * 5
    want = inverse_transform(prep, z, cond)
    got = compiled_inverse(prep)(tf.constant(z), tf.constant(cond)).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-10)
    if kind == "conditional-edges":  # the exact equality below the edge survives the compiled form
        below = cond[:, 0] < 2e4
        assert below.sum() > 1000 and np.array_equal(got[below, 2], got[below, 0])


def test_quantile_transform_puts_ties_in_the_middle_of_their_run() -> None:
    from scipy.special import ndtri

    from sim.core.preprocessing import QuantileGaussian

    # 4 equal thirds of {0, 1, 2} plus a continuous column: the value 1 covers CDF 1/3..2/3
    x = np.column_stack([np.repeat([0.0, 1.0, 2.0], 1000), np.linspace(0.0, 1.0, 3000)])
    qg = QuantileGaussian(301).fit(x)
    z = qg.transform(np.array([[1.0, 0.25]]))
    assert z[0, 0] == pytest.approx(0.0, abs=0.02)  # middle of the run -> probability 1/2
    assert z[0, 1] == pytest.approx(ndtri(0.25), abs=2e-3)


def test_compiled_model_sample_equals_the_trained_model_sample() -> None:
    from sim.core.io import load_model
    from sim.core.modelio import CompiledModel

    for name in ("resolution.keras", "pid/K_rich.keras", "efficiency.keras"):
        trained = load_model(MODELS_DIR / name, inference=True)
        q = np.asarray(trained.input_preprocessor.quantiles_)  # type: ignore[attr-defined]
        rng = np.random.default_rng(5)
        x = q[rng.integers(0, q.shape[0], (2000, q.shape[1])), np.arange(q.shape[1])]
        compiled = CompiledModel(trained, chunk=700)  # several chunks
        if trained.kind == "generator":
            want = trained.sample(x, np.random.default_rng(9))
            got = compiled.sample(x, np.random.default_rng(9))
        else:
            want, got = trained.predict_proba(x), compiled.predict_proba(x)
        # 2000 rows: the numpy path (float32 round-off of the network, through the inverse transform)
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5 * max(1.0, float(np.abs(want).max())))


def test_compiled_model_refuses_nan_and_a_wrong_width() -> None:
    from mambah.errors import DataError
    from sim.core.io import load_model
    from sim.core.modelio import CompiledModel

    compiled = CompiledModel(load_model(MODELS_DIR / "acceptance.keras", inference=True))
    x = np.ones((3, 7))
    x[1, 2] = np.nan
    with pytest.raises(DataError, match="NaN"):
        compiled.predict_proba(x)
    with pytest.raises(DataError, match=r"\(n, 7\)"):
        compiled.predict_proba(np.ones((3, 6)))


def _run(compiled: object, x: np.ndarray) -> np.ndarray:
    if compiled.trained.kind == "generator":  # type: ignore[attr-defined]
        return compiled.sample(x, np.random.default_rng(4))  # type: ignore[attr-defined, no-any-return]
    return compiled.predict_proba(x)  # type: ignore[attr-defined, no-any-return]


def test_small_calls_run_in_numpy_with_the_numbers_of_the_traced_graph(monkeypatch: pytest.MonkeyPatch) -> None:
    from sim.core import modelio
    from sim.core.io import load_model

    for name in ("resolution.keras", "pid/K_rich.keras", "acceptance.keras"):
        trained = load_model(MODELS_DIR / name, inference=True)
        q = np.asarray(trained.input_preprocessor.quantiles_)  # type: ignore[attr-defined]
        x = q[np.random.default_rng(2).integers(0, q.shape[0], (500, q.shape[1])), np.arange(q.shape[1])]
        compiled = modelio.CompiledModel(trained)
        small = _run(compiled, x)  # 500 < GRAPH_MIN_ROWS: numpy, no graph made
        assert compiled._fn is None
        monkeypatch.setattr(modelio, "GRAPH_MIN_ROWS", 0)
        graph = _run(compiled, x)
        monkeypatch.setattr(modelio, "GRAPH_MIN_ROWS", 8192)
        assert compiled._fn.experimental_get_tracing_count() == 1
        # float32 network round-off, through the inverse quantile transform
        np.testing.assert_allclose(graph, small, rtol=1e-4, atol=1e-5 * max(1.0, float(np.abs(graph).max())))


def test_a_small_run_does_not_import_tensorflow() -> None:
    import subprocess
    import sys

    code = (
        "import sys, numpy as np\n"
        "from sim.core.io import load_model\n"
        "from sim.core.modelio import MODELS_DIR, CompiledModel\n"
        "m = CompiledModel(load_model(MODELS_DIR / 'pid' / 'K_global.keras', inference=True))\n"
        "m.sample(np.ones((50, len(m.trained.input_names))), np.random.default_rng(0))\n"
        "print('tensorflow' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert out.stdout.strip() == "False"
