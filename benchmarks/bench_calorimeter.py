"""Benchmark of the fast calorimeter: shower generation ms/shower at batch 1, 128, 1024.

Run: ``python benchmarks/bench_calorimeter.py [--repeats 20] [--model PATH]``

Measures, in one process:

1. the shipped shower generator (``sim/models/calorimeter.keras``, as the calorimeter
   pass runs it: :func:`sim.detector.calorimeter.generate_showers`, preprocessing and
   the matrix reconstruction included) at batch sizes 1, 128 and 1024, ms/shower (best
   of ``--repeats`` calls after a warm-up), in wall-clock time and in CPU time of this
   process (``time.process_time``: all its threads; on the shared machine the CPU time
   moves less with the load than the wall clock);
2. the reference ECAL (:func:`sim.reference.ecal.simulate_showers`) at the same batch
   sizes, as the in-run baseline;
3. with ``--chain-events N`` (default 10 000; 0 skips), the default job on
   B0 -> K*0 gamma with and without the calorimeter pass (same events, one batch),
   and the calorimeter pass's share of the default job;
4. with ``--full-events N`` (default 0: skipped), the calorimeter pass on ``N`` Pythia
   full events (bbbar, ν = 1.1, signal B± → J/ψ K±, as ``bench_full_events.py``; made
   once into a store under ``--workdir``): the pass's inputs queried from the store and
   :func:`sim.detector.calorimeter.reconstruct_batch` timed, ms per event (wall and CPU),
   with the showers, clusters and tracks per event;
5. beside them, the seed table's CaloGAN CPU figures (13.1 / 2.19 / 2.03 ms/shower at
   batch 1 / 128 / 1024) and Geant4's 1 772 ms/shower; target <= 0.1 ms/shower at 1024.

Prints one JSON document.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Callable

from mambah.quiet import quiet_tensorflow

quiet_tensorflow()  # before TensorFlow is imported: its C++ start-up lines are held back


import numpy as np

CALOGAN_CPU_MS = {1: 13.1, 128: 2.19, 1024: 2.03}
GEANT4_MS = 1772.0
BATCHES = (1, 128, 1024)


def _particles(n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    from sim.reference.ecal import shower_sample

    s = shower_sample(n, rng, mix=((22, 0.5), (11, 0.5)))
    s.pop("matrix")
    return s


def _best(fn: Callable[[], object], repeats: int) -> tuple[float, float]:
    """Best wall-clock and best CPU seconds of ``repeats`` calls after a warm-up."""
    fn()
    best, best_cpu = np.inf, np.inf
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        best, best_cpu = min(best, time.perf_counter() - t0), min(best_cpu, time.process_time() - c0)
    return float(best), float(best_cpu)


def bench_full_events(events: int, workdir: str, repeats: int = 3) -> dict[str, float]:
    """The calorimeter pass's work on Pythia full events, ms per event (see the module docstring)."""
    import dataclasses
    import sys
    from pathlib import Path

    import mambah
    from sim.detector import calorimeter as calo
    from sim.detector.ecal_geometry import ECALGeometry

    path = Path(workdir) / f"full_events_{events}.duckdb"
    if not path.is_file():
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from bench_full_events import full_chain

        path.parent.mkdir(parents=True, exist_ok=True)
        full_chain(events, events, path)
    with mambah.EventStore.open(path, read_only=True) as store:
        def inputs() -> tuple[dict[str, np.ndarray], ...]:
            return tuple(calo._np(store.query(sql.replace("$batch", "0")))
                         for sql in (calo._PARTICLES_SQL, calo._TRACKS_SQL, calo._EVENTS_SQL))

        wall_q, cpu_q = _best(inputs, repeats)
        parts, tracks, evs = inputs()
    n_ev = len(evs["event"])
    model = calo.load_shower_model()
    cfg = calo.Calorimeter()
    geo = dataclasses.replace(ECALGeometry(), material_x0=cfg.material_x0)
    out: dict[str, dict[str, np.ndarray]] = {}

    def reco() -> None:
        out.update(calo.reconstruct_batch(parts, tracks, evs, model, np.random.default_rng(1), cfg, geo))

    wall, cpu = _best(reco, repeats)
    n_cl = len(out["calo_clusters"]["event"])
    return {
        "events": n_ev, "mc_particles_per_event": len(parts["event"]) / n_ev, "tracks_per_event": len(tracks["event"]) / n_ev,
        "clusters_per_event": n_cl / n_ev, "query_ms_per_event": 1e3 * wall_q / n_ev,
        "query_cpu_ms_per_event": 1e3 * cpu_q / n_ev, "reconstruct_ms_per_event": 1e3 * wall / n_ev,
        "reconstruct_cpu_ms_per_event": 1e3 * cpu / n_ev,
    }


