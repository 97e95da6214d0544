"""Physical rules of the fast PID chain by track type (sim/pid/models.py, sim/pid/response.py):
no IsMuon where the muon stations are not reached, RICH information only from traversed
radiators, residual DLL terms only from sub-detectors that gave information."""

from __future__ import annotations

import numpy as np
import pytest

from mambah.errors import DataError
from sim.pid.models import load_pid_models
from sim.pid.response import fast_pid
from sim.reference.pid import MUON_LL_SENTINEL

N = 3000


@pytest.fixture(scope="module")
def models():
    return load_pid_models()


def _run(models, pid: int, eta: float | tuple[float, float], track_type: int,
         p: tuple[float, float] = (5e3, 50e3), seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    mom = np.exp(rng.uniform(np.log(p[0]), np.log(p[1]), N))
    et = np.full(N, eta) if isinstance(eta, float) else rng.uniform(*eta, N)
    phi = rng.uniform(-np.pi, np.pi, N)
    pt = mom / np.cosh(et)
    return fast_pid(models, np.full(N, pid), pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(et),
                    np.full(N, 120.0), rng, track_type=np.full(N, track_type))


def test_upstream_muons_are_never_ismuon(models) -> None:
    long_ = _run(models, 13, (2.2, 4.0), 3)
    assert long_["is_muon"].mean() > 0.8  # the rule below is not vacuous
    up = _run(models, 13, (2.2, 4.0), 4)
    assert not up["is_muon"].any()
    assert np.all(up["MuonMuLL"] == MUON_LL_SENTINEL) and np.all(up["MuonBkgLL"] == MUON_LL_SENTINEL)
    np.testing.assert_array_equal(up["PIDmu"], up["RichDLLmu"])  # no muon-system term
    np.testing.assert_array_equal(up["PIDe"], up["RichDLLe"])  # Upstream tracks reach no calorimeter
    assert up["has_rich"].all()  # RICH1 is crossed


def test_no_ismuon_below_the_momentum_threshold(models) -> None:
    low = _run(models, 13, (2.2, 4.0), 3, p=(2.0e3, 2.9e3))
    assert not low["is_muon"].any()


def test_upstream_outside_rich1_has_no_rich(models) -> None:
    """eta 4.6 = 20 mrad: inside RICH2 only, which Upstream tracks never reach."""
    up = _run(models, 321, 4.6, 4)
    assert not up["has_rich"].any()
    for c in ("RichDLLe", "RichDLLmu", "RichDLLK", "RichDLLp", "PIDe", "PIDmu", "PIDK", "PIDp"):
        assert np.all(up[c] == 0.0), c
    down = _run(models, 321, 4.6, 5)
    assert down["has_rich"].all()


def test_very_forward_downstream_tracks_are_not_electron_like(models) -> None:
    """eta 4.95 = 14 mrad: outside RICH2 (from 15 mrad), the ECAL (30) and the muon system (20):
    no sub-detector gives information, every DLL is 0 (the GAN's out-of-domain residual gave most
    such tracks PIDe > 2)."""
    for pid in (13, 211, 321):
        down = _run(models, pid, 4.95, 5, p=(2e4, 1.5e5))
        assert not down["has_rich"].any() and not down["is_muon"].any()
        for c in ("PIDe", "PIDmu", "PIDK", "PIDp"):
            assert np.all(down[c] == 0.0), (pid, c)


def test_downstream_inside_the_acceptance_is_like_long(models) -> None:
    long_ = _run(models, 321, (2.5, 3.5), 3, seed=3)
    down = _run(models, 321, (2.5, 3.5), 5, seed=3)
    np.testing.assert_array_equal(long_["PIDK"], down["PIDK"])  # same draws, same sub-detectors
    assert (down["PIDe"] > 2).mean() < 0.1


def test_bad_track_type(models) -> None:
    with pytest.raises(DataError, match="track type 0 has no PID"):
        _run(models, 211, 3.0, 0)
