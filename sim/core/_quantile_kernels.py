"""Compiled (numba) loops of the quantile transforms of :mod:`sim.core.preprocessing`.

Each loop does, per value, what the numpy transforms do with several whole-array steps
(``np.interp`` per column, ``np.clip``, and for the conditional transform per bin of the
condition, the interpolation between its two neighbouring tables), with the same arithmetic in
the same order, so the results are the same numbers bit for bit
(``tests/sim/core/test_quantile_kernels.py``):

* the interpolation is numpy's ``arr_interp``: the interval ``j`` is the last knot
  ``xp[j] <= x``, a value on a knot or on the last knot takes that knot's ``fp``, outside the
  table the edge value, inside ``slope * (x - xp[j]) + fp[j]`` with ``slope = (fp[j + 1] -
  fp[j]) / (xp[j + 1] - xp[j])`` (and numpy's retry from the right end where that gives NaN,
  :func:`_segment`); no fast-math, so no fused multiply-add;
* ``ndtr`` / ``ndtri`` stay SciPy's ufuncs, run by the caller on the whole array: as fast as
  their C functions called from the loop, which numba could not cache.

Every loop finds a value's interval by a branch-free bisection of fixed depth over its table
padded with ``+inf`` to :data:`KNOTS` knots (:func:`padded`; ten unrolled steps of
compare-and-add, no branch to mispredict): the forward tables are the quantiles of each column,
the inverse ones the references (shared by the columns, and by both neighbouring tables of the
conditional transform, so one search serves both).  On the shipped models' tables, per value
(issue #19, ``benchmarks/README.md``): forward about 15 ns where ``np.interp``'s search takes
100-140 ns on values in random order (a mispredicted branch per step; 9 ns on sorted ones);
inverse 18-35 ns where the earlier loops, a uniform grid of cells and a bisection between the
knots of the value's cell, took 72-171 ns.  NaN and inf are found by ``v - v != 0`` (numba's
scalar ``np.isfinite`` / ``np.isnan`` are calls that keep the loop from being optimised as a
whole).

Importing this module imports numba and compiles (or loads from numba's cache) the
loops: :mod:`sim.core.preprocessing` imports it only for calls of at least
:data:`sim.core.preprocessing.COMPILED_MIN_VALUES` values, so a small run does not
import numba.  Compiled and cached by :func:`sim.core.jit.njit_cached`.
"""

from __future__ import annotations

import numpy as np

from sim.core.jit import njit_cached

__all__ = ("KNOTS", "cqg_inverse", "forward_tables", "padded", "qg_forward", "qg_inverse")

#: Knots of every table once padded (:func:`padded`): tables of up to this many knots run the
#: compiled loops, whose bisection has ``log2(KNOTS)`` fixed steps (unrolled in each loop).
KNOTS = 1024


def padded(xp: np.ndarray) -> np.ndarray:
    """The increasing table(s) ``xp`` ``(..., m)``, ``2 <= m <= KNOTS``, padded with ``+inf`` to ``(..., KNOTS)``."""
    xp = np.asarray(xp, dtype=np.float64)
    m = xp.shape[-1]
    if m > KNOTS or m < 2:
        raise ValueError(f"compiled quantile tables need 2..{KNOTS} knots, got {m}")
    out = np.full((*xp.shape[:-1], KNOTS), np.inf)
    out[..., :m] = xp
    return out


