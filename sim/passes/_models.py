"""Shared pieces of the detector passes: the truth query, feature builders, model loading.

The acceptance, efficiency and resolution passes all start from the same truth:
final-state charged particles of ``mc_particles`` (neutrinos excluded) joined with
their production vertex (``mc_vertices`` on ``prod_vertex``) and the event's primary
vertex and occupancy (``events``).  The SQL lives here once (:func:`truth_sql`), as does
the pure-numpy feature builder (:func:`truth_features`) that the passes, the reference
sample writer (:mod:`sim.reference_sample`) and the trainers share, so a model always
sees the features it was trained on.

Units: MeV, mm; ``log10_p`` is log10(p / MeV).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mambah.errors import DataError, ModelError

if TYPE_CHECKING:
    from sim.training.io import TrainedModel

__all__ = (
    "MODELS_DIR",
    "TRACK_TYPES",
    "TRUTH_COLUMNS",
    "truth_sql",
    "truth_features",
    "forward_mask",
    "model_path",
    "load_pass_model",
    "check_inputs_finite",
    "feature_matrix",
    "arrow_columns",
    "query_truth",
    "read_training_data",
    "add_derived",
    "CompiledModel",
)

log = logging.getLogger(__name__)

#: Directory of the shipped default models (package data).
MODELS_DIR = Path(__file__).resolve().parent.parent / "models"

#: Track type codes in class order of the efficiency classifier: none, Long, Upstream, Downstream.
TRACK_TYPES: tuple[int, ...] = (0, 3, 4, 5)

#: Columns returned by :func:`truth_sql` (plus ``in_acceptance`` when asked).
TRUTH_COLUMNS: tuple[str, ...] = (
    "event", "mc_index", "pid", "charge", "px", "py", "pz", "e",
    "origin_x", "origin_y", "origin_z", "pv_x", "pv_y", "pv_z", "n_tracks",
)  # fmt: skip

_NEUTRINOS = "12, 14, 16"


def truth_sql(*, with_acceptance: bool = False, accepted_only: bool = False) -> str:
    """SQL of the truth inputs of one batch: final-state charged particles, not neutrinos.

    Args:
        with_acceptance: also select ``mc_particles.in_acceptance``.
        accepted_only: keep only particles with ``in_acceptance`` true.

    Returns:
        SQL text with ``$batch`` placeholders; rows ordered by (event, mc_index).
        ``n_tracks`` is 0 where the occupancy pass has not filled it.
    """
    extra = ", p.in_acceptance" if with_acceptance else ""
    cut = " AND p.in_acceptance" if accepted_only else ""
    return f"""
        SELECT p.event, p."index" AS mc_index, p.pid, p.charge, p.px, p.py, p.pz, p.e,
               v.x AS origin_x, v.y AS origin_y, v.z AS origin_z,
               e.pv_x, e.pv_y, e.pv_z, coalesce(e.n_tracks, 0) AS n_tracks{extra}
        FROM mc_particles AS p
        JOIN mc_vertices AS v ON v.batch = p.batch AND v.event = p.event AND v."index" = p.prod_vertex
        JOIN events AS e ON e.batch = p.batch AND e.event = p.event
        WHERE p.batch = $batch AND v.batch = $batch AND e.batch = $batch
          AND p.decay_vertex < 0 AND p.charge <> 0 AND abs(p.pid) NOT IN ({_NEUTRINOS}){cut}
        ORDER BY p.event, p."index"
    """


def _arrow_to_numpy(table: Any) -> dict[str, np.ndarray]:
    """Arrow table → dict of 1-D numpy arrays (no nulls expected)."""
    return {name: table.column(name).to_numpy(zero_copy_only=False) for name in table.column_names}


def truth_features(truth: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Model features of particles from their truth (pure, vectorised).

    Args:
        truth: 1-D arrays of length n: ``px, py, pz`` (MeV), ``charge`` (e),
            ``origin_x/y/z`` and ``pv_x/y/z`` (mm), ``n_tracks``.

    Returns:
        Dict of float64 arrays of length n: ``p, pt`` (MeV), ``log10_p, log10_pt``,
        ``eta, phi``, ``tx_true, ty_true`` (slopes), ``charge``, ``origin_x/y/z``,
        ``origin_rho`` (transverse distance of the origin from the beam line through the
        PV, mm), ``origin_dz`` (origin z − PV z, mm), ``n_tracks``.
    """
    px, py, pz = (np.asarray(truth[k], dtype=np.float64) for k in ("px", "py", "pz"))
    pt = np.hypot(px, py)
    p = np.sqrt(pt * pt + pz * pz)
    safe_pt = np.where(pt > 0, pt, 1e-9)
    safe_pz = np.where(pz != 0, pz, 1e-9)
    ox, oy, oz = (np.asarray(truth[k], dtype=np.float64) for k in ("origin_x", "origin_y", "origin_z"))
    pvx, pvy, pvz = (np.asarray(truth[k], dtype=np.float64) for k in ("pv_x", "pv_y", "pv_z"))
    return {
        "p": p,
        "pt": pt,
        "log10_p": np.log10(np.maximum(p, 1e-9)),
        "log10_pt": np.log10(safe_pt),
        "eta": np.arcsinh(pz / safe_pt),
        "phi": np.arctan2(py, px),
        "tx_true": px / safe_pz,
        "ty_true": py / safe_pz,
        "charge": np.asarray(truth["charge"], dtype=np.float64),
        "origin_x": ox,
        "origin_y": oy,
        "origin_z": oz,
        "origin_rho": np.hypot(ox - pvx, oy - pvy),
        "origin_dz": oz - pvz,
        "n_tracks": np.asarray(truth["n_tracks"], dtype=np.float64),
    }


