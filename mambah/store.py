"""The batch-indexed DuckDB event store.

A store is one DuckDB file (or an in-memory database) holding the tables of
:mod:`mambah.schema`.  Data are written one batch at a time in a single
transaction, so a crash or an exception leaves complete batches only.  A store
can be exported to (and imported from) a hive-partitioned Parquet dataset, and
such a dataset can be opened read-only through DuckDB.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import functools
import json
import logging
import os
import shutil
import uuid
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb
import numpy as np
import pyarrow as pa

from mambah.check import CheckReport, check_store, duckdb_error_line, foreign_database, is_lock_conflict, truncation_problem
from mambah.errors import SchemaVersionError, StoreError, StoreExistsError, first_line
from mambah.schema import DATA_TABLES, SCHEMA_VERSION, TABLES, VIEWS, column_decimals, column_names, create_ddl, create_view_ddl

if TYPE_CHECKING:
    import pandas as pd

__all__ = ("EventStore", "BatchRecord", "staged_metadata", "staged_tables", "staging_connection", "stored_values")

log = logging.getLogger(__name__)

MEMORY = ":memory:"


class BatchRecord:
    """What the ``batches`` table records of one complete batch."""

    __slots__ = ("batch", "n_events", "seed")

    def __init__(self, batch: int, n_events: int, seed: int) -> None:
        self.batch = int(batch)
        self.n_events = int(n_events)
        self.seed = int(seed)

    def __repr__(self) -> str:
        return f"BatchRecord(batch={self.batch}, n_events={self.n_events}, seed={self.seed})"


class EventStore:
    """A batch-indexed event store backed by DuckDB.

    Open with :meth:`create`, :meth:`open`, :meth:`memory` or
    :meth:`open_dataset` rather than the constructor.

    Example::

        with mambah.EventStore.open("mambah.duckdb", read_only=True) as store:
            df = store.query_df("SELECT pid, count(*) FROM mc_particles GROUP BY pid")
    """

    def __init__(self, con: duckdb.DuckDBPyConnection, path: str, *, read_only: bool) -> None:
        self._con = con
        self.path = path
        self.read_only = read_only

    # ------------------------------------------------------------------ opening
    @classmethod
    def create(
        cls,
        path: str | os.PathLike[str],
        *,
        overwrite: bool = False,
        primary_keys: bool = False,
        metadata: Mapping[str, str] | None = None,
    ) -> EventStore:
        """Create a new store file at ``path`` (MambahError if it exists, unless ``overwrite``).

        The store is built under a temporary name in the same directory and
        renamed to ``path`` once its tables and metadata are committed, so
        ``path`` is either absent or a complete store with all of ``metadata``.
        With ``overwrite``, the existing file's lock is taken first: a store
        that another process has open is refused, never deleted under it.

        Args:
            path: file to create, or ``":memory:"``.
            overwrite: replace an existing file.
            primary_keys: also create primary-key indexes on the data tables
                (enforced uniqueness; costs memory and insert speed).
            metadata: further ``metadata`` rows (e.g. the run's pipeline and
                settings), committed with the schema.

        Raises:
            StoreExistsError: ``path`` exists and not ``overwrite``.
            StoreError: ``path`` is a directory, its directory is missing or
                not writable, or the existing store is in use.
        """
        spath = str(path)
        rows = [["schema_version", str(SCHEMA_VERSION)], ["primary_keys", json.dumps(primary_keys)]]
        rows += [[str(k), str(v)] for k, v in (metadata or {}).items()]
        if spath == MEMORY:
            con = _connect(spath, read_only=False)
            _initialise(con, spath, primary_keys, rows)
            return cls(con, spath, read_only=False)
        p = Path(spath)
        if p.is_dir():
            raise StoreError(f"output '{spath}' is a directory, not a store file")
        if p.exists() and not overwrite:
            raise StoreExistsError(f"output '{spath}' exists; pass overwrite (--overwrite) or resume (--resume)")
        parent = p.parent if str(p.parent) else Path(".")
        if not parent.exists():
            raise StoreError(f"directory '{parent}' of output '{spath}' does not exist")
        if not os.access(parent, os.W_OK):
            raise StoreError(f"directory '{parent}' of output '{spath}' is not writable")
        tmp = parent / f".{p.name}.tmp-{uuid.uuid4().hex[:12]}"
        with _file_lock(p):  # held until the new file has replaced the old one
            try:
                try:
                    con = _connect(str(tmp), read_only=False)
                except StoreError as err:  # e.g. a read-only file system: name the output, not the temporary file
                    why = _first_line(err.__cause__ or err).replace(str(tmp), spath)
                    raise StoreError(f"cannot write output '{spath}': {why}") from err
                try:
                    _initialise(con, spath, primary_keys, rows)
                finally:
                    con.close()  # checkpoints: the temporary file holds everything, no WAL left
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(spath + ".wal")  # the replaced store's log must not be replayed into the new one
                os.replace(tmp, p)
            finally:
                for leftover in (tmp, Path(str(tmp) + ".wal")):
                    with contextlib.suppress(FileNotFoundError):
                        leftover.unlink()
        con = _connect(spath, read_only=False)
        return cls(con, spath, read_only=False)

    @classmethod
    def memory(cls, *, primary_keys: bool = False) -> EventStore:
        """A new in-memory store."""
        return cls.create(MEMORY, primary_keys=primary_keys)

    @classmethod
    def open(cls, path: str | os.PathLike[str], *, read_only: bool = False) -> EventStore:
        """Open an existing store: a DuckDB file, or a dataset directory (read-only; :mod:`mambah.dataset`).

        Checks that it is a Mambah store of this schema version.

        Raises:
            StoreError: missing, not a store, a dataset opened with ``read_only=False``.
            SchemaVersionError: another schema version (e.g. a version-2 store of DOUBLE columns).
        """
        spath = str(path)
        p = Path(spath)
        if not p.exists():
            raise StoreError(f"store '{spath}' does not exist")
        if p.is_dir():
            if not read_only:
                raise StoreError(
                    f"'{spath}' is a Parquet dataset, which opens read-only only (read_only=True); "
                    f"to write to it, make one store file: mambah merge {spath} OUT.duckdb"
                )
            return cls.open_dataset(p)
        con = _connect(spath, read_only=read_only)
        store = cls(con, spath, read_only=read_only)
        try:
            truncated = truncation_problem(con, spath)
            if truncated:
                raise StoreError(truncated)
            store._check_schema()
            _ensure_views(con)
        except duckdb.Error as err:
            con.close()
            raise StoreError(duckdb_error_line(err, spath)) from err
        except BaseException:
            con.close()
            raise
        return store

    @classmethod
    def open_dataset(cls, path: str | os.PathLike[str]) -> EventStore:
        """Open a hive-partitioned Parquet dataset read-only.

        Two layouts: a distributed run's dataset store (``path/batch=<n>/<table>.parquet``,
        :mod:`mambah.dataset`) and the export of :meth:`to_parquet`
        (``path/<table>/batch=<n>/*.parquet``).  The tables become DuckDB views.
        """
        root = Path(path)
        if root.is_dir() and not (root / "batches").is_dir():
            from mambah.dataset import dataset_connection

            return cls(dataset_connection(root), str(root), read_only=True)
        if not root.is_dir():
            raise StoreError(f"Parquet dataset '{root}' is not a directory")
        meta = root / "metadata.json"
        if not meta.exists():
            raise StoreError(f"'{root}' is not a Mambah Parquet dataset (no metadata.json)")
        try:
            meta_rows = json.loads(meta.read_text())
        except ValueError as err:
            raise StoreError(f"'{meta}' is not valid JSON: {err}") from err
        if str(meta_rows.get("schema_version")) != str(SCHEMA_VERSION):
            raise SchemaVersionError(
                f"dataset '{root}' has schema version {meta_rows.get('schema_version')}, this Mambah reads {SCHEMA_VERSION}"
            )
        con = duckdb.connect(MEMORY)
        # empty typed tables first, so that a table without files still exists
        for ddl in create_ddl():
            con.execute(ddl)
        for name in (*DATA_TABLES, "batches"):
            files = list((root / name).glob("**/*.parquet"))
            if not files:
                continue
            cols = ", ".join(f'"{c}"' for c in column_names(name))
            glob = str(root / name / "**" / "*.parquet").replace("'", "''")
            con.execute(f"DROP TABLE {name}")
            con.execute(
                f"CREATE VIEW {name} AS SELECT {cols} FROM read_parquet('{glob}', hive_partitioning = true, hive_types = {{'batch': INTEGER}}, union_by_name = true)"
            )
        con.executemany("INSERT INTO metadata VALUES (?, ?)", [[k, str(v)] for k, v in meta_rows.items()])
        for ddl in create_view_ddl():
            con.execute(ddl)
        return cls(con, str(root), read_only=True)

    def _check_schema(self) -> None:
        try:
            rows = self._con.execute("SELECT value FROM metadata WHERE key = 'schema_version'").fetchall()
            row = rows[0] if rows else None
        except duckdb.CatalogException as err:
            raise StoreError(f"'{self.path}' is a DuckDB file but not a Mambah store (no metadata table)") from err
        if row is None:
            raise StoreError(f"'{self.path}' is not a Mambah store (no schema version)")
        if row[0] != str(SCHEMA_VERSION):
            raise SchemaVersionError(
                f"store '{self.path}' has schema version {row[0]}, this Mambah reads version {SCHEMA_VERSION}"
            )

    def check(self) -> CheckReport:
        """Read all of the store and report every problem (see :func:`mambah.check.check_store`)."""
        return check_store(self.path, con=self._con)

    # ------------------------------------------------------------------ basics
    @property
    def connection(self) -> duckdb.DuckDBPyConnection:
        """The underlying DuckDB connection, for power users."""
        return self._con

    def close(self) -> None:
        """Close the store (checkpointing the file)."""
        with contextlib.suppress(duckdb.Error):
            self._con.close()

    def __enter__(self) -> EventStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"EventStore({self.path!r}, read_only={self.read_only})"

    # ------------------------------------------------------------------ metadata
    def get_metadata(self, key: str, default: str | None = None) -> str | None:
        """A value of the ``metadata`` table."""
        rows = self._con.execute("SELECT value FROM metadata WHERE key = ?", [key]).fetchall()
        row = rows[0] if rows else None
        return default if row is None else str(row[0])

    def set_metadata(self, key: str, value: str) -> None:
        """Set a value of the ``metadata`` table (in its own transaction)."""
        self._writable()
        self._con.execute("INSERT OR REPLACE INTO metadata VALUES (?, ?)", [key, value])

    def metadata(self) -> dict[str, str]:
        """All of the ``metadata`` table."""
        return dict(self._con.execute("SELECT key, value FROM metadata ORDER BY key").fetchall())

    # ------------------------------------------------------------------ batches
    def batches(self) -> list[int]:
        """Numbers of the complete batches, sorted."""
        return [r[0] for r in self._con.execute("SELECT batch FROM batches ORDER BY batch").fetchall()]

    def batch_records(self) -> list[BatchRecord]:
        """The ``batches`` table as records."""
        rows = self._con.execute("SELECT batch, n_events, seed FROM batches ORDER BY batch").fetchall()
        return [BatchRecord(*r) for r in rows]

    def n_events(self) -> int:
        """Number of events in complete batches."""
        return int(self._con.execute("SELECT coalesce(sum(n_events), 0) FROM batches").fetchall()[0][0])

    @contextlib.contextmanager
    def batch_transaction(self, record: BatchRecord) -> Iterator[duckdb.DuckDBPyConnection]:
        """A transaction in which one batch is written; committed with its ``batches`` row.

        Everything written inside the ``with`` block becomes visible together
        with the batch's row in ``batches`` at commit; any exception (or a crash
        of the process) rolls all of it back.  Rows of the batch that are in the
        data tables without a ``batches`` row (left by a hand edit or a foreign
        writer) are deleted first, in the same transaction, so a re-run batch is
        never duplicated.

        Raises:
            StoreError: the batch exists already.
        """
        self._writable()
        con = self._con
        con.execute("BEGIN TRANSACTION")
        try:
            exists = con.execute("SELECT count(*) FROM batches WHERE batch = ?", [record.batch]).fetchall()[0][0]
            if exists:
                raise StoreError(f"batch {record.batch} is already in store '{self.path}'")
            for name in DATA_TABLES:  # stray rows of an unrecorded batch
                con.execute(f"DELETE FROM {name} WHERE batch = ?", [record.batch])
            yield con
            con.execute("INSERT INTO batches VALUES (?, ?, ?)", [record.batch, record.n_events, record.seed])
            con.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(duckdb.Error):
                con.execute("ROLLBACK")
            raise

    def write_batch(self, record: BatchRecord, tables: Mapping[str, Any], metadata: Mapping[str, str] | None = None) -> None:
        """Write all tables of one batch atomically.

        Args:
            record: the batch (number, number of events, seed).
            tables: table name → Arrow table (or pandas DataFrame / dict of arrays)
                with the schema's column names; missing nullable columns are NULL.
            metadata: ``metadata`` rows the batch sets (e.g. the generator's), written
                (``INSERT OR REPLACE``) in the same transaction.
        """
        with self.batch_transaction(record) as con:
            for name, data in tables.items():
                insert(con, name, data)
            if metadata:
                con.executemany("INSERT OR REPLACE INTO metadata VALUES (?, ?)", [[str(k), str(v)] for k, v in metadata.items()])

    @contextlib.contextmanager
    def staged_batch(self, record: BatchRecord) -> Iterator[duckdb.DuckDBPyConnection]:
        """Run one batch against an in-memory staging database; write it to the store once, at the end.

        The connection yielded has every table and view of the schema, empty (see
        :func:`staging_connection`): the batch's passes insert and update there
        with the same SQL as in :meth:`batch_transaction`.  When the ``with``
        block ends, each table of the batch is inserted into the store once,
        with the ``metadata`` rows the batch set and its ``batches`` row, in one
        transaction (:meth:`write_batch`); an exception leaves the store untouched.
        A file store is thus never updated in place (no UPDATE of stored rows,
        no fragmented blocks), and its transaction lasts only for the copy.

        Raises:
            StoreError: the batch exists already, or the store is read-only.
        """
        self._writable()
        if self._con.execute("SELECT count(*) FROM batches WHERE batch = ?", [record.batch]).fetchall()[0][0]:
            raise StoreError(f"batch {record.batch} is already in store '{self.path}'")
        with staging_connection() as con:
            yield con
            tables = staged_tables(con)
            meta = staged_metadata(con)
        self.write_batch(record, tables, meta)

    def delete_batch(self, batch: int) -> None:
        """Delete every row of ``batch`` in one transaction."""
        self._writable()
        con = self._con
        con.execute("BEGIN TRANSACTION")
        try:
            for name in (*DATA_TABLES, "batches"):
                con.execute(f"DELETE FROM {name} WHERE batch = ?", [batch])
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise

    def delete_unrecorded(self) -> int:
        """Delete, in one transaction, the data rows of batches without a ``batches`` row; returns the rows deleted."""
        self._writable()
        con = self._con
        n = 0
        con.execute("BEGIN TRANSACTION")
        try:
            for name in DATA_TABLES:
                rows = con.execute(f"DELETE FROM {name} WHERE batch NOT IN (SELECT batch FROM batches)").fetchall()
                n += int(rows[0][0]) if rows else 0
            con.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(duckdb.Error):
                con.execute("ROLLBACK")
            raise
        return n

    # ------------------------------------------------------------------ reading
    def query(self, sql: str, params: list[Any] | None = None) -> pa.Table:
        """Run SQL and return an Arrow table."""
        try:
            return query_arrow(self._con, sql, params)
        except duckdb.IOException as err:  # a truncated or unreadable file: name it
            raise StoreError(duckdb_error_line(err, self.path)) from err
        except duckdb.Error as err:
            if "corrupt" in str(err).lower() or "checksum" in str(err).lower():
                raise StoreError(duckdb_error_line(err, self.path)) from err
            raise StoreError(f"query failed: {_first_line(err)}") from err

    def query_df(self, sql: str, params: list[Any] | None = None) -> pd.DataFrame:
        """Run SQL and return a pandas DataFrame."""
        return self.query(sql, params).to_pandas()

    def table(self, name: str, batch: int | list[int] | None = None, columns: list[str] | None = None) -> pa.Table:
        """Read ``name`` (optionally only some batches and columns) as Arrow."""
        if name not in TABLES:
            raise StoreError(f"unknown table '{name}'; tables are {', '.join(TABLES)}")
        cols = "*" if columns is None else ", ".join(f'"{c}"' for c in columns)
        key = {"events": "batch, event", "batches": "batch", "metadata": "key"}.get(name, 'batch, event, "index"')
        if batch is None:
            return self.query(f"SELECT {cols} FROM {name} ORDER BY {key}")
        batches = [batch] if isinstance(batch, int) else list(batch)
        return self.query(f"SELECT {cols} FROM {name} WHERE batch IN (SELECT unnest(?)) ORDER BY {key}", [batches])

    def count(self, name: str) -> int:
        """Number of rows of table ``name``."""
        if name not in TABLES:
            raise StoreError(f"unknown table '{name}'; tables are {', '.join(TABLES)}")
        return int(self._con.execute(f"SELECT count(*) FROM {name}").fetchall()[0][0])

    def info(self) -> dict[str, Any]:
        """Summary: path, schema version, rows per table, batches, events, run metadata."""
        return {
            "path": self.path,
            "schema_version": self.get_metadata("schema_version"),
            "tables": {name: self.count(name) for name in DATA_TABLES},
            "batches": len(self.batches()),
            "events": self.n_events(),
            "metadata": {k: v for k, v in self.metadata().items() if k != "schema_version"},
        }

    # ------------------------------------------------------------------ parquet
    def to_parquet(self, path: str | os.PathLike[str], *, overwrite: bool = False) -> Path:
        """Export the store as a hive-partitioned Parquet dataset (one partition per batch).

        Layout: ``path/<table>/batch=<n>/*.parquet`` plus ``path/metadata.json``.
        Written to a temporary directory and renamed at the end.
        """
        root = Path(path)
        if root.exists() and not overwrite:
            raise StoreExistsError(f"output '{root}' exists; pass overwrite=True")
        tmp = root.with_name(root.name + ".tmp-mambah")
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir(parents=True)
        try:
            for name in (*DATA_TABLES, "batches"):
                if self.count(name) == 0:
                    continue
                dest = str(tmp / name).replace("'", "''")
                self._con.execute(
                    f"COPY (SELECT * FROM {name}) TO '{dest}' (FORMAT PARQUET, PARTITION_BY (batch), OVERWRITE_OR_IGNORE)"
                )
            (tmp / "metadata.json").write_text(json.dumps(self.metadata(), indent=1, sort_keys=True))
            if root.exists():
                shutil.rmtree(root) if root.is_dir() else root.unlink()
            tmp.rename(root)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return root

    @classmethod
    def from_parquet(cls, dataset: str | os.PathLike[str], path: str | os.PathLike[str] = MEMORY, *, overwrite: bool = False) -> EventStore:
        """Import a Parquet dataset written by :meth:`to_parquet` into a new store, batch by batch."""
        src = cls.open_dataset(dataset)
        try:
            dst = cls.create(path, overwrite=overwrite)
            for key, value in src.metadata().items():
                if key not in ("schema_version", "primary_keys"):
                    dst.set_metadata(key, value)
            for rec in src.batch_records():
                dst.write_batch(rec, {name: src.table(name, rec.batch) for name in DATA_TABLES})
        finally:
            src.close()
        return dst

    # ------------------------------------------------------------------ helpers
    def _writable(self) -> None:
        if self.read_only:
            raise StoreError(f"store '{self.path}' is open read-only")


@contextlib.contextmanager
def staging_connection(threads: int | None = None) -> Iterator[duckdb.DuckDBPyConnection]:
    """A new in-memory DuckDB database with the schema's tables (no primary-key indexes) and views; closed after.

    One per batch (a fresh database frees all of the batch's memory when it closes;
    creating it costs a few milliseconds).  Its ``metadata`` table starts empty: the
    rows a pass sets there are the batch's metadata (:func:`staged_metadata`).

    Args:
        threads: DuckDB threads of the connection (default: DuckDB's, all cores).
    """
    config: dict[str, str | bool | int | float | list[str]] = {} if threads is None else {"threads": int(threads)}
    con = duckdb.connect(MEMORY, config=config)
    try:
        for ddl in _staging_ddl():
            con.execute(ddl)
        con.execute(f"SET VARIABLE {_STAGING_VARIABLE} = true")  # :func:`update` may rewrite its tables' rows
        held: dict[str, pa.Table] = {}
        for name in HELD_TABLES:
            empty = _held_schema(name).empty_table()
            con.execute(f"DROP TABLE {name}")
            con.register(name, empty)
            held[name] = empty
        _HELD[id(con)] = held
        yield con
    finally:
        _HELD.pop(id(con), None)
        con.close()


#: Tables a staging connection holds as Arrow tables instead of DuckDB tables: the passes'
#: ``insert`` concatenates, ``update`` replaces columns, and queries read the table registered
#: under its name.  ``protoparticles`` is written by four passes of the default job (the
#: efficiency pass's insert, the resolution, calorimeter and PID updates, the ghosts' append),
#: which in DuckDB cost a rewrite or an ``UPDATE ... FROM`` of the whole table each (issue #19).
#: Only :func:`insert` and :func:`update` may write such a table (SQL ``INSERT``/``UPDATE`` on
#: it fails: it is a view).
HELD_TABLES: tuple[str, ...] = ("protoparticles",)

#: ``id(connection)`` → its held tables, while the staging connection is open.
_HELD: dict[int, dict[str, pa.Table]] = {}


def _held_schema(table: str) -> pa.Schema:
    """The Arrow schema DuckDB gives ``table`` (``SELECT *`` of an empty table of the schema's DDL)."""
    return _held_columns(table)[0]


@functools.cache
def _held_columns(table: str) -> tuple[pa.Schema, dict[str, str]]:
    """``table``'s Arrow schema and its columns' DuckDB type names, from an empty table of the schema's DDL."""
    con = duckdb.connect(MEMORY)
    try:
        con.execute(_staging_ddl()[TABLES.index(table)])
        types = dict(con.execute("SELECT column_name, data_type FROM duckdb_columns() WHERE table_name = ?", [table]).fetchall())
        return query_arrow(con, f"SELECT * FROM {table}").schema, types
    finally:
        con.close()


def _held(con: duckdb.DuckDBPyConnection, table: str) -> dict[str, pa.Table] | None:
    held = _HELD.get(id(con))
    return held if held is not None and table in held else None


def _as_column_types(con: duckdb.DuckDBPyConnection, table: str, data: pa.Table, action: str) -> pa.Table:
    """``data``'s columns cast to ``table``'s column types by DuckDB (as its ``INSERT`` and ``UPDATE`` cast)."""
    types = {f.name: f.type for f in _held_schema(table)}
    if all(data.schema.field(c).type == types[c] for c in data.column_names):
        return data
    fast = [_numeric_cast(data.column(c), types[c]) for c in data.column_names]
    if all(f is not None for f in fast):
        return pa.table(fast, names=data.column_names)
    sql_types = _held_columns(table)[1]
    view = f"_mambah_cast_{table}"
    con.register(view, data)
    try:
        select = ", ".join(f'CAST("{c}" AS {sql_types[c]}) AS "{c}"' for c in data.column_names)
        return query_arrow(con, f"SELECT {select} FROM {view}")
    except duckdb.Error as err:
        raise StoreError(f"cannot {action} '{table}': {_first_line(err)}") from err
    finally:
        with contextlib.suppress(duckdb.Error):
            con.unregister(view)


_FLOAT32_MAX = float(np.finfo(np.float32).max)


def _numeric_cast(column: pa.ChunkedArray, to: pa.DataType) -> pa.Array | pa.ChunkedArray | None:
    """``column`` as ``to`` by numpy, where that is DuckDB's cast too; ``None`` where DuckDB must cast.

    Without NULLs: the same type; float64 → float32 (both round to nearest; DuckDB refuses a
    finite value beyond float32's range, left to it); integers → a narrower or wider integer
    or a float when every value fits (DuckDB refuses the rest).
    """
    t = column.type
    if t == to:
        return column
    if column.null_count or not (pa.types.is_floating(t) or pa.types.is_integer(t)):
        return None
    values = column.to_numpy()
    if pa.types.is_floating(t) and to == pa.float32():
        finite = values[np.isfinite(values)]
        if finite.size and np.abs(finite).max() > _FLOAT32_MAX:
            return None
        return pa.array(values.astype(np.float32), type=to)
    if pa.types.is_integer(t) and pa.types.is_integer(to):
        info = np.iinfo(to.to_pandas_dtype())
        if values.size and (values.min() < info.min or values.max() > info.max):
            return None
        return pa.array(values.astype(to.to_pandas_dtype()), type=to)
    if pa.types.is_integer(t) and to == pa.float64() and (not values.size or np.abs(values).max() <= 2**53):
        return pa.array(values.astype(np.float64), type=to)
    return None


def _insert_held(con: duckdb.DuckDBPyConnection, held: dict[str, pa.Table], table: str, data: pa.Table) -> None:
    """Append ``data`` (some of the columns; the others NULL) to the held ``table``."""
    data = _as_column_types(con, table, data, "insert into")
    schema = _held_schema(table)
    n = data.num_rows
    new = pa.table([data.column(f.name) if f.name in data.column_names else pa.nulls(n, f.type) for f in schema],
                   schema=schema)
    _set_held(con, held, table, pa.concat_tables([held[table], new]))


def _update_held(con: duckdb.DuckDBPyConnection, held: dict[str, pa.Table], table: str, data: pa.Table,
                 keys: Sequence[str]) -> None:
    """Set columns of the held ``table``'s rows from ``data``, matched on ``keys`` (rows ``data`` lacks keep theirs)."""
    import pyarrow.compute as pc

    data = _as_column_types(con, table, data, "update")
    rows = held[table]
    cols = [c for c in data.column_names if c not in keys]
    matched, take = _row_order(rows, data, keys)
    if matched:
        new = {c: data.column(c) if take is None else _taken(data.column(c), take) for c in cols}
    else:  # a subset, rows the table lacks, or keys with NULLs: UPDATE's join, by DuckDB on the keys
        con.register("_mambah_held_rows", pa.table({k: rows.column(k) for k in keys}))
        con.register("_mambah_held_data", pa.table({k: data.column(k) for k in keys}))
        try:
            on = " AND ".join(f't."{k}" = s."{k}"' for k in keys)
            pairs = query_arrow(con, "SELECT t.r, max(s.d) AS d FROM (SELECT *, row_number() OVER () - 1 AS r FROM "
                                     "_mambah_held_rows) AS t JOIN (SELECT *, row_number() OVER () - 1 AS d FROM "
                                     f"_mambah_held_data) AS s ON {on} GROUP BY t.r")
        finally:
            con.unregister("_mambah_held_rows")
            con.unregister("_mambah_held_data")
        src = np.full(rows.num_rows, -1, np.int64)
        src[pairs.column("r").to_numpy()] = pairs.column("d").to_numpy()
        hit = pa.array(src >= 0)
        safe = pa.array(np.maximum(src, 0))
        new = {}
        for c in cols:
            given = data.column(c).take(safe) if data.num_rows else pa.nulls(rows.num_rows, rows.schema.field(c).type)
            new[c] = pc.if_else(hit, given, rows.column(c))
    out = pa.table([new.get(f.name, rows.column(f.name)) for f in rows.schema], schema=rows.schema)
    _set_held(con, held, table, out)


def _set_held(con: duckdb.DuckDBPyConnection, held: dict[str, pa.Table], table: str, value: pa.Table) -> None:
    held[table] = value
    con.register(table, value)


def staged_tables(con: duckdb.DuckDBPyConnection) -> dict[str, pa.Table]:
    """The non-empty data tables of a staging connection as Arrow tables (schema column order)."""
    out: dict[str, pa.Table] = {}
    held = _HELD.get(id(con), {})
    for name in DATA_TABLES:
        t = held[name] if name in held else query_arrow(con, f"SELECT * FROM {name}")
        if t.num_rows:
            out[name] = t
    return out


def staged_metadata(con: duckdb.DuckDBPyConnection) -> dict[str, str]:
    """The ``metadata`` rows set in a staging connection (by the batch's passes, e.g. the generator's)."""
    return {str(k): str(v) for k, v in con.execute("SELECT key, value FROM metadata ORDER BY key").fetchall()}


def insert(con: duckdb.DuckDBPyConnection, table: str, data: Any) -> None:
    """Insert Arrow/pandas/dict ``data`` into ``table`` by column name.

    Raises:
        StoreError: unknown table or column, or a DuckDB error (message kept).
    """
    if table not in DATA_TABLES:
        raise StoreError(f"unknown table '{table}'; data tables are {', '.join(DATA_TABLES)}")
    if isinstance(data, Mapping):
        data = pa.table(dict(data))
    names = list(data.column_names) if isinstance(data, pa.Table) else list(data.columns)
    unknown = sorted(set(names) - set(column_names(table)))
    if unknown:
        raise StoreError(f"table '{table}' has no column(s) {', '.join(unknown)}")
    if (data.num_rows if isinstance(data, pa.Table) else len(data)) == 0:
        return
    data = _rounded(table, data)
    held = _held(con, table)
    if held is not None:
        _insert_held(con, held, table, data if isinstance(data, pa.Table) else pa.Table.from_pandas(data, preserve_index=False))
        return
    view = f"_mambah_insert_{table}"
    con.register(view, data)
    try:
        cols = ", ".join(f'"{c}"' for c in names)
        con.execute(f"INSERT INTO {table} ({cols}) SELECT {cols} FROM {view}")
    except duckdb.Error as err:
        raise StoreError(f"cannot insert into '{table}': {_first_line(err)}") from err
    finally:
        with contextlib.suppress(duckdb.Error):  # an aborted transaction refuses even this
            con.unregister(view)


def update(con: duckdb.DuckDBPyConnection, table: str, data: Any, keys: Sequence[str] = ("batch", "event", "index")) -> None:
    """Set columns of existing rows of ``table`` from Arrow/dict ``data``, matched on ``keys``.

    Raises:
        StoreError: unknown table or column, or a DuckDB error (message kept).
    """
    if table not in DATA_TABLES:
        raise StoreError(f"unknown table '{table}'; data tables are {', '.join(DATA_TABLES)}")
    if isinstance(data, Mapping):
        data = pa.table(dict(data))
    unknown = sorted(set(data.column_names) - set(column_names(table)))
    if unknown:
        raise StoreError(f"table '{table}' has no column(s) {', '.join(unknown)}")
    missing = [k for k in keys if k not in data.column_names]
    if missing:
        raise StoreError(f"update of '{table}' needs the key column(s) {', '.join(missing)}")
    if data.num_rows == 0:
        return
    cols = [c for c in data.column_names if c not in keys]
    if not cols:
        return
    data = _rounded(table, data)
    held = _held(con, table)
    if held is not None:
        _update_held(con, held, table, data, keys)
        return
    if _rewrite_rows(con, table, data, keys):
        return
    view = f"_mambah_update_{table}"
    con.register(view, data)
    try:
        sets = ", ".join(f'"{c}" = s."{c}"' for c in cols)
        on = " AND ".join(f't."{k}" = s."{k}"' for k in keys)
        con.execute(f"UPDATE {table} AS t SET {sets} FROM {view} AS s WHERE {on}")
    except duckdb.InterruptException:
        raise
    except duckdb.Error as err:
        raise StoreError(f"cannot update '{table}': {_first_line(err)}") from err
    finally:
        with contextlib.suppress(duckdb.Error):
            con.unregister(view)


@functools.lru_cache(maxsize=1)
def _staging_ddl() -> tuple[str, ...]:
    """The tables' (in :data:`TABLES` order) and views' DDL of a staging connection, compiled once (10 ms per batch)."""
    return (*create_ddl(), *create_view_ddl())


#: DuckDB variable set on a :func:`staging_connection` (a batch's own database, discarded on any error).
_STAGING_VARIABLE = "mambah_staging"


def _rewrite_rows(con: duckdb.DuckDBPyConnection, table: str, data: pa.Table, keys: Sequence[str]) -> bool:
    """On a staging connection, an update of every row of ``table`` in its order as one rewrite of the rows.

    DuckDB's ``UPDATE ... FROM`` joins the new values to the rows and keeps a version of
    each changed column: for the resolution pass's 31 columns of ~140 000 tracks per
    batch of 50 000 events it cost 0.17-0.18 CPU s, deleting the rows and inserting them
    again with the new columns 0.08-0.10 s (issue #19, ``benchmarks/README.md``).  This
    applies only where the result is the same table: ``data`` has one row per row of
    ``table``, with the same keys, in the same order (the passes update the rows they just
    read in that order) or in another (matched by sorting the keys, :func:`_row_order`), so
    each row gets its own new values and keeps its position;
    the new columns are cast to the column types on insert as ``UPDATE`` casts them.
    Inside one transaction of its own: a failure leaves the rows as they were.  The
    rewrite reads and writes every column, so it runs only for updates of at least a
    third of them (measured per batch of 50 000 events: the PID pass's 18 of 58 columns
    0.12-0.14 s either way, the occupancy pass's 2 of 14 0.007 s by ``UPDATE``, 0.02 s
    rewritten).  A subset of the rows is left to ``UPDATE``.  ``protoparticles``, whose
    updates this was measured on, is now held as Arrow (:data:`HELD_TABLES`) and never
    comes here.

    Returns:
        False where this does not apply (not a staging connection, other rows or another
        order, fewer than a third of the columns): the caller runs the ``UPDATE``.
    """
    if not con.execute(f"SELECT getvariable('{_STAGING_VARIABLE}')").fetchall()[0][0]:
        return False
    if int(con.execute(f"SELECT count(*) FROM {table}").fetchall()[0][0]) != data.num_rows:
        return False
    if 3 * len([c for c in data.column_names if c not in keys]) < len(column_names(table)):
        return False  # a few columns: UPDATE is cheaper (the rewrite reads and writes every column)
    rows = query_arrow(con, f"SELECT * FROM {table}")
    matched, take = _row_order(rows, data, keys)
    if not matched:
        return False
    names = rows.column_names
    merged = pa.table([(data.column(c) if take is None else _taken(data.column(c), take))
                       if c in data.column_names and c not in keys else rows.column(c) for c in names], names=names)
    view = f"_mambah_rewrite_{table}"
    con.register(view, merged)
    try:
        con.execute("BEGIN TRANSACTION")
        con.execute(f"DROP TABLE {table}")  # a fresh table: DELETE would leave the old rows as deleted
        con.execute(_staging_ddl()[TABLES.index(table)])  # versions, which later UPDATEs of the table wade through (3-10x slower)
        cols = ", ".join(f'"{c}"' for c in names)
        con.execute(f"INSERT INTO {table} ({cols}) SELECT {cols} FROM {view}")
        con.execute("COMMIT")
    except duckdb.Error as err:
        with contextlib.suppress(duckdb.Error):
            con.execute("ROLLBACK")
        if isinstance(err, duckdb.InterruptException):
            raise
        raise StoreError(f"cannot update '{table}': {_first_line(err)}") from err
    finally:
        with contextlib.suppress(duckdb.Error):
            con.unregister(view)
    return True


def _row_order(rows: pa.Table, data: pa.Table, keys: Sequence[str]) -> tuple[bool, np.ndarray | None]:
    """Which row of ``data`` updates each row of ``rows``: ``(True, None)`` (the same order),
    ``(True, indices)``, or ``(False, None)``.

    Not matched where the keys hold NULLs, or where ``data``'s keys are not those of
    ``rows`` (another count, a key the table lacks, a key twice in another order):
    there the rewrite does not give what ``UPDATE`` gives.
    """
    have, new = [], []
    for k in keys:
        a, b = rows.column(k), data.column(k)
        if a.null_count or b.null_count:
            return False, None
        have.append(a.to_numpy())
        new.append(b.to_numpy())
    if all(np.array_equal(a, b) for a, b in zip(have, new)):
        return True, None
    # another order (the PID pass reads the tracks by (event, index) after the ghosts were appended)
    by_have, by_new = np.lexsort(have[::-1]), np.lexsort(new[::-1])
    sorted_have = [a[by_have] for a in have]
    if not all(np.array_equal(a, b[by_new]) for a, b in zip(sorted_have, new)):
        return False, None
    if sorted_have[0].size > 1:
        same = np.ones(sorted_have[0].size - 1, bool)
        for a in sorted_have:
            same &= a[1:] == a[:-1]
        if same.any():
            return False, None  # a key twice: which value UPDATE keeps is not defined
    take = np.empty(by_have.size, np.int64)
    take[by_have] = by_new
    return True, take


def _taken(column: pa.ChunkedArray, take: np.ndarray) -> pa.Array | pa.ChunkedArray:
    """``column`` in the row order ``take``: by numpy where it has no NULLs and a numeric type, else by
    Arrow (whose ``take`` of the PID pass's 18 chunked columns measured 58 ms per batch of 50 000
    events under cProfile, numpy's 3 ms)."""
    if column.null_count == 0 and (pa.types.is_floating(column.type) or pa.types.is_integer(column.type)):
        return pa.array(column.to_numpy()[take], type=column.type)
    return column.take(pa.array(take))


def _rounded(table: str, data: Any) -> Any:
    """``data`` with the columns the schema rounds (:func:`mambah.schema.column_decimals`) rounded; else as is."""
    decimals = column_decimals(table)
    names = list(data.column_names) if isinstance(data, pa.Table) else list(data.columns)
    todo = [c for c in names if c in decimals]
    if not todo:
        return data

    if not isinstance(data, pa.Table):
        data = pa.Table.from_pandas(data, preserve_index=False)
    for c in todo:
        i = data.column_names.index(c)
        data = data.set_column(i, c, _round(data.column(i), decimals[c]))
    return data


def _round(col: Any, decimals: int) -> Any:
    """An Arrow column (or array) rounded to ``decimals`` as float64: the rounding every write applies."""
    import pyarrow.compute as pc

    return pc.round(pc.cast(col, pa.float64()), ndigits=decimals)


def stored_values(table: str, column: str, values: np.ndarray) -> np.ndarray:
    """``values`` as the store holds and returns them in ``table.column``.

    Rounded as every write rounds them (:func:`mambah.schema.column_decimals`), then float32
    for a ``REAL`` column (DuckDB's cast of a double to a float rounds to nearest, as numpy's does).
    """
    import sqlalchemy as sa

    from mambah.schema import METADATA

    out = np.asarray(values)
    d = column_decimals(table).get(column)
    if d is not None:
        out = np.asarray(_round(pa.array(np.asarray(out, np.float64)), d))
    kind = METADATA.tables[table].columns[column].type
    if isinstance(kind, sa.Float) and not isinstance(kind, sa.Double):
        out = out.astype(np.float32)
    return out


def query_arrow(con: duckdb.DuckDBPyConnection, sql: str, params: list[Any] | Mapping[str, Any] | None = None) -> pa.Table:
    """Run ``sql`` (positional ``?`` or named ``$name`` parameters) and return the result as an Arrow table."""
    rel = con.sql(sql, params=params or None)
    if rel is None:  # a statement without result
        return pa.table({})
    to_table = getattr(rel, "to_arrow_table", None) or rel.arrow
    return to_table()


#: DuckDB buffer-pool limit of a store connection.  DuckDB's default (80 % of RAM)
#: lets the page cache grow with the store; a bound keeps a long run's memory flat
#: (pages are written to the file and evicted).  Override with MAMBAH_DUCKDB_MEMORY.
MEMORY_LIMIT = "512MB"
#: ... and of a connection that writes (a run appends batches and reads little back): DuckDB keeps
#: the blocks it wrote cached up to its limit, so a writer's RSS grew with the store until 512 MB
#: more (measured, 20 batches of 50k events: 479 -> 780 MiB; 381 -> 391 MiB at 128 MB).
WRITE_MEMORY_LIMIT = "128MB"


#: DuckDB's checkpoint "vacuum" merges the small row groups that batch appends leave into
#: full ones; it rewrites them and leaves the old blocks free inside the file (measured: 200 of
#: 594 blocks free after 6 batches of the default job, 1.4x the data).  A batch's row groups
#: are written once and never merged (``max_vacuum_tasks = 0``): no free blocks, 0.72x the
#: file size of the merging default (the data tables are append-only).
VACUUM_TASKS = 0


def _connect(path: str, *, read_only: bool) -> duckdb.DuckDBPyConnection:
    config: dict[str, str | bool | int | float | list[str]] = {
        "memory_limit": os.environ.get("MAMBAH_DUCKDB_MEMORY", MEMORY_LIMIT if read_only or path == MEMORY else WRITE_MEMORY_LIMIT),
        "max_vacuum_tasks": VACUUM_TASKS,
    }
    foreign = foreign_database(path)  # a SQLite file: DuckDB would download its sqlite extension to open it
    if foreign:
        raise StoreError(foreign)
    try:
        return duckdb.connect(path, read_only=read_only, config=config)
    except duckdb.Error as err:
        if is_lock_conflict(err):
            raise StoreError(duckdb_error_line(err, path)) from err
        raise StoreError(f"'{path}' is not a readable DuckDB store: {_first_line(err)}") from err


def _ensure_views(con: duckdb.DuckDBPyConnection) -> None:
    """Temporary :data:`~mambah.schema.VIEWS` on a connection to a store file made before they existed."""
    present = {r[0] for r in con.execute("SELECT view_name FROM duckdb_views() WHERE NOT internal").fetchall()}
    for name, ddl in zip(VIEWS, create_view_ddl(temporary=True), strict=True):
        if name not in present:
            try:
                con.execute(ddl)
            except duckdb.Error as err:  # a store older than a column the view reads: the tables still work
                log.info("store has no view %s (%s)", name, _first_line(err))


def _initialise(con: duckdb.DuckDBPyConnection, path: str, primary_keys: bool, rows: list[list[str]]) -> None:
    """Create the tables and write the metadata ``rows`` in one transaction."""
    try:
        con.execute("BEGIN TRANSACTION")
        for ddl in (*create_ddl(primary_keys=primary_keys), *create_view_ddl()):
            con.execute(ddl)
        con.executemany("INSERT OR REPLACE INTO metadata VALUES (?, ?)", rows)
        con.execute("COMMIT")
    except duckdb.Error as err:
        with contextlib.suppress(duckdb.Error):
            con.execute("ROLLBACK")
        raise StoreError(f"cannot create store '{path}': {_first_line(err)}") from err


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` if it exists (the lock DuckDB takes on a store).

    Raises:
        StoreError: another process has the store open (reading or writing).
    """
    try:
        fd = os.open(path, os.O_RDWR)
    except FileNotFoundError:
        yield
        return
    except OSError as err:
        raise StoreError(f"cannot replace '{path}': {err.strerror}") from err
    try:
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            if err.errno in (errno.EACCES, errno.EAGAIN):
                raise StoreError(
                    f"store '{path}' is in use by another process; it was not replaced (stop that process or choose another output)"
                ) from None
            raise StoreError(f"cannot lock '{path}': {err.strerror}") from err
        yield
    finally:
        os.close(fd)


_first_line = first_line
