"""Tests of sim/passes/resolution.py: residual geometry, the shipped GAN, bad input."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from mambah.errors import DataError, ModelError
from sim.core.modelio import feature_matrix, load_pass_model
from sim.detector.features import add_derived
from sim.detector.resolution import (
    RESOLUTION_CONDITIONS,
    RESOLUTION_TARGETS,
    Resolution,
    apply_residuals,
    pass_residuals,
    residual_targets,
)
from sim.reference.sample import reference_sample_arrays


@pytest.fixture(scope="module")
def sample() -> dict[str, np.ndarray]:
    d = reference_sample_arrays(3000, seed=77)
    rec = d["reconstructed"]
    return add_derived({k: v[rec] for k, v in d.items()})


def test_residuals_round_trip_reproduces_the_reference(sample: dict[str, np.ndarray]) -> None:
    """residual_targets then apply_residuals gives back the reference tracks exactly."""
    res = np.column_stack([sample[k] for k in RESOLUTION_TARGETS])
    out = apply_residuals(sample, sample, sample["track_type"], res)
    pairs = {"px": "reco_px", "py": "reco_py", "pz": "reco_pz", "tx": "tx", "ty": "ty", "x": "x", "y": "y",
             "z": "z", "ip": "ip", "ip_chi2": "ip_chi2", "track_chi2ndof": "track_chi2ndof",
             "ghost_prob": "ghost_prob"}
    for mine, ref in pairs.items():
        np.testing.assert_allclose(out[mine], sample[ref], rtol=1e-8, atol=1e-9, err_msg=mine)


def test_residual_targets_are_zero_for_lost_particles() -> None:
    n = 4
    nan = np.full(n, np.nan)
    feats = {"p": np.full(n, 1e4), "pt": np.full(n, 1e3), "tx_true": np.zeros(n), "ty_true": np.zeros(n)}
    truth = {"pv_z": np.zeros(n), "origin_x": np.zeros(n), "origin_y": np.zeros(n), "origin_z": np.zeros(n)}
    ref = dict.fromkeys(("reco_px", "reco_py", "reco_pz", "tx", "ty", "x", "y", "z", "ip", "ip_chi2"), nan)
    out = residual_targets(feats, truth, ref)
    assert all(np.all(v == 0.0) for v in out.values())


def test_shipped_gan_matches_reference_marginals(sample: dict[str, np.ndarray]) -> None:
    from scipy.stats import ks_2samp  # type: ignore[import-untyped]

    model = load_pass_model(None, "resolution", kind="generator", inputs=RESOLUTION_CONDITIONS,
                            outputs=RESOLUTION_TARGETS, pass_name="resolution")
    cond = feature_matrix(sample, RESOLUTION_CONDITIONS, "test")
    gan = model.sample(cond, np.random.default_rng(5))
    assert gan.shape == (cond.shape[0], len(RESOLUTION_TARGETS))
    # what the pass produces: state residuals drawn from the shared covariance model, chi2/ndf and
    # ghost probability from the GAN (its own state residuals, trained before the covariance model,
    # are not used: KS of dtx_p/dty_p 0.13 against the covariance-driven reference)
    fast = pass_residuals(sample, sample, sample["track_type"], gan, np.random.default_rng(6))
    for j, name in enumerate(RESOLUTION_TARGETS):
        # asymptotic KS: log10_sigma_ip is the same function of the truth in both (statistic ~ 0.005)
        assert ks_2samp(sample[name], fast[:, j], method="asymp").statistic < 0.08, name
    out = apply_residuals(sample, sample, sample["track_type"], fast)
    assert all(np.all(np.isfinite(v)) for v in out.values())
    assert np.all((out["ghost_prob"] >= 0) & (out["ghost_prob"] <= 1))
    # relative momentum resolution of Long tracks: core ~0.5 %, as the reference
    long = sample["track_type"] == 3
    p_fast = np.sqrt(out["px"] ** 2 + out["py"] ** 2 + out["pz"] ** 2)
    width = np.subtract(*np.percentile(p_fast[long] / sample["p"][long] - 1, [84, 16])) / 2
    width_ref = np.subtract(*np.percentile(sample["dp_rel"][long], [84, 16])) / 2
    assert width == pytest.approx(width_ref, rel=0.25)


def test_model_with_wrong_conditions_is_refused(tmp_path) -> None:
    with pytest.raises(ModelError, match="inputs"):
        Resolution(conditions=("log10_p", "eta")).build()
    src = load_pass_model.__globals__["MODELS_DIR"]
    shutil.copy(src / "resolution.keras", tmp_path / "r.keras")
    meta = json.loads((src / "resolution.json").read_text())
    meta["outputs"] = meta["outputs"][::-1]
    (tmp_path / "r.json").write_text(json.dumps(meta))
    with pytest.raises(ModelError, match="outputs"):
        Resolution(model=str(tmp_path / "r.keras")).build()


def test_nan_conditions_are_named(sample: dict[str, np.ndarray]) -> None:
    bad = dict(sample)
    bad["origin_rho"] = bad["origin_rho"].copy()
    bad["origin_rho"][3] = np.nan
    with pytest.raises(DataError, match="origin_rho"):
        feature_matrix(bad, RESOLUTION_CONDITIONS, "pass 'resolution'")
