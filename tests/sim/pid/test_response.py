"""Tests of the pid pass: store round trip on hand-built protoparticles, species, errors."""

from __future__ import annotations

import numpy as np
import pytest

import mambah
from mambah.errors import ConfigError, DataError, ModelError
from sim.core.pipeline import Batch, BatchContext, Pass, Pipeline
from sim.defaults import default_passes
from sim.generation.generator import Generator
from sim.pid.models import load_pid_models
from sim.pid.response import PID, fast_pid
from sim.reference.pid import MUON_LL_SENTINEL, PID_COLUMNS

N_EVENTS = 40
PER_EVENT = 25  # tracks per event
SPECIES_PIDS = np.array([321, -211, 2212, -13, 11, 3222, 0])  # 3222 (Sigma+) and ghosts -> pion model


def _fill(store: mambah.EventStore, batch: Batch, *, n_tracks_null: bool = False,
          ecal_pid: float | None = None) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(5)
    n = N_EVENTS * PER_EVENT
    event = np.repeat(np.arange(N_EVENTS, dtype=np.int32), PER_EVENT)
    index = np.tile(np.arange(PER_EVENT, dtype=np.int32), N_EVENTS)
    pid = SPECIES_PIDS[np.arange(n) % SPECIES_PIDS.size]
    p = rng.uniform(5e3, 8e4, n)
    eta = rng.uniform(2.2, 4.5, n)
    phi = rng.uniform(-np.pi, np.pi, n)
    pt = p / np.cosh(eta)
    px, py, pz = pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta)
    b = np.full(n, batch.batch, np.int32)
    mc = {"batch": b, "event": event, "index": index, "pid": np.where(pid == 0, 211, pid), "px": px, "py": py,
          "pz": pz, "e": p, "mass": np.zeros(n), "charge": np.ones(n, np.int16), "mother": np.full(n, -1),
          "first_daughter": np.full(n, -1), "last_daughter": np.full(n, -1), "prod_vertex": np.zeros(n, np.int32),
          "decay_vertex": np.full(n, -1), "is_signal": np.zeros(n, bool)}
    track_type = np.where(index == PER_EVENT - 1, 0, 3).astype(np.int16)  # last track of each event: not reconstructed
    proto = {"batch": b, "event": event, "index": index, "mc_particle": np.where(pid == 0, -1, index),
             "track_type": track_type, "charge": np.ones(n, np.int16), "px": px * 1.001, "py": py, "pz": pz}
    if ecal_pid is not None:  # as the calorimeter pass writes it (here one value for every track)
        proto["EcalPIDe"] = np.full(n, ecal_pid, np.float32)
    events = {"batch": np.full(N_EVENTS, batch.batch, np.int32), "event": np.arange(N_EVENTS, dtype=np.int32),
              "n_tracks": None if n_tracks_null else rng.integers(30, 300, N_EVENTS).astype(np.int32)}
    if n_tracks_null:
        events.pop("n_tracks")
    with store.batch_transaction(mambah.BatchRecord(batch.batch, batch.n_events, batch.seed)) as con:
        mambah.store.insert(con, "events", events)
        mambah.store.insert(con, "mc_particles", mc)
        mambah.store.insert(con, "protoparticles", proto)
    return {"pid": pid, "track_type": track_type}


def _run(store: mambah.EventStore, batch: Batch, kernel) -> None:
    con = store.connection
    con.execute("BEGIN TRANSACTION")
    try:
        kernel(BatchContext(con, batch))
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise


@pytest.fixture(scope="module")
def kernel():
    return PID().build()


@pytest.fixture(scope="module")
def models():
    return load_pid_models()


