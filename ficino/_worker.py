"""The export's build worker: a second process that builds batch i+1 while this one writes batch i.

uproot's ``extend`` is Python holding the GIL, so a *thread* building ahead slows the ROOT writer
down (``benchmarks/README.md``, "Vertex fits"); a process does not share the GIL.  One worker per
Python process, started on first use (``python -m ficino._worker``, its own session, so a Ctrl-C at
the terminal reaches only the exporting process) and reused by later exports; it exits when this
process closes its end of the control pipe (at exit, or when this process dies) and is killed when
an export fails or is interrupted (its state is then that of a half-done batch).

Arrays travel through shared memory without a copy per column: four anonymous shared-memory files
(``memfd``, or an unlinked temporary file; nothing has a name that could be left behind), two input
and two output slots, kept with the worker for the next export up to :data:`KEEP_SLOT_BYTES`;
batch ``k`` uses slot ``k % 2``.  This process
copies the store rows of a batch into its input slot (one segment, each column at an aligned
offset), the worker builds the candidates and columns with the same code as the serial path
(:func:`ficino.candidates.candidates_from_tables`, :func:`ficino.candidates.compute_columns`) and
copies the columns into the output slot (big-endian for ROOT, which stores them so: the byte swap
rides on that copy instead of uproot's own conversion); this process writes them from there (numpy views).
Batch ``k + 2`` is sent only after batch ``k`` is written, so no slot is overwritten while in use.
The columns are therefore bit for bit those of the serial path.

The worker knows the variables that ``import ficino`` registers; an export with a variable
registered later (``ficino.register``) cannot be built there (:func:`worker_variables_ok`).
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import mmap
import os
import pickle
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import numpy as np

from ficino.variables import VARIABLES
from mambah.errors import ExportError

__all__ = ("BuildSession", "BuildWorker", "available", "discard_worker", "get_worker", "shutdown_worker", "worker_running",
           "worker_variables_ok")

log = logging.getLogger(__name__)

_ALIGN = 64
_PAGE = mmap.PAGESIZE
#: The variables ``import ficino`` registers (the worker has exactly these).
_BUILTIN = dict(VARIABLES)

_TUNABLES = "glibc.malloc.mmap_threshold=33554432:glibc.malloc.trim_threshold=4294967296"
_ENTRY = "import sys; from ficino._worker import main; sys.exit(main(sys.argv[1:]))"

Layout = list[tuple[str, str, str, int, int]]  # (table, column, dtype, offset [bytes], length)


def available() -> str | None:
    """``None`` where a build worker can run here, else why not (one line)."""
    if os.name != "posix" or not hasattr(socket, "send_fds"):
        return f"a build worker needs POSIX file-descriptor passing (this is {sys.platform})"
    return None


def worker_variables_ok(columns: Sequence[Any]) -> str | None:
    """``None`` when the worker knows every column's variable, else the first column it does not know."""
    for c in columns:
        if _BUILTIN.get(c.var.name) is not c.var:
            return str(c.name)
    return None


def _shared_fd() -> int:
    """An anonymous shared-memory file (memfd; else an already unlinked temporary file)."""
    if hasattr(os, "memfd_create"):
        return os.memfd_create("ficino-slot", getattr(os, "MFD_CLOEXEC", 0))
    fd, name = tempfile.mkstemp(prefix=".ficino-slot-")
    os.unlink(name)
    return fd


