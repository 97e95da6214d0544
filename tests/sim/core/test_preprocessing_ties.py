"""QuantileGaussian.transform: the two-sided average only where it differs from the forward interpolation."""

from __future__ import annotations

import numpy as np
from scipy.special import ndtri

from sim.core.preprocessing import BOUND, QuantileGaussian


def _two_sided(qg: QuantileGaussian, x: np.ndarray) -> np.ndarray:
    """The transform as before issue #19: forward and backward interpolation averaged on every value."""
    q, r = qg.quantiles_, qg.references_
    out = np.empty_like(x)
    for j in range(x.shape[1]):
        fwd = np.interp(x[:, j], q[:, j], r)
        bwd = -np.interp(-x[:, j], -q[::-1, j], -r[::-1])
        out[:, j] = 0.5 * (fwd + bwd)
    return ndtri(np.clip(out, BOUND, 1.0 - BOUND))


def test_repeated_quantiles_exact_elsewhere_round_off() -> None:
    rng = np.random.default_rng(11)
    n = 20_000
    train = np.column_stack([rng.integers(0, 2, n), rng.poisson(40.0, n), rng.normal(size=n), np.where(rng.random(n) < 0.5, 0.0,
                                                                                                      rng.exponential(size=n))])
    qg = QuantileGaussian(256).fit(train)
    x = np.column_stack([rng.integers(-1, 3, n), rng.poisson(40.0, n) + rng.choice([0.0, 0.5], n), rng.normal(size=n) * 1.5,
                         np.where(rng.random(n) < 0.5, 0.0, rng.exponential(size=n))])
    x[:5] = qg.quantiles_[[0, 1, 100, 254, 255]]  # on the knots, first and last included
    new, old = qg.transform(x), _two_sided(qg, x)
    on_tie = np.zeros(x.shape, bool)
    for j in range(x.shape[1]):
        qc = qg.quantiles_[:, j]
        on_tie[:, j] = np.isin(x[:, j], qc[:-1][np.diff(qc) <= 0])
    assert on_tie[:, :2].any() and on_tie[:, 3].any()  # the discrete columns and the point mass at 0
    assert np.array_equal(new[on_tie], old[on_tie])  # the middle of a repeated quantile's run: exact
    assert np.allclose(new, old, rtol=0, atol=1e-12)  # elsewhere the same line from its other end
    assert np.array_equal(new.astype(np.float32), old.astype(np.float32))  # what the networks read
