"""Re-export of :mod:`sim.core.io` (model I/O is the engine's: the run path loads models without the training code)."""

from __future__ import annotations

from sim.core.io import TrainedModel, load_model, provenance_defaults, save_model

__all__ = ('TrainedModel', 'save_model', 'load_model', 'provenance_defaults',)
