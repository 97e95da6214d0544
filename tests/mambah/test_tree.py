from __future__ import annotations

import numpy as np
import pytest

import mambah
from mambah import daughters, descendants, match_decay, mother


def test_daughters_and_mother(generated_store):
    d = daughters(generated_store, "m.pid = 4122", batch=0).to_pandas()
    assert len(d) == 3 * 2000
    assert sorted(d.pid.unique()) == [-321, 211, 2212]
    m = mother(generated_store, "m.pid = 13").to_pandas()
    assert len(m) == 4000 and (m.pid == 5122).all()


def test_descendants_recursive(generated_store):
    d = descendants(generated_store, "m.pid = 5122", batch=1).to_pandas()
    assert len(d) == 6 * 2000
    assert d.groupby("generation").size().to_dict() == {1: 3 * 2000, 2: 3 * 2000}


def test_match_decay_flattens(generated_store):
    t = match_decay(generated_store, "Lambda_b0 -> (Lambda_c+ -> p+ K- pi+) mu- anti-nu_mu").to_pandas()
    assert len(t) == 4000
    assert {"Lb_px", "Lc_index", "p_pid", "K_pid", "pi_e", "mu_index", "nu_pid"} <= set(t.columns)
    assert (t.K_pid == -321).all() and (t.Lc_pid == 4122).all()
    # daughters four-momenta add up to the Lc
    s = t[["p_px", "K_px", "pi_px"]].sum(axis=1)
    np.testing.assert_allclose(s, t.Lc_px, rtol=1e-9, atol=1e-6)
    # the wrong descriptor matches nothing; the conjugate only with CC
    assert match_decay(generated_store, "Lambda_b0 -> (Lambda_c+ -> p+ K- pi+) mu- anti-nu_e").num_rows == 0
    assert match_decay(generated_store, "[anti-Lambda_b0 -> (anti-Lambda_c- -> anti-p- K+ pi-) mu+ nu_mu]CC").num_rows == 4000


def test_match_decay_aliases(generated_store):
    t = match_decay(generated_store, "Lambda_c+ -> p+ K- pi+", aliases=["Lc", "P", "Kaon", "Pion"], columns=("index", "pid"))
    assert t.column_names == ["batch", "event", "Lc_index", "Lc_pid", "P_index", "P_pid", "Kaon_index", "Kaon_pid", "Pion_index", "Pion_pid"]
    with pytest.raises(mambah.DecayError, match="aliases"):
        match_decay(generated_store, "Lambda_c+ -> p+ K- pi+", aliases=["a", "b"])


def test_identical_daughters_one_row_per_candidate():
    import pyarrow as pa

    store = mambah.EventStore.memory()
    n = 4
    cols = {
        "event": [0] * n, "index": [0, 1, 2, 3], "pid": [421, -321, 211, 211], "px": [0.0] * n, "py": [0.0] * n,
        "pz": [0.0] * n, "e": [0.0] * n, "mass": [0.0] * n, "charge": [0, -1, 1, 1], "mother": [-1, 0, 0, 0],
        "first_daughter": [1, -1, -1, -1], "last_daughter": [3, -1, -1, -1], "prod_vertex": [0, 1, 1, 1],
        "decay_vertex": [1, -1, -1, -1], "is_signal": [True] * n, "batch": [0] * n,
    }
    store.write_batch(mambah.BatchRecord(0, 1, 0), {"mc_particles": pa.table(cols)})
    t = match_decay(store, "D0 -> K- pi+ pi+").to_pandas()
    assert len(t) == 1 and t.pi1_index[0] == 2 and t.pi2_index[0] == 3
