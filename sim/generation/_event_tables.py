"""Generator event records → the store layout of ``events``, ``mc_particles``, ``mc_vertices``.

Shared by the full-event generators (:mod:`sim.generation.pythia`,
:mod:`sim.generation.hepmc`).  Their records are graphs (HepMC: particles between
vertices; Pythia: mother/daughter indices) holding partons, strings and other
documentation lines next to the physical particles.  :func:`layout_tables` keeps
the physical ones and lays them out as the particle-gun generator does:

* kept particles: HepMC status 1 (final state), 2 (decayed) and 4 (beam); every
  other status (documentation, intermediate partons, strings) is dropped and the
  links re-attached: a kept particle's mother is its nearest kept ancestor;
  particles whose nearest kept ancestor is a beam (or who have none) are the
  prompt particles of their interaction (``mother = -1``);
* particles renumbered breadth-first per event: beams and prompt particles first
  (in record order), then level by level, the daughters of a mother contiguous
  (``first_daughter .. last_daughter``) and ordered by their mother's index;
* ``mc_vertices``: index ``0 .. n_interactions-1`` are the primary vertices of the
  interactions (0 = the one holding the signal, else the first), then one decay
  vertex per decayed (status 2) particle in particle order;
  ``mother_particle = -1`` for a primary vertex;
* a prompt particle's ``prod_vertex`` is its interaction's PV, any other's is its
  mother's decay vertex; a beam's ``decay_vertex`` is its interaction's PV (the
  collision; the PV keeps ``mother_particle = -1``).

Everything is vectorised over the whole batch (all events concatenated); the only
loops are over the depth of the decay tree.  Units: MeV, mm, ns.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from mambah.errors import ConfigError, DataError

__all__ = (
    "CUT_KEY",
    "DEFERRED_TRUTH",
    "KEPT_STATUS",
    "LONG_LIVED",
    "STATUS_BEAM",
    "STATUS_DECAYED",
    "STATUS_FINAL",
    "DeferredTruth",
    "GeneratorRecord",
    "charges",
    "check_theta_window",
    "copies_events",
    "copies_signal_rows",
    "daughters_in_acceptance",
    "layout_copies",
    "layout_tables",
    "nearest_kept",
    "signal_cut_efficiency",
    "stored",
    "truth_rows",
    "write_tables",
)

#: HepMC status codes kept in ``mc_particles.status``.
STATUS_FINAL = 1
STATUS_DECAYED = 2
STATUS_BEAM = 4
KEPT_STATUS: tuple[int, ...] = (STATUS_FINAL, STATUS_DECAYED, STATUS_BEAM)
#: Long-lived hadrons (τ > 10 ps) the detector sees decaying in flight: K0S, K0L, Λ, Σ+, Σ-, Ξ0, Ξ-, Ω-.
LONG_LIVED: tuple[int, ...] = (310, 130, 3122, 3222, 3112, 3322, 3312, 3334)
_NEUTRINO_IDS = (12, 14, 16)
#: ``metadata`` key prefix of the per-batch ``daughters_in_acceptance`` counts (``{"tried": ..., "kept": ...}``).
CUT_KEY = "generator_cut/"


@dataclass
class GeneratorRecord:
    """One batch of generator records, all events concatenated (one row per record line).

    Attributes:
        n_events: events in the batch.
        event: ``(n,)`` event number (0-based, within the batch) of each line.
        pid: ``(n,)`` PDG id.
        status: ``(n,)`` HepMC status code (1 final, 2 decayed, 4 beam, others dropped).
        p4: ``(n, 4)`` (px, py, pz, E) [MeV].
        mass: ``(n,)`` generated mass [MeV].
        parent: ``(n,)`` row of the (first) mother line, -1 if none.
        decay_pos: ``(n, 4)`` end-vertex (x, y, z, t) [mm, ns] of decayed lines (anything elsewhere).
        interaction: ``(n,)`` interaction number within the event (0-based, < ``n_interactions``).
        n_interactions: ``(n_events,)`` interactions per event.
        pv: ``(sum(n_interactions), 4)`` primary vertices (x, y, z, t) [mm, ns], event by event,
            interaction by interaction.
        is_signal: ``(n,)`` lines flagged as signal.
        charge: ``(n,)`` charge [e]; computed from ``pid`` when ``None``.
    """

    n_events: int
    event: np.ndarray
    pid: np.ndarray
    status: np.ndarray
    p4: np.ndarray
    mass: np.ndarray
    parent: np.ndarray
    decay_pos: np.ndarray
    interaction: np.ndarray
    n_interactions: np.ndarray
    pv: np.ndarray
    is_signal: np.ndarray
    charge: np.ndarray | None = None


@functools.cache
def _charge_of(pid: int) -> int:
    from particle import Particle
    from particle.particle import InvalidParticle, ParticleNotFound

    try:
        q = Particle.from_pdgid(pid).charge
    except (ParticleNotFound, InvalidParticle, ValueError):
        q = None
    if q is None:  # not in the PDG table (generator-specific codes): from the PDG numbering scheme
        from particle.pdgid import charge as pdg_charge

        q = pdg_charge(pid)
    if q is None:
        raise DataError(f"PDG id {pid} has no known charge; it is not a PDG Monte Carlo id")
    return round(float(q))


class _ChargeTable:
    """The charges of the species seen so far, sorted by PDG id (a cache: lookups by ``searchsorted``).

    The ``(ids, values)`` pair is replaced whole, never changed in place, so a lookup in one
    thread reads a consistent pair while another adds species.
    """

    def __init__(self) -> None:
        self.table = (np.zeros(0, np.int64), np.zeros(0, np.int16))

    def lookup(self, pid: np.ndarray) -> np.ndarray:
        ids, values = self.table
        at = np.minimum(np.searchsorted(ids, pid), max(ids.size - 1, 0))
        if ids.size == 0 or np.any(ids[at] != pid):
            new = np.setdiff1d(pid, ids)
            ids = np.concatenate([ids, new])
            values = np.concatenate([values, np.array([_charge_of(int(p)) for p in new], np.int16)])
            o = np.argsort(ids)
            ids, values = ids[o], values[o]
            self.table = (ids, values)
            at = np.searchsorted(ids, pid)
        return values[at]


_CHARGES = _ChargeTable()


def charges(pid: np.ndarray) -> np.ndarray:
    """Electric charge [e] of each PDG id (``particle`` table, cached per species), int16.

    Looked up in a table of the species seen before (a sorted search: a batch of full
    events holds ~400 species in ~450 000 lines, whose ``np.unique`` sort cost 4x more).
    """
    pid = np.asarray(pid, dtype=np.int64)
    if pid.size == 0:
        return np.zeros(pid.shape, np.int16)
    return _CHARGES.lookup(pid.ravel()).reshape(pid.shape)


def nearest_kept(parent: np.ndarray, kept: np.ndarray) -> np.ndarray:
    """For each line, its nearest kept ancestor (row, -1 if none), by pointer doubling.

    Args:
        parent: ``(n,)`` row of each line's mother, -1 for none.
        kept: ``(n,)`` bool, lines that stay.
    """
    anc = parent.copy()
    for _ in range(64):  # pointer doubling: every line's link skips its dropped ancestors, log2(depth) rounds
        bad = np.flatnonzero(anc >= 0)
        bad = bad[~kept[anc[bad]]]
        if bad.size == 0:
            return anc
        anc[bad] = anc[anc[bad]]
    raise DataError("mother links form a cycle in the generator record")


def _rank_within(group: np.ndarray) -> np.ndarray:
    """0, 1, 2, ... within runs of equal ``group`` values (``group`` sorted)."""
    n = group.size
    if n == 0:
        return np.zeros(0, np.int64)
    start = np.flatnonzero(np.r_[True, group[1:] != group[:-1]])
    counts = np.diff(np.r_[start, n])
    return np.arange(n) - np.repeat(start, counts)


def _bfs_order(
    status: np.ndarray, event: np.ndarray, parent: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The kept lines of a record and their breadth-first order (see the module docstring).

    Args:
        status: ``(n_lines,)`` HepMC status of each line.
        event: ``(n_lines,)`` event of each line.
        parent: ``(n_lines,)`` row of each line's mother, -1 none.

    Returns:
        ``rows`` ``(n,)`` the kept lines; ``mother`` ``(n,)`` the nearest kept non-beam ancestor
        of each (position in ``rows``, -1 for prompt particles and beams); ``ev`` ``(n,)`` their
        events; ``order`` ``(n,)`` positions in ``rows`` sorted by (event, depth, mother's rank
        in its level, row); ``depth`` and ``level_rank`` ``(n,)``: each kept line's depth (0:
        beams and prompt particles) and its rank among the lines of its (event, depth).
    """
    kept = np.isin(status, KEPT_STATUS)
    anc = nearest_kept(parent, kept)
    rows = np.flatnonzero(kept)
    n = rows.size
    new_of_row = np.full(status.size, -1, np.int64)
    new_of_row[rows] = np.arange(n)
    k_anc = anc[rows]
    mother = np.where(k_anc >= 0, new_of_row[np.maximum(k_anc, 0)], -1)
    st = status[rows]
    beam = st == STATUS_BEAM
    mother = np.where(beam[np.maximum(mother, 0)] & (mother >= 0), -1, mother)
    mother[beam] = -1
    ev = event[rows]

    # breadth-first order: depth of every kept particle, then level by level
    depth = np.zeros(n, np.int64)
    below = np.flatnonzero(mother >= 0)  # the lines whose chain of mothers is not yet walked to its top
    cur = mother[below]
    while below.size:
        depth[below] += 1
        cur = mother[cur]
        up = cur >= 0
        below, cur = below[up], cur[up]
    level_rank = np.zeros(n, np.int64)  # rank among the particles of the same (event, depth)
    level_order: list[np.ndarray] = []
    for d in range(int(depth.max()) + 1 if n else 0):
        sel = np.flatnonzero(depth == d)
        ev_sel = ev[sel]
        if d > 0:  # by (event, mother's rank), then row: one stable sort of one key (sel ascends)
            key_m = level_rank[mother[sel]]
            o = sel[np.argsort(ev_sel * (int(key_m.max()) + 1) + key_m, kind="stable")]
        else:
            o = sel[np.argsort(ev_sel, kind="stable")]
        level_rank[o] = _rank_within(ev[o])
        level_order.append(o)
    order = np.concatenate(level_order) if level_order else np.zeros(0, np.int64)
    order = order[np.argsort(ev[order], kind="stable")]  # per event: levels in order, BFS within
    return rows, mother, ev, order, depth, level_rank


