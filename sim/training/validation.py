"""Validation of fast models against the reference: two-sample tests, efficiencies, plots.

* :func:`two_sample_test`: the LHCb "third player" check: a gradient-boosted classifier
  (``HistGradientBoostingClassifier(max_depth=5, max_leaf_nodes=14)``) learns to tell the
  reference from the generated sample on one half and is scored on the other half (ROC
  AUC; 0.5 means indistinguishable) together with the KS distance between its outputs
  on the two classes.
* :func:`ks_distance`: (weighted) two-sample Kolmogorov-Smirnov statistic.
* :func:`efficiency_ratio`: binned efficiencies of the reference and the fast
  simulation with weighted binomial uncertainties, and their ratio.
* :func:`plot_histograms`, :func:`plot_efficiency`: PNGs in LHCb style (mplhep
  ``LHCb2``), drawn with the Agg canvas, never touching pyplot's global state.

sklearn and matplotlib are imported inside the functions.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mambah.errors import ConfigError, DataError

__all__ = (
    "two_sample_test",
    "ks_distance",
    "BinnedEfficiency",
    "efficiency_ratio",
    "plot_histograms",
    "plot_efficiency",
)

log = logging.getLogger(__name__)


def _weights(w: np.ndarray | None, n: int, what: str) -> np.ndarray:
    if w is None:
        return np.ones(n)
    arr = np.asarray(w, dtype=np.float64).reshape(-1)
    if arr.shape[0] != n or not np.all(np.isfinite(arr)):
        raise DataError(f"{what}: expected {n} finite weights, got shape {arr.shape}")
    return arr


def _features(x: np.ndarray, cond: np.ndarray | None, what: str) -> np.ndarray:
    arr = np.asarray(x, dtype=np.float64)
    arr = arr[:, None] if arr.ndim == 1 else arr
    if cond is not None:
        c = np.asarray(cond, dtype=np.float64)
        c = c[:, None] if c.ndim == 1 else c
        if c.shape[0] != arr.shape[0]:
            raise DataError(f"{what}: {c.shape[0]} condition rows for {arr.shape[0]} rows")
        arr = np.concatenate([c, arr], axis=1)
    if arr.ndim != 2 or not np.all(np.isfinite(arr)):
        raise DataError(f"{what}: expected a finite (n, d) array, got shape {arr.shape}")
    return arr


def ks_distance(
    a: np.ndarray, b: np.ndarray, wa: np.ndarray | None = None, wb: np.ndarray | None = None
) -> float:
    """Two-sample KS statistic ``sup |F_a - F_b|`` of 1-D samples.

    Unweighted: ``scipy.stats.ks_2samp``.  Weighted: the same statistic on weighted
    empirical CDFs (negative weights allowed; the CDFs are normalised to the weight sums).
    """
    a = np.asarray(a, dtype=np.float64).reshape(-1)
    b = np.asarray(b, dtype=np.float64).reshape(-1)
    if a.size == 0 or b.size == 0:
        raise DataError(f"ks_distance: empty sample (sizes {a.size}, {b.size})")
    if wa is None and wb is None:
        from scipy.stats import ks_2samp

        return float(ks_2samp(a, b).statistic)
    wa, wb = _weights(wa, a.size, "ks_distance wa"), _weights(wb, b.size, "ks_distance wb")
    grid = np.union1d(a, b)

    def cdf(x: np.ndarray, w: np.ndarray) -> np.ndarray:
        order = np.argsort(x, kind="stable")
        cum = np.concatenate([[0.0], np.cumsum(w[order])])
        return cum[np.searchsorted(x[order], grid, side="right")] / cum[-1]

    return float(np.max(np.abs(cdf(a, wa) - cdf(b, wb))))


def two_sample_test(
    reference: np.ndarray,
    generated: np.ndarray,
    weights_ref: np.ndarray | None = None,
    weights_gen: np.ndarray | None = None,
    conditions_ref: np.ndarray | None = None,
    conditions_gen: np.ndarray | None = None,
    *,
    seed: int = 0,
) -> dict[str, float]:
    """Classifier two-sample test between reference and generated samples.

    Features are ``[conditions, values]`` (conditions optional, then the test checks
    the joint distribution).  Each sample is split in halves at random; the classifier
    is trained on the first halves, with the class weights rescaled so both classes
    carry the same total weight, and evaluated on the second halves.

    Args:
        reference: ``(n, d)`` reference values.
        generated: ``(m, d)`` generated values.
        weights_ref, weights_gen: per-row weights (e.g. sWeights), or ``None``.
        conditions_ref, conditions_gen: ``(n, c)`` / ``(m, c)`` conditions, or ``None``.
        seed: seed of the split and of the classifier.

    Returns:
        ``{"auc": ROC AUC on the test halves, "ks": weighted KS distance between the
        classifier outputs of the two classes on the test halves}``.
    """
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.metrics import roc_auc_score

    ref = _features(reference, conditions_ref, "two_sample_test reference")
    gen = _features(generated, conditions_gen, "two_sample_test generated")
    if ref.shape[1] != gen.shape[1]:
        raise DataError(f"two_sample_test: {ref.shape[1]} reference vs {gen.shape[1]} generated columns")
    if ref.shape[0] < 4 or gen.shape[0] < 4:
        raise DataError("two_sample_test: need at least 4 rows per sample")
    w_ref = _weights(weights_ref, ref.shape[0], "two_sample_test weights_ref")
    w_gen = _weights(weights_gen, gen.shape[0], "two_sample_test weights_gen")
    rng = np.random.default_rng(seed)
    perm_r, perm_g = rng.permutation(ref.shape[0]), rng.permutation(gen.shape[0])
    tr_r, te_r = np.array_split(perm_r, 2)
    tr_g, te_g = np.array_split(perm_g, 2)

    def stack(ir: np.ndarray, ig: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        x = np.concatenate([ref[ir], gen[ig]])
        y = np.concatenate([np.zeros(ir.size), np.ones(ig.size)])
        wr, wg = w_ref[ir], w_gen[ig]
        w = np.concatenate([wr / wr.sum(), wg / wg.sum()]) * (ir.size + ig.size) / 2
        return x, y, w

    x_tr, y_tr, w_tr = stack(tr_r, tr_g)
    x_te, y_te, w_te = stack(te_r, te_g)
    clf = HistGradientBoostingClassifier(max_depth=5, max_leaf_nodes=14, random_state=seed)
    clf.fit(x_tr, y_tr, sample_weight=w_tr)
    score = clf.predict_proba(x_te)[:, 1]
    auc = float(roc_auc_score(y_te, score, sample_weight=w_te))
    is_ref = y_te == 0
    ks = ks_distance(score[is_ref], score[~is_ref], w_te[is_ref], w_te[~is_ref])
    log.info("two-sample test: AUC %.4f, KS %.4f", auc, ks)
    return {"auc": auc, "ks": ks}


@dataclass(frozen=True)
class BinnedEfficiency:
    """Efficiencies of one variable in bins (arrays of length ``len(edges) - 1``).

    ``ref``/``fast``: efficiencies, NaN in empty bins; ``*_err``: their uncertainties;
    ``ratio = fast / ref`` with uncertainties added in quadrature (independent samples).
    """

    variable: str
    edges: np.ndarray
    ref: np.ndarray
    ref_err: np.ndarray
    fast: np.ndarray
    fast_err: np.ndarray
    ratio: np.ndarray
    ratio_err: np.ndarray


def _binned_eff(values: np.ndarray, passed: np.ndarray, w: np.ndarray, edges: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Weighted efficiency per bin and ``sqrt((1-e)^2 sum_pass w^2 + e^2 sum_fail w^2) / sum w``."""
    def hist(weights: np.ndarray) -> np.ndarray:
        return np.histogram(values, bins=edges, weights=weights)[0]

    w_pass, w_fail = np.where(passed, w, 0.0), np.where(passed, 0.0, w)
    total = hist(w)
    with np.errstate(invalid="ignore", divide="ignore"):
        eff = hist(w_pass) / total
        err = np.sqrt((1 - eff) ** 2 * hist(w_pass**2) + eff**2 * hist(w_fail**2)) / np.abs(total)
    empty = total == 0
    eff[empty], err[empty] = np.nan, np.nan
    return eff, err


