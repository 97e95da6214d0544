#!/usr/bin/env python
"""Regenerate the PID calibration samples and retrain every shipped PID model from scratch.

For each species (e, mu, pi, K, p) a PIDCalib-like sample of
``--n-signal`` signal and ``--n-background`` combinatorial candidates is generated with
the reference detector (:func:`sim.reference.calibration.make_calibration_sample`, fixed seed per
species), its mass is fitted with zfit and sWeights are computed with hepstats; the
four chained models of :mod:`sim.pid.models` are then trained on the sWeighted sample
(Cramér GAN, fixed seed) and written to ``--output`` (default: the shipped
``sim/models/pid/``).  Training times per model are logged and written to
``--times`` (JSON).

Usage::

    python scripts/train_pid_models.py [--species K pi] [--epochs N] [--output DIR] [--times FILE]
        [--lr-schedule constant|cosine] [--ema 0.999] [--parts rich ...] [--checkpoint DIR [--resume]]
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

from mambah.quiet import quiet_tensorflow

quiet_tensorflow()  # before TensorFlow is imported: its C++ start-up lines are held back

import numpy as np

from sim.training.recipes.pid import EMA, EPOCHS, GAN_OVERRIDES, LEARNING_RATE, LR_SCHEDULE, SEEDS

log = logging.getLogger("train_pid_models")


def _overrides(species: str, epochs: int | None) -> dict[str, dict[str, object]] | None:
    """The species' GAN_OVERRIDES; an explicit ``--epochs`` replaces a part's own epochs."""
    over = GAN_OVERRIDES.get(species)
    if over is None or epochs is None:
        return over
    return {part: {k: v for k, v in s.items() if k != "epochs"} for part, s in over.items()}


def main() -> int:
    from sim.pid.models import DEFAULT_MODEL_DIR, MODEL_PARTS, REQUIRED_COLUMNS
    from sim.reference.calibration import make_calibration_sample
    from sim.training.recipes.pid import train_species_models

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--species", nargs="+", default=["e", "mu", "pi", "K", "p"], choices=sorted(SEEDS))
    parser.add_argument("--n-signal", type=int, default=50_000)
    parser.add_argument("--n-background", type=int, default=15_000)
    parser.add_argument("--epochs", type=int, default=None, help="GAN epochs (default: EPOCHS per species)")
    parser.add_argument("--learning-rate", type=float, default=None,
                        help="GAN Adam learning rate (default: LEARNING_RATE per species)")
    parser.add_argument("--lr-schedule", choices=("constant", "cosine"), default=None,
                        help=f"GAN learning-rate schedule (default: {LR_SCHEDULE})")
    parser.add_argument("--ema", type=float, default=None,
                        help=f"generator weight-averaging momentum; 0 for none (default: {EMA})")
    parser.add_argument("--parts", nargs="+", default=list(MODEL_PARTS), choices=list(MODEL_PARTS),
                        help="retrain only these parts (each depends only on the sample and its seed)")
    parser.add_argument("--output", default=str(DEFAULT_MODEL_DIR))
    parser.add_argument("--data-dir", default=None, help="also keep the calibration samples (Parquet) here")
    parser.add_argument("--times", default=None, help="write training times (JSON) here")
    parser.add_argument("--checkpoint", default=None, help="per-epoch GAN checkpoints here (DIR/<species>_<part>)")
    parser.add_argument("--resume", action="store_true", help="continue the GANs from --checkpoint")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    species = list(args.species)
    times: dict[str, dict[str, float]] = {}
    for sp in species:
        t0 = time.perf_counter()
        df = make_calibration_sample(sp, args.n_signal, args.n_background, np.random.default_rng(SEEDS[sp]))
        t_sample = time.perf_counter() - t0
        if args.data_dir:
            Path(args.data_dir).mkdir(parents=True, exist_ok=True)
            df.to_parquet(Path(args.data_dir) / f"calib_{sp}.parquet")
        log.info("%s: calibration sample of %d rows, sum of sWeights %.0f (%.1f s)", sp, len(df),
                 df["sweight"].sum(), t_sample)
        data = {c: df[c].to_numpy() for c in REQUIRED_COLUMNS}
        _, t_parts = train_species_models(
            data, sp, df["sweight"].to_numpy(), seed=SEEDS[sp], epochs=args.epochs or EPOCHS[sp], output_dir=args.output,
            learning_rate=args.learning_rate or LEARNING_RATE[sp],
            lr_schedule=args.lr_schedule or LR_SCHEDULE,
            ema=EMA if args.ema is None else (args.ema or None),
            checkpoint_dir=args.checkpoint, resume=args.resume, parts=args.parts,
            gan_settings=_overrides(sp, args.epochs),
            data_file=f"make_calibration_sample({sp!r}, {args.n_signal}, {args.n_background}, seed={SEEDS[sp]})",
        )
        times[sp] = {"calibration_sample": t_sample, **t_parts}
        log.info("%s: trained in %s", sp, {k: round(v, 1) for k, v in t_parts.items()})
    if args.times:  # merged into an existing file, so species can be trained one at a time
        path = Path(args.times)
        old = json.loads(path.read_text()) if path.is_file() else {}
        merged = {**old, **{sp: {**old.get(sp, {}), **t} for sp, t in times.items()}}  # per part
        path.write_text(json.dumps(merged, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
