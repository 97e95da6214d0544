"""Recipe of the ``acceptance`` model: its trainer and the settings of the shipped model.

``mambah train acceptance --recipe shipped`` (and ``scripts/train_detector_models.py``)
train with :data:`SHIPPED`, which reproduces ``sim/models/acceptance.keras`` from the
reference sample of the script.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from sim.core.registry import register_trainer
from sim.detector.acceptance import ACCEPTANCE_INPUTS

__all__ = ("SHIPPED", "COLUMNS", "train_acceptance")

#: Settings of the shipped model.
SHIPPED: dict[str, Any] = {'seed': 12, 'epochs': 20, 'batch_size': 1024, 'hidden': (128, 128), 'learning_rate': 3e-4}

#: Columns the training file must hold.
COLUMNS: tuple[str, ...] = (*ACCEPTANCE_INPUTS, 'in_acceptance', 'forward')


@register_trainer("acceptance", columns=COLUMNS, recipe=SHIPPED, help="binary classifier of the geometric acceptance")
def train_acceptance(
    data: str | Path,
    *,
    inputs: Sequence[str] = ACCEPTANCE_INPUTS,
    target: str = "in_acceptance",
    weight: str | None = None,
    select: str | None = "forward",
    seed: int = 0,
    epochs: int = 8,
    batch_size: int = 1024,
    hidden: Sequence[int] = (64, 64),
    learning_rate: float = 1e-3,
    progress: bool = False,
    tree: str | None = None,
    extra_provenance: Mapping[str, Any] | None = None,
) -> Any:
    """Train the acceptance classifier on a reference sample (Parquet or ROOT).

    Args:
        data: file with the ``inputs``, ``target`` (bool/0-1) and ``select`` columns.
        inputs: feature columns, in model order.
        target: label column.
        weight: optional per-row weight column.
        select: rows used (default the η window flag ``forward``), or ``None`` for all.
        seed, epochs, batch_size, hidden, learning_rate, progress: training settings.
        tree: TTree of a ROOT ``data`` file (default: the first).

    Returns:
        :class:`sim.training.TrainedModel` (binary classifier).
    """
    from sim.training.passdata import train_pass_classifier

    return train_pass_classifier(
        data, inputs, target, n_classes=1, output_names=("in_acceptance",), weight=weight, select=select,
        tree=tree, provenance={"polarity": 1, **(dict(extra_provenance) if extra_provenance else {})},
        epochs=epochs, batch_size=batch_size, seed=seed, hidden=hidden, learning_rate=learning_rate,
        progress=progress,
    )
