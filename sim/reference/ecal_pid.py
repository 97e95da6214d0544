"""The reference detector's calorimeter electron likelihood ``EcalPIDe`` of single tracks.

The calibration samples (:mod:`sim.reference.calibration`) are isolated tracks, not
events; their calorimeter term is computed by the *same* reconstruction the
``calorimeter`` pass runs (:func:`sim.detector.calorimeter.reconstruct_batch`:
bremsstrahlung in the material before the magnet, the ECAL entry point, digitisation,
3 x 3 clustering, track-cluster matching, E/p and
:func:`sim.detector.calorimeter.electron_dll`), with the reference ECAL's showers
(:func:`sim.reference.ecal.simulate_showers`, the stand-in for full simulation) in
place of the fast shower GAN, and every particle showered (``showers="all"``: MIPs and
hadronic showers as well).  Each track is its own event, produced at the origin, so no
other particle's shower overlaps its cluster (a PIDCalib track is isolated to the same
approximation).  Tracks without a matched cluster (outside the ECAL, in its beam hole,
a MIP below the seed threshold) get ``EcalPIDe = 0``, as the pass writes.

The fast chain gets ``EcalPIDe`` from the ``calorimeter`` pass (fast showers) and the
global PID model adds it to the RICH term, so ``PIDe`` is built the same way in both.

Units: MeV, mm.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mambah.errors import DataError
from sim.reference.ecal import ECALConfig, simulate_showers

__all__ = ("ReferenceShowers", "reference_ecal_pid")

#: Showers simulated per call of the reference ECAL (bounds the (n, slices, grid) arrays).
CHUNK = 4000


@dataclass(frozen=True)
class ReferenceShowers:
    """The reference ECAL as the shower model of :func:`sim.detector.calorimeter.reconstruct_batch`.

    :func:`sim.detector.calorimeter.generate_showers` calls :meth:`simulate_showers`
    of a model that has one instead of the fast generator.
    """

    config: ECALConfig = field(default_factory=ECALConfig)

    def simulate_showers(self, pid: np.ndarray, energy: np.ndarray, x: np.ndarray, y: np.ndarray,
                         tx: np.ndarray, ty: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """``(n, g, g)`` reference deposits (MeV) in chunks of :data:`CHUNK` showers."""
        n = int(np.asarray(pid).shape[0])
        parts = [simulate_showers(pid[i:i + CHUNK], energy[i:i + CHUNK], x[i:i + CHUNK], y[i:i + CHUNK],
                                  tx[i:i + CHUNK], ty[i:i + CHUNK], rng, self.config)
                 for i in range(0, n, CHUNK)]
        g = int(self.config.grid_n)
        return np.concatenate(parts).astype(np.float64) if parts else np.zeros((0, g, g))


def reference_ecal_pid(
    pid: np.ndarray,
    charge: np.ndarray,
    px: np.ndarray,
    py: np.ndarray,
    pz: np.ndarray,
    rng: np.random.Generator,
    *,
    showers: Any = None,
) -> dict[str, np.ndarray]:
    """``EcalPIDe`` and E/p of isolated tracks through the reference ECAL and the pass's reconstruction.

    Args:
        pid: ``(n,)`` PDG ids (sign as in ``mc_particles``: 11 is e-).
        charge: ``(n,)`` +1 / -1.
        px, py, pz: ``(n,)`` momentum at the origin [MeV] (true = measured: the
            bremsstrahlung before the magnet lowers the electron's tracked momentum as
            in the pass).
        rng: source of randomness.
        showers: the shower model (default :class:`ReferenceShowers`, the reference
            ECAL; the fast :class:`sim.detector.calorimeter.ShowerModel` gives the fast
            chain's ``EcalPIDe`` of the same tracks).

    Returns:
        ``EcalPIDe`` (float64, 0 without a matched cluster) and ``calo_e_over_p``
        (NaN without a matched cluster), each ``(n,)``.

    Raises:
        DataError: arrays of different lengths, NaN/inf, or a non-positive ``pz``.
    """
    from particle import Particle

    from sim.detector.calorimeter import Calorimeter, reconstruct_batch
    from sim.detector.ecal_geometry import ECALGeometry

    pid = np.asarray(pid, dtype=np.int64)
    n = pid.shape[0]
    mom = [np.asarray(a, dtype=np.float64) for a in (px, py, pz)]
    q = np.asarray(charge, dtype=np.float64)
    for name, arr in zip(("charge", "px", "py", "pz"), (q, *mom), strict=True):
        if arr.shape != (n,):
            raise DataError(f"reference_ecal_pid: {name} has shape {arr.shape}; expected ({n},) like pid")
        if not np.all(np.isfinite(arr)):
            raise DataError(f"reference_ecal_pid: {name} holds NaN or inf")
    if np.any(mom[2] <= 0):
        raise DataError("reference_ecal_pid: pz must be positive (forward tracks)")
    codes, inverse = np.unique(np.abs(pid), return_inverse=True)
    masses = np.array([float(Particle.from_pdgid(int(c)).mass or 0.0) for c in codes])
    mass = masses[inverse]
    p2 = mom[0] ** 2 + mom[1] ** 2 + mom[2] ** 2
    ev = np.arange(n, dtype=np.int64)
    zero = np.zeros(n)
    first = np.zeros(n, dtype=np.int64)
    particles = {"event": ev, "mc_index": first, "pid": pid, "charge": q, "px": mom[0], "py": mom[1],
                 "pz": mom[2], "e": np.sqrt(p2 + mass**2), "origin_x": zero, "origin_y": zero, "origin_z": zero}
    tracks = {"event": ev, "track_index": first, "mc_particle": first, "charge": q, "px": mom[0], "py": mom[1],
              "pz": mom[2], "tx": mom[0] / mom[2], "ty": mom[1] / mom[2], "x": zero, "y": zero, "z": zero}
    events = {"event": ev, "pv_x": zero, "pv_y": zero, "pv_z": zero}
    out = reconstruct_batch(particles, tracks, events, showers or ReferenceShowers(), rng,
                            Calorimeter(showers="all"), ECALGeometry())
    protos = out["protoparticles"]
    return {"EcalPIDe": np.asarray(protos["EcalPIDe"], dtype=np.float64),
            "calo_e_over_p": np.asarray(protos["calo_e_over_p"], dtype=np.float64)}
