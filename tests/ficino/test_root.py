"""Ficino's ROOT output read by CERN ROOT itself (``pip install 'mambah[root]'``).

``TFile``/``TTree::GetEntries`` and ``RDataFrame`` counts and means of a dozen
branches must equal what uproot reads and what SQL on the store says, for a
plain and a cut export.  The tree must be a ``TTree`` (uproot >= 5.7 writes an
RNTuple on ``file[name] = dict``; Ficino keeps ``mktree`` + ``extend``).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest

import ficino
import mambah

#: Branches compared; the store expression gives the same quantity per exported candidate (SQL on the store).
BRANCHES: dict[str, str] = {
    "Lb_TRUEP_Z": "lb.pz",
    "Lb_TRUEP_E": "lb.e",
    "Lc_TRUEP_X": "lc.px",
    "mu_TRUEP_Y": "mu.py",
    "K_TRUEID": "k.pid",
    "K_PX": "tk.px",
    "p_PZ": "tp.pz",
    # in DOUBLE: the store's momenta are FLOAT, whose products DuckDB keeps in single precision
    "pi_P": "sqrt(tpi.px::DOUBLE*tpi.px + tpi.py::DOUBLE*tpi.py + tpi.pz::DOUBLE*tpi.pz)",
    "mu_PT": "sqrt(tmu.px::DOUBLE*tmu.px + tmu.py::DOUBLE*tmu.py)",
    "K_TRACK_GhostProb": "tk.ghost_prob",
    "p_IPCHI2": "tp.ip_chi2",
    "eventNumber": "e.event",
    "runNumber": "e.batch",
    "nTracks": "e.n_tracks",
}

#: A cut on a true and a reconstructed variable, and the same condition in SQL on the store.
CUT = "Lb_TRUEP_Z > 160000 AND mu_PT > 800"
CUT_SQL = "lb.pz > 160000 AND sqrt(tmu.px::DOUBLE*tmu.px + tmu.py::DOUBLE*tmu.py) > 800"

# One row per event whose four final-state tracks (mu, p, K, pi: MC indices 2, 4, 5, 6 of the hand-built
# Lambda_b0 -> (Lambda_c+ -> p+ K- pi+) mu- anti-nu_mu events, see conftest) all have a protoparticle.
STORE_SQL = """
SELECT {columns}
FROM events e
JOIN mc_particles lb ON lb.batch = e.batch AND lb.event = e.event AND lb."index" = 0
JOIN mc_particles lc ON lc.batch = e.batch AND lc.event = e.event AND lc."index" = 1
JOIN mc_particles mu ON mu.batch = e.batch AND mu.event = e.event AND mu."index" = 2
JOIN mc_particles k ON k.batch = e.batch AND k.event = e.event AND k."index" = 5
JOIN protoparticles tmu ON tmu.batch = e.batch AND tmu.event = e.event AND tmu.mc_particle = 2
JOIN protoparticles tp ON tp.batch = e.batch AND tp.event = e.event AND tp.mc_particle = 4
JOIN protoparticles tk ON tk.batch = e.batch AND tk.event = e.event AND tk.mc_particle = 5
JOIN protoparticles tpi ON tpi.batch = e.batch AND tpi.event = e.event AND tpi.mc_particle = 6
WHERE {where}
"""


@pytest.fixture(scope="module")
def ROOT() -> ModuleType:
    """CERN ROOT, imported without its "alpha stage" notice (a UserWarning of the pip wheel)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=UserWarning, module="ROOT")
        root = pytest.importorskip("ROOT", reason="CERN ROOT not installed (pip install 'mambah[root]')")
        root.gROOT.SetBatch(True)
    return root


@pytest.fixture(scope="module")
def store(make_store: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[mambah.EventStore]:
    """2 batches x 200 hand-built events, 15 % of the tracks missing (so not every candidate is reconstructed)."""
    s = make_store(str(tmp_path_factory.mktemp("root") / "s.duckdb"), missing=0.15)
    yield s
    s.close()


def _store_columns(store: mambah.EventStore, where: str = "TRUE") -> dict[str, np.ndarray]:
    cols = ", ".join(f"{expr} AS {name}" for name, expr in BRANCHES.items())
    table = store.query(STORE_SQL.format(columns=cols, where=where))
    return {name: table.column(name).to_numpy().astype(np.float64) for name in BRANCHES}


@pytest.mark.parametrize("cut", [None, CUT], ids=["plain", "cut"])
def test_root_reads_the_ntuple(ROOT: ModuleType, store: mambah.EventStore, tmp_path: Path, cut: str | None) -> None:
    import uproot  # type: ignore[import-untyped]

    out = tmp_path / "ntuple.root"
    summary = ficino.to_root(store, out, cut=cut)
    expected = _store_columns(store, CUT_SQL if cut else "TRUE")
    n = len(expected["eventNumber"])
    assert 50 < n < summary.candidates  # the requirement (and the cut) removed candidates, and some remain
    assert summary.rows == n

    with uproot.open(out) as f:
        tree = f["DecayTree"]
        assert tree.classname == "TTree"  # not an RNTuple (uproot >= 5.7 writes one on file[name] = dict)
        assert tree.num_entries == n
        up = {name: np.asarray(tree[name].array(library="np"), np.float64) for name in BRANCHES}

    tfile = ROOT.TFile.Open(str(out))
    try:
        assert tfile and not tfile.IsZombie()
        ttree = tfile.Get("DecayTree")
        assert isinstance(ttree, ROOT.TTree) and ttree.ClassName() == "TTree"
        assert ttree.GetEntries() == n
        assert ttree.GetListOfBranches().GetEntries() == len(summary.columns)
    finally:
        tfile.Close()

    df = ROOT.RDataFrame("DecayTree", str(out))
    count = df.Count()
    means = {name: df.Mean(name) for name in BRANCHES}  # booked lazily: one event loop for all
    assert count.GetValue() == n
    for name, result in means.items():
        root_mean = result.GetValue()
        assert root_mean == pytest.approx(np.mean(up[name]), rel=1e-12, abs=1e-12), name
        assert root_mean == pytest.approx(np.mean(expected[name]), rel=1e-9), name


def test_root_reads_every_batch_in_order(ROOT: ModuleType, store: mambah.EventStore, tmp_path: Path) -> None:
    out = tmp_path / "order.root"
    ficino.to_root(store, out, variables=["runNumber", "eventNumber"])
    df = ROOT.RDataFrame("DecayTree", str(out))
    arrays = df.AsNumpy(["runNumber", "eventNumber"])
    expected = store.query(STORE_SQL.format(columns="e.batch AS b, e.event AS ev", where="TRUE") + " ORDER BY b, ev")
    np.testing.assert_array_equal(arrays["runNumber"], expected.column("b").to_numpy())
    np.testing.assert_array_equal(arrays["eventNumber"], expected.column("ev").to_numpy())


def test_root_is_an_extra_and_in_dev() -> None:
    """``pip install 'mambah[root]'`` (and ``[dev]``, so CI runs the tests above) brings CERN ROOT."""
    import configparser

    cfg = configparser.ConfigParser()
    cfg.read(Path(__file__).resolve().parents[2] / "setup.cfg")
    extras = {k: [r.split(">")[0].split("=")[0].strip() for r in v.split("\n") if r.strip()]
              for k, v in cfg["options.extras_require"].items()}
    assert "root" in extras["root"] and "root" in extras["dev"]
