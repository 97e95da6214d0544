"""Exporting an event store to an analysis ntuple: :func:`export` and the streaming :class:`NtupleWriter`.

One row per candidate of a decay descriptor (see :mod:`ficino.candidates`),
columns ``<alias>_<VARIABLE>`` from :mod:`ficino.variables`, written batch by
batch (memory stays flat) to a temporary name that is renamed at the end.

Selections (``cut``) are DuckDB SQL conditions evaluated on the candidate
table of each batch, with every variable of every particle available as a
column (also those not written), e.g. ``"Lc_M > 2200 AND mu_PT > 1000"``.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ficino import _worker
from ficino.candidates import (
    Column,
    DecaySpec,
    VertexResolution,
    candidates_from_tables,
    check_photons,
    compute_columns,
    decay_spec,
    default_decay,
    fetch_tables,
    present_sources,
    resolve_columns,
)
from ficino.writers import NtupleFile, check_output, open_ntuple, parse_compression, resolve_format
from mambah.errors import ExportError, MambahError
from mambah.store import EventStore

__all__ = ("ExportSummary", "NtupleWriter", "export", "to_root", "to_parquet", "to_csv")

log = logging.getLogger(__name__)

_PARQUET_OK = ("LZ4", "ZSTD", "ZLIB", "NONE")

#: ``export(build=...)`` choices (see :func:`export`).
BUILD_MODES = ("auto", "serial", "process")
#: ``build="auto"`` builds a ROOT export of two batches or more in the build worker process from this
#: many candidates (head particles in the store) on when the worker runs already, and from
#: :data:`PROCESS_BUILD_MIN_CANDIDATES_COLD` on when it must be started (≈ 1.2 s of CPU, in parallel;
#: the build costs ≈ 9 µs per candidate; benchmarks/README.md, "Vertex fits").
PROCESS_BUILD_MIN_CANDIDATES = 20_000
PROCESS_BUILD_MIN_CANDIDATES_COLD = 50_000


@dataclass(frozen=True)
class ExportSummary:
    """What an export wrote.

    Attributes:
        path: the output.
        format: ``root``, ``parquet`` or ``csv``.
        decay: the exported descriptor.
        rows: rows written (after the reconstruction requirement and the cut).
        candidates: MC-truth candidates found (before both).
        batches: batches exported.
        columns: column names, in order.
        seconds: wall time.
        bytes: size of the output.
        worker_cpu_seconds: CPU time of the build worker process (``build="process"``; 0 when the
            candidates were built in this process), not counted in this process's ``time.process_time()``.
    """

    path: str
    format: str
    decay: str
    rows: int
    candidates: int
    batches: int
    columns: tuple[str, ...]
    seconds: float
    bytes: int
    worker_cpu_seconds: float = 0.0

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else float("inf")


class NtupleWriter:
    """Streaming export: call :meth:`write_batch` per (committed) batch, then :meth:`close`.

    Arguments are those of :func:`export`.  Everything that can be checked
    without the store (format, output path, compression, decay, aliases,
    variables, cut) is checked here, before any batch.  The output file is
    opened on the first batch; with ``variables=None`` the PID/track columns
    that are entirely NULL in the store at that moment are left out.

    Usable as the last step of a pipeline run (``mambah run --export``)::

        with NtupleWriter("out.root") as writer:
            for b in store.batches():
                writer.write_batch(store, b)
        summary = writer.summary
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        decay: str | None = None,
        aliases: Sequence[str] | Mapping[str, str] | None = None,
        variables: Iterable[str] | str | None = None,
        tree: str = "DecayTree",
        fmt: str | None = None,
        cut: str | None = None,
        reconstructed_only: bool = True,
        overwrite: bool = False,
        *,
        compression: str | None = None,
        seed: int = 0,
        resolution: VertexResolution = VertexResolution(),
    ) -> None:
        self.path = Path(path)
        self.format = resolve_format(self.path, fmt)
        check_output(self.path, overwrite=overwrite)
        comp, _ = parse_compression(compression)
        if self.format == "parquet" and comp not in _PARQUET_OK:
            raise ExportError(f"compression {comp} is not available for Parquet; choose {', '.join(_PARQUET_OK)}")
        if self.format == "csv" and compression is not None and comp != "NONE":
            raise ExportError(f"CSV output is not compressed; drop the compression {compression!r}")
        if not isinstance(tree, str) or not tree or "/" in tree:
            raise ExportError(f"bad tree name {tree!r}")
        if isinstance(variables, str):
            variables = [v.strip() for v in variables.split(",") if v.strip()]
        self.variables = None if variables is None else list(variables)
        self.aliases = aliases
        self.tree = tree
        self.cut = _check_cut_syntax(cut)
        self.reconstructed_only = bool(reconstructed_only)
        self.compression = compression
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= int(seed) < 2**63:
            raise ExportError(f"seed of the vertex smearing must be an integer in [0, 2**63), got {seed!r}")
        self.seed = int(seed)
        self.resolution = resolution
        self.spec: DecaySpec | None = None
        self.columns: list[Column] = []
        self._cut_columns: list[Column] = []
        self._file: NtupleFile | None = None
        self._con: Any = None
        self.candidates = 0
        self.rows = 0
        self.batches: list[int] = []
        self.summary: ExportSummary | None = None
        self._t0 = time.perf_counter()
        self._closed = False
        if decay is not None:
            self._set_spec(decay)

    # ------------------------------------------------------------------ setup
    def _set_spec(self, decay: str) -> None:
        spec = decay_spec(decay, self.aliases)
        # validate the names now (presence of PID columns is decided on the first batch)
        resolve_columns(spec, self.variables)
        self.spec = spec
        if self.cut is not None:
            self._cut_columns = resolve_columns(spec, None)
            self._bind_cut(self._cut_columns)

    def _bind_cut(self, columns: Sequence[Column]) -> None:
        import duckdb

        if self._con is None:
            self._con = duckdb.connect(":memory:")
        empty = pa.schema([pa.field(c.name, pa.from_numpy_dtype(np.dtype(c.var.dtype))) for c in columns]).empty_table()
        self._con.register("candidates", empty)
        try:
            rel = self._con.sql(f"SELECT ({self.cut}) AS keep FROM candidates")
            types = [str(t) for t in rel.types]
        except duckdb.Error as err:
            msg = str(err).strip().splitlines()[0]
            self._close_con()
            raise ExportError(f"cannot evaluate cut {self.cut!r}: {msg}; columns are <alias>_<VARIABLE> (e.g. {columns[0].name})") from err
        finally:
            if self._con is not None:
                self._con.unregister("candidates")
        if types != ["BOOLEAN"]:
            self._close_con()
            raise ExportError(f"cut {self.cut!r} is not a condition (it gives {types[0]}); write e.g. 'Lc_M > 2200'")

    def _start(self, store: EventStore) -> None:
        self._resolve(store)
        self._open()

    def _resolve(self, store: EventStore) -> None:
        """Decay and columns (what :meth:`_prepare` needs)."""
        if self.spec is None:
            self._set_spec(default_decay(store))
        spec = cast(DecaySpec, self.spec)
        present = present_sources(store) if self.variables is None else None
        self.columns = resolve_columns(spec, self.variables, present)
        check_photons(store, spec, self.columns)

    def _open(self, chunks: int | None = None) -> None:
        """Create the output (temporary name); uproot's ``mktree`` takes a while for many branches.

        ``chunks``: the number of batches to come, if known (sizes the ROOT tree's basket arrays).
        """
        spec = cast(DecaySpec, self.spec)
        dtypes = {c.name: c.var.dtype for c in self.columns}
        units = {c.name: c.var.unit for c in self.columns}
        self._file = open_ntuple(
            self.path, dtypes, units, fmt=self.format, tree=self.tree, compression=self.compression,
            title=f"Ficino: {spec.descriptor}", chunks=chunks,
        )

    # ------------------------------------------------------------------ streaming
    def write_batch(self, store: EventStore, batch: int) -> int:
        """Append the candidates of ``batch``; returns the number of rows written."""
        if self._closed:
            raise ExportError(f"the writer of '{self.path}' is closed")
        try:
            if self._file is None:
                self._start(store)
            columns, matched = self._prepare(store, batch)
            return self._append(batch, columns, matched)
        except BaseException:
            self.abort()
            raise

    def _prepare(self, store: EventStore, batch: int) -> tuple[dict[str, np.ndarray], int]:
        """Candidates and variables of ``batch``."""
        return self._build(batch, self._fetch(store, batch))

    @property
    def _computed_columns(self) -> Sequence[Column]:
        """The columns built per batch: every column the cut may use, else the written ones."""
        return self._cut_columns if self.cut is not None else self.columns

    def _fetch(self, store: EventStore, batch: int) -> dict[str, dict[str, np.ndarray]]:
        """The store rows of ``batch`` (thread-safe given its own store connection)."""
        return fetch_tables(store, batch, self._computed_columns)

    def _build(self, batch: int, tables: dict[str, dict[str, np.ndarray]]) -> tuple[dict[str, np.ndarray], int]:
        cands = candidates_from_tables(
            tables, cast(DecaySpec, self.spec), int(batch), reconstructed_only=self.reconstructed_only,
            seed=self.seed, resolution=self.resolution,
        )
        return compute_columns(cands, self._computed_columns), cands.n_matched

    def _append(self, batch: int, columns: dict[str, np.ndarray], matched: int) -> int:
        self.candidates += matched
        if self.cut is None:
            data = columns
        else:
            keep = self._evaluate_cut(columns)
            data = {c.name: columns[c.name][keep] for c in self.columns}
        cast(NtupleFile, self._file).write(data)
        n = len(next(iter(data.values()))) if data else 0
        self.rows += n
        self.batches.append(int(batch))
        return n

    def _evaluate_cut(self, columns: dict[str, np.ndarray]) -> np.ndarray:
        import duckdb

        table = pa.table(columns)
        self._con.register("candidates", table)
        try:
            res = self._con.sql(f"SELECT ({self.cut}) AS keep FROM candidates").fetch_arrow_table()
        except duckdb.Error as err:
            raise ExportError(f"cannot evaluate cut {self.cut!r}: {str(err).strip().splitlines()[0]}") from err
        finally:
            self._con.unregister("candidates")
        return np.asarray(pc.fill_null(res["keep"], False).to_numpy(zero_copy_only=False), dtype=bool)

    def close(self) -> ExportSummary:
        """Finish the output (rename from its temporary name).

        Raises:
            ExportError: nothing was exported (no batch, or the decay matched no
                candidate); nothing is written then.
        """
        if self.summary is not None:
            return self.summary
        if self._closed:
            raise ExportError(f"the export to '{self.path}' was aborted")
        if not self.batches:
            self.abort()
            raise ExportError(f"nothing to export to '{self.path}': no batch was written")
        if self.candidates == 0:
            self.abort()
            decay = self.spec.descriptor if self.spec else "?"
            raise ExportError(
                f"decay {decay!r} matches no candidate in {len(self.batches)} batch(es); nothing written to '{self.path}'"
            )
        size = cast(NtupleFile, self._file).close()
        self._closed = True
        self._close_con()
        if self.rows == 0:
            log.warning("%s: no candidate passed the selection; wrote an empty ntuple", self.path)
        self.summary = ExportSummary(
            str(self.path), self.format, self.spec.descriptor if self.spec else "", self.rows, self.candidates,
            len(self.batches), tuple(c.name for c in self.columns), time.perf_counter() - self._t0, size,
        )
        return self.summary

    def abort(self) -> None:
        """Give up: delete the temporary output; the final path is untouched."""
        self._closed = True
        if self._file is not None:
            self._file.abort()
        self._close_con()

    def _close_con(self) -> None:
        if self._con is not None:
            self._con.close()
            self._con = None

    def __enter__(self) -> NtupleWriter:
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def _check_cut_syntax(cut: str | None) -> str | None:
    if cut is None:
        return None
    if not isinstance(cut, str) or not cut.strip():
        raise ExportError("empty cut; give a condition such as 'Lc_M > 2200'")
    import duckdb

    try:
        statements = duckdb.extract_statements(f"SELECT * FROM candidates WHERE {cut}")
    except duckdb.Error as err:
        raise ExportError(f"cut {cut!r} does not parse: {str(err).strip().splitlines()[0]}") from err
    if len(statements) != 1:
        raise ExportError(f"cut {cut!r} does not parse: one condition expected")
    return cut.strip()


