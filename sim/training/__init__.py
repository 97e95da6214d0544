"""Generic training library of Mambah's fast models.

Acceptance / efficiency classifiers and resolution / PID conditional GANs are trained
with the same pieces: read columns (:mod:`~sim.training.data`), preprocess them to
standard normals (:mod:`~sim.training.preprocessing`), build Keras MLPs
(:mod:`~sim.training.models`), train (:mod:`~sim.training.classifier`,
:mod:`~sim.training.gan`), save and load a ``.keras`` file with its JSON sidecar
(:mod:`~sim.training.io`), validate against the reference
(:mod:`~sim.training.validation`).

TensorFlow, Keras, scikit-learn and matplotlib are imported inside the functions that
need them: ``import sim.training`` is light.
"""

from __future__ import annotations

from sim.training.classifier import train_classifier
from sim.training.data import check_finite, read_columns
from sim.training.gan import ALGORITHMS, train_gan
from sim.training.io import TrainedModel, load_model, save_model
from sim.training.models import build_classifier, build_critic, build_generator
from sim.training.preprocessing import (
    Identity,
    Preprocessor,
    QuantileGaussian,
    Standardizer,
    preprocessor_from_dict,
)
from sim.training.validation import (
    BinnedEfficiency,
    efficiency_ratio,
    ks_distance,
    plot_efficiency,
    plot_histograms,
    two_sample_test,
)

__all__ = (
    "ALGORITHMS",
    "BinnedEfficiency",
    "Identity",
    "Preprocessor",
    "QuantileGaussian",
    "Standardizer",
    "TrainedModel",
    "build_classifier",
    "build_critic",
    "build_generator",
    "check_finite",
    "efficiency_ratio",
    "ks_distance",
    "load_model",
    "plot_efficiency",
    "plot_histograms",
    "preprocessor_from_dict",
    "read_columns",
    "save_model",
    "train_classifier",
    "train_gan",
    "two_sample_test",
)


def __dir__() -> list[str]:
    return list(__all__)
