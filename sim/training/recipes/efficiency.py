"""Recipe of the ``efficiency`` model: its trainer and the settings of the shipped model.

``mambah train efficiency --recipe shipped`` (and ``scripts/train_detector_models.py``)
train with :data:`SHIPPED`, which reproduces ``sim/models/efficiency.keras`` from the
reference sample of the script.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from sim.core.registry import register_trainer
from sim.detector.efficiency import EFFICIENCY_CLASSES, EFFICIENCY_INPUTS

__all__ = ("SHIPPED", "COLUMNS", "train_efficiency")

#: Settings of the shipped model.
SHIPPED: dict[str, Any] = {'seed': 13, 'epochs': 20, 'batch_size': 1024, 'hidden': (128, 128), 'learning_rate': 3e-4}

#: Columns the training file must hold.
COLUMNS: tuple[str, ...] = (*EFFICIENCY_INPUTS, 'track_class', 'forward')


@register_trainer("efficiency", columns=COLUMNS, recipe=SHIPPED, help="4-class classifier {none, Long, Upstream, Downstream}")
def train_efficiency(
    data: str | Path,
    *,
    inputs: Sequence[str] = EFFICIENCY_INPUTS,
    target: str = "track_class",
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
    """Train the track-type classifier on a reference sample.

    Args:
        data: Parquet/ROOT file with ``inputs``, ``target`` (class 0 none, 1 Long,
            2 Upstream, 3 Downstream) and ``select`` columns.
        inputs, target, weight, select, seed, epochs, batch_size, hidden, progress:
            as :func:`sim.detector.acceptance.train_acceptance`.
        tree: TTree of a ROOT ``data`` file (default: the first).

    Returns:
        :class:`sim.training.TrainedModel` (4-class classifier).
    """
    from sim.training.passdata import train_pass_classifier

    return train_pass_classifier(
        data, inputs, target, n_classes=4, output_names=EFFICIENCY_CLASSES, weight=weight, select=select,
        tree=tree, provenance=dict(extra_provenance) if extra_provenance else {},
        epochs=epochs, batch_size=batch_size, seed=seed, hidden=hidden, learning_rate=learning_rate,
        progress=progress,
    )
