"""export / to_root / to_parquet / to_csv / NtupleWriter: round trips, cuts, streaming memory, bad input."""

from __future__ import annotations

import importlib
import os
import tracemalloc

import numpy as np
import pyarrow.parquet as pq
import pytest
import uproot

import ficino
import mambah
from mambah.errors import ExportError

DECAY = ficino.DEFAULT_DECAY

SOME = ["Lb_M", "Lc_M", "p_PX", "mu_PZ", "Lc_TRUEP_X", "p_PIDK", "mu_isMuon", "runNumber", "eventNumber", "nTracks"]


def test_public_api():
    assert dir(ficino) == [
        "DEFAULT_DECAY", "ExportSummary", "NtupleWriter", "VARIABLES", "Variable", "VertexResolution",
        "decay_spec", "export", "register", "to_csv", "to_parquet", "to_root",
    ]


def _store_reference(store: mambah.EventStore) -> dict[str, np.ndarray]:
    """The values the ntuple must hold, read straight from the store with SQL."""
    q = store.query(
        """SELECT e.batch, e.event, e.n_tracks, lc.px AS lc_px, p.px AS p_px, mu.pz AS mu_pz, p."PIDK" AS p_pidk,
                  mu.is_muon AS mu_ismuon
           FROM events e
           JOIN mc_particles lc ON lc.batch = e.batch AND lc.event = e.event AND lc.pid = 4122
           JOIN protoparticles p ON p.batch = e.batch AND p.event = e.event AND p.mc_particle = 4
           JOIN protoparticles mu ON mu.batch = e.batch AND mu.event = e.event AND mu.mc_particle = 2
           ORDER BY e.batch, e.event"""
    )
    return {k: q[k].to_numpy() for k in q.column_names}


def _check_against_store(arrays: dict[str, np.ndarray], ref: dict[str, np.ndarray]) -> None:
    np.testing.assert_array_equal(arrays["runNumber"], ref["batch"])
    np.testing.assert_array_equal(arrays["eventNumber"], ref["event"])
    np.testing.assert_array_equal(arrays["nTracks"], ref["n_tracks"])
    np.testing.assert_array_equal(arrays["Lc_TRUEP_X"], ref["lc_px"])
    np.testing.assert_array_equal(arrays["p_PX"], ref["p_px"])
    np.testing.assert_array_equal(arrays["mu_PZ"], ref["mu_pz"])
    np.testing.assert_array_equal(arrays["p_PIDK"], ref["p_pidk"].astype(np.float32))
    np.testing.assert_array_equal(arrays["mu_isMuon"], ref["mu_ismuon"].astype(np.float32))


def test_root_round_trip(small_store, tmp_path):
    out = tmp_path / "nt.root"
    summary = ficino.to_root(small_store, out, variables=SOME)
    assert summary.rows == summary.candidates == 400 and summary.batches == 2 and summary.format == "root"
    assert summary.columns == tuple(SOME)
    assert os.listdir(tmp_path) == ["nt.root"]
    with uproot.open(out) as f:
        tree = f["DecayTree"]
        assert tree.num_entries == 400
        assert tree.title == f"Ficino: {DECAY}"
        arrays = tree.arrays(library="np")
    assert arrays["runNumber"].dtype == np.int32 and arrays["p_PIDK"].dtype == np.float32
    _check_against_store(arrays, _store_reference(small_store))


def test_root_all_default_columns(small_store, tmp_path):
    out = tmp_path / "all.root"
    summary = ficino.export(small_store, out, tree="T", compression="ZSTD")
    with uproot.open(out) as f:
        keys = f["T"].keys()
    assert keys == list(summary.columns)
    assert "Lb_MCORR" in keys and "K_ProbNNk" in keys and "nu_TRUEID" in keys and "nu_PX" not in keys


def test_parquet_round_trip(small_store, tmp_path):
    summary = ficino.to_parquet(small_store, tmp_path / "nt.parquet", variables=SOME)
    table = pq.read_table(tmp_path / "nt.parquet")
    assert table.column_names == list(SOME) and summary.rows == 400
    _check_against_store({k: table[k].to_numpy() for k in SOME}, _store_reference(small_store))
    assert table.schema.field("Lb_M").metadata == {b"unit": b"MeV"}
    ds = ficino.export(small_store, tmp_path / "ds", fmt="parquet", variables=SOME)
    assert len(list((tmp_path / "ds").glob("*.parquet"))) == 2 and ds.rows == 400
    np.testing.assert_array_equal(pq.read_table(tmp_path / "ds")["p_PX"].to_numpy(), table["p_PX"].to_numpy())


