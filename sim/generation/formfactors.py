"""Semileptonic form factors (ISGW2, HQET2/CLN, BaryonPCR) and their covariant amplitudes.

Form factors are pure functions of q² [GeV²] and the masses [GeV]; the amplitude of a
decay ``P → X ℓ ν`` is the hadronic current they define contracted with the V−A lepton
current, as in EvtGen (``EvtSemiLeptonicScalarAmp``, ``EvtSemiLeptonicVectorAmp``,
``EvtSLBaryonAmp``).  Conventions:

* P → P:  <P'|V^μ|P> = f+ (P^μ − (M²−m²)/q² q^μ) + f0 (M²−m²)/q² q^μ, P = p+p', q = p−p'.
* P → V (BSW):  <V|V^μ|P> = 2V/(M+m) · i ε^{μνρσ} ε*_ν p_ρ p'_σ;
  <V|A^μ|P> = (M+m) A1 ε*^μ − A2/(M+m) (ε*·p) P^μ − 2m (ε*·p)/q² (A3 − A0) q^μ,
  A3 = ((M+m) A1 − (M−m) A2)/(2m); the current is V − A.
* ½ → ½ (Pervin, Roberts, Capstick, Phys. Rev. C 72 (2005) 035201):
  ū'[F1 γ^μ + F2 v^μ + F3 v'^μ]u − ū'[G1 γ^μ + G2 v^μ + G3 v'^μ]γ5 u, v = p/M, v' = p'/m.

Models:

* ``ISGW2``: Scora & Isgur, Phys. Rev. D 52 (1995) 2783, with EvtGen's constituent
  quark masses and wave-function parameters (``EvtISGW2FF``), for the 1S0 (pseudoscalar)
  and 3S1 (vector) daughters of B0/B+ (→ D, D*, π, η, η′, ρ, ω), B_s0 (→ D_s, D_s*, K, K*),
  D0/D+ (→ K, K*, π, η, η′, ρ, ω) and D_s+ (→ K0, K*0, π0, η, η′, φ); P-wave 0+ and 1+
  daughters (EvtISGW2FF3P0/1P1/3P1: D_0*, D_1, D_1′, K_0*, K_1, K_1′, a_0, f_0, b_1, h_1, a_1,
  f_1, and the D_s ones from B_s0); tensors (EvtISGW2FF3P2: D_2*, D_s2*, K_2*, a_2, f_2) from
  b hadrons, with EvtSemiLeptonicTensorAmp's current.  For charm parents EvtGen's
  ``costhl_flag`` (V → −V) is applied.  Radially excited daughters are refused.
* ``HQET2``: the dispersive parametrisation of Caprini, Lellouch, Neubert, Nucl. Phys.
  B 530 (1998) 153 (CLN) with the DecFile's ρ², h_A1(1), R1(1), R2(1) [R0(1)] for
  B → D* ℓ ν, or ρ², V1(1) [Δ] for B → D ℓ ν (EvtGen ``EvtHQET2FF``: without R0/Δ the
  scalar/time-like form factor is zero, as there).
* ``BaryonPCR``: the constituent-quark-model form factors of Pervin, Roberts, Capstick
  (2005) for Λb → Λc+ and Λc(2593)+ (EvtGen ``EvtBaryonPCRFF``; the 1/2− daughter through γ5 u_B as
  ``EvtSLBaryonAmp``).

Analytic helicity formulas (:func:`helicity_pv`, :func:`dgamma_dq2_dcos`) are those of
Körner & Schuler, Z. Phys. C 46 (1990) 93, with θ the angle of the charged lepton in the
W rest frame to the W direction.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import numpy as np

from mambah.errors import DecayError

if TYPE_CHECKING:
    from sim.generation.amplitudes import NodeSpec

__all__ = (
    "check_model",
    "dgamma_dq2_dcos",
    "form_factors",
    "helicity_pp",
    "helicity_pv",
    "hqet2_scalar",
    "hqet2_vector",
    "isgw2_scalar",
    "isgw2_vector",
    "pcr_dirac",
    "semileptonic_tensor",
)

_B = frozenset({511, 521})
_BS = frozenset({531})
_D = frozenset({411, 421})
_DS = frozenset({431})
_LIGHT_P = frozenset({111, 211, 221, 331})
_K = frozenset({321, 311, 310, 130})
_K0 = frozenset({311, 310, 130})
_DP = frozenset({411, 421})
_RHO = frozenset({113, 213, 223})
_KST = frozenset({323, 313})
_DST = frozenset({413, 423})

# ----------------------------------------------------------------------------- ISGW2 (EvtISGW2FF)

#: parent constants: msb, msd, beta_B², m̄_B, n_f  [GeV]
_ISGW2_PARENT = {
    "B": (5.2, 0.33, 0.431**2, 5.31, 4.0),
    "Bs": (5.2, 0.55, 0.54**2, 5.38, 4.0),
    "D": (1.82, 0.33, 0.45**2, 1.963, 3.0),
    "Ds": (1.82, 0.55, 0.56**2, 1.968, 3.0),
}

#: 1S0 daughters: msq, beta_X², m̄_X, n_f'
_ISGW2_1S0 = {
    ("B", "light"): (0.33, 0.406**2, 0.75 * 0.770 + 0.25 * 0.14, 0.0),
    ("B", "D"): (1.82, 0.45**2, 0.75 * 2.01 + 0.25 * 1.87, 3.0),
    ("D", "light"): (0.33, 0.406**2, 0.75 * 0.770 + 0.25 * 0.14, 0.0),
    ("D", "K"): (0.55, 0.44**2, 0.75 * 0.892 + 0.25 * 0.49767, 2.0),
    ("Ds", "K0"): (0.33, 0.44**2, 0.75 * 0.770 + 0.25 * 0.14, 0.0),
    ("Ds", "light0"): (0.33, 0.53**2, 0.75 * 0.892 + 0.25 * 0.49767, 0.0),
    ("Bs", "Ds"): (1.82, 0.56**2, 0.75 * 2.11 + 0.25 * 1.97, 3.0),
    ("Bs", "Kc"): (0.55, 0.44**2, 0.75 * 0.892 + 0.25 * 0.49767, 2.0),
}

#: 3S1 daughters: cf, msq, beta_X², m̄_X, n_f'
_ISGW2_3S1 = {
    ("B", "Dst"): (0.989, 1.82, 0.38**2, 0.75 * 2.01 + 0.25 * 1.87, 3.0),
    ("B", "rho"): (0.905, 0.33, 0.299**2, 0.75 * 0.770 + 0.25 * 0.14, 0.0),
    ("D", "Kst"): (0.928, 0.55, 0.33**2, 0.75 * 0.892 + 0.25 * 0.494, 2.0),
    ("D", "rho"): (0.889, 0.33, 0.299**2, 0.75 * 0.770 + 0.25 * 0.14, 0.0),
    ("Ds", "Kst0"): (0.8731, 0.55, 0.33**2, 0.87, 2.0),
    ("Ds", "phi"): (0.911, 0.55, 0.37**2, 0.97, 2.0),
    ("Bs", "Dsst"): (0.984, 1.82, 0.49**2, 0.75 * 2.11 + 0.25 * 1.97, 3.0),
    ("Bs", "Kst"): (0.928, 0.55, 0.33**2, 0.75 * 0.892 + 0.25 * 0.494, 2.0),
}


_W_L0 = (3.0 * 1.23 + 0.98 + 5.0 * 1.32 + 3.0 * 1.26) / 12.0
_W_L1 = (3.0 * 1.123 + 0.98 + 5.0 * 1.32 + 3.0 * 1.26) / 12.0
_W_S0 = (3.0 * 1.40 + 1.43 + 5.0 * 1.43 + 3.0 * 1.27) / 12.0
_W_S1 = (3.0 * 1.27 + 1.43 + 5.0 * 1.43 + 3.0 * 1.4) / 12.0

#: P-wave daughters (EvtGen names without charge) -> (kind, daughter family)
_ISGW2_PWAVE_NAMES = {
    "a_0": ("3P0", "light"), "f_0": ("3P0", "light"), "f'_0": ("3P0", "light"),
    "D_0*": ("3P0", "D"), "K_0*": ("3P0", "K"), "D_s0*": ("3P0", "Ds"),
    "b_1": ("1P1", "light"), "h_1": ("1P1", "light"), "h'_1": ("1P1", "light"),
    "D_1": ("1P1", "D"), "K_1": ("1P1", "K"), "D_s1": ("1P1", "Ds"),
    "a_1": ("3P1", "light"), "f_1": ("3P1", "light"), "f'_1": ("3P1", "light"),
    "D'_1": ("3P1", "D"), "K'_1": ("3P1", "K"), "D'_s1": ("3P1", "Ds"),
    "a_2": ("3P2", "light"), "f_2": ("3P2", "light"), "f'_2": ("3P2", "light"),
    "D_2*": ("3P2", "D"), "K_2*": ("3P2", "K"), "D_s2*": ("3P2", "Ds"),
}  # fmt: skip

#: P-wave transitions (EvtISGW2FF3P0/1P1/3P1): (parent, kind, daughter family) -> msq, beta_X², m̄_X, n_f'
_ISGW2_PWAVE = {
    ("B", "3P0", "light"): (0.33, 0.275**2, _W_L0, 0.0),
    ("B", "3P0", "D"): (1.82, 0.33**2, (3.0 * 2.49 + 2.40) / 4.0, 3.0),
    ("D", "3P0", "light"): (0.33, 0.275**2, _W_L0, 0.0),
    ("D", "3P0", "K"): (0.55, 0.30**2, _W_S0, 2.0),
    ("Ds", "3P0", "light"): (0.55, 0.33**2, _W_S0, 2.0),
    ("Ds", "3P0", "K"): (0.33, 0.30**2, _W_L0, 0.0),
    ("Bs", "3P0", "Ds"): (1.82, 0.41**2, (3.0 * 2.54 + 2.46) / 4.0, 3.0),
    ("Bs", "3P0", "K"): (0.55, 0.30**2, _W_S0, 2.0),
    ("B", "1P1", "light"): (0.33, 0.275**2, _W_L1, 0.0),
    ("B", "1P1", "D"): (1.82, 0.33**2, (5.0 * 2.46 + 3.0 * 2.42) / 8.0, 3.0),
    ("D", "1P1", "light"): (0.33, 0.275**2, _W_L1, 0.0),
    ("D", "1P1", "K"): (0.55, 0.30**2, _W_S1, 2.0),
    ("Bs", "1P1", "Ds"): (1.82, 0.41**2, (5.0 * 2.61 + 3.0 * 2.54) / 8.0, 3.0),
    ("Bs", "1P1", "K"): (0.55, 0.30**2, _W_S1, 2.0),
    ("B", "3P1", "light"): (0.33, 0.275**2, _W_L0, 0.0),
    ("B", "3P1", "D"): (1.82, 0.33**2, (3.0 * 2.49 + 2.40) / 4.0, 3.0),
    ("D", "3P1", "light"): (0.33, 0.275**2, _W_L0, 0.0),
    ("D", "3P1", "K"): (0.55, 0.30**2, _W_S0, 2.0),
    ("Bs", "3P1", "Ds"): (1.82, 0.41**2, (3.0 * 2.54 + 2.46) / 4.0, 3.0),
    ("Bs", "3P1", "K"): (0.55, 0.30**2, _W_S0, 2.0),
    # tensors (EvtISGW2FF3P2) from b hadrons only: EvtGen flips the sign of h for charm parents
    ("B", "3P2", "light"): (0.33, 0.275**2, _W_L0, 0.0),
    ("B", "3P2", "D"): (1.82, 0.33**2, (5.0 * 2.46 + 3.0 * 2.42) / 8.0, 3.0),
    ("Bs", "3P2", "Ds"): (1.82, 0.41**2, (5.0 * 2.61 + 3.0 * 2.54) / 8.0, 3.0),
    ("Bs", "3P2", "K"): (0.55, 0.30**2, _W_S0, 2.0),
}


def _pwave_key(parent: int, daughter: int) -> tuple[str, tuple[str, str, str]] | None:
    """(kind, table key) of an ISGW2 P-wave transition (by the daughter's EvtGen name), or None."""
    import re

    fam = _family(parent)
    if fam is None:
        return None
    from particle import Particle

    try:
        name = Particle.from_pdgid(abs(daughter)).evtgen_name
    except Exception:
        return None
    base = re.sub(r"^anti-", "", str(name))
    base = re.sub(r"(\+\+|--|\+|-|0)$", "", base) if base not in ("f_0", "f'_0") else base
    hit = _ISGW2_PWAVE_NAMES.get(base)
    if hit is None:
        return None
    key = (fam, hit[0], hit[1])
    return (hit[0], key) if key in _ISGW2_PWAVE else None


def _family(parent: int) -> str | None:
    a = abs(parent)
    return "B" if a in _B else "Bs" if a in _BS else "D" if a in _D else "Ds" if a in _DS else None


def _isgw2_key(parent: int, daughter: int) -> tuple[str, tuple[str, str]] | None:
    """('1S0' or '3S1', table key) of an ISGW2 transition, or None."""
    fam = _family(parent)
    d = abs(daughter)
    if fam is None:
        return None
    if fam == "B":
        if d in _LIGHT_P:
            return "1S0", ("B", "light")
        if d in _DP:
            return "1S0", ("B", "D")
        if d in _DST:
            return "3S1", ("B", "Dst")
        if d in _RHO:
            return "3S1", ("B", "rho")
    if fam == "D":
        if d in _LIGHT_P:
            return "1S0", ("D", "light")
        if d in _K:
            return "1S0", ("D", "K")
        if d in _KST:
            return "3S1", ("D", "Kst")
        if d in _RHO:
            return "3S1", ("D", "rho")
    if fam == "Ds":
        if d in _K0:
            return "1S0", ("Ds", "K0")
        if d in (111, 221, 331):
            return "1S0", ("Ds", "light0")
        if d == 313:
            return "3S1", ("Ds", "Kst0")
        if d == 333:
            return "3S1", ("Ds", "phi")
    if fam == "Bs":
        if d == 431:
            return "1S0", ("Bs", "Ds")
        if d == 321:
            return "1S0", ("Bs", "Kc")
        if d == 433:
            return "3S1", ("Bs", "Dsst")
        if d in _KST:
            return "3S1", ("Bs", "Kst")
    return None


def _alpha_s(massq: float, massx: float) -> float:
    """EvtISGW2FF::EvtGetas: one-loop α_s with Λ² = 0.04 GeV², frozen at 0.6 below 0.6 GeV."""
    if massx <= 0.6:
        return 0.6
    nflav = 3.0 if massq < 1.85 else 4.0
    return 12.0 * math.pi / (33.0 - 2.0 * nflav) / math.log(massx * massx / 0.04)


def _gammaji(z: float) -> float:
    return -(2.0 + (2.0 * z / (1.0 - z)) * math.log(z))


def _isgw2_common(parent: int, daughter: int, kind: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    key = _isgw2_key(parent, daughter)
    if key is None or key[0] != kind:
        raise DecayError(f"ISGW2 transition {parent} -> {daughter} is not implemented; {_ISGW2_DOC}")
    return _ISGW2_PARENT[key[1][0]], (_ISGW2_1S0 if kind == "1S0" else _ISGW2_3S1)[key[1]]


_ISGW2_DOC = (
    "ISGW2 has B0/B+ -> D, D*, D_0*, D_1, D'_1, pi, eta, eta', rho, omega, a_0, f_0, b_1, h_1, a_1, f_1; "
    "B_s0 -> D_s, D_s*, D_s0*, D_s1, D'_s1, K+, K*, K_0*, K_1, K'_1; "
    "D0/D+ -> K, K*, K_0*, K_1, K'_1, pi, eta, eta', rho, omega, a_0, f_0, b_1, h_1, a_1, f_1; "
    "D_s+ -> K0, K*0, K_0*, pi0, eta, eta', phi, a_0, f_0; tensors (D_2*, D_s2*, K_2*, a_2, f_2) from B0/B+/B_s0"
)


def isgw2_scalar(parent: int, daughter: int, q2: np.ndarray, mb: float, mx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """ISGW2 form factors (f+, f0) of a pseudoscalar → pseudoscalar transition.

    Args:
        parent, daughter: PDG ids (charge conjugates alike).
        q2: ``(n,)`` momentum transfer squared [GeV²].
        mb: parent mass [GeV] (EvtGen: the nominal mass).
        mx: ``(n,)`` or scalar daughter mass [GeV].

    Returns:
        (f+, f0), each ``(n,)``, dimensionless.
    """
    (msb, msd, bb2, mbb, nf), (msq, bx2, mbx, nfp) = _isgw2_common(parent, daughter, "1S0")
    q2 = np.asarray(q2, dtype=np.float64)
    mx = np.broadcast_to(np.asarray(mx, dtype=np.float64), q2.shape)
    mtb, mtx = msb + msd, msq + msd
    mup = 1.0 / (1.0 / msq + 1.0 / msb)
    bbx2 = 0.5 * (bb2 + bx2)
    tm = (mb - mx) ** 2
    t = np.where(q2 > tm, 0.99 * tm, q2)
    r2 = (
        3.0 / (4.0 * msb * msq)
        + 3 * msd * msd / (2 * mbb * mbx * bbx2)
        + (16.0 / (mbb * mbx * (33.0 - 2.0 * nfp))) * math.log(_alpha_s(0.1, 0.1) / _alpha_s(msq, msq))
    )
    f3 = math.sqrt(mtx / mtb) * (math.sqrt(bx2 * bb2) / bbx2) ** 1.5 / (1.0 + r2 * (tm - t) / 12.0) ** 2
    ai = -6.0 / (33.0 - 2.0 * nf)
    cji = (_alpha_s(msb, msb) / _alpha_s(msq, msq)) ** ai
    zji = msq / msb
    gji = _gammaji(zji)
    chiji = -1.0 - gji / (1 - zji)
    a_s = _alpha_s(msq, math.sqrt(msb * msq))
    rfppfm = cji * (1.0 + (gji - (2.0 / 3.0) * chiji) * a_s / math.pi)
    rfpmfm = cji * (1.0 + (gji + (2.0 / 3.0) * chiji) * a_s / math.pi)
    f3fppfm = f3 * (mbb / mtb) ** -0.5 * (mbx / mtx) ** 0.5
    f3fpmfm = f3 * (mbb / mtb) ** 0.5 * (mbx / mtx) ** -0.5
    corr = 1 - (msd * msq * bb2) / (2.0 * mup * mtx * bbx2)
    fppfm = f3fppfm * rfppfm * (2.0 - (mtx / msq) * corr)
    fpmfm = f3fpmfm * rfpmfm * (mtb / msq) * corr
    fp = (fppfm + fpmfm) / 2.0
    fm = (fppfm - fpmfm) / 2.0
    with np.errstate(divide="ignore", invalid="ignore"):
        f0 = fm / ((mb * mb - mx * mx) / q2) + fp
    return fp, np.where(q2 > 0, f0, fp)


def isgw2_vector(
    parent: int, daughter: int, q2: np.ndarray, mb: float, mx: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """ISGW2 form factors (A1, A2, V, A0) of a pseudoscalar → vector transition.

    Args: as :func:`isgw2_scalar`.

    Returns:
        (A1, A2, V, A0), each ``(n,)``, dimensionless (BSW convention).
    """
    (msb, msd, bb2, mbb, nf), (cf, msq, bx2, mbx, nfp) = _isgw2_common(parent, daughter, "3S1")
    q2 = np.asarray(q2, dtype=np.float64)
    mx = np.broadcast_to(np.asarray(mx, dtype=np.float64), q2.shape)
    mtb, mtx = msb + msd, msq + msd
    mup = 1.0 / (1.0 / msq + 1.0 / msb)
    mum = 1.0 / (1.0 / msq - 1.0 / msb)
    bbx2 = 0.5 * (bb2 + bx2)
    tm = (mb - mx) ** 2
    t = np.where(q2 > tm, 0.99 * tm, q2)
    wt = 1.0 + (tm - t) / (2.0 * mbb * mbx)
    r2 = (
        3.0 / (4.0 * msb * msq)
        + 3 * msd * msd / (2 * mbb * mbx * bbx2)
        + (16.0 / (mbb * mbx * (33.0 - 2.0 * nfp))) * math.log(_alpha_s(0.1, 0.1) / _alpha_s(msq, msq))
    )
    ai = -6.0 / (33.0 - 2.0 * nf)
    cji = (_alpha_s(msb, msb) / _alpha_s(msq, msq)) ** ai
    zji = msq / msb
    gji = _gammaji(zji)
    chiji = -1.0 - gji / (1 - zji)
    b_g = 2.0 / 3.0 + gji
    b_f = -2.0 / 3.0 + gji
    b_appam = -1.0 - chiji + 4.0 / (3.0 * (1.0 - zji)) + 2.0 * (1 + zji) * gji / (3.0 * (1.0 - zji) ** 2)
    b_apmam = 1.0 / 3.0 - chiji - 4.0 / (3.0 * (1.0 - zji)) - 2.0 * (1 + zji) * gji / (3.0 * (1.0 - zji) ** 2) + gji
    a_s = _alpha_s(msq, math.sqrt(mb * msq))
    r_g = cji * (1 + b_g * a_s / math.pi)
    r_f = cji * (1 + b_f * a_s / math.pi)
    r_apmam = cji * (1 + b_apmam * a_s / math.pi)
    f3 = math.sqrt(mtx / mtb) * (math.sqrt(bx2 * bb2) / bbx2) ** 1.5 / (1.0 + r2 * (tm - t) / 12.0) ** 2
    f3f = math.sqrt(mbx * mbb / (mtx * mtb)) * f3
    f3g = math.sqrt(mtx * mtb / (mbx * mbb)) * f3
    f3appam = math.sqrt(mtb**3 * mbx / (mbb**3 * mtx)) * f3
    f3apmam = math.sqrt(mtx * mtb / (mbx * mbb)) * f3
    f = cf * mtb * (1 + wt + msd * (wt - 1) / (2 * mup)) * f3f * r_f
    g = 0.5 * (1 / msq - msd * bb2 / (2 * mum * mtx * bbx2)) * f3g * r_g
    k = msd * bx2 * (1 - msd * bx2 / (2 * mtb * bbx2))
    appam = cji * (k / ((1 + wt) * msq * msb * bbx2) - b_appam * a_s / (mtb * math.pi)) * f3appam
    apmam = -(mtb / msb - msd * bx2 / (2 * mup * bbx2) + wt * msd * mtb * bx2 * (1 - msd * bx2 / (2 * mtb * bbx2)) / ((wt + 1) * msq * msb * bbx2)) * f3apmam * r_apmam / mtx
    ap = 0.5 * (appam + apmam)
    am = 0.5 * (appam - apmam)
    vf = g * (mb + mx)
    a1 = f / (mb + mx)
    a2 = -ap * (mb + mx)
    a3 = ((mb + mx) / (2.0 * mx)) * a1 - ((mb - mx) / (2.0 * mx)) * a2
    a0 = a3 + q2 * am / (2.0 * mx)
    return a1, a2, vf, a0


def _pwave_common(
    parent: int, daughter: int, q2: np.ndarray, mb: float, mx: np.ndarray
) -> tuple[str, tuple[float, ...], np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    hit = _pwave_key(parent, daughter)
    if hit is None:
        raise DecayError(f"ISGW2 transition {parent} -> {daughter} is not implemented; {_ISGW2_DOC}")
    kind, key = hit
    msb, msd, bb2, mbb, _nf = _ISGW2_PARENT[key[0]]
    msq, bx2, mbx, nfp = _ISGW2_PWAVE[key]
    q2 = np.asarray(q2, dtype=np.float64)
    mx = np.broadcast_to(np.asarray(mx, dtype=np.float64), q2.shape)
    bbx2 = 0.5 * (bb2 + bx2)
    tm = (mb - mx) ** 2
    t = np.where(q2 > tm, 0.99 * tm, q2)
    wt = 1.0 + (tm - t) / (2.0 * mbb * mbx)
    r2 = (
        3.0 / (4.0 * msb * msq)
        + 3 * msd * msd / (2 * mbb * mbx * bbx2)
        + (16.0 / (mbb * mbx * (33.0 - 2.0 * nfp))) * math.log(_alpha_s(0.1, 0.1) / _alpha_s(msq, msq))
    )
    mtb, mtx = msb + msd, msq + msd
    f5 = math.sqrt(mtx / mtb) * (math.sqrt(bx2 * bb2) / bbx2) ** 2.5 / (1.0 + r2 * (tm - t) / 18.0) ** 3
    return kind, (msb, msd, bb2, mbb, msq, bx2, mbx, mtb, mtx, bbx2), f5, wt, t, mx


def isgw2_pwave(parent: int, daughter: int, q2: np.ndarray, mb: float, mx: np.ndarray) -> tuple[np.ndarray, ...]:
    """ISGW2 form factors of P-wave daughters (EvtISGW2FF3P0, 1P1, 3P1).

    Returns:
        (f+, f0) for a 0+ daughter (D_0*, K_0*, a_0, f_0); (A1, A2, V, A0) for a 1+ daughter
        (D_1, D_1', K_1, K_1', b_1, a_1, …), converted as EvtISGW2FF::getvectorff; ISGW's
        (h, k, b+, b−) [GeV⁻², 1, GeV⁻², GeV⁻²] for a 2+ daughter (D_2*, D_s2*, K_2*, a_2, f_2).
    """
    kind, (msb, msd, bb2, mbb, msq, bx2, mbx, mtb, mtx, bbx2), f5, wt, t, mx = _pwave_common(parent, daughter, q2, mb, mx)
    del mbb
    if kind == "3P2":
        mbb = _ISGW2_PARENT[_family(parent) or "B"][3]
        mum = 1.0 / (1.0 / msq - 1.0 / msb)
        mup = 1.0 / (1.0 / msq + 1.0 / msb)
        f5h = f5 * (mbb / mtb) ** -1.5 * (mbx / mtx) ** -0.5
        f5k = f5 * (mbb / mtb) ** -0.5 * (mbx / mtx) ** 0.5
        f5bpp = f5 * (mbb / mtb) ** -2.5 * (mbx / mtx) ** 0.5
        f5bpm = f5 * (mbb / mtb) ** -1.5 * (mbx / mtx) ** -0.5
        hf = f5h * (msd / (math.sqrt(8.0 * bb2) * mtb)) * (1.0 / msq - msd * bb2 / (2.0 * mum * mtx * bbx2))
        kf = f5k * (msd / math.sqrt(2.0 * bb2)) * (1.0 + wt)
        bppbm = (msd * msd * f5bpp * bx2) / (math.sqrt(32.0 * bb2) * msq * msb * mtb * bbx2) * (1.0 - msd * bx2 / (2.0 * mtb * bbx2))
        bpmbm = -(msd * f5bpm / (math.sqrt(2.0 * bb2) * msb * mtx)) * (
            1.0 - (msd * msb * bx2) / (2.0 * mup * mtb * bbx2) + (msd * bx2 * (1.0 - msd * bx2 / (2.0 * mtb * bbx2))) / (4.0 * msq * bbx2)
        )
        del t
        return hf, kf, (bppbm + bpmbm) / 2.0, (bppbm - bpmbm) / 2.0
    if kind == "3P0":
        f5uppum = f5 * (_ISGW2_PARENT[_family(parent) or "B"][3] / mtb) ** -0.5 * (mbx / mtx) ** 0.5
        f5upmum = f5 * (_ISGW2_PARENT[_family(parent) or "B"][3] / mtb) ** 0.5 * (mbx / mtx) ** -0.5
        uppum = -f5uppum * math.sqrt(2.0 / (3.0 * bb2)) * msd
        upmum = f5upmum * math.sqrt(2.0 / (3.0 * bb2)) * msd * mtb / mtx
        fp = (uppum + upmum) / 2.0
        fm = (uppum - upmum) / 2.0
        with np.errstate(divide="ignore", invalid="ignore"):
            f0 = fm / ((mb * mb - mx * mx) / q2) + fp
        return fp, np.where(np.asarray(q2) > 0, f0, fp)
    mbb = _ISGW2_PARENT[_family(parent) or "B"][3]
    mum = 1.0 / (1.0 / msq - 1.0 / msb)
    mup = 1.0 / (1.0 / msq + 1.0 / msb)
    f5a = f5 * (mbb / mtb) ** -0.5 * (mbx / mtx) ** -0.5  # f5v / f5q
    f5b = f5 * (mbb / mtb) ** 0.5 * (mbx / mtx) ** 0.5  # f5r / f5l
    f5pp = f5 * (mbb / mtb) ** -1.5 * (mbx / mtx) ** 0.5
    f5pm = f5 * (mbb / mtb) ** -0.5 * (mbx / mtx) ** -0.5
    sb = math.sqrt(bb2)
    if kind == "1P1":
        if msq == msd:
            gg = f5a * ((mtb * sb) / (4.0 * math.sqrt(2.0) * msb * msq * mtx) + ((wt - 1) * msd) / (6.0 * math.sqrt(2.0 * bb2) * mtx))
            ff = f5b * mtb * math.sqrt(bb2 / 2) * (1.0 / mup + (msd * mtx * (wt - 1) ** 2) / (3.0 * msq * bb2))
            spp = msd * f5pp / (math.sqrt(2.0 * bb2) * mtb) * (1.0 - msd / msq + (msd * bb2) / (2.0 * mup * bbx2))
            spm = msd * f5pm / (math.sqrt(2.0 * bb2) * msq) * ((4 - wt) / 3.0 - (msd * msq * bb2) / (2.0 * mtx * mup * bbx2))
        else:
            gg = -msd * f5a / (2.0 * math.sqrt(3.0 * bb2) * mtx) * ((wt + 1) / 2.0 + bb2 * mtb / (2.0 * msd * msq * msb))
            ff = -2.0 * mtb * math.sqrt(bb2 / 3.0) * f5b * (
                1.0 / msq + mtx * msd * (wt - 1) / (2.0 * bb2) * ((wt + 1) / (2.0 * msq) - msd * bb2 / (2.0 * mum * mtx * bbx2))
            )
            spp = -math.sqrt(3.0) * msd * f5pp / (2.0 * sb * mtb) * (
                1 - msd / (3.0 * msq) - msd * bb2 / (3.0 * bbx2) * (1.0 / (2.0 * mum) - 1.0 / mup)
            )
            spm = -msd * f5pm / (2.0 * math.sqrt(3.0 * bb2) * mtx) * ((2 - wt) * mtx / msq + msd * bb2 / bbx2 * (1.0 / (2.0 * mum) - 1.0 / mup))
    elif msq == msd:  # 3P1, light daughter
        gg = -(msd * (5.0 + wt) * f5a / (2.0 * mtx * sb * 6.0))
        ff = -mtb * sb * f5b * (1 / mum + (msd * mtx * (wt - 1) / bb2) * ((5.0 + wt) / (6.0 * msq) - (msd * bb2) / (2.0 * mum * mtx * bbx2)))
        spp = -(msd * mtx * f5pp / (2.0 * msq * mtb * sb)) * (1 - (msd * msq * bb2) / (2.0 * mtx * mum * bbx2))
        spm = (msd * mtx * f5pm / (2.0 * msq * mtb * sb)) * ((wt + 2.0) / 3.0 - (msd * msq * bb2) / (2.0 * mtx * mum * bbx2)) * (mtb / mtx)
    else:  # 3P1
        gg = f5a * math.sqrt(1.0 / 6.0) * msd / (sb * mtx) * (1.0 - bb2 * mtb / (4.0 * msd * msq * msb))
        ff = f5b * math.sqrt(2.0 / 3.0) * mtb * sb * (
            1.0 / (2.0 * msq) - 3.0 / (2.0 * msb) + msd * mtx * (wt - 1) / bb2 * (1.0 / msq - msd * bb2 / (2.0 * mum * mtx * bbx2))
        )
        spp = msd * msd * bx2 * f5pp / (math.sqrt(6.0) * mtb * msq * sb * bbx2)
        spm = -math.sqrt(2.0 / 3.0) * msd * f5pm / (sb * mtx) * (1 + msd * bx2 / (2.0 * msq * bbx2))
    # EvtGen: "smooth out the mass(meson) dependence a little"
    from sim.generation.amplitudes import _pdata

    m_nom = _pdata(daughter)[1] * 1e-3
    q2max = mb * mb + mx * mx - 2.0 * mb * mx
    q2max_nom = mb * mb + m_nom * m_nom - 2.0 * mb * m_nom
    scale = np.minimum(np.sqrt(q2max_nom / q2max), 1000.0)
    gg, ff, spp, spm = gg * scale, ff * scale, spp * scale, spm * scale
    ap, am = (spp + spm) / 2.0, (spp - spm) / 2.0
    vf = gg * (mb + mx)
    a1 = ff / (mb + mx)
    a2 = -ap * (mb + mx)
    a3 = ((mb + mx) / (2.0 * mx)) * a1 - ((mb - mx) / (2.0 * mx)) * a2
    a0 = a3 + np.asarray(q2) * am / (2.0 * mx)
    del t
    return a1, a2, vf, a0


# ----------------------------------------------------------------------------- HQET2 (CLN)


def _cln_z(w: np.ndarray) -> np.ndarray:
    return (np.sqrt(w + 1) - math.sqrt(2.0)) / (np.sqrt(w + 1) + math.sqrt(2.0))


def hqet2_scalar(params: Sequence[float], q2: np.ndarray, mb: float, mx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """CLN form factors (f+, f0) of B → D ℓ ν; ``params`` = (ρ², V1(1)[, Δ]) (EvtGen HQET2).

    Args:
        params: DecFile parameters; with Δ the scalar form factor of Tanaka & Watanabe,
            Phys. Rev. D 82 (2010) 034027, else f0 = 0 (as EvtGen).
        q2: ``(n,)`` [GeV²]; mb, mx: masses [GeV].
    """
    q2 = np.asarray(q2, dtype=np.float64)
    mx = np.broadcast_to(np.asarray(mx, dtype=np.float64), q2.shape)
    rho2, v11 = params[0], params[1]
    w = (mb * mb + mx * mx - q2) / (2.0 * mb * mx)
    z = _cln_z(w)
    v1 = v11 * (1.0 - 8.0 * rho2 * z + (51.0 * rho2 - 10.0) * z**2 - (252.0 * rho2 - 84.0) * z**3)
    f0 = np.zeros_like(v1)
    if len(params) == 3:
        delta = params[2]
        r = mx / mb
        s1 = v1 * (1 + delta * (-0.019 + 0.041 * (w - 1) - 0.015 * (w - 1) ** 2))
        f0 = s1 * (w + 1.0) * 2.0 * r / (r + 1.0) ** 2
    return v1, f0


def hqet2_vector(
    params: Sequence[float], q2: np.ndarray, mb: float, mx: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """CLN form factors (A1, A2, V, A0) of B → D* ℓ ν; ``params`` = (ρ², h_A1(1), R1(1), R2(1)[, R0(1)]).

    R0(w) of Fajfer, Kamenik, Nisandzic, Phys. Rev. D 85 (2012) 094025 when given (else A0 = 0, as EvtGen).
    """
    q2 = np.asarray(q2, dtype=np.float64)
    mx = np.broadcast_to(np.asarray(mx, dtype=np.float64), q2.shape)
    rho2, ha11, r11, r21 = params[:4]
    w = (mb * mb + mx * mx - q2) / (2.0 * mb * mx)
    rstar = 2.0 * np.sqrt(mb * mx) / (mb + mx)
    z = _cln_z(w)
    ha1 = ha11 * (1.0 - 8.0 * rho2 * z + (53.0 * rho2 - 15.0) * z**2 - (231.0 * rho2 - 91.0) * z**3)
    r1 = r11 - 0.12 * (w - 1) + 0.05 * (w - 1) ** 2
    r2 = r21 + 0.11 * (w - 1) - 0.06 * (w - 1) ** 2
    a1 = (1.0 - q2 / (mb + mx) ** 2) * ha1 / rstar
    a2 = (r2 / rstar) * ha1
    vf = (r1 / rstar) * ha1
    a0 = np.zeros_like(a1)
    if len(params) == 5:
        r0 = params[4] - 0.11 * (w - 1) + 0.01 * (w - 1) ** 2
        a0 = (r0 / rstar) * ha1
    return a1, a2, vf, a0


# ----------------------------------------------------------------------------- BaryonPCR


def pcr_dirac(q2: np.ndarray, mb: float, mx: np.ndarray, daughter: int = 4122) -> tuple[np.ndarray, ...]:
    """Pervin–Roberts–Capstick form factors (F1, F2, F3, G1, G2, G3) of Λb → Λc(2286) or Λc(2593) (EvtBaryonPCRFF).

    Args:
        q2: ``(n,)`` [GeV²]; mb, mx: Λb and Λc masses [GeV].
        daughter: 4122 (Λc+, 1/2+) or 14122 (Λc(2593)+, 1/2−).
    """
    q2 = np.asarray(q2, dtype=np.float64)
    mx = np.broadcast_to(np.asarray(mx, dtype=np.float64), q2.shape)
    m_big, m_q, m_d = 5.28, 1.89, 0.40
    al, alp = 0.59, (0.47 if abs(daughter) == 14122 else 0.55)
    al2, alp2 = al * al, alp * alp
    all2 = 0.5 * (al2 + alp2)
    rho2 = 3.0 * m_d * m_d / (2.0 * all2)
    w = 0.5 * (mb * mb + mx * mx - q2) / mb / mx
    if abs(daughter) == 14122:
        i_w = (al * alp / all2) ** 2.5 * np.exp(-rho2 * (w * w - 1.0))
        k = m_d * al / (6.0 * m_q * m_big * all2) * (3.0 * al2 - 2.0 * alp2)
        f1 = i_w * al / 6.0 * (3.0 / m_q - 1.0 / m_big)
        f2 = -i_w * (2.0 * m_d / al - al / (2.0 * m_q) + 2.0 * m_d * m_d * al / (m_big * all2) - k)
        f3 = i_w * 2.0 * m_d * m_d * al / (m_big * all2)
        g1 = i_w * (2.0 * m_d / al - al / (6.0 * m_big) + k)
        g2 = i_w * (-2.0 * m_d / al + al / (2.0 * m_q) + al / (3.0 * m_big))
        g3 = i_w * al / (3.0 * m_big) * (1.0 - (m_d / (2.0 * m_q * all2)) * (3.0 * al2 - 2.0 * alp2))
        return f1, f2, f3, g1, g2, g3
    i_w = (al * alp / all2) ** 1.5 * np.exp(-rho2 * (w * w - 1.0))
    f1 = i_w * (1.0 + (m_d / all2) * (alp2 / m_q + al2 / m_big))
    f2 = -i_w * ((m_d / m_q) * (alp2 / all2) - al2 * alp2 / (4.0 * all2 * m_q * m_big))
    f3 = -i_w * m_d * al2 / (m_big * all2)
    g1 = i_w * (1.0 - (al2 * alp2) / (12.0 * all2 * m_q * m_big))
    g2 = -i_w * (m_d * alp2 / (m_q * all2) + (al2 * alp2) / (12.0 * all2 * m_q * m_big) * (1.0 + 12.0 * m_d * m_d / all2))
    g3 = i_w * (m_d * al2 / (m_big * all2) + m_d * m_d * al2 * alp2 / (m_q * m_big * all2 * all2))
    return f1, f2, f3, g1, g2, g3


# ----------------------------------------------------------------------------- analytic helicity formulas


def _pmag(mb: float | np.ndarray, mx: float | np.ndarray, q2: np.ndarray) -> np.ndarray:
    lam = (mb * mb - mx * mx - q2) ** 2 - 4.0 * mx * mx * q2
    return np.sqrt(np.maximum(lam, 0.0)) / (2.0 * mb)


def helicity_pp(fp: np.ndarray, f0: np.ndarray, q2: np.ndarray, mb: float, mx: float) -> tuple[np.ndarray, np.ndarray]:
    """(H0, Ht) of P → P ℓ ν: H0 = 2M|p| f+/√q², Ht = (M²−m²) f0/√q² [GeV]."""
    p = _pmag(mb, mx, q2)
    sq = np.sqrt(q2)
    return 2.0 * mb * p * fp / sq, (mb * mb - mx * mx) * f0 / sq


def helicity_pv(
    a1: np.ndarray, a2: np.ndarray, vf: np.ndarray, a0: np.ndarray, q2: np.ndarray, mb: float, mx: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(H+, H−, H0, Ht) of P → V ℓ ν (Körner–Schuler; H± = (M+m)A1 ∓ 2M|p| V/(M+m)) [GeV]."""
    p = _pmag(mb, mx, q2)
    sq = np.sqrt(q2)
    hp = (mb + mx) * a1 - 2.0 * mb * p * vf / (mb + mx)
    hm = (mb + mx) * a1 + 2.0 * mb * p * vf / (mb + mx)
    h0 = ((mb * mb - mx * mx - q2) * (mb + mx) * a1 - 4.0 * mb * mb * p * p * a2 / (mb + mx)) / (2.0 * mx * sq)
    ht = 2.0 * mb * p * a0 / sq
    return hp, hm, h0, ht


def dgamma_dq2_dcos(
    hp: np.ndarray, hm: np.ndarray, h0: np.ndarray, ht: np.ndarray, q2: np.ndarray, cos: np.ndarray, m_lep: float, mb: float, mx: float
) -> np.ndarray:
    """d²Γ/dq² dcosθ (arbitrary units) of P → X ℓ⁻ ν̄ from helicity amplitudes (Körner–Schuler).

    θ: angle of ℓ⁻ in the W rest frame to the W direction in the parent frame.
    ∝ |p| q² (1−m²/q²)² [ (1+c)²|H−|² + (1−c)²|H+|² + 2 s²|H0|²
    + m²/q² ( s²(|H+|²+|H−|²) + 2 |Ht − c H0|² ) ].
    """
    p = _pmag(mb, mx, q2)
    c = cos
    s2 = 1.0 - c * c
    v = np.maximum(1.0 - m_lep**2 / q2, 0.0)
    nf = (1 + c) ** 2 * hm**2 + (1 - c) ** 2 * hp**2 + 2 * s2 * h0**2
    fl = (m_lep**2 / q2) * (s2 * (hp**2 + hm**2) + 2 * (ht - c * h0) ** 2)
    return p * q2 * v * v * (nf + fl)


# ----------------------------------------------------------------------------- model dispatch


def check_model(model: str, parent: int, daughter: int, params: Sequence[float]) -> None:
    """Raise :class:`DecayError` unless ``model`` can describe parent → daughter ℓ ν with ``params``."""
    from sim.generation.amplitudes import _pdata

    j2x = _pdata(daughter)[0]
    pname, dname = _pdata(parent)[2], _pdata(daughter)[2]
    if model == "ISGW2":
        key = _isgw2_key(parent, daughter)
        if key is None and _pwave_key(parent, daughter) is None:
            raise DecayError(f"ISGW2 transition {pname} -> {dname} is not implemented; {_ISGW2_DOC}")
        if j2x not in (0, 2, 4):
            raise DecayError(f"ISGW2 needs a daughter of spin 0, 1 or 2; {dname} has spin {j2x / 2:g}")
        if params:
            raise DecayError(f"ISGW2 takes no parameters; decay of {pname} gives {tuple(params)}")
    elif model == "HQET2":
        if _family(parent) not in ("B", "Bs"):
            raise DecayError(f"HQET2 needs a B meson parent, got {pname}")
        if j2x == 0 and len(params) not in (2, 3):
            raise DecayError(f"HQET2 for {pname} -> {dname} (scalar) needs 2 or 3 parameters (rho2 V1 [delta]), got {tuple(params)}")
        if j2x == 2 and len(params) not in (4, 5):
            raise DecayError(
                f"HQET2 for {pname} -> {dname} (vector) needs 4 or 5 parameters (rho2 hA1 R1 R2 [R0]), got {tuple(params)}"
            )
        if j2x not in (0, 2):
            raise DecayError(f"HQET2 needs a scalar or vector daughter, {dname} has spin {j2x / 2:g}")
    elif model == "BaryonPCR":
        if abs(parent) != 5122 or abs(daughter) not in (4122, 14122):
            raise DecayError(
                f"BaryonPCR is implemented for Lambda_b0 -> Lambda_c+ and Lambda_c(2593)+ only, got {pname} -> {dname}"
            )
        if len(params) != 4:
            raise DecayError(f"BaryonPCR needs 4 parameters (spin density r00 r01 r10 r11), got {tuple(params)}")
    else:
        raise DecayError(f"{model} is not a semileptonic form-factor model")


def form_factors(model: str, parent: int, daughter: int, params: Sequence[float], q2: np.ndarray, mb: float, mx: np.ndarray) -> tuple[np.ndarray, ...]:
    """The form factors of a model at q² [GeV²]: (f+, f0), (A1, A2, V, A0) or (F1, F2, F3, G1, G2, G3)."""
    from sim.generation.amplitudes import _pdata

    j2x = _pdata(daughter)[0]
    if model == "ISGW2":
        if _isgw2_key(parent, daughter) is None:
            return isgw2_pwave(parent, daughter, q2, mb, mx)
        return (isgw2_scalar if j2x == 0 else isgw2_vector)(parent, daughter, q2, mb, mx)
    if model == "HQET2":
        return (hqet2_scalar if j2x == 0 else hqet2_vector)(params, q2, mb, mx)
    return pcr_dirac(q2, mb, mx, daughter)


# ----------------------------------------------------------------------------- Dirac algebra

_I2 = np.eye(2, dtype=complex)
_SIG = np.array([[[0, 1], [1, 0]], [[0, -1j], [1j, 0]], [[1, 0], [0, -1]]], dtype=complex)
_Z2 = np.zeros((2, 2), dtype=complex)
_G0 = np.block([[_I2, _Z2], [_Z2, -_I2]])
_GK = [np.block([[_Z2, s], [-s, _Z2]]) for s in _SIG]
_GAMMA = np.stack([_G0, *_GK])  # γ^μ, μ = 0..3
_G5 = np.block([[_Z2, _I2], [_I2, _Z2]])
_METRIC = np.array([1.0, -1.0, -1.0, -1.0])


def _sigma_dot(p3: np.ndarray) -> np.ndarray:
    """``(n, 2, 2)`` σ·p."""
    out = np.empty((p3.shape[0], 2, 2), dtype=complex)
    out[:, 0, 0] = p3[:, 2]
    out[:, 1, 1] = -p3[:, 2]
    out[:, 0, 1] = p3[:, 0] - 1j * p3[:, 1]
    out[:, 1, 0] = p3[:, 0] + 1j * p3[:, 1]
    return out


def _u_spinors(p4: np.ndarray, m: np.ndarray) -> np.ndarray:
    """``(n, 2, 4)`` canonical Dirac spinors u(p, s), s = +½, −½ (Dirac representation, ū u = 2m)."""
    norm = np.sqrt(p4[:, 3] + m)
    out = np.zeros((p4.shape[0], 2, 4), dtype=complex)
    out[:, 0, 0] = norm
    out[:, 1, 1] = norm
    # lower components σ·p χ_s / √(E+m): column s of σ·p
    out[:, :, 2:] = np.swapaxes(_sigma_dot(p4[:, :3]), 1, 2) / norm[:, None, None]
    return out


def _v_spinors(p4: np.ndarray, m: np.ndarray) -> np.ndarray:
    """``(n, 2, 4)`` antiparticle spinors v(p, s) (an orthonormal spin basis; only spin sums are used)."""
    e = p4[:, 3]
    norm = np.sqrt(e + m)[:, None, None]
    sp = _sigma_dot(p4[:, :3]) / norm
    eta = np.broadcast_to(np.array([[0, 1], [-1, 0]], dtype=complex), (p4.shape[0], 2, 2))
    upper = sp @ eta
    lower = norm * eta
    return np.concatenate([upper, lower], axis=1).transpose(0, 2, 1)


def _bar(sp: np.ndarray) -> np.ndarray:
    """Rows ψ̄ = ψ† γ⁰ of spinors ``(n, s, 4)``: γ⁰ = diag(1, 1, −1, −1), the lower components negated
    (the product with γ⁰, exactly: one non-zero term per component)."""
    out = np.conj(sp)
    np.negative(out[..., 2:], out=out[..., 2:])
    return out


def _polarisations(p4: np.ndarray, m: np.ndarray) -> np.ndarray:
    """``(n, 3, 4)`` canonical polarisation vectors ε^μ(p, m), m = +1, 0, −1 (upper index)."""
    r2 = math.sqrt(0.5)
    e_rest = np.array([[-r2, -1j * r2, 0], [0, 0, 1], [r2, -1j * r2, 0]], dtype=complex)
    p3 = p4[:, :3].astype(complex)
    pe = np.einsum("ni,mi->nm", p3, e_rest)  # (n, 3)
    e0 = pe / m[:, None]
    coef = pe / (m * (p4[:, 3] + m))[:, None]
    space = e_rest[None, :, :] + coef[:, :, None] * p3[:, None, :]
    return np.concatenate([e0[:, :, None], space], axis=2)


def _tensor_polarisations(p4: np.ndarray, m: np.ndarray) -> np.ndarray:
    """``(n, 5, 4, 4)`` canonical spin-2 polarisation tensors ε^{μν}(p, m), m = +2 … −2 (upper indices).

    ε^{μν}(m) = Σ <1 m1; 1 m2 | 2 m> ε^μ(m1) ε^ν(m2) (Condon–Shortley), from :func:`_polarisations`.
    """
    from sim.generation.amplitudes import clebsch_gordan

    eps = _polarisations(p4, m)  # (n, 3, 4): m1 = +1, 0, −1
    out = np.zeros((p4.shape[0], 5, 4, 4), dtype=complex)
    for k, mm in enumerate((4, 2, 0, -2, -4)):
        for a, m1 in enumerate((2, 0, -2)):
            for b, m2 in enumerate((2, 0, -2)):
                cg = clebsch_gordan(2, m1, 2, m2, 4, mm)
                if cg:
                    out[:, k] += cg * eps[:, a, :, None] * eps[:, b, None, :]
    return out


def _lower(v: np.ndarray) -> np.ndarray:
    return v * _METRIC


def _bilinear(bar: np.ndarray, op: np.ndarray, sp: np.ndarray) -> np.ndarray:
    """``(n, a, b)`` ψ̄_a Γ ψ_b for barred rows ``bar`` (n, a, 4), a constant Γ (4, 4) and spinors ``sp`` (n, b, 4)."""
    return _bilinears(bar, [op], sp)[..., 0]


def _bilinears(bar: np.ndarray, ops: Sequence[np.ndarray] | np.ndarray, sp: np.ndarray, *, spinor_first: bool = False) -> np.ndarray:
    """``(n, a, b, k)`` ψ̄_a Γ_k ψ_b for the constant matrices ``ops`` (k of them, (4, 4) each).

    Each entry is the sum, in the order of Γ's non-zero entries (γ matrices have four),
    of the products ``(Γ_ij ψ̄_a,i) ψ_b,j``, leaving out the components ``ψ_b,j`` that are
    zero in every row (a spinor at rest has no lower components, and each of its spin
    states one upper component): those terms are exact zeros, which change no sum (the
    sum of one term is that term).  Issue #19: half the products of the parent-at-rest
    bilinears of the BaryonPCR weights are such zeros.

    Args:
        spinor_first: return ``(n, b, a, k)`` (the spinors' index first) instead.
    """
    n, na, nb, nk = bar.shape[0], bar.shape[1], sp.shape[1], len(ops)
    live = np.any(sp != 0, axis=0)  # (b, 4): components not zero in every row
    out = np.empty((n, nb, na, nk) if spinor_first else (n, na, nb, nk), dtype=complex)
    for k, op in enumerate(ops):
        nonzero = list(zip(*np.nonzero(op), strict=True))
        for b in range(nb):
            dst = out[:, b, :, k] if spinor_first else out[:, :, b, k]
            terms = [(i, j) for i, j in nonzero if live[b, j]]
            if not terms:
                dst[...] = 0.0
            for t, (i, j) in enumerate(terms):
                term = op[i, j] * bar[:, :, i] * sp[:, b, j, None]  # (n, a)
                if t == 0:
                    dst[...] = term
                else:
                    dst += term
    return out


_GA = [g @ _G5 for g in _GAMMA]  # γ^μ γ5
#: 1, γ5, γ^μ, γ^μ γ5 for :func:`sim.generation._amplitude_kernels.baryon_current`.
_BARYON_OPS = np.ascontiguousarray(np.stack([np.eye(4, dtype=complex), _G5, *_GAMMA, *_GA]))
#: Calls of :func:`semileptonic_tensor` with a spin-½ daughter on at least this many decays compute the
#: hadronic current in one compiled loop (:mod:`sim.generation._amplitude_kernels`, equal to the numpy form to
#: round-off); smaller ones stay numpy and import no numba: above the engine's 20 000-decay presample of the
#: accept-reject bound, so a small run does not import numba at start-up (+1 CPU s measured with 4 096).  The
#: first accept-reject round of a batch of 25 000 events or more is compiled.  Row count only, so a batch gives
#: the same numbers in any process.
COMPILED_MIN_DECAYS = 24_576


def _antineutrino_spinor(p4: np.ndarray) -> np.ndarray:
    """``(n, 1, 4)`` the one massless v spinor that survives (1 − γ5): v = √E (−η; η), σ·p̂ η = −η (helicity +½)."""
    p = np.linalg.norm(p4[:, :3], axis=1)
    theta = np.arccos(np.clip(p4[:, 2] / np.maximum(p, 1e-300), -1.0, 1.0))
    phi = np.arctan2(p4[:, 1], p4[:, 0])
    eta = np.stack([-np.sin(theta / 2) * np.exp(-1j * phi), np.cos(theta / 2) + 0j], axis=1)
    root = np.sqrt(np.maximum(p4[:, 3], 0.0))[:, None]
    return (root * np.concatenate([-eta, eta], axis=1))[:, None, :]


def _lepton_current(pl: np.ndarray, pnu: np.ndarray, m_lep: float) -> np.ndarray:
    """``(n, 2, 1, 4)`` L^μ(s_ℓ) = ū_ℓ γ^μ (1 − γ5) v_ν̄ = 2 ū_ℓ γ^μ v_ν̄ (ℓ⁻ ν̄), μ = 0..3 (upper).

    The antineutrino's other spin state gives zero under (1 − γ5) and is left out.
    """
    n = pl.shape[0]
    ul = _bar(_u_spinors(pl, np.full(n, m_lep)))  # (n, 2, 4) rows ū
    vn = _antineutrino_spinor(pnu)
    return 2.0 * _bilinears(ul, _GAMMA, vn)


def _contract(had: np.ndarray, lep_low: np.ndarray) -> np.ndarray:
    """Σ_μ had^μ[n, a...] L_μ[n, s_ℓ, s_ν] as ``(n, a..., s_ℓ, s_ν)``: had (n, ..., 4), lep_low (n, 2, 1, 4)."""
    n = had.shape[0]
    h = had.reshape(n, -1, 4)
    lep = lep_low.reshape(n, -1, 4)
    out = sum(h[:, :, m, None] * lep[:, None, :, m] for m in range(4))
    return np.asarray(out).reshape(*had.shape[:-1], *lep_low.shape[1:3])


def semileptonic_tensor(
    nodes: Sequence[NodeSpec],
    i: int,
    mom: dict[int, np.ndarray],
    model: str,
    child_tensor: Callable[[Sequence[NodeSpec], int, dict[int, np.ndarray]], np.ndarray | None],
) -> np.ndarray:
    """Amplitude tensor ``(n, d_parent, F)`` of a semileptonic node in the parent's canonical basis.

    Args:
        nodes: the chain; ``nodes[i]`` decays with ``model`` to X ℓ ν.
        i: the node.
        mom: four-momenta [MeV] of node i's sub-tree in i's rest frame.
        model: ISGW2, HQET2 or BaryonPCR.
        child_tensor: callback giving a child's own tensor (None for a final particle).
    """
    from sim.generation.amplitudes import _pdata, _semileptonic_roles

    node = nodes[i]
    kids = [nodes[c].pid for c in node.children]
    ix, il, inu = _semileptonic_roles(model, node.pid, kids, node.params)
    cx, cl, cnu = (node.children[k] for k in (ix, il, inu))
    if nodes[cl].pid < 0:  # ℓ+ : evaluate the CP image (momenta reversed, particle amplitude)
        mom = {k: v * np.array([-1.0, -1.0, -1.0, 1.0]) for k, v in mom.items()}
    gev = 1e-3
    pb = mom[i] * gev
    pb[:, :3] = 0.0  # the parent at rest (its own frame): exactly, so its spinors have no lower components
    px, pl, pnu = mom[cx] * gev, mom[cl] * gev, mom[cnu] * gev
    n = pb.shape[0]
    mb = np.sqrt(np.maximum(pb[:, 3] ** 2 - np.sum(pb[:, :3] ** 2, axis=1), 0.0))
    mx = np.sqrt(np.maximum(px[:, 3] ** 2 - np.sum(px[:, :3] ** 2, axis=1), 0.0))
    m_lep = _pdata(nodes[cl].pid)[1] * gev
    q = pl + pnu
    q2 = np.maximum(q[:, 3] ** 2 - np.sum(q[:, :3] ** 2, axis=1), 1e-12)
    mb_nom = _pdata(node.pid)[1] * gev
    ff = form_factors(model, node.pid, nodes[cx].pid, node.params, q2, mb_nom, mx)
    lep = _lepton_current(pl, pnu, m_lep)  # (n, 2, 1, 4) upper μ
    lep_low = _lower(lep)
    j2x = _pdata(nodes[cx].pid)[0]
    # covariant vectors with the time component first (μ = 0..3), as the γ matrices
    tb, tx_, tq = pb[:, [3, 0, 1, 2]], px[:, [3, 0, 1, 2]], q[:, [3, 0, 1, 2]]
    big_p = tb + tx_
    q = tq
    if j2x == 0:
        fp, f0 = ff
        r = ((mb * mb - mx * mx) / q2)[:, None]
        had = fp[:, None] * (big_p - r * q) + f0[:, None] * r * q  # (n, 4)
        amp = _contract(had.astype(complex)[:, None, None, :], lep_low)  # (n, 1, 1, 2, 1)
    elif j2x in (2, 4):
        if j2x == 2:
            a1, a2, vf, a0 = ff
            eps = np.conj(_polarisations(px, mx))  # ε*^μ (n, 3, 4)
        else:
            # tensor (EvtSemiLeptonicTensorAmp): i h dual(P⊗q)·e − k e − (b+ P + b− q)(e·p_B), e^μ = ε*^{μν} p_Bν;
            # as the vector current of e with V = −h (M+m), A1 = −k/(M+m), A2 = b+ (M+m),
            # A0 = A3 − q² b−/(2m); EvtGen's overall 1/q²_max kept
            hf, kf, bpf, bmf = ff
            vf, a1, a2 = -hf * (mb + mx), -kf / (mb + mx), bpf * (mb + mx)
            a0 = ((mb + mx) * a1 - (mb - mx) * a2) / (2.0 * mx) - q2 * bmf / (2.0 * mx)
            eps = np.conj(_tensor_polarisations(px, mx))[:, :, :, 0] * mb[:, None, None]  # (n, 5, 4)
            scale = 1.0 / np.maximum((mb - mx) ** 2, 1e-12)
            vf, a1, a2, a0 = vf * scale, a1 * scale, a2 * scale, a0 * scale
        if _family(node.pid) in ("D", "Ds"):
            vf = -vf  # EvtGen's costhl_flag for charm parents
        # the parent is at rest: ε^{μνρσ} ε*_ν p_ρ p'_σ = M (0, ε⃗* × p⃗') (ε^{0123} = +1)
        vec = np.zeros_like(eps)
        vec[:, :, 1:] = (2.0 * vf / (mb + mx) * mb)[:, None, None] * 1j * np.cross(eps[:, :, 1:], px[:, None, :3])
        e_dot_pb = eps[:, :, 0] * mb[:, None]  # ε*·p_B
        a3 = ((mb + mx) * a1 - (mb - mx) * a2) / (2.0 * mx)
        axial = (
            ((mb + mx) * a1)[:, None, None] * eps
            - (a2 / (mb + mx))[:, None, None] * e_dot_pb[:, :, None] * big_p[:, None, :]
            - (2.0 * mx / q2 * (a3 - a0))[:, None, None] * e_dot_pb[:, :, None] * q[:, None, :]
        )
        had = vec - axial  # (n, 3, 4)
        amp = _contract(had[:, None, :, :], lep_low)  # (n, 1, 3, 2, 1)
    else:
        f1, f2, f3, g1, g2, g3 = ff
        ub = _u_spinors(pb, mb)  # (n, 2, 4)
        if abs(nodes[cx].pid) == 14122:  # 1/2+ -> 1/2-: EvtSLBaryonAmp's γ5 u_B
            ub = ub @ _G5.T
        ux = _bar(_u_spinors(px, mx))
        v = tb / mb[:, None]
        vp = tx_ / mx[:, None]
        if n >= COMPILED_MIN_DECAYS:  # one compiled loop (sim.generation._amplitude_kernels), equal to round-off
            from sim.generation._amplitude_kernels import baryon_current

            had = np.empty((n, 2, 2, 4), dtype=complex)
            baryon_current(np.ascontiguousarray(ux), np.ascontiguousarray(ub), _BARYON_OPS,
                           np.ascontiguousarray(np.stack([f1, f2, f3, g1, g2, g3]), dtype=np.float64),
                           np.ascontiguousarray(v), np.ascontiguousarray(vp), had)
        else:
            # bilinears ū_X Γ u_B as (n, s_B, s_X)
            sca, pse = np.moveaxis(_bilinears(ux, [np.eye(4), _G5], ub, spinor_first=True), -1, 0)
            vec_b = _bilinears(ux, _GAMMA, ub, spinor_first=True)  # (n, sB, sX, μ)
            ax_b = _bilinears(ux, _GA, ub, spinor_first=True)
            vterm = f2[:, None] * v + f3[:, None] * vp  # (n, μ)
            aterm = g2[:, None] * v + g3[:, None] * vp
            had = (
                f1[:, None, None, None] * vec_b
                + sca[..., None] * vterm[:, None, None, :]
                - g1[:, None, None, None] * ax_b
                - pse[..., None] * aterm[:, None, None, :]
            )  # (n, sB, sX, μ)
        amp = _contract(had, lep_low)  # (n, 2, 2, 2, 1)
    tx = child_tensor(nodes, cx, mom)
    if tx is not None:
        amp = np.einsum("naxlt,nxf->naflt", amp, tx, optimize=True)
    return amp.reshape(n, amp.shape[1], -1)
