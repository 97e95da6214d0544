"""The hepmc input pass: HepMC3 / HepMC2 files written here with pyhepmc, read back particle for particle."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pyhepmc = pytest.importorskip("pyhepmc")

from mambah.errors import ConfigError, DataError  # noqa: E402
from sim.core.pipeline import Pipeline, RunConfig, build_kernels  # noqa: E402
from sim.core.runner import run  # noqa: E402
from sim.generation.hepmc import C_LIGHT, HepMCInput  # noqa: E402

# one interaction: beams -> (gluon, status 23, dropped) + pi+ ; gluon -> B+ pi- ; B+ -> J/psi K+ ; J/psi -> mu+ mu-
# (HepMC line, pid, status, momentum in GeV)
LINES = [
    (2212, 4, (0.0, 0.0, 6500.0, 6500.0)),
    (2212, 4, (0.0, 0.0, -6500.0, 6500.0)),
    (21, 23, (3.0, 2.5, 80.0, 81.0)),
    (211, 1, (0.3, -0.2, 12.0, 12.01)),
    (521, 2, (2.5, 2.0, 60.0, 60.3)),
    (-211, 1, (0.5, 0.5, 20.0, 20.02)),
    (443, 2, (1.5, 1.2, 40.0, 40.2)),
    (321, 1, (1.0, 0.8, 20.0, 20.1)),
    (-13, 1, (0.9, 0.5, 22.0, 22.1)),
    (13, 1, (0.6, 0.7, 18.0, 18.1)),
]
PV_CM = (0.008, -0.002, 1.5, 3.0)  # x, y, z, c*t [cm]
B_DECAY_CM = (0.02, 0.01, 2.4, 4.0)


def _event(number: int, shift: float) -> object:
    """A HepMC event in GeV and cm, particles added mothers first."""
    ev = pyhepmc.GenEvent(pyhepmc.Units.GEV, pyhepmc.Units.CM)
    ev.event_number = number
    parts = [pyhepmc.GenParticle(pyhepmc.FourVector(*p4), pid, st) for pid, st, p4 in LINES]
    for p, (_, _, p4) in zip(parts, LINES, strict=True):
        p.generated_mass = float(np.sqrt(max(p4[3] ** 2 - sum(x * x for x in p4[:3]), 0.0)))

    def vertex(pos: tuple[float, ...], ins: list[int], outs: list[int]) -> None:
        v = pyhepmc.GenVertex(pyhepmc.FourVector(*pos))
        for i in ins:
            v.add_particle_in(parts[i])
        for o in outs:
            v.add_particle_out(parts[o])
        ev.add_vertex(v)

    pv = (PV_CM[0], PV_CM[1], PV_CM[2] + shift, PV_CM[3])
    vertex(pv, [0, 1], [2, 3])
    vertex(pv, [2], [4, 5])
    bdec = (B_DECAY_CM[0], B_DECAY_CM[1], B_DECAY_CM[2] + shift, B_DECAY_CM[3])
    vertex(bdec, [4], [6, 7])
    vertex(bdec, [6], [8, 9])
    ev.attributes["signal_process_id"] = 123
    return ev


def _write(path: Path, n: int, fmt: str) -> Path:
    writer = pyhepmc.io.WriterAscii if fmt == "hepmc3" else pyhepmc.io.WriterAsciiHepMC2
    with writer(str(path)) as f:
        for i in range(n):
            f.write_event(_event(i, 0.1 * i))
    return path


# the expected store rows, worked out by hand from LINES (breadth-first, gluon dropped)
# HepMC line of each stored particle: beams, pi+, B+, pi- | J/psi, K+ | mu+, mu-
ORDER = [0, 1, 3, 4, 5, 6, 7, 8, 9]
MOTHER = [-1, -1, -1, -1, -1, 3, 3, 5, 5]
FIRST = [-1, -1, -1, 5, -1, 7, -1, -1, -1]
LAST = [-1, -1, -1, 6, -1, 8, -1, -1, -1]
PROD = [0, 0, 0, 0, 0, 1, 1, 2, 2]
DECAY = [0, 0, -1, 1, -1, 2, -1, -1, -1]
STATUS = [4, 4, 1, 2, 1, 2, 1, 1, 1]
CHARGE = [1, 1, 1, 1, -1, 0, 1, 1, -1]


def _check_event(store, event: int, shift: float) -> None:
    p = store.query_df(f'SELECT * FROM mc_particles WHERE event = {event} ORDER BY "index"')
    assert p["index"].tolist() == list(range(len(ORDER)))
    assert p["pid"].tolist() == [LINES[i][0] for i in ORDER]
    for j, c in enumerate(("px", "py", "pz", "e")):
        np.testing.assert_allclose(p[c].to_numpy(), [LINES[i][2][j] * 1000.0 for i in ORDER], rtol=1e-6)  # GeV -> MeV; float32 columns
    assert p["mother"].tolist() == MOTHER
    assert p["first_daughter"].tolist() == FIRST
    assert p["last_daughter"].tolist() == LAST
    assert p["prod_vertex"].tolist() == PROD
    assert p["decay_vertex"].tolist() == DECAY
    assert p["status"].tolist() == STATUS
    assert p["charge"].tolist() == CHARGE
    v = store.query_df(f'SELECT * FROM mc_vertices WHERE event = {event} ORDER BY "index"')
    assert v["index"].tolist() == [0, 1, 2]
    assert v["mother_particle"].tolist() == [-1, 3, 5]
    pv = np.array([PV_CM[0], PV_CM[1], PV_CM[2] + shift]) * 10.0  # cm -> mm
    bd = np.array([B_DECAY_CM[0], B_DECAY_CM[1], B_DECAY_CM[2] + shift]) * 10.0
    np.testing.assert_allclose(v[["x", "y", "z"]].to_numpy(), [pv, bd, bd], rtol=1e-6, atol=1e-7)  # float32 columns (schema v3)
    np.testing.assert_allclose(v["t"].to_numpy(), np.array([PV_CM[3], B_DECAY_CM[3], B_DECAY_CM[3]]) * 10.0 / C_LIGHT, rtol=1e-6)
    e = store.query_df(f"SELECT * FROM events WHERE event = {event}")
    np.testing.assert_allclose(e[["pv_x", "pv_y", "pv_z"]].to_numpy()[0], pv, rtol=1e-6, atol=1e-7)
    assert int(e["n_interactions"][0]) == 1
    assert int(e["process"][0]) == 123


@pytest.mark.parametrize("fmt", ["hepmc3", "hepmc2"])
def test_read_back_particle_for_particle(tmp_path: Path, fmt: str) -> None:
    import mambah

    path = _write(tmp_path / f"in.{fmt}", 5, fmt)
    pipe = Pipeline((HepMCInput(files=(str(path),), batch_size=2, signal="[B+ -> (J/psi -> mu+ mu-) K+]CC"),), RunConfig(events=5, batch_size=2, seed=1))
    run(pipe, tmp_path / "out.duckdb", progress=False)
    with mambah.EventStore.open(tmp_path / "out.duckdb", read_only=True) as store:
        assert store.batches() == [0, 1, 2]
        ev = store.query_df("SELECT batch, event FROM events ORDER BY batch, event")
        assert list(zip(ev["batch"], ev["event"], strict=True)) == [(0, 0), (0, 1), (1, 0), (1, 1), (2, 0)]
        # batch i holds file events [2i, 2i+2): the z shift identifies the file event
        _check_event(_Batch(store, 0), 0, 0.0)
        _check_event(_Batch(store, 1), 1, 0.3)
        _check_event(_Batch(store, 2), 0, 0.4)
        sig = store.query_df('SELECT pid, is_signal FROM mc_particles WHERE batch = 0 AND event = 0 ORDER BY "index"')
        # the signal tree: B+, J/psi, K+, mu+, mu- (not the beams or the prompt pions)
        assert sig["is_signal"].tolist() == [False, False, False, True, False, True, True, True, True]


class _Batch:
    """``query_df`` restricted to one batch (the checks are written per event)."""

    def __init__(self, store, batch: int) -> None:
        self.store, self.batch = store, batch

    def query_df(self, sql: str):
        return self.store.query_df(sql.replace("WHERE ", f"WHERE batch = {self.batch} AND "))


def test_two_files_and_a_glob_continue_the_event_count(tmp_path: Path) -> None:
    import mambah

    _write(tmp_path / "a.hepmc3", 3, "hepmc3")
    _write(tmp_path / "b.hepmc3", 3, "hepmc3")
    pipe = Pipeline((HepMCInput(files=(str(tmp_path / "*.hepmc3"),), batch_size=4),), RunConfig(events=6, batch_size=4, seed=1))
    assert pipe.passes[0].n_events() == 6  # type: ignore[attr-defined]
    run(pipe, tmp_path / "out.duckdb", progress=False)
    with mambah.EventStore.open(tmp_path / "out.duckdb", read_only=True) as store:
        z = store.query_df("SELECT batch, event, pv_z FROM events ORDER BY batch, event")["pv_z"].to_numpy()
    np.testing.assert_allclose(z, (PV_CM[2] + 0.1 * np.array([0, 1, 2, 0, 1, 2])) * 10.0)


def test_pile_up_signal_interaction_is_pv0(tmp_path: Path) -> None:
    """Two collisions in one event (MeV, mm): the one with the signal becomes PV 0."""
    import mambah

    ev = pyhepmc.GenEvent(pyhepmc.Units.MEV, pyhepmc.Units.MM)
    beams = [pyhepmc.GenParticle(pyhepmc.FourVector(0, 0, s * 6.5e6, 6.5e6), 2212, 4) for s in (1, -1, 1, -1)]
    pip = pyhepmc.GenParticle(pyhepmc.FourVector(100.0, 0.0, 5000.0, 5002.0), 211, 1)
    kp = pyhepmc.GenParticle(pyhepmc.FourVector(300.0, 100.0, 20000.0, 20010.0), 310, 2)
    d1 = pyhepmc.GenParticle(pyhepmc.FourVector(150.0, 50.0, 10000.0, 10005.0), 211, 1)
    d2 = pyhepmc.GenParticle(pyhepmc.FourVector(150.0, 50.0, 10000.0, 10005.0), -211, 1)
    for pos, ins, outs in (((0.1, 0.0, -20.0, 0.0), beams[:2], [pip]), ((0.2, 0.0, 30.0, 0.0), beams[2:], [kp]),
                           ((0.5, 0.1, 330.0, 1.0), [kp], [d1, d2])):
        v = pyhepmc.GenVertex(pyhepmc.FourVector(*pos))
        for p in ins:
            v.add_particle_in(p)
        for p in outs:
            v.add_particle_out(p)
        ev.add_vertex(v)
    with pyhepmc.io.WriterAscii(str(tmp_path / "pu.hepmc3")) as f:
        f.write_event(ev)
    pipe = Pipeline((HepMCInput(files=(str(tmp_path / "pu.hepmc3"),), batch_size=1, signal="K_S0 -> pi+ pi-"),), RunConfig(events=1, batch_size=1))
    run(pipe, tmp_path / "out.duckdb", progress=False)
    with mambah.EventStore.open(tmp_path / "out.duckdb", read_only=True) as store:
        e = store.query_df("SELECT * FROM events")
        p = store.query_df('SELECT * FROM mc_particles ORDER BY "index"')
        v = store.query_df('SELECT * FROM mc_vertices ORDER BY "index"')
    assert int(e["n_interactions"][0]) == 2
    assert float(e["pv_z"][0]) == 30.0  # the K_S0's collision
    assert p["pid"].tolist() == [2212, 2212, 211, 2212, 2212, 310, 211, -211]
    assert p["prod_vertex"].tolist() == [1, 1, 1, 0, 0, 0, 2, 2]
    assert p["is_signal"].tolist() == [False] * 5 + [True] * 3
    assert v["z"].tolist() == [30.0, -20.0, 330.0]
    assert v["mother_particle"].tolist() == [-1, -1, 5]


def test_not_hepmc_and_truncated_files_fail_at_build(tmp_path: Path) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("hello\nworld\n")
    with pytest.raises(DataError, match=r"is not a HepMC ASCII file"):
        build_kernels(Pipeline((HepMCInput(files=(str(text),)),)))
    good = _write(tmp_path / "good.hepmc3", 3, "hepmc3").read_bytes()
    for cut in (len(good) - 40, len(good) - 300):
        bad = tmp_path / f"cut{cut}.hepmc3"
        bad.write_bytes(good[:cut])
        with pytest.raises(DataError, match=r"is truncated.*event 2"):
            build_kernels(Pipeline((HepMCInput(files=(str(bad),)),)))
    with pytest.raises(DataError, match=r"matches no file"):
        build_kernels(Pipeline((HepMCInput(files=(str(tmp_path / "*.nothing"),)),)))


def test_broken_link_names_event_and_line(tmp_path: Path) -> None:
    path = _write(tmp_path / "in.hepmc3", 3, "hepmc3")
    lines = path.read_text().splitlines(keepends=True)
    e_lines = [i for i, ln in enumerate(lines) if ln.startswith("E ")]
    target = next(i for i in range(e_lines[1], e_lines[2]) if lines[i].startswith("P ") and lines[i].split()[2] == "-2")
    fields = lines[target].split(" ")
    fields[2] = "-9"
    lines[target] = " ".join(fields)
    path.write_text("".join(lines))
    # one batch per event: event 1 is batch 1, yet the run stops before batch 0 is written (checked at build)
    pipe = Pipeline((HepMCInput(files=(str(path),), batch_size=1),), RunConfig(events=3, batch_size=1))
    with pytest.raises(DataError, match=rf"event 1: line {target + 1}: particle \d+ links to undefined vertex -9"):
        run(pipe, tmp_path / "out.duckdb", progress=False)
    assert not (tmp_path / "out.duckdb").exists()


def test_broken_links_found_at_build_hepmc3_vertex_and_hepmc2(tmp_path: Path) -> None:
    """A vertex with an undefined incoming particle (HepMC3) and an undefined end vertex (HepMC2), in the last event."""
    path = _write(tmp_path / "in.hepmc3", 3, "hepmc3")
    lines = path.read_text().splitlines(keepends=True)
    target = max(i for i, ln in enumerate(lines) if ln.startswith("V ") and "[" in ln)
    lines[target] = lines[target].replace(lines[target][lines[target].index("[") : lines[target].index("]") + 1], "[99]")
    path.write_text("".join(lines))
    with pytest.raises(DataError, match=rf"event 2: line {target + 1}: vertex -\d+ has undefined incoming particle 99"):
        build_kernels(Pipeline((HepMCInput(files=(str(path),), batch_size=1),), RunConfig(events=3, batch_size=1)))
    path2 = _write(tmp_path / "in.hepmc2", 3, "hepmc2")
    lines = path2.read_text().splitlines(keepends=True)
    target = max(i for i, ln in enumerate(lines) if ln.startswith("P ") and ln.split()[11] != "0")
    fields = lines[target].split(" ")
    fields[11] = "-77"
    lines[target] = " ".join(fields)
    path2.write_text("".join(lines))
    with pytest.raises(DataError, match=rf"event 2: line {target + 1}: particle \d+ ends in undefined vertex -77"):
        build_kernels(Pipeline((HepMCInput(files=(str(path2),), batch_size=1),), RunConfig(events=3, batch_size=1)))


def test_cli_errors_exit_2_and_write_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from mambah.cli import main

    text = tmp_path / "notes.hepmc3"
    text.write_text("not a hepmc file\n")
    out = tmp_path / "out.duckdb"
    assert main(["run", "--hepmc", str(text), "-o", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is not a HepMC ASCII file" in err[0]
    assert not out.exists()
    good = _write(tmp_path / "good.hepmc3", 3, "hepmc3").read_bytes()
    (tmp_path / "cut.hepmc3").write_bytes(good[:-300])
    assert main(["run", "--hepmc", str(tmp_path / "cut.hepmc3"), "-o", str(out), "--no-progress"]) == 2
    assert "truncated" in capsys.readouterr().err
    assert not out.exists()
    assert main(["run", "--hepmc", str(tmp_path / "good.hepmc3"), "--events", "4", "-o", str(out), "--no-progress"]) == 2
    assert "holds 3 events" in capsys.readouterr().err
    assert not out.exists()
    assert main(["run", "--hepmc", str(tmp_path / "good.hepmc3"), "-o", str(out), "--no-progress"]) == 0
    import mambah

    with mambah.EventStore.open(out, read_only=True) as store:
        ev = store.query_df("SELECT event, n_tracks, n_pv FROM events ORDER BY event")
        trk = store.query_df("SELECT event, count(*) AS n FROM protoparticles WHERE track_type IN (3, 5) GROUP BY event")
    counts = dict(zip(trk["event"], trk["n"], strict=True))
    assert ev["n_tracks"].tolist() == [counts.get(e, 0) for e in ev["event"]]  # nTracks = Long + Downstream
    assert (ev["n_pv"] == 1).all()  # one interaction with fewer than 5 tracks: PV 0 only


def test_pythia_store_round_trips_through_hepmc3(tmp_path: Path) -> None:
    """Full Pythia events with pile-up → HepMC3 (write_hepmc) → the hepmc pass: the same store, line for line."""
    pytest.importorskip("pythia8mc")
    import mambah
    from sim.generation.hepmc import write_hepmc
    from sim.generation.pythia import Pythia

    signal = "[B+ -> (J/psi -> mu+ mu-) K+]cc"
    run(Pipeline((Pythia(preset="bbbar", decay=signal, nu=1.1),), RunConfig(events=8, batch_size=8, seed=3)), tmp_path / "py.duckdb", progress=False)
    with mambah.EventStore.open(tmp_path / "py.duckdb", read_only=True) as s:
        assert write_hepmc(s, tmp_path / "py.hepmc3") == 8
        want = {t: s.query_df(f'SELECT * FROM {t} ORDER BY event, "index"') for t in ("mc_particles", "mc_vertices")}
        want_ev = s.query_df("SELECT * FROM events ORDER BY event")
    run(Pipeline((HepMCInput(files=(str(tmp_path / "py.hepmc3"),), batch_size=8, signal=signal),), RunConfig(events=8, batch_size=8)),
        tmp_path / "back.duckdb", progress=False)
    with mambah.EventStore.open(tmp_path / "back.duckdb", read_only=True) as s:
        got = {t: s.query_df(f'SELECT * FROM {t} ORDER BY event, "index"') for t in ("mc_particles", "mc_vertices")}
        got_ev = s.query_df("SELECT * FROM events ORDER BY event")
    p, q = want["mc_particles"], got["mc_particles"]
    assert len(p) == len(q) > 8 * 300
    for c in ("event", "index", "pid", "charge", "mother", "first_daughter", "last_daughter", "prod_vertex", "decay_vertex", "status", "is_signal"):
        assert p[c].tolist() == q[c].tolist(), c
    for c in ("px", "py", "pz", "e", "mass"):
        np.testing.assert_allclose(q[c], p[c], rtol=1e-6, atol=1e-6)  # float32 -> HepMC text -> float32
    v, w = want["mc_vertices"], got["mc_vertices"]
    assert v["index"].tolist() == w["index"].tolist() and v["mother_particle"].tolist() == w["mother_particle"].tolist()
    for c in ("x", "y", "z", "t"):
        np.testing.assert_allclose(w[c], v[c], rtol=1e-6, atol=1e-7)
    assert want_ev["n_interactions"].tolist() == got_ev["n_interactions"].tolist()
    np.testing.assert_allclose(got_ev["pv_z"], want_ev["pv_z"], rtol=1e-6)


def test_daughters_in_acceptance_marks_failing_events_unsimulated(tmp_path: Path) -> None:
    """The file's K+ (64 mrad), mu+ (47 mrad), mu- (51 mrad) pass 10-400 mrad; a 50 mrad minimum fails the mu+."""
    import mambah
    from sim.generation._event_tables import signal_cut_efficiency

    path = _write(tmp_path / "in.hepmc3", 3, "hepmc3")
    signal = "[B+ -> (J/psi -> mu+ mu-) K+]cc"
    for name, window, want in (("wide", (0.010, 0.400), True), ("narrow", (0.050, 0.400), False)):
        hep = HepMCInput(files=(str(path),), batch_size=3, signal=signal, daughters_in_acceptance=True, charged_theta=window)
        out = tmp_path / f"{name}.duckdb"
        run(Pipeline((hep,), RunConfig(events=3, batch_size=3)), out, progress=False)
        with mambah.EventStore.open(out, read_only=True) as s:
            assert s.query_df("SELECT simulated FROM events ORDER BY event")["simulated"].tolist() == [want] * 3
            assert signal_cut_efficiency(s) == ((3 if want else 0), 3)
    with pytest.raises(ConfigError, match="daughters_in_acceptance needs a signal"):
        HepMCInput(files=(str(path),), daughters_in_acceptance=True)
    pipe = Pipeline((HepMCInput(files=("a.hepmc3",), batch_size=5, signal=signal, daughters_in_acceptance=True),), RunConfig(events=10, batch_size=5))
    assert Pipeline.from_toml(pipe.to_toml()) == pipe


