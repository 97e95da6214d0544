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

The forward transform (:func:`qg_forward`) finds each value's interval by a branch-free
bisection of fixed depth over the table padded with ``+inf`` to :data:`FORWARD_KNOTS` knots
(ten unrolled steps of compare-and-add, no branch to mispredict): about 15 ns per value on the
models' inputs in any order, where ``np.interp``'s search takes 100-140 ns on values in random
order (a mispredicted branch per step; 9 ns on sorted ones), and the cell-grid search of the
inverse loops 85 ns (issue #19, ``benchmarks/README.md``).  A grid of cells does not suit the
forward tables: their knots crowd where the data are and a momentum's tail stretches the grid.

Importing this module imports numba and compiles (or loads from numba's cache) the
loops: :mod:`sim.core.preprocessing` imports it only for calls of at least
:data:`sim.core.preprocessing.COMPILED_MIN_VALUES` values, so a small run does not
import numba.  Compiled and cached by :func:`sim.core.jit.njit_cached`.
"""

from __future__ import annotations

import numpy as np

from sim.core.jit import njit_cached

__all__ = ("CELLS", "FORWARD_KNOTS", "cell_index", "cqg_inverse", "forward_tables", "qg_forward", "qg_inverse")

#: Cells of the uniform grid over each table (:func:`cell_index`).
CELLS = 4096

#: Knots of the forward tables once padded (:func:`forward_tables`): tables of up to this many knots
#: run :func:`qg_forward`, whose bisection has ``log2(FORWARD_KNOTS)`` fixed steps.
FORWARD_KNOTS = 1024


def forward_tables(quantiles: np.ndarray, references: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`qg_forward`'s tables from a fitted ``quantiles_`` ``(m, d)`` and ``references_`` ``(m,)``, ``m <= FORWARD_KNOTS``.

    Returns:
        ``xp`` ``(d, FORWARD_KNOTS)``: each column's quantiles, padded with ``+inf``; ``fp`` ``(m,)``:
        the references; ``on_knot`` ``(d, m)``: the probability of a value equal to knot ``j`` when
        ``j`` is the last of its run of equal knots (what the search finds): ``0.5 (r[j] + r[first])``,
        the middle of the run (:meth:`sim.core.preprocessing.QuantileGaussian.transform`'s
        average of the forward and backward interpolation), ``r[j]`` for a knot that is not repeated.
    """
    q = np.asarray(quantiles, dtype=np.float64)
    r = np.ascontiguousarray(references, dtype=np.float64)
    m, d = q.shape
    if m > FORWARD_KNOTS or m < 2:
        raise ValueError(f"forward tables need 2..{FORWARD_KNOTS} knots, got {m}")
    xp = np.full((d, FORWARD_KNOTS), np.inf)
    xp[:, :m] = q.T
    on_knot = np.empty((d, m))
    for c in range(d):
        first = np.searchsorted(q[:, c], q[:, c], side="left")
        on_knot[c] = np.where(first != np.arange(m), 0.5 * (r + r[first]), r)
    return xp, r, on_knot


@njit_cached
def qg_forward(x: np.ndarray, xp: np.ndarray, fp: np.ndarray, on_knot: np.ndarray, bound: float,
               out: np.ndarray) -> int:
    """:meth:`QuantileGaussian.transform` of ``x`` ``(n, d)`` before ``ndtri``: clipped probabilities into ``out``.

    Per value what the numpy form does: ``np.interp(v, q[:, c], r)`` (numpy's ``arr_interp``
    arithmetic: below / above the table its edge reference, on a knot its reference, inside
    ``slope * (v - xp[j]) + fp[j]`` on the last knot ``xp[j] <= v``, with numpy's retry from the
    right end where that gives NaN), the middle of a run of repeated knots for a value on one
    (``on_knot``), then ``np.clip`` to ``[bound, 1 - bound]``.  Tables from :func:`forward_tables`.

    Returns:
        -1, or the first column holding NaN/inf (``out`` is then incomplete: the caller raises
        through the numpy method).
    """
    n, d = x.shape
    m = fp.shape[0]
    hi = 1.0 - bound
    for c in range(d):
        row = xp[c]
        last = row[m - 1]
        for i in range(n):
            v = x[i, c]
            if not np.isfinite(v):
                return c
            if v > last:
                p = fp[m - 1]
            elif v < row[0]:
                p = fp[0]
            else:
                j = 0
                for half in (512, 256, 128, 64, 32, 16, 8, 4, 2, 1):  # FORWARD_KNOTS = 1024, unrolled
                    j += half * int(row[j + half] <= v)
                if row[j] == v:
                    p = on_knot[c, j]
                else:
                    slope = (fp[j + 1] - fp[j]) / (row[j + 1] - row[j])
                    p = slope * (v - row[j]) + fp[j]
                    if np.isnan(p):
                        p = slope * (v - row[j + 1]) + fp[j + 1]
                        if np.isnan(p) and fp[j] == fp[j + 1]:
                            p = fp[j]
            out[i, c] = _clip(p, bound, hi)
    return -1


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
