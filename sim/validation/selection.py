"""Bias report of the preselection: passing events with vs without it, unweighted and reweighted.

:func:`bias_plots` draws, for each kinematic variable of
:data:`sim.training.recipes.selection.BIAS_VARIABLES` (the signal head's pT and η, its charged
final-state particles' p), the distribution of all passing events (full simulation), of the
passing events the preselection keeps, and of those weighted by the reweighting model, with
the ratio to all passing events underneath and the KS distances in the legend (mplhep's
LHCb style).  ``mambah train selection --report DIR`` writes them for the held-out events.

:func:`validate_selection` (``mambah validate selection MODEL --store STORE --sql|--cut``) tests a
selection model on an independent store where every event was simulated: AUC, and per target
retention the threshold, the retention reached, the skipped fraction and the purity of the
skipped set; the bias report at ``retention`` (reweighted when the model's reweighting model
corrects that retention).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mambah.errors import DataError, ModelError
from mambah.store import EventStore
from sim.core.pipeline import Pipeline
from sim.core.registry import register_validator
from sim.generation.preselect import load_selection_model, pipeline_decay, pipeline_digest, threshold_for
from sim.training.recipes.selection import (
    BIAS_VARIABLES,
    bias_from_samples,
    bias_samples,
    reweight,
    roc_auc,
    selection_data,
    weighted_ks,
)

__all__ = ("bias_plots", "LABELS", "validate_selection")

#: Axis label and transform of each bias variable (pT and p drawn in GeV).
LABELS: dict[str, tuple[str, float]] = {
    "head_pt": ("signal head $p_T$ [GeV]", 1e-3),
    "head_eta": (r"signal head $\eta$", 1.0),
    "daughter_p": ("charged final-state $p$ [GeV]", 1e-3),
}


def bias_plots(
    samples: Mapping[str, Mapping[str, np.ndarray]], directory: str | Path, *, bins: int = 30
) -> list[Path]:
    """One PNG per bias variable (distributions + ratio to all passing events).

    Args:
        samples: :func:`sim.training.recipes.selection.bias_samples` output.
        directory: output folder (created).
        bins: histogram bins between the 0.5 % and 99.5 % quantiles of all passing events.

    Returns:
        The written paths, ``<directory>/bias_<variable>.png``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import mplhep

    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    with plt.style.context(mplhep.style.LHCb2):
        for name in BIAS_VARIABLES:
            s = samples[name]
            label, scale = LABELS[name]
            a, b, w = s["all"] * scale, s["kept"] * scale, s["weight"]
            lo, hi = (float(v) for v in np.quantile(a, [0.005, 0.995]))
            edges = np.linspace(lo, hi, bins + 1)
            h_all = np.histogram(a, edges)[0].astype(float)
            h_kept = np.histogram(b, edges)[0].astype(float)
            h_w, h_w2 = np.histogram(b, edges, weights=w)[0], np.histogram(b, edges, weights=w * w)[0]
            fig, (top, bottom) = plt.subplots(2, 1, sharex=True, figsize=(8, 7), gridspec_kw={"height_ratios": (3, 1)})
            ks, ksw = weighted_ks(s["all"], s["kept"]), weighted_ks(s["all"], s["kept"], w)
            mplhep.histplot(h_all, edges, yerr=np.sqrt(h_all), ax=top, label="all passing (full simulation)")
            mplhep.histplot(h_kept, edges, yerr=np.sqrt(h_kept), ax=top, label=f"kept by the preselection, KS {ks:.4f}")
            mplhep.histplot(h_w, edges, yerr=np.sqrt(h_w2), ax=top, label=f"kept, reweighted, KS {ksw:.4f}")
            top.set_ylabel("passing events / bin")
            top.legend(fontsize="small")
            with np.errstate(divide="ignore", invalid="ignore"):
                for h, err, lab in ((h_kept, np.sqrt(h_kept), "kept"), (h_w, np.sqrt(h_w2), "reweighted")):
                    ratio = np.where(h_all > 0, h / h_all, np.nan)
                    bottom.errorbar(0.5 * (edges[1:] + edges[:-1]), ratio, yerr=np.where(h_all > 0, err / h_all, np.nan),
                                    fmt="o", ms=3, label=lab)
            bottom.axhline(1.0, color="k", lw=0.8)
            bottom.set_ylim(0.5, 1.5)
            bottom.legend(fontsize="x-small", ncol=2)
            bottom.set_ylabel("ratio to all")
            bottom.set_xlabel(label)
            path = out / f"bias_{name}.png"
            fig.savefig(path, dpi=90)
            plt.close(fig)
            paths.append(path)
    return paths


