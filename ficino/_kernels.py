"""Compiled (numba) loops of the candidate builder (:mod:`ficino.candidates`): key lookups and the match order.

Each loop does what a few numpy passes did in :mod:`ficino.candidates` (integer logic only, so the
results are the same, not just close): one pass over the queries instead of a dozen ``(n,)``
temporaries.  Importing this module imports numba and compiles (or loads from numba's cache) the
loops, so :mod:`ficino.candidates` imports it on first use; compiled and cached by
:func:`sim.core.jit.njit_cached`.
"""

from __future__ import annotations

import numpy as np

from sim.core.jit import njit_cached

__all__ = ("lookup_keys", "lookup_find", "keys_sorted", "key_ranges", "candidate_pvs")


def _lookup_keys(event: np.ndarray, index: np.ndarray, key: np.ndarray) -> bool:
    """``key = (event << 32) | (index & 0xFFFFFFFF)`` (int64) and whether ``key`` is non-decreasing."""
    n = event.shape[0]
    in_order = True
    prev = np.int64(0)
    for r in range(n):
        k = (np.int64(event[r]) << 32) | (np.int64(index[r]) & 0xFFFFFFFF)
        key[r] = k
        if r and k < prev:
            in_order = False
        prev = k
    return in_order


lookup_keys = njit_cached(_lookup_keys)
"""The compiled :func:`_lookup_keys`."""


def _bisect(keys: np.ndarray, v: np.int64, lo: int, right: bool) -> int:
    """``numpy.searchsorted(keys, v, "right" if right else "left")`` for sorted ``keys``, searching from ``lo``."""
    hi = keys.shape[0]
    while lo < hi:
        mid = (lo + hi) >> 1
        if keys[mid] < v or (right and keys[mid] == v):
            lo = mid + 1
        else:
            hi = mid
    return lo


bisect = njit_cached(_bisect)
"""The compiled :func:`_bisect` (called by the loops below)."""


def _lookup_find(sorted_keys: np.ndarray, order: np.ndarray, start: np.ndarray, event: np.ndarray,
                 index: np.ndarray, out: np.ndarray) -> None:
    """For each query ``(event[q], index[q])`` the row ``order[i]`` of the first ``i`` with
    ``sorted_keys[i]`` = its key, -1 where there is none or ``index < 0``.

    ``sorted_keys (N,)`` non-decreasing int64 keys, ``order (N,)`` their rows; ``start`` (``(E + 2,)``
    the first position of each event 0..E+1, or empty): the guess ``start[event] + index`` is tried
    first (a table whose ``index`` counts 0, 1, ... in each event), a binary search where it misses.
    """
    n_keys = sorted_keys.shape[0]
    n_start = start.shape[0]
    for q in range(event.shape[0]):
        ix = np.int64(index[q])
        if ix < 0 or n_keys == 0:
            out[q] = -1
            continue
        ev = np.int64(event[q])
        key = (ev << 32) | (ix & 0xFFFFFFFF)
        if n_start:
            e = min(max(ev, 0), n_start - 2)
            i = min(start[e] + ix, n_keys - 1)
            if sorted_keys[i] == key and (i == 0 or sorted_keys[i - 1] != key):
                out[q] = order[i]
                continue
        lo = bisect(sorted_keys, key, 0, False)  # leftmost i with sorted_keys[i] >= key
        out[q] = order[lo] if lo < n_keys and sorted_keys[lo] == key else -1


lookup_find = njit_cached(_lookup_find)
"""The compiled :func:`_lookup_find`."""


def _keys_sorted(keys: np.ndarray) -> bool:
    """Whether the columns of ``keys`` ``(m, n)`` int64 (row 0 the primary key) are in lexicographic
    order, i.e. whether ``numpy.lexsort(keys[::-1])`` (stable) is the identity."""
    m, n = keys.shape
    for r in range(1, n):
        for a in range(m):
            if keys[a, r] > keys[a, r - 1]:
                break
            if keys[a, r] < keys[a, r - 1]:
                return False
    return True


keys_sorted = njit_cached(_keys_sorted)
"""The compiled :func:`_keys_sorted`."""


def _key_ranges(keys: np.ndarray, query: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> None:
    """``lo``, ``hi`` = ``numpy.searchsorted(keys, query, "left")``, ``(..., "right")`` for sorted int64
    ``keys (N,)`` and int64 ``query (n,)``: one merge walk where ``query`` is non-decreasing (the usual
    case: parents in row order), else a binary search per query."""
    n_keys = keys.shape[0]
    n = query.shape[0]
    ordered = True
    for q in range(1, n):
        if query[q] < query[q - 1]:
            ordered = False
            break
    if ordered:
        a = 0
        for q in range(n):
            v = query[q]
            while a < n_keys and keys[a] < v:
                a += 1
            b = a
            while b < n_keys and keys[b] == v:
                b += 1
            lo[q] = a
            hi[q] = b
        return
    for q in range(n):
        lo[q] = bisect(keys, query[q], 0, False)
        hi[q] = bisect(keys, query[q], lo[q], True)


key_ranges = njit_cached(_key_ranges)
"""The compiled :func:`_key_ranges`."""


def _candidate_pvs(at: np.ndarray, found: np.ndarray, t_pos: np.ndarray, t_var: np.ndarray, t_chi2: np.ndarray,
                   t_ndof: np.ndarray, smeared: np.ndarray, var0: np.ndarray, pos: np.ndarray, cov: np.ndarray,
                   chi2: np.ndarray, ndof: np.ndarray, mask: np.ndarray) -> None:
    """The PVs of each candidate (``ficino.candidates._event_pvs``): candidate ``i`` takes the ``m`` slots
    of event row ``at[i]`` of the table ``t_pos (E, m, 3)``, ``t_var (E, m, 3)`` (diagonal covariance),
    ``t_chi2 (E, m)``, ``t_ndof (E, m)`` where ``found[i]``, else one slot with ``smeared[i] (3,)`` and
    variances ``var0 (3,)``; a slot is used (``mask``) when its position and variances are finite.
    Writes ``pos (n, m, 3)`` (0 where unused), ``cov (n, m, 3, 3)`` (diagonal; unit where unused),
    ``chi2``, ``ndof``, ``mask (n, m)``."""
    n, m = mask.shape
    p = np.empty(3)
    v = np.empty(3)
    for i in range(n):
        f = found[i]
        e = at[i]
        for j in range(m):
            if f:
                for a in range(3):
                    p[a] = t_pos[e, j, a]
                    v[a] = t_var[e, j, a]
                chi2[i, j] = t_chi2[e, j]
                ndof[i, j] = t_ndof[e, j]
            else:
                for a in range(3):
                    p[a] = smeared[i, a] if j == 0 else np.nan
                    v[a] = var0[a] if j == 0 else np.nan
                chi2[i, j] = np.nan
                ndof[i, j] = -1
            ok = True
            for a in range(3):
                ok = ok and np.isfinite(p[a]) and np.isfinite(v[a])
            mask[i, j] = ok
            for a in range(3):
                pos[i, j, a] = p[a] if ok else 0.0
                for b in range(3):
                    cov[i, j, a, b] = 0.0
                cov[i, j, a, a] = v[a] if ok else 1.0


candidate_pvs = njit_cached(_candidate_pvs)
"""The compiled :func:`_candidate_pvs`."""
