"""Bad input to the store's own commands (info, query, check, merge): one line, exit 2, nothing ignored."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from mambah import BatchRecord, EventStore
from mambah.cli import main


def _store(path: Path) -> Path:
    n = 20
    with EventStore.create(path) as s:
        s.write_batch(BatchRecord(0, n, 7), {"events": pa.table({
            "batch": np.zeros(n, np.int32), "event": np.arange(n, dtype=np.int32),
            "pv_x": np.zeros(n), "pv_y": np.zeros(n), "pv_z": np.zeros(n), "pv_t": np.zeros(n),
        })})
    return path


@pytest.fixture
def store(tmp_path: Path) -> Path:
    return _store(tmp_path / "s.duckdb")


def test_query_output_without_format_takes_the_suffix(store: Path, tmp_path: Path) -> None:
    # was: -o ignored (the table printed, nothing written, exit 0)
    out = tmp_path / "r.csv"
    assert main(["query", str(store), "SELECT count(*) AS n FROM events", "-o", str(out)]) == 0
    assert out.read_text().splitlines() == ['"n"', "20"]
    pq = tmp_path / "r.parquet"
    assert main(["query", str(store), "SELECT event FROM events", "-o", str(pq)]) == 0
    import pyarrow.parquet as pap

    assert pap.read_table(pq).num_rows == 20


@pytest.mark.parametrize(
    ("extra", "match"),
    [
        (["-o", "r.txt"], "cannot tell the format of -o 'r.txt'"),
        (["--format", "table", "-o", "r.csv"], "--format table prints to the terminal"),
        (["--overwrite"], "--overwrite replaces an -o/--output file"),
        (["-o", ""], "empty -o/--output path"),
    ],
)
def test_query_output_options_that_would_be_ignored(
    store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], one_line_error: Callable[[], str], extra: list[str], match: str
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["query", str(store), "SELECT 1", *extra]) == 2
    assert match in one_line_error()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.duckdb"]


@pytest.mark.parametrize("command", [["info"], ["check"], ["query", "", "SELECT 1"], ["merge", "", "out.duckdb"]])
def test_an_empty_store_path_is_named(
    command: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], one_line_error: Callable[[], str]
) -> None:
    # was: "'.' is a directory but not a Mambah dataset" (the empty path read as the current directory)
    monkeypatch.chdir(tmp_path)
    argv = [command[0], "", *command[2:]] if len(command) > 1 else [command[0], ""]
    assert main(argv) == 2
    assert "empty" in one_line_error()


def test_query_output_onto_the_store_itself(store: Path, capsys: pytest.CaptureFixture[str], one_line_error: Callable[[], str]) -> None:
    # before: "wrote 1 rows to s.duckdb", the store replaced by a CSV file (exit 0)
    before = store.read_bytes()
    assert main(["query", str(store), "SELECT 1", "-o", str(store), "--format", "csv", "--overwrite"]) == 2
    assert "is the store being queried; choose another output" in one_line_error()
    assert store.read_bytes() == before
