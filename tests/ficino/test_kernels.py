"""The compiled loops of ficino._kernels give what the numpy calls they replace give."""

from __future__ import annotations

import numpy as np
import pytest

from ficino._kernels import key_ranges, keys_sorted


@pytest.mark.parametrize("query_order", ["sorted", "shuffled"])
def test_key_ranges_equal_searchsorted(query_order: str) -> None:
    rng = np.random.default_rng(3)
    keys = np.sort(rng.integers(0, 400, 1500)).astype(np.int64)  # duplicates and gaps
    query = rng.integers(-5, 410, 2000).astype(np.int64)
    query = np.sort(query) if query_order == "sorted" else query
    lo, hi = np.empty(query.size, np.int64), np.empty(query.size, np.int64)
    key_ranges(keys, query, lo, hi)
    np.testing.assert_array_equal(lo, np.searchsorted(keys, query, "left"))
    np.testing.assert_array_equal(hi, np.searchsorted(keys, query, "right"))
    assert (hi > lo).any() and (hi == lo).any()  # both found and missing keys were queried


def test_key_ranges_empty() -> None:
    lo, hi = np.empty(3, np.int64), np.empty(3, np.int64)
    key_ranges(np.zeros(0, np.int64), np.array([1, 2, 0], np.int64), lo, hi)
    assert lo.tolist() == hi.tolist() == [0, 0, 0]


def test_keys_sorted_is_whether_lexsort_is_the_identity() -> None:
    rng = np.random.default_rng(4)
    for _ in range(200):
        n = int(rng.integers(0, 12))
        keys = rng.integers(0, 3, (3, n)).astype(np.int64)  # many ties
        if rng.random() < 0.5:  # sorted inputs half of the time
            keys = keys[:, np.lexsort(keys[::-1])]
        identity = np.array_equal(np.lexsort(keys[::-1]), np.arange(n))
        assert keys_sorted(keys) == identity, keys


def test_candidate_pvs_equal_the_numpy_padding() -> None:
    """Found events take their table row (NaN slots unused), the others one slot at the smeared PV."""
    from ficino._kernels import candidate_pvs

    rng = np.random.default_rng(6)
    n, events, m = 300, 40, 3
    t_pos, t_var = rng.normal(size=(events, m, 3)), rng.uniform(0.1, 1, (events, m, 3))
    t_pos[rng.random((events, m)) < 0.3] = np.nan  # padded slots
    t_var[0, 0, 1] = np.inf
    t_chi2, t_ndof = rng.uniform(0, 9, (events, m)), rng.integers(-1, 40, (events, m)).astype(np.int32)
    at, found = rng.integers(0, events, n), rng.random(n) < 0.7
    smeared, var0 = rng.normal(size=(n, 3)), np.array([1e-4, 1e-4, 2.5e-3])
    # the numpy formulation it replaces (ficino.candidates._event_pvs before the kernel)
    pos, var = np.full((n, m, 3), np.nan), np.full((n, m, 3), np.nan)
    chi2, ndof = np.full((n, m), np.nan), np.full((n, m), -1, np.int32)
    pos[found], var[found], chi2[found], ndof[found] = t_pos[at[found]], t_var[at[found]], t_chi2[at[found]], t_ndof[at[found]]
    pos[~found, 0], var[~found, 0] = smeared[~found], var0
    mask = np.isfinite(pos).all(axis=2) & np.isfinite(var).all(axis=2)
    cov = np.zeros((n, m, 3, 3))
    cov[..., [0, 1, 2], [0, 1, 2]] = np.where(mask[..., None], var, 1.0)
    want = {"pos": np.where(mask[..., None], pos, 0.0), "cov": cov, "chi2": chi2, "ndof": ndof, "mask": mask}
    got = {"pos": np.empty((n, m, 3)), "cov": np.empty((n, m, 3, 3)), "chi2": np.empty((n, m)),
           "ndof": np.empty((n, m), np.int32), "mask": np.empty((n, m), bool)}
    candidate_pvs(at, found, t_pos, t_var, t_chi2, t_ndof, smeared, var0, *got.values())
    for k, v in want.items():
        np.testing.assert_array_equal(got[k], v, err_msg=k)
    assert 0 < mask.sum() < mask.size and (mask[~found, 1:] == 0).all()
