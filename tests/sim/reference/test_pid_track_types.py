"""Reference PID by track type (sim/reference/pid.py + sim/detector/reach.py): Upstream tracks
cross RICH1 only and reach neither the calorimeters nor the muon stations; Downstream tracks
traverse everything."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from mambah.errors import DataError
from sim.detector.card import card
from sim.detector.reach import subdetector_reach
from sim.reference.pid import MUON_LL_SENTINEL, PID_COLUMNS, PIDConfig, simulate_pid

N = 4000


def _tracks(pid: int, rng: np.random.Generator, *, eta: float | tuple[float, float] = (2.2, 4.0),
            p: tuple[float, float] = (5e3, 50e3), track_type: int | None = None) -> dict[str, np.ndarray]:
    mom = np.exp(rng.uniform(np.log(p[0]), np.log(p[1]), N))
    et = np.full(N, eta) if isinstance(eta, float) else rng.uniform(*eta, N)
    phi = rng.uniform(-np.pi, np.pi, N)
    pt = mom / np.cosh(et)
    out = {"pid": np.full(N, pid), "charge": np.ones(N), "px": pt * np.cos(phi), "py": pt * np.sin(phi),
           "pz": pt * np.sinh(et), "n_tracks": np.full(N, 120.0)}
    if track_type is not None:
        out["track_type"] = np.full(N, track_type)
    return out


def test_reach_table() -> None:
    theta = np.array([100.0, 100.0, 100.0, 20.0, 20.0, 100.0])
    p = np.array([1e4, 1e4, 1e4, 1e4, 1e4, 1e3])
    r = subdetector_reach(np.array([3, 4, 5, 4, 5, 3]), theta, p, card())
    assert r["rich1"].tolist() == [True, True, True, False, False, False]  # 20 mrad < 25; 1 GeV < 2 GeV
    assert r["rich2"].tolist() == [True, False, True, False, True, False]
    assert r["ecal"].tolist() == [True, False, True, False, False, True]  # ECAL from 30 mrad
    assert r["muon"].tolist() == [True, False, True, False, True, True]
    with pytest.raises(DataError, match="track type 0 has no PID"):
        subdetector_reach(np.array([0]), np.array([100.0]), np.array([1e4]))


def test_long_is_the_default_and_unchanged() -> None:
    truth = _tracks(321, np.random.default_rng(1))
    a = simulate_pid(truth, np.random.default_rng(2))
    b = simulate_pid({**truth, "track_type": np.full(N, 3)}, np.random.default_rng(2))
    for c in PID_COLUMNS:
        np.testing.assert_array_equal(a[c], b[c])


def test_upstream_is_long_without_rich2_calorimeter_and_muon_system() -> None:
    """Same draws: an Upstream track's response equals a Long track's in a detector whose RICH2, ECAL
    and muon system lie outside every track (independent construction of the same physics)."""
    truth = _tracks(13, np.random.default_rng(3), p=(3e3, 30e3))
    base = PIDConfig()
    blind = dataclasses.replace(
        base, rich2=dataclasses.replace(base.rich2, theta_min=1e6, theta_max=1e6 + 1),
        muon_theta_min=1e6, muon_theta_max=1e6 + 1)
    # a calorimeter term for every track: Upstream tracks must drop it, the blind detector has none
    up = simulate_pid({**truth, "track_type": np.full(N, 4), "EcalPIDe": np.full(N, 3.0)}, np.random.default_rng(4))
    ref = simulate_pid(truth, np.random.default_rng(4), blind)
    for c in PID_COLUMNS:
        np.testing.assert_array_equal(up[c], ref[c], err_msg=c)
    assert not up["is_muon"].any()
    assert np.all(up["MuonMuLL"] == MUON_LL_SENTINEL) and np.all(up["MuonBkgLL"] == MUON_LL_SENTINEL)
    np.testing.assert_array_equal(up["PIDe"], up["RichDLLe"])  # no calorimeter term
    np.testing.assert_array_equal(up["PIDmu"], up["RichDLLmu"])  # no muon-system term
    long_ = simulate_pid(truth, np.random.default_rng(4))
    assert long_["is_muon"].mean() > 0.8  # the same muons as Long tracks are IsMuon


def test_upstream_outside_rich1_has_no_rich() -> None:
    """eta 4.6 = 20 mrad: inside RICH2 (15-120 mrad) but outside RICH1 (25-300 mrad)."""
    up = simulate_pid(_tracks(321, np.random.default_rng(5), eta=4.6, track_type=4), np.random.default_rng(6))
    assert not up["has_rich"].any()
    for c in ("RichDLLe", "RichDLLmu", "RichDLLK", "RichDLLp", "PIDK", "PIDp", "PIDe"):
        assert np.all(up[c] == 0.0), c
    down = simulate_pid(_tracks(321, np.random.default_rng(5), eta=4.6, track_type=5), np.random.default_rng(6))
    assert down["has_rich"].all()  # Downstream tracks traverse RICH2


def test_downstream_muons_and_pions() -> None:
    """Downstream tracks traverse both RICHes and reach the muon stations: muons above 10 GeV are
    IsMuon (> 90 %), and pions inside the ECAL are not electron-like (PIDe > 2 below 10 %: the calorimeter term
    N(-3, 3) alone gives 4.8 %, the RICH DLL(e-pi) the rest; measured 6.4 %)."""
    mu = simulate_pid(_tracks(13, np.random.default_rng(7), p=(1e4, 5e4), track_type=5), np.random.default_rng(8))
    assert mu["is_muon"].mean() > 0.9
    pi = simulate_pid(_tracks(211, np.random.default_rng(9), track_type=5), np.random.default_rng(10))
    assert pi["has_rich"].all()
    assert (pi["PIDe"] > 2).mean() < 0.10


def test_bad_track_type() -> None:
    truth = _tracks(211, np.random.default_rng(11), track_type=0)
    with pytest.raises(DataError, match="'track_type' holds 0"):
        simulate_pid(truth, np.random.default_rng(0))