# --------------------------------------------------------------------------- one-shot export
def export(
    store: EventStore | str | os.PathLike[str],
    path: str | os.PathLike[str],
    decay: str | None = None,
    aliases: Sequence[str] | Mapping[str, str] | None = None,
    variables: Iterable[str] | str | None = None,
    tree: str = "DecayTree",
    fmt: str | None = None,
    cut: str | None = None,
    reconstructed_only: bool = True,
    overwrite: bool = False,
    progress: bool = False,
    *,
    compression: str | None = None,
    seed: int = 0,
    resolution: VertexResolution = VertexResolution(),
    build: str = "auto",
) -> ExportSummary:
    """Export the candidates of ``decay`` in ``store`` to an ntuple at ``path``.

    Args:
        store: an open :class:`~mambah.EventStore` or the path of a store file.
        path: output; ``.root`` (TTree), ``.parquet``/``.pq`` (one file), a
            directory with ``fmt="parquet"`` (dataset), ``.csv``.
        decay: descriptor; default: the store's generator decay.
        aliases: one per particle (breadth-first) or a mapping default -> new alias.
        variables: names (``"PT"``, ``"Lc_M"``, ``"nTracks"``); default all
            (PID/track columns left out when the store has none).
        tree: TTree name (ROOT).
        fmt: ``root``, ``parquet`` or ``csv``; default from the suffix.
        cut: DuckDB SQL condition on the candidate columns, e.g. ``"Lc_M > 2200"``.
        reconstructed_only: only candidates with all charged final-state
            particles reconstructed (else all MC-truth candidates).
        overwrite: replace an existing output.
        progress: show a progress bar over batches.
        compression: ``LZ4`` (default), ``ZLIB``, ``LZMA``, ``ZSTD``, ``NONE`` (``"ZSTD:5"``).
        seed: seed of the vertex smearing.
        resolution: vertex resolutions [mm] of the smearing.
        build: where the candidates and columns are built: ``"serial"`` in this process,
            ``"process"`` in the build worker process (:mod:`ficino._worker`) while this one
            writes, ``"auto"`` (default) the worker for ROOT exports of at least
            :data:`PROCESS_BUILD_MIN_CANDIDATES` candidates (:data:`PROCESS_BUILD_MIN_CANDIDATES_COLD`
            when the worker is not running yet) in two or more batches on a machine with two CPUs
            or more (uproot's writer holds the GIL, so only a second process overlaps building and
            writing), else serial. The columns are the same either way.

    Returns:
        :class:`ExportSummary`.

    Raises:
        ExportError: bad option, output exists, unwritable path, empty store,
            decay matching nothing, cut that does not parse, ``build="process"`` where no
            worker can run (or with a variable registered after ``import ficino``).
    """
    if build not in BUILD_MODES:
        raise ExportError(f"unknown build {build!r}; choose {', '.join(BUILD_MODES)}")
    writer = NtupleWriter(
        path, decay, aliases, variables, tree, fmt, cut, reconstructed_only, overwrite,
        compression=compression, seed=seed, resolution=resolution,
    )
    own = not isinstance(store, EventStore)
    try:
        st: EventStore = store if isinstance(store, EventStore) else EventStore.open(store, read_only=True)
    except MambahError as err:
        raise ExportError(str(err)) from err
    try:
        if st.path not in (":memory:", "") and Path(st.path).resolve() == writer.path.resolve():
            raise ExportError(f"output '{writer.path}' is the store being exported; choose another output")
        batches = st.batches()
        if not batches:
            raise ExportError(f"store '{st.path}' is empty (no complete batch); nothing to export")
        if writer.spec is None:
            writer._set_spec(default_decay(st))
        n_candidates = _check_store(st, cast(DecaySpec, writer.spec), reconstructed_only)
        from tqdm.auto import tqdm

        writer._resolve(st)
        mode = _build_mode(build, writer, n_candidates, len(batches))
        ahead = EventStore(st.connection.cursor(), st.path, read_only=True)
        with tqdm(total=len(batches), unit="batch", disable=not progress, desc="ficino", dynamic_ncols=True) as bar:
            worker_cpu = _export_in_worker(writer, ahead, batches, bar) if mode == "process" else _export_here(writer, ahead, batches, bar)
        ahead.close()
        summary = writer.close()
        if worker_cpu:
            summary = dataclasses.replace(summary, worker_cpu_seconds=worker_cpu)
            writer.summary = summary
        return summary
    except BaseException:
        writer.abort()
        raise
    finally:
        if own:
            st.close()


