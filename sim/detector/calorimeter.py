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

import dataclasses
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from mambah.errors import ConfigError, DataError, ModelError
from sim.core.pipeline import BatchContext, Kernel, Pass
from sim.core.pixels import PixelTransform
from sim.core.registry import register_pass
from sim.detector.card import card
from sim.detector.ecal_geometry import (
    ECALGeometry,
    ECALLayout,
    bremsstrahlung,
    cell_geometry,
    cell_of,
    convert_photons,
    deposits_to_cells,
    digitise,
    ecal_entry,
    grid_offset,
)

__all__ = (
    "CONDITIONS",
    "HADRON_ENERGY_CONDITIONS",
    "SHOWER_COLUMNS",
    "matrices_to_targets",
    "nominal_resolution",
    "read_showers",
    "shower_conditions",
    "targets_to_matrices",
)

log = logging.getLogger(__name__)

CONDITIONS: tuple[str, ...] = ("u_x", "u_y", "tx", "ty", "log10_e", "is_electron", "is_hadron", "is_muon")
"""Conditions of the shower generator, in its input order."""
ENERGY_CONDITIONS: tuple[str, ...] = ("log10_e", "is_electron")
"""Conditions of the total-energy generator of e/γ showers (a subset of :data:`CONDITIONS`)."""
HADRON_ENERGY_CONDITIONS: tuple[str, ...] = ("log10_e", "is_muon")
"""Conditions of the total-energy generator of hadron and muon deposits (a subset of :data:`CONDITIONS`)."""
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
    """Generator outputs (transformed pixels, then the total) → ``(n, g, g)`` float32 deposits (MeV).

    The pixels are inverted (:class:`~sim.core.pixels.PixelTransform`) in float32 (relative
    round-off ~1e-6, far below the 1e-4 pixel scale ``eps``; half the memory traffic of
    float64 on the ``n x 900`` array); shower totals and energies in float64.
    """
    out = np.asarray(outputs)
    g2 = grid_n * grid_n
    return _pixels_to_matrices(out[:, :g2].astype(np.float32), np.asarray(out[:, g2], dtype=np.float64), energy, eps, grid_n)


