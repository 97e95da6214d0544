"""GraphNet.numpy in cache-sized blocks: the traced graph's numbers at batch sizes above a block."""

from __future__ import annotations

import numpy as np
import pytest

from sim.core.modelio import MODELS_DIR
from sim.core.netgraph import NUMPY_BLOCK_ROWS, NUMPY_CONV_BLOCK_ROWS, read_network


@pytest.mark.parametrize(("name", "block"), [("acceptance.keras", NUMPY_BLOCK_ROWS), ("calorimeter.keras", NUMPY_CONV_BLOCK_ROWS)])
def test_blocked_numpy_equals_the_tensorflow_ops(name: str, block: int) -> None:
    pytest.importorskip("tensorflow")
    net = read_network(MODELS_DIR / name)
    assert net is not None
    n = 2 * block + 37  # two full blocks and a partial one
    x = np.random.default_rng(3).standard_normal((n, int(net.input_shape[1] or 0))).astype(np.float32)
    got = net.numpy(x)
    want = np.asarray(net(x))  # TensorFlow ops, eagerly: an independent implementation of the layers
    assert got.shape == want.shape == (n, int(net.output_shape[1] or 0)) and got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5 * max(1.0, float(np.abs(want).max())))
    # blocks start at row 0: the first block's rows get the numbers of a call with those rows alone
    np.testing.assert_array_equal(net.numpy(x[:block]), got[:block])


@pytest.mark.parametrize(("padding", "strides", "kernel"), [("same", (1, 1), (3, 3)), ("valid", (1, 1), (3, 2)),
                                                            ("valid", (2, 2), (3, 3)), ("valid", (2, 1), (2, 3))])
def test_numpy_conv2d_im2col_equals_tensorflow(padding: str, strides: tuple[int, int], kernel: tuple[int, int]) -> None:
    tf = pytest.importorskip("tensorflow")
    from sim.core.netgraph import _apply_numpy

    rng = np.random.default_rng(11)
    x = rng.standard_normal((5, 9, 8, 4)).astype(np.float32)
    w = rng.standard_normal((*kernel, 4, 6)).astype(np.float32)
    b = rng.standard_normal(6).astype(np.float32)
    cfg = {"kernel_size": list(kernel), "strides": list(strides), "padding": padding, "use_bias": True, "activation": "linear"}
    got = _apply_numpy("Conv2D", cfg, [x], [w, b])
    want = tf.nn.conv2d(x, w, strides=[1, *strides, 1], padding=padding.upper()).numpy() + b
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kernel", [(2, 2), (3, 2)])
def test_numpy_conv2d_transpose_equals_tensorflow(kernel: tuple[int, int]) -> None:
    """Kernel = stride (the shower generator's 2 x 2 / 2: one block per input pixel) and an overlapping one."""
    tf = pytest.importorskip("tensorflow")
    from sim.core.netgraph import _apply_numpy

    rng = np.random.default_rng(12)
    x = rng.standard_normal((3, 5, 4, 6)).astype(np.float32)
    w = rng.standard_normal((*kernel, 2, 6)).astype(np.float32)  # (kh, kw, out, in)
    b = rng.standard_normal(2).astype(np.float32)
    cfg = {"kernel_size": list(kernel), "strides": [2, 2], "padding": "same", "use_bias": True, "activation": "linear"}
    got = _apply_numpy("Conv2DTranspose", cfg, [x], [w, b])
    want = tf.nn.conv2d_transpose(x, w, [3, 10, 8, 2], strides=[1, 2, 2, 1], padding="SAME").numpy() + b
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
