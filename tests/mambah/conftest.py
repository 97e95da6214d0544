"""Fixtures of the store's tests: a small dataset store (``--dataset`` layout) made per test."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from mambah import BatchRecord, EventStore
from mambah.dataset import create_dataset, write_dataset_batch


def _events(n: int, batch: int) -> dict[str, pa.Table]:
    rng = np.random.default_rng(batch)
    return {"events": pa.table({
        "batch": np.full(n, batch, np.int32), "event": np.arange(n, dtype=np.int32),
        "pv_x": rng.normal(size=n), "pv_y": rng.normal(size=n), "pv_z": rng.normal(size=n), "pv_t": rng.normal(size=n),
    })}


@pytest.fixture
def make_dataset(tmp_path: Path) -> Callable[[int], Path]:
    """``make_dataset(n)``: the dataset store ``tmp_path / "ds"`` of two batches of ``n`` events (the
    ``events`` table only, batch seeds 10 and 11), as a distributed run writes it."""

    def make(n: int) -> Path:
        root = create_dataset(tmp_path / "ds", {"run": json.dumps({"events": 2 * n, "batch_size": n, "seed": 1})})
        for b in (0, 1):
            rec = BatchRecord(b, n, 10 + b)
            with EventStore.memory() as staging:
                staging.write_batch(rec, _events(n, b))
                write_dataset_batch(root, rec, staging.connection)
        return root

    return make
