"""A DecFile with two Decay blocks for one particle: refused, never the first block kept without a word."""

from __future__ import annotations

from pathlib import Path

import pytest

from mambah.cli import main
from mambah.errors import DecayError
from sim.generation.dectable import read_dec_file, read_dec_text

TWICE = "Decay B+\n1.0 K+ pi+ pi- PHSP;\nEnddecay\nDecay B+\n1.0 K+ K+ K- PHSP;\nEnddecay\nEnd\n"


def test_two_blocks_for_one_particle(tmp_path: Path) -> None:
    # before: decaylanguage's DuplicateDecayWarning was silenced and B+ -> K+ K+ K- dropped
    with pytest.raises(DecayError, match=r"has more than one Decay block for B\+; .*keep one block per particle"):
        read_dec_text(TWICE, "twice.dec")
    path = tmp_path / "twice.dec"
    path.write_text(TWICE)
    with pytest.raises(DecayError, match="more than one Decay block for B"):
        read_dec_file(path)


def test_the_cli_refuses_it_in_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "twice.dec").write_text(TWICE)
    assert main(["run", "--events", "10", "--dec-file", "twice.dec", "-o", "s.duckdb", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "more than one Decay block for B+" in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["twice.dec"]


def test_one_block_each_still_reads() -> None:
    blocks = read_dec_text(TWICE.replace("Decay B+\n1.0 K+ K+ K-", "Decay B0\n1.0 K+ K-"), "ok.dec")
    assert sorted(blocks.mothers()) == ["B+", "B0"]