@pytest.mark.parametrize("reader", ["text", "pyhepmc"])
@pytest.mark.parametrize("what", ["momentum", "position"])
def test_non_finite_values_are_refused_naming_the_event(tmp_path: Path, reader: str, what: str,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    """A NaN momentum or vertex position is one line naming file, event and particle/vertex, and nothing is stored."""
    path = tmp_path / "nan.hepmc3"
    with pyhepmc.io.WriterAscii(str(path)) as f:
        for i in range(3):
            ev = _event(i, 0.1 * i)
            if i == 1 and what == "momentum":
                ev.particles[7].momentum = pyhepmc.FourVector(float("nan"), 0.1, 20.0, 20.1)
            if i == 1 and what == "position":
                ev.vertices[2].position = pyhepmc.FourVector(0.02, float("inf"), 2.5, 4.0)
            f.write_event(ev)
    from mambah.cli import main
    from sim.core.pipeline import Pipeline
    from sim.defaults import default_pipeline
    from sim.generation.hepmc import HepMCInput

    cfg = tmp_path / "job.toml"
    base = default_pipeline()
    gen = HepMCInput(files=(str(path),), batch_size=3, reader=reader)
    Pipeline((gen, *base.passes[1:2]), base.run).save(cfg)  # the generator and the occupancy pass
    out = tmp_path / "out.duckdb"
    assert main(["run", "--config", str(cfg), "--events", "3", "--batch-size", "3", "-o", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    expect = "particle 8 has a non-finite momentum" if what == "momentum" else "vertex 3 has a non-finite position"
    assert len(err) == 1 and f"'{path}', event 1: {expect}" in err[0], err
    assert not out.exists()


@pytest.mark.parametrize(("fmt", "reader"), [("hepmc3", "text"), ("hepmc3", "pyhepmc"), ("hepmc2", "auto")])
def test_negative_energy_is_refused_naming_the_particle(tmp_path: Path, fmt: str, reader: str,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    """A particle with E < 0 is no particle: one line naming file, event and particle, nothing stored."""
    path = tmp_path / f"neg.{fmt}"
    writer = pyhepmc.io.WriterAscii if fmt == "hepmc3" else pyhepmc.io.WriterAsciiHepMC2
    with writer(str(path)) as f:
        for i in range(3):
            ev = _event(i, 0.1 * i)
            if i == 2:
                ev.particles[3].momentum = pyhepmc.FourVector(0.3, -0.2, 12.0, -12.01)
            f.write_event(ev)
    from mambah.cli import main

    out = tmp_path / "out.duckdb"
    cfg = tmp_path / "job.toml"
    Pipeline((HepMCInput(files=(str(path),), batch_size=3, reader=reader),), RunConfig(events=3, batch_size=3)).save(cfg)
    assert main(["run", "--config", str(cfg), "-o", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"'{path}', event 2: particle 4 has a negative energy (E = -12010 MeV)" in err[0], err
    assert not out.exists()


def test_event_without_particles_and_compressed_files_are_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An empty event is named as such (not "does not parse"); a gzip/xz file under any name says to decompress it."""
    import gzip
    import lzma

    from mambah.cli import main

    good = _write(tmp_path / "good.hepmc3", 3, "hepmc3").read_text()
    lines = good.splitlines(keepends=True)
    e_lines = [i for i, ln in enumerate(lines) if ln.startswith("E ")]
    empty = [*lines[: e_lines[1]], "E 1 0 0\n", "U GEV CM\n", *lines[e_lines[2] :]]
    (tmp_path / "empty.hepmc3").write_text("".join(empty))
    out = tmp_path / "out.duckdb"
    assert main(["run", "--hepmc", str(tmp_path / "empty.hepmc3"), "-o", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"event 1: line {e_lines[1] + 1}: the event holds no particles" in err[0], err
    assert not out.exists()
    for name, packed, opener in (("good.hepmc3.gz", "gzip", gzip.open), ("good.hepmc3", "xz", lzma.open)):
        path = tmp_path / "packed" / name
        path.parent.mkdir(exist_ok=True)
        with opener(path, "wt") as f:
            f.write(good)
        assert main(["run", "--hepmc", str(path), "-o", str(out), "--no-progress"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and f"'{path}' is {packed}-compressed" in err[0] and "decompress it first" in err[0], err
        assert not out.exists()