def bench_chain(events: int) -> dict[str, float]:
    import tempfile
    from pathlib import Path

    from sim.core.pipeline import Pipeline, RunConfig
    from sim.core.runner import run
    from sim.defaults import default_passes
    from sim.generation.generator import Generator

    passes = (Generator(decay="B0 -> (K*0 -> K+ pi-) gamma"), *default_passes()[1:])
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for label, chain in (("without", tuple(p for p in passes if p.kind != "calorimeter")), ("with", passes)):
            cfg = RunConfig(events=events, batch_size=events, seed=5)
            run(Pipeline(chain, RunConfig(events=200, batch_size=200, seed=4)), Path(tmp) / f"warm-{label}.duckdb",
                progress=False)  # models loaded and graphs traced once
            t0 = time.perf_counter()
            run(Pipeline(chain, cfg), Path(tmp) / f"{label}.duckdb", progress=False)
            out[f"{label}_calorimeter_s"] = time.perf_counter() - t0
    out["calorimeter_share"] = 1.0 - out["without_calorimeter_s"] / out["with_calorimeter_s"]
    return {k: round(v, 3) for k, v in out.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--model", default=None)
    parser.add_argument("--chain-events", type=int, default=10_000)
    parser.add_argument("--full-events", type=int, default=0, help="Pythia full events for the pass timing (0: skip)")
    parser.add_argument("--workdir", default="build/bench_calorimeter", help="where the full-event store is kept")
    args = parser.parse_args()
    from sim.detector.calorimeter import generate_showers, load_shower_model
    from sim.reference.ecal import simulate_showers

    model = load_shower_model(args.model)
    rng = np.random.default_rng(0)
    parts = _particles(4096, rng)
    out: dict[str, object] = {"calogan_cpu_ms": CALOGAN_CPU_MS, "geant4_ms": GEANT4_MS}
    fast, ref, fast_cpu, ref_cpu = {}, {}, {}, {}
    for b in BATCHES:
        sl = {k: v[:b] for k, v in parts.items()}
        reps = max(3, args.repeats if b <= 128 else args.repeats // 4)

        def fast_call(s: dict[str, np.ndarray] = sl) -> object:
            return generate_showers(model, s["pid"], s["energy"], s["x"], s["y"], s["tx"], s["ty"], rng)

        def ref_call(s: dict[str, np.ndarray] = sl) -> object:
            return simulate_showers(s["pid"], s["energy"], s["x"], s["y"], s["tx"], s["ty"], rng)

        wall, cpu = _best(fast_call, reps)
        fast[b], fast_cpu[b] = 1e3 * wall / b, 1e3 * cpu / b
        wall, cpu = _best(ref_call, max(3, reps // 2))
        ref[b], ref_cpu[b] = 1e3 * wall / b, 1e3 * cpu / b
    out["fast_ms_per_shower"] = {str(k): round(v, 4) for k, v in fast.items()}
    out["fast_cpu_ms_per_shower"] = {str(k): round(v, 4) for k, v in fast_cpu.items()}
    out["reference_ms_per_shower"] = {str(k): round(v, 4) for k, v in ref.items()}
    out["reference_cpu_ms_per_shower"] = {str(k): round(v, 4) for k, v in ref_cpu.items()}
    out["speedup_vs_calogan_cpu"] = {str(k): round(CALOGAN_CPU_MS[k] / fast[k], 1) for k in BATCHES}
    out["target_1024_ms"] = 0.1
    out["meets_target"] = bool(fast[1024] <= 0.1)
    out["meets_target_cpu"] = bool(fast_cpu[1024] <= 0.1)
    if args.chain_events > 0:
        out["default_job_b0_kstgamma"] = bench_chain(args.chain_events)
    if args.full_events > 0:
        out["full_events_calorimeter"] = {k: round(v, 3) for k, v in
                                          bench_full_events(args.full_events, args.workdir).items()}
    out["load_average"] = os.getloadavg()[0]
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
