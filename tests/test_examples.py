"""Every script in ``examples/`` runs, with tiny sizes (in-process via runpy, so TensorFlow loads once)."""

from __future__ import annotations

import runpy
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def run_example(name: str, *argv: str) -> int:
    """Load ``examples/<name>`` as a module (not as __main__) and call its ``main(argv)``."""
    namespace = runpy.run_path(str(EXAMPLES / name), run_name=f"example_{Path(name).stem}")
    return int(namespace["main"](list(argv)))


def test_examples_are_listed_in_readme() -> None:
    readme = (EXAMPLES / "README.md").read_text()
    for script in sorted(EXAMPLES.glob("[0-9][0-9]_*.py")):
        assert script.name in readme, f"{script.name} missing from examples/README.md"


def test_01_session(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    png = tmp_path / "mass.png"
    assert run_example("01_session.py", "--store", str(tmp_path / "s.duckdb"), "--events", "600", "--plot", str(png)) == 0
    out = capsys.readouterr().out
    assert "daughters: [4122, 13, -14]" in out
    assert "600 candidates of Lambda_b0" in out
    assert png.stat().st_size > 10_000


def test_02_production_on_workers(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("distributed")
    out_store = tmp_path / "bu.duckdb"
    assert run_example("02_production.py", "--events", "2000", "--batch-size", "1000", "--workers", "1", "-o", str(out_store)) == 0
    out = capsys.readouterr().out
    assert "2,000 events in 2 batch(es) on 1 local worker(s)" in out
    assert "J/psi K+" in out and "J/psi pi+" in out
    import mambah

    with mambah.EventStore.open(out_store, read_only=True) as s:
        assert s.batches() == [0, 1]
        n_pi = s.query("SELECT count(*) AS n FROM mc_particles WHERE pid = 211 AND mother = 0").to_pylist()[0]["n"]
    assert 30 < n_pi < 130  # 3.7 % of 2000 B+ -> J/psi pi+


def test_03_export(tmp_path: Path, generated_store, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("uproot")
    assert run_example("03_export.py", "--store", generated_store.path, "--out", str(tmp_path / "out")) == 0
    out = capsys.readouterr().out
    assert "uproot: DecayTree with 4000 entries" in out or "uproot: DecayTree with" in out
    assert "ROOT and Parquet agree" in out and ": True" in out
    assert (tmp_path / "out" / "sample.root").is_file()
    assert (tmp_path / "out" / "sample_parquet").is_dir()


def test_04_training(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "train"
    argv = ["--events", "2000", "--epochs", "1", "--validate-events", "1000", "--run-events", "500", "--out", str(out)]
    assert run_example("04_training.py", *argv) == 0
    text = capsys.readouterr().out
    assert "trained efficiency model" in text and "tracking efficiency" in text
    assert f"ran 500 events with {(out / 'my_efficiency.keras').resolve()}" in text
    assert (out / "my_job.toml").is_file() and (out / "my_efficiency.json").is_file()
