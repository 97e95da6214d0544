"""Tests of sim/training/data.py: Parquet and ROOT reading, clear errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mambah.errors import DataError
from sim.training.data import check_finite, read_columns


def _columns(n: int = 50) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {
        "p": rng.exponential(1e4, n),
        "eta": rng.uniform(2, 5, n),
        "sw": rng.normal(0.8, 0.5, n),
        "flag": rng.integers(0, 2, n).astype(np.int32),
    }


def _parquet(path: Path, cols: dict[str, np.ndarray]) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table(cols), path)
    return path


def _root(path: Path, cols: dict[str, np.ndarray], tree: str = "DecayTree") -> Path:
    import uproot

    with uproot.recreate(path) as f:
        f.mktree(tree, {k: v.dtype for k, v in cols.items()})
        f[tree].extend(cols)
    return path


@pytest.mark.parametrize("fmt", ["parquet", "root"])
def test_read_round_trip(tmp_path: Path, fmt: str) -> None:
    cols = _columns()
    path = (_parquet if fmt == "parquet" else _root)(tmp_path / f"data.{fmt}", cols)
    out = read_columns(path, ["eta", "p", "flag"], weight="sw")
    assert list(out) == ["eta", "p", "flag", "sw"]
    for name, arr in out.items():
        np.testing.assert_array_equal(arr, cols[name])


def test_root_named_tree(tmp_path: Path) -> None:
    import uproot

    path = tmp_path / "two.root"
    with uproot.recreate(path) as f:
        f.mktree("first", {"x": np.float64})
        f["first"].extend({"x": np.arange(3.0)})
        f.mktree("second", {"x": np.float64})
        f["second"].extend({"x": np.arange(5.0)})
    assert read_columns(path, ["x"])["x"].size == 3
    assert read_columns(path, ["x"], tree="second")["x"].size == 5
    with pytest.raises(DataError, match="no tree 'third'"):
        read_columns(path, ["x"], tree="third")


@pytest.mark.parametrize("fmt", ["parquet", "root"])
def test_missing_column_named(tmp_path: Path, fmt: str) -> None:
    path = (_parquet if fmt == "parquet" else _root)(tmp_path / f"data.{fmt}", _columns())
    with pytest.raises(DataError, match=r"missing column\(s\) \['pt'\]; available: \['eta', 'flag', 'p', 'sw'\]"):
        read_columns(path, ["p", "pt"])


@pytest.mark.parametrize("fmt", ["parquet", "root"])
def test_nan_named(tmp_path: Path, fmt: str) -> None:
    cols = _columns()
    cols["eta"][7] = np.nan
    path = (_parquet if fmt == "parquet" else _root)(tmp_path / f"data.{fmt}", cols)
    with pytest.raises(DataError, match=r"NaN or inf in column\(s\) 'eta' \(1 values\)"):
        read_columns(path, ["p", "eta"])


def test_bad_weights_and_files(tmp_path: Path) -> None:
    cols = _columns()
    cols["sw"] = np.zeros_like(cols["sw"])
    path = _parquet(tmp_path / "w0.parquet", cols)
    with pytest.raises(DataError, match="weight column 'sw' is zero everywhere"):
        read_columns(path, ["p"], weight="sw")
    cols["sw"][:] = np.nan
    path = _parquet(tmp_path / "wnan.parquet", cols)
    with pytest.raises(DataError, match="'sw'"):
        read_columns(path, ["p"], weight="sw")
    with pytest.raises(DataError, match="does not exist"):
        read_columns(tmp_path / "nope.parquet", ["p"])
    junk = tmp_path / "junk.parquet"
    junk.write_bytes(b"hello world")
    with pytest.raises(DataError, match="neither a Parquet nor a ROOT"):
        read_columns(junk, ["p"])


def test_check_finite() -> None:
    check_finite({"a": np.arange(3.0), "n": np.arange(3)}, "ok")
    with pytest.raises(DataError, match=r"x: NaN or inf in column\(s\) 'b' \(2 values\)"):
        check_finite({"a": np.arange(3.0), "b": np.array([np.inf, 1.0, -np.inf])}, "x")
