"""Tests of sim/training/ghosts.py: the multiplicity fit, and the fast ghost model against the reference."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import ks_2samp

from mambah.errors import ConfigError
from sim.detector.ghosts import GHOST_FEATURES, load_ghost_model, make_ghosts
from sim.training.ghosts import fit_multiplicity, ghost_features, reference_ghost_sample, train_ghost_model


def test_fit_multiplicity_recovers_the_law() -> None:
    rng = np.random.default_rng(1)
    n_tracks = rng.gamma(3.0, 50.0, 50_000)
    n_long = rng.integers(1, 8, 50_000)
    g = rng.poisson(0.2 * (n_tracks / 150.0) ** 1.5 * n_long)
    a, b = fit_multiplicity(g, n_long, n_tracks)
    assert a == pytest.approx(0.2, rel=0.03) and b == pytest.approx(1.5, abs=0.05)
    with pytest.raises(ConfigError, match="ghosts in the sample"):
        fit_multiplicity(np.zeros(10), np.ones(10), np.full(10, 100.0))


def test_trained_model_records_the_reference() -> None:
    m = train_ghost_model(3000, 3)
    assert m.provenance["n_events"] == 3000 and m.provenance["detector_card"] == "lhcb-run2"
    assert m.ratio_ref == pytest.approx(0.11, rel=0.15)
    assert m.provenance["reference_ghost_fraction"] == pytest.approx(0.10, abs=0.02)


@pytest.fixture(scope="module")
def both() -> tuple[dict[str, dict[str, np.ndarray]], dict[str, np.ndarray]]:
    """Reference ghosts of independent events (seed 77) and the shipped model's on the same events."""
    s = reference_ghost_sample(8000, 77)
    ev = {**s["events"], "last_index": np.full(s["events"]["event"].size, -1)}
    return s, make_ghosts(load_ghost_model(), ev, np.random.default_rng(78))


def test_shipped_model_follows_the_reference(both: tuple[dict[str, dict[str, np.ndarray]], dict[str, np.ndarray]]) -> None:
    s, fast = both
    ref = s["ghosts"]
    n_l = int(s["events"]["n_long"].sum())
    f_ref, f_fast = ref["event"].size / (ref["event"].size + n_l), fast["event"].size / (fast["event"].size + n_l)
    assert f_fast == pytest.approx(f_ref, abs=0.01), (f_ref, f_fast)
    xr = ghost_features(ref)
    xf = np.column_stack([np.log10(fast["p"]), fast["eta"], fast["track_chi2ndof"], fast["ghost_prob"]])
    for j, name in enumerate(GHOST_FEATURES):
        assert ks_2samp(xr[:, j], xf[:, j]).statistic < 0.04, name
    assert ks_2samp(ref["ip_chi2"], fast["ip_chi2"]).statistic < 0.04
    # the occupancy dependence: ghost fraction in nTracks bins
    occ = s["events"]["n_tracks"]
    for lo, hi in ((0, 100), (100, 200), (200, 1000)):
        sel = (occ >= lo) & (occ < hi)
        nl = s["events"]["n_long"][sel].sum()
        gr = np.isin(ref["event"], s["events"]["event"][sel]).sum()
        gf = np.isin(fast["event"], s["events"]["event"][sel]).sum()
        assert gf / (gf + nl) == pytest.approx(gr / (gr + nl), abs=0.015), (lo, hi)
