"""``mambah train selection``: the selection model of the ``preselect`` pass, from the user's own selection.

::

    mambah train selection --cut "K_PIDK > 5 AND K_TRACK_Type == 3" [--decay D | --config C]
                           [--events N] [--seed S] -o selection.keras
    mambah train selection --sql "SELECT batch, event FROM ..." --store sample.duckdb -o selection.keras

runs the full chain on a training sample (or reads ``--store``, simulated by the pipeline it
records), labels every event by whether it passes the selection — a Ficino cut on the
candidate columns (``--cut``; at least one candidate passing), or DuckDB SQL over the store
(``--sql``: a query returning ``batch, event`` of the passing events, or a predicate on the
``events`` table) — trains the selection model and, unless ``--no-weights``, the reweighting
model of the bias correction at ``--weights-retention`` (default 0.99), and validates both
on the held-out events (ROC, retention curve, KS distances of the signal kinematics).  It
writes ``OUT`` and ``OUT_weights.keras`` with their sidecars (the selection model's names the
weights; ``mambah run --preselect OUT --preselect-weights`` uses them) and, with
``--report DIR``, the bias plots (:func:`sim.validation.selection.bias_plots`).

``mambah validate selection MODEL --store STORE (--sql ... | --cut ...) [--retention R] [--report DIR]``
tests a model on an independent store where every event was simulated
(:func:`sim.validation.selection.validate_selection`).

``sim`` does not import ``ficino``: ``--cut`` finds the labeller through the entry-point group
:data:`CUT_GROUP` (``ficino`` registers :func:`ficino.selection.cut_selection` there).
"""

from __future__ import annotations

import argparse
import json
import re
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mambah.cli import nonnegative_int, positive_int
from mambah.errors import ConfigError, StoreExistsError

__all__ = (
    "add_train_arguments",
    "cmd_train_selection",
    "add_validate_arguments",
    "cmd_validate_selection",
    "selection_sql",
    "cut_labeller",
    "CUT_GROUP",
)

