"""Streaming ntuple writers: ROOT TTree (uproot), Parquet (pyarrow), CSV.

Every writer takes chunks (dict column -> 1-D numpy array, the same columns and
dtypes each time), writes them as they come (memory stays flat), and writes to
a temporary name in the output's directory that :meth:`NtupleFile.close`
renames to the final path.  :meth:`NtupleFile.abort` (called on any error)
deletes the temporary file, so an incomplete output is never left under the
final name.

ROOT files are written with ``uproot.recreate`` + ``mktree`` + ``extend`` (a
TTree; small chunks are buffered to at least ``basket_rows`` entries per
basket).  Compression: ``LZ4`` (default), ``ZLIB``, ``LZMA``, ``ZSTD`` or
``NONE``, optionally with a level (``"ZSTD:5"``; default level 1).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from mambah.errors import ExportError

__all__ = (
    "FORMATS",
    "COMPRESSIONS",
    "NtupleFile",
    "RootFile",
    "ParquetFile",
    "CsvFile",
    "open_ntuple",
    "resolve_format",
    "parse_compression",
    "check_output",
)

log = logging.getLogger(__name__)

FORMATS = ("root", "parquet", "csv")
COMPRESSIONS = ("LZ4", "ZLIB", "LZMA", "ZSTD", "NONE")
_SUFFIX = {".root": "root", ".parquet": "parquet", ".pq": "parquet", ".csv": "csv"}
_FORMAT_SUFFIX = {"root": ".root", "parquet": ".parquet", "csv": ".csv"}
_PARQUET_CODEC = {"LZ4": "lz4", "ZSTD": "zstd", "ZLIB": "gzip", "NONE": "none"}


def resolve_format(path: str | os.PathLike[str], fmt: str | None = None) -> str:
    """The output format: ``fmt`` if given, else from the suffix of ``path``.

    Raises:
        ExportError: unknown format, or no format and an unknown suffix.
    """
    if fmt is not None:
        f = str(fmt).lower()
        if f not in FORMATS:
            raise ExportError(f"unknown format {fmt!r}; formats are {', '.join(FORMATS)}")
        named = _SUFFIX.get(Path(path).suffix.lower())
        if named is not None and named != f:  # a CSV file named .root would be a silent substitute
            raise ExportError(
                f"output '{path}' is named as a {named} file but the format is {f}; "
                f"name it '{Path(path).with_suffix(_FORMAT_SUFFIX[f])}' or give the format {named}"
            )
        return f
    suffix = Path(path).suffix.lower()
    if suffix not in _SUFFIX:
        raise ExportError(
            f"cannot tell the format of '{path}' from its suffix; use one of {', '.join(_SUFFIX)} or give the format (root, parquet, csv)"
        )
    return _SUFFIX[suffix]


def parse_compression(text: str | None) -> tuple[str, int | None]:
    """``"LZ4"``, ``"zstd:5"``, ``"none"`` -> ``(NAME, level or None)``; ``None`` -> ``("LZ4", None)``.

    Raises:
        ExportError: unknown algorithm or bad level.
    """
    if text is None:
        return "LZ4", None
    name, _, level = str(text).partition(":")
    name = name.strip().upper()
    if name in ("", "NO", "OFF"):
        name = "NONE"
    if name not in COMPRESSIONS:
        raise ExportError(f"unknown compression {text!r}; choose {', '.join(COMPRESSIONS)} (optionally NAME:LEVEL)")
    if not level:
        return name, None
    try:
        lev = int(level)
    except ValueError:
        raise ExportError(f"compression level in {text!r} must be an integer") from None
    if not 0 <= lev <= 22:
        raise ExportError(f"compression level in {text!r} must be between 0 and 22")
    return name, lev


def check_output(path: str | os.PathLike[str], *, overwrite: bool) -> Path:
    """Refuse an output that exists (without ``overwrite``) or whose directory cannot be written.

    Raises:
        ExportError: naming the path.
    """
    p = Path(path)
    if p.exists() and not overwrite:
        raise ExportError(f"output '{p}' exists; pass overwrite=True (--overwrite) to replace it")
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.exists():
        raise ExportError(f"directory '{parent}' of output '{p}' does not exist")
    if not parent.is_dir():
        raise ExportError(f"'{parent}' (directory of output '{p}') is not a directory")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ExportError(f"directory '{parent}' of output '{p}' is not writable")
    return p


def _why(err: BaseException, tmp: Path, path: Path) -> str:
    """``err``'s first line, the temporary file (a detail of how the output is written) named as the output."""
    text = (getattr(err, "strerror", None) if isinstance(err, OSError) and err.strerror else None) or str(err)
    return text.strip().splitlines()[0].replace(str(tmp), str(path)) if text.strip() else type(err).__name__


