"""Distributed runs on dask.distributed: determinism, resume, retries, killed workers, bad input.

One real-generator run on a fresh ``workers=2`` LocalCluster (== serial run);
the other tests use test-only numpy passes (defined here, registered in
``PASS_KINDS``) on one shared 2-process cluster reached by its address, the
code path of an external (Slurm/Kubernetes) cluster.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest

pytest.importorskip("distributed")

from mambah import DistributedError, EventStore
from mambah import errors as mambah_errors
from mambah.errors import ConfigError, ModelError
from sim.core.pipeline import PASS_KINDS, BatchContext, Kernel, Pass, Pipeline, RunConfig

TABLES = ("events", "mc_particles", "mc_vertices", "protoparticles", "vertices", "batches")


# ---------------------------------------------------------------------------- test-only passes
@dataclass(frozen=True)
class ToyEvents(Pass):
    """numpy-only generator: one ``events`` row per event; optionally dies, fails or counts builds.

    ``kill_marker``: the first time batch ``kill_batch`` runs, create this file
    and ``os._exit`` the (worker) process.  ``fail_marker``: while this file
    exists, batch ``fail_batch`` raises.  ``build_log``: ``build`` appends the pid.
    """

    kind: ClassVar[str] = "test-toy-events"
    writes: ClassVar[tuple[str, ...]] = ("events",)

    name: str = "toy"
    kill_batch: int = -1
    kill_marker: str = ""
    fail_batch: int = -1
    fail_marker: str = ""
    build_log: str = ""
    model: str = ""
    model_only_in_pid: int = 0  # >0: the model file is "there" only for this process (the driver)

    def build(self) -> Kernel:
        if self.model and (not os.path.exists(self.model) or (self.model_only_in_pid and os.getpid() != self.model_only_in_pid)):
            raise ModelError(f"pass {self.name!r}: model file {self.model} does not exist")
        if self.build_log:
            with open(self.build_log, "a") as f:
                f.write(f"{os.getpid()}\n")

        def kernel(ctx: BatchContext) -> None:
            b = ctx.batch
            if b.batch == self.kill_batch and not os.path.exists(self.kill_marker):
                Path(self.kill_marker).write_text(str(os.getpid()))
                os._exit(1)
            if b.batch == self.fail_batch and os.path.exists(self.fail_marker):
                raise ValueError(f"boom in batch {b.batch}")
            rng = ctx.rng(self.name)
            n = b.n_events
            ctx.insert("events", {
                "batch": np.full(n, b.batch, np.int32), "event": np.arange(n, dtype=np.int32),
                "pv_x": rng.normal(0, 0.04, n), "pv_y": rng.normal(0, 0.04, n),
                "pv_z": rng.normal(0, 40.0, n), "pv_t": rng.normal(0, 0.2, n),
            })

        return kernel


PASS_KINDS.setdefault(ToyEvents.kind, f"{__name__}:ToyEvents")


@dataclass(frozen=True)
class ToyMeta(Pass):
    """Sets a ``metadata`` row in every batch, as the Pythia pass sets ``generator`` (last batch wins)."""

    kind: ClassVar[str] = "test-toy-meta"
    reads: ClassVar[tuple[str, ...]] = ("events",)

    name: str = "toy-meta"

    def build(self) -> Kernel:
        def kernel(ctx: BatchContext) -> None:
            n = ctx.query("SELECT count(*) AS n FROM events WHERE batch = $batch").column("n")[0].as_py()
            ctx.con.execute("INSERT OR REPLACE INTO metadata VALUES ('generator', ?)",
                            [json.dumps({"batch": ctx.batch.batch, "events": n})])

        return kernel


PASS_KINDS.setdefault(ToyMeta.kind, f"{__name__}:ToyMeta")


def toy(events: int = 600, batch_size: int = 100, seed: int = 3, **kw: object) -> Pipeline:
    return Pipeline((ToyEvents(**kw),), RunConfig(events=events, batch_size=batch_size, seed=seed))  # type: ignore[arg-type]


def tf_threads() -> tuple[str | None, str | None]:
    """TensorFlow's intra/inter-op pool sizes as set for this (worker) process (read when TF starts)."""
    return os.environ.get("TF_NUM_INTRAOP_THREADS"), os.environ.get("TF_NUM_INTEROP_THREADS")


