"""``mambah run --pythia/--hepmc --daughters-in-acceptance`` and the cut's efficiency in ``mambah info``."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("pythia8mc")

import mambah
from sim.core.pipeline import Pipeline, RunConfig
from sim.core.runner import run
from sim.generation.hepmc import HepMCInput
from sim.generation.pythia import Pythia

SIGNAL = "[B+ -> (J/psi -> mu+ mu-) K+]cc"


def test_flag_in_help_and_in_the_saved_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from mambah.cli import main

    with pytest.raises(SystemExit):
        main(["run", "--pythia", "bbbar", "--help"])
    assert "--daughters-in-acceptance" in capsys.readouterr().out
    cfg = tmp_path / "job.toml"
    assert main(["run", "--pythia", "bbbar", "--decay", SIGNAL, "--daughters-in-acceptance", "--save-config", str(cfg)]) == 0
    gen = Pipeline.load(cfg).passes[0]
    assert isinstance(gen, Pythia) and gen.daughters_in_acceptance and gen.decay == SIGNAL
    assert main(["run", "--pythia", "bbbar", "--decay", SIGNAL, "--save-config", str(cfg), "--overwrite"]) == 0
    gen = Pipeline.load(cfg).passes[0]
    assert isinstance(gen, Pythia) and not gen.daughters_in_acceptance  # off unless asked
    hep = tmp_path / "x.hepmc3"
    hep.write_text("HepMC::Version 3.02.05\nHepMC::Asciiv3-START_EVENT_LISTING\n")  # not read: the config fails first
    capsys.readouterr()
    for argv, msg in (
        (["run", "--pythia", "bbbar", "--daughters-in-acceptance", "--save-config", str(cfg)], "needs a signal: add --decay"),
        (["run", "--decay", SIGNAL, "--daughters-in-acceptance", "--save-config", str(cfg)], "needs a full-event generator"),
        (["run", "--hepmc", str(hep), "--daughters-in-acceptance", "--save-config", str(cfg)], "needs a signal: add --decay"),
    ):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert msg in err and len(err.strip().splitlines()) == 1, err


def test_info_prints_the_cut_efficiency(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from mambah.cli import main
    from sim.generation.pythia import signal_cut_efficiency

    path = tmp_path / "cut.duckdb"
    pipe = Pipeline((Pythia(decay=SIGNAL, nu=0.0, daughters_in_acceptance=True),), RunConfig(events=8, batch_size=4, seed=3))
    run(pipe, path, progress=False)
    with mambah.EventStore.open(path, read_only=True) as s:
        kept, tried = signal_cut_efficiency(s)
        n_tried = int(s.query("SELECT sum(n_tried) AS t FROM events").to_pylist()[0]["t"])
    assert kept == 8 and tried >= kept
    assert main(["info", str(path)]) == 0
    out = capsys.readouterr().out
    assert f"acceptance cut: {kept} of {tried} signal events kept (efficiency {kept / tried:.4g};" in out
    assert f"signal filter:  8 events kept of {n_tried} generated" in out
    assert "generator_cut/" not in out  # the per-batch rows are summed, not listed
    plain = tmp_path / "plain.duckdb"
    run(Pipeline((Pythia(decay=SIGNAL, nu=0.0),), RunConfig(events=2, batch_size=2, seed=3)), plain, progress=False)
    assert main(["info", str(plain)]) == 0
    assert "acceptance cut" not in capsys.readouterr().out


def test_hepmc_flag_reaches_the_pass(tmp_path: Path) -> None:
    """--hepmc with the flag: the pass marks events, the same cut as HepMCInput(daughters_in_acceptance=True)."""
    import argparse

    from sim.cli.full_events import full_event_pipeline
    from sim.defaults import default_pipeline
    from sim.generation.hepmc import write_hepmc

    src = tmp_path / "src.duckdb"
    run(Pipeline((Pythia(decay=SIGNAL, nu=0.0),), RunConfig(events=4, batch_size=4, seed=9)), src, progress=False)
    hep = tmp_path / "ev.hepmc3"
    with mambah.EventStore.open(src, read_only=True) as s:
        write_hepmc(s, hep)
    args = argparse.Namespace(pythia=None, hepmc=[str(hep)], decay=SIGNAL, dec_file=None, mother=None, events=None,
                              batch_size=None, daughters_in_acceptance=True)
    gen = full_event_pipeline(default_pipeline(), args).passes[0]
    assert isinstance(gen, HepMCInput) and gen.daughters_in_acceptance and gen.signal == SIGNAL
