"""Selective simulation: the ``preselect`` pass scores each generated event and skips the doomed ones.

A selection model (trained by :mod:`sim.training.recipes.selection`) reads the
generator-level event as a sequence of particles in tree order — PDG id and mother
PDG id (through embeddings), ``log10 p``, η, φ and the production vertex relative to
the primary vertex — and gives P(the event passes the analysis selection).  Events
scoring below the threshold get ``events.simulated = false``; their MC truth stays,
but every detector pass skips them: the shared truth query
(:func:`sim.detector.features.truth_sql`, used by acceptance and efficiency) and the
occupancy query exclude them, so no track, PV, PID or cluster is made for them
(resolution, PID and the calorimeter's track matching start from the tracks).
This is the Belle II "selective background Monte Carlo" idea (embeddings + 1-D
convolutions with several kernel widths + global average pooling, scored before
detector simulation).

The threshold is either given (``threshold``) or chosen from the target retention of
true passes (``retention``, e.g. 0.99) on the validation curve stored in the model's
sidecar (the smallest tabulated retention ≥ the request, so the chosen threshold is
the conservative one).  The model records what it was trained on (the generator's
decay and a digest of the pipeline's passes); :func:`with_preselect` inserts the pass
after the generator with both taken from the pipeline, and the pass refuses a model
trained on another decay or pipeline.

With ``drop_skipped`` (``mambah run --preselect ... --drop-skipped``) the skipped events' MC
truth (``mc_particles``, ``mc_vertices``) is deleted as well; their ``events`` row stays.

A model trained with ``particles = "signal"`` reads only the signal decay's particles (for full
events; an event without any is left simulated).

Model format: the standard :mod:`sim.core.io` archive; the network's single input
is the flattened ``(max_particles, len(SEQUENCE_FEATURES))`` sequence (names
``<feature>_<slot>``), reshaped and split inside the network with standard layers.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from mambah import kinematics
from mambah.errors import ConfigError, DataError, ModelError
from sim.core.pipeline import BatchContext, Kernel, Pass, Pipeline, RunConfig
from sim.core.registry import register_pass
from sim.generation._event_tables import DEFERRED_TRUTH

__all__ = (
    "SEQUENCE_FEATURES",
    "PARTICLES_SQL",
    "PARTICLE_SETS",
    "particles_sql",
    "Preselect",
    "drop_truth",
    "event_sequences",
    "flat_input_names",
    "pipeline_digest",
    "pipeline_decay",
    "threshold_for",
    "with_preselect",
    "load_selection_model",
    "sample_keep",
    "MODES",
    "SIGNAL_SQL",
    "signal_sql",
    "signal_input_names",
    "signal_kinematics",
    "load_weights_model",
    "keep_weights",
)

log = logging.getLogger(__name__)

#: An event's key in the pass: ``batch * _EVENT_SPAN + event`` (events per batch < 2**24).
_EVENT_SPAN = 1 << 24

#: ``Preselect.mode`` choices.
MODES: tuple[str, ...] = ("threshold", "sample")

#: Per-particle features, in slot order: vocabulary tokens of the PDG id and the mother's
#: PDG id (0 padding, 1 unknown), log10(p / MeV), η, φ [rad], production vertex − PV [mm].
SEQUENCE_FEATURES: tuple[str, ...] = (
    "token", "mother_token", "log10_p", "eta", "phi", "origin_dx", "origin_dy", "origin_dz",
)  # fmt: skip

_PARTICLES = """
    SELECT p.batch, p.event, p."index", p.pid, coalesce(m.pid, 0) AS mother_pid, p.px, p.py, p.pz,
           v.x - e.pv_x AS origin_dx, v.y - e.pv_y AS origin_dy, v.z - e.pv_z AS origin_dz
    FROM mc_particles AS p
    JOIN mc_vertices AS v ON v.batch = p.batch AND v.event = p.event AND v."index" = p.prod_vertex
    JOIN events AS e ON e.batch = p.batch AND e.event = p.event
    LEFT JOIN mc_particles AS m ON m.batch = p.batch AND m.event = p.event AND m."index" = p.mother
    WHERE {where}
    ORDER BY p.batch, p.event, p."index"
