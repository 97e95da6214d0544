"""Read-only SQL on a store: statement checks, bounded streaming, atomic result files.

``mambah query`` opens a store read-only, but DuckDB SQL can still reach
outside it (``COPY … TO``, ``ATTACH``, ``INSTALL``/``LOAD``, ``SET``,
``EXPORT DATABASE``).  :func:`check_read_only_sql` refuses every statement that
is not a query before anything runs; :func:`lock_down` also locks the
connection's configuration and turns extension auto-install off.  Reading
files (``read_csv``, ``read_parquet``) stays allowed.  Results are streamed
(:func:`stream`), so printing 50 rows of a huge result costs 50 rows, and
result files are written under a temporary name and renamed on success
(:func:`write_result`).
"""

from __future__ import annotations

import contextlib
import os
import re
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import duckdb
import pyarrow as pa

from mambah.errors import ConfigError, StoreError

T = TypeVar("T")

__all__ = ("READ_ONLY_PRAGMAS", "check_read_only_sql", "head", "lock_down", "run_interruptible", "stream", "write_csv_stream", "write_result")

#: PRAGMAs that only read (``PRAGMA table_info('events')`` and friends).
READ_ONLY_PRAGMAS = frozenset({
    "table_info", "show_tables", "show_tables_expanded", "show", "version", "database_size",
    "database_list", "storage_info", "functions", "platform", "metadata_info", "collations",
    "show_databases",
})

_EXPLAIN = re.compile(r"^\s*explain(\s+analyze)?\s+", re.IGNORECASE)
_PRAGMA = re.compile(r"^\s*pragma\s+([a-z_][a-z0-9_]*)", re.IGNORECASE)


def _type_name(stmt: Any) -> str:
    return str(stmt.type).rsplit(".", 1)[-1].upper()


def check_read_only_sql(con: duckdb.DuckDBPyConnection, sql: str) -> None:
    """Refuse ``sql`` unless it is one query that only reads.

    Allowed: ``SELECT`` (with ``DESCRIBE``, ``SHOW``, ``SUMMARIZE``, ``FROM …``,
    ``WITH …``), ``EXPLAIN [ANALYZE]`` of a query and the read-only PRAGMAs of
    :data:`READ_ONLY_PRAGMAS`.

    Raises:
        ConfigError: a statement that writes or changes settings (names its
            type), more than one statement, an empty or unparsable text.
    """
    try:
        statements = con.extract_statements(sql)
    except duckdb.Error as err:
        raise ConfigError(f"query failed: {_first(err)}") from None
    if not statements:
        raise ConfigError("the SQL text holds no statement")
    if len(statements) > 1:
        raise ConfigError(f"query takes one SQL statement, got {len(statements)}; run them one by one")
    stmt = statements[0]
    kind = _type_name(stmt)
    text = stmt.query.strip()
    if kind == "SELECT":
        return
    if kind == "EXPLAIN":
        inner = _EXPLAIN.sub("", text, count=1)
        check_read_only_sql(con, inner)
        return
    if kind == "PRAGMA":
        m = _PRAGMA.match(text)
        if m and m.group(1).lower() in READ_ONLY_PRAGMAS:
            return
        name = m.group(1) if m else text.split()[0]
        raise ConfigError(
            f"'mambah query' is read-only: PRAGMA {name} is refused; read-only PRAGMAs: {', '.join(sorted(READ_ONLY_PRAGMAS))}"
        )
    raise ConfigError(
        f"'mambah query' is read-only: {kind} statements are refused (allowed: SELECT, DESCRIBE, SHOW, "
        "SUMMARIZE, EXPLAIN, read-only PRAGMAs; read files with read_csv/read_parquet)"
    )


def lock_down(con: duckdb.DuckDBPyConnection) -> None:
    """Turn extension auto-install/auto-load off and lock ``con``'s configuration (no ``SET`` after this)."""
    for stmt in ("SET autoinstall_known_extensions = false", "SET autoload_known_extensions = false",
                 "SET lock_configuration = true"):
        con.execute(stmt)


def stream(con: duckdb.DuckDBPyConnection, sql: str, *, batch_rows: int = 65_536) -> pa.RecordBatchReader:
    """The result of ``sql`` as a stream of Arrow record batches (nothing materialised).

    Raises:
        StoreError: the query fails (DuckDB's first line).
    """
    try:
        rel = con.sql(sql)
        if rel is None:  # pragma: no cover - check_read_only_sql lets only queries through
            return pa.RecordBatchReader.from_batches(pa.schema([]), [])
        reader = getattr(rel, "to_arrow_reader", None) or rel.fetch_arrow_reader
        return reader(batch_rows)  # type: ignore[no-any-return]
    except duckdb.Error as err:
        raise StoreError(f"query failed: {_first(err)}") from err


