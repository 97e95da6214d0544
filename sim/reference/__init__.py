"""Reference ("full simulation") detector response: tracking, occupancy (and PID).

Parametric, physics-based per-particle models of an LHCb-like forward
spectrometer, against which the fast (neural-network) passes are trained and
judged.  Pure numpy; units MeV, mm, ns.
"""

from __future__ import annotations

from sim.reference.occupancy import (
    LuminousRegion,
    OccupancyConfig,
    sample_primary_vertices,
    simulate_occupancy,
)
from sim.reference.pid import MUON_LL_SENTINEL, PID_COLUMNS, PIDConfig, RadiatorConfig, simulate_pid
from sim.reference.tracking import (
    TRACK_DOWNSTREAM,
    TRACK_LONG,
    TRACK_NONE,
    TRACK_UPSTREAM,
    TrackingConfig,
    simulate_tracking,
)

__all__ = (
    "TRACK_NONE",
    "TRACK_LONG",
    "TRACK_UPSTREAM",
    "TRACK_DOWNSTREAM",
    "TrackingConfig",
    "simulate_tracking",
    "LuminousRegion",
    "OccupancyConfig",
    "simulate_occupancy",
    "sample_primary_vertices",
    "PIDConfig",
    "RadiatorConfig",
    "simulate_pid",
    "PID_COLUMNS",
    "MUON_LL_SENTINEL",
)


def __dir__() -> list[str]:
    return list(__all__)