def efficiency_ratio(
    ref_pass: np.ndarray,
    ref_w: np.ndarray | None,
    fast_pass: np.ndarray,
    fast_w: np.ndarray | None,
    bins: Mapping[str, Sequence[float] | np.ndarray],
    ref_values: Mapping[str, np.ndarray],
    fast_values: Mapping[str, np.ndarray],
) -> dict[str, BinnedEfficiency]:
    """Binned efficiency of the reference and the fast simulation, per variable.

    With unit weights the uncertainty is the binomial ``sqrt(e (1 - e) / N)``; with
    weights it is ``sqrt((1 - e)^2 sum_pass w^2 + e^2 sum_fail w^2) / sum w``.

    Args:
        ref_pass, fast_pass: ``(n,)`` / ``(m,)`` booleans, True where the object passed.
        ref_w, fast_w: per-row weights or ``None``.
        bins: variable name → bin edges (e.g. ``{"p": [0, 5e3, 1e4, ...]}`` in MeV).
        ref_values, fast_values: variable name → ``(n,)`` / ``(m,)`` values.

    Returns:
        variable name → :class:`BinnedEfficiency`.
    """
    ref_pass = np.asarray(ref_pass, dtype=bool).reshape(-1)
    fast_pass = np.asarray(fast_pass, dtype=bool).reshape(-1)
    rw = _weights(ref_w, ref_pass.size, "efficiency_ratio ref_w")
    fw = _weights(fast_w, fast_pass.size, "efficiency_ratio fast_w")
    out = {}
    for var, edges in bins.items():
        missing = [name for name, vals in (("ref_values", ref_values), ("fast_values", fast_values)) if var not in vals]
        if missing:
            raise ConfigError(f"efficiency_ratio: variable {var!r} not in {missing}")
        edges = np.asarray(edges, dtype=np.float64)
        if edges.ndim != 1 or edges.size < 2 or np.any(np.diff(edges) <= 0):
            raise ConfigError(f"efficiency_ratio: bin edges of {var!r} must be increasing, >= 2 values")
        rv = np.asarray(ref_values[var], dtype=np.float64).reshape(-1)
        fv = np.asarray(fast_values[var], dtype=np.float64).reshape(-1)
        if rv.size != ref_pass.size or fv.size != fast_pass.size:
            raise DataError(f"efficiency_ratio: {var!r} values and pass flags differ in length")
        e_ref, s_ref = _binned_eff(rv, ref_pass, rw, edges)
        e_fast, s_fast = _binned_eff(fv, fast_pass, fw, edges)
        with np.errstate(invalid="ignore", divide="ignore"):
            ratio = e_fast / e_ref
            ratio_err = np.abs(ratio) * np.sqrt((s_fast / e_fast) ** 2 + (s_ref / e_ref) ** 2)
        out[var] = BinnedEfficiency(var, edges, e_ref, s_ref, e_fast, s_fast, ratio, ratio_err)
    return out


