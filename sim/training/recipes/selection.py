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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
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
    keep_weights,
    particles_sql,
    pipeline_decay,
    pipeline_digest,
    signal_input_names,
    signal_kinematics,
    signal_sql,
    threshold_for,
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
    "train_selection_pair",
    "SelectionTraining",
    "train_reweighter",
    "fit_reweighter",
    "weight_scale",
    "reweight",
    "roc_points",
    "weighted_ks",
    "bias_samples",
    "bias_from_samples",
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
    particles: str = "all",
) -> dict[str, Any]:
    """Sequences, labels, vocabulary and slot count of every event of ``store``.

    Args:
        store: a simulated store.
        selection: see :func:`event_labels`.
        vocabulary: PDG ids of the model (default: every id and mother id in the store).
        max_particles: slots (default: the largest event of the store).
        particles: ``"all"`` or ``"signal"`` (:data:`sim.generation.preselect.PARTICLE_SETS`).

    Returns:
        ``{"keys": (n,), "x": (n, L·F) float32, "y": (n,) bool, "vocabulary": list[int],
        "max_particles": int}``.
    """
    tab = store.query(particles_sql(particles=particles))
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


def roc_points(score: np.ndarray, label: np.ndarray, n: int = 41) -> list[dict[str, float]]:
    """ROC curve at ``n`` score quantiles: rows ``{"threshold", "tpr", "fpr"}`` (passes / failures scoring ≥ it)."""
    score = np.asarray(score, np.float64)
    label = np.asarray(label, bool)
    if label.all() or not label.any():
        raise DataError(f"a ROC curve needs both classes; got {int(label.sum())} passes and {int((~label).sum())} failures")
    rows = []
    for thr in np.unique(np.quantile(score, np.linspace(0.0, 1.0, n))):
        above = score >= thr
        rows.append({"threshold": float(thr), "tpr": float(above[label].mean()), "fpr": float(above[~label].mean())})
    return rows


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


