"""``mambah train pid`` and ``mambah validate pid``.

``mambah train pid --species K --data calib_K.parquet [--algorithm cramer|wgan-gp|bce]
[--weight sweight] [--seed 0] [--epochs 15] [--checkpoint DIR] [--resume] [--output DIR]``
trains the four chained models of one species (:func:`sim.pid.models.train_species_models`)
from a Parquet or ROOT file with the columns :data:`sim.pid.models.REQUIRED_COLUMNS`
and a weight column (``--weight none``: unweighted).

``mambah validate pid [--models DIR] [--species ...] [--report DIR]`` runs
:func:`sim.validation.pid.validate_pid` and prints the summary table.

The ``train`` and ``validate`` commands are shared with other model families: this
module adds its ``pid`` subcommand to them, creating them if no one did.
"""

from __future__ import annotations

import argparse
import logging
from typing import Any

from mambah.cli import nonnegative_int

__all__ = ("register",)

log = logging.getLogger(__name__)


def _attach(subparsers: Any, command: str, help_text: str, dest: str, options: list[tuple[tuple[str, ...], dict[str, Any]]],
            func: Any) -> None:
    """Add kind ``pid`` to ``mambah <command> KIND``, sharing the command with other model families.

    If another module already registered ``command`` with a positional KIND argument
    (e.g. ``mambah train acceptance``), ``pid`` is added to its choices, the options it
    lacks are added, and its handler dispatches ``pid`` here; otherwise the command is
    created with ``pid`` as its only kind.
    """
    parser = subparsers.choices.get(command)
    if parser is None:
        parser = subparsers.add_parser(command, help=help_text)
        parser.add_argument(dest, choices=("pid",), help="model family")
        other = None
    else:
        positional = [a for a in parser._actions if not a.option_strings and a.choices is not None]
        if not positional:
            raise RuntimeError(f"cannot add 'pid' to 'mambah {command}': it has no KIND argument")
        action = positional[0]
        action.choices = (*tuple(action.choices), "pid")
        dest = action.dest
        other = parser.get_default("func")
    known = parser._option_string_actions
    for flags, kwargs in options:
        if not any(f in known for f in flags):
            parser.add_argument(*flags, **kwargs)

    def dispatch(args: argparse.Namespace) -> int:
        if getattr(args, dest) == "pid" or other is None:
            return int(func(args) or 0)
        return int(other(args) or 0)

    parser.set_defaults(func=dispatch)


def register(subparsers: Any) -> None:
    """Add ``train pid`` and ``validate pid`` to the ``mambah`` CLI."""
    from sim.pid.models import SPECIES
    from sim.training.gan import ALGORITHMS

    train_opts: list[tuple[tuple[str, ...], dict[str, Any]]] = [
        (("--species",), {"help": f"pid: species, one of {', '.join(SPECIES)}"}),
        (("--data",), {"required": True, "help": "training file (Parquet or ROOT)"}),
        (("--tree",), {"default": None, "help": "pid: ROOT TTree name (default: the first)"}),
        (("--algorithm",), {"default": "cramer", "help": f"pid: GAN algorithm, {', '.join(ALGORITHMS)}"}),
        (("--weight",), {"default": None, "help": "pid: weight column (default sweight; 'none': unweighted)"}),
        (("--seed",), {"type": nonnegative_int, "default": 0, "help": "training seed (default 0)"}),
        (("--epochs",), {"type": nonnegative_int, "default": None, "help": "pid: GAN epochs (default 15)"}),
        (("--learning-rate",), {"type": float, "default": 1e-3, "help": "pid: GAN learning rate"}),
        (("--lr-schedule",), {"default": "constant",
                              "help": "pid: GAN learning-rate schedule, constant or cosine (decay to 5 %%)"}),
        (("--ema",), {"type": float, "default": None,
                      "help": "pid: average the generator weights with this momentum, e.g. 0.999"}),
        (("--checkpoint",), {"default": None, "help": "pid: per-epoch GAN checkpoints in this folder"}),
        (("--resume",), {"action": "store_true", "help": "pid: continue from --checkpoint"}),
        (("-o", "--output"), {"default": None, "help": "pid: output folder (default pid-models)"}),
        (("--no-progress",), {"action": "store_true", "help": "no progress output"}),
    ]
    _attach(subparsers, "train", "train fast models", "model", train_opts, cmd_train_pid)
    val_opts: list[tuple[tuple[str, ...], dict[str, Any]]] = [
        (("--models",), {"default": None, "help": "pid: model folder (default: the shipped models)"}),
        (("--species",), {"nargs": "+", "default": None, "help": "pid: species (default: all loaded)"}),
        (("--report",), {"default": None, "help": "report folder (pid default: pid-report)"}),
        (("--n-signal",), {"type": nonnegative_int, "default": 20_000, "help": "pid: signal candidates per species"}),
        (("--n-background",), {"type": nonnegative_int, "default": 5_000, "help": "pid: background candidates"}),
    ]
    _attach(subparsers, "validate", "validate fast models against the reference", "model", val_opts,
            cmd_validate_pid)


def cmd_train_pid(args: argparse.Namespace) -> int:
    from mambah.errors import ConfigError
    from sim.pid.models import REQUIRED_COLUMNS, SPECIES, train_species_models
    from sim.training import read_columns
    from sim.training.gan import ALGORITHMS

    if not args.species or args.species not in SPECIES:
        raise ConfigError(f"unknown PID species {args.species!r}; valid: {', '.join(SPECIES)}")
    if args.algorithm not in ALGORITHMS:
        raise ConfigError(f"unknown GAN algorithm {args.algorithm!r}; valid: {', '.join(ALGORITHMS)}")
    epochs = 15 if args.epochs is None else int(args.epochs)
    if epochs < 1:
        raise ConfigError(f"--epochs must be >= 1, got {epochs}")
    output = args.output or "pid-models"
    if args.resume and not args.checkpoint:
        raise ConfigError("--resume needs --checkpoint DIR")
    weight = "sweight" if args.weight is None else (None if args.weight.lower() == "none" else args.weight)
    data = read_columns(args.data, REQUIRED_COLUMNS, weight=weight, tree=args.tree)
    _, times = train_species_models(
        data, args.species, None if weight is None else data[weight], algorithm=args.algorithm,
        seed=args.seed, epochs=epochs, learning_rate=args.learning_rate, lr_schedule=args.lr_schedule,
        ema=args.ema, checkpoint_dir=args.checkpoint,
        resume=args.resume, output_dir=output, progress=not args.no_progress, data_file=str(args.data),
    )
    print(f"{output}: {args.species} PID models trained in "
          + ", ".join(f"{k} {v:.0f} s" for k, v in times.items()))
    return 0


def cmd_validate_pid(args: argparse.Namespace) -> int:
    from sim.pid.models import load_pid_models
    from sim.validation.pid import summary_table, validate_pid

    models = load_pid_models(args.models) if args.models else load_pid_models()
    report = args.report or "pid-report"
    results = validate_pid(models, args.species, report_dir=report, n_signal=args.n_signal,
                           n_background=args.n_background)
    print(summary_table(results), end="")
    print(f"report written to {report}")
    return 0
