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
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from mambah.errors import ConfigError, DataError

__all__ = (
    "CUT_KEY",
    "KEPT_STATUS",
    "LONG_LIVED",
    "STATUS_BEAM",
    "STATUS_DECAYED",
    "STATUS_FINAL",
    "GeneratorRecord",
    "charges",
    "check_theta_window",
    "daughters_in_acceptance",
    "layout_tables",
    "nearest_kept",
    "signal_cut_efficiency",
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


def charges(pid: np.ndarray) -> np.ndarray:
    """Electric charge [e] of each PDG id (``particle`` table, cached per species), int16."""
    pid = np.asarray(pid, dtype=np.int64)
    uniq, inv = np.unique(pid, return_inverse=True)
    return np.array([_charge_of(int(p)) for p in uniq], dtype=np.int16)[inv].reshape(pid.shape)


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
    kept = np.isin(status, KEPT_STATUS)
    anc = nearest_kept(parent, kept)
    rows = np.flatnonzero(kept)
    n = rows.size
    new_of_row = np.full(n_lines, -1, np.int64)
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
    has = mother >= 0
    cur = mother.copy()
    while np.any(has):
        depth[has] += 1
        cur = np.where(has, mother[np.maximum(cur, 0)], -1)
        has = cur >= 0
    level_rank = np.zeros(n, np.int64)  # rank among the particles of the same (event, depth)
    level_order: list[np.ndarray] = []
    for d in range(int(depth.max()) + 1 if n else 0):
        sel = np.flatnonzero(depth == d)
        key_m = level_rank[mother[sel]] if d > 0 else np.zeros(sel.size, np.int64)
        o = sel[np.lexsort((sel, key_m, ev[sel]))]
        level_rank[o] = _rank_within(ev[o])
        level_order.append(o)
    order = np.concatenate(level_order) if level_order else np.zeros(0, np.int64)
    order = order[np.argsort(ev[order], kind="stable")]  # per event: levels in order, BFS within
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
    inter_o = np.asarray(rec.interaction, dtype=np.int64)[rows][order]
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
    dpos = np.asarray(rec.decay_pos, dtype=np.float64)[rows][order][decayed]
    d_ev = ev_o[decayed]
    v_event = np.concatenate([pv_event, d_ev])
    v_index = np.concatenate([pv_index, dv[decayed]])
    v_pos = np.concatenate([pv, dpos])
    v_mother = np.concatenate([np.full(pv_event.size, -1), index[decayed]])
    vo = np.lexsort((v_index, v_event))

    p4 = np.asarray(rec.p4, dtype=np.float64)[rows][order]
    charge = (np.asarray(rec.charge)[rows][order] if rec.charge is not None else charges(np.asarray(rec.pid)[rows][order]))
    particles = {
        "event": ev_o.astype(np.int32),
        "index": index.astype(np.int32),
        "pid": np.asarray(rec.pid)[rows][order].astype(np.int32),
        "px": p4[:, 0], "py": p4[:, 1], "pz": p4[:, 2], "e": p4[:, 3],
        "mass": np.asarray(rec.mass, dtype=np.float64)[rows][order],
        "charge": charge.astype(np.int16),
        "mother": mother_idx.astype(np.int32),
        "first_daughter": first.astype(np.int32),
        "last_daughter": last.astype(np.int32),
        "prod_vertex": prod.astype(np.int32),
        "decay_vertex": dv.astype(np.int32),
        "is_signal": np.asarray(rec.is_signal, dtype=bool)[rows][order],
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


def write_tables(ctx: Any, tables: dict[str, dict[str, np.ndarray]]) -> None:
    """Insert laid-out tables into the batch (``process`` < 0 stored as NULL)."""
    for name in ("events", "mc_particles", "mc_vertices"):
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