def layout_tables(rec: GeneratorRecord) -> dict[str, dict[str, np.ndarray]]:
    """Lay a batch of generator records out as store rows (no ``batch`` column).

    Args:
        rec: the records; see :class:`GeneratorRecord`.

    Returns:
        ``{"events": ..., "mc_particles": ..., "mc_vertices": ...}``, dicts of 1-D arrays
        sorted by (event, index).  ``events`` holds ``event, pv_x/y/z/t`` (the PV of
        interaction 0) and ``n_interactions``; ``mc_particles`` holds ``status``.

    Raises:
        DataError: a mother link pointing outside its event or into a cycle.
    """
    n_ev = int(rec.n_events)
    status = np.asarray(rec.status, dtype=np.int64)
    event = np.asarray(rec.event, dtype=np.int64)
    parent = np.asarray(rec.parent, dtype=np.int64)
    n_lines = status.size
    if parent.size and (parent.max() >= n_lines or (np.any(event[np.maximum(parent, 0)][parent >= 0] != event[parent >= 0]))):
        raise DataError("a mother link points outside its event in the generator record")
    rows, mother, ev, order, _depth, _rank = _bfs_order(status, event, parent)
    n = rows.size
    st = status[rows]
    ev_o = ev[order]
    index = _rank_within(ev_o)
    pos = np.empty(n, np.int64)
    pos[order] = index  # new index within its event, by old kept row
    counts = np.bincount(ev_o, minlength=n_ev)

    mother_o = mother[order]
    mother_idx = np.where(mother_o >= 0, pos[np.maximum(mother_o, 0)], -1)
    ev_start = np.cumsum(counts) - counts
    first = np.full(n, -1, np.int64)
    last = np.full(n, -1, np.int64)
    child = np.flatnonzero(mother_o >= 0)
    if child.size:
        m_at = ev_start[ev_o[child]] + mother_idx[child]  # mother's row in the ordered arrays
        first_v = np.full(n, np.iinfo(np.int64).max)
        last_v = np.full(n, -1)
        np.minimum.at(first_v, m_at, index[child])
        np.maximum.at(last_v, m_at, index[child])
        haskids = last_v >= 0
        first[haskids] = first_v[haskids]
        last[haskids] = last_v[haskids]
        if np.any(last[haskids] - first[haskids] + 1 != np.bincount(m_at, minlength=n)[haskids]):
            raise DataError("daughters are not contiguous after renumbering (internal error)")

    # vertices: PVs first, then one decay vertex per decayed particle, in particle order
    n_int = np.asarray(rec.n_interactions, dtype=np.int64)
    st_o = st[order]
    ro = rows[order]  # the record line of each laid-out particle
    inter_o = np.asarray(rec.interaction, dtype=np.int64)[ro]
    if np.any(inter_o >= n_int[ev_o]) or np.any(inter_o < 0):
        raise DataError("a particle belongs to an interaction its event does not have")
    decayed = st_o == STATUS_DECAYED
    dec_rank = np.cumsum(decayed) - 1
    dec_per_ev = np.bincount(ev_o[decayed], minlength=n_ev)
    dec_start = np.cumsum(dec_per_ev) - dec_per_ev
    dv = np.where(decayed, n_int[ev_o] + dec_rank - dec_start[ev_o], -1)
    dv = np.where(st_o == STATUS_BEAM, inter_o, dv)
    ordered_row = ev_start[ev_o] + np.maximum(mother_idx, 0)
    prod = np.where(mother_idx >= 0, dv[ordered_row], inter_o)
    if np.any(prod < 0):
        raise DataError("a particle's mother is neither decayed nor a beam in the generator record")

    pv = np.asarray(rec.pv, dtype=np.float64).reshape(-1, 4)
    if pv.shape[0] != int(n_int.sum()) or np.any(n_int < 1):
        raise DataError("every event needs at least one interaction with a primary vertex")
    pv_event = np.repeat(np.arange(n_ev), n_int)
    pv_index = _rank_within(pv_event)
    first_pv = np.cumsum(n_int) - n_int
    dpos = np.asarray(rec.decay_pos, dtype=np.float64)[ro[decayed]]
    d_ev = ev_o[decayed]
    v_event = np.concatenate([pv_event, d_ev])
    v_index = np.concatenate([pv_index, dv[decayed]])
    v_pos = np.concatenate([pv, dpos])
    v_mother = np.concatenate([np.full(pv_event.size, -1), index[decayed]])
    vo = np.lexsort((v_index, v_event))

    p4 = np.asarray(rec.p4, dtype=np.float64)[ro]
    pid_o = np.asarray(rec.pid)[ro]
    charge = np.asarray(rec.charge)[ro] if rec.charge is not None else charges(pid_o)
    particles = {
        "event": ev_o.astype(np.int32),
        "index": index.astype(np.int32),
        "pid": pid_o.astype(np.int32),
        "px": p4[:, 0], "py": p4[:, 1], "pz": p4[:, 2], "e": p4[:, 3],
        "mass": np.asarray(rec.mass, dtype=np.float64)[ro],
        "charge": charge.astype(np.int16),
        "mother": mother_idx.astype(np.int32),
        "first_daughter": first.astype(np.int32),
        "last_daughter": last.astype(np.int32),
        "prod_vertex": prod.astype(np.int32),
        "decay_vertex": dv.astype(np.int32),
        "is_signal": np.asarray(rec.is_signal, dtype=bool)[ro],
        "status": st_o.astype(np.int16),
    }
    vertices = {
        "event": v_event[vo].astype(np.int32),
        "index": v_index[vo].astype(np.int32),
        "x": v_pos[vo, 0], "y": v_pos[vo, 1], "z": v_pos[vo, 2], "t": v_pos[vo, 3],
        "mother_particle": v_mother[vo].astype(np.int32),
    }
    events = {
        "event": np.arange(n_ev, dtype=np.int32),
        "pv_x": pv[first_pv, 0], "pv_y": pv[first_pv, 1], "pv_z": pv[first_pv, 2], "pv_t": pv[first_pv, 3],
        "n_interactions": n_int.astype(np.int16),
    }
    return {"events": events, "mc_particles": particles, "mc_vertices": vertices}


