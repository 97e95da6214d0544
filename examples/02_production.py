"""A production: a custom decay from a .dec file, many events in batches, on Dask workers.

Generates B+ -> J/psi K+ and B+ -> J/psi pi+ (J/psi -> mu+ mu-) with the
branching fractions of ``examples/Bu2JpsiK.dec``, 200 000 events by default, on
a local Dask cluster of ``--workers`` processes (default 2) (``--workers 0``: serial, in
this process; ``--scheduler tcp://host:8786``: an existing cluster).  Prints
the timing and the generated mode fractions.

    python examples/02_production.py                                   # 200 000 events, 2 workers
    python examples/02_production.py --events 10000000 --batch-size 250000 --workers 8   # a real production
    python examples/02_production.py --events 20000 --workers 2 -o small.duckdb --overwrite

The command-line equivalent is::

    mambah run --dec-file examples/Bu2JpsiK.dec --events 10000000 --batch-size 250000 --workers 2 -o bu2jpsik.duckdb
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # run from a checkout without installing

from mambah.quiet import quiet_tensorflow

quiet_tensorflow()  # before anything imports TensorFlow: its C++ start-up lines are held back


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dec-file", default=str(HERE / "Bu2JpsiK.dec"), help="EvtGen .dec file (default: the shipped B+ one)")
    ap.add_argument("--events", type=int, default=200_000, help="events (default 200000)")
    ap.add_argument("--batch-size", type=int, default=50_000, help="events per batch (default 50000)")
    ap.add_argument("--seed", type=int, default=2024)
    ap.add_argument("--workers", type=int, default=2, help="local Dask worker processes (default 2); 0 = serial")
    ap.add_argument("--scheduler", help="address of an existing Dask scheduler (instead of --workers)")
    ap.add_argument("-o", "--output", default="bu2jpsik.duckdb")
    ap.add_argument("--overwrite", action="store_true")
    ap.add_argument("--resume", action="store_true", help="finish an interrupted production")
    args = ap.parse_args(argv)

    import mambah
    from sim import Generator, Pipeline, RunConfig

    pipeline = Pipeline(
        (Generator(dec_file=str(Path(args.dec_file).resolve()), mother="B+"),),
        RunConfig(events=args.events, batch_size=min(args.batch_size, args.events), seed=args.seed),
    ).validate()
    t0 = time.perf_counter()
    if args.scheduler or args.workers > 0:
        from sim.core.distributed import run_distributed

        where = f"scheduler {args.scheduler}" if args.scheduler else f"{args.workers} local worker(s)"
        summary = run_distributed(
            pipeline, args.output, workers=None if args.scheduler else args.workers, scheduler=args.scheduler,
            overwrite=args.overwrite, resume=args.resume,
        )
    else:
        from sim import run

        where = "serial"
        summary = run(pipeline, args.output, overwrite=args.overwrite, resume=args.resume)
    wall = time.perf_counter() - t0
    print(f"{summary.events:,} events in {summary.batches_run} batch(es) on {where}: "
          f"{wall:.1f} s wall ({summary.events / wall:,.0f} events/s incl. start-up)")

    with mambah.EventStore.open(args.output, read_only=True) as store:
        modes = store.query_df(
            """SELECT CASE WHEN d.pid = 321 THEN 'J/psi K+' ELSE 'J/psi pi+' END AS mode, count(*) AS n
               FROM mc_particles b JOIN mc_particles d
                 ON d.batch = b.batch AND d.event = b.event AND d.mother = b."index" AND abs(d.pid) IN (321, 211)
               WHERE b.pid = 521 GROUP BY mode ORDER BY mode"""
        )
        modes["fraction"] = modes["n"] / modes["n"].sum()
        print(modes.to_string(index=False))
        print(f"store {args.output}: {store.n_events():,} events, {store.count('mc_particles'):,} MC particles")
    return 0


if __name__ == "__main__":
    sys.exit(main())
