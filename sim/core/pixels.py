"""Log-space pixel transform of image-like detector responses (shared by training and the passes).

``f = log1p(v / eps) / log1p(1 / eps)`` for pixels ``v >= 0``: the image GANs
(:mod:`sim.training.image_gan`) learn pixels in this space, and the passes that run
them (e.g. the calorimeter) map generated pixels back with :meth:`PixelTransform.inverse`.
Pure numpy.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mambah.errors import ConfigError

__all__ = ("PixelTransform",)


@dataclass(frozen=True)
class PixelTransform:
    """``f = log1p(v / eps) / log1p(1 / eps)`` for pixels ``v >= 0`` (``v = 1`` → ``f = 1``).

    Attributes:
        eps: the scale below which pixels are compressed linearly.
    """

    eps: float = 1e-4

    def __post_init__(self) -> None:
        if not (np.isfinite(self.eps) and self.eps > 0):
            raise ConfigError(f"PixelTransform.eps={self.eps!r}; expected a positive number")

    @property
    def norm(self) -> float:
        return float(np.log1p(1.0 / self.eps))

    def forward(self, v: np.ndarray) -> np.ndarray:
        """Pixel values (any shape, >= 0) → learning space."""
        return np.log1p(np.maximum(np.asarray(v, dtype=np.float64), 0.0) / self.eps) / self.norm

    def inverse(self, f: np.ndarray) -> np.ndarray:
        """Learning space → pixel values (negative ``f`` → 0)."""
        return self.eps * np.expm1(np.maximum(np.asarray(f, dtype=np.float64), 0.0) * self.norm)
