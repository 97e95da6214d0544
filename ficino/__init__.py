"""Ficino: export the Mambah event store to analysis ntuples (ROOT TTree, Parquet, CSV).

One row per candidate of a decay descriptor, LHCb-style columns
``<alias>_<VARIABLE>`` (units MeV, mm), MC truth next to the reconstructed
tracks and PID, composite masses, fitted vertices, corrected mass, flight distance, DIRA,
LHCb BackgroundCategory truth-matching codes (``_BKGCAT``) and a DecayTreeFitter-like mass
(``_DTF_M``)::

    import ficino
    summary = ficino.export("mambah.duckdb", "ntuple.root", cut="Lc_M > 2200")

``import ficino`` is light: uproot is imported when a ROOT file is written.
See ``docs/ficino.md`` for the variables and their units.
"""

from __future__ import annotations

from ficino.candidates import DEFAULT_DECAY, VertexResolution, decay_spec
from ficino.export import ExportSummary, NtupleWriter, export, to_csv, to_parquet, to_root
from ficino.variables import VARIABLES, Variable, register

__all__ = (
    "DEFAULT_DECAY",
    "ExportSummary",
    "NtupleWriter",
    "VARIABLES",
    "Variable",
    "VertexResolution",
    "decay_spec",
    "export",
    "register",
    "to_csv",
    "to_parquet",
    "to_root",
)


def __dir__() -> list[str]:
    return list(__all__)