def validate_selection(
    model: str | Path,
    store: EventStore,
    selection: str,
    *,
    retention: float = 0.99,
    targets: Sequence[float] = (0.95, 0.98, 0.99, 0.995),
) -> dict[str, Any]:
    """A selection model on an independent, fully simulated store.

    Args:
        model: the selection model (``.keras``; its reweighting model, if its sidecar names one, next to it).
        store: simulated by the pipeline the model was trained on (metadata ``pipeline``), every event simulated.
        selection: SQL returning ``batch, event`` of the passing events.
        retention: the target of the bias report.
        targets: target retentions tabulated.

    Returns:
        ``{"auc", "n_events", "n_pass", "rows": [{"target", "threshold", "retention", "skipped", "purity"}],
        "bias": bias report (``weighted``: whether the reweighting model applied), "samples": bias samples}``.

    Raises:
        ModelError: the model was trained on another decay or pipeline.
        DataError: the store records no pipeline, skipped events, or has a single class.
    """
    from sim.core.io import load_model

    trained, record = load_selection_model(str(model))
    toml = store.get_metadata("pipeline")
    if toml is None:
        raise DataError("the validation store records no pipeline (metadata 'pipeline')")
    pipeline = Pipeline.from_toml(toml, source="store metadata")
    decay, digest = pipeline_decay(pipeline), pipeline_digest(pipeline)
    if record.get("decay") != decay or record.get("pipeline") != digest:
        raise ModelError(
            f"selection model {model} was trained on decay {record.get('decay')!r} (pipeline {record.get('pipeline')}), "
            f"the store is decay {decay!r} (pipeline {digest}); validate it on a store of its pipeline"
        )
    skipped = store.query("SELECT count(*) AS n FROM events WHERE simulated = false").to_pylist()[0]["n"]
    if skipped:
        raise DataError(f"{skipped} events of the validation store were skipped by a preselection; simulate every event")
    d = selection_data(store, selection, vocabulary=record["vocabulary"], max_particles=int(record["max_particles"]),
                       particles=str(record.get("particles", "all")))
    score, y = trained.predict_proba(d["x"]), d["y"]
    rows = []
    for target in targets:
        thr = threshold_for(record["curve"], target)
        kept = score >= thr
        rows.append({"target": float(target), "threshold": thr, "retention": float(kept[y].mean()) if y.any() else float("nan"),
                     "skipped": float(1.0 - kept.mean()),
                     "purity": float((~y[~kept]).mean()) if (~kept).any() else float("nan")})
    thr = threshold_for(record["curve"], retention)
    weights = None
    name = record.get("weights_model")
    if name:
        wmodel = load_model(Path(model).resolve().parent / str(name))
        if np.isclose(float(wmodel.provenance["selection_weights"]["threshold"]), thr, rtol=1e-9, atol=1e-12):
            weights = reweight(store, wmodel, d["keys"], score >= thr)
    samples = bias_samples(store, selection, d["keys"], score, thr, weights)
    bias = bias_from_samples(samples)
    bias.update(retention=float(retention), threshold=thr, weighted=weights is not None)
    return {"auc": roc_auc(score, y), "n_events": int(y.size), "n_pass": int(y.sum()), "rows": rows, "bias": bias,
            "samples": samples}


register_validator("selection", help="a preselect selection model on an independent simulated store")(validate_selection)
