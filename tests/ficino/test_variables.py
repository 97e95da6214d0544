"""The variable registry: names, units, scopes, and the kinematic functions against scikit-hep vector."""

from __future__ import annotations

import numpy as np
import pytest
import vector

from ficino.variables import SCOPES, VARIABLES, Variable, register


def test_registry_is_consistent():
    assert len(VARIABLES) >= 50
    for name, var in VARIABLES.items():
        assert var.name == name
        assert var.scope in SCOPES
        assert var.unit in ("MeV", "mm", "ns", "rad", "")
        assert np.dtype(var.dtype).kind in "fi"
        assert var.doc
    for required in ("PX", "PY", "PZ", "PE", "P", "PT", "ETA", "PHI", "M", "TRUEID", "TRUEP_X", "TRUEP_E", "TRUEPT",
                     "MC_MOTHER_ID", "TRUEORIGINVERTEX_Z", "TRUEENDVERTEX_Z", "TRACK_Type", "TRACK_CHI2NDOF",
                     "TRACK_GhostProb", "IP", "IPCHI2", "RichDLLK", "PIDK", "isMuon", "ProbNNk", "MCORR", "FD",
                     "FDCHI2", "DIRA", "BKGCAT", "runNumber", "eventNumber", "nTracks", "nPVs"):
        assert required in VARIABLES, required


def test_units():
    assert VARIABLES["PT"].unit == "MeV"
    assert VARIABLES["FD"].unit == "mm"
    assert VARIABLES["IP"].unit == "mm"
    assert VARIABLES["PHI"].unit == "rad"


def test_register_refuses_duplicates_and_bad_scopes():
    with pytest.raises(ValueError, match="twice"):
        register(Variable("PT", "MeV", "again", "reco", lambda d: d["px"]))
    with pytest.raises(ValueError, match="scope"):
        register(Variable("NEWVAR", "MeV", "x", "nowhere", lambda d: d["px"]))
    assert "NEWVAR" not in VARIABLES


def test_kinematics_match_vector():
    rng = np.random.default_rng(3)
    n = 1000
    d = {"px": rng.normal(0, 1000, n), "py": rng.normal(0, 1000, n), "pz": rng.uniform(1e3, 1e5, n)}
    d["m"] = np.full(n, 493.677)
    d["e"] = np.sqrt(d["px"] ** 2 + d["py"] ** 2 + d["pz"] ** 2 + d["m"] ** 2)
    v = vector.array({"px": d["px"], "py": d["py"], "pz": d["pz"], "E": d["e"]})
    np.testing.assert_allclose(VARIABLES["PT"](d), v.pt, rtol=1e-12)
    np.testing.assert_allclose(VARIABLES["P"](d), v.p, rtol=1e-12)
    np.testing.assert_allclose(VARIABLES["ETA"](d), v.eta, rtol=1e-10)
    np.testing.assert_allclose(VARIABLES["PHI"](d), v.phi, rtol=1e-12)
    np.testing.assert_allclose(VARIABLES["PE"](d), v.E, rtol=1e-12)


def test_dtype_applied():
    out = VARIABLES["TRUEID"]({"pid": np.array([1.0, 2.0])})
    assert out.dtype == np.int32
