#!/usr/bin/env python
"""Benchmark of the whole default chain (#19): mambah run vs bare phasespace, per-pass shares, start-up.

In one run, as whole processes:

1. bare ``phasespace`` generating *and unweighting* (accept–reject on the weight) the
   default decay Λb0 → (Λc+ → p K− π+) μ− ν̄μ, N events, in a fresh interpreter;
2. ``mambah run`` of the default job, N events, in a fresh interpreter (start-up,
   model loading, every pass and the store included), as a user runs it (two batches side
   by side in threads on a machine with two CPUs or more) and with ``--threads 1`` (one
   batch at a time);
3. ``mambah run --events 1000`` (the start-up time);

and, in this process, the share of each pass in the batch loop (each kernel timed
on the same batches into a store file, the store's part as ``store``), with the
passes inside the store's transaction (before #19) and staged in memory (now);
``--rss`` measures the peak RSS of whole runs of several sizes instead, ``--shares`` only the
CPU seconds per pass of the warm staged batch loop (for interleaved A/B runs under load).  Prints a markdown table
with the ratio ``mambah / bare`` (events/s) and the pass list it was measured with.

Run::

    python benchmarks/bench_chain.py [--events 200000] [--batch-size 25000] [--repeat 2]
    python benchmarks/bench_chain.py --events 2000000 --batch-size 50000 --repeat 2   # the #19 figure
    python benchmarks/bench_chain.py --shares --events 100000 --batch-size 50000
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

_BARE = r"""
import os, sys, time
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import numpy as np, phasespace, tensorflow as tf
from particle import Particle
n = int(sys.argv[1])
m = lambda name: Particle.from_evtgen_name(name).mass
lc = phasespace.GenParticle("Lambda_c+", m("Lambda_c+")).set_children(
    phasespace.GenParticle("p+", m("p+")), phasespace.GenParticle("K-", m("K-")), phasespace.GenParticle("pi+", m("pi+")))
lb = phasespace.GenParticle("Lambda_b0", m("Lambda_b0")).set_children(
    lc, phasespace.GenParticle("mu-", m("mu-")), phasespace.GenParticle("anti-nu_mu", 0.0))
rng = np.random.default_rng(1)
kept, chunk = 0, 100_000
while kept < n:
    w, parts = lb.generate(chunk, normalize_weights=True)
    keep = rng.random(chunk) < np.asarray(w) / float(np.max(w))
    kept += int(keep.sum())
