from __future__ import annotations

import contextlib
import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

import mambah
from mambah import BatchRecord, EventStore
from mambah.schema import SCHEMA_VERSION, column_names


def _tables(n_events: int, batch: int) -> dict[str, pa.Table]:
    ev = np.arange(n_events, dtype=np.int32)
    parts = {
        "batch": np.full(2 * n_events, batch, np.int32),
        "event": np.repeat(ev, 2),
        "index": np.tile([0, 1], n_events).astype(np.int32),
        "pid": np.tile([511, 211], n_events).astype(np.int32),
        "px": np.ones(2 * n_events), "py": np.zeros(2 * n_events), "pz": np.full(2 * n_events, 10.0),
        "e": np.full(2 * n_events, 20.0), "mass": np.full(2 * n_events, 5.0),
        "charge": np.zeros(2 * n_events, np.int16),
        "mother": np.tile([-1, 0], n_events).astype(np.int32),
        "first_daughter": np.tile([1, -1], n_events).astype(np.int32),
        "last_daughter": np.tile([1, -1], n_events).astype(np.int32),
        "prod_vertex": np.tile([0, 1], n_events).astype(np.int32),
        "decay_vertex": np.tile([1, -1], n_events).astype(np.int32),
        "is_signal": np.ones(2 * n_events, bool),
    }
    events = {"batch": np.full(n_events, batch, np.int32), "event": ev, "pv_x": np.zeros(n_events), "pv_y": np.zeros(n_events), "pv_z": np.zeros(n_events), "pv_t": np.zeros(n_events)}
    return {"events": pa.table(events), "mc_particles": pa.table(parts)}


def test_write_read_delete(tmp_path):
    path = tmp_path / "s.duckdb"
    with EventStore.create(path) as store:
        store.write_batch(BatchRecord(0, 3, 11), _tables(3, 0))
        store.write_batch(BatchRecord(1, 4, 12), _tables(4, 1))
        assert store.batches() == [0, 1]
        assert store.n_events() == 7
        assert store.table("mc_particles", batch=1).num_rows == 8
        assert store.query_df("SELECT count(*) AS n FROM events").n[0] == 7
        store.delete_batch(0)
        assert store.batches() == [1]
        assert store.count("mc_particles") == 8
    with EventStore.open(path, read_only=True) as store:
        assert store.batches() == [1]
        assert store.get_metadata("schema_version") == str(SCHEMA_VERSION)
        with pytest.raises(mambah.StoreError, match="read-only"):
            store.delete_batch(1)


def test_batch_is_all_or_nothing(tmp_path):
    path = tmp_path / "s.duckdb"
    store = EventStore.create(path)
    store.write_batch(BatchRecord(0, 3, 1), _tables(3, 0))
    tabs = _tables(5, 1)
    with pytest.raises(RuntimeError, match="boom"), store.batch_transaction(BatchRecord(1, 5, 2)) as con:
        mambah.store.insert(con, "events", tabs["events"])
        mambah.store.insert(con, "mc_particles", tabs["mc_particles"])
        raise RuntimeError("boom")
    assert store.batches() == [0]
    assert store.count("events") == 3 and store.count("mc_particles") == 6
    # a bad table mid-batch rolls back the tables written before it
    bad = dict(tabs)
    bad["mc_particles"] = tabs["mc_particles"].append_column("nonsense", pa.array(np.zeros(10)))
    with pytest.raises(mambah.StoreError, match="nonsense"):
        store.write_batch(BatchRecord(1, 5, 2), bad)
    assert store.count("events") == 3
    with pytest.raises(mambah.StoreError, match="already"):
        store.write_batch(BatchRecord(0, 3, 1), _tables(3, 0))
    store.close()


def test_primary_keys_enforced_when_asked():
    store = EventStore.memory(primary_keys=True)
    t = _tables(2, 0)
    t["events"] = pa.concat_tables([t["events"], t["events"]])
    with pytest.raises(mambah.StoreError):
        store.write_batch(BatchRecord(0, 2, 1), t)
    assert store.count("events") == 0


