"""Candidate building: truth/reco join, composites against an independent vector computation, truth matching."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
import vector

import mambah
from ficino.candidates import (
    DEFAULT_DECAY,
    build_candidates,
    compute_columns,
    decay_spec,
    default_decay,
    present_sources,
    resolve_columns,
)
from mambah.errors import ExportError
from mambah.tree import match_decay

DECAY = DEFAULT_DECAY

PDG_MASS = {"p": 938.27208816, "K": 493.677, "pi": 139.57039, "mu": 105.6583755}


def _reco(store: mambah.EventStore, batch: int) -> dict[int, dict[str, np.ndarray]]:
    pp = store.query(f"SELECT * FROM protoparticles WHERE batch = {batch} ORDER BY event").to_pandas()
    return {j: pp[pp.mc_particle == j].set_index("event") for j in (2, 4, 5, 6)}


def test_spec_roles_and_aliases():
    spec = decay_spec(DECAY)
    assert spec.aliases == ("Lb", "Lc", "mu", "nu", "p", "K", "pi")
    assert spec.kinds == {"Lb": "composite", "Lc": "composite", "mu": "track", "nu": "neutral", "p": "track", "K": "track", "pi": "track"}
    assert spec.tracks == {"Lb": ("mu", "p", "K", "pi"), "Lc": ("p", "K", "pi")}
    assert decay_spec(DECAY, {"Lb": "B", "pi": "Pi"}).aliases == ("B", "Lc", "mu", "nu", "p", "K", "Pi")
    assert decay_spec(DECAY, ["a", "b", "c", "d", "e", "f", "g"]).head == "a"


@pytest.mark.parametrize(
    ("aliases", "match"),
    [({"Lx": "B"}, "unknown alias.*'Lx'.*Lb, Lc"), (["a", "b"], "2 aliases"), (["a"] * 7, "unique"), (["1a", "b", "c", "d", "e", "f", "g"], "identifier")],
)
def test_bad_aliases(aliases, match):
    with pytest.raises(ExportError, match=match):
        decay_spec(DECAY, aliases)


def test_bad_descriptor():
    with pytest.raises(ExportError, match="Lambda_bx"):
        decay_spec("Lambda_bx -> p+ K-")


def test_composite_masses_against_vector(small_store):
    spec = decay_spec(DECAY)
    cands = build_candidates(small_store, spec, 1)
    cols = compute_columns(cands, resolve_columns(spec))
    reco = _reco(small_store, 1)
    ev = cols["eventNumber"]
    p4 = {}
    for name, j in (("mu", 2), ("p", 4), ("K", 5), ("pi", 6)):
        r = reco[j].loc[ev]
        # float64: the stored momenta may be float32, whose sums lose the mass's digits
        p4[name] = vector.array({k: r[k].to_numpy(np.float64) for k in ("px", "py", "pz")} | {"M": np.full(len(ev), PDG_MASS[name])})
        np.testing.assert_allclose(cols[f"{name}_PX"], r.px.to_numpy())
        np.testing.assert_allclose(cols[f"{name}_PE"], p4[name].E, rtol=1e-6)
    lc = p4["p"] + p4["K"] + p4["pi"]
    lb = lc + p4["mu"]
    np.testing.assert_allclose(cols["Lc_M"], lc.mass, rtol=1e-6)
    np.testing.assert_allclose(cols["Lb_M"], lb.mass, rtol=1e-6)
    np.testing.assert_allclose(cols["Lb_PT"], lb.pt, rtol=1e-9)
    np.testing.assert_allclose(cols["Lb_ETA"], lb.eta, rtol=1e-9)
    # corrected mass and DIRA with the flight direction from the written vertices
    flight = vector.array({
        "x": cols["Lb_ENDVERTEX_X"] - cols["Lb_OWNPV_X"],
        "y": cols["Lb_ENDVERTEX_Y"] - cols["Lb_OWNPV_Y"],
        "z": cols["Lb_ENDVERTEX_Z"] - cols["Lb_OWNPV_Z"],
    })
    p3 = lb.to_Vector3D()
    pperp = p3.cross(flight.unit()).mag
    np.testing.assert_allclose(cols["Lb_MCORR"], np.sqrt(lb.mass**2 + pperp**2) + pperp, rtol=1e-6)
    np.testing.assert_allclose(cols["Lb_DIRA"], p3.dot(flight) / (p3.mag * flight.mag), rtol=1e-9)
    np.testing.assert_allclose(cols["Lb_FD"], flight.mag, rtol=1e-12)
    assert np.all(cols["Lb_MCORR"] >= cols["Lb_M"])
    np.testing.assert_array_equal(cols["Lb_FD"], cols["Lb_FD_OWNPV"])  # the old names alias the LHCb ones
    np.testing.assert_array_equal(cols["Lb_DIRA"], cols["Lb_DIRA_OWNPV"])


def test_truth_columns(small_store):
    spec = decay_spec(DECAY)
    cols = compute_columns(build_candidates(small_store, spec, 0), resolve_columns(spec))
    mc = small_store.query("SELECT * FROM mc_particles WHERE batch = 0 ORDER BY event, index").to_pandas()
    mv = small_store.query("SELECT * FROM mc_vertices WHERE batch = 0 ORDER BY event, index").to_pandas()
    lc = mc[mc["index"] == 1]
    np.testing.assert_array_equal(cols["Lc_TRUEP_X"], lc.px.to_numpy())
    np.testing.assert_array_equal(cols["Lc_TRUEID"], 4122)
    np.testing.assert_array_equal(cols["Lc_MC_MOTHER_ID"], 5122)
    np.testing.assert_array_equal(cols["Lb_MC_MOTHER_ID"], 0)
    np.testing.assert_array_equal(cols["nu_TRUEID"], -14)
    np.testing.assert_array_equal(cols["Lc_TRUEENDVERTEX_Z"], mv[mv["index"] == 2].z.to_numpy())
    np.testing.assert_array_equal(cols["p_TRUEORIGINVERTEX_Z"], mv[mv["index"] == 2].z.to_numpy())
    assert np.isnan(cols["p_TRUEENDVERTEX_X"]).all()
    np.testing.assert_array_equal(cols["runNumber"], 0)
    np.testing.assert_array_equal(cols["eventNumber"], np.arange(200))
    assert "nu_PX" not in cols and "nu_TRUEP_X" in cols


def _hand_built(batch_tables, batch: int = 0, n: int = 6) -> dict[str, pa.Table]:
    t = batch_tables(batch, n, seed=5)
    pp = t["protoparticles"].to_pandas()
    pp = pp[~((pp.event == 1) & (pp.mc_particle == 5))]  # event 1: K not reconstructed
    pp.loc[(pp.event == 2) & (pp.mc_particle == 6), "charge"] = -1  # event 2: pi with the wrong charge
    clone = pp[(pp.event == 3) & (pp.mc_particle == 4)].copy()  # event 3: p reconstructed twice
    clone["index"] = 10
    clone["px"] += 500.0
    pp.loc[(pp.event == 4) & (pp.mc_particle == 2), "mc_particle"] = -1  # event 4: the muon track is a ghost
    t["protoparticles"] = pa.Table.from_pandas(pd_concat(pp, clone), preserve_index=False)
    return t


def pd_concat(*frames):
    import pandas as pd

    return pd.concat(frames, ignore_index=True)


def test_truth_matching_on_hand_built_events(batch_tables):
    store = mambah.EventStore.memory()
    tables = _hand_built(batch_tables)
    store.write_batch(mambah.BatchRecord(0, 6, 5), tables)
    spec = decay_spec(DECAY)
    cands = build_candidates(store, spec, 0, reconstructed_only=False)
    cols = compute_columns(cands, resolve_columns(spec))
    np.testing.assert_array_equal(cols["Lb_BKGCAT"], [0, 60, 30, 0, 60, 0])
    np.testing.assert_array_equal(cols["Lc_BKGCAT"], [0, 60, 30, 0, 0, 0])
    np.testing.assert_array_equal(cols["K_TRACK_Type"], [3, 0, 3, 3, 3, 3])
    assert np.isnan(cols["K_PX"][1]) and np.isnan(cols["Lc_M"][1]) and np.isnan(cols["Lb_M"][4])
    assert np.isfinite(cols["Lc_M"][4])
    # the clone: the lowest-index track is used
    pp = tables["protoparticles"].to_pandas()
    first = pp[(pp.event == 3) & (pp.mc_particle == 4)].sort_values("index").iloc[0]
    assert cols["p_PX"][3] == np.float32(first.px)  # the store keeps momenta as float32
    reco = build_candidates(store, spec, 0, reconstructed_only=True)
    assert reco.n_matched == 6 and len(reco) == 4
    np.testing.assert_array_equal(reco.event["event"], [0, 2, 3, 5])
    store.close()


def test_own_pv_is_the_reconstructed_pv_with_the_smallest_ipchi2(batch_tables):
    store = mambah.EventStore.memory()
    t = batch_tables(0, 4)
    ev = t["events"].to_pandas()
    # events 0-2: the signal PV (shifted by 1 um / 10 um) and a pile-up PV 30 mm downstream; event 3: none
    e = np.array([0, 1, 2, 0, 1, 2], np.int32)
    dz = np.array([0.01, 0.01, 0.01, 30.0, 30.0, 30.0])
    t["vertices"] = pa.table({
        "batch": np.zeros(6, np.int32), "event": e, "index": np.array([0, 0, 0, 1, 1, 1], np.int32),
        "x": ev.pv_x.to_numpy()[e] + 0.001, "y": ev.pv_y.to_numpy()[e], "z": ev.pv_z.to_numpy()[e] + dz,
        "cov_xx": np.full(6, 1e-4), "cov_yy": np.full(6, 1e-4), "cov_zz": np.full(6, 4e-3),
        "chi2": np.full(6, 50.0), "ndof": np.full(6, 47, np.int32),
        "is_primary": np.ones(6, bool), "mc_vertex": np.array([0, -1, 0, -1, -1, -1], np.int32),
    })
    store.write_batch(mambah.BatchRecord(0, 4, 1), t)
    spec = decay_spec(DECAY)
    names = ["Lb_OWNPV_X", "Lb_OWNPV_Z", "Lb_OWNPV_NDOF", "Lc_OWNPV_Z", "Lb_FDCHI2"]
    cols = compute_columns(build_candidates(store, spec, 0), resolve_columns(spec, names))
    for i in (0, 1, 2):
        # the store keeps positions as float32 (and may round them to 0.1 um): equal to 1e-4 mm
        assert cols["Lb_OWNPV_X"][i] == pytest.approx(ev.pv_x[i] + 0.001, abs=1e-4)
        assert cols["Lb_OWNPV_Z"][i] == pytest.approx(ev.pv_z[i] + 0.01, abs=1e-4)
        assert cols["Lb_OWNPV_NDOF"][i] == 47
    np.testing.assert_array_equal(cols["Lc_OWNPV_Z"][:3], cols["Lb_OWNPV_Z"][:3])
    assert cols["Lb_OWNPV_X"][3] != ev.pv_x[3] + 0.001  # no reconstructed PV: smeared truth
    assert abs(cols["Lb_OWNPV_X"][3] - ev.pv_x[3]) < 0.1 and cols["Lb_OWNPV_NDOF"][3] == -1
    store.close()


def test_fitted_vertices_have_unit_pulls_and_chi2_law(make_store):
    """Decay vertices fitted from the tracks (Lc from p K pi, Lb from the Lc line and the mu):
    pulls against the true vertices, chi2 ~ chi2(ndf), decay-time pulls, deterministic."""
    from scipy import stats  # type: ignore[import-untyped]

    store = make_store(batches=1, n=2500, seed=11)
    spec = decay_spec(DECAY)
    names = ["ENDVERTEX_X", "ENDVERTEX_Y", "ENDVERTEX_Z", "ENDVERTEX_XERR", "ENDVERTEX_YERR", "ENDVERTEX_ZERR",
             "ENDVERTEX_CHI2", "ENDVERTEX_NDOF", "TRUEENDVERTEX_X", "TRUEENDVERTEX_Y", "TRUEENDVERTEX_Z",
             "TAU", "TAUERR", "TRUETAU", "OWNPV_Z", "FD_OWNPV", "FDCHI2_OWNPV", "IPCHI2_OWNPV", "MCORRERR"]
    cols = compute_columns(build_candidates(store, spec, 0), resolve_columns(spec, names))
    again = compute_columns(build_candidates(store, spec, 0), resolve_columns(spec, names))
    for a, ndof in (("Lc", 3), ("Lb", 1)):
        np.testing.assert_array_equal(cols[f"{a}_ENDVERTEX_Z"], again[f"{a}_ENDVERTEX_Z"])
        assert np.all(cols[f"{a}_ENDVERTEX_NDOF"] == ndof)
        for k in "XYZ":
            pull = (cols[f"{a}_ENDVERTEX_{k}"] - cols[f"{a}_TRUEENDVERTEX_{k}"]) / cols[f"{a}_ENDVERTEX_{k}ERR"]
            assert abs(np.mean(pull)) < 0.1 and abs(np.std(pull) - 1) < 0.1, (a, k, np.mean(pull), np.std(pull))
        # KS p-values 0.01-0.3 across fixture seeds (Lb: the Lc enters as a linearised line); mean chi2 = ndof
        assert stats.kstest(cols[f"{a}_ENDVERTEX_CHI2"], "chi2", args=(ndof,)).pvalue > 0.001
        assert abs(np.mean(cols[f"{a}_ENDVERTEX_CHI2"]) / ndof - 1) < 0.1
        assert np.all(cols[f"{a}_MCORRERR"] > 0)
    # Lc (fully reconstructed, decay time from the fitted Lb vertex): unit pulls in the core, measured
    # median -0.02, width 1.06 (the Lb-Lc vertex correlation is neglected); the Lb misses its neutrino, so its
    # visible-momentum TAU is biased against TRUETAU, as in LHCb semileptonic samples
    tau_pull = (cols["Lc_TAU"] - cols["Lc_TRUETAU"]) / cols["Lc_TAUERR"]
    assert abs(np.median(tau_pull)) < 0.1 and abs(stats.iqr(tau_pull) / 1.349 - 1) < 0.15
    # the visible Lb (no neutrino) does not point back exactly: IPCHI2 well above chi2(2) (median 4.1)
    assert np.all(np.isfinite(cols["Lb_IPCHI2_OWNPV"])) and np.median(cols["Lb_IPCHI2_OWNPV"]) > 1.4
    assert np.median(cols["Lb_FDCHI2_OWNPV"]) > 9  # measured 35 (10 mm mean flight)
    store.close()


def test_null_pid_columns_are_nan_and_absent_by_default(make_store):
    store = make_store(batches=1, n=50, pid=False)
    assert "PIDK" not in present_sources(store) and "px" in present_sources(store)
    spec = decay_spec(DECAY)
    default = {c.name for c in resolve_columns(spec, None, present_sources(store))}
    assert "p_PIDK" not in default and "p_TRACK_CHI2NDOF" in default
    cols = compute_columns(build_candidates(store, spec, 0), resolve_columns(spec, ["PIDK", "isMuon"]))
    assert set(cols) == {"mu_PIDK", "p_PIDK", "K_PIDK", "pi_PIDK", "mu_isMuon", "p_isMuon", "K_isMuon", "pi_isMuon"}
    assert all(np.isnan(v).all() and v.dtype == np.float32 for v in cols.values())
    store.close()


def test_resolve_columns_selection_and_errors():
    spec = decay_spec(DECAY)
    names = [c.name for c in resolve_columns(spec, ["PT", "Lc_M", "nTracks", "Lc_M"])]
    assert names == ["Lb_PT", "Lc_PT", "mu_PT", "p_PT", "K_PT", "pi_PT", "Lc_M", "nTracks"]
    assert [c.name for c in resolve_columns(spec, "Lb_MCORR, nPVs")] == ["Lb_MCORR", "nPVs"]
    with pytest.raises(ExportError, match="unknown variable 'FOO'.*variables are PX"):
        resolve_columns(spec, ["FOO"])
    for empty in ([], "", " , ", ()):  # the Python API as the CLI's --variables '': no ntuple without columns
        with pytest.raises(ExportError, match="variables names no variable"):
            resolve_columns(spec, empty)
    with pytest.raises(ExportError, match="unknown variable 'Lx_PT'.*aliases are Lb, Lc"):
        resolve_columns(spec, ["Lx_PT"])
    with pytest.raises(ExportError, match="PX does not apply to nu"):
        resolve_columns(spec, ["nu_PX"])
    with pytest.raises(ExportError, match="applies to no particle"):
        resolve_columns(decay_spec("B0 -> K0 gamma"), ["isMuon"])


def test_default_decay_from_store_metadata():
    store = mambah.EventStore.memory()
    assert default_decay(store) == DEFAULT_DECAY
    store.set_metadata("pipeline", '[run]\nevents = 1\n\n[[passes]]\nkind = "generator"\nname = "generator"\ndecay = "B+ -> K+ pi0"\n')
    assert default_decay(store) == "B+ -> K+ pi0"
    store.set_metadata("pipeline", '[[passes]]\nkind = "generator"\ndecay = "B+ -> K+ pi0"\ndec_file = "x.dec"\n')
    with pytest.raises(ExportError, match="DecFile 'x.dec'"):
        default_decay(store)
    store.close()


def test_empty_batch_gives_no_candidates(small_store):
    spec = decay_spec("B+ -> K+ pi0")
    cands = build_candidates(small_store, spec, 0)
    assert len(cands) == 0 and cands.n_matched == 0
    cols = compute_columns(cands, resolve_columns(spec))
    assert all(len(v) == 0 for v in cols.values())


def _truth_rows(store: mambah.EventStore, decay: str, batch: int) -> tuple[np.ndarray, np.ndarray]:
    """(numpy matcher, mambah.match_decay) candidates as int64 (n, 1 + particles): event, indices (breadth-first)."""
    from ficino.candidates import _fetch, _match

    spec = decay_spec(decay)
    mp = _fetch(store, batch)["mp"]
    event, rows = _match(spec, mp)
    mine = np.stack([event] + [mp["index"][r] for r in rows], axis=1).astype(np.int64)
    t = match_decay(store, spec.tree, aliases=list(spec.aliases), columns=("index",), batch=batch, cc=spec.cc)
    ref = np.stack([t["event"].to_numpy()] + [t[f"{a}_index"].to_numpy() for a in spec.aliases], axis=1).astype(np.int64)
    return mine, ref


def _lexsorted(a: np.ndarray) -> np.ndarray:
    return a[np.lexsort(a.T[::-1])] if len(a) else a


@pytest.fixture(scope="module")
def dplus_store(tmp_path_factory):
    """Generated D+ -> K- pi+ pi+ and D- -> K+ pi- pi- events (identical daughters) mixed in each batch, 2 decays per event.

    Batch b holds the events of batch b of a D+ run (events 0..299) and of a D- run (events 300..599).
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    from sim import Generator, Pipeline, RunConfig, run

    tmp = tmp_path_factory.mktemp("dplus")
    parts = []
    for i, decay in enumerate(("D+ -> K- pi+ pi+", "D- -> K+ pi- pi-")):
        gen = Generator(decay=decay, particles_per_event=2)
        run(Pipeline((gen,), RunConfig(events=600, batch_size=300, seed=11 + i)), tmp / f"{i}.duckdb", progress=False)
        parts.append(mambah.EventStore.open(tmp / f"{i}.duckdb", read_only=True))
    store = mambah.EventStore.memory()
    for b in (0, 1):
        tables = {}
        for name in ("events", "mc_particles", "mc_vertices"):
            ts = [p.table(name, batch=b) for p in parts]
            ts[1] = ts[1].set_column(ts[1].column_names.index("event"), "event", pc.add(ts[1]["event"], pa.scalar(300, ts[1]["event"].type)))
            tables[name] = pa.concat_tables(ts)
        store.write_batch(mambah.BatchRecord(b, 600, b), tables)
    for p in parts:
        p.close()
    yield store
    store.close()


