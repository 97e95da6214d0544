"""``mambah validate selection``: the shipped model on an independent store; a store of another decay (exit 2)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mambah.cli import main
from mambah.store import EventStore
from sim.training.recipes.selection import LONG_AND_KAON_PID

SHIPPED = str(Path(__file__).resolve().parents[3] / "sim" / "models" / "selection.keras")


def test_validate_selection_on_an_independent_store(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from sim.validation.selection import validate_selection

    store_path = tmp_path / "independent.duckdb"
    assert main(["run", "--events", "3000", "--batch-size", "1500", "--seed", "31", "-o", str(store_path),
                 "--no-progress"]) == 0
    with EventStore.open(store_path, read_only=True) as store:
        res = validate_selection(SHIPPED, store, LONG_AND_KAON_PID)
    assert res["n_events"] == 3000 and 500 < res["n_pass"] < 1000 and res["auc"] > 0.9
    row = {r["target"]: r for r in res["rows"]}[0.99]
    # ~720 passes: binomial sigma of the retention 0.004, of the sidecar's threshold ~0.002
    assert row["retention"] >= 0.975 and row["skipped"] > 0.4 and row["purity"] > 0.98
    bias = res["bias"]
    assert bias["weighted"] and abs(bias["sum_weights"] - bias["n_pass"]) < bias["n_pass"] - bias["n_kept"] + 5
    capsys.readouterr()
    report = tmp_path / "report"
    assert main(["validate", "selection", SHIPPED, "--store", str(store_path), "--sql", LONG_AND_KAON_PID,
                 "--report", str(report)]) == 0
    out = capsys.readouterr().out
    assert "AUC" in out and "reweighted: sum of weights" in out
    assert json.loads((report / "validation.json").read_text())["n_pass"] == res["n_pass"]
    assert (report / "bias_head_eta.png").stat().st_size > 10_000


def test_validate_selection_refuses_a_store_of_another_decay(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    other = tmp_path / "other.duckdb"
    assert main(["run", "--decay", "B0 -> K+ pi-", "--events", "200", "--batch-size", "200", "-o", str(other),
                 "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["validate", "selection", SHIPPED, "--store", str(other), "--sql", "true"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "trained on decay" in err[0] and "B0 -> K+ pi-" in err[0]
    assert main(["validate", "selection", SHIPPED, "--store", str(tmp_path / "none.duckdb"), "--sql", "true"]) == 2
    assert "does not exist" in capsys.readouterr().err
