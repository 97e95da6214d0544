"""Selection labels from a Ficino cut, for the selection model of the ``preselect`` pass.

``sim`` does not import ``ficino``, so the selection trainer
(:func:`sim.training.recipes.selection.train_selection`) takes its labels as SQL that
returns the ``batch, event`` of the passing events.  :func:`cut_selection` turns a Ficino
cut on the candidate columns into that SQL: it exports the run and event numbers of the
candidates passing the cut to a Parquet file and returns the query reading it::

    sql = cut_selection(store, "K_PIDK > 5 AND K_TRACK_Type = 3 AND p_TRACK_Type = 3 "
                               "AND pi_TRACK_Type = 3 AND mu_TRACK_Type = 3", "passes.parquet")
    model = train_selection(store, selection=sql)

An event passes when at least one of its candidates passes the cut.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from mambah.errors import ExportError
from mambah.store import EventStore

__all__ = ("cut_selection",)


def cut_selection(
    store: EventStore,
    cut: str,
    path: str | os.PathLike[str],
    decay: str | None = None,
    aliases: Sequence[str] | Mapping[str, str] | None = None,
    *,
    overwrite: bool = True,
) -> str:
    """SQL returning ``batch, event`` of the events with ≥ 1 candidate passing ``cut``.

    Args:
        store: a simulated store.
        cut: Ficino cut (DuckDB SQL condition on the candidate columns, e.g. ``K_PIDK > 5``).
        path: Parquet file written with the passing ``runNumber, eventNumber`` (keep it while the SQL is used).
        decay, aliases: the candidates (default: the store's generator decay and its aliases).
        overwrite: replace an existing ``path``.

    Returns:
        ``SELECT DISTINCT runNumber AS batch, eventNumber AS event FROM read_parquet('<path>')``.

    Raises:
        ExportError: from the export (bad cut, decay matching nothing, ...) or a path with a quote.
    """
    from ficino.export import export

    target = Path(path).resolve()
    if "'" in str(target):
        raise ExportError(f"cut_selection: path {target} contains a quote; choose another path")
    export(store, target, decay=decay, aliases=aliases, variables=["runNumber", "eventNumber"], cut=cut,
           fmt="parquet", overwrite=overwrite)
    return f"SELECT DISTINCT runNumber AS batch, eventNumber AS event FROM read_parquet('{target}')"
