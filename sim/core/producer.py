"""A pass's store-free work for the next batch, computed in a child process while this one runs the passes.

A serial run of a pipeline whose first pass can run one batch at a time only (a Pythia
instance: :attr:`Pass.concurrent <sim.core.pipeline.Pass.concurrent>` false) uses one core
for everything.  Such a pass may split its kernel in two (:attr:`Pass.prefetchable
<sim.core.pipeline.Pass.prefetchable>`): :meth:`~sim.core.pipeline.Pass.produce`, the
batch's work that needs no store (Pythia's events, the signal decays, the tables laid out),
and the kernel, which writes a product into the batch.  :class:`Producer` runs ``produce``
for batch *k + 1* in a child process (a fresh interpreter) while the run's process runs the passes of
batch *k*, so Pythia and the detector passes use two cores.  The product is the same value
the pass computes in-process (the same code on the same batch seed), so a store is the same
table by table with or without it (``tests/sim/core/test_producer.py``).

The run's first pending batch is computed in the run's process (the child starts meanwhile:
its imports and the pass's build cost ≈ 1-2 s, off the critical path), the later ones in the
child, one ahead.  An error in the child (a decay that cannot be made, Pythia failing) is
raised in the run's process as the same exception; the child ends with the run (closed,
or killed with it: ``PR_SET_PDEATHSIG`` on Linux).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import traceback
from collections.abc import Generator, Iterable
from typing import Any

from mambah.errors import MambahError
from sim.core.pipeline import Batch, Pass

__all__ = ("Producer", "prefetch_products", "wants_producer")

#: ``MAMBAH_PREFETCH=0`` turns the producer process off (every batch computed in the run's process).
ENV = "MAMBAH_PREFETCH"


def wants_producer(passes: Iterable[Pass], n_pending: int, cpus: int) -> Pass | None:
    """The pass whose :meth:`~sim.core.pipeline.Pass.produce` a child process runs ahead, or None.

    The first pass, when it is :attr:`~sim.core.pipeline.Pass.prefetchable`, the run has two
    pending batches or more, this process may use two CPUs or more, and ``MAMBAH_PREFETCH``
    is not ``0``.
    """
    first = next(iter(passes), None)
    if first is None or not first.prefetchable or n_pending < 2 or cpus < 2:
        return None
    if os.environ.get(ENV, "1").strip() == "0":
        return None
    return first


def _die_with_parent() -> None:
    """Linux: this process gets SIGKILL when its parent dies (a run killed with ``kill -9`` leaves no producer)."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(Exception):
            import ctypes

            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


class _Forward(logging.Handler):
    """The child's log records (warnings and up, or what the run asked for), sent to the run, which
    emits them through its own logging (same format, same level)."""

    def __init__(self, conn: Any) -> None:
        super().__init__()
        self._conn = conn

    def emit(self, record: logging.LogRecord) -> None:
        with contextlib.suppress(Exception):
            self._conn.send(("log", {"name": record.name, "levelno": record.levelno, "levelname": record.levelname,
                                     "msg": record.getMessage(), "args": None, "created": record.created}))


def _serve(conn: Any) -> None:
    """The child: the pass, BLAS limit and log level first, then ``produce`` each batch received until ``None``.

    What ``produce`` builds once (:meth:`~sim.core.pipeline.Pass.prepare_produce`) is built with
    logging off: the run's own build made the same and showed its warnings already, once.
    """
    spec, blas_threads, level = conn.recv()
    if blas_threads is not None:
        from sim.core.resources import limit_blas_threads

        limit_blas_threads(blas_threads)  # as the run's batch loop (one BLAS thread by default)
    root = logging.getLogger()
    root.handlers[:] = [_Forward(conn)]
    root.setLevel(level)
    failed: BaseException | None = None
    logging.disable(logging.CRITICAL)
    try:
        spec.prepare_produce()
    except BaseException as err:  # raised with the first batch's result (the run's build passed, so it is rare)
        failed = err
    finally:
        logging.disable(logging.NOTSET)
    while True:
        try:
            batch = conn.recv()
        except EOFError:
            return
        if batch is None:
            return
        try:
            if failed is not None:
                raise failed
            out: tuple[str, Any] = ("ok", spec.produce(batch))
        except BaseException as err:  # every failure goes back to the run, which raises it
            out = ("error", _portable(err))
        try:
            conn.send(out)
        except (BrokenPipeError, EOFError, OSError):
            return


