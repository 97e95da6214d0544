"""Tests of the reference tracking model, sim/reference/tracking.py.

Statistical tests use fixed seeds and samples of 1e5–3e5 particles; the
tolerances are several standard deviations of those samples, so a failure
means the model moved, not bad luck.
"""

from __future__ import annotations

import numpy as np
import pytest

import sim.reference
from mambah.errors import ConfigError, DataError
from sim.reference import (
    TRACK_DOWNSTREAM,
    TRACK_LONG,
    TRACK_NONE,
    TRACK_UPSTREAM,
    TrackingConfig,
    sample_primary_vertices,
    simulate_tracking,
)
from sim.reference.tracking import OUTPUT_KEYS, TRUTH_KEYS

PION_MASS = 139.57  # MeV, PDG


def make_truth(
    n: int,
    rng: np.random.Generator,
    *,
    p_range: tuple[float, float] = (1e3, 2e5),
    eta_range: tuple[float, float] = (1.5, 5.5),
    charge: np.ndarray | float | None = None,
    n_tracks: int = 150,
) -> dict[str, np.ndarray]:
    """Prompt pions, log-uniform in p (MeV), uniform in η and φ, born at the PV."""
    p = np.exp(rng.uniform(np.log(p_range[0]), np.log(p_range[1]), n))
    eta = rng.uniform(*eta_range, n)
    phi = rng.uniform(-np.pi, np.pi, n)
    theta = 2.0 * np.arctan(np.exp(-eta))
    if charge is None:
        q = rng.choice([-1.0, 1.0], n)
    else:
        q = np.broadcast_to(np.asarray(charge, dtype=float), (n,)).copy()
    pv = sample_primary_vertices(n, rng)
    return {
        "pid": (211 * q).astype(np.int64),
        "charge": q,
        "px": p * np.sin(theta) * np.cos(phi),
        "py": p * np.sin(theta) * np.sin(phi),
        "pz": p * np.cos(theta),
        "e": np.sqrt(p * p + PION_MASS**2),
        "origin_x": pv["pv_x"].copy(),
        "origin_y": pv["pv_y"].copy(),
        "origin_z": pv["pv_z"].copy(),
        "pv_x": pv["pv_x"],
        "pv_y": pv["pv_y"],
        "pv_z": pv["pv_z"],
        "n_tracks": np.full(n, n_tracks, dtype=np.int64),
    }