def test_parquet_round_trip(tmp_path):
    store = EventStore.memory()
    store.set_metadata("run", '{"seed": 3}')
    store.write_batch(BatchRecord(0, 3, 1), _tables(3, 0))
    store.write_batch(BatchRecord(1, 2, 2), _tables(2, 1))
    root = store.to_parquet(tmp_path / "ds")
    assert (root / "mc_particles" / "batch=1").is_dir()
    with pytest.raises(mambah.StoreExistsError):
        store.to_parquet(tmp_path / "ds")
    ds = EventStore.open_dataset(root)
    assert ds.read_only and ds.batches() == [0, 1]
    assert ds.table("mc_particles").equals(store.table("mc_particles"))
    assert ds.get_metadata("run") == '{"seed": 3}'
    back = EventStore.from_parquet(root, tmp_path / "back.duckdb")
    for name in mambah.DATA_TABLES:
        assert back.table(name).equals(store.table(name)), name
    assert back.query("SELECT * FROM batches").num_rows == 2


def test_schema_columns_unique_and_keyed():
    for name in mambah.DATA_TABLES:
        cols = column_names(name)
        assert len(set(cols)) == len(cols)
        assert cols[:2] == ("batch", "event")


@pytest.mark.parametrize("kind", ["text", "other_version", "plain_duckdb", "directory", "missing"])
def test_bad_store_files(tmp_path, kind):
    import duckdb

    path = tmp_path / "s.duckdb"
    if kind == "text":
        path.write_text("this is not a database\n" * 100)
        match = "not a readable DuckDB store"
    elif kind == "other_version":
        EventStore.create(path).close()
        con = duckdb.connect(str(path))
        con.execute("UPDATE metadata SET value = '999' WHERE key = 'schema_version'")
        con.close()
        match = "schema version 999"
    elif kind == "plain_duckdb":
        con = duckdb.connect(str(path))
        con.execute("CREATE TABLE t (a INT)")
        con.close()
        match = "not a Mambah store"
    elif kind == "directory":
        path.mkdir()
        match = "directory"
    else:
        match = "does not exist"
    before = path.read_bytes() if path.is_file() else None
    with pytest.raises(mambah.StoreError, match=match):
        EventStore.open(path)
    if before is not None:
        assert path.read_bytes() == before


def test_create_refuses_existing_and_unwritable(tmp_path, monkeypatch):
    path = tmp_path / "s.duckdb"
    EventStore.create(path).close()
    with pytest.raises(mambah.StoreExistsError, match="exists"):
        EventStore.create(path)
    EventStore.create(path, overwrite=True).close()
    with pytest.raises(mambah.StoreError, match="does not exist"):
        EventStore.create(tmp_path / "no" / "such" / "dir.duckdb")
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        if os.access(ro, os.W_OK):  # root ignores permission bits: let access() answer as for a user
            real = os.access
            monkeypatch.setattr(mambah.store.os, "access", lambda p, mode: False if Path(p) == ro else real(p, mode))
        with pytest.raises(mambah.StoreError, match="not writable"):
            EventStore.create(ro / "s.duckdb")
        assert list(ro.iterdir()) == []
    finally:
        ro.chmod(0o700)


