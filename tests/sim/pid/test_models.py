"""Tests of sim.pid.models: shipped models, chained generation, training (shift, sWeights), bad input."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from mambah.errors import ConfigError, DataError, ModelError, TrainingError
from sim.pid.models import (
    DEFAULT_MODEL_DIR,
    MODEL_PARTS,
    REQUIRED_COLUMNS,
    SHIPPED_SPECIES,
    load_pid_models,
    load_species_models,
    rich_acceptance,
    species_of_pid,
)
from sim.reference.pid import MUON_LL_SENTINEL, PID_COLUMNS
from sim.training import ks_distance
from sim.training.recipes.pid import train_gan_part, train_species_models


@pytest.fixture(scope="module")
def models():
    return load_pid_models()


def test_shipped_files_are_small_and_complete():
    for sp in SHIPPED_SPECIES:
        for part in MODEL_PARTS:
            for suffix in (".keras", ".json"):
                f = DEFAULT_MODEL_DIR / f"{sp}_{part}{suffix}"
                assert f.is_file(), f
                assert f.stat().st_size < 500_000, f  # the largest: p_rich.json, K_rich.json, 424 / 422 kB (24 momentum bins)


def test_species_of_pid_and_fallback():
    got = species_of_pid(np.array([13, -13, 211, -321, 2212, 11, 0, 3222]))
    assert got.tolist() == ["mu", "mu", "pi", "K", "p", "e", "pi", "pi"]


def test_rich_acceptance():
    p = np.array([1500.0, 10_000.0, 10_000.0, 10_000.0])
    eta = np.array([3.0, 3.0, 1.0, 6.0])
    assert rich_acceptance(p, eta).tolist() == [False, True, False, False]


def test_chain_outputs(models):
    rng = np.random.default_rng(1)
    n = 3000
    species = np.array(["mu", "pi", "K", "p", "e", "pi"] * 500, dtype=object)
    p = rng.uniform(3e3, 1e5, n)
    eta = rng.uniform(2.1, 4.7, n)
    nt = rng.uniform(50, 300, n)
    # electrons with an electron-like cluster (EcalPIDe as electron_dll gives at E/p = 1), pions with
    # a hadronic shower (E/p ~ 0.3: -20, the clip), the others without a cluster
    ecal = np.select([species == "e", species == "pi"], [4.3, -20.0], 0.0)
    out = models.generate(species, p, eta, nt, rng, ecal_pid=ecal)
    assert set(out) == set(PID_COLUMNS)
    for c, v in out.items():
        assert v.shape == (n,) and np.all(np.isfinite(v)), c
    assert out["has_rich"].all()
    # Sentinel exactly where not IsMuon; the global DLLs are RICH + residual.
    assert np.all(out["MuonMuLL"][~out["is_muon"]] == MUON_LL_SENTINEL)
    assert np.all(out["MuonMuLL"][out["is_muon"]] != MUON_LL_SENTINEL)
    for c in ("ProbNNe", "ProbNNpi", "ProbNNk"):
        assert np.all((out[c] >= 0) & (out[c] <= 1))
    # Physics: kaons have larger PIDK than pions, muons are IsMuon far more often.
    k, pi, mu = species == "K", species == "pi", species == "mu"
    assert np.median(out["PIDK"][k]) > np.median(out["PIDK"][pi]) + 10
    assert out["is_muon"][mu].mean() > 0.8 > 0.1 > out["is_muon"][pi].mean()
    # electrons run through their own (shipped) model: PIDe (RICH + calorimeter) and ProbNNe high
    e = species == "e"
    assert np.median(out["PIDe"][e]) > np.median(out["PIDe"][pi]) + 5
    calo = out["PIDe"][e] - out["RichDLLe"][e]  # EcalPIDe + dPIDe (~0) inside the ECAL, exactly 0 outside it
    inside = calo != 0
    assert inside.mean() > 0.7
    np.testing.assert_allclose(calo[inside], 4.3, atol=1.0)
    assert np.median(out["ProbNNe"][e]) > 0.5 > 0.05 > np.median(out["ProbNNe"][pi])
    # Same seed -> same output.
    o1 = models.generate(species, p, eta, nt, np.random.default_rng(7))
    o2 = models.generate(species, p, eta, nt, np.random.default_rng(7))
    assert all(np.array_equal(o1[c], o2[c]) for c in PID_COLUMNS)


def test_unknown_species_refused():
    with pytest.raises(ConfigError, match="unknown PID species 'kaon'"):
        load_species_models("kaon")
    with pytest.raises(ConfigError, match="must include 'pi'"):
        load_pid_models(species=("K",))


@pytest.fixture
def model_copy(tmp_path: Path) -> Path:
    for f in DEFAULT_MODEL_DIR.glob("K_*"):
        shutil.copy(f, tmp_path / f.name)
    return tmp_path


def test_sidecar_mismatch_is_model_error(model_copy: Path):
    side = model_copy / "K_rich.json"
    meta = json.loads(side.read_text())
    meta["inputs"] = ["p", "pt", "n_tracks"]
    side.write_text(json.dumps(meta))
    with pytest.raises(ModelError, match="K_rich.keras input mismatch"):
        load_species_models("K", model_copy)


def test_wrong_outputs_and_corrupt_and_missing(model_copy: Path):
    side = model_copy / "K_global.json"
    meta = json.loads(side.read_text())
    meta["outputs"] = list(reversed(meta["outputs"]))
    side.write_text(json.dumps(meta))
    with pytest.raises(ModelError, match="K_global.keras outputs"):
        load_species_models("K", model_copy)
    shutil.copy(DEFAULT_MODEL_DIR / "K_global.json", side)
    (model_copy / "K_ismuon.keras").write_bytes(b"not a zip")
    with pytest.raises(ModelError, match="cannot load model"):
        load_species_models("K", model_copy)
    (model_copy / "K_ismuon.keras").unlink()
    with pytest.raises(ModelError, match="does not exist"):
        load_species_models("K", model_copy)


# --------------------------------------------------------------------------- training


def _conditions(rng: np.random.Generator, n: int) -> np.ndarray:
    return np.column_stack([rng.uniform(3e3, 1e5, n), rng.uniform(2.0, 4.8, n), rng.uniform(20, 400, n)])


def test_tiny_training_learns_conditional_shift():
    """RichDLLK = +8 above 40 GeV, -8 below (unit noise): the trained GAN must follow p."""
    rng = np.random.default_rng(3)
    n = 4000
    c = _conditions(rng, n)
    high = c[:, 0] > 4e4
    t = rng.normal(0.0, 1.0, (n, 4))
    t[:, 2] += np.where(high, 8.0, -8.0)
    model = train_gan_part("rich", c, t, epochs=6, seed=1)
    c_test = _conditions(np.random.default_rng(4), 2000)
    g = model.sample(c_test, np.random.default_rng(5))
    hi = c_test[:, 0] > 4.5e4
    lo = c_test[:, 0] < 3.5e4
    assert np.median(g[hi, 2]) > 5.0
    assert np.median(g[lo, 2]) < -5.0


def test_rich_gan_keeps_a_momentum_dependent_edge():
    """RichDLLK uniform below an edge that grows with p (as below a Cherenkov threshold): the
    RICH GAN's conditional target preprocessing keeps generated values under the edge,
    where the marginal one (same GAN otherwise) spills over."""
    from sim.pid.models import GAN_SETTINGS, N_QUANTILES
    from sim.training import train_gan

    rng = np.random.default_rng(7)
    n = 6000
    c = _conditions(rng, n)
    edge = lambda cond: cond[:, 0] / 2e3  # noqa: E731  (1.5 ... 50)
    t = rng.normal(0.0, 1.0, (n, 4))
    t[:, 2] = edge(c) * rng.uniform(0.0, 1.0, n)
    c_test = _conditions(np.random.default_rng(8), 4000)
    over = {}
    for label, bins in (("conditional", GAN_SETTINGS["rich"]["target_bins"]), ("marginal", None)):
        settings = {**GAN_SETTINGS["rich"], "target_bins": bins}
        model = train_gan(c, t, epochs=6, seed=1, n_quantiles=N_QUANTILES, progress=False, **settings)
        g = model.sample(c_test, np.random.default_rng(9))[:, 2]
        over[label] = np.mean(g > 1.1 * edge(c_test) + 1.0)
    assert over["conditional"] < 0.02, over
    assert over["marginal"] > 3 * over["conditional"] + 0.02


def test_train_selected_parts_only(tmp_path: Path):
    d = _sample(1200)
    models, times = train_species_models(d, "K", parts=("ismuon",), classifier_epochs=1, output_dir=tmp_path)
    assert models.rich is None and models.global_ is None and models.ismuon is not None
    assert sorted(f.name for f in tmp_path.iterdir()) == ["K_ismuon.json", "K_ismuon.keras"]
    assert set(times) == {"ismuon"}
    with pytest.raises(ConfigError, match="unknown PID model part"):
        train_species_models(d, "K", parts=("rich", "dll"))


def _sweights(mass: np.ndarray, n_s: float, n_b: float, mu: float, sigma: float, lo: float, hi: float) -> np.ndarray:
    """sPlot signal weights for a Gaussian over a flat background with known shapes."""
    fs = np.exp(-0.5 * ((mass - mu) / sigma) ** 2) / (sigma * np.sqrt(2 * np.pi))
    fb = np.full_like(mass, 1.0 / (hi - lo))
    den = n_s * fs + n_b * fb
    v_inv = np.array([[np.sum(fs * fs / den**2), np.sum(fs * fb / den**2)],
                      [np.sum(fs * fb / den**2), np.sum(fb * fb / den**2)]])
    v = np.linalg.inv(v_inv)
    return (v[0, 0] * fs + v[0, 1] * fb) / den


def test_sweighted_training_recovers_signal():
    """Signal DLL ~ N(+5, 1.5) over a background N(-5, 1.5) (45 %): only sWeights remove it."""
    rng = np.random.default_rng(11)
    n_s, n_b = 3300, 2700
    lo, hi = 1800.0, 1930.0
    mass = np.concatenate([rng.normal(1865.0, 8.0, n_s), rng.uniform(lo, hi, n_b)])
    mass = np.clip(mass, lo, hi)
    c = _conditions(rng, n_s + n_b)
    t = rng.normal(0.0, 1.0, (n_s + n_b, 4))
    t[:, 2] = np.concatenate([rng.normal(5.0, 1.5, n_s), rng.normal(-5.0, 1.5, n_b)])
    w = _sweights(mass, n_s, n_b, 1865.0, 8.0, lo, hi)
    assert (w < 0).any()  # negative weights are kept
    pure = rng.normal(5.0, 1.5, 4000)
    c_test = _conditions(np.random.default_rng(12), 4000)
    ks = {}
    for label, weights in (("weighted", w), ("unweighted", None)):
        model = train_gan_part("rich", c, t, weights, epochs=6, seed=2)
        ks[label] = ks_distance(model.sample(c_test, np.random.default_rng(13))[:, 2], pure)
    assert ks["weighted"] < 0.15
    assert ks["unweighted"] > 0.3
    assert ks["weighted"] < ks["unweighted"] / 2


def _sample(n: int = 400) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    d = {c: rng.normal(0, 1, n) for c in REQUIRED_COLUMNS}
    d["p"] = rng.uniform(3e3, 1e5, n)
    d["has_rich"] = np.ones(n)
    d["is_muon"] = (rng.random(n) < 0.5).astype(float)
    return d


def test_training_bad_input():
    d = _sample()
    del d["RichDLLK"]
    with pytest.raises(DataError, match=r"lacks column\(s\) \['RichDLLK'\]"):
        train_species_models(d, "K")
    d = _sample()
    with pytest.raises(DataError, match="zero everywhere"):
        train_species_models(d, "K", np.zeros(400))
    with pytest.raises(DataError, match="NaN"):
        train_species_models(d, "K", np.full(400, np.nan))
    with pytest.raises(ConfigError, match="unknown PID species 'kaon'"):
        train_species_models(d, "kaon")
    d["PIDK"][3] = np.nan
    with pytest.raises(DataError, match="'PIDK' holds NaN"):
        train_species_models(d, "K")


def test_nan_loss_keeps_last_checkpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A loss turning NaN in epoch 2 stops with TrainingError; epoch 1's checkpoint stays."""
    import sim.training.gan as gan_mod

    real = gan_mod._make_step

    def make_step(*args, **kwargs):
        step = real(*args, **kwargs)
        calls = {"n": 0}

        def wrapped(*a):
            calls["n"] += 1
            d_loss, g_loss = step(*a)
            return (d_loss, g_loss) if calls["n"] <= 1 else (float("nan"), g_loss)

        return wrapped

    monkeypatch.setattr(gan_mod, "_make_step", make_step)
    rng = np.random.default_rng(0)
    c = _conditions(rng, 600)  # one batch of 512 per epoch
    with pytest.raises(TrainingError, match="diverged in epoch 2") as info:
        train_gan_part("rich", c, rng.normal(0, 1, (600, 4)), epochs=3, checkpoint_dir=tmp_path / "ckpt")
    assert "\n" not in str(info.value) and "kept" in str(info.value)
    latest = json.loads((tmp_path / "ckpt" / "latest.json").read_text())
    assert latest["epoch"] == 1
    assert (tmp_path / "ckpt" / latest["dir"] / "generator.weights.h5").is_file()


def test_compiled_models_give_the_same_output(models):
    rng = np.random.default_rng(2)
    n = 600
    species = np.array(["mu", "pi", "K", "p"] * (n // 4), dtype=object)
    args = (species, rng.uniform(3e3, 1e5, n), rng.uniform(2.1, 4.7, n), rng.uniform(50, 300, n))
    eager = models.generate(*args, np.random.default_rng(9))
    compiled = models.compiled().generate(*args, np.random.default_rng(9))
    for c in PID_COLUMNS:
        np.testing.assert_allclose(compiled[c], eager[c], rtol=1e-5, atol=1e-4, err_msg=c)


def test_weight_regression_setting_trains_on_regressed_sweights(tmp_path: Path):
    """``"weight_regression": True`` in a part's settings: the GAN trains on regressed sWeights
    (sim.training.sweights, recorded in the provenance); the raw-weight part records nothing."""
    d = _sample(1200)
    w = np.random.default_rng(3).normal(1.0, 0.5, 1200)
    models, _ = train_species_models(d, "K", w, parts=("rich", "global"), epochs=1,
                                     gan_settings={"rich": {"weight_regression": True}})
    assert "sWeights regressed" in models.rich.provenance["weights"]
    assert "weights" not in models.global_.provenance
