#!/usr/bin/env python
"""Benchmark of the vertex fit: compiled and vectorised fits/s for 2-, 3- and 4-track vertices vs a per-vertex loop.

Run standalone::

    python benchmarks/bench_vertexing.py [--vertices 20000] [--loop 500] [--repeat 3]

Toy prompt-like vertices with VELO-like track covariances (the reference error model
of :mod:`sim.detector.trackcov`).  The vectorised call fits ``--vertices`` vertices in
one :func:`sim.detector.vertexing.fit_vertices` call (with the composite momentum and
its 7 × 7 covariance); the baseline calls the same kernel once per vertex in a Python
loop over ``--loop`` vertices (the naive numpy way); the compiled kernel (numba, the default
of ``fit_vertex``) on the same ``--vertices``.  All in the same run, CPU time, best of
``--repeat``; prints the first compiled call's cost (numba import and JIT, or the load of
its cache) and a markdown table with the ratios.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def _toy(n: int, k: int, seed: int) -> tuple:
    import numpy as np

    from sim.detector.trackcov import TrackErrorModel, state_covariance

    rng = np.random.default_rng(seed)
    p = np.exp(rng.uniform(np.log(2e3), np.log(1e5), n * k))
    eta = rng.uniform(2.2, 4.8, n * k)
    phi = rng.uniform(-np.pi, np.pi, n * k)
    tx, ty = np.cos(phi) / np.sinh(eta), np.sin(phi) / np.sinh(eta)
    vz = np.repeat(rng.normal(0.0, 45.0, n), k)  # one vertex per k tracks
    zs, cov = state_covariance(p, tx, ty, np.zeros(n * k), np.zeros(n * k), vz, np.full(n * k, 3), TrackErrorModel())
    q = rng.choice([-1.0, 1.0], n * k)
    truth = np.column_stack([tx * (zs - vz), ty * (zs - vz), tx, ty, q / p])
    meas = truth + np.einsum("nij,nj->ni", np.linalg.cholesky(cov), rng.standard_normal((n * k, 5)))
    return zs.reshape(n, k), meas.reshape(n, k, 5), cov.reshape(n, k, 5, 5)


def _rates(n: int, n_loop: int, k: int, repeat: int) -> tuple[float, float, float]:
    """(compiled, numpy-vectorised, numpy per-vertex loop) fits/s, CPU time (``time.process_time``)."""
    import numpy as np

    from sim.detector.vertexing import fit_vertex, track_daughters

    z, st, cov = _toy(n, k, seed=k)
    d = track_daughters(z, st, cov, np.full(k, 139.57))
    fit_vertex(d, kernel="compiled")  # the JIT (or cache load) is timed separately in main
    best = [0.0, 0.0, 0.0]
    for _ in range(repeat):
        for j, kernel in enumerate(("compiled", "numpy")):
            t0 = time.process_time()
            fit_vertex(d, kernel=kernel)
            best[j] = max(best[j], n / (time.process_time() - t0))
        t0 = time.process_time()
        for i in range(n_loop):
            fit_vertex(track_daughters(z[i : i + 1], st[i : i + 1], cov[i : i + 1], np.full(k, 139.57)), kernel="numpy")
        best[2] = max(best[2], n_loop / (time.process_time() - t0))
    return best[0], best[1], best[2]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vertices", type=int, default=20_000, help="vertices per vectorised call")
    parser.add_argument("--loop", type=int, default=500, help="vertices fitted one by one (baseline)")
    parser.add_argument("--repeat", type=int, default=3, help="repetitions (best kept)")
    args = parser.parse_args(argv)
    import numpy as np

    from sim.detector.vertexing import fit_vertex, track_daughters

    z, st, cov = _toy(4, 2, seed=0)
    t0, c0 = time.perf_counter(), time.process_time()
    fit_vertex(track_daughters(z, st, cov, np.full(2, 139.57)), kernel="compiled")
    first = (time.perf_counter() - t0, time.process_time() - c0)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"\n### Vertex-fit benchmark ({args.vertices} vertices vectorised, {args.loop} in the loop, "
          f"{os.cpu_count()} CPUs, load average {load:.1f}; CPU time, best of {args.repeat})\n")
    print(f"first compiled call (numba import + JIT or cache load): {first[0]:.2f} s wall, {first[1]:.2f} s CPU\n")
    print("| tracks | compiled fits/s | numpy vectorised fits/s | per-vertex loop fits/s | compiled / numpy | numpy / loop |")
    print("|---:|---:|---:|---:|---:|---:|")
    for k in (2, 3, 4):
        comp, vec, loop = _rates(args.vertices, args.loop, k, args.repeat)
        print(f"| {k} | {comp:,.0f} | {vec:,.0f} | {loop:,.0f} | {comp / vec:.1f} | {vec / loop:.0f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
