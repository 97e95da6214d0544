"""`mambah run --dataset --resume` onto a dataset with a damaged batch directory: refused, nothing counted done."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from mambah import BatchRecord, EventStore
from mambah.dataset import create_dataset, write_dataset_batch
from mambah.errors import StoreError
from sim.core.distributed import _open_dataset_output
from sim.core.pipeline import Pipeline, RunConfig, batch_seed
from sim.core.runner import _run_record
from sim.generation.generator import Generator


def _pipeline() -> Pipeline:
    return Pipeline((Generator(decay="B+ -> K+ pi+ pi-"),), RunConfig(events=20, batch_size=10, seed=3))


def _dataset(root: Path, pipeline: Pipeline) -> Path:
    create_dataset(root, {"pipeline": pipeline.to_toml(), "run": _run_record(pipeline)})
    for b in (0, 1):
        rec = BatchRecord(b, 10, batch_seed(3, b))
        with EventStore.memory() as staging:
            staging.write_batch(rec, {"events": pa.table({
                "batch": np.full(10, b, np.int32), "event": np.arange(10, dtype=np.int32),
                "pv_x": np.zeros(10), "pv_y": np.zeros(10), "pv_z": np.zeros(10), "pv_t": np.zeros(10),
            })})
            write_dataset_batch(root, rec, staging.connection)
    return root


def test_resume_refuses_a_batch_directory_without_its_files(tmp_path: Path) -> None:
    pl = _pipeline()
    root = _dataset(tmp_path / "ds", pl)
    assert _open_dataset_output(pl, root, resume=True, overwrite=False) == {0, 1}
    (root / "batch=1" / "protoparticles.parquet").unlink()  # before: batch 1 counted done, its tracks never written
    with pytest.raises(StoreError, match=r"cannot resume .*batch 1 lacks protoparticles.parquet in 'batch=1'.*mambah check"):
        _open_dataset_output(pl, root, resume=True, overwrite=False)
