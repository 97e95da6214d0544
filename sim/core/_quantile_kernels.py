"""Compiled (numba) loops of the quantile transforms of :mod:`sim.core.preprocessing`.

Each loop does, per value, what the numpy inverse transforms do with several whole-array
steps (``np.clip``, ``np.interp`` per column, and for the conditional transform per bin of
the condition, the interpolation between its two neighbouring tables), with the
same arithmetic in the same order, so the results are the same numbers bit for bit
(``tests/sim/core/test_quantile_kernels.py``):

* the interpolation is numpy's ``arr_interp``: the interval ``j`` is the last knot
  ``xp[j] <= x`` (found here from a uniform grid of cells over the table, :func:`cell_index`,
  then a bisection between the knots of the value's cell), a value on a knot or on the last knot takes
  that knot's ``fp``, outside the table the edge value, inside ``slope * (x - xp[j]) +
  fp[j]`` with ``slope = (fp[j + 1] - fp[j]) / (xp[j + 1] - xp[j])`` (and numpy's retry
  from the right end where that gives NaN); no fast-math, so no fused multiply-add;
* ``ndtr`` stays SciPy's ufunc, run by the caller on the whole array: as fast as its C
  function called from the loop, which numba could not cache.

The forward transform stays numpy's: a loop of the same kind measured slower than
``np.interp`` (whose search starts at the previous value's interval) on the models' inputs,
where many columns are discrete (issue #19, ``benchmarks/README.md``).

Importing this module imports numba and compiles (or loads from numba's cache) the
loops: :mod:`sim.core.preprocessing` imports it only for calls of at least
:data:`sim.core.preprocessing.COMPILED_MIN_VALUES` values, so a small run does not
import numba.  Compiled and cached by :func:`sim.core.jit.njit_cached`.
"""

from __future__ import annotations

import numpy as np

from sim.core.jit import njit_cached

__all__ = ("CELLS", "cell_index", "cqg_inverse", "qg_inverse")

#: Cells of the uniform grid over each table (:func:`cell_index`).
CELLS = 4096


def cell_index(xp: np.ndarray, cells: int = CELLS) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Uniform grids over the tables ``xp`` ``(d, m)`` (increasing rows): where to start each search.

    Returns:
        ``first`` ``(d, cells + 1)``: per column, the last knot at or below each grid edge
        (clipped to ``[0, m - 2]``); ``x0`` ``(d,)``: the first knot; ``inv_width`` ``(d,)``:
        cells per unit of ``x`` (0 for a table of one value).  The search corrects any
        rounding of the cell, so these only make it short.
    """
    d, m = xp.shape
    first = np.empty((d, cells + 1), np.int64)
    x0 = np.ascontiguousarray(xp[:, 0], dtype=np.float64)
    inv_width = np.zeros(d)
    for c in range(d):
        span = float(xp[c, -1] - xp[c, 0])
        if span > 0 and np.isfinite(cells / span):
            inv_width[c] = cells / span
        edges = xp[c, 0] + np.arange(cells + 1) * (span / cells)
        first[c] = np.clip(np.searchsorted(xp[c], edges, side="right") - 1, 0, m - 2)
    return first, x0, inv_width


@njit_cached(inline=True)
def _interp(v: float, xp: np.ndarray, fp: np.ndarray, first: np.ndarray, x0: float, inv_width: float) -> float:
    """``np.interp(v, xp, fp)`` (numpy's ``arr_interp`` arithmetic; ``xp`` increasing, ``m >= 2``, ``v`` finite)."""
    m = xp.shape[0]
    if v > xp[m - 1]:
        return fp[m - 1]
    if v < xp[0]:
        return fp[0]
    if v >= xp[m - 1]:
        return fp[m - 1]
    ncell = first.shape[0] - 1
    k = int((v - x0) * inv_width)
    k = min(max(k, 0), ncell - 1)
    lo = first[k]  # the last knot <= v lies in [lo, hi) once corrected for the cell's rounding
    while lo > 0 and xp[lo] > v:
        lo -= 1
    hi = min(first[k + 1] + 1, m - 1)
    while xp[hi] <= v:
        hi += 1
    while hi - lo > 1:
        mid = (lo + hi) >> 1
        if xp[mid] <= v:
            lo = mid
        else:
            hi = mid
    j = lo
    if xp[j] == v:
        return fp[j]
    slope = (fp[j + 1] - fp[j]) / (xp[j + 1] - xp[j])
    res = slope * (v - xp[j]) + fp[j]
    if np.isnan(res):
        res = slope * (v - xp[j + 1]) + fp[j + 1]
        if np.isnan(res) and fp[j] == fp[j + 1]:
            res = fp[j]
    return res


@njit_cached(inline=True)
def _clip(v: float, lo: float, hi: float) -> float:
    """``np.clip`` of a finite value."""
    if v < lo:
        return lo
    if v > hi:
        return hi
    return v


@njit_cached
def qg_inverse(z: np.ndarray, u: np.ndarray, q: np.ndarray, r: np.ndarray, first: np.ndarray, x0: float,
               inv_width: float, bound: float, out: np.ndarray) -> int:
    """:meth:`QuantileGaussian.inverse_transform` of ``z`` ``(n, d)`` into ``out``, given ``u = ndtr(z)``.

    ``q`` ``(d, m)`` quantiles per column, ``r`` ``(m,)`` references with their
    :func:`cell_index` ``first`` ``(cells + 1,)``, ``x0``, ``inv_width``.

    Returns:
        -1, or the first column holding NaN/inf (``out`` is then incomplete: the caller
        raises through the numpy method).
    """
    n, d = u.shape
    hi = 1.0 - bound
    for i in range(n):
        for c in range(d):
            if not np.isfinite(z[i, c]):
                return c
            out[i, c] = _interp(_clip(u[i, c], bound, hi), r, q[c], first, x0, inv_width)
    return -1


@njit_cached
def cqg_inverse(z: np.ndarray, u: np.ndarray, k: np.ndarray, a: np.ndarray, r: np.ndarray, first: np.ndarray,
                x0: float, inv_width: float, quant: np.ndarray, bound: float, out: np.ndarray) -> int:
    """:meth:`ConditionalQuantileGaussian.inverse_transform` before the differences are added back.

    Args:
        z: ``(n, d)`` model values; u: ``ndtr(z)``; k, a: ``(n,)`` lower bin and weight of
            each row (``_neighbours``); r: ``(m,)`` references with their :func:`cell_index`
            ``first``, ``x0``, ``inv_width``; quant: ``(n_bins, d, m)`` tables (contiguous
            per bin and column).

    Returns:
        -1, or the first column holding NaN/inf (``out`` is then incomplete: the caller
        raises through the numpy method).
    """
    n, d = u.shape
    nb = quant.shape[0]
    hi = 1.0 - bound
    for i in range(n):
        kk = k[i]
        kh = min(kk + 1, nb - 1)
        w = a[i]
        for c in range(d):
            if not np.isfinite(z[i, c]):
                return c
            p = _clip(u[i, c], bound, hi)
            out[i, c] = ((1.0 - w) * _interp(p, r, quant[kk, c], first, x0, inv_width)
                         + w * _interp(p, r, quant[kh, c], first, x0, inv_width))
    return -1