class _Segment:
    """One shared-memory file, mapped here; the side that fills it grows it."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.map: mmap.mmap | None = None
        self.size = 0

    def ensure(self, size: int, *, grow: bool) -> mmap.mmap:
        """A map of at least ``size`` bytes (the file grown first when ``grow``)."""
        if self.map is None or size > self.size:
            size = max(_PAGE, -(-int(size * (1.25 if grow else 1.0)) // _PAGE) * _PAGE)
            if grow:
                try:
                    os.ftruncate(self.fd, size)
                except OSError as err:  # e.g. RLIMIT_FSIZE (a memfd counts as a file) or no memory
                    raise ExportError(f"cannot grow the export's shared memory to {size} bytes: {err}; "
                                      "export with --build serial (build='serial') or raise the limit") from err
            # the old map is not closed: views into it may live on (they stay valid; the file only grows)
            self.map = mmap.mmap(self.fd, size)
            self.size = size
        return self.map

    def close(self) -> None:
        self.map = None
        with contextlib.suppress(OSError):
            os.close(self.fd)


def _pack(seg: _Segment, arrays: Sequence[tuple[str, str, np.ndarray]], *, big_endian: bool = False) -> Layout:
    """Copy the 1-D ``arrays`` ``(table, column, array)`` into ``seg`` (byte-swapped to big-endian on the
    way when ``big_endian``: what uproot writes, so its writer does not convert them again); their layout there."""
    layout: Layout = []
    off = 0
    for table, name, a in arrays:
        if a.ndim != 1 or a.dtype.hasobject:
            raise ExportError(f"column {table}.{name} ({a.dtype}, {a.ndim}-D) cannot go through shared memory")
        layout.append((table, name, (a.dtype.newbyteorder(">") if big_endian else a.dtype).str, off, len(a)))
        off += -(-a.nbytes // _ALIGN) * _ALIGN
    buf = seg.ensure(max(off, 1), grow=True)
    for (_, _, dt, o, n), (_, _, a) in zip(layout, arrays):
        np.frombuffer(buf, dtype=dt, count=n, offset=o)[...] = a
    return layout


def _unpack(seg: _Segment, layout: Layout, size: int) -> dict[str, dict[str, np.ndarray]]:
    """Views ``table -> column -> array`` of a layout written by :func:`_pack`."""
    buf = seg.ensure(size, grow=False)
    out: dict[str, dict[str, np.ndarray]] = {}
    for table, name, dt, off, n in layout:
        out.setdefault(table, {})[name] = np.frombuffer(buf, dtype=dt, count=n, offset=off)
    return out


# --------------------------------------------------------------------------- this process's side
class BuildWorker:
    """The worker process and its control pipe (see the module docstring)."""

    def __init__(self) -> None:
        req_r, req_w = os.pipe()
        rep_r, rep_w = os.pipe()
        fd_here, fd_there = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        env = dict(os.environ)
        root = str(Path(__file__).resolve().parents[1])  # the same ficino as this process's
        env["PYTHONPATH"] = os.pathsep.join([root, *filter(None, [env.get("PYTHONPATH")])])
        # glibc: arrays up to 32 MiB from the heap, which keeps freed memory (returned at the end of each
        # export, _release_memory): the build's temporaries are the same sizes batch after batch, and a
        # fresh mmap'd array pays a page fault per page (measured: the build's CPU -7 %); a user's own
        # settings, later in the list, win; other C libraries ignore the variable
        env["GLIBC_TUNABLES"] = ":".join([_TUNABLES, *filter(None, [env.get("GLIBC_TUNABLES")])])
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", _ENTRY, str(req_r), str(rep_w), str(fd_there.fileno())],
                pass_fds=(req_r, rep_w, fd_there.fileno()), env=env, start_new_session=True, stdin=subprocess.DEVNULL,
            )
        except OSError as err:
            for fd in (req_r, req_w, rep_r, rep_w):
                os.close(fd)
            fd_here.close()
            fd_there.close()
            raise ExportError(f"cannot start the export's build worker ({sys.executable}): {err}") from err
        os.close(req_r)
        os.close(rep_w)
        fd_there.close()
        self._req = Connection(req_w, readable=False)
        self._rep = Connection(rep_r, writable=False)
        self._fds = fd_here
        self.cpu = 0.0  # the worker's process CPU [s] at its last reply
        self.busy = False
        self.private = False  # started for one export while the shared worker was busy: stopped after it
        self.owner = os.getpid()
        #: the shared slots (input 0, 1, output 0, 1), kept from one export to the next while their pages
        #: stay within :data:`KEEP_SLOT_BYTES` (a new slot's first write pays a page fault per page)
        self.slots: list[_Segment] | None = None

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def send(self, msg: tuple[Any, ...]) -> None:
        try:
            self._req.send(msg)
        except OSError as err:
            raise self._died() from err

    def send_fds(self, fds: Sequence[int]) -> None:
        try:
            socket.send_fds(self._fds, [b"f"], list(fds))
        except OSError as err:
            raise self._died() from err

    def recv(self) -> tuple[Any, ...]:
        try:
            msg = self._rep.recv()
        except (EOFError, OSError) as err:
            raise self._died() from err
        self.cpu = float(msg[-1])
        if msg[0] == "error":
            exc = None
            with contextlib.suppress(Exception):
                exc = pickle.loads(msg[1])
            if isinstance(exc, BaseException):
                raise exc
            raise ExportError(f"the export's build worker failed: {msg[2]}")
        return msg

    def _died(self) -> ExportError:
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(1.0)
        return ExportError(f"the export's build worker (pid {self.proc.pid}) stopped (exit status {self.proc.poll()}); the export was abandoned")

    def kill(self) -> None:
        """End the worker now (no leftover process)."""
        with contextlib.suppress(OSError):
            self.proc.kill()
        with contextlib.suppress(Exception):
            self.proc.wait(10)
        self._close_pipes()

    def stop(self) -> None:
        """Ask the worker to exit; kill it if it does not within 5 s."""
        with contextlib.suppress(Exception):
            self._req.send(("stop",))
        self._close_pipes()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.kill()

    def drop_slots(self) -> None:
        for seg in self.slots or ():
            seg.close()
        self.slots = None

    def _close_pipes(self) -> None:
        self.drop_slots()
        for c in (self._req, self._rep, self._fds):
            with contextlib.suppress(Exception):
                c.close()


#: Shared slots up to this many bytes in all are kept for the next export (see :attr:`BuildWorker.slots`).
KEEP_SLOT_BYTES = 512 * 2**20

_LOCK = threading.Lock()
_WORKER: BuildWorker | None = None


def get_worker() -> BuildWorker:
    """The process's build worker (started on first use, reused while alive and idle).

    Raises:
        ExportError: it cannot be started here.
    """
    global _WORKER, _REGISTERED
    why = available()
    if why:
        raise ExportError(why)
    with _LOCK:
        if _WORKER is not None and _WORKER.owner != os.getpid():
            _WORKER = None  # a forked child: that worker is the parent's
        if _WORKER is not None and _WORKER.busy:  # another thread's export holds it
            private = BuildWorker()
            private.private = True
            return private
        if _WORKER is None or not _WORKER.alive:
            if _WORKER is not None:
                _WORKER.kill()
            _WORKER = BuildWorker()
            if not _REGISTERED:
                atexit.register(shutdown_worker)
                _REGISTERED = True
        return _WORKER


_REGISTERED = False


def worker_running() -> bool:
    """Whether this process has an idle build worker already started (no start-up cost for the next export)."""
    w = _WORKER
    return w is not None and w.owner == os.getpid() and not w.busy and w.alive


def discard_worker(worker: BuildWorker) -> None:
    """Kill ``worker`` (after a failed or interrupted export) and forget it."""
    global _WORKER
    worker.kill()
    with _LOCK:
        if _WORKER is worker:
            _WORKER = None


def shutdown_worker() -> None:
    """Stop the process's build worker, if any (at exit; ``mambah export`` when it is done)."""
    global _WORKER
    with _LOCK:
        w, _WORKER = _WORKER, None
    if w is not None:
        w.stop()


