"""The default job: what ``mambah run`` does without arguments."""

from __future__ import annotations

from typing import Any

from sim.core.pipeline import Pass, Pipeline, RunConfig
from sim.generation.generator import DEFAULT_DECAY, Generator

__all__ = ("default_pipeline", "default_passes", "DEFAULT_DECAY", "DEFAULT_RUN")

#: Λb0 → Λc+ μ− ν̄μ with Λc+ → p K− π+, 100 000 events in batches of 25 000.
DEFAULT_RUN = RunConfig(events=100_000, batch_size=25_000, seed=42)


def default_passes() -> tuple[Pass, ...]:
    """Generator followed by the detector passes with the shipped models."""
    from sim.detector.acceptance import Acceptance
    from sim.detector.calorimeter import Calorimeter
    from sim.detector.efficiency import Efficiency
    from sim.detector.ghosts import Ghosts
    from sim.detector.occupancy import Occupancy
    from sim.detector.resolution import Resolution
    from sim.pid.response import PID

    return (Generator(), Occupancy(), Acceptance(), Efficiency(), Resolution(), Ghosts(), Calorimeter(), PID())


def default_pipeline(**run: Any) -> Pipeline:
    """The default pipeline; ``run`` overrides fields of :data:`DEFAULT_RUN`."""
    import dataclasses

    return Pipeline(default_passes(), dataclasses.replace(DEFAULT_RUN, **run))
