"""Occupancy of full events: PVs and nTracks counted from the event (pure functions)."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pytest

from sim.detector.efficiency import velo_possible
from sim.detector.full_occupancy import full_event_pvs


def _tracks(event: int, n: int, z0: float, eta: float, p: float) -> dict[str, np.ndarray]:
    pt = p / np.cosh(eta)
    return {"event": np.full(n, event), "px": np.full(n, pt), "py": np.zeros(n), "pz": np.full(n, pt * np.sinh(eta)),
            "x": np.full(n, 0.8), "y": np.full(n, -0.2), "z": np.full(n, z0)}


def _cat(parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def test_pvs_need_five_tracks_except_pv0_and_ntracks_counts_the_acceptance() -> None:
    pvs = {"event": np.array([0, 0, 1, 1]), "index": np.array([0, 1, 0, 1]),
           "x": np.full(4, 0.8), "y": np.full(4, -0.2), "z": np.array([0.0, 50.0, -10.0, 30.0])}
    parts = _cat([
        _tracks(0, 6, 0.0, 3.0, 5000.0),     # PV 0 of event 0: 6 tracks
        _tracks(0, 3, 50.0, 3.0, 1000.0),    # PV 1: 3 tracks (below 5, and p < 2 GeV)
        _tracks(0, 4, 0.3, 6.0, 5000.0),     # outside 2 < eta < 5: not counted anywhere
        _tracks(1, 2, -10.0, 2.5, 3000.0),   # PV 0 of event 1: 2 tracks, kept (PV 0 always)
        _tracks(1, 7, 30.5, 4.0, 9000.0),    # PV 1: 7 tracks within 1 mm
        _tracks(1, 5, 300.0, 3.0, 9000.0),   # a displaced decay: counted in nTracks, no PV
    ])
    rng = np.random.default_rng(1)
    events, n_pv, n_tracks, v = full_event_pvs(parts, pvs, rng, sigma_xy_25=0.013, sigma_z_25=0.069)
    assert events.tolist() == [0, 1]
    assert n_pv.tolist() == [1, 2]
    assert n_tracks.tolist() == [6, 14]
    assert v["event"].tolist() == [0, 1, 1] and v["index"].tolist() == [0, 0, 1]
    assert v["mc_vertex"].tolist() == [0, 0, 1] and v["n_tracks"].tolist() == [6, 2, 7]
    # resolution at the PV's own multiplicity: sigma_z = 69 um * sqrt(25 / max(n, 4))
    np.testing.assert_allclose(np.sqrt(v["cov_zz"]), 0.069 * np.sqrt(25.0 / np.array([6, 4, 7])))


def test_pv_smearing_follows_its_resolution() -> None:
    n_ev = 4000
    pvs = {"event": np.arange(n_ev), "index": np.zeros(n_ev, np.int64), "x": np.zeros(n_ev), "y": np.zeros(n_ev), "z": np.zeros(n_ev)}
    parts = _cat([_tracks(e, 25, 0.0, 3.0, 5000.0) for e in range(0, n_ev, 1000)])
    _, _, _, v = full_event_pvs(parts, pvs, np.random.default_rng(3), sigma_xy_25=0.013, sigma_z_25=0.069)
    has25 = v["n_tracks"] == 25
    z = v["z"][~has25]  # PVs with no track: sigma at 4 tracks
    assert abs(np.std(z) / (0.069 * np.sqrt(25 / 4)) - 1) < 0.05


def test_velo_tracks_need_an_origin_upstream_of_the_velo_end() -> None:
    truth = {k: np.zeros(3) for k in ("origin_x", "origin_y", "pv_x", "pv_y", "px", "py")}
    truth["px"] = np.full(3, 300.0)
    truth["pz"] = np.full(3, 10_000.0)
    truth["origin_z"] = np.array([0.0, 300.0, 5000.0])  # at the PV, a K_S0 decay in the VELO, a K_L0 decay in the calorimeter
    assert velo_possible(truth).tolist() == [True, True, False]


def test_truth_pv_is_the_particles_own_interaction(two_interaction_store: Path) -> None:
    """Two interactions: a pile-up particle's PV (and so its origin offset and IP) is its interaction's, not PV 0."""
    import pandas as pd

    import mambah
    from sim.core.pipeline import Batch, BatchContext
    from sim.detector.features import query_truth, truth_sql

    # lines: 0 pi+ (interaction 0), 1 pi- (interaction 1), 2 K_S0 (interaction 1, decays at z = 60), 3, 4 its pions
    with mambah.EventStore.open(two_interaction_store) as s:
        truth = pd.DataFrame(query_truth(BatchContext(s._con, Batch(0, 1, 1)), truth_sql(), "test"))
    by_pid = {int(r.pid) * (1 if r.origin_z < 50 else 10): r for r in truth.itertuples()}
    assert len(truth) == 4
    near = functools.partial(pytest.approx, abs=1e-6)  # float32 columns
    assert (by_pid[211].pv_z, by_pid[211].origin_z) == (near(10.0), near(10.0))  # interaction 0: PV 0
    assert (by_pid[-211].pv_x, by_pid[-211].pv_z) == (near(0.3), near(-40.0))  # prompt in interaction 1: its own PV
    for daughter in (2110, -2110):  # K_S0 daughters of interaction 1: origin 100 mm downstream of their PV
        assert (by_pid[daughter].pv_y, by_pid[daughter].pv_z, by_pid[daughter].origin_z) == (near(0.2), near(-40.0), near(60.0))


def test_interaction_pvs_follow_the_top_ancestor_and_refuse_a_non_pv() -> None:
    from mambah.errors import DataError
    from sim.detector.features import interaction_pvs

    # event 3: 0 beam-less prompt of PV 1, 1 its daughter, 2 grand-daughter, 3 prompt of PV 0; event 5: one prompt of PV 1
    parts = {"event": np.array([3, 3, 3, 3, 5]), "idx": np.array([0, 1, 2, 3, 0]), "mother": np.array([-1, 0, 1, -1, -1]),
             "prod_vertex": np.array([1, 2, 3, 0, 1])}
    pvs = {"event": np.array([3, 3, 5, 5]), "idx": np.array([0, 1, 0, 1]), "x": np.array([0.0, 1.0, 2.0, 3.0]),
           "y": np.zeros(4), "z": np.array([10.0, 20.0, 30.0, 40.0])}
    out = interaction_pvs(parts, pvs)
    assert out["z"].tolist() == [20.0, 20.0, 20.0, 10.0, 40.0] and out["x"].tolist() == [1.0, 1.0, 1.0, 0.0, 3.0]
    parts["prod_vertex"] = np.array([4, 2, 3, 0, 1])  # a top ancestor made at a decay vertex, not a PV
    with pytest.raises(DataError, match="particle 0 of event 3 comes from vertex 4, not a PV of its event"):
        interaction_pvs(parts, pvs)
