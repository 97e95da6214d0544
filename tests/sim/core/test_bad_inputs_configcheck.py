"""The one "every field finite" check of the all-numeric configs (sim.core.configcheck)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pytest

from mambah.errors import ConfigError
from sim.core.configcheck import check_fields_finite
from sim.generation.beam import LuminousRegion
from sim.reference.ecal import ECALConfig
from sim.reference.tracking import GhostConfig


@dataclass(frozen=True)
class _Numbers:
    a: float = 1.0
    b: int = 2


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf, "1.0", None, True, np.bool_(True), [1.0]])
def test_every_non_finite_or_non_number_is_named(bad: object) -> None:
    with pytest.raises(ConfigError, match=r"^_Numbers\.b=.*; expected a finite number$"):
        check_fields_finite(_Numbers(b=bad), "_Numbers")  # type: ignore[arg-type]


def test_finite_numbers_pass_numpy_scalars_too() -> None:
    check_fields_finite(_Numbers(a=np.float32(0.5), b=np.int64(3)), "_Numbers")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("klass", "field"),
    [(LuminousRegion, "sigma_z"), (GhostConfig, "p_scale"), (ECALConfig, "moliere")],
)
@pytest.mark.parametrize("bad", [math.nan, math.inf, "3"])
def test_the_three_configs_use_it(klass: type, field: str, bad: object) -> None:
    with pytest.raises(ConfigError, match=rf"^{klass.__name__}\.{field}=.*; expected a finite number$"):
        klass(**{field: bad})
