"""Output and model paths that are directories: named as such in one line (was 'exists; pass --overwrite', then
'is a directory'; a model directory was 'does not exist'); mambah check names a non-DuckDB file as info does."""

from __future__ import annotations

from pathlib import Path

import pytest

from mambah.check import check_store
from mambah.errors import ModelError, StoreExistsError
from sim.core.io import load_model
from sim.core.runner import check_output


@pytest.mark.parametrize(("resume", "overwrite"), [(False, False), (False, True), (True, False)])
def test_output_directory(tmp_path: Path, resume: bool, overwrite: bool) -> None:
    out = tmp_path / "out.duckdb"
    out.mkdir()
    with pytest.raises(StoreExistsError, match=r"is a directory that holds no store .* choose another output"):
        check_output(out, resume=resume, overwrite=overwrite)
    assert out.is_dir() and not any(out.iterdir())


def test_model_directory(tmp_path: Path) -> None:
    (tmp_path / "m.keras").mkdir()
    with pytest.raises(ModelError, match=r"m.keras is a directory; give the .keras file"):
        load_model(tmp_path / "m.keras")


def test_check_names_a_file_that_is_no_duckdb_store(tmp_path: Path) -> None:
    path = tmp_path / "s.duckdb"
    path.write_bytes(b"hello, not a database" * 300)
    (line,) = check_store(path).problems
    assert line.startswith(f"'{path}' is not a readable DuckDB store: "), line  # was "cannot read or write store"
