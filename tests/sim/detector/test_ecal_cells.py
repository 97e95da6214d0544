"""matrix_to_cells' fine-cell table gives the ids of cell_of on every deposit (the path it replaced)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from sim.detector import ecal_geometry as geo_mod
from sim.detector.ecal_geometry import ECALGeometry, _fine_cell_table, cell_of, grid_origin, matrix_to_cells, sum_by_key


def _direct(m: np.ndarray, x: np.ndarray, y: np.ndarray, cfg: ECALGeometry) -> tuple[np.ndarray, ...]:
    """matrix_to_cells as it was written before the table: cell_of of every deposit's centre."""
    gx, gy = grid_origin(x, y, cfg)
    centres = (np.arange(cfg.grid_n) + 0.5) * cfg.grid_pitch
    fx = np.broadcast_to(gx[:, None, None] + centres[None, None, :], m.shape)
    fy = np.broadcast_to(gy[:, None, None] + centres[None, :, None], m.shape)
    nz = m > 0
    shower = np.broadcast_to(np.arange(m.shape[0])[:, None, None], m.shape)[nz]
    cid = cell_of(fx[nz], fy[nz], cfg)
    e = m[nz].astype(np.float64)
    keep = cid >= 0
    uniq, total = sum_by_key(shower[keep].astype(np.int64) * 10_000_000 + cid[keep], e[keep])
    return uniq // 10_000_000, uniq % 10_000_000, total


def _showers(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    m = rng.exponential(50.0, (n, 30, 30)).astype(np.float32) * (rng.random((n, 30, 30)) < 0.3)
    # entry points over the whole face, the beam hole, the region edges and beyond the outer edge
    x = np.concatenate([rng.uniform(-4200.0, 4200.0, n - 6), [0.0, 323.2, -969.6, 1939.2, 3878.4, -3900.0]])
    y = np.concatenate([rng.uniform(-3400.0, 3400.0, n - 6), [0.0, -323.2, 727.2, -1212.0, 3151.2, 10.1]])
    return m, x, y


@pytest.mark.parametrize("seed", [1, 2])
def test_table_path_equals_cell_of_on_every_deposit(seed: int) -> None:
    cfg = ECALGeometry()
    assert _fine_cell_table(cfg) is not None  # the shipped layout's edges are on the fine lattice
    m, x, y = _showers(400, seed)
    got, want = matrix_to_cells(m, x, y, cfg), _direct(m, x, y, cfg)
    for a, b in zip(got, want, strict=True):
        assert a.dtype == b.dtype and np.array_equal(a, b)
    assert got[0].size > 10_000  # enough (shower, cell) pairs, in all regions
    assert set(np.unique(got[1] // 1_000_000).tolist()) == {0, 1, 2}


def test_layout_off_the_fine_lattice_has_no_table_and_uses_cell_of() -> None:
    cfg = dataclasses.replace(ECALGeometry(), hole_half=330.0)  # the hole's edge inside a fine cell
    assert _fine_cell_table(cfg) is None
    m, x, y = _showers(100, 3)
    for a, b in zip(matrix_to_cells(m, x, y, cfg), _direct(m, x, y, cfg), strict=True):
        assert np.array_equal(a, b)
    assert geo_mod._FINE_TABLES[cfg] is None
