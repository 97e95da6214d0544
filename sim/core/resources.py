"""How much memory a batch needs, and whether this machine has it — checked before a run starts;
and how many threads the matrix products of a run use.

A batch is held in memory while it runs (numpy arrays of every pass, the
Arrow tables inserted, DuckDB's buffers), so its memory grows with the number
of particles it makes.  :func:`batch_memory_bytes` estimates it from the
pipeline's generator settings; :func:`check_batch_memory` refuses a batch size
that cannot fit in :func:`machine_memory_bytes` with one line that gives the
estimate, the machine's memory and a batch size that fits.

Calibration (default pipeline: generator with the 6-particle default decay,
occupancy, acceptance, efficiency, resolution, PID; 10k- and 50k-event batches,
peak RSS after the first batch minus RSS after the passes were built):
8.5-18 kB per event, i.e. about 1.5 kB per generated particle plus the fixed
cost of the event row.  The constants below round this up.

Threads: the passes' networks run as numpy matrix products (OpenBLAS) on batches of
10^4-10^5 rows.  OpenBLAS splits each product over all cores and its threads
busy-wait between products, which on the 2-core reference machine costs more than it
gains: the default job (10^5 events, batches of 5 x 10^4, 1 December 2026, load 3-5)
took 9.0 and 10.3 s wall, 8.9 and 9.0 CPU s with one BLAS thread against 9.6 and
17.1 s wall, 11.7 and 15.8 CPU s with OpenBLAS's two (at load 5: 20 vs 45 s wall,
9.3 vs 25 CPU s), with bit-identical tables (benchmarks/README.md, "Whole default
chain").  :func:`blas_threads` sets the limit for the batch loop of a run
(:func:`sim.core.runner.run`), :func:`limit_blas_threads` for a whole worker process
(:func:`sim.core.distributed.configure_worker`); more cores are used by running more
processes (``--workers N``).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mambah.errors import ConfigError

__all__ = (
    "BASE_BYTES",
    "BYTES_PER_EVENT",
    "BYTES_PER_PARTICLE",
    "BLAS_THREADS",
    "batch_memory_bytes",
    "blas_threads",
    "check_batch_memory",
    "check_blas_threads",
    "limit_blas_threads",
    "machine_memory_bytes",
    "particles_per_event",
    "process_cpus",
)

#: memory of a built pipeline before any batch (TensorFlow, models, DuckDB) [bytes]
BASE_BYTES = 1 << 30
#: per event, whatever it holds (event row, primary vertex, buffers) [bytes]
BYTES_PER_EVENT = 1_000
#: per generated particle (mc_particles, mc_vertices, protoparticles, PID and the passes' arrays) [bytes]
BYTES_PER_PARTICLE = 2_000
#: particles per decay assumed where the decay cannot be counted without building it (DecFiles)
DEFAULT_PARTICLES_PER_DECAY = 10
#: fraction of the machine's memory a batch may take
USABLE_FRACTION = 0.8


def machine_memory_bytes() -> int:
    """Memory this process may use [bytes]: physical memory, or the cgroup limit if lower."""
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    for limit_file in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = Path(limit_file).read_text().strip()
        except OSError:
            continue
        if text.isdigit() and 0 < int(text) < total:
            total = int(text)
    return int(total)


def process_cpus() -> int:
    """CPUs this process may run on (``os.sched_getaffinity``; ``os.cpu_count`` where that is missing)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _decay_size(text: str) -> int:
    """Number of particles in a decay descriptor (head included)."""
    from mambah.descriptor import parse_descriptor

    def count(node: Any) -> int:
        return 1 + sum(count(c) for c in node.children)

    tree, _cc = parse_descriptor(text)
    return count(tree)


def particles_per_event(pipeline: Any) -> int:
    """Generated particles per event of ``pipeline`` (largest decay × decays per event)."""
    n = 0
    for p in pipeline.passes:
        k = getattr(p, "particles_per_event", None)
        if k is None:
            continue
        decay = getattr(p, "decay", None)
        if getattr(p, "dec_file", None) is None and isinstance(decay, str):
            size = _decay_size(decay)
        else:
            size = DEFAULT_PARTICLES_PER_DECAY
        n = max(n, int(k) * size)
    return max(n, 1)


