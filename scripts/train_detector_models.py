#!/usr/bin/env python
"""Regenerate the reference samples and retrain every shipped detector model from scratch.

Usage::

    python scripts/train_detector_models.py [--events 100000] [--data-dir build/reference]
                                            [--models-dir sim/models] [--only acceptance ...]

Fixed seeds: training sample seed 1, validation sample seed 2, model seeds 11..14.  Both samples
are :data:`sim.reference.sample.TRAINING_MIX`: the default decay with 40 % of the events
B0 -> J/psi K_S0 and Lambda_b0 -> J/psi Lambda (displaced K_S0/Lambda daughters) and 10 % a
prompt gun (origins at the PV, 2-300 GeV).
Writes ``sim/models/{occupancy,acceptance,efficiency,resolution}.keras`` + ``.json`` and
prints the training time of each model.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sim.core.io import save_model
from sim.core.registry import trainer
from sim.detector.card import DEFAULT_CARD
from sim.reference.sample import TRAINING_MIX, make_reference_sample

log = logging.getLogger("train_detector_models")

#: The shipped detector models, in training order; their settings are the registered
#: recipes (sim/training/recipes/<model>.py, ``mambah train <model> --recipe shipped``).
MODELS: tuple[str, ...] = ("occupancy", "acceptance", "efficiency", "resolution")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000, help="events of the training sample")
    parser.add_argument("--validation-events", type=int, default=50_000, help="events of the validation sample")
    parser.add_argument("--data-dir", type=Path, default=ROOT / "build" / "reference")
    parser.add_argument("--models-dir", type=Path, default=ROOT / "sim" / "models")
    parser.add_argument("--only", nargs="+", choices=sorted(MODELS), help="retrain only these models")
    parser.add_argument("--reuse-samples", action="store_true", help="keep existing reference samples")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")

    train = args.data_dir / "train.parquet"
    valid = args.data_dir / "validation.parquet"
    if not (args.reuse_samples and train.is_file()):
        t0 = time.perf_counter()
        make_reference_sample(train, args.events, seed=1, mix=TRAINING_MIX)
        make_reference_sample(valid, args.validation_events, seed=2, mix=TRAINING_MIX)
        log.info("reference samples written in %.1f s", time.perf_counter() - t0)
    for name in args.only or list(MODELS):
        spec = trainer(name)
        t0 = time.perf_counter()
        model = spec.function(train, **spec.recipe, extra_provenance={"script": "scripts/train_detector_models.py", "detector_card": DEFAULT_CARD,
                                                           "sample_events": args.events, "sample_seed": 1,
                                                           "sample_mix": [list(c) for c in TRAINING_MIX]})
        dt = time.perf_counter() - t0
        model.provenance["training_seconds"] = round(dt, 1)
        path = save_model(model, args.models_dir / f"{name}.keras")
        size = path.stat().st_size + path.with_suffix(".json").stat().st_size
        log.info("%s: trained in %.1f s, %s (%.0f kB with sidecar), final %s", name, dt, path, size / 1024,
                 {k: round(v[-1], 4) for k, v in model.history.items()})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
