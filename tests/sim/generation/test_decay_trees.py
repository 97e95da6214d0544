"""Complete decay trees: table completions, long-lived decays in flight, CC, names, spectrum, determinism."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
from particle import Particle

import mambah
from sim.generation.decay import C_LIGHT, load_decay
from sim.generation.dectable import table_path
from sim.generation.generator import Generator, generate_tables, spectrum_for


def _tables(decay: str, n: int, seed: int, **kw: object) -> tuple[pd.DataFrame, pd.DataFrame]:
    model = load_decay(decay, **kw)  # type: ignore[arg-type]
    tabs = generate_tables(model, n, np.random.default_rng(seed))
    return tabs["mc_particles"].to_pandas(), tabs["mc_vertices"].to_pandas()


def _row(p: pd.DataFrame, event: np.ndarray, index: np.ndarray) -> np.ndarray:
    """Row numbers of (event, index) pairs in a table sorted by (event, index) with indices 0..n-1 per event."""
    start = np.searchsorted(p.event.to_numpy(), np.arange(p.event.max() + 1))
    return start[np.asarray(event)] + np.asarray(index)


def _check_tree(p: pd.DataFrame, v: pd.DataFrame) -> None:
    """Store layout and four-momentum conservation at every vertex (independent of the engine)."""
    ev, idx = p.event.to_numpy(), p["index"].to_numpy()
    assert (np.diff(ev) >= 0).all() and (idx == np.arange(len(p)) - np.searchsorted(ev, ev)).all()
    mother, first, last = p.mother.to_numpy(), p.first_daughter.to_numpy(), p.last_daughter.to_numpy()
    kid = np.flatnonzero(mother >= 0)
    mrow = _row(p, ev[kid], mother[kid])
    # daughters contiguous, after their mother (breadth-first), pointing back at it
    assert ((idx[kid] >= first[mrow]) & (idx[kid] <= last[mrow]) & (idx[kid] > mother[kid])).all()
    assert (p.prod_vertex.to_numpy()[kid] == p.decay_vertex.to_numpy()[mrow]).all()
    dec = np.flatnonzero(first >= 0)
    n_kids = np.bincount(mrow, minlength=len(p))
    assert (n_kids[dec] == last[dec] - first[dec] + 1).all() and (n_kids[first < 0] == 0).all()
    # four-momentum: Σ daughters = mother, at every vertex
    p4 = p[["px", "py", "pz", "e"]].to_numpy()
    sums = np.zeros_like(p4)
    np.add.at(sums, mrow, p4[kid])
    assert np.max(np.abs(sums[dec] - p4[dec]) / p4[dec, 3:4]) < 1e-8
    # breadth-first: first_daughter grows with the mother's index within an event
    same = ev[dec][1:] == ev[dec][:-1]
    assert (np.diff(first[dec])[same] > 0).all()
    # vertex table: one decay vertex per decaying particle, linking back
    assert len(v) == len(dec) + p.event.nunique()
    vrow = _row(v, ev[dec], p.decay_vertex.to_numpy()[dec])
    assert (v.mother_particle.to_numpy()[vrow] == idx[dec]).all()


def test_table_completes_b0_to_dstar_pi_with_table_branching_fractions():
    """B0 -> D*- pi+: the D*- is decayed by DECAY_LHCB.DEC, D*- -> anti-D0 pi- -> (K+ pi-) pi- at its BFs."""
    # the table's own numbers, read with a regex (CC-symmetric: the D*+ and D0 blocks)
    text = table_path("DECAY_LHCB.DEC").read_text()

    def block(name: str) -> list[tuple[float, tuple[str, ...]]]:
        body = re.search(rf"^Decay {re.escape(name)}\s*$(.*?)^Enddecay", text, flags=re.M | re.S)
        assert body is not None
        out = []
        for line in body.group(1).splitlines():
            words = line.split("#")[0].split()
            if words and re.fullmatch(r"[0-9.eE+-]+", words[0]):
                fs = []
                for w in words[1:]:  # daughters until the model name (upper case, no charge suffix)
                    if not (re.search(r"[a-z]", w) or re.search(r"[+\-0~]$", w)):
                        break
                    fs.append(w)
                out.append((float(words[0]), tuple(fs)))
        return out

    dstar, d0 = block("D*+"), block("D0")
    bf_dst = sum(b for b, fs in dstar if sorted(fs) == ["D0", "pi+"]) / sum(b for b, _ in dstar)
    bf_kpi = sum(b for b, fs in d0 if sorted(fs) == ["K-", "pi+"]) / sum(b for b, _ in d0)
    assert 0.6 < bf_dst < 0.75 and 0.03 < bf_kpi < 0.05
    n = 6000
    p, v = _tables("B0 -> D*- pi+", n, 7)
    _check_tree(p, v)
    assert (p[p.pid == -413].first_daughter >= 0).all()  # never left undecayed
    # the detector sees only stable particles at the end of every branch
    leaves = p[p.first_daughter < 0]
    assert set(np.abs(leaves.pid)) <= {11, 13, 211, 321, 2212, 2112, 22, 12, 14, 16, 130}
    pid = p.pid.to_numpy()

    def kids(sel: pd.DataFrame) -> list[tuple[int, ...]]:
        f = _row(p, sel.event, sel.first_daughter)
        n_d = (sel.last_daughter - sel.first_daughter + 1).to_numpy()
        return [tuple(sorted(pid[a : a + k])) for a, k in zip(f, n_d, strict=True)]

    n_d0pi = sum(k == (-421, -211) for k in kids(p[p.pid == -413]))
    assert abs(n_d0pi / n - bf_dst) < 4 * np.sqrt(bf_dst * (1 - bf_dst) / n), (n_d0pi / n, bf_dst)
    n_kpi = sum(k == (-211, 321) for k in kids(p[p.pid == -421]))
    expected = n * bf_dst * bf_kpi
    assert abs(n_kpi - expected) < 4 * np.sqrt(expected) + 2, (n_kpi, expected)


def test_kshort_flies_with_pdg_lifetime():
    """K_S0 proper decay length, unbinned ML fit of an exponential, = PDG cτ; fast ones fly metres."""
    p, v = _tables("B0 -> (J/psi -> mu+ mu-) K_S0", 20_000, 11)
    ks = p[p.pid == 310]
    assert len(ks) == 20_000 and (ks.first_daughter >= 0).all()
    vxyz = v[["x", "y", "z"]].to_numpy()
    prod = vxyz[_row(v, ks.event, ks.prod_vertex)]
    dec = vxyz[_row(v, ks.event, ks.decay_vertex)]
    pmag = np.sqrt(ks.px**2 + ks.py**2 + ks.pz**2).to_numpy()
    ct = np.linalg.norm(dec - prod, axis=1) * ks.mass.to_numpy() / pmag  # rest-frame decay length [mm]
    ctau_pdg = Particle.from_pdgid(310).lifetime * C_LIGHT
    # unbinned ML for an exponential: the estimator is the mean, its error mean/sqrt(n)
    fit, err = ct.mean(), ct.mean() / np.sqrt(len(ct))
    assert abs(fit - ctau_pdg) < 3 * err, (fit, err, ctau_pdg)
    assert err < 0.01 * ctau_pdg
    assert (np.abs(dec[:, 2] - prod[:, 2]) > 1000.0).mean() > 0.05  # metres downstream when fast
    kids = p[(p.mother >= 0)].merge(ks[["event", "index"]], left_on=["event", "mother"], right_on=["event", "index"])
    assert set(np.abs(kids.pid)) >= {211, 111}


def test_pi0_decays_to_two_photons_at_its_origin():
    p, v = _tables("D0 -> K- pi+ pi0", 5000, 3)
    _check_tree(p, v)
    pi0 = p[p.pid == 111]
    assert len(pi0) == 5000 and (pi0.first_daughter >= 0).all()
    gg = pi0[pi0.last_daughter - pi0.first_daughter == 1]
    assert 0.97 < len(gg) / len(pi0) <= 1.0  # PDG: 98.8 % γγ, 1.2 % Dalitz e+e−γ
    g1 = p.iloc[_row(p, gg.event, gg.first_daughter)]
    g2 = p.iloc[_row(p, gg.event, gg.last_daughter)]
    both = g1[["px", "py", "pz", "e"]].to_numpy() + g2[["px", "py", "pz", "e"]].to_numpy()
    mgg = np.sqrt(np.maximum(both[:, 3] ** 2 - np.sum(both[:, :3] ** 2, axis=1), 0))
    np.testing.assert_allclose(mgg, Particle.from_pdgid(111).mass, rtol=1e-6)
    assert ((g1.pid.to_numpy() == 22) & (g2.pid.to_numpy() == 22)).mean() > 0.999
    vxyz = v[["x", "y", "z"]].to_numpy()
    d = vxyz[_row(v, pi0.event, pi0.decay_vertex)]
    o = vxyz[_row(v, pi0.event, pi0.prod_vertex)]
    # at its origin: proper decay length ~ exponential with the PDG cτ = 25 nm
    pmag = np.sqrt(pi0.px**2 + pi0.py**2 + pi0.pz**2).to_numpy()
    ct = np.linalg.norm(d - o, axis=1) * pi0.mass.to_numpy() / pmag
    ctau = Particle.from_pdgid(111).lifetime * C_LIGHT
    assert abs(ct.mean() - ctau) < 4 * ctau / np.sqrt(len(ct)) and ctau < 3e-5


def test_user_written_decays_of_long_lived_particles_win():
    p, _ = _tables("Lambda_b0 -> (J/psi -> mu+ mu-) (Lambda0 -> p+ pi-)", 3000, 5, stable=("Lambda0", "pi+", "p+", "mu-"))
    lam = p[p.pid == 3122]
    assert (lam.last_daughter - lam.first_daughter == 1).all()
    assert set(p.pid.to_numpy()[_row(p, lam.event, lam.first_daughter)]) == {2212}
    # the same particle left undecayed is decayed by the table, unless it is listed as stable
    p2, _ = _tables("Lambda_b0 -> (J/psi -> mu+ mu-) Lambda0", 2000, 5)
    assert (p2[p2.pid == 3122].first_daughter >= 0).all()
    p3, _ = _tables("Lambda_b0 -> (J/psi -> mu+ mu-) Lambda0", 200, 5, stable=("Lambda0", "pi+", "p+", "mu-"))
    assert (p3[p3.pid == 3122].first_daughter == -1).all()


def test_charge_conjugation_fraction_and_consistency():
    n = 100_000
    model = load_decay("[B+ -> (J/psi -> mu+ mu-) K+]cc")
    tabs = generate_tables(model, n, np.random.default_rng(13), cc_fraction=0.3)
    p = tabs["mc_particles"].to_pandas()
    heads = p[p.mother == -1]
    frac = float((heads.pid == -521).mean())
    assert abs(frac - 0.3) < 0.01, frac
    assert set(heads.pid) == {521, -521}
    # every event's kaon carries the sign of its B; charges match PDG signs and sum to the head's
    kaon = p[np.abs(p.pid) == 321].set_index("event").pid
    b = heads.set_index("event").pid
    assert (np.sign(kaon.reindex(b.index)) == np.sign(b)).all()
    assert (p.charge == np.sign(p.pid) * np.isin(np.abs(p.pid), [521, 321]) - np.sign(p.pid) * (np.abs(p.pid) == 13)).all()
    final = p[p.first_daughter < 0].groupby("event").charge.sum()
    assert (final.reindex(b.index).to_numpy() == np.sign(b.to_numpy())).all()
    # no CC asked: only the particle
    one = generate_tables(load_decay("B+ -> (J/psi -> mu+ mu-) K+"), 2000, np.random.default_rng(1))["mc_particles"].to_pandas()
    assert set(one[one.mother == -1].pid) == {521}


def test_cdecay_in_a_dec_file_gives_both_states(tmp_path):
    dec = tmp_path / "b.dec"
    dec.write_text("Decay B+\n1.0 J/psi K+ PHSP;\nEnddecay\nCDecay B-\nDecay J/psi\n1.0 mu+ mu- PHSP;\nEnddecay\nEnd\n")
    model = load_decay(dec_file=dec)
    assert model.has_cc
    p = generate_tables(model, 20_000, np.random.default_rng(2))["mc_particles"].to_pandas()
    frac = float((p[p.mother == -1].pid == -521).mean())
    assert abs(frac - 0.5) < 4 * np.sqrt(0.25 / 20_000)


def test_wide_resonances_in_a_decay_of_issue_20():
    """D0 -> (K*(892)~0 -> K- pi+) (rho(770)0 -> pi+ pi-): masses drawn jointly inside the allowed region."""
    p, v = _tables("D0 -> (K*(892)~0 -> K- pi+) (rho(770)0 -> pi+ pi-)", 20_000, 9)
    _check_tree(p, v)
    kst = p[p.pid == -313].set_index("event").mass
    rho = p[p.pid == 113].set_index("event").mass
    assert (kst + rho < Particle.from_pdgid(421).mass).all()
    assert (kst > 493.677 + 139.57).all() and (rho > 2 * 139.57).all()
    assert kst.std() > 20.0 and rho.std() > 50.0  # really Breit–Wigner, not fixed


def test_lhcb_names_and_suggestions():
    model = load_decay("Lb0 -> (Lc+ -> p+ K- pi+) mu- nu_mu~")
    assert [nd.pid for nd in model.chains[0].nodes] == [5122, 4122, 13, -14, 2212, -321, 211]
    assert load_decay("B0 -> (J/psi -> mu+ mu-) (KS0 -> pi+ pi-)").chains[0].nodes[2].pid == 310
    assert load_decay("B0 -> (J/psi -> mu+ mu-) (K0S -> pi+ pi-)").chains[0].nodes[2].name == "K_S0"
    assert load_decay("B0 -> (J/psi -> mu+ mu-) (K(S)0 -> pi+ pi-)").chains[0].nodes[2].pid == 310
    with pytest.raises(mambah.UnknownParticleError, match="did you mean 'Lc\\+'"):
        load_decay("Lb0 -> (Lcplus -> p+ K- pi+) mu- nu_mu~")


def test_spectrum_follows_the_head():
    assert spectrum_for(5122).flavour == "b" and spectrum_for(413).flavour == "c" and spectrum_for(443).flavour == "c"
    gen = Generator(decay="D*+ -> (D0 -> K- pi+) pi+")
    assert gen.resolved_spectrum(gen.load()).flavour == "c"
    assert Generator(spectrum="b").spectrum.flavour == "b"
    with pytest.raises(mambah.ConfigError, match="neither a b nor a c hadron"):
        spectrum_for(310)
    with pytest.raises(mambah.ConfigError, match="spectrum"):
        Generator(spectrum="charm")


def test_same_seed_same_tables():
    model = load_decay("B0 -> (J/psi -> mu+ mu-) K*0")
    a = generate_tables(model, 2000, np.random.default_rng(21))
    b = generate_tables(load_decay("B0 -> (J/psi -> mu+ mu-) K*0"), 2000, np.random.default_rng(21))
    assert (a["mc_particles"]["pid"].to_numpy() == 313).sum() == 2000
    for name in a:
        assert a[name].equals(b[name]), name


def test_photos_lines_radiate_and_conserve_four_momentum(tmp_path):
    """PHOTOS on J/psi -> mu+ mu-: photons appended to the J/psi's daughters, every vertex still balanced."""
    from sim.generation.photos import hardest_photon_fraction

    dec = tmp_path / "b.dec"
    dec.write_text("Decay B+\n1.0 J/psi K+ SVS;\nEnddecay\nDecay J/psi\n1.0 mu+ mu- PHOTOS VLL;\nEnddecay\nEnd\n")
    n = 20_000
    tabs = generate_tables(load_decay(dec_file=dec), n, np.random.default_rng(17))
    p, v = tabs["mc_particles"].to_pandas(), tabs["mc_vertices"].to_pandas()
    _check_tree(p, v)
    gam = p[p.pid == 22]
    assert len(gam) > 0 and (gam.first_daughter == -1).all()
    assert (p.pid.to_numpy()[_row(p, gam.event, gam.mother)] == 443).all()  # radiated at the J/psi vertex
    # the muons' masses are kept, and the photon rate follows the approximation's analytic value
    mu = p[np.abs(p.pid) == 13]
    np.testing.assert_allclose(mu.mass, Particle.from_pdgid(13).mass, rtol=1e-6)
    m_psi, m_mu = Particle.from_pdgid(443).mass, Particle.from_pdgid(13).mass
    beta = np.sqrt(1 - (2 * m_mu / m_psi) ** 2)
    k_max = (m_psi**2 - 4 * m_mu**2) / (2 * m_psi) * 0.999  # ≈ endpoint for an emitter of the back-to-back pair
    expected = 2 * float(hardest_photon_fraction(np.array([beta]), np.array([k_max]), 1.0)[0])
    got = len(gam) / n
    assert 0.7 * expected < got < 1.3 * expected, (got, expected)


