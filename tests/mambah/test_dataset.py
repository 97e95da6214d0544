"""``mambah merge`` of a damaged dataset store: refused in one line before any output exists."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from mambah import EventStore
from mambah.cli import main


@pytest.fixture
def dataset(make_dataset: Callable[[int], Path]) -> Path:
    return make_dataset(100)


def test_merge_of_a_sound_dataset(dataset: Path, tmp_path: Path) -> None:
    out = tmp_path / "m.duckdb"
    assert main(["merge", str(dataset), str(out)]) == 0
    with EventStore.open(out, read_only=True) as s:
        assert s.batches() == [0, 1] and s.count("events") == 200


def test_merge_refuses_a_batch_whose_table_file_is_missing(dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], one_line_error: Callable[[], str]) -> None:
    # before: "2 batch(es), 200 events merged" into a store that lacked batch 1's events (mambah check then failed it)
    (dataset / "batch=1" / "events.parquet").unlink()
    out = tmp_path / "m.duckdb"
    assert main(["merge", str(dataset), str(out)]) == 2
    err = one_line_error()
    assert err.startswith(f"mambah: error: cannot merge '{dataset}': dataset '{dataset}': batch 1 lacks events.parquet in 'batch=1'")
    assert err.endswith(f"see 'mambah check {dataset}'"), err
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["ds"]


def test_merge_onto_an_existing_output_names_the_option_merge_has(dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], one_line_error: Callable[[], str]) -> None:
    out = tmp_path / "m.duckdb"
    out.write_bytes(b"keep")
    assert main(["merge", str(dataset), str(out)]) == 2
    assert one_line_error() == f"mambah: error: output '{out}' exists; pass overwrite=True (--overwrite) to replace it"  # was: or --resume
    assert out.read_bytes() == b"keep"
    (dataset / "batch=0" / "mc_particles.parquet").write_bytes(b"garbage")
    assert main(["merge", str(dataset), str(tmp_path / "n.duckdb")]) == 2
    assert f"cannot merge '{dataset}': dataset '{dataset}': batch 0's 'mc_particles.parquet' is not a readable Parquet file" in one_line_error()
    assert not (tmp_path / "n.duckdb").exists()
