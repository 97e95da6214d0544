#!/usr/bin/env python
"""Benchmark of selective simulation: CPU seconds per *selected* event with and without ``preselect``.

Run standalone::

    python benchmarks/bench_preselect.py [--events 20000] [--batch-size 5000] [--retention 0.99] [--min-pt 600]
    python benchmarks/bench_preselect.py --pythia bbbar --decay "[B+ -> (J/psi -> mu+ mu-) K+]cc" \
        --events 1000 --batch-size 500 --train-events 3000 [--redecay 10] [--drop-skipped]

``--pythia PRESET``: full Pythia 8 events (``sim.generation.pythia``, the default detector passes,
as ``mambah run --pythia``) with the signal ``--decay``; a selection model for that pipeline and
selection is trained here first on ``--train-events`` independent events (30 % held out).
Each chain also reports its CPU per pass (kernels timed one by one, ``time.process_time``).
``--drop-skipped`` adds a third chain, the preselection with the skipped events' MC truth
dropped (``Preselect.drop_skipped``, ``mambah run --drop-skipped``; after Pythia it is never
written, ``Pythia.defer_truth``), interleaved with the others; ``--written-and-deleted`` a fourth,
the same with every event's truth written and the skipped events' deleted (the same store).
``--model`` takes a model trained for the pipeline before (``--save-model`` of an earlier run).
Before timing, each chain runs once on ``--warmup`` events (imports, TensorFlow tracing).

The default job (Λb0 → (Λc+ → p K− π+) μ− ν̄μ) with the shipped selection model
``sim/models/selection.keras`` and its known-answer selection (four Long tracks, PIDK(K) > 5);
``--min-pt`` tightens it (every track's pT above it) and trains a model for it first, on
independent events (seed + 1).
Both chains run in one process into in-memory stores with the same seed (so the generated
events are the same), interleaved ``--repeat`` times (lowest CPU time of each kept); kernels
are built before timing.  The retention is measured on the full-simulation run: the model
scores its events, and the fraction of its passing events scoring ≥ the threshold is the
retention the preselection has.  Prints a markdown table.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path
from typing import Any

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
    ap.add_argument("--min-pt", type=float, default=0.0, help="tighter selection: also every track's pT > MIN_PT MeV; "
                    "a selection model for it is trained here first (--train-events events)")
    ap.add_argument("--train-events", type=int, default=40_000)
    ap.add_argument("--showers", choices=("em", "all"), default="em", help="calorimeter showers (all: also hadrons and "
                    "muons, a heavier detector; a selection model for that pipeline is trained here first)")
    ap.add_argument("--pythia", metavar="PRESET", help="full Pythia events of this preset (bbbar, ccbar, minbias)")
    ap.add_argument("--decay", default="[B+ -> (J/psi -> mu+ mu-) K+]cc", help="signal decay of --pythia")
    ap.add_argument("--redecay", type=int, default=1, help="with --pythia: events per Pythia event, the signal "
                    "re-decayed in each (ReDecay; both chains and the training sample)")
    ap.add_argument("--epochs", type=int, default=15, help="epochs of a model trained here")
    ap.add_argument("--max-particles", type=int, default=None, help="particle slots of a --pythia model (default: the "
                    "training sample's largest event)")
    ap.add_argument("--particles", choices=("all", "signal"), default="all", help="a model trained here reads all "
                    "generated particles or only the signal decay's")
    ap.add_argument("--model", help="a selection model trained for this pipeline and selection (e.g. by an earlier run's "
                    "--save-model) instead of training one here")
    ap.add_argument("--save-model", metavar="PATH", help="save the model trained here to PATH (with its sidecar)")
    ap.add_argument("--drop-skipped", action="store_true", help="also run the preselected chain with the skipped "
                    "events' MC truth dropped (a third chain; after Pythia, never written: Pythia.defer_truth)")
    ap.add_argument("--written-and-deleted", action="store_true", help="with --drop-skipped: also the chain that "
                    "writes every event's truth and deletes the skipped events' (Pythia.defer_truth off; the same store)")
    ap.add_argument("--warmup", type=int, default=20, help="events of an untimed run of each chain first (imports, "
                    "TensorFlow tracing, first-call caches: paid once per process, not per event); 0: none")
    args = ap.parse_args()

    from mambah import EventStore
    from sim.core.pipeline import Pipeline, build_kernels
    from sim.defaults import default_pipeline
    from sim.generation.preselect import event_sequences, load_selection_model, particles_sql, with_preselect
    from sim.training.recipes.selection import event_labels, long_and_kaon_pid, simulate_sample, train_selection

    selection = long_and_kaon_pid(args.min_pt)
    model = MODEL
    train_cpu = 0.0
    base = default_pipeline(events=args.events, batch_size=args.batch_size, seed=args.seed)
    if args.pythia:
        from sim.cli.full_events import full_event_pipeline

        base = full_event_pipeline(base, argparse.Namespace(
            pythia=args.pythia, hepmc=None, decay=args.decay, dec_file=None, mother=None, events=args.events,
            batch_size=args.batch_size, redecay=args.redecay))
    if args.showers != "em":
        base = base.replace("calorimeter", showers=args.showers)
    if args.model:
        model = args.model
    elif args.min_pt > 0 or args.showers != "em" or args.pythia:
        import tempfile

        from sim.core.io import save_model

        t0 = time.process_time()
        train_run = dataclasses.replace(base.run, events=args.train_events, batch_size=args.batch_size if args.pythia
                                        else 10_000, seed=args.seed + 1)
        sample = simulate_sample(Pipeline(base.passes, train_run))
        sim_cpu = time.process_time() - t0
        trained_model = train_selection(sample, selection=selection, seed=1, epochs=args.epochs,
                                        validation_fraction=0.3 if args.pythia else 0.2,
                                        max_particles=args.max_particles if args.pythia else None,
                                        particles=args.particles)
        train_cpu = time.process_time() - t0
        out = Path(args.save_model) if args.save_model else Path(tempfile.mkdtemp()) / "selection.keras"
        model = save_model(trained_model, out).as_posix()
        rec = trained_model.provenance["selection"]
        print(f"trained a selection model (track pT > {args.min_pt} MeV, showers {args.showers}, "
              f"{'Pythia ' + args.pythia if args.pythia else 'gun'}) in {train_cpu:.1f} CPU s, {sim_cpu:.1f} of them "
              f"simulating ({args.train_events} events, pass fraction {rec['pass_fraction']:.4f}, {rec['n_validation']} "
              f"held out, AUC {rec['auc']:.4f}, max_particles {rec['max_particles']})")
    full = base
    pre = with_preselect(full, model, retention=args.retention)
    chains = [("full", full), ("preselect", pre)]
    if args.drop_skipped:
        dropped = with_preselect(full, model, retention=args.retention, drop_skipped=True)
        chains.append(("preselect, truth dropped", dropped))
        if args.written_and_deleted and hasattr(dropped.passes[0], "defer_truth"):
            chains.append(("preselect, truth written and deleted",
                           dropped.replace(dropped.passes[0].name, defer_truth=False)))
    for _, pipeline in chains:
        build_kernels(pipeline)
    if args.warmup > 0:  # the same kernels (cached per pass config) on a few events, untimed
        for _, pipeline in chains:
            warm = Pipeline(pipeline.passes, dataclasses.replace(pipeline.run, events=args.warmup,
                                                                  batch_size=args.warmup, seed=args.seed + 7))
            timed_run(warm, EventStore.memory())
    best: dict[str, tuple[float, EventStore]] = {}
    per_pass: dict[str, dict[str, float]] = {}
    for _ in range(args.repeat):
        for name, pipeline in chains:
            store = EventStore.memory()
            t0 = time.process_time()
            spent = timed_run(pipeline, store)
            cpu = time.process_time() - t0
            if name not in best or cpu < best[name][0]:
                best[name] = (cpu, store)
                per_pass[name] = spent
    trained, record = load_selection_model(model)
    threshold = pre.passes[1].resolved_threshold(record)  # type: ignore[attr-defined]
    rows = {}
    for name, (cpu, store) in best.items():
        _, passed = event_labels(store, selection)
        skipped = store.query("SELECT count(*) AS n FROM events WHERE simulated = false").to_pylist()[0]["n"]
        rows[name] = (cpu, int(passed.sum()), skipped)
    full_store = best["full"][1]
    tab = full_store.query(particles_sql(particles=str(record.get("particles", "all"))))
    parts = {c: tab.column(c).to_numpy(zero_copy_only=False) for c in tab.column_names}
    _, x = event_sequences(parts, record["vocabulary"], int(record["max_particles"]))
    score = trained.predict_proba(x)
    _, passed = event_labels(full_store, selection)
    retention = float((score[passed] >= threshold).mean())
    print(f"{args.events} events, batches of {args.batch_size}; retention target {args.retention} "
          f"(threshold {threshold:.5f}); load {Path('/proc/loadavg').read_text().split()[0]}")
    print()
    print("| chain | CPU s | events skipped | selected events | CPU ms per selected event |")
    print("|---|---:|---:|---:|---:|")
    for name, (cpu, n_sel, skipped) in rows.items():
        print(f"| {name} | {cpu:.2f} | {skipped} | {n_sel} | {1000 * cpu / max(n_sel, 1):.3f} |")
    print()
    names = list(per_pass["preselect"])
    print("| CPU ms per generated event | " + " | ".join(names) + " |")
    print("|---|" + "---:|" * len(names))
    for chain, spent in per_pass.items():
        print(f"| {chain} | " + " | ".join(f"{1000 * spent.get(n, 0.0) / args.events:.3g}" if n in spent else "–"
                                     for n in names) + " |")
    cf, nf, _ = rows["full"]
    print()
    for name, (cp, np_, sp) in rows.items():
        if name == "full":
            continue
        print(f"{name}: speed-up per selected event {(cf / nf) / (cp / max(np_, 1)):.2f}x; selected-event ratio "
              f"{np_ / nf:.4f}; skipped fraction {sp / args.events:.3f}")
    print(f"retention of the full run's passes at the threshold {retention:.4f}; selection keeps "
          f"{nf / args.events:.3f} of events")
    return 0


def timed_run(pipeline: Any, store: Any) -> dict[str, float]:
    """Run ``pipeline`` into ``store`` batch by batch as ``sim.run`` does (staged); CPU seconds per pass and the store."""
    from mambah.store import BatchRecord
    from sim.core.pipeline import BatchContext, build_kernels

    kernels = build_kernels(pipeline)
    names = [p.name for p in pipeline.passes]
    spent = dict.fromkeys([*names, "store"], 0.0)
    store.set_metadata("pipeline", pipeline.to_toml())
    for b in pipeline.run.batches():
        t_batch = time.process_time()
        inner = 0.0
        with store.staged_batch(BatchRecord(b.batch, b.n_events, b.seed)) as con:
            ctx = BatchContext(con, b)
            for name, k in zip(names, kernels):
                t0 = time.process_time()
                k(ctx)
                dt = time.process_time() - t0
                spent[name] += dt
                inner += dt
        spent["store"] += time.process_time() - t_batch - inner
    return spent


if __name__ == "__main__":
    raise SystemExit(main())