@pytest.mark.parametrize(
    "decay",
    [
        DEFAULT_DECAY,
        f"[{DEFAULT_DECAY}]CC",
        "[anti-Lambda_b0 -> (anti-Lambda_c- -> anti-p- K+ pi-) mu+ nu_mu]CC",
        "anti-Lambda_b0 -> (anti-Lambda_c- -> anti-p- K+ pi-) mu+ nu_mu",
        "Lambda_c+ -> p+ K- pi+",
        "Lambda_b0 -> (Lambda_c+ -> p+ K- pi+) mu- anti-nu_e",
        "Lambda_b0 -> Lambda_c+ mu- anti-nu_mu",
        "Lambda_b0 -> Lambda_c+ mu-",
    ],
)
def test_numpy_matcher_equals_match_decay_default(generated_store, decay):
    for batch in (0, 1):
        mine, ref = _truth_rows(generated_store, decay, batch)
        assert len(ref) == len(mine)
        np.testing.assert_array_equal(mine, _lexsorted(mine))  # sorted by event, head index, then the others
        np.testing.assert_array_equal(mine, _lexsorted(ref))


@pytest.mark.parametrize("decay", ["[D+ -> K- pi+ pi+]CC", "D+ -> K- pi+ pi+", "D- -> K+ pi- pi-", "D+ -> pi+ pi+ K-", "[D+ -> pi+ K- pi+]CC", "D+ -> K- pi+"])
def test_numpy_matcher_equals_match_decay_identical_daughters(dplus_store, decay):
    total = 0
    for batch in (0, 1):
        mine, ref = _truth_rows(dplus_store, decay, batch)
        assert len(ref) == len(mine)
        np.testing.assert_array_equal(mine, _lexsorted(ref))
        total += len(mine)
    if decay.endswith("CC"):
        assert total == 2 * 2 * 600
    elif decay != "D+ -> K- pi+":
        assert total == 2 * 600


