"""Mambah: the batch-indexed DuckDB event store of the Mambah ultra-fast simulation.

``import mambah`` is light (DuckDB, Arrow, SQLAlchemy, particle): it never
imports TensorFlow.  Generation and detector response live in :mod:`sim`,
export in :mod:`ficino`.
"""

from __future__ import annotations

from mambah.descriptor import DecayNode, default_aliases, lookup_particle, parse_descriptor
from mambah.errors import (
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
from mambah.schema import DATA_TABLES, METADATA, SCHEMA_VERSION, TABLES
from mambah.store import BatchRecord, EventStore
from mambah.tree import daughters, descendants, match_decay, mother

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


def __dir__() -> list[str]:
    return list(__all__)
