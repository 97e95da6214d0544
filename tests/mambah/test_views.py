"""The ``particles`` and ``tracks`` views: in every store (file, memory, Parquet dataset, older files), one global key.

Two batches with the same event and particle numbers: a join that forgets
``batch`` multiplies rows; the views' keys cannot.
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa  # type: ignore[import-untyped]
import pytest

import mambah
from mambah.schema import VIEWS

N_EVENTS = 3
#: per event: B+ (0) -> J/psi (1) K+ (2); J/psi -> mu+ (3) mu- (4)
PIDS = [521, 443, 321, -13, 13]
MOTHER = [-1, 0, 0, 1, 1]
#: tracks per event: K+, mu+, mu- and one ghost
TRACK_MC = [2, 3, 4, -1]


def _tables(batch: int) -> dict[str, pa.Table]:
    rng = np.random.default_rng(batch)
    n, s, k = N_EVENTS, len(PIDS), len(TRACK_MC)
    mc: dict[str, np.ndarray] = {
        "batch": np.full(n * s, batch, np.int32), "event": np.repeat(np.arange(n, dtype=np.int32), s),
        "index": np.tile(np.arange(s, dtype=np.int32), n), "pid": np.tile(np.array(PIDS, np.int32), n),
        "px": rng.normal(0, 1000, n * s), "py": rng.normal(0, 1000, n * s), "pz": rng.uniform(1e4, 1e5, n * s),
        "mother": np.tile(np.array(MOTHER, np.int32), n),
    }
    mc["e"] = np.sqrt(mc["px"] ** 2 + mc["py"] ** 2 + mc["pz"] ** 2)
    m = n * s
    mc.update({"mass": np.zeros(m), "charge": np.zeros(m, np.int16), "first_daughter": np.full(m, -1, np.int32),
               "last_daughter": np.full(m, -1, np.int32), "prod_vertex": np.zeros(m, np.int32),
               "decay_vertex": np.full(m, -1, np.int32), "is_signal": np.ones(m, bool)})
    pp: dict[str, np.ndarray] = {
        "batch": np.full(n * k, batch, np.int32), "event": np.repeat(np.arange(n, dtype=np.int32), k),
        "index": np.tile(np.arange(k, dtype=np.int32), n), "mc_particle": np.tile(np.array(TRACK_MC, np.int32), n),
        "track_type": np.full(n * k, 3, np.int16), "px": rng.normal(0, 1000, n * k),
    }
    ev = {"batch": np.full(n, batch, np.int32), "event": np.arange(n, dtype=np.int32)}
    return {"events": pa.table(ev), "mc_particles": pa.table(mc), "protoparticles": pa.table(pp)}


def _fill(store: mambah.EventStore) -> mambah.EventStore:
    for b in (0, 1):
        store.write_batch(mambah.BatchRecord(b, N_EVENTS, 10 + b), _tables(b))
    return store


def _check_views(store: mambah.EventStore) -> None:
    n_tracks = 2 * N_EVENTS * len(TRACK_MC)
    # the mistake the views prevent: joining without batch multiplies the rows by the number of batches
    naive = store.query("SELECT count(*) AS n FROM protoparticles p JOIN mc_particles m ON m.event = p.event "
                        "AND m.index = p.mc_particle").column("n")[0].as_py()
    assert naive == 2 * (n_tracks - 2 * N_EVENTS)
    tracks = store.query("SELECT * FROM tracks ORDER BY batch, event, index").to_pydict()
    assert len(tracks["track_id"]) == n_tracks == store.count("protoparticles")
    assert len(set(tracks["track_id"])) == n_tracks
    truth = {(r["batch"], r["event"], r["index"]): r for r in store.table("mc_particles").to_pylist()}
    for i in range(n_tracks):
        key = (tracks["batch"][i], tracks["event"][i], tracks["mc_particle"][i])
        if tracks["mc_particle"][i] < 0:  # a ghost: no truth
            assert tracks["true_pid"][i] is None and tracks["particle_id"][i] is None and tracks["mother_id"][i] is None
            continue
        mc = truth[key]
        assert tracks["true_pid"][i] == mc["pid"] and tracks["true_pz"][i] == mc["pz"] and tracks["true_e"][i] == mc["e"]
        assert tracks["true_mother_pid"][i] == PIDS[MOTHER[mc["index"]]]
    particles = store.query("SELECT * FROM particles").to_pydict()
    assert len(particles["particle_id"]) == 2 * N_EVENTS * len(PIDS) == len(set(particles["particle_id"]))
    assert len(set(particles["event_id"])) == 2 * N_EVENTS
    # the global keys join without batch: every matched track finds its particle, and each mother its daughters
    rows = store.query("SELECT count(*) AS n, count(DISTINCT t.track_id) AS d FROM tracks t "
                       "JOIN particles p ON p.particle_id = t.particle_id").to_pylist()[0]
    assert rows == {"n": n_tracks - 2 * N_EVENTS, "d": n_tracks - 2 * N_EVENTS}
    jpsi = store.query("SELECT count(*) AS n FROM particles d JOIN particles m ON m.particle_id = d.mother_id "
                       "WHERE m.pid = 443 AND d.mother_pid = 443").column("n")[0].as_py()
    assert jpsi == 2 * 2 * N_EVENTS


def _views(store: mambah.EventStore) -> dict[str, bool]:
    rows = store.connection.execute("SELECT view_name, temporary FROM duckdb_views() WHERE NOT internal").fetchall()
    return {name: temp for name, temp in rows if name in VIEWS}


def test_views_in_a_new_store_file(tmp_path: Path) -> None:
    path = tmp_path / "s.duckdb"
    with _fill(mambah.EventStore.create(path)) as store:
        _check_views(store)
    with mambah.EventStore.open(path, read_only=True) as store:
        assert _views(store) == {"particles": False, "tracks": False}  # stored in the file
        _check_views(store)
    con = duckdb.connect(str(path), read_only=True)  # plain DuckDB sees them too
    try:
        assert con.execute("SELECT count(*) FROM tracks").fetchone() == (2 * N_EVENTS * len(TRACK_MC),)
    finally:
        con.close()


def test_views_in_memory_and_parquet_datasets(tmp_path: Path) -> None:
    store = _fill(mambah.EventStore.memory())
    _check_views(store)
    store.to_parquet(tmp_path / "ds")
    store.close()
    with mambah.EventStore.open_dataset(tmp_path / "ds") as ds:
        assert set(_views(ds)) == set(VIEWS)
        _check_views(ds)


def test_views_for_a_store_made_before_them(tmp_path: Path) -> None:
    path = tmp_path / "old.duckdb"
    _fill(mambah.EventStore.create(path)).close()
    con = duckdb.connect(str(path))
    for name in VIEWS:
        con.execute(f"DROP VIEW {name}")
    con.close()
    with mambah.EventStore.open(path, read_only=True) as store:
        assert _views(store) == {"particles": True, "tracks": True}  # temporary: the file is not changed
        _check_views(store)


@pytest.mark.parametrize("view", VIEWS)
def test_views_are_documented_in_readme(view: str) -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    assert f"| `{view}` |" in readme
