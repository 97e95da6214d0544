"""``mambah train`` and ``mambah validate``: train and validate the detector models.

::

    mambah train acceptance --data sample.parquet [--seed 0] [--epochs N] [--output model.keras]
                 [--inputs f1 f2 ...] [--targets t1 ...] [--weight COL]
    mambah validate [occupancy|acceptance|efficiency|resolution|all] [--events N] [--report DIR]

Training data come from :func:`sim.reference.sample.make_reference_sample` (or any
Parquet/ROOT file with the named columns).  Errors (missing column, NaN, bad model)
are :class:`~mambah.errors.MambahError`: one line on stderr, exit status 2.
"""

from __future__ import annotations

import argparse
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mambah.cli import nonnegative_int, positive_int
from mambah.errors import ConfigError

__all__ = ("register", "train_model", "MODELS")

log = logging.getLogger(__name__)

#: Trainable detector models.
MODELS: tuple[str, ...] = ("acceptance", "efficiency", "resolution", "occupancy")


def train_model(
    which: str,
    data: str | Path,
    *,
    seed: int = 0,
    epochs: int | None = None,
    output: str | Path | None = None,
    inputs: Sequence[str] | None = None,
    targets: Sequence[str] | None = None,
    weight: str | None = None,
    tree: str | None = None,
    progress: bool = False,
) -> tuple[Any, Path | None]:
    """Train one detector model from a file and (optionally) save it.

    Args:
        which: one of :data:`MODELS`.
        data: Parquet or ROOT training file.
        seed: training seed.
        epochs: epochs (default: the model's default).
        output: ``.keras`` path to write (with its ``.json`` sidecar), or ``None``.
        inputs: input feature (classifiers) or condition (resolution) columns.
        targets: target column(s): one label column for classifiers, the residual
            columns for resolution, the ``n_pv n_tracks`` columns for occupancy.
        weight: per-row weight column.
        tree: TTree of a ROOT ``data`` file (default: the first).
        progress: show training progress.

    Returns:
        ``(TrainedModel, saved path or None)``.

    Raises:
        ConfigError: unknown model or bad option combination.
        DataError: missing file or column, NaN/inf, absent weight column.
    """
    from sim.detector.acceptance import train_acceptance
    from sim.detector.efficiency import train_efficiency
    from sim.detector.occupancy import train_occupancy
    from sim.detector.resolution import train_resolution
    from sim.training.io import save_model

    if which not in MODELS:
        raise ConfigError(f"unknown model {which!r}; choose from {list(MODELS)}")
    if output is not None and Path(output).suffix != ".keras":
        raise ConfigError(f"--output {output} must end in '.keras'")
    kwargs: dict[str, Any] = {"seed": seed, "weight": weight, "progress": progress, "tree": tree}
    if epochs is not None:
        kwargs["epochs"] = epochs
    if which in ("acceptance", "efficiency"):
        if inputs:
            kwargs["inputs"] = tuple(inputs)
        if targets:
            if len(targets) != 1:
                raise ConfigError(f"{which} takes one --targets column (the label), got {list(targets)}")
            kwargs["target"] = targets[0]
        trainer = train_acceptance if which == "acceptance" else train_efficiency
    elif which == "resolution":
        if inputs:
            kwargs["conditions"] = tuple(inputs)
        if targets:
            kwargs["targets"] = tuple(targets)
        trainer = train_resolution
    else:
        if inputs:
            raise ConfigError("occupancy takes no --inputs (it is an unconditional generator)")
        if targets:
            if len(targets) != 2:
                raise ConfigError(f"occupancy takes two --targets (n_pv n_tracks columns), got {list(targets)}")
            kwargs["n_pv"], kwargs["n_tracks"] = targets
        trainer = train_occupancy
    t0 = time.perf_counter()
    model = trainer(data, **kwargs)
    model.provenance["training_seconds"] = round(time.perf_counter() - t0, 1)
    path = save_model(model, output) if output is not None else None
    return model, path


def cmd_train(args: argparse.Namespace) -> int:
    output = args.output or f"{args.model}.keras"
    model, path = train_model(
        args.model, args.data, seed=args.seed, epochs=args.epochs, output=output, inputs=args.inputs,
        targets=args.targets, weight=args.weight, tree=getattr(args, "tree", None), progress=not args.no_progress,
    )
    final = {k: round(v[-1], 5) for k, v in model.history.items() if v}
    print(f"trained {args.model} model in {model.provenance['training_seconds']} s; final {final}; wrote {path}")
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    from sim.validation.detector import validate

    report = validate(args.detector, events=args.events, seed=args.seed, report_dir=args.report)
    for line in report.summary_lines():
        print(line)
    failed = [c.name for c in report.failed()]  # each check against its own threshold (THRESHOLDS)
    if args.report:
        print(f"report written to {args.report}")
    print("PASS" if not failed else f"outside the thresholds: {', '.join(failed)}")
    return 0 if not failed or not args.strict else 1


def register(subparsers: Any) -> None:
    """Add ``train`` and ``validate`` to the ``mambah`` command line."""
    train = subparsers.add_parser("train", help="train a detector model from a Parquet/ROOT file")
    train.add_argument("model", choices=MODELS)
    train.add_argument("--data", required=True, help="training file (Parquet or ROOT)")
    train.add_argument("--seed", type=nonnegative_int, default=0, help="training seed (default 0)")
    train.add_argument("--epochs", type=positive_int, help="epochs (default: the model's)")
    train.add_argument("-o", "--output", help="model file, .keras (default <model>.keras)")
    train.add_argument("--inputs", nargs="+", help="input feature / condition columns")
    train.add_argument("--targets", nargs="+", help="target column(s)")
    train.add_argument("--weight", help="per-row weight column")
    train.add_argument("--tree", help="TTree name of a ROOT --data file (default: the first TTree)")
    train.add_argument("--no-progress", action="store_true", help="no progress output")
    train.set_defaults(func=cmd_train)

    val = subparsers.add_parser("validate", help="validate the detector models against the reference detector")
    val.add_argument("detector", nargs="?", default="all", choices=("all", *MODELS))
    val.add_argument("--events", type=positive_int, default=20_000, help="held-out events (default 20000)")
    val.add_argument("--seed", type=nonnegative_int, default=2024, help="seed of the held-out sample (default 2024)")
    val.add_argument("--report", help="folder for plots and summary.json")
    val.add_argument("--strict", action="store_true", help="exit 1 when a threshold is not met")
    val.set_defaults(func=cmd_validate)
