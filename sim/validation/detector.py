"""Validation of the fast detector models against the reference detector.

On a fresh held-out reference sample (:func:`sim.reference.sample.reference_sample_arrays`,
its own seed) the fast models are applied to the *same* generated particles, with the
same pure kernels the passes use, and compared with the reference response:

* acceptance and tracking efficiency, fast / reference, in bins of p, η and nTracks,
  with binomial uncertainties (:func:`sim.training.efficiency_ratio`); the fast
  efficiency is the model's expected efficiency (mean probability, the acceptance
  outcome summed over), so only the reference sample carries statistical noise;
* the residuals and the reconstructed observables of the resolution model on the
  reference-reconstructed tracks: KS distances (:func:`sim.training.ks_distance`);
* classifier two-sample tests (gradient-boosted trees, max_depth 5, max_leaf_nodes 14,
  :func:`sim.training.two_sample_test`): ROC AUC and KS distance of the classifier
  outputs, for (truth, track class) of acceptance + efficiency, for (conditions,
  residuals) and for the residuals alone of the resolution, for (nPV, nTracks) of the
  occupancy;
* plots (matplotlib + mplhep) into a report folder, and ``summary.json``.

:data:`THRESHOLDS` are the numbers the shipped models are tested against.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mambah.errors import ConfigError

__all__ = ("DETECTORS", "EFFICIENCY_BINS", "THRESHOLDS", "TWO_SAMPLE_THRESHOLD", "Check", "ValidationReport", "validate")

log = logging.getLogger(__name__)

DETECTORS: tuple[str, ...] = ("occupancy", "acceptance", "efficiency", "resolution")

#: Bins (MeV for p) of the efficiency comparisons.
EFFICIENCY_BINS: dict[str, list[float]] = {
    "p": [0.0, 2e3, 3e3, 5e3, 7.5e3, 1e4, 1.5e4, 2e4, 3e4, 5e4, 1e5, 3e5],
    "eta": [2.0, 2.25, 2.5, 2.75, 3.0, 3.25, 3.5, 3.75, 4.0, 4.25, 4.5, 4.75, 5.0],
    "n_tracks": [0.0, 50.0, 100.0, 150.0, 200.0, 300.0, 400.0, 600.0],
}

#: Pass criteria of the shipped models (tests use them): maximum absolute efficiency
#: difference in bins with at least ``min_bin_count`` particles, maximum two-sample AUC
#: (acceptance + efficiency, occupancy), maximum AUC of the joint (conditions,
#: residuals) test of the resolution GAN (looser: the reference IP uncertainty is an
#: exact function of pT and track type, which a GAN only approximates), and maximum KS
#: distance of single variables.  An AUC far *below* 0.5 also means the samples differ:
#: an AUC threshold ``t`` is two-sided, ``|AUC - 0.5| < t - 0.5``.  Every efficiency
#: comparison needs, for each of p, eta and nTracks, at least one bin with
#: ``min_bin_count`` particles; otherwise nothing was compared and the check fails
#: ("not enough events").
THRESHOLDS: dict[str, float] = {
    "max_efficiency_diff": 0.03,
    "min_bin_count": 2000,
    "max_auc": 0.60,
    "max_auc_resolution": 0.75,
    "max_ks": 0.06,
}

#: The :data:`THRESHOLDS` key of each two-sample test (docs/detector.md): the residuals-only
#: test of the resolution is held to the joint test's threshold (both see ``log10_sigma_ip``).
TWO_SAMPLE_THRESHOLD: dict[str, str] = {
    "acceptance+efficiency": "max_auc",
    "occupancy": "max_auc",
    "resolution": "max_auc_resolution",
    "resolution residuals": "max_auc_resolution",
}


@dataclass(frozen=True)
class Check:
    """One pass/fail criterion of a validation.

    Attributes:
        name: what was tested, e.g. ``"tracking efficiency"``, ``"two-sample test occupancy"``.
        value: the measured figure (|fast - ref|, |AUC - 0.5| or a KS distance; NaN when nothing was measured).
        limit: the threshold ``value`` must stay below.
        passed: whether it did (never when nothing was measured).
        line: one human-readable line with the result.
    """

    name: str
    value: float
    limit: float
    passed: bool
    line: str



@dataclass
class ValidationReport:
    """What :func:`validate` measured.

    Attributes:
        n_events: events of the held-out sample.
        efficiencies: name (``"acceptance"``, ``"tracking"``, ``"long"``) → variable →
            :class:`sim.training.BinnedEfficiency`.
        bin_counts: name → variable → reference entries per bin.
        ks: variable → KS distance fast vs reference.
        two_sample: test name → ``{"auc": ..., "ks": ...}``.
        plots: written PNG files.
    """

    n_events: int
    efficiencies: dict[str, dict[str, Any]] = field(default_factory=dict)
    bin_counts: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    ks: dict[str, float] = field(default_factory=dict)
    two_sample: dict[str, dict[str, float]] = field(default_factory=dict)
    plots: list[Path] = field(default_factory=list)

    def max_efficiency_diff(self, name: str, min_count: int = int(THRESHOLDS["min_bin_count"])) -> float:
        """Largest |fast − ref| efficiency of ``name`` over variables and bins with ≥ ``min_count`` entries.

        NaN when some variable (p, eta, nTracks) has no such bin: then that variable was not compared.
        """
        worst = 0.0
        for var, eff in self.efficiencies[name].items():
            ok = (self.bin_counts[name][var] >= min_count) & np.isfinite(eff.fast) & np.isfinite(eff.ref)
            if not ok.any():
                return float("nan")
            worst = max(worst, float(np.max(np.abs(eff.fast[ok] - eff.ref[ok]))))
        return worst

    def events_needed(self, name: str, min_count: int = int(THRESHOLDS["min_bin_count"])) -> int:
        """Events for which every variable of ``name`` would have a bin of ``min_count`` particles (0: enough now).

        Scaled from the fullest bin of the worst variable: ``n_events * min_count / fullest``.
        """
        fullest = min(int(np.max(counts)) if counts.size else 0 for counts in self.bin_counts[name].values())
        if fullest >= min_count:
            return 0
        return int(np.ceil(self.n_events * min_count / max(fullest, 1)))

    def checks(self) -> list[Check]:
        """Every criterion of :data:`THRESHOLDS` that this report measured, with its own threshold."""
        out: list[Check] = []
        min_count = int(THRESHOLDS["min_bin_count"])
        limit = THRESHOLDS["max_efficiency_diff"]
        for name in self.efficiencies:
            diff = self.max_efficiency_diff(name, min_count)
            if np.isnan(diff):
                need = self.events_needed(name, min_count)
                out.append(Check(f"{name} efficiency", diff, limit, False,
                                 f"{name} efficiency: not enough events: need >= {need:,} "
                                 f"(a bin of >= {min_count} particles in each of p, eta, nTracks; {self.n_events:,} given)"))
            else:
                ok = diff < limit
                out.append(Check(f"{name} efficiency", diff, limit, ok,
                                 f"{name} efficiency: max |fast - ref| = {diff:.4f} (bins with >= {min_count} particles; "
                                 f"limit {limit:g}): {'ok' if ok else 'FAIL'}"))
        for name, res in self.two_sample.items():
            t = THRESHOLDS[TWO_SAMPLE_THRESHOLD.get(name, "max_auc")] - 0.5
            dev = abs(res["auc"] - 0.5)
            ok = dev < t
            out.append(Check(f"two-sample test {name}", dev, t, ok,
                             f"two-sample test {name}: AUC {res['auc']:.4f} (|AUC - 0.5| = {dev:.4f}, limit {t:.2f}), "
                             f"KS {res['ks']:.4f}: {'ok' if ok else 'FAIL'}"))
        for name, value in self.ks.items():
            ok = value < THRESHOLDS["max_ks"]
            out.append(Check(f"KS {name}", value, THRESHOLDS["max_ks"], ok,
                             f"KS {name}: {value:.4f} (limit {THRESHOLDS['max_ks']:g}): {'ok' if ok else 'FAIL'}"))
        return out

    def failed(self) -> list[Check]:
        """The checks that did not pass."""
        return [c for c in self.checks() if not c.passed]

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly summary."""
        effs = {
            name: {
                var: {
                    "edges": e.edges.tolist(), "ref": _nan_list(e.ref), "ref_err": _nan_list(e.ref_err),
                    "fast": _nan_list(e.fast), "fast_err": _nan_list(e.fast_err), "ratio": _nan_list(e.ratio),
                    "ratio_err": _nan_list(e.ratio_err), "count": self.bin_counts[name][var].tolist(),
                }
                for var, e in per.items()
            }
            for name, per in self.efficiencies.items()
        }
        return {
            "n_events": self.n_events,
            "max_efficiency_diff": {name: _none_if_nan(self.max_efficiency_diff(name)) for name in self.efficiencies},
            "ks": self.ks,
            "two_sample": self.two_sample,
            "efficiencies": effs,
            "thresholds": THRESHOLDS,
            "checks": [{"name": c.name, "value": _none_if_nan(c.value), "limit": c.limit, "passed": c.passed}
                       for c in self.checks()],
        }

    def summary_lines(self) -> list[str]:
        """Human-readable one-line results."""
        return [f"held-out reference sample: {self.n_events} events", *(c.line for c in self.checks())]


