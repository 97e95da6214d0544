"""numba as Mambah's compiled loops use it: one decorator, one cache policy, one start-up rule.

Every compiled kernel (:mod:`sim.core._quantile_kernels`, :mod:`sim.detector._vertex_kernels`,
:mod:`sim.detector._trackcov_kernels`, :mod:`sim.generation._amplitude_kernels`) is made by
:func:`njit_cached`:

* ``numba.njit(cache=True, nogil=True, error_model="numpy")``, no fast-math (the kernels
  promise the numpy forms' numbers bit for bit);
* the cache lies beside the kernel's module (``__pycache__``) or, where that directory is not
  writable, in numba's user-wide cache (``NUMBA_CACHE_DIR``, else ``~/.cache/numba``); where
  neither can be written, in ``$TMPDIR/mambah-numba-<uid>`` (one warning line), and the
  kernel is compiled afresh only if that fails too;
* in the ``mambah`` command (``mambah ...`` or ``python -m mambah.cli``, not a
  multiprocessing child of it) numba's third-party extensions are not loaded: the
  ``numba_extensions`` entry points of vector and awkward (which import sympy) cost
  1.3-4 CPU s at the first compile or cache load of a process, and the command runs only its
  own kernels.  A Python session that imports a kernel keeps numba's default, so its own
  numba code on vector or awkward objects still works.

Importing this module imports numba (≈ 0.2 CPU s): the kernels' callers import them only for
calls large enough to pay for it, so a small run never does.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Callable
from typing import Any

import numba

from mambah import _is_command

__all__ = ("njit_cached", "skip_numba_extensions")

_log = logging.getLogger(__name__)


def _in_command() -> bool:
    """Whether this process runs the ``mambah`` command: the console script or ``python -m mambah.cli``."""
    return _is_command(or_module=True)


def skip_numba_extensions() -> None:
    """Do not load numba's third-party extensions in this process (what the command does; a benchmark that
    runs the chain in-process as the command would calls it before the first kernel)."""
    numba.core.entrypoints._already_initialized = True


if _in_command():
    skip_numba_extensions()


def njit_cached(func: Callable[..., Any] | None = None, *, inline: bool = False) -> Any:
    """``func`` compiled and cached as the module docstring says; ``inline=True`` inlines it into its
    compiled callers (numba's ``inline="always"``: a call with array arguments costs their reference
    counts per value).  Use as ``@njit_cached`` or ``@njit_cached(inline=True)``."""
    if func is None:
        return lambda f: njit_cached(f, inline=inline)
    options: dict[str, Any] = {"cache": True, "nogil": True, "error_model": "numpy"}
    if inline:
        options["inline"] = "always"
    try:
        return numba.njit(**options)(func)
    except RuntimeError as exc:  # numba: "cannot cache function ...: no locator available for file ..."
        config: Any = numba.config
        if config.CACHE_DIR:
            raise
        fallback = os.path.join(tempfile.gettempdir(), f"mambah-numba-{os.getuid()}")
        _log.warning("compiled kernel %s.%s: numba cannot cache beside %s (%s); caching in %s",
                     func.__module__, func.__qualname__, func.__code__.co_filename, exc, fallback)
        config.CACHE_DIR = fallback
        return numba.njit(**options)(func)