def layout_copies(
    base: GeneratorRecord,
    heads: np.ndarray,
    copy_group: np.ndarray,
    signal: GeneratorRecord,
    pv: np.ndarray,
    base_decay_pos: Callable[[np.ndarray, np.ndarray], np.ndarray],
    copies: np.ndarray | None = None,
) -> dict[str, dict[str, np.ndarray]]:
    """:func:`layout_tables` of events that share their record but for one signal decay tree (ReDecay).

    Each output event (a *copy*) is the record of its group, ``base``, with the decay tree of
    the group's signal line replaced by the copy's own tree, ``signal``.  The result equals
    :func:`layout_tables` of the record with every copy written out in full (the group's lines,
    then every copy's signal lines appended after all of them), but the group's breadth-first
    layout is made once and each copy's signal lines are merged into it level by level, so the
    work per copy is one gather per column instead of a sort of its lines.

    Args:
        base: one event per group (``n_groups``), the signal lines' Pythia descendants already
            dropped (status 0); its ``n_interactions`` are the groups'.
        heads: ``(n_groups,)`` row of each group's signal line in ``base``.
        copy_group: ``(n_copies,)`` group of each output event, non-decreasing.
        signal: one event per copy: rows ``0 … n_copies-1`` are the copies' signal lines (``pid``,
            ``status``, ``p4``, ``mass``, ``decay_pos`` of the copy), the rows after them the
            lines of their decay trees (``parent`` links within ``signal``).
        pv: ``(sum of the copies' interactions, 4)`` primary vertices [mm, ns], copy by copy.
        base_decay_pos: ``(rows, copies) -> (k, 4)`` end-vertex position [mm, ns] of the
            ``base`` lines ``rows`` in the copies ``copies``.
        copies: lay out only these copies (sorted copy numbers); ``None``: all.  Each copy's
            rows are those it has in the layout of all copies, and keep its copy number as ``event``.

    Returns:
        The tables of :func:`layout_tables`, one event per copy.

    Raises:
        DataError: a mother link outside its event, a signal line that is not kept in ``base``,
            or the inconsistencies :func:`layout_tables` refuses.
    """
    if copies is not None:
        return _layout_some_copies(base, heads, copy_group, signal, pv, base_decay_pos, np.asarray(copies, np.int64))
    copy_group = np.asarray(copy_group, np.int64)
    heads = np.asarray(heads, np.int64)
    n_g, n_c = int(base.n_events), copy_group.size
    status = np.asarray(base.status, np.int64)
    event = np.asarray(base.event, np.int64)
    parent = np.asarray(base.parent, np.int64)
    n_lines = status.size
    if parent.size and (parent.max() >= n_lines or np.any(event[np.maximum(parent, 0)][parent >= 0] != event[parent >= 0])):
        raise DataError("a mother link points outside its event in the generator record")
    n_int_g = np.asarray(base.n_interactions, np.int64)
    if np.any(n_int_g < 1):
        raise DataError("every event needs at least one interaction with a primary vertex")
    rows, mother, ev, order, depth, level_rank = _bfs_order(status, event, parent)
    n = rows.size
    ev_o = ev[order]
    index = _rank_within(ev_o)
    pos = np.empty(n, np.int64)
    pos[order] = index
    counts = np.bincount(ev_o, minlength=n_g)
    start = np.cumsum(counts) - counts
    mother_o = mother[order]
    mother_idx = np.where(mother_o >= 0, pos[np.maximum(mother_o, 0)], -1)
    depth_o = depth[order]
    rank_o = level_rank[order]
    mrank_o = np.where(mother_o >= 0, level_rank[np.maximum(mother_o, 0)], -1)
    src_o = rows[order]  # base row of each ordered line
    inter_o = np.asarray(base.interaction, np.int64)[src_o]
    if np.any(inter_o >= n_int_g[ev_o]) or np.any(inter_o < 0):
        raise DataError("a particle belongs to an interaction its event does not have")
    kept_of_row = np.full(n_lines, -1, np.int64)
    kept_of_row[rows] = np.arange(n)
    hk = kept_of_row[heads]
    if np.any(hk < 0) or np.any(event[heads] != np.arange(n_g)):
        raise DataError("a signal line of the generator record is not a kept line of its event")
    head_idx, head_depth, head_rank = pos[hk], depth[hk], level_rank[hk]

    # the copies' signal trees, breadth-first within each copy (depth 0: the signal line itself)
    s_status = np.asarray(signal.status, np.int64)
    s_rows, s_mother, s_ev, _s_order, s_depth, s_rank = _bfs_order(
        s_status, np.asarray(signal.event, np.int64), np.asarray(signal.parent, np.int64))
    if s_rows.size < n_c or np.any(s_rows[:n_c] != np.arange(n_c)) or np.any(s_depth[:n_c] != 0):
        raise DataError("every copy needs its signal line as the root of its decay tree (internal error)")
    n_levels = int(s_depth.max()) if s_depth.size else 0  # J: levels below the signal line
    tree = np.flatnonzero(s_depth > 0)  # kept signal lines below the heads (positions in s_rows)
    k = np.zeros((n_c, n_levels + 1), np.int64)
    np.add.at(k, (s_ev[tree], s_depth[tree]), 1)
    cum_k = np.cumsum(k, axis=1)  # cum_k[c, j] = lines of copy c at relative depths 1 … j
    g_of = copy_group
    big_d = int(depth_o.max() if n else 0) + n_levels + 2
    big_m = int(counts.max() if n_g else 0) + 2
    key = (ev_o * big_d + depth_o) * big_m + (mrank_o + 1)  # non-decreasing in the breadth-first order
    p = np.zeros((n_c, n_levels + 1), np.int64)
    low = np.zeros((n_c, n_levels + 1), np.int64)  # base lines of the group below relative depth j
    p[:, 0] = head_rank[g_of]
    for j in range(1, n_levels + 1):
        level = (g_of * big_d + head_depth[g_of] + j) * big_m
        first = np.searchsorted(key, level, "left")
        p[:, j] = np.searchsorted(key, level + p[:, j - 1] + 1, "left") - first
        low[:, j] = first - start[g_of]

    # the group's lines in every copy, shifted past the signal lines inserted before them
    reps = counts[g_of]
    rep = (np.arange(int(reps.sum()), dtype=np.int64) + np.repeat(start[g_of] - (np.cumsum(reps) - reps), reps))
    c_rep = np.repeat(np.arange(n_c, dtype=np.int64), reps)
    rel = depth_o[rep] - head_depth[g_of][c_rep]
    inside = (rel >= 1) & (rel <= n_levels)
    j_rep = np.where(inside, rel, 0)
    shift = cum_k[c_rep, np.clip(rel - 1, 0, n_levels)]
    shift += np.where(inside & (rank_o[rep] >= p[c_rep, j_rep]), k[c_rep, j_rep], 0)
    idx_rep = index[rep] + shift
    rep_start = np.cumsum(reps) - reps
    m_rep = mother_idx[rep]
    mother_rep = np.where(m_rep >= 0, idx_rep[rep_start[c_rep] + np.maximum(m_rep, 0)], -1)

    # the signal lines below the heads
    c_t, j_t = s_ev[tree], s_depth[tree]
    idx_t = low[c_t, j_t] + cum_k[c_t, j_t - 1] + p[c_t, j_t] + s_rank[tree]
    idx_of_sig = np.full(s_rows.size, -1, np.int64)
    idx_of_sig[:n_c] = head_idx[g_of]
    idx_of_sig[tree] = idx_t
    mother_t = idx_of_sig[s_mother[tree]]

    n_copy = reps + cum_k[:, n_levels]
    copy_start = np.cumsum(n_copy) - n_copy
    n_out = int(n_copy.sum())
    out_rep = copy_start[c_rep] + idx_rep
    out_t = copy_start[c_t] + idx_t
    out_head = copy_start + head_idx[g_of]
    s_src = s_rows[tree]  # signal rows of the tree lines
    # every output row's source: a group line in breadth-first order (< n) or a signal row (n + row)
    source = np.empty(n_out, np.int64)
    source[out_rep] = rep
    source[out_t] = n + s_src
    source[out_head] = n + np.arange(n_c)

    def merged(base_col: np.ndarray, sig_col: np.ndarray, dtype: Any) -> np.ndarray:
        return np.concatenate([base_col[src_o].astype(dtype, copy=False), sig_col.astype(dtype, copy=False)])[source]

    pid = merged(np.asarray(base.pid, np.int64), np.asarray(signal.pid, np.int64), np.int64)
    p4 = merged(np.asarray(base.p4, np.float64), np.asarray(signal.p4, np.float64), np.float64)
    mass = merged(np.asarray(base.mass, np.float64), np.asarray(signal.mass, np.float64), np.float64)
    st = merged(status, s_status, np.int64)
    is_sig = merged(np.asarray(base.is_signal, bool), np.ones(s_status.size, bool), bool)
    base_q = np.zeros(n_lines, np.int16)
    base_q[src_o] = np.asarray(base.charge)[src_o] if base.charge is not None else charges(np.asarray(base.pid)[src_o])
    sig_q = np.asarray(signal.charge) if signal.charge is not None else charges(np.asarray(signal.pid))
    charge = merged(base_q, sig_q, np.int16)
    inter = merged(np.asarray(base.interaction, np.int64), np.zeros(s_status.size, np.int64), np.int64)
    head_inter = inter_o[(start + head_idx)[g_of]]
    inter[out_head] = head_inter
    inter[out_t] = head_inter[c_t]  # a signal line's interaction: its head's
    mother_out = np.empty(n_out, np.int64)
    mother_out[out_rep] = mother_rep
    mother_out[out_t] = mother_t
    src_base = np.full(n_out, -1, np.int64)
    src_base[out_rep] = src_o[rep]
    src_sig = np.full(n_out, -1, np.int64)
    src_sig[out_t] = s_src
    src_sig[out_head] = np.arange(n_c)

    ev_out = np.repeat(np.arange(n_c, dtype=np.int64), n_copy)
    index_out = np.arange(n_out, dtype=np.int64) - copy_start[ev_out]
    # daughters: contiguous runs of equal (event, mother)
    first = np.full(n_out, -1, np.int64)
    last = np.full(n_out, -1, np.int64)
    child = np.flatnonzero(mother_out >= 0)
    if child.size:
        mrow = copy_start[ev_out[child]] + mother_out[child]
        brk = np.flatnonzero(mrow[1:] != mrow[:-1])
        run_first = np.r_[0, brk + 1]
        run_last = np.r_[brk, child.size - 1]
        if np.count_nonzero(np.bincount(mrow, minlength=n_out)) != run_first.size:  # a mother in two runs
            raise DataError("daughters are not contiguous after renumbering (internal error)")
        first[mrow[run_first]] = index_out[child[run_first]]
        last[mrow[run_last]] = index_out[child[run_last]]

    n_int = n_int_g[g_of]
    decayed = st == STATUS_DECAYED
    n_dec = np.bincount(ev_out[decayed], minlength=n_c)
    dec_before = np.cumsum(n_dec) - n_dec
    dv = np.where(decayed, n_int[ev_out] + np.cumsum(decayed) - 1 - dec_before[ev_out], -1)
    dv = np.where(st == STATUS_BEAM, inter, dv)
    prod = np.where(mother_out >= 0, dv[copy_start[ev_out] + np.maximum(mother_out, 0)], inter)
    if np.any(prod < 0):
        raise DataError("a particle's mother is neither decayed nor a beam in the generator record")

    pv = np.asarray(pv, np.float64).reshape(-1, 4)
    if pv.shape[0] != int(n_int.sum()):
        raise DataError("every event needs at least one interaction with a primary vertex")
    v_count = n_int + n_dec
    v_start = np.cumsum(v_count) - v_count
    n_v = int(v_count.sum())
    v_pos = np.empty((n_v, 4), np.float64)
    v_mother = np.full(n_v, -1, np.int64)
    v_event = np.repeat(np.arange(n_c, dtype=np.int64), v_count)
    v_index = np.arange(n_v, dtype=np.int64) - v_start[v_event]
    pv_rows = np.arange(n_v)[v_index < n_int[v_event]]
    v_pos[pv_rows] = pv
    d_rows = np.flatnonzero(decayed)
    at = v_start[ev_out[d_rows]] + dv[d_rows]
    v_mother[at] = index_out[d_rows]
    from_sig = src_sig[d_rows] >= 0
    dpos = np.empty((d_rows.size, 4), np.float64)
    dpos[from_sig] = np.asarray(signal.decay_pos, np.float64)[src_sig[d_rows[from_sig]]]
    dpos[~from_sig] = base_decay_pos(src_base[d_rows[~from_sig]], ev_out[d_rows[~from_sig]])
    v_pos[at] = dpos

    particles = {
        "event": ev_out.astype(np.int32),
        "index": index_out.astype(np.int32),
        "pid": pid.astype(np.int32),
        "px": p4[:, 0], "py": p4[:, 1], "pz": p4[:, 2], "e": p4[:, 3],
        "mass": mass,
        "charge": charge,
        "mother": mother_out.astype(np.int32),
        "first_daughter": first.astype(np.int32),
        "last_daughter": last.astype(np.int32),
        "prod_vertex": prod.astype(np.int32),
        "decay_vertex": dv.astype(np.int32),
        "is_signal": is_sig,
        "status": st.astype(np.int16),
    }
    vertices = {
        "event": v_event.astype(np.int32),
        "index": v_index.astype(np.int32),
        "x": v_pos[:, 0], "y": v_pos[:, 1], "z": v_pos[:, 2], "t": v_pos[:, 3],
        "mother_particle": v_mother.astype(np.int32),
    }
    return {"events": copies_events(pv, n_int), "mc_particles": particles, "mc_vertices": vertices}


