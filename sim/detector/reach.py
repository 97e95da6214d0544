"""Which PID sub-detectors a reconstructed track reaches, from its track type and direction.

LHCb's layout along z ([DET] JINST 3 (2008) S08005, Fig. 2.1): VELO, RICH1, TT, dipole
magnet, T stations (T1-T3), RICH2, SPD/PS, ECAL, HCAL, muon stations M2-M5 (M1 before
the calorimeters).  A track type names the trackers with hits, and so what it traverses:

==============  =====================  =====  =====  ======  ============
type            trackers               RICH1  RICH2  ECAL    muon system
==============  =====================  =====  =====  ======  ============
Long (3)        VELO + (TT) + T        yes    yes    yes     yes
Upstream (4)    VELO + TT              yes    no     no      no
Downstream (5)  TT + T                 yes    yes    yes     yes
==============  =====================  =====  =====  ======  ============

Upstream tracks are low-momentum particles bent out of the acceptance by the magnet
before the T stations: they cross RICH1 (upstream of the magnet) but never reach RICH2,
the calorimeters or the muon stations, so they carry no RICH2 information, no
calorimeter term and no IsMuon.  Downstream tracks (no VELO segment, e.g. K_S and Λ
daughters) traverse both RICH radiators and everything downstream.  On top of the
track type each sub-detector has its polar-angle acceptance and RICH its momentum
threshold (:class:`~sim.detector.card.DetectorCard`); the IsMuon momentum threshold
lives with the muon-system models.

Pure numpy; shared by the reference detector (:mod:`sim.reference.pid`) and the fast
PID pass (:mod:`sim.pid.models`).  Units: MeV, mrad.
"""

from __future__ import annotations

import numpy as np

from mambah.codes import TrackType
from mambah.errors import DataError
from sim.detector.card import DetectorCard, card

__all__ = ("REACH", "subdetector_reach")

#: Sub-detectors each track type traverses (see the module docstring).
REACH: dict[int, frozenset[str]] = {
    int(TrackType.LONG): frozenset({"rich1", "rich2", "ecal", "muon"}),
    int(TrackType.UPSTREAM): frozenset({"rich1"}),
    int(TrackType.DOWNSTREAM): frozenset({"rich1", "rich2", "ecal", "muon"}),
}


def subdetector_reach(
    track_type: np.ndarray,
    theta: np.ndarray,
    p: np.ndarray,
    config: DetectorCard | None = None,
) -> dict[str, np.ndarray]:
    """Per track, whether it gives information in RICH1, RICH2, the ECAL and the muon system.

    Args:
        track_type: ``(n,)`` track type codes 3 (Long), 4 (Upstream), 5 (Downstream).
        theta: ``(n,)`` polar angle [mrad].
        p: ``(n,)`` momentum [MeV] (RICH needs ``p > card.p_min_rich``).
        config: the detector card (acceptances, RICH threshold); default the shipped one.

    Returns:
        ``rich1``, ``rich2``, ``ecal``, ``muon``: ``(n,)`` bool arrays.

    Raises:
        DataError: a track type other than 3, 4, 5 (not-reconstructed tracks have no PID).
    """
    cfg = config if config is not None else card()
    tt = np.asarray(track_type).astype(np.int64)
    bad = ~np.isin(tt, list(REACH))
    if bad.any():
        raise DataError(f"subdetector_reach: track type {int(tt[bad][0])} has no PID; "
                        f"expected {sorted(REACH)} (Long, Upstream, Downstream)")
    theta = np.asarray(theta, dtype=np.float64)
    p = np.asarray(p, dtype=np.float64)
    windows = {"rich1": cfg.rich1_theta, "rich2": cfg.rich2_theta, "ecal": cfg.ecal_theta, "muon": cfg.muon_theta}
    out = {}
    for name, (lo, hi) in windows.items():
        reached = np.zeros(tt.shape, dtype=bool)
        for code, dets in REACH.items():
            if name in dets:
                reached |= tt == code
        out[name] = reached & (theta >= lo) & (theta <= hi)
    for name in ("rich1", "rich2"):
        out[name] &= p > cfg.p_min_rich
    return out
