"""ReDecay's layout: each Pythia event laid out once, each copy's signal tree merged into it.

``layout_copies`` must give exactly what ``layout_tables`` gives on the record with every copy
written out (and, for some copies only, their rows of that; ``copies_signal_rows`` the signal
particles' rows the preselect pass reads, without a layout) (the way the pythia pass made ReDecay events before), for signal trees whose shape
differs from copy to copy; and the pythia pass's ReDecay path must equal the written-out path
(``_replicate``, ``_record``, ``_invert_backward``, ``_decay_signal``, ``layout_tables``) with
the same random numbers.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sim.generation._event_tables import (
    STATUS_BEAM,
    STATUS_DECAYED,
    STATUS_FINAL,
    GeneratorRecord,
    copies_signal_rows,
    layout_copies,
    layout_tables,
    truth_rows,
)


def _random_group(rng: np.random.Generator, n_int: int) -> dict[str, np.ndarray]:
    """One event's record: per interaction two beams and a random forest below them (documentation lines dropped)."""
    parent: list[int] = []
    inter: list[int] = []
    for i in range(n_int):
        base = len(parent)
        parent += [-1, -1]  # the beams
        inter += [i, i]
        for j in range(int(rng.integers(5, 40))):
            row = base + 2 + j
            parent.append(int(rng.integers(base, row)))  # a beam or an earlier line of the interaction
            inter.append(i)
    par = np.array(parent, np.int64)
    n = par.size
    has_kids = np.bincount(par[par >= 0], minlength=n) > 0
    status = np.where(has_kids, np.where(rng.random(n) < 0.2, 0, STATUS_DECAYED), np.where(rng.random(n) < 0.15, 0, STATUS_FINAL))
    beams = np.flatnonzero(par < 0)
    status[beams] = STATUS_BEAM
    return {"parent": par, "status": status.astype(np.int64), "interaction": np.array(inter, np.int64)}


