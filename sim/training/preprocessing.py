"""Re-export of :mod:`sim.core.preprocessing` (model I/O is the engine's: the run path loads models without the training code)."""

from __future__ import annotations

from sim.core.preprocessing import (
    ConditionalQuantileGaussian,
    Identity,
    Preprocessor,
    QuantileGaussian,
    Standardizer,
    inverse_transform,
    preprocessor_from_dict,
    transform,
)

__all__ = ('Preprocessor', 'Identity', 'Standardizer', 'QuantileGaussian', 'ConditionalQuantileGaussian', 'inverse_transform', 'transform', 'preprocessor_from_dict',)
