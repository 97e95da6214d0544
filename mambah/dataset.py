"""The dataset store: one directory per batch of Parquet files, written by many processes at once.

A distributed run (``mambah run --workers N --dataset``) writes no single file: each
worker writes its batch into the dataset directly, so no process funnels the data.
Layout (hive-partitioned by ``batch``)::

    DATASET/metadata.json                the store's metadata rows (schema version, pipeline, run)
    DATASET/batch=<n>/<table>.parquet    every data table of batch n (without the batch column:
                                         it is the partition key), zstd-compressed
    DATASET/batch=<n>/batches.parquet    the batch's ``batches`` row (n_events, seed)
    DATASET/batch=<n>/batch.json         its record: batch, n_events, seed, pipeline digest and the
                                         ``metadata`` rows its passes set (e.g. the generator's)
    DATASET/.tmp-batch=<n>-<id>/         a batch being written (ignored by readers)

A batch is written into ``.tmp-batch=<n>-<id>`` and renamed to ``batch=<n>`` when
complete: one ``rename`` per batch, atomic on a POSIX filesystem (local, NFS, Lustre,
GPFS), so a batch directory is complete or absent and its presence is the completion
record; nothing else is shared between writers.  Readers
(:meth:`mambah.store.EventStore.open`, ``mambah info/query/check/export``) see the
tables as views over ``batch=*/<table>.parquet``; the ``metadata`` table is
``metadata.json`` plus, per key, the value set by the highest-numbered batch (what a
serial run leaves: its last batch's ``INSERT OR REPLACE``).  :func:`merge_dataset`
(``mambah merge DATASET out.duckdb``) makes one DuckDB file of it.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb

from mambah.errors import SchemaVersionError, StoreError, StoreExistsError
from mambah.schema import DATA_TABLES, SCHEMA_VERSION, column_names, create_ddl, create_view_ddl

if TYPE_CHECKING:
    from mambah.store import BatchRecord, EventStore

__all__ = (
    "BATCH_PREFIX",
    "METADATA_FILE",
    "PARQUET_COMPRESSION",
    "clear_incomplete",
    "create_dataset",
    "dataset_batches",
    "dataset_connection",
    "dataset_problems",
    "is_dataset",
    "merge_dataset",
    "read_dataset_metadata",
    "write_dataset_batch",
)

BATCH_PREFIX = "batch="
METADATA_FILE = "metadata.json"
RECORD_FILE = "batch.json"
TMP_PREFIX = ".tmp-"
#: Parquet codec of the batch files (zstd: 0.8x the DuckDB file's size for the default job).
PARQUET_COMPRESSION = "zstd"


def is_dataset(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a directory holding a Mambah dataset (its ``metadata.json``)."""
    p = Path(path)
    return p.is_dir() and (p / METADATA_FILE).is_file()


def read_dataset_metadata(root: str | os.PathLike[str]) -> dict[str, str]:
    """``metadata.json`` of a dataset, its schema version checked.

    Raises:
        StoreError: not a directory, no or unreadable ``metadata.json``.
        SchemaVersionError: another schema version.
    """
    r = Path(root)
    if not r.is_dir():
        raise StoreError(f"Parquet dataset '{r}' is not a directory")
    meta = r / METADATA_FILE
    if not meta.is_file():
        raise StoreError(f"'{r}' is a directory but not a Mambah dataset (no {METADATA_FILE})")
    try:
        rows = json.loads(meta.read_text())
    except (OSError, ValueError) as err:
        raise StoreError(f"'{meta}' is not readable JSON: {err}") from err
    if not isinstance(rows, dict):
        raise StoreError(f"'{meta}' is not a JSON object of metadata rows")
    if str(rows.get("schema_version")) != str(SCHEMA_VERSION):
        raise SchemaVersionError(
            f"dataset '{r}' has schema version {rows.get('schema_version')}, this Mambah reads version {SCHEMA_VERSION}"
        )
    return {str(k): str(v) for k, v in rows.items()}


