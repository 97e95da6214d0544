"""Training: retrain the tracking-efficiency model from a Parquet file, validate it, run with it via a config file.

1. the calibration file: ``--data FILE`` (yours: Parquet/ROOT with the
   efficiency inputs and a ``track_class`` label 0 none / 1 Long / 2 Upstream /
   3 Downstream), or, by default, a reference-detector sample written with
   :func:`sim.reference.sample.make_reference_sample`;
2. ``train_model("efficiency", ...)`` (same as ``mambah train efficiency --data FILE``)
   writes ``<out>/my_efficiency.keras`` and its JSON sidecar;
3. :func:`sim.validation.detector.validate` compares it with the reference detector on a
   held-out sample (same as ``mambah validate efficiency``);
4. the default job with the new model is written to ``<out>/my_job.toml`` and
   run from that file (same as ``mambah run --config <out>/my_job.toml``).

    python examples/04_training.py                                 # 20 000 calibration events, 8 epochs
    python examples/04_training.py --data my_calibration.parquet --epochs 20 --run-events 100000
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from mambah.quiet import quiet_tensorflow

quiet_tensorflow()  # before anything imports TensorFlow: its C++ start-up lines are held back


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", help="calibration file (Parquet/ROOT); default: make a reference sample")
    ap.add_argument("--events", type=int, default=20_000, help="events of the reference sample made without --data")
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0, help="training seed")
    ap.add_argument("--validate-events", type=int, default=10_000, help="held-out events for the validation")
    ap.add_argument("--run-events", type=int, default=20_000, help="events of the run with the new model")
    ap.add_argument("--out", default="training", help="directory of the outputs")
    args = ap.parse_args(argv)

    from sim import Pipeline, run
    from sim.cli.detector import train_model
    from sim.defaults import default_pipeline
    from sim.reference.sample import make_reference_sample
    from sim.validation.detector import validate

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    data = Path(args.data) if args.data else make_reference_sample(out / "calibration.parquet", args.events, seed=11)
    print(f"calibration file: {data}")

    _model, path = train_model("efficiency", data, seed=args.seed, epochs=args.epochs, output=out / "my_efficiency.keras")
    print(f"trained efficiency model -> {path}")

    report = validate("efficiency", events=args.validate_events, seed=2025, models={"efficiency": str(path)})
    for line in report.summary_lines():
        print(line)

    job = default_pipeline(events=args.run_events, batch_size=min(args.run_events, 25_000), seed=5)
    job = job.replace("efficiency", model=str(path.resolve()))
    cfg = out / "my_job.toml"
    job.save(cfg)
    print(f"wrote {cfg}; run it with: mambah run --config {cfg} -o {out / 'my_run.duckdb'}")

    summary = run(Pipeline.load(cfg), out / "my_run.duckdb", overwrite=True, progress=False)
    import mambah

    with mambah.EventStore.open(out / "my_run.duckdb", read_only=True) as store:
        stored = Pipeline.from_toml(store.get_metadata("pipeline") or "")
        types = store.query_df("SELECT track_type, count(*) AS n FROM protoparticles GROUP BY track_type ORDER BY track_type")
    print(f"ran {summary.events} events with {stored['efficiency'].model}")  # type: ignore[attr-defined]
    print("tracks by type (3 Long, 4 Upstream, 5 Downstream):", dict(zip(types["track_type"], types["n"])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