def copies_events(pv: np.ndarray, n_interactions: np.ndarray) -> dict[str, np.ndarray]:
    """The ``events`` table of :func:`layout_copies`: ``event``, the PV of interaction 0 [mm, ns], ``n_interactions``.

    Args:
        pv: ``(sum(n_interactions), 4)`` primary vertices, copy by copy.
        n_interactions: ``(n_copies,)``.
    """
    n_int = np.asarray(n_interactions, np.int64)
    pv = np.asarray(pv, np.float64).reshape(-1, 4)
    first_pv = np.cumsum(n_int) - n_int
    return {
        "event": np.arange(n_int.size, dtype=np.int32),
        "pv_x": pv[first_pv, 0], "pv_y": pv[first_pv, 1], "pv_z": pv[first_pv, 2], "pv_t": pv[first_pv, 3],
        "n_interactions": n_int.astype(np.int16),
    }


def copies_signal_rows(
    base: GeneratorRecord, heads: np.ndarray, copy_group: np.ndarray, signal: GeneratorRecord, pv: np.ndarray,
    base_decay_pos: Callable[[np.ndarray, np.ndarray], np.ndarray],
) -> dict[str, np.ndarray]:
    """:func:`truth_rows` of the signal particles of every copy of :func:`layout_copies`, without laying the copies out.

    The arguments are :func:`layout_copies`'.  A copy's signal particles are its signal line and
    that line's tree, in the layout in the breadth-first order of the tree; the signal line's
    mother is its group's, produced at that mother's end vertex in the copy (a prompt signal
    line: at its interaction's PV); every other signal particle is produced at its mother's end vertex.

    Raises:
        DataError: a signal line that is not a kept line, or whose mother did not decay.
    """
    copy_group = np.asarray(copy_group, np.int64)
    heads = np.asarray(heads, np.int64)
    n_c = copy_group.size
    rows, mother, _ev, _o, _d, _r = _bfs_order(np.asarray(base.status, np.int64), np.asarray(base.event, np.int64),
                                               np.asarray(base.parent, np.int64))
    kept_of_row = np.full(np.asarray(base.status).size, -1, np.int64)
    kept_of_row[rows] = np.arange(rows.size)
    hk = kept_of_row[heads]
    if np.any(hk < 0):
        raise DataError("a signal line of the generator record is not a kept line of its event")
    hm = mother[hk]
    hm_row = np.where(hm >= 0, rows[np.maximum(hm, 0)], -1)
    base_pid = np.asarray(base.pid, np.int64)
    if np.any(np.asarray(base.status)[hm_row[hm_row >= 0]] != STATUS_DECAYED):
        raise DataError("a particle's mother is neither decayed nor a beam in the generator record")
    n_int_c = np.asarray(signal.n_interactions, np.int64)
    first_pv = np.cumsum(n_int_c) - n_int_c
    pv = np.asarray(pv, np.float64).reshape(-1, 4)
    cps = np.arange(n_c, dtype=np.int64)
    head_prod = pv[first_pv + np.asarray(base.interaction, np.int64)[heads][copy_group]]
    has_m = hm_row[copy_group] >= 0
    if np.any(has_m):
        head_prod[has_m] = base_decay_pos(hm_row[copy_group][has_m], cps[has_m])

    s_rows, s_mother, s_ev, s_order, s_depth, _s_rank = _bfs_order(
        np.asarray(signal.status, np.int64), np.asarray(signal.event, np.int64), np.asarray(signal.parent, np.int64))
    if s_rows.size < n_c or np.any(s_rows[:n_c] != cps) or np.any(s_depth[:n_c] != 0):
        raise DataError("every copy needs its signal line as the root of its decay tree (internal error)")
    q = s_order
    r = s_rows[q]
    c = s_ev[q]
    is_head = r < n_c
    m_row = np.where(is_head, -1, s_rows[np.maximum(s_mother[q], 0)])
    s_pid = np.asarray(signal.pid, np.int64)
    mother_pid = np.where(is_head, np.where(hm_row[copy_group[c]] >= 0, base_pid[np.maximum(hm_row[copy_group[c]], 0)], 0),
                          s_pid[np.maximum(m_row, 0)])
    prod = np.where(is_head[:, None], head_prod[c], np.asarray(signal.decay_pos, np.float64)[np.maximum(m_row, 0)])
    p4 = np.asarray(signal.p4, np.float64)[r]
    pv0 = pv[first_pv[c]]
    out: dict[str, np.ndarray] = {"event": c.astype(np.int32), "pid": s_pid[r].astype(np.int32),
                                  "mother_pid": mother_pid.astype(np.int32)}
    for j, col in enumerate(("px", "py", "pz")):
        out[col] = stored("mc_particles", col, p4[:, j])
    for j, col in enumerate(("x", "y", "z")):
        out[f"origin_d{col}"] = stored("mc_vertices", col, prod[:, j]) - stored("events", f"pv_{col}", pv0[:, j])
    return out


