"""Running a pipeline into an event store, batch by batch (serial; see :mod:`sim.core.distributed`)."""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Generator, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mambah.check import duckdb_error_line
from mambah.errors import ConfigError, StoreError, StoreExistsError
from mambah.store import BatchRecord, EventStore, staged_metadata, staged_tables, staging_connection
from sim.core.configcheck import settings_difference
from sim.core.executors import Executor, SerialExecutor
from sim.core.pipeline import Batch, Pass, Pipeline, batch_seed, build_kernels, run_batch
from sim.core.producer import wants_producer
from sim.core.resources import (
    BLAS_THREADS,
    USABLE_FRACTION,
    batch_memory_bytes,
    check_batch_memory,
    check_blas_threads,
    machine_memory_bytes,
    process_cpus,
)
from sim.core.resources import blas_threads as limit_threads

__all__ = ("BATCH_THREADS", "RunSummary", "batch_threads", "iter_pending", "open_output", "pending_batches", "run")

#: batches a serial run computes side by side in one process, by default (at most the process's
#: CPUs, what fits in memory and the run's batches: :func:`batch_threads`).  On the 2-core
#: reference machine (2 December 2026) two side by side ran ``mambah run``'s 300 000-event default
#: job in 13.9-14.3 s against 19.0-20.5 s one at a time, with the same CPU seconds and the same
#: tables (benchmarks/README.md).
BATCH_THREADS = 2

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
    threads: int | None = None,
) -> RunSummary:
    """Run ``pipeline`` into ``output``, one transaction per batch, with the given executor.

    Each batch runs against an in-memory staging database
    (:func:`~mambah.store.staging_connection`) and is written to the store once,
    atomically with its ``batches`` row and the metadata its passes set.  Up to
    ``threads`` batches are computed side by side in threads of this process
    (:func:`batch_threads`); they are written in batch order by the calling thread,
    so the store, the hooks' calls and an interruption's outcome are those of one
    batch after the other.

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
        threads: batches computed at once in this process (``None``: :func:`batch_threads`'
            default).  The tables do not depend on it.

    Raises:
        ConfigError: ``threads`` is not a positive integer, or above 1 for a pipeline
            with a pass that runs one batch at a time (e.g. ``pythia``).
    """
    if executor is not None and not isinstance(executor, SerialExecutor):
        if store is not None:
            raise ConfigError("an open store can only be written by the serial executor")
        if threads is not None:
            raise ConfigError("threads is for a run in this process; a distributed run's workers compute one batch each at a time")
        return executor.run(pipeline, output, resume=resume, overwrite=overwrite, progress=progress,
                            on_batch=on_batch)  # type: ignore[arg-type]  # a plain callable is a BatchHook
    if isinstance(executor, SerialExecutor) and executor.threads is not None:  # the executor's count is this run's
        if threads is not None and threads != executor.threads:
            raise ConfigError(f"threads={threads} and SerialExecutor(threads={executor.threads}) disagree: give one")
        threads = executor.threads
    if store is None:
        check_output(output, resume=resume, overwrite=overwrite)
    check_batch_memory(pipeline)  # before anything heavy: a batch that cannot fit is refused in one line
    if threads is not None and threads > 1:
        check_batch_memory(pipeline, processes=threads + 1)  # asked for: the batches computed and the one written
    check_blas_threads(blas_threads)  # a bad count is refused before the store is touched
    n_threads = batch_threads(pipeline, threads)
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
        producer = wants_producer(pipeline.passes, total - len(done), process_cpus()) if n_threads == 1 else None
        if producer is not None and _batches_that_fit(pipeline) < 2:
            producer = None  # the child's batch and this process's would not both fit
        batches = _staged_batches(kernels, iter_pending(pipeline, done), n_threads, producer, blas_threads)
        with limit_threads(blas_threads), contextlib.closing(batches) as staged:
            for b, tables, meta in staged:
                store.write_batch(BatchRecord(b.batch, b.n_events, b.seed), tables, meta)  # the batch's one transaction
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