def create_dataset(root: str | os.PathLike[str], metadata: Mapping[str, str], *, overwrite: bool = False) -> Path:
    """Create an empty dataset directory with ``metadata`` (and the schema version); atomic (temp + rename).

    Raises:
        StoreExistsError: ``root`` exists and not ``overwrite``.
        StoreError: ``root`` exists but is not a Mambah dataset (never deleted), or its parent is missing.
    """
    r = Path(root)
    if r.exists():
        if not overwrite:
            raise StoreExistsError(f"output '{r}' exists; pass overwrite (--overwrite) or resume (--resume)")
        if not is_dataset(r):
            raise StoreError(f"output '{r}' exists and is not a Mambah dataset; it was not replaced (choose another output)")
    parent = r.parent if str(r.parent) else Path(".")
    if not parent.is_dir():
        raise StoreError(f"directory '{parent}' of output '{r}' does not exist")
    tmp = parent / f"{TMP_PREFIX}{r.name}-{uuid.uuid4().hex[:12]}"
    tmp.mkdir()
    try:
        rows = {"schema_version": str(SCHEMA_VERSION), "primary_keys": "false", **{str(k): str(v) for k, v in metadata.items()}}
        (tmp / METADATA_FILE).write_text(json.dumps(rows, indent=1, sort_keys=True))
        if r.exists():
            shutil.rmtree(r)
        tmp.rename(r)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return r


def _batch_dirs(root: Path) -> list[Path]:
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.is_dir() and p.name.startswith(BATCH_PREFIX))


def _batch_number(d: Path) -> int | None:
    """``n`` of a directory named ``batch=<n>`` (decimal digits), else None."""
    text = d.name[len(BATCH_PREFIX):]
    return int(text) if text.isdecimal() and text.isascii() else None


def _expected_columns(name: str) -> tuple[str, ...]:
    """Columns a batch's ``<name>.parquet`` holds (the partition key ``batch`` is in the path)."""
    if name == "batches":
        return ("n_events", "seed")
    return tuple(c for c in column_names(name) if c != "batch")


def dataset_problems(root: str | os.PathLike[str], *, schemas: bool = False) -> list[str]:
    """One line per batch directory of the dataset ``root`` that is not what :func:`write_dataset_batch` makes.

    A batch directory is complete or absent (it is renamed into place last), so a
    directory named ``batch=...`` that is not ``batch=<n>``, lacks a table file or its
    ``batch.json``, or whose record does not name batch ``n``, was damaged or edited by
    hand: the readers' views would miss its rows (a missing file), fail on its name, or
    count a batch without its record.  Batches being written (``.tmp-*``) are not looked at.

    Args:
        root: the dataset directory.
        schemas: also read every Parquet file's footer and compare its columns with the
            schema (``mambah check``; the views fill a missing column with NULL).

    Returns:
        The problems, each naming the directory and file ("" when none).
    """
    r = Path(root)
    out: list[str] = []
    files = (*(f"{t}.parquet" for t in (*DATA_TABLES, "batches")), RECORD_FILE)
    for d in _batch_dirs(r):
        n = _batch_number(d)
        if n is None:
            out.append(f"dataset '{r}': '{d.name}' is not a batch directory (batch=<number>); remove or rename it")
            continue
        missing = [f for f in files if not (d / f).is_file()]
        if missing:
            out.append(f"dataset '{r}': batch {n} lacks {', '.join(missing)} in '{d.name}'; re-run it "
                       "(mambah run --resume, after removing the directory) or remove it")
            continue
        try:
            rec = json.loads((d / RECORD_FILE).read_text())
            ok = (isinstance(rec, dict) and rec.get("batch") == n and isinstance(rec.get("n_events"), int)
                  and rec["n_events"] > 0 and isinstance(rec.get("seed"), int))
        except (OSError, ValueError):
            ok = False
        if not ok:
            out.append(f"dataset '{r}': '{d.name}/{RECORD_FILE}' is not the record of batch {n} (batch, n_events, seed)")
            continue
        if schemas:
            out.extend(_schema_problems(r, d, n))
    return out


