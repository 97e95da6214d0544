"""TensorFlow imported by the passes without Keras (sim.core.modelio.configure_tensorflow)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

_PROBE = """
import json, sys
from sim.core.modelio import configure_tensorflow
tf = configure_tensorflow()
after_import = "keras" in sys.modules
path = list(tf.__path__)
y = float(tf.reduce_sum(tf.constant([1.0, 2.0])).numpy())
dense = tf.keras.layers.Dense.__module__
import tensorflow.keras as tk
print(json.dumps({"keras_after_import": after_import, "path": path, "sum": y, "dense": dense, "tk": tk.__name__}))
"""

_PLAIN = """
import json
import tensorflow as tf
print(json.dumps(list(tf.__path__)))
"""


def _run(code: str) -> str:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    return out.stdout.strip().splitlines()[-1]


@pytest.mark.slow
def test_configure_tensorflow_skips_keras_and_keeps_tf_keras() -> None:
    got = json.loads(_run(_PROBE))
    assert got["keras_after_import"] is False  # TensorFlow's eager Keras import was skipped
    assert got["sum"] == 3.0
    assert got["dense"].startswith("keras.")  # tf.keras still loads Keras 3 on first use
    assert got["tk"] == "tensorflow.keras"
    assert got["path"] == json.loads(_run(_PLAIN))  # the same package __path__ as a plain import
