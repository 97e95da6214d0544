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
