"""Tests of sim/validate.py and the ``mambah train`` / ``mambah validate`` commands.

The shipped models are checked on a fresh held-out reference sample (seed 2024, never
used in training) at the thresholds of :data:`sim.validation.detector.THRESHOLDS`.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mambah.cli import main
from mambah.errors import ConfigError
from sim.reference.sample import make_reference_sample, reference_sample_arrays
from sim.validation.detector import THRESHOLDS, ValidationReport, validate


@pytest.fixture(scope="module")
def held_out() -> dict[str, np.ndarray]:
    return reference_sample_arrays(20_000, seed=2024)


def test_shipped_classifiers_pass(held_out: dict[str, np.ndarray], tmp_path: Path) -> None:
    report = validate(("acceptance", "efficiency"), data=held_out, seed=2024, report_dir=tmp_path)
    for name in ("acceptance", "tracking", "long"):
        assert report.max_efficiency_diff(name) < THRESHOLDS["max_efficiency_diff"], name
        for eff in report.efficiencies[name].values():
            assert np.all(eff.ref_err[np.isfinite(eff.ref_err)] >= 0)
    assert report.two_sample["acceptance+efficiency"]["auc"] < THRESHOLDS["max_auc"]
    assert report.failed() == [], [c.line for c in report.failed()]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert set(summary["max_efficiency_diff"]) == {"acceptance", "tracking", "long"}
    assert (tmp_path / "eff_tracking_p.png").is_file() and (tmp_path / "eff_long_n_tracks.png").is_file()


def test_shipped_generators_pass(held_out: dict[str, np.ndarray]) -> None:
    report = validate(("resolution", "occupancy"), data=held_out, seed=2024, max_tracks=15_000)
    for name in ("dp_rel", "dtx_p", "dty_p", "dx_pt", "dy_pt", "track_chi2ndof", "ghost_prob", "ip", "ip_chi2",
                 "n_pv", "n_tracks"):
        assert report.ks[name] < THRESHOLDS["max_ks"], name
    assert report.two_sample["occupancy"]["auc"] < THRESHOLDS["max_auc"]
    # the joint (conditions, residuals) test is stricter: see docs/detector.md
    assert report.two_sample["resolution"]["auc"] < THRESHOLDS["max_auc_resolution"]
    assert report.failed() == [], [c.line for c in report.failed()]  # what `mambah validate --strict` requires


def test_unknown_detector_is_refused() -> None:
    with pytest.raises(ConfigError, match="tracking"):
        validate("tracking")


def test_cli_train_and_validate(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = make_reference_sample(tmp_path / "ref.parquet", 1500, seed=11)
    out = tmp_path / "eff.keras"
    assert main(["train", "efficiency", "--data", str(data), "--epochs", "2", "--seed", "3", "-o", str(out),
                 "--no-progress"]) == 0
    assert out.is_file() and out.with_suffix(".json").is_file()
    meta = json.loads(out.with_suffix(".json").read_text())
    assert meta["provenance"]["seed"] == 3 and meta["inputs"][-1] == "in_acceptance"
    # missing column, absent weight, missing model: one line, exit 2
    assert main(["train", "acceptance", "--data", str(data), "--inputs", "eta", "bogus_col"]) == 2
    assert "bogus_col" in capsys.readouterr().err
    assert main(["train", "occupancy", "--data", str(data), "--weight", "nope"]) == 2
    assert "nope" in capsys.readouterr().err
    assert main(["train", "resolution", "--data", str(tmp_path / "missing.parquet")]) == 2
    err = capsys.readouterr().err
    assert "missing.parquet" in err and len(err.strip().splitlines()) == 1
    assert main(["validate", "occupancy", "--events", "2000", "--report", str(tmp_path / "rep")]) == 0
    assert "two-sample test occupancy" in capsys.readouterr().out
    assert (tmp_path / "rep" / "occ_n_tracks.png").is_file()


def _report(**two_sample_auc: float) -> ValidationReport:
    report = ValidationReport(20_000)
    report.two_sample = {name.replace("_", " ").replace("acceptance efficiency", "acceptance+efficiency"): {"auc": auc, "ks": 0.01}
                         for name, auc in two_sample_auc.items()}
    return report


def test_each_two_sample_test_has_its_own_two_sided_threshold() -> None:
    # the joint resolution test is documented at AUC < 0.75, the others at 0.60 (docs/detector.md)
    assert _report(resolution=0.70, resolution_residuals=0.70).failed() == []
    assert [c.name for c in _report(occupancy=0.70, acceptance_efficiency=0.55).failed()] == ["two-sample test occupancy"]
    # an AUC far below 0.5 means the samples differ just as much
    failed = _report(acceptance_efficiency=0.2725).failed()
    assert [c.name for c in failed] == ["two-sample test acceptance+efficiency"]
    assert "|AUC - 0.5| = 0.2275" in failed[0].line and failed[0].line.endswith("FAIL")


def test_too_few_events_fail_instead_of_passing_untested() -> None:
    """1000 events fill no bin with 2000 particles: the efficiency checks fail, naming the events needed."""
    report = validate("efficiency", events=1000, seed=2024)
    eff = {c.name: c for c in report.checks() if c.name in ("tracking efficiency", "long efficiency")}
    assert len(eff) == 2
    for check in eff.values():
        assert not check.passed and np.isnan(check.value)
        need = report.events_needed(check.name.split()[0])
        assert 2000 < need < 50_000
        assert f"not enough events: need >= {need:,}" in check.line
    assert "0.0000" not in "\n".join(report.summary_lines())


def test_cli_validate_strict_fails_with_too_few_events(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", "efficiency", "--events", "1000", "--strict"]) == 1
    out = capsys.readouterr().out
    assert "not enough events: need >= " in out and "PASS" not in out
    assert out.strip().splitlines()[-1].startswith("outside the thresholds: tracking efficiency, long efficiency")
