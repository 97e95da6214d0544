"""The compiled BaryonPCR hadronic current (sim.generation._amplitude_kernels) equals the numpy form to round-off."""

from __future__ import annotations

import numpy as np
import pytest
from particle import Particle

from sim.generation import formfactors as ff
from sim.generation.amplitudes import NodeSpec, chain_weight
from sim.generation.sampling import three_body


def _mass(pid: int) -> float:
    return float(Particle.from_pdgid(pid).mass)


@pytest.mark.parametrize(("par", "had", "lep", "nu"), [(5122, 4122, 13, -14), (-5122, -4122, -13, 14), (5122, 14122, 11, -12)])
def test_compiled_current_equals_numpy(monkeypatch: pytest.MonkeyPatch, par: int, had: int, lep: int, nu: int) -> None:
    rng = np.random.default_rng(21)
    n = 6000
    pb = np.zeros((n, 4))
    pb[:, :3] = rng.normal(0.0, 20000.0, (n, 3))  # flying parents: the spin density in the lab
    pb[:, 3] = np.sqrt(np.sum(pb[:, :3] ** 2, axis=1) + _mass(par) ** 2)
    p4 = [pb, *three_body(pb, _mass(had), _mass(lep), 0.0, rng)]
    nodes = [NodeSpec(par, "BaryonPCR", (1.0, 1.0, 1.0, 1.0), (1, 2, 3), -1), NodeSpec(had, "", (), (), 0),
             NodeSpec(lep, "", (), (), 0), NodeSpec(nu, "", (), (), 0)]
    monkeypatch.setattr(ff, "COMPILED_MIN_DECAYS", 1)
    fast = chain_weight(nodes, p4)
    monkeypatch.setattr(ff, "COMPILED_MIN_DECAYS", 10**12)
    slow = chain_weight(nodes, p4)
    assert np.all(slow > 0)
    np.testing.assert_allclose(fast, slow, rtol=1e-12, atol=0)