def batch_threads(pipeline: Pipeline, threads: int | None = None) -> int:
    """How many batches a serial run of ``pipeline`` computes at once in this process.

    ``None`` (the default): :data:`BATCH_THREADS`, at most the CPUs this process may run
    on and as many as fit in memory (:func:`~sim.core.resources.check_batch_memory`), and
    1 when a pass of the pipeline runs one batch at a time (:attr:`Pass.concurrent
    <sim.core.pipeline.Pass.concurrent>` false: a Pythia instance, a HepMC reader).  A
    count given is honoured or refused, never lowered.

    Raises:
        ConfigError: ``threads`` is not a positive integer, or is above 1 while a pass
            cannot run concurrently (the message names it and the alternative, ``--workers``).
    """
    serial = [p for p in pipeline.passes if not type(p).concurrent]
    if threads is not None:
        if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
            raise ConfigError(f"threads must be a positive integer, got {threads!r}")
        if threads > 1 and serial:
            names = ", ".join(f"{p.name!r} ({p.kind})" for p in serial)
            raise ConfigError(f"threads={threads}: pass {names} runs one batch at a time in a process; "
                              "use threads=1, or --workers N for batches in parallel processes")
        return threads
    if serial:
        return 1
    n = max(1, min(BATCH_THREADS, process_cpus(), pipeline.run.n_batches))
    return max(1, min(n, _batches_that_fit(pipeline) - 1))  # the batches computed and the one being written


def _batches_that_fit(pipeline: Pipeline) -> int:
    """How many of the pipeline's batches fit in this machine's usable memory at once (the estimate of
    :func:`~sim.core.resources.batch_memory_bytes`)."""
    return int(USABLE_FRACTION * machine_memory_bytes() // max(batch_memory_bytes(pipeline), 1))


def _stage(kernels: list[Any], batch: Batch, stop: threading.Event,
           prefetched: dict[str, Any] | None = None) -> tuple[dict[str, Any], dict[str, str]]:
    """Run ``batch`` against a fresh in-memory staging database; its tables and metadata rows."""
    with staging_connection() as con:
        run_batch(kernels, con, batch, cancelled=stop.is_set, prefetched=prefetched)
        return staged_tables(con), staged_metadata(con)


def _staged_batches(kernels: list[Any], batches: Iterable[Batch], threads: int, producer: Pass | None = None,
                    blas_threads: int | None = BLAS_THREADS) -> Generator[tuple[Batch, dict[str, Any], dict[str, str]], None, None]:
    """``(batch, tables, metadata)`` of each batch, in order; up to ``threads`` computed at once.

    With ``producer`` (one batch at a time: the first pass, :func:`sim.core.producer.wants_producer`)
    a child process makes that pass's product of the next batch while this one runs the passes
    (:func:`sim.core.producer.prefetch_products`).

    ``threads`` batches are in flight while the caller writes the one yielded, from the
    first on: a run's one-off work (imports, numba's cache, a graph's tracing under
    ``modelio``'s lock) is safe to meet twice at once, and the caches the kernels fill on
    first use are assigned whole (running the first batch alone cost the 100 000-event
    default job 7.1 s against 6.3-6.7 s, 2 December 2026).  Closing the iterator (the caller's error or interrupt)
    stops the batches in flight at their next pass and waits for them.
    """
    it = iter(batches)
    stop = threading.Event()
    if threads == 1 and producer is not None:
        from sim.core.producer import prefetch_products

        with contextlib.closing(prefetch_products(producer, it, blas_threads)) as made:
            for b, product in made:
                yield (b, *_stage(kernels, b, stop, None if product is None else {producer.name: product}))
        return
    if threads == 1:
        for b in it:
            yield (b, *_stage(kernels, b, stop))
        return
    pool = ThreadPoolExecutor(threads, thread_name_prefix="mambah-batch")
    flight: deque[tuple[Batch, Future[tuple[dict[str, Any], dict[str, str]]]]] = deque()
    try:
        for b in itertools.islice(it, threads):
            flight.append((b, pool.submit(_stage, kernels, b, stop)))
        while flight:
            b, fut = flight.popleft()
            tables, meta = fut.result()
            nxt = next(it, None)
            if nxt is not None:
                flight.append((nxt, pool.submit(_stage, kernels, nxt, stop)))
            yield b, tables, meta
    finally:
        stop.set()
        pool.shutdown(wait=True, cancel_futures=True)


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
