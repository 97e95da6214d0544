"""Hand-built stores for the Ficino tests: no generator, no detector passes.

Each event holds one ``Lambda_b0 -> (Lambda_c+ -> p+ K- pi+) mu- anti-nu_mu``
decay (BFS indices 0..6: Lb, Lc, mu, nu, p, K, pi), its vertices (0 = PV,
1 = Lb decay, 2 = Lc decay), and protoparticles for p, K, pi, mu whose states
(x, y, tx, ty, q/p at z) and 15 covariance columns come from the reference track
error model (:func:`sim.detector.trackcov.reconstruct_states`: residuals drawn from
the covariance).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pyarrow as pa
import pytest

import mambah

PIDS = np.array([5122, 4122, 13, -14, 2212, -321, 211], np.int32)
CHARGES = np.array([0, 1, -1, 0, 1, -1, 1], np.int16)
MASSES = np.array([5619.6, 2286.46, 105.658, 0.0, 938.272, 493.677, 139.570])
MOTHER = np.array([-1, 0, 0, 0, 1, 1, 1], np.int32)
FIRST = np.array([1, 4, -1, -1, -1, -1, -1], np.int32)
LAST = np.array([3, 6, -1, -1, -1, -1, -1], np.int32)
PROD = np.array([0, 1, 1, 1, 2, 2, 2], np.int32)
DECV = np.array([1, 2, -1, -1, -1, -1, -1], np.int32)
TRACKS = (2, 4, 5, 6)  # mu, p, K, pi


def _batch_tables(batch: int, n: int, seed: int = 1, *, pid: bool = True, missing: float = 0.0) -> dict[str, pa.Table]:
    """Tables of one hand-built batch of ``n`` events (see module docstring).

    Args:
        batch: batch number.
        n: events.
        seed: numpy seed.
        pid: fill the PID columns (else they stay NULL).
        missing: fraction of final-state tracks without a protoparticle.
    """
    rng = np.random.default_rng([seed, batch])
    s = len(PIDS)
    fs = np.zeros((n, s, 3))
    for j in (2, 3, 4, 5, 6):
        fs[:, j, 0:2] = rng.normal(0, 800, (n, 2))
        fs[:, j, 2] = rng.uniform(5_000, 60_000, n)
    fs[:, 1] = fs[:, 4] + fs[:, 5] + fs[:, 6]
    fs[:, 0] = fs[:, 1] + fs[:, 2] + fs[:, 3]
    e = np.sqrt(np.sum(fs**2, axis=2) + MASSES**2)
    e[:, 1] = e[:, 4] + e[:, 5] + e[:, 6]
    e[:, 0] = e[:, 1] + e[:, 2] + e[:, 3]
    mass = np.sqrt(np.maximum(e**2 - np.sum(fs**2, axis=2), 0))
    ev = np.repeat(np.arange(n, dtype=np.int32), s)
    mc = {
        "batch": np.full(n * s, batch, np.int32), "event": ev, "index": np.tile(np.arange(s, dtype=np.int32), n),
        "pid": np.tile(PIDS, n), "px": fs[..., 0].ravel(), "py": fs[..., 1].ravel(), "pz": fs[..., 2].ravel(),
        "e": e.ravel(), "mass": mass.ravel(), "charge": np.tile(CHARGES, n), "mother": np.tile(MOTHER, n),
        "first_daughter": np.tile(FIRST, n), "last_daughter": np.tile(LAST, n), "prod_vertex": np.tile(PROD, n),
        "decay_vertex": np.tile(DECV, n), "is_signal": np.ones(n * s, bool),
    }
    pv = np.stack([rng.normal(0, 0.01, n), rng.normal(0, 0.01, n), rng.normal(0, 40, n)], axis=1)
    lb_dir = fs[:, 0] / np.linalg.norm(fs[:, 0], axis=1)[:, None]
    lc_dir = fs[:, 1] / np.linalg.norm(fs[:, 1], axis=1)[:, None]
    sv1 = pv + lb_dir * rng.exponential(10.0, n)[:, None]
    sv2 = sv1 + lc_dir * rng.exponential(5.0, n)[:, None]
    verts = np.stack([pv, sv1, sv2], axis=1)
    mv = {
        "batch": np.full(3 * n, batch, np.int32), "event": np.repeat(np.arange(n, dtype=np.int32), 3),
        "index": np.tile(np.arange(3, dtype=np.int32), n), "x": verts[..., 0].ravel(), "y": verts[..., 1].ravel(),
        "z": verts[..., 2].ravel(), "t": np.zeros(3 * n), "mother_particle": np.tile(np.array([-1, 0, 1], np.int32), n),
    }
    tr = np.array(TRACKS)
    keep = rng.uniform(size=(n, len(tr))) >= missing
    ev_t, j_t = np.nonzero(keep)
    m = len(ev_t)
    true_p = fs[ev_t, tr[j_t]]
    reco_p = true_p * (1 + 0.005 * rng.normal(size=(m, 1)))
    # states and covariances from the reference error model (own stream: the draws above are unchanged)
    from sim.detector.trackcov import TrackErrorModel, cov_to_columns, crossed_velo_stations, reconstruct_states

    origin = verts[ev_t, PROD[tr[j_t]]]
    truth = {"charge": CHARGES[tr[j_t]].astype(np.float64), "px": true_p[:, 0], "py": true_p[:, 1],
             "pz": true_p[:, 2], **{f"origin_{a}": origin[:, i] for i, a in enumerate("xyz")},
             **{f"pv_{a}": pv[ev_t, i] for i, a in enumerate("xyz")}}
    velo = crossed_velo_stations(origin[:, 0] - pv[ev_t, 0], origin[:, 1] - pv[ev_t, 1], origin[:, 2],
                                 true_p[:, 0] / true_p[:, 2], true_p[:, 1] / true_p[:, 2], TrackErrorModel()).sum(axis=1)
    track_type = np.where(velo >= 3, 3, 5).astype(np.int16)
    st = reconstruct_states(truth, track_type, np.random.default_rng([seed, batch, 5]).standard_normal((m, 5)))
    reco_p = np.column_stack([st["px"], st["py"], st["pz"]])
    pp: dict[str, np.ndarray] = {
        "batch": np.full(m, batch, np.int32), "event": ev_t.astype(np.int32), "index": j_t.astype(np.int32),
        "mc_particle": tr[j_t].astype(np.int32), "track_type": track_type,
        "charge": CHARGES[tr[j_t]], "px": reco_p[:, 0], "py": reco_p[:, 1], "pz": reco_p[:, 2],
        "tx": st["tx"], "ty": st["ty"], "x": st["x"], "y": st["y"], "z": st["z"], **cov_to_columns(st["cov"]),
        "ip": rng.exponential(0.1, m), "ip_chi2": rng.exponential(10, m),
        "track_chi2ndof": rng.gamma(2, 0.5, m), "ghost_prob": rng.uniform(0, 0.1, m),
    }
    if pid:
        pp.update({"has_rich": np.ones(m, bool), "RichDLLK": rng.normal(0, 10, m).astype(np.float32),
                   "PIDK": rng.normal(0, 10, m).astype(np.float32), "is_muon": tr[j_t] == 2,
                   "ProbNNk": rng.uniform(size=m).astype(np.float32)})
    events = {
        "batch": np.full(n, batch, np.int32), "event": np.arange(n, dtype=np.int32), "pv_x": pv[:, 0],
        "pv_y": pv[:, 1], "pv_z": pv[:, 2], "pv_t": np.zeros(n), "n_pv": np.ones(n, np.int16),
        "n_tracks": np.bincount(ev_t, minlength=n).astype(np.int32) + 20,
    }
    return {"events": pa.table(events), "mc_particles": pa.table(mc), "mc_vertices": pa.table(mv), "protoparticles": pa.table(pp)}


def _make_store(path: str = ":memory:", *, batches: int = 2, n: int = 200, seed: int = 1, **kw: object) -> mambah.EventStore:
    """A store of ``batches`` hand-built batches of ``n`` events each."""
    store = mambah.EventStore.create(path)
    for b in range(batches):
        store.write_batch(mambah.BatchRecord(b, n, seed), _batch_tables(b, n, seed, **kw))  # type: ignore[arg-type]
    return store


@pytest.fixture(scope="session")
def batch_tables() -> Callable[..., dict[str, pa.Table]]:
    """The hand-built batch maker (:func:`_batch_tables`); test modules cannot import conftest."""
    return _batch_tables


@pytest.fixture(scope="session")
def make_store() -> Callable[..., mambah.EventStore]:
    """The hand-built store maker (:func:`_make_store`)."""
    return _make_store


@pytest.fixture(scope="module")
def small_store() -> mambah.EventStore:
    """2 batches x 200 events, PID filled."""
    store = _make_store()
    yield store
    store.close()
