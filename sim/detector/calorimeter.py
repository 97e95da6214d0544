"""The fast calorimeter: a convolutional shower GAN, and the ``calorimeter`` pass.

Fast shower model.  A conditional convolutional generator
(:mod:`sim.training.image_gan`) draws the ``30 x 30`` matrix of energy deposits on
20.2 mm fine cells around a particle's ECAL entry point (the LHCb ECAL GAN's output;
its inputs, the entry point and momentum, enter here as the physically equivalent
:data:`CONDITIONS`): the position of the entry point inside its fine cell
``(u_x, u_y)``, the slopes ``(tx, ty)``, ``log10(E/MeV)`` and the response class
(photon / electron / hadron / muon as one-hot flags).  The matrix is factorised into a
shape (the image normalised to unit sum, learned in log space) and the total
``r = sum / E`` as the scalar ``t = asinh((r - 1) / σ_nom(E))``, with the fixed
``σ_nom(E)/E = 10 %/√E ⊕ 1 %`` (a transform, not the physics: it puts the 1.5 %
spread at 100 GeV and the 10 % at 1 GeV on one scale, and the MIP and hadronic totals
of a few per cent of E in the compressed tail).  The generator is trained on the
reference ECAL (:mod:`sim.reference.ecal`) with WGAN-GP and an auxiliary regressor of
the shower metrics (barycentre, width, asymmetries), see :func:`train_calorimeter`.

Units: MeV, mm.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from mambah.errors import DataError, ModelError
from sim.detector.ecal_geometry import ECALGeometry, ECALLayout, grid_offset

__all__ = (
    "CONDITIONS",
    "SHOWER_COLUMNS",
    "matrices_to_targets",
    "nominal_resolution",
    "read_showers",
    "shower_conditions",
    "targets_to_matrices",
    "train_calorimeter",
)

log = logging.getLogger(__name__)

CONDITIONS: tuple[str, ...] = ("u_x", "u_y", "tx", "ty", "log10_e", "is_electron", "is_hadron", "is_muon")
"""Conditions of the shower generator, in its input order."""
SCALARS: tuple[str, ...] = ("total",)
"""Scalar outputs after the image: ``asinh((sum/E - 1)/σ_nom(E))``."""
SHOWER_COLUMNS: tuple[str, ...] = ("pid", "energy", "x", "y", "tx", "ty", "matrix")
"""Columns of a shower training file (``matrix``: ``grid_n²`` deposits in MeV, row-major, row = y)."""
NOMINAL_STOCHASTIC = 0.10
NOMINAL_CONSTANT = 0.01


def nominal_resolution(energy: np.ndarray) -> np.ndarray:
    """The fixed ``σ/E = 10 %/√E[GeV] ⊕ 1 %`` of the total's transform, ``(n,)``."""
    e_gev = np.asarray(energy, dtype=np.float64) / 1000.0
    return np.sqrt(NOMINAL_STOCHASTIC**2 / e_gev + NOMINAL_CONSTANT**2)


def _type_flags(pid: np.ndarray) -> np.ndarray:
    a = np.abs(np.asarray(pid, dtype=np.int64))
    is_e = a == 11
    is_mu = a == 13
    is_had = (a != 22) & ~is_e & ~is_mu
    return np.column_stack([is_e, is_had, is_mu]).astype(np.float64)


def shower_conditions(
    pid: np.ndarray, energy: np.ndarray, x: np.ndarray, y: np.ndarray, tx: np.ndarray, ty: np.ndarray,
    geometry: ECALLayout | None = None,
) -> np.ndarray:
    """``(n, 8)`` generator conditions (:data:`CONDITIONS`) of particles at the ECAL.

    Args:
        pid: ``(n,)`` PDG ids; energy: ``(n,)`` MeV; x, y: ``(n,)`` entry point (mm);
        tx, ty: ``(n,)`` slopes at the ECAL.
        geometry: the ECAL layout (fine-grid pitch).
    """
    geo = geometry or ECALGeometry()
    ux, uy = grid_offset(x, y, geo)
    e = np.asarray(energy, dtype=np.float64)
    if np.any(~np.isfinite(e)) or np.any(e <= 0):
        raise DataError("shower_conditions: energy must be positive and finite (MeV)")
    return np.column_stack([ux, uy, np.asarray(tx, dtype=np.float64), np.asarray(ty, dtype=np.float64),
                            np.log10(e), _type_flags(pid)])


