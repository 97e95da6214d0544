"""Selection model of the ``preselect`` pass: labels from the user's selection, the network, its validation.

1. **Labels.**  :func:`simulate_sample` runs the full chain on a training sample;
   :func:`event_labels` labels every event by whether it is returned by the
   selection, a DuckDB query over the store that yields the ``batch, event`` of the
   passing events (any SQL over the reconstructed tables: ``protoparticles``,
   ``vertices``, ``tracks``, ...).  :data:`LONG_AND_KAON_PID` is the known-answer
   selection "every charged final-state signal particle has a Long track and every
   kaon PIDK > 5" (the default decay's four tracks p, K−, π+, μ−).  A Ficino cut
   (``K_PIDK > 5 AND ...``) labels the same way through ``ficino`` (which ``sim``
   does not import): write the passing ``batch, event`` and select them.
2. **Network** (:func:`build_network`): the generator-level event as a sequence of
   particles (:data:`sim.generation.preselect.SEQUENCE_FEATURES`): PDG-id and
   mother-PDG-id embeddings, standardised kinematics, Conv1D with kernel widths
   (1, 2, 3), global average pooling, a dense layer and a sigmoid — the architecture
   of the Belle II selective-MC network, small enough for 2 CPU cores.
3. **Validation** on a held-out fraction: ROC AUC and the retention curve
   (:func:`retention_curve`: threshold, skipped fraction and purity of the skipped set
   at each target retention of true passes, 0.90 … 0.999), stored in the sidecar's
   ``provenance.selection`` with the decay, pipeline digest and selection it was
   trained on (checked by the pass).

``scripts/train_selection_model.py`` trains the model of the default job's example
selection.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mambah.errors import ConfigError, DataError, StoreError
from mambah.store import EventStore
from sim.core.pipeline import Pipeline
from sim.generation.preselect import (
    SEQUENCE_FEATURES,
    event_sequences,
    flat_input_names,
    particles_sql,
    pipeline_decay,
    pipeline_digest,
)

__all__ = (
    "LONG_AND_KAON_PID",
    "long_and_kaon_pid",
    "RETENTIONS",
    "simulate_sample",
    "event_labels",
    "selection_data",
    "build_network",
    "roc_auc",
    "retention_curve",
    "train_selection",
    "bias_report",
)

log = logging.getLogger(__name__)

#: Known-answer selection: every charged final-state signal particle (neutrinos excluded) has a
#: Long track (``track_type = 3``) and every kaon among them has PIDK > 5 on that track.
LONG_AND_KAON_PID = """
    WITH fs AS (
        SELECT p.batch, p.event, p."index", p.pid,
               coalesce(bool_or(t.track_type = 3), false) AS is_long,
               coalesce(max(t.PIDK) FILTER (WHERE t.track_type = 3), -1e9) AS pidk
        FROM mc_particles AS p
        LEFT JOIN protoparticles AS t ON t.batch = p.batch AND t.event = p.event AND t.mc_particle = p."index"
        WHERE p.is_signal AND p.decay_vertex < 0 AND p.charge <> 0 AND abs(p.pid) NOT IN (12, 14, 16)
        GROUP BY p.batch, p.event, p."index", p.pid
    )
    SELECT batch, event FROM fs GROUP BY batch, event
    HAVING bool_and(is_long) AND bool_and(abs(pid) <> 321 OR pidk > 5)
"""

def long_and_kaon_pid(min_pt: float = 0.0) -> str:
    """:data:`LONG_AND_KAON_PID`, and with ``min_pt > 0`` also every such track's reconstructed pT > ``min_pt`` [MeV]."""
    if min_pt < 0:
        raise ConfigError(f"min_pt={min_pt} must be >= 0 MeV")
    if min_pt == 0:
        return LONG_AND_KAON_PID
    sql = LONG_AND_KAON_PID.replace(
        "AS pidk\n",
        "AS pidk,\n               coalesce(max(sqrt(t.px * t.px + t.py * t.py)) FILTER (WHERE t.track_type = 3), 0) AS pt\n",
    )
    return sql.replace("pidk > 5)\n", f"pidk > 5) AND bool_and(pt > {float(min_pt)})\n")


#: Target retentions of true passes tabulated in the sidecar.
RETENTIONS: tuple[float, ...] = (0.90, 0.95, 0.97, 0.98, 0.99, 0.995, 0.999)

_EVENT_KEY = 1 << 24


def simulate_sample(pipeline: Pipeline, store: EventStore | None = None) -> EventStore:
    """Run ``pipeline`` (all passes) into ``store`` (default a new in-memory one), recording the pipeline.

    Returns:
        The store, with metadata ``pipeline`` (TOML) set.
    """
    from sim.core.runner import run

    store = store if store is not None else EventStore.memory()
    run(pipeline, None, store=store, progress=False)  # type: ignore[arg-type]  # written into the open store
    if store.get_metadata("pipeline") is None:
        store.set_metadata("pipeline", pipeline.to_toml())
    return store


