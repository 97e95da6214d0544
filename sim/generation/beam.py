"""The beam: the luminous region of the pp collisions and primary-vertex sampling.

The luminous region is a property of the beams, not of the detector, so it lives
with generation; the generator passes draw their primary vertices here.

Units: mm, ns.

Sources:

* [PERF] LHCb collaboration, "LHCb detector performance",
  Int. J. Mod. Phys. A 30 (2015) 1530022, arXiv:1412.6352.
* [VELO] LHCb VELO group, "Performance of the LHCb Vertex Locator",
  JINST 9 (2014) P09007, arXiv:1405.7808.
* [UPG]  LHCb collaboration, "The LHCb Upgrade I", JINST 19 (2024) P05065,
  arXiv:2305.10515.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from mambah.errors import ConfigError
from sim.core.configcheck import check_fields_finite

__all__ = ("LuminousRegion", "sample_primary_vertices")


@dataclass(frozen=True)
class LuminousRegion:
    """Gaussian luminous region of the pp collisions (mm, ns).

    Attributes:
        x0: Mean x (mm) of the beam line, 0.8 mm: "LHCb-like".  The luminous
            region sits O(1 mm) off the nominal VELO axis and moves from fill
            to fill ([VELO] Sec. 7 measures it per fill); the value is a
            representative choice, not a measured one.
        y0: Mean y (mm) of the beam line, −0.2 mm ("LHCb-like", as x0).
        z0: Mean z (mm) of the luminous region, 0 (model; the nominal IP).
        t0: Mean collision time (ns) relative to the bunch crossing, 0.
        sigma_x: Transverse width (mm), 0.040 mm: the Run 2 luminous region is
            ≈ 35–45 µm wide in x and y ([VELO] Sec. 7, [PERF] Sec. 3).
        sigma_y: Transverse width (mm), 0.040 mm (as sigma_x).
        sigma_z: Longitudinal width (mm), 45 mm (Run 2 ≈ 40–60 mm, [PERF] Sec. 3;
            Run 3 similar, [UPG]).
        sigma_t: Time spread (ns) of the collisions, 0.19 ns (bunch length
            ≈ 7.5 cm rms gives ≈ 0.18–0.19 ns, [UPG] Sec. 1).
    """

    x0: float = 0.8
    y0: float = -0.2
    z0: float = 0.0
    t0: float = 0.0
    sigma_x: float = 0.040
    sigma_y: float = 0.040
    sigma_z: float = 45.0
    sigma_t: float = 0.19

    def __post_init__(self) -> None:
        check_fields_finite(self, "LuminousRegion")
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name.startswith("sigma_") and value < 0:
                raise ConfigError(f"LuminousRegion.{f.name}={value!r}; expected a width >= 0")



def sample_primary_vertices(
    n: int,
    rng: np.random.Generator,
    config: Any = LuminousRegion(),
) -> dict[str, np.ndarray]:
    """Sample primary-vertex positions and times in the luminous region.

    Args:
        n: Number of vertices.
        rng: Source of randomness.
        config: A :class:`LuminousRegion`, or a config with a ``luminous_region``
            attribute (e.g. :class:`sim.reference.occupancy.OccupancyConfig`).

    Returns:
        ``{"pv_x", "pv_y", "pv_z"}`` (mm) and ``"pv_t"`` (ns), float64 arrays
        of shape (n,), independent Gaussians.

    Raises:
        ConfigError: ``n`` is not a non-negative integer or ``config`` has the
            wrong type.
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
        raise ConfigError(f"sample_primary_vertices: n must be a non-negative integer, got {n!r}")
    region = getattr(config, "luminous_region", config)
    if not isinstance(region, LuminousRegion):
        raise ConfigError(
            f"sample_primary_vertices: config is {type(config).__name__}; "
            "expected LuminousRegion or a config with a luminous_region"
        )
    z = rng.standard_normal((4, n))
    return {
        "pv_x": region.x0 + region.sigma_x * z[0],
        "pv_y": region.y0 + region.sigma_y * z[1],
        "pv_z": region.z0 + region.sigma_z * z[2],
        "pv_t": region.t0 + region.sigma_t * z[3],
    }