def _none_if_nan(v: float) -> float | None:
    return None if not np.isfinite(v) else float(v)


def _nan_list(a: np.ndarray) -> list[float | None]:
    return [None if not np.isfinite(v) else float(v) for v in np.asarray(a, dtype=np.float64)]


def _expected_ratio(ref_pass: np.ndarray, p_fast: np.ndarray, values: Mapping[str, np.ndarray]) -> dict[str, Any]:
    """Binned efficiencies: reference pass flags vs the fast model's expected efficiency.

    Each particle enters the fast sample twice, passing with weight ``p`` and failing
    with weight ``1 - p``, so the fast efficiency carries no sampling noise.
    """
    from sim.training.validation import efficiency_ratio

    n = p_fast.size
    fast_pass = np.r_[np.ones(n, bool), np.zeros(n, bool)]
    fast_w = np.r_[p_fast, 1.0 - p_fast]
    fast_values = {k: np.r_[v, v] for k, v in values.items()}
    return efficiency_ratio(ref_pass, None, fast_pass, fast_w, EFFICIENCY_BINS, values, fast_values)


def _allowed(proba: np.ndarray, in_acceptance: np.ndarray, forward: np.ndarray) -> np.ndarray:
    """Class probabilities after the geometric constraints of :func:`sim.detector.efficiency.draw_track_type`."""
    p = np.clip(np.asarray(proba, dtype=np.float64), 0.0, 1.0).copy()
    p[in_acceptance, 2] = 0.0
    p[~in_acceptance, 1] = 0.0
    p[~in_acceptance, 3] = 0.0
    p[~forward, 1:] = 0.0
    total = p[:, 1:].sum(axis=1)
    over = total > 1.0
    p[over, 1:] /= total[over, None]
    p[:, 0] = 1.0 - p[:, 1:].sum(axis=1)
    return p


