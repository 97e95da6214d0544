"""Tests of sim/passes/efficiency.py: the track-type draw, a full detector run, bad input."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mambah import EventStore
from mambah.errors import DataError
from sim.core.pipeline import BatchContext, Kernel, Pass, Pipeline, RunConfig
from sim.core.runner import run
from sim.detector.acceptance import Acceptance
from sim.detector.efficiency import Efficiency, draw_track_type, track_indices
from sim.detector.occupancy import Occupancy
from sim.detector.resolution import Resolution
from sim.generation.generator import Generator
from sim.training.recipes.efficiency import train_efficiency


def detector_pipeline(events: int, batch_size: int, seed: int, *extra: Pass) -> Pipeline:
    """Generator + the four detector passes on the shipped models (``extra`` after the generator)."""
    passes = (Generator(), *extra, Occupancy(), Acceptance(), Efficiency(), Resolution())
    return Pipeline(passes, RunConfig(events=events, batch_size=batch_size, seed=seed))


def test_draw_track_type_follows_the_probabilities_and_the_geometry() -> None:
    n = 120_000
    proba = np.tile([0.1, 0.6, 0.2, 0.1], (n, 1))
    acc = np.arange(n) % 2 == 0
    fwd = np.arange(n) % 3 != 0
    tt = draw_track_type(proba, acc, fwd, np.random.default_rng(2))
    assert set(np.unique(tt)) <= {0, 3, 4, 5}
    assert np.all(tt[~fwd] == 0)
    a, na = acc & fwd, ~acc & fwd
    assert not np.isin(tt[a], [4]).any() and not np.isin(tt[na], [3, 5]).any()
    assert np.mean(tt[a] == 3) == pytest.approx(0.6, abs=0.01)
    assert np.mean(tt[a] == 5) == pytest.approx(0.1, abs=0.01)
    assert np.mean(tt[na] == 4) == pytest.approx(0.2, abs=0.01)


def test_track_indices_count_within_events() -> None:
    np.testing.assert_array_equal(track_indices(np.array([0, 0, 2, 2, 2, 5])), [0, 1, 0, 1, 2, 0])
    assert track_indices(np.array([], dtype=np.int32)).size == 0


@pytest.fixture(scope="module")
def store() -> EventStore:
    s = EventStore.memory()
    run(detector_pipeline(2000, 1000, 9), store=s, progress=False)
    return s


def test_default_run_fills_every_detector_table(store: EventStore) -> None:
    ev = store.query_df("SELECT n_pv, n_tracks FROM events")
    assert len(ev) == 2000 and ev["n_pv"].min() >= 1 and ev["n_tracks"].notna().all()
    nv = store.query_df("SELECT count(*) AS n FROM vertices")["n"][0]
    assert nv == ev["n_pv"].sum()
    tracks = store.query_df(
        """SELECT t.*, p.pid, p.charge AS true_charge, p.decay_vertex, p.in_acceptance FROM protoparticles t
           JOIN mc_particles p ON p.batch = t.batch AND p.event = t.event AND p."index" = t.mc_particle"""
    )
    # the Λb0 → Λc+(p K− π+) μ− ν̄ decay has four charged tracks; ~65-70 % are reconstructed
    assert 0.5 < len(tracks) / (4 * 2000) < 0.85
    assert set(tracks["track_type"]) <= {3, 4, 5}
    assert (tracks["decay_vertex"] < 0).all() and (tracks["pid"].abs() != 14).all()
    assert (tracks["charge"] == tracks["true_charge"]).all()
    assert tracks[["px", "py", "pz", "ip", "ip_chi2", "track_chi2ndof", "ghost_prob"]].notna().all().all()
    # Long and Downstream tracks need the acceptance, Upstream tracks are outside it
    assert tracks.loc[tracks["track_type"] != 4, "in_acceptance"].all()
    assert not tracks.loc[tracks["track_type"] == 4, "in_acceptance"].any()
    assert not store.query_df("SELECT * FROM mc_particles WHERE in_acceptance IS NULL").shape[0]


def test_same_seed_same_tracks(store: EventStore) -> None:
    again = EventStore.memory()
    run(detector_pipeline(1000, 1000, 9), store=again, progress=False)
    sql = "SELECT event, \"index\", track_type, px, ip FROM protoparticles WHERE batch = 0 ORDER BY event, \"index\""
    assert store.query_df(sql).equals(again.query_df(sql))


@dataclass(frozen=True)
class _Poison(Pass):
    """Test pass: sets one particle's momentum to NaN."""

    kind: ClassVar[str] = "poison"
    reads: ClassVar[tuple[str, ...]] = ("mc_particles",)
    writes: ClassVar[tuple[str, ...]] = ()
    name: str = "poison"

    def build(self) -> Kernel:
        def kernel(ctx: BatchContext) -> None:
            ctx.con.execute("UPDATE mc_particles SET px = 'nan'::DOUBLE WHERE pid = 211 AND event = 0")

        return kernel


def test_nan_inputs_abort_the_batch() -> None:
    s = EventStore.memory()
    with pytest.raises(DataError, match="NaN or inf"):
        run(detector_pipeline(200, 200, 1, _Poison()), store=s, progress=False)
    assert s.count("protoparticles") == 0 and s.count("mc_particles") == 0


def test_training_data_with_nan_or_missing_weight(tmp_path: Path) -> None:
    n = 50
    data = {"log10_p": np.linspace(3, 5, n), "eta": np.full(n, 3.0), "track_class": np.zeros(n, np.int16),
            "forward": np.ones(n, bool)}
    data["eta"][7] = np.inf
    path = tmp_path / "bad.parquet"
    pq.write_table(pa.table(data), path)
    with pytest.raises(DataError, match="eta"):
        train_efficiency(path, inputs=("log10_p", "eta"), epochs=1)
    with pytest.raises(DataError, match="w_missing"):
        train_efficiency(path, inputs=("log10_p",), weight="w_missing", epochs=1)
