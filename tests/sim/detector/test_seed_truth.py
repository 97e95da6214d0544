"""seed_truth: the shower that deposited most in each cluster's seed cell (against a plain loop)."""

from __future__ import annotations

import numpy as np
import pytest

from sim.detector.calorimeter import seed_truth


def _loop(cluster_event: np.ndarray, seed_cell: np.ndarray, shower_event: np.ndarray, shower: np.ndarray,
          cell_id: np.ndarray, energy: np.ndarray) -> np.ndarray:
    """Independent reference: per cluster, the largest deposit in its (event, seed cell); ties to the first pair."""
    out = np.full(cluster_event.shape, -1, dtype=np.int64)
    for i, (ev, cell) in enumerate(zip(cluster_event, seed_cell, strict=True)):
        best = -np.inf
        for j in range(shower.size):
            if shower_event[shower[j]] == ev and cell_id[j] == cell and energy[j] > best:
                best, out[i] = energy[j], shower[j]
    return out


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_seed_truth_matches_a_plain_loop_with_ties_and_empty_seeds(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n_showers, n_pairs = 60, 700
    shower_event = rng.integers(0, 5, n_showers)
    shower = np.sort(rng.integers(0, n_showers, n_pairs))
    cell_id = rng.integers(0, 40, n_pairs)
    energy = rng.choice([5.0, 10.0, 20.0, 20.0, 40.0], n_pairs)  # many equal deposits: ties
    ev_c, cell_c = rng.integers(0, 6, 80), rng.integers(0, 45, 80)  # some seeds without any deposit (-1)
    got = seed_truth(ev_c, cell_c, shower_event, shower, cell_id, energy)
    want = _loop(ev_c, cell_c, shower_event, shower, cell_id, energy)
    assert np.array_equal(got, want)
    assert (got == -1).any() and (got >= 0).sum() > 20


def test_seed_truth_without_deposits_or_clusters() -> None:
    e = np.zeros(0, np.int64)
    assert seed_truth(np.array([0]), np.array([3]), np.array([0]), e, e, np.zeros(0)).tolist() == [-1]
    assert seed_truth(e, e, np.array([0]), np.array([0]), np.array([3]), np.array([1.0])).size == 0
    # deposits, none in a seed cell
    assert seed_truth(np.array([0]), np.array([3]), np.array([0]), np.array([0]), np.array([4]), np.array([1.0])).tolist() == [-1]