"""

#: Generator-level particles of one batch (``$batch``), in tree order.
PARTICLES_SQL = _PARTICLES.format(where="p.batch = $batch AND v.batch = $batch AND e.batch = $batch")

#: ``Preselect`` inputs: ``"all"`` generated particles of the event, or only the ``"signal"`` decay's
#: (recorded as the model's ``particles``; full events hold ~1000 particles, their signal a handful).
PARTICLE_SETS: tuple[str, ...] = ("all", "signal")


def particles_sql(where: str = "true", particles: str = "all") -> str:
    """:data:`PARTICLES_SQL` over any batches (``where`` on ``p``, ``v``, ``e``), ordered by batch, event, index.

    Args:
        where: SQL condition.
        particles: one of :data:`PARTICLE_SETS` (``"signal"``: only ``mc_particles.is_signal`` rows).
    """
    if particles not in PARTICLE_SETS:
        raise ConfigError(f"particles={particles!r}; choose one of {list(PARTICLE_SETS)}")
    return _PARTICLES.format(where=where + (" AND p.is_signal" if particles == "signal" else ""))


_SIGNAL = """
    SELECT p.batch, p.event, (p.mother < 0 OR NOT coalesce(m.is_signal, false)) AS is_head, p.px, p.py, p.pz
    FROM mc_particles AS p
    LEFT JOIN mc_particles AS m ON m.batch = p.batch AND m.event = p.event AND m."index" = p.mother
    WHERE {where} AND p.is_signal
      AND (p.mother < 0 OR NOT coalesce(m.is_signal, false) OR (p.decay_vertex < 0 AND p.charge <> 0))
    ORDER BY p.batch, p.event, p."index"
