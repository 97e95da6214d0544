"""The bulk HepMC3 text parser against pyhepmc's reader: the same arrays and the same store, on files written here."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pyhepmc = pytest.importorskip("pyhepmc")

from mambah.errors import ConfigError, DataError  # noqa: E402
from sim.core.pipeline import Pipeline, RunConfig, build_kernels  # noqa: E402
from sim.core.runner import run  # noqa: E402
from sim.generation._hepmc_text import TextLayoutError, parse_hepmc3  # noqa: E402
from sim.generation.hepmc import HepMCInput, read_segment, scan_hepmc  # noqa: E402

UNITS = [("GEV", "MM"), ("MEV", "CM"), ("GEV", "CM"), ("MEV", "MM")]
HADRONS = [211, -211, 321, -321, 2212, 22, 111, 130]
DECAYING = [521, -521, 511, 443, 310, 3122]


def _p4(rng: np.random.Generator, scale: float) -> Any:
    px, py = rng.normal(0.0, 0.5, 2) * scale
    pz = rng.uniform(2.0, 50.0) * scale
    m = rng.uniform(0.1, 5.0) * scale
    return pyhepmc.FourVector(px, py, pz, float(np.sqrt(px * px + py * py + pz * pz + m * m)))


def _event(rng: np.random.Generator, number: int, positions: str) -> Any:
    """A random event (1-2 interactions) written mothers first.

    Each interaction: beams -> collision vertex -> two partons (status 23, dropped) and prompt
    hadrons; the partons -> a string vertex with two incoming particles -> hadrons; decaying
    hadrons (status 2) -> one-incoming decay vertices, some with their own position (a ``V``
    line), some without (the file names the mother particle: an implicit vertex), two levels.
    ``positions``: ``"all"`` (collision and some decay vertices placed), ``"some"`` (decay
    vertices only) or ``"none"`` (no vertex has a position: no ``@`` in the event).
    """
    mom, length = UNITS[number % len(UNITS)]
    scale = 1.0 if mom == "GEV" else 1000.0
    ev = pyhepmc.GenEvent(getattr(pyhepmc.Units, mom), getattr(pyhepmc.Units, length))
    ev.event_number = number
    if number % 2 == 0:
        ev.attributes["signal_process_id"] = 100 + number

    def particle(pid: int, status: int) -> Any:
        p = pyhepmc.GenParticle(_p4(rng, scale), pid, status)
        if rng.uniform() < 0.5:
            p.generated_mass = float(rng.uniform(0.1, 5.0) * scale)
        return p

    def vertex(ins: list[Any], outs: list[Any], placed: bool) -> None:
        v = pyhepmc.GenVertex(pyhepmc.FourVector(*rng.normal(0.0, 3.0, 4))) if placed else pyhepmc.GenVertex()
        for p in ins:
            v.add_particle_in(p)
        for p in outs:
            v.add_particle_out(p)
        ev.add_vertex(v)

    def decay(mother: Any, depth: int) -> None:
        kids = [particle(int(rng.choice(DECAYING)), 2) if depth < 2 and rng.uniform() < 0.4 else particle(int(rng.choice(HADRONS)), 1)
                for _ in range(int(rng.integers(1, 4)))]
        vertex([mother], kids, placed=positions != "none" and rng.uniform() < 0.5)
        for k in kids:
            if k.status == 2:
                decay(k, depth + 1)

    for _ in range(int(rng.integers(1, 3))):
        b1, b2 = pyhepmc.GenParticle(pyhepmc.FourVector(0, 0, 6500 * scale, 6500 * scale), 2212, 4), pyhepmc.GenParticle(
            pyhepmc.FourVector(0, 0, -6500 * scale, 6500 * scale), 2212, 4)
        g1, g2 = particle(21, 23), particle(21, 23)
        prompt = [particle(int(rng.choice(HADRONS + DECAYING)), 1) for _ in range(int(rng.integers(1, 4)))]
        for p in prompt:
            if p.pid in DECAYING:
                p.status = 2
        vertex([b1, b2], [g1, g2, *prompt], placed=positions == "all")
        string = [particle(int(rng.choice(HADRONS)), 1) for _ in range(3)] + [particle(int(rng.choice(DECAYING)), 2)]
        vertex([g1, g2], string, placed=False)
        for p in prompt + string:
            if p.status == 2:
                decay(p, 0)
    return ev


def _write(path: Path, n: int, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    with pyhepmc.io.WriterAscii(str(path)) as w:
        for i in range(n):
            w.write_event(_event(rng, i, ("all", "some", "none")[i % 3]))
    return path


def _same_arrays(a: dict[str, Any], b: dict[str, Any]) -> None:
    assert a.keys() == b.keys()
    for k, va in a.items():
        x, y = np.asarray(va), np.asarray(b[k])
        assert x.dtype == y.dtype and x.shape == y.shape, k
        assert np.array_equal(x, y, equal_nan=x.dtype.kind == "f"), k  # bit for bit, not approximately


def _tables(path: Path) -> dict[str, Any]:
    import mambah

    with mambah.EventStore.open(path, read_only=True) as s:
        return {
            t: s.query_df(f'SELECT * FROM {t} ORDER BY batch, event' + (', "index"' if t != "events" else ""))
            for t in ("events", "mc_particles", "mc_vertices")
        }


def _store(tmp_path: Path, files: list[Path], reader: str, n: int, batch: int, tag: str) -> dict[str, Any]:
    hep = HepMCInput(files=tuple(str(f) for f in files), batch_size=batch, reader=reader)
    out = tmp_path / f"{tag}_{reader}.duckdb"
    run(Pipeline((hep,), RunConfig(events=n, batch_size=batch, seed=2)), out, progress=False)
    return _tables(out)


def test_text_parser_gives_pyhepmc_arrays_bit_for_bit(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Random events: pile-up, 1 and 2 incoming particles, positions present / absent, GeV|MeV and mm|cm."""
    path = _write(tmp_path / "r.hepmc3", 12, seed=11)
    text = path.read_text()
    assert "U MEV CM" in text and "U GEV MM" in text and "@" in text
    assert any(ln.startswith("V ") and "@" not in ln for ln in text.splitlines())  # a vertex without position
    assert any(ln.startswith("P ") and int(ln.split()[2]) > 0 for ln in text.splitlines())  # implicit vertex (mother named)
    assert any(ln.startswith("V ") and "," in ln.split()[3] for ln in text.splitlines())  # several incoming particles
    ix = scan_hepmc(path)
    with caplog.at_level(logging.WARNING, logger="sim.generation.hepmc"):
        for a, z in ((0, 12), (0, 5), (5, 12), (7, 8)):
            _same_arrays(read_segment(ix, a, z, "text"), read_segment(ix, a, z, "pyhepmc"))
    assert not caplog.records