def _export_here(writer: NtupleWriter, ahead: EventStore, batches: Sequence[int], bar: Any) -> float:
    """Build and write every batch in this process (``build="serial"``); returns 0 (no worker CPU)."""
    # one batch ahead: a worker thread reads batch i+1 from DuckDB (own cursor; DuckDB releases the GIL)
    # while this thread builds and writes batch i, and reads batch 0 while the output is created. For
    # Parquet and CSV the worker builds the candidates and columns of batch i+1 too (pyarrow's writer
    # releases the GIL); for ROOT that was slower: uproot's Python-level extend holds the GIL, so the
    # builder's numpy calls wait for it (measured in benchmarks/README.md, "Vertex fits").
    build_ahead = writer.format != "root"

    def prepare(batch: int) -> tuple[dict[str, dict[str, np.ndarray]], tuple[dict[str, np.ndarray], int] | None]:
        tables = writer._fetch(ahead, batch)
        return tables, (writer._build(batch, tables) if build_ahead else None)

    with ThreadPoolExecutor(1, thread_name_prefix="ficino") as pool:
        future = pool.submit(prepare, batches[0])
        writer._open(len(batches))
        for i, b in enumerate(batches):
            tables, built = future.result()
            if i + 1 < len(batches):
                future = pool.submit(prepare, batches[i + 1])
            writer._append(b, *(built if built is not None else writer._build(b, tables)))
            bar.update(1)
            bar.set_postfix(rows=writer.rows, refresh=False)
    return 0.0


