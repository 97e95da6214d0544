"""Model I/O of the passes: where shipped models live, loading with checks, compiled inference.

Every pass loads its network through :func:`load_pass_model` (sidecar checks: kind,
inputs, outputs) and runs it through :class:`CompiledModel` (one ``tf.function``).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mambah.errors import DataError, ModelError

if TYPE_CHECKING:
    from sim.core.io import TrainedModel

__all__ = (
    "MODELS_DIR",
    "CompiledModel",
    "GRAPH_MIN_ROWS",
    "check_inputs_finite",
    "check_model_numbers",
    "configure_tensorflow",
    "feature_matrix",
    "load_pass_model",
    "model_path",
)

log = logging.getLogger(__name__)

#: one graph built at a time: two batches of a run (threads) may ask a model for its graph together
_GRAPH_LOCK = threading.Lock()

#: Directory of the shipped default models (package data).
MODELS_DIR = Path(__file__).resolve().parent.parent / "models"


def model_path(path: str | None, default_name: str) -> Path:
    """The model file of a pass: ``path`` or the shipped ``sim/models/<default_name>.keras``."""
    return Path(path) if path else MODELS_DIR / f"{default_name}.keras"


def load_pass_model(
    path: str | None,
    default_name: str,
    *,
    kind: str,
    inputs: Sequence[str],
    outputs: Sequence[str] | None = None,
    pass_name: str,
) -> TrainedModel:  # the passes wrap it in CompiledModel
    """Load a pass's model and check it against the pass configuration.

    Raises:
        ModelError: missing/corrupt file or sidecar, wrong model kind, input features
            (or outputs) differing from the pass's, naming the pass and the file.
    """
    from sim.core.io import load_model

    file = model_path(path, default_name)
    try:
        model = load_model(file, inference=True)
    except ModelError as err:
        raise ModelError(f"pass {pass_name!r}: {err}") from err
    if model.kind != kind:
        raise ModelError(f"pass {pass_name!r}: model {file} is a {model.kind}, expected a {kind}")
    if tuple(model.input_names) != tuple(inputs):
        raise ModelError(
            f"pass {pass_name!r}: model {file} takes inputs {list(model.input_names)}, "
            f"but the pass feeds {list(inputs)}; retrain it with 'mambah train' or set the pass inputs"
        )
    if outputs is not None and tuple(model.output_names) != tuple(outputs):
        raise ModelError(
            f"pass {pass_name!r}: model {file} has outputs {list(model.output_names)}, expected {list(outputs)}"
        )
    check_model_numbers(model, file, f"pass {pass_name!r}")
    log.info("pass %s: loaded %s model %s", pass_name, kind, file)
    return model


def check_model_numbers(model: TrainedModel, file: str | Path, where: str) -> None:
    """Check the numbers of a model's sidecar: widths match its inputs/outputs, all finite, quantiles monotonic.

    Called when a pass is built, before any store exists, so a sidecar with NaN
    quantiles, non-monotonic quantiles or a column too few is refused up front
    instead of giving a silently wrong store or failing inside batch 0.

    Raises:
        ModelError: naming ``where``, the file, the preprocessing and the fault.
    """
    widths = (("input", model.input_preprocessor, len(model.input_names)),
              ("output", model.output_preprocessor, len(model.output_names)))
    for role, pre, width in widths:
        fault = _preprocessor_fault(pre, width)
        if fault:
            raise ModelError(f"{where}: model {file} has bad {role} preprocessing ({type(pre).__name__}): {fault}; retrain it")


def _preprocessor_fault(pre: Any, width: int) -> str:
    """What is wrong with a fitted preprocessor of ``width`` columns ('' if nothing)."""
    n = getattr(pre, "n_features_", None)
    if n is not None and int(n) != width:
        return f"it has {n} column(s), the model has {width}"

    def bad(name: str, arr: Any, axis: int | None = None, lo: float | None = None, hi: float | None = None) -> str:
        if arr is None:
            return ""
        a = np.asarray(arr, dtype=np.float64)
        if not np.all(np.isfinite(a)):
            return f"{name} hold {int(np.sum(~np.isfinite(a)))} NaN/inf value(s)"
        if axis is not None and a.shape[axis] > 1 and np.any(np.diff(a, axis=axis) < 0):
            return f"{name} are not monotonic"
        if lo is not None and a.size and (a.min() < lo or (hi is not None and a.max() > hi)):
            return f"{name} leave [{lo:g}, {hi:g}]"
        return ""

    checks = [
        bad("means", getattr(pre, "mean_", None)),
        bad("scales", getattr(pre, "scale_", None)),
        bad("quantile references", getattr(pre, "references_", None), 0, 0.0, 1.0),
        bad("bin centres", getattr(pre, "centers_", None), 0),
    ]
    q = getattr(pre, "quantiles_", None)
    if q is not None:
        qa = np.asarray(q, dtype=np.float64)
        checks.append(bad("quantiles", qa, qa.ndim - 2))  # (n_q, d) or (n_bins, n_q, d): along the probability axis
        if qa.shape[-1] != width:
            checks.append(f"its quantile tables have {qa.shape[-1]} column(s), the model has {width}")
    scale = getattr(pre, "scale_", None)
    if scale is not None and np.any(np.asarray(scale) <= 0):
        checks.append("scales are not all positive")
    return next((c for c in checks if c), "")


def check_inputs_finite(features: Mapping[str, np.ndarray], names: Sequence[str], where: str) -> None:
    """Raise :class:`DataError` naming the first input column that holds NaN or inf."""
    for name in names:
        values = features[name]
        if not np.all(np.isfinite(values)):
            raise DataError(f"{where}: input column {name!r} holds NaN or inf")


def feature_matrix(features: Mapping[str, np.ndarray], names: Sequence[str], where: str) -> np.ndarray:
    """``(n, len(names))`` float64 matrix of the named features, checked finite."""
    missing = [name for name in names if name not in features]
    if missing:
        raise DataError(f"{where}: unknown input feature(s) {missing}; available: {sorted(features)}")
    check_inputs_finite(features, names, where)
    if not names:
        n = len(next(iter(features.values()))) if features else 0
        return np.zeros((n, 0))
    return np.column_stack([np.asarray(features[name], dtype=np.float64) for name in names])


class _OneTracePerModel(logging.Filter):
    """Drop TensorFlow's "N out of the last N calls ... triggered tf.function retracing".

    Every :class:`CompiledModel` owns one ``tf.function`` with a fixed signature that is
    traced exactly once; building the ~20 models of the default pipeline one after the
    other looks like retracing to TensorFlow's heuristic, which would print a misleading
    warning on every ``mambah run``.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return "triggered tf.function retracing" not in record.getMessage()