def forward_tables(quantiles: np.ndarray, references: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`qg_forward`'s tables from a fitted ``quantiles_`` ``(m, d)`` and ``references_`` ``(m,)``, ``m <= KNOTS``.

    Returns:
        ``xp`` ``(d, KNOTS)``: each column's quantiles, :func:`padded`; ``fp`` ``(m,)``: the
        references; ``on_knot`` ``(d, m)``: the probability of a value equal to knot ``j`` when
        ``j`` is the last of its run of equal knots (what the search finds): ``0.5 (r[j] + r[first])``,
        the middle of the run (:meth:`sim.core.preprocessing.QuantileGaussian.transform`'s
        average of the forward and backward interpolation), ``r[j]`` for a knot that is not repeated.
    """
    q = np.asarray(quantiles, dtype=np.float64)
    r = np.ascontiguousarray(references, dtype=np.float64)
    m, d = q.shape
    xp = padded(q.T)
    on_knot = np.empty((d, m))
    for c in range(d):
        first = np.searchsorted(q[:, c], q[:, c], side="left")
        on_knot[c] = np.where(first != np.arange(m), 0.5 * (r + r[first]), r)
    return xp, r, on_knot


@njit_cached(inline=True)
def _segment(v: float, x0: float, x1: float, f0: float, f1: float) -> float:
    """numpy's ``arr_interp`` of ``v`` strictly inside the knot interval ``[x0, x1)`` with values ``f0``, ``f1``."""
    slope = (f1 - f0) / (x1 - x0)
    res = slope * (v - x0) + f0
    if res != res:  # noqa: PLR0124 -- NaN (numpy retries from the right end)
        res = slope * (v - x1) + f1
        if res != res and f0 == f1:  # noqa: PLR0124
            res = f0
    return res


@njit_cached(inline=True)
def _search(row: np.ndarray, v: float) -> int:
    """The last knot ``j`` of the :func:`padded` table ``row`` with ``row[j] <= v`` (``row[0] <= v``):
    a bisection of ten unrolled compare-and-add steps (``KNOTS = 1024``), no data-dependent branch."""
    j = 0
    for half in (512, 256, 128, 64, 32, 16, 8, 4, 2, 1):
        j += half * int(row[j + half] <= v)
    return j


@njit_cached(inline=True)
def _clip(v: float, lo: float, hi: float) -> float:
    """``np.clip`` of a finite value."""
    if v < lo:
        return lo
    if v > hi:
        return hi
    return v


@njit_cached
def qg_forward(x: np.ndarray, xp: np.ndarray, fp: np.ndarray, on_knot: np.ndarray, bound: float,
               out: np.ndarray) -> int:
    """:meth:`QuantileGaussian.transform` of ``x`` ``(n, d)`` before ``ndtri``: clipped probabilities into ``out``.

    Per value what the numpy form does: ``np.interp(v, q[:, c], r)`` (below / above the table its
    edge reference, on a knot its reference, inside :func:`_segment` on the last knot
    ``xp[j] <= v``), the middle of a run of repeated knots for a value on one (``on_knot``), then
    ``np.clip`` to ``[bound, 1 - bound]``.  Tables from :func:`forward_tables`.

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
            if v - v != 0.0:
                return c
            if v > last:
                p = fp[m - 1]
            elif v < row[0]:
                p = fp[0]
            else:
                j = _search(row, v)
                if row[j] == v:
                    p = on_knot[c, j]
                else:
                    p = _segment(v, row[j], row[j + 1], fp[j], fp[j + 1])
            out[i, c] = _clip(p, bound, hi)
    return -1


@njit_cached
def qg_inverse(z: np.ndarray, u: np.ndarray, q: np.ndarray, rp: np.ndarray, m: int, bound: float,
               out: np.ndarray) -> int:
    """:meth:`QuantileGaussian.inverse_transform` of ``z`` ``(n, d)`` into ``out``, given ``u = ndtr(z)``.

    Per value ``np.interp(np.clip(u, bound, 1 - bound), r, q[c])``.  ``q`` ``(d, m)`` quantiles per
    column, ``rp`` the ``m`` references :func:`padded`.

    Returns:
        -1, or the first column holding NaN/inf (``out`` is then incomplete: the caller
        raises through the numpy method).
    """
    n, d = u.shape
    hi = 1.0 - bound
    last = rp[m - 1]
    for i in range(n):
        for c in range(d):
            zz = z[i, c]
            if zz - zz != 0.0:
                return c
            v = _clip(u[i, c], bound, hi)
            qc = q[c]
            if v > last:
                res = qc[m - 1]
            elif v < rp[0]:
                res = qc[0]
            else:
                j = _search(rp, v)
                if rp[j] == v:
                    res = qc[j]
                else:
                    res = _segment(v, rp[j], rp[j + 1], qc[j], qc[j + 1])
            out[i, c] = res
    return -1


@njit_cached
def cqg_inverse(z: np.ndarray, u: np.ndarray, k: np.ndarray, a: np.ndarray, rp: np.ndarray, m: int,
                quant: np.ndarray, bound: float, out: np.ndarray) -> int:
    """:meth:`ConditionalQuantileGaussian.inverse_transform` before the differences are added back.

    Per value ``(1 - a) np.interp(p, r, lo) + a np.interp(p, r, hi)`` with ``p`` the clipped
    ``u`` and ``lo``, ``hi`` the tables of the row's two neighbouring bins (one search, the
    references being the same).

    Args:
        z: ``(n, d)`` model values; u: ``ndtr(z)``; k, a: ``(n,)`` lower bin and weight of
            each row (``_neighbours``); rp: the ``m`` references :func:`padded`; quant:
            ``(n_bins, d, m)`` tables (contiguous per bin and column).

    Returns:
        -1, or the first column holding NaN/inf (``out`` is then incomplete: the caller
        raises through the numpy method).
    """
    n, d = u.shape
    nb = quant.shape[0]
    hi = 1.0 - bound
    last = rp[m - 1]
    for i in range(n):
        kk = k[i]
        kh = min(kk + 1, nb - 1)
        w = a[i]
        for c in range(d):
            zz = z[i, c]
            if zz - zz != 0.0:
                return c
            v = _clip(u[i, c], bound, hi)
            lo_t = quant[kk, c]
            hi_t = quant[kh, c]
            if v > last:
                f_lo = lo_t[m - 1]
                f_hi = hi_t[m - 1]
            elif v < rp[0]:
                f_lo = lo_t[0]
                f_hi = hi_t[0]
            else:
                j = _search(rp, v)
                if rp[j] == v:
                    f_lo = lo_t[j]
                    f_hi = hi_t[j]
                else:
                    f_lo = _segment(v, rp[j], rp[j + 1], lo_t[j], lo_t[j + 1])
                    f_hi = _segment(v, rp[j], rp[j + 1], hi_t[j], hi_t[j + 1])
            out[i, c] = (1.0 - w) * f_lo + w * f_hi
    return -1
