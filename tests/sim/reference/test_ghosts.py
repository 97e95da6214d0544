"""Tests of the reference ghost tracks (sim/reference/tracking.py: GhostConfig, simulate_ghosts)."""

from __future__ import annotations

import numpy as np
import pytest

from mambah.errors import ConfigError, DataError
from sim.reference.tracking import GhostConfig, TrackingConfig, simulate_ghosts
from sim.training.ghosts import reference_ghost_sample


def _events(n: int, occ: float, n_long: int = 20) -> dict[str, np.ndarray]:
    return {"event": np.arange(n), "n_tracks": np.full(n, occ), "n_long": np.full(n, n_long),
            **{f"pv_{a}": np.zeros(n) for a in "xy"}, "pv_z": np.linspace(-100, 100, n)}


def test_ghost_fraction_rises_linearly_with_the_occupancy() -> None:
    rng = np.random.default_rng(1)
    fractions = []
    for occ in (75.0, 150.0, 300.0):
        g = simulate_ghosts(_events(3000, occ), rng)
        n = g["event"].size
        fractions.append(n / (n + 3000 * 20))
    ratios = [f / (1 - f) for f in fractions]  # ghosts per real Long track
    # r(n) = 0.11 (n / 150)^1, less the few ghosts without a VELO segment
    assert ratios[1] == pytest.approx(0.11, rel=0.05)
    assert ratios[0] == pytest.approx(ratios[1] / 2, rel=0.06)
    assert ratios[2] == pytest.approx(ratios[1] * 2, rel=0.04)
    flat = simulate_ghosts(_events(3000, 300.0), rng, GhostConfig(power=0.0))
    assert flat["event"].size / (3000 * 20) == pytest.approx(0.11, rel=0.06)


def test_ghost_kinematics_are_soft_with_a_worse_fit() -> None:
    g = simulate_ghosts(_events(4000, 150.0), np.random.default_rng(2))
    cfg, trk = GhostConfig(), TrackingConfig()
    p, pt = g["p"], g["p"] / np.cosh(g["eta"])
    assert p.min() >= cfg.p_min and p.mean() == pytest.approx(cfg.p_min + cfg.p_shape * cfg.p_scale, rel=0.03)
    assert np.median(pt) < 500.0  # MeV
    assert trk.eta_min <= g["eta"].min() and g["eta"].max() <= trk.eta_max
    assert g["track_chi2ndof"].mean() == pytest.approx(2.0, abs=0.05)
    assert g["ghost_prob"].mean() > 0.4
    assert abs(g["charge"].mean()) < 0.03
    np.testing.assert_allclose(np.hypot(np.hypot(g["px"], g["py"]), g["pz"]), p, rtol=1e-9)


def test_ghost_probability_cut_removes_the_published_fraction() -> None:
    """[GHOSTNN]: the cut keeping 99 % of the real tracks removes 60 % of the ghosts (default-decay events)."""
    s = reference_ghost_sample(30_000, 5)  # the real tracks' 99 % quantile sits on a steep tail: it needs the statistics
    cut = np.quantile(s["tracks"]["ghost_prob"], 0.99)
    rejected = float(np.mean(s["ghosts"]["ghost_prob"] > cut))
    assert rejected == pytest.approx(0.60, abs=0.05), rejected
    n_g, n_l = s["ghosts"]["event"].size, int(s["events"]["n_long"].sum())
    assert n_g / (n_g + n_l) == pytest.approx(0.10, abs=0.015)


def test_reproducible_and_bad_input() -> None:
    ev = _events(200, 150.0)
    a = simulate_ghosts(ev, np.random.default_rng(3))
    b = simulate_ghosts(ev, np.random.default_rng(3))
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    with pytest.raises(DataError, match="missing event column"):
        simulate_ghosts({k: v for k, v in ev.items() if k != "n_long"}, np.random.default_rng(0))
    with pytest.raises(DataError, match="NaN"):
        simulate_ghosts({**ev, "n_tracks": np.full(200, np.nan)}, np.random.default_rng(0))
    with pytest.raises(ConfigError, match="power"):
        GhostConfig(power=-1.0)
    with pytest.raises(ConfigError, match="p_scale"):
        GhostConfig(p_scale=0.0)
    with pytest.raises(ConfigError, match="unknown"):
        GhostConfig.from_mapping({"ratio": 0.1})
