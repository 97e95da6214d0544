"""The compiled (numba) vertex fit equals the numpy reference kernel, vertex by vertex.

Both kernels do the same float64 operations in the same order except the matrix products of
the composite-momentum covariance (``H C_V Hᵀ``: the association of the 3-term dot products
differs), so positions, χ², momenta and the 3 × 3 covariances are compared bit for bit and
the 7 × 7 covariance to 1e-10 of ``sqrt(C_ii C_jj)``: a few ulps of the products' terms, which
for a mass-constrained daughter are up to ~1e4 times the result (seen: 1.6e-12).
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mambah import kinematics as kin
from mambah.errors import ConfigError, DataError
from sim.detector import vertexing as vx

M_PI, M_K, M_P, M_MU, M_LC = 139.57, 493.677, 938.272, 105.658, 2286.46

EXACT = ("position", "cov", "chi2", "ndof", "momentum", "charge", "daughter_momenta", "converged")


def _assert_same(a: vx.VertexFit, b: vx.VertexFit, determined: np.ndarray | None = None) -> None:
    """Bit-for-bit equal but ``cov7``, which agrees to rounding in the ``determined`` rows (default all)
    and has the same NaN/inf entries everywhere."""
    for name in EXACT:
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
    fin = np.isfinite(a.cov7)
    np.testing.assert_array_equal(np.where(fin, 0.0, a.cov7), np.where(fin, 0.0, b.cov7), err_msg="cov7 NaN/inf")
    with np.errstate(all="ignore"):
        scale = np.sqrt(np.abs(np.diagonal(a.cov7, axis1=1, axis2=2)))
        scale = scale[:, :, None] * scale[:, None, :]
        diff = np.where(fin, np.abs(a.cov7 - b.cov7), 0.0)
        ok = ~fin | (diff <= 1e-10 * scale)
        if determined is not None:
            ok[~determined] = True
        worst = np.max(np.where(ok, 0.0, diff / scale))
    assert ok.all(), f"cov7 differs by up to {worst:.2e} of sqrt(C_ii C_jj)"

def _daughters(rng: np.random.Generator, n: int, k: int, mass: float | list[float] = M_PI) -> vx.Daughters:
    """n vertices of k tracks from a displaced vertex, VELO-like state covariances at z = v_z + 30 mm."""
    vertex = np.column_stack([rng.normal(0, 0.5, n), rng.normal(0, 0.5, n), rng.normal(0, 40, n)])
    p = np.exp(rng.uniform(np.log(2e3), np.log(1e5), (n, k)))
    eta, phi = rng.uniform(2.0, 5.0, (n, k)), rng.uniform(-np.pi, np.pi, (n, k))
    pt = p / np.cosh(eta)
    p3 = np.stack([pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta)], axis=-1)
    z = vertex[:, None, 2] + 30.0 + np.zeros((n, k))
    x, y, tx, ty = kin.state_at_z(vertex[:, None, :], p3, z)
    q = rng.choice([-1.0, 1.0], (n, k))
    truth = np.stack([x, y, tx, ty, q / p], axis=-1)
    cov = np.zeros((n, k, 5, 5))
    for a, b in ((0, 2), (1, 3)):  # position-slope correlation of a VELO fit, multiple scattering on the slopes
        cov[..., a, a] = 1e-4
        cov[..., a, b] = cov[..., b, a] = -2e-6
        cov[..., b, b] = 1e-7 + (1.5 / p) ** 2
    cov[..., 4, 4] = (0.005 / p) ** 2
    meas = truth + np.einsum("nkij,nkj->nki", np.linalg.cholesky(cov), rng.standard_normal(truth.shape))
    return vx.track_daughters(z, meas, cov, np.broadcast_to(np.asarray(mass, dtype=np.float64), (k,)))


def _both(d: vx.Daughters, **kw: object) -> tuple[vx.VertexFit, vx.VertexFit]:
    return vx.fit_vertex(d, kernel="numpy", **kw), vx.fit_vertex(d, kernel="compiled", **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize("k", [2, 3, 4])
def test_compiled_fit_equals_the_numpy_kernel(k: int) -> None:
    d = _daughters(np.random.default_rng(40 + k), 3000, k)
    a, b = _both(d)
    _assert_same(a, b)
    assert a.converged.mean() > 0.99  # real fits, not a trivial agreement of NaNs
    for kw in ({"momentum": False}, {"n_iter": 1}, {"n_iter": 0}, {"max_step": 1e-3}):
        _assert_same(*_both(d, **kw))


def test_mixed_multiplicities_in_one_call_and_masked_slots() -> None:
    d = _daughters(np.random.default_rng(50), 2000, 4)
    mask = d.mask.copy()
    mask[::3, 3] = False
    mask[1::3, 2:] = False
    d = vx.Daughters(d.z, d.state, d.cov, d.mass, d.mass_var, d.mass_cov, d.charge, mask)
    a, b = _both(d)
    _assert_same(a, b)
    assert set(np.unique(a.ndof)) == {1, 3, 5}


def test_composites_of_composites_and_the_dtf_mass() -> None:
    rng = np.random.default_rng(51)
    n = 2000
    lc_tracks = _daughters(rng, n, 3, [M_P, M_K, M_PI])
    lc_np, lc_c = _both(lc_tracks)
    _assert_same(lc_np, lc_c)
    line_np, line_c = vx.composite_daughters(lc_np, kernel="numpy"), vx.composite_daughters(lc_np)
    for name in ("z", "state", "mass", "charge", "mask"):
        np.testing.assert_array_equal(getattr(line_np, name), getattr(line_c, name), err_msg=name)
    c6n = np.concatenate([np.concatenate([line_np.cov, line_np.mass_cov[..., None]], axis=-1),
                          np.concatenate([line_np.mass_cov, line_np.mass_var[..., None]], axis=-1)[..., None, :]], axis=-2)
    c6c = np.concatenate([np.concatenate([line_c.cov, line_c.mass_cov[..., None]], axis=-1),
                          np.concatenate([line_c.mass_cov, line_c.mass_var[..., None]], axis=-1)[..., None, :]], axis=-2)
    # rounding scale of J C Jᵀ: sqrt(C_ii) but for the mass (m = sqrt(E² − p²)), whose Jacobian
    # (−p, E)/m makes its terms (E/m)·Σ σ(p, E), cancelling to ~1e-6 of that for light composites
    sig = np.sqrt(np.diagonal(c6n, axis1=-2, axis2=-1))
    sig[:, 0, 5] = (lc_np.momentum[:, 3] / line_np.mass[:, 0]
                    * np.sqrt(np.diagonal(lc_np.cov7, axis1=1, axis2=2)[:, 3:]).sum(axis=1))
    assert np.all(np.abs(c6c - c6n) <= 1e-12 * sig[..., :, None] * sig[..., None, :])
    parts = vx.stack_daughters([line_c, _daughters(rng, n, 1, M_MU)])
    _assert_same(*_both(parts))  # composite + track (Λb → Λc μ)
    _assert_same(*_both(vx.constrain_mass(parts, 0, M_LC)))
    fit_n, m_n, e_n, c_n = vx.fit_vertex_dtf(parts, 0, M_LC, kernel="numpy")
    fit_c, m_c, e_c, c_c = vx.fit_vertex_dtf(parts, 0, M_LC, kernel="compiled")
    _assert_same(fit_n, fit_c)
    np.testing.assert_array_equal(c_n, c_c)
    e2 = fit_n.momentum[:, 3] ** 2  # m² = E² − p²: its rounding is that of E²
    assert np.all(np.abs(m_c**2 - m_n**2) <= 1e-12 * e2)
    # σ² = g C g with g = (−p, E)/m: its rounding is that of the terms, |g_i| <= E/m, sqrt(C_ii) <= σ_i
    sig = np.sqrt(np.diagonal(fit_n.cov7, axis1=1, axis2=2)[:, 3:]).sum(axis=1)
    scale = (fit_n.momentum[:, 3] / np.maximum(m_n, 1e-9) * sig) ** 2
    assert np.all(np.abs(e_c**2 - e_n**2) <= 1e-12 * scale)
    # composites of composites over three levels: two 3-track composites, then two of those
    def composite(level: int) -> vx.Daughters:
        if level == 0:
            return vx.composite_daughters(vx.fit_vertex(_daughters(rng, n, 3, [M_P, M_K, M_PI])))
        a, b = _both(vx.stack_daughters([composite(level - 1), composite(level - 1)]))
        _assert_same(a, b)
        return vx.composite_daughters(a)

    composite(2)

def test_degenerate_vertices_give_the_same_nan_and_unconverged_flags() -> None:
    d = _daughters(np.random.default_rng(52), 60, 3)
    state, cov = d.state.copy(), d.cov.copy()
    state[:20, 1:] = state[:20, :1]  # identical lines: vertex z undetermined
    state[20:40, :, 2:4] = state[20:40, :1, 2:4] + 1e-9 * np.arange(3)[None, :, None]  # near-parallel
    state[40:45, 0, 0] = np.nan  # a NaN daughter (e.g. a composite of a failed fit)
    cov[45:50, 0] = 0.0  # a daughter without covariance: infinite weight
    cov[50:, 1] *= 1e12  # one track with no information
    d = vx.Daughters(d.z, state, cov, d.mass, d.mass_var, d.mass_cov, d.charge, d.mask)
    with np.errstate(all="ignore"):
        a, b = _both(d)
        # identical lines leave the vertex undetermined along them (cond(C_V) ~ 1e17 or singular):
        # there cov7 is rounding noise of cancelling 1e16-sized terms in either kernel
        determined = np.linalg.cond(np.nan_to_num(a.cov, nan=1.0)) < 1e12
    assert determined[50:].all() and determined[20:40].all() and not determined[:20].any()
    _assert_same(a, b, determined)
    assert np.isnan(a.position[40:50]).all() and not a.converged[20:50].any()


@pytest.mark.parametrize("n_iter", [1, 2, 3])
def test_compiled_decay_time_equals_the_numpy_kernel(n_iter: int) -> None:
    rng = np.random.default_rng(54)
    n = 5000  # two blocks of the lifetime fit's 4096 rows
    fit = vx.fit_vertex(_daughters(rng, n, 3, [M_P, M_K, M_PI]))
    pv = fit.position - fit.momentum[:, :3] / np.linalg.norm(fit.momentum[:, :3], axis=1)[:, None] * rng.exponential(
        5.0, (n, 1))
    pv_cov = np.broadcast_to(np.diag([1e-4, 1e-4, 2e-3]), (n, 3, 3)).copy()
    mom, cov7 = fit.momentum.copy(), fit.cov7.copy()
    mom[:3] = np.nan  # a NaN composite
    cov7[3:6] = 0.0  # no uncertainty at all: S singular
    cov7[6:9, 3:, 3:] *= 1e30  # momentum unknown: the decay time undetermined
    fit = vx.VertexFit(fit.position, fit.cov, fit.chi2, fit.ndof, mom, cov7, fit.charge, fit.daughter_momenta,
                       fit.converged)
    ref = vx.decay_time(pv, pv_cov, fit, n_iter, kernel="numpy")
    got = vx.decay_time(pv, pv_cov, fit, n_iter, kernel="compiled")
    for name, a, b in zip(("tau", "tau_err", "chi2"), ref, got):
        np.testing.assert_array_equal(a, b, err_msg=name)
    assert np.isnan(ref[0][:3]).all() and np.isfinite(ref[0][9:]).mean() > 0.99


def test_unknown_kernel_is_an_error_naming_the_choices() -> None:
    d = _daughters(np.random.default_rng(53), 2, 2)
    with pytest.raises(ConfigError, match="'fortran'.*compiled, numpy"):
        vx.fit_vertex(d, kernel="fortran")
    with pytest.raises(ConfigError, match="compiled, numpy"):
        vx.fit_vertex_dtf(d, 0, 1.0, kernel="C")
    with pytest.raises(ConfigError, match="compiled, numpy"):
        vx.composite_daughters(vx.fit_vertex(d), kernel="C")


def test_kernel_caches_in_a_temporary_directory_when_no_cache_directory_is_writable(tmp_path: Path) -> None:
    # numba's own choices (beside the module, then the user-wide cache) are made unavailable:
    # the in-tree locator is refused and the user cache lies under /proc (not writable, even by root)
    code = (
        "import numba.core.caching as c\n"
        "for name in ('InTreeCacheLocator', 'InTreeCacheLocatorFsAgnostic'):\n"
        "    setattr(getattr(c, name), 'from_function', classmethod(lambda cls, f, s: None))\n"
        "import sim.detector._vertex_kernels as k\n"
        "print(k.fit_loop._cache._cache_path)\n"
    )
    env = {**os.environ, "XDG_CACHE_HOME": "/proc/no-cache", "HOME": "/proc/no-home", "TMPDIR": str(tmp_path)}
    env.pop("NUMBA_CACHE_DIR", None)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120,
                         cwd=Path(__file__).resolve().parents[3])
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().startswith(str(tmp_path / f"mambah-numba-{os.getuid()}"))
    assert "numba cannot cache beside" in out.stderr


def _own_pv_case(rng: np.random.Generator, n: int, m: int) -> dict[str, object]:
    """Λc-like composites (fitted, as lines) and m PVs per row upstream along the flight, with the edge
    rows: all PVs masked, a NaN PV that is not masked, zero flight, a NaN composite, unconverged fits."""
    tracks = _daughters(rng, n, 3, [M_P, M_K, M_PI])
    state_t = tracks.state.copy()
    state_t[:20, :, 2:4] = state_t[:20, :1, 2:4] + 1e-9 * np.arange(3)[None, :, None]  # near-parallel: unconverged
    tracks = vx.Daughters(tracks.z, state_t, tracks.cov, tracks.mass, tracks.mass_var, tracks.mass_cov, tracks.charge,
                          tracks.mask)
    with np.errstate(all="ignore"):
        fit = vx.fit_vertex(tracks, n_iter=3)
    line = vx.composite_daughters(fit)
    z, state, cov = line.z[:, 0].copy(), line.state[:, 0].copy(), line.cov[:, 0].copy()
    big = n + 40  # PV rows: the composites use a permutation of some of them
    rows = rng.permutation(big)[:n]
    u = fit.momentum[:, :3] / np.linalg.norm(fit.momentum[:, :3], axis=1)[:, None]
    pv = np.zeros((big, m, 3))
    pv[rows] = (fit.position[:, None, :] - u[:, None, :] * rng.exponential(8.0, (n, m, 1))
                + rng.normal(0, 1, (n, m, 3)) * [0.02, 0.02, 0.3])
    pv_cov = np.zeros((big, m, 3, 3))
    pv_cov[..., [0, 1, 2], [0, 1, 2]] = np.array([1e-4, 1e-4, 3e-3]) * rng.uniform(0.5, 2.0, (big, m, 1))
    mask = rng.uniform(size=(big, m)) < 0.8
    mask[rows[20:25]] = False  # no PV at all: the first slot (argmin of all inf)
    pv[rows[25:28], m - 1] = np.nan  # a NaN PV that takes part: argmin picks it (NaN columns)
    mask[rows[25:28], m - 1] = True
    pv[rows[28], :] = fit.position[28]  # zero flight: FD = 0, DIRA and MCORR NaN
    state[30:33] = np.nan  # a NaN composite line
    visible = fit.momentum * rng.uniform(0.9, 1.0, (n, 1))  # the visible momentum: not the fitted one
    position = fit.position.copy()
    position[33:35] = np.nan  # a NaN decay vertex
    fit = dataclasses.replace(fit, position=position)
    return {"z": z, "state": state, "cov": cov, "pv": pv, "pv_cov": pv_cov, "pv_mask": mask, "fit": fit,
            "visible": visible, "rows": rows}


@pytest.mark.parametrize("m", [1, 3])
def test_compiled_own_pv_quantities_equal_the_numpy_reference(m: int) -> None:
    case = _own_pv_case(np.random.default_rng(60 + m), 3000, m)
    with np.errstate(all="ignore"):
        ref = vx.own_pv_quantities(**case, kernel="numpy")  # type: ignore[arg-type]
        got = vx.own_pv_quantities(**case, kernel="compiled")  # type: ignore[arg-type]
    np.testing.assert_array_equal(ref["best"], got["best"])
    if m > 1:
        assert set(np.unique(ref["best"])) == set(range(m))  # the choice is exercised
    for name in ("ip", "ipchi2", "fd", "fdchi2", "dira", "mcorr", "mcorrerr"):
        a, b = ref[name], got[name]
        np.testing.assert_array_equal(np.isnan(a), np.isnan(b), err_msg=f"{name} NaN rows")
        np.testing.assert_allclose(b, a, rtol=1e-10, atol=0, err_msg=name)
    assert np.isnan(ref["ip"][25:28]).all() and np.isnan(ref["dira"][28]) and ref["fd"][28] == 0.0
    assert np.isnan(ref["ipchi2"][30:33]).all() and np.isnan(ref["mcorr"][33:35]).all()
    assert np.isfinite(ref["mcorr"][40:]).mean() > 0.99 and np.isfinite(ref["fdchi2"][40:]).all()


def test_compiled_line_ip_equals_the_numpy_reference() -> None:
    rng = np.random.default_rng(62)
    d = _daughters(rng, 4000, 1)
    z, state, cov = d.z[:, 0].copy(), d.state[:, 0].copy(), d.cov[:, 0].copy()
    state[:5, 0] = np.nan
    cov[5:9, 2, 3] = np.inf
    z[9] = np.nan
    rows = rng.permutation(4000)[:3000]
    pv = rng.normal(0, 1, (3000, 3)) * [0.02, 0.02, 40.0]
    pv_cov = np.broadcast_to(np.diag([1e-4, 1e-4, 3e-3]), (3000, 3, 3))
    ref = vx.line_ip(rows, z, state, cov, pv, pv_cov, kernel="numpy")
    got = vx.line_ip(rows, z, state, cov, pv, pv_cov)
    for a, b in zip(ref, got):
        np.testing.assert_array_equal(np.isnan(a), np.isnan(b))
        np.testing.assert_allclose(b, a, rtol=1e-10, atol=0)
    assert np.isnan(ref[0]).sum() == np.isin(rows, np.arange(10)).sum() > 0


def _track_columns(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    """protoparticles-like columns (float32 as the store keeps them, charge float64) from toy tracks,
    with unmatched rows, NaN and inf values and a zero charge."""
    d = _daughters(rng, n, 1)
    st, cov = d.state[:, 0], d.cov[:, 0]
    from sim.detector.trackcov import cov_to_columns

    p = 1.0 / st[:, 4]
    pz = p / np.sqrt(1.0 + st[:, 2] ** 2 + st[:, 3] ** 2)
    f4 = np.float32
    cols = {"x": st[:, 0].astype(f4), "y": st[:, 1].astype(f4), "z": d.z[:, 0].astype(f4), "tx": st[:, 2].astype(f4),
            "ty": st[:, 3].astype(f4), "charge": d.charge[:, 0].copy(), "px": (st[:, 2] * pz).astype(f4),
            "py": (st[:, 3] * pz).astype(f4), "pz": pz.astype(f4), "track_type": np.full(n, 3, np.int32),
            **{k: v.astype(f4) for k, v in cov_to_columns(cov).items()}}
    cols["track_type"][:5] = 0  # unmatched
    cols["x"][5:8] = np.nan
    cols["cov_tx_qop"][8:10] = np.inf
    cols["charge"][10:12] = 0.0  # q/p = 0
    cols["pz"][12] = np.nan
    return cols


def test_compiled_track_states_equal_states_from_columns() -> None:
    cols = _track_columns(np.random.default_rng(63), 3000)
    ref = vx.track_states(cols, kernel="numpy")
    got = vx.track_states(cols)
    for name, a, b in zip(("z", "state", "cov", "ok"), ref, got):
        np.testing.assert_array_equal(a, b, err_msg=name)
    assert not ref[3][:13].any() and ref[3][13:].all()


def test_compiled_track_daughters_rows_equal_track_daughters() -> None:
    rng = np.random.default_rng(64)
    tracks = [vx.track_states(_track_columns(rng, 2000))[:3] for _ in range(3)]
    rows = rng.permutation(np.arange(13, 2000))[:1500]
    ref = vx.track_daughters_rows(rows, tracks, [M_P, M_K, M_PI], kernel="numpy")
    got = vx.track_daughters_rows(rows, tracks, [M_P, M_K, M_PI])
    for f in dataclasses.fields(vx.Daughters):
        np.testing.assert_array_equal(getattr(ref, f.name), getattr(got, f.name), err_msg=f.name)
    assert set(np.unique(got.charge)) == {-1.0, 1.0}
    _assert_same(vx.fit_vertex(ref), vx.fit_vertex(got))
    for bad in (np.array([6, 20]), np.array([20, 11])):  # an unusable state (NaN, q/p = 0) is refused by both
        for kernel in ("numpy", "compiled"):
            with pytest.raises(DataError, match="NaN or inf|q/p = 0"):
                vx.track_daughters_rows(bad, tracks, [M_P, M_K, M_PI], kernel=kernel)
