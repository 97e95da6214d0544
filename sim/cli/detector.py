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
from sim.detector.card import DEFAULT_CARD

__all__ = ("add_train_arguments", "add_validate_arguments", "cmd_train", "cmd_validate", "train_model", "MODELS")

log = logging.getLogger(__name__)

#: Detector models validated by ``mambah validate`` (trainers: :func:`sim.core.registry.trainers`).
MODELS: tuple[str, ...] = ("acceptance", "efficiency", "resolution", "occupancy")


def train_model(
    which: str,
    data: str | Path,
    *,
    seed: int | None = None,
    epochs: int | None = None,
    output: str | Path | None = None,
    inputs: Sequence[str] | None = None,
    targets: Sequence[str] | None = None,
    weight: str | None = None,
    tree: str | None = None,
    recipe: str = "default",
    progress: bool = False,
) -> tuple[Any, Path | None]:
    """Train one detector model from a file with its registered trainer and (optionally) save it.

    Args:
        which: a registered trainer kind (``acceptance``, ``efficiency``, ``resolution``,
            ``occupancy``, ...; :func:`sim.core.registry.trainers`).
        data: Parquet or ROOT training file.
        seed: training seed (default: the recipe's, else 0).
        epochs: epochs (default: the recipe's, else the trainer's default).
        output: ``.keras`` path to write (with its ``.json`` sidecar), or ``None``.
        inputs: input feature (classifiers) or condition (resolution) columns.
        targets: target column(s): one label column for classifiers, the residual
            columns for resolution, the ``n_pv n_tracks`` columns for occupancy.
        weight: per-row weight column.
        tree: TTree of a ROOT ``data`` file (default: the first).
        recipe: ``"shipped"`` trains with the settings of the shipped model (which it
            reproduces from the same sample); ``"default"`` with the trainer's defaults.
        progress: show training progress.

    Returns:
        ``(TrainedModel, saved path or None)``.

    Raises:
        ConfigError: unknown model or recipe, or bad option combination.
        DataError: missing file or column, NaN/inf, absent weight column.
    """
    from sim.core.io import check_model_output, save_model
    from sim.core.registry import trainer

    spec = trainer(which)
    if recipe not in ("default", "shipped"):
        raise ConfigError(f"unknown recipe {recipe!r}; choose 'default' or 'shipped'")
    if output is not None and Path(output).suffix != ".keras":
        raise ConfigError(f"--output {output} must end in '.keras'")
    if output is not None:
        check_model_output(output)  # before the training, not after it
    kwargs: dict[str, Any] = dict(spec.recipe) if recipe == "shipped" else {}
    kwargs.update({"weight": weight, "progress": progress, "tree": tree})
    if seed is not None:
        kwargs["seed"] = seed
    if epochs is not None:
        kwargs["epochs"] = epochs
    if which in ("acceptance", "efficiency"):
        if inputs:
            kwargs["inputs"] = tuple(inputs)
        if targets:
            if len(targets) != 1:
                raise ConfigError(f"{which} takes one --targets column (the label), got {list(targets)}")
            kwargs["target"] = targets[0]
    elif which == "resolution":
        if inputs:
            kwargs["conditions"] = tuple(inputs)
        if targets:
            kwargs["targets"] = tuple(targets)
    elif which == "occupancy":
        if inputs:
            raise ConfigError("occupancy takes no --inputs (it is an unconditional generator)")
        if targets:
            if len(targets) != 2:
                raise ConfigError(f"occupancy takes two --targets (n_pv n_tracks columns), got {list(targets)}")
            kwargs["n_pv"], kwargs["n_tracks"] = targets
    elif inputs or targets:
        raise ConfigError(f"{which} takes no --inputs/--targets")
    t0 = time.perf_counter()
    model = spec.function(data, **kwargs)
    model.provenance["training_seconds"] = round(time.perf_counter() - t0, 1)
    model.provenance["recipe"] = recipe
    model.provenance.setdefault("detector_card", DEFAULT_CARD)  # the reference samples are made on it
    path = save_model(model, output) if output is not None else None
    return model, path


def cmd_train(args: argparse.Namespace) -> int:
    output = args.output or f"{args.model}.keras"
    if Path(output).exists() and not getattr(args, "overwrite", False):  # it was replaced after the training
        raise ConfigError(f"model {output} exists; pass --overwrite to replace it (and its .json sidecar) or choose another -o")
    model, path = train_model(
        args.model, args.data, seed=args.seed, epochs=args.epochs, output=output, inputs=args.inputs,
        targets=args.targets, weight=args.weight, tree=getattr(args, "tree", None), recipe=args.recipe,
        progress=not args.no_progress,
    )
    final = {k: round(v[-1], 5) for k, v in model.history.items() if v}
    print(f"trained {args.model} model in {model.provenance['training_seconds']} s; final {final}; wrote {path}")
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    from sim.validation.detector import validate

    report = validate(args.kind or "all", events=args.events, seed=args.seed, report_dir=args.report)
    for line in report.summary_lines():
        print(line)
    failed = [c.name for c in report.failed()]  # each check against its own threshold (THRESHOLDS)
    if args.report:
        print(f"report written to {args.report}")
    print("PASS" if not failed else f"outside the thresholds: {', '.join(failed)}")
    return 0 if not failed or not args.strict else 1


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``mambah train <detector model>``."""
    parser.add_argument("--data", required=True, help="training file (Parquet or ROOT)")
    parser.add_argument("--seed", type=nonnegative_int, help="training seed (default: the recipe's, else 0)")
    parser.add_argument("--recipe", choices=("default", "shipped"), default="default",
                        help="settings: the trainer's defaults, or those of the shipped model (reproduces it)")
    parser.add_argument("--epochs", type=positive_int, help="epochs (default: the recipe's)")
    parser.add_argument("-o", "--output", help="model file, .keras (default <model>.keras)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --output model")
    parser.add_argument("--inputs", nargs="+", help="input feature / condition columns")
    parser.add_argument("--targets", nargs="+", help="target column(s)")
    parser.add_argument("--weight", help="per-row weight column")
    parser.add_argument("--tree", help="TTree name of a ROOT --data file (default: the first TTree)")
    parser.add_argument("--no-progress", action="store_true", help="no progress output")


def add_validate_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``mambah validate [<detector model>|all]``."""
    parser.add_argument("--events", type=positive_int, default=20_000, help="held-out events (default 20000)")
    parser.add_argument("--seed", type=nonnegative_int, default=2024, help="seed of the held-out sample (default 2024)")
    parser.add_argument("--report", help="folder for plots and summary.json")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a threshold is not met")
