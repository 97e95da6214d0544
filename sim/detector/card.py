"""The detector card: one frozen description of the detector that every room reads.

The numbers that the reference detector (the full-simulation stand-in) and the fast
passes must agree on — the geometric windows, the z positions of the magnet, the TT
and the calorimeter, the RICH radiator acceptances and thresholds, the muon-system
acceptance, the PV resolution — live here once, each with its unit and source, as
Delphes keeps its detector in one card beside its modules.  Passes and reference
configs take their defaults from the card of their ``card`` field; each trained
model's sidecar records the card it was trained on, and loading refuses a model
trained on another card.

Sources:

* [DET]  LHCb collaboration, "The LHCb Detector at the LHC", JINST 3 (2008) S08005.
* [PERF] LHCb collaboration, "LHCb detector performance", Int. J. Mod. Phys. A 30
  (2015) 1530022, arXiv:1412.6352.
* [RICH] LHCb RICH group, "Performance of the LHCb RICH detector at the LHC",
  EPJC 73 (2013) 2431, arXiv:1211.6759.
* [MUON] LHCb collaboration, "Performance of the muon identification at LHCb",
  JINST 8 (2013) P10020, arXiv:1306.0249.
* [VELO] LHCb VELO group, "Performance of the LHCb Vertex Locator", JINST 9 (2014)
  P09007, arXiv:1405.7808.
* [UPG]  LHCb collaboration, "The LHCb Upgrade I", JINST 19 (2024) P05065,
  arXiv:2305.10515.

Units: mm, mrad, MeV.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from typing import Any

import numpy as np

from mambah.errors import ConfigError, ModelError

__all__ = ("DetectorCard", "CARDS", "DEFAULT_CARD", "card", "check_model_card", "fill_from_card")


@dataclass(frozen=True)
class DetectorCard:
    """Geometry, windows and thresholds of an LHCb-like forward spectrometer.

    Attributes:
        name: the preset's name.
        eta_min, eta_max: pseudorapidity window of the tracking acceptance, 2 < η < 5 [PERF] Sec. 1.
        magnet_z: z of the effective kick plane of the dipole [mm], 5250 mm (the field
            integral of 4 Tm is centred at z ≈ 5.3 m, [DET] Sec. 4.1).
        tt_z: z of the middle of the TT [mm], 2485 mm ([DET] Sec. 5.2).
        ecal_z: z of the ECAL front face [mm], 12 620 mm ([DET] Sec. 6.2).
        rich1_theta: RICH1 (C4F10) polar-angle acceptance [mrad], 25–300 ([DET] Sec. 3.2).
        rich2_theta: RICH2 (CF4) polar-angle acceptance [mrad], 15–120 ([DET] Sec. 3.2).
        p_min_rich: momentum below which no RICH information is given [MeV], 2 GeV
            (the RICH system covers 2–100 GeV, [RICH] abstract).
        muon_theta: muon-system acceptance [mrad], 20–306 (horizontal, [DET] Sec. 6.4).
        is_muon_p_edges: IsMuon momentum regions [MeV]: below the first no IsMuon;
            M2+M3 / M2+M3+(M4|M5) / M2–M5 above ([MUON] Table 1).
        ecal_theta: ECAL polar-angle acceptance [mrad], 30–300 ([DET] Sec. 6.2).
        pv_sigma_xy_25, pv_sigma_z_25: PV resolution at 25 tracks [mm], 13 µm and
            69 µm ([VELO] Sec. 7.1, Fig. 27).
        pv_share_signal, pv_share_pileup: relative track multiplicity of the signal
            and pile-up PVs (model choice: the trigger-biased signal PV is busier).
    """

    name: str = "lhcb-run2"
    eta_min: float = 2.0
    eta_max: float = 5.0
    magnet_z: float = 5250.0
    tt_z: float = 2485.0
    ecal_z: float = 12620.0
    rich1_theta: tuple[float, float] = (25.0, 300.0)
    rich2_theta: tuple[float, float] = (15.0, 120.0)
    p_min_rich: float = 2000.0
    muon_theta: tuple[float, float] = (20.0, 306.0)
    is_muon_p_edges: tuple[float, float, float] = (3000.0, 6000.0, 10000.0)
    ecal_theta: tuple[float, float] = (30.0, 300.0)
    pv_sigma_xy_25: float = 0.013
    pv_sigma_z_25: float = 0.069
    pv_share_signal: float = 90.0
    pv_share_pileup: float = 70.0

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            if f.name == "name":
                continue
            value = getattr(self, f.name)
            values = value if isinstance(value, tuple) else (value,)
            for v in values:
                if isinstance(v, bool) or not isinstance(v, (int, float)) or not np.isfinite(v):
                    raise ConfigError(f"detector card {self.name!r}: {f.name}={value!r} must be finite numbers")
        if not self.eta_min < self.eta_max:
            raise ConfigError(f"detector card {self.name!r}: eta_min={self.eta_min} must be below eta_max={self.eta_max}")
        for key in ("rich1_theta", "rich2_theta", "muon_theta", "ecal_theta"):
            lo, hi = getattr(self, key)
            if not 0 <= lo < hi:
                raise ConfigError(f"detector card {self.name!r}: {key}={(lo, hi)} must be (min, max) with 0 <= min < max")
        if list(self.is_muon_p_edges) != sorted(self.is_muon_p_edges):
            raise ConfigError(f"detector card {self.name!r}: is_muon_p_edges must be increasing")

    def to_dict(self) -> dict[str, Any]:
        """The card as plain data (tuples as lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    @property
    def digest(self) -> str:
        """A short hash of every number of the card (what a model sidecar records)."""
        text = json.dumps(self.to_dict(), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:12]


#: Named presets.  Run 3 keeps the Run 2 geometry (the Upgrade I keeps the
#: spectrometer layout, [UPG] Sec. 1) with the upgraded VELO's PV resolution
#: (≈ 10 µm / 60 µm for 25 tracks, model numbers in line with [UPG] Sec. 4).
CARDS: dict[str, DetectorCard] = {
    "lhcb-run2": DetectorCard(),
    "lhcb-run3": DetectorCard(name="lhcb-run3", pv_sigma_xy_25=0.010, pv_sigma_z_25=0.060),
}

#: The card of the shipped models.
DEFAULT_CARD: str = "lhcb-run2"


def card(name: str = DEFAULT_CARD) -> DetectorCard:
    """The preset ``name``; :class:`ConfigError` naming the presets for an unknown one."""
    try:
        return CARDS[name]
    except KeyError:
        raise ConfigError(f"unknown detector card {name!r}; presets: {', '.join(sorted(CARDS))}") from None


def check_model_card(provenance: dict[str, Any] | None, expected: str, *, what: str) -> None:
    """Refuse a model whose sidecar records another detector card than ``expected``.

    Models trained before cards were recorded carry none and were trained on the
    ``lhcb-run2`` reference, which is what they are taken to be.

    Raises:
        ModelError: naming the model, its card and the expected one.
    """
    recorded = (provenance or {}).get("detector_card", DEFAULT_CARD)
    if isinstance(recorded, dict):
        recorded = recorded.get("name", DEFAULT_CARD)
    if recorded != expected:
        raise ModelError(
            f"{what} was trained on detector card {recorded!r}, but the pass uses {expected!r}; "
            f"retrain it on {expected!r} or set the pass's card to {recorded!r}"
        )


def fill_from_card(config: Any, *names: str) -> DetectorCard:
    """Set each field ``names`` of the frozen pass ``config`` that is ``None`` to its card's value.

    The one way a pass takes its defaults from the card named by its ``card`` field
    (called from ``__post_init__``).

    Returns:
        The card.

    Raises:
        ConfigError: an unknown card name.
    """
    detector = card(config.card)
    for name in names:
        if getattr(config, name) is None:
            object.__setattr__(config, name, getattr(detector, name))
    return detector