"""

#: The signal decay's head and its charged final-state particles of one batch (``$batch``), in tree order:
#: the kinematics the reweighting model reads and the bias report compares.
SIGNAL_SQL = _SIGNAL.format(where="p.batch = $batch")


def signal_sql(where: str = "true") -> str:
    """:data:`SIGNAL_SQL` over any batches (``where`` on ``p``)."""
    return _SIGNAL.format(where=where)


def signal_input_names(n_daughters: int) -> tuple[str, ...]:
    """Inputs of the reweighting model: head ``log10 pT``, η, then ``log10 p``, η per daughter slot."""
    return ("head_log10_pt", "head_eta", *(f"{v}_{i}" for i in range(n_daughters) for v in ("log10_p", "eta")))


def signal_kinematics(parts: Mapping[str, np.ndarray], n_daughters: int) -> tuple[np.ndarray, np.ndarray]:
    """Per event: the signal head's pT and η and its charged final-state particles' p and η (pure numpy).

    Args:
        parts: 1-D arrays (rows of :data:`SIGNAL_SQL`, sorted by event then tree index):
            ``batch, event, is_head, px, py, pz`` [MeV].  One head per event (the first if several).
        n_daughters: daughter slots (D); events with fewer are padded with zeros.

    Returns:
        ``(keys, x)``: ``(n_events,)`` sorted keys ``batch * 2**24 + event`` of the events with a signal
        head and ``(n_events, 2 + 2 D)`` float32 in :func:`signal_input_names` order.

    Raises:
        DataError: an event has more than ``n_daughters`` charged final-state signal particles.
    """
    key = np.asarray(parts["batch"], np.int64) * _EVENT_SPAN + np.asarray(parts["event"], np.int64)
    head = np.asarray(parts["is_head"], bool)
    px, py, pz = (np.asarray(parts[k], np.float64) for k in ("px", "py", "pz"))
    pt = np.hypot(px, py)
    p = np.sqrt(pt * pt + pz * pz)
    eta = np.clip(kinematics.eta(px, py, pz), -10.0, 10.0)
    keys, first = np.unique(key[head], return_index=True)
    x = np.zeros((keys.size, 2 + 2 * n_daughters), np.float32)
    hk, hpt, heta = key[head][first], pt[head][first], eta[head][first]
    x[:, 0], x[:, 1] = np.log10(np.maximum(hpt, 1e-3)), heta
    dk = key[~head]
    inside = np.isin(dk, keys)
    dk, dp, deta = dk[inside], p[~head][inside], eta[~head][inside]
    if dk.size:
        _, start, counts = np.unique(dk, return_index=True, return_counts=True)
        if counts.max() > n_daughters:
            raise DataError(
                f"an event has {int(counts.max())} charged final-state signal particles; the reweighting model "
                f"takes at most {n_daughters} (retrain it on this decay)"
            )
        slot = np.arange(dk.size) - np.repeat(start, counts)
        row = np.searchsorted(hk, dk)
        x[row, 2 + 2 * slot] = np.log10(np.maximum(dp, 1e-3))
        x[row, 3 + 2 * slot] = deta
    return keys, x


def flat_input_names(max_particles: int) -> tuple[str, ...]:
    """Input names of the flattened sequence: ``<feature>_<slot>``, slot-major (``(L·F,)``)."""
    return tuple(f"{f}_{i}" for i in range(max_particles) for f in SEQUENCE_FEATURES)


def event_sequences(
    parts: Mapping[str, np.ndarray],
    vocabulary: Sequence[int],
    max_particles: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Flattened particle sequences of the events in ``parts`` (pure numpy).

    Args:
        parts: 1-D arrays of length n (rows sorted by event, then tree index):
            ``batch, event, pid, mother_pid, px, py, pz`` (MeV), ``origin_dx/dy/dz`` (mm).
        vocabulary: the PDG ids known to the model; token = position + 2 (1 = unknown, 0 = padding).
        max_particles: slots per event (L).

    Returns:
        ``(keys, x)``: ``(n_events,)`` int64 event keys ``batch * 2**24 + event`` (sorted) and
        ``(n_events, L * F)`` float32 features, slot-major (:func:`flat_input_names`).

    Raises:
        DataError: an event has more than ``max_particles`` particles.
    """
    key = np.asarray(parts["batch"], np.int64) * _EVENT_SPAN + np.asarray(parts["event"], np.int64)
    keys, start, counts = np.unique(key, return_index=True, return_counts=True)
    if counts.size and counts.max() > max_particles:
        raise DataError(
            f"an event has {int(counts.max())} generated particles; the selection model takes at most "
            f"{max_particles} (retrain it with a larger max_particles)"
        )
    vocab = np.asarray(sorted(int(v) for v in vocabulary), np.int64)

    def tokens(pid: np.ndarray) -> np.ndarray:
        pid = np.asarray(pid, np.int64)
        if vocab.size == 0:
            return np.ones(pid.size, np.float32)
        pos = np.clip(np.searchsorted(vocab, pid), 0, vocab.size - 1)
        return np.where(vocab[pos] == pid, pos + 2, 1).astype(np.float32)

    px, py, pz = (np.asarray(parts[k], np.float64) for k in ("px", "py", "pz"))
    p = np.sqrt(px * px + py * py + pz * pz)
    columns = {
        "token": tokens(parts["pid"]),
        "mother_token": np.where(np.asarray(parts["mother_pid"]) == 0, 0, tokens(parts["mother_pid"])),
        "log10_p": np.log10(np.maximum(p, 1e-3)),
        "eta": np.clip(kinematics.eta(px, py, pz), -10.0, 10.0),
        "phi": np.arctan2(py, px),
        "origin_dx": np.asarray(parts["origin_dx"], np.float64),
        "origin_dy": np.asarray(parts["origin_dy"], np.float64),
        "origin_dz": np.asarray(parts["origin_dz"], np.float64),
    }
    slot = np.arange(key.size) - np.repeat(start, counts)
    row = np.repeat(np.arange(keys.size), counts)
    n_feat = len(SEQUENCE_FEATURES)
    x = np.zeros((keys.size, max_particles, n_feat), np.float32)
    for j, name in enumerate(SEQUENCE_FEATURES):
        x[row, slot, j] = columns[name]
    if not np.isfinite(x).all():
        raise DataError("generator-level particles have non-finite momenta or vertices; cannot score the events")
    return keys, x.reshape(keys.size, max_particles * n_feat)


