"""The registry of ntuple variables: named, vectorised functions with units.

Every column Ficino writes comes from one :class:`Variable` registered here.
A variable is a pure function on a dict of 1-D numpy arrays, one entry per
candidate, holding what :mod:`ficino.candidates` built for one particle of the
decay (or for the event).  Adding a variable is one call of :func:`register`
(or the :func:`variable` decorator) in this module.

Scopes (which particles of the descriptor get the column ``<alias>_<NAME>``):

``truth``      every particle (MC truth).
``reco``       charged final-state particles (from their track) and composites
               (sum of their reconstructed charged final-state descendants).
``track``      charged final-state particles only (track and PID columns).
``composite``  particles with daughters in the descriptor.
``event``      one column per event, written without alias.
``photon``     photons (``gamma`` leaves of the descriptor, from ``neutral_protoparticles``).

Keys of the per-particle dict (all arrays of shape ``(n,)``, units MeV, mm):

* truth: ``pid``, ``true_px/py/pz/e``, ``mother_pid`` (0 if none),
  ``ov_x/y/z`` (production vertex), ``ev_x/y/z`` (decay vertex, NaN if stable);
* reco (tracks and composites): ``px, py, pz, e, m`` (E and M of a track with
  the PDG mass of its true species);
* track: the ``protoparticles`` columns (NULL -> NaN), ``track_type`` (0 when
  there is no matched track);
* composite (vertex fit, :mod:`ficino.candidates`): ``end_x/y/z``, ``end_x/y/zerr``,
  ``end_chi2/ndof``, ``pv_x/y/z``, ``pv_chi2/ndof`` (own PV), ``ip_ownpv``,
  ``ipchi2_ownpv``, ``fd``, ``fdchi2``, ``dira``, ``tau``, ``tauerr`` (ns),
  ``truetau`` (ns), ``mcorr``, ``mcorrerr``, ``dtf_m``, ``dtf_merr``, ``dtf_chi2ndof``, ``bkgcat``;
* track: also ``ip_ownpv``, ``ipchi2_ownpv`` (w.r.t. the own PV of its lowest composite).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

from sim.detector.trackcov import COV_COLUMNS

__all__ = ("Variable", "VARIABLES", "SCOPES", "register", "variable", "PID_COLUMNS")

Arrays = Mapping[str, np.ndarray]

#: Allowed scopes of a variable (see the module docstring).
SCOPES = ("truth", "reco", "track", "composite", "event", "photon")


@dataclass(frozen=True)
class Variable:
    """One ntuple variable.

    Attributes:
        name: column suffix (``"PT"`` gives ``Lb_PT``), or the column name for event variables.
        unit: ``"MeV"``, ``"mm"``, ``"ns"``, ``"rad"`` or ``""`` (dimensionless).
        doc: one line for the documentation table.
        scope: one of :data:`SCOPES`.
        func: ``func(arrays) -> ndarray (n,)``.
        dtype: numpy dtype string of the column (``"f8"``, ``"f4"``, ``"i4"``).
        source: ``protoparticles`` columns it reads; a default export leaves the
            variable out when all of them are NULL in the store.
    """

    name: str
    unit: str
    doc: str
    scope: str
    func: Callable[[Arrays], np.ndarray]
    dtype: str = "f8"
    source: tuple[str, ...] = ()

    def __call__(self, arrays: Arrays) -> np.ndarray:
        return np.asarray(self.func(arrays), dtype=self.dtype)


#: name -> Variable, in registration order (the column order of the ntuple).
VARIABLES: dict[str, Variable] = {}


def register(var: Variable) -> Variable:
    """Add ``var`` to :data:`VARIABLES` (names are unique)."""
    if var.scope not in SCOPES:
        raise ValueError(f"unknown scope {var.scope!r} of variable {var.name!r}; scopes: {', '.join(SCOPES)}")
    if var.name in VARIABLES:
        raise ValueError(f"variable {var.name!r} is registered twice")
    VARIABLES[var.name] = var
    return var


def variable(
    name: str, unit: str, doc: str, scope: str, dtype: str = "f8", source: tuple[str, ...] = ()
) -> Callable[[Callable[[Arrays], np.ndarray]], Callable[[Arrays], np.ndarray]]:
    """Decorator form of :func:`register`."""

    def deco(func: Callable[[Arrays], np.ndarray]) -> Callable[[Arrays], np.ndarray]:
        register(Variable(name, unit, doc, scope, func, dtype, source))
        return func

    return deco


def _col(key: str) -> Callable[[Arrays], np.ndarray]:
    def get(d: Arrays) -> np.ndarray:
        return d[key]

    get.__name__ = f"get_{key}"
    return get


def _p(d: Arrays, pre: str = "") -> np.ndarray:
    px, py, pz = (np.asarray(d[pre + k], np.float64) for k in ("px", "py", "pz"))  # stored momenta may be float32
    return np.sqrt(px * px + py * py + pz * pz)


def _pt(d: Arrays, pre: str = "") -> np.ndarray:
    return np.hypot(np.asarray(d[pre + "px"], np.float64), np.asarray(d[pre + "py"], np.float64))


# ----------------------------------------------------------------- reconstructed kinematics
for _k in ("px", "py", "pz"):
    register(Variable(_k.upper(), "MeV", f"reconstructed momentum {_k[1]} component", "reco", _col(_k)))
register(Variable("PE", "MeV", "reconstructed energy (track: PDG mass of the true species)", "reco", _col("e")))


@variable("P", "MeV", "reconstructed momentum", "reco")
def _var_p(d: Arrays) -> np.ndarray:
    return _p(d)


@variable("PT", "MeV", "reconstructed transverse momentum", "reco")
def _var_pt(d: Arrays) -> np.ndarray:
    return _pt(d)


@variable("ETA", "", "pseudorapidity of the reconstructed momentum", "reco")
def _var_eta(d: Arrays) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.arcsinh(d["pz"] / _pt(d))


@variable("PHI", "rad", "azimuth of the reconstructed momentum", "reco")
def _var_phi(d: Arrays) -> np.ndarray:
    return np.arctan2(d["py"], d["px"])


register(Variable("M", "MeV", "mass (track: PDG mass hypothesis; composite: visible invariant mass)", "reco", _col("m")))

# ----------------------------------------------------------------- MC truth
register(Variable("TRUEID", "", "PDG id of the true particle", "truth", _col("pid"), "i4"))
for _k in ("x", "y", "z"):
    register(Variable(f"TRUEP_{_k.upper()}", "MeV", f"true momentum {_k} component", "truth", _col(f"true_p{_k}")))
register(Variable("TRUEP_E", "MeV", "true energy", "truth", _col("true_e")))


@variable("TRUEPT", "MeV", "true transverse momentum", "truth")
def _var_truept(d: Arrays) -> np.ndarray:
    return _pt(d, "true_")


register(Variable("MC_MOTHER_ID", "", "PDG id of the true mother (0: none)", "truth", _col("mother_pid"), "i4"))
for _k in ("x", "y", "z"):
    register(Variable(f"TRUEORIGINVERTEX_{_k.upper()}", "mm", f"true production vertex {_k}", "truth", _col(f"ov_{_k}")))
for _k in ("x", "y", "z"):
    register(Variable(f"TRUEENDVERTEX_{_k.upper()}", "mm", f"true decay vertex {_k} (NaN if stable)", "truth", _col(f"ev_{_k}")))

# ----------------------------------------------------------------- tracks
register(Variable("TRACK_Type", "", "LHCb track type: 3 Long, 4 Upstream, 5 Downstream, 0 none", "track", _col("track_type"), "i4", ("track_type",)))
register(Variable("TRACK_CHI2NDOF", "", "track fit chi2/ndf", "track", _col("track_chi2ndof"), "f8", ("track_chi2ndof",)))
register(Variable("TRACK_GhostProb", "", "ghost probability", "track", _col("ghost_prob"), "f8", ("ghost_prob",)))
register(Variable("IP", "mm", "impact parameter w.r.t. the primary vertex", "track", _col("ip"), "f8", ("ip",)))
register(Variable("IPCHI2", "", "impact-parameter chi2", "track", _col("ip_chi2"), "f8", ("ip_chi2",)))

#: protoparticles column -> ntuple suffix of the PID variables (float32, NaN where NULL).
PID_COLUMNS: dict[str, str] = {
    "has_rich": "hasRich",
    **{f"RichDLL{h}": f"RichDLL{h}" for h in ("e", "mu", "K", "p")},
    "is_muon": "isMuon",
    "MuonMuLL": "MuonMuLL",
    "MuonBkgLL": "MuonBkgLL",
    **{f"PID{h}": f"PID{h}" for h in ("e", "mu", "K", "p")},
    **{f"ProbNN{h}": f"ProbNN{h}" for h in ("e", "mu", "pi", "k", "p", "ghost")},
}
_PID_DOC = {
    "has_rich": "RICH information available (1/0; NaN: no PID pass)",
    "is_muon": "IsMuon (1/0; NaN: no PID pass)",
    "MuonMuLL": "muon-system log-likelihood, muon hypothesis",
    "MuonBkgLL": "muon-system log-likelihood, non-muon hypothesis",
}
for _c, _n in PID_COLUMNS.items():
    if _c.startswith("RichDLL"):
        _doc = f"RICH delta log-likelihood {_c[7:]} - pi"
    elif _c.startswith("PID"):
        _doc = f"combined delta log-likelihood {_c[3:]} - pi"
    elif _c.startswith("ProbNN"):
        _doc = f"ProbNN-like probability for {_c[6:]}"
    else:
        _doc = _PID_DOC[_c]
    register(Variable(_n, "", _doc, "track", _col(_c), "f4", (_c,)))

# ----------------------------------------------------------------- calorimeter (electron hypothesis)
#: protoparticles column -> (ntuple suffix, doc) of the calorimeter variables (float32, NaN where NULL).
CALO_COLUMNS: dict[str, tuple[str, str]] = {
    "calo_e_over_p": ("EoverP", "E of the matched ECAL cluster / track p (NaN: no matched cluster)"),
    "EcalPIDe": ("EcalPIDe", "calorimeter electron delta log-likelihood e - pi"),
    "brem_multiplicity": ("BremMultiplicity", "brem photon clusters added back to the track"),
    "has_brem_added": ("HasBremAdded", "brem recovery added energy (1/0)"),
    "brem_energy": ("BremEnergy", "energy added by brem recovery [MeV] (P includes it)"),
}
for _c, (_n, _doc) in CALO_COLUMNS.items():
    register(Variable(_n, "MeV" if _c == "brem_energy" else "", _doc, "track", _col(_c), "f4", (_c,)))

# ----------------------------------------------------------------- photons (calorimeter pass)
register(Variable("CL", "", "photon confidence level in [0, 1] (NaN: no reconstructed photon)", "photon", _col("CL"), "f4"))
register(Variable("IsNotE", "", "1 - exp(-d^2/2), d the distance to the nearest track [ECAL cell sizes]", "photon", _col("is_not_e"), "f4"))
register(Variable("IsMergedPi0", "", "cluster shape of a merged pi0 (1/0)", "photon", _col("is_merged_pi0"), "f4"))

# ----------------------------------------------------------------- composites
# vertex variables read the track covariance (fetched only when one is asked for; a default export
# leaves them out of a store without it)
_FIT = COV_COLUMNS
register(Variable("MCORR", "MeV", "corrected mass sqrt(M^2 + pperp^2) + pperp, pperp w.r.t. the flight direction", "composite", _col("mcorr"), "f8", _FIT))
register(Variable("MCORRERR", "MeV", "uncertainty of MCORR (PV, decay vertex and momentum covariance propagated)", "composite", _col("mcorrerr"), "f8", _FIT))
register(Variable("DTF_M", "MeV", "mass from a refit with the narrow composite daughters' PDG masses constrained (DecayTreeFitter-like; NaN: none)", "composite", _col("dtf_m"), "f8", _FIT))
register(Variable("DTF_MERR", "MeV", "uncertainty of DTF_M", "composite", _col("dtf_merr"), "f8", _FIT))
register(Variable("DTF_CHI2NDOF", "", "chi2/ndf of the DTF refit (vertices and mass constraints)", "composite", _col("dtf_chi2ndof"), "f8", _FIT))
for _k in ("x", "y", "z"):
    register(Variable(f"ENDVERTEX_{_k.upper()}", "mm", f"fitted decay vertex {_k}", "composite", _col(f"end_{_k}"), "f8", _FIT))
for _k in ("x", "y", "z"):
    register(Variable(f"ENDVERTEX_{_k.upper()}ERR", "mm", f"uncertainty of the fitted decay vertex {_k}", "composite", _col(f"end_{_k}err"), "f8", _FIT))
register(Variable("ENDVERTEX_CHI2", "", "decay-vertex fit chi2", "composite", _col("end_chi2"), "f8", _FIT))
register(Variable("ENDVERTEX_NDOF", "", "decay-vertex fit degrees of freedom, 2 n_inputs - 3 (-1: not fitted)", "composite", _col("end_ndof"), "i4", _FIT))
for _k in ("x", "y", "z"):
    register(Variable(f"OWNPV_{_k.upper()}", "mm", f"own primary vertex {_k} (smallest IPCHI2 of the composite)", "composite", _col(f"pv_{_k}"), "f8", _FIT))
register(Variable("OWNPV_CHI2", "", "own primary vertex fit chi2", "composite", _col("pv_chi2"), "f8", _FIT))
register(Variable("OWNPV_NDOF", "", "own primary vertex degrees of freedom (-1: none)", "composite", _col("pv_ndof"), "i4", _FIT))
register(Variable("IP_OWNPV", "mm", "impact parameter w.r.t. the own PV (track: of its lowest composite)", "reco", _col("ip_ownpv"), "f8", _FIT))
register(Variable("IPCHI2_OWNPV", "", "impact-parameter chi2 w.r.t. the own PV (2 dof)", "reco", _col("ipchi2_ownpv"), "f8", _FIT))
register(Variable("FD_OWNPV", "mm", "flight distance own PV -> fitted decay vertex", "composite", _col("fd"), "f8", _FIT))
register(Variable("FDCHI2_OWNPV", "", "flight-distance chi2 d^T (C_SV + C_PV)^-1 d", "composite", _col("fdchi2"), "f8", _FIT))
register(Variable("DIRA_OWNPV", "", "cosine of the angle between visible momentum and flight direction", "composite", _col("dira"), "f8", _FIT))
register(Variable("FD", "mm", "alias of FD_OWNPV (kept for one release)", "composite", _col("fd"), "f8", _FIT))
register(Variable("FDCHI2", "", "alias of FDCHI2_OWNPV (kept for one release)", "composite", _col("fdchi2"), "f8", _FIT))
register(Variable("DIRA", "", "alias of DIRA_OWNPV (kept for one release)", "composite", _col("dira"), "f8", _FIT))
register(Variable("TAU", "ns", "decay time from a lifetime fit of own PV, decay vertex and momentum", "composite", _col("tau"), "f8", _FIT))
register(Variable("TAUERR", "ns", "uncertainty of TAU", "composite", _col("tauerr"), "f8", _FIT))
register(Variable("TRUETAU", "ns", "true decay time m L / (p c) from the true vertices and momentum", "composite", _col("truetau")))
register(Variable("BKGCAT", "", "LHCb BackgroundCategory: 0 signal, 30 reflection, 40 part-reco, 50 low-mass, 60 not reconstructed", "composite", _col("bkgcat"), "i4"))

# ----------------------------------------------------------------- event
register(Variable("runNumber", "", "batch number", "event", _col("batch"), "i4"))
register(Variable("eventNumber", "", "event number within the batch", "event", _col("event"), "i4"))
register(Variable("nTracks", "", "reconstructed tracks in the event (-1: no occupancy pass)", "event", _col("n_tracks"), "i4"))
register(Variable("nPVs", "", "primary vertices in the event (-1: no occupancy pass)", "event", _col("n_pv"), "i4"))
register(Variable("nCandidate", "", "candidate number within the event (0, 1, ...)", "event", _col("n_candidate"), "i4"))
register(Variable("totCandidates", "", "candidates in the event", "event", _col("tot_candidates"), "i4"))
register(Variable("weight", "", "event weight (events.weight of the preselect pass's sampling mode; 1 when NULL)", "event", _col("weight"), "f8"))
