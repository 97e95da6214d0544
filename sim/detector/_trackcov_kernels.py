"""Compiled (numba) loop of :func:`sim.detector.trackcov.crossed_velo_stations`.

The numpy form builds seven ``(n, n_stations)`` float64 temporaries (26 Run 2 stations:
31 MB each for a batch's 150 000 particles) and three boolean ones; this loop computes each
track's line at each station with the same operations in the same order (``dz = z_s − z0``,
``x = x0 + tx·dz``, ``y = y0 + ty·dz``, ``r² = x·x + y·y``, the three comparisons), so the
result is the same bit for bit (``tests/sim/detector/test_trackcov_kernels.py``).

Imported by :func:`~sim.detector.trackcov.crossed_velo_stations` for calls of at least
:data:`sim.detector.trackcov.COMPILED_MIN_TRACKS` tracks (numba, compiled and cached by
:func:`sim.core.jit.njit_cached`).
"""

from __future__ import annotations

import numpy as np

from sim.core.jit import njit_cached

__all__ = ("crossed_loop",)


@njit_cached
def crossed_loop(x0: np.ndarray, y0: np.ndarray, z0: np.ndarray, tx: np.ndarray, ty: np.ndarray, zs: np.ndarray,
                 r2_min: float, r2_max: float, out: np.ndarray) -> None:
    """``out[i, s]``: the line of track ``i`` crosses station ``s`` downstream of its origin inside the sensors."""
    n, m = out.shape
    for i in range(n):
        for s in range(m):
            dz = zs[s] - z0[i]
            xs = x0[i] + tx[i] * dz
            ys = y0[i] + ty[i] * dz
            r2 = xs * xs + ys * ys
            out[i, s] = (dz > 0) & (r2 > r2_min) & (r2 < r2_max)
