"""Benchmark: the decay engine on a DecFile-driven, table-completed chain vs the default decay.

Run: ``python benchmarks/bench_decay_chain.py [--events 20000] [--batches 3]``

Measures, in one process, the generator's batch function (``generate_tables``:
gun, complete decay trees, vertices, Arrow tables; no store) for

1. the default decay Λb0 → (Λc+ → p K− π+) μ− ν̄μ (all-PHSP user chain, nothing
   for the table to do);
2. a B0 DecFile with D*, K_S0 and π0 in it (``B0 -> D*- pi+`` SVS, ``D*- -> anti-D0 pi-``
   VSS, ``anti-D0 -> K_S0 pi+ pi- pi0`` PHSP; the K_S0 and π0 decayed by DECAY_LHCB.DEC,
   PHOTOS where the table asks for it);
3. ``B0 -> D*- pi+`` completed by the table alone (every D̄0 / D− mode of DECAY_LHCB.DEC).

The first batch of each is reported apart (it presamples the accept–reject bounds
of the modes it meets, once per process); the rate is over the following batches.
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time
from pathlib import Path

import numpy as np

DEC = """Decay B0
1.0 D*- pi+ SVS;
Enddecay
Decay D*-
1.0 anti-D0 pi- VSS;
Enddecay
Decay anti-D0
1.0 K_S0 pi+ pi- pi0 PHSP;
Enddecay
End
"""


def rate(model: object, events: int, batches: int) -> tuple[float, float, float]:
    from sim.generation.generator import generate_tables

    t = time.perf_counter()
    generate_tables(model, events, np.random.default_rng(0))  # type: ignore[arg-type]
    t_first = time.perf_counter() - t
    t = time.perf_counter()
    for b in range(1, batches + 1):
        tabs = generate_tables(model, events, np.random.default_rng(b))  # type: ignore[arg-type]
    dt = time.perf_counter() - t
    return t_first, events * batches / dt, tabs["mc_particles"].num_rows / events


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=20_000, help="events per batch")
    ap.add_argument("--batches", type=int, default=3, help="timed batches after the first")
    args = ap.parse_args()
    logging.disable(logging.WARNING)  # the table's phase-space substitutions are announced at build; not here
    from sim.generation.decay import load_decay
    from sim.generation.generator import DEFAULT_DECAY

    res: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        dec = Path(tmp) / "b0.dec"
        dec.write_text(DEC)
        for key, build in (
            ("default", lambda: load_decay(DEFAULT_DECAY)),
            ("b0_dstar_ks_pi0_decfile", lambda: load_decay(dec_file=dec)),
            ("b0_dstar_pi_table", lambda: load_decay("B0 -> D*- pi+")),
        ):
            t = time.perf_counter()
            model = build()
            res[f"{key}_build_s"] = round(time.perf_counter() - t, 2)
            first, evt_s, per_event = rate(model, args.events, args.batches)
            res[f"{key}_first_batch_s"] = round(first, 2)
            res[f"{key}_evt_s"] = round(evt_s)
            res[f"{key}_particles_per_event"] = round(per_event, 2)
    print("| quantity | value |\n|---|---|")
    for k, v in res.items():
        print(f"| {k} | {v} |")
    print(json.dumps(res))


if __name__ == "__main__":
    main()
