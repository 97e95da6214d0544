"""Inference networks read from a ``.keras`` archive without importing Keras.

The passes only run their networks forward.  Importing Keras and rebuilding a model
with ``keras.saving.load_model`` costs about 2 s of start-up for Keras' import and
~0.1 s per model; the shipped networks are plain layer graphs (``Dense``, ``LeakyReLU``,
``Reshape``, ``Conv2D``, ``Conv2DTranspose``, ``Concatenate``, ``Flatten``), so
:func:`read_network` reads the archive's ``config.json`` and ``model.weights.h5`` and
:class:`GraphNet` applies the same operations with TensorFlow ops (the ops Keras'
TensorFlow backend calls: ``matmul``, ``conv2d``, ``conv2d_transpose``), to float32
round-off of the Keras model (``tests/sim/core/test_netgraph.py`` compares every shipped
model with its Keras twin).

An archive with any other layer (or layer option) is not a :class:`GraphNet`:
:func:`read_network` returns ``None`` and the caller loads it with Keras, which gives
the same network, only slower to load.

Weights: Keras 3 stores the variables of the ``k``-th layer of class ``C`` (in the
model's layer order) under ``layers/<snake_case(C)>[_k]/vars/<i>``; the shapes are
checked against the configuration.
"""

from __future__ import annotations

import io
import json
import re
import zipfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mambah.errors import ModelError

__all__ = ("GraphNet", "NUMPY_BLOCK_ROWS", "NUMPY_CONV_BLOCK_ROWS", "read_network", "SUPPORTED_LAYERS")

#: Layer classes :class:`GraphNet` applies (anything else → Keras).
SUPPORTED_LAYERS: tuple[str, ...] = (
    "InputLayer", "Dense", "LeakyReLU", "ReLU", "Activation", "Reshape", "Flatten", "Concatenate",
    "Conv2D", "Conv2DTranspose",
)  # fmt: skip
_ACTIVATIONS = ("linear", "relu", "sigmoid", "softmax", "tanh")
_WEIGHTED = {"Dense": 2, "Conv2D": 2, "Conv2DTranspose": 2}


class _Unsupported(Exception):
    """An archive that :class:`GraphNet` does not cover (the caller loads it with Keras)."""


def _snake(name: str) -> str:
    """Keras' ``to_snake_case`` of a class name (``Conv2DTranspose`` → ``conv2d_transpose``)."""
    s = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub(r"([a-z])([A-Z])", r"\1_\2", s).lower()


def _sources(node: Any) -> list[str]:
    """Names of the layers feeding one inbound node (one tensor or a list of tensors)."""
    args = node.get("args", []) if isinstance(node, Mapping) else []
    if len(args) != 1 or node.get("kwargs"):
        raise _Unsupported("a layer called with several arguments or keyword arguments")
    arg = args[0]
    tensors = arg if isinstance(arg, list) else [arg]
    names = []
    for t in tensors:
        hist = t.get("config", {}).get("keras_history") if isinstance(t, Mapping) else None
        if not hist or hist[1] != 0 or hist[2] != 0:
            raise _Unsupported("a shared layer or a multi-output layer")
        names.append(str(hist[0]))
    return names


