"""Selection labels from a Ficino cut agree with the same selection written in SQL."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ficino.selection import cut_selection
from mambah.errors import ExportError

FOUR_LONG_AND_PIDK = ("K_PIDK > 5 AND K_TRACK_Type = 3 AND p_TRACK_Type = 3 AND pi_TRACK_Type = 3 "
                      "AND mu_TRACK_Type = 3")


def test_ficino_cut_labels_match_the_sql_selection(tmp_path: Path) -> None:
    from sim.defaults import default_pipeline
    from sim.training.recipes.selection import LONG_AND_KAON_PID, event_labels, simulate_sample

    store = simulate_sample(default_pipeline(events=1500, batch_size=750, seed=31))
    sql = cut_selection(store, FOUR_LONG_AND_PIDK, tmp_path / "passes.parquet")
    keys_a, by_cut = event_labels(store, sql)
    keys_b, by_sql = event_labels(store, LONG_AND_KAON_PID)
    assert np.array_equal(keys_a, keys_b)
    assert 200 < by_sql.sum() < 600  # ~24 % of 1500
    assert (by_cut == by_sql).mean() >= 0.995
    with pytest.raises(ExportError):
        cut_selection(store, "K_NOSUCH > 5", tmp_path / "bad.parquet")
