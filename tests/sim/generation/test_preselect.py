"""The preselect pass: sequence features, threshold choice, config, skipping, mismatched models."""

from __future__ import annotations

import numpy as np
import pytest

from mambah.errors import ConfigError, DataError, ModelError
from sim.core.pipeline import Pipeline
from sim.defaults import default_pipeline
from sim.generation.preselect import (
    SEQUENCE_FEATURES,
    Preselect,
    event_sequences,
    flat_input_names,
    pipeline_digest,
    threshold_for,
    with_preselect,
)

SHIPPED = "sim/models/selection.keras"


def _parts() -> dict[str, np.ndarray]:
    # two events: (batch 0, event 0) with 3 particles, (batch 0, event 1) with 1 (pid unknown to the vocabulary)
    return {
        "batch": np.array([0, 0, 0, 0]), "event": np.array([0, 0, 0, 1]),
        "pid": np.array([5122, 13, -14, 999]), "mother_pid": np.array([0, 5122, 5122, 0]),
        "px": np.array([0.0, 3.0, 0.0, 1.0]), "py": np.array([0.0, 4.0, 1.0, 0.0]),
        "pz": np.array([100.0, 0.0, 0.0, 0.0]),
        "origin_dx": np.zeros(4), "origin_dy": np.zeros(4), "origin_dz": np.array([0.0, 7.0, 7.0, 0.0]),
    }


def test_event_sequences_slots_tokens_and_kinematics() -> None:
    keys, x = event_sequences(_parts(), vocabulary=[13, -14, 5122], max_particles=4)
    assert keys.tolist() == [0, 1]
    seq = x.reshape(2, 4, len(SEQUENCE_FEATURES))
    col = {name: j for j, name in enumerate(SEQUENCE_FEATURES)}
    # sorted vocabulary (-14, 13, 5122) -> tokens 2, 3, 4; unknown -> 1; padding -> 0
    assert seq[0, :, col["token"]].tolist() == [4, 3, 2, 0]
    assert seq[0, :, col["mother_token"]].tolist() == [0, 4, 4, 0]
    assert seq[1, :, col["token"]].tolist() == [1, 0, 0, 0]
    assert seq[0, 1, col["log10_p"]] == pytest.approx(np.log10(5.0))
    assert seq[0, 1, col["phi"]] == pytest.approx(np.arctan2(4.0, 3.0))
    assert seq[0, 0, col["eta"]] == pytest.approx(10.0)  # along the beam: η clipped at 10
    assert seq[0, 1, col["eta"]] == pytest.approx(0.0, abs=1e-6)
    assert seq[0, 2, col["origin_dz"]] == 7.0
    assert len(flat_input_names(4)) == x.shape[1]


def test_event_sequences_too_many_particles_is_an_error() -> None:
    with pytest.raises(DataError, match="at most 2"):
        event_sequences(_parts(), vocabulary=[13], max_particles=2)


def test_threshold_for_is_conservative_and_refuses_beyond_the_curve() -> None:
    curve = [{"retention": 0.9, "threshold": 0.3}, {"retention": 0.99, "threshold": 0.05}]
    assert threshold_for(curve, 0.99) == 0.05
    assert threshold_for(curve, 0.95) == 0.05  # the next tabulated retention above
    assert threshold_for(curve, 0.8) == 0.3
    with pytest.raises(ConfigError, match="above the model's validation curve"):
        threshold_for(curve, 0.9999)


def test_config_errors_and_round_trip() -> None:
    with pytest.raises(ConfigError, match="exactly one of retention"):
        Preselect(model="m.keras", decay="d", pipeline="p")
    with pytest.raises(ConfigError, match="with_preselect"):
        Preselect(model="m.keras", retention=0.99)
    with pytest.raises(ConfigError, match=r"must be in \(0, 1\]"):
        Preselect(model="m.keras", retention=1.5, decay="d", pipeline="p")
    base = default_pipeline(events=10, batch_size=10)
    pl = with_preselect(base, SHIPPED, retention=0.99)
    assert [p.kind for p in pl.passes][:2] == ["generator", "preselect"]
    assert pipeline_digest(pl) == pipeline_digest(base)
    back = Pipeline.from_toml(pl.to_toml())
    assert back.passes[1] == pl.passes[1]
    with pytest.raises(ConfigError, match="already has a preselect"):
        with_preselect(pl, SHIPPED, threshold=0.5)