_RETRACE_FILTER = _OneTracePerModel()


def configure_tensorflow() -> Any:
    """Import TensorFlow once, with its thread pools sized for this process's CPUs; returns the module.

    Intra-op threads = the CPUs this process may run on (``os.sched_getaffinity``), inter-op
    threads = 1: the passes run one network at a time, so a second pool only competes
    for the same cores.  ``MAMBAH_TF_THREADS`` overrides the intra-op count.  Once
    TensorFlow has run an op the pools are fixed; this then changes nothing.  TensorFlow is
    imported without its eager import of Keras (:func:`_import_tensorflow_without_keras`).
    """
    tf = _import_tensorflow_without_keras()

    global _TF_CONFIGURED
    if not _TF_CONFIGURED:
        _TF_CONFIGURED = True
        env = os.environ.get("MAMBAH_TF_THREADS", "").strip()
        from sim.core.resources import process_cpus

        try:
            n = int(env) if env else process_cpus()
        except ValueError:
            n = process_cpus()
        try:
            tf.config.threading.set_intra_op_parallelism_threads(max(n, 1))
            tf.config.threading.set_inter_op_parallelism_threads(1)
        except RuntimeError:  # the runtime is already initialised (e.g. after training in this process)
            log.debug("TensorFlow thread pools already fixed; left as they are")
        tf.get_logger().addFilter(_RETRACE_FILTER)
    return tf