def test_numpy_matcher_identical_daughters_all_assignments():
    """Two pi+ under one D0 and a child list in non-index order: one row per assignment, as match_decay."""
    import pyarrow as pa

    store = mambah.EventStore.memory()
    cols = {
        "batch": [0] * 9, "event": [0] * 5 + [1] * 4, "index": [0, 1, 2, 3, 4, 0, 1, 2, 3],
        "pid": [421, 211, -321, 211, 211, 421, 211, -321, 211], "px": [0.0] * 9, "py": [0.0] * 9, "pz": [0.0] * 9,
        "e": [0.0] * 9, "mass": [0.0] * 9, "charge": [0, 1, -1, 1, 1, 0, 1, -1, 1], "mother": [-1, 0, 0, 0, 0, -1, 0, 0, 0],
        "first_daughter": [1, -1, -1, -1, -1, 1, -1, -1, -1], "last_daughter": [4, -1, -1, -1, -1, 3, -1, -1, -1],
        "prod_vertex": [0, 1, 1, 1, 1, 0, 1, 1, 1], "decay_vertex": [1, -1, -1, -1, -1, 1, -1, -1, -1], "is_signal": [True] * 9,
    }
    store.write_batch(mambah.BatchRecord(0, 2, 0), {"mc_particles": pa.table(cols)})
    for decay in ("D0 -> K- pi+ pi+ pi+", "D0 -> pi+ K- pi+", "[D0 -> K- pi+ pi+]CC", "D0 -> K- pi+ pi+", "D0 -> K- pi+"):
        mine, ref = _truth_rows(store, decay, 0)
        np.testing.assert_array_equal(mine, _lexsorted(ref))
    mine, _ = _truth_rows(store, "D0 -> K- pi+ pi+ pi+", 0)
    np.testing.assert_array_equal(mine, [[0, 0, 2, 1, 3, 4]])
    mine, _ = _truth_rows(store, "D0 -> pi+ K- pi+", 0)
    np.testing.assert_array_equal(mine, [[1, 0, 1, 2, 3]])


