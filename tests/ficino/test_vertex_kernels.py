"""The export's vertex columns are the same with the compiled vertex kernels as with the numpy reference.

Every kernel the candidates call (track states, fit inputs, the Billoir and DTF fits, the composite line,
the lifetime fit, the own-PV pass and the tracks' IPs) is switched to ``kernel="numpy"``; each column of a hand-built batch
(every MC candidate, also those with an unmatched track: NaN rows) must then agree with the default (compiled) export to float32
rounding (the compiled kernels differ from numpy only in the association of sums).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

import mambah
from ficino.candidates import build_candidates, compute_columns, decay_spec, default_decay, present_sources, resolve_columns
from sim.detector import vertexing as vx

KERNELED = (vx.fit_vertex, vx.fit_vertex_dtf, vx.composite_daughters, vx.decay_time, vx.own_pv_quantities, vx.line_ip,
            vx.track_states, vx.track_daughters_rows)


def _columns(store: mambah.EventStore) -> dict[str, np.ndarray]:
    spec = decay_spec(default_decay(store))
    cols = resolve_columns(spec, None, present_sources(store))
    return compute_columns(build_candidates(store, spec, 0, reconstructed_only=False, columns=cols), cols)


def test_vertex_columns_equal_with_the_numpy_kernels(make_store: Callable[..., mambah.EventStore],
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    store = make_store(batches=1, n=400, seed=7, missing=0.05)
    compiled = _columns(store)
    for func in KERNELED:
        assert func.__kwdefaults__ is not None and func.__kwdefaults__["kernel"] == "compiled"
        monkeypatch.setitem(func.__kwdefaults__, "kernel", "numpy")
    reference = _columns(store)
    store.close()
    assert compiled.keys() == reference.keys()
    assert {"Lb_MCORRERR", "Lc_IPCHI2_OWNPV", "p_IPCHI2_OWNPV", "Lb_DTF_M", "Lb_TAU"} <= compiled.keys()
    for name, ref in reference.items():
        got = compiled[name]
        assert got.dtype == ref.dtype, name
        if ref.dtype.kind != "f":
            np.testing.assert_array_equal(got, ref, err_msg=name)
            continue
        np.testing.assert_array_equal(np.isnan(got), np.isnan(ref), err_msg=f"{name} NaN rows")
        np.testing.assert_allclose(got, ref, rtol=1e-7, atol=0, err_msg=name)
    assert 0 < np.isnan(reference["Lb_MCORR"]).sum() < 100  # unmatched tracks: NaN rows, the rest fitted
