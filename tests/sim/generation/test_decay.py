"""Physics of the generator: conservation, masses, Dalitz flatness, lifetimes."""

from __future__ import annotations

import numpy as np
import pytest
from particle import Particle
from scipy import stats

import mambah
from sim import HeavyHadronSpectrum, generate_tables, load_decay
from sim.generation.decay import C_LIGHT


def _mass(t):
    return np.sqrt(np.maximum(t[..., 3] ** 2 - np.sum(t[..., :3] ** 2, axis=-1), 0))


def test_four_momentum_conserved_at_every_vertex(generated_store):
    # sum of daughters' four-momenta per decay vertex vs the mother's, in SQL
    df = generated_store.query_df(
        """SELECT m.px, m.py, m.pz, m.e, sum(d.px) AS sx, sum(d.py) AS sy, sum(d.pz) AS sz, sum(d.e) AS se,
                  count(*) AS nd, any_value(d.prod_vertex) AS dv, m.decay_vertex AS mv
           FROM mc_particles m JOIN mc_particles d ON d.batch = m.batch AND d.event = m.event AND d.mother = m."index"
           GROUP BY m.batch, m.event, m."index", m.px, m.py, m.pz, m.e, m.decay_vertex"""
    )
    assert len(df) == 2 * 4000
    scale = df.e.to_numpy()
    for a, b in (("px", "sx"), ("py", "sy"), ("pz", "sz"), ("e", "se")):
        assert np.max(np.abs(df[a] - df[b]) / scale) < 1e-6, a
    assert (df.dv == df.mv).all()  # daughters start where the mother ends


def test_vertices_link_consistently(generated_store):
    bad = generated_store.query_df(
        """SELECT count(*) AS n FROM mc_particles p JOIN mc_vertices v
             ON v.batch = p.batch AND v.event = p.event AND v."index" = p.decay_vertex
           WHERE v.mother_particle <> p."index" """
    ).n[0]
    assert bad == 0
    assert generated_store.count("mc_vertices") == 3 * 4000


def test_narrow_intermediate_mass_is_pdg(generated_store):
    t = mambah.match_decay(generated_store, "Lambda_c+ -> p+ K- pi+").to_pandas()
    p4 = sum(t[[f"{a}_px", f"{a}_py", f"{a}_pz", f"{a}_e"]].to_numpy() for a in ("p", "K", "pi"))
    m = _mass(p4)
    np.testing.assert_allclose(m, Particle.from_evtgen_name("Lambda_c+").mass, rtol=1e-7)


def test_wide_resonance_follows_breit_wigner():
    """m(Kπ) of B0 → K*0 γ: after dividing out the two-body phase-space factors
    (Raubold–Lynch weights), the K*0 line shape is the PDG-width Breit–Wigner."""
    model = load_decay("B0 -> (K*0 -> K+ pi-) gamma")
    rest = model.chains[0].generate_rest_frame(40_000, seed=3)
    m = _mass(rest[:, 1])
    kst, B = Particle.from_evtgen_name("K*0"), Particle.from_evtgen_name("B0")
    mK, mpi = Particle.from_pdgid(321).mass, Particle.from_pdgid(211).mass

    def pdk(a, b, c):
        return np.sqrt(np.maximum((a**2 - (b + c) ** 2) * (a**2 - (b - c) ** 2), 0)) / (2 * a)

    w = 1.0 / (pdk(B.mass, m, 0.0) * pdk(m, mK, mpi))
    lo, hi = mK + mpi, B.mass
    m0, g = kst.mass, kst.width
    cdf = lambda x: (np.arctan(2 * (x - m0) / g) - np.arctan(2 * (lo - m0) / g)) / (np.arctan(2 * (hi - m0) / g) - np.arctan(2 * (lo - m0) / g))  # noqa: E731
    # compare weighted empirical CDF with the truncated Breit–Wigner in the core
    edges = m0 + g * np.array([-2, -1, -0.5, 0, 0.5, 1, 2])
    frac = np.array([np.sum(w[m < e]) for e in edges]) / np.sum(w)
    np.testing.assert_allclose(frac, cdf(edges), atol=0.02)
    # and it is really wide: spread of order the width
    assert 0.5 * g < stats.iqr(m) < 2 * g


