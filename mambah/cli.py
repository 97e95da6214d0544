"""The ``mambah`` command line.

``mambah info``, ``query``, ``check`` and ``merge`` are the store's own commands; the others
(``run``, ``train``, ``validate`` from ``sim``, ``export`` from ``ficino``) register
themselves through the entry-point group :data:`COMMAND_GROUP`, so this package
imports neither ``sim`` nor ``ficino``; a package adds options to another package's command
through :data:`OPTIONS_GROUP` (``ficino`` adds ``--export`` to ``run``).  Only the command named
on the command line is registered (``mambah run`` does not import the trainers); ``mambah``,
``mambah --help`` and an unknown command register them all.  Any
:class:`~mambah.errors.MambahError` becomes one line on stderr and exit status 2.
"""

from __future__ import annotations

import os
import signal
import sys

from mambah import _early_signal, _is_command

if __name__ == "__main__" or _is_command():  # the command, not an import
    for _sig in (signal.SIGINT, signal.SIGTERM):
        if signal.getsignal(_sig) is not signal.SIG_IGN:
            signal.signal(_sig, _early_signal)

# imported after the early signal handlers are in place
import argparse
import contextlib
import errno
import logging
from collections.abc import Sequence
from typing import Any

from mambah.errors import ConfigError, MambahError

__all__ = ("main", "build_parser", "OneLineParser")

#: Entry-point group of the subcommands: ``name = "module:register"``, where
#: ``register(subparsers)`` adds the subcommand (``sim`` registers run/train/validate,
#: ``ficino`` registers export).  Commands are registered in the order of
#: :data:`COMMAND_ORDER` (``run`` before the options other commands add to it).
COMMAND_GROUP = "mambah.commands"
COMMAND_ORDER: tuple[str, ...] = ("run", "train", "validate", "export")
#: Entry-point group of options added to another package's command: ``command = "module:register"``,
#: where ``register(parser)`` adds options to the parser of ``command`` (``run = ficino.cli:register_run_options``).
OPTIONS_GROUP = "mambah.command_options"


def _commands(group: str = COMMAND_GROUP) -> list[Any]:
    from importlib.metadata import entry_points

    eps = list(entry_points(group=group))
    rank = {name: i for i, name in enumerate(COMMAND_ORDER)}
    return sorted(eps, key=lambda ep: (rank.get(ep.name, len(rank)), ep.name))


def command_of(argv: Sequence[str]) -> str | None:
    """The sub-command named in ``argv`` (the first token that is not an option; the top-level
    options take no value), or ``None``."""
    for token in argv:
        if token == "--":
            return None
        if not token.startswith("-"):
            return token
    return None


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


