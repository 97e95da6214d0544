"""The b-hadron gun (``--spectrum b``) against Pythia 8's bbbar events (what ``mambah run --pythia bbbar`` runs)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from sim.generation.gun import HeavyHadronSpectrum

#: weakly decaying b hadrons, each counted once (a B0/B_s0 that mixes appears twice in Pythia's record)
_B_HADRONS = (511, 521, 531, 5122, 541, 5132, 5232, 5332)


@pytest.mark.slow
def test_b_hadron_rapidity_matches_pythia_bbbar() -> None:
    """Rapidity of Pythia 8 ``HardQCD:hardbbbar`` b hadrons at 13 TeV in the gun's 1.5 < y < 5.5 against the gun's
    truncated Gaussian (two-sample KS; σy = 2.4 gives p ~ 1e-20 on this sample).  pT (not tested): Pythia's LO
    b hadrons have ⟨pT⟩ 4.9 GeV in 2 < y < 4.5 against the gun's 5.1, and half the gun's tail above 20 GeV."""
    pythia8 = pytest.importorskip("pythia8mc")
    py = pythia8.Pythia("", False)
    for line in ("Print:quiet = on", "Beams:eCM = 13000.0", "HardQCD:hardbbbar = on", "Random:setSeed = on", "Random:seed = 7"):
        assert py.readString(line)
    assert py.init()
    ys = []
    for _ in range(6_000):
        if not py.next():
            continue
        ev = py.event
        for j in range(ev.size()):
            prt = ev[j]
            if abs(prt.id()) in _B_HADRONS and abs(ev[prt.mother1()].id()) not in (511, 531):
                ys.append(prt.y())
    y = np.asarray(ys)
    spec = HeavyHadronSpectrum("b")
    lo, hi = spec.y_range
    y = y[(y > lo) & (y < hi)]
    assert len(y) > 2_500
    px, py_, pz = spec.sample(200_000, 5279.7, np.random.default_rng(1))
    y_gun = np.arcsinh(pz / np.sqrt(px**2 + py_**2 + 5279.7**2))
    assert stats.ks_2samp(y, y_gun).pvalue > 1e-3