def test_three_body_dalitz_is_flat():
    model = load_decay("Lambda_c+ -> p+ K- pi+")
    rest = model.chains[0].generate_rest_frame(60_000, seed=5)
    M = Particle.from_evtgen_name("Lambda_c+").mass
    m1, m2, m3 = (Particle.from_pdgid(i).mass for i in (2212, 321, 211))
    m12sq = _mass(rest[:, 1] + rest[:, 2]) ** 2
    m23sq = _mass(rest[:, 2] + rest[:, 3]) ** 2
    # expected density of m12^2 for a flat Dalitz plot: length of the allowed m23^2 range
    lo, hi = (m1 + m2) ** 2, (M - m3) ** 2

    def span(s12):
        m12 = np.sqrt(s12)
        e2 = (s12 - m1**2 + m2**2) / (2 * m12)
        e3 = (M**2 - s12 - m3**2) / (2 * m12)
        p2, p3 = np.sqrt(np.maximum(e2**2 - m2**2, 0)), np.sqrt(np.maximum(e3**2 - m3**2, 0))
        return (e2 + e3) ** 2 - (p2 - p3) ** 2 - ((e2 + e3) ** 2 - (p2 + p3) ** 2)

    edges = np.linspace(lo, hi, 26)
    fine = np.linspace(lo, hi, 20001)
    dens = span(fine)
    cum = np.concatenate([[0], np.cumsum((dens[1:] + dens[:-1]) / 2 * np.diff(fine))])
    expected = np.diff(np.interp(edges, fine, cum)) / cum[-1] * len(m12sq)
    observed, _ = np.histogram(m12sq, edges)
    chi2 = np.sum((observed - expected) ** 2 / expected)
    assert stats.chi2.sf(chi2, len(expected) - 1) > 1e-3, chi2
    # and in 2-D: m23^2 at fixed m12^2 is uniform within its range (KS in one slice)
    sel = (m12sq > np.quantile(m12sq, 0.45)) & (m12sq < np.quantile(m12sq, 0.55))
    s12 = np.median(m12sq[sel])
    m12 = np.sqrt(s12)
    e2 = (s12 - m1**2 + m2**2) / (2 * m12)
    e3 = (M**2 - s12 - m3**2) / (2 * m12)
    p2, p3 = np.sqrt(e2**2 - m2**2), np.sqrt(e3**2 - m3**2)
    a, b = (e2 + e3) ** 2 - (p2 + p3) ** 2, (e2 + e3) ** 2 - (p2 - p3) ** 2
    inside = m23sq[sel][(m23sq[sel] > a + 0.05 * (b - a)) & (m23sq[sel] < b - 0.05 * (b - a))]
    assert stats.kstest(inside, stats.uniform(a + 0.05 * (b - a), 0.9 * (b - a)).cdf).pvalue > 1e-3


def test_decay_time_fit_gives_pdg_lifetime():
    import zfit

    model = load_decay("Lambda_b0 -> (Lambda_c+ -> p+ K- pi+) mu- anti-nu_mu")
    tabs = generate_tables(model, 20_000, np.random.default_rng(11))
    p = tabs["mc_particles"].to_pandas()
    v = tabs["mc_vertices"].to_pandas().set_index(["event", "index"])
    lb = p[p.pid == 5122]
    pv = v.loc[list(zip(lb.event, lb.prod_vertex))][["x", "y", "z"]].to_numpy()
    dv = v.loc[list(zip(lb.event, lb.decay_vertex))][["x", "y", "z"]].to_numpy()
    pmag = np.sqrt(lb.px**2 + lb.py**2 + lb.pz**2).to_numpy()
    t = np.linalg.norm(dv - pv, axis=1) * lb.mass.to_numpy() / pmag / C_LIGHT  # proper time [ns]
    tau_pdg = Particle.from_pdgid(5122).lifetime
    obs = zfit.Space("t", limits=(0.0, 10 * tau_pdg))
    lam = zfit.Parameter("lam_lb", -1.0 / (1.2 * tau_pdg), -10 / tau_pdg, -0.1 / tau_pdg)
    pdf = zfit.pdf.Exponential(lam=lam, obs=obs)
    data = zfit.Data.from_numpy(obs=obs, array=t[t < 10 * tau_pdg])
    result = zfit.minimize.Minuit().minimize(zfit.loss.UnbinnedNLL(model=pdf, data=data))
    result.hesse()
    lam_fit, lam_err = result.params[lam]["value"], result.params[lam]["hesse"]["error"]
    tau_fit, tau_err = -1 / lam_fit, lam_err / lam_fit**2
    assert abs(tau_fit - tau_pdg) < 3 * tau_err, (tau_fit, tau_err, tau_pdg)
    assert tau_err < 0.02 * tau_pdg


