"""``mambah validate published``: the reference detector and the fast chain against LHCb's published figures.

For every figure of :data:`sim.reference.published.FIGURES` the same selection is
measured twice, on the same generated particles:

* **reference**: the reference detector (:func:`sim.reference.tracking.simulate_tracking`,
  :func:`sim.reference.pid.simulate_pid`, PVs fitted with :mod:`sim.detector.vertexing`
  from reference track states);
* **fast**: the shipped fast models as the passes run them (the efficiency classifier's
  expected Long-track efficiency for particles in the acceptance; the resolution pass's
  residuals, :func:`sim.detector.resolution.pass_residuals`: track states drawn from the
  covariance model the reference shares, χ²/ndf and ghost probability from the GAN; the
  PID chain of :mod:`sim.pid.models` via :func:`sim.pid.response.fast_pid`).

Samples (fixed seeds, independent of every training seed):

* tracking: prompt muons from a PV smeared by the luminous region (σ 40 µm, 45 mm),
  log-uniform 2 < p < 250 GeV, uniform 2 < η < 5 and φ, nTracks ~ Gamma(mean 150);
* PV: 25 VELO tracks per PV, minimum-bias-like prompt pions (pT ~ Gamma(2, 0.25 GeV),
  ⟨pT⟩ = 0.5 GeV; 1.3 < η < 5.3 generated, the first 25 crossing three VELO stations
  kept, like the paper's vertices "with 25 tracks"), as Long tracks with the reference
  state covariance (reference only: the fast chain uses the same covariance model);
* PID: the signal kinematics of the PIDCalib-like calibration channels
  (:func:`sim.reference.calibration.make_calibration_sample` without background):
  D* for K and π, J/ψ for μ and e, Λ for p, all Long tracks.  The calorimeter term
  ``EcalPIDe`` of each track is the reference ECAL's (reference) and the fast shower
  GAN's (fast) through the calorimeter pass's reconstruction
  (:func:`sim.reference.ecal_pid.reference_ecal_pid`).

* ghosts: events of the default decay through the reference detector
  (:func:`sim.training.ghosts.reference_ghost_sample`, Run 2 occupancy): the reference
  ghosts (:func:`sim.reference.tracking.simulate_ghosts`) and the shipped ghost model's
  (:func:`sim.detector.ghosts.make_ghosts`) on the same events; the real Long tracks'
  ghost probability from the reference and from the resolution GAN.

Widths are core widths (IQR / 1.349) as the published Gaussian fits.  The IP_x
resolution is measured with respect to the true PV (the published one with respect
to a refitted unbiased PV, which adds the PV resolution in quadrature to the constant).

With ``report_dir`` the PIDCalib-like curves (efficiency and misID vs p, reference and
fast; tracking efficiency vs p and η; IsMuon efficiency vs p) are plotted with mplhep
(LHCb style) and ``summary.json`` / ``summary.txt`` are written there.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sim.reference.published import FIGURES, PublishedFigure

__all__ = ("Comparison", "FAST_FIGURES", "FastFigure", "PublishedReport", "Row", "tracking_gun", "validate_published",
           "P_BINS", "ETA_BINS")

log = logging.getLogger(__name__)

_GEV = 1000.0
#: Momentum bins [MeV] of the curves.
P_BINS: tuple[float, ...] = (2e3, 5e3, 1e4, 2e4, 3e4, 5e4, 7e4, 1e5, 1.5e5, 2.5e5)
#: Pseudorapidity bins of the curves.
ETA_BINS: tuple[float, ...] = (2.0, 2.5, 3.0, 3.5, 4.0, 4.5, 5.0)
#: 1/pT bins [1/GeV] of the IP_x fit.
INV_PT_BINS: tuple[float, ...] = (0.3, 0.6, 1.0, 1.5, 2.0, 3.0)


@dataclass
class Row:
    """One figure measured: published value, reference and fast chain (``None``: not measured)."""

    figure: PublishedFigure
    reference: float | None = None
    fast: float | None = None
    note: str = ""

    @property
    def reference_pass(self) -> bool | None:
        return self.figure.passes(self.reference)

    @property
    def fast_pass(self) -> bool | None:
        return self.figure.passes(self.fast)

    def to_dict(self) -> dict[str, Any]:
        f = self.figure
        return {"key": f.key, "quantity": f.quantity, "published": f.value, "unit": f.unit,
                "tolerance": f.tolerance_text(), "source": f.source, "provenance": f.provenance,
                "reference": self.reference, "fast": self.fast, "reference_pass": self.reference_pass,
                "fast_pass": self.fast_pass, "note": self.note}


@dataclass(frozen=True)
class FastFigure:
    """A figure with no published number on which the fast chain is held to the reference detector.

    The shipped models are trained on the reference detector (issue #16: "the fast models
    follow the new reference"); where LHCb publishes no number, what can be compared is the
    fast chain against the reference on the same particles.

    Attributes:
        key: short identifier (``mambah validate published`` prints it).
        quantity: what is measured, in words.
        selection: the tracks it refers to (as the validator selects them).
        tolerance: allowed ``|fast - reference|`` (absolute).
        measured: how the tolerance was chosen (statistical spread, measured models).
    """

    key: str
    quantity: str
    selection: str
    tolerance: float
    measured: str

    def passes(self, reference: float | None, fast: float | None) -> bool | None:
        """Whether ``fast`` follows ``reference`` within the tolerance; ``None`` if either is missing."""
        if reference is None or fast is None or not (np.isfinite(reference) and np.isfinite(fast)):
            return None
        return bool(abs(fast - reference) <= self.tolerance)


#: The fast-against-reference figures, in the order ``mambah validate published`` prints them.
FAST_FIGURES: tuple[FastFigure, ...] = (
    FastFigure(
        "k_probnnk_low_p", "kaon ProbNNk > 0.5 efficiency below 10 GeV",
        "Long kaons of the PIDCalib-like D* kinematics, 2 < p < 10 GeV (1 240 of the default 20 000)",
        0.03,
        "statistical spread of the difference at the default 20 000 kaons: +-0.012 (1 sigma); the fast "
        "chain of 1 Dec 2026 (kaon RICH GAN with RichDLLK and RichDLLp as two numbers below the C4F10 kaon "
        "threshold) misses it by 0.23, docs/pid.md 'Kaons below 10 GeV'"),
)


@dataclass
class Comparison:
    """One :class:`FastFigure` measured on the reference detector and the fast chain."""

    figure: FastFigure
    reference: float | None = None
    fast: float | None = None

    @property
    def passes(self) -> bool | None:
        return self.figure.passes(self.reference, self.fast)

    def to_dict(self) -> dict[str, Any]:
        f = self.figure
        return {"key": f.key, "quantity": f.quantity, "selection": f.selection, "tolerance": f.tolerance,
                "measured": f.measured, "reference": self.reference, "fast": self.fast, "pass": self.passes}


@dataclass
class PublishedReport:
    """Every row, the fast-against-reference comparisons, diagnostics without a published number, curves."""

    rows: list[Row]
    diagnostics: dict[str, tuple[float | None, float | None]] = field(default_factory=dict)
    curves: dict[str, dict[str, Any]] = field(default_factory=dict)
    plots: list[Path] = field(default_factory=list)
    comparisons: list[Comparison] = field(default_factory=lambda: [Comparison(f) for f in FAST_FIGURES])

    def row(self, key: str) -> Row:
        for r in self.rows:
            if r.figure.key == key:
                return r
        raise KeyError(key)

    def comparison(self, key: str) -> Comparison:
        for c in self.comparisons:
            if c.figure.key == key:
                return c
        raise KeyError(key)

    def failed(self) -> list[str]:
        """Keys of the compared figures the reference or the fast chain misses (published table first)."""
        return ([r.figure.key for r in self.rows if r.reference_pass is False or r.fast_pass is False]
                + [c.figure.key for c in self.comparisons if c.passes is False])

    def lines(self) -> list[str]:
        """The table as text, one figure per line, then the diagnostics."""
        def fmt(v: float | None) -> str:
            return "-" if v is None or not np.isfinite(v) else f"{v:.4g}"

        def verdict(ok: bool | None) -> str:
            return {True: "pass", False: "FAIL", None: "-"}[ok]

        out = [f"{'figure':<22} {'published':>10} {'tolerance':>14} {'reference':>10} {'':>4} {'fast':>10} {'':>4}"]
        for r in self.rows:
            f = r.figure
            pub = "none" if f.value is None else f"{f.value:g}"
            out.append(f"{f.key:<22} {pub:>10} {f.tolerance_text():>14} {fmt(r.reference):>10} "
                       f"{verdict(r.reference_pass):>4} {fmt(r.fast):>10} {verdict(r.fast_pass):>4}"
                       + (f"  ({r.note})" if r.note else ""))
        if self.comparisons:
            out.append("fast chain against the reference detector (no published number):")
            for c in self.comparisons:
                diff = None if c.reference is None or c.fast is None else c.fast - c.reference
                out.append(f"  {c.figure.key:<20} {'± ' + format(c.figure.tolerance, 'g'):>12} reference "
                           f"{fmt(c.reference):>8}   fast {fmt(c.fast):>8}   diff {fmt(diff):>8} {verdict(c.passes):>4}")
        if self.diagnostics:
            out.append("diagnostics (no published number):")
            for k, (a, b) in self.diagnostics.items():
                out.append(f"  {k:<44} reference {fmt(a):>8}   fast {fmt(b):>8}")
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"rows": [r.to_dict() for r in self.rows], "comparisons": [c.to_dict() for c in self.comparisons],
                "diagnostics": {k: list(v) for k, v in self.diagnostics.items()},
                "curves": self.curves, "failed": self.failed()}


# --------------------------------------------------------------------------- samples


def tracking_gun(n: int, rng: np.random.Generator, pid: int = 13) -> dict[str, np.ndarray]:
    """Prompt particles for the tracking figures (see the module docstring).

    Args:
        n: number of particles.
        rng: source of randomness.
        pid: |PDG id| (charge drawn ±1; the sign convention of leptons respected).

    Returns:
        The truth arrays of :data:`sim.reference.tracking.TRUTH_KEYS`, each ``(n,)``.
    """
    from particle import Particle

    mass = float(Particle.from_pdgid(pid).mass or 0.0)
    p = np.exp(rng.uniform(np.log(2e3), np.log(2.5e5), n))
    eta = rng.uniform(2.0, 5.0, n)
    phi = rng.uniform(-np.pi, np.pi, n)
    pt = p / np.cosh(eta)
    charge = rng.choice(np.array([-1.0, 1.0]), n)
    sign = -charge if pid in (11, 13) else charge
    pv = np.column_stack([rng.normal(0.0, 0.04, n), rng.normal(0.0, 0.04, n), rng.normal(0.0, 45.0, n)])
    return {
        "pid": (sign * pid).astype(np.int64), "charge": charge,
        "px": pt * np.cos(phi), "py": pt * np.sin(phi), "pz": pt * np.sinh(eta),
        "e": np.sqrt(p * p + mass * mass),
        "origin_x": pv[:, 0], "origin_y": pv[:, 1], "origin_z": pv[:, 2],
        "pv_x": pv[:, 0], "pv_y": pv[:, 1], "pv_z": pv[:, 2],
        "n_tracks": np.round(rng.gamma(3.0, 50.0, n)).astype(np.int64),
    }


def _core(x: np.ndarray) -> float:
    """Core width IQR / 1.349 (NaN for fewer than 20 values)."""
    if x.size < 20:
        return float("nan")
    q75, q25 = np.percentile(x, [75, 25])
    return float((q75 - q25) / 1.349)


def _binned_rate(passed: np.ndarray, values: np.ndarray, edges: tuple[float, ...],
                 weights: np.ndarray | None = None) -> list[float | None]:
    w = np.ones(passed.size) if weights is None else weights
    out: list[float | None] = []
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        sel = (values >= lo) & (values < hi)
        tot = float(w[sel].sum())
        out.append(float((w[sel] * passed[sel]).sum() / tot) if sel.sum() >= 20 and tot > 0 else None)
    return out


def _mean(x: np.ndarray) -> float | None:
    return float(np.mean(x)) if x.size else None


# --------------------------------------------------------------------------- tracking


def _tracking(report: PublishedReport, n: int, seed: int) -> None:
    from sim.core.modelio import feature_matrix, load_pass_model
    from sim.detector.efficiency import EFFICIENCY_CLASSES, Efficiency
    from sim.detector.features import truth_features
    from sim.detector.resolution import RESOLUTION_CONDITIONS, RESOLUTION_TARGETS, pass_residuals, residual_targets
    from sim.reference.tracking import simulate_tracking

    rng = np.random.default_rng(seed)
    truth = tracking_gun(n, rng)
    ref = simulate_tracking(truth, rng)
    feats = truth_features(truth)
    acc = np.asarray(ref["in_acceptance"], dtype=bool)
    p = feats["p"]
    is_long = np.asarray(ref["track_type"]) == 3

    eff_cfg = Efficiency()
    eff_model = load_pass_model(None, "efficiency", kind="classifier", inputs=eff_cfg.inputs,
                                outputs=EFFICIENCY_CLASSES, pass_name="efficiency")
    fa = {k: v[acc] for k, v in feats.items()}
    fa["in_acceptance"] = np.ones(int(acc.sum()))
    proba = np.clip(np.asarray(eff_model.predict_proba(feature_matrix(fa, eff_cfg.inputs, "validate published")),
                               dtype=np.float64), 0.0, 1.0)
    reco = proba[:, [1, 3]].sum(axis=1)  # Upstream is not allowed inside the acceptance
    p_long = proba[:, 1] / np.maximum(reco, 1.0)
    pa, ea, la = p[acc], feats["eta"][acc], is_long[acc]
    for key, lo, hi in (("trk_eff_long", 5e3, 2e5), ("trk_eff_long_low_p", 2e3, 5e3)):
        sel = (pa > lo) & (pa < hi)
        report.row(key).reference, report.row(key).fast = _mean(la[sel]), _mean(p_long[sel])
    for var, edges, values in (("p", P_BINS, pa), ("eta", ETA_BINS, ea)):
        report.curves[f"tracking_long_eff_vs_{var}"] = {
            "edges": list(edges), "reference": _binned_rate(la.astype(float), values, edges),
            "fast": _binned_rate(p_long, values, edges)}

    # resolution: reference residuals vs the resolution pass's (states drawn from the shared
    # covariance model, χ²/ndf and ghost probability from the GAN), for reference Long tracks
    res_ref = residual_targets(feats, truth, ref)
    rl = {k: v[is_long] for k, v in feats.items()}
    rl.update(is_upstream=np.zeros(int(is_long.sum())), is_downstream=np.zeros(int(is_long.sum())))
    res_model = load_pass_model(None, "resolution", kind="generator", inputs=RESOLUTION_CONDITIONS,
                                outputs=RESOLUTION_TARGETS, pass_name="resolution")
    gan = np.asarray(res_model.sample(feature_matrix(rl, RESOLUTION_CONDITIONS, "validate published"), rng))
    fast_res = pass_residuals(rl, {k: v[is_long] for k, v in truth.items()}, np.full(int(is_long.sum()), 3), gan, rng)
    pl, ptl = rl["p"], rl["pt"]
    dp = {"reference": res_ref["dp_rel"][is_long], "fast": fast_res[:, 0]}
    ipx = {"reference": res_ref["dx_pt"][is_long] / (ptl / _GEV), "fast": fast_res[:, 3] / (ptl / _GEV)}
    for key, lo, hi in (("dp_over_p_low", 5e3, 2e4), ("dp_over_p_200", 1.5e5, 2.5e5)):
        sel = (pl > lo) & (pl < hi)
        report.row(key).reference, report.row(key).fast = _core(dp["reference"][sel]), _core(dp["fast"][sel])
    report.curves["dp_over_p_vs_p"] = {
        "edges": list(P_BINS),
        **{w: [_core(dp[w][(pl >= lo) & (pl < hi)]) for lo, hi in zip(P_BINS[:-1], P_BINS[1:], strict=True)]
           for w in ("reference", "fast")}}
    inv_pt = _GEV / ptl
    bins = [(inv_pt > lo) & (inv_pt < hi) for lo, hi in zip(INV_PT_BINS[:-1], INV_PT_BINS[1:], strict=True)]
    centres = [float(np.mean(inv_pt[b])) for b in bins]
    for which, attr in (("reference", "reference"), ("fast", "fast")):
        widths = [1e3 * _core(ipx[which][b]) for b in bins]  # µm
        slope, const = np.polyfit(centres, widths, 1)
        setattr(report.row("ip_x_const"), attr, float(const))
        setattr(report.row("ip_x_slope"), attr, float(slope))
        report.curves.setdefault("ip_x_vs_inv_pt", {"inv_pt": centres})[which] = widths
    report.row("ip_x_const").note = "w.r.t. the true PV"


def _pv(report: PublishedReport, n_pv: int, seed: int, k: int = 25, k_generated: int = 45) -> None:
    """PVs of ``k`` VELO tracks: of ``k_generated`` minimum-bias-like prompt pions per PV
    (pT ~ Gamma(2, 0.25 GeV), ⟨pT⟩ = 0.5 GeV; uniform 1.3 < η < 5.3, wider than the VELO
    so that its geometry decides), the first ``k`` crossing at least 3 VELO stations; the
    event's nTracks ~ Gamma(mean 150) as the tracking sample (the hit resolution grows with it)."""
    from sim.detector import vertexing as vx
    from sim.detector.trackcov import TrackErrorModel, crossed_velo_stations, reconstruct_states

    rng = np.random.default_rng(seed)
    pv = np.column_stack([rng.normal(0, 0.04, n_pv), rng.normal(0, 0.04, n_pv), rng.normal(0, 45.0, n_pv)])
    kg = k_generated
    m = n_pv * kg
    pt = rng.gamma(2.0, 250.0, m)
    eta = rng.uniform(1.3, 5.3, m)
    phi = rng.uniform(-np.pi, np.pi, m)
    n_tracks = np.repeat(np.round(rng.gamma(3.0, 50.0, n_pv)), kg)
    flat = {"charge": rng.choice(np.array([-1.0, 1.0]), m), "px": pt * np.cos(phi), "py": pt * np.sin(phi),
            "pz": pt * np.sinh(eta), "n_tracks": n_tracks,
            **{f"origin_{a}": np.repeat(pv[:, i], kg) for i, a in enumerate("xyz")},
            **{f"pv_{a}": np.repeat(pv[:, i], kg) for i, a in enumerate("xyz")}}
    tx, ty = flat["px"] / flat["pz"], flat["py"] / flat["pz"]
    crossed = crossed_velo_stations(np.zeros(m), np.zeros(m), flat["origin_z"], tx, ty,
                                    TrackErrorModel()).sum(axis=1) >= 3
    st = reconstruct_states(flat, np.where(crossed, 3, 0), rng.standard_normal((m, 5)))
    state = np.column_stack([st[c] for c in ("x", "y", "tx", "ty", "qop")]).reshape(n_pv, kg, 5)
    mask = crossed.reshape(n_pv, kg)
    mask &= np.cumsum(mask, axis=1) <= k
    state = np.where(mask[..., None], state, 1.0)
    cov = np.where(mask[..., None, None], st["cov"].reshape(n_pv, kg, 5, 5), np.eye(5))
    z = np.where(mask, st["z"].reshape(n_pv, kg), 0.0)
    d = vx.track_daughters(z, state, cov, np.full(kg, 139.57), mask=mask)
    fit = vx.refit_pv(d, np.zeros(d.shape, bool))
    resid = (fit.position - pv) * 1e3  # µm
    report.row("pv_sigma_x_25").reference = float(np.std(resid[:, 0]))
    report.row("pv_sigma_z_25").reference = float(np.std(resid[:, 2]))
    for key in ("pv_sigma_x_25", "pv_sigma_z_25"):
        report.row(key).note = f"{float(mask.sum(axis=1).mean()):.1f} VELO tracks per PV (of {kg} generated)"


# --------------------------------------------------------------------------- ghosts

#: nTracks bins of the ghost-fraction curve.
NTRACKS_BINS: tuple[float, ...] = (0.0, 50.0, 100.0, 150.0, 200.0, 300.0, 500.0)


def _ghosts(report: PublishedReport, n_events: int, seed: int) -> None:
    """Ghost fraction of the Long tracks and the ghost-probability rejection (reference and fast)."""
    from sim.core.modelio import feature_matrix, load_pass_model
    from sim.detector.features import add_derived
    from sim.detector.ghosts import load_ghost_model, make_ghosts
    from sim.detector.resolution import RESOLUTION_CONDITIONS, RESOLUTION_TARGETS
    from sim.training.ghosts import reference_ghost_sample

    s = reference_ghost_sample(n_events, seed)
    ev, real, ref = s["events"], s["tracks"], s["ghosts"]
    rng = np.random.default_rng(seed + 1)
    fast = make_ghosts(load_ghost_model(), {**ev, "last_index": np.full(ev["event"].size, -1)}, rng)
    res_model = load_pass_model(None, "resolution", kind="generator", inputs=RESOLUTION_CONDITIONS,
                                outputs=RESOLUTION_TARGETS, pass_name="resolution")
    cond = feature_matrix(add_derived(dict(real)), RESOLUTION_CONDITIONS, "validate published")
    real_fast_gp = np.clip(np.asarray(res_model.sample(cond, rng))[:, 7], 0.0, 1.0)
    n_long = ev["n_long"]
    occ = ev["n_tracks"]
    for which, g, real_gp in (("reference", ref, real["ghost_prob"]), ("fast", fast, real_fast_gp)):
        n_g = np.bincount(np.asarray(g["event"], np.int64), minlength=n_long.size)
        setattr(report.row("ghost_rate_long"), which, float(n_g.sum() / max(n_g.sum() + n_long.sum(), 1)))
        cut = float(np.quantile(real_gp, 0.99))
        setattr(report.row("ghostprob_rejection"), which, _mean(np.asarray(g["ghost_prob"]) > cut))
        curve = report.curves.setdefault("ghost_fraction_vs_ntracks", {"edges": list(NTRACKS_BINS)})
        curve[which] = [float(n_g[b].sum() / (n_g[b].sum() + n_long[b].sum())) if n_long[b].sum() >= 20 else None
                        for b in ((occ >= lo) & (occ < hi) for lo, hi in zip(NTRACKS_BINS[:-1], NTRACKS_BINS[1:],
                                                                              strict=True))]
    report.row("ghost_rate_long").note = "no published number; reference level a model choice (docs/detector.md)"
    report.row("ghostprob_rejection").note = "cut at each chain's 99 % real-track quantile"
    pt = {w: g["p"] / np.cosh(g["eta"]) for w, g in (("reference", ref), ("fast", fast))}
    report.diagnostics["ghosts: median pT [MeV]"] = (float(np.median(pt["reference"])), float(np.median(pt["fast"])))
    report.diagnostics["ghosts: mean track chi2/ndf"] = (_mean(ref["track_chi2ndof"]), _mean(fast["track_chi2ndof"]))
    report.diagnostics["ghosts: median IP chi2"] = (float(np.median(ref["ip_chi2"])), float(np.median(fast["ip_chi2"])))
    report.diagnostics["real Long tracks: mean ghost_prob"] = (_mean(real["ghost_prob"]), _mean(real_fast_gp))


# --------------------------------------------------------------------------- PID


def _pid_samples(n: int, seed: int, pid_models: str | Path | None) -> dict[str, tuple[dict[str, np.ndarray], dict[str, np.ndarray]]]:
    """species → (reference columns + kinematics, fast columns) on the same Long tracks."""
    from sim.detector.calorimeter import load_shower_model
    from sim.pid.models import load_pid_models
    from sim.pid.response import fast_pid
    from sim.reference.calibration import make_calibration_sample
    from sim.reference.ecal_pid import reference_ecal_pid

    models = load_pid_models(pid_models) if pid_models is not None else load_pid_models()
    showers = load_shower_model()
    out = {}
    for i, species in enumerate(("K", "pi", "mu", "p", "e")):
        rng = np.random.default_rng(seed + 10 * i)
        df = make_calibration_sample(species, n, 0, rng, fit=False)
        ref = {c: df[c].to_numpy() for c in df.columns if c != "species"}
        phi = rng.uniform(-np.pi, np.pi, len(df))
        pt, eta = ref["pt"], ref["eta"]
        mom = (pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta))
        calo = reference_ecal_pid(ref["pid"], ref["charge"], *mom, rng, showers=showers)  # fast showers
        fast = fast_pid(models, ref["pid"], *mom, ref["n_tracks"].astype(np.float64), rng,
                        ecal_pid=calo["EcalPIDe"])
        out[species] = (ref, fast)
    return out


