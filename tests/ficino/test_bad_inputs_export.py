"""`mambah export` options that were ignored or ended in a traceback: one line, exit 2, no file written."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

import ficino
from mambah.cli import main
from mambah.errors import ExportError


@pytest.fixture(scope="module")
def store_file(tmp_path_factory: pytest.TempPathFactory, make_store: Callable[..., object]) -> Path:
    path = tmp_path_factory.mktemp("bad_export") / "s.duckdb"
    make_store(str(path), batches=1, n=50).close()  # type: ignore[attr-defined]
    return path


def _status(argv: list[str]) -> int:
    try:
        return main(argv)
    except SystemExit as stop:  # argparse's usage errors
        return int(stop.code or 0)


@pytest.mark.parametrize(
    ("out", "extra", "match"),
    [
        ("n.root", ["--seed", "-1"], "--seed: expected a non-negative integer"),  # was a numpy ValueError traceback
        ("n.root", ["--format", "csv"], "'n.root' is named as a root file but the format is csv; name it 'n.csv'"),
        ("n.parquet", ["--tree", "T"], "--tree names the TTree of a ROOT output"),  # was ignored
        ("n.csv", ["--tree", "T"], "--tree names the TTree of a ROOT output"),
        ("", [], "empty output path"),
        ("n.parquet", ["--compression", "LZMA"], "compression LZMA is not available for Parquet"),
        ("n.root", ["--tree", ""], "bad tree name ''"),
    ],
)
def test_refused_in_one_line(
    store_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], one_line_error: Callable[[], str],
    out: str, extra: list[str], match: str,
) -> None:
    monkeypatch.chdir(tmp_path)
    assert _status(["export", str(store_file), out, "--no-progress", *extra]) == 2
    assert match in one_line_error()
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("seed", [-1, 2**63, 1.5, True, "3"])
def test_api_seed_is_checked(store_file: Path, tmp_path: Path, seed: object) -> None:
    with pytest.raises(ExportError, match="seed of the vertex smearing must be an integer"):
        ficino.export(str(store_file), tmp_path / "n.root", seed=seed)  # type: ignore[arg-type]
    assert list(tmp_path.iterdir()) == []


def test_tree_and_matching_format_still_work(store_file: Path, tmp_path: Path) -> None:
    assert main(["export", str(store_file), str(tmp_path / "n.root"), "--tree", "T", "--format", "root", "--no-progress"]) == 0
    import uproot

    with uproot.open(tmp_path / "n.root") as f:
        assert "T" in [k.split(";")[0] for k in f]