def forward_mask(features: Mapping[str, np.ndarray], eta_min: float, eta_max: float) -> np.ndarray:
    """``pz > 0`` and ``eta_min < η < eta_max``: the geometric window of the detector (bool, (n,))."""
    eta = features["eta"]
    return (eta > eta_min) & (eta < eta_max)


def model_path(path: str | None, default_name: str) -> Path:
    """The model file of a pass: ``path`` or the shipped ``sim/models/<default_name>.keras``."""
    return Path(path) if path else MODELS_DIR / f"{default_name}.keras"


def load_pass_model(
    path: str | None,
    default_name: str,
    *,
    kind: str,
    inputs: Sequence[str],
    outputs: Sequence[str] | None = None,
    pass_name: str,
) -> TrainedModel:  # the passes wrap it in CompiledModel
    """Load a pass's model and check it against the pass configuration.

    Raises:
        ModelError: missing/corrupt file or sidecar, wrong model kind, input features
            (or outputs) differing from the pass's, naming the pass and the file.
    """
    from sim.training.io import load_model

    file = model_path(path, default_name)
    try:
        model = load_model(file)
    except ModelError as err:
        raise ModelError(f"pass {pass_name!r}: {err}") from err
    if model.kind != kind:
        raise ModelError(f"pass {pass_name!r}: model {file} is a {model.kind}, expected a {kind}")
    if tuple(model.input_names) != tuple(inputs):
        raise ModelError(
            f"pass {pass_name!r}: model {file} takes inputs {list(model.input_names)}, "
            f"but the pass feeds {list(inputs)}; retrain it with 'mambah train' or set the pass inputs"
        )
    if outputs is not None and tuple(model.output_names) != tuple(outputs):
        raise ModelError(
            f"pass {pass_name!r}: model {file} has outputs {list(model.output_names)}, expected {list(outputs)}"
        )
    log.info("pass %s: loaded %s model %s", pass_name, kind, file)
    return model


def check_inputs_finite(features: Mapping[str, np.ndarray], names: Sequence[str], where: str) -> None:
    """Raise :class:`DataError` naming the first input column that holds NaN or inf."""
    for name in names:
        values = features[name]
        if not np.all(np.isfinite(values)):
            raise DataError(f"{where}: input column {name!r} holds NaN or inf")


def feature_matrix(features: Mapping[str, np.ndarray], names: Sequence[str], where: str) -> np.ndarray:
    """``(n, len(names))`` float64 matrix of the named features, checked finite."""
    missing = [name for name in names if name not in features]
    if missing:
        raise DataError(f"{where}: unknown input feature(s) {missing}; available: {sorted(features)}")
    check_inputs_finite(features, names, where)
    if not names:
        n = len(next(iter(features.values()))) if features else 0
        return np.zeros((n, 0))
    return np.column_stack([np.asarray(features[name], dtype=np.float64) for name in names])


_TRUTH_FLOATS = ("px", "py", "pz", "origin_x", "origin_y", "origin_z", "pv_x", "pv_y", "pv_z")


def query_truth(ctx: Any, sql: str, where: str) -> dict[str, np.ndarray]:
    """Run a truth query in a batch and check its kinematics and vertices are finite.

    Raises:
        DataError: naming the pass, the column and the batch when a value is NaN or inf.
    """
    truth = _arrow_to_numpy(ctx.query(sql))
    present = [c for c in _TRUTH_FLOATS if c in truth]
    check_inputs_finite(truth, present, f"{where}, batch {ctx.batch.batch}")
    return truth


def arrow_columns(table: Any) -> dict[str, np.ndarray]:
    """Arrow table → dict of 1-D numpy arrays."""
    return _arrow_to_numpy(table)


