"""A preselect threshold outside the selection score's range [0, 1] is refused (it kept or skipped every event)."""

from __future__ import annotations

import pytest

from mambah.errors import ConfigError
from sim.generation.preselect import Preselect


@pytest.mark.parametrize("threshold", [-1.0, -1e-9, 1.0000001, 2.0, float("nan"), float("inf")])
def test_threshold_outside_the_score_range(threshold: float) -> None:
    # before: -1 and 2 ran (every event kept / every event skipped) with exit 0
    with pytest.raises(ConfigError, match=r"threshold=.* must be a finite score \(0 to 1\)"):
        Preselect(model="m.keras", threshold=threshold, decay="d", pipeline="p")


@pytest.mark.parametrize("threshold", [0.0, 0.5, 1.0])
def test_thresholds_in_range_are_kept(threshold: float) -> None:
    assert Preselect(model="m.keras", threshold=threshold, decay="d", pipeline="p").threshold == threshold
