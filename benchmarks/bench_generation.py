"""Benchmark: full generate+store path vs bare phasespace, and memory vs run size.

Run: ``python benchmarks/bench_generation.py [--events 200000] [--big]``

Measures, in one process and one run:

1. bare ``phasespace`` generation of the default decay (``GenParticle.generate``,
   eager, as a user calls it) and the same graph compiled with ``tf.function``
   (the fastest phasespace can go; weights only, no unweighting, no boost);
2. Mambah's generator pass into a DuckDB file (gun, unweighting, boost,
   vertices, tree bookkeeping, Arrow → DuckDB insert, one transaction per batch): the
   default job (Λb0 → Λc+ μ− ν̄ with BaryonPCR form factors, importance-sampled in
   (q², cosθ_ℓ)) and the same descriptor as phase space (``descriptor_models =
   "phase-space"``, the default before issue #13's form factors), plus the model
   acceptance of the semileptonic sampler;
3. peak RSS of a child process generating 1 M and 5 M events (``--big``), to
   show memory is flat in the number of batches.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from mambah.quiet import quiet_tensorflow

quiet_tensorflow()  # before TensorFlow is imported: its C++ start-up lines are held back


def bare_phasespace(n: int) -> tuple[float, float]:
    import phasespace
    import tensorflow as tf
    from particle import Particle

    m = lambda name: Particle.from_evtgen_name(name).mass or 0.0  # noqa: E731
    lc = phasespace.GenParticle("Lambda_c+", m("Lambda_c+")).set_children(
        phasespace.GenParticle("p+", m("p+")), phasespace.GenParticle("K-", m("K-")), phasespace.GenParticle("pi+", m("pi+"))
    )
    lb = phasespace.GenParticle("Lambda_b0", m("Lambda_b0")).set_children(
        lc, phasespace.GenParticle("mu-", m("mu-")), phasespace.GenParticle("anti-nu_mu", 0.0)
    )
    lb.generate(1000, seed=0)  # warm-up
    t = time.perf_counter()
    lb.generate(n, seed=1)
    eager = n / (time.perf_counter() - t)
    rng = tf.random.Generator.from_seed(1)

    @tf.function(input_signature=[tf.TensorSpec([], tf.int64)])
    def gen(k):
        return lb.generate(k, seed=rng)

    gen(tf.constant(1000, tf.int64))
    t = time.perf_counter()
    gen(tf.constant(n, tf.int64))
    compiled = n / (time.perf_counter() - t)
    return eager, compiled


def mambah_generate(n: int, batch: int, path: Path, descriptor_models: str = "physical") -> float:
    from sim import Generator, Pipeline, RunConfig, run
    from sim.core.pipeline import build_kernels

    pl = Pipeline((Generator(descriptor_models=descriptor_models),), RunConfig(events=n, batch_size=batch, seed=1))
    build_kernels(pl)  # compile once, outside the timing (done once per process in production)
    t = time.perf_counter()
    run(pl, path, overwrite=True, progress=False)
    return n / (time.perf_counter() - t)


def model_acceptance(n: int = 50_000) -> float:
    """Accepted / proposed decays of the default job's Λb0 → Λc+ μ− ν̄ (BaryonPCR) semileptonic sampler."""
    import numpy as np

    from sim import Generator

    model = Generator().load()
    model.prepare()
    eng = model.engine
    gid = int(eng.mode_off[model.chains[0].root])
    prop, _roles, bound = eng.sl_proposal(gid)
    p4, ratio = prop.sample(n, np.random.default_rng(5))
    rest = np.zeros((n, 4))
    rest[:, 3] = eng.mass[eng.modes[gid].parent]
    lab = np.empty_like(p4)
    lab[:, list(_roles)] = p4
    w = eng._chain_weight(eng._mode_specs(gid), [rest] + [lab[:, j] for j in range(3)], "default") * ratio
    return float(np.mean(w) / bound)


def peak_rss(n: int, batch: int, path: Path) -> float:
    code = (
        "import resource, sys; from sim import Generator, Pipeline, RunConfig, run;"
        f"run(Pipeline((Generator(),), RunConfig(events={n}, batch_size={batch}, seed=1)), {str(path)!r}, overwrite=True, progress=False);"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--batch-size", type=int, default=50_000)
    ap.add_argument("--big", action="store_true", help="also measure peak RSS at 1 M and 5 M events")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        eager, compiled = bare_phasespace(args.events)
        ours = mambah_generate(args.events, args.batch_size, Path(tmp) / "bench.duckdb")
        phsp = mambah_generate(args.events, args.batch_size, Path(tmp) / "phsp.duckdb", "phase-space")
        res = {
            "events": args.events,
            "phasespace_eager_evt_s": round(eager),
            "phasespace_compiled_evt_s": round(compiled),
            "mambah_generate_store_evt_s": round(ours),
            "mambah_phsp_descriptor_store_evt_s": round(phsp),
            "ratio_vs_eager": round(ours / eager, 3),
            "ratio_vs_compiled": round(ours / compiled, 3),
            "phsp_descriptor_ratio_vs_eager": round(phsp / eager, 3),
            "semileptonic_acceptance": round(model_acceptance(), 3),
        }
        if args.big:
            for n in (1_000_000, 5_000_000):
                res[f"peak_rss_MiB_{n // 1_000_000}M"] = round(peak_rss(n, args.batch_size, Path(tmp) / f"rss{n}.duckdb"))
    print("| quantity | value |\n|---|---|")
    for k, v in res.items():
        print(f"| {k} | {v} |")
    print(json.dumps(res))


if __name__ == "__main__":
    main()