def _schema_problems(root: Path, d: Path, n: int) -> list[str]:
    import pyarrow.parquet as pq

    out: list[str] = []
    for name in (*DATA_TABLES, "batches"):
        f = d / f"{name}.parquet"
        try:
            have = set(pq.read_schema(f).names)
        except Exception as err:  # pyarrow raises ArrowInvalid / OSError on a cut or foreign file
            line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            out.append(f"dataset '{root}': batch {n}'s '{f.name}' is not a readable Parquet file: {line}")
            continue
        lacking = [c for c in _expected_columns(name) if c not in have]
        if lacking:
            shown = ", ".join(lacking[:5]) + (" ..." if len(lacking) > 5 else "")
            out.append(f"dataset '{root}': batch {n}'s '{f.name}' lacks column(s) {shown} of table '{name}'")
    return out


def dataset_batches(root: str | os.PathLike[str]) -> dict[int, dict[str, Any]]:
    """The complete batches of a dataset: batch number → its record (``batch.json``).

    A batch directory without a readable record is skipped (it cannot be made by
    :func:`write_dataset_batch`, whose rename is the last step; a hand edit can).
    """
    out: dict[int, dict[str, Any]] = {}
    for d in _batch_dirs(Path(root)):
        try:
            rec = json.loads((d / RECORD_FILE).read_text())
            out[int(rec["batch"])] = rec
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return out


def clear_incomplete(root: str | os.PathLike[str]) -> int:
    """Delete the batches being written (``.tmp-*``) of a dataset no process writes now; returns how many."""
    n = 0
    for p in Path(root).glob(f"{TMP_PREFIX}*"):
        shutil.rmtree(p, ignore_errors=True)
        n += 1
    return n


