"""Mambah simulation: particle gun, phasespace decays, pass pipeline, reference detector, fast passes.

TensorFlow is imported only when a TensorFlow step runs (building a decay or
loading a model), not by ``import sim``.
"""

from __future__ import annotations

from .decay import DecayModel, load_decay
from .distributed import run_distributed
from .gun import FixedMomentum, HeavyHadronSpectrum, LuminousRegion, UniformSpectrum, sample_primary_vertices
from .passes.acceptance import Acceptance
from .passes.efficiency import Efficiency
from .passes.generator import DEFAULT_DECAY, Generator, generate_tables
from .passes.occupancy import Occupancy
from .passes.pid import PID
from .passes.resolution import Resolution
from .pid_models import load_pid_models
from .reference_sample import make_reference_sample
from .pipeline import Batch, BatchContext, Pass, Pipeline, RunConfig, batch_seed
from .runner import RunSummary, default_pipeline, run

__all__ = (
    "Acceptance",
    "Batch",
    "BatchContext",
    "DEFAULT_DECAY",
    "DecayModel",
    "Efficiency",
    "FixedMomentum",
    "Generator",
    "HeavyHadronSpectrum",
    "LuminousRegion",
    "Occupancy",
    "PID",
    "Pass",
    "Pipeline",
    "Resolution",
    "RunConfig",
    "RunSummary",
    "UniformSpectrum",
    "batch_seed",
    "default_pipeline",
    "generate_tables",
    "load_decay",
    "load_pid_models",
    "make_reference_sample",
    "run",
    "run_distributed",
    "sample_primary_vertices",
)


def __dir__() -> list[str]:
    return list(__all__)