def _counts(values: np.ndarray, edges: Sequence[float]) -> np.ndarray:
    return np.histogram(values, bins=np.asarray(edges))[0]


def validate(
    detectors: str | Sequence[str] = DETECTORS,
    *,
    events: int = 20_000,
    seed: int = 2024,
    report_dir: str | Path | None = None,
    models: Mapping[str, str] | None = None,
    data: Mapping[str, np.ndarray] | None = None,
    max_tracks: int | None = 50_000,
) -> ValidationReport:
    """Compare the fast detector models with the reference on a fresh sample.

    Args:
        detectors: ``"all"``, one of :data:`DETECTORS` or a sequence of them.
        events: events of the held-out sample.
        seed: seed of the sample and of the fast draws (use one the training never saw;
            the shipped models were trained on seed 1).
        report_dir: folder for plots and ``summary.json`` (none written if ``None``).
        models: detector → ``.keras`` file, overriding the shipped models.
        data: a ready sample (:func:`~sim.reference.sample.reference_sample_arrays` form)
            instead of generating one.
        max_tracks: compare the resolution on at most this many reconstructed tracks
            (the first ones; the GBDT two-sample test is the slow part), ``None`` for all.

    Returns:
        :class:`ValidationReport`.

    Raises:
        ConfigError: unknown detector name.
        ModelError: missing or mismatched model.
    """
    from sim.core.modelio import feature_matrix, load_pass_model
    from sim.detector.acceptance import Acceptance, draw_acceptance
    from sim.detector.efficiency import EFFICIENCY_CLASSES, Efficiency, draw_track_type
    from sim.detector.features import add_derived
    from sim.detector.occupancy import OCCUPANCY_TARGETS, samples_to_counts
    from sim.detector.resolution import RESOLUTION_CONDITIONS, RESOLUTION_TARGETS, apply_residuals, pass_residuals
    from sim.reference.sample import reference_sample_arrays
    from sim.training.validation import ks_distance, two_sample_test

    if isinstance(detectors, str):
        detectors = DETECTORS if detectors == "all" else (detectors,)
    unknown = sorted(set(detectors) - set(DETECTORS))
    if unknown:
        raise ConfigError(f"unknown detector(s) {unknown}; choose from {list(DETECTORS)} or 'all'")
    models = dict(models or {})
    wanted = set(detectors)
    # the efficiency needs the fast acceptance flags as input
    loaded = {}
    acc_cfg, eff_cfg = Acceptance(), Efficiency()
    if wanted & {"acceptance", "efficiency"}:
        loaded["acceptance"] = load_pass_model(models.get("acceptance"), "acceptance", kind="classifier",
                                               inputs=acc_cfg.inputs, pass_name="acceptance")
    if "efficiency" in wanted:
        loaded["efficiency"] = load_pass_model(models.get("efficiency"), "efficiency", kind="classifier",
                                               inputs=eff_cfg.inputs, outputs=EFFICIENCY_CLASSES,
                                               pass_name="efficiency")
    if "resolution" in wanted:
        loaded["resolution"] = load_pass_model(models.get("resolution"), "resolution", kind="generator",
                                               inputs=RESOLUTION_CONDITIONS, outputs=RESOLUTION_TARGETS,
                                               pass_name="resolution")
    if "occupancy" in wanted:
        loaded["occupancy"] = load_pass_model(models.get("occupancy"), "occupancy", kind="generator", inputs=(),
                                              outputs=OCCUPANCY_TARGETS, pass_name="occupancy")

    d = dict(data) if data is not None else reference_sample_arrays(events, seed)
    n_events = int(np.unique(d["event"]).size) if data is not None else int(events)
    report = ValidationReport(n_events)
    rng = np.random.default_rng(seed + 1)
    fwd = np.asarray(d["forward"], dtype=bool)
    f = {k: np.asarray(v)[fwd] for k, v in d.items()}
    values = {"p": f["p"], "eta": f["eta"], "n_tracks": f["n_tracks"]}
    ref_acc = np.asarray(f["in_acceptance"], dtype=bool)

    acc_fast = None
    if "acceptance" in loaded:
        proba = loaded["acceptance"].predict_proba(feature_matrix(f, acc_cfg.inputs, "validate acceptance"))
        acc_fast = draw_acceptance(proba, np.ones(proba.size, bool), rng)
        p_acc = proba
    if "acceptance" in wanted and acc_fast is not None:
        report.efficiencies["acceptance"] = _expected_ratio(ref_acc, proba, values)
        report.bin_counts["acceptance"] = {v: _counts(values[v], e) for v, e in EFFICIENCY_BINS.items()}
    if "efficiency" in wanted and acc_fast is not None:
        feats = {**f, "in_acceptance": acc_fast.astype(np.float64)}
        proba = loaded["efficiency"].predict_proba(feature_matrix(feats, eff_cfg.inputs, "validate efficiency"))
        tt_fast = draw_track_type(proba, acc_fast, np.ones(acc_fast.size, bool), rng)
        tt_ref = np.asarray(f["track_type"])
        # expected fast efficiencies (no draw noise): sum over the acceptance outcome
        ones = np.ones(p_acc.size, bool)
        expected = np.zeros((p_acc.size, 4))
        for flag, w in ((True, p_acc), (False, 1.0 - p_acc)):
            fe = {**f, "in_acceptance": np.full(p_acc.size, float(flag))}
            pr = loaded["efficiency"].predict_proba(feature_matrix(fe, eff_cfg.inputs, "validate efficiency"))
            expected += w[:, None] * _allowed(pr, np.full(p_acc.size, flag), ones)
        for name, ref_pass, p_fast in (("tracking", tt_ref > 0, expected[:, 1:].sum(axis=1)),
                                       ("long", tt_ref == 3, expected[:, 1])):
            report.efficiencies[name] = _expected_ratio(ref_pass, p_fast, values)
            report.bin_counts[name] = {v: _counts(values[v], e) for v, e in EFFICIENCY_BINS.items()}
        cols = ("log10_p", "eta", "phi", "charge", "origin_rho", "n_tracks")
        truth_x = np.column_stack([f[c] for c in cols])
        report.two_sample["acceptance+efficiency"] = two_sample_test(
            np.column_stack([truth_x, np.searchsorted([0, 3, 4, 5], tt_ref)]),
            np.column_stack([truth_x, np.searchsorted([0, 3, 4, 5], tt_fast)]), seed=seed)
    if "resolution" in wanted:
        rec = np.asarray(d["reconstructed"], dtype=bool)
        if max_tracks is not None:
            rec &= np.cumsum(rec) <= int(max_tracks)
        r = add_derived({k: np.asarray(v)[rec] for k, v in d.items()})
        cond = feature_matrix(r, RESOLUTION_CONDITIONS, "validate resolution")
        # what the pass produces: states drawn from the shared covariance model, chi2/ndf and ghost prob from the GAN
        fast_res = pass_residuals(r, r, r["track_type"], loaded["resolution"].sample(cond, rng), rng)
        ref_res = np.column_stack([r[t] for t in RESOLUTION_TARGETS])
        fast_obs = apply_residuals(r, r, r["track_type"], fast_res)
        obs = {"ip": (r["ip"], fast_obs["ip"]), "ip_chi2": (r["ip_chi2"], fast_obs["ip_chi2"]),
               "z": (r["z"], fast_obs["z"])}
        for j, name in enumerate(RESOLUTION_TARGETS):
            report.ks[name] = ks_distance(ref_res[:, j], fast_res[:, j])
        for name, (a, b) in obs.items():
            report.ks[name] = ks_distance(a, b)
        report.two_sample["resolution"] = two_sample_test(ref_res, fast_res, conditions_ref=cond,
                                                          conditions_gen=cond, seed=seed)
        report.two_sample["resolution residuals"] = two_sample_test(ref_res, fast_res, seed=seed)
        if report_dir is not None:
            from sim.training.validation import plot_histograms

            report.plots += plot_histograms(ref_res, fast_res, list(RESOLUTION_TARGETS), report_dir, prefix="res_")
            def shown(k: str, v: np.ndarray) -> np.ndarray:  # ip, ip_chi2 on a log scale; z (mm) as is
                return v if k == "z" else np.log10(np.maximum(v, 1e-6))

            report.plots += plot_histograms(np.column_stack([shown(k, o[0]) for k, o in obs.items()]),
                                            np.column_stack([shown(k, o[1]) for k, o in obs.items()]),
                                            [k if k == "z" else f"log10_{k}" for k in obs], report_dir, prefix="obs_")
    if "occupancy" in wanted:
        _, first = np.unique(np.asarray(d["event"]), return_index=True)
        ref_occ = np.column_stack([np.asarray(d["n_pv"])[first], np.asarray(d["n_tracks"])[first]]).astype(np.float64)
        n_pv, n_tracks = samples_to_counts(loaded["occupancy"].sample(np.zeros((first.size, 0)), rng))
        fast_occ = np.column_stack([n_pv, n_tracks]).astype(np.float64)
        report.ks["n_pv"] = ks_distance(ref_occ[:, 0], fast_occ[:, 0])
        report.ks["n_tracks"] = ks_distance(ref_occ[:, 1], fast_occ[:, 1])
        report.two_sample["occupancy"] = two_sample_test(ref_occ, fast_occ, seed=seed)
        if report_dir is not None:
            from sim.training.validation import plot_histograms

            report.plots += plot_histograms(ref_occ, fast_occ, ["n_pv", "n_tracks"], report_dir, prefix="occ_")
    if report_dir is not None:
        from sim.training.validation import plot_efficiency

        for name, effs in report.efficiencies.items():
            report.plots += plot_efficiency(effs, report_dir, prefix=f"eff_{name}_")
        out = Path(report_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / "summary.json").write_text(json.dumps(report.to_dict(), indent=1))
        (out / "summary.txt").write_text("\n".join(report.summary_lines()) + "\n")
    for line in report.summary_lines():
        log.info("%s", line)
    return report


def _register_validators() -> None:
    import functools

    from sim.core.registry import register_validator

    register_validator("all", help="every detector model (occupancy, acceptance, efficiency, resolution)")(
        functools.partial(validate, "all"))
    for kind in DETECTORS:
        register_validator(kind, help=f"the {kind} model against the reference detector")(functools.partial(validate, kind))


_register_validators()