@pytest.mark.parametrize("layout", ["dense", "sparse", "duplicated", "unsorted"])
def test_lookup_matches_brute_force(layout):
    """``_Lookup.find`` = the first row holding each (event, index) key, for any table layout."""
    from ficino.candidates import _Lookup

    rng = np.random.default_rng(5)
    counts = rng.integers(0, 6, 200)
    event = np.repeat(np.arange(200), counts).astype(np.int32)
    index = (np.arange(len(event)) - np.repeat(np.cumsum(counts) - counts, counts)).astype(np.int32)
    if layout == "sparse":
        index = index * 3 + 1
    elif layout == "duplicated":
        dup = rng.random(len(event)) < 0.2
        event, index = np.repeat(event, 1 + dup), np.repeat(index, 1 + dup)
    elif layout == "unsorted":
        perm = rng.permutation(len(event))
        event, index = event[perm], index[perm]
    q_event = rng.integers(-1, 202, 3000).astype(np.int32)
    q_index = rng.integers(-2, 18, 3000).astype(np.int32)
    got = _Lookup(event, index).find(q_event, q_index)
    first = {}
    for row, k in enumerate(zip(event.tolist(), index.tolist())):
        first.setdefault(k, row)
    want = [first.get((e, i), -1) if i >= 0 else -1 for e, i in zip(q_event.tolist(), q_index.tolist())]
    assert got.tolist() == want