class GraphNet:
    """A Keras functional network's forward pass as TensorFlow ops (no Keras needed).

    Call it like the Keras model (``net(x, training=False)``) inside or outside a
    ``tf.function``; ``input_shape`` and ``output_shape`` are those of the Keras model.

    Args:
        layers: ``(name, class_name, config, source names)`` in the model's layer order.
        weights: layer name → its variables (float32 numpy arrays).
        inputs: name of the input layer; output: name of the output layer.
        input_shape, output_shape: ``(None, ...)`` shapes.
    """

    def __init__(self, layers: Sequence[tuple[str, str, dict[str, Any], list[str]]],
                 weights: Mapping[str, list[np.ndarray]], inputs: str, output: str,
                 input_shape: tuple[int | None, ...], output_shape: tuple[int | None, ...]) -> None:
        self._layers = list(layers)
        self._np_weights = {k: list(v) for k, v in weights.items()}
        self._tf_weights: dict[str, list[Any]] | None = None  # TensorFlow constants, made on the first TF call
        self._inputs, self._output = inputs, output
        self._has_conv = any(cls in ("Conv2D", "Conv2DTranspose") for _n, cls, _c, _s in self._layers)
        self.input_shape: tuple[int | None, ...] = input_shape
        self.output_shape: tuple[int | None, ...] = output_shape

    def __call__(self, x: Any, training: bool = False) -> Any:
        import tensorflow as tf

        if not tf.executing_eagerly():  # tracing: constants of this graph (another graph cannot use them)
            weights = {k: [tf.constant(w) for w in v] for k, v in self._np_weights.items()}
        else:
            if self._tf_weights is None:
                self._tf_weights = {k: [tf.constant(w) for w in v] for k, v in self._np_weights.items()}
            weights = self._tf_weights
        values: dict[str, Any] = {self._inputs: tf.convert_to_tensor(x, tf.float32)}
        for name, cls, cfg, srcs in self._layers:
            if cls == "InputLayer":
                continue
            ins = [values[s] for s in srcs]
            values[name] = _apply(tf, cls, cfg, ins, weights.get(name, []))
        return values[self._output]

    def numpy(self, x: np.ndarray) -> np.ndarray:
        """The same forward pass in numpy (float32; no TensorFlow import), at any batch size.

        Runs in blocks of :data:`NUMPY_BLOCK_ROWS` rows (:data:`NUMPY_CONV_BLOCK_ROWS` for a
        network with convolutions), so that a layer's activations stay in the CPU cache:
        measured 2.5-3x faster than one product over a large batch, about as fast as the
        traced TensorFlow graph for the dense networks (``benchmarks/README.md``, issue #17).
        The blocks start at row 0, so a call gives the same numbers for the same rows in
        any process.  Equal to :meth:`__call__` to float32 round-off (different
        matrix-product kernels).

        Args:
            x: ``(n, ...)`` inputs of the network's input shape.

        Returns:
            ``(n, width)`` float32 outputs.
        """
        x = np.asarray(x, dtype=np.float32)
        block = NUMPY_CONV_BLOCK_ROWS if self._has_conv else NUMPY_BLOCK_ROWS
        if x.shape[0] <= block:
            return self._numpy_block(x)
        return np.concatenate([self._numpy_block(x[i : i + block]) for i in range(0, x.shape[0], block)], axis=0)

    def _numpy_block(self, x: np.ndarray) -> np.ndarray:
        values: dict[str, np.ndarray] = {self._inputs: x}
        for name, cls, cfg, srcs in self._layers:
            if cls == "InputLayer":
                continue
            values[name] = _apply_numpy(cls, cfg, [values[s] for s in srcs], self._np_weights.get(name, []))
        return values[self._output]


#: Rows per block of :meth:`GraphNet.numpy` for dense networks (activations of ≲ 128 units:
#: 0.5 MB per layer; measured fastest of 256 ... 65 536 rows on the shipped acceptance network).
NUMPY_BLOCK_ROWS = 1024
#: Rows per block for networks with convolutions (the shower generator's 15 x 15 x 16 maps and
#: their 3 x 3 im2col rows: 4.1 MB at 32 rows; measured fastest of 8 ... 256 since the im2col
#: form, 34 / 30 / 31 / 40 CPU µs per shower at 16 / 32 / 64 / 128; 128 before).
NUMPY_CONV_BLOCK_ROWS = 32


def _np_activation(name: str, v: np.ndarray) -> np.ndarray:
    """Activation ``name`` of ``v``; ``v`` is a fresh array of the caller's, overwritten where that saves a copy."""
    if name == "linear":
        return v
    if name == "relu":
        return np.maximum(v, np.float32(0.0), out=v)
    if name == "sigmoid":
        with np.errstate(over="ignore"):  # exp(-v) = inf gives 0, the limit
            return np.asarray(1.0 / (1.0 + np.exp(-v)), dtype=np.float32)
    if name == "tanh":
        return np.tanh(v)
    e = np.exp(v - v.max(axis=-1, keepdims=True))  # softmax
    return np.asarray(e / e.sum(axis=-1, keepdims=True), dtype=np.float32)


