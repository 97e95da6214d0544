"""Mambah: the batch-indexed DuckDB event store of the Mambah ultra-fast simulation.

``import mambah`` is light (DuckDB, Arrow, SQLAlchemy, particle): it never
imports TensorFlow.  Generation and detector response live in :mod:`sim`,
export in :mod:`ficino`.
"""

from __future__ import annotations

import os
import signal
import sys


def _early_signal(signum: int, frame: object) -> None:  # pragma: no cover - timing dependent
    """Ctrl-C or SIGTERM while the ``mambah`` command is still starting: one line, 130 or 143, no traceback."""
    term = signum == signal.SIGTERM
    what = b"terminated (SIGTERM)" if term else b"interrupted"
    os.write(2, b"mambah: " + what + b"; complete batches are kept (finish with --resume)\n")
    os._exit(143 if term else 130)


def _is_command(*, or_module: bool = False) -> bool:
    """Whether this process is the ``mambah`` command itself (not a multiprocessing child of it).

    ``or_module=True`` counts ``python -m mambah.cli`` too (its ``__main__`` is the module ``mambah.cli``);
    the early signal handlers below and in :mod:`mambah.cli` keep to the console script.
    """
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    if os.path.basename(sys.argv[0]) != "mambah" and not (or_module and getattr(spec, "name", None) == "mambah.cli"):
        return False
    mp = sys.modules.get("multiprocessing")
    return mp is None or mp.parent_process() is None


if _is_command():  # the console script: until mambah.cli.main takes over
    for _sig in (signal.SIGINT, signal.SIGTERM):
        if signal.getsignal(_sig) is not signal.SIG_IGN:  # an ignored signal stays ignored
            signal.signal(_sig, _early_signal)

import importlib  # noqa: E402 - after the early signal handlers
from typing import TYPE_CHECKING, Any  # noqa: E402

from mambah.errors import (  # noqa: E402
    ConfigError,
    DataError,
    DecayError,
    DistributedError,
    ExportError,
    MambahError,
    ModelError,
    SchemaVersionError,
    StoreError,
    StoreExistsError,
    TrainingError,
    UnknownParticleError,
)

if TYPE_CHECKING:
    from mambah.descriptor import (
        DecayNode,
        default_aliases,
        lookup_particle,
        parse_descriptor,
    )
    from mambah.schema import DATA_TABLES, METADATA, SCHEMA_VERSION, TABLES
    from mambah.store import BatchRecord, EventStore
    from mambah.tree import daughters, descendants, match_decay, mother

#: names imported on first use, so that ``import mambah`` (and the ``mambah`` command's
#: first moments, where a Ctrl-C must still end in one line) costs milliseconds, not DuckDB's,
#: Arrow's and SQLAlchemy's import time
_LAZY: dict[str, str] = {
    **dict.fromkeys(("DecayNode", "default_aliases", "lookup_particle", "parse_descriptor"), "mambah.descriptor"),
    **dict.fromkeys(("DATA_TABLES", "METADATA", "SCHEMA_VERSION", "TABLES"), "mambah.schema"),
    **dict.fromkeys(("BatchRecord", "EventStore"), "mambah.store"),
    **dict.fromkeys(("daughters", "descendants", "match_decay", "mother"), "mambah.tree"),
}

__version__ = "0.1.0"

__all__ = (
    "BatchRecord",
    "ConfigError",
    "DATA_TABLES",
    "DataError",
    "DecayError",
    "DecayNode",
    "DistributedError",
    "EventStore",
    "ExportError",
    "METADATA",
    "MambahError",
    "ModelError",
    "SCHEMA_VERSION",
    "SchemaVersionError",
    "StoreError",
    "StoreExistsError",
    "TABLES",
    "TrainingError",
    "UnknownParticleError",
    "__version__",
    "daughters",
    "default_aliases",
    "descendants",
    "lookup_particle",
    "match_decay",
    "mother",
    "parse_descriptor",
)


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        try:  # a submodule used as an attribute (``mambah.store``) after ``import mambah``
            return importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return list(__all__)