class OneLineParser(argparse.ArgumentParser):
    """An :class:`argparse.ArgumentParser` whose usage errors are one line (and exit status 2).

    argparse prints the whole usage block before the message; a bad option is bad input
    like any other, so it gets one line naming what is wrong and where the alternatives
    are listed (``--help``).  Sub-command parsers inherit the class.
    """

    def error(self, message: str) -> Any:  # argparse's signature is NoReturn
        self.exit(2, f"{self.prog}: error: {message} ('{self.prog} --help' lists the options)\n")


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The ``mambah`` parser; with ``command``, only that sub-command's entry points are loaded
    (every sub-command when ``command`` is ``None`` or names no registered command)."""
    parser = OneLineParser(prog="mambah", description="Mambah: ultra-fast simulation into a DuckDB event store.")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    info = sub.add_parser("info", help="summary of a store: tables, batches, seed, schema, pipeline")
    info.add_argument("store")
    info.add_argument("--pipeline", action="store_true",
                      help="print the store's pipeline config (TOML, usable with mambah run --config) instead")
    info.set_defaults(func=cmd_info)

    query = sub.add_parser("query", help="run SQL on a store")
    query.add_argument("store")
    query.add_argument("sql")
    query.add_argument("--format", choices=QUERY_FORMATS,
                       help="table (default; printed), csv (stdout or -o) or parquet (-o); with -o alone, from its suffix")
    query.add_argument("-o", "--output", help="file for --format csv/parquet (csv: default stdout); .csv/.parquet/.pq tell the format")
    query.add_argument("--overwrite", action="store_true", help="replace an existing --output file")
    query.add_argument("--max-rows", type=positive_int, default=50, help="rows printed with --format table")
    query.set_defaults(func=cmd_query)

    check = sub.add_parser("check", help="read all of a store: checksums, batches against data rows, schema version")
    check.add_argument("store")
    check.set_defaults(func=cmd_check)

    merge = sub.add_parser("merge", help="copy a dataset store (mambah run --dataset) into one DuckDB store file")
    merge.add_argument("dataset")
    merge.add_argument("output")
    merge.add_argument("--overwrite", action="store_true", help="replace an existing OUTPUT")
    merge.set_defaults(func=cmd_merge)

    eps = _commands()
    if command in sub.choices:  # one of the store's own commands, added above: no entry point needed
        eps = []
    elif any(ep.name == command for ep in eps):
        eps = [ep for ep in eps if ep.name == command]
    for ep in eps:
        ep.load()(sub)  # type: ignore[attr-defined]
    for ep in _commands(OPTIONS_GROUP):
        target = sub.choices.get(ep.name)
        if target is not None:
            ep.load()(target)  # type: ignore[attr-defined]
    return parser


def path_argument(value: str, what: str) -> str:
    """``value`` of a path argument, refused when empty (``''`` would name the current directory).

    Raises:
        ConfigError: ``value`` is empty or blank, naming ``what`` (``"store"``, ``"-o/--output"``).
    """
    if not str(value).strip():
        raise ConfigError(f"empty {what} path {value!r}; give a file name")
    return value


#: formats of ``mambah query --format``
QUERY_FORMATS = ("table", "csv", "parquet")
#: ``mambah query -o`` suffixes that tell the format when ``--format`` is not given
_QUERY_SUFFIXES = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}


def query_format(fmt: str | None, output: str | None, overwrite: bool) -> str:
    """The format of ``mambah query``: ``--format``, else the suffix of ``-o``, else ``table``.

    Raises:
        ConfigError: ``-o`` with ``--format table`` (nothing would be written to it), ``-o`` whose
            suffix tells no format and no ``--format``, ``--format parquet`` without ``-o``,
            ``--overwrite`` without ``-o``.
    """
    if output is not None:
        path_argument(output, "-o/--output")
    if overwrite and output is None:
        raise ConfigError("--overwrite replaces an -o/--output file; give -o FILE or drop --overwrite")
    if fmt is None:
        if output is None:
            return "table"
        suffix = os.path.splitext(output)[1].lower()
        if suffix not in _QUERY_SUFFIXES:
            raise ConfigError(
                f"cannot tell the format of -o {output!r} from its suffix; give --format csv or --format parquet "
                f"(or name it {', '.join(_QUERY_SUFFIXES)})"
            )
        return _QUERY_SUFFIXES[suffix]
    if fmt == "table" and output is not None:
        raise ConfigError(f"--format table prints to the terminal, it writes no -o {output!r}; give --format csv or parquet")
    if fmt == "parquet" and output is None:
        raise ConfigError("--format parquet needs --output FILE")
    return fmt


def cmd_info(args: argparse.Namespace) -> int:
    import json

    from mambah.store import EventStore

    path_argument(args.store, "store")
    with EventStore.open(args.store, read_only=True) as store:
        if args.pipeline:
            text = store.get_metadata("pipeline")
            if not text:
                raise ConfigError(f"store '{args.store}' records no pipeline config")
            print(text.rstrip())
            return 0
        info = store.info()
        # full-event generators: events tried for the kept ones (signal filter), see events.n_tried
        tried = store.query("SELECT count(*) AS kept, sum(n_tried) AS tried FROM events WHERE n_tried IS NOT NULL").to_pylist()[0]
        done = {int(b) for b in store.batches()}
    meta = info.pop("metadata")
    print(f"store:          {info['path']}")
    print(f"schema version: {info['schema_version']}")
    print(f"batches:        {info['batches']}")
    print(f"events:         {info['events']}")
    run = json.loads(meta.pop("run", "{}") or "{}")
    if run:
        print(f"run:            events={run.get('events')} batch_size={run.get('batch_size')} seed={run.get('seed')}")
    gen = json.loads(meta.pop("generator", "{}") or "{}")
    if gen:
        print(f"generator:      {gen.get('generator')} {gen.get('version')} preset={gen.get('preset')} "
              f"sqrt_s={gen.get('sqrt_s_TeV')} TeV nu={gen.get('nu')} signal={gen.get('signal')} settings={gen.get('settings')}")
    if tried["kept"]:
        eff = int(tried["kept"]) / int(tried["tried"])
        line = f"signal filter:  {tried['kept']} events kept of {tried['tried']} generated (efficiency {eff:.4g})"
        if gen.get("sigma_gen_mb"):
            line += f"; sigma_gen {gen['sigma_gen_mb']:.4g} mb -> {gen['sigma_gen_mb'] * eff:.4g} mb kept"
        print(line)
    cut = _acceptance_cut(meta, done)
    if cut is not None:
        kept, looked = cut
        print(f"acceptance cut: {kept} of {looked} signal events kept (efficiency {kept / looked:.4g}; "
              "DaughtersInLHCb: signal daughters at 10-400 mrad charged, 5-400 mrad neutral)")
    print("tables:")
    width = max(16, *(len(name) + 2 for name in info["tables"]))
    for name, rows in info["tables"].items():
        print(f"  {name:<{width}}{rows:>14,} rows")
    pipeline = meta.pop("pipeline", None)
    for k, v in meta.items():
        print(f"{k}: {v}")
    if pipeline:
        passes = _pipeline_passes(pipeline)
        print(f"pipeline:       {len(passes)} passes (the config: mambah info --pipeline {args.store})")
        for line in passes:
            print(f"  {line}")
    return 0


#: ``metadata`` key prefix of the full-event generators' per-batch acceptance-cut counts
#: (``sim.generation._event_tables.CUT_KEY``; mambah does not import sim).
CUT_KEY = "generator_cut/"


def _acceptance_cut(meta: dict[str, str], done: set[int]) -> tuple[int, int] | None:
    """``(kept, tried)`` of the signal acceptance cut over the complete batches; the per-batch rows leave ``meta``.

    ``None`` when the store's generator ran without the cut (or no batch is complete).
    """
    import json

    kept = tried = 0
    for key in [k for k in meta if k.startswith(CUT_KEY)]:
        value = meta.pop(key)
        suffix = key[len(CUT_KEY):]
        if suffix.isdigit() and int(suffix) in done:
            counts = json.loads(value)
            kept, tried = kept + int(counts["kept"]), tried + int(counts["tried"])
    return (kept, tried) if tried else None


def _pipeline_passes(toml_text: str) -> list[str]:
    """One line per pass of a pipeline TOML: name, kind and the decay or model it was given."""
    import tomllib

    try:
        passes = tomllib.loads(toml_text).get("passes", [])
    except tomllib.TOMLDecodeError as err:
        return [f"(unreadable pipeline config: {err})"]
    width = max([len(str(p.get("name", ""))) for p in passes] + [8])
    lines = []
    for p in passes:
        what = [f"{key} = {p[key]!r}" for key in ("decay", "dec_file", "preset", "model", "models") if p.get(key)]
        lines.append(f"{p.get('name', '?')!s:<{width}}  {p.get('kind', '?')!s:<{width}}  {', '.join(what)}".rstrip())
    return lines


def cmd_query(args: argparse.Namespace) -> int:
    from mambah.readonly import (
        check_read_only_sql,
        head,
        lock_down,
        run_interruptible,
        stream,
        write_csv_stream,
        write_result,
    )
    from mambah.store import EventStore

    path_argument(args.store, "store")
    args.format = query_format(args.format, args.output, args.overwrite)
    if args.output is not None and os.path.realpath(args.output) == os.path.realpath(args.store):  # as mambah export
        raise ConfigError(f"output '{args.output}' is the store being queried; choose another output")
    if args.output and args.format in ("csv", "parquet") and os.path.isfile(args.output) and not args.overwrite:
        raise ConfigError(f"output '{args.output}' exists; pass --overwrite to replace it")

    def work(con: object) -> None:
        reader = stream(con, args.sql)  # type: ignore[arg-type]
        try:
            _write_query_result(reader)
        finally:  # the DuckDB result is released now, not when an error's traceback (holding this frame) is collected
            reader.close()

    def _write_query_result(reader: Any) -> None:
        if args.output and args.format in ("csv", "parquet"):
            rows = write_result(reader, args.output, args.format)
            print(f"wrote {rows} rows to {args.output}")
        elif args.format == "csv":
            sys.stdout.flush()
            write_csv_stream(reader, sys.stdout.buffer)  # rows go out as they come
            sys.stdout.buffer.flush()
        else:
            import pandas as pd

            table, more = head(reader, args.max_rows)
            with pd.option_context("display.max_rows", args.max_rows, "display.max_columns", 50, "display.width", 200):
                print(table.to_pandas().to_string(index=False))
            if more:
                print(f"... more rows (first {args.max_rows} shown; --max-rows N for more, --format csv for all)")

    with EventStore.open(args.store, read_only=True) as store:
        con = store.connection
        check_read_only_sql(con, args.sql)  # nothing that writes, attaches, installs or sets
        lock_down(con)
        # results are read in a helper thread: Ctrl-C interrupts DuckDB even inside a long statement
        run_interruptible(con, lambda: work(con))
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    from mambah.check import check_store

    report = check_store(path_argument(args.store, "store"))
    lines = report.lines()
    for line in lines:
        print(f"mambah: error: {line}", file=sys.stderr)
    if lines:
        return 2
    n_batches = report.rows.get("batches", 0)
    n_rows = sum(v for k, v in report.rows.items() if k not in ("batches", "metadata"))
    print(f"{report.path}: ok ({n_batches} batch(es), {n_rows:,} data rows read in full, checksums verified)")
    return 0


def cmd_merge(args: argparse.Namespace) -> int:
    from pathlib import Path

    from mambah.dataset import merge_dataset
    from mambah.errors import StoreError

    path_argument(args.dataset, "dataset")
    path_argument(args.output, "output")
    if not Path(args.dataset).is_dir():
        raise StoreError(f"'{args.dataset}' is not a dataset directory (mambah run --dataset writes one)")
    with merge_dataset(args.dataset, args.output, overwrite=args.overwrite) as store:
        n_batches, n_events = len(store.batches()), store.n_events()
    print(f"{args.output}: {n_batches} batch(es), {n_events} events merged from {args.dataset}")
    return 0


class Terminated(KeyboardInterrupt):
    """SIGTERM (batch systems, Kubernetes, ``kill``): handled like Ctrl-C, exit status 143."""


#: signals received by :func:`main`: an error that follows one (DuckDB turns the exception a signal
#: raised inside a statement into "Query interrupted" or a failed Arrow scan) is still the interruption
_SIGNALLED: list[int] = []


def _on_signal(signum: int, frame: object) -> None:
    _SIGNALLED.append(signum)
    raise Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()


def _store_path(args: argparse.Namespace | None) -> str:
    """The store a command works on, for messages about DuckDB errors."""
    for key in ("store", "output"):
        value = getattr(args, key, None) if args is not None else None
        if value:
            return str(value)
    return "the store"


def _interrupted(err: BaseException, args: argparse.Namespace | None = None) -> int:
    terminated = isinstance(err, Terminated) or signal.SIGTERM in _SIGNALLED
    what = "terminated (SIGTERM)" if terminated else "interrupted"
    command = getattr(args, "command", None)
    if command in (None, "run"):
        print(f"mambah: {what}; complete batches are kept (finish with --resume)", file=sys.stderr)
    else:
        print(f"mambah: {what}", file=sys.stderr)
    return 143 if terminated else 130


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``mambah`` command; returns the exit status.

    Bad input and failed runs (any :class:`~mambah.errors.MambahError`, a DuckDB
    error, a full disk) end in one line on stderr and exit status 2; Ctrl-C in
    130 and SIGTERM in 143, each with one line, whenever they arrive.
    """
    args: argparse.Namespace | None = None
    previous = None
    previous_int = None
    try:
        _SIGNALLED.clear()
        with contextlib.suppress(ValueError):  # not the main thread: leave the signals alone
            previous = signal.signal(signal.SIGTERM, _on_signal)
            if signal.getsignal(signal.SIGINT) in (_early_signal, signal.default_int_handler):
                previous_int = signal.signal(signal.SIGINT, _on_signal)
        parser = build_parser(command_of(sys.argv[1:] if argv is None else argv))
        args, extra = parser.parse_known_args(argv)
        if extra:  # named after the sub-command whose options they are not
            command = getattr(args, "command", None)
            sub = {"validate": "kind", "train": "model"}.get(str(command))
            cmd = " ".join(v for v in (command, getattr(args, sub, None) if sub else None) if isinstance(v, str))
            prog = f"mambah {cmd}".strip()
            print(f"{prog}: error: unrecognized arguments: {' '.join(extra)} ('{prog} --help' lists the options)",
                  file=sys.stderr)
            return 2
        logging.basicConfig(level=logging.WARNING - 10 * min(args.verbose, 2), format="%(levelname)s %(name)s: %(message)s")
        if args.command is None:
            parser.print_help()
            return 2
        return int(args.func(args) or 0)
    except MambahError as err:
        if _SIGNALLED:
            return _interrupted(err, args)
        print(f"mambah: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as err:
        return _interrupted(err, args)
    except BrokenPipeError:  # output piped into e.g. `head`
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except Exception as err:
        if _SIGNALLED:
            return _interrupted(err, args)
        duckdb = sys.modules.get("duckdb")
        if duckdb is not None and isinstance(err, duckdb.InterruptException):
            return _interrupted(KeyboardInterrupt(), args)
        if isinstance(err, RuntimeError) and str(err).startswith("Query interrupted"):  # DuckDB, on a signal
            return _interrupted(err, args)
        if duckdb is not None and isinstance(err, duckdb.Error):
            from mambah.check import duckdb_error_line

            print(f"mambah: error: {duckdb_error_line(err, _store_path(args))}", file=sys.stderr)
            return 2
        if isinstance(err, OSError) and err.errno == errno.ENOSPC:
            written = err.filename or getattr(args, "output", None) or _store_path(args)
            print(f"mambah: error: no space left on device writing '{written}'; nothing partial is kept", file=sys.stderr)
            return 2
        raise
    finally:
        with contextlib.suppress(ValueError, TypeError):
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)
            if previous_int is not None:
                signal.signal(signal.SIGINT, previous_int)


def entry_point() -> None:  # pragma: no cover - exercised through the console script
    """The ``mambah`` console script: run :func:`main` and leave without interpreter teardown.

    Every store is closed and every file flushed by then; skipping the teardown avoids
    the shutdown-order noise of the TensorFlow and DuckDB extension modules
    ("nanobind: leaked ..." on stderr), which would bury the one-line summary.
    TensorFlow's C++ start-up lines are held back (:func:`mambah.quiet.quiet_tensorflow`,
    before anything imports TensorFlow) unless ``-v`` is given.
    """
    from mambah.quiet import quiet_tensorflow, verbosity_from_argv

    quiet_tensorflow(verbosity_from_argv(sys.argv[1:]))
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