def write_dataset_batch(
    root: str | os.PathLike[str],
    record: BatchRecord,
    con: duckdb.DuckDBPyConnection,
    *,
    metadata: Mapping[str, str] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> Path:
    """Write the batch held in the (staging) connection ``con`` as ``root/batch=<n>``, atomically.

    Every data table of ``con`` is copied to ``<table>.parquet`` (rows of other
    batches are not expected: ``con`` holds this batch only), then the
    ``batches`` row and the record; the directory is renamed into place last.
    If ``batch=<n>`` exists already (a batch re-run after its worker was lost),
    the existing one is kept and this copy discarded.

    Args:
        root: the dataset directory.
        record: the batch.
        con: DuckDB connection holding the batch's tables.
        metadata: ``metadata`` rows the batch's passes set.
        extra: more fields of the record (e.g. the pipeline digest).

    Returns:
        The batch directory.
    """
    r = Path(root)
    final = r / f"{BATCH_PREFIX}{record.batch}"
    if final.is_dir():
        return final
    tmp = r / f"{TMP_PREFIX}{BATCH_PREFIX}{record.batch}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        opts = f"(FORMAT PARQUET, COMPRESSION {PARQUET_COMPRESSION})"
        for name in DATA_TABLES:
            cols = ", ".join(f'"{c}"' for c in column_names(name) if c != "batch")
            dest = str(tmp / f"{name}.parquet").replace("'", "''")
            con.execute(f"COPY (SELECT {cols} FROM {name}) TO '{dest}' {opts}")
        dest = str(tmp / "batches.parquet").replace("'", "''")
        con.execute(f"COPY (SELECT {int(record.n_events)}::INTEGER AS n_events, {int(record.seed)}::BIGINT AS seed) TO '{dest}' {opts}")
        rec = {"batch": record.batch, "n_events": record.n_events, "seed": record.seed, **dict(extra or {}),
               "metadata": dict(metadata or {})}
        (tmp / RECORD_FILE).write_text(json.dumps(rec))
        try:
            tmp.rename(final)
        except OSError:
            if not final.is_dir():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return final


def _glob(root: Path, name: str) -> str:
    return str(root / f"{BATCH_PREFIX}*" / f"{name}.parquet").replace("'", "''")


def dataset_connection(root: str | os.PathLike[str], *, strict: bool = True) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection whose tables are views over the dataset ``root`` (read-only use).

    Args:
        root: the dataset directory.
        strict: refuse a dataset with a damaged batch directory (:func:`dataset_problems`);
            ``mambah check`` opens it with ``strict=False`` to report everything.

    Raises:
        StoreError, SchemaVersionError: see :func:`read_dataset_metadata`; a damaged batch directory.
    """
    r = Path(root)
    meta = read_dataset_metadata(r)
    if strict:
        problems = dataset_problems(r)
        if problems:
            more = f" (and {len(problems) - 1} more problem(s))" if len(problems) > 1 else ""
            raise StoreError(f"{problems[0]}{more}; see 'mambah check {r}'")
    records = dataset_batches(r)
    con = duckdb.connect(":memory:")
    try:
        for ddl in create_ddl():  # empty typed tables: what a dataset without batches holds
            con.execute(ddl)
        if records:
            hive = "hive_partitioning = true, hive_types = {'batch': INTEGER}, union_by_name = true"
            for name in (*DATA_TABLES, "batches"):
                cols = ", ".join(f'"{c}"' for c in column_names(name))
                con.execute(f"DROP TABLE {name}")
                con.execute(f"CREATE VIEW {name} AS SELECT {cols} FROM read_parquet('{_glob(r, name)}', {hive})")
        # per key, the value of the highest batch that set it (a serial run's last INSERT OR REPLACE)
        for b in sorted(records):
            for k, v in (records[b].get("metadata") or {}).items():
                meta[str(k)] = str(v)
        con.executemany("INSERT INTO metadata VALUES (?, ?)", [[k, v] for k, v in meta.items()])
        for ddl in create_view_ddl():
            con.execute(ddl)
    except duckdb.Error as err:
        con.close()
        raise StoreError(f"cannot open dataset '{r}': {str(err).strip().splitlines()[0]}") from err
    except BaseException:
        con.close()
        raise
    return con


def merge_dataset(root: str | os.PathLike[str], output: str | os.PathLike[str], *, overwrite: bool = False) -> EventStore:
    """Copy the dataset ``root`` into one new DuckDB store file ``output``, one transaction per batch.

    Returns:
        The new store, open for writing (close it).

    Raises:
        StoreExistsError: ``output`` exists and not ``overwrite``.
        StoreError, SchemaVersionError: ``root`` is not a readable dataset of this schema, or
            :func:`mambah.check.check_store` finds it damaged (a batch's table file missing:
            the merged store would lack its rows).
    """
    from mambah.check import check_store
    from mambah.store import EventStore

    if Path(output).exists() and not overwrite:  # merge has no resume
        raise StoreExistsError(f"output '{output}' exists; pass overwrite=True (--overwrite) to replace it")
    read_dataset_metadata(root)  # not a dataset, or another schema version: that line, not check's
    problems = check_store(Path(root)).lines()
    if problems:
        more = f" (and {len(problems) - 1} more problem(s))" if len(problems) > 1 else ""
        raise StoreError(f"cannot merge '{root}': {problems[0]}{more}; see 'mambah check {root}'")
    src = EventStore.open(root, read_only=True)
    try:
        meta = src.metadata()
        dst = EventStore.create(output, overwrite=overwrite, metadata={
            k: v for k, v in meta.items() if k not in ("schema_version", "primary_keys")
        })
        try:
            for rec in src.batch_records():
                dst.write_batch(rec, {name: src.table(name, rec.batch) for name in DATA_TABLES})
        except BaseException:
            dst.close()
            with contextlib.suppress(OSError):
                os.unlink(output)
            raise
    finally:
        src.close()
    return dst
