"""Model I/O of the passes: where shipped models live, loading with checks, compiled inference.

Every pass loads its network through :func:`load_pass_model` (sidecar checks: kind,
inputs, outputs) and runs it through :class:`CompiledModel` (one ``tf.function``).
"""

from __future__ import annotations

import logging
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
    "check_inputs_finite",
    "check_model_numbers",
    "feature_matrix",
    "load_pass_model",
    "model_path",
)

log = logging.getLogger(__name__)

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
        model = load_model(file)
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


class CompiledModel:
    """A loaded model with its network wrapped in one ``tf.function`` (about 2x faster than eager calls).

    Same results as :meth:`TrainedModel.predict_proba` / :meth:`TrainedModel.sample`
    (same preprocessing, same noise draws); the graph has a fixed ``(None, width)``
    float32 signature, so it is traced once whatever the batch size.

    Args:
        trained: the :class:`sim.training.TrainedModel`.
        chunk: rows per network call.
    """

    def __init__(self, trained: TrainedModel, chunk: int = 262_144) -> None:
        import tensorflow as tf

        tf.get_logger().addFilter(_RETRACE_FILTER)  # idempotent: a filter is added once
        self.trained = trained
        self.chunk = int(chunk)
        net = trained.model
        width = int(net.input_shape[-1])
        self._width = width
        self._fn = tf.function(
            lambda x: net(x, training=False),
            input_signature=[tf.TensorSpec([None, width], tf.float32)],
            reduce_retracing=True,
        )

    def _run(self, x: np.ndarray) -> np.ndarray:
        outs = [self._fn(x[i : i + self.chunk]).numpy() for i in range(0, x.shape[0], self.chunk)]
        if not outs:
            return np.zeros((0, int(self.trained.model.output_shape[-1])), dtype=np.float32)
        return np.concatenate(outs, axis=0)

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        """``(n, d)`` raw features → ``(n,)`` (binary) or ``(n, k)`` class probabilities."""
        z = self.trained.input_preprocessor.transform(np.asarray(x, dtype=np.float64))
        proba = self._run(np.ascontiguousarray(z, dtype=np.float32))
        return proba[:, 0] if proba.shape[1] == 1 else proba

    def sample(self, conditions: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """``(n, c)`` raw conditions → ``(n, t)`` generated targets in raw units."""
        from sim.core.preprocessing import inverse_transform

        raw = cond = np.asarray(conditions, dtype=np.float64)
        if cond.shape[1]:
            cond = self.trained.input_preprocessor.transform(cond)
        noise = rng.standard_normal((cond.shape[0], self.trained.n_noise), dtype=np.float32)
        x = np.concatenate([cond.astype(np.float32), noise], axis=1)
        return inverse_transform(self.trained.output_preprocessor, self._run(x), raw)
