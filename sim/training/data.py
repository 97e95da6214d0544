"""Read training columns from Parquet or ROOT files, refusing bad data early.

The training samples of Mambah (reference simulation or calibration data with
sWeights) come as flat Parquet tables or ROOT TTrees.  :func:`read_columns` returns
the requested columns as 1-D numpy arrays and raises :class:`~mambah.errors.DataError`
naming the file and column on anything a training could choke on.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from mambah.errors import DataError

__all__ = ("read_columns", "check_finite")

log = logging.getLogger(__name__)

_PARQUET_MAGIC = b"PAR1"
_ROOT_MAGIC = b"root"


def check_finite(arrays: Mapping[str, np.ndarray], what: str) -> None:
    """Raise if any floating-point column holds NaN or inf.

    Args:
        arrays: column name → 1-D array.
        what: where the arrays come from (file name, "conditions", ...), for the message.

    Raises:
        DataError: naming every offending column and its count of bad values.
    """
    bad = []
    for name, arr in arrays.items():
        values = np.asarray(arr)
        if values.dtype.kind in "fc":
            n_bad = int(np.count_nonzero(~np.isfinite(values)))
            if n_bad:
                bad.append(f"{name!r} ({n_bad} values)")
    if bad:
        raise DataError(f"{what}: NaN or inf in column(s) {', '.join(bad)}")


def _sniff(path: Path) -> str:
    with path.open("rb") as handle:
        magic = handle.read(4)
    if magic == _PARQUET_MAGIC:
        return "parquet"
    if magic == _ROOT_MAGIC:
        return "root"
    raise DataError(f"{path}: neither a Parquet nor a ROOT file (magic bytes {magic!r})")


def _missing(path: Path, wanted: Sequence[str], available: Sequence[str]) -> None:
    missing = [c for c in wanted if c not in available]
    if missing:
        raise DataError(
            f"{path}: missing column(s) {missing}; available: {sorted(available)}"
        )


def _read_parquet(path: Path, columns: list[str]) -> dict[str, np.ndarray]:
    import pyarrow.parquet as pq

    try:
        schema = pq.read_schema(path)
        _missing(path, columns, schema.names)
        table = pq.read_table(path, columns=columns)
    except DataError:
        raise
    except Exception as err:  # pyarrow raises a zoo of types on corrupt files
        raise DataError(f"{path}: cannot read Parquet file: {err}") from err
    out = {}
    for name in columns:
        column = table.column(name)
        if column.null_count:
            raise DataError(f"{path}: column {name!r} has {column.null_count} null values")
        out[name] = column.to_numpy()
    return out


def _read_root(path: Path, columns: list[str], tree: str | None) -> dict[str, np.ndarray]:
    import uproot

    try:
        with uproot.open(path) as handle:
            if tree is None:
                trees = [k for k, c in handle.classnames().items() if c == "TTree"]
                if not trees:
                    raise DataError(f"{path}: no TTree in file; keys: {handle.keys()}")
                tree = trees[0].split(";")[0]
                log.debug("%s: reading first TTree %r", path, tree)
            if tree not in handle:
                raise DataError(f"{path}: no tree {tree!r}; keys: {handle.keys(cycle=False)}")
            ttree = handle[tree]
            _missing(path, columns, ttree.keys())
            arrays = ttree.arrays(columns, library="np")
    except DataError:
        raise
    except Exception as err:
        raise DataError(f"{path}: cannot read ROOT file: {err}") from err
    out = {}
    for name in columns:
        arr = arrays[name]
        if arr.dtype == object:
            raise DataError(f"{path}: column {name!r} is jagged; only flat branches are read")
        out[name] = arr
    return out


def read_columns(
    path: str | Path,
    columns: Sequence[str],
    weight: str | None = None,
    tree: str | None = None,
) -> dict[str, np.ndarray]:
    """Read flat columns (and an optional weight column) from a Parquet or ROOT file.

    The format is taken from the file's magic bytes, not its suffix.

    Args:
        path: Parquet file or ROOT file.
        columns: names of the columns to read, in order.
        weight: name of a per-row weight column (e.g. sWeights), returned under its name.
        tree: ROOT TTree name; ``None`` takes the first TTree in the file.

    Returns:
        Column name → 1-D numpy array of length ``n`` (dtype as stored), in the order
        ``columns`` then ``weight``.

    Raises:
        DataError: missing file, unknown format, missing column (named, with the
            available ones), null/NaN/inf values (column named), weights that are all
            zero.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"training file {path} does not exist")
    wanted = list(dict.fromkeys([*columns, *([weight] if weight else [])]))
    if not wanted:
        raise DataError(f"{path}: no columns requested")
    kind = _sniff(path)
    if kind == "parquet" and tree is not None:  # it names a TTree of a ROOT file only
        raise DataError(f"{path} is a Parquet file; --tree {tree!r} names a TTree of a ROOT file: drop it")
    if kind == "parquet":
        out = _read_parquet(path, wanted)
    else:
        out = _read_root(path, wanted, tree)
    check_finite(out, str(path))
    if weight is not None and not np.any(out[weight] != 0):
        raise DataError(f"{path}: weight column {weight!r} is zero everywhere")
    log.info("%s: read %d rows of %s", path, len(next(iter(out.values()))), wanted)
    return out
