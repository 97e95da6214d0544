"""`mambah run` options that would be dropped without a word: refused in one line, exit 2, no store."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from mambah.cli import main


@pytest.mark.parametrize(
    ("argv", "match"),
    [
        # --mother names a Decay block of --dec-file; without one it was ignored (exit 0)
        (["--mother", "B+"], "--mother 'B+' picks the Decay block of --dec-file"),
        (["--decay", "B+ -> K+ pi+ pi-", "--mother", "B+"], "--mother 'B+' picks the Decay block of --dec-file"),
        # the gun's generator options with a full-event generator: the Pythia/HepMC pass has no such field
        (["--pythia", "minbias", "--spectrum", "b"], "--spectrum set(s) the particle gun's generator; --pythia replaces it"),
        (["--pythia", "bbbar", "--decay", "[B+ -> K+ pi+ pi-]cc", "--cc-fraction", "0.2"], "--cc-fraction set(s)"),
        (["--pythia", "bbbar", "--decay-table", "DECAY_BELLE2.DEC"], "--decay-table set(s)"),
        (["--hepmc", "x.hepmc", "--unsupported-models", "skip", "--table-unsupported-models", "error"],
         "--unsupported-models, --table-unsupported-models set(s) the particle gun's generator; --hepmc replaces it"),
        (["--hepmc", "x.hepmc", "--mother", "B+"], "--mother 'B+' picks the Decay block of --dec-file"),
        (["-o", ""], "empty -o/--output path"),
        (["--retries", "5"], "--retries re-runs failing batches on Dask workers; add --workers N"),  # was ignored
        (["--threads", "2", "--workers", "2"], "--threads is for a run in this process; with --workers/--scheduler"),
    ],
)
def test_ignored_options_are_refused(
    argv: list[str], match: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], one_line_error: Callable[[], str]
) -> None:
    monkeypatch.chdir(tmp_path)
    out = [] if "-o" in argv else ["-o", "s.duckdb"]
    assert main(["run", "--events", "20", "--no-progress", *out, *argv]) == 2
    assert match in one_line_error()
    assert list(tmp_path.iterdir()) == []


def test_save_config_does_not_replace_a_file_without_overwrite(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], one_line_error: Callable[[], str]
) -> None:
    # before: "wrote s.duckdb", a store replaced by the TOML text (exit 0)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "s.duckdb").write_bytes(b"a store")
    assert main(["run", "--save-config", "s.duckdb"]) == 2
    assert "--save-config s.duckdb: the file exists; pass --overwrite to replace it" in one_line_error()
    assert (tmp_path / "s.duckdb").read_bytes() == b"a store"
    assert main(["run", "--save-config", "s.duckdb", "--overwrite"]) == 0
    assert (tmp_path / "s.duckdb").read_text().startswith("[run]")
    assert main(["run", "--save-config", ""]) == 2
    assert "empty --save-config path" in one_line_error()


def test_full_events_do_not_drop_the_configs_generator_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], one_line_error: Callable[[], str]
) -> None:
    # before: --config job.toml (luminous_region.sigma_z = 10) --pythia saved and ran Pythia with the default 45 mm
    monkeypatch.chdir(tmp_path)
    assert main(["run", "--events", "20", "--save-config", "job.toml"]) == 0
    text = (tmp_path / "job.toml").read_text()
    assert text.count("sigma_z = 45.0") >= 1
    (tmp_path / "lr.toml").write_text(text.replace("sigma_z = 45.0", "sigma_z = 10.0", 1))
    capsys.readouterr()
    assert main(["run", "--config", "lr.toml", "--pythia", "minbias", "--save-config", "p.toml"]) == 2
    err = one_line_error()
    assert "--pythia replaces the config's generator pass 'generator', whose luminous_region it would drop" in err
    assert 'kind = "pythia" pass in the config' in err and not (tmp_path / "p.toml").exists()
    assert main(["run", "--config", "job.toml", "--pythia", "minbias", "--save-config", "p.toml"]) == 0  # defaults: fine


def test_threads_reach_the_batch_loop(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, batch_thread_names: list[str]) -> None:
    """``mambah run --threads 2`` computes batches in the run's threads (before: the count was dropped, exit 0)."""
    monkeypatch.chdir(tmp_path)
    assert main(["run", "--events", "60", "--batch-size", "20", "--no-progress", "-o", "t.duckdb", "--threads", "2"]) == 0
    assert len(batch_thread_names) == 3 and all(name.startswith("mambah-batch") for name in batch_thread_names)
