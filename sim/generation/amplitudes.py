"""EvtGen decay models as vectorised helicity amplitudes: weights of phase-space chains.

The decay engine (:mod:`sim.generation.decay`) generates every chain as phase space
and unweights it with :func:`chain_weight`, the squared matrix element of the whole
chain relative to phase space, with the spin correlations along the chain kept the
way EvtGen keeps them.

Formalism (canonical spin bases; numpy only)
--------------------------------------------
* Every particle's spin states are quantised along the z axis of its rest frame,
  reached from its mother's rest frame by a pure boost (the head's along the lab z
  axis): the *canonical* basis.  Chains are contracted over these intermediate spin
  indices coherently, then summed over final-state spins and averaged over the
  head's states (or weighted with the head's spin-density matrix, ``BaryonPCR``).
* A two-body decay A → B C with B at polar/azimuthal angles (θ, φ) in A's rest frame
  has the helicity amplitude ``H[λB, λC] · D^{JA*}_{mA, λB−λC}(φ, θ, −φ)`` (EvtGen's
  ``EvtEvalHelAmp``: the same Wigner-D convention, helicities ordered +J … −J, photons
  ±1, a neutrino only its physical helicity).  Helicity states of B become canonical
  ones through ``D^{JB}_{mB, λB}(φ, θ, −φ)``, those of C through
  ``D^{JC}_{mC, λC}(φ, π+θ, φ−π)`` (EvtGen's rotations; they equal Jacob–Wick's
  second-particle convention up to one constant phase, so the DecFile's amplitudes
  keep their meaning).  Wigner d-functions: Wigner's closed formula (Rose, *Elementary
  Theory of Angular Momentum*, eq. 4.13), D^j_{m'm}(α,β,γ) = e^{−im'α} d^j_{m'm}(β) e^{−imγ}.
* Semileptonic models (ISGW2, HQET2, BaryonPCR) are computed covariantly, as EvtGen
  does (``EvtSemiLeptonicScalarAmp``, ``…VectorAmp``, ``EvtSLBaryonAmp``): hadronic
  current from the form factors of :mod:`sim.generation.formfactors` contracted with
  the V−A lepton current, Dirac spinors and polarisation vectors in the canonical basis
  (boosted from rest), so they join the chain like every other node.  A decay with a
  positive charged lepton (b̄ → c̄ ℓ⁺ ν) is evaluated as the CP image (all momenta of
  its sub-tree reversed in its rest frame, the particle amplitude used).
* ``PHSP`` (and ``SLN``, a spin-0 parent → ℓ ν, isotropic) give weight 1 and break the
  spin chain: the particle is summed over as a final state above it, and its daughters
  start new chains with unpolarised heads.

Normalisation: two-body amplitudes are scaled so that Σ|H|² = 2J_A+1; the angular mean
of each such node's weight is then 1 (an all-PHSP chain weighs exactly 1).  Semileptonic
weights are |M|² in GeV units (their mean is not 1; :func:`model_weight_bound` returns
``None`` for them and the engine takes an empirical maximum).

Supported models and their parameters (as in EvtGen; the DecFile's numbers, in order):
``PHSP``; ``VSS``, ``SVS``, ``TSS``, ``STS``, ``VSP_PWAVE``, ``SLN`` (none); ``VLL`` (none;
the lepton-mass helicity-flip amplitude |H_{±±}|/|H_{±∓}| = √2·m_ℓ/M kept); ``SVV_HELAMP``
(|H+| arg H+ |H0| arg H0 |H−| arg H−); ``HELAMP`` (|H| arg H for each allowed (λB, λC),
λB then λC running from +J down); ``PARTWAVE`` (|M_LS| arg M_LS for every allowed (L, S),
L then S ascending, converted as ``EvtPartWave``); ``VVS_PWAVE`` (S, P, D) and ``TVS_PWAVE``
(P, D, F), each |a| arg a, as those partial waves (S = 1) of PARTWAVE — EvtGen's covariant
VVS_PWAVE aborts on a P wave and its D-wave term p^μp^ν/|p|² vanishes against the vector's
polarisation (p·ε = 0), making a D wave an S wave there: here a D wave is a D wave; ``ISGW2``,
``HQET2`` (ρ² h_A1(1) R1(1) R2(1) [R0(1)] for D*, ρ² V1(1) [Δ] for D), ``BaryonPCR``
(r00 r01 r10 r11: the parent's spin-density matrix in its helicity basis along its lab
flight direction).  Anything else raises :class:`~mambah.errors.DecayError`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache

import numpy as np

from mambah.errors import DecayError
from mambah.kinematics import boost

__all__ = (
    "SUPPORTED_MODELS",
    "NodeSpec",
    "chain_weight",
    "clebsch_gordan",
    "helicity_couplings",
    "model_weight_bound",
    "wigner_d",
    "wigner_small_d",
)

#: two-body models computed with helicity amplitudes
_TWO_BODY = frozenset(
    {"VSS", "SVS", "TSS", "STS", "VLL", "SVV_HELAMP", "HELAMP", "VVS_PWAVE", "TVS_PWAVE", "VSP_PWAVE", "PARTWAVE"}
)
#: semileptonic form-factor models (X ℓ ν)
_SEMILEPTONIC = frozenset({"ISGW2", "HQET2", "BaryonPCR"})
#: models that give weight 1 and break the spin chain
_BREAKING = frozenset({"PHSP", "SLN"})

#: EvtGen model names honoured by :func:`chain_weight`
SUPPORTED_MODELS: frozenset[str] = _TWO_BODY | _SEMILEPTONIC | _BREAKING

_LEPTONS = frozenset({11, 13, 15})
_NEUTRINOS = frozenset({12, 14, 16})


@dataclass(frozen=True)
class NodeSpec:
    """One particle of a decay chain, as the engine hands it over.

    Attributes:
        pid: PDG id.
        model: EvtGen model of this particle's decay ("" for a leaf).
        params: the model's parameters as written in the DecFile.
        children: indices of its daughters in the node list (DecFile order).
        mother: index of its mother, -1 for the head.
    """

    pid: int
    model: str
    params: tuple[float, ...]
    children: tuple[int, ...]
    mother: int


# ----------------------------------------------------------------------------- Wigner functions


def wigner_small_d(j2: int, m2: int, mp2: int, theta: np.ndarray) -> np.ndarray:
    """Wigner small-d function d^j_{m m'}(θ) (arguments are twice j, m, m').

    Args:
        j2, m2, mp2: 2j, 2m, 2m' (integers of equal parity, |m|, |m'| <= j).
        theta: ``(n,)`` angles [rad].

    Returns:
        ``(n,)`` real values (Condon–Shortley phases; d^1_{10} = −sin θ/√2).
    """
    theta = np.asarray(theta, dtype=np.float64)
    if abs(m2) > j2 or abs(mp2) > j2 or (j2 - m2) % 2 or (j2 - mp2) % 2:
        return np.zeros_like(theta)
    jm, jmm = (j2 + m2) // 2, (j2 - m2) // 2
    jp, jpm = (j2 + mp2) // 2, (j2 - mp2) // 2
    pref = math.sqrt(math.factorial(jm) * math.factorial(jmm) * math.factorial(jp) * math.factorial(jpm))
    c, s = np.cos(theta / 2.0), np.sin(theta / 2.0)
    out = np.zeros_like(theta)
    dm = (m2 - mp2) // 2  # m - m'
    for k in range(j2 + 1):
        a, b, d = jp - k, jmm - k, k + dm  # (j+m'-k), (j-m-k), (k+m-m')
        if a < 0 or b < 0 or d < 0:
            continue
        coef = (-1) ** d * pref / (math.factorial(a) * math.factorial(k) * math.factorial(b) * math.factorial(d))
        out = out + coef * c ** (a + b) * s ** (k + d)
    return out


def wigner_d(j2: int, m2: int, mp2: int, alpha: np.ndarray, beta: np.ndarray, gamma: np.ndarray) -> np.ndarray:
    """Wigner D^j_{m m'}(α, β, γ) = e^{−imα} d^j_{mm'}(β) e^{−im'γ} (twice j, m, m'), ``(n,)`` complex."""
    phase = np.exp(-0.5j * (m2 * np.asarray(alpha) + mp2 * np.asarray(gamma)))
    return phase * wigner_small_d(j2, m2, mp2, beta)


@cache
def _d_terms(j2: int) -> tuple[tuple[int, int, tuple[tuple[float, int, int], ...]], ...]:
    """Wigner-formula terms of every d^j_{m m'}: (row, col, ((coef, power of cos, power of sin), ...))."""
    out = []
    for a, m2 in enumerate(range(j2, -j2 - 1, -2)):
        for b, mp2 in enumerate(range(j2, -j2 - 1, -2)):
            jm, jmm = (j2 + m2) // 2, (j2 - m2) // 2
            jp, jpm = (j2 + mp2) // 2, (j2 - mp2) // 2
            pref = math.sqrt(math.factorial(jm) * math.factorial(jmm) * math.factorial(jp) * math.factorial(jpm))
            dm = (m2 - mp2) // 2
            terms = []
            for k in range(j2 + 1):
                x, y, z = jp - k, jmm - k, k + dm
                if x < 0 or y < 0 or z < 0:
                    continue
                coef = (-1) ** z * pref / (math.factorial(x) * math.factorial(k) * math.factorial(y) * math.factorial(z))
                terms.append((coef, x + y, k + z))
            out.append((a, b, tuple(terms)))
    return tuple(out)


def _d_matrix(j2: int, beta: np.ndarray) -> np.ndarray:
    """``(n, 2j+1, 2j+1)`` d^j_{m m'}(β), m and m' running from +j down (one pass over cached powers)."""
    c, s = np.cos(beta / 2.0), np.sin(beta / 2.0)
    cp = [np.ones_like(c)]
    sp = [np.ones_like(s)]
    for _ in range(j2):
        cp.append(cp[-1] * c)
        sp.append(sp[-1] * s)
    out = np.zeros((beta.shape[0], j2 + 1, j2 + 1))
    for a, b, terms in _d_terms(j2):
        for coef, pc, ps in terms:
            out[:, a, b] += coef * cp[pc] * sp[ps]
    return out


def _big_d_matrix(j2: int, alpha: np.ndarray, beta: np.ndarray, gamma: np.ndarray) -> np.ndarray:
    """``(n, 2j+1, 2j+1)`` D^j_{m m'}(α, β, γ), m and m' running from +j down."""
    ms = np.arange(j2, -j2 - 1, -2) / 2.0
    left = np.exp(-1j * ms[None, :] * alpha[:, None])
    right = np.exp(-1j * ms[None, :] * gamma[:, None])
    return left[:, :, None] * _d_matrix(j2, beta) * right[:, None, :]


@cache
def clebsch_gordan(j1: int, m1: int, j2: int, m2: int, j: int, m: int) -> float:
    """Clebsch–Gordan coefficient <j1 m1; j2 m2 | j m> (all arguments twice the value; Racah's formula)."""
    if m1 + m2 != m or j > j1 + j2 or j < abs(j1 - j2) or (j1 + j2 + j) % 2:
        return 0.0
    if abs(m1) > j1 or abs(m2) > j2 or abs(m) > j:
        return 0.0
    f = math.factorial

    def h(x: int) -> int:
        return x // 2

    pre = (j + 1) * f(h(j1 + j2 - j)) * f(h(j1 - j2 + j)) * f(h(-j1 + j2 + j)) / f(h(j1 + j2 + j) + 1)
    pre *= f(h(j1 + m1)) * f(h(j1 - m1)) * f(h(j2 + m2)) * f(h(j2 - m2)) * f(h(j + m)) * f(h(j - m))
    total = 0.0
    for k in range(h(j1 + j2 + j) + 1):
        args = (k, h(j1 + j2 - j) - k, h(j1 - m1) - k, h(j2 + m2) - k, h(j - j2 + m1) + k, h(j - j1 - m2) + k)
        if min(args) < 0:
            continue
        total += (-1) ** k / math.prod(f(a) for a in args)
    return math.sqrt(pre) * total


# ----------------------------------------------------------------------------- particle data


@cache
def _pdata(pid: int) -> tuple[int, float, str]:
    """(2J, mass [MeV], name) of a PDG id."""
    from mambah.descriptor import lookup_particle

    p = lookup_particle(int(pid))
    if p.J is None:
        raise DecayError(f"particle {p.name} ({pid}) has no known spin; its decay model needs one")
    return round(2 * float(p.J)), float(p.mass or 0.0), str(p.name)


def _leaf_helicities(pid: int) -> tuple[int, ...]:
    """Twice the helicities of a final particle (EvtGen ``fillHelicity``): photon ±1, neutrino one."""
    j2, mass, _ = _pdata(pid)
    if abs(pid) in _NEUTRINOS:
        return (-1,) if pid > 0 else (1,)
    if pid == 22:
        return (2, -2)
    del mass
    return tuple(range(j2, -j2 - 1, -2))


def _canonical_states(pid: int) -> tuple[int, ...]:
    j2 = _pdata(pid)[0]
    return tuple(range(j2, -j2 - 1, -2))


# ----------------------------------------------------------------------------- model couplings


def _cplx(params: Sequence[float]) -> list[complex]:
    return [params[i] * complex(math.cos(params[i + 1]), math.sin(params[i + 1])) for i in range(0, len(params), 2)]


def _need(model: str, name: str, params: Sequence[float], counts: Sequence[int]) -> None:
    if len(params) not in counts:
        want = " or ".join(str(c) for c in counts)
        raise DecayError(f"{model} decay of {name} needs {want} parameters, the DecFile gives {len(params)}: {tuple(params)}")


def _need_spins(model: str, name: str, got: Sequence[int], want: Sequence[int], what: str) -> None:
    if tuple(got) != tuple(want):
        spins = ", ".join(f"{g / 2:g}" for g in got)
        need = ", ".join(f"{w / 2:g}" for w in want)
        raise DecayError(f"{model} needs {what} with spins ({need}); decay of {name} has ({spins})")


def helicity_couplings(
    model: str, parent: int, daughters: Sequence[int], params: Sequence[float]
) -> tuple[tuple[int, ...], tuple[int, ...], np.ndarray | Callable[[np.ndarray], np.ndarray]]:
    """Helicity couplings H[λB, λC] of a two-body model.

    Args:
        model: EvtGen model name (one of the two-body models).
        parent: PDG id of A.
        daughters: PDG ids of (B, C) in DecFile order.
        params: the DecFile's parameters.

    Returns:
        (twice the helicities of B, of C, H) — H is ``(nB, nC)`` complex, or for ``VLL`` a
        function of the parent's masses ``(n,)`` [MeV] giving ``(n, 2, 2)``.  Σ|H|² = 2J_A+1.

    Raises:
        DecayError: wrong number of daughters, spins or parameters.
    """
    j2a, _, name = _pdata(parent)
    if len(daughters) != 2:
        raise DecayError(f"{model} is a two-body model; decay of {name} has {len(daughters)} daughters")
    b, c = daughters
    lb, lc = _leaf_helicities(b), _leaf_helicities(c)
    jb, jc = _pdata(b)[0], _pdata(c)[0]
    h = np.zeros((len(lb), len(lc)), dtype=complex)
    spins = (j2a, jb, jc)

    def idx(lam_b: int, lam_c: int) -> tuple[int, int]:
        return lb.index(lam_b), lc.index(lam_c)

    if model in ("VSS", "SVS", "TSS", "STS"):
        want = {"VSS": (2, 0, 0), "SVS": (0, 2, 0), "TSS": (4, 0, 0), "STS": (0, 4, 0)}[model]
        _need_spins(model, name, spins, want, "parent, daughters")
        _need(model, name, params, (0,))
        h[idx(0, 0)] = 1.0
    elif model == "VLL":
        _need_spins(model, name, spins, (2, 1, 1), "parent, daughters")
        _need(model, name, params, (0,))
        m_lep = _pdata(b)[1]

        def vll(mass: np.ndarray) -> np.ndarray:
            r = 2.0 * m_lep**2 / np.maximum(np.asarray(mass, dtype=np.float64), 1e-9) ** 2
            ht = np.sqrt(3.0 / (2.0 + 2.0 * r))
            out = np.zeros((len(r), 2, 2), dtype=complex)
            out[:, 0, 1] = out[:, 1, 0] = ht
            out[:, 0, 0] = out[:, 1, 1] = ht * np.sqrt(r)
            return out

        return lb, lc, vll
    elif model == "SVV_HELAMP":
        _need_spins(model, name, (j2a,), (0,), "a parent")
        if not (jb == 2 or b == 22) or not (jc == 2 or c == 22):
            raise DecayError(f"SVV_HELAMP needs two vector daughters; decay of {name} has spins ({jb / 2:g}, {jc / 2:g})")
        _need(model, name, params, (6,))
        hp, h0, hm = _cplx(params)
        for lam, val in ((2, hp), (0, h0), (-2, hm)):
            if lam in lb and lam in lc:
                h[idx(lam, lam)] = val
    elif model == "HELAMP":
        allowed = [(x, y) for x in lb for y in lc if abs(x - y) <= j2a]
        _need(model, name, params, (2 * len(allowed),))
        for (x, y), val in zip(allowed, _cplx(params), strict=True):
            h[idx(x, y)] = val
    elif model == "VSP_PWAVE":
        _need(model, name, params, (0,))
        if c == 22:
            _need_spins(model, name, (j2a, jb), (2, 0), "parent, scalar daughter")
            h[idx(0, 2)] = h[idx(0, -2)] = 1.0
        elif b == 22:
            _need_spins(model, name, (j2a, jc), (2, 0), "parent, scalar daughter")
            h[idx(2, 0)] = h[idx(-2, 0)] = 1.0
        else:
            raise DecayError(f"VSP_PWAVE needs a photon daughter; decay of {name} has none")
    elif model in ("PARTWAVE", "VVS_PWAVE", "TVS_PWAVE"):
        if model != "PARTWAVE":
            # (S, P, D) of V → V S and (P, D, F) of T → V S are exactly PARTWAVE's (L, S = 1) waves
            _need_spins(model, name, spins, (2, 2, 0) if model == "VVS_PWAVE" else (4, 2, 0), "parent, daughters")
        waves = _partial_waves(j2a, jb, jc)
        _need(model, name, params, (2 * len(waves),))
        amps = _cplx(params)
        for x, lam_b in enumerate(lb):
            for y, lam_c in enumerate(lc):
                m1 = lam_b - lam_c
                if abs(m1) > j2a:
                    continue
                for (ell, spin), a in zip(waves, amps, strict=True):
                    if spin >= abs(m1):
                        # EvtPartWave: sqrt((2L+1)/(2J+1)) <jB λB; jC −λC | S m> <L 0; S m | J m> M_LS
                        h[x, y] += (
                            math.sqrt((ell + 1.0) / (j2a + 1.0))
                            * clebsch_gordan(jb, lam_b, jc, -lam_c, spin, m1)
                            * clebsch_gordan(ell, 0, spin, m1, j2a, m1)
                            * a
                        )
    else:
        raise DecayError(f"{model} is not a two-body helicity model")
    norm = float(np.sum(np.abs(h) ** 2))
    if norm <= 0:
        raise DecayError(f"{model} decay of {name}: all helicity amplitudes are zero ({tuple(params)})")
    return lb, lc, h * math.sqrt((j2a + 1) / norm)


def _partial_waves(j2a: int, j2b: int, j2c: int) -> list[tuple[int, int]]:
    """(2L, 2S) of the partial waves of A → B C in EvtPartWave's order (L up, then S up)."""
    lmin = max(j2a - j2b - j2c, j2b - j2a - j2c, j2c - j2a - j2b, 0)
    out: list[tuple[int, int]] = []
    for ell in range(lmin, j2a + j2b + j2c + 1, 2):
        smin = max(abs(ell - j2a), abs(j2b - j2c))
        smax = min(ell + j2a, j2b + j2c)
        out.extend((ell, spin) for spin in range(smin, smax + 1, 2))
    return out


# ----------------------------------------------------------------------------- kinematics


def _rest(p4: np.ndarray, frame: np.ndarray) -> np.ndarray:
    """Pure boost of ``p4`` (n, 4) into the rest frame of ``frame`` (n, 4)."""
    inv = frame.copy()
    inv[..., :3] = -inv[..., :3]
    return boost(p4, inv)


def _angles(p4: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    px, py, pz = p4[:, 0], p4[:, 1], p4[:, 2]
    theta = np.arctan2(np.hypot(px, py), pz)
    phi = np.arctan2(py, px)
    return theta, phi


def _mass(p4: np.ndarray) -> np.ndarray:
    return np.sqrt(np.maximum(p4[:, 3] ** 2 - np.sum(p4[:, :3] ** 2, axis=1), 0.0))


# ----------------------------------------------------------------------------- validation


def _model_of(node: NodeSpec) -> str:
    words = node.model.split()
    words = [w for w in words if w != "PHOTOS"]
    return words[0] if words else ""


def _check(nodes: Sequence[NodeSpec]) -> None:
    if not nodes:
        raise DecayError("empty decay chain")
    for i, node in enumerate(nodes):
        model = _model_of(node)
        name = _pdata(node.pid)[2]
        if not node.children:
            if model:
                raise DecayError(f"{name} has decay model {model} but no daughters")
            continue
        if model not in SUPPORTED_MODELS:
            raise DecayError(
                f"decay model {model or '(none)'!r} of {name} is not supported; supported: {', '.join(sorted(SUPPORTED_MODELS))}"
            )
        for c in node.children:
            if not 0 <= c < len(nodes) or nodes[c].mother != i:
                raise DecayError(f"decay chain node {i} ({name}) lists child {c}, whose mother is not {i}")
        kids = [nodes[c].pid for c in node.children]
        if model in _TWO_BODY:
            helicity_couplings(model, node.pid, kids, node.params)
        elif model in _SEMILEPTONIC:
            _semileptonic_roles(model, node.pid, kids, node.params)
        elif model == "SLN":
            j2 = _pdata(node.pid)[0]
            if j2 != 0 or len(kids) != 2:
                raise DecayError(f"SLN needs a spin-0 parent and two daughters (lepton, neutrino); decay of {name} is not")


def _semileptonic_roles(model: str, parent: int, kids: Sequence[int], params: Sequence[float]) -> tuple[int, int, int]:
    """Positions of (hadron, charged lepton, neutrino) among the daughters; checks spins and parameters."""
    name = _pdata(parent)[2]
    if len(kids) != 3:
        raise DecayError(f"{model} needs three daughters (X lepton neutrino); decay of {name} has {len(kids)}")
    lep = [k for k, p in enumerate(kids) if abs(p) in _LEPTONS]
    nu = [k for k, p in enumerate(kids) if abs(p) in _NEUTRINOS]
    if len(lep) != 1 or len(nu) != 1:
        raise DecayError(f"{model} needs one charged lepton and one neutrino; decay of {name} has {kids}")
    x = 3 - lep[0] - nu[0]
    from sim.generation import formfactors

    formfactors.check_model(model, parent, kids[x], params)
    return x, lep[0], nu[0]


# ----------------------------------------------------------------------------- chain weight


def _is_spin_node(node: NodeSpec) -> bool:
    return bool(node.children) and _model_of(node) not in _BREAKING


def chain_weight(nodes: Sequence[NodeSpec], p4: Sequence[np.ndarray]) -> np.ndarray:
    """Squared matrix element of a decay chain relative to phase space, event by event.

    Args:
        nodes: the chain's particles; node 0 (``mother == -1``) is the head.
        p4: ``p4[i]`` is ``(n, 4)`` lab-frame (px, py, pz, E) [MeV] of node i.

    Returns:
        ``(n,)`` weights >= 0 (exactly 1 for an all-PHSP chain), spin correlations included.

    Raises:
        DecayError: an unsupported model (named, with the supported list), or a model
            whose daughters, spins or parameters do not fit it.
    """
    _check(nodes)
    if len(p4) != len(nodes):
        raise DecayError(f"chain_weight got {len(p4)} momentum arrays for {len(nodes)} nodes")
    mom = [np.asarray(p, dtype=np.float64).reshape(-1, 4) for p in p4]
    n = mom[0].shape[0]
    weight = np.ones(n)
    roots = [i for i, nd in enumerate(nodes) if nd.mother < 0 or not _is_spin_node(nodes[nd.mother])]
    for r in roots:
        if not _is_spin_node(nodes[r]):
            continue
        local = _local_frame(nodes, r, mom)
        t = _tensor(nodes, r, local)  # (n, d_r, F)
        if _model_of(nodes[r]) == "BaryonPCR":
            rho = _head_density(nodes[r], mom[r], t.shape[1])
            weight *= np.real(np.sum(np.matmul(np.swapaxes(rho, 1, 2), t) * np.conj(t), axis=(1, 2)))
        else:  # unpolarised head
            weight *= np.sum(t.real**2 + t.imag**2, axis=(1, 2)) / t.shape[1]
    return np.maximum(weight, 0.0)


def _subtree(nodes: Sequence[NodeSpec], i: int) -> list[int]:
    out = [i]
    for c in nodes[i].children:
        out.extend(_subtree(nodes, c))
    return out


def _head_density(node: NodeSpec, p4_lab: np.ndarray, dim: int) -> np.ndarray:
    """Spin-density matrix of a chain's head in its canonical basis, ``(n, d, d)``."""
    n = p4_lab.shape[0]
    if _model_of(node) == "BaryonPCR" and dim == 2:
        r00, r01, r10, r11 = node.params
        rho_h = np.array([[r00, r01], [r10, r11]], dtype=complex)
        tr = float(np.real(np.trace(rho_h)))
        if tr <= 0 or np.min(np.linalg.eigvalsh(0.5 * (rho_h + rho_h.conj().T))) < -1e-12:
            raise DecayError(f"BaryonPCR spin-density parameters {node.params} are not a density matrix (need trace > 0, >= 0)")
        rho_h /= tr
        theta, phi = _angles(p4_lab)
        states = (1, -1)
        d = np.stack(
            [np.stack([wigner_d(1, m, lam, phi, theta, np.zeros(n)) for lam in states], axis=-1) for m in states], axis=1
        )  # (n, m, λ)
        return np.einsum("nml,lk,npk->nmp", d, rho_h, np.conj(d))
    return np.broadcast_to(np.eye(dim) / dim, (n, dim, dim))


def _tensor(nodes: Sequence[NodeSpec], i: int, mom: dict[int, np.ndarray]) -> np.ndarray:
    """Amplitude tensor ``(n, d_i, F)`` of node i's sub-tree in i's canonical basis; ``mom`` in i's rest frame."""
    node = nodes[i]
    model = _model_of(node)
    n = mom[i].shape[0]
    if model in _TWO_BODY:
        return _two_body_tensor(nodes, i, mom, model)
    if model in _SEMILEPTONIC:
        from sim.generation import formfactors

        return formfactors.semileptonic_tensor(nodes, i, mom, model, _child_tensor)
    d = len(_canonical_states(node.pid))
    return np.broadcast_to(np.eye(d, dtype=complex), (n, d, d))


def _child_tensor(nodes: Sequence[NodeSpec], c: int, mom: dict[int, np.ndarray]) -> np.ndarray | None:
    """Tensor of child c in its canonical basis (its sub-tree boosted to its rest frame), or None for a final one."""
    if not _is_spin_node(nodes[c]):
        return None
    return _tensor(nodes, c, _local_frame(nodes, c, mom))


def _local_frame(nodes: Sequence[NodeSpec], i: int, mom: dict[int, np.ndarray] | list[np.ndarray]) -> dict[int, np.ndarray]:
    """Node i's sub-tree seen from i's rest frame (pure boost); i itself exactly at rest."""
    frame = mom[i]
    local = {k: _rest(mom[k], frame) for k in _subtree(nodes, i)[1:]}
    at_rest = np.zeros_like(frame)
    at_rest[:, 3] = _mass(frame)
    local[i] = at_rest
    return local


def _two_body_tensor(nodes: Sequence[NodeSpec], i: int, mom: dict[int, np.ndarray], model: str) -> np.ndarray:
    node = nodes[i]
    b, c = node.children
    lb, lc, h = helicity_couplings(model, node.pid, (nodes[b].pid, nodes[c].pid), node.params)
    n = mom[i].shape[0]
    if callable(h):
        hmat = h(_mass(mom[i]))
    else:
        hmat = np.broadcast_to(h, (n, len(lb), len(lc)))
    theta, phi = _angles(mom[b])
    ma = _canonical_states(node.pid)
    ja = _pdata(node.pid)[0]
    # helicity-basis amplitude M[n, mA, λB, λC] = H[λB, λC] D^{JA*}_{mA, λB−λC}(φ, θ, −φ)
    d_a = np.conj(_big_d_matrix(ja, phi, theta, -phi))  # (n, mA, m')
    dfun = np.zeros((n, len(ma), len(lb), len(lc)), dtype=complex)
    for x, lam_b in enumerate(lb):
        for y, lam_c in enumerate(lc):
            if abs(lam_b - lam_c) <= ja:
                dfun[:, :, x, y] = d_a[:, :, (ja - (lam_b - lam_c)) // 2]
    amp = dfun * hmat[:, None, :, :]
    tb = _child_tensor(nodes, b, mom)
    tc = _child_tensor(nodes, c, mom)
    if tb is not None:
        rot = _rotation(nodes[b].pid, lb, phi, theta, -phi)  # (n, mB, λB)
        amp = np.einsum("nbx,naxy->naby", rot, amp)
        amp = np.einsum("naby,nbf->nafy", amp, tb)
    if tc is not None:
        rot = _rotation(nodes[c].pid, lc, phi, np.pi + theta, phi - np.pi)
        amp = np.einsum("ncy,naxy->naxc", rot, amp)
        amp = np.einsum("naxc,ncg->naxg", amp, tc)
    return amp.reshape(n, len(ma), -1)


def _rotation(pid: int, lams: Sequence[int], alpha: np.ndarray, beta: np.ndarray, gamma: np.ndarray) -> np.ndarray:
    """``(n, m, λ)`` matrix D^J_{m λ}(α, β, γ): helicity states → canonical states (λ: all 2J+1, +J down)."""
    j2 = _pdata(pid)[0]
    if tuple(lams) != _canonical_states(pid):
        raise DecayError(f"{_pdata(pid)[2]} decays further but has helicities {lams}; only massive particles decay")
    return _big_d_matrix(j2, alpha, beta, gamma)


def model_weight_bound(nodes: Sequence[NodeSpec]) -> float | None:
    """An analytic upper bound of :func:`chain_weight` for this chain, or None (engine: empirical maximum).

    A chain's weight is (1/(2J_h+1))·||T||², T the head's amplitude matrix times the
    daughters' ones; with Σ|H|² = 2J_h+1 at the head, ||T||² <= Π over the other
    two-body nodes of their squared operator norm, which is max over λ = λB − λC of
    Σ_{λB−λC=λ} |H_{λB λC}|² (the Wigner-D columns are orthonormal).  For B+ → J/ψ(→ μμ) K+
    this is 3/2, the weight at θ = 90°.  Semileptonic models give None.

    Raises:
        DecayError: as :func:`chain_weight`.
    """
    _check(nodes)
    bound = 1.0
    for node in nodes:
        model = _model_of(node)
        if model in _SEMILEPTONIC:
            return None
        is_root = node.mother < 0 or not _is_spin_node(nodes[node.mother])
        if model not in _TWO_BODY or is_root:
            continue
        if model == "VLL":
            bound *= 1.5  # max(3/(2+2r), 3r/(1+r)) with r = 2m²/M² <= 1/2 above threshold
            continue
        lb, lc, h = helicity_couplings(model, node.pid, [nodes[c].pid for c in node.children], node.params)
        assert not callable(h)
        per_lambda: dict[int, float] = {}
        for x, lam_b in enumerate(lb):
            for y, lam_c in enumerate(lc):
                per_lambda[lam_b - lam_c] = per_lambda.get(lam_b - lam_c, 0.0) + float(abs(h[x, y]) ** 2)
        bound *= max(per_lambda.values())
    return float(bound)
