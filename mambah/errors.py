"""The one error hierarchy of Mambah.

Every error raised on bad input derives from :class:`MambahError`; the CLI turns
any of them into a one-line message and exit status 2.  Each subclass also
derives from the closest built-in exception, so ``except ValueError`` keeps
working for callers that do not know Mambah.
"""

from __future__ import annotations

__all__ = (
    "MambahError",
    "ConfigError",
    "UnknownParticleError",
    "DecayError",
    "StoreError",
    "SchemaVersionError",
    "StoreExistsError",
    "ModelError",
    "DataError",
    "TrainingError",
    "ExportError",
    "DistributedError",
    "first_line",
)


class MambahError(Exception):
    """Base class of every error Mambah raises on bad input or a failed run."""


class ConfigError(MambahError, ValueError):
    """A configuration (keyword, config file, CLI option) is malformed or unknown."""


class UnknownParticleError(MambahError, ValueError):
    """A particle name or PDG id is not known to the ``particle`` package."""


class DecayError(MambahError, ValueError):
    """A decay descriptor or DecFile is malformed or unphysical."""


class StoreError(MambahError, OSError):
    """The event store cannot be opened, read or written."""


class SchemaVersionError(StoreError):
    """The store was written with another schema version."""


class StoreExistsError(StoreError, FileExistsError):
    """The output store exists and neither overwrite nor resume was asked."""


class ModelError(MambahError, ValueError):
    """A model file is missing, corrupt, or does not match its configuration."""


class DataError(MambahError, ValueError):
    """Input data (training file, arrays) are missing columns or hold NaN/inf."""


class TrainingError(MambahError, RuntimeError):
    """Training failed (diverged, NaN loss, ...)."""


class ExportError(MambahError, ValueError):
    """An export (Ficino) cannot be done as asked."""


class DistributedError(MambahError, RuntimeError):
    """A distributed run failed (scheduler unreachable, batch kept failing)."""


def first_line(err: BaseException) -> str:
    """The first non-empty line of an exception's message (its type name if it has none).

    The one home of "one line per error": DuckDB, decaylanguage and Keras errors carry
    multi-line messages, of which the first names the problem.
    """
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__