def _export_in_worker(writer: NtupleWriter, ahead: EventStore, batches: Sequence[int], bar: Any) -> float:
    """Build in the build worker process while this one writes (``build="process"``, :mod:`ficino._worker`).

    A thread reads batch i+2 from DuckDB while this thread writes batch i and the worker builds batch
    i+1; batch i+2 goes to the worker when batch i is written (two slots each way); batches 0 and 1
    are sent before and during uproot's ``mktree``. Returns the
    worker's CPU seconds. On any error or Ctrl-C the worker is killed (the next export starts another).
    """
    spec = cast(DecaySpec, writer.spec)
    worker = _worker.get_worker()
    try:
        session = _worker.BuildSession(
            worker, spec.descriptor, spec.aliases, [c.name for c in writer._computed_columns],
            {"reconstructed_only": writer.reconstructed_only, "seed": writer.seed, "resolution": writer.resolution},
            big_endian=writer.format == "root" and writer.cut is None,  # the cut (DuckDB, via Arrow) needs native arrays
        )
        with ThreadPoolExecutor(1, thread_name_prefix="ficino") as pool:
            session.submit(batches[0], pool.submit(writer._fetch, ahead, batches[0]).result())
            # batch 1 is read and sent by the thread while this one runs uproot's mktree (the worker builds
            # batches 0 and 1 meanwhile); the session is this thread's again once that is done
            second = pool.submit(lambda: session.submit(batches[1], writer._fetch(ahead, batches[1]))) if len(batches) > 1 else None
            writer._open(len(batches))
            if second is not None:
                second.result()
            for i, b in enumerate(batches):
                future = pool.submit(writer._fetch, ahead, batches[i + 2]) if i + 2 < len(batches) else None
                columns, matched = session.result()
                writer._append(b, columns, matched)
                del columns  # views into the slot that batch i + 2 fills
                if future is not None:
                    session.submit(batches[i + 2], future.result())
                bar.update(1)
                bar.set_postfix(rows=writer.rows, refresh=False)
        return session.close()
    except BaseException:
        _worker.discard_worker(worker)
        raise


