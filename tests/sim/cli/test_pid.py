"""``mambah train pid`` / ``mambah validate pid``: a tiny training run and one-line exit-2 errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mambah.cli import main
from sim.pid.models import DEFAULT_MODEL_DIR, MODEL_PARTS, REQUIRED_COLUMNS, load_species_models


def _frame(n: int = 1200, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    d = {c: rng.normal(0, 1, n) for c in REQUIRED_COLUMNS}
    d["p"] = rng.uniform(3e3, 1e5, n)
    d["eta"] = rng.uniform(2.0, 4.8, n)
    d["n_tracks"] = rng.integers(20, 400, n).astype(float)
    d["has_rich"] = np.ones(n, bool)
    d["is_muon"] = rng.random(n) < 0.3
    d["MuonMuLL"] = np.where(d["is_muon"], rng.normal(-1, 1, n), -1000.0)
    d["MuonBkgLL"] = np.where(d["is_muon"], rng.normal(-3, 1, n), -1000.0)
    d["sweight"] = rng.normal(1.0, 0.5, n)
    return pd.DataFrame(d)


def _error(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("mambah: error: ") and "\n" not in err, err
    return err


def test_tiny_train_and_resume(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    data = tmp_path / "calib.parquet"
    _frame().to_parquet(data)
    out, ckpt = tmp_path / "models", tmp_path / "ckpt"

    def argv(epochs: int, *extra: str) -> list[str]:
        return ["train", "pid", "--species", "K", "--data", str(data), "--epochs", str(epochs), "--checkpoint",
                str(ckpt), "--output", str(out), "--no-progress", "--algorithm", "bce", *extra]

    assert main(argv(1, "--lr-schedule", "cosine", "--ema", "0.9")) == 0
    assert "K PID models trained" in capsys.readouterr().out
    assert sorted(f.name for f in out.iterdir()) == sorted(f"K_{p}{s}" for p in MODEL_PARTS for s in (".keras", ".json"))
    models = load_species_models("K", out)
    assert models.rich.provenance["algorithm"] == "bce" and models.rich.provenance["weighted"] is True
    assert models.global_.provenance["lr_schedule"] == "cosine" and models.global_.provenance["ema"] == 0.9
    assert json.loads((ckpt / "K_rich" / "latest.json").read_text())["epoch"] == 1
    # Without --resume an existing checkpoint is refused (resuming itself: tests/sim/training).
    assert "resume" in _error(capsys, argv(2))


def test_bad_input_one_line_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    base = ["train", "pid", "--species", "K", "--epochs", "1", "--no-progress", "--output", str(tmp_path / "o")]
    missing = tmp_path / "missing_col.parquet"
    _frame().drop(columns=["RichDLLK"]).to_parquet(missing)
    assert "RichDLLK" in _error(capsys, [*base, "--data", str(missing)])
    zero = tmp_path / "zero.parquet"
    _frame().assign(sweight=0.0).to_parquet(zero)
    assert "zero everywhere" in _error(capsys, [*base, "--data", str(zero)])
    nan = tmp_path / "nan.parquet"
    _frame().assign(sweight=np.nan).to_parquet(nan)
    assert "sweight" in _error(capsys, [*base, "--data", str(nan)])
    assert "unknown PID species 'kaon'" in _error(capsys, [*base[:3], "kaon", *base[4:], "--data", str(zero)])
    assert "unknown GAN algorithm" in _error(capsys, [*base, "--data", str(zero), "--algorithm", "vae"])
    assert "does not exist" in _error(capsys, [*base, "--data", str(tmp_path / "nope.parquet")])
    ok = tmp_path / "ok.parquet"
    _frame().to_parquet(ok)
    assert "unknown learning-rate schedule 'linear'" in _error(capsys, [*base, "--data", str(ok), "--lr-schedule", "linear"])
    assert "ema=2.0 must be a momentum" in _error(capsys, [*base, "--data", str(ok), "--ema", "2"])
    assert not (tmp_path / "o").exists()


def test_validate_with_mismatched_sidecar(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    for f in DEFAULT_MODEL_DIR.iterdir():
        if f.suffix in (".keras", ".json"):
            shutil.copy(f, tmp_path / f.name)
    side = tmp_path / "pi_muonll.json"
    meta = json.loads(side.read_text())
    meta["n_noise"] = meta["n_noise"] + 3
    side.write_text(json.dumps(meta))
    err = _error(capsys, ["validate", "pid", "--models", str(tmp_path), "--report", str(tmp_path / "r")])
    assert "pi_muonll.keras" in err
