"""Bias report of the preselection: passing events with vs without it, unweighted and reweighted.

:func:`bias_plots` draws, for each kinematic variable of
:data:`sim.training.recipes.selection.BIAS_VARIABLES` (the signal head's pT and η, its charged
final-state particles' p), the distribution of all passing events (full simulation), of the
passing events the preselection keeps, and of those weighted by the reweighting model, with
the ratio to all passing events underneath and the KS distances in the legend (mplhep's
LHCb style).  ``mambah train selection --report DIR`` writes them for the held-out events.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from sim.training.recipes.selection import BIAS_VARIABLES, weighted_ks

__all__ = ("bias_plots", "LABELS")

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