def _build_mode(build: str, writer: NtupleWriter, n_candidates: int, n_batches: int) -> str:
    """``"serial"`` or ``"process"`` for :func:`export`'s ``build`` option (see there)."""
    if build == "serial":
        return "serial"
    col = _worker.worker_variables_ok(writer._computed_columns)
    why = _worker.available() or (
        f"column {col} uses a variable registered after 'import ficino', which the build worker does not have" if col else None)
    if build == "process":
        if why:
            raise ExportError(f"build='process' cannot be honoured: {why}; use build='serial' (or 'auto')")
        return "process"
    from sim.core.resources import process_cpus

    cpus = process_cpus()
    least = PROCESS_BUILD_MIN_CANDIDATES if _worker.worker_running() else PROCESS_BUILD_MIN_CANDIDATES_COLD
    big = n_batches >= 2 and n_candidates >= least
    return "process" if why is None and writer.format == "root" and big and cpus >= 2 else "serial"


def _check_store(store: EventStore, spec: DecaySpec, reconstructed_only: bool) -> int:
    """Refuse a store the export cannot use; the number of head particles of ``spec`` (candidates before matching)."""
    pids = {spec.tree.pid}
    if spec.cc:
        pids.add(spec.tree.conjugate().pid)
    n = store.query("SELECT count(*) AS n FROM mc_particles WHERE pid IN (SELECT unnest(?))", [sorted(pids)])["n"][0].as_py()
    if not n:
        top = store.query("SELECT pid, count(*) AS n FROM mc_particles WHERE mother = -1 GROUP BY pid ORDER BY n DESC LIMIT 5")
        found = ", ".join(str(p) for p in top["pid"].to_pylist()) or "none"
        raise ExportError(
            f"decay {spec.descriptor!r} matches nothing in store '{store.path}': no {spec.tree.name} "
            f"(PDG {spec.tree.pid}) in mc_particles (head particles there: {found}); nothing written"
        )
    if reconstructed_only and store.count("protoparticles") == 0:
        raise ExportError(
            f"store '{store.path}' has no protoparticles (no detector pass ran), so no candidate is reconstructed; "
            "export all MC-truth candidates with reconstructed_only=False (--all-candidates)"
        )
    return int(n)