_TF_CONFIGURED = False


def _import_tensorflow_without_keras() -> Any:
    """``import tensorflow``, without the Keras import that TensorFlow's ``__init__`` makes at its end.

    TensorFlow 2.16+ ends its import with ``importlib.import_module("keras.src.optimizers")``
    (inside ``try/except ImportError``: it only registers Keras' optimizers early), which
    imports all of Keras 3 and with it scikit-learn, SciPy's stats and matplotlib: 1.8 of
    the 3.8 CPU s of ``import tensorflow`` on this machine (TensorFlow 2.21, Keras 3.15;
    issue #17, ``benchmarks/README.md``).  The passes only run TensorFlow ops.  While
    TensorFlow imports, ``sys.modules["keras"]`` is ``None`` (that import then fails as
    TensorFlow allows); afterwards the entry is removed and the two Keras folders that
    TensorFlow adds to its ``__path__`` are put back, so ``tf.keras``, ``import keras`` and
    ``import tensorflow.keras`` work later as before (Keras then loads on first use).
    Nothing changes when TensorFlow or Keras is imported already.
    """
    import sys

    if "tensorflow" in sys.modules or "keras" in sys.modules:
        import tensorflow as tf

        return tf
    sys.modules["keras"] = None  # type: ignore[assignment]
    try:
        import tensorflow as tf
    finally:
        if "keras" in sys.modules and sys.modules["keras"] is None:
            del sys.modules["keras"]
    path = getattr(tf, "__path__", None)
    if isinstance(path, list) and None in path:  # TensorFlow found no keras package: its folders, as it adds them
        from tensorflow.python.tools.module_util import get_parent_dir_for_name

        rest = [p for p in path if p is not None]
        keras_dirs = [get_parent_dir_for_name("keras.api._v2.keras"), get_parent_dir_for_name("keras._tf_keras.keras")]
        path[:] = [d for d in keras_dirs if d is not None] + rest
    return tf
#: Calls with fewer rows run in numpy (no TensorFlow, no tracing); larger ones through the traced graph.
#: One chunk (:class:`CompiledModel`'s 262 144 rows): the blocked numpy forward pass of the dense
#: networks measured about as fast as the graph per row (0.89 vs 0.77 CPU µs on the acceptance
#: network), and TensorFlow's import and tracing cost ≈ 5 CPU s once per process (issue #17,
#: ``benchmarks/README.md``), more than a million rows' difference; 8 192 before.
GRAPH_MIN_ROWS = 262_144