def worker_plugins(dask_worker) -> list[str]:
    return list(dask_worker.plugins)


def assert_same_store(a: Path | EventStore, b: Path) -> None:
    """Same pipeline metadata and the same rows, table by table (sorted by keys)."""
    sa = a if isinstance(a, EventStore) else EventStore.open(a, read_only=True)
    try:
        with EventStore.open(b, read_only=True) as sb:
            assert sa.get_metadata("pipeline") == sb.get_metadata("pipeline")
            for name in TABLES:
                ta, tb = sa.table(name), sb.table(name)
                assert ta.num_rows == tb.num_rows, name
                for col in ta.column_names:
                    assert ta[col].equals(tb[col]), f"{name}.{col} differs"
    finally:
        if sa is not a:
            sa.close()


def serial(pipeline: Pipeline, path: Path) -> Path:
    from sim.core.runner import run

    run(pipeline, path, progress=False)
    return path


@pytest.fixture(scope="module")
def cluster():
    import distributed

    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as c:
        yield c


# ---------------------------------------------------------------------------- tests
def test_workers_equal_serial_run(tmp_path: Path, generated_store: EventStore) -> None:
    """--workers 2 on the real generator == the serial run with the same seed, table by table.

    The serial reference is the session fixture ``generated_store`` (Generator(), 2 x 2000 events, seed 7).
    """
    from sim import Generator
    from sim.core.distributed import run_distributed

    p = Pipeline((Generator(),), RunConfig(events=4000, batch_size=2000, seed=7))
    out = tmp_path / "dist.duckdb"
    summary = run_distributed(p, out, workers=2, progress=False)
    assert_same_store(generated_store, out)
    assert (summary.batches_run, summary.batches_total, summary.events, summary.workers) == (2, 2, 4000, 2)
    assert summary.batches_merged == 2 and summary.merge_seconds > 0
    assert not (tmp_path / "dist.duckdb.parts").exists()  # spool cleaned up


def test_scheduler_address_kernels_once_per_worker_and_tf_threads(tmp_path: Path, cluster) -> None:
    import distributed

    from sim.core.distributed import run_distributed

    log = tmp_path / "builds.txt"
    p = toy(events=800, batch_size=100, build_log=str(log))
    summary = run_distributed(p, tmp_path / "out.duckdb", scheduler=cluster.scheduler_address, progress=False)
    assert summary.batches_run == 8 and summary.workers == 2
    pids = log.read_text().split()
    assert pids[0] == str(os.getpid())  # the driver checks the pipeline before any batch
    workers = pids[1:]
    assert 1 <= len(workers) <= 2 and len(set(workers)) == len(workers)  # built once per process, not per batch
    assert_same_store(serial(p, tmp_path / "serial.duckdb"), tmp_path / "out.duckdb")
    with distributed.Client(cluster.scheduler_address, set_as_default=False) as client:
        assert set(client.run(tf_threads).values()) == {("1", "1")}
        assert all("mambah-configure" in names for names in client.run(worker_plugins).values())


def test_killed_worker_is_rescheduled_without_duplicates(tmp_path: Path, cluster) -> None:
    from sim.core.distributed import run_distributed

    marker = tmp_path / "killed"
    p = toy(events=400, batch_size=100, kill_batch=2, kill_marker=str(marker))
    out = tmp_path / "out.duckdb"
    summary = run_distributed(p, out, scheduler=cluster.scheduler_address, progress=False)
    assert marker.exists()  # a worker did die in batch 2
    assert summary.batches_run == 4
    with EventStore.open(out, read_only=True) as s:
        assert s.batches() == [0, 1, 2, 3]
        assert s.query("SELECT count(*) AS n, count(DISTINCT (batch, event)) AS d FROM events").to_pylist() == [{"n": 400, "d": 400}]
    assert_same_store(serial(p, tmp_path / "serial.duckdb"), out)  # marker exists now: no kill in-process