def _split(n: int, validation_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``(validation, training)`` row indices of ``n`` events (a seeded permutation)."""
    if not 0.0 < validation_fraction < 1.0:
        raise ConfigError(f"validation_fraction={validation_fraction} must be in (0, 1)")
    order = np.random.default_rng(seed).permutation(n)
    n_val = max(1, round(validation_fraction * n))
    return order[:n_val], order[n_val:]


def _open(data: EventStore | str | Path) -> tuple[EventStore, Pipeline]:
    store = data if isinstance(data, EventStore) else EventStore.open(str(data), read_only=True)
    toml = store.get_metadata("pipeline")
    if toml is None:
        raise DataError(f"store {data} records no pipeline (metadata 'pipeline'); simulate it with sim.run")
    return store, Pipeline.from_toml(toml, source="store metadata")


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
    described_as: Mapping[str, str] | None = None,
    max_particles: int | None = None,
    particles: str = "all",
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
        described_as: how the sidecar records the selection (default ``{"sql": selection}``;
            e.g. ``{"cut": "K_PIDK > 5"}`` when the SQL reads a temporary file of a Ficino cut).
        max_particles: particle slots of the model (default: the largest event of the store; full
            events need headroom, an event with more particles is an error when scored).
        particles: the model reads ``"all"`` generated particles or only the ``"signal"`` decay's
            (recorded; full events: every event must have a signal decay).

    Returns:
        :class:`sim.core.io.TrainedModel` (binary classifier) whose provenance holds
        ``selection``: decay, pipeline digest, selection SQL (or cut), vocabulary, max_particles,
        pass fraction, validation AUC, ROC points and retention curve.

    Raises:
        DataError: the store records no pipeline, or a class is missing.
    """
    return _train(data, selection=selection, seed=seed, epochs=epochs, batch_size=batch_size,
                  learning_rate=learning_rate, validation_fraction=validation_fraction, widths=widths,
                  described_as=described_as, max_particles=max_particles, particles=particles)[0]


def _train(
    data: EventStore | str | Path, *, selection: str, seed: int, epochs: int, batch_size: int, learning_rate: float,
    validation_fraction: float, widths: Sequence[int], described_as: Mapping[str, str] | None,
    max_particles: int | None = None, particles: str = "all",
) -> tuple[Any, dict[str, Any], np.ndarray, np.ndarray, EventStore]:
    """:func:`train_selection`, also returning the data, the validation and training rows and the store."""
    import keras

    from sim.core.io import TrainedModel
    from sim.core.preprocessing import Identity

    store, pipeline = _open(data)
    skipped = store.query("SELECT count(*) AS n FROM events WHERE simulated = false").to_pylist()[0]["n"]
    if skipped:
        raise DataError(f"store {data}: {skipped} events were skipped by a preselection; labels need every event simulated")
    d = selection_data(store, selection, max_particles=max_particles, particles=particles)
    x, y = d["x"], d["y"]
    if y.all() or not y.any():
        raise DataError(f"the selection passes {int(y.sum())} of {y.size} events; training needs passes and failures")
    val, tr = _split(y.size, validation_fraction, seed)
    if y[val].all() or not y[val].any() or y[tr].all() or not y[tr].any():
        raise DataError(
            f"the selection passes {int(y.sum())} of {y.size} events: too few for both classes in the training "
            f"and the {validation_fraction} held-out sample; simulate more events"
        )
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
    score = np.concatenate([np.asarray(net(x[i : i + 4096], training=False))[:, 0] for i in range(0, y.size, 4096)])
    auc = roc_auc(score[val], y[val])
    curve = retention_curve(score[val], y[val])
    log.info("selection model: AUC %.4f on %d held-out events", auc, val.size)
    record = {
        "decay": pipeline_decay(pipeline), "pipeline": pipeline_digest(pipeline),
        **(dict(described_as) if described_as is not None else {"sql": " ".join(selection.split())}),
        "vocabulary": d["vocabulary"], "max_particles": L, "particles": particles, "pass_fraction": float(y.mean()),
        "n_train": int(tr.size), "n_validation": int(val.size), "auc": auc,
        "roc": roc_points(score[val], y[val]), "curve": curve,
    }
    width = L * n_feat
    model = TrainedModel(
        model=net, kind="classifier", input_names=flat_input_names(L), output_names=("passes",),
        input_preprocessor=Identity(width), output_preprocessor=Identity(1),
        provenance={"seed": seed, "algorithm": "embedding+conv1d(" + ",".join(map(str, widths)) + ")+gap",
                    "data_file": None if isinstance(data, EventStore) else str(data),
                    "training_seconds": round(seconds, 1), "selection": record},
        history={k: [float(v) for v in vals] for k, vals in hist.history.items()},
    )
    d["score"] = score
    return model, d, val, tr, store


@dataclass
class SelectionTraining:
    """What :func:`train_selection_pair` returns.

    Attributes:
        model: the selection model (its record names ``weights_model`` once saved by the caller).
        weights: the reweighting model (:func:`train_reweighter`), None when not asked for.
        bias: :func:`bias_report` on the held-out events at the weights' threshold (with the weights).
        samples: :func:`bias_samples` of the same events (for plots).
    """

    model: Any
    weights: Any | None
    bias: dict[str, Any]
    samples: dict[str, dict[str, np.ndarray]]


def train_selection_pair(
    data: EventStore | str | Path,
    *,
    selection: str = LONG_AND_KAON_PID,
    seed: int = 0,
    epochs: int = 15,
    validation_fraction: float = 0.2,
    weights_retention: float | None = 0.99,
    weights_epochs: int = 30,
    min_keep: float = 0.05,
    described_as: Mapping[str, str] | None = None,
    particles: str = "all",
) -> SelectionTraining:
    """Selection model, its reweighting model and the bias report on the held-out events.

    Args:
        data, selection, seed, epochs, validation_fraction, described_as: see :func:`train_selection`.
        weights_retention: the retention whose threshold (on the selection model's curve) the
            reweighting model corrects; None: no reweighting model (the report then uses 0.99).
        weights_epochs, min_keep: see :func:`train_reweighter`.
        particles: see :func:`train_selection`.

    Returns:
        :class:`SelectionTraining`.
    """
    model, d, val, tr, store = _train(data, selection=selection, seed=seed, epochs=epochs, batch_size=256,
                                      learning_rate=2e-3, validation_fraction=validation_fraction, widths=(1, 2, 3),
                                      described_as=described_as, particles=particles)
    record = model.provenance["selection"]
    retention = 0.99 if weights_retention is None else weights_retention
    threshold = threshold_for(record["curve"], retention)
    weights = None
    w_val = None
    if weights_retention is not None:
        weights = train_reweighter(store, d["keys"][tr], d["score"][tr], d["y"][tr], retention=retention,
                                   threshold=threshold, decay=record["decay"], pipeline=record["pipeline"],
                                   seed=seed, epochs=weights_epochs, min_keep=min_keep)
        w_val = reweight(store, weights, d["keys"][val], d["score"][val] >= threshold)
    samples = bias_samples(store, selection, d["keys"][val], d["score"][val], threshold, w_val)
    bias = bias_from_samples(samples)
    bias.update(retention=retention, threshold=threshold, n_events=int(val.size))
    if weights is not None:
        weights.provenance["selection_weights"]["validation"] = bias
    return SelectionTraining(model, weights, bias, samples)


def _signal_inputs(store: EventStore, keys: np.ndarray, n_daughters: int | None) -> tuple[np.ndarray, np.ndarray, int]:
    """Signal kinematics of the events ``keys`` (sorted or not): ``(rows of keys with a head, x, n_daughters)``."""
    tab = store.query(signal_sql())
    parts = {c: tab.column(c).to_numpy(zero_copy_only=False) for c in tab.column_names}
    if n_daughters is None:
        k = parts["batch"].astype(np.int64) * _EVENT_KEY + parts["event"]
        fs = k[~parts["is_head"].astype(bool)]
        n_daughters = int(np.unique(fs, return_counts=True)[1].max()) if fs.size else 0
    sig_keys, x = signal_kinematics(parts, n_daughters)
    pos = np.clip(np.searchsorted(sig_keys, keys), 0, max(sig_keys.size - 1, 0))
    has = (sig_keys.size > 0) & (sig_keys[pos] == keys) if sig_keys.size else np.zeros(keys.size, bool)
    return np.flatnonzero(has), x[pos[has]], n_daughters


def train_reweighter(
    store: EventStore,
    keys: np.ndarray,
    score: np.ndarray,
    passed: np.ndarray,
    *,
    retention: float,
    threshold: float,
    decay: str,
    pipeline: str,
    seed: int = 0,
    epochs: int = 30,
    batch_size: int = 256,
    learning_rate: float = 2e-3,
    hidden: int = 32,
    min_keep: float = 0.05,
) -> Any:
    """Reweighting model of a hard preselection cut: P(kept | signal kinematics) among passing events.

    The Belle II seed's remedy for the bias of the preselection: a second classifier on the
    kinematics to correct (the signal head's pT and η, its charged final-state particles' p
    and η, :func:`sim.generation.preselect.signal_kinematics`), trained on the passing events
    to tell the kept ones from the skipped ones.  Its output ``r`` is the density ratio
    ``p(x | pass, kept) / p(x | pass) × P(kept | pass)``, so weighting each kept event by
    ``1 / r`` gives the kept passing events the kinematics (and the count) of all passing events.
    On the training events the selection model's own scores are optimistic, so an event counts
    as kept when it scores at or above the ``(1 − retention)`` quantile of the passing events'
    scores here (the same rank cut as ``threshold`` on held-out events).

    Args:
        store: the simulated store holding the events ``keys``.
        keys: ``(n,)`` event keys ``batch * 2**24 + event`` of the training events.
        score: ``(n,)`` their selection-model scores.
        passed: ``(n,)`` bool selection labels.
        retention, threshold: the cut this model corrects (recorded; the pass checks the threshold).
        decay, pipeline: what the selection model was trained on (recorded; checked by the pass).
        seed, epochs, batch_size, learning_rate, hidden: training settings (two ReLU layers, sigmoid).
        min_keep: floor of ``r`` when weighting (weights ≤ ``1 / min_keep``).

    Returns:
        :class:`sim.core.io.TrainedModel` (classifier, inputs
        :func:`sim.generation.preselect.signal_input_names`) with provenance ``selection_weights``.

    Raises:
        DataError: no passing event, or none of them below the quantile (nothing to correct).
    """
    from sim.core.io import TrainedModel
    from sim.core.preprocessing import Identity

    if not 0.0 < min_keep <= 1.0:
        raise ConfigError(f"min_keep={min_keep} must be in (0, 1]")
    keys, score, passed = np.asarray(keys, np.int64), np.asarray(score, np.float64), np.asarray(passed, bool)
    pass_rows = np.flatnonzero(passed)
    if pass_rows.size == 0:
        raise DataError("no training event passes the selection; cannot train the reweighting model")
    cut = retention_curve(score[pass_rows], np.ones(pass_rows.size, bool), targets=(retention,))[0]["threshold"]
    rows, x, n_daughters = _signal_inputs(store, keys[pass_rows], None)
    kept = (score[pass_rows] >= cut)[rows]
    if kept.all():
        raise DataError(
            f"no passing training event falls below the retention-{retention} cut; nothing to reweight "
            f"(simulate more events or lower the retention)"
        )
    t0 = time.process_time()
    net, pre, history = fit_reweighter(x, kept, seed=seed, epochs=epochs, batch_size=batch_size,
                                       learning_rate=learning_rate, hidden=hidden)
    seconds = time.process_time() - t0
    p_kept = np.asarray(net(pre.transform(x[kept]).astype(np.float32), training=False))[:, 0]
    record = {
        "decay": decay, "pipeline": pipeline, "retention": float(retention), "threshold": float(threshold),
        "n_daughters": n_daughters, "min_keep": float(min_keep), "n_pass": int(kept.size),
        "n_skipped": int((~kept).sum()), "scale": weight_scale(p_kept, kept.size, min_keep),
    }
    log.info("reweighting model: %d passing training events, %d below the cut", kept.size, int((~kept).sum()))
    return TrainedModel(
        model=net, kind="classifier", input_names=signal_input_names(n_daughters), output_names=("kept",),
        input_preprocessor=pre, output_preprocessor=Identity(1),
        provenance={"seed": seed, "algorithm": f"dense({hidden},{hidden})", "data_file": None,
                    "training_seconds": round(seconds, 1), "selection_weights": record},
        history=history,
    )


def weight_scale(p_kept: np.ndarray, n_pass: int, min_keep: float) -> float:
    """Normalisation ``s`` with ``sum(s / max(p_kept, min_keep)) = n_pass`` over the kept passing events.

    Args:
        p_kept: ``(k,)`` the reweighting model's P(kept) of the kept passing events.
        n_pass: number of passing events (kept or not) they stand for.
        min_keep: the weight floor of :func:`sim.generation.preselect.keep_weights`.
    """
    total = float((1.0 / np.maximum(np.asarray(p_kept, np.float64), min_keep)).sum())
    if total <= 0:
        raise DataError("no kept passing event to normalise the weights on")
    return float(n_pass) / total


def fit_reweighter(
    x: np.ndarray, kept: np.ndarray, *, seed: int = 0, epochs: int = 30, batch_size: int = 256,
    learning_rate: float = 2e-3, hidden: int = 32,
) -> tuple[Any, Any, dict[str, list[float]]]:
    """The classifier of :func:`train_reweighter` on arrays: P(kept | x).

    Args:
        x: ``(n, d)`` kinematics of the passing events.
        kept: ``(n,)`` bool, kept by the preselection.
        seed, epochs, batch_size, learning_rate, hidden: Adam on binary cross-entropy, two ReLU layers.

    Returns:
        ``(network, standardizer, history)``: the Keras model on standardised ``x``, the fitted
        :class:`sim.core.preprocessing.Standardizer`, and the per-epoch losses.
    """
    import keras
    from keras import layers

    from sim.core.preprocessing import Standardizer

    pre = Standardizer().fit(np.asarray(x, np.float64))
    keras.utils.set_random_seed(seed)
    net = keras.Sequential([
        keras.Input((x.shape[1],)), layers.Dense(hidden, activation="relu"), layers.Dense(hidden, activation="relu"),
        layers.Dense(1, activation="sigmoid"),
    ])
    net.compile(optimizer=keras.optimizers.Adam(learning_rate), loss="binary_crossentropy")
    hist = net.fit(pre.transform(x).astype(np.float32), np.asarray(kept, np.float32), epochs=epochs,
                   batch_size=batch_size, verbose=0)
    return net, pre, {k: [float(v) for v in vals] for k, vals in hist.history.items()}


def reweight(store: EventStore, weights: Any, keys: np.ndarray, kept: np.ndarray) -> np.ndarray:
    """``events.weight`` the preselect pass would write for the events ``keys`` (``kept``: bool) of ``store``."""
    rec = weights.provenance["selection_weights"]
    keys = np.asarray(keys, np.int64)
    rows, x, _ = _signal_inputs(store, keys, int(rec["n_daughters"]))
    p_kept = np.ones(keys.size)
    if rows.size:
        p_kept[rows] = weights.predict_proba(x)
    return keep_weights(p_kept, kept, float(rec["min_keep"]), float(rec["scale"]))


def weighted_ks(a: np.ndarray, b: np.ndarray, wb: np.ndarray | None = None) -> float:
    """Kolmogorov–Smirnov distance ``sup |F_a − G_b|`` between sample ``a`` and sample ``b`` weighted by ``wb``.

    Args:
        a: ``(n,)`` values (unit weights).
        b: ``(m,)`` values.
        wb: ``(m,)`` non-negative weights of ``b`` (None: unit weights, the two-sample KS statistic).
    """
    a = np.sort(np.asarray(a, np.float64))
    b = np.asarray(b, np.float64)
    w = np.ones(b.size) if wb is None else np.asarray(wb, np.float64)
    if a.size == 0 or b.size == 0 or w.sum() <= 0:
        raise DataError(f"KS distance needs two non-empty samples; got {a.size} and {b.size} (weight {w.sum():.3g})")
    order = np.argsort(b, kind="stable")
    b, cw = b[order], np.cumsum(w[order]) / w.sum()
    grid = np.union1d(a, b)
    fa = np.searchsorted(a, grid, side="right") / a.size
    idx = np.searchsorted(b, grid, side="right")
    gb = np.where(idx > 0, cw[np.maximum(idx - 1, 0)], 0.0)
    return float(np.abs(fa - gb).max())


#: Kinematics of the bias report: the signal head's pT [MeV] and η (one per event) and the
#: momenta [MeV] of its charged final-state particles (one entry per particle).
BIAS_VARIABLES: tuple[str, ...] = ("head_pt", "head_eta", "daughter_p")


def bias_samples(
    store: EventStore, selection: str, keys: np.ndarray, score: np.ndarray, threshold: float,
    weights: np.ndarray | None = None,
) -> dict[str, dict[str, np.ndarray]]:
    """Kinematics of the passing events among ``keys``, all of them and those the preselection keeps.

    Args:
        store: a store where the events ``keys`` were all simulated.
        selection: see :func:`event_labels`.
        keys: ``(n,)`` event keys ``batch * 2**24 + event`` (a subset of the store's events).
        score: ``(n,)`` selection-model scores.
        threshold: the preselection threshold.
        weights: ``(n,)`` event weights of the kept events (None: unit weights).

    Returns:
        ``{variable: {"all": (a,), "kept": (b,), "weight": (b,)}}`` for :data:`BIAS_VARIABLES`,
        plus ``"_count": {"n_pass", "n_kept", "sum_weights"}`` (0-d arrays).

    Raises:
        DataError: ``keys`` names events that are not in the store.
    """
    label_keys, passed = event_labels(store, selection)
    keys = np.asarray(keys, np.int64)
    order = np.argsort(keys)
    k_sorted = keys[order]
    pos = np.clip(np.searchsorted(label_keys, k_sorted), 0, max(label_keys.size - 1, 0))
    if keys.size == 0 or label_keys.size == 0 or not np.array_equal(label_keys[pos], k_sorted):
        raise DataError("bias report: the scored events are not (all) in the store")
    is_pass = passed[pos]
    kept = np.asarray(score, np.float64)[order] >= threshold
    w = np.ones(keys.size) if weights is None else np.asarray(weights, np.float64)[order]
    tab = store.query(signal_sql())
    cols = {c: tab.column(c).to_numpy(zero_copy_only=False) for c in tab.column_names}
    k = cols["batch"].astype(np.int64) * _EVENT_KEY + cols["event"]
    at = np.clip(np.searchsorted(k_sorted, k), 0, keys.size - 1)
    row_pass = (k_sorted[at] == k) & is_pass[at]
    row_kept = row_pass & kept[at]
    head = cols["is_head"].astype(bool)
    px, py, pz = (np.asarray(cols[c], np.float64) for c in ("px", "py", "pz"))
    pt = np.hypot(px, py)
    p = np.sqrt(pt * pt + pz * pz)
    eta = np.arctanh(np.clip(pz / np.maximum(p, 1e-9), -1 + 1e-12, 1 - 1e-12))
    out: dict[str, dict[str, np.ndarray]] = {}
    for name, values, rows in (("head_pt", pt, head), ("head_eta", eta, head), ("daughter_p", p, ~head)):
        out[name] = {"all": values[rows & row_pass], "kept": values[rows & row_kept], "weight": w[at][rows & row_kept]}
    out["_count"] = {"n_pass": np.asarray(int(is_pass.sum())), "n_kept": np.asarray(int((is_pass & kept).sum())),
                     "sum_weights": np.asarray(float(w[is_pass & kept].sum()))}
    return out


def bias_from_samples(samples: Mapping[str, Mapping[str, np.ndarray]]) -> dict[str, Any]:
    """:func:`bias_report` of :func:`bias_samples` output."""
    from scipy.stats import ks_2samp

    ks, pv, ksw = {}, {}, {}
    for name in BIAS_VARIABLES:
        s = samples[name]
        res = ks_2samp(s["all"], s["kept"])
        ks[name], pv[name] = float(res.statistic), float(res.pvalue)
        ksw[name] = weighted_ks(s["all"], s["kept"], s["weight"])
    c = samples["_count"]
    return {"n_pass": int(c["n_pass"]), "n_kept": int(c["n_kept"]), "sum_weights": float(c["sum_weights"]),
            "ks": ks, "p_value": pv, "ks_weighted": ksw}


def bias_report(
    store: EventStore, selection: str, keys: np.ndarray, score: np.ndarray, threshold: float,
    weights: np.ndarray | None = None,
) -> dict[str, Any]:
    """Kinematic bias of the preselection on the passing events, measured where everything was simulated.

    Compares the events passing ``selection`` (full simulation) with those of them the
    preselection keeps (``score >= threshold``): two-sample Kolmogorov–Smirnov distance of
    the signal head's pT [MeV] and η, and of the charged final-state signal particles' p [MeV],
    unweighted and with the kept events weighted by ``weights``.

    Args:
        store, selection, keys, score, threshold, weights: see :func:`bias_samples`.

    Returns:
        ``{"n_pass": int, "n_kept": int, "sum_weights": float (weights of the kept passes),
        "ks": {name: D}, "p_value": {name: p}, "ks_weighted": {name: D}}``.
    """
    return bias_from_samples(bias_samples(store, selection, keys, score, threshold, weights))
