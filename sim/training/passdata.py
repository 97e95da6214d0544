"""Reading pass training files and training the pass classifiers (acceptance, efficiency)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mambah.errors import DataError

__all__ = ("read_training_data", "train_pass_classifier")


def read_training_data(
    path: str | Path,
    columns: Sequence[str],
    *,
    weight: str | None = None,
    select: str | None = None,
    tree: str | None = None,
) -> dict[str, np.ndarray]:
    """Read training columns with :func:`sim.training.read_columns`, keep rows where ``select`` is true.

    ``tree`` names the TTree of a ROOT file (default: its first TTree).

    Raises:
        DataError: missing file or column (named), NaN/inf, absent weight column, no rows left.
    """
    from sim.training.data import read_columns

    wanted = list(dict.fromkeys([*columns, *([select] if select else [])]))
    data = read_columns(path, wanted, weight=weight, tree=tree)
    if select:
        keep = np.asarray(data[select]).astype(bool)
        data = {k: np.asarray(v)[keep] for k, v in data.items()}
    n = len(next(iter(data.values())))
    if n < 10:
        raise DataError(f"{path}: only {n} usable rows{f' with {select!r} true' if select else ''}; need at least 10")
    return data


def train_pass_classifier(
    data: str | Path,
    inputs: Sequence[str],
    target: str,
    *,
    n_classes: int,
    output_names: Sequence[str],
    weight: str | None,
    select: str | None,
    tree: str | None,
    provenance: Mapping[str, Any],
    **settings: Any,
) -> Any:
    """Read a training file and train a pass classifier on it (acceptance, efficiency).

    ``settings`` go to :func:`sim.training.train_classifier` (seed, epochs, batch_size,
    hidden, learning_rate, progress); inputs use 300 quantiles.
    """
    from sim.training.classifier import train_classifier

    cols = read_training_data(data, [*inputs, target], weight=weight, tree=tree, select=select)
    x = np.column_stack([np.asarray(cols[c], dtype=np.float64) for c in inputs])
    return train_classifier(
        x, np.asarray(cols[target]).astype(np.int64), cols[weight] if weight else None,
        n_classes=n_classes, n_quantiles=300, input_names=tuple(inputs), output_names=tuple(output_names),
        provenance={"data_file": str(data), "target": target, "select": select, **provenance},
        **settings,
    )


