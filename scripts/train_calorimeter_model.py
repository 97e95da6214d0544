#!/usr/bin/env python
"""Make a reference shower sample and train the shipped fast calorimeter model.

Usage::

    nice -n 10 python scripts/train_calorimeter_model.py [--showers 15000] [--epochs 12]
                                                         [--only {shape,energy,hadron_energy}]
                                                         [--data build/calo/showers.parquet]
                                                         [--output sim/models/calorimeter.keras]

Fixed seeds: shower sample seed 1 (the validation sample in the tests uses seed 2),
model seeds 11 (image GAN), 12 (e/γ energy GAN), 13 (hadron energy GAN).  Prints the sample and training times.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mambah.quiet import quiet_tensorflow

quiet_tensorflow()  # before TensorFlow is imported: its C++ start-up lines are held back

import numpy as np

from sim.core.io import save_model
from sim.reference.ecal import shower_sample, write_shower_sample
from sim.training.recipes.calorimeter import train_calorimeter

log = logging.getLogger("train_calorimeter_model")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--showers", type=int, default=15_000, help="showers of the training sample")
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--energy-epochs", type=int, default=60)
    parser.add_argument("--only-energy", action="store_true", help="retrain only the energy GAN")
    parser.add_argument("--only-shape", action="store_true",
                        help="retrain only the image GAN (keeps the energy GANs beside it)")
    parser.add_argument("--only", choices=("shape", "energy", "hadron_energy"), default=None,
                        help="retrain only this network (the others beside --output are kept)")
    parser.add_argument("--hadron-epochs", type=int, default=300)
    parser.add_argument("--oversample-hadrons", type=int, default=1,
                        help="hadron and muon rows enter the image GAN's training set this many times")
    parser.add_argument("--channels", type=int, nargs="+", default=[16, 16], help="generator conv channels")
    parser.add_argument("--upsampler", choices=("subpixel", "transpose"), default="subpixel",
                        help="generator upsampler (sim.training.image_gan.build_image_generator)")
    parser.add_argument("--seed", type=int, default=11, help="model seed")
    parser.add_argument("--data", type=Path, default=ROOT / "build" / "calo" / "showers.parquet")
    parser.add_argument("--output", type=Path, default=ROOT / "sim" / "models" / "calorimeter.keras")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    t0 = time.perf_counter()
    if args.data.is_file():
        log.info("reference sample: reusing %s", args.data)
    else:
        sample = shower_sample(args.showers, np.random.default_rng(1))
        args.data.parent.mkdir(parents=True, exist_ok=True)
        write_shower_sample(sample, str(args.data))
        log.info("reference sample: %d showers in %.1f s -> %s", args.showers, time.perf_counter() - t0, args.data)
    t1, c1 = time.perf_counter(), time.process_time()
    shape, energy, hadron = train_calorimeter(
        args.data, epochs=args.epochs, energy_epochs=args.energy_epochs, hadron_epochs=args.hadron_epochs,
        seed=args.seed, only_energy=args.only_energy, only_shape=args.only_shape, only=args.only,
        generator_channels=tuple(args.channels), upsampler=args.upsampler, oversample_hadrons=args.oversample_hadrons)
    seconds, cpu = round(time.perf_counter() - t1, 1), round(time.process_time() - c1, 1)
    log.info("training: %.1f s wall, %.1f CPU s", seconds, cpu)
    for trained, suffix in ((shape, ""), (energy, "_energy"), (hadron, "_hadron_energy")):
        if trained is not None:
            trained.provenance.update(training_seconds=seconds, training_cpu_seconds=cpu)
            save_model(trained, args.output.with_name(args.output.stem + suffix + ".keras"))
    log.info("saved %s", args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
