"""Train the shipped selection model ``sim/models/selection.keras`` (the ``preselect`` pass's example).

The default job (:func:`sim.defaults.default_pipeline`) on a training sample, labelled by the
known-answer selection :data:`sim.training.recipes.selection.LONG_AND_KAON_PID` (all four
final-state tracks Long and the kaon's PIDK > 5), 20 % held out for the ROC, the retention
curve and the bias report; with it the reweighting model ``selection_weights.keras`` of the
bias correction at 99 % retention (``mambah run --preselect ... --preselect-weights``).
The same as ``mambah train selection --sql LONG_AND_KAON_PID --events 40000``.  About
1.5 CPU-minutes::

    nice -n 10 python scripts/train_selection_model.py [--events 40000] [-o sim/models/selection.keras]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from mambah.quiet import quiet_tensorflow

quiet_tensorflow()

from sim.core.io import save_model
from sim.defaults import default_pipeline
from sim.training.recipes.selection import LONG_AND_KAON_PID, simulate_sample, train_selection_pair

MODELS = Path(__file__).resolve().parents[1] / "sim" / "models"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=40_000, help="training + validation events (default 40000)")
    ap.add_argument("--seed", type=int, default=20261201, help="simulation seed")
    ap.add_argument("--train-seed", type=int, default=1, help="split and network seed")
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--weights-retention", type=float, default=0.99, help="retention the reweighting model corrects")
    ap.add_argument("-o", "--output", default=str(MODELS / "selection.keras"))
    args = ap.parse_args()
    t0 = time.process_time()
    store = simulate_sample(default_pipeline(events=args.events, batch_size=10_000, seed=args.seed))
    t1 = time.process_time()
    res = train_selection_pair(store, selection=LONG_AND_KAON_PID, seed=args.train_seed, epochs=args.epochs,
                               weights_retention=args.weights_retention)
    t2 = time.process_time()
    model, weights = res.model, res.weights
    if weights is None:
        raise SystemExit("no reweighting model was trained")
    model.provenance["sample"] = {"events": args.events, "seed": args.seed, "simulation_cpu_s": round(t1 - t0, 1)}
    rec = model.provenance["selection"]
    rec["bias"] = res.bias
    out = Path(args.output)
    weights_path = out.with_name(out.stem + "_weights.keras")
    save_model(weights, weights_path)
    rec["weights_model"] = weights_path.name
    save_model(model, out)
    print(f"simulated {args.events} events in {t1 - t0:.1f} CPU s; trained both models in {t2 - t1:.1f} CPU s "
          f"(selection network {model.provenance['training_seconds']} s)")
    print(f"pass fraction {rec['pass_fraction']:.4f}; held-out AUC {rec['auc']:.4f}")
    for row in rec["curve"]:
        print(f"  retention {row['retention']:.3f}: threshold {row['threshold']:.5f}, achieved {row['achieved']:.4f}, "
              f"skipped {row['skipped']:.4f}, purity of skipped {row['purity']:.4f}")
    b = res.bias
    print(f"bias at {b['retention']} (held out): {b['n_kept']} of {b['n_pass']} passes kept, sum of weights "
          f"{b['sum_weights']:.1f}; KS {b['ks']}; reweighted KS {b['ks_weighted']}")
    print(f"wrote {out} and {weights_path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
