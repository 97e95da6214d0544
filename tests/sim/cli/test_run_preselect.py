"""``mambah run --preselect``: config round trip, flag errors, mismatched model (exit status 2)."""

from __future__ import annotations

from pathlib import Path

import pytest

from sim.core.pipeline import Pipeline

SHIPPED = str(Path(__file__).resolve().parents[3] / "sim" / "models" / "selection.keras")


def test_save_config_holds_the_preselect_pass(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from mambah.cli import main

    cfg = tmp_path / "job.toml"
    assert main(["run", "--preselect", SHIPPED, "--threshold", "0.1", "--save-config", str(cfg)]) == 0
    pipeline = Pipeline.load(cfg)
    pre = pipeline.passes[1]
    assert pre.kind == "preselect" and pre.threshold == 0.1 and pre.retention is None  # type: ignore[attr-defined]
    assert pre.model == SHIPPED  # type: ignore[attr-defined]
    assert main(["run", "--preselect", SHIPPED, "--save-config", str(cfg), "--overwrite"]) == 0
    assert Pipeline.load(cfg).passes[1].retention == 0.99  # type: ignore[attr-defined]  # the documented default
    assert main(["run", "--preselect", SHIPPED, "--preselect-mode", "sample", "--save-config", str(cfg), "--overwrite"]) == 0
    assert Pipeline.load(cfg).passes[1].mode == "sample"  # type: ignore[attr-defined]
    assert main(["run", "--preselect", SHIPPED, "--preselect-weights", "--save-config", str(cfg), "--overwrite"]) == 0
    assert Pipeline.load(cfg).passes[1].weights == SHIPPED.replace("selection.keras", "selection_weights.keras")  # type: ignore[attr-defined]


def test_flag_errors_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from mambah.cli import main

    out = str(tmp_path / "s.duckdb")
    assert main(["run", "--retention", "0.99", "--events", "10", "-o", out]) == 2
    assert "need --preselect" in capsys.readouterr().err
    assert main(["run", "--preselect-weights", "--events", "10", "-o", out]) == 2
    assert "need --preselect" in capsys.readouterr().err
    assert main(["run", "--preselect", SHIPPED, "--preselect-weights", "--preselect-mode", "sample", "--events", "10",
                 "-o", out]) == 2
    assert "already weights" in capsys.readouterr().err
    assert main(["run", "--preselect", SHIPPED, "--decay", "B0 -> K+ pi-", "--events", "10", "-o", out]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "trained on decay" in err[0] and "B0 -> K+ pi-" in err[0]
    assert main(["run", "--preselect", str(tmp_path / "none.keras"), "--events", "10", "-o", out]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert not Path(out).exists()
