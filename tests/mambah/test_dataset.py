"""``mambah merge`` of a damaged dataset store: refused in one line before any output exists."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from mambah import BatchRecord, EventStore
from mambah.cli import main
from mambah.dataset import create_dataset, write_dataset_batch


def _events(n: int, batch: int) -> dict[str, pa.Table]:
    rng = np.random.default_rng(batch)
    return {"events": pa.table({
        "batch": np.full(n, batch, np.int32), "event": np.arange(n, dtype=np.int32),
        "pv_x": rng.normal(size=n), "pv_y": rng.normal(size=n), "pv_z": rng.normal(size=n), "pv_t": rng.normal(size=n),
    })}


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    root = create_dataset(tmp_path / "ds", {"run": json.dumps({"events": 200, "batch_size": 100, "seed": 1})})
    for b in (0, 1):
        rec = BatchRecord(b, 100, 10 + b)
        with EventStore.memory() as staging:
            staging.write_batch(rec, _events(100, b))
            write_dataset_batch(root, rec, staging.connection)
    return root


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