class BuildSession:
    """One export's use of the worker: its slots and its batches in flight.

    Args:
        worker: from :func:`get_worker`.
        descriptor, aliases: the export's :class:`~ficino.candidates.DecaySpec` (rebuilt there).
        columns: names of the columns to build, in order.
        options: ``reconstructed_only``, ``seed``, ``resolution`` of :func:`ficino.candidates.candidates_from_tables`.
        big_endian: the columns come back big-endian (for the ROOT writer, which writes them so).
    """

    def __init__(self, worker: BuildWorker, descriptor: str, aliases: Sequence[str], columns: Sequence[str],
                 options: Mapping[str, Any], *, big_endian: bool = False) -> None:
        self.worker = worker
        self.cpu0 = worker.cpu
        new = worker.slots is None
        if worker.slots is None:
            worker.slots = [_Segment(_shared_fd()) for _ in range(4)]
        self._in, self._out = worker.slots[:2], worker.slots[2:]
        self._sent = 0
        self._received = 0
        worker.busy = True
        self._opened = False
        worker.send(("open", descriptor, tuple(aliases), tuple(columns), dict(options), bool(big_endian), new))
        if new:
            worker.send_fds([seg.fd for seg in worker.slots])

    def submit(self, batch: int, tables: Mapping[str, Mapping[str, np.ndarray]]) -> None:
        """Send batch ``batch``'s store rows (at most two batches in flight)."""
        if self._sent - self._received >= 2:
            raise ExportError("internal: a third batch sent to the build worker before the first was taken")
        slot = self._sent % 2
        layout = _pack(self._in[slot], [(t, c, np.asarray(a)) for t, cols in tables.items() for c, a in cols.items()])
        self.worker.send(("build", int(batch), slot, layout, self._in[slot].size))
        self._sent += 1

    def result(self) -> tuple[dict[str, np.ndarray], int]:
        """The next batch's columns (views into its output slot, valid until batch + 2 is sent) and its MC-truth candidates."""
        if not self._opened:  # the answer to "open" (the worker may have been starting until now)
            self.worker.recv()
            self._opened = True
        kind, slot, layout, size, matched, _cpu = self.worker.recv()
        if kind != "built" or slot != self._received % 2:
            raise ExportError(f"internal: the build worker answered {kind!r} for slot {slot}")
        self._received += 1
        cols = _unpack(self._out[slot], layout, size)
        return cols.get("", {}), int(matched)

    def close(self) -> float:
        """End the session (the worker stays for the next export); the worker's CPU seconds it took."""
        if not self._opened:
            self.worker.recv()
            self._opened = True
        keep = sum(seg.size for seg in (*self._in, *self._out)) <= KEEP_SLOT_BYTES
        self.worker.send(("close", keep))
        self.worker.recv()
        if not keep:
            self.worker.drop_slots()
        self.worker.busy = False
        cpu = self.worker.cpu - self.cpu0
        if self.worker.private:
            self.worker.stop()
        return cpu