def matrices_to_targets(matrices: np.ndarray, energy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Split deposit matrices into unit-sum shapes and the transformed total.

    Args:
        matrices: ``(n, g, g)`` deposits (MeV).
        energy: ``(n,)`` particle energies (MeV).

    Returns:
        ``(shapes (n, g, g), total (n, 1))``; empty matrices get a zero shape and ``r = 0``.
    """
    m = np.asarray(matrices, dtype=np.float64)
    tot = m.sum(axis=(1, 2))
    safe = np.where(tot > 0, tot, 1.0)
    shapes = m / safe[:, None, None]
    r = tot / np.asarray(energy, dtype=np.float64)
    return shapes, np.arcsinh((r - 1.0) / nominal_resolution(energy))[:, None]


def targets_to_matrices(outputs: np.ndarray, energy: np.ndarray, eps: float, grid_n: int) -> np.ndarray:
    """Generator outputs (transformed pixels, then the total) → ``(n, g, g)`` deposits (MeV)."""
    from sim.training.image_gan import PixelTransform

    out = np.asarray(outputs, dtype=np.float64)
    g2 = grid_n * grid_n
    pix = PixelTransform(eps).inverse(out[:, :g2]).reshape(-1, grid_n, grid_n)
    tot = pix.sum(axis=(1, 2))
    shapes = pix / np.where(tot > 0, tot, 1.0)[:, None, None]
    e = np.asarray(energy, dtype=np.float64)
    r = np.clip(1.0 + nominal_resolution(e) * np.sinh(out[:, g2]), 0.0, None)
    return shapes * (r * e)[:, None, None]


def read_showers(data: str | Path | Mapping[str, Any], grid_n: int = 30) -> dict[str, np.ndarray]:
    """Read a shower file (Parquet, :data:`SHOWER_COLUMNS`) or mapping into arrays.

    Raises:
        DataError: missing file or column, wrong matrix width, NaN/inf.
    """
    if isinstance(data, Mapping):
        cols = dict(data)
    else:
        import pyarrow.parquet as pq  # type: ignore[import-untyped]

        path = Path(data)
        if not path.is_file():
            raise DataError(f"shower file {path} does not exist")
        try:
            table = pq.read_table(path)
        except Exception as err:  # pyarrow raises several types for a bad file
            raise DataError(f"cannot read shower file {path}: {err}") from err
        cols = {name: table.column(name) for name in table.column_names}
    missing = [c for c in SHOWER_COLUMNS if c not in cols]
    if missing:
        raise DataError(f"shower data lack column(s) {missing}; expected {list(SHOWER_COLUMNS)}")
    out = {c: np.asarray(cols[c], dtype=np.float64) for c in SHOWER_COLUMNS if c != "matrix"}
    mat = cols["matrix"]
    if hasattr(mat, "combine_chunks"):
        mat = mat.combine_chunks()
    if hasattr(mat, "flatten"):
        flat = np.asarray(mat.flatten(), dtype=np.float64) if not isinstance(mat, np.ndarray) else mat
    else:
        flat = np.asarray(mat, dtype=np.float64)
    n = out["pid"].shape[0]
    try:
        out["matrix"] = np.asarray(flat, dtype=np.float64).reshape(n, grid_n, grid_n)
    except ValueError as err:
        raise DataError(f"shower data: matrix column does not hold {grid_n}x{grid_n} values per row") from err
    for c, arr in out.items():
        if not np.all(np.isfinite(arr)):
            raise DataError(f"shower data: column {c!r} holds NaN or inf")
    return out


def train_calorimeter(
    data: str | Path | Mapping[str, Any],
    *,
    epochs: int = 12,
    seed: int = 0,
    batch_size: int = 128,
    learning_rate: float = 5e-4,
    aux_weight: float = 0.1,
    progress: bool = False,
    **_: Any,
) -> Any:
    """Train the fast shower generator on a shower file (e.g. from the reference ECAL).

    Args:
        data: Parquet file or mapping with :data:`SHOWER_COLUMNS`.
        epochs, seed, batch_size, learning_rate, aux_weight: training settings
            (:func:`sim.training.image_gan.train_image_gan`).
        progress: progress bar.

    Returns:
        The :class:`~sim.core.io.TrainedModel` (save it with ``save_model``).
    """
    from sim.training.image_gan import train_image_gan

    geo = ECALGeometry()
    d = read_showers(data, int(geo.grid_n))
    if np.any(d["energy"] <= 0):
        raise DataError("shower data: energy must be positive (MeV)")
    cond = shower_conditions(d["pid"], d["energy"], d["x"], d["y"], d["tx"], d["ty"], geo)
    shapes, total = matrices_to_targets(d["matrix"], d["energy"])
    data_file = None if isinstance(data, Mapping) else str(data)
    return train_image_gan(
        cond, shapes, total, algorithm="wgan-gp", epochs=epochs, batch_size=batch_size, seed=seed,
        learning_rate=learning_rate, aux_weight=aux_weight, progress=progress,
        condition_names=CONDITIONS, scalar_names=SCALARS,
        provenance={"data_file": data_file, "model": "calorimeter", "card": "default"},
    )


def load_shower_model(path: str | None = None, pass_name: str = "calorimeter") -> Any:
    """Load the shower generator (default ``sim/models/calorimeter.keras``) as a CompiledModel.

    Raises:
        ModelError: missing/corrupt model, wrong inputs, or not an image generator.
    """
    from sim.core.modelio import CompiledModel, load_pass_model

    trained = load_pass_model(path, "calorimeter", kind="generator", inputs=CONDITIONS, pass_name=pass_name)
    image = trained.provenance.get("image")
    g = int(ECALGeometry().grid_n)
    if not isinstance(image, dict) or list(image.get("shape", [])) != [g, g]:
        raise ModelError(f"pass {pass_name!r}: model is not a {g}x{g} shower generator (provenance 'image' is {image!r})")
    return CompiledModel(trained)


def generate_showers(
    model: Any, pid: np.ndarray, energy: np.ndarray, x: np.ndarray, y: np.ndarray, tx: np.ndarray,
    ty: np.ndarray, rng: np.random.Generator, geometry: ECALLayout | None = None,
) -> np.ndarray:
    """``(n, g, g)`` deposit matrices (MeV) drawn from the fast model."""
    geo = geometry or ECALGeometry()
    e = np.asarray(energy, dtype=np.float64)
    if e.shape[0] == 0:
        return np.zeros((0, geo.grid_n, geo.grid_n))
    out = model.sample(shower_conditions(pid, e, x, y, tx, ty, geo), rng)
    eps = float(model.trained.provenance["image"]["eps"])
    return targets_to_matrices(out, e, eps, int(geo.grid_n))
