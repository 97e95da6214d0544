"""Decay-tree navigation over ``mc_particles``, vectorised as SQL joins.

Each helper returns an Arrow table; ``where`` is an SQL condition on the
starting particles (alias ``m``), e.g. ``"m.pid = 5122"``; ``batch`` restricts
to one batch or a list of batches.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import pyarrow as pa

from mambah.descriptor import DecayNode, default_aliases, parse_descriptor
from mambah.errors import DecayError

if TYPE_CHECKING:
    from mambah.store import EventStore

__all__ = ("daughters", "mother", "descendants", "match_decay", "MC_COLUMNS")

#: mc_particles columns copied into each column group by :func:`match_decay`.
MC_COLUMNS = ("index", "pid", "px", "py", "pz", "e", "mass", "charge", "prod_vertex", "decay_vertex", "mother")


def _batch_filter(alias: str, batch: int | Sequence[int] | None) -> tuple[str, list[object]]:
    if batch is None:
        return "TRUE", []
    batches = [int(batch)] if isinstance(batch, int) else [int(b) for b in batch]
    return f"{alias}.batch IN (SELECT unnest(?))", [batches]


def daughters(store: EventStore, where: str = "TRUE", batch: int | Sequence[int] | None = None) -> pa.Table:
    """Direct daughters of the particles selected by ``where``.

    Returns columns ``batch, event, mother_index, mother_pid`` and all
    ``mc_particles`` columns of the daughter.
    """
    bf, params = _batch_filter("m", batch)
    return store.query(
        f"""SELECT m.batch, m.event, m."index" AS mother_index, m.pid AS mother_pid, d.* EXCLUDE (batch, event)
            FROM mc_particles m JOIN mc_particles d
              ON d.batch = m.batch AND d.event = m.event AND d.mother = m."index"
            WHERE ({where}) AND {bf}
            ORDER BY m.batch, m.event, m."index", d."index" """,
        params,
    )


def mother(store: EventStore, where: str = "TRUE", batch: int | Sequence[int] | None = None) -> pa.Table:
    """The mother of each particle selected by ``where`` (alias ``m`` is the child).

    Returns ``batch, event, child_index, child_pid`` and the mother's columns.
    """
    bf, params = _batch_filter("m", batch)
    return store.query(
        f"""SELECT m.batch, m.event, m."index" AS child_index, m.pid AS child_pid, p.* EXCLUDE (batch, event)
            FROM mc_particles m JOIN mc_particles p
              ON p.batch = m.batch AND p.event = m.event AND p."index" = m.mother
            WHERE ({where}) AND {bf}
            ORDER BY m.batch, m.event, m."index" """,
        params,
    )


def descendants(store: EventStore, where: str = "TRUE", batch: int | Sequence[int] | None = None) -> pa.Table:
    """All descendants (daughters, granddaughters, ...) of the particles selected by ``where``.

    A recursive CTE: one query for the whole store.  Returns ``batch, event,
    ancestor_index, generation`` (1 = daughter) and the descendant's columns.
    """
    bf, params = _batch_filter("m", batch)
    return store.query(
        f"""WITH RECURSIVE tree(batch, event, ancestor_index, "index", generation) AS (
                SELECT m.batch, m.event, m."index", m."index", 0
                FROM mc_particles m WHERE ({where}) AND {bf}
              UNION ALL
                SELECT t.batch, t.event, t.ancestor_index, d."index", t.generation + 1
                FROM tree t JOIN mc_particles d
                  ON d.batch = t.batch AND d.event = t.event AND d.mother = t."index")
            SELECT t.batch, t.event, t.ancestor_index, t.generation, p.* EXCLUDE (batch, event)
            FROM tree t JOIN mc_particles p
              ON p.batch = t.batch AND p.event = t.event AND p."index" = t."index"
            WHERE t.generation > 0
            ORDER BY t.batch, t.event, t.ancestor_index, p."index" """,
        params,
    )


def match_decay(
    store: EventStore,
    descriptor: str | DecayNode,
    *,
    aliases: Sequence[str] | None = None,
    columns: Sequence[str] = MC_COLUMNS,
    batch: int | Sequence[int] | None = None,
    cc: bool | None = None,
) -> pa.Table:
    """Flatten a decay descriptor: one row per matching MC candidate.

    Each particle of the descriptor gets a column group ``<alias>_<column>``
    (e.g. ``Lc_px``); rows also carry ``batch`` and ``event``.  The match is
    exact: a node matches a particle with its PDG id whose daughters are
    exactly the node's children (in any order; identical daughters are
    assigned in index order, one row per candidate).

    Args:
        store: the event store.
        descriptor: a descriptor string (``[...]CC`` matches the conjugate too)
            or a parsed :class:`~mambah.descriptor.DecayNode`.
        aliases: one per node in breadth-first order; default LHCb-like
            (:func:`~mambah.descriptor.default_aliases`).
        columns: ``mc_particles`` columns to copy per particle.
        batch: restrict to a batch or batches.
        cc: also match the charge conjugate (default: as the descriptor says).

    Raises:
        DecayError: aliases do not match the descriptor.
    """
    if isinstance(descriptor, str):
        tree, desc_cc = parse_descriptor(descriptor)
    else:
        tree, desc_cc = descriptor, False
    use_cc = desc_cc if cc is None else cc
    nodes = tree.walk()
    names = list(aliases) if aliases is not None else default_aliases(tree)
    if len(names) != len(nodes):
        raise DecayError(f"{len(names)} aliases given for {len(nodes)} particles of {tree}")
    if len(set(names)) != len(names):
        raise DecayError(f"aliases must be unique, got {names}")
    sql, params = _match_sql(tree, names, columns, batch)
    if use_cc and tree.conjugate().walk() != nodes:
        sql_cc, params_cc = _match_sql(tree.conjugate(), names, columns, batch)
        sql = f"({sql}) UNION ALL ({sql_cc})"
        params = params + params_cc
    return store.query(f"SELECT * FROM ({sql}) ORDER BY batch, event, {names[0]}_index", params)


def _match_sql(tree: DecayNode, names: list[str], columns: Sequence[str], batch: int | Sequence[int] | None) -> tuple[str, list[object]]:
    nodes = tree.walk()
    alias = {id(n): f"t{i}" for i, n in enumerate(nodes)}
    joins: list[str] = []
    conds: list[str] = []
    for node in nodes:
        a = alias[id(node)]
        conds.append(f"{a}.pid = {node.pid}")
        if node.children:
            conds.append(f"{a}.last_daughter - {a}.first_daughter + 1 = {len(node.children)}")
        prev_same: dict[int, str] = {}
        for child in node.children:
            c = alias[id(child)]
            joins.append(
                f'JOIN mc_particles {c} ON {c}.batch = {a}.batch AND {c}.event = {a}.event AND {c}.mother = {a}."index"'
            )
            if child.pid in prev_same:  # identical daughters: one assignment per candidate
                conds.append(f'{c}."index" > {prev_same[child.pid]}."index"')
            prev_same[child.pid] = c
    bf, params = _batch_filter("t0", batch)
    select = ["t0.batch", "t0.event"] + [
        f'{alias[id(n)]}."{col}" AS {name}_{col}' for n, name in zip(nodes, names) for col in columns
    ]
    sql = f"SELECT {', '.join(select)} FROM mc_particles t0 {' '.join(joins)} WHERE {' AND '.join(conds)} AND {bf}"
    return sql, params
