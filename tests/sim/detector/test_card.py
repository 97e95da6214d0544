"""The detector card: presets, checks, and models refused when trained on another card."""

from __future__ import annotations

import pytest

from mambah.errors import ConfigError, ModelError
from sim.detector.card import CARDS, DEFAULT_CARD, DetectorCard, card, check_model_card


def test_presets_and_unknown_card() -> None:
    assert set(CARDS) == {"lhcb-run2", "lhcb-run3"}
    assert card().name == DEFAULT_CARD
    assert card("lhcb-run3").pv_sigma_xy_25 < card("lhcb-run2").pv_sigma_xy_25
    with pytest.raises(ConfigError, match="unknown detector card 'lhcb-run9'; presets: lhcb-run2, lhcb-run3"):
        card("lhcb-run9")


@pytest.mark.parametrize("bad", [{"eta_min": 5.0, "eta_max": 2.0}, {"rich1_theta": (300.0, 25.0)},
                                 {"p_min_rich": float("nan")}, {"is_muon_p_edges": (6000.0, 3000.0, 10000.0)}])
def test_bad_numbers_are_refused(bad: dict) -> None:
    with pytest.raises(ConfigError, match="detector card"):
        DetectorCard(**bad)


def test_digest_follows_every_number() -> None:
    assert card().digest != DetectorCard(tt_z=2486.0).digest
    assert card().digest == DetectorCard().digest


def test_model_of_another_card_is_refused() -> None:
    check_model_card({}, "lhcb-run2", what="m")  # shipped models record none: lhcb-run2
    check_model_card({"detector_card": "lhcb-run3"}, "lhcb-run3", what="m")
    with pytest.raises(ModelError, match="trained on detector card 'lhcb-run2', but the pass uses 'lhcb-run3'"):
        check_model_card({}, "lhcb-run3", what="pass 'acceptance': the acceptance model")


def test_passes_take_their_defaults_from_the_card() -> None:
    from sim.detector.acceptance import Acceptance
    from sim.detector.occupancy import Occupancy

    acc = Acceptance()
    assert (acc.eta_min, acc.eta_max) == (card().eta_min, card().eta_max)
    occ3 = Occupancy(card="lhcb-run3")
    assert occ3.pv_sigma_xy_25 == card("lhcb-run3").pv_sigma_xy_25
    with pytest.raises(ModelError, match="lhcb-run3"):
        occ3.build()  # the shipped occupancy model was trained on lhcb-run2
    with pytest.raises(ConfigError, match="unknown detector card"):
        Acceptance(card="nope")
