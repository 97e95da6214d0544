"""The pythia pass: reproducible full events, Mambah's signal decay in them, pile-up."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("pythia8mc")

import mambah
from mambah.errors import ConfigError
from sim.core.pipeline import Pipeline, RunConfig, build_kernels
from sim.core.runner import run
from sim.generation.pythia import NU_RUN2, Pythia

SIGNAL = "[B+ -> (J/psi -> mu+ mu-) K+]cc"
TABLES = ("events", "mc_particles", "mc_vertices")


def _store(tmp: Path, name: str, seed: int, events: int = 20, **kw: object) -> Path:
    cfg = {"preset": "bbbar", "decay": SIGNAL, "nu": NU_RUN2, **kw}
    path = tmp / f"{name}.duckdb"
    run(Pipeline((Pythia(**cfg),), RunConfig(events=events, batch_size=10, seed=seed)), path, progress=False)  # type: ignore[arg-type]
    return path


def _dump(path: Path) -> dict[str, object]:
    with mambah.EventStore.open(path, read_only=True) as s:
        return {t: s.query_df(f'SELECT * FROM {t} ORDER BY batch, event, "index"' if t != "events" else
                              "SELECT * FROM events ORDER BY batch, event") for t in TABLES}


@pytest.fixture(scope="module")
def signal_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _store(tmp_path_factory.mktemp("py"), "a", seed=5, events=100)


def test_same_seed_same_store_other_seed_differs(tmp_path: Path) -> None:
    a, b, c = (_dump(_store(tmp_path, n, s)) for n, s in (("a", 11), ("b", 11), ("c", 12)))
    for t in TABLES:
        assert a[t].equals(b[t]), t  # type: ignore[attr-defined]
    assert not a["mc_particles"].equals(c["mc_particles"])  # type: ignore[attr-defined]


def test_resume_equals_an_uninterrupted_run(tmp_path: Path) -> None:
    full = _dump(_store(tmp_path, "full", seed=21, events=30))
    pipe = Pipeline((Pythia(preset="bbbar", decay=SIGNAL),), RunConfig(events=30, batch_size=10, seed=21))
    out = tmp_path / "part.duckdb"

    class Stop(Exception):
        pass

    def stop(store: object, batch: object) -> None:
        raise Stop

    with pytest.raises(Stop):
        run(pipe, out, progress=False, on_batch=stop)
    with mambah.EventStore.open(out, read_only=True) as s:
        assert s.batches() == [0]
    run(pipe, out, progress=False, resume=True)
    part = _dump(out)
    for t in TABLES:
        assert full[t].equals(part[t]), t  # type: ignore[attr-defined]


def test_four_momentum_conserved_at_mambah_vertices(signal_store: Path) -> None:
    with mambah.EventStore.open(signal_store, read_only=True) as s:
        d = s.query_df("""
            SELECT m.batch, m.event, m."index", m.px, m.py, m.pz, m.e,
                   sum(d.px) AS dpx, sum(d.py) AS dpy, sum(d.pz) AS dpz, sum(d.e) AS de, count(*) AS nd
            FROM mc_particles m JOIN mc_particles d
              ON d.batch = m.batch AND d.event = m.event AND d.mother = m."index"
            WHERE m.is_signal AND m.decay_vertex >= 0
            GROUP BY ALL""")
    assert len(d) == 2 * 100  # B and J/psi of every event
    for a, b in (("px", "dpx"), ("py", "dpy"), ("pz", "dpz"), ("e", "de")):
        np.testing.assert_allclose(d[b], d[a], rtol=1e-6, atol=1e-3)  # float32 columns (schema v3): 6e-8 relative each


def test_signal_decay_matches_its_descriptor(signal_store: Path) -> None:
    with mambah.EventStore.open(signal_store, read_only=True) as s:
        p = s.query_df('SELECT batch, event, "index", pid, mother, status, decay_vertex FROM mc_particles WHERE is_signal ORDER BY batch, event, "index"')
        n_ev = int(s.query_df("SELECT count(*) AS n FROM events")["n"][0])
    groups = p.groupby(["batch", "event"])
    assert groups.ngroups == n_ev
    signs = []
    for _, g in groups:
        pid = g["pid"].tolist()
        head = pid[0]
        assert abs(head) == 521 and g["mother"].tolist()[0] >= -1
        q = 1 if head > 0 else -1
        signs.append(q)
        # head, then J/psi K (breadth-first), then mu+ mu-
        assert sorted(pid) == sorted([521 * q, 443, 321 * q, -13, 13])
        assert g["status"].tolist()[0] == 2
    # both charge states taken from Pythia ([...]cc): B+ and B- about equally often
    n_plus = signs.count(1)
    assert abs(n_plus - n_ev / 2) < 3 * np.sqrt(n_ev / 4)


def test_signal_kinematics_are_pythias_not_the_guns(signal_store: Path) -> None:
    """pp is forward-backward symmetric: the signal's η is symmetric about 0 (the gun's lies in 1.5 < y < 5.5)."""
    with mambah.EventStore.open(signal_store, read_only=True) as s:
        h = s.query_df("SELECT px, py, pz FROM mc_particles WHERE is_signal AND abs(pid) = 521")
    eta = np.arcsinh(h["pz"] / np.hypot(h["px"], h["py"]))
    n = len(eta)
    assert abs(np.sum(eta > 0) - n / 2) < 3 * np.sqrt(n / 4)  # binomial(n, 1/2)
    assert np.mean(eta < 1.5) > 0.4  # the gun has none there


def test_pile_up_interactions_and_bookkeeping(signal_store: Path) -> None:
    with mambah.EventStore.open(signal_store, read_only=True) as s:
        e = s.query_df("SELECT n_interactions, n_tried, process FROM events")
        pv = s.query_df('SELECT event, batch, count(*) AS n FROM mc_vertices WHERE mother_particle = -1 GROUP BY ALL')
        meta = s.get_metadata("generator") or ""
    n = e["n_interactions"].to_numpy()
    nu = NU_RUN2
    mean, var = 1 + nu, nu  # a rare process: 1 + Poisson(nu)
    assert abs(n.mean() - mean) < 3 * np.sqrt(var / n.size)
    assert sorted(pv["n"].tolist()) == sorted(n.tolist())  # one PV per interaction
    assert (e["n_tried"] >= 1).all() and set(e["process"]) <= {123, 124}
    assert '"version": "8.317"' in meta and '"sigma_gen_mb"' in meta


def test_minimum_bias_pile_up_is_zero_truncated_poisson(tmp_path: Path) -> None:
    path = tmp_path / "mb.duckdb"
    run(Pipeline((Pythia(preset="minbias", nu=NU_RUN2),), RunConfig(events=300, batch_size=300, seed=2)), path, progress=False)
    with mambah.EventStore.open(path, read_only=True) as s:
        n = s.query_df("SELECT n_interactions, process, n_tried FROM events")
    nu = NU_RUN2
    p1 = nu * np.exp(-nu) / (1 - np.exp(-nu))  # P(n = 1 | n >= 1)
    mean = nu / (1 - np.exp(-nu))
    var = mean * (1 + nu) - mean**2
    k = n["n_interactions"].to_numpy()
    assert abs(k.mean() - mean) < 3 * np.sqrt(var / k.size)
    assert abs(np.mean(k == 1) - p1) < 3 * np.sqrt(p1 * (1 - p1) / k.size)
    assert set(n["process"]) == {101} and (n["n_tried"] == 1).all()


def test_bad_settings_fail_at_build() -> None:
    with pytest.raises(ConfigError, match="refuses the setting 'Nonsense:flag = on'"):
        build_kernels(Pipeline((Pythia(preset="minbias", settings=("Nonsense:flag = on",)),)))
    with pytest.raises(ConfigError, match="unknown Pythia preset 'ttbar'"):
        Pythia(preset="ttbar")
    with pytest.raises(ConfigError, match="sqrt_s must be one of 7, 8, 13, 13.6, 14"):
        Pythia(sqrt_s=10.0)


def test_config_round_trip() -> None:
    from sim.generation.hepmc import HepMCInput

    pipe = Pipeline((Pythia(preset="ccbar", sqrt_s=13.6, settings=("PhaseSpace:pTHatMin = 1.",), nu=5.5, decay="D0 -> K- pi+"),),
                    RunConfig(events=10, batch_size=5))
    assert Pipeline.from_toml(pipe.to_toml()) == pipe
    hep = Pipeline((HepMCInput(files=("a.hepmc3", "b/*.hepmc"), batch_size=5, signal="B+ -> J/psi K+"),), RunConfig(events=10, batch_size=5))
    assert Pipeline.from_toml(hep.to_toml()) == hep


def test_long_lived_signal_daughters_decay_in_flight(tmp_path: Path) -> None:
    """With the complete-tree decay engine, a K_S0 the descriptor leaves undecayed is decayed by Mambah, displaced."""
    from sim.generation.decay import load_decay

    if not hasattr(load_decay("B0 -> (J/psi -> mu+ mu-) K_S0"), "engine"):
        pytest.skip("the decay engine does not complete trees (K_S0 stays undecayed)")
    path = _store(tmp_path, "ks", seed=9, events=20, decay="[B0 -> (J/psi -> mu+ mu-) K_S0]cc", nu=0.0)
    with mambah.EventStore.open(path, read_only=True) as s:
        ks = s.query_df("""
            SELECT p.status, p.first_daughter, sqrt((d.x - o.x)^2 + (d.y - o.y)^2 + (d.z - o.z)^2) AS flight
            FROM mc_particles p
            JOIN mc_vertices d ON d.batch = p.batch AND d.event = p.event AND d."index" = p.decay_vertex
            JOIN mc_vertices o ON o.batch = p.batch AND o.event = p.event AND o."index" = p.prod_vertex
            WHERE p.is_signal AND p.pid = 310""")
        bad = s.query_df("""
            SELECT count(*) AS n FROM (
              SELECT m.e, sum(d.e) AS de FROM mc_particles m JOIN mc_particles d
                ON d.batch = m.batch AND d.event = m.event AND d.mother = m."index"
              WHERE m.is_signal AND m.decay_vertex >= 0 GROUP BY m.batch, m.event, m."index", m.e)
            WHERE abs(de - e) > 1e-6 * e""")
    assert len(ks) == 20 and (ks["status"] == 2).all() and (ks["first_daughter"] >= 0).all()
    assert (ks["flight"] > 0).all() and ks["flight"].median() > 10.0  # K_S0: cτ = 26.8 mm, boosted
    assert int(bad["n"][0]) == 0


def test_cli_pythia_config_and_info(signal_store: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from mambah.cli import main

    cfg = tmp_path / "job.toml"
    assert main(["run", "--pythia", "ccbar", "--decay", "[D0 -> K- pi+]cc", "--events", "40", "--save-config", str(cfg)]) == 0
    pipe = Pipeline.load(cfg)
    gen = pipe.passes[0]
    assert isinstance(gen, Pythia) and gen.preset == "ccbar" and gen.decay == "[D0 -> K- pi+]cc"
    assert pipe.run.events == 40 and pipe.run.batch_size == 500 and len(pipe.passes) > 1  # detector passes kept
    assert main(["run", "--pythia", "ttbar", "--save-config", str(cfg)]) == 2
    assert "unknown Pythia preset 'ttbar'" in capsys.readouterr().err
    assert main(["info", str(signal_store)]) == 0
    out = capsys.readouterr().out
    assert "generator:      Pythia 8.317 preset=bbbar" in out
    assert "signal filter:  100 events kept of" in out


@pytest.mark.slow
def test_serial_equals_two_dask_workers(tmp_path: Path) -> None:
    """Each batch is a value: Pythia seeded from the batch seed gives the same events in any process."""
    pytest.importorskip("distributed")
    from sim.core.distributed import run_distributed

    pipe = Pipeline((Pythia(preset="minbias", nu=NU_RUN2),), RunConfig(events=40, batch_size=10, seed=31))
    run(pipe, tmp_path / "serial.duckdb", progress=False)
    run_distributed(pipe, tmp_path / "dask.duckdb", workers=2, progress=False)
    a, b = _dump(tmp_path / "serial.duckdb"), _dump(tmp_path / "dask.duckdb")
    for t in TABLES:
        assert a[t].equals(b[t]), t  # type: ignore[attr-defined]


def _theta_ok(g: object) -> object:
    """Independent DaughtersInLHCb check per event: every stable signal daughter (mu, K here) in 10-400 mrad,
    after inverting the event (pz -> -pz) when the signal B goes backward, as Gauss does."""
    import pandas as pd

    assert isinstance(g, pd.DataFrame)
    sign = 1.0 if float(g.loc[g["pid"].abs() == 521, "pz"].iloc[0]) > 0 else -1.0
    d = g[(g["mother"] >= 0) & g["is_signal"] & (g["status"] == 1)]
    theta = np.arctan2(np.hypot(d["px"], d["py"]), sign * d["pz"])
    return bool(((theta > 0.010) & (theta < 0.400)).all())


def test_daughters_in_acceptance_cut_and_its_bookkeeping(signal_store: Path, tmp_path: Path) -> None:
    from sim.generation.pythia import signal_cut_efficiency

    path = _store(tmp_path, "acc", seed=6, events=20, daughters_in_acceptance=True, nu=0.0)
    with mambah.EventStore.open(path, read_only=True) as s:
        p = s.query_df('SELECT batch, event, pid, mother, is_signal, status, px, py, pz FROM mc_particles WHERE is_signal')
        e = s.query_df("SELECT sum(n_tried) AS t, count(*) AS n FROM events")
        kept, tried = signal_cut_efficiency(s)
        meta = s.get_metadata("generator") or ""
    ok = p.groupby(["batch", "event"]).apply(_theta_ok, include_groups=False)
    assert len(ok) == 20 and ok.all()
    assert (p.loc[p["pid"].abs() == 521, "pz"] > 0).all()  # backward signal events were inverted
    assert kept == 20 and tried >= kept and int(e["t"][0]) >= tried
    assert '"daughters_in_acceptance": {"charged_theta_rad": [0.01, 0.4], "neutral_theta_rad": [0.005, 0.4], "invert_backward": true}' in meta
    # the cut's efficiency equals the fraction of uncut signal events that pass it (binomial, two samples)
    with mambah.EventStore.open(signal_store, read_only=True) as s:
        q = s.query_df('SELECT batch, event, pid, mother, is_signal, status, px, py, pz FROM mc_particles WHERE is_signal')
    ref = q.groupby(["batch", "event"]).apply(_theta_ok, include_groups=False)
    f_ref, f_cut = float(ref.mean()), kept / tried
    pool = (ref.sum() + kept) / (len(ref) + tried)
    assert abs(f_cut - f_ref) < 3 * np.sqrt(pool * (1 - pool) * (1 / len(ref) + 1 / tried)), (f_cut, f_ref)
    assert 0.05 < f_ref < 0.6  # B -> J/psi K in 4 pi, backward events inverted
    without = _store(tmp_path, "noacc", seed=6, events=5, nu=0.0)
    with mambah.EventStore.open(without, read_only=True) as s, pytest.raises(ConfigError, match="no daughters_in_acceptance"):
        signal_cut_efficiency(s)


def test_daughters_in_acceptance_config() -> None:
    with pytest.raises(ConfigError, match="daughters_in_acceptance needs a signal"):
        Pythia(preset="minbias", daughters_in_acceptance=True)
    with pytest.raises(ConfigError, match=r"charged_theta must satisfy 0 <= min < max <= pi"):
        Pythia(decay=SIGNAL, charged_theta=(0.4, 0.01))
    pipe = Pipeline((Pythia(decay=SIGNAL, daughters_in_acceptance=True, neutral_theta=(0.004, 0.3)),), RunConfig(events=10, batch_size=5))
    assert Pipeline.from_toml(pipe.to_toml()) == pipe


def test_redecay_shares_the_rest_of_the_event_and_re_decays_the_signal(tmp_path: Path) -> None:
    """ReDecay (``redecay = 3``): three events per Pythia event, same rest of event and signal momentum, new decays."""
    path = tmp_path / "rd.duckdb"
    run(Pipeline((Pythia(preset="bbbar", decay=SIGNAL, redecay=3),), RunConfig(events=9, batch_size=9, seed=4)), path,
        progress=False)
    with mambah.EventStore.open(path, read_only=True) as s:
        ev = s.query_df("SELECT event, n_tried, n_interactions, pv_z FROM events ORDER BY event")
        mp = s.query_df('SELECT event, pid, px, py, pz, is_signal, mother FROM mc_particles ORDER BY event, "index"')
        meta = s.get_metadata("generator") or ""
    assert '"redecay": 3' in meta
    tried = ev["n_tried"].to_numpy()
    assert (tried[0::3] >= 1).all() and (tried[1::3] == 0).all() and (tried[2::3] == 0).all()
    n_int = ev["n_interactions"].to_numpy()
    assert (n_int[0::3] == n_int[1::3]).all() and (n_int[0::3] == n_int[2::3]).all()
    pv_z = ev["pv_z"].to_numpy()
    assert np.all(pv_z[0::3] != pv_z[1::3])  # the primary vertices are drawn afresh: the crossing translated

    def rest(e: int) -> list[tuple[float, ...]]:
        d = mp[(mp["event"] == e) & ~mp["is_signal"]]
        return sorted(zip(d["pid"], d["px"].round(3), d["py"].round(3), d["pz"].round(3)))

    def signal(e: int) -> np.ndarray:
        d = mp[(mp["event"] == e) & mp["is_signal"]]
        return d[["px", "py", "pz"]].to_numpy()

    for g in range(3):
        a, b, c = 3 * g, 3 * g + 1, 3 * g + 2
        assert len(rest(a)) > 50 and rest(a) == rest(b) == rest(c)  # the underlying event and pile-up are shared
        sa, sb, sc = signal(a), signal(b), signal(c)
        np.testing.assert_allclose(sa[0], sb[0], rtol=1e-6)  # the signal B: Pythia's momentum in every copy
        np.testing.assert_allclose(sa[0], sc[0], rtol=1e-6)
        assert not np.allclose(sa[1:], sb[1:]) and not np.allclose(sa[1:], sc[1:])  # its decay: new in each
    assert rest(0) != rest(3)  # different Pythia events


def test_redecay_config_and_cli_errors(capsys: pytest.CaptureFixture[str]) -> None:
    for bad in (0, -2, True, 2.5, 5000):
        with pytest.raises(ConfigError, match="redecay must be an integer in"):
            Pythia(decay=SIGNAL, redecay=bad)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="redecay re-decays the signal: give decay or dec_file"):
        Pythia(redecay=2)
    from mambah.cli import main

    for args, match in ((["run", "--redecay", "3", "--events", "10"], "--redecay needs Pythia events"),
                        (["run", "--pythia", "bbbar", "--redecay", "3"], "redecay re-decays the signal"),
                        (["run", "--hepmc", "x.hepmc3", "--redecay", "2"], "--redecay applies to --pythia only")):
        assert main(args) == 2, args
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and match in err, (args, err)
