"""A HepMC3 units line that names no unit: refused, never read as GeV and cm (pyhepmc's substitute)."""

from __future__ import annotations

from pathlib import Path

import pytest

from mambah.cli import main


def _event(i: int, units: str) -> str:
    lines = [f"E {i} 1 4", f"U {units}",
             "P 1 0 2212 0 0 6500 6500 0.938272 4", "P 2 0 2212 0 0 -6500 6500 0.938272 4", "V -1 0 [1,2]"]
    lines += [f"P {k} -1 {211 if k % 2 else -211} 0.3 0.2 {20 + k} {((20 + k) ** 2 + 0.13 + 0.019479) ** 0.5} 0.13957 1"
              for k in (3, 4)]
    return "\n".join(lines) + "\n"


def _file(path: Path, units: list[str]) -> Path:
    body = "".join(_event(i, u) for i, u in enumerate(units))
    path.write_text(f"HepMC::Version 3.02.05\nHepMC::Asciiv3-START_EVENT_LISTING\n{body}HepMC::Asciiv3-END_EVENT_LISTING\n")
    return path


def _run(tmp_path: Path, name: str) -> int:
    return main(["run", "--hepmc", name, "--batch-size", "2", "-o", "s.duckdb", "--no-progress"])


def test_unknown_units_are_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    # before: pyhepmc printed two C++ ERROR lines, read the event as GEV and CM, and the run ended with exit 0
    pytest.importorskip("pyhepmc")
    monkeypatch.chdir(tmp_path)
    _file(tmp_path / "bad.hepmc", ["GEV MM", "FOO BAR"])
    assert _run(tmp_path, "bad.hepmc") == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert "HepMC file 'bad.hepmc', events [0, 2): units line b'U FOO BAR' not 'U GEV|MEV MM|CM'; fix the file's units" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.hepmc"]


def test_known_units_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("pyhepmc")
    monkeypatch.chdir(tmp_path)
    _file(tmp_path / "ok.hepmc", ["GEV MM", "MEV CM"])
    assert _run(tmp_path, "ok.hepmc") == 0


def test_a_signal_no_event_holds_is_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    # before: --decay X over a file without X ran with exit 0 and flagged nothing (a check that tested nothing)
    pytest.importorskip("pyhepmc")
    monkeypatch.chdir(tmp_path)
    _file(tmp_path / "pions.hepmc", ["GEV MM", "GEV MM"])
    argv = ["run", "--hepmc", "pions.hepmc", "--batch-size", "2", "-o", "s.duckdb", "--no-progress"]
    assert main([*argv, "--decay", "[B+ -> K+ pi+ pi-]cc"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert "--decay '[B+ -> K+ pi+ pi-]cc': no event of the HepMC input holds that decay" in err
    assert "nothing is flagged is_signal in s.duckdb" in err
    assert main([*argv, "--overwrite"]) == 0  # without a signal: no check to fail


def test_a_directory_is_named_as_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    # before: "HepMC file 'files' does not exist" for a folder that does
    pytest.importorskip("pyhepmc")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "files").mkdir()
    assert main(["run", "--hepmc", "files", "-o", "s.duckdb", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "HepMC file 'files' is a directory; give its files, e.g. 'files/*.hepmc3'" in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["files"]


@pytest.mark.parametrize("case", ["hepmc2", "hepmc3 read by pyhepmc"])
def test_unknown_units_are_refused_on_pyhepmcs_paths_too(tmp_path: Path, case: str) -> None:
    # before: HepMC2 files and reader="pyhepmc" went straight to pyhepmc, which read 'U FOO BAR' as GEV and CM
    pyhepmc = pytest.importorskip("pyhepmc")
    from mambah.errors import DataError
    from sim.core.pipeline import Pipeline, RunConfig
    from sim.core.runner import run
    from sim.generation.hepmc import HepMCInput

    path = tmp_path / "in.hepmc"
    if case == "hepmc2":
        with pyhepmc.io.WriterAsciiHepMC2(str(path)) as f:
            for i in range(2):
                ev = pyhepmc.GenEvent(pyhepmc.Units.GEV, pyhepmc.Units.MM)
                ev.event_number = i
                beam = [pyhepmc.GenParticle(pyhepmc.FourVector(0, 0, z, 6500), 2212, 4) for z in (6500, -6500)]
                outs = [pyhepmc.GenParticle(pyhepmc.FourVector(0.3, 0.2, 20.0 + k, 30.0), 211, 1)
                        for k in (0, 1)]
                v = pyhepmc.GenVertex(pyhepmc.FourVector(0, 0, 0, 0))
                for p in beam:
                    v.add_particle_in(p)
                for p in outs:
                    v.add_particle_out(p)
                ev.add_vertex(v)
                f.write_event(ev)
        text = path.read_text()
        assert text.count("U GEV MM") == 2
        path.write_text(text.replace("U GEV MM", "U FOO BAR", 1))  # the first event only
        reader = "auto"
    else:
        _file(path, ["FOO BAR", "GEV MM"])
        reader = "pyhepmc"
    hep = HepMCInput(files=(str(path),), batch_size=2, reader=reader)
    with pytest.raises(DataError, match=r"units line b'U FOO BAR' not 'U GEV\|MEV MM\|CM'; fix the file's units"):
        run(Pipeline((hep,), RunConfig(events=2, batch_size=2)), tmp_path / "s.duckdb", progress=False)
    assert not (tmp_path / "s.duckdb").exists()