def _apply_numpy(cls: str, cfg: Mapping[str, Any], ins: list[np.ndarray], w: list[np.ndarray]) -> np.ndarray:
    """One layer's forward pass in numpy (the arithmetic of :func:`_apply`)."""
    x = ins[0]
    if cls == "Dense":
        y = x @ w[0]
        if cfg["use_bias"]:
            y += w[1]
        return _np_activation(cfg["activation"], y)
    if cls == "LeakyReLU":
        slope = np.float32(cfg["negative_slope"])
        if 0.0 <= slope <= 1.0:  # max(x, a·x) is x for x >= 0 and a·x below: the same numbers, one pass less
            t = x * slope
            return np.maximum(x, t, out=t)
        return np.where(x >= 0, x, slope * x)
    if cls == "ReLU":
        return np.maximum(x, np.float32(0.0))
    if cls == "Activation":
        return _np_activation(cfg["activation"], x.copy())  # the input may feed other layers too
    if cls == "Reshape":
        return x.reshape(x.shape[0], *cfg["target_shape"])
    if cls == "Flatten":
        return x.reshape(x.shape[0], -1)
    if cls == "Concatenate":
        return np.concatenate(ins, axis=-1)
    n, h, wd, _ = x.shape
    kh, kw = cfg["kernel_size"]
    sh, sw = cfg["strides"]
    if cls == "Conv2D":
        if cfg["padding"] == "same":  # TF 'SAME': total padding k - 1 (stride 1), the extra one after
            x = np.pad(x, ((0, 0), ((kh - 1) // 2, kh // 2), ((kw - 1) // 2, kw // 2), (0, 0)))
        oh, ow = (x.shape[1] - kh) // sh + 1, (x.shape[2] - kw) // sw + 1
        x = np.ascontiguousarray(x)
        cin = x.shape[3]
        # im2col: each output pixel's kh x kw x cin inputs in one row (kw·cin contiguous numbers per
        # kernel row), then one matrix product of depth kh·kw·cin (≈ 2x faster than kh·kw products
        # of depth cin on the shower generator's 3 x 3 x 16, issue #17)
        s0, s1, s2, s3 = x.strides
        rows = np.lib.stride_tricks.as_strided(x, (n, oh, ow, kh, kw * cin), (s0, sh * s1, sw * s2, s1, s3), writeable=False)
        y = (rows.reshape(n * oh * ow, kh * kw * cin) @ w[0].reshape(kh * kw * cin, -1)).reshape(n, oh, ow, -1)
    elif (kh, kw) == (sh, sw):  # Conv2DTranspose, kernel = stride: each input pixel makes its own kh x kw block
        cout, cin = w[0].shape[2], w[0].shape[3]
        blocks = x.reshape(n * h * wd, cin) @ w[0].transpose(3, 0, 1, 2).reshape(cin, kh * kw * cout)
        y = blocks.reshape(n, h, wd, kh, kw, cout).transpose(0, 1, 3, 2, 4, 5).reshape(n, h * kh, wd * kw, cout)
    else:  # Conv2DTranspose 'same': the full transposed output, cropped to input × stride
        full = np.zeros((n, (h - 1) * sh + kh, (wd - 1) * sw + kw, w[0].shape[2]), np.float32)
        for a in range(kh):
            for b in range(kw):
                full[:, a : a + (h - 1) * sh + 1 : sh, b : b + (wd - 1) * sw + 1 : sw, :] += x @ w[0][a, b].T
        ph, pw = max(kh - sh, 0) // 2, max(kw - sw, 0) // 2
        y = full[:, ph : ph + h * sh, pw : pw + wd * sw, :]
    y = np.ascontiguousarray(y, dtype=np.float32)  # this layer's own array (the sum or the crop of it)
    if cfg["use_bias"]:
        y += w[1]
    return _np_activation(cfg["activation"], y)


def _activation(tf: Any, name: str) -> Callable[[Any], Any]:
    return {"linear": lambda v: v, "relu": tf.nn.relu, "sigmoid": tf.sigmoid,
            "softmax": lambda v: tf.nn.softmax(v, axis=-1), "tanh": tf.tanh}[name]


def _apply(tf: Any, cls: str, cfg: Mapping[str, Any], ins: list[Any], w: list[Any]) -> Any:
    """One layer's forward pass (the ops Keras' TensorFlow backend runs)."""
    x = ins[0]
    if cls == "Dense":
        y = tf.matmul(x, w[0])
        return _activation(tf, cfg["activation"])(y + w[1] if cfg["use_bias"] else y)
    if cls == "LeakyReLU":
        return tf.nn.leaky_relu(x, alpha=float(cfg["negative_slope"]))
    if cls == "ReLU":
        return tf.nn.relu(x)
    if cls == "Activation":
        return _activation(tf, cfg["activation"])(x)
    if cls == "Reshape":
        return tf.reshape(x, [-1, *cfg["target_shape"]])
    if cls == "Flatten":
        return tf.reshape(x, [tf.shape(x)[0], -1])
    if cls == "Concatenate":
        return tf.concat(ins, axis=int(cfg["axis"]))
    strides = [1, *cfg["strides"], 1]
    pad = cfg["padding"].upper()
    if cls == "Conv2D":
        y = tf.nn.conv2d(x, w[0], strides=strides, padding=pad)
    else:  # Conv2DTranspose, 'same' padding: output = input × stride
        shape = tf.shape(x)
        sh, sw = cfg["strides"]
        out = tf.stack([shape[0], shape[1] * sh, shape[2] * sw, int(cfg["filters"])])
        y = tf.nn.conv2d_transpose(x, w[0], out, strides=strides, padding=pad)
    if cfg["use_bias"]:
        y = y + w[1]
    return _activation(tf, cfg["activation"])(y)


def _check_layer(cls: str, cfg: Mapping[str, Any]) -> None:
    """Raise :class:`_Unsupported` for a layer option :func:`_apply` does not implement."""
    if cls not in SUPPORTED_LAYERS:
        raise _Unsupported(f"layer {cls}")
    dtype = cfg.get("dtype")
    policy = dtype.get("config", {}).get("name") if isinstance(dtype, Mapping) else dtype
    if policy not in (None, "float32"):
        raise _Unsupported(f"dtype policy {policy}")
    if "activation" in cfg and cfg["activation"] not in _ACTIVATIONS:
        raise _Unsupported(f"activation {cfg['activation']!r}")
    if cls == "Concatenate" and int(cfg["axis"]) != -1:
        raise _Unsupported("concatenation along an axis other than the last")
    if cls in ("Conv2D", "Conv2DTranspose"):
        if cfg.get("data_format", "channels_last") != "channels_last" or list(cfg.get("dilation_rate", [1, 1])) != [1, 1]:
            raise _Unsupported("channels_first or dilated convolution")
        if cfg.get("groups", 1) != 1 or cfg["padding"] not in ("same", "valid"):
            raise _Unsupported("grouped convolution or unknown padding")
    if cls == "Conv2DTranspose" and (cfg["padding"] != "same" or cfg.get("output_padding") is not None):
        raise _Unsupported("transposed convolution other than 'same' padding without output_padding")
    if cls == "ReLU" and any(cfg.get(k) not in (None, 0, 0.0) for k in ("max_value", "negative_slope", "threshold")):
        raise _Unsupported("ReLU with options")


def read_network(path: str | Path) -> GraphNet | None:
    """The network of a ``.keras`` archive as a :class:`GraphNet`, or ``None`` if it has other layers.

    Raises:
        ModelError: the archive cannot be read, or its weights do not match its layers.
    """
    import h5py

    path = Path(path)
    try:
        with zipfile.ZipFile(path) as z:
            cfg = json.loads(z.read("config.json"))
            weights_blob = z.read("model.weights.h5")
    except (OSError, KeyError, zipfile.BadZipFile, json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ModelError(f"cannot load model {path}: {type(err).__name__}: {err}") from err
    try:
        return _build(cfg, weights_blob, h5py)
    except _Unsupported:
        return None
    except (KeyError, TypeError, ValueError, IndexError) as err:
        raise ModelError(f"cannot load model {path}: malformed archive ({type(err).__name__}: {err})") from err


def _build(cfg: Mapping[str, Any], weights_blob: bytes, h5py: Any) -> GraphNet:
    if cfg.get("class_name") != "Functional":
        raise _Unsupported(f"model class {cfg.get('class_name')}")
    conf = cfg["config"]
    ends = []
    for key in ("input_layers", "output_layers"):
        spec = conf[key]  # [name, 0, 0] for one tensor, [[name, 0, 0], ...] for several
        spec = [spec] if spec and isinstance(spec[0], str) else spec
        if len(spec) != 1:
            raise _Unsupported("several inputs or outputs")
        ends.append(str(spec[0][0]))
    inputs, output = ends
    layers: list[tuple[str, str, dict[str, Any], list[str]]] = []
    counts: dict[str, int] = {}
    store_names: dict[str, str] = {}
    input_shape: tuple[int | None, ...] = ()
    for layer in conf["layers"]:
        cls, name, lcfg = str(layer["class_name"]), str(layer["name"]), dict(layer["config"])
        _check_layer(cls, lcfg)
        k = counts.get(cls, 0)
        counts[cls] = k + 1
        store_names[name] = _snake(cls) + (f"_{k}" if k else "")
        if cls == "InputLayer":
            input_shape = tuple(lcfg["batch_shape"])
            layers.append((name, cls, lcfg, []))
            continue
        nodes = layer.get("inbound_nodes", [])
        if len(nodes) != 1:
            raise _Unsupported("a layer used more than once")
        layers.append((name, cls, lcfg, _sources(nodes[0])))
    weights: dict[str, list[np.ndarray]] = {}
    with h5py.File(io.BytesIO(weights_blob), "r") as h5:
        for name, cls, lcfg, _srcs in layers:
            n_vars = _WEIGHTED.get(cls, 0)
            if not n_vars:
                continue
            group = h5["layers"][store_names[name]]["vars"]
            want = n_vars if lcfg["use_bias"] else 1
            if len(group) != want:
                raise ValueError(f"layer {name} has {len(group)} variables, expected {want}")
            weights[name] = [np.asarray(group[str(i)], dtype=np.float32) for i in range(want)]
            _check_shapes(name, cls, lcfg, weights[name])
    if output not in {n for n, *_ in layers}:
        raise ValueError(f"output layer {output} is not a layer of the model")
    net = GraphNet(layers, weights, inputs, output, input_shape, (None, None))
    width = int(net.numpy(np.zeros((1, *(int(v or 0) for v in input_shape[1:])), np.float32)).shape[-1])  # one row, numpy
    net.output_shape = (None, width)
    return net


def _check_shapes(name: str, cls: str, cfg: Mapping[str, Any], w: list[np.ndarray]) -> None:
    """The stored kernel matches the layer (units/filters), so variables were matched to the right layer."""
    units = int(cfg["units"]) if cls == "Dense" else int(cfg["filters"])
    kernel = w[0].shape
    if cls == "Dense":
        ok = kernel[-1] == units
    elif cls == "Conv2D":
        ok = kernel[:2] == tuple(cfg["kernel_size"]) and kernel[-1] == units
    else:
        ok = kernel[:2] == tuple(cfg["kernel_size"]) and kernel[2] == units
    if not ok or (len(w) > 1 and w[1].shape != (units,)):
        raise ValueError(f"layer {name}: stored kernel shape {kernel} does not fit {cls} with {units} units")