def _case(seed: int) -> tuple[GeneratorRecord, np.ndarray, np.ndarray, GeneratorRecord, np.ndarray, GeneratorRecord]:
    """A random base record, its heads, the copies' signal trees and the written-out record of every copy."""
    rng = np.random.default_rng(seed)
    n_g = 6
    times = rng.integers(1, 5, n_g)
    n_int = rng.integers(1, 4, n_g)
    groups = [_random_group(rng, int(k)) for k in n_int]
    # the signal line: a decayed line of interaction 0 at depth >= 1; its descendants dropped
    chunks: dict[str, list[np.ndarray]] = {k: [] for k in ("event", "parent", "status", "interaction")}
    heads = np.zeros(n_g, np.int64)
    offset = 0
    for g, grp in enumerate(groups):
        par, st = grp["parent"].copy(), grp["status"].copy()
        cand = np.flatnonzero((st == STATUS_DECAYED) & (grp["interaction"] == 0) & (par >= 0))
        h = int(rng.choice(cand)) if cand.size else int(np.flatnonzero((par >= 0) & (grp["interaction"] == 0))[0])
        st[h] = STATUS_DECAYED
        mark = np.zeros(par.size, bool)
        mark[h] = True
        for _ in range(par.size):  # descendants of the head
            new = (par >= 0) & mark[np.maximum(par, 0)] & ~mark
            if not new.any():
                break
            mark |= new
        mark[h] = False
        st[mark], par[mark] = 0, -1
        chunks["event"].append(np.full(par.size, g))
        chunks["parent"].append(np.where(par >= 0, par + offset, -1))
        chunks["status"].append(st)
        chunks["interaction"].append(grp["interaction"])
        heads[g] = offset + h
        offset += par.size
    cat = {k: np.concatenate(v) for k, v in chunks.items()}
    n = cat["event"].size
    pid = rng.choice([211, -211, 321, -321, 22, 111, 2212, 13, -13, 130], n)
    base = GeneratorRecord(
        n_events=n_g, event=cat["event"], pid=pid, status=cat["status"], p4=rng.normal(size=(n, 4)),
        mass=rng.random(n), parent=cat["parent"], decay_pos=rng.normal(size=(n, 4)), interaction=cat["interaction"],
        n_interactions=n_int, pv=np.zeros((int(n_int.sum()), 4)), is_signal=np.zeros(n, bool),
    )
    base.is_signal[heads] = True
    copy_group = np.repeat(np.arange(n_g), times)
    n_c = copy_group.size
    # each copy's signal tree: random depth and widths (some copies with a bare head)
    s_parent: list[int] = [-1] * n_c
    s_event: list[int] = list(range(n_c))
    for c in range(n_c):
        level = [c]
        for _ in range(int(rng.integers(0, 4))):
            nxt = []
            for m in level:
                for _ in range(int(rng.integers(0, 4))):
                    s_parent.append(m)
                    s_event.append(c)
                    nxt.append(len(s_parent) - 1)
            level = nxt
    sp = np.array(s_parent, np.int64)
    se = np.array(s_event, np.int64)
    perm = n_c + rng.permutation(sp.size - n_c)  # the appended lines in a random order
    order = np.r_[np.arange(n_c), perm]
    new_of = np.empty(sp.size, np.int64)
    new_of[order] = np.arange(sp.size)
    sp = np.where(sp[order] >= 0, new_of[np.maximum(sp[order], 0)], -1)
    se = se[order]
    ns = sp.size
    s_has = np.bincount(sp[sp >= 0], minlength=ns) > 0
    s_status = np.where(s_has, STATUS_DECAYED, STATUS_FINAL)
    s_status[:n_c] = STATUS_DECAYED
    signal = GeneratorRecord(
        n_events=n_c, event=se, pid=rng.choice([443, 13, -13, 321, 22], ns), status=s_status, p4=rng.normal(size=(ns, 4)),
        mass=rng.random(ns), parent=sp, decay_pos=rng.normal(size=(ns, 4)), interaction=np.zeros(ns, np.int64),
        n_interactions=n_int[copy_group], pv=np.zeros((0, 4)), is_signal=np.ones(ns, bool),
    )
    pv = rng.normal(size=(int(n_int[copy_group].sum()), 4))
    # the record with every copy written out: each copy's group lines, then all signal lines
    starts = np.cumsum(np.bincount(base.event, minlength=n_g))
    starts = starts - np.bincount(base.event, minlength=n_g)
    counts = np.bincount(base.event, minlength=n_g)
    rows = np.concatenate([np.arange(starts[g], starts[g] + counts[g]) for g in copy_group])
    c_of = np.repeat(np.arange(n_c), counts[copy_group])
    row_in_out = np.arange(rows.size)
    out_of = {(int(c), int(r)): int(i) for c, r, i in zip(c_of, rows, row_in_out, strict=True)}
    par_w = np.array([out_of[(int(c), int(p))] if p >= 0 else -1 for c, p in zip(c_of, base.parent[rows], strict=True)], np.int64)
    n_w = rows.size
    head_out = np.array([out_of[(c, int(heads[g]))] for c, g in enumerate(copy_group)])
    sig_out = np.r_[head_out, n_w + np.arange(ns - n_c)]
    w_parent = np.r_[par_w, np.where(sp[n_c:] >= 0, sig_out[np.maximum(sp[n_c:], 0)], -1)]
    dpos = base.decay_pos[rows] + c_of[:, None]

    def cat2(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        out = np.concatenate([a[rows], b[n_c:]])
        out[head_out] = b[:n_c]
        return out

    written = GeneratorRecord(
        n_events=n_c, event=np.r_[c_of, se[n_c:]], pid=cat2(base.pid, signal.pid), status=cat2(base.status, signal.status),
        p4=cat2(base.p4, signal.p4), mass=cat2(base.mass, signal.mass), parent=w_parent,
        decay_pos=np.concatenate([dpos, signal.decay_pos[n_c:]]), interaction=np.r_[base.interaction[rows], np.zeros(ns - n_c, np.int64)],
        n_interactions=n_int[copy_group], pv=pv, is_signal=cat2(base.is_signal, signal.is_signal),
    )
    written.decay_pos[head_out] = signal.decay_pos[:n_c]
    return base, heads, copy_group, signal, pv, written


@pytest.mark.parametrize("seed", range(12))
def test_layout_copies_equals_the_layout_of_every_copy_written_out(seed: int) -> None:
    base, heads, copy_group, signal, pv, written = _case(seed)
    expected = layout_tables(written)
    got = layout_copies(base, heads, copy_group, signal, pv, lambda rows, cps: base.decay_pos[rows] + cps[:, None])
    assert set(got) == set(expected)
    for table, cols in expected.items():
        assert set(got[table]) == set(cols), table
        for col, want in cols.items():
            assert got[table][col].dtype == want.dtype, (table, col)
            np.testing.assert_array_equal(got[table][col], want, err_msg=f"{table}.{col} (seed {seed})")


def test_layout_copies_shifts_the_rest_of_the_event_past_the_signal_tree() -> None:
    """A hand-made case: beams, a prompt B (the signal) and a prompt pion; two copies with trees of 1 and 3 lines."""
    base = GeneratorRecord(
        n_events=1, event=np.zeros(4, np.int64), pid=np.array([2212, 2212, 521, 211]),
        status=np.array([STATUS_BEAM, STATUS_BEAM, STATUS_DECAYED, STATUS_DECAYED]), p4=np.zeros((4, 4)), mass=np.zeros(4),
        parent=np.array([-1, -1, 0, 0]), decay_pos=np.zeros((4, 4)), interaction=np.zeros(4, np.int64),
        n_interactions=np.array([1]), pv=np.zeros((1, 4)), is_signal=np.array([False, False, True, False]),
    )
    # the pion decays to a muon (line 4, appended)
    base.event = np.zeros(5, np.int64)
    base.pid = np.r_[base.pid, 13]
    base.status = np.r_[base.status, STATUS_FINAL]
    base.p4, base.mass, base.decay_pos = np.zeros((5, 4)), np.zeros(5), np.zeros((5, 4))
    base.parent = np.r_[base.parent, 3]
    base.interaction, base.is_signal = np.zeros(5, np.int64), np.r_[base.is_signal, False]
    # copy 0: B -> K ; copy 1: B -> (J/psi -> mu mu) K
    signal = GeneratorRecord(
        n_events=2, event=np.array([0, 1, 0, 1, 1, 1, 1]), pid=np.array([521, 521, 321, 443, 321, 13, -13]),
        status=np.array([2, 2, 1, 2, 1, 1, 1]), p4=np.zeros((7, 4)), mass=np.zeros(7),
        parent=np.array([-1, -1, 0, 1, 1, 3, 3]), decay_pos=np.zeros((7, 4)), interaction=np.zeros(7, np.int64),
        n_interactions=np.array([1, 1]), pv=np.zeros((2, 4)), is_signal=np.ones(7, bool),
    )
    t = layout_copies(base, np.array([2]), np.array([0, 0]), signal, np.zeros((2, 4)),
                      lambda rows, cps: np.zeros((rows.size, 4)))["mc_particles"]
    ev = t["event"]
    # copy 0: p p B pi | K(B) mu(pi): the signal's K before the pion's muon (mother B ranks before pi)
    assert t["pid"][ev == 0].tolist() == [2212, 2212, 521, 211, 321, 13]
    assert t["mother"][ev == 0].tolist() == [-1, -1, -1, -1, 2, 3]
    # copy 1: level 1 holds J/psi K (B's) then mu (pi's); level 2 the J/psi's muons
    assert t["pid"][ev == 1].tolist() == [2212, 2212, 521, 211, 443, 321, 13, 13, -13]
    assert t["mother"][ev == 1].tolist() == [-1, -1, -1, -1, 2, 2, 3, 4, 4]
    assert t["first_daughter"][ev == 1].tolist() == [-1, -1, 4, 6, 7, -1, -1, -1, -1]
    assert t["last_daughter"][ev == 1].tolist() == [-1, -1, 5, 6, 8, -1, -1, -1, -1]


ROWS = ("event", "pid", "mother_pid", "px", "py", "pz", "origin_dx", "origin_dy", "origin_dz")


@pytest.mark.parametrize("seed", range(6))
def test_some_copies_laid_out_alone_are_their_rows_of_the_whole_layout(seed: int) -> None:
    base, heads, copy_group, signal, pv, _ = _case(seed)

    def end(rows: np.ndarray, cps: np.ndarray) -> np.ndarray:
        return base.decay_pos[rows] + cps[:, None]

    whole = layout_copies(base, heads, copy_group, signal, pv, end)
    rng = np.random.default_rng(seed)
    some = np.flatnonzero(rng.random(copy_group.size) < 0.4)
    got = layout_copies(base, heads, copy_group, signal, pv, end, copies=some)
    for table, cols in whole.items():
        rows = np.isin(cols["event"], some)
        for col, want in cols.items():
            assert got[table][col].dtype == want.dtype, (table, col)
            np.testing.assert_array_equal(got[table][col], want[rows], err_msg=f"{table}.{col} (seed {seed})")


@pytest.mark.parametrize("seed", range(6))
def test_signal_rows_without_a_layout_are_those_of_the_layout(seed: int) -> None:
    base, heads, copy_group, signal, pv, _ = _case(seed)

    def end(rows: np.ndarray, cps: np.ndarray) -> np.ndarray:
        return base.decay_pos[rows] + cps[:, None]

    want = truth_rows(layout_copies(base, heads, copy_group, signal, pv, end), signal_only=True)
    got = copies_signal_rows(base, heads, copy_group, signal, pv, end)
    assert want["event"].size == signal.pid.size  # every copy's signal line and tree
    for col in ROWS:
        assert got[col].dtype == want[col].dtype, col
        np.testing.assert_array_equal(got[col], want[col], err_msg=f"{col} (seed {seed})")


DEC = """
Decay B+
0.5 J/psi K+ PHSP;
0.3 anti-D0 pi+ PHSP;
0.2 K+ pi- pi+ PHSP;
Enddecay
CDecay B-
Decay J/psi
1.0 mu+ mu- PHSP;
Enddecay
Decay anti-D0
0.6 K+ pi- PHSP;
0.4 K+ pi- pi0 PHSP;
Enddecay
CDecay D0
End
"""


@pytest.mark.parametrize("cut", [False, True])
def test_redecay_path_equals_every_copy_written_out(tmp_path: Path, cut: bool) -> None:
    """Pythia events, a signal with trees of several shapes; with the acceptance cut the backward events are inverted."""
    pytest.importorskip("pythia8mc")
    import sim.generation.pythia as P

    dec = tmp_path / "b.dec"
    dec.write_text(DEC)
    cfg = P.Pythia(preset="bbbar", dec_file=str(dec), mother="B+", redecay=7, daughters_in_acceptance=cut)
    model, cc = cfg._model()
    model.prepare()
    hard = P._make_pythia(P.pythia_lines(P.PRESETS["bbbar"], 13.0, (), 11))
    minb = P._make_pythia(P.pythia_lines(P._PILEUP_LINES, 13.0, (), 12))
    rng = np.random.default_rng(3)
    ev, chosen, n_tried = P._signal_events(cfg, hard, 12, model, cc, rng, {"since_last": 0, "eff": 1.0})
    n_int = 1 + rng.poisson(1.1, 12)
    pu = P._prune(P.pythia_columns(minb.nextBatch(int((n_int - 1).sum()))), None)[0]
    if pu["counts"].size != int((n_int - 1).sum()):
        pytest.skip("Pythia skipped a failed pile-up event")

    rng_old = np.random.default_rng(99)
    e, p, ni, ch, _ = P._replicate(ev, pu, n_int, chosen, n_tried, 7)
    rec, prod, hs = P._record(e, p, ni, rng_old, cfg.luminous_region)
    if cut:
        P._invert_backward(rec, prod, hs + ch)
    P._decay_signal(rec, hs + ch, prod, model, rng_old)
    expected = layout_tables(rec)
    got = P._redecay_tables(cfg, ev, pu, n_int, chosen, np.random.default_rng(99), model)
    n_sig = np.bincount(expected["mc_particles"]["event"][expected["mc_particles"]["is_signal"]])
    assert np.unique(n_sig).size > 1  # the copies' signal trees differ in shape
    if cut:  # some Pythia events' signal went backward: those copies were inverted
        hard_start = np.cumsum(ev["counts"]) - ev["counts"]
        assert np.any(ev["pz"][hard_start + chosen] < 0)
    for table, cols in expected.items():
        for col, want in cols.items():
            np.testing.assert_array_equal(got[table][col], want, err_msg=f"{table}.{col}")
            assert got[table][col].dtype == want.dtype