def test_model_of_another_decay_or_pipeline_is_refused() -> None:
    other = default_pipeline(events=10, batch_size=10).replace("generator", decay="B0 -> K+ pi-")
    with pytest.raises(ModelError) as err:
        with_preselect(other, SHIPPED, retention=0.99).passes[1].build()
    msg = str(err.value)
    assert "\n" not in msg and "Lambda_b0" in msg and "B0 -> K+ pi-" in msg
    wider = default_pipeline(events=10, batch_size=10).replace("acceptance", eta_max=6.0)
    with pytest.raises(ModelError, match="pipeline"):
        with_preselect(wider, SHIPPED, retention=0.99).passes[1].build()


def test_skipped_events_get_no_detector_output() -> None:
    from sim.training.recipes.selection import simulate_sample

    store = simulate_sample(with_preselect(default_pipeline(events=1000, batch_size=500, seed=5), SHIPPED, retention=0.99))
    rows = store.query("SELECT simulated, count(*) AS n FROM events GROUP BY simulated").to_pylist()
    counts = {r["simulated"]: r["n"] for r in rows}
    assert counts.get(False, 0) > 200 and counts.get(True, 0) > 200  # ~half skipped at 99 % retention
    for table in ("protoparticles", "vertices", "calo_clusters"):
        n = store.query(f"SELECT count(*) AS n FROM {table} JOIN events AS e USING (batch, event) WHERE NOT e.simulated")
        assert n.to_pylist()[0]["n"] == 0, table
    n_tracks = store.query("SELECT count(*) AS n FROM protoparticles").to_pylist()[0]["n"]
    assert n_tracks > 1000
    nulls = store.query("SELECT count(*) AS n FROM events WHERE NOT simulated AND n_tracks IS NOT NULL").to_pylist()[0]["n"]
    assert nulls == 0


def test_sample_keep_probabilities_and_weights() -> None:
    from sim.generation.preselect import sample_keep

    score = np.repeat([0.0, 0.01, 0.05, 0.5], 50_000)
    keep, weight = sample_keep(score, 0.1, np.random.default_rng(3))
    for s, q in ((0.0, 0.0), (0.01, 0.1), (0.05, 0.5), (0.5, 1.0)):
        rows = score == s
        assert keep[rows].mean() == pytest.approx(q, abs=4 * np.sqrt(q * (1 - q) / rows.sum()) + 1e-12)
        if q > 0:
            assert np.allclose(weight[rows & keep], 1.0 / q)
            assert weight[rows].sum() == pytest.approx(rows.sum(), rel=0.05)
    assert (weight[~keep] == 0).all()


def test_sampling_mode_writes_weights() -> None:
    from sim.training.recipes.selection import simulate_sample

    pl = with_preselect(default_pipeline(events=600, batch_size=600, seed=6), SHIPPED, retention=0.99, mode="sample")
    assert Pipeline.from_toml(pl.to_toml()).passes[1] == pl.passes[1]
    store = simulate_sample(pl)
    rows = store.query("SELECT simulated, weight, preselect_score FROM events").to_pylist()
    kept = [r for r in rows if r["simulated"]]
    assert 100 < len(kept) < 550
    assert all(r["weight"] >= 1.0 for r in kept) and all(r["weight"] == 0.0 for r in rows if not r["simulated"])
    with pytest.raises(ConfigError, match="mode="):
        Preselect(model="m.keras", retention=0.99, decay="d", pipeline="p", mode="cut")


