"""Decays with phasespace: descriptors and DecFiles → vectorised n-body chains.

A descriptor (``"Lambda_b0 -> (Lambda_c+ -> p+ K- pi+) mu- anti-nu_mu"``) is
written as a small DecFile and parsed by decaylanguage's ``DecFileParser``, so
descriptors and ``.dec`` files take the same road: decaylanguage builds the
decay-chain dict, ``phasespace.fromdecay.GenMultiDecay`` turns every exclusive
chain into a ``phasespace.GenParticle`` tree with its probability (product of
branching fractions), and this module compiles one ``tf.function`` per chain.

Physics choices (documented, tested in ``tests/sim/test_decay.py``):

* phase-space decays (Raubold–Lynch, phasespace); DecFile models other than
  PHSP are generated as phase space as well;
* events are **unweighted** by accept–reject on the phasespace weight with an
  empirical maximum (largest weight of a 20 000-event presample × 1.1), so the
  Dalitz plot of a 3-body decay is flat;
* intermediate resonances wider than ``width_tolerance`` (MeV) take their mass
  from a Breit–Wigner with the PDG width of ``particle``, truncated to the
  kinematically allowed range (inverse-CDF sampling, vectorised);
* decay times from the PDG lifetime (``particle``), exponential in proper time,
  boosted with βγ: flight distance = (p/m)·c·t, lab time = (E/m)·t.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mambah.descriptor import DecayNode, lookup_particle, parse_descriptor
from mambah.errors import DecayError

__all__ = ("DecayModel", "DecayChain", "descriptor_to_dec", "load_decay", "C_LIGHT")

log = logging.getLogger(__name__)

#: speed of light [mm/ns]
C_LIGHT = 299.792458


def descriptor_to_dec(tree: DecayNode) -> str:
    """A DecFile text equivalent to a parsed descriptor (branching fraction 1, PHSP)."""
    blocks: dict[str, str] = {}

    def visit(node: DecayNode) -> None:
        if not node.children:
            return
        line = f"1.0 {' '.join(c.name for c in node.children)} PHSP;"
        if node.name in blocks and blocks[node.name] != line:
            raise DecayError(
                f"'{node.name}' decays in two different ways in one descriptor ({tree}); use a .dec file with aliases"
            )
        blocks[node.name] = line
        for c in node.children:
            visit(c)

    visit(tree)
    return "".join(f"Decay {m}\n{line}\nEnddecay\n" for m, line in blocks.items()) + "End\n"


@dataclass(frozen=True)
class _Node:
    name: str  # phasespace (unique) name
    pid: int
    mother: int  # local index, -1 for the head
    first_daughter: int
    last_daughter: int
    charge: int
    mass: float  # nominal [MeV]
    lifetime: float  # [ns], 0 if prompt / stable leaf


class DecayChain:
    """One exclusive decay chain: a phasespace tree compiled to a ``tf.function``.

    Attributes:
        probability: product of the branching fractions (normalised over the model).
        nodes: particles in breadth-first order (store index order).
        tree: the chain as a :class:`~mambah.descriptor.DecayNode`.
    """

    def __init__(self, probability: float, gen: Any, mass_rng: Any, tree: DecayNode) -> None:
        self.probability = probability
        self._gen = gen
        self._mass_rng = mass_rng
        self.tree = tree
        self.nodes = _flatten(gen, tree)
        self._compiled: Any = None
        self._rng: Any = None
        self.max_weight = 1.0
        self.efficiency = 1.0  # accept-reject efficiency, measured at compile time

    def __len__(self) -> int:
        return len(self.nodes)

    def _compile(self) -> None:
        import tensorflow as tf

        self._rng = tf.random.Generator.from_seed(0)
        gen, rng = self._gen, self._rng

        @tf.function(input_signature=[tf.TensorSpec([], tf.int64)], reduce_retracing=True)
        def generate(n: Any) -> Any:
            w, _wmax, parts = gen.generate(n, normalize_weights=False, seed=rng)
            return w, [parts[node.name] for node in self.nodes[1:]]

        self._compiled = generate
        if self.nodes[0:1] and len(self.nodes) > 1:
            # empirical maximum weight for accept-reject (fixed seed: deterministic)
            w, _ = self._raw(20_000, seed=12345)
            self.max_weight = float(np.max(w)) * 1.1 if len(w) else 1.0
            self.efficiency = max(float(np.mean(w)) / self.max_weight, 1e-3)

    def _raw(self, n: int, seed: int) -> tuple[np.ndarray, list[np.ndarray]]:
        import tensorflow as tf

        self._rng.reset_from_seed(seed)
        self._mass_rng.reset_from_seed(seed ^ 0x5DEECE66D)
        w, parts = self._compiled(tf.constant(n, tf.int64))
        return w.numpy(), [p.numpy() for p in parts]

    def generate_rest_frame(self, n: int, seed: int) -> np.ndarray:
        """``n`` unweighted decays in the head's rest frame.

        Returns:
            array ``(n, len(self), 4)`` of (px, py, pz, E) [MeV] in breadth-first
            order; entry 0 is the head at rest.
        """
        if self._compiled is None:
            self._compile()
        out = np.empty((n, len(self.nodes), 4))
        out[:, 0] = (0.0, 0.0, 0.0, self.nodes[0].mass)
        if len(self.nodes) == 1 or n == 0:
            return out[:n]
        filled = 0
        ss = np.random.SeedSequence(seed)
        rnd = np.random.default_rng(ss.spawn(1)[0])
        round_ = 0
        while filled < n:
            need = n - filled
            n_try = int(need / self.efficiency * 1.05) + 64
            w, parts = self._raw(n_try, seed=int(ss.generate_state(1, np.uint64)[0] % (2**62)) + round_)
            keep = rnd.random(len(w)) * self.max_weight < w
            k = min(int(keep.sum()), need)
            idx = np.flatnonzero(keep)[:k]
            for j, p in enumerate(parts, start=1):
                out[filled : filled + k, j] = p[idx]
            filled += k
            round_ += 1
        return out


def _flatten(gen: Any, tree: DecayNode) -> list[_Node]:
    """Breadth-first nodes of a phasespace tree (names 'pi+ [0]' resolved to PDG ids)."""
    order: list[tuple[Any, int]] = []
    queue: list[tuple[Any, int]] = [(gen, -1)]
    while queue:
        g, mother = queue.pop(0)
        order.append((g, mother))
        me = len(order) - 1
        queue.extend((c, me) for c in g.children)
    first = {}
    last = {}
    for i, (_, m) in enumerate(order):
        if m >= 0:
            first.setdefault(m, i)
            last[m] = i
    nodes = []
    for i, (g, m) in enumerate(order):
        base = re.sub(r" \[\d+\]$", "", g.name)
        p = lookup_particle(base)
        lifetime = float(p.lifetime) if (g.children and p.lifetime is not None and math.isfinite(p.lifetime)) else 0.0
        nodes.append(
            _Node(
                name=g.name,
                pid=int(p.pdgid),
                mother=m,
                first_daughter=first.get(i, -1),
                last_daughter=last.get(i, -1),
                charge=int(round(p.charge or 0)),
                mass=float(p.mass or 0.0),
                lifetime=lifetime,
            )
        )
    return nodes


def _bw_factory(rng_holder: list[Any]) -> Any:
    """phasespace mass-function factory: truncated Breit–Wigner, inverse-CDF, seeded by the chain."""
    import tensorflow as tf

    def factory(mass: float, width: float) -> Any:
        m0 = tf.constant(float(mass), tf.float64)
        g = tf.constant(float(width), tf.float64)

        def bw(min_mass: Any, max_mass: Any, n_events: Any) -> Any:
            lo = tf.atan(2.0 * (tf.cast(min_mass, tf.float64) - m0) / g)
            hi = tf.atan(2.0 * (tf.cast(max_mass, tf.float64) - m0) / g)
            u = rng_holder[0].uniform(tf.shape(lo), dtype=tf.float64)
            return m0 + 0.5 * g * tf.tan(lo + u * (hi - lo))

        return bw

    return factory


class DecayModel:
    """All exclusive chains of a decay with their probabilities.

    Build with :func:`load_decay`.  ``chains[i].probability`` sum to one.
    """

    def __init__(self, source: str, mother: str, chains: list[DecayChain]) -> None:
        self.source = source
        self.mother = mother
        self.chains = chains
        self.head = chains[0].nodes[0]

    @property
    def probabilities(self) -> np.ndarray:
        return np.array([c.probability for c in self.chains])

    def __repr__(self) -> str:
        return f"DecayModel({self.source!r}, {len(self.chains)} chain(s))"


def _dict_to_tree(chain: Mapping[str, Any], aliases: Mapping[str, str]) -> list[tuple[float, DecayNode]]:
    """Expand a decaylanguage chain dict into exclusive (probability, tree) pairs."""
    (mother,) = chain.keys()
    real = aliases.get(mother, mother)
    out: list[tuple[float, DecayNode]] = []
    for mode in chain[mother]:
        options: list[list[tuple[float, DecayNode]]] = []
        for d in mode["fs"]:
            if isinstance(d, str):
                name = aliases.get(d, d)
                options.append([(1.0, DecayNode(name, int(lookup_particle(name, context=f"decay of {real}").pdgid)))])
            else:
                options.append(_dict_to_tree(d, aliases))
        import itertools

        for combo in itertools.product(*options):
            prob = float(mode["bf"]) * math.prod(p for p, _ in combo)
            node = DecayNode(real, int(lookup_particle(real).pdgid), tuple(n for _, n in combo))
            out.append((prob, node))
    return out


def _resolve_aliases(chain: Any, aliases: Mapping[str, str]) -> Any:
    if isinstance(chain, str):
        return aliases.get(chain, chain)
    if isinstance(chain, list):
        return [_resolve_aliases(c, aliases) for c in chain]
    if isinstance(chain, dict):
        return {aliases.get(k, k) if k != "fs" else k: _resolve_aliases(v, aliases) if k == "fs" or isinstance(v, list) else v for k, v in chain.items()}
    return chain


def _check_physics(tree: DecayNode, width_tolerance: float, what: str) -> None:
    """Charge conservation and kinematic thresholds, whole tree."""

    def min_mass(node: DecayNode) -> float:
        p = lookup_particle(node.pid)
        if not node.children:
            return float(p.mass or 0.0)
        return sum(min_mass(c) for c in node.children)

    def visit(node: DecayNode, top: bool) -> None:
        if not node.children:
            return
        p = lookup_particle(node.pid)
        q = sum(int(round(lookup_particle(c.pid).charge or 0)) for c in node.children)
        if q != int(round(p.charge or 0)):
            raise DecayError(
                f"charge not conserved in {node} ({what}): {node.name} has charge {float(p.charge):+g}, daughters sum to {q:+d}"
            )
        need = sum(min_mass(c) for c in node.children)
        mass = float(p.mass or 0.0)
        width = float(p.width or 0.0) if not top and (p.width or 0.0) > width_tolerance else 0.0
        if need >= mass + 5.0 * width:
            raise DecayError(
                f"kinematically forbidden: {node} ({what}): daughters need at least {need:.1f} MeV, "
                f"{node.name} has {mass:.1f} MeV"
            )
        for c in node.children:
            visit(c, False)

    visit(tree, True)


def load_decay(
    decay: str | None = None,
    *,
    dec_file: str | Path | None = None,
    mother: str | None = None,
    width_tolerance: float = 0.1,
    stable: Sequence[str] = ("pi0", "K_S0", "Lambda0", "K_L0", "eta", "gamma"),
) -> DecayModel:
    """Build a :class:`DecayModel` from a descriptor or a DecFile.

    Args:
        decay: a descriptor, e.g. ``"Lambda_b0 -> (Lambda_c+ -> p+ K- pi+) mu- anti-nu_mu"``.
        dec_file: a ``.dec`` file (EvtGen format, aliases allowed); every mode
            is generated with its branching fraction.
        mother: the decaying particle of ``dec_file`` (default: first ``Decay`` block).
        width_tolerance: intermediate particles wider than this [MeV] get a
            Breit–Wigner mass.
        stable: particles not decayed further when expanding a DecFile (they are
            left to the detector).

    Raises:
        DecayError, UnknownParticleError: malformed or unphysical decay.
    """
    from decaylanguage import DecFileParser

    if (decay is None) == (dec_file is None):
        raise DecayError("give exactly one of a decay descriptor or a .dec file")
    if decay is not None:
        tree, _cc = parse_descriptor(decay)
        text = descriptor_to_dec(tree)
        source = decay
        mother = tree.name
        parser = _parse_dec(DecFileParser.from_string, text, decay)
    else:
        path = Path(dec_file)  # type: ignore[arg-type]
        if not path.is_file():
            raise DecayError(f"DecFile '{path}' does not exist")
        source = str(path)
        parser = _parse_dec(DecFileParser, str(path), str(path))
        mothers = parser.list_decay_mother_names()
        if not mothers:
            raise DecayError(f"DecFile '{path}' has no Decay block")
        if mother is None:
            mother = mothers[0]
        elif mother not in mothers:
            raise DecayError(f"DecFile '{path}' has no Decay block for {mother!r}; it has {', '.join(mothers)}")
    aliases = dict(parser.dict_aliases())
    try:
        chain = parser.build_decay_chains(mother, stable_particles=[s for s in stable if s != mother])
    except Exception as err:  # noqa: BLE001 - decaylanguage raises several kinds
        raise DecayError(f"cannot build decay chains of {mother!r} from {source!r}: {err}") from err
    pairs = _dict_to_tree(chain, aliases)
    total = sum(p for p, _ in pairs)
    if not pairs or total <= 0:
        raise DecayError(f"decay of {mother!r} in {source!r} has no mode with a positive branching fraction")
    for _p, tree_ in pairs:
        _check_physics(tree_, width_tolerance, source)
    return _build_model(source, aliases.get(mother, mother), pairs, total, width_tolerance)


def _parse_dec(ctor: Any, arg: str, what: str) -> Any:
    try:
        parser = ctor(arg)
        parser.parse()
    except Exception as err:  # noqa: BLE001 - lark errors etc.
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise DecayError(f"malformed decay {what!r}: {first}") from err
    return parser


def _build_model(source: str, mother: str, pairs: list[tuple[float, DecayNode]], total: float, width_tolerance: float) -> DecayModel:
    import tensorflow as tf

    chains = []
    for prob, tree in pairs:
        holder = [tf.random.Generator.from_seed(0)]
        gen = _gen_particle(tree, _bw_factory(holder), width_tolerance, set(), top=True)
        chains.append(DecayChain(prob / total, gen, holder[0], tree))
    return DecayModel(source, mother, chains)


def _gen_particle(node: DecayNode, bw: Any, width_tolerance: float, used: set[str], *, top: bool) -> Any:
    """A ``phasespace.GenParticle`` tree; names made unique as phasespace.fromdecay does ('pi+ [0]')."""
    from phasespace import GenParticle

    name = node.name
    i = 0
    while name in used:
        name = f"{node.name} [{i}]"
        i += 1
    used.add(name)
    p = lookup_particle(node.pid)
    mass: Any = float(p.mass or 0.0)  # neutrinos: particle gives None -> massless
    width = float(p.width or 0.0)
    if node.children and not top and width > width_tolerance:
        mass = bw(mass, width)
    gen = GenParticle(name, mass)
    if node.children:
        gen.set_children(*(_gen_particle(c, bw, width_tolerance, used, top=False) for c in node.children))
    return gen


