"""The reference detector (and, where it already agrees, the shipped fast models) against the
published LHCb figures of sim/reference/published.py, measured by `mambah validate published`.

The figures that do not pass yet are listed, with their measured numbers, in docs/detector.md
("Published performance"); a test below keeps that list complete.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from mambah.errors import ConfigError
from sim.reference.published import FIGURES, READ, REMEMBERED, PublishedFigure, figure, figures
from sim.validation.published import PublishedReport, validate_published

DOCS = Path(__file__).resolve().parents[3] / "docs" / "detector.md"

#: Figures the reference detector reproduces within tolerance (fixed seed, sizes below).
REFERENCE_PASSES = ("trk_eff_long", "dp_over_p_low", "dp_over_p_200", "ip_x_const", "ip_x_slope",
                    "pv_sigma_x_25", "pv_sigma_z_25",
                    "k_eff_dllk0", "pi_misid_dllk0", "k_eff_dllk5", "rich_p_range_min",
                    "ismuon_eff", "ismuon_misid_pi", "ismuon_misid_k", "muonll_misid_had", "ghostprob_rejection")
# pi_misid_dllk5: reference 0.034 with 20 000 pions (`mambah validate published`), 0.042 with the
# 5 000 here (limit 0.04): at the edge of its tolerance, so held for the fast chain only.
#: Figures the fast chain reproduces within tolerance.
FAST_PASSES = ("trk_eff_long", "dp_over_p_low", "dp_over_p_200", "ip_x_const", "ip_x_slope",
               "k_eff_dllk0", "pi_misid_dllk0", "k_eff_dllk5", "pi_misid_dllk5", "ismuon_misid_k", "muonll_misid_had",
               "rich_p_range_min", "ismuon_eff", "ismuon_misid_pi", "ghostprob_rejection")


@pytest.fixture(scope="module")
def report() -> PublishedReport:
    # the tracking and PV sizes of the defaults: the IP_x fit's constant needs them (±1 µm at 20 000)
    return validate_published(events=200_000, n_pid=5_000, n_pv=4_000, seed=2031)


def test_table_is_complete_and_cited() -> None:
    assert len(figures()) == len(FIGURES)
    for f in FIGURES:
        assert "arXiv:" in f.source or "LHCb-PUB-" in f.source, f.key  # a CDS-only note has no arXiv number
        assert f.provenance in (READ, REMEMBERED), f.key
        assert f.where, f.key
    with pytest.raises(ConfigError, match="unknown published figure 'nope'; known: trk_eff_long"):
        figure("nope")


def test_tolerance_semantics() -> None:
    eff = figure("trk_eff_long")
    assert eff.passes(0.96 + 0.029) and not eff.passes(0.96 - 0.031)
    res = figure("dp_over_p_200")  # 15 % relative
    assert res.passes(0.0114) and not res.passes(0.0116) and not res.passes(0.0084)
    upper = figure("muonll_misid_had")
    assert upper.passes(0.001) and upper.passes(0.006) and not upper.passes(0.0061)
    assert figure("ghost_rate_long").passes(0.1) is None  # no published number: never compared
    assert eff.passes(None) is None and eff.passes(float("nan")) is None
    with pytest.raises(ConfigError, match="provenance"):
        PublishedFigure("x", "q", "s", 1.0, "", 0.1, False, "arXiv:0", "w", "guessed")


@pytest.mark.parametrize("key", REFERENCE_PASSES)
def test_reference_detector_reproduces(report: PublishedReport, key: str) -> None:
    row = report.row(key)
    assert row.reference_pass, (key, row.figure.value, row.reference)


@pytest.mark.parametrize("key", FAST_PASSES)
def test_fast_chain_reproduces(report: PublishedReport, key: str) -> None:
    row = report.row(key)
    assert row.fast_pass, (key, row.figure.value, row.fast)


def test_ghost_rate_fast_follows_reference_and_rises_with_occupancy(report: PublishedReport) -> None:
    """No published Long-track ghost rate (the row stays uncompared): the fast chain is held to the
    reference's (a model choice, docs/detector.md "Ghost tracks"), overall and per nTracks bin."""
    row = report.row("ghost_rate_long")
    assert row.figure.value is None and row.reference is not None and row.fast is not None
    assert row.reference == pytest.approx(0.10, abs=0.01)
    assert row.fast == pytest.approx(row.reference, abs=0.01)
    curve = report.curves["ghost_fraction_vs_ntracks"]
    ref, fast = curve["reference"], curve["fast"]
    assert all(r is not None and f is not None for r, f in zip(ref, fast, strict=True))
    assert all(b > a for a, b in zip(ref, ref[1:])) and ref[-1] > 5 * ref[0]  # rises with the occupancy
    for r, f in zip(ref, fast, strict=True):
        assert f == pytest.approx(r, abs=0.015)


def test_failing_figures_are_documented(report: PublishedReport) -> None:
    """Every figure missed (or without a number) appears by key in docs/detector.md."""
    text = DOCS.read_text()
    section = text[text.index("## Published performance"):]
    section = section[: (m.start() + 1) if (m := re.search(r"\n## ", section[3:])) else len(section)]
    missed = {r.figure.key for r in report.rows
              if r.figure.value is None or r.reference_pass is False or r.fast_pass is False}
    undocumented = sorted(k for k in missed if f"`{k}`" not in section)
    assert not undocumented, undocumented


def test_registered_as_a_validate_kind() -> None:
    from sim.cli.validate import _families
    from sim.core.registry import validators

    assert "published" in validators()
    assert "published" in _families()