def _layout_some_copies(
    base: GeneratorRecord, heads: np.ndarray, copy_group: np.ndarray, signal: GeneratorRecord, pv: np.ndarray,
    base_decay_pos: Callable[[np.ndarray, np.ndarray], np.ndarray], copies: np.ndarray,
) -> dict[str, dict[str, np.ndarray]]:
    """:func:`layout_copies` of the copies ``copies`` only (each copy's layout depends on its group and its own tree)."""
    n_c = np.asarray(copy_group).size
    if copies.size and (np.any(np.diff(copies) <= 0) or copies[0] < 0 or copies[-1] >= n_c):
        raise DataError("copies to lay out must be sorted, distinct copy numbers (internal error)")
    s_event = np.asarray(signal.event, np.int64)
    tree = n_c + np.flatnonzero(np.isin(s_event[n_c:], copies))
    rows = np.concatenate([copies, tree])  # the copies' signal lines, then their trees' lines in record order
    new_of = np.full(s_event.size, -1, np.int64)
    new_of[rows] = np.arange(rows.size)
    par = np.asarray(signal.parent, np.int64)[rows]
    n_int_c = np.asarray(signal.n_interactions, np.int64)
    first_pv = np.cumsum(n_int_c) - n_int_c
    k = n_int_c[copies]
    pv_rows = np.arange(int(k.sum()), dtype=np.int64) + np.repeat(first_pv[copies] - (np.cumsum(k) - k), k)
    pv_sub = np.asarray(pv, np.float64).reshape(-1, 4)[pv_rows]
    sub = GeneratorRecord(
        n_events=copies.size, event=np.searchsorted(copies, s_event[rows]), pid=np.asarray(signal.pid)[rows],
        status=np.asarray(signal.status)[rows], p4=np.asarray(signal.p4)[rows], mass=np.asarray(signal.mass)[rows],
        parent=np.where(par >= 0, new_of[np.maximum(par, 0)], -1), decay_pos=np.asarray(signal.decay_pos)[rows],
        interaction=np.asarray(signal.interaction)[rows], n_interactions=k, pv=pv_sub,
        is_signal=np.asarray(signal.is_signal)[rows],
        charge=None if signal.charge is None else np.asarray(signal.charge)[rows],
    )
    out = layout_copies(base, heads, np.asarray(copy_group, np.int64)[copies], sub, pv_sub,
                        lambda r, c: base_decay_pos(r, copies[c]))
    for table in out.values():
        table["event"] = copies[table["event"]].astype(np.int32)
    return out