def _tmp_name(path: Path) -> Path:
    return path.with_name(f".{path.name}.ficino-{os.getpid()}.tmp")


class NtupleFile:
    """Base of the writers: temporary name, rename on :meth:`close`, delete on :meth:`abort`.

    Args:
        path: final output path.
        dtypes: column -> numpy dtype string, in column order.
        units: column -> unit (``""`` for none); stored where the format allows.
    """

    format = ""

    def __init__(self, path: str | os.PathLike[str], dtypes: Mapping[str, str], units: Mapping[str, str] | None = None) -> None:
        self.path = Path(path)
        self.tmp = _tmp_name(self.path)
        self.dtypes = dict(dtypes)
        self.units = dict(units or {})
        self.rows = 0
        self.closed = False
        self._remove(self.tmp)

    def write(self, columns: Mapping[str, np.ndarray]) -> None:
        """Append one chunk (every column of :attr:`dtypes`, same length)."""
        missing = [c for c in self.dtypes if c not in columns]
        if missing:
            raise ExportError(f"chunk lacks column(s) {', '.join(missing)}")
        n = len(next(iter(columns.values()))) if columns else 0
        if n == 0:
            return
        chunk = {c: self._column(columns[c], self.dtypes[c]) for c in self.dtypes}
        try:
            self._write(chunk)
        except OSError as err:
            raise ExportError(f"cannot write '{self.path}': {err}") from err  # the user named the output, not the temporary
        self.rows += n

    def close(self) -> int:
        """Finish the file and rename it to :attr:`path`; returns its size in bytes."""
        if self.closed:
            return _size(self.path)
        try:
            self._finish()
        except BaseException:
            self.abort()
            raise
        self.closed = True
        try:
            if self.path.is_dir() and not self.tmp.is_dir():
                shutil.rmtree(self.path)
            if self.tmp.is_dir() and self.path.exists():
                old = self.path.with_name(f".{self.path.name}.ficino-{os.getpid()}.old")
                os.replace(self.path, old)
                os.replace(self.tmp, self.path)
                self._remove(old)
            else:
                os.replace(self.tmp, self.path)
        except OSError as err:
            self._remove(self.tmp)
            raise ExportError(f"cannot move the finished ntuple to '{self.path}': {err}") from err
        log.info("wrote %d rows to %s", self.rows, self.path)
        return _size(self.path)

    def abort(self) -> None:
        """Drop the temporary file (nothing is left under the final name)."""
        if self.closed:
            return
        self.closed = True
        with contextlib.suppress(Exception):
            self._finish()
        self._remove(self.tmp)

    @staticmethod
    def _column(values: np.ndarray, dtype: str) -> np.ndarray:
        """``values`` as a contiguous array of ``dtype`` (native byte order)."""
        return np.ascontiguousarray(values, dtype=dtype)

    # subclasses
    def _write(self, chunk: dict[str, np.ndarray]) -> None:
        raise NotImplementedError

    def _finish(self) -> None:
        raise NotImplementedError

    @staticmethod
    def _remove(p: Path) -> None:
        with contextlib.suppress(FileNotFoundError):
            if p.is_dir():
                shutil.rmtree(p)
            else:
                p.unlink()

    def __enter__(self) -> NtupleFile:
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def _size(p: Path) -> int:
    if p.is_dir():
        return sum(f.stat().st_size for f in p.rglob("*") if f.is_file())
    return p.stat().st_size if p.exists() else 0


