"""``mambah run``: generate events through the pipeline into a store (serial or Dask)."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import Any

from mambah.cli import nonnegative_int, path_argument, positive_int
from mambah.errors import ConfigError, DataError
from sim.core.executors import DaskExecutor, Executor, SerialExecutor
from sim.core.pipeline import Pipeline

__all__ = ("register", "cmd_run", "pipeline_from_args")


def register(sub: Any) -> None:
    """Add ``mambah run`` to the subcommands."""
    run = sub.add_parser("run", help="generate events through the pipeline into a store")
    run.add_argument("--config", help="pipeline config file (TOML or YAML); default: the built-in job")
    run.add_argument("--decay", help="decay descriptor, e.g. 'B+ -> (J/psi -> mu+ mu-) K+'")
    run.add_argument("--dec-file", help="EvtGen .dec file (all modes with their branching fractions)")
    run.add_argument("--mother", help="decaying particle of --dec-file (default: its first Decay block)")
    run.add_argument("--pythia", metavar="PRESET", help="full events from Pythia 8: minbias, bbbar or ccbar (needs mambah[pythia]); "
                     "--decay/--dec-file then name the signal that Mambah decays")
    run.add_argument("--hepmc", metavar="FILE", nargs="+", help="full events from HepMC3/HepMC2 ASCII files or globs "
                     "(needs mambah[hepmc]); --decay then flags the signal")
    run.add_argument("--daughters-in-acceptance", action="store_true", help="with --pythia/--hepmc and a signal: Gauss' "
                     "DaughtersInLHCb cut, every stable signal daughter at 10-400 mrad (charged) / 5-400 mrad (neutral); "
                     "--pythia keeps only passing events, --hepmc marks failing ones events.simulated = false")
    run.add_argument("--redecay", type=positive_int, metavar="N", help="with --pythia and a signal: N events from each "
                     "Pythia event, the signal re-decayed in each (LHCb's ReDecay; the rest of the event is shared)")
    run.add_argument("--spectrum", choices=("auto", "b", "c", "uniform", "fixed"),
                     help="head kinematics: auto (b or c hadron spectrum following the head; the default), b, c, "
                     "uniform or fixed (their parameters through --config)")
    run.add_argument("--unsupported-models", choices=("error", "phase-space", "skip"),
                     help="a decay model you wrote that cannot be honoured: error (default), phase-space (one warning "
                     "line per model) or skip (drop those modes, renormalise)")
    run.add_argument("--table-unsupported-models", choices=("error", "phase-space", "skip"),
                     help="the same for the decay table's modes (default phase-space, one warning line per model)")
    run.add_argument("--decay-table", metavar="TABLE", help="table completing undecayed particles: DECAY_LHCB.DEC (default), "
                     "DECAY_BELLE2.DEC or a DecFile path")
    run.add_argument("--cc-fraction", type=float, metavar="F", help="fraction of charge-conjugate decays for [...]cc / CDecay (default 0.5)")
    run.add_argument("--events", type=positive_int, help="number of events (default 100000)")
    run.add_argument("--batch-size", type=positive_int, help="events per batch (default 25000)")
    run.add_argument("--seed", type=nonnegative_int, help="run seed (default 42)")
    run.add_argument("-o", "--output", default="mambah.duckdb", help="output store (default mambah.duckdb)")
    group = run.add_mutually_exclusive_group()
    group.add_argument("--resume", action="store_true", help="finish an interrupted run in --output (start it if --output does not exist)")
    group.add_argument("--overwrite", action="store_true", help="replace an existing --output")
    run.add_argument("--preselect", metavar="MODEL", help="selection model (.keras + sidecar): events it predicts to fail "
                     "skip the detector passes (events.simulated = false; see sim.generation.preselect)")
    cut = run.add_mutually_exclusive_group()
    cut.add_argument("--retention", type=float, metavar="R", help="--preselect threshold from the model's validation curve "
                     "for this retention of true passes (default 0.99)")
    cut.add_argument("--threshold", type=float, metavar="T", help="--preselect score threshold directly")
    run.add_argument("--preselect-mode", choices=("threshold", "sample"), help="threshold: skip every event below it "
                     "(default); sample: keep an event with probability min(1, score/threshold), events.weight = 1/that")
    run.add_argument("--preselect-weights", action="store_true", help="threshold mode: events.weight = 1/P(kept) from "
                     "the reweighting model the selection model's sidecar names (corrects the kinematic bias)")
    run.add_argument("--drop-skipped", action="store_true", help="with --preselect: delete the MC truth (mc_particles, "
                     "mc_vertices) of the events it skips; their events row stays (simulated = false)")
    run.add_argument("--save-config", metavar="FILE", help="write the pipeline config to FILE and exit")
    run.add_argument("--no-progress", action="store_true", help="no progress bar")
    run.add_argument("--threads", type=positive_int, metavar="N", help="batches computed at once in this process, written in order "
                     "(default: 2, at most the CPUs; above 1 refused for a pass that runs one batch at a time, e.g. --pythia)")
    run.add_argument("--workers", type=positive_int, help="run batches on a local Dask cluster of N processes (needs mambah[dask])")
    run.add_argument("--scheduler", metavar="ADDRESS", help="run batches on an existing Dask cluster, e.g. tcp://host:8786")
    run.add_argument("--retries", type=nonnegative_int, help="re-runs of a failing batch in a distributed run (default 2)")
    run.add_argument("--dataset", action="store_true", help="with --workers/--scheduler: write --output as a dataset store "
                     "(a directory of Parquet files per batch, written by the workers themselves; mambah merge makes one file)")
    run.set_defaults(func=cmd_run)


def pipeline_from_args(args: argparse.Namespace) -> Pipeline:
    """The pipeline of ``mambah run``: the config file or the default job, with the command-line changes."""
    from sim.defaults import default_pipeline

    pipeline = Pipeline.load(args.config) if args.config else default_pipeline()
    changes = {k: v for k, v in (("events", args.events), ("batch_size", args.batch_size), ("seed", args.seed)) if v is not None}
    if changes:
        pipeline = Pipeline(pipeline.passes, dataclasses.replace(pipeline.run, **changes))
    if args.decay is not None and args.dec_file is not None:
        raise ConfigError("give only one of --decay and --dec-file")
    if getattr(args, "mother", None) is not None and args.dec_file is None:  # it names a Decay block of the DecFile
        raise ConfigError(f"--mother {args.mother!r} picks the Decay block of --dec-file FILE; give --dec-file, or drop --mother")
    if getattr(args, "pythia", None) is not None or getattr(args, "hepmc", None):  # --pythia "" is a bad preset, not no Pythia
        from sim.cli.full_events import full_event_pipeline

        return _with_preselect(full_event_pipeline(pipeline, args), args).validate()
    if getattr(args, "daughters_in_acceptance", False):
        raise ConfigError("--daughters-in-acceptance needs a full-event generator: add --pythia PRESET or --hepmc FILE")
    if getattr(args, "redecay", None):
        raise ConfigError("--redecay needs Pythia events: add --pythia PRESET and a signal --decay/--dec-file")
    if args.decay is not None or args.dec_file is not None:  # --decay '' is an empty descriptor, not the default
        gens = [p for p in pipeline.passes if p.kind == "generator"]
        if not gens:
            raise ConfigError("the pipeline has no generator pass to take --decay/--dec-file")
        if args.decay is not None:
            pipeline = pipeline.replace(gens[0].name, decay=args.decay, dec_file=None, mother=None)
        else:
            pipeline = pipeline.replace(gens[0].name, dec_file=str(Path(args.dec_file).resolve()), mother=args.mother)
    gen_changes = {
        key: value
        for key, value in (
            ("spectrum", getattr(args, "spectrum", None)),
            ("unsupported_models", getattr(args, "unsupported_models", None)),
            ("table_unsupported_models", getattr(args, "table_unsupported_models", None)),
            ("decay_table", getattr(args, "decay_table", None)),
            ("cc_fraction", getattr(args, "cc_fraction", None)),
        )
        if value is not None
    }
    if gen_changes:
        gens = [p for p in pipeline.passes if p.kind == "generator"]
        if not gens:
            flags = ", ".join("--" + k.replace("_", "-") for k in gen_changes)
            raise ConfigError(f"the pipeline has no generator pass to take {flags}")
        if gen_changes.get("decay_table") not in (None, "DECAY_LHCB.DEC", "DECAY_BELLE2.DEC"):
            gen_changes["decay_table"] = str(Path(gen_changes["decay_table"]).resolve())
        pipeline = pipeline.replace(gens[0].name, **gen_changes)
    return _with_preselect(pipeline, args).validate()


def _with_preselect(pipeline: Pipeline, args: argparse.Namespace) -> Pipeline:
    """``--preselect MODEL [--retention R | --threshold T]``: the preselect pass after the generator."""
    model, retention, threshold, mode = (getattr(args, k, None) for k in ("preselect", "retention", "threshold",
                                                                          "preselect_mode"))
    weights = bool(getattr(args, "preselect_weights", False))
    drop = bool(getattr(args, "drop_skipped", False))
    if model is None:
        if retention is not None or threshold is not None or mode is not None or weights or drop:
            raise ConfigError("--retention, --threshold, --preselect-mode, --preselect-weights and --drop-skipped "
                              "need --preselect MODEL")
        return pipeline
    from sim.generation.preselect import with_preselect

    if retention is None and threshold is None:
        retention = 0.99
    return with_preselect(pipeline, str(Path(model).resolve()), retention=retention, threshold=threshold,
                          mode=mode or "threshold", weights=weights, drop_skipped=drop)


#: suffixes of the export formats (``mambah export``), not of a store
_NTUPLE_SUFFIXES = (".root", ".parquet", ".pq", ".csv")


def cmd_run(args: argparse.Namespace) -> int:
    from sim.core.runner import check_output, run

    pipeline = pipeline_from_args(args)
    if args.save_config is not None:
        path_argument(args.save_config, "--save-config")
        if Path(args.save_config).is_file() and not args.overwrite:  # as every other output (a store was overwritten)
            raise ConfigError(f"--save-config {args.save_config}: the file exists; pass --overwrite to replace it")
        pipeline.save(args.save_config)
        print(f"wrote {args.save_config}")
        return 0
    if args.retries is not None and args.workers is None and args.scheduler is None:  # a serial run retries nothing
        raise ConfigError("--retries re-runs failing batches on Dask workers; add --workers N or --scheduler ADDRESS, or drop it")
    if args.threads is not None and (args.workers is not None or args.scheduler is not None):
        raise ConfigError("--threads is for a run in this process; with --workers/--scheduler each worker computes one batch at a time: drop one")
    if getattr(args, "dataset", False) and args.workers is None and args.scheduler is None:
        raise ConfigError("--dataset needs --workers N or --scheduler ADDRESS (a serial run writes one store file)")
    if Path(args.output).suffix.lower() in _NTUPLE_SUFFIXES:  # a DuckDB file named .root would be a silent substitute
        raise ConfigError(
            f"-o {args.output} names an ntuple; mambah run writes a DuckDB store: give -o "
            f"{Path(args.output).with_suffix('.duckdb')} and --export {args.output} (or mambah export afterwards)"
        )
    path_argument(args.output, "-o/--output")
    check_output(args.output, resume=args.resume, overwrite=args.overwrite)
    # --export (ficino.cli): on_batch hook streaming committed batches into an ntuple
    hook = args.export_hook(args, pipeline) if getattr(args, "export_hook", None) else None
    try:
        executor: Executor = SerialExecutor(threads=args.threads)
        if args.workers is not None or args.scheduler is not None:
            executor = DaskExecutor(workers=args.workers, scheduler=args.scheduler, retries=2 if args.retries is None else args.retries,
                                    dataset=bool(getattr(args, "dataset", False)))
        summary = run(pipeline, args.output, resume=args.resume, overwrite=args.overwrite,
                      progress=not args.no_progress, on_batch=hook, executor=executor)
        exported = hook.finish(args.output) if hook is not None else None
    except BaseException:
        if hook is not None:
            hook.abort()
        raise
    print(
        f"{summary.output}: {summary.batches_run} batch(es) run, {summary.events} events in "
        f"{summary.seconds:.1f} s ({summary.events_per_second:,.0f} events/s); "
        f"{summary.batches_total} batch(es) in the run"
    )
    if exported is not None:
        print(f"{exported.path}: {exported.rows:,} rows x {len(exported.columns)} columns ({exported.format})")
    _check_signal_found(pipeline, summary.output)
    return 0


def _check_signal_found(pipeline: Pipeline, output: Any) -> None:
    """A HepMC input asked to flag a signal none of its events holds: a check that tested nothing (DataError).

    The store is complete (every event, none flagged ``is_signal``); the error says so, with what to check.
    """
    from sim.generation.hepmc import HepMCInput

    hep = next((p for p in pipeline.passes if isinstance(p, HepMCInput)), None)
    if hep is None or hep.signal is None:
        return
    import mambah

    with mambah.EventStore.open(output, read_only=True) as store:
        found = store.connection.execute("SELECT 1 FROM mc_particles WHERE is_signal LIMIT 1").fetchone()
    if found is None:  # the first flagged row ends the scan
        raise DataError(
            f"--decay {hep.signal!r}: no event of the HepMC input holds that decay (nor its charge conjugate), so "
            f"nothing is flagged is_signal in {output} (its events are complete); check the descriptor against the "
            "file's decays (e.g. mambah query STORE \"SELECT pid, count(*) FROM mc_particles GROUP BY pid\"), "
            "or drop --decay"
        )
