"""Quiet TensorFlow: no C++ start-up log lines on the console unless asked for (``mambah -v``).

Importing TensorFlow 2.x on a machine without a GPU writes, before any Python
code could stop it, lines such as::

    WARNING: All log messages before absl::InitializeLog() is called are written to STDERR
    I0000 ... port.cc:153] oneDNN custom operations are on. ...
    I0000 ... cudart_stub.cc:31] Could not find cuda drivers on your machine, GPU will not be used.
    E0000 ... cuda_platform.cc:52] failed call to cuInit: INTERNAL: CUDA error: ... UNKNOWN ERROR (303)

(each of the first three twice, once per TensorFlow shared library).  The
first three come from absl's *pre-initialisation* logging, which ignores
``TF_CPP_MIN_LOG_LEVEL``; only the ``E0000`` line (written later, when the
first tensor is made) obeys it.  :func:`quiet_tensorflow`, called before
TensorFlow is imported, therefore

* sets ``TF_CPP_MIN_LOG_LEVEL=3`` unless the user set it (hides the C++
  ``INFO``/``WARNING``/``ERROR`` lines written after start-up; TensorFlow's
  Python exceptions are unaffected), and
* sets ``ZFIT_DISABLE_TF_WARNINGS=1`` unless set (zfit's import otherwise warns,
  as a ``UserWarning``, that it hides TensorFlow's warnings), and
* installs a one-shot import hook that runs the ``import tensorflow`` with
  file descriptor 2 (C and C++ ``stderr``) sent to a temporary file, so the
  pre-initialisation lines go there.  Python's ``sys.stderr`` is the same
  descriptor, so everything written during that import is held back; if the
  import fails, the held-back text is written to ``stderr`` before the error
  propagates, so nothing that explains a failure is lost.

Neither ``TF_ENABLE_ONEDNN_OPTS`` (it changes the numerics) nor
``CUDA_VISIBLE_DEVICES`` (it does not stop the ``cuInit`` probe, measured with
TensorFlow 2.21, and it would hide a real GPU) is touched.  Environment
variables set here (and ``MAMBAH_QUIET=1``) are inherited by worker processes
started afterwards (a local Dask cluster), which call :func:`quiet_if_inherited`
for their own import hook.

``import mambah.quiet`` imports nothing heavy; TensorFlow is never imported here.
"""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.machinery
import os
import sys
import tempfile
import threading
from collections.abc import Sequence
from types import ModuleType
from typing import Any

__all__ = ("QUIET_ENV", "QUIET_MARKER", "is_quiet", "quiet_if_inherited", "quiet_tensorflow", "verbosity_from_argv")

#: Environment variables set (with :meth:`dict.setdefault` semantics: a user's value wins).
QUIET_ENV: dict[str, str] = {"TF_CPP_MIN_LOG_LEVEL": "3", "ZFIT_DISABLE_TF_WARNINGS": "1"}

#: Set to ``"1"`` by :func:`quiet_tensorflow`: tells worker processes started later to be quiet too.
QUIET_MARKER = "MAMBAH_QUIET"

#: Modules whose first import runs with descriptor 2 redirected.
_HUSHED_MODULES = ("tensorflow",)

_LOCK = threading.Lock()


class _HushedLoader(importlib.abc.Loader):
    """Wraps a module's loader: ``exec_module`` runs with descriptor 2 sent to a temporary file."""

    def __init__(self, loader: importlib.abc.Loader) -> None:
        self._loader = loader

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return self._loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        # the module keeps its real loader (inspect, importlib.resources and reloads use it)
        module.__loader__ = self._loader
        if module.__spec__ is not None:
            module.__spec__.loader = self._loader
        with _stderr_to_tempfile():
            self._loader.exec_module(module)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._loader, name)


class _stderr_to_tempfile:
    """Descriptor 2 to a temporary file inside the block; its text replayed to stderr if the block raises."""

    def __enter__(self) -> None:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(OSError, ValueError):
                stream.flush()
        self._held = tempfile.TemporaryFile()
        self._saved = os.dup(2)
        os.dup2(self._held.fileno(), 2)

    def __exit__(self, exc_type: object, *exc: object) -> None:
        with contextlib.suppress(OSError, ValueError):
            sys.stderr.flush()
        os.dup2(self._saved, 2)
        os.close(self._saved)
        if exc_type is not None:
            self._held.seek(0)
            text = self._held.read()
            if text:
                os.write(2, text)
        self._held.close()


class _HushFinder(importlib.abc.MetaPathFinder):
    """First finder on ``sys.meta_path``: hands the other finders' spec of a hushed module a :class:`_HushedLoader`."""

    def find_spec(self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None) -> importlib.machinery.ModuleSpec | None:
        if fullname not in _HUSHED_MODULES:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                if spec.loader is not None and hasattr(spec.loader, "exec_module"):
                    spec.loader = _HushedLoader(spec.loader)  # type: ignore[arg-type]
                return spec
        return None


def is_quiet() -> bool:
    """Whether the import hook of :func:`quiet_tensorflow` is on ``sys.meta_path``."""
    return any(isinstance(f, _HushFinder) for f in sys.meta_path)


def quiet_tensorflow(verbose: int = 0) -> bool:
    """Keep TensorFlow's C++ start-up lines off the console; call before TensorFlow is imported.

    Idempotent.  Does nothing when ``verbose > 0`` (``mambah -v``: the logs come
    back) or when TensorFlow is imported already (too late to hold its
    start-up lines back; the environment variables are still set for
    processes started later).

    Args:
        verbose: the command's verbosity (number of ``-v``).

    Returns:
        Whether the import hook is in place afterwards.
    """
    if verbose > 0:
        return False
    with _LOCK:
        for key, value in QUIET_ENV.items():
            os.environ.setdefault(key, value)
        os.environ[QUIET_MARKER] = "1"
        if any(name in sys.modules for name in _HUSHED_MODULES):
            return False
        if not is_quiet():
            sys.meta_path.insert(0, _HushFinder())
    return True


def quiet_if_inherited() -> bool:
    """:func:`quiet_tensorflow` in a worker process whose parent called it (``MAMBAH_QUIET=1`` inherited).

    Returns:
        Whether the import hook is in place afterwards.
    """
    if os.environ.get(QUIET_MARKER) != "1":
        return False
    return quiet_tensorflow()


def verbosity_from_argv(argv: Sequence[str]) -> int:
    """The number of ``-v``/``--verbose`` among the global options of ``mambah`` (before the subcommand).

    Args:
        argv: the arguments after the program name.
    """
    count = 0
    for arg in argv:
        if arg == "--verbose":
            count += 1
        elif arg.startswith("-") and not arg.startswith("--") and set(arg[1:]) == {"v"}:
            count += len(arg) - 1
        elif not arg.startswith("-"):
            break
    return count
