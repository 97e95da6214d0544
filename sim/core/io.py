"""Trained fast models: the :class:`TrainedModel` record, saving and loading.

A model on disk is two files side by side:

* ``name.keras``: the Keras native archive (architecture + weights, standard layers
  only, loaded with ``safe_mode=True``);
* ``name.json``: the sidecar, everything the simulation needs besides the network::

    {
      "format": "mambah-model", "format_version": 1,
      "kind": "classifier" | "generator",
      "inputs": ["p", "eta", ...],            # feature names, model input order
      "outputs": ["eff"] | ["dp", ...],      # output names
      "n_noise": 0 | 64,                      # generator noise width (0: classifier)
      "preprocessing": {"inputs": {...}, "outputs": {...}},  # to_dict() forms
      "history": {"loss": [...], ...},        # per-epoch losses
      "provenance": {"date": ISO-8601 UTC, "seed": int, "algorithm": str,
                     "data_file": str | null, "versions": {...}, "git_sha": str | null, ...}
    }
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import json
import logging
import os
import platform
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mambah.errors import ConfigError, DataError, ModelError
from sim.core.preprocessing import Preprocessor, inverse_transform, preprocessor_from_dict

__all__ = ("TrainedModel", "save_model", "load_model", "check_model_output", "probe_folder", "provenance_defaults")

log = logging.getLogger(__name__)

FORMAT = "mambah-model"
FORMAT_VERSION = 1
KINDS = ("classifier", "generator")
#: Rows per call of the network in ``predict_proba`` / ``sample``.
CHUNK = 262_144


def _git_sha() -> str | None:
    try:
        result = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    sha = result.stdout.strip()
    return sha if result.returncode == 0 and sha else None


def provenance_defaults() -> dict[str, Any]:
    """Date (UTC), library versions and git sha of the code, for a model's provenance."""
    from importlib import metadata

    versions: dict[str, str | None] = {"python": platform.python_version(), "numpy": np.__version__}
    for dist in ("mambah", "tensorflow", "keras", "scikit-learn"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = None
    return {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "versions": versions,
        "git_sha": _git_sha(),
    }


def _as_matrix(x: Any, names: Sequence[str], what: str) -> np.ndarray:
    """``(n, d)`` array, or a mapping name → ``(n,)`` array taken in ``names`` order."""
    if isinstance(x, Mapping):
        missing = [n for n in names if n not in x]
        if missing:
            raise DataError(f"{what}: missing column(s) {missing}; given: {sorted(x)}")
        x = np.column_stack([np.asarray(x[n], dtype=np.float64) for n in names])
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim == 1 and len(names) == 1:
        arr = arr[:, None]
    if arr.ndim != 2 or arr.shape[1] != len(names):
        raise DataError(f"{what}: expected shape (n, {len(names)}) for {list(names)}, got {arr.shape}")
    return arr


@dataclass
class TrainedModel:
    """A trained network with everything needed to apply it.

    Attributes:
        model: the ``keras.Model`` (classifier: ``(n, d) → (n, k)`` probabilities;
            generator: ``(n, c + n_noise) → (n, t)`` preprocessed targets).
        kind: ``"classifier"`` or ``"generator"``.
        input_names: feature (classifier) or condition (generator) names, input order.
        output_names: class names / target names.
        input_preprocessor: transform applied to the raw inputs.
        output_preprocessor: generator: transform of the targets (inverted on output);
            classifier: ``Identity``.
        n_noise: generator noise width (0 for classifiers).
        provenance: date, seed, algorithm, data file, versions, git sha, ...
        history: per-epoch training losses, name → list of floats.
    """

    model: Any
    kind: str
    input_names: tuple[str, ...]
    output_names: tuple[str, ...]
    input_preprocessor: Preprocessor
    output_preprocessor: Preprocessor
    n_noise: int = 0
    provenance: dict[str, Any] = field(default_factory=dict)
    history: dict[str, list[float]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ConfigError(f"unknown model kind {self.kind!r}; known: {list(KINDS)}")
        self.input_names = tuple(self.input_names)
        self.output_names = tuple(self.output_names)

    def _run(self, x: np.ndarray) -> np.ndarray:
        """Network on ``(n, width)`` float32 rows in chunks of :data:`CHUNK`."""
        outs = [
            np.asarray(self.model(x[i : i + CHUNK], training=False))
            for i in range(0, x.shape[0], CHUNK)
        ]
        if not outs:
            return np.zeros((0, int(self.model.output_shape[-1])), dtype=np.float32)
        return np.concatenate(outs, axis=0)

    def predict_proba(self, x: Any) -> np.ndarray:
        """Class probabilities of a classifier.

        Args:
            x: ``(n, d)`` raw features in ``input_names`` order, or a mapping
                name → ``(n,)`` array.

        Returns:
            ``(n,)`` P(pass) for a binary classifier, ``(n, k)`` for ``k`` classes.
        """
        if self.kind != "classifier":
            raise ModelError(f"predict_proba needs a classifier, this model is a {self.kind}")
        z = self.input_preprocessor.transform(_as_matrix(x, self.input_names, "predict_proba"))
        proba = self._run(z.astype(np.float32))
        return proba[:, 0] if proba.shape[1] == 1 else proba

    def sample(self, conditions: Any, rng_or_seed: np.random.Generator | int) -> np.ndarray:
        """Draw one generated target vector per row of ``conditions``.

        Args:
            conditions: ``(n, c)`` raw conditions in ``input_names`` order, or a mapping
                name → ``(n,)`` array.
            rng_or_seed: numpy Generator or integer seed; the noise is
                ``rng.standard_normal((n, n_noise))``.

        Returns:
            ``(n, t)`` float64 targets in raw units, columns in ``output_names`` order.
        """
        if self.kind != "generator":
            raise ModelError(f"sample needs a generator, this model is a {self.kind}")
        rng = (
            rng_or_seed
            if isinstance(rng_or_seed, np.random.Generator)
            else np.random.default_rng(rng_or_seed)
        )
        raw = _as_matrix(conditions, self.input_names, "sample")
        cond = self.input_preprocessor.transform(raw)
        noise = rng.standard_normal((cond.shape[0], self.n_noise), dtype=np.float32)
        x = np.concatenate([cond.astype(np.float32), noise], axis=1)
        return inverse_transform(self.output_preprocessor, self._run(x), raw)


def _sidecar(path: Path) -> Path:
    return path.with_suffix(".json")


def save_model(trained: TrainedModel, path: str | Path) -> Path:
    """Write ``path`` (Keras native ``.keras``) and its JSON sidecar ``path.with_suffix('.json')``.

    Missing provenance entries (date, versions, git sha) are filled in.

    Returns:
        The ``.keras`` path.

    Raises:
        ConfigError: ``path`` does not end in ``.keras``.
    """
    path = Path(path)
    if path.suffix != ".keras":
        raise ConfigError(f"model path {path} must end in '.keras'")
    path.parent.mkdir(parents=True, exist_ok=True)
    provenance = {**provenance_defaults(), **trained.provenance}
    sidecar = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "kind": trained.kind,
        "inputs": list(trained.input_names),
        "outputs": list(trained.output_names),
        "n_noise": int(trained.n_noise),
        "preprocessing": {
            "inputs": trained.input_preprocessor.to_dict(),
            "outputs": trained.output_preprocessor.to_dict(),
        },
        "history": {k: [float(v) for v in vals] for k, vals in trained.history.items()},
        "provenance": provenance,
    }
    text = json.dumps(sidecar, indent=1, default=str)
    try:
        trained.model.save(path)
        _sidecar(path).write_text(text)
    except OSError as err:  # a read-only file system, a full disk: no half-written pair is left
        for written in (path, _sidecar(path)):
            with contextlib.suppress(OSError):
                written.unlink()
        raise ModelError(f"cannot write model {path}: {err.strerror or err}") from err
    log.info("saved %s model to %s (+ %s)", trained.kind, path, _sidecar(path).name)
    return path


def check_model_output(path: str | Path) -> Path:
    """Check, before any training, that the model ``path`` (and its sidecar) can be written.

    Writes (and removes at once) a probe file in the nearest existing directory on the
    way to ``path``; the missing directories are made only by :func:`save_model`.

    Raises:
        ConfigError: ``path`` does not end in ``.keras``.
        ModelError: that directory cannot be written, or a file stands where a directory must be.
    """
    path = Path(path)
    if path.suffix != ".keras":
        raise ConfigError(f"model path {path} must end in '.keras'")
    try:
        probe_folder(path.absolute().parent)
    except NotADirectoryError as err:
        raise ModelError(f"cannot write model {path}: '{err.filename}' is not a directory") from None
    except OSError as err:
        raise ModelError(f"cannot write model {path}: {err.strerror or err}") from err
    return path


def probe_folder(path: str | Path) -> Path:
    """The nearest existing folder at or above ``path``, checked to take a new file (a probe
    file written and removed at once; nothing else is made).

    The one check of "can this output be written" that the commands run before long work
    (:func:`check_model_output`, ``mambah validate --report``).

    Raises:
        NotADirectoryError: a file stands there (``filename``: that file).
        OSError: the folder takes no new file (``filename``: the folder, ``strerror``: why).
    """
    where = Path(path).absolute()
    while not where.exists() and where != where.parent:
        where = where.parent
    if not where.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, "not a directory", str(where))
    probe = where / f".mambah-probe-{os.getpid()}"
    try:
        probe.write_bytes(b"")
    except OSError as err:
        raise OSError(err.errno, err.strerror or str(err), str(where)) from err
    finally:
        with contextlib.suppress(OSError):
            probe.unlink()
    return where


