"""Recipe of the ``resolution`` model: its trainer and the settings of the shipped model.

``mambah train resolution --recipe shipped`` (and ``scripts/train_detector_models.py``)
train with :data:`SHIPPED`, which reproduces ``sim/models/resolution.keras`` from the
reference sample of the script.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from sim.core.registry import register_trainer
from sim.detector.features import add_derived
from sim.detector.resolution import RESOLUTION_CONDITIONS, RESOLUTION_TARGETS

__all__ = ("SHIPPED", "COLUMNS", "train_resolution")

#: Settings of the shipped model.
SHIPPED: dict[str, Any] = {'seed': 14, 'epochs': 40, 'batch_size': 512, 'max_rows': 150_000, 'learning_rate': 5e-4, 'lr_schedule': 'cosine', 'ema': 0.999}

#: Columns the training file must hold.
COLUMNS: tuple[str, ...] = ('track_type', *(c for c in RESOLUTION_CONDITIONS if not c.startswith('is_')), *RESOLUTION_TARGETS, 'reconstructed')


@register_trainer("resolution", columns=COLUMNS, recipe=SHIPPED, help="conditional Cramér GAN of the track residuals")
def train_resolution(
    data: str | Path,
    *,
    conditions: Sequence[str] = RESOLUTION_CONDITIONS,
    targets: Sequence[str] = RESOLUTION_TARGETS,
    weight: str | None = None,
    select: str | None = "reconstructed",
    seed: int = 0,
    epochs: int = 10,
    batch_size: int = 512,
    algorithm: str = "cramer",
    learning_rate: float = 1e-3,
    lr_schedule: str = "constant",
    ema: float | None = None,
    max_rows: int | None = None,
    progress: bool = False,
    tree: str | None = None,
    extra_provenance: Mapping[str, Any] | None = None,
) -> Any:
    """Train the residual GAN on the reconstructed tracks of a reference sample.

    Args:
        data: Parquet/ROOT file with ``track_type``, the truth feature columns and the
            targets (``reconstructed`` selects the rows; default).
        conditions, targets: column names (``is_upstream``/``is_downstream``/``is_long``
            are derived from ``track_type``).
        weight: optional weight column.
        select: boolean column selecting the rows; ``None`` for all.
        seed, epochs, batch_size, algorithm, learning_rate, lr_schedule, ema:
            :func:`sim.training.train_gan` settings.
        max_rows: use at most this many rows (the first ones).
        tree: TTree of a ROOT ``data`` file (default: the first).

    Returns:
        :class:`sim.training.TrainedModel` (generator).
    """
    from sim.training.gan import train_gan
    from sim.training.passdata import read_training_data

    derived = {"is_long", "is_upstream", "is_downstream"}
    need = [c for c in conditions if c not in derived] + list(targets)
    if derived & set(conditions):
        need.append("track_type")
    cols = add_derived(read_training_data(data, need, weight=weight, tree=tree, select=select))
    rows = slice(None, max_rows)
    c = np.column_stack([np.asarray(cols[k], dtype=np.float64)[rows] for k in conditions])
    t = np.column_stack([np.asarray(cols[k], dtype=np.float64)[rows] for k in targets])
    w = np.asarray(cols[weight], dtype=np.float64)[rows] if weight else None
    return train_gan(
        c, t, w, algorithm=algorithm, epochs=epochs, batch_size=batch_size, seed=seed, progress=progress,
        learning_rate=learning_rate, lr_schedule=lr_schedule, ema=ema,
        n_noise=8, hidden_generator=(64, 64, 64), hidden_critic=(64, 64, 64), n_quantiles=300,
        condition_names=tuple(conditions), target_names=tuple(targets),
        provenance={"data_file": str(data), "select": select, **(dict(extra_provenance) if extra_provenance else {})},
    )
