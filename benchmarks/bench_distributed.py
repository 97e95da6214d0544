"""Benchmark: events/s of a distributed run with 1 and 2 Dask workers, scaling efficiency, merge cost.

Usage::

    python benchmarks/bench_distributed.py                      # 100k events, batches of 10k, 1 and 2 workers
    python benchmarks/bench_distributed.py --events 1000000 --batch-size 25000 --workers 1 2 4

For each worker count a LocalCluster of that many processes (1 thread each) is
started and *warmed up* (one small run builds every pass's kernels on every
worker: decay graphs compiled, models loaded), then the timed run goes to it
through its scheduler address.  Reported per row:

* ``events/s``: timed run, events merged into the output store per wall second
  (worker compute + Parquet spool + driver merge);
* ``efficiency``: ``rate(N) / (N * rate(1))``;
* ``merge s/batch``: driver time to read a part back and write it into the
  store in one transaction, then delete it (the serial part of a run);
* ``startup s``: cluster start plus warm-up (paid once per run).

The serial runner (``sim.core.runner.run``, same process, kernels warm) is the
reference line.  The pipeline is the default job if every pass of it can be
built here (models present), else the generator alone (said in the header).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mambah.quiet import quiet_tensorflow

quiet_tensorflow()  # before TensorFlow is imported: its C++ start-up lines are held back


def _pipeline(events: int, batch_size: int, seed: int):
    import dataclasses

    from mambah.errors import MambahError
    from sim import Generator, Pipeline, RunConfig
    from sim.core.pipeline import build_kernels
    from sim.defaults import default_pipeline

    run = RunConfig(events=events, batch_size=batch_size, seed=seed)
    try:
        p = default_pipeline()
        p = Pipeline(p.passes, run)
        build_kernels(p)
        return p, "default job: " + ", ".join(x.name for x in p.passes)
    except MambahError as err:
        logging.getLogger("bench").warning("default job not buildable here (%s); using the generator alone", err)
        p = Pipeline((Generator(),), dataclasses.replace(run))
        build_kernels(p)
        return p, "generator only (default job not buildable: models missing)"


def _isolated_merge_cost(pipeline, tmp: Path, n: int) -> tuple[float, float]:
    """Seconds per batch to read a part back and to write it into a store, nothing else running."""
    import shutil

    from sim.core.distributed import _read_part, run_part
    from sim.core.runner import open_output

    spool = tmp / "iso.parts"
    batches = pipeline.run.batches()[:n]
    for b in batches:
        run_part(pipeline, b, spool)
    store = open_output(pipeline, tmp / "iso.duckdb", resume=False, overwrite=True)
    read = write = 0.0
    try:
        for b in batches:
            part = spool / f"batch={b.batch}"
            t0 = time.perf_counter()
            record, tables, _, meta = _read_part(part)
            t1 = time.perf_counter()
            store.write_batch(record, tables, meta)
            shutil.rmtree(part)
            write += time.perf_counter() - t1
            read += t1 - t0
    finally:
        store.close()
    return read / len(batches), write / len(batches)


def _isolated_dataset_cost(pipeline, tmp: Path, n: int) -> tuple[float, float, float, float]:
    """Per batch, nothing else running: passes in the staging database, writing the batch directory
    (Parquet files + rename), its bytes; and the open of the finished dataset per batch directory [s, s, bytes, s]."""
    from mambah.dataset import create_dataset, dataset_connection, write_dataset_batch
    from mambah.store import BatchRecord, staged_metadata, staging_connection
    from sim.core.pipeline import build_kernels, run_batch

    root = create_dataset(tmp / "iso.dataset", {"pipeline": pipeline.to_toml()}, overwrite=True)
    kernels = build_kernels(pipeline)
    compute = write = 0.0
    for b in pipeline.run.batches()[:n]:
        with staging_connection(1) as con:
            t0 = time.perf_counter()
            run_batch(kernels, con, b)
            t1 = time.perf_counter()
            write_dataset_batch(root, BatchRecord(b.batch, b.n_events, b.seed), con, metadata=staged_metadata(con))
            write += time.perf_counter() - t1
            compute += t1 - t0
    size = sum(f.stat().st_size for f in root.rglob("*.parquet"))
    t0 = time.perf_counter()
    con = dataset_connection(root)
    con.execute("SELECT count(*) FROM events").fetchall()
    con.close()
    return compute / n, write / n, size / n, (time.perf_counter() - t0) / n


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=100_000)
    ap.add_argument("--batch-size", type=int, default=10_000)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--no-serial", action="store_true", help="skip the serial reference line")
    ap.add_argument("--modes", nargs="+", choices=("merge", "dataset"), default=["merge", "dataset"],
                    help="merge: the driver merges each part into one store file; dataset: the workers write a dataset store")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    import dataclasses

    from sim import Pipeline
    from sim.core.distributed import local_cluster, run_distributed
    from sim.core.runner import run

    pipeline, what = _pipeline(args.events, args.batch_size, args.seed)
    warm = Pipeline(pipeline.passes, dataclasses.replace(pipeline.run, events=2 * max(args.workers) * 100, batch_size=100))
    rows: list[tuple[str, int, float, float, float, float]] = []
    tmp = Path(tempfile.mkdtemp(prefix="mambah-bench-"))
    load0 = os.getloadavg()[0]
    print(f"# {what}; {args.events} events in batches of {args.batch_size}; {os.cpu_count()} CPU cores", flush=True)
    if not args.no_serial:
        s = run(pipeline, tmp / "serial.duckdb", progress=False)
        rows.append(("serial", 1, s.seconds, s.events_per_second, 0.0, 0.0))
    for n in args.workers:
        t0 = time.perf_counter()
        with local_cluster(n, 1, {"TF_NUM_INTRAOP_THREADS": "1", "TF_NUM_INTEROP_THREADS": "1",
                                  "OMP_NUM_THREADS": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}) as cluster:
            run_distributed(warm, tmp / f"warm{n}.duckdb", scheduler=cluster.scheduler_address, progress=False)
            startup = time.perf_counter() - t0
            for mode in args.modes:
                out = tmp / (f"w{n}.duckdb" if mode == "merge" else f"w{n}.dataset")
                s = run_distributed(pipeline, out, scheduler=cluster.scheduler_address, progress=False,
                                    dataset=mode == "dataset")
                rows.append((f"dask x{n} {mode}", n, s.seconds, s.events_per_second, s.merge_seconds_per_batch, startup))
    merge_iso = _isolated_merge_cost(pipeline, tmp, n=4)
    ds_iso = _isolated_dataset_cost(pipeline, tmp, n=4)
    base = next((r[3] for r in rows if r[0].startswith("dask x1 ")), None)
    ser = next((r[3] for r in rows if r[0] == "serial"), None)
    print(f"{'run':<18} {'workers':>7} {'wall s':>8} {'events/s':>10} {'vs serial':>9} {'efficiency':>10} {'merge s/batch':>13} {'startup s':>9}")
    for name, n, sec, rate, merge, startup in rows:
        eff = f"{rate / (n * base):.2f}" if base and name != "serial" else "-"
        vs = f"{rate / ser:.2f}" if ser else "-"
        mrg = f"{merge:.3f}" if name.endswith("merge") else "-"
        st = f"{startup:.1f}" if name != "serial" else "-"
        print(f"{name:<18} {n:>7} {sec:>8.1f} {rate:>10,.0f} {vs:>9} {eff:>10} {mrg:>13} {st:>9}")
    compute, write, size, open_s = ds_iso
    print(f"# dataset, per batch of {args.batch_size} events on one worker: passes {compute:.3f} s, writing the batch "
          f"directory (Parquet {size / 2**20:.1f} MiB = {size / args.batch_size:.0f} bytes/event, rename) {write:.3f} s; "
          f"opening the dataset {1e3 * open_s:.1f} ms per batch directory")
    merges = [r[4] for r in rows if r[0].endswith("merge")]
    if merges:
        avg = sum(merges) / len(merges)
        print(f"# merge cost during the runs (driver sharing the cores with the workers): {avg:.3f} s per batch "
              f"of {args.batch_size} events ({1e6 * avg / args.batch_size:.1f} ms per 1000 events)")
    read, write = merge_iso
    print(f"# merge cost alone: read part {read:.3f} s + write into the store {write:.3f} s per batch of "
          f"{args.batch_size} events ({1e6 * (read + write) / args.batch_size:.1f} ms per 1000 events)")
    print(f"# load average (1 min) before/after: {load0:.1f} / {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    import shutil

    shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
