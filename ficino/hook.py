"""Ntuple export as the last step of a run: ``mambah run --export out.root``.

This is deliberately *not* a pass kind.  A pass kernel runs inside the batch's
transaction, before the commit, and passes keep no state between batches; a
ROOT file being written is state, and a batch that rolls back must not reach
the ntuple.  So the export is a *run hook*: :meth:`Export.open` returns an
:class:`ExportHook` that :func:`sim.core.runner.run` calls with ``on_batch`` after
each committed batch, appending it through the streaming
:class:`ficino.NtupleWriter`.

:meth:`ExportHook.finish` appends the complete batches that the hook has not
seen (those of a resumed run, or of a distributed run, which has no per-batch
callback) in batch order, then renames the file into place;
:meth:`ExportHook.abort` deletes the partial file.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from mambah.errors import ExportError
from mambah.store import EventStore

if TYPE_CHECKING:
    from ficino import ExportSummary, NtupleWriter
    from sim.core.pipeline import Batch

__all__ = ("Export", "ExportHook")

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Export:
    """Configuration of the run-time export (arguments of :func:`ficino.export`).

    Args:
        path: output ntuple (``.root``, ``.parquet``, ``.csv``).
        decay: descriptor; ``None``: the run's generator decay.
        aliases: one per particle, or a mapping default alias -> alias.
        variables: variable or column names; ``None``: all.
        tree: TTree name.
        fmt: ``root``, ``parquet``, ``csv`` (default from the suffix).
        cut: DuckDB SQL condition on the candidate columns.
        reconstructed_only: only fully reconstructed candidates.
        overwrite: replace an existing output.
        compression: ``LZ4`` (default), ``ZLIB``, ``LZMA``, ``ZSTD``, ``NONE``.
    """

    path: str
    decay: str | None = None
    aliases: Sequence[str] | Mapping[str, str] | None = None
    variables: Sequence[str] | None = None
    tree: str = "DecayTree"
    fmt: str | None = None
    cut: str | None = None
    reconstructed_only: bool = True
    overwrite: bool = False
    compression: str | None = None

    def open(self) -> ExportHook:
        """Check the options (raises :class:`~mambah.errors.ExportError`) and return the hook."""
        from ficino import NtupleWriter

        writer = NtupleWriter(
            self.path, self.decay, self.aliases, self.variables, self.tree, self.fmt, self.cut,
            self.reconstructed_only, self.overwrite, compression=self.compression,
        )
        return ExportHook(writer)


class ExportHook:
    """``on_batch`` callback of :func:`sim.core.runner.run` that streams committed batches into an ntuple."""

    def __init__(self, writer: NtupleWriter) -> None:
        self.writer = writer
        self.done: set[int] = set()

    def __call__(self, store: EventStore, batch: Batch) -> None:
        """Append every complete batch of ``store`` not written yet (``batch`` and, on resume, earlier ones)."""
        for b in store.batches():
            if b not in self.done:
                self.writer.write_batch(store, b)
                self.done.add(b)

    def finish(self, output: str | Path) -> ExportSummary:
        """Append what is missing from the store at ``output``, close, and return the summary."""
        try:
            if str(output) != ":memory:" and Path(output).exists():
                with EventStore.open(output, read_only=True) as store:
                    self(store, None)  # type: ignore[arg-type]
            return self.writer.close()
        except ExportError as err:  # the run itself is complete: say so, the store is kept
            self.abort()
            raise ExportError(f"{err}; the store '{output}' is complete (export it with 'mambah export {output} OUT')") from err
        except BaseException:
            self.abort()
            raise

    def abort(self) -> None:
        """Delete the partial ntuple."""
        self.writer.abort()

    def __repr__(self) -> str:
        return f"ExportHook({str(self.writer.path)!r}, batches={sorted(self.done)})"
