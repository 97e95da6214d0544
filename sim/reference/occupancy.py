"""Reference event occupancy (number of PVs, nTracks) and luminous region.

Per-event model of the pile-up and track multiplicity of LHCb-like events, and a
sampler of primary-vertex positions and times in the luminous region.  The
generator uses :func:`sample_primary_vertices`; :func:`simulate_occupancy`
gives the ``n_tracks`` that :func:`sim.reference.tracking.simulate_tracking`
degrades its efficiency with.

Units: mm, ns.

Sources:

* [PERF] LHCb collaboration, "LHCb detector performance",
  Int. J. Mod. Phys. A 30 (2015) 1530022, arXiv:1412.6352.
* [VELO] LHCb VELO group, "Performance of the LHCb Vertex Locator",
  JINST 9 (2014) P09007, arXiv:1405.7808.
* [UPG]  LHCb collaboration, "The LHCb Upgrade I", JINST 19 (2024) P05065,
  arXiv:2305.10515.

Model of one triggered event:

* ``n_pv = 1 + Binomial(Poisson(μ), ε_PV)``: the collision that made the signal,
  plus the other visible collisions of the crossing (Poisson with the visible
  pile-up μ, independent of the signal one), each reconstructed as a PV with
  probability ε_PV.
* ``n_tracks = NB(m_sig, k) + Σ_{other PVs} NB(m_pu, k) + n_signal``: a
  negative-binomial number of best tracks per PV (a broad, over-dispersed
  multiplicity; the signal collision is trigger-biased towards higher
  multiplicity), plus the signal decay products.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mambah.errors import ConfigError
from sim.generation.beam import LuminousRegion, sample_primary_vertices

__all__ = (
    "RUNS",
    "LuminousRegion",
    "OccupancyConfig",
    "simulate_occupancy",
    "sample_primary_vertices",
)

RUNS: tuple[str, ...] = ("run2", "run3")
"""Names of the occupancy presets."""


_PRESETS: dict[str, dict[str, float]] = {
    # Run 2: visible μ ≈ 1.1 with 25 ns bunch spacing and levelled
    # L ≈ 4e32 /cm²/s (2012 at 50 ns: μ ≈ 1.7, [PERF] Sec. 1); ε_PV is a model
    # number tuned so that mean nPV ≈ 1.8 as in Run 2 PIDCalib samples.  Per-PV multiplicities tuned so that the
    # nTracks distribution peaks at ≈ 80–150 with mean ≈ 150 and a tail to
    # ≈ 600, as in Run 2 PIDCalib samples (model).
    "run2": {
        "mu_visible": 1.1,
        "pv_efficiency": 0.75,
        "tracks_per_pv_signal": 90.0,
        "tracks_per_pv_pileup": 70.0,
        "tracks_nb_shape": 3.0,
        "n_signal_tracks": 4.0,
    },
    # Run 3 (Upgrade I): ν ≈ 7.6 inelastic collisions per crossing at
    # L = 2e33 /cm²/s ([UPG] Sec. 1), ≈ 70 % visible → μ ≈ 5.3; PV efficiency
    # higher with the upgraded VELO (model).  Per-PV multiplicity kept as in
    # Run 2 (model: similar acceptance).
    "run3": {
        "mu_visible": 5.3,
        "pv_efficiency": 0.9,
        "tracks_per_pv_signal": 90.0,
        "tracks_per_pv_pileup": 70.0,
        "tracks_nb_shape": 3.0,
        "n_signal_tracks": 4.0,
    },
}


@dataclass(frozen=True)
class OccupancyConfig:
    """Pile-up and multiplicity model; numbers left ``None`` come from the ``run`` preset.

    Presets (``run``):

    * ``"run2"``: μ_visible = 1.1, ε_PV = 0.75 (mean nPV ≈ 1.8), signal PV
      NB mean 90 tracks, other PVs NB mean 70, NB shape k = 3, 4 signal tracks
      (mean nTracks ≈ 150).
    * ``"run3"``: μ_visible = 5.3 (ν ≈ 7.6), ε_PV = 0.9 (mean nPV ≈ 5.8), same
      per-PV multiplicities (mean nTracks ≈ 430).

    Attributes:
        run: Preset name, one of :data:`RUNS`.
        mu_visible: Mean number of visible pile-up collisions besides the
            signal one (Poisson).
        pv_efficiency: Probability that a pile-up collision is reconstructed
            as a PV (model: low-multiplicity collisions fail the PV finding).
        tracks_per_pv_signal: Mean nTracks of the signal collision (NB mean).
        tracks_per_pv_pileup: Mean nTracks of another reconstructed collision.
        tracks_nb_shape: Shape k of the negative binomials (variance
            m + m²/k); smaller is broader.
        n_signal_tracks: Tracks added by the signal decay (Poisson mean).
        luminous_region: PV position/time model, :class:`LuminousRegion`.
    """

    run: str = "run2"
    mu_visible: float | None = None
    pv_efficiency: float | None = None
    tracks_per_pv_signal: float | None = None
    tracks_per_pv_pileup: float | None = None
    tracks_nb_shape: float | None = None
    n_signal_tracks: float | None = None
    luminous_region: LuminousRegion = field(default_factory=LuminousRegion)

    def __post_init__(self) -> None:
        if self.run not in _PRESETS:
            raise ConfigError(f"OccupancyConfig.run={self.run!r}; expected one of {list(RUNS)}")
        for name, value in _PRESETS[self.run].items():
            if getattr(self, name) is None:
                object.__setattr__(self, name, value)
        for name in _PRESETS[self.run]:
            value = getattr(self, name)
            if not (np.isfinite(value) and value >= 0):
                raise ConfigError(f"OccupancyConfig.{name}={value!r}; expected a number >= 0")
        if self.pv_efficiency > 1:  # type: ignore[operator]
            raise ConfigError(
                f"OccupancyConfig.pv_efficiency={self.pv_efficiency!r}; expected a number in [0, 1]"
            )
        if self.tracks_nb_shape == 0:
            raise ConfigError("OccupancyConfig.tracks_nb_shape=0; expected a positive shape")
        if not isinstance(self.luminous_region, LuminousRegion):
            raise ConfigError(
                f"OccupancyConfig.luminous_region is {type(self.luminous_region).__name__}; "
                "expected a LuminousRegion"
            )


def _negative_binomial(
    rng: np.random.Generator, mean: np.ndarray, shape: float
) -> np.ndarray:
    """NB counts with the given means (array) and shape k: Poisson(Gamma(k, mean/k))."""
    lam = rng.gamma(shape, 1.0, size=mean.shape) * (mean / shape)
    return rng.poisson(lam)


def _check_n(n: int, where: str) -> int:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
        raise ConfigError(f"{where}: n={n!r}; expected an integer >= 0")
    return int(n)


def simulate_occupancy(
    n_events: int,
    rng: np.random.Generator,
    config: OccupancyConfig = OccupancyConfig(),
) -> dict[str, np.ndarray]:
    """Sample the number of PVs and of reconstructed tracks per event.

    Args:
        n_events: Number of events.
        rng: Source of randomness.
        config: Occupancy model, :class:`OccupancyConfig`.

    Returns:
        ``{"n_pv": int64 (n_events,), "n_tracks": int64 (n_events,)}``, with
        ``n_pv >= 1``.  The sum of per-PV negative binomials of the same
        shape over the ``n_pv − 1`` pile-up PVs is a single NB of mean
        ``(n_pv − 1)·m_pu`` and shape ``(n_pv − 1)·k``, which is what is drawn.

    Raises:
        ConfigError: ``n_events`` is not a non-negative integer.
    """
    n = _check_n(n_events, "simulate_occupancy")
    cfg: Any = config  # every preset field is filled by OccupancyConfig.__post_init__
    n_coll = rng.poisson(cfg.mu_visible, n)
    n_pileup_pv = rng.binomial(n_coll, cfg.pv_efficiency)
    n_pv = 1 + n_pileup_pv
    k = float(cfg.tracks_nb_shape)  # type: ignore[arg-type]
    signal = _negative_binomial(rng, np.full(n, float(cfg.tracks_per_pv_signal)), k)  # type: ignore[arg-type]
    # pile-up: NB(k·m, mean m·N) = sum of N iid NB(k, m); draw Gamma with shape k·N
    shape_pu = k * n_pileup_pv
    lam_pu = np.zeros(n)
    has_pu = shape_pu > 0
    lam_pu[has_pu] = rng.gamma(shape_pu[has_pu], 1.0) * (cfg.tracks_per_pv_pileup / k)  # type: ignore[operator]
    pileup = rng.poisson(lam_pu)
    extra = rng.poisson(cfg.n_signal_tracks, n)
    n_tracks = signal + pileup + extra
    return {"n_pv": n_pv.astype(np.int64), "n_tracks": n_tracks.astype(np.int64)}