def head(reader: pa.RecordBatchReader, n_rows: int) -> tuple[pa.Table, bool]:
    """The first ``n_rows`` rows of ``reader`` and whether there were more (reads at most one batch past them)."""
    batches: list[pa.RecordBatch] = []
    have = 0
    more = False
    for b in _batches(reader):
        if have >= n_rows:
            more = b.num_rows > 0 or more
            if more:
                break
            continue
        batches.append(b)
        have += b.num_rows
    table = pa.Table.from_batches(batches, schema=reader.schema)
    if table.num_rows > n_rows:
        more = True
        table = table.slice(0, n_rows)
    return table, more


def write_result(reader: pa.RecordBatchReader, output: str | os.PathLike[str], fmt: str) -> int:
    """Write a streamed result to ``output`` (``csv`` or ``parquet``) atomically; returns the rows written.

    The file is written under a temporary name in the same directory and
    renamed when complete; on any failure (disk full, Ctrl-C) the temporary
    file is removed and ``output`` is left as it was.

    Raises:
        ConfigError: ``output`` is a directory or its directory does not exist.
        StoreError: the query or the write fails (the reason in one line).
    """
    out = Path(output)
    if out.is_dir():
        raise ConfigError(f"output '{out}' is a directory; give a file name such as '{out / ('result.' + fmt)}'")
    parent = out.parent if str(out.parent) else Path(".")
    if not parent.is_dir():
        raise ConfigError(f"directory '{parent}' of output '{out}' does not exist")
    tmp = parent / f".{out.name}.tmp-{uuid.uuid4().hex[:8]}"
    rows = 0
    try:
        if fmt == "parquet":
            import pyarrow.parquet as pq

            with pq.ParquetWriter(str(tmp), reader.schema) as w:
                for b in _batches(reader):
                    w.write_batch(b)
                    rows += b.num_rows
        elif fmt == "csv":
            import pyarrow.csv as pacsv

            with pacsv.CSVWriter(str(tmp), reader.schema) as cw:
                for b in _batches(reader):
                    cw.write_batch(b)
                    rows += b.num_rows
        else:
            raise ConfigError(f"unknown result format {fmt!r}; formats: csv, parquet")
        os.replace(tmp, out)
    except OSError as err:
        raise StoreError(f"cannot write '{out}': {(err.strerror or _first(err)).replace(str(tmp), str(out))}; nothing was written") from err
    except pa.ArrowException as err:
        raise StoreError(f"cannot write '{out}': {_first(err).replace(str(tmp), str(out))}; nothing was written") from err
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()
    return rows


def write_csv_stream(reader: pa.RecordBatchReader, sink: Any) -> int:
    """Write a streamed result as CSV to the binary stream ``sink`` (e.g. stdout); returns the rows written."""
    import pyarrow.csv as pacsv

    rows = 0
    with pacsv.CSVWriter(sink, reader.schema) as w:
        for b in _batches(reader):
            w.write_batch(b)
            rows += b.num_rows
    return rows


def run_interruptible(con: duckdb.DuckDBPyConnection, fn: Callable[[], T]) -> T:
    """Run ``fn`` (which reads results of ``con``) in a helper thread, so that Ctrl-C stops it.

    While DuckDB executes inside a result stream, the main thread is in C++ and
    Python's signal handlers wait; here the main thread only waits, a
    ``KeyboardInterrupt`` (or the SIGTERM handler's exception) calls
    ``con.interrupt()``, and the interruption is re-raised once DuckDB stopped.
    """
    import threading

    box: dict[str, Any] = {}
    # waited on instead of Thread.join: a KeyboardInterrupt inside join() marks the thread stopped
    # while it still runs (CPython gh-90882), and the process then left before the helper's cleanup
    # (a result file's temporary copy) ran
    done = threading.Event()

    def target() -> None:
        try:
            box["value"] = fn()
        except BaseException as err:  # handed to the main thread
            box["error"] = err
        finally:
            done.set()

    worker = threading.Thread(target=target, name="mambah-query", daemon=True)
    worker.start()
    try:
        while not done.wait(0.05):
            pass
    except BaseException:
        con.interrupt()
        if done.wait(10.0):
            worker.join(1.0)
        raise
    worker.join()  # finished: the helper's frames (and the result stream they hold) are gone before the caller closes
    # taken out of ``box``: an error left there would be a cycle (error -> traceback -> target's frame -> box -> error)
    # keeping the helper's frames and their DuckDB result alive until the garbage collector runs, so the next open
    # of the same store in this process met the locked configuration of the still-open database
    error, value = box.pop("error", None), box.pop("value", None)
    if error is not None:
        raise error
    return value  # type: ignore[no-any-return]


def _batches(reader: pa.RecordBatchReader) -> Any:
    """Iterate ``reader``, turning DuckDB errors raised mid-stream into one-line StoreErrors."""
    while True:
        try:
            b = reader.read_next_batch()
        except StopIteration:
            return
        except duckdb.Error as err:
            raise StoreError(f"query failed: {_first(err)}") from err
        yield b


def _first(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__
