"""Ficino's default decay for stores made by the full-event generators (issue #17)."""

from __future__ import annotations

import pytest

from ficino.candidates import default_decay
from mambah import EventStore
from mambah.errors import ExportError


@pytest.mark.parametrize(
    ("pass_toml", "expected"),
    [
        ('kind = "pythia"\nname = "pythia"\npreset = "bbbar"\ndecay = "[B+ -> (J/psi -> mu+ mu-) K+]cc"', "[B+ -> (J/psi -> mu+ mu-) K+]cc"),
        ('kind = "hepmc"\nname = "hepmc"\nfiles = ["a.hepmc3"]\nsignal = "B0 -> K+ pi-"', "B0 -> K+ pi-"),
    ],
)
def test_signal_of_the_full_event_generator(pass_toml: str, expected: str) -> None:
    store = EventStore.memory()
    store.set_metadata("pipeline", f"[[passes]]\n{pass_toml}\n")
    assert default_decay(store) == expected


def test_full_events_without_signal_need_a_decay() -> None:
    store = EventStore.memory()
    store.set_metadata("pipeline", '[[passes]]\nkind = "pythia"\nname = "pythia"\npreset = "minbias"\n')
    with pytest.raises(ExportError, match="holds pythia events without a signal decay; give the decay to export"):
        default_decay(store)