# ---------------------------------------------------------------------------- column types, staging (#19)
def test_column_types_and_rounding_per_quantity():
    """Truth four-momenta: DOUBLE to 1e-7 MeV; reco momenta, positions: float32; log-likelihoods: 1e-2;
    slopes 1e-6 rad, the state's z 1e-3 mm, chi2/ndf 1e-4; ProbNN not rounded."""
    store = EventStore.memory()
    t = _tables(2, 0)
    mc = t["mc_particles"]
    px = np.array([1234.567891234, -0.000000049, 98765.43210006, 1e-9])
    t["mc_particles"] = mc.set_column(mc.column_names.index("px"), "px", pa.array(px))
    t["events"] = t["events"].set_column(2, "pv_x", pa.array([0.123456789, 1e-7]))
    store.write_batch(BatchRecord(0, 2, 1), t)
    got = store.table("mc_particles")["px"].to_numpy()
    np.testing.assert_array_equal(got, [1234.5678912, -0.0, 98765.4321001, 0.0])  # rounded to 7 decimals
    assert store.table("mc_particles")["px"].type == pa.float64()
    ev = store.table("events")
    assert ev["pv_x"].type == pa.float32() and ev["pv_x"].to_numpy()[0] == np.float32(0.1235)  # a generated position: 1e-4 mm
    store.connection.execute(
        "INSERT INTO protoparticles (batch, event, \"index\", mc_particle, track_type, px, \"RichDLLK\", \"ProbNNk\") "
        "VALUES (0, 0, 0, 1, 3, 1000.123456789, 1.0, 0.5)"
    )  # plain SQL is not rounded; insert/update are:
    from mambah.store import update

    update(store.connection, "protoparticles", {"batch": [0], "event": [0], "index": [0], "RichDLLK": [12.3456789],
                                                "ProbNNk": [1.23456789e-6], "tx": [0.12345678], "z": [123.45678],
                                                "track_chi2ndof": [1.2345678], "ghost_prob": [1.23456789e-6]})
    pp = store.query('SELECT px, "RichDLLK", "ProbNNk", tx, z, track_chi2ndof, ghost_prob FROM protoparticles').to_pylist()[0]
    assert pp["RichDLLK"] == pytest.approx(12.35, abs=1e-6) and pp["ProbNNk"] == pytest.approx(1.23456789e-6, rel=1e-6)
    assert pp["tx"] == pytest.approx(0.123457, abs=1e-8) and pp["z"] == pytest.approx(123.457, abs=1e-5)
    assert pp["track_chi2ndof"] == pytest.approx(1.2346, abs=1e-7)
    assert pp["ghost_prob"] == pytest.approx(1.23456789e-6, rel=1e-6)
    types = dict(store.query("SELECT column_name, data_type FROM duckdb_columns() WHERE table_name = 'protoparticles'")
                 .to_pandas().itertuples(index=False, name=None))
    assert types["px"] == types["cov_x_x"] == types["RichDLLK"] == "FLOAT" and types["charge"] == "SMALLINT"


def test_staged_batch_writes_once_with_metadata_or_not_at_all(tmp_path):
    path = tmp_path / "s.duckdb"
    with EventStore.create(path) as store:
        with store.staged_batch(BatchRecord(0, 3, 11)) as con:
            for name, data in _tables(3, 0).items():
                mambah.store.insert(con, name, data)
            mambah.store.update(con, "mc_particles", {"batch": [0], "event": [1], "index": [1], "in_acceptance": [True]})
            con.execute("INSERT OR REPLACE INTO metadata VALUES ('generator', '{\"sigma\": 1}')")
            assert store.batches() == []  # nothing in the store until the block ends
        assert store.batches() == [0] and store.count("mc_particles") == 6
        assert store.get_metadata("generator") == '{"sigma": 1}'
        assert store.query("SELECT count(*) AS n FROM mc_particles WHERE in_acceptance").to_pylist() == [{"n": 1}]
        with pytest.raises(RuntimeError, match="boom"), store.staged_batch(BatchRecord(1, 3, 12)) as con:
            mambah.store.insert(con, "events", _tables(3, 1)["events"])
            raise RuntimeError("boom")
        assert store.batches() == [0] and store.count("events") == 3
        with pytest.raises(mambah.StoreError, match="batch 0 is already in store"), store.staged_batch(BatchRecord(0, 3, 11)):
            pass