"""


def peak_rss(cmd: list[str]) -> tuple[float, int]:
    """Wall seconds and peak RSS [bytes] of ``cmd`` as a whole child process (``os.wait4``'s rusage)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed with status {proc.returncode}")
    return time.perf_counter() - t0, int(usage.ru_maxrss) * 1024  # Linux: ru_maxrss in KiB


def rss_table(sizes: list[int], batch_size: int) -> None:
    """Peak RSS of ``mambah run`` (default job) for each number of events: flat in the number of batches."""
    print(f"| events | batches | wall s | peak RSS | (batch size {batch_size}, load {os.getloadavg()[0]:.1f}) |\n|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for n in sizes:
            out = Path(tmp) / "rss.duckdb"
            dt, rss = peak_rss([sys.executable, "-m", "mambah.cli", "run", "--events", str(n), "--batch-size", str(batch_size),
                                "-o", str(out), "--no-progress", "--overwrite"])
            size = out.stat().st_size
            print(f"| {n:,} | {-(-n // batch_size)} | {dt:.0f} | {rss / 2**20:,.0f} MiB | {size / n:,.0f} bytes/event |", flush=True)
            out.unlink()
    print(f"load average after: {os.getloadavg()[0]:.1f}")


def _timed(cmd: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True, cwd=ROOT, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    return time.perf_counter() - t0


def _cpu() -> float:
    """CPU seconds (user + system) of this process so far, all its threads."""
    import resource

    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def pass_shares(events: int, batch_size: int, mode: str = "staged", path: Path | None = None, *,
                clock: str = "wall", warm: bool = False) -> tuple[list[str], dict[str, float]]:
    """Seconds per pass (and the store's part) over the batch loop of the default job, in this process.

    Args:
        mode: ``"staged"`` (what ``run`` does: passes on an in-memory staging database, each
            table written to the store once per batch) or ``"transaction"`` (the passes insert
            into and update the store file itself inside the batch's transaction, as before #19).
        path: store file (default: in-memory store).
        clock: ``"wall"`` (``time.perf_counter``) or ``"cpu"`` (this process's CPU seconds, all
            threads: what compares under the other sessions' load).
        warm: run the batch loop once first with the same kernels (one-off costs, e.g. a graph's
            tracing, out of the figures) and time the second loop.
    """
    from mambah.quiet import quiet_tensorflow

    quiet_tensorflow()
    from mambah import EventStore
    from mambah.store import BatchRecord
    from sim.core.pipeline import BatchContext, build_kernels
    from sim.core.resources import blas_threads
    from sim.defaults import default_pipeline

    now = _cpu if clock == "cpu" else time.perf_counter
    pl = default_pipeline(events=events, batch_size=batch_size, seed=3)
    kernels = build_kernels(pl)
    names = [p.name for p in pl.passes]

    def loop() -> dict[str, float]:
        spent = dict.fromkeys([*names, "store"], 0.0)
        store = EventStore.create(path, overwrite=True) if path is not None else EventStore.memory()
        for b in pl.run.batches():
            t_batch = now()
            inner = 0.0
            record = BatchRecord(b.batch, b.n_events, b.seed)
            with store.staged_batch(record) if mode == "staged" else store.batch_transaction(record) as con:
                ctx = BatchContext(con, b)
                for name, k in zip(names, kernels):
                    t0 = now()
                    k(ctx)
                    dt = now() - t0
                    spent[name] += dt
                    inner += dt
            spent["store"] += now() - t_batch - inner
        store.close()
        return spent

    with blas_threads():  # one BLAS thread, as sim.core.runner.run's batch loop
        if warm:
            loop()
        return names, loop()


def shares_table(events: int, batch_size: int) -> None:
    """CPU seconds per pass of the warm staged batch loop (``--shares``), one markdown row."""
    with tempfile.TemporaryDirectory() as tmp:
        _names, spent = pass_shares(events, batch_size, "staged", Path(tmp) / "shares.duckdb", clock="cpu", warm=True)
    total = sum(spent.values())
    print(f"| {' | '.join(spent)} | batch loop | load |\n|{'---|' * (len(spent) + 2)}")
    print(f"| {' | '.join(f'{s:.2f} s ({s / total:.1%})' for s in spent.values())} | {total:.2f} CPU s | "
          f"{os.getloadavg()[0]:.1f} |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--batch-size", type=int, default=25_000)
    parser.add_argument("--rss", type=int, nargs="+", metavar="EVENTS",
                        help="only measure the peak RSS of whole 'mambah run' processes of these sizes (e.g. 1000000 5000000)")
    parser.add_argument("--repeat", type=int, default=1,
                        help="run bare phasespace and the default job this many times each, interleaved; the ratio of "
                             "the fastest of each (the store is written to disk, whose fsync stalls move a run by 10-20 %%)")
    parser.add_argument("--shares", action="store_true",
                        help="only the CPU seconds per pass of the warm staged batch loop, --events events in this process")
    args = parser.parse_args(argv)
    if args.shares:
        shares_table(args.events, args.batch_size)
        return 0
    if args.rss:
        rss_table(args.rss, args.batch_size)
        return 0
    n = args.events
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    bare_runs: list[float] = []
    chain_runs: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "chain.duckdb"
        for _ in range(args.repeat):  # interleaved, so that a slow spell of the host hits both
            bare_runs.append(_timed([sys.executable, "-c", _BARE, str(n)]))
            chain_runs.append(_timed([sys.executable, "-m", "mambah.cli", "run", "--events", str(n), "--batch-size",
                                      str(args.batch_size), "-o", str(out), "--no-progress", "--overwrite"]))
            size = out.stat().st_size
        t_bare, t_chain = min(bare_runs), min(chain_runs)
        t_one = _timed([sys.executable, "-m", "mambah.cli", "run", "--events", str(n), "--batch-size",
                        str(args.batch_size), "-o", str(Path(tmp) / "one.duckdb"), "--no-progress", "--threads", "1"])
        t_start = _timed([sys.executable, "-m", "mambah.cli", "run", "--events", "1000", "-o",
                          str(Path(tmp) / "small.duckdb"), "--no-progress"])
    with tempfile.TemporaryDirectory() as tmp:
        shares = {mode: pass_shares(min(n, 100_000), args.batch_size, mode, Path(tmp) / f"{mode}.duckdb")
                  for mode in ("transaction", "staged")}
    names, spent = shares["staged"]
    before = shares["transaction"][1]
    total, total_before = sum(spent.values()), sum(before.values())
    load = os.getloadavg()[0]
    print("| quantity | value |\n|---|---|")
    print(f"| bare phasespace (generate + unweight), whole process | {n / t_bare:,.0f} events/s ({t_bare:.1f} s) |")
    print(f"| mambah run (default job), whole process | {n / t_chain:,.0f} events/s ({t_chain:.1f} s) |")
    print(f"| ratio mambah / bare | {t_bare / t_chain:.3f} (target 0.3) |")
    if args.repeat > 1:
        print(f"| runs (s), bare / mambah, in order | {', '.join(f'{t:.1f}' for t in bare_runs)} / "
              f"{', '.join(f'{t:.1f}' for t in chain_runs)} (the fastest of each above) |")
    print(f"| mambah run --threads 1 (one batch at a time), whole process | {n / t_one:,.0f} events/s ({t_one:.1f} s), "
          f"ratio {t_bare / t_one:.3f} |")
    print(f"| mambah run --events 1000 | {t_start:.1f} s (target 4 s) |")
    print(f"| store size | {size / n:,.0f} bytes/event (target 700) |")
    print(f"| load average | {load:.1f} |")
    print(f"\npasses: {' -> '.join(names)}; {min(n, 100_000):,} events into a store file\n")
    print("| pass | share, passes in the store's transaction | share, staged in memory, written once |\n|---|---|---|")
    for name, s in spent.items():
        print(f"| {name} | {before[name] / total_before:.1%} ({before[name]:.2f} s) | {s / total:.1%} ({s:.2f} s) |")
    print(f"| batch loop | {total_before:.2f} s | {total:.2f} s |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
