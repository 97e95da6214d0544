"""`--resume` onto a store made with other settings: the refusal names the first setting that differs."""

from __future__ import annotations

from pathlib import Path

import pytest

from mambah import EventStore
from mambah.errors import ConfigError
from sim.core.configcheck import settings_difference
from sim.core.pipeline import Pipeline, RunConfig
from sim.core.runner import _run_record, open_output
from sim.generation.generator import Generator


def _job(decay: str = "B+ -> K+ pi+ pi-", events: int = 20) -> Pipeline:
    return Pipeline((Generator(decay=decay),), RunConfig(events=events, batch_size=10, seed=3))


def _store(path: Path, pipeline: Pipeline) -> Path:
    EventStore.create(path, metadata={"pipeline": pipeline.to_toml(), "run": _run_record(pipeline)}).close()
    return path


@pytest.mark.parametrize(
    ("other", "phrase"),
    [
        (_job(events=40), "[run].events is 20 in the store, 40 here"),
        (_job(decay="B0 -> K+ pi-"), "pass 'generator'.decay is 'B+ -> K+ pi+ pi-' in the store, 'B0 -> K+ pi-' here"),
        (Pipeline((Generator(decay="B+ -> K+ pi+ pi-", name="gun"),), RunConfig(events=20, batch_size=10, seed=3)),
         "the store's passes are generator; here gun"),
    ],
)
def test_resume_names_what_differs(tmp_path: Path, other: Pipeline, phrase: str) -> None:
    # before: "it was made with another pipeline or run settings (see 'mambah info ...')", nothing named
    path = _store(tmp_path / "s.duckdb", _job())
    with pytest.raises(ConfigError) as err:
        open_output(other, path, resume=True, overwrite=False)
    text = str(err.value)
    assert "another pipeline or run settings" in text and phrase in text, text
    assert "mambah run --config job.toml --resume" in text and "--overwrite" in text
    with open_output(_job(), path, resume=True, overwrite=False):  # the store's own settings resume
        pass


def test_settings_difference_of_a_nested_field() -> None:
    a, b = _job(), _job()
    b = b.replace("generator", luminous_region=type(a.passes[0].luminous_region)(sigma_z=50.0))  # type: ignore[attr-defined]
    assert settings_difference(a.to_toml(), b.to_toml()) == "pass 'generator'.luminous_region.sigma_z is 45.0 in the store, 50.0 here"
    assert settings_difference(a.to_toml(), a.to_toml(), _run_record(a), _run_record(a)) == "the settings differ"