def test_signal_kinematics_head_and_daughter_slots() -> None:
    from sim.generation.preselect import signal_input_names, signal_kinematics

    # event 0: head (pT 5, pz 0) + two daughters; event 1: head only; event 2: daughters without a head (dropped)
    parts = {
        "batch": np.array([0, 0, 0, 0, 0]), "event": np.array([0, 0, 0, 1, 2]),
        "is_head": np.array([True, False, False, True, False]),
        "px": np.array([3.0, 0.0, 0.0, 1.0, 1.0]), "py": np.array([4.0, 0.0, 10.0, 0.0, 0.0]),
        "pz": np.array([0.0, 100.0, 0.0, 1.0, 1.0]),
    }
    keys, x = signal_kinematics(parts, n_daughters=3)
    assert keys.tolist() == [0, 1]
    assert x.shape == (2, len(signal_input_names(3))) == (2, 8)
    assert x[0, 0] == pytest.approx(np.log10(5.0)) and x[0, 1] == pytest.approx(0.0, abs=1e-6)
    assert x[0, 2] == pytest.approx(2.0) and x[0, 3] == pytest.approx(10.0)  # along the beam: η clipped
    assert x[0, 4] == pytest.approx(1.0) and x[0, 5] == pytest.approx(0.0, abs=1e-6)
    assert (x[0, 6:] == 0).all() and (x[1, 2:] == 0).all()
    assert x[1, 1] == pytest.approx(np.arcsinh(1.0), rel=1e-5)  # η = asinh(pz / pT)
    with pytest.raises(DataError, match="at most 1"):
        signal_kinematics(parts, n_daughters=1)


def test_keep_weights_floor_and_skipped() -> None:
    from sim.generation.preselect import keep_weights

    w = keep_weights(np.array([1.0, 0.5, 0.01, 0.5]), np.array([True, True, True, False]), min_keep=0.05)
    assert w.tolist() == [1.0, 2.0, 20.0, 0.0]


def test_weights_config_and_resolution(tmp_path) -> None:
    import json
    import shutil

    from sim.generation.preselect import load_selection_model

    with pytest.raises(ConfigError, match="already weights"):
        Preselect(model="m.keras", retention=0.99, decay="d", pipeline="p", mode="sample", weights="w.keras")
    base = default_pipeline(events=10, batch_size=10)
    _, record = load_selection_model(SHIPPED)
    pl = with_preselect(base, SHIPPED, retention=0.99, weights=True)
    pre = pl.passes[1]
    assert pre.weights.endswith(record["weights_model"])  # type: ignore[attr-defined]  # next to the model
    assert Pipeline.from_toml(pl.to_toml()).passes[1] == pre
    # the weights correct one threshold: another one is refused in one line naming both
    with pytest.raises(ModelError) as err:
        with_preselect(base, SHIPPED, threshold=0.5, weights=True).passes[1].build()
    assert "\n" not in str(err.value) and "--retention 0.99" in str(err.value)
    # a selection model that names no reweighting model
    for suffix in (".keras", ".json"):
        shutil.copy(SHIPPED.replace(".keras", suffix), tmp_path / f"sel{suffix}")
    side = json.loads((tmp_path / "sel.json").read_text())
    del side["provenance"]["selection"]["weights_model"]
    (tmp_path / "sel.json").write_text(json.dumps(side))
    with pytest.raises(ModelError, match="names no reweighting model"):
        with_preselect(base, str(tmp_path / "sel.keras"), retention=0.99, weights=True)
    # a selection model given as the reweighting model
    with pytest.raises(ModelError, match="not a preselection reweighting model"):
        with_preselect(base, SHIPPED, retention=0.99, weights=SHIPPED).passes[1].build()


def test_signal_particle_set() -> None:
    from mambah.store import EventStore
    from sim.generation.preselect import particles_sql

    store = EventStore.memory()  # empty, with every table: the query is valid SQL
    assert "p.is_signal" in particles_sql(particles="signal") and "is_signal" not in particles_sql()
    assert store.query(particles_sql(particles="signal")).num_rows == 0
    with pytest.raises(ConfigError, match="particles='some'"):
        particles_sql(particles="some")