def pipeline_digest(pipeline: Pipeline) -> str:
    """Digest of the passes of ``pipeline`` other than ``preselect`` (run settings excluded), 16 hex digits.

    A generator's ``defer_truth`` (set by :func:`with_preselect`; the same store) is not part of it.
    """
    import tomli_w

    passes = tuple(p for p in pipeline.passes if p.kind != Preselect.kind)
    d = Pipeline(passes, RunConfig()).to_dict()
    for p in d["passes"]:
        p.pop("defer_truth", None)
    text = tomli_w.dumps(d)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def pipeline_decay(pipeline: Pipeline) -> str:
    """The signal decay of the pipeline's generator (its ``dec_file`` if set, else ``decay``)."""
    gen = pipeline.passes[0]
    dec_file = getattr(gen, "dec_file", None)
    if dec_file:
        return f"{dec_file}:{getattr(gen, 'mother', None) or ''}"
    return str(getattr(gen, "decay", gen.kind))


def threshold_for(curve: Sequence[Mapping[str, float]], retention: float) -> float:
    """Threshold reaching ``retention`` of true passes on the validation curve (conservative).

    Args:
        curve: rows ``{"retention": target, "threshold": t, ...}`` from the sidecar.
        retention: wanted fraction of true passes kept, in (0, 1].

    Returns:
        The threshold of the smallest tabulated retention ≥ ``retention``.

    Raises:
        ConfigError: ``retention`` above every tabulated one (names the available values).
    """
    rows = sorted((float(r["retention"]), float(r["threshold"])) for r in curve)
    for target, thr in rows:
        if target >= retention - 1e-12:
            return thr
    raise ConfigError(
        f"retention {retention} is above the model's validation curve (tabulated: {[r for r, _ in rows]}); "
        f"pass a threshold instead"
    )


def load_selection_model(path: str) -> tuple[Any, dict[str, Any]]:
    """Load a selection model and its ``selection`` provenance record.

    Raises:
        ModelError: not a selection model (no ``selection`` record in its sidecar).
    """
    return _load_recorded_classifier(path, "selection", "a selection model (its sidecar has no 'selection' record)")


def load_weights_model(path: str) -> tuple[Any, dict[str, Any]]:
    """Load a reweighting model (:func:`sim.training.recipes.selection.train_reweighter`) and its record.

    Raises:
        ModelError: not a reweighting model (no ``selection_weights`` record in its sidecar).
    """
    return _load_recorded_classifier(path, "selection_weights",
                                     "a preselection reweighting model (no 'selection_weights' record)")


def _load_recorded_classifier(path: str, key: str, what: str) -> tuple[Any, dict[str, Any]]:
    """A classifier and its ``key`` provenance record; ``ModelError`` "model PATH is not WHAT" without it."""
    from sim.core.io import load_model

    trained = load_model(path)
    record = trained.provenance.get(key)
    if trained.kind != "classifier" or not isinstance(record, dict):
        raise ModelError(f"model {path} is not {what}")
    return trained, record


def keep_weights(p_kept: np.ndarray, kept: np.ndarray, min_keep: float, scale: float = 1.0) -> np.ndarray:
    """Bias-correcting weights of a hard cut: ``scale / max(P(kept | kinematics, pass), min_keep)`` where kept, else 0.

    Args:
        p_kept: ``(n,)`` the reweighting model's P(a passing event with these kinematics is kept).
        kept: ``(n,)`` bool, the events the preselection keeps.
        min_keep: floor of ``p_kept`` (caps the weight at ``scale / min_keep``).
        scale: normalisation of the reweighting model (its record's ``scale``: the weights of its
            kept training passes sum to the number of its training passes).

    Returns:
        ``(n,)`` float64 weights.
    """
    w = scale / np.maximum(np.asarray(p_kept, np.float64), min_keep)
    return np.where(np.asarray(kept, bool), w, 0.0)