def _pid(report: PublishedReport, n: int, seed: int, pid_models: str | Path | None) -> None:
    from sim.reference.pid import PIDConfig

    samples = _pid_samples(n, seed, pid_models)
    cfg = PIDConfig()

    def both(species: str, fn: Any) -> tuple[float | None, float | None]:
        ref, fast = samples[species]
        return fn(ref, ref), fn(ref, fast)

    def in_range(kin: Mapping[str, np.ndarray]) -> np.ndarray:
        return (kin["p"] > 2e3) & (kin["p"] < 1e5)

    for key, species, cut in (("k_eff_dllk0", "K", 0.0), ("pi_misid_dllk0", "pi", 0.0),
                              ("k_eff_dllk5", "K", 5.0), ("pi_misid_dllk5", "pi", 5.0)):
        row = report.row(key)
        row.reference, row.fast = both(species, lambda k, c, cut=cut: _mean(c["PIDK"][in_range(k)] > cut))
        for which, (kin, cols) in (("reference", (samples[species][0], samples[species][0])),
                                   ("fast", samples[species])):
            report.curves.setdefault(f"{species}_PIDK_gt_{cut:g}_vs_p", {"edges": list(P_BINS[:-2])})[which] = \
                _binned_rate((cols["PIDK"] > cut).astype(float), kin["p"], P_BINS[:-2])

    def muon_acc(kin: Mapping[str, np.ndarray]) -> np.ndarray:
        theta = 2e3 * np.arctan(np.exp(-kin["eta"]))
        return (kin["p"] > 3e3) & (theta >= cfg.muon_theta_min) & (theta <= cfg.muon_theta_max)

    for key, species in (("ismuon_eff", "mu"), ("ismuon_misid_pi", "pi"), ("ismuon_misid_k", "K")):
        report.row(key).reference, report.row(key).fast = both(
            species, lambda k, c: _mean(np.asarray(c["is_muon"], bool)[muon_acc(k)]))
    for which, (kin, cols) in (("reference", (samples["mu"][0], samples["mu"][0])), ("fast", samples["mu"])):
        report.curves.setdefault("mu_IsMuon_vs_p", {"edges": list(P_BINS[:-2])})[which] = \
            _binned_rate(np.asarray(cols["is_muon"], float), kin["p"], P_BINS[:-2])

    # muon-likelihood working point: DLL(mu) cut keeping 93 % of the muons in total
    for which in ("reference", "fast"):
        mu_kin, mu_cols = samples["mu"][0], samples["mu"][0 if which == "reference" else 1]
        sel = muon_acc(mu_kin)
        ism = np.asarray(mu_cols["is_muon"], bool)[sel]
        dll = (mu_cols["MuonMuLL"] - mu_cols["MuonBkgLL"])[sel]
        if ism.mean() <= 0.93:
            cut = -np.inf
        else:  # quantile of the IsMuon muons so that IsMuon & DLL > cut keeps 93 % of all
            cut = float(np.quantile(dll[ism], 1.0 - 0.93 / ism.mean()))
        rates = []
        for sp in ("pi", "K", "p"):
            kin, cols = samples[sp][0], samples[sp][0 if which == "reference" else 1]
            s = muon_acc(kin)
            passed = np.asarray(cols["is_muon"], bool) & (cols["MuonMuLL"] - cols["MuonBkgLL"] > cut)
            rates.append(float(passed[s].mean()))
        setattr(report.row("muonll_misid_had"), which, max(rates))
    report.row("muonll_misid_had").note = "largest of pi, K, p"
    report.row("rich_p_range_min").reference = cfg.p_min_rich / _GEV
    report.row("rich_p_range_min").fast = cfg.p_min_rich / _GEV

    # diagnostics of the issue (no published number)
    def probnn(species: str, column: str, below: float = np.inf) -> tuple[float | None, float | None]:
        return both(species, lambda k, c: _mean(c[column][k["p"] < below] > 0.5))

    report.diagnostics["K: ProbNNk > 0.5"] = probnn("K", "ProbNNk")
    report.diagnostics["pi: ProbNNpi > 0.5"] = probnn("pi", "ProbNNpi")
    report.diagnostics["mu: ProbNNmu > 0.5"] = probnn("mu", "ProbNNmu")
    # kaons below 10 GeV: compared (FAST_FIGURES); below the C4F10 kaon threshold (9.33 GeV) K and p
    # give the RICH the same information, so ProbNNk sits at the K / (K + p) prior there (docs/pid.md)
    low = report.comparison("k_probnnk_low_p")
    low.reference, low.fast = both("K", lambda k, c: _mean(c["ProbNNk"][(k["p"] > 2e3) & (k["p"] < 1e4)] > 0.5))
    report.diagnostics["p, p < 10 GeV: ProbNNk > 0.5"] = probnn("p", "ProbNNk", 1e4)
    report.diagnostics["p: DLL(p-pi) > 5"] = both("p", lambda k, c: _mean(c["PIDp"][in_range(k)] > 5))
    report.diagnostics["pi -> p: DLL(p-pi) > 5"] = both("pi", lambda k, c: _mean(c["PIDp"][in_range(k)] > 5))
    report.diagnostics["pi -> e: DLL(e-pi) > 2"] = both("pi", lambda k, c: _mean(c["PIDe"][in_range(k)] > 2))
    report.diagnostics["e: ProbNNe > 0.5"] = probnn("e", "ProbNNe")

    # electron ID with the calorimeter: PIDe = RichDLLe + EcalPIDe > 2 for the J/psi electrons
    row = report.row("electron_id_calo")
    row.reference, row.fast = both("e", lambda k, c: _mean(c["PIDe"][in_range(k)] > 2))
    for sp in ("e", "pi"):
        for which, (kin, cols) in (("reference", (samples[sp][0], samples[sp][0])), ("fast", samples[sp])):
            report.curves.setdefault(f"{sp}_PIDe_gt_2_vs_p", {"edges": list(P_BINS[:-2])})[which] = \
                _binned_rate((cols["PIDe"] > 2).astype(float), kin["p"], P_BINS[:-2])


