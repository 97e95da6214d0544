"""Integrity checks of a store file (``mambah check``) and DuckDB errors as one line.

:func:`check_store` reads every table of a store in full (so that DuckDB
verifies the checksum of every block it holds), compares the ``batches`` table
with the data rows and checks the schema version and the run record.  Each
problem is one line; an empty list means the store is sound.  The resume path
of :mod:`sim.core.runner` runs the same check before it trusts a store.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb

from mambah.errors import SchemaVersionError, StoreError
from mambah.schema import DATA_TABLES, SCHEMA_VERSION, TABLES

__all__ = ("CheckReport", "check_store", "duckdb_error_line", "foreign_database", "is_lock_conflict", "truncation_problem")

#: the text DuckDB puts in a file-lock conflict (and in nothing else)
_LOCK_MARKERS = ("could not set lock on file", "conflicting lock is held")


def is_lock_conflict(err: BaseException) -> bool:
    """Whether a DuckDB error is a real file-lock conflict (another process holds the file)."""
    text = str(err).lower()
    return any(m in text for m in _LOCK_MARKERS)


def duckdb_error_line(err: BaseException, path: str | Path) -> str:
    """One line for a DuckDB error met while reading or writing ``path``.

    Distinguishes a lock conflict, a full disk, corruption (checksum mismatch,
    truncation) and other I/O errors; the file is always named.
    """
    text = str(err).strip()
    first = text.splitlines()[0] if text else type(err).__name__
    low = text.lower()
    if is_lock_conflict(err):
        return f"store '{path}' is in use by another process: {first}"
    if "no space left on device" in low:
        return f"no space left on device writing '{path}': {first}"
    if "checksum" in low or "corrupt" in low or "could not read enough bytes" in low or "truncat" in low:
        return f"store '{path}' is damaged (run 'mambah check {path}'): {first}"
    if "not a valid duckdb database file" in low:  # the line EventStore.open gives (mambah info/query)
        return f"'{path}' is not a readable DuckDB store: {first}"
    return f"cannot read or write store '{path}': {first}"


#: the first bytes of a SQLite 3 database file (DuckDB would try to download its sqlite extension to open it)
_SQLITE_MAGIC = b"SQLite format 3\x00"


def foreign_database(path: str | Path) -> str | None:
    """One line if ``path`` is a SQLite database rather than a DuckDB store, else None.

    DuckDB opens a SQLite file through its ``sqlite`` extension, which it tries to download
    (``Failed to download extension "sqlite_scanner"``): the file is named for what it is instead.
    """
    try:
        with open(path, "rb") as fh:
            head = fh.read(len(_SQLITE_MAGIC))
    except OSError:
        return None
    if head == _SQLITE_MAGIC:
        return f"'{path}' is a SQLite database, not a DuckDB store (mambah stores are DuckDB files: mambah run -o FILE)"
    return None


#: bytes before the first block of a DuckDB file: the main header and the two database headers
_FILE_HEADERS = 3 * 4096


def truncation_problem(con: duckdb.DuckDBPyConnection, path: str | Path) -> str | None:
    """One line if the store file ``path`` is shorter than the blocks its header records, else None.

    A cut copy or download: DuckDB opens it and answers catalogue queries (``mambah info``,
    ``count(*)``); only reading a lost block fails.  ``None`` while a write-ahead log is
    pending (its blocks are not in the file yet).

    Args:
        con: a connection to ``path``, opened just now.
        path: the store file.
    """
    if os.path.exists(f"{path}.wal"):
        return None
    block_size, total_blocks = con.execute("SELECT block_size, total_blocks FROM pragma_database_size()").fetchone() or (0, 0)
    need = _FILE_HEADERS + int(block_size) * int(total_blocks)
    size = os.path.getsize(path)
    if size >= need:
        return None
    return f"store '{path}' is damaged (run 'mambah check {path}'): the file is truncated, {size:,} bytes where its header records {need:,}"


@dataclass
class CheckReport:
    """What :func:`check_store` found.

    Attributes:
        path: the store file.
        problems: one line per damage found (unreadable data, inconsistent
            batches, wrong schema); a store with problems must not be trusted.
        stray_batches: batch numbers that have data rows but no ``batches`` row
            (what an interrupted write could leave; ``--resume`` removes them
            before it re-runs those batches).
        rows: rows read per table.
    """

    path: str
    problems: list[str] = field(default_factory=list)
    stray_batches: list[int] = field(default_factory=list)
    rows: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """No damage and no stray rows."""
        return not self.problems and not self.stray_batches

    def lines(self) -> list[str]:
        """Every problem as one line, stray batches included."""
        out = list(self.problems)
        if self.stray_batches:
            shown = ", ".join(map(str, self.stray_batches[:10])) + (" ..." if len(self.stray_batches) > 10 else "")
            out.append(
                f"{len(self.stray_batches)} batch(es) have data rows but are not recorded as complete ({shown}); "
                "'mambah run --resume' removes and re-runs them"
            )
        return out


def check_store(path: str | Path, *, con: duckdb.DuckDBPyConnection | None = None) -> CheckReport:
    """Read all of the store ``path`` and report every problem found.

    Args:
        path: the store file, or a dataset directory (:mod:`mambah.dataset`).
        con: an open connection to it (e.g. the writer's); default: open
            ``path`` read-only for the check.

    Returns:
        The report; raises only if ``path`` is not a file.

    Raises:
        StoreError: ``path`` does not exist or is a directory.
    """
    p = Path(path)
    report = CheckReport(str(p))
    if con is None:
        if not p.exists():
            raise StoreError(f"store '{p}' does not exist")
        if p.is_dir():  # a dataset store (mambah.dataset): every batch directory looked at, every Parquet file read in full
            from mambah.dataset import dataset_connection, dataset_problems, read_dataset_metadata

            read_dataset_metadata(p)  # not a dataset, or another schema version: raised as for a store file
            report.problems.extend(dataset_problems(p, schemas=True))
            if report.problems:  # the views would fail on (or silently skip) the damaged directories
                return report
            own = dataset_connection(p, strict=False)
            try:
                _check(own, report)
            finally:
                own.close()
            return report
        foreign = foreign_database(p)
        if foreign:
            report.problems.append(foreign)
            return report
        try:
            own = duckdb.connect(str(p), read_only=True)
        except duckdb.Error as err:
            report.problems.append(duckdb_error_line(err, p))
            return report
        try:
            truncated = truncation_problem(own, p)
            if truncated:  # every table behind the cut would be one more line saying the same
                report.problems.append(truncated)
                return report
            _check(own, report)
        finally:
            own.close()
    else:
        _check(con, report)
    return report


def _check(con: duckdb.DuckDBPyConnection, report: CheckReport) -> None:
    path = report.path
    present = {r[0] for r in _rows(con, report, "SELECT table_name FROM information_schema.tables WHERE table_schema = 'main'")}
    missing = [t for t in TABLES if t not in present]
    if missing:
        report.problems.append(f"store '{path}' lacks table(s) {', '.join(missing)}: not a complete Mambah store")
        if "metadata" in missing:
            return
    meta = dict(_rows(con, report, "SELECT key, value FROM metadata"))
    version = meta.get("schema_version")
    if version is None:
        report.problems.append(f"store '{path}' has no schema version in its metadata")
    elif version != str(SCHEMA_VERSION):
        report.problems.append(str(SchemaVersionError(
            f"store '{path}' has schema version {version}, this Mambah reads version {SCHEMA_VERSION}"
        )))
        return
    # every table in full: DuckDB verifies each block's checksum as it reads it
    for name in TABLES:
        if name not in present:
            continue
        row = _rows(con, report, f"SELECT count(*), max(hash(COLUMNS(*))) FROM {name}", what=f"table '{name}'")
        if row:
            report.rows[name] = int(row[0][0])
    if "batches" not in present:
        return
    recorded = {int(b): int(n) for b, n in _rows(con, report, "SELECT batch, n_events FROM batches")}
    stray: set[int] = set()
    for name in DATA_TABLES:
        if name not in present:
            continue
        for (b,) in _rows(con, report, f"SELECT DISTINCT batch FROM {name} WHERE batch NOT IN (SELECT batch FROM batches)"):
            stray.add(int(b))
    report.stray_batches = sorted(stray)
    if "events" in present:
        bad = _rows(
            con, report,
            "SELECT b.batch, b.n_events, count(e.event), count(DISTINCT e.event), min(e.event), max(e.event) "
            "FROM batches b LEFT JOIN events e ON e.batch = b.batch GROUP BY b.batch, b.n_events "
            "HAVING count(e.event) <> b.n_events OR count(DISTINCT e.event) <> b.n_events "
            "OR min(e.event) <> 0 OR max(e.event) <> b.n_events - 1 ORDER BY b.batch",
        )
        for b, n, rows, distinct, _lo, _hi in bad[:20]:
            report.problems.append(
                f"batch {b} is recorded with {n} events but table 'events' holds {rows} row(s) ({distinct} distinct event numbers)"
            )
        if len(bad) > 20:
            report.problems.append(f"... and {len(bad) - 20} more batch(es) whose event rows do not match 'batches'")
    run = meta.get("run")
    if run is not None:  # stores written through the API alone may have no run record
        _check_run_record(run, recorded, report)


def _check_run_record(run: str, recorded: dict[int, int], report: CheckReport) -> None:
    try:
        rec = json.loads(run)
        events, batch_size = int(rec["events"]), int(rec["batch_size"])
    except (ValueError, KeyError, TypeError):
        report.problems.append(f"store '{report.path}' has a malformed run record: {run[:80]!r}")
        return
    if events <= 0 or batch_size <= 0:
        report.problems.append(f"store '{report.path}' has a run record with events={events} batch_size={batch_size}")
        return
    n_batches = -(-events // batch_size)
    wrong = [
        (b, n) for b, n in sorted(recorded.items())
        if not 0 <= b < n_batches or n != min(batch_size, events - b * batch_size)
    ]
    for b, n in wrong[:20]:
        report.problems.append(
            f"batch {b} with {n} events does not belong to the recorded run (events={events}, batch_size={batch_size})"
        )


def _rows(con: duckdb.DuckDBPyConnection, report: CheckReport, sql: str, *, what: str = "") -> list[Any]:
    try:
        return con.execute(sql).fetchall()
    except duckdb.Error as err:
        line = duckdb_error_line(err, report.path)
        report.problems.append(f"{what}: {line}" if what else line)
        return []
