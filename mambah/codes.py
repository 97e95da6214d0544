"""Codes that go with the schema: track types, neutrinos, PID species, PID column names.

One home for the integer codes and names stored in (or derived from) the event
store, so that the store, the simulation and the export agree on them.
"""

from __future__ import annotations

from enum import IntEnum

__all__ = (
    "TrackType",
    "TRACK_TYPES",
    "NEUTRINOS",
    "SPECIES",
    "SPECIES_OF_PDG",
    "PID_COLUMNS",
    "MUON_LL_SENTINEL",
    "is_neutrino",
)


class TrackType(IntEnum):
    """Reconstructed track types (LHCb ``Track::Types``); 0 means not reconstructed."""

    NONE = 0
    LONG = 3
    UPSTREAM = 4
    DOWNSTREAM = 5


#: Track type codes in class order of the efficiency classifier: none, Long, Upstream, Downstream.
TRACK_TYPES: tuple[int, ...] = tuple(int(t) for t in TrackType)

#: |PDG id| of the neutrinos (never seen by the detector).
NEUTRINOS: tuple[int, ...] = (12, 14, 16)

#: Charged PID species and their (positive) PDG ids.
SPECIES: dict[str, int] = {"e": 11, "mu": 13, "pi": 211, "K": 321, "p": 2212}

#: |PDG id| -> species name.
SPECIES_OF_PDG: dict[int, str] = {v: k for k, v in SPECIES.items()}

#: PID columns of ``protoparticles`` (RICH, muon system, global), in the order the
#: reference detector and the PID pass produce them.
PID_COLUMNS: tuple[str, ...] = (
    "has_rich", "RichDLLe", "RichDLLmu", "RichDLLK", "RichDLLp",
    "is_muon", "MuonMuLL", "MuonBkgLL",
    "PIDe", "PIDmu", "PIDK", "PIDp",
    "ProbNNe", "ProbNNmu", "ProbNNpi", "ProbNNk", "ProbNNp", "ProbNNghost",
)  # fmt: skip

#: MuonMuLL / MuonBkgLL of tracks without IsMuon (no muon-system likelihood).
MUON_LL_SENTINEL: float = -1000.0


def is_neutrino(pid: int) -> bool:
    """Whether the PDG id is a neutrino or antineutrino."""
    return abs(int(pid)) in NEUTRINOS