def test_failing_batch_stops_then_resume_finishes(tmp_path: Path, cluster) -> None:
    from sim.core.distributed import run_distributed

    marker = tmp_path / "fail"
    marker.write_text("x")
    p = toy(events=500, batch_size=100, fail_batch=3, fail_marker=str(marker))
    out = tmp_path / "out.duckdb"
    with pytest.raises(DistributedError, match=r"batch 3 failed on worker .*ValueError: boom in batch 3; tried 2 time") as info:
        run_distributed(p, out, scheduler=cluster.scheduler_address, retries=1, progress=False)
    assert "\n" not in str(info.value)
    with EventStore.open(out, read_only=True) as s:
        assert 3 not in s.batches()
    marker.unlink()
    summary = run_distributed(p, out, scheduler=cluster.scheduler_address, resume=True, progress=False)
    assert summary.batches_total == 5
    assert_same_store(serial(toy(events=500, batch_size=100, fail_batch=3, fail_marker=str(marker)), tmp_path / "s.duckdb"), out)


def test_missing_model_fails_in_the_driver_before_any_output(tmp_path: Path, cluster) -> None:
    from sim.core.distributed import run_distributed

    p = toy(events=200, batch_size=100, model=str(tmp_path / "nowhere" / "eff.keras"))
    with pytest.raises(ModelError, match=r"model file .*eff.keras does not exist"):
        run_distributed(p, tmp_path / "out.duckdb", scheduler=cluster.scheduler_address, retries=0, progress=False)
    assert not (tmp_path / "out.duckdb").exists()


def test_worker_without_model_file_is_one_line(tmp_path: Path, cluster) -> None:
    from sim.core.distributed import run_distributed

    model = tmp_path / "eff.keras"
    model.write_text("the driver has it, the workers do not")
    p = toy(events=200, batch_size=100, model=str(model), model_only_in_pid=os.getpid())
    with pytest.raises(DistributedError, match=r"batch \d failed on worker tcp://.*: ModelError: pass 'toy': model file .*eff.keras does not exist; tried 1 time") as info:
        run_distributed(p, tmp_path / "out.duckdb", scheduler=cluster.scheduler_address, retries=0, progress=False)
    assert "\n" not in str(info.value)


def test_resume_merges_finished_parts_and_skips_redelivered(tmp_path: Path, cluster) -> None:
    from sim.core.distributed import run_distributed, run_part, spool_dir

    p = toy(events=400, batch_size=100)
    out = tmp_path / "out.duckdb"
    serial(p, out)
    with EventStore.open(out) as s:  # an "interrupted" run: batches 2 and 3 missing
        s.delete_batch(2)
        s.delete_batch(3)
    spool = spool_dir(out)
    batches = p.run.batches()
    run_part(p, batches[2], spool)  # finished on a worker, not merged yet
    run_part(p, batches[0], spool)  # re-delivered part of a merged batch
    assert sorted(x.name for x in spool.iterdir()) == ["batch=0", "batch=2"]
    seen: list[int] = []
    summary = run_distributed(p, out, scheduler=cluster.scheduler_address, resume=True, progress=False,
                              on_batch=lambda store, b: seen.append(b.batch))
    assert sorted(seen) == [2, 3]  # on_batch after each merge, as in the serial runner
    assert summary.batches_run == 1  # only batch 3 ran
    assert summary.batches_merged == 2  # part 2 + batch 3; part 0 skipped
    assert not spool.exists()
    assert_same_store(serial(p, tmp_path / "serial.duckdb"), out)


