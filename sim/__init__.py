"""Mambah simulation: generation, the pass pipeline, the fast detector and PID, the reference detector.

The package is a facade over its rooms (each subpackage's docstring says what it
may import; arrows point one way):

* :mod:`sim.core` — Pass, Pipeline, RunConfig, Batch, the registry, the runner
  and its executors, model I/O;
* :mod:`sim.generation` — beam, gun, decays, generator passes;
* :mod:`sim.detector` — the detector card, shared features and the detector passes;
* :mod:`sim.pid` — the PID models and the PID pass;
* :mod:`sim.reference` — the full-simulation stand-in (tracking, occupancy, PID,
  calibration and reference samples);
* :mod:`sim.training`, :mod:`sim.validation` — the workshop;
* :mod:`sim.cli` — the ``run``, ``train`` and ``validate`` subcommands.

Names are loaded on first use, so ``import sim`` is light and the ``mambah run``
path never imports the reference detector or the training code.  TensorFlow is
imported only when a TensorFlow step runs (building a decay or loading a model).
"""

from __future__ import annotations

import importlib
from typing import Any

#: public name -> module that defines it
_WHERE: dict[str, str] = {
    "Acceptance": "sim.detector.acceptance",
    "Batch": "sim.core.pipeline",
    "DaskExecutor": "sim.core.executors",
    "SerialExecutor": "sim.core.executors",
    "DetectorCard": "sim.detector.card",
    "fit_vertices": "sim.detector.vertexing",
    "BatchContext": "sim.core.pipeline",
    "DEFAULT_DECAY": "sim.generation.generator",
    "DecayModel": "sim.generation.decay",
    "Efficiency": "sim.detector.efficiency",
    "FixedMomentum": "sim.generation.gun",
    "Generator": "sim.generation.generator",
    "HeavyHadronSpectrum": "sim.generation.gun",
    "LuminousRegion": "sim.generation.beam",
    "Occupancy": "sim.detector.occupancy",
    "PID": "sim.pid.response",
    "Pass": "sim.core.pipeline",
    "Pipeline": "sim.core.pipeline",
    "Resolution": "sim.detector.resolution",
    "RunConfig": "sim.core.pipeline",
    "RunSummary": "sim.core.runner",
    "UniformSpectrum": "sim.generation.gun",
    "batch_seed": "sim.core.pipeline",
    "default_pipeline": "sim.defaults",
    "generate_tables": "sim.generation.generator",
    "load_decay": "sim.generation.decay",
    "load_pid_models": "sim.pid.models",
    "make_reference_sample": "sim.reference.sample",
    "run": "sim.core.runner",
    "run_distributed": "sim.core.distributed",
    "sample_primary_vertices": "sim.generation.beam",
}

__all__ = (
    "Acceptance",
    "Batch",
    "BatchContext",
    "DEFAULT_DECAY",
    "DaskExecutor",
    "DecayModel",
    "DetectorCard",
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
    "SerialExecutor",
    "UniformSpectrum",
    "batch_seed",
    "default_pipeline",
    "fit_vertices",
    "generate_tables",
    "load_decay",
    "load_pid_models",
    "make_reference_sample",
    "run",
    "run_distributed",
    "sample_primary_vertices",
)


def __getattr__(name: str) -> Any:
    try:
        module = _WHERE[name]
    except KeyError:
        raise AttributeError(f"module 'sim' has no attribute {name!r}") from None
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return list(__all__)
