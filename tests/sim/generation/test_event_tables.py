"""The full-event truth layout's helpers (sim/generation/_event_tables.py): charges, breadth-first order."""

from __future__ import annotations

import numpy as np
import pytest

from mambah.errors import DataError
from sim.generation._event_tables import (
    KEPT_STATUS,
    STATUS_BEAM,
    STATUS_DECAYED,
    STATUS_FINAL,
    _bfs_order,
    _charge_of,
    _rank_within,
    charges,
    nearest_kept,
)


def test_charges_are_the_species_charges_of_every_line() -> None:
    rng = np.random.default_rng(3)
    species = np.array([211, -211, 321, -321, 2212, -2212, 22, 11, -11, 13, -13, 310, 3122, -3122, 130, 2112, 111, 4122])
    pid = rng.choice(species, (50, 7))
    got = charges(pid)
    assert got.dtype == np.int16 and got.shape == pid.shape
    assert got.tolist() == [[_charge_of(int(p)) for p in row] for row in pid]
    # species seen before and new ones in one call, and an empty call
    assert charges(np.array([-4122, 211, 521])).tolist() == [-1, 1, 1]
    assert charges(np.zeros(0, np.int64)).shape == (0,)


def test_an_id_without_a_charge_is_an_error_naming_it() -> None:
    with pytest.raises(DataError, match="99999999"):
        charges(np.array([211, 99999999]))
    assert charges(np.array([211])).tolist() == [1]  # the table is unharmed


def _bfs_order_by_lexsort(status: np.ndarray, event: np.ndarray, parent: np.ndarray) -> tuple[np.ndarray, ...]:
    """The breadth-first order as written before issue #17's ninth stop (a 3-key lexsort per level)."""
    kept = np.isin(status, KEPT_STATUS)
    anc = nearest_kept(parent, kept)
    rows = np.flatnonzero(kept)
    n = rows.size
    new_of_row = np.full(status.size, -1, np.int64)
    new_of_row[rows] = np.arange(n)
    k_anc = anc[rows]
    mother = np.where(k_anc >= 0, new_of_row[np.maximum(k_anc, 0)], -1)
    beam = status[rows] == STATUS_BEAM
    mother = np.where(beam[np.maximum(mother, 0)] & (mother >= 0), -1, mother)
    mother[beam] = -1
    ev = event[rows]
    depth = np.zeros(n, np.int64)
    has = mother >= 0
    cur = mother.copy()
    while np.any(has):
        depth[has] += 1
        cur = np.where(has, mother[np.maximum(cur, 0)], -1)
        has = cur >= 0
    level_rank = np.zeros(n, np.int64)
    level_order = []
    for d in range(int(depth.max()) + 1 if n else 0):
        sel = np.flatnonzero(depth == d)
        key_m = level_rank[mother[sel]] if d > 0 else np.zeros(sel.size, np.int64)
        o = sel[np.lexsort((sel, key_m, ev[sel]))]
        level_rank[o] = _rank_within(ev[o])
        level_order.append(o)
    order = np.concatenate(level_order) if level_order else np.zeros(0, np.int64)
    order = order[np.argsort(ev[order], kind="stable")]
    return rows, mother, ev, order, depth, level_rank


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_breadth_first_order_matches_the_lexsort_definition(seed: int) -> None:
    """Random forests in shuffled events (lines of an event not contiguous, as Pythia's hard + pile-up records)."""
    rng = np.random.default_rng(seed)
    n = 3000
    event = rng.integers(0, 40, n)
    status = rng.choice([STATUS_FINAL, STATUS_DECAYED, STATUS_BEAM, 0, 0], n)
    parent = np.full(n, -1, np.int64)
    for i in range(n):  # a mother earlier in the record, in the same event, for most lines
        same = np.flatnonzero(event[:i] == event[i])
        if same.size and rng.uniform() < 0.85:
            parent[i] = rng.choice(same)
    got = _bfs_order(status, event, parent)
    want = _bfs_order_by_lexsort(status, event, parent)
    assert int(got[4].max()) >= 4  # deep enough trees to have several levels
    for a, b in zip(got, want, strict=True):
        assert a.dtype == b.dtype and np.array_equal(a, b)
