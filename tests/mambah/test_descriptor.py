"""mambah.descriptor: default_aliases takes a parsed decay or a descriptor string."""

from __future__ import annotations

import pytest

import mambah

LB = "Lambda_b0 -> (Lambda_c+ -> p+ K- pi+) mu- anti-nu_mu"


def test_default_aliases_of_a_descriptor_string() -> None:
    assert mambah.default_aliases(LB) == ["Lb", "Lc", "mu", "nu", "p", "K", "pi"]
    assert mambah.default_aliases("B+ -> (J/psi -> mu+ mu-) K+") == mambah.default_aliases(
        mambah.parse_descriptor("B+ -> (J/psi -> mu+ mu-) K+")[0]
    ) == ["B", "Jpsi", "K", "mu1", "mu2"]
    assert mambah.default_aliases(f"[{LB}]CC") == mambah.default_aliases(LB)


def test_default_aliases_of_a_bad_string_names_it() -> None:
    with pytest.raises(mambah.UnknownParticleError, match="'Kplus'.*did you mean 'K\\+'"):
        mambah.default_aliases("B+ -> Kplus pi0")
