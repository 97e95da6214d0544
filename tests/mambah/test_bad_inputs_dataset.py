"""A damaged dataset store (mambah run --dataset): every reader refuses it in one line, mambah check names it.

Before: a batch directory lacking a table file other than ``events`` (its rows silently
missing), lacking or with a garbage ``batch.json``, holding another table's file (the views
fill the missing columns with NULL), or a ``batch=<not a number>`` directory passed
``mambah info`` and ``mambah check`` (exit 0) and ``mambah merge`` wrote a store without
those rows; the last failed ``check`` with three lines of DuckDB cast errors.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from mambah import EventStore
from mambah.check import check_store
from mambah.cli import main
from mambah.dataset import dataset_problems
from mambah.errors import StoreError


@pytest.fixture
def dataset(make_dataset: Callable[[int], Path]) -> Path:
    return make_dataset(10)


def _unlink(name: str) -> Callable[[Path], None]:
    return lambda root: (root / "batch=1" / name).unlink()


def _write(rel: str, text: str) -> Callable[[Path], None]:
    return lambda root: (root / rel).write_text(text)


def _foreign_file(root: Path) -> None:  # another table's file under mc_particles' name
    shutil.copy(root / "batch=0" / "events.parquet", root / "batch=0" / "mc_particles.parquet")


def _odd_dir(root: Path) -> None:  # what a hand copy or another tool could leave
    (root / "batch=2.bak").mkdir()
    shutil.copy(root / "batch=0" / "events.parquet", root / "batch=2.bak" / "events.parquet")


DAMAGE = [
    ("missing protoparticles", _unlink("protoparticles.parquet"), "batch 1 lacks protoparticles.parquet in 'batch=1'"),
    ("missing record", _unlink("batch.json"), "batch 1 lacks batch.json in 'batch=1'"),
    ("garbage record", _write("batch=1/batch.json", "garbage"), "'batch=1/batch.json' is not the record of batch 1"),
    ("record of another batch", _write("batch=1/batch.json", json.dumps({"batch": 0, "n_events": 10, "seed": 10})),
     "'batch=1/batch.json' is not the record of batch 1"),
    ("odd directory", _odd_dir, "'batch=2.bak' is not a batch directory (batch=<number>)"),
]


@pytest.mark.parametrize(("what", "damage", "match"), DAMAGE, ids=[d[0] for d in DAMAGE])
def test_every_reader_refuses_a_damaged_batch_directory(
    dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], what: str, damage: Callable[[Path], None], match: str
) -> None:
    damage(dataset)
    assert any(match in p for p in dataset_problems(dataset)), what
    with pytest.raises(StoreError, match="see 'mambah check"):
        EventStore.open(dataset, read_only=True)
    for argv in (["info", str(dataset)], ["check", str(dataset)], ["merge", str(dataset), str(tmp_path / "m.duckdb")]):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "Traceback" not in err and match in err, (argv, err)
    assert not (tmp_path / "m.duckdb").exists()


def test_check_reads_the_parquet_footers(dataset: Path) -> None:
    _foreign_file(dataset)
    problems = check_store(dataset).problems
    assert problems and "batch 0's 'mc_particles.parquet' lacks column(s) index, pid" in problems[0], problems
    (dataset / "batch=1" / "events.parquet").write_bytes(b"PAR1 not really")
    assert any("batch 1's 'events.parquet' is not a readable Parquet file" in p for p in check_store(dataset).problems)


def test_a_sound_dataset_has_no_problems(dataset: Path, tmp_path: Path) -> None:
    (dataset / "batch=0" / "notes.txt").write_text("a stray file is not read")
    assert dataset_problems(dataset, schemas=True) == [] and check_store(dataset).ok
    assert main(["merge", str(dataset), str(tmp_path / "m.duckdb")]) == 0
