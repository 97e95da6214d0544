"""Benchmark: Ficino export vs raw uproot / pyarrow writes of the same arrays.

Run: ``python benchmarks/bench_export.py [--batches 4] [--events 25000] [--variables all|few] [--repeat 2]
[--build serial,process] [--formats root,parquet]``

In one process and one run:

1. a store of ``batches x events`` hand-built ``Lambda_b0 -> (Lambda_c+ -> p+ K- pi+) mu- anti-nu_mu``
   events (truth, vertices, protoparticles with PID columns and track states + covariances from
   the reference error model, so the export fits every decay vertex; no generator, so
   only the export is timed) is written to a temporary DuckDB file;
2. ``ficino.export`` to ROOT (LZ4) and to Parquet (LZ4): everything an export
   does (read the batch from DuckDB, MC-truth matching, joins, variables, composites, write);
3. the *same arrays* (read back from the ntuple into memory first) written raw,
   chunk by chunk (one chunk per batch), with ``uproot.recreate`` + ``mktree`` +
   ``extend`` and with ``pyarrow.parquet.ParquetWriter``, same compression;
4. the ratio export rows/s / raw rows/s (target >= 0.5), wall clock and CPU (this process's and
   the build worker's, ``ExportSummary.worker_cpu_seconds``), best of ``--repeat`` rounds and the
   median of the per-round ratios.

Each round runs every ``--build`` mode of :func:`ficino.export` (``serial``: built in this process;
``process``: built in the build worker process while this one writes) one after the other and then
the raw writer, so the modes are compared interleaved under the same load.  The build worker is
started (and its kernels loaded) once before the rounds, as a second export in a process finds it.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import ficino
import mambah

PIDS = np.array([5122, 4122, 13, -14, 2212, -321, 211], np.int32)
CHARGES = np.array([0, 1, -1, 0, 1, -1, 1], np.int16)
MASSES = np.array([5619.6, 2286.46, 105.658, 0.0, 938.272, 493.677, 139.570])
TRACKS = np.array([2, 4, 5, 6])


def batch_tables(batch: int, n: int, rng: np.random.Generator) -> dict[str, pa.Table]:
    """One batch of hand-built events (see the module docstring)."""
    s = len(PIDS)
    p = np.zeros((n, s, 3))
    p[:, 2:, :2] = rng.normal(0, 800, (n, s - 2, 2))
    p[:, 2:, 2] = rng.uniform(5e3, 6e4, (n, s - 2))
    p[:, 1] = p[:, 4:].sum(axis=1)
    p[:, 0] = p[:, 1:4].sum(axis=1)
    e = np.sqrt((p**2).sum(axis=2) + MASSES**2)
    e[:, 1] = e[:, 4:].sum(axis=1)
    e[:, 0] = e[:, 1:4].sum(axis=1)
    col = lambda v: np.tile(np.asarray(v, np.int32), n)  # noqa: E731
    mc = {
        "batch": np.full(n * s, batch, np.int32), "event": np.repeat(np.arange(n, dtype=np.int32), s), "index": col(range(s)),
        "pid": np.tile(PIDS, n), "px": p[..., 0].ravel(), "py": p[..., 1].ravel(), "pz": p[..., 2].ravel(), "e": e.ravel(),
        "mass": np.tile(MASSES, n), "charge": np.tile(CHARGES, n), "mother": col([-1, 0, 0, 0, 1, 1, 1]),
        "first_daughter": col([1, 4, -1, -1, -1, -1, -1]), "last_daughter": col([3, 6, -1, -1, -1, -1, -1]),
        "prod_vertex": col([0, 1, 1, 1, 2, 2, 2]), "decay_vertex": col([1, 2, -1, -1, -1, -1, -1]), "is_signal": np.ones(n * s, bool),
    }
    pv = rng.normal(0, [0.01, 0.01, 40], (n, 3))
    sv1 = pv + p[:, 0] / np.linalg.norm(p[:, 0], axis=1)[:, None] * rng.exponential(10, (n, 1))
    sv2 = sv1 + p[:, 1] / np.linalg.norm(p[:, 1], axis=1)[:, None] * rng.exponential(5, (n, 1))
    v = np.stack([pv, sv1, sv2], axis=1)
    mv = {
        "batch": np.full(3 * n, batch, np.int32), "event": np.repeat(np.arange(n, dtype=np.int32), 3),
        "index": np.tile(np.arange(3, dtype=np.int32), n), "x": v[..., 0].ravel(), "y": v[..., 1].ravel(),
        "z": v[..., 2].ravel(), "t": np.zeros(3 * n), "mother_particle": np.tile(np.array([-1, 0, 1], np.int32), n),
    }
    m = 4 * n
    ev, j = np.repeat(np.arange(n, dtype=np.int32), 4), np.tile(TRACKS, n)
    # track states and covariances from the reference error model: the export fits the vertices (issue #14)
    from sim.detector.trackcov import TrackErrorModel, cov_to_columns, crossed_velo_stations, reconstruct_states

    origin = v[ev, np.array([0, 1, 1, 1, 2, 2, 2])[j]]
    truth = {"charge": CHARGES[j].astype(np.float64), "px": p[ev, j, 0], "py": p[ev, j, 1], "pz": p[ev, j, 2],
             **{f"origin_{a}": origin[:, i] for i, a in enumerate("xyz")}, **{f"pv_{a}": pv[ev, i] for i, a in enumerate("xyz")}}
    hits = crossed_velo_stations(origin[:, 0] - pv[ev, 0], origin[:, 1] - pv[ev, 1], origin[:, 2],
                                 truth["px"] / truth["pz"], truth["py"] / truth["pz"], TrackErrorModel()).sum(axis=1)
    st = reconstruct_states(truth, np.where(hits >= 3, 3, 5), rng.standard_normal((m, 5)))
    rp = np.column_stack([st["px"], st["py"], st["pz"]])
    f32 = lambda: rng.normal(size=m).astype(np.float32)  # noqa: E731
    pp = {
        "batch": np.full(m, batch, np.int32), "event": ev, "index": np.tile(np.arange(4, dtype=np.int32), n),
        "mc_particle": j.astype(np.int32), "track_type": np.full(m, 3, np.int16), "charge": CHARGES[j],
        "px": rp[:, 0], "py": rp[:, 1], "pz": rp[:, 2], "tx": st["tx"], "ty": st["ty"],
        "x": st["x"], "y": st["y"], "z": st["z"], **cov_to_columns(st["cov"]), "ip": rng.exponential(0.1, m),
        "ip_chi2": rng.exponential(10, m), "track_chi2ndof": rng.gamma(2, 0.5, m), "ghost_prob": rng.uniform(0, 0.1, m),
        "has_rich": np.ones(m, bool), "is_muon": j == 2, "MuonMuLL": f32(), "MuonBkgLL": f32(),
        **{f"RichDLL{h}": f32() for h in ("e", "mu", "K", "p")}, **{f"PID{h}": f32() for h in ("e", "mu", "K", "p")},
        **{f"ProbNN{h}": rng.uniform(size=m).astype(np.float32) for h in ("e", "mu", "pi", "k", "p", "ghost")},
    }
    events = {
        "batch": np.full(n, batch, np.int32), "event": np.arange(n, dtype=np.int32), "pv_x": pv[:, 0], "pv_y": pv[:, 1],
        "pv_z": pv[:, 2], "pv_t": np.zeros(n), "n_pv": np.ones(n, np.int16), "n_tracks": rng.poisson(80, n).astype(np.int32),
    }
    return {"events": pa.table(events), "mc_particles": pa.table(mc), "mc_vertices": pa.table(mv), "protoparticles": pa.table(pp)}


def _clock() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


def _since(t0: tuple[float, float]) -> tuple[float, float]:
    return time.perf_counter() - t0[0], time.process_time() - t0[1]


def raw_root(path: Path, chunks: list[dict[str, np.ndarray]]) -> tuple[float, float]:
    """(wall, CPU) seconds to write ``chunks`` with uproot alone (LZ4 level 1, one extend per chunk)."""
    import uproot

    t0 = _clock()
    with uproot.recreate(path, compression=uproot.LZ4(1)) as f:
        tree = f.mktree("DecayTree", {k: v.dtype for k, v in chunks[0].items()})
        for c in chunks:
            tree.extend(c)
    return _since(t0)


def raw_parquet(path: Path, chunks: list[dict[str, np.ndarray]]) -> tuple[float, float]:
    """(wall, CPU) seconds to write ``chunks`` with pyarrow alone (LZ4, one row group per chunk)."""
    import pyarrow.parquet as pq

    t0 = _clock()
    schema = pa.table({k: v[:0] for k, v in chunks[0].items()}).schema
    with pq.ParquetWriter(path, schema, compression="lz4") as w:
        for c in chunks:
            w.write_table(pa.table(c, schema=schema))
    return _since(t0)


def _round(store: mambah.EventStore, d: Path, fmt: str, modes: Sequence[str], variables: list[str] | None,
           batches: int, events: int) -> tuple[dict[str, tuple[float, float, float, float]], tuple[float, float], Any]:
    """One round of one format: each build mode's export (wall, CPU incl. the build worker's, CPU here, the
    worker's CPU), then the raw writer."""
    out: dict[str, tuple[float, float, float, float]] = {}
    summary = None
    for mode in modes:
        t0 = _clock()
        summary = ficino.export(store, d / f"export.{fmt}", variables=variables, overwrite=True, build=mode)
        wall, cpu = _since(t0)
        out[mode] = (wall, cpu + summary.worker_cpu_seconds, cpu, summary.worker_cpu_seconds)
    if fmt == "root":
        import uproot

        with uproot.open(d / "export.root") as f:  # ROOT stores big-endian; give the raw writer native arrays, as ficino has
            arrays = {k: v.astype(v.dtype.newbyteorder("=")) for k, v in f["DecayTree"].arrays(library="np").items()}
    else:
        import pyarrow.parquet as pq

        table = pq.read_table(d / "export.parquet")
        arrays = {k: table[k].to_numpy() for k in table.column_names}
    chunks = [{k: v[i * events : (i + 1) * events] for k, v in arrays.items()} for i in range(batches)]
    raw = raw_root if fmt == "root" else raw_parquet
    t_raw = raw(d / f"raw.{fmt}", chunks)
    return out, t_raw, summary


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batches", type=int, default=4)
    ap.add_argument("--events", type=int, default=25_000, help="events (= candidates) per batch")
    ap.add_argument("--repeat", type=int, default=2, help="rounds (default 2); best and median of them")
    ap.add_argument("--variables", choices=("all", "few"), default="all", help="all default columns or 10 columns")
    ap.add_argument("--fit-kernel", choices=("compiled", "numpy"), default="compiled",
                    help="vertex-fit kernel (the default of sim.detector.vertexing; numpy: the reference, for before/after)")
    ap.add_argument("--build", default="serial,process",
                    help="comma-separated ficino.export build modes, run interleaved in each round (auto, serial, process)")
    ap.add_argument("--formats", default="root,parquet", help="comma-separated: root, parquet")
    args = ap.parse_args(argv)
    modes = [m.strip() for m in args.build.split(",") if m.strip()]
    formats = [f.strip() for f in args.formats.split(",") if f.strip()]
    from ficino.export import BUILD_MODES

    bad = [m for m in modes if m not in BUILD_MODES] + [f for f in formats if f not in ("root", "parquet")]
    if bad or not modes or not formats:
        print(f"bench_export: bad --build/--formats {', '.join(bad) or '(empty)'}; modes are auto, serial, process; formats root, parquet",
              file=sys.stderr)
        return 2
    if args.fit_kernel == "numpy" and any(m != "serial" for m in modes):
        print("bench_export: --fit-kernel numpy switches the kernels in this process only; use it with --build serial", file=sys.stderr)
        return 2
    from sim.detector import vertexing

    for func in (vertexing.fit_vertex, vertexing.fit_vertex_dtf, vertexing.composite_daughters, vertexing.decay_time,
                 vertexing.own_pv_quantities, vertexing.line_ip, vertexing.track_states, vertexing.track_daughters_rows):
        assert func.__kwdefaults__ is not None
        func.__kwdefaults__["kernel"] = args.fit_kernel  # benchmark switch: the export calls them with defaults
    variables = None if args.variables == "all" else ["Lb_M", "Lb_MCORR", "Lc_M", "p_PT", "K_PT", "pi_PT", "mu_PT", "p_PIDK", "runNumber", "eventNumber"]
    rng = np.random.default_rng(1)
    rows = args.batches * args.events
    loads = [os.getloadavg()[0]]
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        store = mambah.EventStore.create(d / "bench.duckdb")
        for b in range(args.batches):
            store.write_batch(mambah.BatchRecord(b, args.events, 1), batch_tables(b, args.events, rng))
        store.close()
        store = mambah.EventStore.open(d / "bench.duckdb", read_only=True)
        ficino.to_parquet(store, d / "warmup.parquet", variables=["Lb_M"], build="serial")  # imports, particle tables
        start = None
        if "process" in modes or "auto" in modes:  # start the build worker (once per process) and load its kernels
            t0 = _clock()
            s = ficino.to_root(store, d / "warmup.root", variables=["Lb_M"], build="process")
            start = (*_since(t0), s.worker_cpu_seconds)
        times: dict[tuple[str, str], list[tuple[float, float, float, float]]] = {}
        raws: dict[str, list[tuple[float, float]]] = {}
        sizes: dict[str, tuple[int, int, int]] = {}
        for _ in range(args.repeat):  # rounds: every mode of every format, interleaved (the machine is shared)
            for fmt in formats:
                t, t_raw, summary = _round(store, d, fmt, modes, variables, args.batches, args.events)
                for mode, v in t.items():
                    times.setdefault((fmt, mode), []).append(v)
                raws.setdefault(fmt, []).append(t_raw)
                sizes[fmt] = (len(summary.columns), (d / f"export.{fmt}").stat().st_size, (d / f"raw.{fmt}").stat().st_size)
        store.close()
    loads.append(os.getloadavg()[0])
    print(f"ficino export vs raw writer, {rows:,} candidates in {args.batches} batches, {args.variables} variables, "
          f"{args.repeat} interleaved rounds, {args.fit_kernel} vertex-fit kernel")
    if start is not None:
        print(f"build worker start (first process export in a process, 1 column): {start[0]:.2f} s wall, "
              f"{start[1]:.2f} s CPU here + {start[2]:.2f} s in the worker")
    print(f"{'format':<8}{'build':<9}{'columns':>8}{'export rows/s':>15}{'raw rows/s':>12}{'ratio':>7}{'CPU ratio':>10}"
          f"{'median r':>9}{'med CPU r':>10}{'here r':>8}{'worker r':>9}{'MB':>7}")
    ok = {}
    for fmt in formats:
        best_raw = (min(t[0] for t in raws[fmt]), min(t[1] for t in raws[fmt]))
        for mode in modes:
            ts = times[(fmt, mode)]
            best = (min(t[0] for t in ts), min(t[1] for t in ts))
            ratio, cpu_ratio = best_raw[0] / best[0], best_raw[1] / best[1]
            med = (float(np.median([r[0] / t[0] for r, t in zip(raws[fmt], ts)])), float(np.median([r[1] / t[1] for r, t in zip(raws[fmt], ts)])))
            ok[(fmt, mode)] = (ratio >= 0.5, cpu_ratio >= 0.5)
            ncol, se, _ = sizes[fmt]
            here, work = min(t[2] for t in ts), min(t[3] for t in ts)
            print(f"{fmt:<8}{mode:<9}{ncol:>8}{rows / best[0]:>15,.0f}{rows / best_raw[0]:>12,.0f}{ratio:>7.2f}{cpu_ratio:>10.2f}"
                  f"{med[0]:>9.2f}{med[1]:>10.2f}{best_raw[1] / here:>8.2f}"
                  f"{(f'{best_raw[1] / work:.2f}' if work > 0 else '-'):>9}{se / 1e6:>7.1f}")
    print("ratio = raw time / export time, best of the rounds (median r: median of the per-round ratios, export and raw of one round);")
    print("CPU counts this process and the build worker process; here r / worker r: raw CPU / this process's CPU and /")
    print("the worker's (both >= 0.5: on two free cores the wall ratio can reach 0.5, whatever the load now); target >= 0.5:")
    for (fmt, mode), (w, c) in ok.items():
        print(f"  {fmt} {mode}: wall {'met' if w else 'NOT met'}, CPU {'met' if c else 'NOT met'}")
    print(f"({os.cpu_count()} CPUs, load average {loads[0]:.1f} -> {loads[1]:.1f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