def test_pass_fills_pid_columns(kernel):
    batch = Batch(0, N_EVENTS, 1234)
    with mambah.EventStore.memory() as store:
        truth = _fill(store, batch)
        _run(store, batch, kernel)
        df = store.query_df('SELECT * FROM protoparticles ORDER BY event, "index"')
    reco = truth["track_type"] != 0
    for c in PID_COLUMNS:
        assert df[c][reco].notna().all(), c
        assert df[c][~reco].isna().all(), c  # not-reconstructed tracks untouched
    r = df[reco]
    pid = np.abs(truth["pid"][reco])
    assert r["PIDK"][pid == 321].median() > r["PIDK"][pid == 211].median() + 10
    assert r["is_muon"][pid == 13].mean() > 0.8
    assert (r["MuonMuLL"][~r["is_muon"].astype(bool)] == MUON_LL_SENTINEL).all()
    # Reproducible: same batch seed -> same output.
    with mambah.EventStore.memory() as store:
        _fill(store, batch)
        _run(store, batch, kernel)
        again = store.query_df('SELECT * FROM protoparticles ORDER BY event, "index"')
    assert np.array_equal(df["PIDK"][reco].to_numpy(), again["PIDK"][reco].to_numpy())


def test_calorimeter_term_read_from_protoparticles(caplog):
    """EcalPIDe written by a calorimeter pass enters PIDe (and ProbNNe); without it (NULL) every
    track gets EcalPIDe = 0 and the pass says so in one warning line."""
    batch = Batch(0, N_EVENTS, 1234)
    results = {}
    for value in (None, 0.0, 4.0):
        kernel = PID().build()
        caplog.clear()
        with caplog.at_level("WARNING", logger="sim.pid.response"), mambah.EventStore.memory() as store:
            truth = _fill(store, batch, ecal_pid=value)
            _run(store, batch, kernel)
            _run(store, batch, kernel)  # a second batch: still one warning line
            results[value] = store.query_df('SELECT * FROM protoparticles ORDER BY event, "index"')
        warnings = [r for r in caplog.records if "EcalPIDe is NULL" in r.getMessage()]
        assert len(warnings) == (1 if value is None else 0), [r.getMessage() for r in caplog.records]
    e = (np.abs(truth["pid"]) == 11) & (truth["track_type"] != 0)
    # NULL and 0 are the same response; +4 (an electron-like cluster) raises PIDe and ProbNNe
    np.testing.assert_array_equal(results[None]["PIDe"][e], results[0.0]["PIDe"][e])
    assert results[4.0]["PIDe"][e].median() > results[0.0]["PIDe"][e].median() + 3
    assert results[4.0]["ProbNNe"][e].median() > results[0.0]["ProbNNe"][e].median()


def test_unknown_species_and_ghosts_use_pion_model(models):
    rng_args = dict(px=np.full(2000, 3e3), py=np.zeros(2000), pz=np.full(2000, 3e4), n_tracks=np.full(2000, 150.0))
    as_pi = fast_pid(models, np.full(2000, 211), rng=np.random.default_rng(3), **rng_args)
    as_sigma = fast_pid(models, np.full(2000, 3222), rng=np.random.default_rng(3), **rng_args)
    as_ghost = fast_pid(models, np.zeros(2000, int), rng=np.random.default_rng(3), **rng_args)
    for c in PID_COLUMNS:
        assert np.array_equal(as_pi[c], as_sigma[c]) and np.array_equal(as_pi[c], as_ghost[c])


def test_null_occupancy_is_a_clear_error(kernel):
    batch = Batch(1, N_EVENTS, 99)
    with mambah.EventStore.memory() as store:
        _fill(store, batch, n_tracks_null=True)
        with pytest.raises(DataError, match="n_tracks is NULL.*occupancy pass"):
            _run(store, batch, kernel)


def test_fast_pid_rejects_nan(models):
    with pytest.raises(DataError, match="'px'"):
        fast_pid(models, np.array([211]), np.array([np.nan]), np.array([0.0]), np.array([1e4]),
                 np.array([100.0]), np.random.default_rng(0))


def test_bad_model_dir_fails_in_build(tmp_path):
    with pytest.raises(ModelError, match="does not exist"):
        PID(model_dir=str(tmp_path)).build()
    with pytest.raises(ConfigError, match="unknown PID species"):
        PID(species=("pi", "kaon")).build()


def test_pipeline_declarations_and_config_round_trip():
    assert default_passes()[-1].kind == "pid"
    with pytest.raises(ConfigError, match="reads protoparticles"):
        Pipeline((Generator(), PID())).validate()
    p = PID(model_dir="/some/where", species=("pi", "K"))
    assert Pass.from_dict(p.to_dict()) == p
