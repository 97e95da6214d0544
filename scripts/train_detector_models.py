#!/usr/bin/env python
"""Regenerate the reference samples and retrain every shipped detector model from scratch.

Usage::

    python scripts/train_detector_models.py [--events 100000] [--data-dir build/reference]
                                            [--models-dir sim/models] [--only acceptance ...]

Fixed seeds: training sample seed 1, validation sample seed 2, model seeds 11..14.
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

from sim.detector.acceptance import train_acceptance  # noqa: E402
from sim.detector.efficiency import train_efficiency  # noqa: E402
from sim.detector.occupancy import train_occupancy  # noqa: E402
from sim.detector.resolution import train_resolution  # noqa: E402
from sim.reference.sample import make_reference_sample  # noqa: E402
from sim.training.io import save_model  # noqa: E402

log = logging.getLogger("train_detector_models")

#: Shipped settings: (trainer, keyword arguments).
SETTINGS = {
    "occupancy": (train_occupancy, {"seed": 11, "epochs": 12, "batch_size": 512}),
    "acceptance": (train_acceptance, {"seed": 12, "epochs": 20, "batch_size": 1024, "hidden": (128, 128),
                                        "learning_rate": 3e-4}),
    "efficiency": (train_efficiency, {"seed": 13, "epochs": 20, "batch_size": 1024, "hidden": (128, 128),
                                        "learning_rate": 3e-4}),
    "resolution": (train_resolution, {"seed": 14, "epochs": 40, "batch_size": 512, "max_rows": 150_000,
                                      "learning_rate": 5e-4, "lr_schedule": "cosine", "ema": 0.999}),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000, help="events of the training sample")
    parser.add_argument("--validation-events", type=int, default=50_000, help="events of the validation sample")
    parser.add_argument("--data-dir", type=Path, default=ROOT / "build" / "reference")
    parser.add_argument("--models-dir", type=Path, default=ROOT / "sim" / "models")
    parser.add_argument("--only", nargs="+", choices=sorted(SETTINGS), help="retrain only these models")
    parser.add_argument("--reuse-samples", action="store_true", help="keep existing reference samples")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")

    train = args.data_dir / "train.parquet"
    valid = args.data_dir / "validation.parquet"
    if not (args.reuse_samples and train.is_file()):
        t0 = time.perf_counter()
        make_reference_sample(train, args.events, seed=1)
        make_reference_sample(valid, args.validation_events, seed=2)
        log.info("reference samples written in %.1f s", time.perf_counter() - t0)
    for name in args.only or list(SETTINGS):
        trainer, kwargs = SETTINGS[name]
        t0 = time.perf_counter()
        model = trainer(train, **kwargs, extra_provenance={"script": "scripts/train_detector_models.py",
                                                           "sample_events": args.events, "sample_seed": 1})
        dt = time.perf_counter() - t0
        model.provenance["training_seconds"] = round(dt, 1)
        path = save_model(model, args.models_dir / f"{name}.keras")
        size = path.stat().st_size + path.with_suffix(".json").stat().st_size
        log.info("%s: trained in %.1f s, %s (%.0f kB with sidecar), final %s", name, dt, path, size / 1024,
                 {k: round(v[-1], 4) for k, v in model.history.items()})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
