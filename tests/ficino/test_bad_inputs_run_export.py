"""`mambah run --export` options: none ignored, and the ntuple never replaces the store it streams from."""

from __future__ import annotations

from pathlib import Path

import pytest

from mambah.cli import main


@pytest.mark.parametrize(
    ("argv", "match"),
    [
        # before: exit 0, the store replaced by a Parquet directory of the ntuple
        (["--export", "./s.duckdb", "--export-format", "parquet"], "--export ./s.duckdb is the store -o s.duckdb itself"),
        # before: ignored without --export (exit 0)
        (["--export-cut", "Lc_M > 0"], "--export-cut set(s) the streamed ntuple of --export OUT, which is not given"),
        (["--export-decay", "B+ -> K+ pi+ pi-", "--export-format", "csv"], "--export-decay, --export-format set(s)"),
        (["--export", ""], "empty --export path ''"),
    ],
)
def test_refused_before_any_store(
    argv: list[str], match: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["run", "--events", "20", "-o", "s.duckdb", "--no-progress", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err and match in err, err
    assert list(tmp_path.iterdir()) == []
