"""Mambah simulation: particle gun, phasespace decays, pass pipeline, reference detector, fast passes.

TensorFlow is imported only when a TensorFlow step runs (building a decay or
loading a model), not by ``import sim``.
"""

from __future__ import annotations

from .decay import DecayModel, load_decay
from .gun import FixedMomentum, HeavyHadronSpectrum, LuminousRegion, UniformSpectrum, sample_primary_vertices
from .passes.generator import DEFAULT_DECAY, Generator, generate_tables
from .pipeline import Batch, BatchContext, Pass, Pipeline, RunConfig, batch_seed
from .runner import RunSummary, default_pipeline, run

__all__ = (
    "Batch",
    "BatchContext",
    "DEFAULT_DECAY",
    "DecayModel",
    "FixedMomentum",
    "Generator",
    "HeavyHadronSpectrum",
    "LuminousRegion",
    "Pass",
    "Pipeline",
    "RunConfig",
    "RunSummary",
    "UniformSpectrum",
    "batch_seed",
    "default_pipeline",
    "generate_tables",
    "load_decay",
    "run",
    "sample_primary_vertices",
)


def __dir__() -> list[str]:
    return list(__all__)