def test_staging_update_of_every_row_equals_the_sql_update():
    """A staging connection's inserts and updates (of a table it holds as Arrow, or rewritten) give the tables DuckDB's INSERT and UPDATE give."""
    import duckdb

    from mambah.store import query_arrow, staging_connection, update

    n = 6
    proto = {"batch": np.zeros(n, np.int32), "event": np.repeat(np.arange(3, dtype=np.int32), 2),
             "index": np.tile([0, 1], 3).astype(np.int32), "mc_particle": np.arange(n, dtype=np.int32),
             "track_type": np.full(n, 3, np.int16), "EcalPIDe": [0.5, None, 1.5, None, 2.5, 3.5]}
    rng = np.random.default_rng(5)
    floats = [c for c in column_names("protoparticles") if c.startswith("cov_") or c in ("px", "py", "pz", "tx", "ty", "x", "y", "z")]
    new = {**{c: rng.normal(size=n) * 1e3 for c in floats}, "RichDLLK": rng.normal(size=n) * 10,
           "charge": np.tile([1, -1], 3), "has_rich": pa.array([True, None, False, True, True, None])}
    assert 3 * len(new) >= len(column_names("protoparticles"))  # enough columns for the rewrite (in order)
    ghosts = {"batch": np.zeros(2, np.int32), "event": np.array([0, 2], np.int32), "index": np.array([7, 7], np.int32),
              "mc_particle": np.full(2, -1, np.int32), "track_type": np.full(2, 3, np.int16), "px": [1.5, 2.5],
              "ghost_prob": np.array([0.9, 0.8], np.float32)}
    order = np.array([3, 0, 5, 1, 4, 2])
    cases = {"every row in order": np.arange(n), "another order": order, "a subset": np.array([4, 1]),
             "a row the table lacks": np.array([2, 0, 5])}
    for what, rows in cases.items():
        data = {k: np.asarray(proto[k])[rows] for k in ("batch", "event", "index")}
        if what == "a row the table lacks":
            data["event"] = np.array([1, 7, 2], np.int32)  # event 7: no such row (UPDATE skips it)
        data.update({k: (v.take(pa.array(rows)) if isinstance(v, pa.Array) else v[rows]) for k, v in new.items()})
        tables = []
        for staging in (True, False):
            with staging_connection() if staging else contextlib.closing(duckdb.connect()) as con:
                if not staging:
                    for ddl in mambah.schema.create_ddl():
                        con.execute(ddl)
                mambah.store.insert(con, "protoparticles", proto)
                mambah.store.insert(con, "protoparticles", ghosts)  # appended rows, other columns: an update leaves them
                update(con, "protoparticles", data)
                update(con, "protoparticles", {k: data[k] for k in ("batch", "event", "index")} | {"ghost_prob": np.full(len(rows), 0.25)})
                tables.append(query_arrow(con, "SELECT * FROM protoparticles"))
        assert tables[0].equals(tables[1]), what  # values, NULLs, types and the row order
        assert tables[0].num_rows == n + 2
    with staging_connection() as con:  # a failed rewrite leaves the rows as they were
        mambah.store.insert(con, "protoparticles", proto)
        with pytest.raises(mambah.StoreError, match="cannot update 'protoparticles'"):
            update(con, "protoparticles", {k: proto[k] for k in ("batch", "event", "index")} | new | {"charge": np.full(n, 10**6)})
        assert query_arrow(con, "SELECT mc_particle FROM protoparticles").column(0).to_pylist() == list(range(n))
        assert mambah.store.staged_tables(con)["protoparticles"].equals(query_arrow(con, "SELECT * FROM protoparticles"))
        with pytest.raises(duckdb.Error):  # held as Arrow (mambah.store.HELD_TABLES): SQL does not write it
            con.execute("DELETE FROM protoparticles")


def test_version_2_store_is_refused_by_name(tmp_path):
    import duckdb

    path = tmp_path / "v2.duckdb"
    EventStore.create(path).close()
    con = duckdb.connect(str(path))
    con.execute("UPDATE metadata SET value = '2' WHERE key = 'schema_version'")
    con.close()
    with pytest.raises(mambah.SchemaVersionError, match=r"schema version 2, this Mambah reads version 3"):
        EventStore.open(path, read_only=True)
