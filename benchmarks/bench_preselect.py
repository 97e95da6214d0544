#!/usr/bin/env python
"""Benchmark of selective simulation: CPU seconds per *selected* event with and without ``preselect``.

Run standalone::

    python benchmarks/bench_preselect.py [--events 20000] [--batch-size 5000] [--retention 0.99]

The default job (Λb0 → (Λc+ → p K− π+) μ− ν̄μ) with the shipped selection model
``sim/models/selection.keras`` and its known-answer selection (four Long tracks, PIDK(K) > 5).
Both chains run in one process into in-memory stores with the same seed (so the generated
events are the same), interleaved ``--repeat`` times (lowest CPU time of each kept); kernels
are built before timing.  The retention is measured on the full-simulation run: the model
scores its events, and the fraction of its passing events scoring ≥ the threshold is the
retention the preselection has.  Prints a markdown table.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mambah.quiet import quiet_tensorflow

quiet_tensorflow()

MODEL = str(Path(__file__).resolve().parent.parent / "sim" / "models" / "selection.keras")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=20_000)
    ap.add_argument("--batch-size", type=int, default=5_000)
    ap.add_argument("--retention", type=float, default=0.99)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--seed", type=int, default=4242)
    args = ap.parse_args()

    import sim
    from mambah import EventStore
    from sim.core.pipeline import build_kernels
    from sim.defaults import default_pipeline
    from sim.generation.preselect import event_sequences, load_selection_model, particles_sql, with_preselect
    from sim.training.recipes.selection import LONG_AND_KAON_PID, event_labels

    full = default_pipeline(events=args.events, batch_size=args.batch_size, seed=args.seed)
    pre = with_preselect(full, MODEL, retention=args.retention)
    build_kernels(full), build_kernels(pre)
    best: dict[str, tuple[float, EventStore]] = {}
    for _ in range(args.repeat):
        for name, pipeline in (("full", full), ("preselect", pre)):
            store = EventStore.memory()
            t0 = time.process_time()
            sim.run(pipeline, None, store=store, progress=False)
            cpu = time.process_time() - t0
            if name not in best or cpu < best[name][0]:
                best[name] = (cpu, store)
    trained, record = load_selection_model(MODEL)
    threshold = pre.passes[1].resolved_threshold(record)  # type: ignore[attr-defined]
    rows = {}
    for name, (cpu, store) in best.items():
        _, passed = event_labels(store, LONG_AND_KAON_PID)
        skipped = store.query("SELECT count(*) AS n FROM events WHERE simulated = false").to_pylist()[0]["n"]
        rows[name] = (cpu, int(passed.sum()), skipped)
    full_store = best["full"][1]
    tab = full_store.query(particles_sql())
    parts = {c: tab.column(c).to_numpy(zero_copy_only=False) for c in tab.column_names}
    _, x = event_sequences(parts, record["vocabulary"], int(record["max_particles"]))
    score = trained.predict_proba(x)
    _, passed = event_labels(full_store, LONG_AND_KAON_PID)
    retention = float((score[passed] >= threshold).mean())
    print(f"{args.events} events, batches of {args.batch_size}; retention target {args.retention} "
          f"(threshold {threshold:.5f}); load {Path('/proc/loadavg').read_text().split()[0]}")
    print()
    print("| chain | CPU s | events skipped | selected events | CPU ms per selected event |")
    print("|---|---:|---:|---:|---:|")
    for name, (cpu, n_sel, skipped) in rows.items():
        print(f"| {name} | {cpu:.2f} | {skipped} | {n_sel} | {1000 * cpu / max(n_sel, 1):.3f} |")
    (cf, nf, _), (cp, np_, sp) = rows["full"], rows["preselect"]
    print()
    print(f"speed-up per selected event: {(cf / nf) / (cp / max(np_, 1)):.2f}x; selected-event ratio "
          f"{np_ / nf:.4f}; retention of the full run's passes at the threshold {retention:.4f}; "
          f"skipped fraction {sp / args.events:.3f}; selection keeps {nf / args.events:.3f} of events")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
