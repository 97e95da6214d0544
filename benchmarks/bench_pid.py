"""Benchmark of the GAN PID: inference rows/s per species and its share of the full chain.

Run: ``python benchmarks/bench_pid.py [--events 20000] [--rows 100000] [--times FILE]``

Measures, in one process and one run:

1. PID inference (:meth:`sim.pid.models.PIDModelSet.generate`: RICH GAN → IsMuon
   classifier → MuonLL GAN → global GAN) on ``--rows`` tracks of each species with
   calibration-like kinematics, rows/s;
2. the default pipeline (generator, detector passes, pid) on ``--events`` events into an
   in-memory store, each pass timed separately; and generator-only on the same events.
   Reported: events/s of both, their ratio (target: full chain with PID >= 0.1 x
   generator-only), and the pid pass's share of the full-chain time.  If the detector
   passes are not available, a stand-in pass copies the charged final-state MC
   particles to ``protoparticles`` and sets ``n_tracks``, so the PID part still runs;
3. training times per model, from the JSON written by
   ``scripts/train_pid_models.py --times`` (``--times FILE``), if given.

Prints one JSON document.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from mambah.quiet import quiet_tensorflow

quiet_tensorflow()  # before TensorFlow is imported: its C++ start-up lines are held back


import numpy as np


def bench_inference(rows: int) -> dict[str, float]:
    from sim.pid.models import SHIPPED_SPECIES, load_pid_models

    models = load_pid_models().compiled()  # as the pid pass runs them
    rng = np.random.default_rng(0)
    p = 2e3 + rng.gamma(2.5, 12e3, rows)
    eta = np.clip(rng.normal(3.2, 0.6, rows), 2.0, 4.8)
    nt = rng.gamma(4.0, 40.0, rows)
    out = {}
    for sp in SHIPPED_SPECIES:
        species = np.full(rows, sp, dtype=object)
        models.generate(species[:5000], p[:5000], eta[:5000], nt[:5000], rng)  # warm-up (trace graphs)
        t0 = time.perf_counter()
        models.generate(species, p, eta, nt, rng)
        out[sp] = rows / (time.perf_counter() - t0)
    return out


def _standin_pass():
    """A pass producing protoparticles from charged final-state MC particles (no detector model)."""
    from sim.core.pipeline import BatchContext, Kernel, Pass

    @dataclass(frozen=True)
    class StandInTracks(Pass):
        kind: ClassVar[str] = "bench-standin"
        reads: ClassVar[tuple[str, ...]] = ("mc_particles", "events")
        writes: ClassVar[tuple[str, ...]] = ("protoparticles", "events")
        name: str = "standin"

        def build(self) -> Kernel:
            def kernel(ctx: BatchContext) -> None:
                b = str(int(ctx.batch.batch))
                # protoparticles are written with ctx.insert (a staged batch holds them as Arrow, not as a DuckDB table)
                ctx.insert("protoparticles", ctx.query("""
                    SELECT batch, event, CAST(row_number() OVER (PARTITION BY event ORDER BY "index") - 1 AS INTEGER) AS "index",
                           "index" AS mc_particle, CAST(3 AS SMALLINT) AS track_type, charge, px, py, pz
                    FROM mc_particles WHERE batch = $batch AND charge <> 0 AND decay_vertex = -1"""))
                ctx.con.execute("UPDATE events SET n_tracks = 60 + 10 * (event % 20) WHERE batch = " + b)

            return kernel

    return StandInTracks()


def _timed_run(passes: tuple, events: int, batch_size: int) -> dict[str, float]:
    import mambah
    from sim.core.pipeline import BatchContext, Pipeline, RunConfig, build_kernels

    pipeline = Pipeline(passes, RunConfig(events=events, batch_size=batch_size, seed=7))
    kernels = build_kernels(pipeline)
    times = {p.name: 0.0 for p in pipeline.passes}
    with mambah.EventStore.memory() as store:
        for b in pipeline.run.batches():
            with store.batch_transaction(mambah.BatchRecord(b.batch, b.n_events, b.seed)) as con:
                ctx = BatchContext(con, b)
                for p, k in zip(pipeline.passes, kernels):
                    t0 = time.perf_counter()
                    k(ctx)
                    times[p.name] += time.perf_counter() - t0
        times["n_tracks_pid"] = float(store.query("SELECT count(*) AS n FROM protoparticles WHERE PIDK IS NOT NULL")
                                      .column("n")[0].as_py())
    return times


def bench_chain(events: int, batch_size: int) -> dict[str, object]:
    from sim.defaults import default_passes
    from sim.generation.generator import Generator
    from sim.pid.response import PID

    note = "default pipeline"
    try:
        passes = default_passes()
        if passes[-1].kind != "pid":
            passes = (*passes, PID())
        _timed_run(passes, batch_size, batch_size)  # warm-up: compile graphs
        full = _timed_run(passes, events, batch_size)
    except Exception as err:  # detector passes missing or failing: stand-in tracks
        note = f"stand-in tracks (default pipeline failed: {type(err).__name__}: {str(err).splitlines()[0][:120]})"
        passes = (Generator(), _standin_pass(), PID())
        _timed_run(passes, batch_size, batch_size)
        full = _timed_run(passes, events, batch_size)
    gen = _timed_run((Generator(),), events, batch_size)
    n_tracks = full.pop("n_tracks_pid")
    gen.pop("n_tracks_pid")
    t_full, t_gen = sum(full.values()), sum(gen.values())
    return {
        "chain": note, "events": events, "tracks_with_pid": n_tracks,
        "pass_seconds": {k: round(v, 3) for k, v in full.items()},
        "full_chain_events_per_s": events / t_full, "generator_only_events_per_s": events / t_gen,
        "ratio_full_over_generator_only": t_gen / t_full, "target": ">= 0.1",
        "pid_share_of_full_chain": full.get("pid", 0.0) / t_full,
        "pid_tracks_per_s_in_chain": n_tracks / full["pid"] if full.get("pid") else None,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--batch-size", type=int, default=10_000)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--times", default=None, help="training times JSON from scripts/train_pid_models.py")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    result: dict[str, object] = {"cpu_count": os.cpu_count()}
    result["inference_rows_per_s"] = {k: round(v) for k, v in bench_inference(args.rows).items()}
    result["chain"] = bench_chain(args.events, args.batch_size)
    if args.times and Path(args.times).is_file():
        result["training_seconds"] = json.loads(Path(args.times).read_text())
    print(json.dumps(result, indent=1, default=float))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
