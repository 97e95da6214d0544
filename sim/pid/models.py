"""Per-species chained PID models: RICH GAN → muon (IsMuon classifier + MuonLL GAN) → global GAN.

For each species (``e, mu, pi, K, p``, all shipped) four models, trained on sWeighted
PIDCalib-like samples (:mod:`sim.reference.calibration`), generate the PID columns of
:data:`sim.reference.pid.PID_COLUMNS` for a track with momentum ``p`` [MeV],
pseudorapidity ``eta`` and event occupancy ``n_tracks``:

==============  ==============================================  ================================
file            model                                           conditions → outputs
==============  ==============================================  ================================
``X_rich``      Cramér GAN (tracks with RICH information)       p, eta, n_tracks → RichDLLe/mu/K/p
``X_ismuon``    binary MLP classifier, P(IsMuon)                p, eta, n_tracks → is_muon
``X_muonll``    Cramér GAN (IsMuon tracks only)                 p, eta, n_tracks → MuonMuLL, MuonBkgLL
``X_global``    Cramér GAN, conditioned on the RICH, muon and   p, eta, n_tracks, RichDLL×4,
                calorimeter outputs (the chain of LHCb's        is_muon, MuonDLL, EcalPIDe →
                Lamarr)                                         dPIDe/mu/K/p,
                                                                ProbNNe/mu/pi/k/p/ghost
==============  ==============================================  ================================

Chaining: generation runs the RICH GAN, draws IsMuon from the classifier's probability,
runs the MuonLL GAN on IsMuon tracks (the others get :data:`MUON_LL_SENTINEL`), then the
global GAN with the generated RICH and muon outputs and the track's calorimeter
electron likelihood ``EcalPIDe`` (written by the ``calorimeter`` pass; 0 without a
matched cluster) as conditions.  The global GAN generates the *residuals* ``dPIDx =
PIDx - RichDLLx`` (``dPIDmu = PIDmu - RichDLLmu - MuonDLL``, ``MuonDLL = MuonMuLL -
MuonBkgLL`` for IsMuon tracks, else 0; ``dPIDe = PIDe - RichDLLe - EcalPIDe``): the
combined DLLs are sums of sub-detector terms, and generating the sum's remainder keeps
the exact correlation with the RICH output and with the calorimeter's E/p that a GAN
would only approximate, ``PIDe = RichDLLe + EcalPIDe + dPIDe`` as in the reference
(where ``dPIDe`` is 0); ``ProbNNe`` and the other ProbNNs follow ``EcalPIDe`` through
the conditioning.

``has_rich`` is not learned: it is the geometric acceptance of the two RICH radiators
(polar angle from ``eta``) and ``p > p_min_rich`` of :class:`~sim.reference.pid.PIDConfig`
(every calibration track is inside it); tracks outside get DLL = 0 as in the reference.

Physical rules enforced on the generated response (no retraining: the models were
trained on Long tracks inside every acceptance), with the track type (optional,
default Long) and :func:`sim.detector.reach.subdetector_reach`:

* RICH information only where a radiator the track type traverses is in acceptance
  (Upstream tracks: RICH1 only; their RICH DLLs come from the same RICH GAN,
  an approximation: at the momenta of Upstream tracks, mostly below 5 GeV, below the
  RICH2 kaon threshold of 15.6 GeV, RICH1 carries the K/π information);
* no ``is_muon`` (muon likelihoods = :data:`MUON_LL_SENTINEL`) for tracks that do not
  reach the muon stations (Upstream) or lie outside the muon acceptance or below the
  first IsMuon momentum edge (3 GeV); the global GAN is then conditioned on
  ``is_muon = 0``;
* the global GAN's residuals are kept only where their sub-detector gave information:
  ``dPIDK, dPIDp`` only with RICH information, ``dPIDmu`` only for IsMuon tracks,
  ``dPIDe`` only inside the ECAL acceptance of a track that reaches it, ``EcalPIDe``
  (0 without a matched cluster, the calorimeter pass's geometry) for every track whose
  type reaches the ECAL (not Upstream), as the reference adds it.  A combined DLL without any contributing sub-detector is 0, as LHCb
  fills absent likelihoods (tracks outside every acceptance used to get the GAN's
  out-of-domain residual: most very forward Downstream tracks had PIDe > 2).

Models live in ``sim/models/pid/`` as ``.keras`` + ``.json`` sidecar (see
:mod:`sim.training.io`); :func:`load_pid_models` loads and checks them all.
Units: MeV.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mambah.codes import MUON_LL_SENTINEL, PID_COLUMNS
from mambah.errors import ConfigError, ModelError
from sim.core.modelio import MODELS_DIR
from sim.detector.card import DetectorCard, card

__all__ = (
    "CONDITIONS",
    "DEFAULT_MODEL_DIR",
    "GLOBAL_CONDITIONS",
    "GLOBAL_TARGETS",
    "MODEL_PARTS",
    "MUON_TARGETS",
    "PIDModelSet",
    "REQUIRED_COLUMNS",
    "RICH_TARGETS",
    "SHIPPED_SPECIES",
    "SPECIES",
    "SpeciesModels",
    "generate_species",
    "ismuon_allowed",
    "load_pid_models",
    "load_species_models",
    "rich_acceptance",
    "species_of_pid",
)

log = logging.getLogger(__name__)

#: Species name → |PDG id|.
SPECIES: dict[str, int] = {"e": 11, "mu": 13, "pi": 211, "K": 321, "p": 2212}
#: Species with shipped default models.
SHIPPED_SPECIES: tuple[str, ...] = ("e", "mu", "pi", "K", "p")
#: Where the shipped models are.
DEFAULT_MODEL_DIR: Path = MODELS_DIR / "pid"

CONDITIONS: tuple[str, ...] = ("p", "eta", "n_tracks")
RICH_TARGETS: tuple[str, ...] = ("RichDLLe", "RichDLLmu", "RichDLLK", "RichDLLp")
MUON_TARGETS: tuple[str, ...] = ("MuonMuLL", "MuonBkgLL")
GLOBAL_CONDITIONS: tuple[str, ...] = (*CONDITIONS, *RICH_TARGETS, "is_muon", "MuonDLL", "EcalPIDe")
PROBNN: tuple[str, ...] = ("ProbNNe", "ProbNNmu", "ProbNNpi", "ProbNNk", "ProbNNp", "ProbNNghost")
GLOBAL_TARGETS: tuple[str, ...] = ("dPIDe", "dPIDmu", "dPIDK", "dPIDp", *PROBNN)
#: Columns a training sample must hold (besides its weight column): ``EcalPIDe`` is the
#: calorimeter electron likelihood of the track (0 without a matched cluster).
REQUIRED_COLUMNS: tuple[str, ...] = (*CONDITIONS, *PID_COLUMNS, "EcalPIDe")

#: part → (kind, inputs, outputs)
MODEL_PARTS: dict[str, tuple[str, tuple[str, ...], tuple[str, ...]]] = {
    "rich": ("generator", CONDITIONS, RICH_TARGETS),
    "ismuon": ("classifier", CONDITIONS, ("is_muon",)),
    "muonll": ("generator", CONDITIONS, MUON_TARGETS),
    "global": ("generator", GLOBAL_CONDITIONS, GLOBAL_TARGETS),
}

#: Default training settings of each GAN part (``epochs`` is overridden by the caller).
GAN_SETTINGS: dict[str, dict[str, Any]] = {
    "rich": {"n_noise": 8, "batch_size": 512, "hidden_generator": (64, 64, 64),
             "hidden_critic": (64, 64, 64), "n_critic_features": 16, "target_bins": 12},
    "muonll": {"n_noise": 4, "batch_size": 256, "hidden_generator": (32, 32),
               "hidden_critic": (32, 32), "n_critic_features": 8},
    "global": {"n_noise": 8, "batch_size": 512, "hidden_generator": (64, 64, 64),
               "hidden_critic": (64, 64, 64), "n_critic_features": 16},
}
#: Quantile points of the preprocessing (keeps the sidecars small).
N_QUANTILES = 256
#: Minimum IsMuon rows for the MuonLL GAN.
MIN_MUON_ROWS = 100


def species_of_pid(pid: np.ndarray) -> np.ndarray:
    """Species name per PDG id (sign ignored); anything else (ghosts: 0) → ``"pi"``.

    Args:
        pid: ``(n,)`` PDG ids.

    Returns:
        ``(n,)`` array of species names (``object`` dtype).
    """
    a = np.abs(np.asarray(pid, dtype=np.int64))
    out = np.full(a.shape, "pi", dtype=object)
    for name, code in SPECIES.items():
        out[a == code] = name
    return out


def rich_acceptance(p: np.ndarray, eta: np.ndarray, config: DetectorCard | None = None) -> np.ndarray:
    """``has_rich``: inside RICH1 or RICH2 polar-angle acceptance and ``p > p_min_rich``.

    Args:
        p: ``(n,)`` momentum [MeV].
        eta: ``(n,)`` pseudorapidity.
        config: the detector card (acceptances [mrad], ``p_min_rich`` [MeV]); default
            the shipped models' card.

    Returns:
        ``(n,)`` bool.
    """
    theta = 2e3 * np.arctan(np.exp(-np.asarray(eta, dtype=np.float64)))  # mrad
    inside = np.zeros(theta.shape, dtype=bool)
    config = config if config is not None else card()
    for lo, hi in (config.rich1_theta, config.rich2_theta):
        inside |= (theta >= lo) & (theta <= hi)
    return inside & (np.asarray(p, dtype=np.float64) > config.p_min_rich)


def ismuon_allowed(
    p: np.ndarray, eta: np.ndarray, track_type: np.ndarray | None = None, config: DetectorCard | None = None
) -> np.ndarray:
    """Tracks that can be IsMuon: reaching the muon stations inside their acceptance, above 3 GeV.

    The IsMuon classifier is trained on, and applied to, these tracks only; every other
    track is never IsMuon (the reference's rule, :mod:`sim.reference.pid`).

    Args:
        p: ``(n,)`` momentum [MeV]; eta: ``(n,)``.
        track_type: ``(n,)`` codes 3, 4, 5 (default all Long).
        config: the detector card (muon acceptance, ``is_muon_p_edges``).

    Returns:
        ``(n,)`` bool.
    """
    from sim.detector.reach import subdetector_reach

    cfg = config if config is not None else card()
    p = np.asarray(p, dtype=np.float64)
    tt = np.full(p.shape, 3, dtype=np.int64) if track_type is None else np.asarray(track_type)
    theta = 2e3 * np.arctan(np.exp(-np.asarray(eta, dtype=np.float64)))
    return np.asarray(subdetector_reach(tt, theta, p, cfg)["muon"] & (p > cfg.is_muon_p_edges[0]))


@dataclass
class SpeciesModels:
    """The four chained models of one species (see the module docstring)."""

    species: str
    rich: Any
    ismuon: Any
    muonll: Any
    global_: Any

    def parts(self) -> dict[str, Any]:
        return {"rich": self.rich, "ismuon": self.ismuon, "muonll": self.muonll, "global": self.global_}


@dataclass
class PIDModelSet:
    """Models per species plus the RICH acceptance; ``fallback`` serves unknown species."""

    models: dict[str, SpeciesModels]
    config: DetectorCard = field(default_factory=card)
    fallback: str = "pi"

    def compiled(self) -> PIDModelSet:
        """A copy whose networks run through one ``tf.function`` each (same results, ~2x faster).

        Uses :class:`sim.core.modelio.CompiledModel` (shared with the detector passes).
        """
        from sim.core.modelio import CompiledModel

        wrapped = {
            s: SpeciesModels(s, *(CompiledModel(m) for m in (sm.rich, sm.ismuon, sm.muonll, sm.global_)))
            for s, sm in self.models.items()
        }
        return PIDModelSet(wrapped, self.config, self.fallback)

    def generate(
        self,
        species: np.ndarray,
        p: np.ndarray,
        eta: np.ndarray,
        n_tracks: np.ndarray,
        rng: np.random.Generator,
        track_type: np.ndarray | None = None,
        ecal_pid: np.ndarray | None = None,
    ) -> dict[str, np.ndarray]:
        """PID columns for a batch of tracks, vectorised per species.

        Args:
            species: ``(n,)`` species names (e.g. from :func:`species_of_pid`); names
                without a model use the ``fallback`` (pion) model.
            p: ``(n,)`` momentum [MeV]; eta: ``(n,)``; n_tracks: ``(n,)`` event occupancy.
            rng: source of randomness (noise and IsMuon draws).
            track_type: ``(n,)`` codes 3, 4, 5 (default all Long), see the module docstring.
            ecal_pid: ``(n,)`` calorimeter electron likelihood ``EcalPIDe`` of each
                track (0 without a matched cluster); default 0 for every track.

        Returns:
            Every column of :data:`PID_COLUMNS`, shape ``(n,)`` (``has_rich``,
            ``is_muon`` bool; the others float64).
        """
        species = np.asarray(species, dtype=object)
        n = species.shape[0]
        out = _empty_columns(n)
        names = np.where(np.isin(species, list(self.models)), species, self.fallback)
        for name in sorted(set(names.tolist())):
            if name not in self.models:
                raise ModelError(f"no PID model for species {name!r} (fallback); loaded: {sorted(self.models)}")
            sel = np.nonzero(names == name)[0]
            cols = generate_species(self.models[name], p[sel], eta[sel], n_tracks[sel], rng, self.config,
                                    None if track_type is None else np.asarray(track_type)[sel],
                                    None if ecal_pid is None else np.asarray(ecal_pid)[sel])
            for key, values in cols.items():
                out[key][sel] = values
        return out


def _empty_columns(n: int) -> dict[str, np.ndarray]:
    return {c: np.zeros(n, dtype=bool if c in ("has_rich", "is_muon") else np.float64) for c in PID_COLUMNS}


def generate_species(
    models: SpeciesModels,
    p: np.ndarray,
    eta: np.ndarray,
    n_tracks: np.ndarray,
    rng: np.random.Generator,
    config: DetectorCard | None = None,
    track_type: np.ndarray | None = None,
    ecal_pid: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Run the chain RICH → muon → global for ``n`` tracks of one species.

    Args:
        models: the species' models.
        p: ``(n,)`` momentum [MeV]; eta: ``(n,)``; n_tracks: ``(n,)``.
        rng: numpy generator.
        config: the detector card (acceptances, thresholds).
        track_type: ``(n,)`` codes 3, 4, 5 (default all Long); the physical rules of
            the module docstring follow from it.
        ecal_pid: ``(n,)`` ``EcalPIDe`` of each track (0 without a matched cluster;
            default 0); kept for every track whose type reaches the ECAL (the
            calorimeter reconstruction, not the card's polar-angle window, decides
            where a cluster exists, as in the reference).

    Raises:
        DataError: a track type other than 3, 4, 5.

    Returns:
        The :data:`PID_COLUMNS`, each ``(n,)``.
    """
    p = np.asarray(p, dtype=np.float64)
    n = p.shape[0]
    out = _empty_columns(n)
    if n == 0:
        return out
    from sim.detector.reach import subdetector_reach

    cond = np.column_stack([p, np.asarray(eta, dtype=np.float64), np.asarray(n_tracks, dtype=np.float64)])
    cfg = config if config is not None else card()
    tt = np.full(n, 3, dtype=np.int64) if track_type is None else np.asarray(track_type)
    theta = 2e3 * np.arctan(np.exp(-cond[:, 1]))  # mrad
    reach = subdetector_reach(tt, theta, p, cfg)
    has_rich = reach["rich1"] | reach["rich2"]
    rich = np.zeros((n, len(RICH_TARGETS)))
    if has_rich.any():
        rich[has_rich] = models.rich.sample(cond[has_rich], rng)
    prob = np.asarray(models.ismuon.predict_proba(cond), dtype=np.float64).reshape(-1)
    is_muon = (rng.random(n) < prob) & ismuon_allowed(p, cond[:, 1], tt, cfg)
    muon = np.full((n, 2), MUON_LL_SENTINEL)
    if is_muon.any():
        muon[is_muon] = models.muonll.sample(cond[is_muon], rng)
    muon_dll = np.where(is_muon, muon[:, 0] - muon[:, 1], 0.0)
    ecal = np.zeros(n) if ecal_pid is None else np.asarray(ecal_pid, dtype=np.float64)
    # the calorimeter pass decides where a cluster exists (EcalPIDe 0 without one: its ECAL
    # geometry, not the card's polar-angle window); only the track type can forbid the term
    from sim.detector.reach import REACH

    reaches_ecal = np.isin(tt, [code for code, dets in REACH.items() if "ecal" in dets])
    ecal = np.where(reaches_ecal, ecal, 0.0)
    glob = models.global_.sample(np.column_stack([cond, rich, is_muon.astype(np.float64), muon_dll, ecal]), rng)
    # residuals only where their sub-detector gave information (module docstring)
    glob[:, 0] = np.where(reach["ecal"], glob[:, 0], 0.0)
    glob[:, 1] = np.where(is_muon, glob[:, 1], 0.0)
    glob[:, 2] = np.where(has_rich, glob[:, 2], 0.0)
    glob[:, 3] = np.where(has_rich, glob[:, 3], 0.0)
    out["has_rich"] = has_rich
    for j, name in enumerate(RICH_TARGETS):
        out[name] = rich[:, j]
    out["is_muon"] = is_muon
    out["MuonMuLL"], out["MuonBkgLL"] = muon[:, 0], muon[:, 1]
    out["PIDe"] = rich[:, 0] + ecal + glob[:, 0]
    out["PIDmu"] = rich[:, 1] + muon_dll + glob[:, 1]
    out["PIDK"] = rich[:, 2] + glob[:, 2]
    out["PIDp"] = rich[:, 3] + glob[:, 3]
    for j, name in enumerate(PROBNN):
        out[name] = np.clip(glob[:, 4 + j], 0.0, 1.0)
    return out


# --------------------------------------------------------------------------- loading


def _check_species(species: str) -> str:
    if species not in SPECIES:
        raise ConfigError(f"unknown PID species {species!r}; valid: {', '.join(SPECIES)}")
    return species


def load_species_models(species: str, directory: str | Path | None = None) -> SpeciesModels:
    """Load and check the four models of ``species`` from ``directory``.

    Raises:
        ConfigError: unknown species.
        ModelError: a missing/corrupt file, or a sidecar whose kind, inputs or outputs
            differ from :data:`MODEL_PARTS` (the message names the file).
    """
    from sim.core.io import load_model
    from sim.core.modelio import check_model_numbers

    _check_species(species)
    folder = Path(directory) if directory is not None else DEFAULT_MODEL_DIR
    loaded = {}
    for part, (kind, inputs, outputs) in MODEL_PARTS.items():
        path = folder / f"{species}_{part}.keras"
        model = load_model(path, expect_inputs=inputs, inference=True)
        if model.kind != kind:
            raise ModelError(f"model {path} is a {model.kind}, expected a {kind}")
        if kind == "generator" and model.output_names != outputs:
            raise ModelError(f"model {path} outputs {list(model.output_names)}, expected {list(outputs)}")
        if kind == "classifier" and len(model.output_names) != 1:
            raise ModelError(f"model {path} has {len(model.output_names)} classes, expected a binary classifier")
        check_model_numbers(model, path, f"PID model of {species!r}")  # finite, monotonic quantiles, widths
        loaded[part] = model
    return SpeciesModels(species, loaded["rich"], loaded["ismuon"], loaded["muonll"], loaded["global"])


def load_pid_models(
    directory: str | Path | None = None,
    species: Sequence[str] = SHIPPED_SPECIES,
    config: DetectorCard | None = None,
) -> PIDModelSet:
    """Load the models of every species in ``species`` (default: the shipped ones).

    Raises:
        ConfigError: unknown species, or no pion model (the fallback).
        ModelError: see :func:`load_species_models`.
    """
    if "pi" not in species:
        raise ConfigError(f"PID species {list(species)} must include 'pi' (the model of every other species)")
    return PIDModelSet({s: load_species_models(s, directory) for s in species}, config if config is not None else card())


# --------------------------------------------------------------------------- training