def test_csv_matches_parquet(small_store, tmp_path):
    import pandas as pd

    ficino.to_csv(small_store, tmp_path / "nt.csv", variables=["Lc_M", "eventNumber"])
    ficino.to_parquet(small_store, tmp_path / "nt.parquet", variables=["Lc_M", "eventNumber"])
    c = pd.read_csv(tmp_path / "nt.csv")
    p = pd.read_parquet(tmp_path / "nt.parquet")
    np.testing.assert_allclose(c.Lc_M, p.Lc_M, rtol=1e-15)


def test_cut_and_aliases(small_store, tmp_path):
    full = ficino.export(small_store, tmp_path / "a.parquet", variables=["Lc_M", "mu_PT"])
    a = pq.read_table(tmp_path / "a.parquet").to_pandas()
    cut = ficino.export(small_store, tmp_path / "b.parquet", variables=["Lc_M"], cut="Lc_M > 2500 AND mu_PT > 500")
    b = pq.read_table(tmp_path / "b.parquet").to_pandas()
    expected = a[(a.Lc_M > 2500) & (a.mu_PT > 500)]
    assert 0 < cut.rows == len(expected) < full.rows
    np.testing.assert_array_equal(b.Lc_M, expected.Lc_M)
    renamed = ficino.export(small_store, tmp_path / "c.parquet", aliases={"Lc": "C"}, variables=["C_M"], cut="C_M > 2500")
    assert pq.read_table(tmp_path / "c.parquet").column_names == ["C_M"] and renamed.rows > 0


def test_all_candidates(make_store, tmp_path):
    store = make_store(batches=1, n=300, missing=0.1)
    reco = ficino.export(store, tmp_path / "r.parquet", variables=["Lb_BKGCAT", "K_TRACK_Type"])
    every = ficino.export(store, tmp_path / "a.parquet", variables=["Lb_BKGCAT", "K_TRACK_Type"], reconstructed_only=False)
    assert every.rows == every.candidates == 300 and reco.candidates == 300
    assert 0 < reco.rows < 300
    a = pq.read_table(tmp_path / "a.parquet").to_pandas()
    assert (a.Lb_BKGCAT == 60).sum() == 300 - reco.rows
    assert {0, 3} <= set(a.K_TRACK_Type) <= {0, 3, 5}  # 5: fixture tracks crossing < 3 VELO stations
    store.close()


def test_store_path_and_default_decay(make_store, tmp_path):
    path = tmp_path / "s.duckdb"
    make_store(str(path), batches=1, n=20).close()
    summary = ficino.export(str(path), tmp_path / "o.csv", variables=["Lb_M"])
    assert summary.decay == DECAY and summary.rows == 20


def test_ntuple_writer_streaming(small_store, tmp_path):
    out = tmp_path / "s.root"
    with ficino.NtupleWriter(out, variables=SOME) as w:
        for b in small_store.batches():
            assert w.write_batch(small_store, b) == 200
        assert not out.exists()
    assert w.summary is not None and w.summary.rows == 400
    with uproot.open(out) as f:
        _check_against_store(f["DecayTree"].arrays(library="np"), _store_reference(small_store))


def test_streaming_memory_is_flat(make_store, tmp_path):
    """Peak Python/numpy memory of an export does not grow with the number of batches."""
    peaks = {}
    for nb in (3, 24):
        store = make_store(batches=nb, n=400)
        tracemalloc.start()
        ficino.to_root(store, tmp_path / f"m{nb}.root", variables=["Lb_M", "Lc_M", "p_PX", "Lb_MCORR", "eventNumber"])
        peaks[nb] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        store.close()
    with uproot.open(tmp_path / "m24.root") as f:
        assert f["DecayTree"].num_entries == 24 * 400
    assert peaks[24] < 1.5 * peaks[3], peaks


# --------------------------------------------------------------------------- bad input
def test_unknown_alias_or_variable(small_store, tmp_path):
    with pytest.raises(ExportError, match="unknown alias.*aliases are Lb, Lc, mu, nu, p, K, pi"):
        ficino.export(small_store, tmp_path / "x.root", aliases={"Lx": "B"})
    with pytest.raises(ExportError, match="unknown variable 'PTT'.*variables are PX"):
        ficino.export(small_store, tmp_path / "x.root", variables=["PTT"])
    assert list(tmp_path.iterdir()) == []


def test_decay_matching_nothing(small_store, tmp_path):
    with pytest.raises(ExportError, match="matches nothing.*no B\\+ .*head particles there: 5122.*nothing written"):
        ficino.export(small_store, tmp_path / "x.root", decay="B+ -> K+ pi0")
    # the head exists but not with these daughters: found only after the scan, still nothing written
    with pytest.raises(ExportError, match="matches no candidate in 2 batch"):
        ficino.export(small_store, tmp_path / "x.root", decay="Lambda_b0 -> (Lambda_c+ -> p+ K- pi+) e- anti-nu_e")
    assert list(tmp_path.iterdir()) == []


