"""The ``mambah`` command line.

``mambah run`` (generate + detector passes into a store), ``mambah info``,
``mambah query``; further subcommands (``train``, ``validate``, ``export``)
register themselves through :data:`SUBCOMMANDS`.  Any
:class:`~mambah.errors.MambahError` becomes one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from .errors import ConfigError, MambahError

__all__ = ("main", "build_parser")

#: "module:function" adding a subcommand to the parser: ``register(subparsers)``.
SUBCOMMANDS: list[str] = [
    "sim.cli_detector:register",
    "sim.cli_pid:register",
    "ficino.cli:register",
]


def nonnegative_int(text: str) -> int:
    """argparse type: an integer >= 0 (seeds, retries, counts)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {text!r}")
    return value


def positive_int(text: str) -> int:
    """argparse type: an integer > 0 (events, batch sizes, epochs)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mambah", description="Mambah: ultra-fast simulation into a DuckDB event store.")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    run = sub.add_parser("run", help="generate events through the pipeline into a store")
    run.add_argument("--config", help="pipeline config file (TOML or YAML); default: the built-in job")
    run.add_argument("--decay", help="decay descriptor, e.g. 'B+ -> (J/psi -> mu+ mu-) K+'")
    run.add_argument("--dec-file", help="EvtGen .dec file (all modes with their branching fractions)")
    run.add_argument("--mother", help="decaying particle of --dec-file (default: its first Decay block)")
    run.add_argument("--events", type=positive_int, help="number of events (default 100000)")
    run.add_argument("--batch-size", type=positive_int, help="events per batch (default 25000)")
    run.add_argument("--seed", type=nonnegative_int, help="run seed (default 42)")
    run.add_argument("-o", "--output", default="mambah.duckdb", help="output store (default mambah.duckdb)")
    group = run.add_mutually_exclusive_group()
    group.add_argument("--resume", action="store_true", help="finish an interrupted run in --output")
    group.add_argument("--overwrite", action="store_true", help="replace an existing --output")
    run.add_argument("--save-config", metavar="FILE", help="write the pipeline config to FILE and exit")
    run.add_argument("--no-progress", action="store_true", help="no progress bar")
    run.add_argument("--workers", type=positive_int, help="run batches on a local Dask cluster of N processes (needs mambah[dask])")
    run.add_argument("--scheduler", metavar="ADDRESS", help="run batches on an existing Dask cluster, e.g. tcp://host:8786")
    run.add_argument("--retries", type=nonnegative_int, default=2, help="re-runs of a failing batch in a distributed run (default 2)")
    run.set_defaults(func=cmd_run)

    info = sub.add_parser("info", help="summary of a store: tables, batches, seed, schema, pipeline")
    info.add_argument("store")
    info.set_defaults(func=cmd_info)

    query = sub.add_parser("query", help="run SQL on a store")
    query.add_argument("store")
    query.add_argument("sql")
    query.add_argument("--format", choices=("table", "csv", "parquet"), default="table")
    query.add_argument("-o", "--output", help="file for --format csv/parquet (csv: default stdout)")
    query.add_argument("--max-rows", type=positive_int, default=50, help="rows printed with --format table")
    query.set_defaults(func=cmd_query)

    for target in SUBCOMMANDS:
        module, _, func = target.partition(":")
        getattr(importlib.import_module(module), func)(sub)
    return parser


def _pipeline_from_args(args: argparse.Namespace):  # noqa: ANN202
    import dataclasses

    from sim.pipeline import Pipeline
    from sim.runner import default_pipeline

    pipeline = Pipeline.load(args.config) if args.config else default_pipeline()
    changes = {k: v for k, v in (("events", args.events), ("batch_size", args.batch_size), ("seed", args.seed)) if v is not None}
    if changes:
        pipeline = Pipeline(pipeline.passes, dataclasses.replace(pipeline.run, **changes))
    if args.decay and args.dec_file:
        raise ConfigError("give only one of --decay and --dec-file")
    if args.decay or args.dec_file:
        gens = [p for p in pipeline.passes if p.kind == "generator"]
        if not gens:
            raise ConfigError("the pipeline has no generator pass to take --decay/--dec-file")
        if args.decay:
            pipeline = pipeline.replace(gens[0].name, decay=args.decay, dec_file=None, mother=None)
        else:
            pipeline = pipeline.replace(gens[0].name, dec_file=str(Path(args.dec_file).resolve()), mother=args.mother)
    return pipeline.validate()


def cmd_run(args: argparse.Namespace) -> int:
    from sim.runner import check_output, run

    pipeline = _pipeline_from_args(args)
    if args.save_config:
        pipeline.save(args.save_config)
        print(f"wrote {args.save_config}")
        return 0
    check_output(args.output, resume=args.resume, overwrite=args.overwrite)
    # --export (ficino.cli): on_batch hook streaming committed batches into an ntuple
    hook = args.export_hook(args, pipeline) if getattr(args, "export_hook", None) else None
    try:
        if args.workers is not None or args.scheduler is not None:
            from sim.distributed import run_distributed

            summary = run_distributed(
                pipeline, args.output, workers=args.workers, scheduler=args.scheduler, retries=args.retries,
                resume=args.resume, overwrite=args.overwrite, progress=not args.no_progress, on_batch=hook,
            )
        else:
            summary = run(
                pipeline, args.output, resume=args.resume, overwrite=args.overwrite, progress=not args.no_progress, on_batch=hook
            )
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
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    import json

    from .store import EventStore

    with EventStore.open(args.store, read_only=True) as store:
        info = store.info()
    meta = info.pop("metadata")
    print(f"store:          {info['path']}")
    print(f"schema version: {info['schema_version']}")
    print(f"batches:        {info['batches']}")
    print(f"events:         {info['events']}")
    run = json.loads(meta.pop("run", "{}") or "{}")
    if run:
        print(f"run:            events={run.get('events')} batch_size={run.get('batch_size')} seed={run.get('seed')}")
    print("tables:")
    for name, rows in info["tables"].items():
        print(f"  {name:<16}{rows:>14,} rows")
    pipeline = meta.pop("pipeline", None)
    for k, v in meta.items():
        print(f"{k}: {v}")
    if pipeline:
        print("pipeline:")
        print("  " + pipeline.strip().replace("\n", "\n  "))
    return 0


def cmd_query(args: argparse.Namespace) -> int:
    from .store import EventStore

    with EventStore.open(args.store, read_only=True) as store:
        table = store.query(args.sql)
    if args.format == "parquet":
        if not args.output:
            raise ConfigError("--format parquet needs --output FILE")
        import pyarrow.parquet as pq

        pq.write_table(table, args.output)
        print(f"wrote {table.num_rows} rows to {args.output}")
    elif args.format == "csv":
        import pyarrow.csv as pacsv

        if args.output:
            pacsv.write_csv(table, args.output)
            print(f"wrote {table.num_rows} rows to {args.output}")
        else:
            sys.stdout.write(table.to_pandas().to_csv(index=False))
    else:
        import pandas as pd

        with pd.option_context("display.max_rows", args.max_rows, "display.max_columns", 50, "display.width", 200):
            print(table.slice(0, args.max_rows).to_pandas().to_string(index=False))
        if table.num_rows > args.max_rows:
            print(f"... {table.num_rows} rows in all")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``mambah`` command; returns the exit status."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING - 10 * min(args.verbose, 2), format="%(levelname)s %(name)s: %(message)s")
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except MambahError as err:
        print(f"mambah: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("mambah: interrupted; complete batches are kept (finish with --resume)", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into e.g. `head`
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


def entry_point() -> None:  # pragma: no cover - exercised through the console script
    """The ``mambah`` console script: run :func:`main` and leave without interpreter teardown.

    Every store is closed and every file flushed by then; skipping the teardown avoids
    the shutdown-order noise of the TensorFlow and DuckDB extension modules
    ("nanobind: leaked ..." on stderr), which would bury the one-line summary.
    """
    code = main()
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except OSError:
            pass
    os._exit(code)


if __name__ == "__main__":  # pragma: no cover
    entry_point()
