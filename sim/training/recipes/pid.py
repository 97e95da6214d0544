"""Recipe of the PID models: the trainer of one species' four chained models and the shipped settings.

``scripts/train_pid_models.py`` and ``mambah train pid`` train with these settings;
:data:`SHIPPED` is the recipe of every shipped species.
"""

from __future__ import annotations

from typing import Any

from sim.core.registry import register_trainer
from sim.pid.models import REQUIRED_COLUMNS, train_species_models

__all__ = ("SEEDS", "EPOCHS", "LEARNING_RATE", "LR_SCHEDULE", "EMA", "GAN_OVERRIDES", "SHIPPED", "shipped_settings")

#: Fixed seeds: calibration sample and model initialisation, per species.
SEEDS: dict[str, int] = {"mu": 101, "pi": 102, "K": 103, "p": 104, "e": 105}
#: GAN epochs of the shipped models, per species.
EPOCHS: dict[str, int] = {"mu": 60, "pi": 80, "K": 80, "p": 60, "e": 60}
#: GAN Adam learning rate, per species.
LEARNING_RATE: dict[str, float] = {"mu": 1e-3, "pi": 5e-4, "K": 1e-3, "p": 1e-3, "e": 1e-3}
#: GAN learning-rate schedule and generator weight averaging (EMA momentum), every species.
LR_SCHEDULE: str = "cosine"
EMA: float = 0.999
#: Per-species overrides of sim.pid.models.GAN_SETTINGS.  Muons are above the Cherenkov
#: thresholds almost everywhere: the RICH GAN keeps the marginal target preprocessing
#: (the momentum-following one gave a worse 20-30 GeV bin, 0.026 vs 0.017).
GAN_OVERRIDES: dict[str, dict[str, dict[str, object]]] = {"mu": {"rich": {"target_bins": None}}}


def shipped_settings(species: str) -> dict[str, Any]:
    """Keyword arguments of :func:`sim.pid.models.train_species_models` for the shipped ``species``."""
    return {
        "seed": SEEDS[species], "epochs": EPOCHS[species], "learning_rate": LEARNING_RATE[species],
        "lr_schedule": LR_SCHEDULE, "ema": EMA, "gan_settings": GAN_OVERRIDES.get(species),
    }


#: The shipped recipe, per species.
SHIPPED: dict[str, Any] = {sp: shipped_settings(sp) for sp in SEEDS}

register_trainer("pid", columns=REQUIRED_COLUMNS, recipe=SHIPPED,
                 help="the four chained PID models of one species (RICH, IsMuon, MuonLL, global)")(train_species_models)
