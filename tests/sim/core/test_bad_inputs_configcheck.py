"""The one "every field finite" check of the all-numeric configs (sim.core.configcheck)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from mambah.errors import ConfigError
from sim.core.configcheck import check_fields_finite
from sim.core.pipeline import RunConfig
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


# ---------------------------------------------------------------- YAML configs: a key given twice


def _yaml_job(tmp_path: Path, extra: str) -> Path:
    from sim.core.pipeline import Pipeline
    from sim.generation.generator import Generator

    path = tmp_path / "job.yaml"
    Pipeline((Generator(decay="B+ -> K+ pi+ pi-"),), RunConfig(events=10, batch_size=10)).save(path)
    text = path.read_text()
    assert "  seed: 42\n" in text
    path.write_text(text.replace("  seed: 42\n", "  seed: 42\n" + extra))
    return path


def test_yaml_key_given_twice_is_refused(tmp_path: Path) -> None:
    from sim.core.pipeline import Pipeline

    # before: PyYAML kept the last value (seed 7) where TOML refuses the file
    path = _yaml_job(tmp_path, "  seed: 7\n")
    with pytest.raises(ConfigError, match=r"malformed config '.*job.yaml': key 'seed' appears twice \(lines 4 and 5\); keep one"):
        Pipeline.load(path)


def test_yaml_merge_keys_may_be_overridden(tmp_path: Path) -> None:
    from sim.core.configcheck import load_yaml

    data = load_yaml("base: &b {x: 1, y: 2}\nuse:\n  <<: *b\n  x: 3\n", "'t.yaml'")
    assert data["use"] == {"x": 3, "y": 2}
    with pytest.raises(ConfigError, match="key 'x' appears twice"):
        load_yaml("use:\n  x: 1\n  x: 1\n", "'t.yaml'")
