"""Executors of a run: where the batches of :func:`sim.core.runner.run` are computed.

The pattern of coffea's executors: one ``run(pipeline, output, executor=...)``, the
executor deciding where batches run — :class:`SerialExecutor` in this process (the
default), :class:`DaskExecutor` on a local or an existing Dask cluster
(:mod:`sim.core.distributed`).  Batches are values, so every executor gives the same
store for the same seed.

A run hook (e.g. ``ficino.hook.ExportHook``, the ``--export`` of ``mambah run``)
implements :class:`BatchHook`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from mambah.errors import ConfigError

if TYPE_CHECKING:
    from mambah.store import EventStore
    from sim.core.pipeline import Batch, Pipeline
    from sim.core.runner import RunSummary

__all__ = ("BatchHook", "Executor", "SerialExecutor", "DaskExecutor")


@runtime_checkable
class BatchHook(Protocol):
    """Called as ``hook(store, batch)`` after each batch of a run is committed."""

    def __call__(self, store: EventStore, batch: Batch) -> None: ...


class Executor(Protocol):
    """Runs the pending batches of a pipeline into an output store."""

    def run(
        self,
        pipeline: Pipeline,
        output: str | os.PathLike[str],
        *,
        resume: bool,
        overwrite: bool,
        progress: bool,
        on_batch: BatchHook | None,
    ) -> RunSummary: ...


@dataclass(frozen=True)
class SerialExecutor:
    """Every batch in this process, one transaction each (the default).

    Args:
        threads: batches computed at once in threads of this process, written in order
            (``None``: :func:`sim.core.runner.batch_threads`' default).
    """

    threads: int | None = None

    def run(
        self,
        pipeline: Pipeline,
        output: str | os.PathLike[str],
        *,
        resume: bool = False,
        overwrite: bool = False,
        progress: bool = True,
        on_batch: BatchHook | None = None,
    ) -> RunSummary:
        from sim.core.runner import run

        return run(pipeline, Path(output) if str(output) != ":memory:" else ":memory:", resume=resume,
                   overwrite=overwrite, progress=progress, on_batch=on_batch, threads=self.threads)


@dataclass(frozen=True)
class DaskExecutor:
    """Batches on a Dask cluster: a local one of ``workers`` processes, or an existing one at ``scheduler``.

    Args:
        workers: processes of a local cluster (``mambah run --workers N``).
        scheduler: address (``tcp://host:8786``) or a ``distributed.Client`` of an existing cluster.
        retries: re-runs of a failing batch.
        threads_per_worker: threads of each worker (numpy/TensorFlow pools set to it).
        dataset: write the output as a dataset store (a directory the workers write into
            directly, :mod:`mambah.dataset`) instead of merging into one DuckDB file.
    """

    workers: int | None = None
    scheduler: Any = None
    retries: int = 2
    threads_per_worker: int = 1
    dataset: bool = False

    def __post_init__(self) -> None:
        if self.workers is not None and (isinstance(self.workers, bool) or int(self.workers) < 1):
            raise ConfigError(f"DaskExecutor.workers must be a positive integer, got {self.workers!r}")
        if int(self.retries) < 0 or int(self.threads_per_worker) < 1:
            raise ConfigError("DaskExecutor: retries must be >= 0 and threads_per_worker >= 1")

    def run(
        self,
        pipeline: Pipeline,
        output: str | os.PathLike[str],
        *,
        resume: bool = False,
        overwrite: bool = False,
        progress: bool = True,
        on_batch: BatchHook | None = None,
    ) -> RunSummary:
        from sim.core.distributed import run_distributed

        return run_distributed(
            pipeline, output, workers=self.workers, scheduler=self.scheduler, retries=self.retries,
            threads_per_worker=self.threads_per_worker, resume=resume, overwrite=overwrite, progress=progress,
            on_batch=on_batch, dataset=self.dataset,
        )
