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

Model format: the standard :mod:`sim.core.io` archive; the network's single input
is the flattened ``(max_particles, len(SEQUENCE_FEATURES))`` sequence (names
``<feature>_<slot>``), reshaped and split inside the network with standard layers.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from mambah import kinematics
from mambah.errors import ConfigError, DataError, ModelError
from sim.core.pipeline import BatchContext, Kernel, Pass, Pipeline, RunConfig
from sim.core.registry import register_pass

__all__ = (
    "SEQUENCE_FEATURES",
    "PARTICLES_SQL",
    "Preselect",
    "event_sequences",
    "flat_input_names",
    "pipeline_digest",
    "pipeline_decay",
    "threshold_for",
    "with_preselect",
    "load_selection_model",
    "sample_keep",
    "MODES",
)

log = logging.getLogger(__name__)

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


def particles_sql(where: str = "true") -> str:
    """:data:`PARTICLES_SQL` over any batches (``where`` on ``p``, ``v``, ``e``), ordered by batch, event, index."""
    return _PARTICLES.format(where=where)


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
    key = np.asarray(parts["batch"], np.int64) * (1 << 24) + np.asarray(parts["event"], np.int64)
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
    """Digest of the passes of ``pipeline`` other than ``preselect`` (run settings excluded), 16 hex digits."""
    passes = tuple(p for p in pipeline.passes if p.kind != Preselect.kind)
    text = Pipeline(passes, RunConfig()).to_toml()
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
    from sim.core.io import load_model

    trained = load_model(path)
    record = trained.provenance.get("selection")
    if trained.kind != "classifier" or not isinstance(record, dict):
        raise ModelError(f"model {path} is not a selection model (its sidecar has no 'selection' record)")
    return trained, record


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
    """

    kind: ClassVar[str] = "preselect"
    reads: ClassVar[tuple[str, ...]] = ("events", "mc_particles", "mc_vertices")
    writes: ClassVar[tuple[str, ...]] = ("events.simulated", "events.preselect_score", "events.weight")

    name: str = "preselect"
    model: str = ""
    retention: float | None = None
    threshold: float | None = None
    decay: str = ""
    pipeline: str = ""
    mode: str = "threshold"

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ConfigError(f"pass {self.name!r}: mode={self.mode!r}; choose one of {list(MODES)}")
        if not self.model:
            raise ConfigError(f"pass {self.name!r}: give the selection model (model = 'selection.keras')")
        if (self.retention is None) == (self.threshold is None):
            raise ConfigError(f"pass {self.name!r}: give exactly one of retention (e.g. 0.99) or threshold")
        if self.retention is not None and not 0.0 < self.retention <= 1.0:
            raise ConfigError(f"pass {self.name!r}: retention={self.retention} must be in (0, 1]")
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

        def kernel(ctx: BatchContext) -> None:
            tab = ctx.query(PARTICLES_SQL)
            parts = {c: tab.column(c).to_numpy(zero_copy_only=False) for c in tab.column_names}
            keys, x = event_sequences(parts, vocabulary, max_particles)
            score = trained.predict_proba(x) if keys.size else np.zeros(0)
            weight = None
            if sample:
                keep, weight = sample_keep(score, threshold, ctx.rng(name))
            else:
                keep = score >= threshold
            log.debug("pass %r: batch %d keeps %d of %d events", name, ctx.batch.batch, int(keep.sum()), keep.size)
            ctx.update(
                "events",
                {"batch": (keys >> 24).astype(np.int32), "event": (keys & ((1 << 24) - 1)).astype(np.int32),
                 "simulated": keep, "preselect_score": score.astype(np.float32),
                 **({"weight": weight} if weight is not None else {})},
                keys=("batch", "event"),
            )

        return kernel


def with_preselect(
    pipeline: Pipeline, model: str, *, retention: float | None = None, threshold: float | None = None,
    mode: str = "threshold",
) -> Pipeline:
    """``pipeline`` with a :class:`Preselect` pass right after its generator.

    Raises:
        ConfigError: the pipeline already has a preselect pass.
    """
    if any(p.kind == Preselect.kind for p in pipeline.passes):
        raise ConfigError("the pipeline already has a preselect pass")
    pre = Preselect(model=str(model), retention=retention, threshold=threshold,
                    decay=pipeline_decay(pipeline), pipeline=pipeline_digest(pipeline), mode=mode)
    passes = (pipeline.passes[0], pre, *pipeline.passes[1:])
    return Pipeline(passes, pipeline.run)