#: Attribute of the :class:`~sim.core.pipeline.BatchContext` through which a generator with
#: ``defer_truth`` hands its batch's :class:`DeferredTruth` to the preselect pass.
DEFERRED_TRUTH = "deferred_truth"


def stored(table: str, column: str, values: np.ndarray) -> np.ndarray:
    """``values`` as the store holds and returns them in ``table.column`` (:func:`mambah.store.stored_values`)."""
    from mambah.store import stored_values

    return stored_values(table, column, values)


def truth_rows(tables: dict[str, dict[str, np.ndarray]], signal_only: bool) -> dict[str, np.ndarray]:
    """The preselect pass's particle rows (:data:`sim.generation.preselect.PARTICLES_SQL`) from laid-out tables.

    Args:
        tables: ``events``, ``mc_particles``, ``mc_vertices`` of :func:`layout_tables` (sorted by event, index).
        signal_only: only the ``is_signal`` particles.

    Returns:
        ``event, pid, mother_pid`` (0: none), ``px, py, pz`` [MeV] and ``origin_dx/dy/dz`` (production
        vertex − PV [mm]) of every particle in (event, index) order, the values the store query gives.
    """
    p, v, e = tables["mc_particles"], tables["mc_vertices"], tables["events"]
    p_ev = np.asarray(p["event"], np.int64)
    v_ev = np.asarray(v["event"], np.int64)
    ev_of = np.asarray(e["event"], np.int64)
    n_ev = int(ev_of.max()) + 1 if ev_of.size else 0
    p_start = np.searchsorted(p_ev, np.arange(n_ev))
    v_start = np.searchsorted(v_ev, np.arange(n_ev))
    e_row = np.full(n_ev, -1, np.int64)
    e_row[ev_of] = np.arange(ev_of.size)
    sel = np.flatnonzero(np.asarray(p["is_signal"], bool)) if signal_only else np.arange(p_ev.size)
    ev = p_ev[sel]
    mother = np.asarray(p["mother"], np.int64)[sel]
    pid = np.asarray(p["pid"])
    mother_pid = np.where(mother >= 0, pid[p_start[ev] + np.maximum(mother, 0)], 0)
    vrow = v_start[ev] + np.asarray(p["prod_vertex"], np.int64)[sel]
    out = {"event": ev.astype(np.int32), "pid": pid[sel], "mother_pid": mother_pid.astype(pid.dtype)}
    for c in ("px", "py", "pz"):
        out[c] = stored("mc_particles", c, np.asarray(p[c])[sel])
    for c in ("x", "y", "z"):  # in the store's types (float32), as the query subtracts them
        out[f"origin_d{c}"] = stored("mc_vertices", c, np.asarray(v[c])[vrow]) - stored("events", f"pv_{c}", np.asarray(e[f"pv_{c}"])[e_row[ev]])
    return out