class RootFile(NtupleFile):
    """A flat TTree written with uproot (``mktree`` + ``extend`` per chunk).

    Args:
        tree: TTree name.
        compression: e.g. ``"LZ4"``, ``"ZSTD:5"``, ``"NONE"``.
        title: TTree title.
        basket_rows: chunks are buffered until they hold this many entries.
        chunks: how many chunks are coming, if known: the TTree's basket arrays are made that
            long (at most 1000) so uproot does not rewrite the tree's metadata when they fill
            (its default of 10 grows tenfold, each time rewriting the metadata of every
            branch: ≈ 0.26 s of CPU for 312 branches).
    """

    format = "root"

    def __init__(
        self,
        path: str | os.PathLike[str],
        dtypes: Mapping[str, str],
        units: Mapping[str, str] | None = None,
        *,
        tree: str = "DecayTree",
        compression: str | None = None,
        title: str = "",
        basket_rows: int = 10_000,
        chunks: int | None = None,
    ) -> None:
        import uproot

        super().__init__(path, dtypes, units)
        name, level = parse_compression(compression)
        comp = None if name == "NONE" else getattr(uproot, name)(1 if level is None else level)
        if not tree or "/" in tree:
            raise ExportError(f"bad tree name {tree!r}")
        self.basket_rows = int(basket_rows)
        self._buffer: list[dict[str, np.ndarray]] = []
        self._buffered = 0
        try:
            self._file = uproot.recreate(self.tmp, compression=comp)
            capacity = 10 if chunks is None else min(max(10, int(chunks) + 2), 1000)
            self._tree = self._file.mktree(tree, {c: np.dtype(t) for c, t in self.dtypes.items()}, title=title,
                                           initial_basket_capacity=capacity)
        except BaseException as err:  # Ctrl-C inside mktree too: the object never exists, so no abort() would remove it
            with contextlib.suppress(Exception):
                self._file.close()
            self._remove(self.tmp)
            if isinstance(err, OSError):
                raise ExportError(f"cannot create '{self.path}': {_why(err, self.tmp, self.path)}") from err
            raise

    @staticmethod
    def _column(values: np.ndarray, dtype: str) -> np.ndarray:
        """As :meth:`NtupleFile._column`, but a big-endian ``dtype`` array is kept: ROOT stores big-endian, so
        uproot's ``extend`` then has nothing to convert (the export's build worker sends them so)."""
        big = np.dtype(dtype).newbyteorder(">")
        if values.dtype == big and values.ndim == 1 and values.flags.c_contiguous:
            return values
        return np.ascontiguousarray(values, dtype=dtype)

    def _write(self, chunk: dict[str, np.ndarray]) -> None:
        self._buffered += len(next(iter(chunk.values())))
        if self._buffered < self.basket_rows:  # kept past this call: a copy (the caller may reuse its arrays,
            chunk = {c: v.copy() for c, v in chunk.items()}  # e.g. the build worker's shared-memory slots)
        self._buffer.append(chunk)
        if self._buffered >= self.basket_rows:
            self._flush()

    def _flush(self) -> None:
        if not self._buffer:
            return
        if len(self._buffer) == 1:
            data = self._buffer[0]
        else:
            data = {c: np.concatenate([b[c] for b in self._buffer]) for c in self.dtypes}
        self._buffer, self._buffered = [], 0
        self._tree.extend(data)

    def _finish(self) -> None:
        try:
            self._flush()
        finally:
            self._file.close()