def test_unreachable_scheduler_is_one_line(tmp_path: Path) -> None:
    from sim.core.distributed import run_distributed

    t0 = time.perf_counter()
    with pytest.raises(DistributedError, match=r"cannot reach Dask scheduler 'tcp://127.0.0.1:9' within") as info:
        run_distributed(toy(), tmp_path / "out.duckdb", scheduler="tcp://127.0.0.1:9", progress=False)
    assert time.perf_counter() - t0 < 20
    assert "\n" not in str(info.value)
    assert not (tmp_path / "out.duckdb").exists()  # nothing left behind: rerun without --overwrite


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({}, "exactly one of workers"),
        ({"workers": 2, "scheduler": "tcp://x:1"}, "exactly one of workers"),
        ({"workers": 0}, "workers must be a positive integer"),
        ({"workers": 1, "retries": -1}, "retries must be"),
        ({"workers": 1, "threads_per_worker": 0}, "threads_per_worker must be"),
    ],
)
def test_bad_options(tmp_path: Path, kwargs: dict, match: str) -> None:
    from sim.core.distributed import run_distributed

    with pytest.raises(ConfigError, match=match):
        run_distributed(toy(), tmp_path / "out.duckdb", progress=False, **kwargs)
    assert not (tmp_path / "out.duckdb").exists()


def test_memory_output_refused() -> None:
    from sim.core.distributed import run_distributed

    with pytest.raises(ConfigError, match="store file"):
        run_distributed(toy(), ":memory:", workers=1, progress=False)


