#!/usr/bin/env python
"""CPU cost of the ghost pass (issue #16) in the default job: with and without ghosts, interleaved.

Usage::

    nice -n 10 python benchmarks/bench_ghosts.py [--events 100000] [--batch-size 25000] [--pairs 2]

Runs the default pipeline into an in-memory store with the ghost pass as shipped and with
``Ghosts(scale=0)`` (the pass runs its query but makes no ghost), alternating, and prints
the process CPU seconds of each run (``time.process_time``: the load of other processes
does not enter), the ghost rows and the CPU per event.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--batch-size", type=int, default=25_000)
    parser.add_argument("--pairs", type=int, default=2)
    args = parser.parse_args(argv)

    from mambah import EventStore
    from sim.core.runner import run
    from sim.defaults import default_pipeline

    base = default_pipeline(events=args.events, batch_size=args.batch_size, seed=42)
    variants = {"ghosts": base, "no ghosts": base.replace("ghosts", scale=0.0)}
    run(default_pipeline(events=2000, batch_size=2000), store=EventStore.memory(), progress=False)  # warm-up
    for i in range(args.pairs):
        for label, pl in (variants.items() if i % 2 == 0 else reversed(list(variants.items()))):
            store = EventStore.memory()
            t0 = time.process_time()
            run(pl, store=store, progress=False)
            cpu = time.process_time() - t0
            n_ghost = store.query("SELECT count(*) AS n FROM protoparticles WHERE mc_particle = -1")["n"][0].as_py()
            n_pp = store.count("protoparticles")
            print(f"pair {i} {label:>9}: {cpu:6.2f} CPU s, {1e6 * cpu / args.events:.1f} CPU us/event, "
                  f"{n_pp} protoparticles, {n_ghost} ghosts")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
