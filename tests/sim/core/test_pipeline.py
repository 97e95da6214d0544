from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import pytest

import mambah
from sim import Generator, HeavyHadronSpectrum, Pipeline, RunConfig, UniformSpectrum, batch_seed
from sim.core.pipeline import PASS_KINDS, Pass


@dataclass(frozen=True)
class NeedsTracks(Pass):
    kind: ClassVar[str] = "test-needs-tracks"
    reads: ClassVar[tuple[str, ...]] = ("protoparticles",)
    writes: ClassVar[tuple[str, ...]] = ("protoparticles",)
    name: str = "needs"


def test_validate_checks_upstream_tables():
    with pytest.raises(mambah.ConfigError, match="reads protoparticles"):
        Pipeline((Generator(), NeedsTracks())).validate()
    with pytest.raises(mambah.ConfigError, match="two passes are named"):
        Pipeline((Generator(), Generator())).validate()
    # the same pass class twice under two names is fine
    Pipeline((Generator(), Generator(name="second"))).validate()


def test_toml_round_trip(tmp_path):
    pl = Pipeline(
        (Generator(decay="B+ -> (J/psi -> mu+ mu-) K+", spectrum=UniformSpectrum(variable="pt", range=(1e3, 2e4))), Generator(name="g2", spectrum=HeavyHadronSpectrum(flavour="c"))),
        RunConfig(events=10, batch_size=3, seed=5),
    )
    assert Pipeline.from_toml(pl.to_toml()) == pl
    path = tmp_path / "p.yaml"
    pl.save(path)
    assert Pipeline.load(path) == pl


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ('[run]\nevents = 10\nfoo = 1\n[[passes]]\nkind = "generator"\n', "unknown key.*'foo'"),
        ('[[passes]]\nkind = "generator"\ndecya = "B+ -> K+ pi+ pi-"\n', "unknown key.*'decya'.*valid keys"),
        ('[[passes]]\nkind = "nonsense"\n', "unknown pass kind 'nonsense'"),
        ('[run]\nevents = 0\n[[passes]]\nkind = "generator"\n', "events must be a positive integer"),
        ('[run]\nbatch_size = -5\n[[passes]]\nkind = "generator"\n', "batch size must be a positive integer"),
        ('[[passes]]\nkind = "generator"\n[passes.spectrum]\nkind = "flat-earth"\n', "unknown kind 'flat-earth'"),
        ("[run\nevents = 1", "malformed config"),
        ("[whatever]\n", "unknown top-level key"),
    ],
)
def test_bad_configs(text, match):
    with pytest.raises(mambah.ConfigError, match=match):
        Pipeline.from_toml(text)


def test_batches_are_values_with_derived_seeds():
    run = RunConfig(events=25, batch_size=10, seed=3)
    b = run.batches()
    assert [x.n_events for x in b] == [10, 10, 5]
    assert b[1].seed == batch_seed(3, 1) != batch_seed(4, 1)
    assert len({x.seed for x in b}) == 3
    # a stream's rng depends on (batch seed, stream) only
    assert b[0].rng("a").random() == b[0].rng("a").random() != b[0].rng("b").random()


def test_pass_kinds_registered_resolve():
    from sim.core.pipeline import pass_class

    for kind in PASS_KINDS:
        assert pass_class(kind).kind == kind