def test_background_category_follows_the_lhcb_decision_tree() -> None:
    from ficino.candidates import background_category

    ok, no = np.ones(4, bool), np.zeros(4, bool)
    true_m = np.array([5279.0, 5400.0, 5379.0, 5379.5])
    # complete: signal or reflection; partial: low mass (true mass < PDG + 100 MeV) or part-reco
    np.testing.assert_array_equal(background_category(ok, ok, True, true_m, 5279.5), [0, 0, 0, 0])
    np.testing.assert_array_equal(background_category(ok, no, True, true_m, 5279.5), [30, 30, 30, 30])
    np.testing.assert_array_equal(background_category(ok, ok, False, true_m, 5279.5), [50, 40, 50, 40])
    np.testing.assert_array_equal(background_category(ok, no, False, true_m, 5279.5), [40, 40, 40, 40])
    np.testing.assert_array_equal(background_category(no, ok, True, true_m, 5279.5), [60, 60, 60, 60])


def test_a_missing_neutral_leaf_makes_the_candidate_partial(batch_tables):
    """The hand-built Lb decay with its neutrino relabelled a pi0 (never reconstructed): Lb is 50 or 40
    by its true mass, the Lc (whose subtree is complete) stays 0; a wrong-charge pi makes the Lb 40."""
    t = _hand_built(batch_tables)
    mc = t["mc_particles"].to_pandas()
    mc.loc[mc["index"] == 3, ["pid", "charge"]] = [111, 0]
    t["mc_particles"] = pa.Table.from_pandas(mc, preserve_index=False)
    store = mambah.EventStore.memory()
    store.write_batch(mambah.BatchRecord(0, 6, 5), t)
    spec = decay_spec("Lambda_b0 -> (Lambda_c+ -> p+ K- pi+) mu- pi0")
    cols = compute_columns(build_candidates(store, spec, 0, reconstructed_only=False), resolve_columns(spec))
    lb = mc[mc["index"] == 0].set_index("event").loc[cols["eventNumber"]]
    true_m = np.sqrt(lb.e.to_numpy(np.float64) ** 2 - (lb[["px", "py", "pz"]].to_numpy(np.float64) ** 2).sum(axis=1))
    from mambah.descriptor import lookup_particle

    partial = np.where(true_m - 100.0 < lookup_particle(5122).mass, 50, 40)
    assert set(partial) == {40, 50}  # the fixture's true masses straddle the cut
    # events: 0 ok, 1 K missing, 2 pi wrong charge, 3 clone (first track used), 4 ghost mu, 5 ok
    np.testing.assert_array_equal(cols["Lb_BKGCAT"], [partial[0], 60, 40, partial[3], 60, partial[5]])
    np.testing.assert_array_equal(cols["Lc_BKGCAT"], [0, 60, 30, 0, 0, 0])
    store.close()
