"""The ``mambah`` command line.

``mambah info`` and ``mambah query`` are the store's own commands; the others
(``run``, ``train``, ``validate`` from ``sim``, ``export`` from ``ficino``) register
themselves through the entry-point group :data:`COMMAND_GROUP`, so this package
imports neither ``sim`` nor ``ficino``.  Any
:class:`~mambah.errors.MambahError` becomes one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from mambah.errors import ConfigError, MambahError

__all__ = ("main", "build_parser")

#: Entry-point group of the subcommands: ``name = "module:register"``, where
#: ``register(subparsers)`` adds the subcommand (``sim`` registers run/train/validate,
#: ``ficino`` registers export).  Commands are registered in the order of
#: :data:`COMMAND_ORDER` (``run`` before the options other commands add to it).
COMMAND_GROUP = "mambah.commands"
COMMAND_ORDER: tuple[str, ...] = ("run", "train", "validate", "export")


def _commands() -> list[object]:
    from importlib.metadata import entry_points

    eps = list(entry_points(group=COMMAND_GROUP))
    rank = {name: i for i, name in enumerate(COMMAND_ORDER)}
    return sorted(eps, key=lambda ep: (rank.get(ep.name, len(rank)), ep.name))


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

    for ep in _commands():
        ep.load()(sub)  # type: ignore[attr-defined]
    return parser


def cmd_info(args: argparse.Namespace) -> int:
    import json

    from mambah.store import EventStore

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
    from mambah.store import EventStore

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