#: Entry-point group of the ``--cut`` labeller: ``name = "module:function"`` with the signature
#: of :func:`ficino.selection.cut_selection` ``(store, cut, path) -> SQL``.
CUT_GROUP = "mambah.selection_cuts"


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``mambah train selection``."""
    sel = parser.add_mutually_exclusive_group(required=True)
    sel.add_argument("--cut", help="Ficino cut on the candidate columns, e.g. 'K_PIDK > 5' (an event passes with "
                     ">= 1 candidate passing; needs ficino)")
    sel.add_argument("--sql", help="DuckDB SQL: a query returning batch, event of the passing events, or a predicate "
                     "on the events table")
    parser.add_argument("--store", help="label this simulated store instead of simulating a training sample")
    parser.add_argument("--config", help="pipeline config (TOML or YAML) of the training sample (default: the built-in job)")
    parser.add_argument("--decay", help="decay descriptor of the training sample's generator")
    parser.add_argument("--events", type=positive_int, help="training + validation events (default 40000)")
    parser.add_argument("--batch-size", type=positive_int, help="events per batch of the training sample (default 10000)")
    parser.add_argument("--seed", type=nonnegative_int, help="simulation seed of the training sample (default 20261201)")
    parser.add_argument("--train-seed", type=nonnegative_int, default=1, help="split and network seed (default 1)")
    parser.add_argument("--epochs", type=positive_int, default=15, help="selection-model epochs (default 15)")
    parser.add_argument("--validation-fraction", type=float, default=0.2, help="held-out fraction (default 0.2)")
    parser.add_argument("--particles", choices=("all", "signal"), default="all", help="the model reads all generated "
                        "particles (default) or only the signal decay's (full events)")
    weights = parser.add_mutually_exclusive_group()
    weights.add_argument("--weights-retention", type=float, default=0.99, metavar="R",
                         help="retention whose threshold the reweighting model corrects (default 0.99)")
    weights.add_argument("--no-weights", action="store_true", help="no reweighting model")
    parser.add_argument("--weights-epochs", type=positive_int, default=30, help="reweighting-model epochs (default 30)")
    parser.add_argument("-o", "--output", default="selection.keras", help="model file, .keras (default selection.keras)")
    parser.add_argument("--report", metavar="DIR", help="write the bias plots (PNG) and bias.json here")
    parser.add_argument("--overwrite", action="store_true", help="replace existing model files")


def selection_sql(sql: str) -> str:
    """``--sql``: a query (``SELECT``/``WITH``) as it is, else a predicate on ``events`` made into one."""
    text = sql.strip().rstrip(";")
    if not text:
        raise ConfigError("--sql is empty; give a query returning batch, event or a predicate on the events table")
    if re.match(r"(?is)^\(?\s*(select|with)\b", text):
        return text
    return f"SELECT batch, event FROM events WHERE ({text})"


def cut_labeller() -> Callable[..., str]:
    """The ``--cut`` labeller registered in :data:`CUT_GROUP` (the first by name).

    Raises:
        ConfigError: none is installed.
    """
    from importlib.metadata import entry_points

    eps = sorted(entry_points(group=CUT_GROUP), key=lambda ep: ep.name)
    if not eps:
        raise ConfigError(f"--cut needs ficino (no labeller in the entry-point group {CUT_GROUP}); use --sql instead")
    fn: Callable[..., str] = eps[0].load()
    return fn


def _sample_args(args: argparse.Namespace) -> argparse.Namespace:
    """The ``mambah run`` arguments of the training sample."""
    return argparse.Namespace(
        config=args.config, decay=args.decay, dec_file=None, mother=None,
        events=args.events or 40_000, batch_size=args.batch_size or 10_000,
        seed=20261201 if args.seed is None else args.seed,
    )


def _outputs(args: argparse.Namespace) -> tuple[Path, Path | None]:
    out = Path(args.output)
    if out.suffix != ".keras":
        raise ConfigError(f"-o {out}: the model file must end in .keras")
    weights = None if args.no_weights else out.with_name(out.stem + "_weights.keras")
    for path in (out, weights):
        if path is not None and not args.overwrite and (path.exists() or path.with_suffix(".json").exists()):
            raise StoreExistsError(f"{path} exists; pass --overwrite to replace it")
    return out, weights


def cmd_train_selection(args: argparse.Namespace) -> int:
    """``mambah train selection``."""
    from mambah.quiet import quiet_tensorflow

    quiet_tensorflow()
    from mambah.store import EventStore
    from sim.core.io import check_model_output, save_model
    from sim.training.recipes.selection import simulate_sample, train_selection_pair

    if not 0.0 < args.validation_fraction < 1.0:
        raise ConfigError(f"--validation-fraction {args.validation_fraction} must be in (0, 1)")
    if not args.no_weights and not 0.0 < args.weights_retention < 1.0:
        raise ConfigError(f"--weights-retention {args.weights_retention} must be in (0, 1)")
    out, weights_path = _outputs(args)
    for path in (out, weights_path):
        if path is not None:
            check_model_output(path)  # before the simulation and the training, not after them
    from sim.cli.validate import check_report_folder

    check_report_folder(getattr(args, "report", None))
    store: Any
    if args.store:
        given = [f for f in ("config", "decay", "events", "batch_size", "seed") if getattr(args, f) is not None]
        if given:
            raise ConfigError(f"--store is labelled as simulated; drop {', '.join('--' + g.replace('_', '-') for g in given)}")
        if not Path(args.store).exists():
            raise ConfigError(f"--store {args.store} does not exist")
        store = EventStore.open(args.store, read_only=True)
    else:
        from sim.cli.run import pipeline_from_args

        pipeline = pipeline_from_args(_sample_args(args))
        if any(p.kind == "preselect" for p in pipeline.passes):
            raise ConfigError("the training sample's pipeline has a preselect pass; labels need every event simulated")
        print(f"simulating {pipeline.run.events} events (seed {pipeline.run.seed}) ...")
        store = simulate_sample(pipeline)
    with tempfile.TemporaryDirectory(prefix="mambah-selection-") as tmp:
        if args.cut is not None:
            sql = cut_labeller()(store, args.cut, Path(tmp) / "passes.parquet")
            described = {"cut": " ".join(args.cut.split())}
        else:
            sql = selection_sql(args.sql)
            described = {"sql": " ".join(sql.split())}
        result = train_selection_pair(
            store, selection=sql, seed=args.train_seed, epochs=args.epochs,
            validation_fraction=args.validation_fraction,
            weights_retention=None if args.no_weights else args.weights_retention, described_as=described,
            weights_epochs=args.weights_epochs, particles=args.particles,
        )
    record = result.model.provenance["selection"]
    if not args.store:
        result.model.provenance["sample"] = {"events": pipeline.run.events, "seed": pipeline.run.seed}
    record["bias"] = result.bias
    out.parent.mkdir(parents=True, exist_ok=True)
    if result.weights is not None and weights_path is not None:
        save_model(result.weights, weights_path)
        record["weights_model"] = weights_path.name
    save_model(result.model, out)
    _print_summary(record, result.bias, out, weights_path if result.weights is not None else None)
    if args.report:
        from sim.validation.selection import bias_plots

        paths = bias_plots(result.samples, args.report)
        (Path(args.report) / "bias.json").write_text(json.dumps(result.bias, indent=1) + "\n")
        print(f"bias report: {', '.join(str(p) for p in paths)} and {Path(args.report) / 'bias.json'}")
    return 0


def _print_summary(record: dict[str, Any], bias: dict[str, Any], out: Path, weights: Path | None) -> None:
    print(f"pass fraction {record['pass_fraction']:.4f} of {record['n_train'] + record['n_validation']} events; "
          f"held-out AUC {record['auc']:.4f} ({record['n_validation']} events)")
    for row in record["curve"]:
        print(f"  retention {row['retention']:.3f}: threshold {row['threshold']:.5f}, achieved {row['achieved']:.4f}, "
              f"skipped {row['skipped']:.4f}, purity of skipped {row['purity']:.4f}")
    ks = ", ".join(f"{k} {v:.4f}" for k, v in bias["ks"].items())
    ksw = ", ".join(f"{k} {v:.4f}" for k, v in bias["ks_weighted"].items())
    print(f"bias at retention {bias['retention']} (held out): {bias['n_kept']} of {bias['n_pass']} passes kept; KS {ks}")
    if weights is not None:
        print(f"  reweighted: sum of weights {bias['sum_weights']:.1f}; KS {ksw}")
    print(f"wrote {out}" + (f" and {weights}" if weights is not None else ""))


def add_validate_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``mambah validate selection``."""
    parser.add_argument("model", help="selection model (.keras with its sidecar)")
    parser.add_argument("--store", required=True, help="independent store, every event simulated by the model's pipeline")
    sel = parser.add_mutually_exclusive_group(required=True)
    sel.add_argument("--cut", help="Ficino cut on the candidate columns (needs ficino)")
    sel.add_argument("--sql", help="DuckDB SQL: a query returning batch, event of the passing events, or a predicate "
                     "on the events table")
    parser.add_argument("--retention", type=float, default=0.99, help="target retention of the bias report (default 0.99)")
    parser.add_argument("--report", metavar="DIR", help="write the bias plots (PNG) and validation.json here")