class CompiledModel:
    """A loaded model compiled into one ``tf.function``: network and inverse output preprocessing.

    Same results as :meth:`TrainedModel.predict_proba` / :meth:`TrainedModel.sample`
    (same noise draws from the caller's generator; the inverse quantile transform runs
    in the graph in float64, equal to numpy's to round-off; the network in float32).
    The input transform stays in numpy: its forward quantile interpolation measured
    faster there (one ``np.interp`` per column) than as TensorFlow ``searchsorted`` +
    gathers + ``ndtri``.  The graph has a fixed ``(None, width)`` signature and is
    traced once, on the first call with at least :data:`GRAPH_MIN_ROWS` rows.  Smaller
    calls run in numpy (:meth:`sim.core.netgraph.GraphNet.numpy` and the numpy inverse
    transform; equal to the graph to float32 round-off), or eagerly for a network loaded
    with Keras: a small run neither imports TensorFlow nor traces a graph.  The choice
    depends on the call's row count only, so a batch gives the same numbers in any
    process.  An output preprocessing without a compiled form
    (:func:`sim.core.preprocessing.compiled_inverse`) runs in numpy after the graph.

    Args:
        trained: the :class:`sim.training.TrainedModel`.
        chunk: rows per graph call.
        graph_min_rows: calls with at least this many rows run through the traced graph
            (default: :data:`GRAPH_MIN_ROWS`, read at each call); convolutional networks, whose numpy form is
            slower than TensorFlow's kernels, may pass a smaller number.
    """

    def __init__(self, trained: TrainedModel, chunk: int = 262_144, graph_min_rows: int | None = None) -> None:
        self.trained = trained
        self.chunk = int(chunk)
        self.graph_min_rows = None if graph_min_rows is None else int(graph_min_rows)
        self._n_out = int(trained.model.output_shape[-1])
        self._d = len(trained.input_names)
        self._generator = trained.kind == "generator"
        self._numpy_net = callable(getattr(trained.model, "numpy", None))  # a GraphNet
        self._fn: Any = None
        self._eager: Any = None
        self._fn32: Any = None  # the generator's network without the float64 cast (sample_float32)
        self._post_numpy = False

    def _build_graph(self) -> None:
        """Import TensorFlow and make the ``tf.function`` (not traced yet)."""
        from sim.core.preprocessing import compiled_inverse

        tf = configure_tensorflow()
        net, d, trained = self.trained.model, self._d, self.trained
        post = compiled_inverse(trained.output_preprocessor) if self._generator else None
        self._post_numpy = self._generator and post is None
        post_fn = (lambda y, raw: y) if post is None else post
        if self._generator:
            def graph(z: Any, raw: Any, noise: Any) -> Any:
                x = tf.concat([tf.cast(z, tf.float32), noise], axis=1)
                return post_fn(tf.cast(net(x, training=False), tf.float64), raw)

            def network(z: Any, noise: Any) -> Any:
                return net(tf.concat([tf.cast(z, tf.float32), noise], axis=1), training=False)

            self._eager = graph
            fn = tf.function(graph, autograph=False, reduce_retracing=True, input_signature=[
                tf.TensorSpec([None, d], tf.float64), tf.TensorSpec([None, d], tf.float64),
                tf.TensorSpec([None, trained.n_noise], tf.float32)])
            self._fn32 = tf.function(network, autograph=False, reduce_retracing=True, input_signature=[
                tf.TensorSpec([None, d], tf.float64), tf.TensorSpec([None, trained.n_noise], tf.float32)])
        else:
            def classify(z: Any) -> Any:
                return net(tf.cast(z, tf.float32), training=False)

            self._eager = classify
            fn = tf.function(classify, autograph=False, reduce_retracing=True,
                             input_signature=[tf.TensorSpec([None, d], tf.float64)])
        self._tf = tf
        self._fn = fn  # last: a thread that sees it sees the rest

    def _call(self, *args: np.ndarray) -> np.ndarray:
        """One chunk: through the traced graph, or (below ``graph_min_rows`` rows) numpy / eager TF.

        Generators get ``(z, raw, noise)`` and return raw targets; classifiers ``(z,)``.
        """
        from sim.core.preprocessing import inverse_transform

        big = args[0].shape[0] >= (GRAPH_MIN_ROWS if self.graph_min_rows is None else self.graph_min_rows)
        if not big and self._numpy_net:
            if not self._generator:
                return self.trained.model.numpy(args[0].astype(np.float32))  # type: ignore[no-any-return]
            z, raw, noise = args
            y = self.trained.model.numpy(np.concatenate([z.astype(np.float32), noise], axis=1))
            return inverse_transform(self.trained.output_preprocessor, np.asarray(y, np.float64), raw)
        if self._fn is None:
            with _GRAPH_LOCK:
                if self._fn is None:
                    self._build_graph()
        if big:
            out = self._fn(*args).numpy()
        else:
            out = self._eager(*(self._tf.convert_to_tensor(a) for a in args)).numpy()
        if self._generator and self._post_numpy:
            return inverse_transform(self.trained.output_preprocessor, out, args[1])
        return out  # type: ignore[no-any-return]

    def _raw(self, x: np.ndarray, what: str) -> np.ndarray:
        arr = np.asarray(x, dtype=np.float64)
        if arr.ndim == 1 and self._d == 1:
            arr = arr[:, None]
        if arr.ndim != 2 or arr.shape[1] != self._d:
            raise DataError(f"{what}: expected an (n, {self._d}) array for {list(self.trained.input_names)}, "
                            f"got shape {arr.shape}")
        return arr

    def _pre(self, raw: np.ndarray) -> np.ndarray:
        """The input preprocessing (numpy; refuses NaN/inf)."""
        return np.ascontiguousarray(self.trained.input_preprocessor.transform(raw)) if self._d else raw

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        """``(n, d)`` raw features → ``(n,)`` (binary) or ``(n, k)`` class probabilities (float32)."""
        z = self._pre(self._raw(x, "predict_proba"))
        outs = [self._call(z[i : i + self.chunk]) for i in range(0, z.shape[0], self.chunk)]
        proba = np.concatenate(outs, axis=0) if outs else np.zeros((0, self._n_out), np.float32)
        return proba[:, 0] if proba.shape[1] == 1 else proba

    def sample(self, conditions: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """``(n, c)`` raw conditions → ``(n, t)`` generated targets in raw units (float64).

        Draws ``rng.standard_normal((n, n_noise), dtype=float32)``, as :meth:`TrainedModel.sample`.
        """
        raw = np.ascontiguousarray(self._raw(conditions, "sample"))
        z = self._pre(raw)
        noise = rng.standard_normal((raw.shape[0], self.trained.n_noise), dtype=np.float32)
        outs = [self._call(z[i : i + self.chunk], raw[i : i + self.chunk], noise[i : i + self.chunk])
                for i in range(0, raw.shape[0], self.chunk)]
        return np.concatenate(outs, axis=0) if outs else np.zeros((0, self._n_out), np.float64)

    def sample_float32(self, conditions: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """:meth:`sample` of a generator whose output preprocessing is :class:`~sim.core.preprocessing.Identity`, in float32.

        The same numbers as :meth:`sample` (its outputs are these float32 values cast to
        float64, exactly; the same noise draws, the same graph-or-numpy choice per chunk),
        without the float64 copy: for the shower generator's ``(n, 901)`` outputs that copy
        and its conversion back cost more than the network's last layers.  The numpy path
        refuses NaN/inf outputs with the message of ``Identity.inverse_transform``.

        Raises:
            ModelError: the model is no generator or has another output preprocessing.
        """
        from sim.core.preprocessing import Identity

        if not self._generator or not isinstance(self.trained.output_preprocessor, Identity):
            raise ModelError(f"sample_float32: the model's output preprocessing is "
                             f"{type(self.trained.output_preprocessor).__name__}; only an Identity one has raw float32 outputs")
        raw = np.ascontiguousarray(self._raw(conditions, "sample"))
        z = self._pre(raw)
        noise = rng.standard_normal((raw.shape[0], self.trained.n_noise), dtype=np.float32)
        outs = [self._call32(z[i : i + self.chunk], noise[i : i + self.chunk]) for i in range(0, raw.shape[0], self.chunk)]
        return np.concatenate(outs, axis=0) if len(outs) > 1 else outs[0] if outs else np.zeros((0, self._n_out), np.float32)

    def _call32(self, z: np.ndarray, noise: np.ndarray) -> np.ndarray:
        """One chunk of :meth:`sample_float32` (the row-count rule of :meth:`_call`)."""
        big = z.shape[0] >= (GRAPH_MIN_ROWS if self.graph_min_rows is None else self.graph_min_rows)
        if not big and self._numpy_net:
            y = np.asarray(self.trained.model.numpy(np.concatenate([z.astype(np.float32), noise], axis=1)), np.float32)
            bad = ~np.isfinite(y)
            if bad.any():
                raise DataError(f"Identity.inverse_transform: NaN or inf in column(s) {sorted(set(np.nonzero(bad)[1].tolist()))}")
            return y
        if self._fn is None:
            with _GRAPH_LOCK:
                if self._fn is None:
                    self._build_graph()
        if big:
            return self._fn32(z, noise).numpy()  # type: ignore[no-any-return]
        tf = self._tf
        return self._eager_network32(tf.convert_to_tensor(z), tf.convert_to_tensor(noise))

    def _eager_network32(self, z: Any, noise: Any) -> np.ndarray:
        tf = self._tf
        x = tf.concat([tf.cast(z, tf.float32), noise], axis=1)
        return self.trained.model(x, training=False).numpy()  # type: ignore[no-any-return]