def _figure(n_rows: int = 1, height_ratios: Sequence[float] | None = None) -> tuple[Any, Any]:
    """An Agg figure (no pyplot) with ``n_rows`` vertically stacked axes sharing x."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 6 + 2 * (n_rows - 1)))
    FigureCanvasAgg(fig)
    axes = fig.subplots(n_rows, 1, sharex=True, squeeze=False,
                        gridspec_kw={"height_ratios": height_ratios} if height_ratios else None)
    return fig, axes[:, 0]


def _style() -> Any:
    import matplotlib
    import mplhep

    return matplotlib.rc_context(mplhep.style.LHCb2)


def plot_histograms(
    reference: np.ndarray,
    generated: np.ndarray,
    names: Sequence[str],
    report_dir: str | Path,
    *,
    weights_ref: np.ndarray | None = None,
    weights_gen: np.ndarray | None = None,
    bins: int = 50,
    labels: tuple[str, str] = ("Reference", "Fast simulation"),
    prefix: str = "",
) -> list[Path]:
    """One PNG per column: reference vs generated distributions, both normalised.

    Args:
        reference, generated: ``(n, d)`` / ``(m, d)`` samples (column ``j`` is ``names[j]``).
        names: column names (used in axis labels and file names).
        report_dir: folder for the PNGs (created).
        weights_ref, weights_gen: per-row weights or ``None``.
        bins: number of bins, spanning the 0.1 - 99.9 % range of the reference.
        labels: legend entries.
        prefix: file name prefix.

    Returns:
        The written PNG paths, ``report_dir / f"{prefix}{name}.png"``.
    """
    import mplhep

    ref = _features(reference, None, "plot_histograms reference")
    gen = _features(generated, None, "plot_histograms generated")
    if ref.shape[1] != len(names) or gen.shape[1] != len(names):
        raise DataError(f"plot_histograms: {len(names)} names for {ref.shape[1]} / {gen.shape[1]} columns")
    w_ref = _weights(weights_ref, ref.shape[0], "plot_histograms weights_ref")
    w_gen = _weights(weights_gen, gen.shape[0], "plot_histograms weights_gen")
    out_dir = Path(report_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    with _style():
        for j, name in enumerate(names):
            lo, hi = np.quantile(ref[:, j], [0.001, 0.999])
            hi = hi if hi > lo else lo + 1.0
            edges = np.linspace(lo, hi, bins + 1)
            fig, (ax,) = _figure()
            for data, w, label in ((ref[:, j], w_ref, labels[0]), (gen[:, j], w_gen, labels[1])):
                counts = np.histogram(data, bins=edges, weights=w)[0]
                mplhep.histplot(counts / max(abs(counts.sum()), 1e-300), edges, ax=ax, label=label)
            ax.set_xlabel(name)
            ax.set_ylabel("Normalised candidates")
            ax.legend()
            path = out_dir / f"{prefix}{name}.png"
            fig.savefig(path)
            paths.append(path)
    log.info("wrote %d histograms to %s", len(paths), out_dir)
    return paths


def plot_efficiency(
    efficiencies: Mapping[str, BinnedEfficiency],
    report_dir: str | Path,
    *,
    labels: tuple[str, str] = ("Reference", "Fast simulation"),
    prefix: str = "eff_",
) -> list[Path]:
    """One PNG per variable: both efficiencies with error bars, and their ratio below.

    Returns:
        The written PNG paths, ``report_dir / f"{prefix}{variable}.png"``.
    """
    out_dir = Path(report_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    with _style():
        for var, eff in efficiencies.items():
            centres = 0.5 * (eff.edges[1:] + eff.edges[:-1])
            half = 0.5 * np.diff(eff.edges)
            fig, (ax, rax) = _figure(2, (3, 1))
            ax.errorbar(centres, eff.ref, yerr=eff.ref_err, xerr=half, fmt="o", label=labels[0])
            ax.errorbar(centres, eff.fast, yerr=eff.fast_err, xerr=half, fmt="s", label=labels[1])
            ax.set_ylabel("Efficiency")
            ax.legend()
            rax.errorbar(centres, eff.ratio, yerr=eff.ratio_err, xerr=half, fmt="o", color="k")
            rax.axhline(1.0, color="grey", linestyle="--")
            rax.set_ylabel("Ratio")
            rax.set_xlabel(var)
            path = out_dir / f"{prefix}{var}.png"
            fig.savefig(path)
            paths.append(path)
    log.info("wrote %d efficiency plots to %s", len(paths), out_dir)
    return paths
