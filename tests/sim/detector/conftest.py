"""Fixtures of the detector tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest


@pytest.fixture
def two_interaction_store(tmp_path: Path) -> Path:
    """A store of one event with two interactions, laid out by the generator's own code.

    PV 0 at (0.1, -0.1, 10) mm, PV 1 at (0.3, 0.2, -40) mm; lines: 0 pi+ (interaction 0),
    1 pi- (interaction 1), 2 K_S0 (interaction 1, decays at z = 60 mm), 3 and 4 its pions.
    """
    import mambah
    from mambah.store import BatchRecord
    from sim.generation._event_tables import GeneratorRecord, layout_tables

    pv = np.array([[0.1, -0.1, 10.0, 0.0], [0.3, 0.2, -40.0, 0.1]])
    p4 = np.array([[100.0, 0, 5000, 5001], [-80, 0, 4000, 4001], [0, 300, 9000, 9020], [50, 150, 4500, 4510], [-50, 150, 4500, 4510]])
    rec = GeneratorRecord(
        n_events=1, event=np.zeros(5, np.int64), pid=np.array([211, -211, 310, 211, -211]), status=np.array([1, 1, 2, 1, 1]),
        p4=p4, mass=np.array([139.57, 139.57, 497.6, 139.57, 139.57]), parent=np.array([-1, -1, -1, 2, 2]),
        decay_pos=np.array([[np.nan] * 4, [np.nan] * 4, [0.3, 0.5, 60.0, 0.4], [np.nan] * 4, [np.nan] * 4]),
        interaction=np.array([0, 1, 1, 1, 1]), n_interactions=np.array([2]), pv=pv, is_signal=np.zeros(5, bool),
    )
    tables = layout_tables(rec)
    path = tmp_path / "two.duckdb"
    with mambah.EventStore.create(path) as s:
        s.write_batch(BatchRecord(0, 1, 1), {name: {"batch": np.zeros(len(t["event"]), np.int32), **t} for name, t in tables.items()})
    return path
