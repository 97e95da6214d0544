"""``mambah export`` and ``mambah run --export`` (entry points in ``setup.cfg``: :func:`register`, :func:`register_run_options`).

``mambah export STORE OUT`` writes the ntuple of a finished store.
``mambah run ... --export OUT`` streams each committed batch into the ntuple
while the run goes: :func:`register_run_options` adds ``--export`` and its options to the
``run`` parser and sets ``args.export_hook`` (:func:`make_run_hook`), which
``mambah.cli.cmd_run`` calls as ``hook = args.export_hook(args, pipeline)``;
the hook is a :class:`ficino.hook.ExportHook` (``on_batch`` callback,
``finish(output)``, ``abort()``).
"""

from __future__ import annotations

import argparse
from typing import Any

from mambah.cli import nonnegative_int, path_argument
from mambah.errors import ExportError

__all__ = ("register", "cmd_export", "make_run_hook", "parse_aliases")


def parse_aliases(text: str | None) -> list[str] | dict[str, str] | None:
    """``"Lb,Lc,mu,nu,p,K,pi"`` (one per particle) or ``"Lb=B,Lc=C"`` (renames) -> aliases for :func:`ficino.export`."""
    if text is None:
        return None
    items = [t.strip() for t in text.split(",") if t.strip()]
    if not items:
        raise ExportError("empty --aliases")
    if any("=" in t for t in items):
        pairs = [t.partition("=") for t in items]
        bad = [t for t, (_, eq, new) in zip(items, pairs) if not eq or not new.strip()]
        if bad:
            raise ExportError(f"--aliases: write OLD=NEW pairs or a plain list, not {', '.join(map(repr, bad))}")
        return {old.strip(): new.strip() for old, _, new in pairs}
    return items


def _variables(text: str | None) -> list[str] | None:
    """``--variables 'PT,M'`` as a list; ``None`` (all) when not given.

    Raises:
        ExportError: the option was given but names no variable (``--variables ''``).
    """
    if text is None:
        return None
    names = [v.strip() for v in text.split(",") if v.strip()]
    if not names:
        raise ExportError(f"--variables {text!r} names no variable; give e.g. 'PT,M' or leave it out for all")
    return names


def register(sub: Any) -> None:
    """Add ``mambah export`` (entry point of ``mambah.commands``)."""
    p = sub.add_parser("export", help="write an analysis ntuple (ROOT, Parquet, CSV) from a store")
    p.add_argument("store", help="event store (DuckDB file)")
    p.add_argument("output", help="output: .root, .parquet/.pq, .csv, or a directory with --format parquet")
    p.add_argument("--decay", help="decay descriptor (default: the store's generator decay)")
    p.add_argument("--aliases", help="aliases, one per particle breadth-first ('Lb,Lc,mu,nu,p,K,pi') or renames ('Lb=B,Lc=C')")
    p.add_argument("--variables", help="comma-separated variables ('PT,M') or columns ('Lc_M'); default all")
    p.add_argument("--tree", help="TTree name of a ROOT output (default DecayTree)")
    p.add_argument("--cut", help="DuckDB SQL selection on the candidate columns, e.g. 'Lc_M > 2200'")
    p.add_argument("--format", choices=("root", "parquet", "csv"), help="output format (default: from the suffix)")
    p.add_argument("--compression", help="LZ4 (default), ZLIB, LZMA, ZSTD or NONE, optionally NAME:LEVEL")
    p.add_argument("--all-candidates", action="store_true", help="all MC-truth candidates, not only reconstructed ones")
    p.add_argument("--seed", type=nonnegative_int, default=0, help="seed of the vertex smearing (default 0)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--build", choices=("auto", "serial", "process"), default="auto",
                   help="build the candidates in this process (serial) or in a worker process while this one writes "
                        "(process); auto (default): the worker for large ROOT exports")
    p.set_defaults(func=cmd_export)


def register_run_options(run: Any) -> None:
    """Add the ``--export`` options to the ``mambah run`` parser ``run`` (entry point of ``mambah.command_options``)."""
    g = run.add_argument_group("ntuple export (ficino)")
    g.add_argument("--export", metavar="OUT", help="also write the ntuple OUT, batch by batch as batches commit")
    g.add_argument("--export-decay", metavar="DECAY", help="decay to export (default: the generator decay)")
    g.add_argument("--export-cut", metavar="CUT", help="selection of the exported candidates")
    g.add_argument("--export-format", choices=("root", "parquet", "csv"), help="ntuple format (default: from the suffix)")
    run.set_defaults(export_hook=make_run_hook)


def cmd_export(args: argparse.Namespace) -> int:
    """``mambah export``."""
    from ficino._worker import shutdown_worker
    from ficino.export import export
    from ficino.writers import resolve_format

    path_argument(args.store, "store")
    path_argument(args.output, "output")
    if args.tree is not None and resolve_format(args.output, args.format) != "root":  # it names a TTree only
        raise ExportError(f"--tree names the TTree of a ROOT output; '{args.output}' is written as "
                          f"{resolve_format(args.output, args.format)}: drop --tree")
    try:
        summary = export(
            args.store, args.output, decay=args.decay, aliases=parse_aliases(args.aliases), variables=_variables(args.variables),
            tree="DecayTree" if args.tree is None else args.tree, fmt=args.format, cut=args.cut, reconstructed_only=not args.all_candidates,
            overwrite=args.overwrite, progress=not args.no_progress, compression=args.compression, seed=args.seed,
            build=args.build,
        )
    finally:
        shutdown_worker()  # the command leaves without interpreter teardown (no atexit): stop the worker here
    print(
        f"{summary.path}: {summary.rows:,} rows x {len(summary.columns)} columns ({summary.format}) from "
        f"{summary.candidates:,} candidates in {summary.batches} batch(es), {summary.seconds:.1f} s"
    )
    return 0


def make_run_hook(args: argparse.Namespace, pipeline: Any) -> Any:
    """The export hook of ``mambah run --export`` (``None`` without ``--export``).

    The decay defaults to the pipeline's generator decay.  ``--overwrite`` and
    ``--resume`` of the run also allow replacing an existing ntuple (a resumed
    run rewrites the whole ntuple).
    """
    if not getattr(args, "export", None):
        given = [flag for flag, key in (("--export-decay", "export_decay"), ("--export-cut", "export_cut"),
                                        ("--export-format", "export_format")) if getattr(args, key, None) is not None]
        if getattr(args, "export", None) is not None:
            path_argument(args.export, "--export")
        if given:
            raise ExportError(f"{', '.join(given)} set(s) the streamed ntuple of --export OUT, which is not given; "
                              "add --export OUT or drop it")
        return None
    from pathlib import Path

    from ficino.hook import Export

    output = getattr(args, "output", None)
    if output is not None and Path(args.export).resolve() == Path(output).resolve():  # the ntuple would replace the store
        raise ExportError(f"--export {args.export} is the store -o {output} itself; give the ntuple another name (e.g. "
                          f"{Path(output).with_suffix('.root')})")

    decay = args.export_decay
    if decay is None:
        gens = [p for p in pipeline.passes if p.kind == "generator"]
        if gens and not getattr(gens[0], "dec_file", None):
            decay = gens[0].decay
        elif gens:
            raise ExportError("the generator reads a DecFile; give the decay to export with --export-decay")
    cfg = Export(
        args.export, decay=decay, fmt=args.export_format, cut=args.export_cut,
        overwrite=bool(args.overwrite or args.resume),
    )
    return cfg.open()
