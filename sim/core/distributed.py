"""Running a pipeline on a ``dask.distributed`` cluster, batch by batch.

Batches are values (:class:`~sim.core.pipeline.Batch`), so any worker can run any
batch.  Each task runs one batch into an in-memory DuckDB store on its worker
and writes the batch's tables as Parquet files into a *spool* directory
(``<output>.parts/batch=<n>/<table>.parquet`` plus ``batch.json``; written to a
temporary name and renamed, so a part is complete or absent).  The driver
merges each finished part into the output store in one transaction
(:meth:`~mambah.store.EventStore.write_batch`) as results arrive, then deletes
the part.  DuckDB thus only ever has one writer per file.

Guarantees:

* the output equals the serial run with the same seed (seeds derive from the
  run seed and the batch number only);
* no batch is written twice: the driver skips a part whose batch is already in
  the store (the ``batches`` table guards it), e.g. a part re-delivered after a
  worker was lost or one merged just before a crash;
* an interrupted run resumes (``resume=True``): parts finished but not merged
  are merged first, only missing batches are run;
* a worker process that dies mid-batch is replaced and its batch rescheduled by
  Dask; a batch that raises is retried ``retries`` times, then the run stops
  with a :class:`~mambah.errors.DistributedError` naming the batch and the
  worker's error.  Batches already merged are kept.

Clusters: ``workers=N`` starts a :class:`distributed.LocalCluster` of ``N``
processes on this machine.  ``scheduler`` takes the address of a running
scheduler (``tcp://host:8786``), a :class:`distributed.Client` or a cluster
object with a ``scheduler_address`` (e.g. ``dask_jobqueue.SLURMCluster`` or
``dask_kubernetes.operator.KubeCluster``); all take the same code path.  The
spool directory must then be on storage that the workers and the driver share.

Dask is an optional dependency (``pip install mambah[dask]``) imported only
inside the functions of this module.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import signal
import sys
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mambah.errors import ConfigError, DistributedError, MambahError, StoreError
from mambah.quiet import quiet_if_inherited
from mambah.schema import DATA_TABLES
from mambah.store import BatchRecord, EventStore, query_arrow, staged_metadata, staging_connection
from sim.core.configcheck import settings_difference
from sim.core.pipeline import Batch, Pipeline, build_kernels, run_batch
from sim.core.resources import check_batch_memory, limit_blas_threads
from sim.core.runner import (
    RunSummary,
    _progress,
    _raise_store_failure,
    _remove_store,
    _run_record,
    check_output,
    iter_pending,
    open_output,
)

__all__ = ("run_distributed", "DistributedSummary", "run_dataset_batch", "run_part", "spool_dir", "configure_worker", "local_cluster", "MambahWorkerPlugin")  # noqa: F822 - the plugin is made lazily by __getattr__

log = logging.getLogger(__name__)

#: ``on_batch(store, batch)``: called after each batch is merged.
OnBatch = Callable[[EventStore, Batch], None]

#: Seconds to wait for a scheduler given by address before giving up.
CONNECT_TIMEOUT_S = 5.0

_PART_PREFIX = "batch="
_TMP_PREFIX = ".tmp-"


@dataclass(frozen=True)
class DistributedSummary(RunSummary):
    """What a distributed run did; adds the number of workers and the merge cost.

    Attributes:
        workers: number of Dask workers the run saw at its start.
        batches_merged: parts merged into the output (resumed parts included).
        merge_seconds: wall time the driver spent merging parts (read back + insert + delete) [s].
    """

    workers: int = 0
    batches_merged: int = 0
    merge_seconds: float = 0.0

    @property
    def merge_seconds_per_batch(self) -> float:
        return self.merge_seconds / self.batches_merged if self.batches_merged else 0.0


def _require_dask() -> Any:
    try:
        import distributed
    except ImportError as err:
        raise MambahError(
            f"distributed runs need Dask ({err}); install it with: pip install 'mambah[dask]'"
        ) from None
    return distributed


def spool_dir(output: str | os.PathLike[str]) -> Path:
    """The default spool directory of ``output``: ``<output>.parts`` next to it."""
    p = Path(output)
    return p.with_name(p.name + ".parts")


def _digest(pipeline: Pipeline) -> str:
    return hashlib.sha256(pipeline.to_toml().encode()).hexdigest()[:16]


# ---------------------------------------------------------------------------- worker side
_CONFIGURED: dict[str, int] = {}
_THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS")


def configure_worker(threads: int = 1) -> dict[str, str]:
    """Limit this process's TensorFlow, OpenMP and BLAS pools to ``threads`` threads (idempotent).

    Called on every worker (by :class:`MambahWorkerPlugin` and before each
    batch), so ``N`` workers on ``N`` cores do not oversubscribe.  Sets
    ``TF_NUM_INTRAOP_THREADS``/``TF_NUM_INTEROP_THREADS`` (read by TensorFlow
    when its runtime starts, i.e. when the first pass builds) and, if
    TensorFlow is imported already, also ``tf.config.threading``; TensorFlow
    is not imported here.  A runtime that already started keeps its pools
    (logged as a warning).  numpy's BLAS/OpenMP pools are limited through
    :func:`sim.core.resources.limit_blas_threads`, which acts even when they are loaded.

    Returns:
        The environment variables set.
    """
    quiet_if_inherited()  # the driver ran mambah.quiet: hold this worker's TensorFlow start-up lines back too
    env = {var: str(threads) for var in _THREAD_VARS}
    if _CONFIGURED.get("threads") == threads:
        return env
    os.environ.update(env)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    limit_blas_threads(threads)  # numpy's BLAS may be loaded already (a worker of an existing cluster)
    tf = sys.modules.get("tensorflow")
    if tf is not None:
        try:
            tf.config.threading.set_intra_op_parallelism_threads(threads)
            tf.config.threading.set_inter_op_parallelism_threads(threads)
        except (RuntimeError, AttributeError) as err:
            log.warning("cannot limit TensorFlow threads on pid %d (runtime already started): %s", os.getpid(), err)
    _CONFIGURED["threads"] = threads
    for var in UNSET_WORKER_ENV:
        if var in os.environ:  # a worker of an existing cluster, started with Dask's default
            log.warning("worker pid %d runs with %s=%s (Dask's distributed.nanny.pre-spawn-environ): batches cost "
                        "~40 %% more CPU; start the workers with that key set to null (docs/production.md)",
                        os.getpid(), var, os.environ[var])
    return env


_PLUGIN: list[type] = []


def _plugin_class() -> type:
    """:class:`MambahWorkerPlugin`, made on first use (it subclasses Dask's ``WorkerPlugin``)."""
    if not _PLUGIN:
        from distributed.diagnostics.plugin import WorkerPlugin

        class MambahWorkerPlugin(WorkerPlugin):  # type: ignore[misc]
            """Dask worker plugin: :func:`configure_worker` on every worker, present and future."""

            name = "mambah-configure"
            idempotent = True

            def __init__(self, threads: int = 1) -> None:
                self.threads = threads

            def setup(self, worker: Any) -> None:
                configure_worker(self.threads)

        MambahWorkerPlugin.__module__ = __name__
        MambahWorkerPlugin.__qualname__ = "MambahWorkerPlugin"
        _PLUGIN.append(MambahWorkerPlugin)
    return _PLUGIN[0]


def __getattr__(name: str) -> Any:
    # ``MambahWorkerPlugin`` is created lazily so that importing this module never imports Dask;
    # pickles refer to it as ``sim.core.distributed.MambahWorkerPlugin``.
    if name == "MambahWorkerPlugin":
        return _plugin_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _worker_address() -> str:
    try:
        from distributed import get_worker

        return str(get_worker().address)
    except (ImportError, ValueError):
        return f"pid {os.getpid()}"


def run_part(pipeline: Pipeline, batch: Batch, spool: str | os.PathLike[str], *, threads: int = 1) -> str:
    """Run one batch into an in-memory store and write it as a part in ``spool`` (a worker task).

    Kernels come from the per-process cache of :func:`sim.core.pipeline.build_kernels`
    (built once per worker process, not once per batch).

    Args:
        pipeline: the pipeline (its passes; the run settings only for the digest).
        batch: the batch to run.
        spool: directory of the parts (shared with the driver).
        threads: threads per worker for TensorFlow / DuckDB.

    Returns:
        Path of the part directory ``spool/batch=<n>`` (complete: written under
        a temporary name and renamed).  If the part exists already (a re-run
        of a batch whose part was delivered), the existing part is kept.

    Raises:
        DistributedError: the batch failed; names the batch, the worker and the error.
    """
    import pyarrow.parquet as pq

    try:
        configure_worker(threads)
        kernels = build_kernels(pipeline)
        final = Path(spool) / f"{_PART_PREFIX}{batch.batch}"
        if final.is_dir():
            return str(final)
        with staging_connection(threads) as con:
            run_batch(kernels, con, batch)
            tmp = Path(spool) / f"{_TMP_PREFIX}{_PART_PREFIX}{batch.batch}-{uuid.uuid4().hex[:8]}"
            tmp.mkdir(parents=True)
            try:
                for name in DATA_TABLES:
                    pq.write_table(query_arrow(con, f"SELECT * FROM {name}"), tmp / f"{name}.parquet")  # unsorted: cheaper
                info = {"batch": batch.batch, "n_events": batch.n_events, "seed": batch.seed, "pipeline": _digest(pipeline),
                        "metadata": staged_metadata(con)}  # e.g. the generator's, set by its pass
                (tmp / "batch.json").write_text(json.dumps(info))
                try:
                    tmp.rename(final)
                except OSError:
                    if not final.is_dir():
                        raise
                    log.info("part of batch %d exists already; keeping it", batch.batch)
            finally:
                if tmp.exists():
                    shutil.rmtree(tmp, ignore_errors=True)
        return str(final)
    except Exception as err:
        # keep the worker's error as one picklable line (the traceback stays in the worker log)
        log.exception("batch %d failed", batch.batch)
        first = str(err).strip().splitlines()[0] if str(err).strip() else ""
        raise DistributedError(
            f"batch {batch.batch} failed on worker {_worker_address()}: {type(err).__name__}: {first}"
        ) from None


def run_dataset_batch(pipeline: Pipeline, batch: Batch, root: str | os.PathLike[str], *, threads: int = 1) -> int:
    """Run one batch and write it into the dataset store ``root`` as ``batch=<n>/`` (a worker task).

    The batch runs against an in-memory staging database and its tables are
    written as Parquet files under a temporary name, renamed into place at the
    end (:func:`mambah.dataset.write_dataset_batch`): the batch directory is
    the completion record, nothing comes back to the driver but the count.

    Returns:
        The batch's number of events.

    Raises:
        DistributedError: the batch failed; names the batch, the worker and the error.
    """
    from mambah.dataset import BATCH_PREFIX, write_dataset_batch

    try:
        configure_worker(threads)
        kernels = build_kernels(pipeline)
        if (Path(root) / f"{BATCH_PREFIX}{batch.batch}").is_dir():
            return batch.n_events  # a re-run of a batch whose directory was written: keep it
        with staging_connection(threads) as con:
            run_batch(kernels, con, batch)
            write_dataset_batch(root, BatchRecord(batch.batch, batch.n_events, batch.seed), con,
                                metadata=staged_metadata(con), extra={"pipeline": _digest(pipeline)})
        return batch.n_events
    except Exception as err:
        log.exception("batch %d failed", batch.batch)
        first = str(err).strip().splitlines()[0] if str(err).strip() else ""
        raise DistributedError(
            f"batch {batch.batch} failed on worker {_worker_address()}: {type(err).__name__}: {first}"
        ) from None


# ---------------------------------------------------------------------------- driver side
def _open_dataset_output(pipeline: Pipeline, root: Path, *, resume: bool, overwrite: bool) -> set[int]:
    """Create the dataset store ``root`` (or check it for resume); returns the batches complete in it.

    Raises:
        ConfigError: resume of a dataset made with another pipeline, seed or sizes.
        StoreError, StoreExistsError: see :func:`mambah.dataset.create_dataset`.
    """
    from mambah.dataset import clear_incomplete, create_dataset, dataset_batches, dataset_problems, read_dataset_metadata

    meta = {"pipeline": pipeline.to_toml(), "run": _run_record(pipeline)}
    if resume and root.exists():
        stored = read_dataset_metadata(root)
        if stored.get("pipeline") != meta["pipeline"] or stored.get("run") != meta["run"]:
            raise ConfigError(
                f"cannot resume '{root}': it was made with another pipeline or run settings "
                f"({settings_difference(stored.get('pipeline', ''), meta['pipeline'], stored.get('run'), meta['run'])}); resume it "
                f"with its own (mambah info --pipeline {root} > job.toml; mambah run --config job.toml --resume ...), "
                "or use --overwrite or another -o"
            )
        n = clear_incomplete(root)
        if n:
            log.warning("removed %d incomplete batch(es) of '%s' (written when the run stopped)", n, root)
        damaged = dataset_problems(root)  # such a batch directory would count as done without its rows
        if damaged:
            raise StoreError(f"cannot resume '{root}': {damaged[0]}; see 'mambah check {root}'")
        expected = _RunBatches(pipeline)
        done = dataset_batches(root)
        for b, rec in done.items():
            want = expected.get(b)
            if want is None or want.seed != int(rec.get("seed", -1)) or want.n_events != int(rec.get("n_events", -1)):
                raise ConfigError(f"cannot resume '{root}': batch {b} is not a batch of this run; run with --overwrite to replace it")
        return set(done)
    create_dataset(root, meta, overwrite=overwrite)
    return set()


def _register_plugin(client: Any, threads: int) -> None:
    """Register the worker plugin that limits each task's threads (a warning where it cannot be)."""
    plugin = _plugin_class()(threads)
    try:
        client.register_plugin(plugin, name=plugin.name)
    except Exception as err:
        log.warning("cannot register the Mambah worker plugin (%s: %s); threads are limited per task", type(err).__name__, err)


def _windowed(
    client: Any,
    task: Callable[..., Any],
    pipeline: Pipeline,
    target: str,
    batches: Iterable[Batch],
    *,
    prefix: str,
    threads: int,
    retries: int,
    window: int,
    on_result: Callable[[Batch, Any], None],
) -> int:
    """Run ``task`` on each batch on the cluster with at most ``window`` in flight.

    ``task(pipeline, b, target, threads=threads)`` is submitted per batch (Dask key
    ``<prefix>-<batch>-<token>``, ``retries`` retries); ``on_result(b, result)`` runs
    in the driver as each one finishes, in completion order. A failed batch raises
    :class:`DistributedError` (through :func:`_failure`) and cancels what is in
    flight; so does any exception of ``on_result`` or an interrupt.

    Returns:
        The number of batches submitted.
    """
    import distributed

    _register_plugin(client, threads)
    token = uuid.uuid4().hex[:8]
    pending = iter(batches)
    futures: dict[Any, Batch] = {}

    def submit_next() -> Any:
        b = next(pending, None)
        if b is None:
            return None
        fut = client.submit(task, pipeline, b, target, threads=threads, key=f"{prefix}-{b.batch}-{token}",
                            retries=retries, pure=False)
        futures[fut] = b
        return fut

    first = [f for f in (submit_next() for _ in range(window)) if f is not None]
    n_submitted = len(first)
    if not first:
        return 0
    try:
        queue = distributed.as_completed(first, loop=client.loop)
        for fut in queue:
            b = futures.pop(fut)
            if fut.status != "finished":
                raise _failure(fut, b, retries)
            on_result(b, fut.result())
            fut.release()
            nxt = submit_next()
            if nxt is not None:
                n_submitted += 1
                queue.add(nxt)
    except BaseException:
        client.cancel(list(futures))
        raise
    return n_submitted


def _run_into_dataset(
    client: Any, pipeline: Pipeline, root: Path, done: set[int], retries: int, threads: int, bar: Any, window: int,
) -> tuple[int, int]:
    """Submit the batches not in ``done``, at most ``window`` in flight; returns (batches run, events)."""
    counts = [0, 0]

    def finished(b: Batch, result: Any) -> None:
        n = int(result)
        done.add(b.batch)
        counts[0] += 1
        counts[1] += n
        bar.update(n)

    _windowed(client, run_dataset_batch, pipeline, str(root), iter_pending(pipeline, set(done)),
              prefix="mambah-dataset", threads=threads, retries=retries, window=window, on_result=finished)
    return counts[0], counts[1]


def _read_part(part: Path) -> tuple[BatchRecord, dict[str, Any], str, dict[str, str]]:
    import pyarrow.parquet as pq

    info = json.loads((part / "batch.json").read_text())
    tables = {name: pq.read_table(part / f"{name}.parquet") for name in DATA_TABLES}
    meta = {str(k): str(v) for k, v in (info.get("metadata") or {}).items()}
    return BatchRecord(info["batch"], info["n_events"], info["seed"]), tables, str(info.get("pipeline", "")), meta


def _merge_part(
    store: EventStore, part: Path, expected: _RunBatches, digest: str, done: set[int], on_batch: OnBatch | None = None
) -> int:
    """Merge ``part`` into ``store`` (one transaction) and delete it.

    Returns the number of events merged (0 if the part was skipped: batch
    already in the store, not part of this run, or made by another pipeline).
    """
    n = 0
    try:
        record, tables, part_digest, meta = _read_part(part)
    except (OSError, ValueError, KeyError) as err:
        log.warning("discarding unreadable part %s: %s", part, err)
        shutil.rmtree(part, ignore_errors=True)
        return 0
    want = expected.get(record.batch)
    if record.batch in done:
        log.info("batch %d is already in the store; skipping its re-delivered part", record.batch)
    elif want is None or want.seed != record.seed or want.n_events != record.n_events or part_digest != digest:
        log.warning("discarding part %s: not a batch of this run (other seed, size or pipeline)", part)
    else:
        store.write_batch(record, tables, meta)
        done.add(record.batch)
        n = record.n_events
        if on_batch is not None:
            on_batch(store, want)
    shutil.rmtree(part, ignore_errors=True)
    return n


def _finished_parts(spool: Path) -> list[Path]:
    if not spool.is_dir():
        return []
    return sorted(p for p in spool.iterdir() if p.is_dir() and p.name.startswith(_PART_PREFIX))


def _clear_tmp(spool: Path) -> None:
    for p in spool.glob(f"{_TMP_PREFIX}*"):
        shutil.rmtree(p, ignore_errors=True)


@contextlib.contextmanager
def _sigint_ignored() -> Any:
    """SIGINT ignored while child processes are started (they inherit it); restored after."""
    try:
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


#: environment variables Dask's nanny sets before it spawns a worker that Mambah's workers must not get
#: (``distributed.nanny.pre-spawn-environ``): ``MALLOC_TRIM_THRESHOLD_=65536`` fixes glibc's mmap
#: threshold, so every large numpy temporary of a pass is a fresh mmap with its page faults: a
#: default-job batch of 50 000 events took 8.2-8.8 user + 4.2-4.6 sys CPU s per 100 000 events
#: with it against 8.3-8.5 + 0.7-1.0 without (7-8x the page faults), 1 December 2026
UNSET_WORKER_ENV = ("MALLOC_TRIM_THRESHOLD_",)
#: Dask's statistical profiler in the workers of :func:`local_cluster` (it samples every worker
#: thread's stack each 10 ms, taking the GIL from the batch)
WORKER_PROFILER = False


def local_cluster(workers: int, threads_per_worker: int = 1, env: dict[str, str] | None = None) -> Any:
    """A :class:`distributed.LocalCluster` of ``workers`` processes as Mambah runs them.

    One thread per worker, no dashboard on a fixed port, Dask's logs at ERROR, the
    variables of :data:`UNSET_WORKER_ENV` not set in the workers and Dask's worker
    profiler off (:data:`WORKER_PROFILER`), for this cluster only; the caller's Dask
    configuration is otherwise kept.

    Args:
        workers: number of worker processes.
        threads_per_worker: threads of each worker.
        env: environment of the worker processes (e.g. thread-pool sizes).
    """
    import dask
    import distributed

    settings: dict[str, Any] = {f"distributed.nanny.pre-spawn-environ.{var}": None for var in UNSET_WORKER_ENV}
    settings["distributed.worker.profile.enabled"] = WORKER_PROFILER
    # a nanny made earlier in this process (a plain LocalCluster) leaves its pre-spawn variables in
    # os.environ, which the workers would inherit: they are held back while this cluster spawns
    held = {var: os.environ.pop(var) for var in UNSET_WORKER_ENV if var in os.environ}
    try:
        with dask.config.set(settings):
            return distributed.LocalCluster(
                n_workers=workers,
                threads_per_worker=threads_per_worker,
                processes=True,
                dashboard_address=":0",  # a free port: 8787 may be taken (a warning, an error under -W error)
                silence_logs=logging.ERROR,
                env=dict(env or {}),
            )
    finally:
        os.environ.update(held)


@contextlib.contextmanager
def _client(workers: int | None, scheduler: Any, threads_per_worker: int) -> Any:
    """A Dask client on a new LocalCluster (``workers``) or on an existing scheduler."""
    distributed = _require_dask()
    if scheduler is not None:
        if isinstance(scheduler, distributed.Client):
            yield scheduler
            return
        address = getattr(scheduler, "scheduler_address", scheduler)
        if not isinstance(address, str):
            raise ConfigError(f"scheduler must be an address 'tcp://host:port', a dask Client or a cluster, got {scheduler!r}")
        try:
            client = distributed.Client(address, timeout=f"{CONNECT_TIMEOUT_S}s", set_as_default=False)
        except (OSError, TimeoutError, ValueError) as err:
            raise DistributedError(
                f"cannot reach Dask scheduler {address!r} within {CONNECT_TIMEOUT_S:g} s ({type(err).__name__}); "
                "check the address or use --workers N for a local cluster"
            ) from None
        try:
            yield client
        finally:
            client.close()
        return
    env = {var: str(threads_per_worker) for var in _THREAD_VARS}
    env["TF_CPP_MIN_LOG_LEVEL"] = os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2")
    if not logging.getLogger().isEnabledFor(logging.INFO):
        # a worker losing the scheduler while the cluster closes (Ctrl-C, SIGTERM) logs a traceback
        # ("Failed to communicate with scheduler during heartbeat"); batch failures come back
        # through the futures as one line each, so the workers' own log is shown with -v only
        env["DASK_LOGGING__DISTRIBUTED"] = "critical"
    # Dask's INFO lines (start, connections, shutdown) and its shutdown warnings ("Worker process still
    # alive after 4.0 seconds, killing") reach the root handler; shown only when INFO is on (mambah -v)
    dask_log = logging.getLogger("distributed")
    dask_level = dask_log.level
    if not logging.getLogger().isEnabledFor(logging.INFO):
        dask_log.setLevel(logging.ERROR)
    # the worker processes ignore Ctrl-C (a terminal sends it to the whole process group): the
    # driver alone handles it, prints the one line and closes the cluster
    with _sigint_ignored():
        cluster = local_cluster(int(workers or 1), threads_per_worker, env)
    try:
        client = distributed.Client(cluster, set_as_default=False)
        try:
            yield client
        finally:
            client.close()
    finally:
        cluster.close()
        dask_log.setLevel(dask_level)


def run_distributed(
    pipeline: Pipeline,
    output: str | os.PathLike[str] = "mambah.duckdb",
    *,
    workers: int | None = None,
    scheduler: Any = None,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    retries: int = 2,
    threads_per_worker: int = 1,
    spool: str | os.PathLike[str] | None = None,
    on_batch: OnBatch | None = None,
    dataset: bool = False,
) -> DistributedSummary:
    """Run ``pipeline`` into ``output`` on a Dask cluster: merged into one store file, or as a dataset store.

    Args:
        pipeline: passes and run settings (events, batch size, seed).
        output: DuckDB store file to write (the driver is its only writer).
        workers: start a local cluster of this many worker processes.
        scheduler: an existing cluster instead: address ``"tcp://host:8786"``,
            a ``distributed.Client`` or a cluster object (dask-jobqueue,
            dask-kubernetes) with a ``scheduler_address``.
        resume: finish an interrupted run in ``output`` (parts already in the
            spool are merged; only missing batches run).
        overwrite: replace an existing ``output`` (and its spool).
        progress: show a progress bar (events merged).
        retries: times a batch that raised is re-run before the run stops.
        threads_per_worker: threads per worker process (TensorFlow intra/inter-op
            pools, DuckDB, Dask task threads).
        spool: part directory (default ``<output>.parts``); must be shared by
            the driver and all workers.
        on_batch: called as ``on_batch(store, batch)`` after each batch is
            merged (as in :func:`sim.core.runner.run`, e.g. the ``--export`` hook).
        dataset: write ``output`` as a dataset store (a directory, :mod:`mambah.dataset`):
            each worker writes its batches there itself, the driver reads no event
            data (no merge, no spool); ``EventStore.open`` and every ``mambah``
            command read it, ``mambah merge`` makes one file of it.  ``output``
            must then be shared by the workers (and ``on_batch`` is not available).

    Returns:
        A :class:`DistributedSummary` (events/s, workers, merge seconds); its
        ``seconds`` run from the connection to the cluster to the last merge.

    Raises:
        DistributedError: unreachable scheduler; a batch failed ``retries + 1``
            times or its worker kept dying (names the batch and the error).
        ConfigError, StoreExistsError: bad options, existing output.
    """
    if (workers is None) == (scheduler is None):
        raise ConfigError("give exactly one of workers (a local cluster) and scheduler (an existing cluster)")
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise ConfigError(f"workers must be a positive integer, got {workers!r}")
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        raise ConfigError(f"retries must be a non-negative integer, got {retries!r}")
    if isinstance(threads_per_worker, bool) or not isinstance(threads_per_worker, int) or threads_per_worker < 1:
        raise ConfigError(f"threads_per_worker must be a positive integer, got {threads_per_worker!r}")
    if str(output) == ":memory:":
        raise ConfigError("a distributed run needs a store file as output, not ':memory:'")
    _require_dask()
    check_output(output, resume=resume, overwrite=overwrite)
    # build every pass here too (decays parsed, models loaded and checked): bad input
    # fails before a cluster starts or an output store exists
    check_batch_memory(pipeline, processes=workers or 1)  # a local cluster holds a batch per worker here
    if dataset:
        if on_batch is not None:
            raise ConfigError("a dataset run has no per-batch hook (--export): export the dataset after the run (mambah export DATASET)")
        if spool is not None:
            raise ConfigError("a dataset run writes no spool: its workers write into the output directory")
        build_kernels(pipeline)
        return _run_dataset(pipeline, Path(output), workers, scheduler, resume, overwrite, progress, retries, threads_per_worker)
    build_kernels(pipeline)
    spool_path = Path(spool) if spool is not None else spool_dir(output)
    digest = _digest(pipeline)
    expected = _RunBatches(pipeline)
    created = not (resume and Path(output).exists())

    # connect first: an unreachable scheduler leaves no output behind
    with _client(workers, scheduler, threads_per_worker) as client:
        if workers is not None:
            client.wait_for_workers(workers, timeout=120)
        n_workers = len(client.nthreads())
        store = open_output(pipeline, output, resume=resume, overwrite=overwrite)
        t0 = time.perf_counter()
        merge_s = 0.0
        n_merged = n_events = n_run = 0
        bar = None
        done: set[int] = set()
        try:
            done = set(store.batches())
            spool_path.mkdir(parents=True, exist_ok=True)
            if not resume:  # parts of an earlier run into a replaced output
                for part in _finished_parts(spool_path):
                    shutil.rmtree(part, ignore_errors=True)
            _clear_tmp(spool_path)
            bar = _progress(pipeline.run.events, store.n_events(), progress)
            # parts finished by an interrupted run but not merged yet
            for part in _finished_parts(spool_path):
                t = time.perf_counter()
                n = _merge_part(store, part, expected, digest, done, on_batch)
                merge_s += time.perf_counter() - t
                if n:
                    n_merged += 1
                    n_events += n
                    bar.update(n)
            # batches are made and submitted a window at a time: never the list of all of them
            todo = iter_pending(pipeline, set(done))
            n_run, n_merged_run, n_ev, m_s = _submit_and_merge(
                client, pipeline, todo, store, spool_path, expected, digest, done, retries, threads_per_worker, bar,
                on_batch, window=max(2 * n_workers * threads_per_worker, 4),
            )
            n_merged += n_merged_run
            n_events += n_ev
            merge_s += m_s
        except BaseException as err:
            store.close()
            if created and not done:
                _remove_store(Path(output))  # a new output that holds no batch is not left behind
            _raise_store_failure(err, output, len(done))
            raise
        finally:
            if bar is not None:
                bar.close()
            store.close()
    with contextlib.suppress(OSError):
        spool_path.rmdir()  # only if empty
    dt = time.perf_counter() - t0
    return DistributedSummary(
        str(output), n_run, pipeline.run.n_batches, n_events, dt,
        workers=n_workers, batches_merged=n_merged, merge_seconds=merge_s,
    )


def _run_dataset(
    pipeline: Pipeline, root: Path, workers: int | None, scheduler: Any, resume: bool, overwrite: bool, progress: bool,
    retries: int, threads_per_worker: int,
) -> DistributedSummary:
    """:func:`run_distributed` with ``dataset=True``."""
    created = not (resume and root.exists())
    with _client(workers, scheduler, threads_per_worker) as client:
        if workers is not None:
            client.wait_for_workers(workers, timeout=120)
        n_workers = len(client.nthreads())
        done = _open_dataset_output(pipeline, root, resume=resume, overwrite=overwrite)
        kept = len(done)
        t0 = time.perf_counter()
        initial = sum(pipeline.run.batch(b).n_events for b in done)
        bar = _progress(pipeline.run.events, initial, progress)
        try:
            n_run, n_events = _run_into_dataset(client, pipeline, root, done, retries, threads_per_worker, bar,
                                                window=max(2 * n_workers * threads_per_worker, 4))
        except BaseException as err:
            if created and len(done) == kept == 0:
                shutil.rmtree(root, ignore_errors=True)  # a new output that holds no batch is not left behind
            _raise_store_failure(err, root, len(done))
            raise
        finally:
            bar.close()
    dt = time.perf_counter() - t0
    return DistributedSummary(str(root), n_run, pipeline.run.n_batches, n_events, dt, workers=n_workers)


def _submit_and_merge(
    client: Any,
    pipeline: Pipeline,
    todo: Iterable[Batch],
    store: EventStore,
    spool: Path,
    expected: _RunBatches,
    digest: str,
    done: set[int],
    retries: int,
    threads: int,
    bar: Any,
    on_batch: OnBatch | None,
    *,
    window: int = 8,
) -> tuple[int, int, int, float]:
    """Submit ``todo`` keeping at most ``window`` batches in flight; merge each as it finishes.

    Returns:
        (batches submitted, batches merged, events merged, merge seconds).
    """
    counts = [0, 0]
    merge_s = [0.0]

    def finished(b: Batch, result: Any) -> None:
        t = time.perf_counter()
        n = _merge_part(store, Path(result), expected, digest, done, on_batch)
        merge_s[0] += time.perf_counter() - t
        if n:
            counts[0] += 1
            counts[1] += n
            bar.update(n)

    n_submitted = _windowed(client, run_part, pipeline, str(spool), todo, prefix="mambah-batch",
                            threads=threads, retries=retries, window=window, on_result=finished)
    return n_submitted, counts[0], counts[1], merge_s[0]


class _RunBatches:
    """The batches of a run by number, made on demand (``expected.get(n)``)."""

    def __init__(self, pipeline: Pipeline) -> None:
        self._run = pipeline.run

    def get(self, batch: int) -> Batch | None:
        return self._run.batch(batch) if 0 <= batch < self._run.n_batches else None


def _failure(fut: Any, b: Batch, retries: int) -> DistributedError:
    try:
        exc = fut.exception()
    except Exception as err:  # cancelled futures raise here
        exc = err
    if isinstance(exc, DistributedError):
        msg = f"{exc}; tried {retries + 1} time(s)"
    elif type(exc).__name__ == "KilledWorker":
        msg = f"batch {b.batch}: its worker process died every time it ran it ({exc})"
    else:
        first = str(exc).strip().splitlines()[0] if exc is not None and str(exc).strip() else ""
        msg = f"batch {b.batch} failed: {type(exc).__name__}: {first}"
    return DistributedError(f"{msg}; completed batches are kept (finish with --resume)")