# --------------------------------------------------------------------------- driver


def _plots(report: PublishedReport, report_dir: Path) -> list[Path]:
    from sim.training.validation import _figure, _style

    paths = []
    with _style():
        for name, curve in report.curves.items():
            if "edges" in curve:
                edges = np.asarray(curve["edges"], dtype=np.float64)
                scale = _GEV if "_vs_p" in name else 1.0
                x = 0.5 * (edges[1:] + edges[:-1]) / scale
                xerr = 0.5 * np.diff(edges) / scale
            else:
                x, xerr = np.asarray(curve["inv_pt"]), None
            fig, axes = _figure(1)
            ax = axes[0]
            for which, fmt in (("reference", "o"), ("fast", "s")):
                y = np.array([np.nan if v is None else v for v in curve.get(which, [])], dtype=np.float64)
                if y.size:
                    ax.errorbar(x, y, xerr=xerr, fmt=fmt, label="Reference detector" if which == "reference"
                                else "Fast simulation")
            ax.set_xlabel("p [GeV]" if "_vs_p" in name else ("eta" if "eta" in name else
                          ("nTracks" if "ntracks" in name else "1/pT [1/GeV]")))
            if "_vs_p" in name:
                ax.set_xscale("log")
            ax.set_ylabel(name.split("_vs_")[0].replace("_", " "))
            ax.legend()
            path = report_dir / f"{name}.png"
            fig.savefig(path)
            paths.append(path)
    return paths


