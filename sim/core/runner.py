"""Running a pipeline into an event store, batch by batch (serial; see :mod:`sim.core.distributed`)."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mambah.errors import ConfigError, StoreExistsError
from mambah.store import BatchRecord, EventStore

from sim.core.pipeline import Batch, Pipeline, build_kernels, run_batch

__all__ = ("run", "RunSummary", "open_output", "pending_batches")

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


def check_output(output: str | Path, *, resume: bool, overwrite: bool) -> None:
    """Refuse an existing output early (before any heavy work) unless resume/overwrite."""
    if resume and overwrite:
        raise ConfigError("choose one of resume and overwrite")
    p = Path(output)
    if str(output) != ":memory:" and p.exists() and not (resume or overwrite):
        raise StoreExistsError(f"output '{p}' exists; pass --overwrite to replace it or --resume to finish it")


def open_output(pipeline: Pipeline, output: str | Path, *, resume: bool, overwrite: bool) -> EventStore:
    """Create (or reopen for resume) the output store and record the run in its metadata.

    On resume the stored pipeline and run settings must equal ``pipeline``'s.
    """
    check_output(output, resume=resume, overwrite=overwrite)
    p = Path(output)
    if resume and p.exists():
        store = EventStore.open(p)
        stored = store.get_metadata("pipeline")
        if stored is not None and stored != pipeline.to_toml():
            store.close()
            raise ConfigError(f"cannot resume '{p}': it was made with another pipeline or run settings (see 'mambah info {p}')")
        return store
    store = EventStore.create(output, overwrite=overwrite)
    store.set_metadata("pipeline", pipeline.to_toml())
    store.set_metadata("run", _run_record(pipeline))
    return store


def pending_batches(pipeline: Pipeline, store: EventStore) -> list[Batch]:
    """Batches of the run not yet complete in ``store``."""
    done = set(store.batches())
    return [b for b in pipeline.run.batches() if b.batch not in done]


def run(
    pipeline: Pipeline,
    output: str | Path = "mambah.duckdb",
    *,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    store: EventStore | None = None,
    on_batch: Callable[[EventStore, Batch], None] | None = None,
) -> RunSummary:
    """Run ``pipeline`` into ``output``, one transaction per batch.

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
            committed (e.g. :class:`ficino.hook.ExportHook`).
    """
    if store is None:
        check_output(output, resume=resume, overwrite=overwrite)
    kernels = build_kernels(pipeline)
    own = store is None
    if store is None:
        store = open_output(pipeline, output, resume=resume, overwrite=overwrite)
    todo = pending_batches(pipeline, store)
    total = pipeline.run.n_batches
    t0 = time.perf_counter()
    n_done = 0
    bar = _progress(pipeline.run.events, store.n_events(), progress)
    try:
        for b in todo:
            with store.batch_transaction(BatchRecord(b.batch, b.n_events, b.seed)) as con:
                run_batch(kernels, con, b)
            if on_batch is not None:
                on_batch(store, b)
            n_done += b.n_events
            bar.update(b.n_events)
    finally:
        bar.close()
        if own:
            store.close()
    dt = time.perf_counter() - t0
    return RunSummary(str(output), len(todo), total, n_done, dt)


def _progress(total: int, initial: int, enabled: bool) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, unit="evt", unit_scale=True, disable=not enabled, dynamic_ncols=True, desc="mambah")