def test_fsr_with_a_single_neutrino_still_balances(tmp_path, caplog):
    """tau+ -> pi+ anti-nu_tau with PHOTOS: the pi+ radiates (the lone neutrino takes the exact recoil) and
    every vertex conserves four-momentum; the engine's guard (no FSR where add_fsr would not balance) never fires."""
    dec = tmp_path / "t.dec"
    dec.write_text("Decay B+\n1.0 tau+ nu_tau PHSP;\nEnddecay\nDecay tau+\n1.0 pi+ anti-nu_tau PHOTOS PHSP;\nEnddecay\nEnd\n")
    with caplog.at_level("WARNING"):
        tabs = generate_tables(load_decay(dec_file=dec), 5000, np.random.default_rng(23))
    assert not [r for r in caplog.records if "did not conserve four-momentum" in r.getMessage()]
    parts = tabs["mc_particles"].to_pandas()
    _check_tree(parts, tabs["mc_vertices"].to_pandas())
    taus = parts[parts.pid == -15]
    gammas = parts[parts.pid == 22].merge(taus[["event", "index"]], left_on=["event", "mother"], right_on=["event", "index"])
    assert 0.03 < len(gammas) / len(taus) < 0.08  # photons above 1 MeV off the pi+ in about 5 % of the decays


