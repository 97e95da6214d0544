"""``mambah validate calorimeter``: the fast shower model against the reference ECAL.

On a fresh reference sample of photons and electrons (seed 2 by default; the shipped
model was trained on seed 1) the fast model draws the same particles' showers, and:

* the energy resolution, fitted as ``σ/E = a/√E ⊕ b`` to the robust (16-84 %) widths of
  ``sum/E`` in 8 log bins of 1-100 GeV, must give ``a`` and ``b`` within 10 % of the
  reference's;
* the distributions of the shower metrics (:func:`sim.training.image_gan.image_metrics`:
  barycentre x/y, width, asymmetries) must agree to a KS distance below
  :data:`THRESHOLDS` ``max_ks``;
* the mean x profile (energy fraction per fine column) must agree to ``max_profile``;
* a third-player classifier (:func:`sim.training.validation.two_sample_test`) on the
  cluster summary features, given log10 E and the species, must stay below ``max_auc``.

The thresholds are the measured values of the first shipped model (the (16, 8)
transposed-convolution generator: KS 0.055-0.12, profile 0.010, AUC 0.849 on 6000 showers)
with some margin, held for the sub-pixel generator that replaced it (KS 0.026-0.097,
profile 0.013, AUC 0.815).  With ``report_dir`` the profiles
and metric histograms are plotted (matplotlib, mplhep style when installed).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mambah.errors import ConfigError
from sim.core.registry import register_validator

__all__ = ("THRESHOLDS", "CaloReport", "fit_resolution", "summary_features", "validate_calorimeter")

log = logging.getLogger(__name__)

THRESHOLDS: dict[str, float] = {"resolution_rel": 0.10, "max_ks": 0.15, "max_profile": 0.02, "max_auc": 0.87}


def fit_resolution(energy: np.ndarray, measured: np.ndarray) -> tuple[float, float]:
    """Fit ``σ/E = a/√E[GeV] ⊕ b`` to the robust widths of ``measured/energy`` in 8 log bins of 1-100 GeV.

    Weighted least squares, the error of each width ``1.1 σ/√(2n)`` (a 16-84 % quantile
    width is about 10 % less precise than the r.m.s.).

    Returns:
        ``(a, b)``.
    """
    from scipy.optimize import curve_fit  # type: ignore[import-untyped]

    e = np.asarray(energy, dtype=np.float64)
    r = np.asarray(measured, dtype=np.float64) / e
    edges = np.geomspace(1000.0, 100_000.0, 9)
    e_mid, res, err = [], [], []
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        b = (e >= lo) & (e < hi)
        if b.sum() < 20:
            raise ConfigError(f"fit_resolution: only {int(b.sum())} showers in {lo / 1000:.1f}-{hi / 1000:.1f} GeV; "
                              "give at least 20 per bin (more events)")
        q16, q50, q84 = np.percentile(r[b], [16, 50, 84])
        e_mid.append(np.sqrt(lo * hi) / 1000.0)
        res.append(0.5 * (q84 - q16) / q50)
        err.append(1.1 * res[-1] / np.sqrt(2.0 * b.sum()))

    def model(x: np.ndarray, a: float, c: float) -> np.ndarray:
        return np.sqrt(a * a / x + c * c)

    (a, c), _ = curve_fit(model, np.array(e_mid), np.array(res), p0=(0.1, 0.01), sigma=np.array(err),
                          absolute_sigma=True)
    return float(abs(a)), float(abs(c))


def summary_features(matrices: np.ndarray, energy: np.ndarray) -> np.ndarray:
    """``(n, 8)`` cluster summary of shower matrices: sum/E, central 3x3 fine-cell fraction,
    largest-cell fraction and the five :func:`~sim.training.image_gan.image_metrics`."""
    from sim.training.image_gan import image_metrics

    m = np.asarray(matrices, dtype=np.float64)
    tot = m.sum(axis=(1, 2))
    safe = np.where(tot > 0, tot, 1.0)
    g = m.shape[1] // 2
    centre = m[:, g - 1 : g + 2, g - 1 : g + 2].sum(axis=(1, 2))
    return np.column_stack([tot / energy, centre / safe, m.max(axis=(1, 2)) / safe, image_metrics(m)])


@dataclass
class CaloReport:
    """What :func:`validate_calorimeter` measured (``checks``: name → (value, limit, passed))."""

    n_showers: int
    resolution: dict[str, tuple[float, float]] = field(default_factory=dict)
    ks: dict[str, float] = field(default_factory=dict)
    profile_diff: float = float("nan")
    auc: float = float("nan")
    checks: dict[str, tuple[float, float, bool]] = field(default_factory=dict)
    plots: list[Path] = field(default_factory=list)

    def failed(self) -> list[str]:
        return [k for k, (_, _, ok) in self.checks.items() if not ok]

    def lines(self) -> list[str]:
        (a_r, b_r), (a_f, b_f) = self.resolution["reference"], self.resolution["fast"]
        out = [f"fresh reference sample: {self.n_showers} photon/electron showers",
               f"resolution a/√E ⊕ b: reference a = {a_r:.4f}, b = {b_r:.4f}; fast a = {a_f:.4f}, b = {b_f:.4f}"]
        out += [f"{k}: {v:.4f} (limit {lim:g}): {'ok' if ok else 'FAIL'}" for k, (v, lim, ok) in self.checks.items()]
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"n_showers": self.n_showers, "resolution": self.resolution, "ks": self.ks,
                "profile_diff": self.profile_diff, "auc": self.auc, "thresholds": THRESHOLDS,
                "checks": {k: {"value": v, "limit": lim, "passed": ok} for k, (v, lim, ok) in self.checks.items()}}


def validate_calorimeter(
    *, events: int = 6000, seed: int = 2, report_dir: str | Path | None = None, model: str | None = None,
    data: Mapping[str, np.ndarray] | None = None,
) -> CaloReport:
    """Compare the fast shower model with the reference ECAL on a fresh sample.

    Args:
        events: showers of the fresh sample (half photons, half electrons, 1-100 GeV).
        seed: its seed (the shipped model was trained on seed 1).
        report_dir: folder for ``summary.json`` and plots, or ``None``.
        model: ``.keras`` shower model (default: the shipped one).
        data: a ready :func:`sim.reference.ecal.shower_sample` instead of generating one.

    Returns:
        :class:`CaloReport`.
    """
    from scipy.stats import ks_2samp  # type: ignore[import-untyped]

    from sim.detector.calorimeter import generate_showers, load_shower_model
    from sim.reference.ecal import shower_sample
    from sim.training.image_gan import METRICS, image_metrics
    from sim.training.validation import two_sample_test

    s = dict(data) if data is not None else shower_sample(int(events), np.random.default_rng(seed),
                                                          mix=((22, 0.5), (11, 0.5)))
    fast_model = load_shower_model(model, "validate calorimeter")
    ref = np.asarray(s["matrix"], dtype=np.float64)
    gen = generate_showers(fast_model, s["pid"], s["energy"], s["x"], s["y"], s["tx"], s["ty"],
                           np.random.default_rng(seed + 3))
    rep = CaloReport(n_showers=int(ref.shape[0]))
    e = np.asarray(s["energy"], dtype=np.float64)
    rep.resolution = {"reference": fit_resolution(e, ref.sum(axis=(1, 2))), "fast": fit_resolution(e, gen.sum(axis=(1, 2)))}
    m_ref, m_gen = image_metrics(ref), image_metrics(gen)
    rep.ks = {name: float(ks_2samp(m_ref[:, i], m_gen[:, i]).statistic) for i, name in enumerate(METRICS)}

    def profile(m: np.ndarray) -> np.ndarray:
        return np.asarray((m / np.maximum(m.sum(axis=(1, 2), keepdims=True), 1e-12)).sum(axis=1).mean(axis=0))

    prof_ref, prof_gen = profile(ref), profile(gen)
    rep.profile_diff = float(np.max(np.abs(prof_ref - prof_gen)))
    cond = np.column_stack([np.log10(e), np.abs(np.asarray(s["pid"])) == 11])
    rep.auc = float(two_sample_test(summary_features(ref, e), summary_features(gen, e), conditions_ref=cond,
                                    conditions_gen=cond, seed=0)["auc"])
    rel = THRESHOLDS["resolution_rel"]
    for i, par in enumerate(("a", "b")):
        dev = abs(rep.resolution["fast"][i] / rep.resolution["reference"][i] - 1.0)
        rep.checks[f"resolution {par}: |fast/ref - 1|"] = (dev, rel, dev < rel)
    worst = max(rep.ks, key=lambda k: rep.ks[k])
    rep.checks[f"metric KS (worst: {worst})"] = (rep.ks[worst], THRESHOLDS["max_ks"], rep.ks[worst] < THRESHOLDS["max_ks"])
    rep.checks["mean x profile max |diff|"] = (rep.profile_diff, THRESHOLDS["max_profile"],
                                               rep.profile_diff < THRESHOLDS["max_profile"])
    rep.checks["third-player AUC"] = (rep.auc, THRESHOLDS["max_auc"], rep.auc < THRESHOLDS["max_auc"])
    if report_dir is not None:
        out = Path(report_dir)
        out.mkdir(parents=True, exist_ok=True)
        rep.plots = _plots(out, prof_ref, prof_gen, m_ref, m_gen)
        (out / "summary.json").write_text(json.dumps(rep.to_dict(), indent=1))
    for line in rep.lines():
        log.info("%s", line)
    return rep


def _plots(out: Path, prof_ref: np.ndarray, prof_gen: np.ndarray, m_ref: np.ndarray, m_gen: np.ndarray) -> list[Path]:
    import matplotlib as mpl  # type: ignore[import-untyped]

    mpl.use("Agg")
    import matplotlib.pyplot as plt  # type: ignore[import-untyped]

    from sim.training.image_gan import METRICS

    try:
        import mplhep  # type: ignore[import-untyped]

        plt.style.use(mplhep.style.LHCb2)
    except ImportError:
        log.warning("mplhep is not installed: plots in the matplotlib style")
    fig, axes = plt.subplots(2, 3, figsize=(15, 9))
    ax = axes.flat[0]
    x = np.arange(prof_ref.size) - prof_ref.size // 2
    ax.step(x, prof_ref, where="mid", label="reference")
    ax.step(x, prof_gen, where="mid", label="fast")
    ax.set_yscale("log")
    ax.set_xlabel("fine column - entry column")
    ax.set_ylabel("mean energy fraction")
    ax.legend()
    for i, name in enumerate(METRICS):
        ax = axes.flat[i + 1]
        lo, hi = np.percentile(m_ref[:, i], [0.5, 99.5])
        bins = np.linspace(lo, hi, 50)
        ax.hist(m_ref[:, i], bins, histtype="step", label="reference", density=True)
        ax.hist(m_gen[:, i], bins, histtype="step", label="fast", density=True)
        ax.set_xlabel(name if name.startswith("asym") else f"{name} [fine cells]")
    path = out / "calorimeter.png"
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return [path]


register_validator("calorimeter", help="fast shower GAN against the reference ECAL")(validate_calorimeter)
