"""Decay tables and the unsupported-model rule: one-line errors, opt-in fallbacks with one warning per model."""

from __future__ import annotations

import logging

import numpy as np
import pytest

import mambah
from sim.generation.decay import load_decay
from sim.generation.generator import generate_tables

TWO_DALITZ = (
    "Decay D+\n0.5 K- pi+ pi+ D_DALITZ;\n0.3 K_S0 pi+ pi0 D_DALITZ;\n0.2 K_S0 pi+ PHSP;\nEnddecay\nEnd\n"
)


def _warnings(caplog: pytest.LogCaptureFixture, word: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and word in r.getMessage()]


def _generator_only(tmp_path) -> str:
    """A config with the generator pass alone (the detector passes are not under test here)."""
    from sim.core.pipeline import Pipeline, RunConfig
    from sim.generation.generator import Generator

    cfg = tmp_path / "gen.toml"
    Pipeline((Generator(),), RunConfig(events=200, batch_size=100)).save(cfg)
    return str(cfg)


def test_unsupported_model_is_a_one_line_error_and_nothing_is_written(tmp_path, capsys):
    from mambah.cli import main

    dec = tmp_path / "d.dec"
    dec.write_text(TWO_DALITZ)
    out = tmp_path / "o.duckdb"
    assert main(["run", "--config", _generator_only(tmp_path), "--dec-file", str(dec), "-o", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert "D_DALITZ" in err[0] and "supported: " in err[0] and "SVS" in err[0] and "--unsupported-models" in err[0]
    assert not out.exists()


def test_phase_space_fallback_warns_once_per_model_and_writes(tmp_path, caplog):
    from mambah.cli import main

    dec = tmp_path / "d.dec"
    dec.write_text(TWO_DALITZ)
    out = tmp_path / "o.duckdb"
    with caplog.at_level(logging.WARNING, logger="sim.generation.dectable"):
        rc = main(["run", "--config", _generator_only(tmp_path), "--dec-file", str(dec), "-o", str(out),
                   "--no-progress", "--unsupported-models", "phase-space"])
    assert rc == 0 and out.exists()
    lines = _warnings(caplog, "D_DALITZ")
    assert len(lines) == 1 and "phase space" in lines[0]
    with mambah.EventStore.open(out) as store:
        assert store.count("events") == 200


def test_skip_drops_the_modes_and_renormalises(tmp_path, caplog):
    path = tmp_path / "d.dec"
    path.write_text(TWO_DALITZ)
    with caplog.at_level(logging.WARNING, logger="sim.generation.dectable"):
        model = load_decay(dec_file=path, unsupported_models="skip")
    assert len(_warnings(caplog, "dropped D+ ->")) == 2
    assert len(model.chains) == 1 and model.probabilities[0] == pytest.approx(1.0)
    p = generate_tables(model, 500, np.random.default_rng(1))["mc_particles"].to_pandas()
    assert p[p.mother == 0].groupby("event").pid.apply(lambda s: sorted(s.tolist()) == [211, 310]).all()


def test_a_users_decay_table(tmp_path):
    table = tmp_path / "mytable.dec"
    table.write_text("Decay D*-\n1.0 anti-D0 pi- PHSP;\nEnddecay\nDecay anti-D0\n1.0 K+ pi- PHSP;\nEnddecay\nEnd\n")
    model = load_decay("B0 -> D*- pi+", decay_table=str(table))
    p = generate_tables(model, 300, np.random.default_rng(2))["mc_particles"].to_pandas()
    counts = p.pid.value_counts().to_dict()
    assert counts == {511: 300, -413: 300, 211: 300, -421: 300, -211: 600, 321: 300}
    short = tmp_path / "short.dec"
    short.write_text("Decay D*-\n1.0 anti-D0 pi- PHSP;\nEnddecay\nEnd\n")
    with pytest.raises(mambah.DecayError, match="anti-D0 is unstable but the decay table .* has no decay for it"):
        load_decay("B0 -> D*- pi+", decay_table=str(short))
    with pytest.raises(mambah.DecayError, match="neither a shipped table"):
        load_decay("B0 -> D*- pi+", decay_table=str(tmp_path / "missing.dec"))


def test_table_policy_error_refuses_an_unsupported_table_model():
    with pytest.raises(mambah.DecayError, match=r"model \S+ .*decay table DECAY_LHCB.DEC.*--table-unsupported-models"):
        load_decay("D0 -> K- pi+ pi0", table_unsupported_models="error")


def test_model_weights_reach_the_engine_svs_vll(tmp_path):
    """B+ -> J/psi(-> mu+ mu-) K+ with SVS and VLL: the J/psi is longitudinal, muon helicity angle ∝ sin²θ."""
    dec = tmp_path / "b.dec"
    dec.write_text("Decay B+\n1.0 J/psi K+ SVS;\nEnddecay\nDecay J/psi\n1.0 mu+ mu- VLL;\nEnddecay\nEnd\n")
    model = load_decay(dec_file=dec)
    assert model.chains[0].weighted
    rest = model.chains[0].generate_rest_frame(20_000, seed=4)  # B+, J/psi, K+, mu+, mu-
    from mambah.kinematics import boost

    jpsi, mu = rest[:, 1], rest[:, 3]
    inv = jpsi.copy()
    inv[:, :3] *= -1
    mu_j = boost(mu, inv)
    cos_t = np.sum(mu_j[:, :3] * jpsi[:, :3], axis=1) / (np.linalg.norm(mu_j[:, :3], axis=1) * np.linalg.norm(jpsi[:, :3], axis=1))
    # sin²θ: <cos²θ> = 1/5 (flat would be 1/3), var(cos²θ) = 1/7 - 1/25
    m2 = float(np.mean(cos_t**2))
    assert abs(m2 - 0.2) < 4 * np.sqrt((1 / 7 - 1 / 25) / len(cos_t)), m2