def test_run_cli_generator_flags_reach_the_config(tmp_path):
    import tomllib

    from mambah.cli import main

    cfg = tmp_path / "c.toml"
    assert main(["run", "--decay", "[D*+ -> (D0 -> K- pi+) pi+]cc", "--spectrum", "c", "--cc-fraction", "0.25",
                 "--unsupported-models", "skip", "--table-unsupported-models", "error", "--decay-table", "DECAY_BELLE2.DEC",
                 "--save-config", str(cfg)]) == 0
    gen = next(p for p in tomllib.loads(cfg.read_text())["passes"] if p["kind"] == "generator")
    assert gen["spectrum"]["kind"] == "heavy-hadron" and gen["spectrum"]["flavour"] == "c"
    assert (gen["cc_fraction"], gen["unsupported_models"], gen["table_unsupported_models"], gen["decay_table"]) == (
        0.25, "skip", "error", "DECAY_BELLE2.DEC",
    )
    auto = tmp_path / "a.toml"
    assert main(["run", "--decay", "D*+ -> (D0 -> K- pi+) pi+", "--save-config", str(auto)]) == 0
    gen = next(p for p in tomllib.loads(auto.read_text())["passes"] if p["kind"] == "generator")
    assert gen["spectrum"] == "auto" and "stable" in gen and "width_tolerance" in gen
    assert main(["run", "--decay", "D0 -> K- pi+", "--cc-fraction", "1.5", "--save-config", str(auto)]) == 2