def cmd_validate_selection(args: argparse.Namespace) -> int:
    """``mambah validate selection``."""
    from mambah.quiet import quiet_tensorflow

    quiet_tensorflow()
    from mambah.store import EventStore
    from sim.validation.selection import validate_selection

    if not Path(args.store).exists():
        raise ConfigError(f"--store {args.store} does not exist")
    if not Path(args.model).exists():
        raise ConfigError(f"model {args.model} does not exist")
    store = EventStore.open(args.store, read_only=True)
    with tempfile.TemporaryDirectory(prefix="mambah-selection-") as tmp:
        sql = cut_labeller()(store, args.cut, Path(tmp) / "passes.parquet") if args.cut is not None else selection_sql(args.sql)
        res = validate_selection(args.model, store, sql, retention=args.retention)
    print(f"{res['n_events']} events, {res['n_pass']} pass; AUC {res['auc']:.4f}")
    for r in res["rows"]:
        print(f"  target {r['target']:.3f}: threshold {r['threshold']:.5f}, retention {r['retention']:.4f}, "
              f"skipped {r['skipped']:.4f}, purity of skipped {r['purity']:.4f}")
    b = res["bias"]
    ks = ", ".join(f"{k} {v:.4f}" for k, v in b["ks"].items())
    print(f"bias at {b['retention']}: {b['n_kept']} of {b['n_pass']} passes kept; KS {ks}")
    if b["weighted"]:
        ksw = ", ".join(f"{k} {v:.4f}" for k, v in b["ks_weighted"].items())
        print(f"  reweighted: sum of weights {b['sum_weights']:.1f}; KS {ksw}")
    if args.report:
        from sim.validation.selection import bias_plots

        paths = bias_plots(res["samples"], args.report)
        out = {k: v for k, v in res.items() if k != "samples"}
        (Path(args.report) / "validation.json").write_text(json.dumps(out, indent=1) + "\n")
        print(f"report: {', '.join(str(p) for p in paths)} and {Path(args.report) / 'validation.json'}")
    return 0
