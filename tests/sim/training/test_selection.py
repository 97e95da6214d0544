"""Selection model: ROC AUC and retention curve against analytic answers; the shipped model on an independent sample."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mambah.errors import ConfigError, DataError
from mambah.store import EventStore
from sim.training.recipes.selection import LONG_AND_KAON_PID, bias_report, event_labels, retention_curve, roc_auc

SHIPPED = "sim/models/selection.keras"
#: Margin on the retention measured on an independent sample: ~3 sigma of the binomial
#: spread of the threshold (about 1900 passes in the sidecar's validation set) and of the
#: retention measured on ~1900 passes here: 3 * sqrt(2 * 0.01 * 0.99 / 1900) = 0.0097.
RETENTION_MARGIN = 0.01
#: KS distance (passing events kept by the preselection at 99 % retention vs all passing
#: events, full simulation, 8000 events, seed 777): measured 0.0020 (head pT), 0.0070 (head η),
#: 0.0031 (daughters' p) with the model retrained with its reweighting pair (0.0020, 0.0047, 0.0034
#: before), held below 0.01.  Dropping a fraction f of the passes can move D by
#: at most f / (1 - f) = 0.012 here, so 0.01 fails when the dropped passes pile up at one end.
KS_LIMITS = {"head_pt": 0.01, "head_eta": 0.01, "daughter_p": 0.01}


def test_roc_auc_of_two_gaussians_matches_phi_of_d_over_sqrt2() -> None:
    rng = np.random.default_rng(1)
    n, d = 20_000, 1.0
    score = np.concatenate([rng.normal(d, 1.0, n), rng.normal(0.0, 1.0, n)])
    label = np.concatenate([np.ones(n, bool), np.zeros(n, bool)])
    expected = 0.5 * (1.0 + math.erf(d / 2.0))  # Φ(d / √2)
    assert roc_auc(score, label) == pytest.approx(expected, abs=0.006)
    assert roc_auc(label.astype(float), label) == 1.0
    with pytest.raises(DataError, match="both classes"):
        roc_auc(score, np.ones(score.size, bool))


def test_retention_curve_on_uniform_scores() -> None:
    # passes ~ U(0, 1), failures ~ U(0, 0.5): threshold of retention r is 1 - r;
    # skipped = (n_pass (1 - r) + n_fail min(1, 2 (1 - r))) / n; purity = fail share of the skipped
    rng = np.random.default_rng(2)
    n = 200_000
    score = np.concatenate([rng.random(n), 0.5 * rng.random(n)])
    label = np.concatenate([np.ones(n, bool), np.zeros(n, bool)])
    for row in retention_curve(score, label, targets=(0.6, 0.9, 0.99)):
        r = row["retention"]
        assert row["threshold"] == pytest.approx(1.0 - r, abs=0.005)
        assert row["achieved"] >= r
        skip_pass, skip_fail = 1.0 - r, min(1.0, 2.0 * (1.0 - r))
        assert row["skipped"] == pytest.approx((skip_pass + skip_fail) / 2.0, abs=0.005)
        assert row["purity"] == pytest.approx(skip_fail / (skip_pass + skip_fail), abs=0.01)


def test_selection_must_return_batch_and_event() -> None:
    store = EventStore.memory()
    with pytest.raises(ConfigError, match="batch, event"):
        event_labels(store, "SELECT batch FROM events")
    with pytest.raises(ConfigError, match="selection SQL fails"):
        event_labels(store, "SELECT batch, event FROM no_such_table")


def test_shipped_model_keeps_the_retention_on_an_independent_sample() -> None:
    """Everything simulated (threshold 0 records the scores), labelled by the known-answer selection."""
    from sim.defaults import default_pipeline
    from sim.generation.preselect import load_selection_model, threshold_for, with_preselect
    from sim.training.recipes.selection import simulate_sample

    _, record = load_selection_model(SHIPPED)
    assert record["sql"] == " ".join(LONG_AND_KAON_PID.split())
    pipeline = with_preselect(default_pipeline(events=8000, batch_size=4000, seed=777), SHIPPED, threshold=0.0)
    store = simulate_sample(pipeline)
    tab = store.query("SELECT batch, event, simulated, preselect_score FROM events ORDER BY batch, event")
    assert all(tab.column("simulated").to_pylist())
    keys, passed = event_labels(store, LONG_AND_KAON_PID)
    assert np.array_equal(keys, tab.column("batch").to_numpy() * 2**24 + tab.column("event").to_numpy())
    score = tab.column("preselect_score").to_numpy()
    assert 0.15 < passed.mean() < 0.35 and passed.sum() > 1500
    assert roc_auc(score, passed) > 0.9  # held-out AUC in the sidecar: see record["auc"]
    for target in (0.95, 0.99):
        thr = threshold_for(record["curve"], target)
        kept = score >= thr
        retention = kept[passed].mean()
        skipped = 1.0 - kept.mean()
        purity = (~passed[~kept]).mean()
        print(f"retention target {target}: kept {retention:.4f} of true passes, skipped {skipped:.3f}, purity {purity:.4f}")
        assert retention >= target - RETENTION_MARGIN
        assert skipped > 0.3  # the sidecar says ~0.5 at 0.99
        # skipped events really are failures: purity = 1 - (1 - retention) n_pass / n_skipped, about
        # 0.98 at 0.95 and 0.996 at 0.99 for this model (pass fraction 0.24, skipped 0.65 / 0.57)
        assert purity > {0.95: 0.97, 0.99: 0.99}[target]
    bias = bias_report(store, LONG_AND_KAON_PID, keys, score, threshold_for(record["curve"], 0.99))
    print("bias at 0.99:", bias)
    assert bias["n_kept"] >= (1 - RETENTION_MARGIN - 0.01) * bias["n_pass"]
    for name, limit in KS_LIMITS.items():
        assert bias["ks"][name] < limit, name
    # sampling mode (keep with q = min(1, score / threshold), weight 1 / q): the weighted passes
    # estimate all passes without bias; sigma^2 = sum over passes of (1 - q) / q
    from sim.generation.preselect import sample_keep

    thr = threshold_for(record["curve"], 0.99)
    keep, weight = sample_keep(score, thr, np.random.default_rng(12))
    q = np.clip(score[passed] / thr, 1e-300, 1.0)
    sigma = float(np.sqrt(((1.0 - q) / q).sum()))
    estimate = float(weight[passed].sum())
    print(f"sampling mode: skipped {1 - keep.mean():.3f}, weighted passes {estimate:.1f} +- {sigma:.1f} vs {passed.sum()}")
    assert abs(estimate - passed.sum()) < 4.0 * sigma
    assert sigma < 0.05 * passed.sum() and 1 - keep.mean() > 0.3


def test_tighter_selection_is_a_subset() -> None:
    from sim.defaults import default_pipeline
    from sim.training.recipes.selection import long_and_kaon_pid, simulate_sample

    store = simulate_sample(default_pipeline(events=600, batch_size=600, seed=3))
    _, loose = event_labels(store, long_and_kaon_pid())
    _, tight = event_labels(store, long_and_kaon_pid(600.0))
    assert tight.sum() > 10 and loose.sum() > 2 * tight.sum()  # ~7.5 % vs ~24 %
    assert not (tight & ~loose).any()
    pt = store.query(f"""
        SELECT min(sqrt(t.px * t.px + t.py * t.py)) AS pt FROM protoparticles AS t
        JOIN mc_particles AS p ON p.batch = t.batch AND p.event = t.event AND p."index" = t.mc_particle
        JOIN ({long_and_kaon_pid(600.0)}) AS s ON s.batch = t.batch AND s.event = t.event
        WHERE p.is_signal AND t.track_type = 3""").to_pylist()[0]["pt"]
    assert pt > 600.0
    with pytest.raises(ConfigError, match="min_pt"):
        long_and_kaon_pid(-1.0)
