"""`mambah train`: an existing model is never replaced without --overwrite (the shipped ones were), no option ignored."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mambah.cli import main


@pytest.fixture
def occupancy_data(tmp_path: Path) -> Path:
    rng = np.random.default_rng(1)
    path = tmp_path / "occ.parquet"
    pd.DataFrame({"n_pv": rng.integers(1, 4, 400).astype(float), "n_tracks": rng.normal(100, 20, 400),
                  "event": np.arange(400)}).to_parquet(path)
    return path


def test_existing_model_needs_overwrite(occupancy_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], one_line_error: Callable[[], str]) -> None:
    # before: trained for minutes, then replaced m.keras and its sidecar without a word (sim/models/*.keras too)
    out = tmp_path / "m.keras"
    out.write_bytes(b"keep")
    argv = ["train", "occupancy", "--data", str(occupancy_data), "-o", str(out), "--epochs", "1", "--no-progress"]
    assert main(argv) == 2
    assert f"model {out} exists; pass --overwrite to replace it" in one_line_error()
    assert out.read_bytes() == b"keep"
    assert main([*argv, "--overwrite"]) == 0
    assert out.read_bytes() != b"keep" and out.with_suffix(".json").is_file()


def test_pid_models_in_the_output_need_overwrite(tmp_path: Path, capsys: pytest.CaptureFixture[str], one_line_error: Callable[[], str]) -> None:
    out = tmp_path / "pid"
    out.mkdir()
    (out / "K_rich.keras").write_bytes(b"keep")
    assert main(["train", "pid", "--species", "K", "--data", str(tmp_path / "x.parquet"), "-o", str(out), "--no-progress"]) == 2
    assert f"{out} already holds K_rich.keras; pass --overwrite" in one_line_error()
    assert main(["train", "pid", "--species", "K", "--data", "x.parquet", "--learning-rate", "nan"]) == 2
    assert "--learning-rate must be a finite number > 0, got nan" in one_line_error()


def test_tree_of_a_parquet_file(occupancy_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], one_line_error: Callable[[], str]) -> None:
    # before: --tree was ignored for a Parquet --data file
    argv = ["train", "occupancy", "--data", str(occupancy_data), "--tree", "DecayTree", "-o", str(tmp_path / "t.keras")]
    assert main([*argv, "--no-progress"]) == 2
    assert "is a Parquet file; --tree 'DecayTree' names a TTree of a ROOT file" in one_line_error()
    assert not (tmp_path / "t.keras").exists()
