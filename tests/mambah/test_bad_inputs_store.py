"""A store path that holds a SQLite database: named as such, no extension download, exit 2."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from mambah import EventStore
from mambah.check import check_store
from mambah.cli import main
from mambah.errors import StoreError


@pytest.fixture
def sqlite_file(tmp_path: Path) -> Path:
    path = tmp_path / "events.duckdb"
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE events (batch INTEGER, event INTEGER)")
    con.commit()
    con.close()
    return path


def test_sqlite_file_is_named_not_downloaded_for(sqlite_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # before: "is not a readable DuckDB store: IO Error: Failed to download extension "sqlite_scanner" at URL http://..."
    before = sqlite_file.read_bytes()
    with pytest.raises(StoreError, match="is a SQLite database, not a DuckDB store"):
        EventStore.open(sqlite_file, read_only=True)
    assert check_store(sqlite_file).problems == [
        f"'{sqlite_file}' is a SQLite database, not a DuckDB store (mambah stores are DuckDB files: mambah run -o FILE)"
    ]
    for argv in (["info", str(sqlite_file)], ["check", str(sqlite_file)], ["query", str(sqlite_file), "SELECT 1"]):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "SQLite database" in err and "download" not in err, err
    assert sqlite_file.read_bytes() == before