def validate_published(
    *,
    events: int = 200_000,
    n_pid: int = 20_000,
    n_pv: int = 4_000,
    seed: int = 2031,
    report_dir: str | Path | None = None,
    pid_models: str | Path | None = None,
    parts: tuple[str, ...] = ("tracking", "pv", "pid", "ghosts"),
    n_ghost_events: int = 40_000,
) -> PublishedReport:
    """Measure every published figure with the reference detector and the fast chain.

    Args:
        events: particles of the tracking sample (200 000: the IP_x fit's constant then
            varies by about ±0.3 µm between seeds, ±1 µm at 40 000).
        n_pid: Long tracks per PID species.
        n_pv: PVs of 25 tracks for the PV resolution (4 000: ±1.1 % statistical).
        seed: seed of every sample (the training seeds are 1 and 101-105).
        report_dir: plots, ``summary.json`` and ``summary.txt`` here (none if ``None``).
        pid_models: folder of PID models (default: the shipped ones).
        parts: measure only these groups (``tracking``, ``pv``, ``pid``, ``ghosts``).
        n_ghost_events: default-decay events of the ghost figures (40 000: about 11 000
            ghosts; the real tracks' 99 % ghost-probability quantile sits on a steep tail).

    Returns:
        :class:`PublishedReport`.

    Raises:
        ConfigError: an unknown part or a non-positive size.
        ModelError: a missing or mismatched model.
    """
    from mambah.errors import ConfigError

    unknown = sorted(set(parts) - {"tracking", "pv", "pid", "ghosts"})
    if unknown:
        raise ConfigError(f"unknown part(s) {unknown} of validate published; valid: tracking, pv, pid, ghosts")
    for name, value in (("events", events), ("n_pid", n_pid), ("n_pv", n_pv), ("n_ghost_events", n_ghost_events)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 100:
            raise ConfigError(f"validate published: {name}={value!r} must be an integer >= 100")
    report = PublishedReport([Row(f) for f in FIGURES])
    if "tracking" in parts:
        _tracking(report, int(events), seed)
    if "pv" in parts:
        _pv(report, int(n_pv), seed + 1)
    if "pid" in parts:
        _pid(report, int(n_pid), seed + 2, pid_models)
    if "ghosts" in parts:
        _ghosts(report, int(n_ghost_events), seed + 3)
    if report_dir is not None:
        out = Path(report_dir)
        out.mkdir(parents=True, exist_ok=True)
        report.plots = _plots(report, out)
        (out / "summary.json").write_text(json.dumps(report.to_dict(), indent=1))
        (out / "summary.txt").write_text("\n".join(report.lines()) + "\n")
    for line in report.lines():
        log.info("%s", line)
    return report


def _register_validator() -> None:
    from sim.core.registry import register_validator

    register_validator("published", help="reference detector and fast chain against published LHCb figures")(
        validate_published)


_register_validator()
