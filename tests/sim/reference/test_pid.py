"""Tests of the reference PID response (sim/reference/pid.py)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from mambah.errors import ConfigError, DataError
from sim.reference.pid import MUON_LL_SENTINEL, PID_COLUMNS, PIDConfig, simulate_pid

N = 20_000


def _tracks(
    pid: int,
    n: int,
    rng: np.random.Generator,
    p_range: tuple[float, float] = (2e3, 100e3),
    n_tracks: float | None = None,
) -> dict[str, np.ndarray]:
    """Toy long tracks: log-flat p [MeV], eta in the RICH/muon acceptance (2-4.4)."""
    p = np.exp(rng.uniform(np.log(p_range[0]), np.log(p_range[1]), n))
    eta = rng.uniform(2.0, 4.4, n)
    phi = rng.uniform(0.0, 2.0 * np.pi, n)
    pt = p / np.cosh(eta)
    occupancy = rng.gamma(4.0, 40.0, n) if n_tracks is None else np.full(n, n_tracks)
    return {
        "pid": np.full(n, pid),
        "charge": rng.choice([-1, 1], n),
        "px": pt * np.cos(phi),
        "py": pt * np.sin(phi),
        "pz": pt * np.sinh(eta),
        "n_tracks": occupancy,
    }


@pytest.fixture(scope="module")
def rng() -> np.random.Generator:
    return np.random.default_rng(20240611)


def test_outputs_shape_range_and_reproducible() -> None:
    truth = _tracks(321, 2000, np.random.default_rng(1))
    out1 = simulate_pid(truth, np.random.default_rng(7))
    out2 = simulate_pid(truth, np.random.default_rng(7))
    assert tuple(out1) == PID_COLUMNS
    for key in PID_COLUMNS:
        assert out1[key].shape == (2000,)
        np.testing.assert_array_equal(out1[key], out2[key])
    probs = np.stack([out1[k] for k in PID_COLUMNS if k.startswith("ProbNN")], axis=1)
    assert np.all((probs >= 0) & (probs <= 1))
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-12)
    # Sentinel exactly where not IsMuon; global DLLs built on the RICH ones.
    assert np.all((out1["MuonMuLL"] == MUON_LL_SENTINEL) == ~out1["is_muon"])
    np.testing.assert_array_equal(out1["PIDK"], out1["RichDLLK"])


def test_no_rich_information_gives_zero_dll(rng: np.random.Generator) -> None:
    truth = _tracks(211, 1000, rng, p_range=(1000.0, 1900.0))  # below p_min_rich
    out = simulate_pid(truth, rng)
    assert not out["has_rich"].any()
    for key in ("RichDLLe", "RichDLLmu", "RichDLLK", "RichDLLp"):
        assert np.all(out[key] == 0.0)


def test_kaon_pion_threshold_and_performance(rng: np.random.Generator) -> None:
    # Below the pion RICH1 threshold (2.6 GeV) and without RICH2 light no K/pi separation.
    low_k = simulate_pid(_tracks(321, N, rng, (2.05e3, 2.5e3)), rng)["RichDLLK"]
    low_pi = simulate_pid(_tracks(211, N, rng, (2.05e3, 2.5e3)), rng)["RichDLLK"]
    assert abs(np.mean(low_k > 0) - np.mean(low_pi > 0)) < 0.1
    # Above the K threshold (9.3 GeV): LHCb-like performance (arXiv:1211.6759 Fig. 17).
    k = simulate_pid(_tracks(321, N, rng, (10e3, 60e3)), rng)["RichDLLK"]
    pi = simulate_pid(_tracks(211, N, rng, (10e3, 60e3)), rng)["RichDLLK"]
    assert np.mean(k > 0) >= 0.9
    assert np.mean(pi > 0) <= 0.12
    assert np.mean(k > 5) > np.mean(pi > 5) + 0.8


def test_proton_kaon_sign_convention(rng: np.random.Generator) -> None:
    prot = simulate_pid(_tracks(2212, N, rng, (20e3, 100e3)), rng)
    kaon = simulate_pid(_tracks(321, N, rng, (20e3, 100e3)), rng)
    assert np.mean(prot["RichDLLp"] - prot["RichDLLK"]) > np.mean(kaon["RichDLLp"] - kaon["RichDLLK"]) + 5
    assert np.mean(prot["PIDp"] > 0) > 0.9
    # Both below their RICH1 thresholds (K 9.3, p 17.7 GeV): weak p/K separation.
    prot_low = simulate_pid(_tracks(2212, N, rng, (3e3, 8e3)), rng)
    sep_low = np.mean(prot_low["RichDLLp"] - prot_low["RichDLLK"] > 0)
    sep_high = np.mean(prot["RichDLLp"] - prot["RichDLLK"] > 0)
    assert sep_low < sep_high - 0.3


def test_muon_identification(rng: np.random.Generator) -> None:
    mu = simulate_pid(_tracks(13, N, rng, (6e3, 100e3)), rng)
    assert np.mean(mu["is_muon"]) >= 0.95
    assert np.mean(mu["MuonMuLL"][mu["is_muon"]] - mu["MuonBkgLL"][mu["is_muon"]]) > 0
    pi_high = simulate_pid(_tracks(211, N, rng, (10e3, 100e3)), rng)
    assert 0.001 < np.mean(pi_high["is_muon"]) < 0.05
    # Decays in flight: K (c tau 3.7 m) misID above pi's (7.8 m) at equal momentum.
    pi_low = simulate_pid(_tracks(211, N, rng, (3e3, 6e3)), rng)["is_muon"]
    k_low = simulate_pid(_tracks(321, N, rng, (3e3, 6e3)), rng)["is_muon"]
    assert np.mean(k_low) > np.mean(pi_low) + 3 * np.sqrt(np.mean(pi_low) / N)
    # Below 3 GeV IsMuon is not defined.
    soft = simulate_pid(_tracks(13, 2000, rng, (2e3, 2.9e3)), rng)
    assert not soft["is_muon"].any()
    # Muon-hypothesis ProbNN favours true muons.
    assert np.mean(mu["ProbNNmu"]) > np.mean(pi_high["ProbNNmu"]) + 0.5


def test_photon_losses_are_one_sided() -> None:
    """Unmodelled photon losses make pions look like kaons, not kaons like pions (#16 RICH tuning).

    Same tracks and seeds with and without losses (10-40 GeV, above both C4F10 thresholds):
    the pi -> K misID at DLLK > 0 rises, the kaon efficiency stays."""
    lossless = dataclasses.replace(
        PIDConfig(), rich1=dataclasses.replace(PIDConfig().rich1, loss_probability=0.0),
        rich2=dataclasses.replace(PIDConfig().rich2, loss_probability=0.0))
    rates = {}
    for name, cfg in (("lossy", PIDConfig()), ("lossless", lossless)):
        for pid in (211, 321):
            truth = _tracks(pid, N, np.random.default_rng(pid), (10e3, 40e3))
            rates[(name, pid)] = float(np.mean(simulate_pid(truth, np.random.default_rng(7), cfg)["RichDLLK"] > 0))
    assert rates[("lossy", 211)] > rates[("lossless", 211)] + 0.01, rates
    assert abs(rates[("lossy", 321)] - rates[("lossless", 321)]) < 0.01, rates


def test_kaon_decay_in_flight_misid_matches_the_decay_length() -> None:
    """IsMuon misID of 50-100 GeV kaons ~ BR * (1 - exp(-L / (beta gamma c tau))) * match + random hits.

    Independent computation: the exponential decay law with the PDG c tau of K+ (3.712 m) and
    the config's path and match probability; the non-decay part is measured on protons (no decay)."""
    cfg = PIDConfig()
    p = np.exp(np.random.default_rng(1).uniform(np.log(50e3), np.log(100e3), N))
    bg = p / 493.677
    expected_dif = np.mean(cfg.br_mu_kaon * -np.expm1(-cfg.dif_path / (bg * 3712.0)) * cfg.dif_match_probability)
    rng = np.random.default_rng(2)
    k = simulate_pid(_tracks(321, N, rng, (50e3, 100e3)), rng)["is_muon"]
    prot = simulate_pid(_tracks(2212, N, rng, (50e3, 100e3)), rng)["is_muon"]
    measured = float(np.mean(k) - np.mean(prot))
    sigma = np.sqrt(np.mean(k) / N + np.mean(prot) / N)
    assert abs(measured - expected_dif) < 3 * sigma + 0.001, (measured, expected_dif, sigma)


def test_electron_calorimeter_term(rng: np.random.Generator) -> None:
    """PIDe = RichDLLe + EcalPIDe (the calorimeter reconstruction's value, reference ECAL);
    without the column the calorimeter term is 0; ProbNNe follows the calorimeter."""
    from sim.reference.ecal_pid import reference_ecal_pid

    out = {}
    for pid in (11, 211):
        truth = _tracks(pid, 2000, rng, (2e3, 20e3))
        calo = reference_ecal_pid(truth["pid"], truth["charge"], truth["px"], truth["py"], truth["pz"], rng)
        out[pid] = simulate_pid({**truth, "EcalPIDe": calo["EcalPIDe"]}, rng)
        np.testing.assert_allclose(out[pid]["PIDe"], out[pid]["RichDLLe"] + calo["EcalPIDe"])
        bare = simulate_pid(truth, np.random.default_rng(5))
        np.testing.assert_array_equal(bare["PIDe"], bare["RichDLLe"])
        if pid == 11:  # electrons in the ECAL with a cluster: E/p near 1, EcalPIDe > 2
            has = np.isfinite(calo["calo_e_over_p"])
            assert has.mean() > 0.7 and np.median(calo["calo_e_over_p"][has]) == pytest.approx(1.0, abs=0.05)
            assert np.mean(calo["EcalPIDe"][has] > 2) > 0.85
    el, pi = out[11], out[211]
    assert np.mean(el["PIDe"]) > np.mean(pi["PIDe"]) + 8
    assert np.mean(el["ProbNNe"]) > 0.5 > np.mean(pi["ProbNNe"])
    with pytest.raises(DataError, match="EcalPIDe"):
        simulate_pid({**_tracks(11, 10, rng), "EcalPIDe": np.full(10, np.nan)}, rng)


def test_occupancy_degrades_separation(rng: np.random.Generator) -> None:
    def misid(n_tracks: float) -> float:
        pi = simulate_pid(_tracks(211, N, rng, (10e3, 100e3), n_tracks=n_tracks), rng)["RichDLLK"]
        return float(np.mean(pi > 0))

    low, high = misid(20.0), misid(500.0)
    assert high > low + 3 * np.sqrt(low / N)


def test_other_charged_species_use_true_mass(rng: np.random.Generator) -> None:
    sigma = simulate_pid(_tracks(3222, 2000, rng, (20e3, 40e3)), rng)  # Sigma+ (1189 MeV)
    # Heavier than p: less light than a proton, so the p hypothesis beats K and pi.
    assert np.mean(sigma["RichDLLp"] - sigma["RichDLLK"]) > 2
    assert np.mean(sigma["RichDLLp"]) > 5


@pytest.mark.parametrize("bad_pid", [0, 111, 99999999])
def test_bad_species_raise(bad_pid: int, rng: np.random.Generator) -> None:
    truth = _tracks(211, 10, rng)
    truth["pid"] = np.full(10, bad_pid)
    with pytest.raises(DataError, match="pid"):
        simulate_pid(truth, rng)


@pytest.mark.parametrize("key", ["pid", "charge", "px", "py", "pz", "n_tracks"])
def test_missing_or_nan_column_named(key: str, rng: np.random.Generator) -> None:
    truth = _tracks(211, 10, rng)
    missing = {k: v for k, v in truth.items() if k != key}
    with pytest.raises(DataError, match=key):
        simulate_pid(missing, rng)
    if key != "pid":
        bad = dict(truth)
        bad[key] = truth[key].astype(float)
        bad[key][3] = np.nan
        with pytest.raises(DataError, match=key):
            simulate_pid(bad, rng)


def test_shape_mismatch_and_zero_charge(rng: np.random.Generator) -> None:
    truth = _tracks(211, 10, rng)
    with pytest.raises(DataError, match="px"):
        simulate_pid({**truth, "px": truth["px"][:5]}, rng)
    with pytest.raises(DataError, match="charge"):
        simulate_pid({**truth, "charge": np.zeros(10)}, rng)


def test_config_validation() -> None:
    with pytest.raises(ConfigError, match="bogus"):
        PIDConfig.from_mapping({"bogus": 1})
    with pytest.raises(ConfigError, match="station_efficiency"):
        PIDConfig(station_efficiency=1.5)
    cfg = PIDConfig.from_mapping({"rich1": {"n_pe_saturated": 40.0}, "p_min_rich": 2500.0})
    assert cfg.rich1.n_pe_saturated == 40.0
    assert cfg.rich1.n_minus_1 == PIDConfig().rich1.n_minus_1
    with pytest.raises(ConfigError, match="window"):
        dataclasses.replace(PIDConfig().rich2, window=0.0)


def test_reference_ecal_pid_bad_input() -> None:
    from sim.reference.ecal_pid import reference_ecal_pid

    rng = np.random.default_rng(0)
    one = np.ones(3)
    with pytest.raises(DataError, match="px has shape"):
        reference_ecal_pid(np.full(3, 11), one, np.ones(2), one, one, rng)
    with pytest.raises(DataError, match="py holds NaN"):
        reference_ecal_pid(np.full(3, 11), one, one, np.array([0.0, np.nan, 0.0]), one, rng)
    with pytest.raises(DataError, match="pz must be positive"):
        reference_ecal_pid(np.full(3, 11), one, one, one, -one, rng)