def test_cli_scheduler_and_errors(tmp_path: Path, cluster, capsys: pytest.CaptureFixture[str]) -> None:
    from mambah.cli import main

    cfg = tmp_path / "toy.toml"
    toy(events=300, batch_size=100).save(cfg)
    out = tmp_path / "cli.duckdb"
    assert main(["run", "--config", str(cfg), "-o", str(out), "--scheduler", cluster.scheduler_address, "--no-progress"]) == 0
    assert "3 batch(es) run" in capsys.readouterr().out
    with EventStore.open(out, read_only=True) as s:
        assert s.batches() == [0, 1, 2]
    assert main(["run", "--config", str(cfg), "-o", str(tmp_path / "x.duckdb"), "--scheduler", "tcp://127.0.0.1:9", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("mambah: error: cannot reach Dask scheduler") and "\n" not in err
    assert main(["run", "--config", str(cfg), "-o", str(tmp_path / "y.duckdb"), "--workers", "2", "--scheduler", "tcp://x:1"]) == 2
    assert "exactly one of" in capsys.readouterr().err


# ---------------------------------------------------------------------------- dataset stores (#19)
def toy_meta(events: int = 500, batch_size: int = 100, **kw: object) -> Pipeline:
    return Pipeline((ToyEvents(**kw), ToyMeta()), RunConfig(events=events, batch_size=batch_size, seed=5))  # type: ignore[arg-type]


def test_dataset_run_resumes_equals_serial_and_merges(tmp_path: Path, cluster, capsys: pytest.CaptureFixture[str]) -> None:
    """Workers write the dataset themselves; an interrupted run resumes; the result == the serial store, metadata included."""
    from mambah.cli import main
    from sim.core.distributed import run_distributed

    marker = tmp_path / "fail"
    marker.write_text("x")
    out = tmp_path / "ds"
    with pytest.raises(DistributedError, match="batch 3 failed"):
        run_distributed(toy_meta(fail_batch=3, fail_marker=str(marker)), out, scheduler=cluster.scheduler_address,
                        retries=0, progress=False, dataset=True)
    _wait_until_workers_idle(cluster.scheduler_address)  # a batch already running when the driver stopped still lands
    with EventStore.open(out, read_only=True) as s:
        kept = s.batches()
    assert 3 not in kept and not list(out.glob(".tmp-*"))
    marker.unlink()
    summary = run_distributed(toy_meta(fail_batch=3, fail_marker=str(marker)), out, scheduler=cluster.scheduler_address,
                              resume=True, progress=False, dataset=True)
    assert summary.batches_run == 5 - len(kept) and summary.batches_total == 5
    ref = serial(toy_meta(fail_batch=3, fail_marker=str(marker)), tmp_path / "serial.duckdb")
    assert_same_store(ref, out)
    with EventStore.open(ref, read_only=True) as a, EventStore.open(out, read_only=True) as b:
        assert a.get_metadata("generator") == b.get_metadata("generator") == json.dumps({"batch": 4, "events": 100})
    # the mambah commands open the dataset directly; merge makes one equal store file
    assert main(["check", str(out)]) == 0 and main(["info", str(out)]) == 0
    assert main(["query", str(out), "SELECT count(*) AS n FROM events"]) == 0 and "500" in capsys.readouterr().out
    merged = tmp_path / "merged.duckdb"
    assert main(["merge", str(out), str(merged)]) == 0
    assert_same_store(ref, merged)
    with EventStore.open(merged, read_only=True) as m:
        assert m.get_metadata("generator") == json.dumps({"batch": 4, "events": 100})
    with pytest.raises(mambah_errors.StoreError, match="read-only only"):
        EventStore.open(out)
    # a resume with other settings is refused; --dataset needs a cluster
    with pytest.raises(ConfigError, match="another pipeline or run settings"):
        run_distributed(toy_meta(events=600), out, scheduler=cluster.scheduler_address, resume=True, progress=False, dataset=True)
    assert main(["run", "--config", str(_save(toy_meta(), tmp_path / "t.toml")), "-o", str(tmp_path / "x"), "--dataset"]) == 2
    assert "--dataset needs --workers" in capsys.readouterr().err


def _executing(dask_worker) -> int:
    return len(getattr(dask_worker.state, "executing", ()))


def _wait_until_workers_idle(address: str, timeout: float = 60.0) -> None:
    import distributed

    with distributed.Client(address, set_as_default=False) as client:
        deadline = time.monotonic() + timeout
        while any(client.run(_executing).values()) and time.monotonic() < deadline:
            time.sleep(0.1)


def _save(p: Pipeline, path: Path) -> Path:
    p.save(path)
    return path


def test_merged_distributed_run_keeps_generator_metadata(tmp_path: Path, cluster) -> None:
    """The metadata a pass sets in a worker (the Pythia/HepMC generator record) reaches the merged store."""
    from sim.core.distributed import run_distributed

    out = tmp_path / "out.duckdb"
    run_distributed(toy_meta(events=300), out, scheduler=cluster.scheduler_address, progress=False)
    ref = serial(toy_meta(events=300), tmp_path / "serial.duckdb")
    with EventStore.open(ref, read_only=True) as a, EventStore.open(out, read_only=True) as b:
        assert a.get_metadata("generator") == b.get_metadata("generator") == json.dumps({"batch": 2, "events": 100})


def test_two_worker_cli_run_prints_only_the_summary(tmp_path: Path) -> None:
    """A 2-worker local cluster: no Dask INFO lines, no 'worker killed' lines at shutdown (stderr captured)."""
    from sim import Generator

    cfg = _save(Pipeline((Generator(),), RunConfig(events=2000, batch_size=1000, seed=7)), tmp_path / "gen.toml")
    out = tmp_path / "ds"
    proc = subprocess.run([sys.executable, "-m", "mambah.cli", "run", "--config", str(cfg), "--workers", "2", "--dataset",
                           "-o", str(out), "--no-progress"], capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    assert proc.stdout.splitlines() == [proc.stdout.strip()] and "2 batch(es) run, 2000 events" in proc.stdout
    with EventStore.open(out, read_only=True) as s:
        assert s.batches() == [0, 1]


def _worker_env() -> tuple[str | None, bool]:
    import dask

    return os.environ.get("MALLOC_TRIM_THRESHOLD_"), bool(dask.config.get("distributed.worker.profile.enabled"))


def test_local_cluster_workers_keep_glibc_malloc_and_run_without_the_profiler(monkeypatch) -> None:
    """Dask's MALLOC_TRIM_THRESHOLD_=65536 (fixed mmap threshold: +40 % CPU per batch) and its 10 ms stack
    sampler stay out of Mambah's workers, even when an earlier nanny left the variable in this process."""
    import distributed

    from sim.core.distributed import local_cluster

    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "65536")
    with local_cluster(1, 1) as cluster, distributed.Client(cluster, set_as_default=False) as client:
        seen = list(client.run(_worker_env).values())
    assert seen == [(None, False)]
    assert os.environ["MALLOC_TRIM_THRESHOLD_"] == "65536"  # the driver's own environment is given back