def _largest_batch(pipeline: Any) -> int:
    """Events of the run's largest batch: the batch size, or all the events when they are fewer."""
    run = pipeline.run
    events = getattr(run, "events", None)
    return int(run.batch_size) if events is None else min(int(run.batch_size), int(events))


def batch_memory_bytes(pipeline: Any, batch_size: int | None = None) -> int:
    """Estimated peak memory of one batch of ``pipeline`` [bytes], the built passes included."""
    n = _largest_batch(pipeline) if batch_size is None else batch_size
    per_event = BYTES_PER_EVENT + BYTES_PER_PARTICLE * particles_per_event(pipeline)
    return BASE_BYTES + int(n) * per_event


def check_batch_memory(pipeline: Any, *, processes: int = 1, memory: int | None = None) -> int:
    """Refuse a batch size whose estimated memory does not fit this machine.

    Args:
        pipeline: the pipeline (its generator settings and batch size).
        processes: batches held at the same time on this machine (local workers).
        memory: the machine's memory [bytes] (default :func:`machine_memory_bytes`).

    Returns:
        The estimate for all ``processes`` [bytes].

    Raises:
        ConfigError: the estimate exceeds the usable memory; the message gives
            the estimate, the machine's memory and a batch size that fits.
    """
    mem = machine_memory_bytes() if memory is None else int(memory)
    need = processes * batch_memory_bytes(pipeline)
    usable = USABLE_FRACTION * mem
    if need <= usable:
        return need
    per_event = BYTES_PER_EVENT + BYTES_PER_PARTICLE * particles_per_event(pipeline)
    fits = int((usable / processes - BASE_BYTES) // per_event)
    advice = f"a batch size of at most {fits:,} fits" if fits >= 1 else "no batch size fits: fewer particles per event"
    raise ConfigError(
        f"a batch of {_largest_batch(pipeline):,} events needs about {need / 2**30:.1f} GiB "
        f"({processes} process(es) x {particles_per_event(pipeline):,} particles/event), "
        f"this machine has {mem / 2**30:.1f} GiB; {advice} (--batch-size)"
    )


#: BLAS / OpenMP threads of a run's matrix products (see the module docstring for the measurement)
BLAS_THREADS = 1


def check_blas_threads(threads: int | None) -> int | None:
    """``threads`` as given (``None``: the libraries' own setting), or a :class:`ConfigError`.

    Raises:
        ConfigError: ``threads`` is neither ``None`` nor a positive integer.
    """
    if threads is None:
        return None
    return _check_threads(threads)


def _check_threads(threads: int) -> int:
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ConfigError(f"BLAS threads must be a positive integer, got {threads!r}")
    return threads


def _load_pools() -> Any:
    """threadpoolctl, after loading the BLAS libraries a run uses (a limit acts on loaded libraries only).

    numpy's OpenBLAS is loaded with numpy; scipy ships its own, loaded at the first
    ``scipy.linalg``/``scipy.special`` use, which in a run comes after the limit is set.
    """
    import scipy.linalg  # noqa: F401 - loads scipy's OpenBLAS
    import threadpoolctl

    return threadpoolctl


@contextlib.contextmanager
def blas_threads(threads: int | None = BLAS_THREADS) -> Iterator[None]:
    """Limit the BLAS and OpenMP thread pools of this process to ``threads`` inside the block.

    ``None`` leaves the libraries' own setting (all cores).  The previous limits are
    restored on exit.  Results do not depend on it (each output element of a matrix
    product is summed by one thread).

    Raises:
        ConfigError: ``threads`` is not a positive integer.
    """
    if threads is None:
        yield
        return
    _check_threads(threads)
    threadpoolctl = _load_pools()
    with threadpoolctl.threadpool_limits(limits=threads):
        yield


def limit_blas_threads(threads: int) -> None:
    """Limit the BLAS and OpenMP thread pools of this process to ``threads`` from now on (a worker's setting).

    Unlike the ``OMP_NUM_THREADS`` family of environment variables, this also acts
    when numpy's BLAS is loaded already (a worker of an existing Dask cluster).

    Raises:
        ConfigError: ``threads`` is not a positive integer.
    """
    _check_threads(threads)
    _load_pools().threadpool_limits(limits=threads)
