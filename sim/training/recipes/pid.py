"""Recipe of the PID models: the trainer of one species' four chained models and the shipped settings.

``scripts/train_pid_models.py`` and ``mambah train pid`` train with these settings;
:data:`SHIPPED` is the recipe of every shipped species.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mambah.errors import ConfigError, DataError
from sim.core.registry import register_trainer
from sim.pid.models import (
    CONDITIONS,
    GAN_SETTINGS,
    MIN_MUON_ROWS,
    MODEL_PARTS,
    MUON_TARGETS,
    N_QUANTILES,
    PROBNN,
    REQUIRED_COLUMNS,
    RICH_TARGETS,
    SpeciesModels,
    _check_species,
    ismuon_allowed,
)
from sim.reference.pid import RICH1_C4F10

log = logging.getLogger(__name__)

__all__ = ("train_gan_part", "train_species_models", "SEEDS", "EPOCHS", "LEARNING_RATE", "LR_SCHEDULE", "EMA", "GAN_OVERRIDES", "KAON_THRESHOLD_RICH1", "SHIPPED", "cherenkov_threshold", "shipped_settings")

#: Fixed seeds: calibration sample and model initialisation, per species.
SEEDS: dict[str, int] = {"mu": 101, "pi": 102, "K": 103, "p": 104, "e": 105}
#: GAN epochs of the shipped models, per species.
EPOCHS: dict[str, int] = {"mu": 60, "pi": 80, "K": 80, "p": 80, "e": 60}
#: GAN Adam learning rate, per species.
LEARNING_RATE: dict[str, float] = {"mu": 1e-3, "pi": 5e-4, "K": 1e-3, "p": 1e-3, "e": 1e-3}
#: GAN learning-rate schedule and generator weight averaging (EMA momentum), every species.
LR_SCHEDULE: str = "cosine"
EMA: float = 0.999


def cherenkov_threshold(mass: float, n_minus_1: float) -> float:
    """Momentum [MeV] above which a particle of ``mass`` [MeV] radiates: ``m / sqrt(n^2 - 1)``."""
    return float(mass / np.sqrt((1.0 + n_minus_1) ** 2 - 1.0))


#: The kaon's Cherenkov threshold in the reference RICH1 gas (C4F10, n - 1 = 1.4e-3:
#: 9.33 GeV; arXiv:1211.6759, Sect. 2; LHCb's PIDConferencePlots page: "9.3 GeV/c is RICH 1
#: kaon threshold").  Below it the kaon and proton hypotheses predict no
#: photon in either radiator (RICH2's CF4 thresholds are higher), so their likelihoods are
#: the same and RichDLLp = RichDLLK exactly: a true proton there never has PIDK > PIDp.
KAON_THRESHOLD_RICH1: float = cherenkov_threshold(493.677, RICH1_C4F10.n_minus_1)  # m_K, PDG 2024
#: Per-species overrides of sim.pid.models.GAN_SETTINGS.  Muons are above the Cherenkov
#: thresholds almost everywhere: the RICH GAN keeps the marginal target preprocessing
#: (the momentum-following one gave a worse 20-30 GeV bin, 0.026 vs 0.017).  Protons: the
#: RICH GAN learns RichDLLp - RichDLLK in place of RichDLLp, with no interpolation of the
#: momentum-following transform across the kaon threshold, so the difference is exactly 0
#: below it, as in the reference; that exact 0 spread over the noise space (target_ties), so
#: the network need not collapse its noise below the threshold and keep it collapsed just
#: above; 24 momentum bins, so the steep change of the K/p likelihood just above the threshold
#: is followed (docs/pid.md, "p -> K misID": fast / reference 1.78 with the plain transform,
#: 0.86 with the difference and the edge, 0.90 with 24 bins, 1.01 with the ties spread; 120
#: epochs for this GAN only: AUC 0.516 against 0.527 at 80, misID 0.99).  Kaons: the same transform
#: (RichDLLK = RichDLLp exactly below 9.33 GeV, as for every species in the reference) and the sWeights
#: regressed on the GAN's conditions and targets (sim.training.sweights): below 10 GeV 63-85 % of the D*
#: candidates are background, whose +- sWeights the GAN did not cancel (a 3-4 % pion-like RichDLLK tail);
#: ProbNNk > 0.5 of kaons below 10 GeV fast 0.657 -> 0.849 (transform) -> 0.873 (regressed weights),
#: reference 0.889 (docs/pid.md, "Kaons below 10 GeV").  Protons: the same regressed sWeights for their
#: RICH and global GANs (their ProbNNk below 10 GeV 0.774 -> 0.793, reference 0.817).
GAN_OVERRIDES: dict[str, dict[str, dict[str, object]]] = {
    "mu": {"rich": {"target_bins": None}},
    "p": {"rich": {"target_bins": 24, "target_edges": (KAON_THRESHOLD_RICH1,), "target_differences": ((3, 2),),
                   "target_ties": "spread", "epochs": 120, "weight_regression": True},
          "global": {"weight_regression": True}},
    "K": {"rich": {"target_bins": 24, "target_edges": (KAON_THRESHOLD_RICH1,), "target_differences": ((3, 2),),
                   "target_ties": "spread", "weight_regression": True}, "global": {"weight_regression": True}},
}


def shipped_settings(species: str) -> dict[str, Any]:
    """Keyword arguments of :func:`sim.pid.models.train_species_models` for the shipped ``species``."""
    return {
        "seed": SEEDS[species], "epochs": EPOCHS[species], "learning_rate": LEARNING_RATE[species],
        "lr_schedule": LR_SCHEDULE, "ema": EMA, "gan_settings": GAN_OVERRIDES.get(species),
    }


def _training_arrays(
    data: Mapping[str, np.ndarray], weights: np.ndarray | None, species: str
) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
    missing = [c for c in REQUIRED_COLUMNS if c not in data]
    if missing:
        raise DataError(f"PID training sample for {species!r} lacks column(s) {missing}; "
                        f"needed: {list(REQUIRED_COLUMNS)}")
    cols = {c: np.asarray(data[c], dtype=np.float64).reshape(-1) for c in REQUIRED_COLUMNS}
    n = cols["p"].size
    for c, v in cols.items():
        if v.size != n:
            raise DataError(f"PID training column {c!r} has {v.size} rows, 'p' has {n}")
        if not np.all(np.isfinite(v)):
            raise DataError(f"PID training column {c!r} holds NaN or inf")
    if weights is not None:
        weights = np.asarray(weights, dtype=np.float64).reshape(-1)
        if weights.size != n:
            raise DataError(f"PID training weights have {weights.size} rows, the sample {n}")
        if not np.all(np.isfinite(weights)):
            raise DataError("PID training weights hold NaN or inf")
        if not np.any(weights != 0):
            raise DataError("PID training weights are zero everywhere")
        if weights.sum() <= 0:
            raise DataError(f"PID training weights sum to {weights.sum():.4g}; need a positive sum")
    return cols, weights


def train_gan_part(
    part: str,
    conditions: np.ndarray,
    targets: np.ndarray,
    weights: np.ndarray | None = None,
    *,
    algorithm: str = "cramer",
    epochs: int = 15,
    seed: int = 0,
    learning_rate: float = 1e-3,
    lr_schedule: str = "constant",
    ema: float | None = None,
    progress: bool = False,
    checkpoint_dir: str | Path | None = None,
    resume: bool = False,
    provenance: Mapping[str, Any] | None = None,
    settings: Mapping[str, Any] | None = None,
) -> Any:
    """Train the GAN of one part (``"rich"``, ``"muonll"`` or ``"global"``) with its settings.

    Args:
        part: which model; fixes the column names (:data:`MODEL_PARTS`) and the network
            sizes (:data:`GAN_SETTINGS`).
        conditions: ``(n, c)`` raw conditions in ``MODEL_PARTS[part][1]`` order.
        targets: ``(n, t)`` raw targets in ``MODEL_PARTS[part][2]`` order.
        weights: ``(n,)`` signed sWeights or ``None``; used in the generator and
            critic losses (:func:`sim.training.train_gan`).
        algorithm, epochs, seed, learning_rate, lr_schedule, ema, progress, checkpoint_dir,
            resume: passed to :func:`sim.training.train_gan`.
        provenance: extra provenance entries.
        settings: overrides of :data:`GAN_SETTINGS` ``[part]`` (e.g. ``{"target_bins": None}``);
            an ``"epochs"`` entry replaces ``epochs`` for this part.

    Returns:
        The :class:`~sim.training.TrainedModel` generator.
    """
    from sim.training import train_gan

    if part not in GAN_SETTINGS:
        raise ConfigError(f"unknown PID GAN part {part!r}; valid: {', '.join(GAN_SETTINGS)}")
    _, names_c, names_t = MODEL_PARTS[part]
    merged = {**GAN_SETTINGS[part], **dict(settings or {})}
    epochs = int(merged.pop("epochs", epochs))  # a part's own epochs (the proton RICH GAN's 120)
    return train_gan(
        conditions, targets, weights, algorithm=algorithm, epochs=epochs, seed=seed,
        learning_rate=learning_rate, lr_schedule=lr_schedule, ema=ema, n_quantiles=N_QUANTILES,
        progress=progress, checkpoint_dir=checkpoint_dir, resume=resume, condition_names=names_c, target_names=names_t,
        provenance=dict(provenance or {}), **merged,
    )


def train_species_models(
    data: Mapping[str, np.ndarray],
    species: str,
    weights: np.ndarray | None = None,
    *,
    algorithm: str = "cramer",
    seed: int = 0,
    epochs: int = 15,
    classifier_epochs: int = 5,
    learning_rate: float = 1e-3,
    lr_schedule: str = "constant",
    ema: float | None = None,
    checkpoint_dir: str | Path | None = None,
    resume: bool = False,
    output_dir: str | Path | None = None,
    progress: bool = False,
    data_file: str | None = None,
    parts: Sequence[str] = tuple(MODEL_PARTS),
    gan_settings: Mapping[str, Mapping[str, Any]] | None = None,
) -> tuple[SpeciesModels, dict[str, float]]:
    """Train the four chained models of ``species`` on a (weighted) calibration sample.

    Args:
        data: column name → ``(n,)`` array with :data:`REQUIRED_COLUMNS` (``p`` [MeV],
            ``eta``, ``n_tracks`` and the :data:`PID_COLUMNS`).
        species: one of :data:`SPECIES`.
        weights: ``(n,)`` sWeights (negative values kept; they enter the generator and
            critic losses of every GAN and the classifier loss), or ``None``.
        algorithm: GAN algorithm, ``"cramer"``, ``"wgan-gp"`` or ``"bce"``.
        seed: seed of every model (each part adds a fixed offset).
        epochs: GAN epochs; classifier_epochs: IsMuon classifier epochs.
        learning_rate: GAN Adam learning rate.
        lr_schedule, ema: learning-rate schedule and generator weight averaging of the
            GANs (:func:`sim.training.train_gan`).
        checkpoint_dir: per-epoch GAN checkpoints in ``checkpoint_dir/<species>_<part>``.
        resume: continue the GANs from those checkpoints.
        output_dir: if given, save ``<species>_<part>.keras`` + ``.json`` there.
        progress: progress bars.
        data_file: recorded in the provenance.
        parts: train (and save) only these parts (default all four); the others are
            ``None`` in the returned :class:`SpeciesModels`.  Each part depends only on
            the calibration sample and its seed, so retraining one part gives the
            model a full run would.
        gan_settings: per-part overrides of :data:`GAN_SETTINGS`, e.g.
            ``{"rich": {"target_bins": None}}`` for a marginal target preprocessing;
            ``"weight_regression": True`` trains that part with the sWeights regressed on its
            conditions and targets (:func:`sim.training.sweights.regress_sweights`).

    Returns:
        (models, training seconds per part).

    Raises:
        ConfigError: unknown species or algorithm.
        DataError: missing column (named), NaN/inf, all-zero / NaN weights, too few
            IsMuon rows.
        TrainingError: a GAN loss became NaN/inf (its last good checkpoint is kept).
    """
    from sim.training import save_model, train_classifier

    _check_species(species)
    cols, w = _training_arrays(data, weights, species)
    cond = np.column_stack([cols[c] for c in CONDITIONS])
    is_muon = cols["is_muon"] > 0.5
    has_rich = cols["has_rich"] > 0.5
    muon_dll = np.where(is_muon, cols["MuonMuLL"] - cols["MuonBkgLL"], 0.0)
    ckpt = Path(checkpoint_dir) if checkpoint_dir is not None else None
    prov = {"species": species, "data_file": data_file, "mambah_part": None}
    times: dict[str, float] = {}

    def gan(part: str, rows: np.ndarray, c: np.ndarray, t: np.ndarray, offset: int) -> Any:
        if rows.sum() < MIN_MUON_ROWS:
            raise DataError(f"PID training sample for {species!r} has {int(rows.sum())} rows for the "
                            f"{part} model; need at least {MIN_MUON_ROWS}")
        t0 = time.perf_counter()
        settings = dict((gan_settings or {}).get(part) or {})
        regress = bool(settings.pop("weight_regression", False))
        wp = None if w is None else w[rows]
        part_prov = {**prov, "mambah_part": part}
        if regress and wp is not None:  # E[sWeight | conditions, targets] (sim.training.sweights)
            from sim.training.sweights import regress_sweights

            raw_sum = float(wp.sum())
            wp = regress_sweights(np.column_stack([c[rows], t[rows]]), wp, seed=seed + offset)
            part_prov["weights"] = "sWeights regressed on the conditions and targets (sim.training.sweights)"
            log.info("PID %s %s: sWeights regressed (sum %.1f, raw %.1f)", species, part, wp.sum(), raw_sum)
        model = train_gan_part(
            part, c[rows], t[rows], wp, algorithm=algorithm, epochs=epochs,
            seed=seed + offset, learning_rate=learning_rate, lr_schedule=lr_schedule, ema=ema, progress=progress,
            checkpoint_dir=None if ckpt is None else ckpt / f"{species}_{part}", resume=resume,
            provenance=part_prov, settings=settings,
        )
        times[part] = time.perf_counter() - t0
        log.info("PID %s %s GAN trained in %.1f s", species, part, times[part])
        return model

    unknown = sorted(set(parts) - set(MODEL_PARTS))
    if unknown or not parts:
        raise ConfigError(f"unknown PID model part(s) {unknown or list(parts)}; valid: {', '.join(MODEL_PARTS)}")
    rich = ismuon = muonll = glob = None
    if "rich" in parts:
        rich = gan("rich", has_rich, cond, np.column_stack([cols[c] for c in RICH_TARGETS]), 0)
    if "ismuon" in parts:
        # only tracks that can be IsMuon (muon acceptance, p > 3 GeV): elsewhere the pass
        # sets is_muon = 0 by rule, and a classifier fitted across that step smears it
        allowed = ismuon_allowed(cols["p"], cols["eta"])
        t0 = time.perf_counter()
        ismuon = train_classifier(
            cond[allowed], is_muon[allowed].astype(np.int64), None if w is None else w[allowed],
            epochs=classifier_epochs, batch_size=512, seed=seed + 1,
            hidden=(32, 32), n_quantiles=N_QUANTILES, progress=progress, validation_split=0.1,
            input_names=CONDITIONS, output_names=("is_muon",), provenance={**prov, "mambah_part": "ismuon"},
        )
        times["ismuon"] = time.perf_counter() - t0
    if "muonll" in parts:
        muonll = gan("muonll", is_muon, cond, np.column_stack([cols[c] for c in MUON_TARGETS]), 2)
    if "global" in parts:
        rich_arr = np.column_stack([cols[c] for c in RICH_TARGETS])
        gcond = np.column_stack([cond, rich_arr, is_muon.astype(np.float64), muon_dll, cols["EcalPIDe"]])
        resid = np.column_stack([
            cols["PIDe"] - cols["RichDLLe"] - cols["EcalPIDe"],
            cols["PIDmu"] - cols["RichDLLmu"] - muon_dll,
            cols["PIDK"] - cols["RichDLLK"],
            cols["PIDp"] - cols["RichDLLp"],
            *[cols[c] for c in PROBNN],
        ])
        glob = gan("global", np.ones(cond.shape[0], dtype=bool), gcond, resid, 3)
    models = SpeciesModels(species, rich, ismuon, muonll, glob)
    if output_dir is not None:
        for part, model in models.parts().items():
            if model is not None:
                save_model(model, Path(output_dir) / f"{species}_{part}.keras")
    return models, times


#: The shipped recipe, per species.
SHIPPED: dict[str, Any] = {sp: shipped_settings(sp) for sp in SEEDS}

register_trainer("pid", columns=REQUIRED_COLUMNS, recipe=SHIPPED,
                 help="the four chained PID models of one species (RICH, IsMuon, MuonLL, global)")(train_species_models)