def test_output_exists(small_store, tmp_path):
    (tmp_path / "x.root").write_text("keep me")
    with pytest.raises(ExportError, match="exists; pass overwrite"):
        ficino.export(small_store, tmp_path / "x.root")
    assert (tmp_path / "x.root").read_text() == "keep me"
    ficino.export(small_store, tmp_path / "x.root", variables=["Lb_M"], overwrite=True)
    with uproot.open(tmp_path / "x.root") as f:
        assert f["DecayTree"].num_entries == 400


def test_unwritable_path(small_store, tmp_path):
    with pytest.raises(ExportError, match="does not exist"):
        ficino.export(small_store, tmp_path / "nodir" / "x.root")
    (tmp_path / "afile").write_text("")
    with pytest.raises(ExportError, match="not a directory"):
        ficino.export(small_store, tmp_path / "afile" / "x.root")
    if os.path.isdir("/proc") and os.access("/proc", os.W_OK):
        with pytest.raises(ExportError, match="cannot create"):
            ficino.export(small_store, "/proc/ficino-test.root", variables=["Lb_M"])


def test_output_is_the_store(make_store, tmp_path):
    path = tmp_path / "s.duckdb"
    make_store(str(path), batches=1, n=5).close()
    with pytest.raises(ExportError, match="is the store being exported"):
        ficino.export(str(path), path, fmt="root", overwrite=True)
    with mambah.EventStore.open(path, read_only=True) as store:
        assert store.batches() == [0]


def test_empty_store(tmp_path):
    store = mambah.EventStore.memory()
    with pytest.raises(ExportError, match="is empty"):
        ficino.export(store, tmp_path / "x.root")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ExportError, match="does not exist"):
        ficino.export(tmp_path / "missing.duckdb", tmp_path / "x.root")


def test_no_protoparticles(batch_tables, tmp_path):
    store = mambah.EventStore.memory()
    t = batch_tables(0, 10)
    del t["protoparticles"]
    store.write_batch(mambah.BatchRecord(0, 10, 1), t)
    with pytest.raises(ExportError, match="no protoparticles.*--all-candidates"):
        ficino.export(store, tmp_path / "x.root")
    s = ficino.export(store, tmp_path / "x.parquet", reconstructed_only=False)
    cols = pq.read_table(tmp_path / "x.parquet")
    assert s.rows == 10 and np.isnan(cols["p_PX"].to_numpy()).all() and "p_PIDK" not in cols.column_names


@pytest.mark.parametrize(
    ("cut", "match"),
    [("Lc_M >", "does not parse"), ("Lc_MM > 1", "Lc_MM"), ("Lc_M + 1", "not a condition"), ("", "empty cut"),
     ("Lc_M > 1; DROP TABLE x", "does not parse|one condition")],
)
def test_bad_cut(small_store, tmp_path, cut, match):
    with pytest.raises(ExportError, match=match):
        ficino.export(small_store, tmp_path / "x.root", cut=cut)
    assert list(tmp_path.iterdir()) == []


def test_bad_format_and_compression(small_store, tmp_path):
    with pytest.raises(ExportError, match="suffix"):
        ficino.export(small_store, tmp_path / "x.h5")
    with pytest.raises(ExportError, match="unknown compression"):
        ficino.export(small_store, tmp_path / "x.root", compression="BZ2")
    with pytest.raises(ExportError, match="not available for Parquet"):
        ficino.export(small_store, tmp_path / "x.parquet", compression="LZMA")


def test_error_mid_export_leaves_no_file(small_store, tmp_path, monkeypatch):
    fx = importlib.import_module("ficino.export")  # the module (ficino.export is also the function)

    calls = {"n": 0}
    real = fx.candidates_from_tables

    def failing(*args, **kw):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("disk on fire")
        return real(*args, **kw)

    monkeypatch.setattr(fx, "candidates_from_tables", failing)
    with pytest.raises(RuntimeError, match="disk on fire"):
        ficino.export(small_store, tmp_path / "x.root", variables=["Lb_M"])
    assert list(tmp_path.iterdir()) == []


def test_read_with_root_if_installed(small_store, tmp_path):
    ROOT = pytest.importorskip("ROOT")
    out = tmp_path / "r.root"
    ficino.to_root(small_store, out, variables=["Lc_M", "eventNumber"])
    f = ROOT.TFile.Open(str(out))
    tree = f.Get("DecayTree")
    assert tree.GetEntries() == 400
    tree.GetEntry(5)
    assert tree.eventNumber == 5
    f.Close()