class DeferredTruth:
    """A batch's MC truth (``mc_particles``, ``mc_vertices``) not written yet, laid out on demand.

    A generator with ``defer_truth`` writes its ``events`` rows and leaves this on the batch
    context (:data:`DEFERRED_TRUTH`); the preselect pass reads the particles it scores from it
    (:meth:`particles`) and writes the truth of the events it keeps (:meth:`write`), so the
    truth of the events it skips with ``drop_skipped`` is neither written nor deleted, and
    with a lazy ``layout`` (ReDecay) not laid out either.

    Args:
        events: the batch's ``events`` table (``event``, ``pv_x/y/z``, ...), as written.
        layout: ``events -> tables``: ``mc_particles`` and ``mc_vertices`` of the events ``events``
            (sorted event numbers), exactly their rows in the layout of the whole batch.
        signal_rows: the :func:`truth_rows` of the signal particles of every event without a
            layout (``None``: from the layout of every event).
    """

    def __init__(
        self, events: dict[str, np.ndarray], layout: Callable[[np.ndarray], dict[str, dict[str, np.ndarray]]],
        signal_rows: Callable[[], dict[str, np.ndarray]] | None = None,
    ) -> None:
        self.events = events
        self._layout = layout
        self._signal_rows = signal_rows
        self._all: dict[str, dict[str, np.ndarray]] | None = None

    @classmethod
    def of_tables(cls, tables: dict[str, dict[str, np.ndarray]]) -> DeferredTruth:
        """Truth already laid out (``tables`` of :func:`layout_tables`), written when asked."""
        def subset(keep: np.ndarray) -> dict[str, dict[str, np.ndarray]]:
            out = {}
            for name in ("mc_particles", "mc_vertices"):
                cols = tables[name]
                rows = np.flatnonzero(np.isin(np.asarray(cols["event"], np.int64), keep))
                out[name] = {c: np.asarray(v)[rows] for c, v in cols.items()}
            return out

        truth = cls(tables["events"], subset)
        truth._all = {name: tables[name] for name in ("mc_particles", "mc_vertices")}
        return truth

    @property
    def n_events(self) -> int:
        return int(np.asarray(self.events["event"]).size)

    def _whole(self) -> dict[str, dict[str, np.ndarray]]:
        if self._all is None:
            self._all = self._layout(np.asarray(self.events["event"], np.int64))
        return self._all

    def particles(self, signal_only: bool) -> dict[str, np.ndarray]:
        """:func:`truth_rows` of every event (only the signal particles with ``signal_only``)."""
        if signal_only and self._signal_rows is not None and self._all is None:
            rows = self._signal_rows()
            inside = np.isin(np.asarray(rows["event"], np.int64), np.asarray(self.events["event"], np.int64))
            return rows if inside.all() else {c: v[inside] for c, v in rows.items()}
        return truth_rows({"events": self.events, **self._whole()}, signal_only)

    def write(self, ctx: Any, keep: np.ndarray) -> None:
        """Insert the truth of the events ``keep`` (sorted event numbers) into the batch."""
        keep = np.asarray(keep, np.int64)
        if keep.size == 0:
            return
        if self._all is not None:
            tables = self._all if keep.size == self.n_events else self._subset_all(keep)
        else:
            tables = self._layout(keep)
        write_tables(ctx, tables, ("mc_particles", "mc_vertices"))

    def _subset_all(self, keep: np.ndarray) -> dict[str, dict[str, np.ndarray]]:
        out = {}
        for name, cols in (self._all or {}).items():
            rows = np.flatnonzero(np.isin(np.asarray(cols["event"], np.int64), keep))
            out[name] = {c: np.asarray(v)[rows] for c, v in cols.items()}
        return out


