"""Keras functional MLPs for the fast models: classifier, generator, critic.

Only standard serialisable layers (``Input``, ``Dense``, ``LeakyReLU``), no
``Lambda``: the saved ``.keras`` files load with ``safe_mode=True`` and carry no
Python code.  Inputs are single concatenated vectors (``[conditions, noise]`` for the
generator, ``[conditions, targets]`` for the critic), as in Lamarr, so the simulation
feeds one ``(n, width)`` float32 array.

Keras is imported inside the functions: importing this module stays light.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from mambah.errors import ConfigError

__all__ = ("build_classifier", "build_generator", "build_critic")


def _check(name: str, value: int, minimum: int = 1) -> int:
    if int(value) != value or value < minimum:
        raise ConfigError(f"{name}={value!r} must be an integer >= {minimum}")
    return int(value)


def _mlp(inputs: Any, hidden: Sequence[int], negative_slope: float, prefix: str) -> Any:
    import keras

    x = inputs
    if not hidden:
        raise ConfigError(f"{prefix}: hidden must list at least one layer width")
    for i, width in enumerate(hidden):
        _check(f"{prefix} hidden[{i}]", width)
        x = keras.layers.Dense(int(width), name=f"{prefix}_dense_{i}")(x)
        x = keras.layers.LeakyReLU(negative_slope=negative_slope, name=f"{prefix}_act_{i}")(x)
    return x


def build_classifier(
    n_inputs: int,
    n_classes: int = 1,
    hidden: Sequence[int] = (64, 64),
    *,
    negative_slope: float = 0.1,
    name: str = "classifier",
) -> Any:
    """MLP classifier ``(n, n_inputs) → probabilities``.

    Args:
        n_inputs: number of (preprocessed) input features.
        n_classes: 1 for a binary classifier (one sigmoid output: P(pass)), or the
            number of classes ``>= 2`` (softmax output).
        hidden: widths of the hidden ``Dense`` + ``LeakyReLU`` layers.
        negative_slope: LeakyReLU slope.
        name: Keras model name.

    Returns:
        ``keras.Model`` with output shape ``(n, n_classes)``.
    """
    import keras

    _check("n_inputs", n_inputs)
    _check("n_classes", n_classes)
    inputs = keras.Input(shape=(int(n_inputs),), name="inputs")
    x = _mlp(inputs, hidden, negative_slope, "clf")
    activation = "sigmoid" if n_classes == 1 else "softmax"
    outputs = keras.layers.Dense(int(n_classes), activation=activation, name="probability")(x)
    return keras.Model(inputs, outputs, name=name)


def build_generator(
    n_conditions: int,
    n_noise: int,
    n_outputs: int,
    hidden: Sequence[int] = (128, 128, 128),
    *,
    negative_slope: float = 0.1,
    name: str = "generator",
) -> Any:
    """Conditional generator ``concat(conditions, noise) → targets``.

    Args:
        n_conditions: number of (preprocessed) condition features ``c``.
        n_noise: dimension of the standard-normal noise.
        n_outputs: number of generated (preprocessed) targets ``t``.
        hidden: widths of the hidden layers.
        negative_slope: LeakyReLU slope.
        name: Keras model name.

    Returns:
        ``keras.Model``: input ``(n, c + n_noise)`` (conditions first), linear output
        ``(n, t)``.
    """
    import keras

    _check("n_conditions", n_conditions, 0)
    _check("n_noise", n_noise)
    _check("n_outputs", n_outputs)
    inputs = keras.Input(shape=(int(n_conditions) + int(n_noise),), name="conditions_noise")
    x = _mlp(inputs, hidden, negative_slope, "gen")
    outputs = keras.layers.Dense(int(n_outputs), name="targets")(x)
    return keras.Model(inputs, outputs, name=name)


def build_critic(
    n_conditions: int,
    n_outputs: int,
    hidden: Sequence[int] = (128, 128, 128),
    n_features_out: int = 1,
    *,
    negative_slope: float = 0.1,
    name: str = "critic",
) -> Any:
    """Critic / discriminator ``concat(conditions, targets) → features``.

    Args:
        n_conditions: number of condition features ``c``.
        n_outputs: number of target features ``t``.
        hidden: widths of the hidden layers.
        n_features_out: output width: 1 for WGAN-GP and BCE (a score or logit), the
            dimension of the energy-distance embedding ``h`` for the Cramér GAN.
        negative_slope: LeakyReLU slope.
        name: Keras model name.

    Returns:
        ``keras.Model``: input ``(n, c + t)``, linear output ``(n, n_features_out)``.
    """
    import keras

    _check("n_conditions", n_conditions, 0)
    _check("n_outputs", n_outputs)
    _check("n_features_out", n_features_out)
    inputs = keras.Input(shape=(int(n_conditions) + int(n_outputs),), name="conditions_targets")
    x = _mlp(inputs, hidden, negative_slope, "critic")
    outputs = keras.layers.Dense(int(n_features_out), name="features")(x)
    return keras.Model(inputs, outputs, name=name)
