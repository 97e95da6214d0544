#!/usr/bin/env python
"""Train the shipped fast ghost model on the reference ghosts (sim/models/ghosts.json).

Usage::

    nice -n 10 python scripts/train_ghost_model.py [--events 40000] [--seed 1]
                                                   [--output sim/models/ghosts.json]

The model is a multiplicity law fitted by maximum likelihood and a Gaussian copula of
the ghosts' kinematics (:mod:`sim.training.ghosts`); no network, a few seconds of CPU.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sim.training.ghosts import train_ghost_model

log = logging.getLogger("train_ghost_model")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--events", type=int, default=40_000, help="events of the reference sample")
    parser.add_argument("--seed", type=int, default=1, help="sample seed")
    parser.add_argument("--output", type=Path, default=ROOT / "sim" / "models" / "ghosts.json")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    t0 = time.process_time()
    model = train_ghost_model(args.events, args.seed)
    model.save(args.output)
    log.info("wrote %s (%d bytes) in %.1f CPU s", args.output, args.output.stat().st_size, time.process_time() - t0)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