def _pixels_to_matrices(pixels: np.ndarray, total: np.ndarray, energy: np.ndarray, eps: float, grid_n: int) -> np.ndarray:
    """:func:`targets_to_matrices` on the pixel block ``(n, g²)`` (float32) and the total ``(n,)`` (float64) apart.

    The pixel arithmetic runs in place on one float32 buffer (the same ufuncs on the same
    values as three temporaries: the same numbers, a third of the memory traffic).
    """
    norm = np.float32(PixelTransform(eps).norm)
    pix = np.maximum(np.asarray(pixels, dtype=np.float32), np.float32(0.0))  # a fresh array, written in place below
    np.multiply(pix, norm, out=pix)
    np.expm1(pix, out=pix)
    np.multiply(np.float32(eps), pix, out=pix)
    pix = pix.reshape(-1, grid_n, grid_n)
    flat = np.flatnonzero(pix.reshape(-1) > 0)
    tot = _shower_totals(flat // (grid_n * grid_n), pix.reshape(-1)[flat], pix.shape[0])
    e = np.asarray(energy, dtype=np.float64)
    r = np.clip(1.0 + nominal_resolution(e) * np.sinh(np.asarray(total, dtype=np.float64)), 0.0, None)
    scale = (r * e / np.where(tot > 0, tot, 1.0)).astype(np.float32)
    np.multiply(pix, scale[:, None, None], out=pix)
    return pix


def _shower_totals(shower: np.ndarray, values: np.ndarray, n: int) -> np.ndarray:
    """Each shower's sum (float64) of its positive transformed pixels ``values`` (float32, in C order).

    Summed one by one in C order (``np.bincount``), in both the dense and the sparse pixel
    transform, so the two give the same totals bit for bit.  Until issue #17's ninth stop the
    totals were numpy's pairwise sum over the whole 900-pixel row, zeros included: a different
    order of the same float64 additions (≈ 1e-16 relative), which can move the float32
    energy scale by its last bit; on a 500-event bb̄ batch (18 190 showers) no scale moved.
    """
    return np.bincount(np.asarray(shower, np.int64), weights=values, minlength=n)


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


@dataclass
class ShowerModel:
    """The loaded fast shower model: the image GAN (shape) and the energy GANs (totals).

    Attributes:
        shape: :class:`~sim.core.modelio.CompiledModel` of ``calorimeter.keras``.
        energy: :class:`~sim.core.modelio.CompiledModel` of ``calorimeter_energy.keras`` (e/γ totals).
        hadron_energy: :class:`~sim.core.modelio.CompiledModel` of
            ``calorimeter_hadron_energy.keras`` (hadron and muon totals).
    """

    shape: Any
    energy: Any
    hadron_energy: Any


#: Shower calls with at least this many particles use the traced TensorFlow graph (see load_shower_model).
#: Since the im2col convolution of :mod:`sim.core.netgraph` the numpy forward pass takes 30-34 CPU µs
#: per shower against the graph's 18-19 (one process, 18 000 showers, load 2.4; with the graph's two
#: threads counted), while TensorFlow's import and the tracing cost 2.4 CPU s once per process: the
#: graph pays back from ≈ 180 000 showers in a process (≈ 5 000 full bb̄ events), so numpy runs every
#: call below :data:`sim.core.modelio.GRAPH_MIN_ROWS` rows (a call is at most one chunk of 262 144
#: rows) and a full-event run imports no TensorFlow.  The choice depends on the call's row count
#: only, so a batch's numbers do not depend on what ran before it in the process.  64 at the fourth
#: stop, 65 536 during the fifth, 1 024 from its end to the seventh (graph 0.040 vs numpy 0.079 CPU
#: ms per shower before the im2col form), 262 144 since (issue #17).
SHOWER_GRAPH_MIN_ROWS = 262_144


def load_shower_model(path: str | None = None, pass_name: str = "calorimeter") -> ShowerModel:
    """Load the shower model: ``path`` (default ``sim/models/calorimeter.keras``) and the
    energy generators ``<stem>_energy.keras`` (e/γ) and ``<stem>_hadron_energy.keras``
    (hadrons, muons) beside it.

    Raises:
        ModelError: missing/corrupt model, wrong inputs, or not a 30 x 30 image generator.
    """
    from sim.core.modelio import CompiledModel, load_pass_model, model_path

    trained = load_pass_model(path, "calorimeter", kind="generator", inputs=CONDITIONS, pass_name=pass_name)
    image = trained.provenance.get("image")
    g = int(ECALGeometry().grid_n)
    if not isinstance(image, dict) or list(image.get("shape", [])) != [g, g]:
        raise ModelError(f"pass {pass_name!r}: model is not a {g}x{g} shower generator (provenance 'image' is {image!r})")
    file = model_path(path, "calorimeter")
    energy = load_pass_model(str(file.with_name(file.stem + "_energy.keras")), "calorimeter_energy", kind="generator",
                             inputs=ENERGY_CONDITIONS, outputs=SCALARS, pass_name=pass_name)
    hadron = load_pass_model(str(file.with_name(file.stem + "_hadron_energy.keras")), "calorimeter_hadron_energy",
                             kind="generator", inputs=HADRON_ENERGY_CONDITIONS, outputs=SCALARS, pass_name=pass_name)
    # the shower generator runs through TensorFlow's kernels only from SHOWER_GRAPH_MIN_ROWS rows on
    # (numpy below: no TensorFlow import); the small energy networks keep the default threshold
    return ShowerModel(CompiledModel(trained, graph_min_rows=SHOWER_GRAPH_MIN_ROWS), CompiledModel(energy), CompiledModel(hadron))


def generate_showers(
    model: Any, pid: np.ndarray, energy: np.ndarray, x: np.ndarray, y: np.ndarray, tx: np.ndarray,
    ty: np.ndarray, rng: np.random.Generator, geometry: ECALLayout | None = None,
) -> np.ndarray:
    """``(n, g, g)`` deposit matrices (MeV) drawn from the fast model.

    The image GAN draws every shape; the totals come from the e/γ energy GAN for photons
    and electrons and from the hadron energy GAN for hadrons and muons (the image GAN's
    own scalar head gave 5-14 % of 1-100 GeV pions an electron-like E/p of 0.85-1.15,
    the reference 1.8 %).  A ``model`` with a ``simulate_showers(pid, energy, x, y, tx,
    ty, rng)`` method (the reference ECAL, :class:`sim.reference.ecal_pid.ReferenceShowers`)
    draws the matrices itself: the reference detector's ``EcalPIDe`` runs through this
    same reconstruction.
    """
    geo = geometry or ECALGeometry()
    e = np.asarray(energy, dtype=np.float64)
    if e.shape[0] == 0:
        return np.zeros((0, geo.grid_n, geo.grid_n))
    simulate = getattr(model, "simulate_showers", None)
    if callable(simulate):  # a reference shower simulation (sim.reference.ecal_pid.ReferenceShowers)
        return np.asarray(simulate(pid, e, x, y, tx, ty, rng), dtype=np.float64)
    pixels, total, eps = _generator_outputs(model, pid, e, x, y, tx, ty, rng, geo)
    return _pixels_to_matrices(pixels, total, e, eps, int(geo.grid_n))


def shower_deposits(
    model: Any, pid: np.ndarray, energy: np.ndarray, x: np.ndarray, y: np.ndarray, tx: np.ndarray,
    ty: np.ndarray, rng: np.random.Generator, geometry: ECALLayout | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The positive entries of :func:`generate_showers`' matrices, without the matrices (the same numbers).

    Only ≈ 7 % of the fast generator's 900 pixels are positive (a full bb̄ batch of 500 events:
    1.2 M of 16.5 M), so the pixel transform runs on those alone (:func:`_pixels_to_deposits`).

    Returns:
        ``(shower, pixel, energy)``: ``(m,)`` each, the shower's index, the fine cell
        ``row · grid_n + column`` and the deposit (MeV, > 0; float32 from the fast model),
        in the C order of the matrices, i.e. ``np.nonzero(generate_showers(...) > 0)`` and the
        values there (:func:`~sim.detector.ecal_geometry.deposits_to_cells` takes them).
    """
    geo = geometry or ECALGeometry()
    g = int(geo.grid_n)
    e = np.asarray(energy, dtype=np.float64)
    simulate = getattr(model, "simulate_showers", None)
    if e.shape[0] == 0 or callable(simulate):
        m = generate_showers(model, pid, e, x, y, tx, ty, rng, geo).reshape(e.shape[0], g * g)
        shower, pixel = np.nonzero(m > 0)
        return shower, pixel, m[shower, pixel]
    pixels, total, eps = _generator_outputs(model, pid, e, x, y, tx, ty, rng, geo)
    return _pixels_to_deposits(pixels, total, e, eps, g)


def _generator_outputs(
    model: Any, pid: np.ndarray, e: np.ndarray, x: np.ndarray, y: np.ndarray, tx: np.ndarray, ty: np.ndarray,
    rng: np.random.Generator, geo: ECALLayout,
) -> tuple[np.ndarray, np.ndarray, float]:
    """The fast model's ``(n, g²)`` transformed pixels (a view), ``(n,)`` transformed totals (float64) and ``eps``."""
    cond = shower_conditions(pid, e, x, y, tx, ty, geo)
    g = int(geo.grid_n)
    # the shape GAN's pixels in float32 when it can give them (its outputs are float32 network values)
    sample32 = getattr(model.shape, "sample_float32", None)
    out = sample32(cond, rng) if callable(sample32) and type(model.shape.trained.output_preprocessor).__name__ == "Identity" \
        else model.shape.sample(cond, rng)
    total = np.asarray(out[:, g * g], dtype=np.float64)  # the image GAN's own total, replaced below
    em = (cond[:, CONDITIONS.index("is_hadron")] == 0) & (cond[:, CONDITIONS.index("is_muon")] == 0)
    if em.any():
        total[em] = model.energy.sample(cond[em][:, [CONDITIONS.index(c) for c in ENERGY_CONDITIONS]], rng)[:, 0]
    if not em.all():
        cols = [CONDITIONS.index(c) for c in HADRON_ENERGY_CONDITIONS]
        total[~em] = model.hadron_energy.sample(cond[~em][:, cols], rng)[:, 0]
    eps = float(model.shape.trained.provenance["image"]["eps"])
    return out[:, : g * g], total, eps


def _pixels_to_deposits(
    pixels: np.ndarray, total: np.ndarray, energy: np.ndarray, eps: float, grid_n: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`_pixels_to_matrices`' positive entries ``(shower, pixel, MeV float32)``, bit for bit.

    The same float32 ufuncs on the same values at the positive pixels (a pixel at or below 0
    stays 0 in :func:`_pixels_to_matrices`) and the same totals (:func:`_shower_totals`), without
    a pass over the other ≈ 93 % of the pixels; ``pixels`` is left as it is.
    """
    pix = np.asarray(pixels, dtype=np.float32)
    g2 = pix.shape[1]
    flat = np.flatnonzero(pix > 0)  # (flatnonzero of the contiguous mask: 4x faster than a 2-D nonzero)
    shower = flat // g2
    pixel = flat - shower * g2
    v = pix[shower, pixel]  # a fresh array
    np.multiply(v, np.float32(PixelTransform(eps).norm), out=v)
    np.expm1(v, out=v)
    np.multiply(np.float32(eps), v, out=v)
    tot = _shower_totals(shower, v, pix.shape[0])
    e = np.asarray(energy, dtype=np.float64)
    r = np.clip(1.0 + nominal_resolution(e) * np.sinh(np.asarray(total, dtype=np.float64)), 0.0, None)
    scale = (r * e / np.where(tot > 0, tot, 1.0)).astype(np.float32)
    np.multiply(v, scale[shower], out=v)
    keep = v > 0
    return shower[keep], pixel[keep], v[keep]


# --------------------------------------------------------------------------- reconstruction

CLUSTER_KEY = 10_000_000
"""Key of a cell in an event: ``event * CLUSTER_KEY + cell_id``."""


def _lookup(keys_sorted: np.ndarray, values: np.ndarray, query: np.ndarray) -> np.ndarray:
    """``values`` at ``query`` keys (0 where absent)."""
    if keys_sorted.size == 0:
        return np.zeros(query.shape)
    pos = np.clip(np.searchsorted(keys_sorted, query), 0, keys_sorted.size - 1)
    found = keys_sorted[pos] == query
    return np.where(found, values[pos], 0.0)


def neighbour_cells(cell_id: np.ndarray, geometry: ECALLayout | None = None) -> np.ndarray:
    """The 3 x 3 block of cells around each cell, ``(n, 9)`` ids (centre at column 4).

    Neighbours are the cells holding the points one cell size away from the centre, so
    across a region border the coarser cell appears (once: repeats become ``-1``);
    outside the ECAL or in the beam hole ``-1``.
    """
    geo = geometry or ECALGeometry()
    cx, cy, s = cell_geometry(cell_id, geo)
    out = np.empty((cx.shape[0], 9), dtype=np.int64)
    k = 0
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            out[:, k] = cell_of(cx + dx * s, cy + dy * s, geo)
            k += 1
    for k in range(9):
        for j in range(k):
            out[:, k] = np.where(out[:, k] == out[:, j], -1, out[:, k])
    out[:, 4] = cell_id
    return out


def find_clusters(
    event: np.ndarray, cell_id: np.ndarray, energy: np.ndarray, geometry: ECALLayout | None = None,
    *, seed_et_min: float = 50.0,
) -> dict[str, np.ndarray]:
    """3 x 3 clusters around local maxima of the digitised cells.

    A seed is a cell with E_T above ``seed_et_min`` (MeV) and more energy than each of
    its neighbours (LHCb's cellular-automaton seeds).  The cluster takes the 3 x 3 block
    (cells shared by two clusters count in both: no splitting), its position is the
    energy-weighted barycentre (no S-shape correction) and its second moments are
    ``sxx, syy, sxy`` (mm²) about it.

    Args:
        event, cell_id, energy: ``(n,)`` cells from :func:`~sim.detector.ecal_geometry.digitise`.
        geometry: the ECAL.
        seed_et_min: seed threshold (MeV of E_T; model).

    Returns:
        Columns ``event, seed_cell, region, x, y, energy (3x3 sum), e_seed, sxx, syy, sxy,
        n_cells``, one row per cluster, ordered by event then energy (descending).
    """
    geo = geometry or ECALGeometry()
    ev = np.asarray(event, dtype=np.int64)
    cid = np.asarray(cell_id, dtype=np.int64)
    e = np.asarray(energy, dtype=np.float64)
    keys = ev * CLUSTER_KEY + cid
    order = np.argsort(keys)
    keys, ev, cid, e = keys[order], ev[order], cid[order], e[order]
    empty = {k: np.zeros(0) for k in ("x", "y", "energy", "e_seed", "sxx", "syy", "sxy")}
    if keys.size == 0:
        return {"event": np.zeros(0, np.int64), "seed_cell": np.zeros(0, np.int64), "region": np.zeros(0, np.int64),
                "n_cells": np.zeros(0, np.int64), **empty}
    nb = neighbour_cells(cid, geo)
    nb_keys = np.where(nb >= 0, ev[:, None] * CLUSTER_KEY + nb, -1)
    nb_e = np.where(nb >= 0, _lookup(keys, e, nb_keys), 0.0)
    cx, cy, _ = cell_geometry(cid, geo)
    sin_t = np.hypot(cx, cy) / np.sqrt(cx * cx + cy * cy + geo.z_front**2)
    others = np.delete(nb_e, 4, axis=1)
    seed = (e * sin_t > seed_et_min) & np.all(e[:, None] > others, axis=1)
    s_nb, s_e = nb[seed], nb_e[seed]
    px, py, _ = cell_geometry(np.where(s_nb >= 0, s_nb, 0), geo)
    w = np.where(s_nb >= 0, np.maximum(s_e, 0.0), 0.0)
    tot = w.sum(axis=1)
    safe = np.where(tot > 0, tot, 1.0)
    bx = (w * px).sum(axis=1) / safe
    by = (w * py).sum(axis=1) / safe
    dxx = px - bx[:, None]
    dyy = py - by[:, None]
    out = {
        "event": ev[seed], "seed_cell": cid[seed], "region": cid[seed] // 1_000_000, "x": bx, "y": by,
        "energy": np.where(s_nb >= 0, s_e, 0.0).sum(axis=1), "e_seed": e[seed],
        "sxx": (w * dxx * dxx).sum(axis=1) / safe, "syy": (w * dyy * dyy).sum(axis=1) / safe,
        "sxy": (w * dxx * dyy).sum(axis=1) / safe, "n_cells": ((s_nb >= 0) & (s_e > 0)).sum(axis=1),
    }
    order = np.lexsort((-out["energy"], out["event"]))
    return {k: v[order] for k, v in out.items()}


def seed_truth(
    cluster_event: np.ndarray, seed_cell: np.ndarray, shower_event: np.ndarray, shower: np.ndarray,
    cell_id: np.ndarray, energy: np.ndarray,
) -> np.ndarray:
    """Index of the shower that deposited most in each cluster's seed cell (-1 if none).

    Args:
        cluster_event, seed_cell: ``(k,)`` clusters.
        shower_event: ``(n_showers,)`` event of each shower.
        shower, cell_id, energy: ``(m,)`` per-(shower, cell) deposits (:func:`matrix_to_cells`).
    """
    sh = np.asarray(shower, dtype=np.int64)
    q = np.asarray(cluster_event, dtype=np.int64) * CLUSTER_KEY + np.asarray(seed_cell, dtype=np.int64)
    none = np.full(q.shape, -1, dtype=np.int64)
    if sh.size == 0 or q.size == 0:
        return none
    keys = np.asarray(shower_event, dtype=np.int64)[sh] * CLUSTER_KEY + np.asarray(cell_id, dtype=np.int64)
    # only the deposits in a seed cell (in their order: the same winner; ~6 % of a full-event batch's pairs)
    seeds = np.sort(q)
    at = np.flatnonzero(seeds[np.minimum(np.searchsorted(seeds, keys), seeds.size - 1)] == keys)
    if at.size == 0:
        return none
    keys, sh = keys[at], sh[at]
    # by key, largest deposit first among equal keys (two stable sorts: ~5x faster than lexsort here)
    by_e = np.argsort(-np.asarray(energy, dtype=np.float64)[at], kind="stable")
    order = by_e[np.argsort(keys[by_e], kind="stable")]
    k_sorted, sh_sorted = keys[order], sh[order]
    first = np.concatenate([[True], k_sorted[1:] != k_sorted[:-1]])
    k_first, sh_first = k_sorted[first], sh_sorted[first]
    pos = np.clip(np.searchsorted(k_first, q), 0, k_first.size - 1)
    return np.where(k_first[pos] == q, sh_first[pos], -1)


def match_tracks(
    cluster_event: np.ndarray, cluster_x: np.ndarray, cluster_y: np.ndarray, cluster_size: np.ndarray,
    track_event: np.ndarray, track_x: np.ndarray, track_y: np.ndarray, window: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Nearest cluster of each track's ECAL extrapolation, and each cluster's nearest track distance.

    Args:
        cluster_event, cluster_x, cluster_y, cluster_size: ``(k,)`` clusters (mm; seed cell size).
        track_event, track_x, track_y: ``(t,)`` track extrapolations to the ECAL face (mm).
        window: match if the distance is below ``window`` seed-cell sizes.

    Returns:
        ``(track_cluster (t,), cluster_distance (k,))``: the matched cluster index per track
        (-1 if none within the window), and per cluster the distance to the nearest track
        in units of its cell size (``inf`` when the event has no track).
    """
    ce = np.asarray(cluster_event, dtype=np.int64)
    te = np.asarray(track_event, dtype=np.int64)
    track_cluster = np.full(te.shape, -1, dtype=np.int64)
    dist = np.full(ce.shape, np.inf)
    if ce.size == 0 or te.size == 0:
        return track_cluster, dist
    ti, ci = _event_pairs(te, ce)
    if ti.size == 0:
        return track_cluster, dist
    d = np.hypot(np.asarray(cluster_x)[ci] - np.asarray(track_x)[ti], np.asarray(cluster_y)[ci] - np.asarray(track_y)[ti])
    d = d / np.asarray(cluster_size)[ci]
    np.minimum.at(dist, ci, d)
    # pairs come grouped by track (ti non-decreasing): the nearest cluster of each group, the
    # first one at the group's minimum distance (ties: the lower pair index, as a stable sort)
    start = np.flatnonzero(np.concatenate([[True], ti[1:] != ti[:-1]]))
    counts = np.diff(np.append(start, ti.size))
    at_min = np.flatnonzero(d == np.repeat(np.fmin.reduceat(d, start), counts))
    first = at_min[np.concatenate([[True], ti[at_min][1:] != ti[at_min][:-1]])]
    best_t, best_c, best_d = ti[first], ci[first], d[first]
    ok = best_d < window
    track_cluster[best_t[ok]] = best_c[ok]
    return track_cluster, dist


def _event_pairs(a_event: np.ndarray, b_event: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """All ``(i, j)`` with ``a_event[i] == b_event[j]`` (indices into the two arrays)."""
    b_order = np.argsort(b_event, kind="stable")
    b_sorted = b_event[b_order]
    lo = np.searchsorted(b_sorted, a_event, "left")
    hi = np.searchsorted(b_sorted, a_event, "right")
    count = hi - lo
    ai = np.repeat(np.arange(a_event.size), count)
    offset = np.arange(ai.size) - np.repeat(np.cumsum(count) - count, count)
    return ai, b_order[np.repeat(lo, count) + offset]


def photon_cl(track_distance: np.ndarray, spread: np.ndarray, energy: np.ndarray) -> np.ndarray:
    """A photon confidence level in [0, 1] from the track-match distance and the cluster shape.

    ``CL = (1 - exp(-d²/2)) · exp(-max(0, w - w_γ(E)) / 0.1)``: ``d`` the distance to the
    nearest track extrapolation in cell sizes (large: not an electron), ``w`` the
    cluster's r.m.s. spread in cell sizes and ``w_γ(E)`` the spread below which 95 % of
    single photons fall (:data:`PHOTON_SPREAD_95`; model).  Like LHCb's γ CL it is not a
    probability; it orders candidates.
    """
    d = np.asarray(track_distance, dtype=np.float64)
    p_track = np.where(np.isfinite(d), 1.0 - np.exp(-0.5 * d * d), 1.0)
    w_ref = PHOTON_SPREAD_95[0] + PHOTON_SPREAD_95[1] * np.log10(np.maximum(np.asarray(energy, dtype=np.float64), 1.0) / 1000.0)
    p_shape = np.exp(-np.maximum(np.asarray(spread, dtype=np.float64) - w_ref, 0.0) / 0.1)
    return p_track * p_shape


PHOTON_SPREAD_95: tuple[float, float] = (0.45, 0.0)
"""(a, b) of the 95 % quantile of single-photon cluster spread in cell sizes, ``a + b·log10(E/GeV)``."""


CONTAINMENT: tuple[float, float, float] = (0.968, 0.989, 0.993)
"""Median E(3x3)/E of photons in the inner, middle, outer region: reference ECAL with
digitisation, 20 000 photons of 2-50 GeV uniform over the face (seed 5); the cluster
energy is the 3x3 sum divided by it (means: 0.960 / 0.986 / 0.975, lowered by the
outer edge)."""


def electron_dll(e_over_p: np.ndarray, energy: np.ndarray) -> np.ndarray:
    """Calorimeter electron log-likelihood difference e - π from E/p (model).

    Electrons: Gaussian at 1 with σ = ``nominal_resolution(E)`` ⊕ 3 % (momentum, brem
    leakage); hadrons: an exponential of mean 0.3 (MIP and partial showers in 1.1 λ_I).
    Clipped to ``[-20, 20]``.
    """
    x = np.asarray(e_over_p, dtype=np.float64)
    sig = np.sqrt(nominal_resolution(np.maximum(np.asarray(energy, dtype=np.float64), 1.0)) ** 2 + 0.03**2)
    log_e = -0.5 * ((x - 1.0) / sig) ** 2 - np.log(sig * np.sqrt(2 * np.pi))
    lam = 1.0 / 0.3
    log_h = np.log(lam) - lam * np.maximum(x, 0.0)
    return np.clip(log_e - log_h, -20.0, 20.0)


_PARTICLES_SQL = """
    SELECT p.event, p."index" AS mc_index, p.pid, p.charge, p.px, p.py, p.pz, p.e,
           v.x AS origin_x, v.y AS origin_y, v.z AS origin_z
    FROM mc_particles AS p
    JOIN mc_vertices AS v ON v.batch = p.batch AND v.event = p.event AND v."index" = p.prod_vertex
    JOIN events AS e ON e.batch = p.batch AND e.event = p.event
    WHERE p.batch = $batch AND v.batch = $batch AND e.batch = $batch AND p.decay_vertex < 0
      AND abs(p.pid) NOT IN (12, 14, 16) AND p.pz > 0
      AND coalesce(e.simulated, true)  -- preselect-skipped events deposit nothing
    ORDER BY p.event, p."index"
"""
_EM_PARTICLES_SQL = _PARTICLES_SQL.replace("AND p.pz > 0", "AND p.pz > 0 AND abs(p.pid) IN (11, 22)")
"""The particles of ``showers="em"``: the photons and electrons alone.  The same numbers as
:data:`_PARTICLES_SQL`: only they shower, radiate, convert or change a track's momentum, and
their rows come in the same order (hadrons and muons draw no random numbers and their tracks
keep ``kept = 1``): 139 of the 291 rows of a full bb̄ event (issue #17)."""
_TRACKS_SQL = """
    SELECT t.event, t."index" AS track_index, t.mc_particle, t.charge, t.px, t.py, t.pz, t.tx, t.ty, t.x, t.y, t.z
    FROM protoparticles AS t WHERE t.batch = $batch ORDER BY t.event, t."index"
"""
_EVENTS_SQL = 'SELECT event, pv_x, pv_y, pv_z FROM events WHERE batch = $batch ORDER BY event'


def _np(table: Any) -> dict[str, np.ndarray]:
    return {name: table.column(name).to_numpy(zero_copy_only=False) for name in table.column_names}


@register_pass
@dataclass(frozen=True)
class Calorimeter(Pass):
    """ECAL response of final-state particles, clusters, photons and the electron hypothesis.

    For every final-state particle reaching the ECAL (γ, e±, μ±, charged and neutral
    hadrons; electrons first radiate Bethe–Heitler bremsstrahlung photons in
    ``material_x0`` before the magnet, which lowers their tracked momentum, and photons
    born before the magnet convert with probability ``1 - exp(-7/9 X/X0)`` into an
    untracked e+e- pair that the magnet bends apart: 14.5 % are lost as photons), the fast
    shower model draws a 30 x 30 deposit matrix; deposits are summed into cells,
    digitised (noise, zero suppression) and clustered (3 x 3 around local maxima).
    Tracks are extrapolated to the ECAL and matched to clusters (``match_window``
    cell sizes); unmatched clusters become ``neutral_protoparticles`` (photon CL,
    merged-π0 flag).  Electron hypothesis: E/p of the matched cluster, the
    calorimeter ``EcalPIDe``, and for electron-like tracks (E/p > ``brem_e_over_p``)
    brem recovery: neutral clusters within ``brem_window`` cell sizes of the
    straight-line extrapolation of the track's first state are added to its momentum.

    Reads ``mc_particles``, ``mc_vertices``, ``events``, ``protoparticles`` (reconstructed
    kinematics); writes ``calo_clusters``, ``neutral_protoparticles`` and the calorimeter
    columns of ``protoparticles`` (px, py, pz become the brem-recovered momentum).

    Args:
        name: pass name.
        model: ``.keras`` shower generator; default the shipped ``sim/models/calorimeter.keras``.
        store_matrix: also write the seed particle's 30 x 30 matrix into ``calo_clusters.matrix``.
        seed_et_min: cluster seed threshold (MeV of E_T; model).
        match_window: track-cluster matching window (seed-cell sizes; model).
        brem_window: brem-recovery window (cell sizes; model).
        brem_e_over_p: E/p above which a track is an electron candidate for brem recovery (model).
        merged_pt_min, merged_spread: a neutral cluster with p_T above ``merged_pt_min``
            (MeV) and r.m.s. spread above ``merged_spread`` cell sizes is flagged as a
            merged π0 (model).
        material_x0: material before the magnet (X0).
        min_energy: particles (and brem photons, conversion electrons) below this energy
            (MeV) are not showered: the shower model is trained on 1-100 GeV, and at the
            ECAL's angles (θ > 25 mrad) 1 GeV is below the LHCb photon E_T cuts.  In full
            events most particles are that soft (127 ms per Pythia event before the cut).
        showers: ``"em"`` (default): only photons and electrons (with their brem photons
            and conversion electrons) are showered — muons and hadrons leave no cluster,
            so their tracks get no E/p and no ``EcalPIDe``; ``"all"``: every particle
            reaching the ECAL is showered (MIP, hadronic showers), as the electron-ID
            misID studies need.  Showering every charged hadron made the default job
            7.6x slower (1.4k vs 10.5k events/s on Λb → Λc μ ν, 2 cores).  ``EcalPIDe``
            enters the pid pass's PIDe and ProbNNe (``PIDe = RichDLLe + EcalPIDe + ...``),
            so with ``"em"`` hadron tracks get ``EcalPIDe = 0`` (no cluster) instead of the
            hadron rejection of their showers (-20 for most interacting pions).
    """

    kind: ClassVar[str] = "calorimeter"
    concurrent: ClassVar[bool] = True
    reads: ClassVar[tuple[str, ...]] = ("mc_particles", "mc_vertices", "events", "protoparticles",
                                         "protoparticles.kinematics")
    writes: ClassVar[tuple[str, ...]] = ("calo_clusters", "neutral_protoparticles", "protoparticles.calorimeter")

    name: str = "calorimeter"
    model: str | None = None
    store_matrix: bool = False
    seed_et_min: float = 50.0
    match_window: float = 1.5
    brem_window: float = 1.5
    brem_e_over_p: float = 0.7
    merged_pt_min: float = 2000.0
    merged_spread: float = 0.6
    material_x0: float = 0.2
    min_energy: float = 1000.0
    showers: str = "em"

    def __post_init__(self) -> None:
        if self.showers not in ("em", "all"):
            raise ConfigError(f"pass {self.name!r}: showers={self.showers!r}; choose 'em' (photons and electrons) or 'all'")
        for f in ("seed_et_min", "match_window", "brem_window", "brem_e_over_p", "merged_pt_min", "merged_spread",
                  "min_energy"):
            v = getattr(self, f)
            if not (np.isfinite(v) and v > 0):
                raise ConfigError(f"pass {self.name!r}: {f}={v!r}; expected a positive number")
        if not (np.isfinite(self.material_x0) and self.material_x0 >= 0):
            raise ConfigError(f"pass {self.name!r}: material_x0={self.material_x0!r}; expected a number >= 0")

    def build(self) -> Kernel:
        model = load_shower_model(self.model, self.name)
        geo = dataclasses.replace(ECALGeometry(), material_x0=self.material_x0)
        cfg = self
        particles_sql = _EM_PARTICLES_SQL if self.showers == "em" else _PARTICLES_SQL

        def kernel(ctx: BatchContext) -> None:
            out = reconstruct_batch(
                _np(ctx.query(particles_sql)), _np(ctx.query(_TRACKS_SQL)), _np(ctx.query(_EVENTS_SQL)),
                model, ctx.rng(cfg.name), cfg, geo,
            )
            b = ctx.batch.batch
            for table in ("calo_clusters", "neutral_protoparticles"):
                rows = out[table]
                if rows["event"].size:
                    ctx.insert(table, _with_batch(rows, b))
            if out["protoparticles"]["event"].size:
                ctx.update("protoparticles", _with_batch(out["protoparticles"], b))

        return kernel


def _with_batch(rows: Mapping[str, Any], batch: int) -> Any:
    import pyarrow as pa  # type: ignore[import-untyped]

    n = len(rows["event"])
    cols: dict[str, Any] = {"batch": pa.array(np.full(n, batch, np.int32))}
    for k, v in rows.items():
        if k == "matrix":
            m = np.asarray(v, dtype=np.float32)
            cols[k] = pa.array([None] * n, type=pa.list_(pa.float32())) if m.size == 0 and n else \
                pa.ListArray.from_arrays(pa.array(np.arange(n + 1, dtype=np.int32) * m.shape[1]), pa.array(m.reshape(-1)))
        else:
            cols[k] = pa.array(np.asarray(v), from_pandas=True)  # NaN -> NULL (no cluster, no track)
    return pa.table(cols)


def reconstruct_batch(
    particles: Mapping[str, np.ndarray],
    tracks: Mapping[str, np.ndarray],
    events: Mapping[str, np.ndarray],
    model: Any,
    rng: np.random.Generator,
    cfg: Calorimeter,
    geometry: ECALGeometry,
) -> dict[str, dict[str, np.ndarray]]:
    """The calorimeter pass on arrays (testable without DuckDB).

    Args:
        particles: final-state particles: ``event, mc_index, pid, charge, px, py, pz, e,
            origin_x, origin_y, origin_z`` (``(n,)`` each).
        tracks: protoparticles: ``event, track_index, mc_particle, charge, px, py, pz,
            tx, ty, x, y, z``.
        events: ``event, pv_x, pv_y, pv_z``.
        model: the shower generator (:func:`load_shower_model`) or any object with the
            same ``sample`` and ``trained.provenance``.
        rng: random generator.
        cfg: the pass settings.
        geometry: the ECAL.

    Returns:
        ``{"calo_clusters": {...}, "neutral_protoparticles": {...}, "protoparticles": {...}}``
        column dicts (without ``batch``).
    """
    crd = card()
    p = {k: np.asarray(v) for k, v in particles.items()}
    t = {k: np.asarray(v) for k, v in tracks.items()}
    n_p = p["event"].shape[0]
    # --- bremsstrahlung of electrons born before the magnet
    is_e = (np.abs(p["pid"]) == 11) & (p["origin_z"] < crd.magnet_z)
    e_idx = np.nonzero(is_e)[0]
    brem_el, brem_k = bremsstrahlung(p["e"][e_idx], rng, geometry)
    brem_parent = e_idx[brem_el]
    kept = np.ones(n_p)
    lost = np.bincount(brem_parent, weights=brem_k, minlength=n_p)
    kept = np.clip(1.0 - lost / p["e"], 1e-3, 1.0)
    # --- photons born before the magnet convert: an e- (fraction x) and an e+ (1 - x), bent apart
    g_idx = np.nonzero((p["pid"] == 22) & (p["origin_z"] < crd.magnet_z))[0]
    converted, frac = convert_photons(g_idx.size, rng, geometry)
    conv, x_conv = g_idx[converted], frac[converted]
    own_pid = np.asarray(p["pid"]).copy()
    own_charge = np.asarray(p["charge"], dtype=np.float64).copy()
    own_pid[conv], own_charge[conv], kept[conv] = 11, -1.0, x_conv
    # --- the objects that shower: particles (after brem / conversion), brem photons, conversion positrons
    scale = np.concatenate([kept, brem_k / p["e"][brem_parent], 1.0 - x_conv])
    src = np.concatenate([np.arange(n_p), brem_parent, conv])
    pid = np.concatenate([own_pid, np.full(brem_parent.size, 22), np.full(conv.size, -11)])
    charge = np.concatenate([own_charge, np.zeros(brem_parent.size), np.ones(conv.size)])
    mom = [np.asarray(p[c], dtype=np.float64)[src] * scale for c in ("px", "py", "pz")]
    energy = np.asarray(p["e"], dtype=np.float64)[src] * scale
    origin = tuple(np.asarray(p[c], dtype=np.float64)[src] for c in ("origin_x", "origin_y", "origin_z"))
    x, y, tx, ty, reaches = ecal_entry(origin, tuple(mom), charge, geometry,  # type: ignore[arg-type]
                                       magnet_z=crd.magnet_z)
    reaches &= energy >= cfg.min_energy
    if cfg.showers == "em":
        reaches &= (np.abs(pid) == 11) | (pid == 22)
    sel = np.nonzero(reaches)[0]
    dep_sh, dep_px, dep_e = shower_deposits(model, pid[sel], energy[sel], x[sel], y[sel], tx[sel], ty[sel], rng, geometry)
    shower_event = np.asarray(p["event"], dtype=np.int64)[src[sel]]
    sh, cid, dep = deposits_to_cells(dep_sh, dep_px, dep_e, x[sel], y[sel], geometry)
    ev_c, cell_c, e_c = digitise(shower_event, sh, cid, dep, rng, geometry)
    cl = find_clusters(ev_c, cell_c, e_c, geometry, seed_et_min=cfg.seed_et_min)
    k = cl["event"].shape[0]
    seed_sh = seed_truth(cl["event"], cl["seed_cell"], shower_event, sh, cid, dep)
    # truth of each shower: its particle; brem photons their electron; conversion e+e- none (not in the store)
    obj_mc = np.asarray(p["mc_index"], dtype=np.int64)[src]
    obj_mc[conv] = -1
    obj_mc[n_p + brem_parent.size :] = -1
    mc = np.where(seed_sh >= 0, obj_mc[sel][np.maximum(seed_sh, 0)], -1)
    _, _, size = cell_geometry(cl["seed_cell"], geometry) if k else (None, None, np.zeros(0))
    corr = np.asarray(CONTAINMENT)[cl["region"]] if k else np.zeros(0)
    energy_c = cl["energy"] / np.where(corr > 0, corr, 1.0)
    # --- tracks: momentum after brem, extrapolation, matching
    n_t = t["event"].shape[0]
    t_kept = np.ones(n_t)
    if n_t and n_p:
        p_key = np.asarray(p["event"], dtype=np.int64) * CLUSTER_KEY + np.asarray(p["mc_index"], dtype=np.int64)
        order = np.argsort(p_key)
        t_key = np.asarray(t["event"], dtype=np.int64) * CLUSTER_KEY + np.asarray(t["mc_particle"], dtype=np.int64)
        pos = np.clip(np.searchsorted(p_key[order], t_key), 0, n_p - 1)
        found = p_key[order][pos] == t_key
        t_kept = np.where(found, kept[order][pos], 1.0)
    tp_raw = [np.asarray(t[c], dtype=np.float64) * t_kept for c in ("px", "py", "pz")]  # NULL stays NaN
    tp = [np.nan_to_num(v) for v in tp_raw]
    t_origin = tuple(np.nan_to_num(np.asarray(t[c], dtype=np.float64)) for c in ("x", "y", "z"))
    t_x, t_y, _, _, _ = ecal_entry(t_origin, tuple(tp), np.asarray(t["charge"], dtype=np.float64), geometry,  # type: ignore[arg-type]
                                   magnet_z=crd.magnet_z)
    track_cluster, dist = match_tracks(cl["event"], cl["x"], cl["y"], size, t["event"], t_x, t_y, cfg.match_window)
    cluster_track = np.full(k, -1, dtype=np.int64)
    ok = track_cluster >= 0
    cluster_track[track_cluster[ok]] = np.asarray(t["track_index"], dtype=np.int64)[ok]
    p_track = np.sqrt(tp[0] ** 2 + tp[1] ** 2 + tp[2] ** 2)
    e_over_p = np.where(ok, energy_c[np.maximum(track_cluster, 0)] / np.maximum(p_track, 1.0), 0.0) if k else np.zeros(n_t)
    dll = np.where(ok, electron_dll(e_over_p, p_track), 0.0)
    # --- brem recovery for electron candidates: neutral clusters on the upstream line
    tx0 = np.nan_to_num(np.asarray(t["tx"], dtype=np.float64))
    ty0 = np.nan_to_num(np.asarray(t["ty"], dtype=np.float64))
    bx = t_origin[0] + tx0 * (geometry.z_front - t_origin[2])
    by = t_origin[1] + ty0 * (geometry.z_front - t_origin[2])
    neutral = cluster_track < 0
    cand = np.nonzero(ok & (e_over_p > cfg.brem_e_over_p))[0]
    brem_e: np.ndarray = np.zeros(n_t)
    brem_n = np.zeros(n_t, dtype=np.int16)
    n_idx = np.nonzero(neutral)[0]
    if k and cand.size and n_idx.size:
        a, b = _event_pairs(np.asarray(t["event"], dtype=np.int64)[cand], cl["event"][n_idx].astype(np.int64))
        ti, ci = cand[a], n_idx[b]
        hit = np.hypot(cl["x"][ci] - bx[ti], cl["y"][ci] - by[ti]) / size[ci] < cfg.brem_window
        brem_e = np.bincount(ti[hit], weights=energy_c[ci[hit]], minlength=n_t)
        brem_n = np.bincount(ti[hit], minlength=n_t).astype(np.int16)
    fac = 1.0 + brem_e / np.maximum(p_track, 1.0)
    protos = {
        "event": np.asarray(t["event"], dtype=np.int32), "index": np.asarray(t["track_index"], dtype=np.int32),
        "px": tp_raw[0] * fac, "py": tp_raw[1] * fac, "pz": tp_raw[2] * fac,
        "calo_cluster": np.where(ok, _local_index(cl["event"])[np.maximum(track_cluster, 0)] if k else -1, -1).astype(np.int32),
        "calo_e_over_p": np.where(ok, e_over_p, np.nan).astype(np.float32),
        "EcalPIDe": dll.astype(np.float32),
        "track_p": np.where(np.isfinite(tp_raw[0] + tp_raw[1] + tp_raw[2]), p_track, np.nan), "brem_multiplicity": brem_n,
        "has_brem_added": brem_n > 0, "brem_energy": brem_e,
    }
    local = _local_index(cl["event"])
    clusters = {
        "event": cl["event"].astype(np.int32), "index": local.astype(np.int32), "mc_particle": mc.astype(np.int32),
        "track": cluster_track.astype(np.int32), "seed_cell": cl["seed_cell"].astype(np.int32),
        "region": cl["region"].astype(np.int16), "x": cl["x"], "y": cl["y"],
        "z": np.full(k, geometry.z_front), "energy": energy_c, "e3x3": cl["energy"], "e_seed": cl["e_seed"],
        "e_seed_frac": (cl["e_seed"] / np.where(cl["energy"] > 0, cl["energy"], 1.0)).astype(np.float32),
        "sxx": cl["sxx"].astype(np.float32), "syy": cl["syy"].astype(np.float32), "sxy": cl["sxy"].astype(np.float32),
        "n_cells": cl["n_cells"].astype(np.int16),
        "track_distance": np.where(np.isfinite(dist), dist, np.nan).astype(np.float32),
    }
    if cfg.store_matrix:
        clusters["matrix"] = _seed_matrices(seed_sh, dep_sh, dep_px, dep_e, int(geometry.grid_n) ** 2)
    # --- photons: neutral clusters, direction from the event's primary vertex
    nz = np.nonzero(neutral)[0]
    ev_all = np.asarray(events["event"], dtype=np.int64)
    ev_order = np.argsort(ev_all)
    if ev_all.size:
        pos_e = np.clip(np.searchsorted(ev_all[ev_order], cl["event"][nz]), 0, ev_all.size - 1)
        j = np.where(ev_all[ev_order][pos_e] == cl["event"][nz], ev_order[pos_e], -1)
    else:
        j = np.full(nz.size, -1, dtype=np.int64)
    pv = [np.where(j >= 0, np.asarray(events[c], dtype=np.float64)[np.maximum(j, 0)], 0.0) if j.size else np.zeros(0)
          for c in ("pv_x", "pv_y", "pv_z")]
    dx, dy, dz = cl["x"][nz] - pv[0], cl["y"][nz] - pv[1], geometry.z_front - pv[2]
    r = np.sqrt(dx * dx + dy * dy + dz * dz)
    e_n = energy_c[nz]
    px_n, py_n, pz_n = e_n * dx / r, e_n * dy / r, e_n * dz / r
    pt_n = np.hypot(px_n, py_n)
    spread = np.sqrt(np.maximum(cl["sxx"][nz] + cl["syy"][nz], 0.0)) / size[nz]
    d_n = dist[nz]
    neutrals = {
        "event": cl["event"][nz].astype(np.int32), "index": _local_index(cl["event"][nz]).astype(np.int32),
        "mc_particle": mc[nz].astype(np.int32), "cluster": local[nz].astype(np.int32),
        "e": e_n, "px": px_n, "py": py_n, "pz": pz_n, "pt": pt_n,
        "CL": photon_cl(d_n, spread, e_n).astype(np.float32),
        "is_not_e": np.where(np.isfinite(d_n), 1.0 - np.exp(-0.5 * d_n * d_n), 1.0).astype(np.float32),
        "is_merged_pi0": (pt_n > cfg.merged_pt_min) & (spread > cfg.merged_spread),
    }
    return {"calo_clusters": clusters, "neutral_protoparticles": neutrals, "protoparticles": protos}


def _seed_matrices(seed_shower: np.ndarray, shower: np.ndarray, pixel: np.ndarray, energy: np.ndarray, g2: int) -> np.ndarray:
    """``(k, g²)`` float64 matrix of each cluster's seed shower (zeros without one) from the deposits."""
    out = np.zeros((seed_shower.shape[0], g2))
    has = seed_shower >= 0
    if not has.any():
        return out
    wanted, inv = np.unique(seed_shower[has], return_inverse=True)
    pos = np.searchsorted(wanted, shower)
    hit = wanted[np.minimum(pos, wanted.size - 1)] == shower
    rows = np.zeros((wanted.size, g2))
    rows[pos[hit], pixel[hit]] = energy[hit]
    out[has] = rows[inv]
    return out


def _local_index(event: np.ndarray) -> np.ndarray:
    """0, 1, 2, ... within each run of equal (sorted) event numbers."""
    ev = np.asarray(event, dtype=np.int64)
    if ev.size == 0:
        return np.zeros(0, dtype=np.int64)
    start = np.concatenate([[True], ev[1:] != ev[:-1]])
    first = np.maximum.accumulate(np.where(start, np.arange(ev.size), 0))
    return np.arange(ev.size) - first
