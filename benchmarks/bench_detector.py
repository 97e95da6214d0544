#!/usr/bin/env python
"""Benchmark of the detector passes: generator-only vs generator + detector, TF inference rows/s.

Run standalone::

    python benchmarks/bench_detector.py [--events 100000] [--batch-size 25000]

Both chains run in the same process into in-memory stores with the same seed,
interleaved ``--repeat`` times (best rate of each kept); times exclude building the passes (TensorFlow import, model loading, phasespace compilation),
which happens once per process.  Prints a markdown table.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mambah.quiet import quiet_tensorflow

quiet_tensorflow()  # before TensorFlow is imported: its C++ start-up lines are held back


def _run(passes: tuple, events: int, batch_size: int) -> tuple[float, int]:
    from mambah import EventStore
    from sim.core.pipeline import Pipeline, RunConfig
    from sim.core.runner import run

    store = EventStore.memory()
    summary = run(Pipeline(passes, RunConfig(events=events, batch_size=batch_size, seed=42)), store=store,
                  progress=False)
    n_tracks = store.count("protoparticles")
    store.close()
    return summary.events_per_second, n_tracks


def _inference_rates(n_events: int) -> dict[str, tuple[int, float]]:
    """Rows/s of each model as the passes run it (preprocessing + ``tf.function`` network, big chunks)."""
    import numpy as np

    from sim.core.modelio import CompiledModel, feature_matrix, load_pass_model
    from sim.detector.acceptance import ACCEPTANCE_INPUTS
    from sim.detector.efficiency import EFFICIENCY_INPUTS
    from sim.detector.features import add_derived
    from sim.detector.occupancy import OCCUPANCY_TARGETS
    from sim.detector.resolution import RESOLUTION_CONDITIONS
    from sim.reference.sample import reference_sample_arrays

    d = add_derived(reference_sample_arrays(n_events, seed=99))
    d["in_acceptance"] = d["in_acceptance"].astype(float)
    rng = np.random.default_rng(0)
    out = {}
    jobs = {
        "occupancy": ("generator", (), lambda m: m.sample(np.zeros((n_events, 0)), rng), n_events),
        "acceptance": ("classifier", ACCEPTANCE_INPUTS,
                       lambda m: m.predict_proba(feature_matrix(d, ACCEPTANCE_INPUTS, "bench")), d["p"].size),
        "efficiency": ("classifier", EFFICIENCY_INPUTS,
                       lambda m: m.predict_proba(feature_matrix(d, EFFICIENCY_INPUTS, "bench")), d["p"].size),
        "resolution": ("generator", RESOLUTION_CONDITIONS,
                       lambda m: m.sample(feature_matrix(d, RESOLUTION_CONDITIONS, "bench"), rng), d["p"].size),
    }
    for name, (kind, inputs, call, rows) in jobs.items():
        outputs = OCCUPANCY_TARGETS if name == "occupancy" else None
        model = CompiledModel(load_pass_model(None, name, kind=kind, inputs=inputs, outputs=outputs, pass_name=name))
        call(model)  # warm-up (graph tracing)
        t0 = time.perf_counter()
        call(model)
        out[name] = (rows, rows / (time.perf_counter() - t0))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--batch-size", type=int, default=25_000)
    parser.add_argument("--inference-events", type=int, default=50_000)
    parser.add_argument("--repeat", type=int, default=2, help="interleaved repetitions; the best rate is kept")
    args = parser.parse_args(argv)

    from sim.detector.acceptance import Acceptance
    from sim.detector.efficiency import Efficiency
    from sim.detector.occupancy import Occupancy
    from sim.detector.resolution import Resolution
    from sim.generation.generator import Generator

    detector = (Generator(), Occupancy(), Acceptance(), Efficiency(), Resolution())
    # warm both chains (build, first-call tracing) on a small run
    _run(detector, 2000, 2000)
    # interleaved repetitions, best of each: the machine is shared, so load comes and goes
    gen_rate = det_rate = 0.0
    n_tracks = 0
    for _ in range(max(args.repeat, 1)):
        gen_rate = max(gen_rate, _run((Generator(),), args.events, args.batch_size)[0])
        rate, n_tracks = _run(detector, args.events, args.batch_size)
        det_rate = max(det_rate, rate)
    rates = _inference_rates(args.inference_events)

    print(f"\n### Detector benchmark ({args.events} events, batches of {args.batch_size}, {os.cpu_count()} CPUs)\n")
    print("| chain | events/s |")
    print("|---|---:|")
    print(f"| generator only | {gen_rate:,.0f} |")
    print(f"| generator + occupancy + acceptance + efficiency + resolution | {det_rate:,.0f} |")
    print(f"\nratio full chain / generator-only: **{det_rate / gen_rate:.2f}** (target >= 0.2); "
          f"{n_tracks} protoparticles written\n")
    print("| model | rows | TF inference rows/s |")
    print("|---|---:|---:|")
    for name, (rows, rate) in rates.items():
        print(f"| {name} | {rows:,} | {rate:,.0f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