def event_labels(store: EventStore, selection: str) -> tuple[np.ndarray, np.ndarray]:
    """Pass/fail label of every event of ``store``.

    Args:
        store: a simulated store.
        selection: SQL yielding columns ``batch, event`` of the passing events.

    Returns:
        ``(keys, passed)``: ``(n_events,)`` sorted int64 keys ``batch * 2**24 + event`` and bool labels.

    Raises:
        ConfigError: the selection fails or does not return ``batch`` and ``event`` columns.
    """
    events = store.query("SELECT batch, event FROM events ORDER BY batch, event")
    keys = events.column("batch").to_numpy().astype(np.int64) * _EVENT_KEY + events.column("event").to_numpy()
    try:
        names = store.query(f"SELECT * FROM ({selection}) LIMIT 0").column_names
    except StoreError as err:
        raise ConfigError(f"the selection SQL fails: {err}") from err
    if not {"batch", "event"} <= set(names):
        raise ConfigError(f"the selection must return the columns batch, event; it returns {names}")
    passing = store.query(f"SELECT DISTINCT batch, event FROM ({selection})")
    pk = passing.column("batch").to_numpy().astype(np.int64) * _EVENT_KEY + passing.column("event").to_numpy()
    return keys, np.isin(keys, pk)


def selection_data(
    store: EventStore,
    selection: str,
    *,
    vocabulary: Sequence[int] | None = None,
    max_particles: int | None = None,
) -> dict[str, Any]:
    """Sequences, labels, vocabulary and slot count of every event of ``store``.

    Args:
        store: a simulated store.
        selection: see :func:`event_labels`.
        vocabulary: PDG ids of the model (default: every id and mother id in the store).
        max_particles: slots (default: the largest event of the store).

    Returns:
        ``{"keys": (n,), "x": (n, L·F) float32, "y": (n,) bool, "vocabulary": list[int],
        "max_particles": int}``.
    """
    tab = store.query(particles_sql())
    parts = {c: tab.column(c).to_numpy(zero_copy_only=False) for c in tab.column_names}
    if vocabulary is None:
        ids = np.union1d(parts["pid"], parts["mother_pid"])
        vocabulary = [int(v) for v in ids if v != 0]
    if max_particles is None:
        key = parts["batch"].astype(np.int64) * _EVENT_KEY + parts["event"]
        max_particles = int(np.unique(key, return_counts=True)[1].max()) if key.size else 1
    keys, x = event_sequences(parts, vocabulary, max_particles)
    label_keys, passed = event_labels(store, selection)
    if not np.array_equal(keys, label_keys):
        raise DataError("some events of the store have no generated particles; cannot label them")
    return {"keys": keys, "x": x, "y": passed, "vocabulary": list(vocabulary), "max_particles": max_particles}


def build_network(
    max_particles: int,
    vocabulary_size: int,
    kin_mean: np.ndarray,
    kin_var: np.ndarray,
    *,
    widths: Sequence[int] = (1, 2, 3),
    filters: int = 32,
    embedding: int = 8,
    hidden: int = 32,
) -> Any:
    """Keras model ``(n, L·F) → (n, 1)`` P(pass), standard layers only (loads with ``safe_mode``).

    Args:
        max_particles: L.
        vocabulary_size: number of PDG ids (tokens 0 padding, 1 unknown, 2.. the ids).
        kin_mean, kin_var: ``(F − 2,)`` standardisation of the kinematic features.
        widths: Conv1D kernel widths (one branch each).
        filters, embedding, hidden: layer sizes.
    """
    import keras
    from keras import layers

    n_feat = len(SEQUENCE_FEATURES)
    inp = keras.Input((max_particles * n_feat,), name="sequence")
    seq = layers.Reshape((max_particles, n_feat))(inp)
    by_feature = layers.Permute((2, 1))(seq)  # (F, L)
    tok = layers.Reshape((max_particles,))(layers.Cropping1D((0, n_feat - 1))(by_feature))
    mtok = layers.Reshape((max_particles,))(layers.Cropping1D((1, n_feat - 2))(by_feature))
    kin = layers.Permute((2, 1))(layers.Cropping1D((2, 0))(by_feature))  # (L, F-2)
    kin = layers.Normalization(axis=-1, mean=[float(v) for v in kin_mean],
                             variance=[float(v) for v in kin_var])(kin)
    vocab = vocabulary_size + 2
    h = layers.Concatenate()([layers.Embedding(vocab, embedding)(tok), layers.Embedding(vocab, embedding)(mtok), kin])
    branches = [layers.Conv1D(filters, int(w), padding="same", activation="relu")(h) for w in widths]
    pooled = layers.GlobalAveragePooling1D()(layers.Concatenate()(branches) if len(branches) > 1 else branches[0])
    out = layers.Dense(1, activation="sigmoid")(layers.Dense(hidden, activation="relu")(pooled))
    return keras.Model(inp, out)