def load_model(path: str | Path, expect_inputs: Sequence[str] | None = None, *,
               inference: bool = False) -> TrainedModel:
    """Load a model written by :func:`save_model` (``safe_mode=True``: no Python code runs).

    Args:
        path: the ``.keras`` file; its sidecar ``.json`` must sit next to it.
        expect_inputs: if given, the input names the caller will feed, in order.
        inference: the caller only runs the network forward: read it as a
            :class:`sim.core.netgraph.GraphNet` (no Keras import, same outputs) when its
            layers allow, else load it with Keras.  ``model`` cannot be trained or saved then.

    Raises:
        ModelError: missing ``.keras`` or sidecar, corrupt archive or JSON, a model that
            needs unsafe deserialisation (``Lambda`` layers), inconsistent shapes, or
            input names differing from ``expect_inputs``; the message names the path.
    """
    path = Path(path)
    sidecar_path = _sidecar(path)
    if not path.is_file():
        if path.is_dir():
            raise ModelError(f"model file {path} is a directory; give the .keras file (its .json sidecar next to it)")
        raise ModelError(f"model file {path} does not exist")
    if not sidecar_path.is_file():
        raise ModelError(f"model file {path} has no sidecar {sidecar_path.name} next to it")
    try:
        meta = json.loads(sidecar_path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ModelError(f"sidecar {sidecar_path} is not valid JSON: {err}") from err
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ModelError(f"sidecar {sidecar_path} is not a {FORMAT!r} file")
    if meta.get("format_version") != FORMAT_VERSION:
        raise ModelError(
            f"sidecar {sidecar_path} has format_version {meta.get('format_version')!r}; "
            f"this Mambah reads {FORMAT_VERSION}"
        )
    model: Any = None
    if inference:
        from sim.core.netgraph import read_network

        model = read_network(path)
    if model is None:
        import zipfile

        if not zipfile.is_zipfile(path):  # Keras would say "File not found" of a file that is there
            raise ModelError(f"cannot load model {path}: BadZipFile: File is not a zip file (a .keras model is a zip archive)")
        import keras

        try:
            model = keras.saving.load_model(path, compile=False, safe_mode=True)
        except Exception as err:  # zipfile, h5py, json and Keras errors alike
            raise ModelError(f"cannot load model {path}: {type(err).__name__}: {err}") from err
    try:
        prep = meta["preprocessing"]
        trained = TrainedModel(
            model=model,
            kind=meta["kind"],
            input_names=tuple(meta["inputs"]),
            output_names=tuple(meta["outputs"]),
            input_preprocessor=preprocessor_from_dict(prep["inputs"]),
            output_preprocessor=preprocessor_from_dict(prep["outputs"]),
            n_noise=int(meta["n_noise"]),
            provenance=dict(meta.get("provenance", {})),
            history={k: list(v) for k, v in meta.get("history", {}).items()},
        )
    except (KeyError, TypeError, ValueError) as err:
        raise ModelError(f"sidecar {sidecar_path} is malformed: {err}") from err
    width_in = int(model.input_shape[-1])
    n_in = len(trained.input_names) + trained.n_noise
    if width_in != n_in:
        raise ModelError(
            f"model {path} takes {width_in} inputs but its sidecar lists "
            f"{len(trained.input_names)} inputs + {trained.n_noise} noise"
        )
    if expect_inputs is not None and tuple(expect_inputs) != trained.input_names:
        raise ModelError(
            f"model {path} input mismatch: expected {list(expect_inputs)}, "
            f"found {list(trained.input_names)}"
        )
    return trained