def test_text_and_pyhepmc_readers_make_the_same_store(tmp_path: Path) -> None:
    a, b = _write(tmp_path / "a.hepmc3", 7, seed=3), _write(tmp_path / "b.hepmc3", 5, seed=4)
    text = _store(tmp_path, [a, b], "text", 12, 5, "ab")  # batch 1 spans both files
    via = _store(tmp_path, [a, b], "pyhepmc", 12, 5, "ab")
    for t in text:
        assert len(text[t]) > 0
        assert text[t].equals(via[t]), t
    assert text["events"]["n_interactions"].max() == 2


# written by hand: an E-line position, a vertex without '@' (inherits the root's: the E line's),
# one at (0, 0, 0, 0) (inherits too), an unsorted incoming list, an implicit vertex, MeV/cm, other attributes
HAND = """HepMC::Version 3.02.05
HepMC::Asciiv3-START_EVENT_LISTING
E 3 4 8 @ 1.5 2.5 3.5 4.5
U MEV CM
A 0 signal_process_id 55
A 3 flow1 501
P 1 0 2212 0 0 6500000 6500000 938.272 4
P 2 0 2212 0 0 -6500000 6500000 938.272 4
V -1 0 [2,1]
P 3 -1 21 1000 0 1000 2000 0 23
P 4 -1 21 -1000 0 1000 2000 0 23
V -2 0 [4,3] @ 7 8 9 10
P 5 -2 521 10 20 2000 5600 5279.3 2
P 6 5 321 100 30 1000 1200 493.7 1
P 7 5 443 0 0 1000 3500 3096.9 2
V -4 0 [7] @ 0 0 0 0
P 8 -4 13 0 0 1000 1000 105.7 1
E 4 3 6
U GEV MM
A 0 signal_process_id not-a-number
P 1 0 2212 0 0 6500 6500 0.938 4
P 2 0 2212 0 0 -6500 6500 0.938 4
V -1 0 [1,2] @ 0.1 0.2 0.3 0.4
P 3 -1 521 1 0 1 2 5.279 2
P 4 3 211 -1 0 1 2 0.1396 1
P 5 -1 443 0 1 1 4 3.0969 2
V -3 0 [5] @ 0.5 0.6 0.7 0.8
P 6 -3 211 -1 0 1 2 0.1396 1
HepMC::Asciiv3-END_EVENT_LISTING
"""


