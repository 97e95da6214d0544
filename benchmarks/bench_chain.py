#!/usr/bin/env python
"""Benchmark of the whole default chain (#19): mambah run vs bare phasespace, per-pass shares, start-up.

In one run, as whole processes:

1. bare ``phasespace`` generating *and unweighting* (accept–reject on the weight) the
   default decay Λb0 → (Λc+ → p K− π+) μ− ν̄μ, N events, in a fresh interpreter;
2. ``mambah run`` of the default job, N events, in a fresh interpreter (start-up,
   model loading, every pass and the store included);
3. ``mambah run --events 1000`` (the start-up time);

and, in this process, the share of each pass in the batch loop (each kernel timed
on the same batches, the commit included as ``store``).  Prints a markdown table
with the ratio ``mambah / bare`` (events/s) and the pass list it was measured with.

Run::

    python benchmarks/bench_chain.py [--events 200000] [--batch-size 25000]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

_BARE = r"""
import os, sys, time
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import numpy as np, phasespace, tensorflow as tf
from particle import Particle
n = int(sys.argv[1])
m = lambda name: Particle.from_evtgen_name(name).mass
lc = phasespace.GenParticle("Lambda_c+", m("Lambda_c+")).set_children(
    phasespace.GenParticle("p+", m("p+")), phasespace.GenParticle("K-", m("K-")), phasespace.GenParticle("pi+", m("pi+")))
lb = phasespace.GenParticle("Lambda_b0", m("Lambda_b0")).set_children(
    lc, phasespace.GenParticle("mu-", m("mu-")), phasespace.GenParticle("anti-nu_mu", 0.0))
rng = np.random.default_rng(1)
kept, chunk = 0, 100_000
while kept < n:
    w, parts = lb.generate(chunk, normalize_weights=True)
    keep = rng.random(chunk) < np.asarray(w) / float(np.max(w))
    kept += int(keep.sum())
"""


def _timed(cmd: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True, cwd=ROOT, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    return time.perf_counter() - t0


def pass_shares(events: int, batch_size: int) -> tuple[list[str], dict[str, float]]:
    """Seconds per pass (and the commit) over the batch loop of the default job, in this process."""
    from mambah.quiet import quiet_tensorflow

    quiet_tensorflow()
    from mambah import EventStore
    from mambah.store import BatchRecord
    from sim.core.pipeline import BatchContext, build_kernels
    from sim.defaults import default_pipeline

    pl = default_pipeline(events=events, batch_size=batch_size, seed=3)
    kernels = build_kernels(pl)
    names = [p.name for p in pl.passes]
    spent = dict.fromkeys([*names, "store"], 0.0)
    store = EventStore.memory()
    for b in pl.run.batches():
        t_batch = time.perf_counter()
        inner = 0.0
        with store.batch_transaction(BatchRecord(b.batch, b.n_events, b.seed)) as con:
            ctx = BatchContext(con, b)
            for name, k in zip(names, kernels):
                t0 = time.perf_counter()
                k(ctx)
                dt = time.perf_counter() - t0
                spent[name] += dt
                inner += dt
        spent["store"] += time.perf_counter() - t_batch - inner
    store.close()
    return names, spent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--batch-size", type=int, default=25_000)
    args = parser.parse_args(argv)
    n = args.events
    t_bare = _timed([sys.executable, "-c", _BARE, str(n)])
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "chain.duckdb"
        t_chain = _timed([sys.executable, "-m", "mambah.cli", "run", "--events", str(n), "--batch-size",
                          str(args.batch_size), "-o", str(out), "--no-progress"])
        size = out.stat().st_size
        t_start = _timed([sys.executable, "-m", "mambah.cli", "run", "--events", "1000", "-o",
                          str(Path(tmp) / "small.duckdb"), "--no-progress"])
    names, spent = pass_shares(min(n, 100_000), args.batch_size)
    total = sum(spent.values())
    load = os.getloadavg()[0]
    print("| quantity | value |\n|---|---|")
    print(f"| bare phasespace (generate + unweight), whole process | {n / t_bare:,.0f} events/s ({t_bare:.1f} s) |")
    print(f"| mambah run (default job), whole process | {n / t_chain:,.0f} events/s ({t_chain:.1f} s) |")
    print(f"| ratio mambah / bare | {t_bare / t_chain:.3f} (target 0.3) |")
    print(f"| mambah run --events 1000 | {t_start:.1f} s (target 4 s) |")
    print(f"| store size | {size / n:,.0f} bytes/event (target 700) |")
    print(f"| load average | {load:.1f} |")
    print(f"\npasses: {' -> '.join(names)}\n\n| pass | share of the batch loop |\n|---|---|")
    for name, s in spent.items():
        print(f"| {name} | {s / total:.1%} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
