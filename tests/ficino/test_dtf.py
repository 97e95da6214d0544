"""DecayTreeFitter-like mass (``_DTF_M``) and the event weight column, through the whole chain."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

import ficino
import mambah
from ficino.candidates import build_candidates, compute_columns, decay_spec, resolve_columns
from mambah.descriptor import lookup_particle
from sim.core.pipeline import Pipeline, RunConfig
from sim.core.runner import run
from sim.defaults import default_passes
from sim.generation.generator import Generator

DECAY = "B+ -> (J/psi(1S) -> mu+ mu-) K+"


def _half_width(x: np.ndarray) -> float:
    """Half the 16-84 % interval (a Gaussian's σ, robust to the radiative tail)."""
    return float(0.5 * np.subtract(*np.percentile(x, [84, 16])))


def test_dtf_mass_with_the_jpsi_constrained_beats_the_plain_mass(tmp_path: Path) -> None:
    passes = [Generator(decay=DECAY), *(p for p in default_passes()[1:] if p.kind not in ("pid", "calorimeter"))]
    run(Pipeline(tuple(passes), RunConfig(events=2000, batch_size=2000, seed=5)), tmp_path / "b.duckdb", progress=False)
    with mambah.EventStore.open(tmp_path / "b.duckdb", read_only=True) as s:
        ficino.to_parquet(s, tmp_path / "b.parquet", decay=DECAY)
    t = pq.read_table(tmp_path / "b.parquet").to_pandas()
    sig = t[t.B_BKGCAT == 0]
    assert len(sig) > 400
    m_b = lookup_particle(521).mass
    # measured at seed 5: 20.5 MeV plain, 10.8 MeV with the J/psi mass constrained (pulls 0.97 wide)
    assert _half_width(sig.B_DTF_M - m_b) < 0.7 * _half_width(sig.B_M - m_b)
    pull = (sig.B_DTF_M - m_b) / sig.B_DTF_MERR
    assert abs(np.median(pull)) < 0.15 and abs(_half_width(pull) - 1.0) < 0.15
    assert 0.5 < np.median(sig.B_DTF_CHI2NDOF) < 1.5
    assert t.Jpsi_DTF_M.isna().all()  # no narrow composite daughter: nothing to constrain
    assert "K_DTF_M" not in t.columns


def test_weight_column_is_the_event_weight_or_one(batch_tables: Callable[..., dict[str, pa.Table]]) -> None:
    store = mambah.EventStore.memory()
    t = batch_tables(0, 4)
    t["events"] = t["events"].append_column("weight", pa.array([2.5, None, 4.0, 1.25], pa.float64()))
    store.write_batch(mambah.BatchRecord(0, 4, 1), t)
    spec = decay_spec("Lambda_b0 -> (Lambda_c+ -> p+ K- pi+) mu- anti-nu_mu")
    cols = compute_columns(build_candidates(store, spec, 0), resolve_columns(spec, ["weight", "eventNumber"]))
    np.testing.assert_array_equal(cols["eventNumber"], [0, 1, 2, 3])
    np.testing.assert_array_equal(cols["weight"], [2.5, 1.0, 4.0, 1.25])  # NULL: weight 1
    store.close()