def test_hand_written_layouts(tmp_path: Path) -> None:
    path = tmp_path / "hand.hepmc3"
    path.write_text(HAND)
    ix = scan_hepmc(path)
    got = read_segment(ix, 0, 2, "text")
    _same_arrays(got, read_segment(ix, 0, 2, "pyhepmc"))
    # independent expectations: root at the E line's position (cm -> mm, c*t -> ns)
    c = 299.792458
    assert got["process"].tolist() == [55, -1]
    np.testing.assert_array_equal(got["event_pos"][0], [15.0, 25.0, 35.0, 45.0 / c])
    # event 0 vertex rows: V -1 (no '@' -> root), V -2, the B+'s implicit vertex (-> V -2's), V -4 (at 0 -> V -2's)
    vpos = got["vpos"]
    assert got["vsizes"].tolist() == [4, 3] and got["sizes"].tolist() == [8, 6]
    np.testing.assert_array_equal(vpos[0], [15.0, 25.0, 35.0, 45.0 / c])
    np.testing.assert_array_equal(vpos[1], [70.0, 80.0, 90.0, 100.0 / c])
    np.testing.assert_array_equal(vpos[2], vpos[1])
    np.testing.assert_array_equal(vpos[3], vpos[1])
    assert got["prod"][5] == got["prod"][6] == 2 and got["end"][4] == 2  # particles 6, 7 from the B+'s implicit vertex
    assert got["in_p"][:2].tolist() == [1, 0]  # the list's order: the first incoming particle is 2
    assert got["mass"][6] == 3096.9 and got["p4"][10, 3] == 2000.0  # MeV kept, GeV x 1000
    # event 1 (mm): V -1, the B+'s implicit vertex (-> V -1's), V -3
    np.testing.assert_array_equal(vpos[4:], [[0.1, 0.2, 0.3, 0.4 / c], [0.1, 0.2, 0.3, 0.4 / c], [0.5, 0.6, 0.7, 0.8 / c]])


def test_uncovered_layout_falls_back_with_one_warning_or_is_refused(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    good = _write(tmp_path / "g.hepmc3", 4, seed=5)
    odd = tmp_path / "odd.hepmc3"
    raw = good.read_bytes()
    assert b"\nV -2 0 [" in raw
    odd.write_bytes(raw.replace(b"\nV -2 0 [", b"\nV -2 [", 1))  # a vertex line without status (HepMC 3.0): pyhepmc reads it
    with pytest.raises(TextLayoutError, match="vertex lines not in the fixed layout"):
        ix = scan_hepmc(odd)
        parse_hepmc3(odd.read_bytes()[int(ix.offsets[0]) : int(ix.offsets[4])], 4)
    with caplog.at_level(logging.WARNING, logger="sim.generation.hepmc"):
        auto = _store(tmp_path, [odd], "auto", 4, 2, "odd")
    warned = [r.getMessage() for r in caplog.records]
    assert len(warned) == 1 and "events [0, 2)" in warned[0] and "read with pyhepmc" in warned[0]
    via = _store(tmp_path, [good], "pyhepmc", 4, 2, "good")
    for t in auto:
        assert auto[t].equals(via[t]), t
    with pytest.raises(DataError, match=r"events \[0, 2\): the text reader does not cover vertex lines"):
        _store(tmp_path, [odd], "text", 4, 2, "odd2")


def test_reader_choice_is_checked(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="hepmc reader must be one of auto, text, pyhepmc, got 'fast'"):
        HepMCInput(files=("x.hepmc3",), reader="fast")
    pipe = Pipeline((HepMCInput(files=("x.hepmc3",), batch_size=5, reader="pyhepmc"),), RunConfig(events=10, batch_size=5))
    assert 'reader = "pyhepmc"' in pipe.to_toml() and Pipeline.from_toml(pipe.to_toml()) == pipe
    two = tmp_path / "e.hepmc2"
    with pyhepmc.io.WriterAsciiHepMC2(str(two)) as w:
        w.write_event(_event(np.random.default_rng(1), 0, "all"))
    pipe = Pipeline((HepMCInput(files=(str(two),), batch_size=1, reader="text"),), RunConfig(events=1, batch_size=1))
    with pytest.raises(ConfigError, match="reads HepMC3 only and .* is HepMC2; use reader 'auto' or 'pyhepmc'"):
        build_kernels(pipe)


def _errors_of_every_reader(path: Path, n: int) -> list[str]:
    """The DataError message of reading events [0, n) of ``path`` with the text, auto and pyhepmc readers."""
    ix = scan_hepmc(path)
    errors = []
    for reader in ("text", "auto", "pyhepmc"):
        with pytest.raises(DataError) as err:
            read_segment(ix, 0, n, reader)
        errors.append(str(err.value))
    return errors


def test_broken_event_gives_pyhepmcs_error_in_both_readers(tmp_path: Path) -> None:
    good = _write(tmp_path / "g.hepmc3", 4, seed=6).read_text().splitlines(keepends=True)
    e1 = [i for i, ln in enumerate(good) if ln.startswith("E ")][1]
    f = good[e1].split()
    f[2] = str(int(f[2]) + 1)  # event 1 declares one vertex more than it has: the scan passes, the reader refuses
    good[e1] = " ".join(f) + "\n"
    bad = tmp_path / "bad.hepmc3"
    bad.write_text("".join(good))
    errors = _errors_of_every_reader(bad, 4)
    assert errors[0] == errors[1] == errors[2] and f"event 1: line {e1 + 1}" in errors[0]
    # an event without particles (E 9 0 0): pyhepmc's error in every mode
    empty = bad.read_text().replace(good[e1], "E 9 0 0\nU GEV MM\n" + good[e1].replace(f[2], str(int(f[2]) - 1), 1), 1)
    bad.write_text(empty)
    errors = _errors_of_every_reader(bad, 5)
    assert errors[0] == errors[1] == errors[2] and "event 1:" in errors[0]
