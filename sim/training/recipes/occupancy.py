"""Recipe of the ``occupancy`` model: its trainer and the settings of the shipped model.

``mambah train occupancy --recipe shipped`` (and ``scripts/train_detector_models.py``)
train with :data:`SHIPPED`, which reproduces ``sim/models/occupancy.keras`` from the
reference sample of the script.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from sim.core.registry import register_trainer
from sim.detector.occupancy import OCCUPANCY_TARGETS

__all__ = ("SHIPPED", "COLUMNS", "train_occupancy")

#: Settings of the shipped model.
SHIPPED: dict[str, Any] = {'seed': 11, 'epochs': 12, 'batch_size': 512}

#: Columns the training file must hold.
COLUMNS: tuple[str, ...] = ('n_pv', 'n_tracks', 'event')


@register_trainer("occupancy", columns=COLUMNS, recipe=SHIPPED, help="unconditional Cramér GAN of (nPV, nTracks)")
def train_occupancy(
    data: str | Path,
    *,
    n_pv: str = "n_pv",
    n_tracks: str = "n_tracks",
    event: str | None = "event",
    weight: str | None = None,
    seed: int = 0,
    epochs: int = 20,
    batch_size: int = 512,
    progress: bool = False,
    tree: str | None = None,
    extra_provenance: Mapping[str, Any] | None = None,
) -> Any:
    """Train the (nPV, nTracks) generator.

    Args:
        data: Parquet/ROOT file with per-event (or per-particle, then ``event`` removes
            the repetitions) ``n_pv`` and ``n_tracks`` columns.
        n_pv, n_tracks: column names.
        event: event-number column used to keep one row per event, or ``None``.
        weight: optional weight column.
        seed, epochs, batch_size, progress: :func:`sim.training.train_gan` settings.
        tree: TTree of a ROOT ``data`` file (default: the first).

    Returns:
        :class:`sim.training.TrainedModel` (generator with no conditions).
    """
    from sim.training.gan import train_gan
    from sim.training.passdata import read_training_data

    cols = read_training_data(data, [n_pv, n_tracks, *([event] if event else [])], weight=weight, tree=tree)
    if event:
        _, first = np.unique(np.asarray(cols[event]), return_index=True)
        cols = {k: np.asarray(v)[first] for k, v in cols.items()}
    rng = np.random.default_rng(seed)
    k = np.asarray(cols[n_pv], dtype=np.float64)
    m = np.asarray(cols[n_tracks], dtype=np.float64)
    targets = np.column_stack([
        k + rng.uniform(-0.5, 0.5, k.size),
        np.log(np.maximum(m, 0) + 1.0 + rng.uniform(-0.5, 0.5, m.size)),
    ])
    w = np.asarray(cols[weight], dtype=np.float64) if weight else None
    return train_gan(
        np.zeros((k.size, 0)), targets, w, algorithm="cramer", epochs=epochs, batch_size=batch_size, seed=seed,
        progress=progress, n_noise=4, hidden_generator=(32, 32), hidden_critic=(32, 32), n_critic_features=16,
        n_quantiles=300, condition_names=(), target_names=OCCUPANCY_TARGETS,
        provenance={"data_file": str(data), **(dict(extra_provenance) if extra_provenance else {})},
    )