def _portable(err: BaseException) -> BaseException:
    """``err`` if it pickles, else a :class:`MambahError` with its one line."""
    import pickle

    try:
        pickle.loads(pickle.dumps(err))
        return err
    except Exception:  # an exception that does not pickle (or unpickle): its one line
        text = "".join(traceback.format_exception_only(type(err), err)).strip()
        return MambahError(f"producer process: {text}")


class Producer:
    """A child process that runs ``spec.produce(batch)`` for the batches it is given, one at a time.

    The child is ``python -m sim.core.producer`` (a fresh interpreter with this process's
    ``sys.path``), talking over a socket pair: unlike :mod:`multiprocessing`'s ``spawn``, it
    never imports the caller's ``__main__``, so a user's script without an
    ``if __name__ == "__main__":`` guard runs once.

    Args:
        spec: the pass (pickled to the child, which builds what ``produce`` needs on first use).
        blas_threads: BLAS threads of the child (the run's batch loop's; None: no limit).
    """

    def __init__(self, spec: Pass, blas_threads: int | None = 1) -> None:
        import socket
        import subprocess
        from multiprocessing.connection import Connection

        self.name = f"{spec.name} ({spec.kind})"
        ours, theirs = socket.socketpair()
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
        try:
            self._proc = subprocess.Popen([sys.executable, "-m", "sim.core.producer", str(theirs.fileno())],
                                          pass_fds=(theirs.fileno(),), env=env, stdin=subprocess.DEVNULL)
        finally:
            theirs.close()
        self._conn = Connection(ours.detach())
        self._busy = False
        self._conn.send((spec, blas_threads, logging.getLogger().getEffectiveLevel()))

    def submit(self, batch: Batch) -> None:
        """Start ``produce(batch)`` in the child (one at a time: :meth:`result` first)."""
        if self._busy:
            raise RuntimeError("Producer.submit: the previous batch's result was not taken")
        self._conn.send(batch)
        self._busy = True

    def result(self) -> Any:
        """The product of the batch submitted last; its exception, raised here, if ``produce`` failed.

        Raises:
            MambahError: the child process died (named with its exit status).
        """
        try:
            kind, value = self._conn.recv()
            while kind == "log":  # the child's log records, emitted here as they come
                record = logging.makeLogRecord(value)
                logging.getLogger(record.name).handle(record)
                kind, value = self._conn.recv()
        except (EOFError, OSError):
            with contextlib.suppress(Exception):
                self._proc.wait(timeout=5)
            raise MambahError(f"the producer process of pass {self.name} ended (exit status "
                              f"{self._proc.poll()}) before it returned a batch") from None
        finally:
            self._busy = False
        if kind == "error":
            raise value
        return value

    def close(self) -> None:
        """End the child: at once if it is working (the batch it computes is not needed), else by telling it to stop."""
        with contextlib.suppress(Exception):
            if self._busy:
                self._proc.terminate()
            else:
                self._conn.send(None)
        with contextlib.suppress(Exception):
            self._conn.close()
        try:
            self._proc.wait(timeout=10)
        except Exception:  # still running (or the wait was interrupted): it is not needed
            self._proc.kill()
            self._proc.wait(timeout=5)


def prefetch_products(spec: Pass, batches: Iterable[Batch], blas_threads: int | None = 1) -> Generator[tuple[Batch, Any], None, None]:
    """``(batch, product)`` for each batch, in order: the first ``None`` (the run computes it), the rest the child's.

    The child computes batch *k + 1* while the caller works on batch *k*.  Closing the
    iterator (the caller's error, an interrupt, the end) ends the child.
    """
    it = iter(batches)
    first = next(it, None)
    if first is None:
        return
    producer = Producer(spec, blas_threads)
    try:
        nxt = next(it, None)
        if nxt is not None:
            producer.submit(nxt)
        yield first, None
        while nxt is not None:
            cur = nxt
            product = producer.result()
            nxt = next(it, None)
            if nxt is not None:
                producer.submit(nxt)
            yield cur, product
    finally:
        producer.close()


def _main(argv: list[str]) -> int:
    """``python -m sim.core.producer FD``: serve :class:`Producer`'s requests on the socket ``FD``."""
    import socket
    from multiprocessing.connection import Connection

    _die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the run's to handle; it closes the child
    sock = socket.socket(fileno=int(argv[0]))
    _serve(Connection(sock.detach()))
    return 0


if __name__ == "__main__":
    raise SystemExit(_main(sys.argv[1:]))
