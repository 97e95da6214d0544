"""Running a pipeline into an event store, batch by batch (serial; see :mod:`sim.core.distributed`)."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mambah.check import duckdb_error_line
from mambah.errors import ConfigError, StoreError, StoreExistsError
from mambah.store import BatchRecord, EventStore
from sim.core.configcheck import settings_difference
from sim.core.executors import Executor, SerialExecutor
from sim.core.pipeline import Batch, Pipeline, batch_seed, build_kernels, run_batch
from sim.core.resources import BLAS_THREADS, check_batch_memory, check_blas_threads
from sim.core.resources import blas_threads as limit_threads

__all__ = ("RunSummary", "iter_pending", "open_output", "pending_batches", "run")

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunSummary:
    """What a run did."""

    output: str
    batches_run: int
    batches_total: int
    events: int
    seconds: float

    @property
    def events_per_second(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else float("inf")


def _run_record(pipeline: Pipeline) -> str:
    return json.dumps({"events": pipeline.run.events, "batch_size": pipeline.run.batch_size, "seed": pipeline.run.seed})


def check_output(output: str | os.PathLike[str], *, resume: bool, overwrite: bool) -> None:
    """Refuse an existing output early (before any heavy work) unless resume/overwrite."""
    if resume and overwrite:
        raise ConfigError("choose one of resume and overwrite")
    p = Path(output)
    if str(output) != ":memory:" and p.is_dir() and not (p / "metadata.json").is_file():  # nor a dataset store
        raise StoreExistsError(
            f"output '{p}' is a directory that holds no store (no dataset metadata.json); it is never replaced: "
            f"choose another output, e.g. '{p / 'mambah.duckdb'}'"
        )
    if str(output) != ":memory:" and p.exists() and not (resume or overwrite):
        raise StoreExistsError(f"output '{p}' exists; pass --overwrite to replace it or --resume to finish it")


def open_output(pipeline: Pipeline, output: str | os.PathLike[str], *, resume: bool, overwrite: bool) -> EventStore:
    """Create (or reopen for resume) the output store with the run recorded in its metadata.

    A new store is created atomically with its pipeline and run settings
    (:meth:`~mambah.store.EventStore.create`), so a store on disk always knows
    the settings it was made with.  On resume the store is first read in full
    (:meth:`~mambah.store.EventStore.check`): a damaged store is refused, as is
    one without recorded settings, one recorded with other settings, and one
    holding a batch whose seed or size is not this run's.  Stray rows of
    batches not recorded as complete are removed (one transaction) before any
    batch runs.  Resuming an output that does not exist starts the run (a job
    re-submitted after its first batch failed, which leaves no store).

    Raises:
        StoreError: damaged store, or no recorded settings.
        ConfigError: the store was made with another pipeline, seed or sizes.
    """
    check_output(output, resume=resume, overwrite=overwrite)
    p = Path(output)
    if resume and p.exists():
        store = EventStore.open(p)
        try:
            _check_resumable(pipeline, store)
        except BaseException:
            store.close()
            raise
        return store
    return EventStore.create(output, overwrite=overwrite, metadata={"pipeline": pipeline.to_toml(), "run": _run_record(pipeline)})


def _check_resumable(pipeline: Pipeline, store: EventStore) -> None:
    p = store.path
    report = store.check()
    if report.problems:
        more = f" (and {len(report.problems) - 1} more problem(s))" if len(report.problems) > 1 else ""
        raise StoreError(f"cannot resume '{p}': {report.problems[0]}{more}; see 'mambah check {p}'")
    stored, run_rec = store.get_metadata("pipeline"), store.get_metadata("run")
    if stored is None or run_rec is None:
        raise StoreError(
            f"cannot resume '{p}': it does not record the pipeline and run settings it was made with; "
            "run with --overwrite to replace it"
        )
    if stored != pipeline.to_toml() or run_rec != _run_record(pipeline):
        raise ConfigError(
            f"cannot resume '{p}': it was made with another pipeline or run settings "
            f"({settings_difference(stored, pipeline.to_toml(), run_rec, _run_record(pipeline))}); resume it with its own "
            f"(mambah info --pipeline {p} > job.toml; mambah run --config job.toml --resume -o {p}), or use --overwrite or another -o"
        )
    run = pipeline.run
    for rec in store.batch_records():
        if rec.batch >= run.n_batches or rec.seed != batch_seed(run.seed, rec.batch) or rec.n_events != run.batch(rec.batch).n_events:
            raise ConfigError(
                f"cannot resume '{p}': batch {rec.batch} (seed {rec.seed}, {rec.n_events} events) is not a batch of this run "
                f"(seed {run.seed}, batch size {run.batch_size}); run with --overwrite to replace the store"
            )
    if report.stray_batches:
        n = store.delete_unrecorded()
        log.warning("removed %d stray row(s) of %d batch(es) not recorded as complete in '%s'", n, len(report.stray_batches), p)


def iter_pending(pipeline: Pipeline, done: set[int]) -> Iterator[Batch]:
    """Batches of the run not in ``done``, made one at a time (never the list of all batches)."""
    return (b for b in pipeline.run.batches() if b.batch not in done)


def pending_batches(pipeline: Pipeline, store: EventStore) -> list[Batch]:
    """Batches of the run not yet complete in ``store`` (a list: for runs of a manageable number of batches)."""
    return list(iter_pending(pipeline, set(store.batches())))


def run(
    pipeline: Pipeline,
    output: str | Path = "mambah.duckdb",
    *,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    store: EventStore | None = None,
    on_batch: Callable[[EventStore, Batch], None] | None = None,
    executor: Executor | None = None,
    blas_threads: int | None = BLAS_THREADS,
) -> RunSummary:
    """Run ``pipeline`` into ``output``, one transaction per batch, with the given executor.

    Each batch runs against an in-memory staging database
    (:meth:`~mambah.store.EventStore.staged_batch`) and is written to the store once,
    atomically with its ``batches`` row and the metadata its passes set.

    Every pass is built (decays parsed, models loaded) before the store is
    touched, so bad input never leaves a damaged store.  An interrupted run
    leaves complete batches only; ``resume=True`` finishes it, and the result
    equals an uninterrupted run with the same seed.

    Args:
        pipeline: passes and run settings (events, batch size, seed).
        output: DuckDB file to write (or ``":memory:"``).
        resume: finish an interrupted run in ``output``.
        overwrite: replace an existing ``output``.
        progress: show a progress bar (events/s).
        store: write into this open store instead of ``output``.
        on_batch: called as ``on_batch(store, batch)`` after each batch is
            committed (a :class:`~sim.core.executors.BatchHook`, e.g. ``ficino.hook.ExportHook``).
        executor: where the batches run: :class:`~sim.core.executors.SerialExecutor`
            (default: this process) or :class:`~sim.core.executors.DaskExecutor`.
        blas_threads: BLAS/OpenMP threads of this process's batch loop (default 1, measured
            faster on the reference machine: :mod:`sim.core.resources`); ``None``: the
            libraries' own (all cores).  Workers of a distributed run use one each.
    """
    if executor is not None and not isinstance(executor, SerialExecutor):
        if store is not None:
            raise ConfigError("an open store can only be written by the serial executor")
        return executor.run(pipeline, output, resume=resume, overwrite=overwrite, progress=progress,
                            on_batch=on_batch)  # type: ignore[arg-type]  # a plain callable is a BatchHook
    if store is None:
        check_output(output, resume=resume, overwrite=overwrite)
    check_batch_memory(pipeline)  # before anything heavy: a batch that cannot fit is refused in one line
    check_blas_threads(blas_threads)  # a bad count is refused before the store is touched
    kernels = build_kernels(pipeline)
    own = store is None
    created = own and str(output) != ":memory:" and not (resume and Path(output).exists())
    if store is None:
        store = open_output(pipeline, output, resume=resume, overwrite=overwrite)
    done = set(store.batches())
    kept = len(done)
    total = pipeline.run.n_batches
    t0 = time.perf_counter()
    n_done = n_batches = 0
    bar = _progress(pipeline.run.events, store.n_events(), progress)
    try:
        with limit_threads(blas_threads):
            for b in iter_pending(pipeline, done):
                # the passes run against an in-memory staging database; each table is written once
                with store.staged_batch(BatchRecord(b.batch, b.n_events, b.seed)) as con:
                    run_batch(kernels, con, b)
                n_batches += 1
                if on_batch is not None:
                    on_batch(store, b)
                n_done += b.n_events
                bar.update(b.n_events)
    except BaseException as err:
        bar.close()
        if own:
            store.close()
            if created and n_batches == 0:
                _remove_store(Path(output))  # a new output that holds no batch is not left behind
        _raise_store_failure(err, output, kept + n_batches)
        raise
    bar.close()
    if own:
        store.close()
    dt = time.perf_counter() - t0
    return RunSummary(str(output), n_batches, total, n_done, dt)


def _remove_store(path: Path) -> None:
    for f in (path, Path(f"{path}.wal")):
        with contextlib.suppress(FileNotFoundError):
            f.unlink()


def _raise_store_failure(err: BaseException, output: str | os.PathLike[str], kept: int) -> None:
    """A DuckDB or OS error of the store as one line (disk full: how to go on); other errors pass."""
    import duckdb

    if isinstance(err, duckdb.InterruptException) or (isinstance(err, RuntimeError) and str(err).startswith("Query interrupted")):
        raise KeyboardInterrupt from None  # a signal while DuckDB ran a statement
    text = str(err).lower()
    full = (isinstance(err, OSError) and err.errno == 28) or "no space left on device" in text
    if full:
        raise StoreError(
            f"no space left on device writing '{output}': {kept} complete batch(es) kept; free space and run --resume"
        ) from None
    if isinstance(err, duckdb.Error):
        raise StoreError(f"{duckdb_error_line(err, os.fspath(output))}; {kept} complete batch(es) kept") from None


def _progress(total: int, initial: int, enabled: bool) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, unit="evt", unit_scale=True, disable=not enabled, dynamic_ncols=True, desc="mambah")
