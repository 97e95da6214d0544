"""Recipe of the ``calorimeter`` model: its trainer and the settings of the shipped model.

The fast shower model is two networks trained from one shower file (columns
:data:`~sim.detector.calorimeter.SHOWER_COLUMNS`, e.g. written by
:func:`sim.reference.ecal.write_shower_sample`)::

    mambah train calorimeter --data showers.parquet --output my.keras
    mambah train calorimeter_energy --data showers.parquet --output my_energy.keras
    mambah train calorimeter_hadron_energy --data showers.parquet --output my_hadron_energy.keras

and the pass (``model = "my.keras"``) loads ``my_energy.keras`` and ``my_hadron_energy.keras`` beside it.  ``scripts/train_calorimeter_model.py``
reproduces the shipped ``sim/models/calorimeter{,_energy}.keras`` with :data:`SHIPPED`
(15 000 reference showers of seed 1; ``--only-shape`` retrains the image GAN alone, as for
the shipped sub-pixel model, whose energy GAN is unchanged).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from mambah.errors import ConfigError, DataError
from sim.core.registry import register_trainer
from sim.detector.calorimeter import (
    CONDITIONS,
    ENERGY_CONDITIONS,
    HADRON_ENERGY_CONDITIONS,
    SCALARS,
    SHOWER_COLUMNS,
    matrices_to_targets,
    read_showers,
    shower_conditions,
)
from sim.detector.ecal_geometry import ECALGeometry

__all__ = (
    "SHIPPED",
    "SHIPPED_ENERGY",
    "SHIPPED_HADRON_ENERGY",
    "train_calorimeter",
    "train_calorimeter_energy",
    "train_calorimeter_hadron_energy",
    "train_calorimeter_shape",
)

#: Settings of the shipped image GAN: the sub-pixel generator with (16, 16) channels, 12 epochs
#: (373 CPU s, 873 s wall on the shared 2 cores at load 11-13; code of commit 065e4d9).  On 6000
#: fresh showers (seed 2): resolution a, b within 0.5 %, 0.9 % of the reference, worst metric KS
#: 0.097 (width), x-profile difference 0.013, third-player AUC 0.815 (the 8-epoch (16, 8)
#: transposed-convolution model it replaces: 0.120, 0.010, 0.849, at 4x the CPU per shower).
SHIPPED: dict[str, Any] = {"seed": 11, "epochs": 12, "batch_size": 128, "learning_rate": 5e-4, "aux_weight": 0.1,
                           "generator_channels": (16, 16), "upsampler": "subpixel"}
#: Settings of the shipped energy GAN (106 s).
SHIPPED_ENERGY: dict[str, Any] = {"seed": 12, "epochs": 60}
#: Settings of the shipped hadron energy GAN.
SHIPPED_HADRON_ENERGY: dict[str, Any] = {"seed": 13, "epochs": 300}


def _refuse(weight: str | None, tree: str | None) -> None:
    if weight is not None:
        raise ConfigError(f"the calorimeter model takes no per-row weights (--weight {weight!r}); drop the option")
    if tree is not None:
        raise ConfigError(f"the calorimeter model reads Parquet shower files, not a ROOT tree (--tree {tree!r})")


def _prepare(data: str | Path | Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
    geo = ECALGeometry()
    d = read_showers(data, int(geo.grid_n))
    if np.any(d["energy"] <= 0):
        raise DataError("shower data: energy must be positive (MeV)")
    cond = shower_conditions(d["pid"], d["energy"], d["x"], d["y"], d["tx"], d["ty"], geo)
    shapes, total = matrices_to_targets(d["matrix"], d["energy"])
    data_file = None if isinstance(data, Mapping) else str(data)
    return cond, shapes, total, {"data_file": data_file, "card": "default"}


@register_trainer("calorimeter", columns=SHOWER_COLUMNS, recipe=SHIPPED,
                  help="convolutional shower GAN of the 30x30 ECAL deposits (+ the two energy GANs beside it)")
def train_calorimeter_shape(
    data: str | Path | Mapping[str, Any],
    *,
    epochs: int = 12,
    seed: int = 0,
    batch_size: int = 128,
    learning_rate: float = 5e-4,
    aux_weight: float = 0.1,
    generator_channels: tuple[int, ...] = (16, 16),
    upsampler: str = "subpixel",
    oversample_hadrons: int = 1,
    progress: bool = False,
    weight: str | None = None,
    tree: str | None = None,
) -> Any:
    """The image GAN of the fast shower model (WGAN-GP + auxiliary metric regressor).

    Args:
        data: Parquet file or mapping with :data:`~sim.detector.calorimeter.SHOWER_COLUMNS`.
        epochs, seed, batch_size, learning_rate, aux_weight, generator_channels, upsampler:
            :func:`~sim.training.image_gan.train_image_gan`.
        oversample_hadrons: hadron and muon rows enter the training set this many times
            (they are a fifth of the reference sample and their shapes the poorest).
        progress: progress bar.
        weight, tree: refused (no weights; Parquet only).

    Returns:
        The generator :class:`~sim.core.io.TrainedModel` (``calorimeter.keras``); the pass
        also needs the energy GANs (:func:`train_calorimeter_energy`,
        :func:`train_calorimeter_hadron_energy`) saved beside it as ``<stem>_energy.keras``
        and ``<stem>_hadron_energy.keras``.
    """
    from sim.training.image_gan import train_image_gan

    _refuse(weight, tree)
    cond, shapes, total, prov = _prepare(data)
    k = int(oversample_hadrons)
    if k != oversample_hadrons or k < 1:
        raise ConfigError(f"oversample_hadrons={oversample_hadrons!r}; expected an integer >= 1")
    if k > 1:
        had = np.flatnonzero((cond[:, CONDITIONS.index("is_hadron")] == 1) | (cond[:, CONDITIONS.index("is_muon")] == 1))
        rows = np.concatenate([np.arange(cond.shape[0]), np.tile(had, k - 1)])
        cond, shapes, total = cond[rows], shapes[rows], total[rows]
        prov = {**prov, "oversample_hadrons": k}
    return train_image_gan(
        cond, shapes, total, algorithm="wgan-gp", epochs=epochs, batch_size=batch_size, seed=seed,
        learning_rate=learning_rate, aux_weight=aux_weight, progress=progress,
        generator_channels=tuple(generator_channels), upsampler=upsampler,
        condition_names=CONDITIONS, scalar_names=SCALARS, provenance={**prov, "model": "calorimeter"},
    )


@register_trainer("calorimeter_energy", columns=SHOWER_COLUMNS, recipe=SHIPPED_ENERGY,
                  help="Cramér GAN of the e/γ shower totals (save as <calorimeter stem>_energy.keras)")
def train_calorimeter_energy(
    data: str | Path | Mapping[str, Any],
    *,
    epochs: int = 60,
    seed: int = 1,
    progress: bool = False,
    weight: str | None = None,
    tree: str | None = None,
) -> Any:
    """The energy GAN of the fast shower model: ``asinh((sum/E - 1)/σ_nom)`` of e/γ showers.

    Why a separate network: the image GAN's own scalar head, trained 8 epochs on 2 CPU
    cores, narrowed the e/γ energy resolution by about 30 % (σ/E 1.7 % instead of 2.5 %
    at 10-30 GeV); an MLP GAN on all four species leaked hadron-like totals into 2-7 %
    of the e/γ showers; on e/γ alone, with its quantile preprocessing, it learns the
    1-D conditional distribution in about 2 minutes.  Hadrons and muons keep the image
    GAN's total.

    Args:
        data: Parquet file or mapping with :data:`~sim.detector.calorimeter.SHOWER_COLUMNS`.
        epochs, seed: :func:`~sim.training.gan.train_gan` (Cramér, cosine schedule, EMA 0.99).
        progress: progress bar.
        weight, tree: refused (no weights; Parquet only).

    Raises:
        DataError: the file holds no photon or electron shower.
    """
    _refuse(weight, tree)
    return _train_total_gan(data, hadronic=False, epochs=epochs, seed=seed, batch_size=512, progress=progress)


@register_trainer("calorimeter_hadron_energy", columns=SHOWER_COLUMNS, recipe=SHIPPED_HADRON_ENERGY,
                  help="Cramér GAN of the hadron and muon ECAL totals (save as <calorimeter stem>_hadron_energy.keras)")
def train_calorimeter_hadron_energy(
    data: str | Path | Mapping[str, Any],
    *,
    epochs: int = 300,
    seed: int = 13,
    progress: bool = False,
    weight: str | None = None,
    tree: str | None = None,
) -> Any:
    """The hadron energy GAN of the fast shower model: ``asinh((sum/E - 1)/σ_nom)`` of hadrons and muons.

    Why: the image GAN's scalar head, trained for the shapes, gave 5-14 % of 1-100 GeV
    pions a total of 0.85-1.15 E (the reference: 1.8 %), an electron-like E/p that
    raised the pion misID of ``EcalPIDe > 0`` from < 0.5 % to 6-9 %.  Conditions
    :data:`~sim.detector.calorimeter.HADRON_ENERGY_CONDITIONS`; the same Cramér MLP as
    :func:`train_calorimeter_energy` with more epochs (the shipped file holds 3 000
    hadron and muon showers).

    Args:
        data: Parquet file or mapping with :data:`~sim.detector.calorimeter.SHOWER_COLUMNS`.
        epochs, seed: :func:`~sim.training.gan.train_gan` (Cramér, cosine schedule, EMA 0.99).
        progress: progress bar.
        weight, tree: refused (no weights; Parquet only).

    Raises:
        DataError: the file holds no hadron or muon shower.
    """
    _refuse(weight, tree)
    return _train_total_gan(data, hadronic=True, epochs=epochs, seed=seed, batch_size=256, progress=progress)


def _train_total_gan(
    data: str | Path | Mapping[str, Any], *, hadronic: bool, epochs: int, seed: int, batch_size: int, progress: bool,
) -> Any:
    """The Cramér MLP GAN of the shower totals of one family: e/γ (``hadronic=False``) or hadrons and muons.

    The two energy GANs differ only in the showers they see, their conditions
    (:data:`~sim.detector.calorimeter.ENERGY_CONDITIONS` /
    :data:`~sim.detector.calorimeter.HADRON_ENERGY_CONDITIONS`), the batch size and the
    model name; the algorithm (Cramér, learning rate 1e-3, cosine schedule, EMA 0.99) is one.
    """
    from sim.training.gan import train_gan

    cond, _, total, prov = _prepare(data)
    is_hadron = cond[:, CONDITIONS.index("is_hadron")] == 1
    is_muon = cond[:, CONDITIONS.index("is_muon")] == 1
    rows = (is_hadron | is_muon) if hadronic else ~(is_hadron | is_muon)
    if not rows.any():
        what = ("no hadron or muon shower (pid other than 22 / ±11) for the hadron energy GAN" if hadronic
                else "no photon or electron shower (pid 22 / ±11) for the energy GAN")
        raise DataError(f"shower data hold {what}")
    names = HADRON_ENERGY_CONDITIONS if hadronic else ENERGY_CONDITIONS
    return train_gan(
        cond[rows][:, [CONDITIONS.index(c) for c in names]], total[rows], algorithm="cramer", epochs=epochs,
        batch_size=batch_size, learning_rate=1e-3, lr_schedule="cosine", ema=0.99, seed=seed, progress=progress,
        condition_names=names, target_names=SCALARS,
        provenance={**prov, "model": "calorimeter_hadron_energy" if hadronic else "calorimeter_energy"},
    )


def train_calorimeter(
    data: str | Path | Mapping[str, Any], *, epochs: int = 12, energy_epochs: int = 60, seed: int = 11,
    only_energy: bool = False, progress: bool = False, generator_channels: tuple[int, ...] = (16, 16),
    upsampler: str = "subpixel", only_shape: bool = False, hadron_epochs: int = 300, only: str | None = None,
    oversample_hadrons: int = 1,
) -> tuple[Any, Any, Any]:
    """The three networks: ``(shape, e/γ energy, hadron energy)`` models (seeds ``seed``, ``+ 1``, ``+ 2``).

    ``only`` (``"shape"``, ``"energy"`` or ``"hadron_energy"``) trains one of them, the others
    are ``None``; ``only_energy`` / ``only_shape`` are the older spellings of the first two.
    """
    if only_energy and only_shape:
        raise ConfigError("train_calorimeter: only_energy and only_shape exclude each other; give at most one")
    which = only or ("energy" if only_energy else "shape" if only_shape else None)
    if which not in (None, "shape", "energy", "hadron_energy"):
        raise ConfigError(f"train_calorimeter: only={only!r}; choose 'shape', 'energy' or 'hadron_energy'")
    shape = train_calorimeter_shape(data, epochs=epochs, seed=seed, progress=progress,
                                    generator_channels=generator_channels, upsampler=upsampler,
                                    oversample_hadrons=oversample_hadrons) \
        if which in (None, "shape") else None
    energy = train_calorimeter_energy(data, epochs=energy_epochs, seed=seed + 1, progress=progress) \
        if which in (None, "energy") else None
    hadron = train_calorimeter_hadron_energy(data, epochs=hadron_epochs, seed=seed + 2, progress=progress) \
        if which in (None, "hadron_energy") else None
    return shape, energy, hadron