def kinematics(truth: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(p, pT, η) of the truth arrays."""
    px, py, pz = truth["px"], truth["py"], truth["pz"]
    pt = np.hypot(px, py)
    return np.sqrt(pt * pt + pz * pz), pt, np.arcsinh(pz / pt)


def core_sigma(values: np.ndarray) -> float:
    """Gaussian-equivalent width of the core: interquartile range / 1.349."""
    q25, q75 = np.percentile(values, [25, 75])
    return float((q75 - q25) / 1.349)


@pytest.fixture(scope="module")
def prompt() -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    rng = np.random.default_rng(20240601)
    truth = make_truth(300_000, rng)
    return truth, simulate_tracking(truth, rng)


def test_public_names() -> None:
    assert isinstance(sim.reference.__all__, tuple)
    mine = {
        "TRACK_NONE",
        "TRACK_LONG",
        "TRACK_UPSTREAM",
        "TRACK_DOWNSTREAM",
        "TrackingConfig",
        "simulate_tracking",
        "LuminousRegion",
        "OccupancyConfig",
        "simulate_occupancy",
        "sample_primary_vertices",
    }
    assert mine <= set(dir(sim.reference))
    assert (TRACK_NONE, TRACK_LONG, TRACK_UPSTREAM, TRACK_DOWNSTREAM) == (0, 3, 4, 5)


def test_output_schema(prompt: tuple[dict[str, np.ndarray], dict[str, np.ndarray]]) -> None:
    truth, out = prompt
    n = truth["pid"].shape[0]
    assert tuple(out) == OUTPUT_KEYS
    for key, arr in out.items():
        assert arr.shape == (n,), key
    assert out["in_acceptance"].dtype == np.bool_
    assert out["reconstructed"].dtype == np.bool_
    assert out["track_type"].dtype == np.int8
    assert set(np.unique(out["track_type"])) <= {0, 3, 4, 5}
    reco = out["reconstructed"]
    np.testing.assert_array_equal(reco, out["track_type"] != TRACK_NONE)
    for key in OUTPUT_KEYS[3:]:
        assert np.all(np.isnan(out[key][~reco])), key
        assert np.all(np.isfinite(out[key][reco])), key
    # slopes are the reconstructed momentum direction
    np.testing.assert_allclose(out["tx"][reco], (out["reco_px"] / out["reco_pz"])[reco], rtol=1e-12)
    np.testing.assert_allclose(out["ty"][reco], (out["reco_py"] / out["reco_pz"])[reco], rtol=1e-12)
    assert np.all((out["ghost_prob"][reco] >= 0) & (out["ghost_prob"][reco] <= 1))
    assert np.all(out["track_chi2ndof"][reco] > 0)
    # a Long track needs the T stations: it is in the acceptance
    assert np.all(out["in_acceptance"][out["track_type"] == TRACK_LONG])


def test_same_seed_same_output() -> None:
    truth = make_truth(5_000, np.random.default_rng(1))
    a = simulate_tracking(truth, np.random.default_rng(7))
    b = simulate_tracking(truth, np.random.default_rng(7))
    c = simulate_tracking(truth, np.random.default_rng(8))
    for key in OUTPUT_KEYS:
        np.testing.assert_array_equal(a[key], b[key])
    assert not np.array_equal(a["reconstructed"], c["reconstructed"])


def test_long_efficiency_plateau(prompt: tuple[dict[str, np.ndarray], dict[str, np.ndarray]]) -> None:
    """JINST 10 (2015) P02007: > 96 % for 5 < p < 200 GeV; test window [0.94, 0.985]."""
    truth, out = prompt
    p, _, eta = kinematics(truth)
    sel = out["in_acceptance"] & (p > 5e3) & (p < 1e5) & (eta > 2.5) & (eta < 4.5)
    eff = np.mean(out["track_type"][sel] == TRACK_LONG)
    assert sel.sum() > 50_000
    assert 0.94 <= eff <= 0.985


def test_efficiency_rises_with_momentum(
    prompt: tuple[dict[str, np.ndarray], dict[str, np.ndarray]],
) -> None:
    truth, out = prompt
    p, _, eta = kinematics(truth)
    edges = [2e3, 3e3, 5e3, 1e4, 1e5]
    effs, errs = [], []
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        sel = out["in_acceptance"] & (p > lo) & (p < hi) & (eta > 2.5) & (eta < 4.5)
        e = np.mean(out["track_type"][sel] == TRACK_LONG)
        effs.append(e)
        errs.append(np.sqrt(e * (1 - e) / sel.sum()))
    for i in range(len(effs) - 1):
        assert effs[i + 1] > effs[i] - 2 * np.hypot(errs[i], errs[i + 1]), effs
    assert effs[-1] - effs[0] > 0.03, effs


def test_efficiency_falls_with_occupancy() -> None:
    """JINST 10 (2015) P02007 Fig. 10: a few per cent lower at high nTracks."""
    rng = np.random.default_rng(11)
    truth = make_truth(100_000, rng, p_range=(5e3, 1e5), eta_range=(2.5, 4.5))
    effs = []
    for n_tracks in (50, 500):
        truth["n_tracks"] = np.full(truth["pid"].shape, n_tracks)
        out = simulate_tracking(truth, np.random.default_rng(12))
        effs.append(np.mean(out["track_type"][out["in_acceptance"]] == TRACK_LONG))
    assert 0.01 <= effs[0] - effs[1] <= 0.035, effs


def test_neutrals_and_neutrinos_never_tracked() -> None:
    rng = np.random.default_rng(5)
    truth = make_truth(20_000, rng, p_range=(5e3, 5e4), eta_range=(2.5, 4.5), charge=0.0)
    truth["pid"] = rng.choice([22, 111, 2112, 130, 12, -14, 16], truth["pid"].shape[0])
    out = simulate_tracking(truth, rng)
    assert not out["in_acceptance"].any()
    assert not out["reconstructed"].any()
    assert np.all(out["track_type"] == TRACK_NONE)
    assert np.all(np.isnan(out["reco_px"]))
    # a neutrino is never tracked, even if handed a (wrong) charge
    truth["pid"] = np.full(truth["pid"].shape[0], 14)
    truth["charge"] = np.ones(truth["pid"].shape[0])
    assert not simulate_tracking(truth, rng)["reconstructed"].any()


def test_displaced_origins() -> None:
    """Origins after the VELO give Downstream tracks; far ones nothing; Long falls with ρ."""
    rng = np.random.default_rng(21)
    n = 100_000
    truth = make_truth(n, rng, p_range=(5e3, 5e4), eta_range=(2.5, 4.5))
    far = dict(truth)
    far["origin_z"] = rng.uniform(800.0, 2200.0, n)
    out = simulate_tracking(far, rng)
    types = out["track_type"][out["in_acceptance"]]
    assert not np.any(types == TRACK_LONG)
    assert 0.7 < np.mean(types == TRACK_DOWNSTREAM) < 0.95
    # after the TT: no Long/Upstream/Downstream track at all
    far["origin_z"] = rng.uniform(2400.0, 6000.0, n)
    assert not simulate_tracking(far, rng)["reconstructed"].any()
    # Long efficiency falls with the transverse distance of the origin
    effs = []
    phi = rng.uniform(-np.pi, np.pi, n)
    for rho in (0.0, 15.0, 30.0, 50.0):
        disp = dict(truth)
        disp["origin_x"] = truth["pv_x"] + rho * np.cos(phi)
        disp["origin_y"] = truth["pv_y"] + rho * np.sin(phi)
        out = simulate_tracking(disp, np.random.default_rng(22))
        effs.append(np.mean(out["track_type"][out["in_acceptance"]] == TRACK_LONG))
    assert all(a > b + 0.02 for a, b in zip(effs[:-1], effs[1:], strict=True)), effs
    # and the true IP of a displaced track is its geometric distance to the PV
    assert np.nanmedian(out["ip"]) > 40.0


def test_low_momentum_upstream_tracks() -> None:
    """Tracks bent out of the T stations but seen in VELO and TT are Upstream."""
    rng = np.random.default_rng(31)
    truth = make_truth(50_000, rng, p_range=(600.0, 1100.0), eta_range=(2.5, 4.5))
    out = simulate_tracking(truth, rng)
    assert np.mean(out["in_acceptance"]) < 0.02  # p < p_kick: curls in the dipole
    assert np.mean(out["track_type"] == TRACK_UPSTREAM) > 0.5
    assert not np.any(out["in_acceptance"][out["track_type"] == TRACK_UPSTREAM])


def test_charge_asymmetry_flips_with_polarity() -> None:
    """Same kinematics for + and −: the low-p acceptance asymmetry flips with polarity."""
    rng = np.random.default_rng(41)
    n = 200_000
    base = make_truth(n, rng, p_range=(2e3, 4e3), eta_range=(2.0, 5.0), charge=1.0)
    neg = dict(base, charge=-base["charge"], pid=-base["pid"])
    asym, stat = {}, {}
    for polarity in (1, -1):
        cfg = TrackingConfig(polarity=polarity)
        acc_pos = simulate_tracking(base, np.random.default_rng(0), cfg)["in_acceptance"]
        acc_neg = simulate_tracking(neg, np.random.default_rng(0), cfg)["in_acceptance"]
        total = acc_pos.sum() + acc_neg.sum()
        asym[polarity] = (acc_pos.sum() - acc_neg.sum()) / total
        # paired samples: only the discordant pairs fluctuate
        stat[polarity] = np.sqrt(np.sum(acc_pos != acc_neg)) / total
    assert asym[1] * asym[-1] < 0, asym
    assert all(abs(asym[k]) > 5 * stat[k] for k in (1, -1)), (asym, stat)
    assert all(abs(asym[k]) < 0.05 for k in (1, -1)), asym  # O(1 %), not a gross effect
    # a centred detector has no asymmetry (mirror symmetry of the model)
    mirrored = dict(base, px=-base["px"], origin_x=-base["origin_x"], pv_x=-base["pv_x"])
    sym = TrackingConfig(t_x_centre=0.0)
    a_pos = simulate_tracking(base, np.random.default_rng(0), sym)["in_acceptance"]
    a_neg = simulate_tracking(dict(mirrored, charge=-base["charge"]), np.random.default_rng(0), sym)
    np.testing.assert_array_equal(a_pos, a_neg["in_acceptance"])


def test_momentum_resolution_core_at_5_gev(
    prompt: tuple[dict[str, np.ndarray], dict[str, np.ndarray]],
) -> None:
    """arXiv:1412.6352: δp/p ≈ 0.5 % at low momentum; core σ within 20 %."""
    truth, out = prompt
    p, _, _ = kinematics(truth)
    sel = (out["track_type"] == TRACK_LONG) & (p > 4e3) & (p < 6e3)
    p_reco = np.sqrt(out["reco_px"] ** 2 + out["reco_py"] ** 2 + out["reco_pz"] ** 2)
    sigma = core_sigma(((p_reco - p) / p)[sel])
    assert sel.sum() > 5_000
    assert abs(sigma - 0.005) < 0.2 * 0.005, sigma
    # and it grows towards 1 % at 200 GeV
    high = (out["track_type"] == TRACK_LONG) & (p > 1.5e5)
    assert core_sigma(((p_reco - p) / p)[high]) > 1.4 * sigma
    # residuals are drawn from the state covariance: q/p pulls are unit Gaussian (no tails)
    qop_pull = ((truth["charge"] / p_reco - truth["charge"] / p) / np.sqrt(out["cov_qop_qop"]))[sel]
    assert abs(np.mean(qop_pull)) < 0.05 and abs(np.std(qop_pull) - 1.0) < 0.05
    assert np.mean(np.abs(qop_pull) > 3) < 0.005


def test_ip_resolution_versus_inverse_pt() -> None:
    """σ(IP_x) = 11.6 µm + 23.4 µm/pT[GeV] (arXiv:1412.6352, x projection).

    Projection convention: IP_x is the x of the reconstructed track at the z of
    the PV minus the PV x; the 3-D ``ip`` is ≈ √2 wider (Rayleigh).
    """
    rng = np.random.default_rng(51)
    truth = make_truth(300_000, rng, p_range=(2e3, 1e5), eta_range=(2.2, 4.8))
    out = simulate_tracking(truth, rng)
    _, pt, _ = kinematics(truth)
    long_ = out["track_type"] == TRACK_LONG
    ip_x = out["x"] + out["tx"] * (truth["pv_z"] - out["z"]) - truth["pv_x"]
    inv_pt = 1e3 / pt  # 1/GeV
    edges = np.array([0.3, 0.6, 1.0, 1.5, 2.0, 3.0])
    centres, widths = [], []
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        sel = long_ & (inv_pt > lo) & (inv_pt < hi)
        assert sel.sum() > 2_000
        centres.append(np.mean(inv_pt[sel]))
        widths.append(core_sigma(ip_x[sel]) * 1e3)  # µm
    slope, intercept = np.polyfit(centres, widths, 1)
    assert abs(intercept - 11.6) < 0.25 * 11.6, (intercept, slope)
    assert abs(slope - 23.4) < 0.25 * 23.4, (intercept, slope)
    # 3-D IP of prompt tracks: ip_chi2 ≈ χ²(2), median 2 ln 2 ≈ 1.39 (plus tails)
    assert 1.2 < np.median(out["ip_chi2"][long_]) < 1.7
    # state at the closest approach to the beam line sits near the PV
    assert np.median(np.abs(out["z"] - truth["pv_z"])[long_]) < 1.0


def test_chi2_and_ghost_probability() -> None:
    rng = np.random.default_rng(61)
    truth = make_truth(100_000, rng, p_range=(2e3, 1e5), eta_range=(2.0, 5.0))
    far = dict(truth, origin_z=rng.uniform(800.0, 2200.0, truth["pid"].shape[0]))
    out = simulate_tracking(truth, rng)
    down = simulate_tracking(far, rng)
    chi2_long = out["track_chi2ndof"][out["track_type"] == TRACK_LONG]
    chi2_down = down["track_chi2ndof"][down["track_type"] == TRACK_DOWNSTREAM]
    assert 0.9 < np.median(chi2_long) < 1.2
    assert np.mean(chi2_long > 3) > 0.005  # a tail
    assert np.median(chi2_down) > 1.1 * np.median(chi2_long)
    ghost_low = out["ghost_prob"][out["track_type"] == TRACK_LONG]
    assert np.median(ghost_low) < 0.1
    truth["n_tracks"] = np.full(truth["pid"].shape[0], 500)
    busy = simulate_tracking(truth, np.random.default_rng(62))
    ghost_high = busy["ghost_prob"][busy["track_type"] == TRACK_LONG]
    assert np.mean(ghost_high) > 1.3 * np.mean(ghost_low)


@pytest.mark.parametrize("key", ["pz", "origin_z", "n_tracks", "pid"])
def test_missing_key_refused(key: str) -> None:
    truth = make_truth(10, np.random.default_rng(0))
    del truth[key]
    with pytest.raises(DataError, match=key):
        simulate_tracking(truth, np.random.default_rng(0))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("key", ["px", "pv_z", "charge"])
def test_non_finite_refused(key: str, bad: float) -> None:
    truth = make_truth(10, np.random.default_rng(0))
    truth[key] = truth[key].astype(float)
    truth[key][3] = bad
    with pytest.raises(DataError, match=key):
        simulate_tracking(truth, np.random.default_rng(0))


def test_shape_mismatch_refused() -> None:
    truth = make_truth(10, np.random.default_rng(0))
    truth["e"] = truth["e"][:5]
    with pytest.raises(DataError, match="'e'"):
        simulate_tracking(truth, np.random.default_rng(0))


def test_empty_input() -> None:
    truth = {key: np.zeros(0) for key in TRUTH_KEYS}
    out = simulate_tracking(truth, np.random.default_rng(0))
    assert all(arr.shape == (0,) for arr in out.values())


def test_config_refuses_bad_values() -> None:
    with pytest.raises(ConfigError, match="polarity"):
        TrackingConfig(polarity=0)
    with pytest.raises(ConfigError, match="long_efficiency"):
        TrackingConfig(long_efficiency=1.5)
    with pytest.raises(ConfigError, match="magnet_field"):
        TrackingConfig.from_mapping({"magnet_field": 4.0})
    assert TrackingConfig.from_mapping({"polarity": -1}).polarity == -1


def test_state_residuals_are_drawn_from_the_state_covariance() -> None:
    """Pulls of (x, y, tx, ty, q/p) at the state z: mean 0, width 1 for every track type."""
    from sim.detector.trackcov import cov_from_columns

    rng = np.random.default_rng(71)
    truth = make_truth(60_000, rng, p_range=(2e3, 1e5), eta_range=(2.0, 5.0))
    far = dict(truth, origin_z=rng.uniform(800.0, 2200.0, truth["pid"].shape[0]))
    for sample in (truth, far):
        out = simulate_tracking(sample, rng)
        cov = cov_from_columns(out)
        p = np.sqrt(sample["px"] ** 2 + sample["py"] ** 2 + sample["pz"] ** 2)
        tx, ty = sample["px"] / sample["pz"], sample["py"] / sample["pz"]
        dz = out["z"] - sample["origin_z"]
        true = np.column_stack(
            [sample["origin_x"] + tx * dz, sample["origin_y"] + ty * dz, tx, ty, sample["charge"] / p]
        )
        p_reco = np.sqrt(out["reco_px"] ** 2 + out["reco_py"] ** 2 + out["reco_pz"] ** 2)
        reco = np.column_stack([out["x"], out["y"], out["tx"], out["ty"], sample["charge"] / p_reco])
        for code in (TRACK_LONG, TRACK_UPSTREAM, TRACK_DOWNSTREAM):
            sel = out["track_type"] == code
            if sel.sum() < 2_000:
                continue
            pull = (reco - true)[sel] / np.sqrt(np.diagonal(cov[sel], axis1=1, axis2=2))
            assert np.all(np.abs(pull.mean(axis=0)) < 0.05), (code, pull.mean(axis=0))
            assert np.all(np.abs(pull.std(axis=0) - 1.0) < 0.1), (code, pull.std(axis=0))
            # the full 5-D chi2 of the residual is chi2(5): the correlations are right too
            d = (reco - true)[sel]
            chi2 = np.einsum("ni,nij,nj->n", d, np.linalg.inv(cov[sel]), d)
            assert abs(np.mean(chi2) - 5.0) < 0.15
    assert np.all(np.isnan(out["cov_x_x"][~out["reconstructed"]]))


def test_errors_config_must_share_the_velo_geometry() -> None:
    from sim.detector.trackcov import TrackErrorModel

    with pytest.raises(ConfigError, match="VELO geometry"):
        TrackingConfig(errors=TrackErrorModel(velo_r_min=5.1))
    cfg = TrackingConfig.from_mapping({"errors": {"hit_resolution": 0.01}})
    assert cfg.errors.hit_resolution == 0.01
    with pytest.raises(ConfigError, match="unknown key.*hit_res.*TrackingConfig.errors"):
        TrackingConfig.from_mapping({"errors": {"hit_res": 0.01}})
