"""Kinematics and straight-line geometry, numpy only: one home per formula.

Every function is vectorised over leading axes and uses one convention for the
edge cases: for pT = 0, ``eta`` is computed with pT = :data:`PT_FLOOR` (1e-9 MeV),
i.e. finite, ±46 for pz = ±1 TeV, with the sign of pz (0 for p = 0) — far outside
any detector window, and finite so that it can be a network input; for pT > 0 it
equals scikit-hep ``vector``'s ``arcsinh(pz / pT)``.  Slopes ``tx = px/pz``, ``ty = py/pz``.

Units: MeV for momenta and energies, mm for positions.

NaN in an input gives NaN in that row's result only (rows are independent; no error, no
warning): the store holds NaN for quantities that do not exist (an unreconstructed track's
state), and callers that need finite values check them (the passes refuse NaN network inputs).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

from mambah.errors import DataError

__all__ = (
    "pt",
    "p",
    "eta",
    "phi",
    "theta",
    "mass",
    "boost",
    "poca_to_point",
    "ip_vector",
    "ip",
    "state_at_z",
    "PT_FLOOR",
)

#: pT used for η when pT = 0 [MeV] (the one pT = 0 convention of Mambah).
PT_FLOOR = 1e-9

Array = NDArray[np.float64]


def pt(px: ArrayLike, py: ArrayLike) -> Array:
    """Transverse momentum sqrt(px² + py²) [MeV]."""
    return np.hypot(np.asarray(px, dtype=np.float64), np.asarray(py, dtype=np.float64))


def p(px: ArrayLike, py: ArrayLike, pz: ArrayLike) -> Array:
    """Momentum magnitude [MeV]."""
    return np.sqrt(pt(px, py) ** 2 + np.asarray(pz, dtype=np.float64) ** 2)


def eta(px: ArrayLike, py: ArrayLike, pz: ArrayLike) -> Array:
    """Pseudorapidity arcsinh(pz / pT); pT = 0 is taken as :data:`PT_FLOOR` (finite, sign of pz; 0 for p = 0).

    A NaN momentum gives NaN (it was taken as pT = 0: η ≈ 21 for pz = 1 MeV, a finite substitute).
    """
    t = pt(px, py)
    z = np.asarray(pz, dtype=np.float64)
    return np.asarray(np.arcsinh(z / np.where(t == 0, PT_FLOOR, t)), dtype=np.float64)


def phi(px: ArrayLike, py: ArrayLike) -> Array:
    """Azimuth atan2(py, px) in (−π, π]."""
    return np.arctan2(np.asarray(py, dtype=np.float64), np.asarray(px, dtype=np.float64))


def theta(px: ArrayLike, py: ArrayLike, pz: ArrayLike) -> Array:
    """Polar angle atan2(pT, pz) in [0, π]."""
    return np.arctan2(pt(px, py), np.asarray(pz, dtype=np.float64))


def mass(px: ArrayLike, py: ArrayLike, pz: ArrayLike, e: ArrayLike) -> Array:
    """Invariant mass sqrt(max(E² − p², 0)) [MeV]."""
    e = np.asarray(e, dtype=np.float64)
    return np.sqrt(np.maximum(e * e - p(px, py, pz) ** 2, 0.0))


def boost(p4: ArrayLike, frame: ArrayLike) -> Array:
    """Boost four-momenta from the rest frame of ``frame`` to the frame where ``frame`` has that momentum.

    Args:
        p4: ``(..., 4)`` (px, py, pz, E) in the rest frame of ``frame`` [MeV].
        frame: ``(..., 4)`` four-momentum of the frame's particle, broadcastable to ``p4``.

    Returns:
        ``(..., 4)`` boosted four-momenta.

    Raises:
        DataError: a frame is not a massive particle moving forward in time (E > |p|;
            also NaN): a lightlike or spacelike ``frame`` has no rest frame.
    """
    p4 = np.asarray(p4, dtype=np.float64)
    f = np.asarray(frame, dtype=np.float64)
    m = np.sqrt(np.maximum(f[..., 3] ** 2 - np.sum(f[..., :3] ** 2, axis=-1), 0.0))
    with np.errstate(divide="ignore", invalid="ignore"):
        b = f[..., :3] / f[..., 3:4]
    b2 = np.sum(b * b, axis=-1)
    ok = (b2 < 1.0) & (f[..., 3] > 0.0)  # False for NaN
    if not np.all(ok):
        bad = np.flatnonzero(~np.reshape(ok, -1))
        raise DataError(f"boost: frame {bad[0]} (of {np.size(b2)}) has no rest frame: (px, py, pz, E) = "
                        f"{tuple(float(x) for x in f.reshape(-1, 4)[bad[0]])} MeV needs E > |p| "
                        f"({bad.size} such frame(s))")
    m = np.where(m > 0, m, 1e-300)
    gamma = f[..., 3] / m
    bp = np.sum(b * p4[..., :3], axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        g2 = np.where(b2 > 0, (gamma - 1.0) / b2, 0.0)
    space = p4[..., :3] + (g2 * bp + gamma * p4[..., 3])[..., None] * b
    energy = gamma * (p4[..., 3] + bp)
    return np.concatenate([space, energy[..., None]], axis=-1)


def poca_to_point(origin: ArrayLike, direction: ArrayLike, point: ArrayLike) -> Array:
    """Point of closest approach of the line ``origin + s·direction`` to ``point`` (``(..., 3)`` mm)."""
    o = np.asarray(origin, dtype=np.float64)
    d = np.asarray(direction, dtype=np.float64)
    q = np.asarray(point, dtype=np.float64)
    d2 = np.sum(d * d, axis=-1, keepdims=True)
    s = np.sum((q - o) * d, axis=-1, keepdims=True) / np.where(d2 > 0, d2, 1.0)
    return np.asarray(o + s * d, dtype=np.float64)


def ip_vector(origin: ArrayLike, direction: ArrayLike, point: ArrayLike) -> Array:
    """Vector from ``point`` to the line's point of closest approach (``(..., 3)`` mm)."""
    return poca_to_point(origin, direction, point) - np.asarray(point, dtype=np.float64)


def ip(origin: ArrayLike, direction: ArrayLike, point: ArrayLike) -> Array:
    """Impact parameter of a straight line with respect to ``point`` [mm]."""
    return np.asarray(np.linalg.norm(ip_vector(origin, direction, point), axis=-1), dtype=np.float64)


def state_at_z(origin: ArrayLike, direction: ArrayLike, z: ArrayLike) -> tuple[Array, Array, Array, Array]:
    """Straight-line state (x, y, tx, ty) at ``z`` of the line through ``origin`` along ``direction``."""
    o = np.asarray(origin, dtype=np.float64)
    d = np.asarray(direction, dtype=np.float64)
    tx = d[..., 0] / d[..., 2]
    ty = d[..., 1] / d[..., 2]
    dz = np.asarray(z, dtype=np.float64) - o[..., 2]
    return o[..., 0] + tx * dz, o[..., 1] + ty * dz, tx, ty
