"""How much memory a batch needs, and whether this machine has it — checked before a run starts.

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
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from mambah.errors import ConfigError

__all__ = (
    "BASE_BYTES",
    "BYTES_PER_EVENT",
    "BYTES_PER_PARTICLE",
    "batch_memory_bytes",
    "check_batch_memory",
    "machine_memory_bytes",
    "particles_per_event",
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


def batch_memory_bytes(pipeline: Any, batch_size: int | None = None) -> int:
    """Estimated peak memory of one batch of ``pipeline`` [bytes], the built passes included."""
    n = pipeline.run.batch_size if batch_size is None else batch_size
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
        f"a batch of {pipeline.run.batch_size:,} events needs about {need / 2**30:.1f} GiB "
        f"({processes} process(es) x {particles_per_event(pipeline):,} particles/event), "
        f"this machine has {mem / 2**30:.1f} GiB; {advice} (--batch-size)"
    )