def roc_auc(score: np.ndarray, label: np.ndarray) -> float:
    """Area under the ROC curve (Mann–Whitney, ties averaged); ``(n,)`` scores and bool labels."""
    from scipy.stats import rankdata

    label = np.asarray(label, bool)
    n_pos, n_neg = int(label.sum()), int((~label).sum())
    if n_pos == 0 or n_neg == 0:
        raise DataError(f"ROC AUC needs both classes; got {n_pos} passes and {n_neg} failures")
    ranks = rankdata(score)
    return float((ranks[label].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def retention_curve(
    score: np.ndarray, label: np.ndarray, targets: Sequence[float] = RETENTIONS
) -> list[dict[str, float]]:
    """Threshold, achieved retention, skipped fraction and purity of the skipped set per target retention.

    The threshold of target ``r`` is the ``k``-th smallest score of the true passes with
    ``k = floor((1 − r) · n_pass)``, so at least ``r`` of them score ≥ it.

    Returns:
        One dict per target: ``retention`` (target), ``threshold``, ``achieved`` (passes kept),
        ``skipped`` (fraction of all events below the threshold), ``purity`` (fraction of the
        skipped events that fail the selection; NaN when none is skipped).
    """
    score = np.asarray(score, np.float64)
    label = np.asarray(label, bool)
    pos = np.sort(score[label])
    if pos.size == 0:
        raise DataError("no event of the validation sample passes the selection")
    rows = []
    for r in targets:
        k = int(np.floor((1.0 - r) * pos.size))
        thr = float(pos[min(k, pos.size - 1)])
        skipped = score < thr
        rows.append({
            "retention": float(r), "threshold": thr, "achieved": float((pos >= thr).mean()),
            "skipped": float(skipped.mean()),
            "purity": float((~label[skipped]).mean()) if skipped.any() else float("nan"),
        })
    return rows


def train_selection(
    data: EventStore | str | Path,
    *,
    selection: str = LONG_AND_KAON_PID,
    seed: int = 0,
    epochs: int = 15,
    batch_size: int = 256,
    learning_rate: float = 2e-3,
    validation_fraction: float = 0.2,
    widths: Sequence[int] = (1, 2, 3),
) -> Any:
    """Train the selection model on a simulated store.

    Args:
        data: the store (or its DuckDB file), simulated by the full pipeline it records in
            its ``pipeline`` metadata.
        selection: SQL yielding ``batch, event`` of the passing events (:func:`event_labels`).
        seed: seeds the split and Keras.
        epochs, batch_size, learning_rate: training settings (Adam, binary cross-entropy).
        validation_fraction: held-out fraction for the ROC and the retention curve.
        widths: Conv1D kernel widths.

    Returns:
        :class:`sim.core.io.TrainedModel` (binary classifier) whose provenance holds
        ``selection``: decay, pipeline digest, selection SQL, vocabulary, max_particles,
        pass fraction, validation AUC and curve.

    Raises:
        DataError: the store records no pipeline, or a class is missing.
    """
    import keras

    from sim.core.io import TrainedModel
    from sim.core.preprocessing import Identity

    if not 0.0 < validation_fraction < 1.0:
        raise ConfigError(f"validation_fraction={validation_fraction} must be in (0, 1)")
    store = data if isinstance(data, EventStore) else EventStore.open(str(data), read_only=True)
    toml = store.get_metadata("pipeline")
    if toml is None:
        raise DataError(f"store {data} records no pipeline (metadata 'pipeline'); simulate it with sim.run")
    pipeline = Pipeline.from_toml(toml, source="store metadata")
    d = selection_data(store, selection)
    x, y = d["x"], d["y"]
    if y.all() or not y.any():
        raise DataError(f"the selection passes {int(y.sum())} of {y.size} events; training needs passes and failures")
    rng = np.random.default_rng(seed)
    order = rng.permutation(y.size)
    n_val = max(1, round(validation_fraction * y.size))
    val, tr = order[:n_val], order[n_val:]
    n_feat, L = len(SEQUENCE_FEATURES), d["max_particles"]
    kin = x[tr].reshape(-1, L, n_feat)[:, :, 2:].reshape(-1, n_feat - 2)
    filled = x[tr].reshape(-1, L, n_feat)[:, :, 0].reshape(-1) > 0
    mean, var = kin[filled].mean(axis=0), np.maximum(kin[filled].var(axis=0), 1e-6)
    keras.utils.set_random_seed(seed)
    net = build_network(L, len(d["vocabulary"]), mean, var, widths=widths)
    net.compile(optimizer=keras.optimizers.Adam(learning_rate), loss="binary_crossentropy")
    t0 = time.process_time()
    hist = net.fit(x[tr], y[tr].astype(np.float32), epochs=epochs, batch_size=batch_size, verbose=0,
                   validation_data=(x[val], y[val].astype(np.float32)))
    seconds = time.process_time() - t0
    score = np.asarray(net(x[val], training=False))[:, 0]
    auc = roc_auc(score, y[val])
    curve = retention_curve(score, y[val])
    log.info("selection model: AUC %.4f on %d held-out events", auc, n_val)
    record = {
        "decay": pipeline_decay(pipeline), "pipeline": pipeline_digest(pipeline), "sql": " ".join(selection.split()),
        "vocabulary": d["vocabulary"], "max_particles": L, "pass_fraction": float(y.mean()),
        "n_train": int(tr.size), "n_validation": int(n_val), "auc": auc, "curve": curve,
    }
    width = L * n_feat
    return TrainedModel(
        model=net, kind="classifier", input_names=flat_input_names(L), output_names=("passes",),
        input_preprocessor=Identity(width), output_preprocessor=Identity(1),
        provenance={"seed": seed, "algorithm": "embedding+conv1d(" + ",".join(map(str, widths)) + ")+gap",
                    "data_file": None if isinstance(data, EventStore) else str(data),
                    "training_seconds": round(seconds, 1), "selection": record},
        history={k: [float(v) for v in vals] for k, vals in hist.history.items()},
    )


#: Kinematics of the bias report, per passing event: the signal head's pT and η, and the
#: momenta of the charged final-state signal particles (one entry per particle).
_BIAS_SQL = """
    SELECT p.batch, p.event, p.mother < 0 AS is_head, sqrt(p.px * p.px + p.py * p.py) AS pt,
           sqrt(p.px * p.px + p.py * p.py + p.pz * p.pz) AS p, p.pz
    FROM mc_particles AS p
    WHERE p.is_signal AND (p.mother < 0 OR (p.decay_vertex < 0 AND p.charge <> 0))
    ORDER BY p.batch, p.event, p."index"
"""


def bias_report(store: EventStore, selection: str, keys: np.ndarray, score: np.ndarray, threshold: float) -> dict[str, Any]:
    """Kinematic bias of the preselection on the passing events, measured where everything was simulated.

    Compares the events passing ``selection`` (full simulation) with those of them the
    preselection keeps (``score >= threshold``): two-sample Kolmogorov–Smirnov distance of
    the signal head's pT [MeV] and η, and of the charged final-state signal particles' p [MeV].

    Args:
        store: a store where every event was simulated.
        selection: see :func:`event_labels`.
        keys: ``(n,)`` event keys ``batch * 2**24 + event`` of ``score``.
        score: ``(n,)`` selection-model scores.
        threshold: the preselection threshold.

    Returns:
        ``{"n_pass": int, "n_kept": int, "ks": {name: D}, "p_value": {name: p}}``.
    """
    from scipy.stats import ks_2samp

    label_keys, passed = event_labels(store, selection)
    order = np.argsort(keys)
    pos = np.clip(np.searchsorted(keys[order], label_keys), 0, max(keys.size - 1, 0))
    if keys.size == 0 or not np.array_equal(keys[order][pos], label_keys):
        raise DataError("bias_report: the scores do not cover every event of the store")
    kept = np.asarray(score, np.float64)[order][pos] >= threshold
    tab = store.query(_BIAS_SQL)
    cols = {c: tab.column(c).to_numpy(zero_copy_only=False) for c in tab.column_names}
    k = cols["batch"].astype(np.int64) * _EVENT_KEY + cols["event"]
    at = np.searchsorted(label_keys, k)
    is_pass, is_kept = passed[at], (passed & kept)[at]
    head = cols["is_head"].astype(bool)
    pt, p, pz = (np.asarray(cols[c], np.float64) for c in ("pt", "p", "pz"))
    eta = np.arctanh(np.clip(pz / np.maximum(p, 1e-9), -1 + 1e-12, 1 - 1e-12))
    samples = {"head_pt": (pt, head), "head_eta": (eta, head), "daughter_p": (p, ~head)}
    ks, pv = {}, {}
    for name, (values, rows) in samples.items():
        res = ks_2samp(values[rows & is_pass], values[rows & is_kept])
        ks[name], pv[name] = float(res.statistic), float(res.pvalue)
    return {"n_pass": int(passed.sum()), "n_kept": int((passed & kept).sum()), "ks": ks, "p_value": pv}
