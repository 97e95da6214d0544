"""export(build="process"): the build worker process gives the serial columns bit for bit, is reused,
and leaves no process or temporary file behind on an error, a dead worker or Ctrl-C."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import uproot

import ficino
from ficino import _worker
from ficino.export import NtupleWriter
from ficino.variables import VARIABLES, Variable
from mambah.errors import ExportError

pytestmark = pytest.mark.skipif(_worker.available() is not None, reason="no build worker on this platform")


def _gone(pid: int, wait: float = 10.0) -> bool:
    """Whether process ``pid`` has ended (a zombie counts as ended) within ``wait`` seconds."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < wait:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                    return True
        except OSError:
            return True
        time.sleep(0.05)
    return False


def _read(path: Path) -> dict[str, np.ndarray]:
    if path.suffix == ".root":
        with uproot.open(path) as f:
            return f["DecayTree"].arrays(library="np")
    t = pq.read_table(path)
    return {k: t[k].to_numpy() for k in t.column_names}


def _same(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> None:
    assert list(a) == list(b)
    for k, v in a.items():
        assert v.dtype == b[k].dtype, k
        assert v.tobytes() == b[k].tobytes(), k  # bit for bit, NaN payloads included


@pytest.mark.parametrize(("suffix", "kw"), [
    (".root", {}),
    (".parquet", {}),
    (".root", {"cut": "Lc_M > 2280 AND p_PT > 500"}),
    (".root", {"reconstructed_only": False, "variables": ["Lb_M", "Lb_BKGCAT", "p_PT", "Lb_ENDVERTEX_Z", "nTracks"]}),
])
def test_process_build_gives_the_serial_columns_bit_for_bit(make_store, tmp_path, suffix, kw):
    store = make_store(batches=3, n=150, missing=0.1)
    serial = ficino.export(store, tmp_path / f"s{suffix}", build="serial", **kw)
    proc = ficino.export(store, tmp_path / f"p{suffix}", build="process", **kw)
    store.close()
    assert serial.worker_cpu_seconds == 0.0 and proc.worker_cpu_seconds > 0.0
    assert (proc.rows, proc.candidates, proc.batches, proc.columns) == (serial.rows, serial.candidates, serial.batches, serial.columns)
    assert proc.rows > 0
    _same(_read(tmp_path / f"s{suffix}"), _read(tmp_path / f"p{suffix}"))
    assert sorted(os.listdir(tmp_path)) == [f"p{suffix}", f"s{suffix}"]


def test_one_batch_and_an_empty_batch(make_store, tmp_path):
    store = make_store(batches=1, n=40, missing=0.9)  # most candidates lack a track: few or no rows
    a = ficino.export(store, tmp_path / "a.root", build="serial", variables=["Lb_M", "p_PT"])
    b = ficino.export(store, tmp_path / "b.root", build="process", variables=["Lb_M", "p_PT"])
    store.close()
    assert a.rows == b.rows
    _same(_read(tmp_path / "a.root"), _read(tmp_path / "b.root"))


def test_the_worker_is_started_once_and_reused(small_store, tmp_path):
    ficino.export(small_store, tmp_path / "a.root", build="process", variables=["Lb_M"])
    w = _worker.get_worker()
    assert w.alive and not w.busy
    ficino.export(small_store, tmp_path / "b.root", build="process", variables=["Lb_M"])
    assert _worker.get_worker() is w and w.alive


def test_ctrl_c_while_writing_kills_the_worker_and_leaves_nothing(small_store, tmp_path, monkeypatch):
    ficino.export(small_store, tmp_path / "warm.root", build="process", variables=["Lb_M"])
    pid = _worker.get_worker().proc.pid
    real = NtupleWriter._append

    def interrupted(self, *args):
        if self.batches:  # the second batch: the worker is building or has built the rest
            raise KeyboardInterrupt
        return real(self, *args)

    monkeypatch.setattr(NtupleWriter, "_append", interrupted)
    with pytest.raises(KeyboardInterrupt):
        ficino.export(small_store, tmp_path / "nt.root", build="process")
    assert _gone(pid)
    assert os.listdir(tmp_path) == ["warm.root"]
    monkeypatch.undo()
    summary = ficino.export(small_store, tmp_path / "again.root", build="process", variables=["Lb_M"])  # a new worker
    assert summary.rows == 400 and _worker.get_worker().proc.pid != pid


def test_a_worker_that_dies_is_one_export_error(small_store, tmp_path, monkeypatch):
    ficino.export(small_store, tmp_path / "warm.root", build="process", variables=["Lb_M"])
    pid = _worker.get_worker().proc.pid
    real = NtupleWriter._append

    def killer(self, *args):
        os.kill(pid, signal.SIGKILL)
        _gone(pid)
        return real(self, *args)

    monkeypatch.setattr(NtupleWriter, "_append", killer)
    with pytest.raises(ExportError, match=rf"build worker \(pid {pid}\) stopped .* abandoned"):
        ficino.export(small_store, tmp_path / "nt.root", build="process", variables=["Lb_M"])
    assert os.listdir(tmp_path) == ["warm.root"]


def test_an_error_in_the_worker_is_raised_here_as_in_serial(small_store, tmp_path, monkeypatch):
    real = NtupleWriter._fetch

    def broken(self, store, batch):
        tables = real(self, store, batch)
        del tables["mp"]["pid"]
        return tables

    monkeypatch.setattr(NtupleWriter, "_fetch", broken)
    for build in ("serial", "process"):
        with pytest.raises(KeyError, match="pid"):
            ficino.export(small_store, tmp_path / f"{build}.root", build=build, variables=["Lb_M"])
    assert os.listdir(tmp_path) == []


def test_bad_build_and_a_variable_the_worker_lacks(small_store, tmp_path, monkeypatch):
    with pytest.raises(ExportError, match=r"unknown build 'threads'; choose auto, serial, process"):
        ficino.export(small_store, tmp_path / "a.root", build="threads")
    monkeypatch.setitem(VARIABLES, "TWICE_PX", Variable("TWICE_PX", "MeV", "2 px", "reco", lambda d: 2 * d["px"]))
    with pytest.raises(ExportError, match=r"build='process' cannot be honoured: column p_TWICE_PX uses a variable registered after"):
        ficino.export(small_store, tmp_path / "a.root", build="process", variables=["p_TWICE_PX"])
    s = ficino.export(small_store, tmp_path / "a.root", build="auto", variables=["p_TWICE_PX", "p_PX"])  # auto: built here
    arrays = _read(tmp_path / "a.root")
    assert s.worker_cpu_seconds == 0.0 and np.array_equal(arrays["p_TWICE_PX"], 2 * arrays["p_PX"])


def test_sigint_to_the_exporting_process(make_store, tmp_path):
    """A real SIGINT (as from the terminal) to a process exporting with a worker: it exits, the worker
    is gone, no temporary file is left."""
    make_store(str(tmp_path / "s.duckdb"), batches=3, n=100).close()
    ready = tmp_path / "ready"
    script = textwrap.dedent(f"""
        import os, signal, time
        signal.signal(signal.SIGINT, signal.default_int_handler)  # also when this suite was started with SIGINT ignored
        import ficino
        from ficino import _worker
        from ficino.export import NtupleWriter
        real = NtupleWriter._append
        def slow(self, *args):
            if self.batches:
                with open({str(ready)!r} + ".tmp", "w") as f:
                    f.write(str(_worker.get_worker().proc.pid))
                os.replace({str(ready)!r} + ".tmp", {str(ready)!r})
                time.sleep(60)
            return real(self, *args)
        NtupleWriter._append = slow
        ficino.export({str(tmp_path / "s.duckdb")!r}, {str(tmp_path / "out" / "nt.root")!r}, build="process")
    """)
    (tmp_path / "out").mkdir()
    proc = subprocess.Popen([sys.executable, "-c", script], stderr=subprocess.PIPE, text=True)
    try:
        t0 = time.monotonic()
        while not ready.exists() and proc.poll() is None and time.monotonic() - t0 < 120:
            time.sleep(0.05)
        assert ready.exists(), proc.stderr.read() if proc.poll() is not None else "no ready file"
        pid = int(ready.read_text())
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode != 0 and "KeyboardInterrupt" in err
    assert _gone(pid)
    assert os.listdir(tmp_path / "out") == []


def test_cli_build_option(make_store, tmp_path, capsys):
    from mambah.cli import main

    make_store(str(tmp_path / "s.duckdb"), batches=2, n=50).close()
    for build in ("serial", "process"):
        assert main(["export", str(tmp_path / "s.duckdb"), str(tmp_path / f"{build}.root"), "--build", build,
                     "--variables", "Lb_M,p_PT", "--no-progress"]) == 0
    _same(_read(tmp_path / "serial.root"), _read(tmp_path / "process.root"))
    assert _worker._WORKER is None  # mambah export stops its worker: the command leaves without atexit
    with pytest.raises(SystemExit) as exc:
        main(["export", str(tmp_path / "s.duckdb"), str(tmp_path / "x.root"), "--build", "threads"])
    assert exc.value.code == 2 and "invalid choice: 'threads'" in capsys.readouterr().err


def test_auto_picks_the_worker_for_large_root_exports_only(make_store, small_store, tmp_path, monkeypatch):
    export_module = sys.modules["ficino.export"]  # the module (ficino.export is the function)
    monkeypatch.setattr(export_module, "PROCESS_BUILD_MIN_CANDIDATES", 400)  # small_store: 2 batches x 200
    monkeypatch.setattr(export_module, "PROCESS_BUILD_MIN_CANDIDATES_COLD", 10**9)
    _worker.shutdown_worker()
    cold = ficino.export(small_store, tmp_path / "cold.root", variables=["Lb_M"])  # no worker yet: too small to start one
    ficino.export(small_store, tmp_path / "start.root", variables=["Lb_M"], build="process")
    warm = ficino.export(small_store, tmp_path / "warm.root", variables=["Lb_M"])
    pq_ = ficino.export(small_store, tmp_path / "a.parquet", variables=["Lb_M"])  # pyarrow releases the GIL: a thread
    one = make_store(batches=1, n=500)
    single = ficino.export(one, tmp_path / "one.root", variables=["Lb_M"])  # one batch: nothing to overlap
    one.close()
    monkeypatch.setattr(export_module, "PROCESS_BUILD_MIN_CANDIDATES", 401)
    below = ficino.export(small_store, tmp_path / "below.root", variables=["Lb_M"])
    assert [s.worker_cpu_seconds > 0 for s in (cold, warm, pq_, single, below)] == [False, True, False, False, False]
