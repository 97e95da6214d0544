"""What the README states is what the code does: its Python pipeline example and the shipped models' size."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def _python_block(containing: str) -> str:
    blocks = [b for b in re.findall(r"```python\n(.*?)```", README, flags=re.DOTALL) if containing in b]
    assert len(blocks) == 1, f"expected one README python block with {containing!r}, found {len(blocks)}"
    return blocks[0]


def test_pipeline_example_keeps_the_detector_passes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    """The README's Python pipeline example, run with 300 events, changes the decay and keeps every detector pass."""
    code = _python_block("default_pipeline")
    small = code.replace("events=1_000_000, batch_size=50_000", "events=300, batch_size=150")
    assert small != code
    monkeypatch.chdir(tmp_path)
    exec(compile(small, "README.md", "exec"), {})
    import mambah
    import sim

    names = [p.name for p in sim.default_pipeline().passes]
    assert capsys.readouterr().out.strip() == str(names)
    with mambah.EventStore.open(tmp_path / "bjpsik.duckdb", read_only=True) as store:
        assert store.n_events() == 300
        assert store.query("SELECT count(*) AS n FROM mc_particles WHERE pid = 521").column("n")[0].as_py() == 300
        assert store.count("protoparticles") > 300  # the detector passes ran (tracks of K+ mu+ mu- and the rest)
        assert store.query("SELECT count(*) AS n FROM protoparticles WHERE PIDK IS NOT NULL").column("n")[0].as_py() > 0


def test_stated_model_size_is_measured() -> None:
    """'≈ X MB' of sim/models in the README within 1 % of the files' total size (du -sb)."""
    match = re.search(r"models shipped in `sim/models/` \(≈ ([0-9.]+) MB", README)
    assert match, "README no longer states the size of sim/models"
    stated = float(match.group(1)) * 1e6
    actual = sum(f.stat().st_size for f in (ROOT / "sim" / "models").rglob("*") if f.is_file())
    assert stated == pytest.approx(actual, rel=0.01), f"README says {stated:.0f} bytes, sim/models holds {actual}"


def test_training_files_snippet_makes_what_train_needs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The README's snippet making sample.parquet and kaons.parquet (smaller) gives every column `mambah train` needs."""
    import pyarrow.parquet as pq

    from sim.core.registry import trainers

    code = _python_block("make_calibration_sample")
    small = code.replace('"sample.parquet", 20_000', '"sample.parquet", 600').replace('"K", 20_000, 5_000', '"K", 1_500, 400')
    assert small.count("600") == 1 and "1_500, 400" in small
    monkeypatch.chdir(tmp_path)
    exec(compile(small, "README.md", "exec"), {})
    sample = set(pq.read_schema(tmp_path / "sample.parquet").names)
    for kind in ("acceptance", "efficiency", "resolution", "occupancy"):
        assert set(trainers()[kind].columns) <= sample, (kind, set(trainers()[kind].columns) - sample)
    kaons = set(pq.read_schema(tmp_path / "kaons.parquet").names)
    assert set(trainers()["pid"].columns) | {"sweight"} <= kaons
    # the commands that follow the snippet use these two files
    assert "--data sample.parquet" in README and "--data kaons.parquet" in README
