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