def _exporter(fmt: str, doc: str) -> Any:
    def exporter(
        store: EventStore | str | os.PathLike[str],
        path: str | os.PathLike[str],
        decay: str | None = None,
        aliases: Sequence[str] | Mapping[str, str] | None = None,
        variables: Iterable[str] | str | None = None,
        tree: str = "DecayTree",
        cut: str | None = None,
        reconstructed_only: bool = True,
        overwrite: bool = False,
        progress: bool = False,
        *,
        compression: str | None = None,
        seed: int = 0,
        resolution: VertexResolution = VertexResolution(),
        build: str = "auto",
    ) -> ExportSummary:
        return export(
            store, path, decay, aliases, variables, tree, fmt, cut, reconstructed_only, overwrite, progress,
            compression=compression, seed=seed, resolution=resolution, build=build,
        )

    exporter.__name__ = exporter.__qualname__ = f"to_{fmt}"
    exporter.__doc__ = f"{doc}\n\n    :func:`export` with ``fmt={fmt!r}``; same arguments (without ``fmt``).\n"
    return exporter


to_root = _exporter("root", "Export to a ROOT file holding one flat TTree (uproot).")
to_parquet = _exporter("parquet", "Export to Parquet (one file for ``.parquet``/``.pq``, else a dataset directory).")
to_csv = _exporter("csv", "Export to CSV (small samples).")
