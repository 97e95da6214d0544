"""``mambah train selection``: the full chain on a small sample, the sidecars it writes, bad input (exit 2)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mambah.cli import main
from sim.training.recipes.selection import LONG_AND_KAON_PID

CUT = "K_PIDK > 5 AND K_TRACK_Type = 3 AND p_TRACK_Type = 3 AND pi_TRACK_Type = 3 AND mu_TRACK_Type = 3"


def _selection(path: Path) -> dict:
    return json.loads(path.with_suffix(".json").read_text())["provenance"]


def test_sql_on_a_simulated_sample_writes_model_weights_and_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from sim.core.pipeline import Pipeline
    from sim.defaults import default_pipeline
    from sim.generation.preselect import pipeline_decay, pipeline_digest, threshold_for

    out = tmp_path / "models" / "sel.keras"
    argv = ["train", "selection", "--sql", LONG_AND_KAON_PID, "--events", "3000", "--batch-size", "1500", "--seed", "4",
            "--epochs", "3", "--weights-retention", "0.95", "--weights-epochs", "8", "-o", str(out), "--report", str(tmp_path / "report")]
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "held-out AUC" in text and "reweighted: sum of weights" in text
    prov = _selection(out)
    rec = prov["selection"]
    job = default_pipeline()
    assert rec["decay"] == pipeline_decay(job) and rec["pipeline"] == pipeline_digest(job)
    assert rec["sql"] == " ".join(LONG_AND_KAON_PID.split()) and prov["sample"] == {"events": 3000, "seed": 4}
    assert rec["n_train"] + rec["n_validation"] == 3000 and rec["n_validation"] == 600
    assert [r["retention"] for r in rec["curve"]] == [0.9, 0.95, 0.97, 0.98, 0.99, 0.995, 0.999]
    assert all(r["achieved"] >= r["retention"] for r in rec["curve"])
    tpr = [r["tpr"] for r in rec["roc"]]
    assert tpr == sorted(tpr, reverse=True) and tpr[0] == 1.0  # thresholds ascend: TPR falls from 1
    assert rec["auc"] > 0.6  # 3 epochs on 2400 events; the shipped model reaches ~0.95
    assert rec["weights_model"] == "sel_weights.keras"
    weights = _selection(out.with_name("sel_weights.keras"))["selection_weights"]
    assert weights["threshold"] == threshold_for(rec["curve"], 0.95) and weights["retention"] == 0.95
    assert weights["decay"] == rec["decay"] and weights["n_daughters"] == 4  # p, K, pi, mu
    bias = rec["bias"]
    assert bias["n_kept"] < bias["n_pass"] and set(bias["ks_weighted"]) == {"head_pt", "head_eta", "daughter_p"}
    assert weights["validation"] == bias
    for name in ("bias_head_pt.png", "bias_head_eta.png", "bias_daughter_p.png"):
        assert (tmp_path / "report" / name).stat().st_size > 10_000, name
    assert json.loads((tmp_path / "report" / "bias.json").read_text()) == bias
    # the pair runs: mambah run --preselect MODEL --retention 0.95 --preselect-weights
    cfg = tmp_path / "job.toml"
    assert main(["run", "--preselect", str(out), "--retention", "0.95", "--preselect-weights", "--save-config", str(cfg)]) == 0
    pre = Pipeline.load(cfg).passes[1]
    assert pre.weights == str(out.with_name("sel_weights.keras").resolve())  # type: ignore[attr-defined]
    # an existing model is not replaced without --overwrite
    assert main(argv) == 2
    assert "--overwrite" in capsys.readouterr().err


def test_cut_on_an_existing_store_and_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = tmp_path / "sample.duckdb"
    assert main(["run", "--events", "2000", "--batch-size", "1000", "--seed", "5", "-o", str(store), "--no-progress"]) == 0
    capsys.readouterr()
    out = tmp_path / "cut.keras"
    assert main(["train", "selection", "--cut", CUT, "--store", str(store), "--epochs", "2", "--no-weights",
                 "--particles", "signal", "-o", str(out)]) == 0
    rec = _selection(out)["selection"]
    assert rec["cut"] == CUT and "sql" not in rec and "weights_model" not in rec and rec["particles"] == "signal"
    assert 0.15 < rec["pass_fraction"] < 0.35  # the cut's Ficino columns = the known-answer selection (~24 %)
    assert not out.with_name("cut_weights.keras").exists()
    capsys.readouterr()

    def error(*argv: str) -> str:
        assert main(["train", "selection", *argv, "-o", str(tmp_path / "bad.keras")]) == 2
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1, lines
        assert not (tmp_path / "bad.keras").exists()
        return lines[0]

    assert "K_PIDQ" in error("--cut", "K_PIDQ > 5", "--store", str(store))  # unknown cut variable
    assert "passes 0 of 2000" in error("--sql", "n_tracks < 0", "--store", str(store))  # empty labels
    assert "passes 2000 of 2000" in error("--sql", "true", "--store", str(store))  # one class only
    assert "--events" in error("--sql", "true", "--store", str(store), "--events", "10")
    assert "does not exist" in error("--sql", "true", "--store", str(tmp_path / "none.duckdb"))
    assert "batch, event" in error("--sql", "SELECT batch FROM events", "--store", str(store))
    assert "--weights-retention" in error("--sql", "true", "--store", str(store), "--weights-retention", "1.5")
    pre = tmp_path / "preselected.duckdb"
    shipped = str(Path(__file__).resolve().parents[3] / "sim" / "models" / "selection.keras")
    assert main(["run", "--events", "500", "--batch-size", "500", "--preselect", shipped, "-o", str(pre), "--no-progress"]) == 0
    capsys.readouterr()
    assert "labels need every event simulated" in error("--sql", LONG_AND_KAON_PID, "--store", str(pre))