def sample_keep(score: np.ndarray, threshold: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Sampling mode: keep each event with probability ``q = min(1, score / threshold)``.

    Args:
        score: ``(n,)`` selection-model scores in [0, 1].
        threshold: scores at or above it are always kept (``<= 0``: everything kept).
        rng: draws exactly ``n`` uniforms.

    Returns:
        ``(keep, weight)``: ``(n,)`` bool and ``(n,)`` float64, ``1 / q`` where kept, 0 elsewhere,
        so ``sum(weight * f)`` is an unbiased estimate of ``sum(f)`` over all events.
    """
    score = np.asarray(score, np.float64)
    q = np.clip(score / threshold, 0.0, 1.0) if threshold > 0 else np.ones(score.size)
    keep = rng.random(score.size) < q
    return keep, np.where(keep, 1.0 / np.maximum(q, 1e-300), 0.0)


@register_pass
@dataclass(frozen=True)
class Preselect(Pass):
    """Skip detector simulation for events the selection model predicts to fail.

    Args:
        name: pass name.
        model: the selection model (``.keras`` with its sidecar).
        retention: target retention of true passes; the threshold comes from the sidecar's curve.
        threshold: score threshold directly (exactly one of ``retention`` / ``threshold``).
        decay: the generator's decay this pipeline runs (:func:`pipeline_decay`; set by :func:`with_preselect`).
        pipeline: digest of this pipeline's passes (:func:`pipeline_digest`; set by :func:`with_preselect`).
        mode: ``"threshold"`` (skip every event scoring below the threshold; no weight) or
            ``"sample"`` (keep an event with probability ``q = min(1, score / threshold)``, drawn
            from the pass's stream, and write ``events.weight = 1 / q``: weighted, the kept
            events are an unbiased sample of all events; skipped events get weight 0).
        weights: threshold mode only: the reweighting model (``.keras`` with its sidecar, trained
            by :func:`sim.training.recipes.selection.train_reweighter` at this threshold) whose
            P(kept | signal kinematics, pass) ``r`` gives every kept event ``events.weight = s / r``
            (``r`` floored at the model's ``min_keep``, ``s`` its normalisation ``scale``; skipped
            events 0; a kept event without a signal head ``s``), so weighted, the kept passing events have the signal kinematics of all passing events.
        drop_skipped: delete the MC truth (``mc_particles``, ``mc_vertices``) of the events this
            pass skips; their ``events`` row stays (``simulated = false``, ``preselect_score``,
            ``weight``, the PV, ``n_tried``), so what was skipped is still counted.  Off by
            default: the skipped events' truth is kept.  After a generator that defers its
            truth (``Pythia.defer_truth``, which :func:`with_preselect` sets with this option)
            the pass reads the particles it scores from the generator's arrays and writes the
            truth of the events it keeps: the skipped events' truth is never written (nor,
            with ReDecay, laid out); the store is the same.
    """

    kind: ClassVar[str] = "preselect"
    #: It reads ``mc_particles`` and ``mc_vertices`` too, from the store, or from the generator when that
    #: defers its truth (``defer_truth``: then this pass writes them; so they are not required upstream).
    reads: ClassVar[tuple[str, ...]] = ("events",)
    writes: ClassVar[tuple[str, ...]] = ("events.simulated", "events.preselect_score", "events.weight",
                                         "mc_particles", "mc_vertices")

    name: str = "preselect"
    model: str = ""
    retention: float | None = None
    threshold: float | None = None
    decay: str = ""
    pipeline: str = ""
    mode: str = "threshold"
    weights: str = ""
    drop_skipped: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.drop_skipped, bool):
            raise ConfigError(f"pass {self.name!r}: drop_skipped must be true or false, got {self.drop_skipped!r}")
        if self.mode not in MODES:
            raise ConfigError(f"pass {self.name!r}: mode={self.mode!r}; choose one of {list(MODES)}")
        if self.weights and self.mode != "threshold":
            raise ConfigError(
                f"pass {self.name!r}: weights (the reweighting model) correct the threshold mode; mode={self.mode!r} "
                f"already weights its events (drop one of them)"
            )
        if not self.model:
            raise ConfigError(f"pass {self.name!r}: give the selection model (model = 'selection.keras')")
        if (self.retention is None) == (self.threshold is None):
            raise ConfigError(f"pass {self.name!r}: give exactly one of retention (e.g. 0.99) or threshold")
        if self.retention is not None and not 0.0 < self.retention <= 1.0:
            raise ConfigError(f"pass {self.name!r}: retention={self.retention} must be in (0, 1]")
        if self.threshold is not None and not (math.isfinite(self.threshold) and 0.0 <= self.threshold <= 1.0):  # a sigmoid score
            raise ConfigError(f"pass {self.name!r}: threshold={self.threshold} must be a finite score (0 to 1), or give a retention")
        if not self.decay or not self.pipeline:
            raise ConfigError(
                f"pass {self.name!r}: decay and pipeline (digest) are not set; add the pass with "
                f"sim.generation.preselect.with_preselect(pipeline, model, ...) or mambah run --preselect"
            )

    def resolved_threshold(self, record: Mapping[str, Any]) -> float:
        """The score threshold: ``threshold``, or the one of ``retention`` on the model's curve."""
        if self.threshold is not None:
            return float(self.threshold)
        return threshold_for(record["curve"], float(self.retention))  # type: ignore[arg-type]

    def build(self) -> Kernel:
        trained, record = load_selection_model(self.model)
        if record.get("decay") != self.decay or record.get("pipeline") != self.pipeline:
            raise ModelError(
                f"pass {self.name!r}: selection model {self.model} was trained on decay {record.get('decay')!r} "
                f"(pipeline {record.get('pipeline')}), this run is decay {self.decay!r} (pipeline {self.pipeline}); "
                f"retrain it on this pipeline"
            )
        vocabulary = [int(v) for v in record["vocabulary"]]
        max_particles = int(record["max_particles"])
        if trained.input_names != flat_input_names(max_particles):
            raise ModelError(f"selection model {self.model}: its inputs are not the {max_particles}-slot particle sequence")
        threshold = self.resolved_threshold(record)
        name, sample = self.name, self.mode == "sample"
        sql = particles_sql("p.batch = $batch AND v.batch = $batch AND e.batch = $batch", str(record.get("particles", "all")))
        reweight = self._weights_model(threshold) if self.weights else None
        drop = self.drop_skipped

        signal_only = str(record.get("particles", "all")) == "signal"

        def kernel(ctx: BatchContext) -> None:
            truth = getattr(ctx, DEFERRED_TRUTH, None)  # the generator's truth, not written yet (its defer_truth)
            if truth is not None:
                setattr(ctx, DEFERRED_TRUTH, None)
                parts = {"batch": np.full(0, 0), **truth.particles(signal_only)}
                parts["batch"] = np.full(parts["event"].size, ctx.batch.batch, np.int64)
            else:
                tab = ctx.query(sql)
                parts = {c: tab.column(c).to_numpy(zero_copy_only=False) for c in tab.column_names}
            keys, x = event_sequences(parts, vocabulary, max_particles)
            score = trained.predict_proba(x) if keys.size else np.zeros(0)
            weight = None
            if sample:
                keep, weight = sample_keep(score, threshold, ctx.rng(name))
            else:
                keep = score >= threshold
            if truth is not None:  # every event's truth but that of the events this pass drops (none with weights:
                # the reweighting reads the signal of every scored event from the store, as without defer_truth)
                skipped = keys[~keep] & (_EVENT_SPAN - 1) if drop and reweight is None else np.zeros(0, np.int64)
                events = np.asarray(truth.events["event"], np.int64)
                truth.write(ctx, events[~np.isin(events, skipped)] if skipped.size else events)
            if not sample and reweight is not None:
                weight = _reweight(ctx, reweight, keys, keep)
            log.debug("pass %r: batch %d keeps %d of %d events", name, ctx.batch.batch, int(keep.sum()), keep.size)
            ctx.update(
                "events",
                {"batch": (keys // _EVENT_SPAN).astype(np.int32), "event": (keys & (_EVENT_SPAN - 1)).astype(np.int32),
                 "simulated": keep, "preselect_score": score.astype(np.float32),
                 **({"weight": weight} if weight is not None else {})},
                keys=("batch", "event"),
            )
            if drop and not keep.all() and (truth is None or reweight is not None):
                drop_truth(ctx, (keys[~keep] & (_EVENT_SPAN - 1)).astype(np.int32))

        return kernel

    def _weights_model(self, threshold: float) -> tuple[Any, int, float, float]:
        """The reweighting model, checked against this pass: ``(model, n_daughters, min_keep, scale)``."""
        trained, record = load_weights_model(self.weights)
        if record.get("decay") != self.decay or record.get("pipeline") != self.pipeline:
            raise ModelError(
                f"pass {self.name!r}: reweighting model {self.weights} was trained on decay {record.get('decay')!r} "
                f"(pipeline {record.get('pipeline')}), this run is decay {self.decay!r} (pipeline {self.pipeline}); "
                f"retrain it on this pipeline"
            )
        trained_at = float(record["threshold"])
        if not np.isclose(trained_at, threshold, rtol=1e-9, atol=1e-12):
            raise ModelError(
                f"pass {self.name!r}: reweighting model {self.weights} corrects threshold {trained_at:.6g} "
                f"(retention {record.get('retention')}), this run cuts at {threshold:.6g}; run with --retention "
                f"{record.get('retention')} or retrain the weights at this threshold"
            )
        n_daughters = int(record["n_daughters"])
        if trained.input_names != signal_input_names(n_daughters):
            raise ModelError(f"reweighting model {self.weights}: its inputs are not the signal kinematics")
        return trained, n_daughters, float(record["min_keep"]), float(record["scale"])


def drop_truth(ctx: BatchContext, events: np.ndarray) -> None:
    """Delete the ``mc_particles`` and ``mc_vertices`` rows of the batch's events ``events`` (``(k,)`` event numbers)."""
    import pyarrow as pa

    con = ctx.con
    con.register("_preselect_skipped", pa.table({"event": pa.array(np.asarray(events, np.int32))}))
    try:
        for table in ("mc_particles", "mc_vertices"):
            con.execute(f"DELETE FROM {table} WHERE batch = ? AND event IN (SELECT event FROM _preselect_skipped)",
                        [ctx.batch.batch])
    finally:
        con.unregister("_preselect_skipped")


def _reweight(ctx: BatchContext, reweight: tuple[Any, int, float, float], keys: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """``events.weight`` of one batch's events ``keys`` (sorted) from the reweighting model (see ``Preselect.weights``)."""
    trained, n_daughters, min_keep, scale = reweight
    tab = ctx.query(SIGNAL_SQL)
    parts = {c: tab.column(c).to_numpy(zero_copy_only=False) for c in tab.column_names}
    sig_keys, xs = signal_kinematics(parts, n_daughters)
    p_kept = np.ones(keys.size)
    if sig_keys.size:
        at = np.searchsorted(keys, sig_keys)  # every signal event is among the scored ones
        p_kept[at] = trained.predict_proba(xs)
    return keep_weights(p_kept, keep, min_keep, scale)


def with_preselect(
    pipeline: Pipeline, model: str, *, retention: float | None = None, threshold: float | None = None,
    mode: str = "threshold", weights: str | bool = "", drop_skipped: bool = False,
) -> Pipeline:
    """``pipeline`` with a :class:`Preselect` pass right after its generator.

    Args:
        pipeline, model, retention, threshold, mode, drop_skipped: see :class:`Preselect`.
        weights: the reweighting model's path, or ``True`` for the one the selection model's
            sidecar names (``selection.weights_model``, next to the model).

    Raises:
        ConfigError: the pipeline already has a preselect pass.
        ModelError: ``weights=True`` and the selection model names no reweighting model.
    """
    if any(p.kind == Preselect.kind for p in pipeline.passes):
        raise ConfigError("the pipeline already has a preselect pass")
    if weights is True:
        _, record = load_selection_model(str(model))
        if not record.get("weights_model"):
            raise ModelError(f"selection model {model} names no reweighting model (train it with mambah train selection)")
        weights = str((Path(model).resolve().parent / str(record["weights_model"])).resolve())
    pre = Preselect(model=str(model), retention=retention, threshold=threshold,
                    decay=pipeline_decay(pipeline), pipeline=pipeline_digest(pipeline), mode=mode,
                    weights=str(weights or ""), drop_skipped=drop_skipped)
    gen = pipeline.passes[0]
    if drop_skipped and hasattr(gen, "defer_truth"):  # the skipped events' truth is then never written
        gen = dataclasses.replace(gen, defer_truth=True)  # type: ignore[call-arg]
    passes = (gen, pre, *pipeline.passes[1:])
    return Pipeline(passes, pipeline.run)
