"""The public namespace of sim.training is pinned, and importing it stays light."""

from __future__ import annotations

import subprocess
import sys

import sim.training


def test_public_names() -> None:
    assert dir(sim.training) == [
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
    ]


def test_import_is_light() -> None:
    code = (
        "import sys, sim.training; "
        "heavy = [m for m in ('tensorflow', 'keras', 'sklearn', 'matplotlib', 'uproot') if m in sys.modules]; "
        "print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**__import__("os").environ, "PYTHONPATH": ":".join(sys.path)})
    assert out.stdout.strip() == "[]"