# --------------------------------------------------------------------------- the worker's side
def _skip_numba_extensions() -> None:
    """Let numba skip loading the installed ``numba_extensions`` entry points in the worker.

    They register numba typing for other packages' types (awkward, vector): 0.8-0.9 s of CPU at the
    first compiled call, for nothing the export's kernels use (they take numpy arrays only; the same
    cached machine code is loaded, and the worker's columns are tested bit for bit against the serial
    path's). numba has no public switch for this, so where its private flag is missing nothing changes.
    """
    try:
        from numba.core import entrypoints
    except ImportError:  # pragma: no cover - numba is a dependency
        return
    if hasattr(entrypoints, "_already_initialized"):
        entrypoints._already_initialized = True


def _release_memory() -> None:
    """Give the heap's free memory back to the system (glibc ``malloc_trim``; nothing elsewhere)."""
    try:
        import ctypes

        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _serve(req: Connection, rep: Connection, fds: socket.socket) -> None:
    _skip_numba_extensions()
    from ficino.candidates import candidates_from_tables, compute_columns, decay_spec, resolve_columns

    state: dict[str, Any] = {}
    slots: list[_Segment] = []
    while True:
        try:
            msg = req.recv()
        except (EOFError, OSError):
            return
        kind = msg[0]
        try:
            if kind == "stop":
                return
            if kind == "open":
                _, descriptor, aliases, names, options, big_endian, new = msg
                if new:
                    for seg in slots:
                        seg.close()
                    _, got, _, _ = socket.recv_fds(fds, 1, 4)
                    slots = [_Segment(fd) for fd in got]
                state = {"in": slots[:2], "out": slots[2:]}
                spec = decay_spec(descriptor, list(aliases))
                columns = resolve_columns(spec, list(names))
                if [c.name for c in columns] != list(names):
                    raise ExportError(f"the build worker resolved other columns than {', '.join(names[:3])}...")
                state.update(spec=spec, columns=columns, options=options, big_endian=big_endian)
            elif kind == "build":
                _, batch, slot, layout, size = msg
                tables = _unpack(state["in"][slot], layout, size)
                cands = candidates_from_tables(tables, state["spec"], batch, **state["options"])
                built = compute_columns(cands, state["columns"])
                matched = cands.n_matched
                del tables, cands
                out = _pack(state["out"][slot], [("", k, v) for k, v in built.items()], big_endian=state["big_endian"])
                del built
                rep.send(("built", slot, out, state["out"][slot].size, matched, time.process_time()))
                continue
            elif kind == "close":
                if not msg[1]:
                    for seg in slots:
                        seg.close()
                    slots = []
                state = {}
                _release_memory()
            rep.send(("ok", time.process_time()))
        except Exception as err:  # the exporting process raises it (or its text)
            try:
                blob = pickle.dumps(err)
                pickle.loads(blob)
            except Exception:
                blob = b""
            text = (str(err).strip().splitlines() or [type(err).__name__])[0]
            rep.send(("error", blob, f"{type(err).__name__}: {text}", time.process_time()))


def main(argv: Sequence[str]) -> int:
    """Entry point of the worker: ``python -m ficino._worker REQ_FD REP_FD FD_SOCKET``."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the exporting process handles Ctrl-C and ends this one
    req_fd, rep_fd, sock_fd = (int(a) for a in argv)
    req = Connection(req_fd, writable=False)
    rep = Connection(rep_fd, readable=False)
    fds = socket.socket(fileno=sock_fd)
    try:
        _serve(req, rep, fds)
    except (BrokenPipeError, ConnectionResetError):
        pass  # the exporting process went away
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
