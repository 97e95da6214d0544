"""``mambah train pid`` and ``mambah validate pid``.

``mambah train pid --species K --data calib_K.parquet [--algorithm cramer|wgan-gp|bce]
[--weight sweight] [--seed 0] [--epochs 15] [--checkpoint DIR] [--resume] [--output DIR]``
trains the four chained models of one species (:func:`sim.pid.models.train_species_models`)
from a Parquet or ROOT file with the columns :data:`sim.pid.models.REQUIRED_COLUMNS`
and a weight column (``--weight none``: unweighted).

``mambah validate pid [--models DIR] [--species ...] [--report DIR]`` runs
:func:`sim.validation.pid.validate_pid` and prints the summary table.

The ``train`` and ``validate`` commands (:mod:`sim.cli.train`, :mod:`sim.cli.validate`)
take their kinds from the registry; this module gives the ``pid`` kind its options.
"""

from __future__ import annotations

import argparse
import logging
import math
from pathlib import Path

from mambah.cli import nonnegative_int

__all__ = ("add_train_arguments", "add_validate_arguments", "cmd_train_pid", "cmd_validate_pid")

log = logging.getLogger(__name__)


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``mambah train pid``."""
    from sim.pid.models import SPECIES
    from sim.training.gan import ALGORITHMS

    parser.add_argument("--species", help=f"species, one of {', '.join(SPECIES)}")
    parser.add_argument("--data", required=True, help="training file (Parquet or ROOT)")
    parser.add_argument("--tree", default=None, help="ROOT TTree name (default: the first)")
    parser.add_argument("--algorithm", default="cramer", help=f"GAN algorithm, {', '.join(ALGORITHMS)}")
    parser.add_argument("--weight", default=None, help="weight column (default sweight; 'none': unweighted)")
    parser.add_argument("--seed", type=nonnegative_int, default=0, help="training seed (default 0)")
    parser.add_argument("--epochs", type=nonnegative_int, default=None, help="GAN epochs (default 15)")
    parser.add_argument("--learning-rate", type=float, default=1e-3, help="GAN learning rate")
    parser.add_argument("--lr-schedule", default="constant",
                        help="GAN learning-rate schedule, constant or cosine (decay to 5 %%)")
    parser.add_argument("--ema", type=float, default=None,
                        help="average the generator weights with this momentum, e.g. 0.999")
    parser.add_argument("--checkpoint", default=None, help="per-epoch GAN checkpoints in this folder")
    parser.add_argument("--resume", action="store_true", help="continue from --checkpoint")
    parser.add_argument("-o", "--output", default=None, help="output folder (default pid-models)")
    parser.add_argument("--overwrite", action="store_true", help="replace the species' models already in --output")
    parser.add_argument("--no-progress", action="store_true", help="no progress output")


def add_validate_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``mambah validate pid``."""
    parser.add_argument("--models", default=None, help="model folder (default: the shipped models)")
    parser.add_argument("--species", nargs="+", default=None, help="species (default: all loaded)")
    parser.add_argument("--report", default=None, help="report folder (default pid-report)")
    parser.add_argument("--n-signal", type=nonnegative_int, default=20_000, help="signal candidates per species")
    parser.add_argument("--n-background", type=nonnegative_int, default=5_000, help="background candidates")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a threshold is not met")


def cmd_train_pid(args: argparse.Namespace) -> int:
    from mambah.errors import ConfigError
    from sim.pid.models import REQUIRED_COLUMNS, SPECIES
    from sim.training import read_columns
    from sim.training.gan import ALGORITHMS
    from sim.training.recipes.pid import train_species_models

    if not args.species or args.species not in SPECIES:
        raise ConfigError(f"unknown PID species {args.species!r}; valid: {', '.join(SPECIES)}")
    if args.algorithm not in ALGORITHMS:
        raise ConfigError(f"unknown GAN algorithm {args.algorithm!r}; valid: {', '.join(ALGORITHMS)}")
    epochs = 15 if args.epochs is None else int(args.epochs)
    if epochs < 1:
        raise ConfigError(f"--epochs must be >= 1, got {epochs}")
    if not (math.isfinite(args.learning_rate) and args.learning_rate > 0):
        raise ConfigError(f"--learning-rate must be a finite number > 0, got {args.learning_rate}")
    output = args.output or "pid-models"
    present = [f"{args.species}_{part}.keras" for part in ("rich", "ismuon", "muonll", "global")
               if (Path(output) / f"{args.species}_{part}.keras").exists()]
    if present and not (getattr(args, "overwrite", False) or args.resume):  # they were replaced after the training
        raise ConfigError(f"{output} already holds {', '.join(present)}; pass --overwrite to replace them, --resume to "
                          "continue a --checkpoint run, or choose another -o")
    if args.resume and not args.checkpoint:
        raise ConfigError("--resume needs --checkpoint DIR")
    from sim.core.io import check_model_output

    check_model_output(Path(output) / f"{args.species}_rich.keras")  # the folder, before the training
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
    checks = [c for r in results.values() for c in r.checks()]  # each against its own threshold (THRESHOLDS)
    for _, _, line in checks:
        print(line)
    failed = [name for name, ok, _ in checks if not ok]
    print(f"report written to {report}")
    print("PASS" if not failed else f"outside the thresholds: {', '.join(failed)}")
    return 0 if not failed or not getattr(args, "strict", False) else 1