def write_tables(
    ctx: Any, tables: dict[str, dict[str, np.ndarray]], names: tuple[str, ...] = ("events", "mc_particles", "mc_vertices"),
) -> None:
    """Insert laid-out tables (those of ``names``) into the batch (``process`` < 0 stored as NULL)."""
    for name in names:
        cols = dict(tables[name])
        n = len(next(iter(cols.values())))
        arrays = {"batch": pa.array(np.full(n, ctx.batch.batch, np.int32))}
        for key, col in cols.items():
            val = np.asarray(col)
            arrays[key] = pa.array(val, mask=val < 0) if key == "process" else pa.array(val)
        ctx.insert(name, pa.table(arrays))


def check_theta_window(name: str, win: Any) -> tuple[float, float]:
    """A ``(min, max)`` polar-angle window [rad] as floats, checked (``0 <= min < max <= pi``).

    Raises:
        ConfigError: not two numbers in that order and range.
    """
    try:
        lo, hi = (float(x) for x in win)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be (min, max) polar angles [rad], got {win!r}") from None
    if not 0.0 <= lo < hi <= np.pi:
        raise ConfigError(f"{name} must satisfy 0 <= min < max <= pi [rad], got {win!r}")
    return lo, hi


def daughters_in_acceptance(
    particles: dict[str, np.ndarray], n_events: int, charged_theta: tuple[float, float], neutral_theta: tuple[float, float]
) -> np.ndarray:
    """Gauss' ``DaughtersInLHCb`` cut on laid-out events (pure, vectorised).

    The daughters looked at are the signal's stable descendants as the detector sees them:
    signal lines in the final state, or long-lived (:data:`LONG_LIVED`: K0S, Λ, ... that
    decay in flight, taken as themselves), none of whose ancestors is long-lived;
    neutrinos are ignored.  Each must have its polar angle θ = atan2(pT, pz) inside
    ``charged_theta`` (charged) or ``neutral_theta`` (neutral).  Gauss inverts an event
    (z → −z) whose signal goes backward before the cut; the pythia pass does too
    (``invert_backward``), a HepMC file's events are taken as they are.

    Args:
        particles: ``mc_particles`` columns sorted by (event, index), events ``0 … n_events-1``:
            ``event, pid, charge, px, py, pz`` [MeV], ``mother``, ``status``, ``is_signal``.
        n_events: events in the batch.
        charged_theta, neutral_theta: ``(min, max)`` [rad].

    Returns:
        ``(n_events,)`` bool: the event has a signal and all its daughters pass.
    """
    ev = np.asarray(particles["event"], np.int64)
    counts = np.bincount(ev, minlength=n_events)
    base = (np.cumsum(counts) - counts)[ev]
    sig = np.asarray(particles["is_signal"], bool)
    apid = np.abs(np.asarray(particles["pid"], np.int64))
    long_lived = np.isin(apid, LONG_LIVED)
    mother = np.asarray(particles["mother"], np.int64)
    under_ll = np.zeros(ev.size, bool)
    cur = np.where(sig, mother, -1)
    while np.any(cur >= 0):
        has = cur >= 0
        row = base + np.maximum(cur, 0)
        under_ll |= has & long_lived[row] & sig[row]
        cur = np.where(has & sig[row], mother[row], -1)
    head = sig & ~np.where(mother >= 0, sig[base + np.maximum(mother, 0)], False)
    looked = sig & ~head & ~under_ll & ((np.asarray(particles["status"]) == STATUS_FINAL) | long_lived) & ~np.isin(apid, _NEUTRINO_IDS)
    px, py, pz = (np.asarray(particles[k], np.float64) for k in ("px", "py", "pz"))
    theta = np.arctan2(np.hypot(px, py), pz)
    charged = np.asarray(particles["charge"]) != 0
    lo = np.where(charged, charged_theta[0], neutral_theta[0])
    hi = np.where(charged, charged_theta[1], neutral_theta[1])
    fail = looked & ~((theta > lo) & (theta < hi))
    has_signal = np.bincount(ev[head], minlength=n_events) > 0
    return has_signal & (np.bincount(ev[fail], minlength=n_events) == 0)


def signal_cut_efficiency(store: Any) -> tuple[int, int]:
    """``(kept, tried)`` of the ``daughters_in_acceptance`` cut over the complete batches of a store.

    ``kept / tried`` is the cut's efficiency on events holding the signal (the species
    efficiency is ``count(*) / sum(n_tried)`` over ``events`` divided by it).

    Raises:
        ConfigError: the store's pythia runs did not use the cut.
    """
    done = {int(b) for b in store.batches()}
    rows = store.query_df(f"SELECT key, value FROM metadata WHERE key LIKE '{CUT_KEY}%'")
    kept = tried = 0
    for key, value in zip(rows["key"], rows["value"], strict=True):
        if int(str(key)[len(CUT_KEY):]) in done:
            d = json.loads(value)
            kept, tried = kept + int(d["kept"]), tried + int(d["tried"])
    if tried == 0:
        raise ConfigError("the store holds no daughters_in_acceptance bookkeeping; the pythia pass ran without the cut")
    return kept, tried
