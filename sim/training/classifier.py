"""Train acceptance / efficiency classifiers (binary or multiclass).

A classifier learns ``P(class | x)`` from labelled (and optionally weighted) samples;
the simulation then draws the class with that probability.  Inputs are mapped to
standard normals with :class:`~sim.training.preprocessing.QuantileGaussian`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from mambah.errors import ConfigError, DataError
from sim.training.io import TrainedModel, provenance_defaults
from sim.training.preprocessing import Identity, QuantileGaussian

__all__ = ("train_classifier",)

log = logging.getLogger(__name__)


def _check_xyw(
    x: np.ndarray, y: np.ndarray, weights: np.ndarray | None, n_classes: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2:
        raise DataError(f"train_classifier: X must be (n, d), got shape {x.shape}")
    y = np.asarray(y).reshape(-1)
    if y.shape[0] != x.shape[0]:
        raise DataError(f"train_classifier: {y.shape[0]} labels for {x.shape[0]} rows of X")
    labels = np.unique(y)
    allowed = (0, 1) if n_classes == 1 else tuple(range(n_classes))
    extra = sorted(set(labels.tolist()) - set(allowed))
    if extra:
        raise DataError(f"train_classifier: labels {extra} outside the allowed {list(allowed)}")
    w = np.ones(x.shape[0]) if weights is None else np.asarray(weights, dtype=np.float64)
    if w.shape != (x.shape[0],):
        raise DataError(f"train_classifier: weights shape {w.shape}, expected ({x.shape[0]},)")
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(w))):
        raise DataError("train_classifier: X or weights hold NaN or inf")
    if w.sum() <= 0:
        raise DataError("train_classifier: the sum of weights is not positive")
    return x, y.astype(np.int64), w * (w.size / w.sum())


def train_classifier(
    X: np.ndarray,
    y: np.ndarray,
    weights: np.ndarray | None = None,
    *,
    n_classes: int = 1,
    epochs: int = 20,
    batch_size: int = 512,
    learning_rate: float = 1e-3,
    seed: int = 0,
    validation_split: float = 0.2,
    progress: bool = True,
    hidden: Sequence[int] = (64, 64),
    n_quantiles: int = 1000,
    input_names: Sequence[str] | None = None,
    output_names: Sequence[str] | None = None,
    provenance: Mapping[str, Any] | None = None,
) -> TrainedModel:
    """Train an MLP classifier on ``(X, y)`` with optional per-row weights.

    Binary (``n_classes=1``): ``y`` in {0, 1}, sigmoid output, binary cross-entropy.
    Multiclass (``n_classes=k >= 2``): ``y`` in {0..k-1}, softmax, sparse categorical
    cross-entropy.  Weights (possibly negative sWeights) enter the loss as sample
    weights, normalised to mean 1.

    Args:
        X: ``(n, d)`` raw features.
        y: ``(n,)`` integer labels.
        weights: ``(n,)`` sample weights, or ``None``.
        n_classes: 1 (binary) or the number of classes.
        epochs, batch_size, learning_rate: Adam training settings.
        seed: seeds Keras (``keras.utils.set_random_seed``) and the train/validation split.
        validation_split: fraction of the (shuffled) rows held out for ``val_loss``.
        progress: show the Keras progress bar.
        hidden: hidden layer widths.
        n_quantiles: quantile points of the input ``QuantileGaussian``.
        input_names, output_names: feature / class names (default ``x0..``, ``p0..``).
        provenance: extra entries (e.g. ``data_file``) for the model's provenance.

    Returns:
        :class:`TrainedModel` of kind ``"classifier"`` with ``history`` holding
        ``loss`` (and ``val_loss``) per epoch.
    """
    import keras

    from sim.training.models import build_classifier

    if n_classes < 1 or int(n_classes) != n_classes:
        raise ConfigError(f"n_classes={n_classes!r} must be 1 (binary) or the number of classes")
    if not 0.0 <= validation_split < 1.0:
        raise ConfigError(f"validation_split={validation_split} must be in [0, 1)")
    x, y, w = _check_xyw(X, y, weights, int(n_classes))
    names_in = tuple(input_names) if input_names else tuple(f"x{i}" for i in range(x.shape[1]))
    if len(names_in) != x.shape[1]:
        raise ConfigError(f"{len(names_in)} input_names for {x.shape[1]} columns of X")
    names_out = tuple(output_names) if output_names else tuple(
        f"p{i}" for i in range(max(int(n_classes), 1))
    )

    keras.utils.set_random_seed(seed)
    rng = np.random.default_rng(seed)
    order = rng.permutation(x.shape[0])
    n_val = int(round(validation_split * x.shape[0]))
    val, train = order[:n_val], order[n_val:]

    prep = QuantileGaussian(n_quantiles).fit(x[train])
    z = prep.transform(x).astype(np.float32)
    model = build_classifier(x.shape[1], int(n_classes), hidden)
    loss = "binary_crossentropy" if n_classes == 1 else "sparse_categorical_crossentropy"
    model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss=loss)
    target = y.astype(np.float32)[:, None] if n_classes == 1 else y
    fit = model.fit(
        z[train],
        target[train],
        sample_weight=w[train].astype(np.float32),
        validation_data=(z[val], target[val], w[val].astype(np.float32)) if n_val else None,
        epochs=int(epochs),
        batch_size=int(batch_size),
        shuffle=True,
        verbose=1 if progress else 0,
    )
    history = {k: [float(v) for v in vals] for k, vals in fit.history.items()}
    log.info("classifier trained: final loss %.5f", history["loss"][-1])
    prov = {
        **provenance_defaults(),
        "seed": int(seed),
        "algorithm": f"mlp-{loss}",
        "data_file": None,
        "epochs": int(epochs),
        "batch_size": int(batch_size),
        "learning_rate": float(learning_rate),
        "n_train": int(train.size),
        **(dict(provenance) if provenance else {}),
    }
    return TrainedModel(
        model=model,
        kind="classifier",
        input_names=names_in,
        output_names=names_out,
        input_preprocessor=prep,
        output_preprocessor=Identity(len(names_out)),
        n_noise=0,
        provenance=prov,
        history=history,
    )