class ParquetFile(NtupleFile):
    """Parquet: one file (row group per chunk) or, with ``dataset=True``, a directory of part files.

    Units are stored as field metadata ``{"unit": ...}``.
    """

    format = "parquet"

    def __init__(
        self,
        path: str | os.PathLike[str],
        dtypes: Mapping[str, str],
        units: Mapping[str, str] | None = None,
        *,
        compression: str | None = None,
        dataset: bool = False,
    ) -> None:
        import pyarrow.parquet as pq

        super().__init__(path, dtypes, units)
        name, level = parse_compression(compression)
        if name not in _PARQUET_CODEC:
            raise ExportError(f"compression {name} is not available for Parquet; choose {', '.join(_PARQUET_CODEC)}")
        self._codec = _PARQUET_CODEC[name]
        self._level = level
        fields = []
        for c, t in self.dtypes.items():
            unit = self.units.get(c, "")
            fields.append(pa.field(c, pa.from_numpy_dtype(np.dtype(t)), metadata={"unit": unit} if unit else None))
        self.schema = pa.schema(fields)
        self.dataset = dataset
        self._parts = 0
        self._writer: Any = None
        try:
            if dataset:
                self.tmp.mkdir()
            else:
                self._writer = pq.ParquetWriter(self.tmp, self.schema, compression=self._codec, compression_level=level)
        except BaseException as err:  # Ctrl-C as well: nothing is left behind by a writer that never existed
            self._remove(self.tmp)
            if isinstance(err, OSError):
                raise ExportError(f"cannot create '{self.path}': {_why(err, self.tmp, self.path)}") from err
            raise

    def _write(self, chunk: dict[str, np.ndarray]) -> None:
        import pyarrow.parquet as pq

        table = pa.Table.from_arrays([pa.array(chunk[c]) for c in self.dtypes], schema=self.schema)
        if self.dataset:
            pq.write_table(
                table, self.tmp / f"part-{self._parts:05d}.parquet", compression=self._codec, compression_level=self._level
            )
            self._parts += 1
        else:
            self._writer.write_table(table)

    def _finish(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        elif self.dataset and self._parts == 0 and self.tmp.is_dir():
            import pyarrow.parquet as pq

            pq.write_table(self.schema.empty_table(), self.tmp / "part-00000.parquet")


class CsvFile(NtupleFile):
    """CSV with a header line (for small samples; no compression)."""

    format = "csv"

    def __init__(
        self, path: str | os.PathLike[str], dtypes: Mapping[str, str], units: Mapping[str, str] | None = None, *, compression: str | None = None
    ) -> None:
        import pyarrow.csv as pacsv

        super().__init__(path, dtypes, units)
        if compression is not None and parse_compression(compression)[0] != "NONE":
            raise ExportError(f"CSV output is not compressed; drop the compression {compression!r}")
        self.schema = pa.schema([pa.field(c, pa.from_numpy_dtype(np.dtype(t))) for c, t in self.dtypes.items()])
        try:
            self._writer = pacsv.CSVWriter(str(self.tmp), self.schema)
        except BaseException as err:  # Ctrl-C as well: nothing is left behind by a writer that never existed
            self._remove(self.tmp)
            if isinstance(err, OSError):
                raise ExportError(f"cannot create '{self.path}': {_why(err, self.tmp, self.path)}") from err
            raise

    def _write(self, chunk: dict[str, np.ndarray]) -> None:
        self._writer.write_table(pa.Table.from_arrays([pa.array(chunk[c]) for c in self.dtypes], schema=self.schema))

    def _finish(self) -> None:
        self._writer.close()


def open_ntuple(
    path: str | os.PathLike[str],
    dtypes: Mapping[str, str],
    units: Mapping[str, str] | None = None,
    *,
    fmt: str | None = None,
    tree: str = "DecayTree",
    compression: str | None = None,
    title: str = "",
    chunks: int | None = None,
) -> NtupleFile:
    """A writer for ``path`` in ``fmt`` (default: from the suffix).

    Parquet goes to one file when ``path`` ends in ``.parquet``/``.pq``, else to a
    dataset directory (one part file per chunk).  ``chunks``: how many chunks are
    coming, if known (ROOT: see :class:`RootFile`).
    """
    f = resolve_format(path, fmt)
    if f == "root":
        return RootFile(path, dtypes, units, tree=tree, compression=compression, title=title, chunks=chunks)
    if f == "parquet":
        dataset = Path(path).suffix.lower() not in (".parquet", ".pq")
        return ParquetFile(path, dtypes, units, compression=compression, dataset=dataset)
    return CsvFile(path, dtypes, units, compression=compression)
