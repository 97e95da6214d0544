"""Tests of sim/detector/ghosts.py: the shared kernels, the sampler, the shipped model, the pass in a run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mambah import EventStore
from mambah.errors import ConfigError, DataError, ModelError
from sim.core.pipeline import Pipeline, RunConfig
from sim.core.runner import run
from sim.defaults import default_passes
from sim.detector.ghosts import (
    GHOST_FEATURES,
    GhostModel,
    Ghosts,
    GhostSampler,
    ghost_counts,
    ghost_states,
    load_ghost_model,
    make_ghosts,
)
from sim.detector.trackcov import COV_COLUMNS


def ghost_pipeline(events: int, batch_size: int, seed: int, **ghosts: object) -> Pipeline:
    """The default passes (the ghost pass after the resolution pass), the ghost pass with ``ghosts``."""
    passes = tuple(Ghosts(**ghosts) if p.kind == "ghosts" else p for p in default_passes())  # type: ignore[arg-type]
    return Pipeline(passes, RunConfig(events=events, batch_size=batch_size, seed=seed))


def test_the_default_job_makes_ghosts_after_the_resolution_pass() -> None:
    kinds = [p.kind for p in default_passes()]
    assert kinds.index("ghosts") == kinds.index("resolution") + 1 < kinds.index("calorimeter") < kinds.index("pid")


def test_ghost_counts_follow_the_multiplicity_law() -> None:
    rng = np.random.default_rng(1)
    n_long = np.full(200_000, 4)
    occ = np.where(np.arange(200_000) % 2 == 0, 75.0, 300.0)
    c = ghost_counts(n_long, occ, 0.1, 150.0, 1.0, rng)
    assert c[occ == 75].mean() == pytest.approx(0.1 * 0.5 * 4, rel=0.02)
    assert c[occ == 300].mean() == pytest.approx(0.1 * 2.0 * 4, rel=0.02)
    assert ghost_counts(np.zeros(10), np.full(10, 500.0), 0.1, 150.0, 1.0, rng).sum() == 0
    with pytest.raises(DataError, match="NaN"):
        ghost_counts(np.array([1.0]), np.array([np.nan]), 0.1, 150.0, 1.0, rng)


def test_ghost_states_point_to_the_pv_with_a_wider_ip_chi2() -> None:
    rng = np.random.default_rng(2)
    n = 20_000
    pv = np.column_stack([rng.normal(0, 0.04, n), rng.normal(0, 0.04, n), rng.normal(0, 45, n)])
    st = ghost_states(rng.choice([-1.0, 1.0], n), np.full(n, 5000.0), rng.uniform(2.2, 4.8, n),
                      rng.uniform(-np.pi, np.pi, n), pv, np.full(n, 150.0), rng)
    ok = st["valid"]
    assert ok.mean() > 0.95
    p = np.sqrt(st["px"] ** 2 + st["py"] ** 2 + st["pz"] ** 2)
    np.testing.assert_allclose(p[ok], 5000.0, rtol=1e-9)  # the momentum of the (wrong) T segment
    assert set(COV_COLUMNS) <= set(st)
    assert np.median(st["ip"][ok]) < 0.2  # mm: the VELO segment comes from the PV
    # chi2 with 2 dof for a real prompt track (median 1.39); the softer segment's scattering is
    # not in the stored covariance, so ghosts are wider
    assert np.median(st["ip_chi2"][ok]) > 2.0


def test_sampler_reproduces_marginals_and_correlation() -> None:
    rng = np.random.default_rng(3)
    n = 30_000
    a = rng.normal(3.6, 0.2, n)
    b = 2 + 3 * rng.beta(2, 2.5, n)
    c = 1 + rng.gamma(2, 0.5, n)
    d = np.clip(1 - (1 - rng.beta(0.6, 1, n)) * np.exp(-0.3 * np.maximum(c - 1.5, 0)), 0, 1)
    x = np.column_stack([a, b, c, d])
    s = GhostSampler.fit(x)
    y = s.sample(n, np.random.default_rng(4))
    for j in range(4):
        np.testing.assert_allclose(np.quantile(y[:, j], [0.1, 0.5, 0.9]), np.quantile(x[:, j], [0.1, 0.5, 0.9]),
                                   rtol=0.03, atol=0.01)
    from scipy.stats import spearmanr

    assert spearmanr(y[:, 2], y[:, 3])[0] == pytest.approx(spearmanr(x[:, 2], x[:, 3])[0], abs=0.03)
    np.testing.assert_array_equal(s.sample(10, np.random.default_rng(5)), s.sample(10, np.random.default_rng(5)))
    with pytest.raises(ModelError, match="positive-definite"):
        GhostSampler(s.levels, s.quantiles, tuple(tuple(0.0 for _ in r) for r in s.correlation))
    with pytest.raises(DataError, match="training rows"):
        GhostSampler.fit(x[:10])


def test_shipped_model_round_trips_and_records_its_card(tmp_path: Path) -> None:
    m = load_ghost_model()
    assert m.provenance["detector_card"] == "lhcb-run2"
    assert tuple(m.provenance["features"]) == GHOST_FEATURES
    assert 0.05 < m.ratio_ref < 0.2 and 0.5 < m.power < 1.5
    again = load_ghost_model(m.save(tmp_path / "g.json"))
    assert again.to_dict() == m.to_dict()
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({**m.to_dict(), "kind": "efficiency"}))
    with pytest.raises(ModelError, match="not a ghost model"):
        load_ghost_model(bad)
    with pytest.raises(ModelError, match="not found"):
        load_ghost_model(tmp_path / "none.json")
    with pytest.raises(ModelError, match="ratio_ref"):
        GhostModel(-1.0, 150.0, 1.0, m.sampler)


def test_make_ghosts_indices_follow_the_events_tracks() -> None:
    m = load_ghost_model()
    ev = {"event": np.arange(5), "n_tracks": np.array([100.0, 2000.0, 2000.0, 0.0, 2000.0]),
          "n_long": np.array([3, 40, 0, 5, 40]), "last_index": np.array([4, 60, -1, 7, 41]),
          **{f"pv_{a}": np.zeros(5) for a in "xyz"}}
    g = make_ghosts(m, ev, np.random.default_rng(6))
    assert not np.isin(g["event"], [2, 3]).any()  # no real Long track, or no occupancy: no ghost
    for e, last in ((1, 60), (4, 41)):
        idx = g["index"][g["event"] == e]
        assert idx.size > 5 and idx.min() == last + 1
        np.testing.assert_array_equal(np.sort(idx), np.arange(last + 1, last + 1 + idx.size))


@pytest.fixture(scope="module")
def store() -> EventStore:
    s = EventStore.memory()
    run(ghost_pipeline(3000, 1500, 7), store=s, progress=False)
    return s


def test_ghosts_in_a_run_are_never_truth_matched(store: EventStore) -> None:
    ghosts = store.query_df("SELECT * FROM tracks WHERE mc_particle = -1")
    real = store.query_df("SELECT * FROM tracks WHERE mc_particle >= 0 AND track_type = 3")
    assert len(ghosts) > 100
    assert ghosts["true_pid"].isna().all() and ghosts["particle_id"].isna().all()
    assert (ghosts["track_type"] == 3).all()
    frac = len(ghosts) / (len(ghosts) + len(real))
    assert 0.06 < frac < 0.15, frac
    # soft, worse fit, ghost-like; the downstream passes filled them (ECAL matching, PID)
    p_g = np.sqrt(ghosts.px ** 2 + ghosts.py ** 2 + ghosts.pz ** 2)
    p_r = np.sqrt(real.px ** 2 + real.py ** 2 + real.pz ** 2)
    assert p_g.median() < 0.5 * p_r.median()
    assert ghosts.track_chi2ndof.mean() > real.track_chi2ndof.mean() + 0.5
    assert ghosts.ghost_prob.mean() > 5 * real.ghost_prob.mean()
    assert ghosts[["px", "ip_chi2", "cov_qop_qop", "ProbNNghost", "PIDK"]].notna().all().all()
    assert ghosts["calo_cluster"].notna().all()
    dup = store.query_df('SELECT batch, event, "index", count(*) n FROM protoparticles GROUP BY ALL HAVING n > 1')
    assert dup.empty


def test_run_is_reproducible_and_resumes(tmp_path: Path) -> None:
    a, b = EventStore.memory(), EventStore.memory()
    run(ghost_pipeline(1000, 500, 11), store=a, progress=False)
    run(ghost_pipeline(1000, 500, 11), store=b, progress=False)
    q = 'SELECT batch, event, "index", px, ghost_prob FROM protoparticles WHERE mc_particle = -1 ORDER BY ALL'
    assert a.query_df(q).equals(b.query_df(q))
    assert len(a.query_df(q)) > 10
    none = EventStore.memory()
    run(ghost_pipeline(1000, 500, 11, scale=0.0), store=none, progress=False)
    assert len(none.query_df(q)) == 0
    path = tmp_path / "r.duckdb"
    pl = ghost_pipeline(1000, 500, 11)
    with pytest.raises(_Stop):
        run(pl, path, progress=False, on_batch=_stop_after_first)  # interrupted after batch 0
    run(pl, path, resume=True, progress=False)
    with EventStore.open(path) as done:
        assert done.query_df(q).equals(a.query_df(q))


class _Stop(Exception):
    pass


def _stop_after_first(store: EventStore, batch: object) -> None:
    raise _Stop


def test_config_round_trip_and_bad_options() -> None:
    pl = ghost_pipeline(100, 100, 1, scale=0.5)
    again = Pipeline.from_toml(pl.to_toml())
    assert again == pl and again["ghosts"].scale == 0.5  # type: ignore[attr-defined]
    with pytest.raises(ConfigError, match="scale"):
        Ghosts(scale=-1.0)
    with pytest.raises(ConfigError, match="unknown detector card"):
        Ghosts(card="nope")


def test_ficino_candidates_never_use_a_ghost(store: EventStore, tmp_path: Path) -> None:
    """The MC-truth candidates take each daughter's matched track; a ghost (mc_particle = -1) is never one."""
    import pyarrow.parquet as pq

    import ficino

    ficino.export(store, tmp_path / "c.parquet")
    cands = pq.read_table(tmp_path / "c.parquet").to_pandas()
    pp = store.query_df("SELECT px, mc_particle FROM protoparticles WHERE px IS NOT NULL")
    ghost_px, real_px = set(pp.px[pp.mc_particle < 0]), set(pp.px[pp.mc_particle >= 0])
    assert len(cands) > 100 and ghost_px
    for name in ("p", "K", "pi", "mu"):
        px = set(cands[f"{name}_PX"].dropna())
        assert px and px <= real_px and not px & ghost_px, name