def test_gun_pt_spectrum_matches_configured_shape():
    spec = HeavyHadronSpectrum()
    px, py, pz = spec.sample(20_000, 5619.6, np.random.default_rng(2))
    pt = np.hypot(px, py)
    assert stats.kstest(pt, spec.pt_cdf).pvalue > 1e-3
    y = np.arctanh(pz / np.sqrt(px**2 + py**2 + pz**2 + 5619.6**2))
    assert y.min() >= 1.5 and y.max() <= 5.5
    # 14 TeV is harder than 13 TeV
    assert HeavyHadronSpectrum(sqrt_s=14.0).p0 > spec.p0


def test_uniform_spectrum_ks():
    from sim import UniformSpectrum

    spec = UniformSpectrum(variable="pt", range=(1000.0, 5000.0), eta=(2.0, 5.0))
    px, py, pz = spec.sample(20_000, 139.6, np.random.default_rng(3))
    pt = np.hypot(px, py)
    assert stats.kstest(pt, stats.uniform(1000, 4000).cdf).pvalue > 1e-3
    eta = np.arcsinh(pz / pt)
    assert stats.kstest(eta, stats.uniform(2, 3).cdf).pvalue > 1e-3


def test_dec_file_branching_fractions(tmp_path):
    dec = tmp_path / "b.dec"
    dec.write_text(
        "Alias MyJpsi J/psi\nDecay B+\n0.75 MyJpsi K+ PHSP;\n0.25 MyJpsi pi+ PHSP;\nEnddecay\n"
        "Decay MyJpsi\n1.0 mu+ mu- PHSP;\nEnddecay\nEnd\n"
    )
    model = load_decay(dec_file=dec)
    assert len(model.chains) == 2
    np.testing.assert_allclose(sorted(model.probabilities), [0.25, 0.75])
    tabs = generate_tables(model, 8000, np.random.default_rng(1))
    p = tabs["mc_particles"].to_pandas()
    n_k = int((p.pid == 321).sum())
    assert abs(n_k / 8000 - 0.75) < 4 * np.sqrt(0.75 * 0.25 / 8000)
    assert (p.pid == 443).sum() == 8000  # the alias became the real J/psi


@pytest.mark.parametrize(
    ("decay", "error", "match"),
    [
        ("B+ -> K+ pi-", mambah.DecayError, "charge not conserved"),
        ("D0 -> p+ anti-p- pi+ pi-", mambah.DecayError, "kinematically forbidden"),
        ("B+ -> Kplus pi+ pi-", mambah.UnknownParticleError, "did you mean"),
        ("B+ -> (D0 -> K- pi+ pi+", mambah.DecayError, "malformed"),
        ("B+ J/psi K+", mambah.DecayError, "malformed"),
    ],
)
def test_bad_decays(decay, error, match):
    with pytest.raises(error, match=match):
        load_decay(decay)


def test_bad_dec_file(tmp_path):
    dec = tmp_path / "bad.dec"
    dec.write_text("Decay B0\n1.0 K+ pi- PHSP\nEnddecay\nEnd\n")
    with pytest.raises(mambah.DecayError, match="malformed"):
        load_decay(dec_file=dec)
    with pytest.raises(mambah.DecayError, match="does not exist"):
        load_decay(dec_file=tmp_path / "missing.dec")


def test_same_seed_same_decays_whatever_ran_before() -> None:
    """A batch depends only on its seed: running it twice in one process (kernels cached) gives one store."""
    from mambah import EventStore
    from sim import Generator, Pipeline, RunConfig, run

    def once() -> object:
        store = EventStore.memory()
        run(Pipeline((Generator(),), RunConfig(events=400, batch_size=200, seed=9)), store=store, progress=False)
        return store.query_df('SELECT * FROM mc_particles ORDER BY batch, event, "index"')

    first, second = once(), once()
    assert first.equals(second)  # type: ignore[attr-defined]