def read_training_data(
    path: str | Path,
    columns: Sequence[str],
    *,
    weight: str | None = None,
    select: str | None = None,
    tree: str | None = None,
) -> dict[str, np.ndarray]:
    """Read training columns with :func:`sim.training.read_columns`, keep rows where ``select`` is true.

    ``tree`` names the TTree of a ROOT file (default: its first TTree).

    Raises:
        DataError: missing file or column (named), NaN/inf, absent weight column, no rows left.
    """
    from sim.training.data import read_columns

    wanted = list(dict.fromkeys([*columns, *([select] if select else [])]))
    data = read_columns(path, wanted, weight=weight, tree=tree)
    if select:
        keep = np.asarray(data[select]).astype(bool)
        data = {k: np.asarray(v)[keep] for k, v in data.items()}
    n = len(next(iter(data.values())))
    if n < 10:
        raise DataError(f"{path}: only {n} usable rows{f' with {select!r} true' if select else ''}; need at least 10")
    return data


def train_pass_classifier(
    data: str | Path,
    inputs: Sequence[str],
    target: str,
    *,
    n_classes: int,
    output_names: Sequence[str],
    weight: str | None,
    select: str | None,
    tree: str | None,
    provenance: Mapping[str, Any],
    **settings: Any,
) -> Any:
    """Read a training file and train a pass classifier on it (acceptance, efficiency).

    ``settings`` go to :func:`sim.training.train_classifier` (seed, epochs, batch_size,
    hidden, learning_rate, progress); inputs use 300 quantiles.
    """
    from sim.training.classifier import train_classifier

    cols = read_training_data(data, [*inputs, target], weight=weight, tree=tree, select=select)
    x = np.column_stack([np.asarray(cols[c], dtype=np.float64) for c in inputs])
    return train_classifier(
        x, np.asarray(cols[target]).astype(np.int64), cols[weight] if weight else None,
        n_classes=n_classes, n_quantiles=300, input_names=tuple(inputs), output_names=tuple(output_names),
        provenance={"data_file": str(data), "target": target, "select": select, **provenance},
        **settings,
    )


def add_derived(data: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Add the one-hot track-type flags ``is_long, is_upstream, is_downstream`` if ``track_type`` is there."""
    if "track_type" in data:
        tt = np.asarray(data["track_type"])
        data = {**data, "is_long": (tt == 3).astype(np.float64), "is_upstream": (tt == 4).astype(np.float64),
                "is_downstream": (tt == 5).astype(np.float64)}
    return data


class _OneTracePerModel(logging.Filter):
    """Drop TensorFlow's "N out of the last N calls ... triggered tf.function retracing".

    Every :class:`CompiledModel` owns one ``tf.function`` with a fixed signature that is
    traced exactly once; building the ~20 models of the default pipeline one after the
    other looks like retracing to TensorFlow's heuristic, which would print a misleading
    warning on every ``mambah run``.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return "triggered tf.function retracing" not in record.getMessage()


_RETRACE_FILTER = _OneTracePerModel()


class CompiledModel:
    """A loaded model with its network wrapped in one ``tf.function`` (about 2x faster than eager calls).

    Same results as :meth:`TrainedModel.predict_proba` / :meth:`TrainedModel.sample`
    (same preprocessing, same noise draws); the graph has a fixed ``(None, width)``
    float32 signature, so it is traced once whatever the batch size.

    Args:
        trained: the :class:`sim.training.TrainedModel`.
        chunk: rows per network call.
    """

    def __init__(self, trained: TrainedModel, chunk: int = 262_144) -> None:
        import tensorflow as tf

        tf.get_logger().addFilter(_RETRACE_FILTER)  # idempotent: a filter is added once
        self.trained = trained
        self.chunk = int(chunk)
        net = trained.model
        width = int(net.input_shape[-1])
        self._width = width
        self._fn = tf.function(
            lambda x: net(x, training=False),
            input_signature=[tf.TensorSpec([None, width], tf.float32)],
            reduce_retracing=True,
        )

    def _run(self, x: np.ndarray) -> np.ndarray:
        outs = [self._fn(x[i : i + self.chunk]).numpy() for i in range(0, x.shape[0], self.chunk)]
        if not outs:
            return np.zeros((0, int(self.trained.model.output_shape[-1])), dtype=np.float32)
        return np.concatenate(outs, axis=0)

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        """``(n, d)`` raw features → ``(n,)`` (binary) or ``(n, k)`` class probabilities."""
        z = self.trained.input_preprocessor.transform(np.asarray(x, dtype=np.float64))
        proba = self._run(np.ascontiguousarray(z, dtype=np.float32))
        return proba[:, 0] if proba.shape[1] == 1 else proba

    def sample(self, conditions: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """``(n, c)`` raw conditions → ``(n, t)`` generated targets in raw units."""
        from sim.training.preprocessing import inverse_transform

        raw = cond = np.asarray(conditions, dtype=np.float64)
        if cond.shape[1]:
            cond = self.trained.input_preprocessor.transform(cond)
        noise = rng.standard_normal((cond.shape[0], self.trained.n_noise), dtype=np.float32)
        x = np.concatenate([cond.astype(np.float32), noise], axis=1)
        return inverse_transform(self.trained.output_preprocessor, self._run(x), raw)
