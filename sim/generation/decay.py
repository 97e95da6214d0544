"""The decay engine: descriptors and DecFiles → complete, vectorised decay trees (pure numpy).

What the user writes (a descriptor ``"B0 -> (D*- -> anti-D0 pi-) pi+"`` or the
Decay blocks of a DecFile) is expanded into its *exclusive chains* (product of
branching fractions; :attr:`DecayModel.chains`).  Every particle the user leaves
undecayed that is not in ``stable`` (default: e, μ, π±, K±, p, n, γ, ν, K_L0
and antiparticles) is decayed with the *decay table* (default decaylanguage's
``DECAY_LHCB.DEC``), recursively: one mode per particle instance drawn by
branching fraction, so the thousands of exclusive chains of a table never have
to be listed (``phasespace.fromdecay.GenMultiDecay`` is not used: it cannot be
seeded per batch — it draws from TensorFlow's global generator — and it lists every
exclusive chain, which a decay table makes explode).  What the user wrote wins: a DecFile's ``Decay X`` block replaces
the table's for every ``X`` of the event (EvtGen semantics); a descriptor's
sub-decay applies to that node.  ``stable`` applies to the table only: a
user-written ``(K_S0 -> pi+ pi-)`` or ``(pi0 -> gamma gamma)`` is honoured.

Generation, per batch, fully vectorised (loops only over tree depth and over
(particle, mode) groups):

1. **topology** — head species per instance (particle or charge conjugate with
   ``cc_fraction``; exclusive chain by probability), then generation by
   generation a mode per decaying particle (``rng``, by branching fraction).
   Instances whose narrow (fixed-mass) particles cannot reach the chosen modes'
   thresholds are redrawn (zero phase space).
2. **kinematics** — per (particle, mode) group in the mother's rest frame:
   masses of wide daughters (``width > width_tolerance`` MeV) from Breit–Wigners
   truncated *jointly* to the allowed region (each daughter above its own mode's
   threshold, all together below the mother's mass), Raubold–Lynch phase space
   (:mod:`sim.generation.nbody`), unweighted by accept–reject on
   ``T^(K-2) Π p*`` times, for each wide daughter, the phase-space factor of its
   own decay at its mass (``p*`` for two bodies, tabulated for more), with the
   analytic bound (so a wide resonance's line shape is BW × phase space, as in
   EvtGen); then boosted to the lab.  Groups with fixed masses use a tighter
   empirical bound (20 000-decay presample × 1.1) checked on every decay.
3. **models** — a semileptonic decay (ISGW2, HQET2, BaryonPCR) with a narrow hadron that
   is a user chain's only model node (its head) or a table mode is drawn from the model's
   own (q², cosθ_ℓ) rate (:meth:`_Engine.sl_proposal`, ``sim.generation.sampling``) and
   accepted with |M|²·dΦ3/g: the exact model at ≈ 0.8 acceptance.  Otherwise,
   every user chain with a model other than ``PHSP`` is one block,
   weighted by ``sim.generation.amplitudes.chain_weight`` over all its nodes (so
   spin correlations along the user's chain are kept); every table mode with a
   non-PHSP model is a one-level block (parent + daughters, an unpolarised parent),
   except a two-body spin mode of a user chain's leaf under a two-body spin node,
   which is weighted jointly with the chain (:meth:`_Engine.joint_leaves`), accepted inside its
   (particle, mode) group.  Each block's weight is unweighted by accept–reject
   against ``model_weight_bound`` or, where that is ``None``, the largest weight
   of a presample × 1.2 (20 000 user chains / 2 000 table decays, fixed seeds, so
   the bound is the same in every process); a user chain's instance is redrawn
   when rejected.  A user-chain weight above its bound raises
   :class:`~mambah.errors.DecayError` (it would bias the sample); a table mode's
   raises its bound within the group, with a warning line.
4. **vertices** — proper decay times from the PDG lifetime (``particle``),
   exponential, boosted: flight = (p/m)·c·t, lab time = (E/m)·t.  K_S0, Λ, Σ, Ξ,
   Ω fly metres when fast; π0 → γγ (or e+e−γ) decays 25 nm × βγ from its origin.

How MODELS' kernels are called (:mod:`sim.generation.amplitudes`)::

    nodes = [NodeSpec(pid, model, params, children, mother), ...]   # BFS order of the block
    w = chain_weight(nodes, p4)        # p4[i]: (n, 4) lab-frame (px, py, pz, E) of node i
    bound = model_weight_bound(nodes)  # or None → empirical presample max × 1.2

``nodes[0]`` is the block's head (``mother = -1``); a node whose decay is not
part of the block (a leaf of the user's chain decayed by the table, or a daughter
of a one-level table block) has ``model = ""`` and no children.  ``params`` are the
DecFile's numbers as written.  Unsupported models never reach ``chain_weight``:
they are refused at build time or substituted by the ``unsupported_models``
policy (:mod:`sim.generation.dectable`).

5. **FSR** — lines with ``PHOTOS`` (every table line when the table says
   ``yesPhotos``) call ``sim.generation.photos.add_fsr(p4, charges, rng, k_min=1 MeV)``
   per (particle, mode) group with the daughters' lab four-momenta ``(n, K, 4)``; the
   recoiled daughters replace the old ones, their subtrees are boosted along, and each
   radiated photon becomes an extra (last) daughter of the mother.  See
   ``docs/decay-engine.md``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mambah.descriptor import DecayNode, lookup_particle, parse_descriptor
from mambah.errors import DecayError

from . import genbod as nbody
from .dectable import (
    DEFAULT_STABLE,
    DecBlocks,
    ModeSpec,
    apply_model_policy,
    photos_available,
    read_dec_file,
    read_table,
    stable_pids,
    supported_models,
)

__all__ = (
    "C_LIGHT",
    "DESCRIPTOR_MODELS",
    "LAMBDA_B_UNPOLARISED",
    "DecayChain",
    "DecayModel",
    "TreeRows",
    "descriptor_form_factor",
    "descriptor_spin_model",
    "descriptor_to_dec",
    "load_decay",
)

log = logging.getLogger(__name__)

#: speed of light [mm/ns]
C_LIGHT = 299.792458

#: FSR photons (``sim.generation.photos.add_fsr``) below this energy in the parent's rest frame are not made [MeV]
FSR_K_MIN = 1.0

_PRESAMPLE = 20_000
_PRESAMPLE_TABLE = 2_000
_FIXED_MIN_GROUP = 2_000
_MANY_BODY = 4
_PS_SAFETY = 1.1
_MODEL_SAFETY = 1.2
_SL_MODELS = frozenset({"ISGW2", "HQET2", "BaryonPCR"})
#: Accept-reject rounds (:meth:`_Engine._sample_decays`, :meth:`_Engine._sample_semileptonic`):
#: while at least ``_SL_MANY_PENDING`` decays are pending, a round draws about ``_SL_HITS_LARGE``
#: expected hits per pending decay (one candidate each at the BaryonPCR efficiency ≈ 0.6),
#: later rounds 1.2 (few rounds for the last decays): each decay keeps its first hit, so the
#: draws beyond it are lost; the default job's Λb → Λc μ ν went from 2.47 to 1.69 candidates
#: per decay (issue #19).  The same distribution, a changed random stream.
_SL_MANY_PENDING = 4_096
_SL_HITS_LARGE = 0.5


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


# --------------------------------------------------------------------------- species and modes


@dataclass
class _Species:
    key: str
    name: str  # EvtGen name of the particle
    pid: int
    mass: float
    width: float
    charge: int
    lifetime: float  # [ns]; 0 for none
    modes: list[_Mode]
    origin: str  # "user", "table", "stable", "chain"


@dataclass(frozen=True)
class _Mode:
    parent: int
    bf: float
    daughters: tuple[int, ...]
    model: str
    params: tuple[float, ...]
    text: str
    origin: str
    photos: bool = False


@dataclass(frozen=True)
class _Node:
    """A node of an exclusive user chain (breadth-first, local indices)."""

    name: str
    pid: int
    mother: int
    first_daughter: int
    last_daughter: int
    charge: int
    mass: float  # nominal [MeV]
    lifetime: float  # [ns]
    species: int = -1
    model: str = ""
    params: tuple[float, ...] = ()


def _particle_props(name_or_pid: str | int, context: str) -> tuple[str, int, float, float, int, float]:
    from mambah.descriptor import _evtgen_name

    p = lookup_particle(name_or_pid, context=context)
    life = p.lifetime
    lifetime = float(life) if (life is not None and math.isfinite(life)) else 0.0
    return (
        _evtgen_name(p),
        int(p.pdgid),
        float(p.mass or 0.0),
        float(p.width or 0.0),
        round(p.charge or 0),
        lifetime,
    )


def _is_pdg_stable(pid: int) -> bool:
    p = lookup_particle(pid)
    return p.lifetime is None or not math.isfinite(p.lifetime) if p.width in (None, 0.0) else False


class _Registry:
    """Species (a particle with a mode list) and modes, resolved from user blocks and the table."""

    def __init__(
        self,
        *,
        user: DecBlocks | None,
        table: str,
        stable: frozenset[int],
        user_policy: str,
        table_policy: str,
        width_tolerance: float,
        source: str,
    ) -> None:
        self.user = user
        self.table_name = table
        self._table: DecBlocks | None = None
        self.stable = stable
        self.user_policy = user_policy
        self.table_policy = table_policy
        self.width_tolerance = width_tolerance
        self.source = source
        self.species: list[_Species] = []
        self.modes: list[_Mode] = []
        self.photon = -1
        self._by_key: dict[str, int] = {}
        self._pending: list[tuple[int, str, DecBlocks, tuple[ModeSpec, ...], str]] = []
        self._warned_user: set[str] = set()
        self._warned_table: set[str] = set()
        self._supported = supported_models()
        self._photos = photos_available()

    @property
    def table(self) -> DecBlocks:
        if self._table is None:
            self._table = read_table(self.table_name)
        return self._table

    def _new(self, key: str, name_or_pid: str | int, origin: str, context: str) -> int:
        name, pid, mass, width, charge, lifetime = _particle_props(name_or_pid, context)
        self.species.append(_Species(key, name, pid, mass, width, charge, lifetime, [], origin))
        self._by_key[key] = len(self.species) - 1
        return len(self.species) - 1

    def leaf(self, label: str, ns: str) -> int:
        """Species of a label not decayed where it stands: a user block (by name), stable, or the table's decay.

        Args:
            label: the daughter label.
            ns: where the label was written: ``"user"`` (a user DecFile, its aliases),
                ``"plain"`` (a descriptor: particle names) or ``"table"`` (the decay table).
        """
        user = self.user
        if ns == "user" and user is not None and label in user.blocks:
            return self._user_species(label)
        name = user.particle_name(label) if (ns == "user" and user is not None) else self.table.particle_name(label) if ns == "table" else label
        if user is not None and name in user.blocks:
            return self._user_species(name)  # what the user wrote wins everywhere (EvtGen semantics)
        p = lookup_particle(name, context=self.source)
        pid = int(p.pdgid)
        if pid in self.stable:
            return self._stable(pid)
        from mambah.descriptor import _evtgen_name

        table = self.table
        tlabel = next((c for c in ((label if ns == "table" else None), name, _evtgen_name(p)) if c is not None and c in table.blocks), None)
        if tlabel is None:
            if _is_pdg_stable(pid):
                return self._stable(pid)
            raise DecayError(
                f"{name} is unstable but the decay table {self.table_name!r} has no decay for it; "
                f"write its decay, add it to `stable`, or choose another decay_table"
            )
        key = f"t:{tlabel}"
        if key in self._by_key:
            return self._by_key[key]
        sid = self._new(key, table.particle_name(tlabel), "table", f"decay table {self.table_name}")
        self._pending.append((sid, tlabel, table, table.blocks[tlabel], "table"))
        return sid

    def table_mode(self, parent: int, daughters: Sequence[int]) -> ModeSpec | None:
        """The decay table's line for ``parent -> daughters`` (PDG ids, any order), or None."""
        from mambah.descriptor import _evtgen_name, _lookup_name

        table = self.table
        label = _evtgen_name(lookup_particle(parent))
        want = sorted(daughters)
        for mode in table.blocks.get(label, ()):
            # a table line naming a particle unknown to `particle` cannot be the user's mode
            # (looked up without building the error's spelling suggestions: 5 s for a D0 table)
            try:
                found = [_lookup_name(table.particle_name(d)) for d in mode.daughters]
            except Exception:
                continue
            if any(f is None for f in found):
                continue
            if sorted(int(f.pdgid) for f in found) == want:
                return mode
        return None

    def _stable(self, pid: int) -> int:
        key = f"s:{pid}"
        return self._by_key[key] if key in self._by_key else self._new(key, pid, "stable", self.source)

    def _user_species(self, label: str) -> int:
        key = f"u:{label}"
        if key in self._by_key:
            return self._by_key[key]
        assert self.user is not None
        sid = self._new(key, self.user.particle_name(label), "user", self.source)
        self._pending.append((sid, label, self.user, self.user.blocks[label], "user"))
        return sid

    def chain_species(self, key: str, name: str, mode: ModeSpec | None, daughters: tuple[int, ...]) -> int:
        """A species for one node of an exclusive user chain (exactly one mode, or a leaf)."""
        sid = self._new(key, name, "chain", self.source)
        if mode is not None:
            sp = self.species[sid]
            text = f"{sp.name} -> {' '.join(self.species[d].name for d in daughters)}"
            self._add_mode(sid, 1.0, daughters, mode.model, mode.params, text, "user", mode.photos)
        return sid

    def _add_mode(
        self, sid: int, bf: float, daughters: tuple[int, ...], model: str, params: tuple[float, ...], text: str, origin: str,
        photos: bool = False,
    ) -> None:
        m = _Mode(sid, bf, daughters, model, params, text, origin, photos)
        self.modes.append(m)
        self.species[sid].modes.append(m)

    def policy_modes(self, label: str, blocks: DecBlocks, modes: Sequence[ModeSpec], origin: str) -> list[ModeSpec]:
        """``modes`` of ``label`` after the unsupported-model policy of their origin."""
        pids: list[list[int] | None] = []
        for mode in modes:
            try:
                pids.append([int(lookup_particle(blocks.particle_name(d)).pdgid) for d in mode.daughters])
            except DecayError:
                if origin == "user":
                    raise
                pids.append(None)
            except Exception:
                if origin == "user":
                    raise
                pids.append(None)
        parent_pid = int(lookup_particle(blocks.particle_name(label), context=blocks.source).pdgid)
        if origin == "user":
            return apply_model_policy(
                blocks.particle_name(label), modes, pids, self.user_policy, where=blocks.source,
                option="--unsupported-models", warned=self._warned_user, supported=self._supported, photos=self._photos,
                parent_pid=parent_pid,
            )
        return apply_model_policy(
            blocks.particle_name(label), modes, pids, self.table_policy, where=f"decay table {self.table_name}",
            option="--table-unsupported-models", warned=self._warned_table, supported=self._supported, photos=self._photos,
            parent_pid=parent_pid,
        )

    def resolve(self) -> None:
        """Resolve the modes of every pending species (and of the species they reach)."""
        while self._pending:
            sid, label, blocks, modes, origin = self._pending.pop()
            kept = self.policy_modes(label, blocks, modes, origin)
            ns = "user" if origin == "user" else "table"
            for mode in kept:
                ds = tuple(self.leaf(d, ns) for d in mode.daughters)
                text = f"{self.species[sid].name} -> {' '.join(self.species[d].name for d in ds)}"
                if origin == "user":
                    _check_charge(self.species[sid], [self.species[d] for d in ds], text, self.source)
                self._add_mode(sid, mode.bf, ds, mode.model, mode.params, text, origin, mode.photos)

    # ---- after resolution
    def wide(self, sid: int) -> bool:
        sp = self.species[sid]
        return bool(sp.modes) and sp.width > self.width_tolerance

    def finish(self) -> None:
        """Thresholds, kinematically forbidden modes, normalised branching fractions."""
        self.resolve()
        thr = self.thresholds()
        for sid, sp in enumerate(self.species):
            if not sp.modes:
                continue
            keep = []
            for m in sp.modes:
                need = sum(thr[d] for d in m.daughters)
                limit = sp.mass + (5.0 * sp.width if self.wide(sid) else 0.0)
                ok = need <= limit + 1e-6 if len(m.daughters) == 1 else need < limit
                if ok and len(m.daughters) == 1 and m.origin == "user" and need < sp.mass - 1e-6 - (limit - sp.mass):
                    # a one-body decay conserves four-momentum only into the same mass (K0 -> K_S0)
                    raise DecayError(
                        f"one-body decay {m.text} ({self.source}) cannot conserve energy: {sp.name} has "
                        f"{sp.mass:.1f} MeV, its only daughter {need:.1f} MeV; give at least two daughters"
                    )
                if ok:
                    keep.append(m)
                elif m.origin == "user":
                    raise DecayError(
                        f"kinematically forbidden: {m.text} ({self.source}): daughters need at least {need:.1f} MeV, "
                        f"{sp.name} has {sp.mass:.1f} MeV"
                    )
                else:
                    log.debug("table mode %s is kinematically forbidden: dropped", m.text)
            if not keep:
                raise DecayError(f"no kinematically allowed mode of {sp.name} ({sp.origin}, {self.source})")
            total = sum(m.bf for m in keep)
            sp.modes = [_Mode(m.parent, m.bf / total, m.daughters, m.model, m.params, m.text, m.origin, m.photos) for m in keep]
        self.modes = [m for sp in self.species for m in sp.modes]
        if any(m.photos for m in self.modes):
            self.photon = self._stable(22)  # FSR photons are stable leaves

    def thresholds(self) -> list[float]:
        """Smallest mass of every species: nominal if narrow or stable, else the lightest mode's."""
        out: dict[int, float] = {}

        def thr(sid: int, depth: int = 0) -> float:
            if sid in out:
                return out[sid]
            sp = self.species[sid]
            if not self.wide(sid) or depth > 30:
                v = sp.mass
            else:
                v = min(sum(thr(d, depth + 1) for d in m.daughters) for m in sp.modes)
            out[sid] = v
            return v

        return [thr(i) for i in range(len(self.species))]


def _baryon_number(pid: int) -> int:
    """Baryon number of a PDG id: ±1 for a baryon, ±A for a nucleus, 0 otherwise."""
    from particle.pdgid import A, is_baryon, is_nucleus

    sign = 1 if pid > 0 else -1
    if is_nucleus(pid):
        return sign * int(A(pid) or 0)
    return sign if is_baryon(pid) else 0


def _check_charge(mother: _Species, daughters: list[_Species], text: str, source: str) -> None:
    """Charge and baryon number of a user's mode: the daughters' sums must equal the mother's.

    Raises:
        DecayError: either is not conserved (both numbers named).
    """
    q = sum(d.charge for d in daughters)
    if q != mother.charge:
        raise DecayError(
            f"charge not conserved in {text} ({source}): {mother.name} has charge {mother.charge:+d}, daughters sum to {q:+d}"
        )
    b = sum(_baryon_number(d.pid) for d in daughters)
    if b != _baryon_number(mother.pid):
        raise DecayError(
            f"baryon number not conserved in {text} ({source}): {mother.name} has baryon number "
            f"{_baryon_number(mother.pid):+d}, daughters sum to {b:+d}"
        )


# --------------------------------------------------------------------------- exclusive user chains


@dataclass(frozen=True)
class _TreeSpec:
    label: str
    mode: ModeSpec | None
    children: tuple[_TreeSpec, ...]


class DecayChain:
    """One exclusive chain of what the user wrote (its leaves may be completed by the table).

    Attributes:
        probability: product of the branching fractions (normalised over the model).
        nodes: the chain's particles in breadth-first order (the leaves included).
        tree: the chain as a :class:`~mambah.descriptor.DecayNode`.
        weighted: whether a node has a model other than PHSP (a model block).
    """

    def __init__(self, probability: float, nodes: list[_Node], tree: DecayNode, engine: _Engine | None = None) -> None:
        self.probability = probability
        self.nodes = nodes
        self.tree = tree
        self.root = nodes[0].species
        self.weighted = any(nd.model not in ("", "PHSP") for nd in nodes)
        self._engine = engine

    def __len__(self) -> int:
        return len(self.nodes)

    def __repr__(self) -> str:
        return f"DecayChain({self.tree}, p={self.probability:.4g})"

    def node_specs(self) -> list[Any]:
        """The chain as ``sim.generation.amplitudes.NodeSpec`` objects (needs that module)."""
        from sim.generation.amplitudes import NodeSpec

        return [
            NodeSpec(
                pid=nd.pid, model=nd.model, params=nd.params,
                children=tuple(range(nd.first_daughter, nd.last_daughter + 1)) if nd.first_daughter >= 0 else (),
                mother=nd.mother,
            )
            for nd in self.nodes
        ]

    def generate_rest_frame(self, n: int, seed: int) -> np.ndarray:
        """``n`` decays of this chain with the head at rest.

        Returns:
            ``(n, len(self), 4)`` (px, py, pz, E) [MeV] of the chain's nodes in
            breadth-first order; entry 0 is the head at rest.
        """
        if self._engine is None:
            raise DecayError("chain has no engine")
        rng = np.random.default_rng(seed)
        head = np.zeros((n, 4))
        head[:, 3] = self.nodes[0].mass
        rows = self._engine.generate(np.full(n, self.root, np.int64), head, rng)
        return rows.chain_p4(self)


def _tree_nodes(reg: _Registry, tree: _TreeSpec, key: str, ns_blocks: DecBlocks | None) -> tuple[list[_Node], DecayNode]:
    """Species and breadth-first nodes of one exclusive chain."""
    order: list[tuple[_TreeSpec, int]] = []
    queue: list[tuple[_TreeSpec, int]] = [(tree, -1)]
    while queue:
        t, m = queue.pop(0)
        order.append((t, m))
        me = len(order) - 1
        queue.extend((c, me) for c in t.children)
    first: dict[int, int] = {}
    last: dict[int, int] = {}
    for i, (_, m) in enumerate(order):
        if m >= 0:
            first.setdefault(m, i)
            last[m] = i
    sids: list[int] = [-1] * len(order)
    # leaves and inner nodes from the bottom up (a chain species needs its daughters' ids)
    for i in range(len(order) - 1, -1, -1):
        t, _ = order[i]
        if t.mode is None:
            sids[i] = reg.leaf(t.label, "user" if ns_blocks is not None else "plain")
        else:
            name = ns_blocks.particle_name(t.label) if ns_blocks is not None else t.label
            ds = tuple(sids[j] for j in range(first[i], last[i] + 1))
            sids[i] = reg.chain_species(f"{key}:{i}", name, t.mode, ds)
            sp = reg.species[sids[i]]
            _check_charge(sp, [reg.species[d] for d in ds], reg.modes[-1].text, reg.source)
    nodes = []
    for i, (t, m) in enumerate(order):
        sp = reg.species[sids[i]]
        nodes.append(
            _Node(
                sp.name, sp.pid, m, first.get(i, -1), last.get(i, -1), sp.charge, sp.mass,
                sp.lifetime if t.mode is not None else 0.0, sids[i],
                t.mode.model if t.mode is not None else "", t.mode.params if t.mode is not None else (),
            )
        )

    def as_node(i: int) -> DecayNode:
        nd = nodes[i]
        kids = tuple(as_node(j) for j in range(nd.first_daughter, nd.last_daughter + 1)) if nd.first_daughter >= 0 else ()
        return DecayNode(nd.name, nd.pid, kids)

    return nodes, as_node(0)


def _expand_user(blocks: DecBlocks, label: str, reg: _Registry, depth: int = 0) -> list[tuple[float, _TreeSpec]]:
    """Exclusive (probability, tree) pairs of ``label``'s user-written decays."""
    import itertools

    if depth > 20:
        raise DecayError(f"decay of {label!r} in {blocks.source!r} nests deeper than 20 levels (a loop?)")
    modes = reg.policy_modes(label, blocks, blocks.blocks[label], "user")
    out: list[tuple[float, _TreeSpec]] = []
    for mode in modes:
        options: list[list[tuple[float, _TreeSpec]]] = []
        for d in mode.daughters:
            if d in blocks.blocks or blocks.particle_name(d) in blocks.blocks:
                options.append(_expand_user(blocks, d if d in blocks.blocks else blocks.particle_name(d), reg, depth + 1))
            else:
                options.append([(1.0, _TreeSpec(d, None, ()))])
        for combo in itertools.product(*options):
            out.append((mode.bf * math.prod(p for p, _ in combo), _TreeSpec(label, mode, tuple(t for _, t in combo))))
            if len(out) > 5000:
                raise DecayError(f"the DecFile {blocks.source!r} expands into more than 5000 exclusive chains of {label}; move the deeper decays to a decay_table")
    return out


#: ``descriptor_models`` choices: how a descriptor's semileptonic decays are weighted
DESCRIPTOR_MODELS = ("physical", "phase-space")

#: BaryonPCR's spin-density parameters for a descriptor's Λb: unpolarised.  LHCb measured the
#: Λb0 polarisation in pp collisions compatible with zero: P = 0.06 ± 0.07 ± 0.02 at 7 TeV
#: (LHCb, Phys. Lett. B 724 (2013) 27) and P = 0.002 ± 0.023 at 7–13 TeV (LHCb, JHEP 06 (2020) 110).
LAMBDA_B_UNPOLARISED = (1.0, 0.0, 0.0, 1.0)

_CHARGED_LEPTONS = frozenset({11, 13, 15})
_NEUTRINO_PIDS = frozenset({12, 14, 16})


def descriptor_form_factor(
    parent: int, daughters: Sequence[int], table_mode: ModeSpec | None = None
) -> tuple[str, tuple[float, ...]] | None:
    """The form-factor model a descriptor's semileptonic decay ``parent -> daughters`` gets with ``descriptor_models = "physical"``.

    * Λb0 → Λc+ ℓ ν̄ or Λc(2593)+ ℓ ν̄: ``BaryonPCR`` (Pervin–Roberts–Capstick), unpolarised
      (:data:`LAMBDA_B_UNPOLARISED`);
    * a meson: the decay table's model and parameters for the same mode when it is a
      form-factor one (``table_mode``: DECAY_LHCB.DEC's HQET2 for B → D(*) ℓ ν), else ``ISGW2``
      where it has the transition;
    * anything else (not X ℓ ν, or no model for it): None (phase space).

    Args:
        parent, daughters: PDG ids.
        table_mode: the decay table's line for this mode, if any.
    """
    if len(daughters) != 3:
        return None
    lep = [d for d in daughters if abs(d) in _CHARGED_LEPTONS]
    nu = [d for d in daughters if abs(d) in _NEUTRINO_PIDS]
    if len(lep) != 1 or len(nu) != 1:
        return None
    (had,) = [d for d in daughters if abs(d) not in _CHARGED_LEPTONS | _NEUTRINO_PIDS] or [0]
    from sim.generation import formfactors

    if abs(parent) == 5122:
        return ("BaryonPCR", LAMBDA_B_UNPOLARISED) if abs(had) in (4122, 14122) else None
    if table_mode is not None and table_mode.model in _SL_MODELS:
        try:
            formfactors.check_model(table_mode.model, parent, had, table_mode.params)
            return table_mode.model, tuple(table_mode.params)
        except DecayError:
            pass
    try:
        formfactors.check_model("ISGW2", parent, had, ())
    except DecayError:
        return None
    return "ISGW2", ()


def descriptor_spin_model(parent: int, daughters: Sequence[int], table_mode: ModeSpec | None) -> tuple[str, tuple[float, ...]] | None:
    """The helicity model a descriptor's two-body decay gets with ``descriptor_models = "physical"``.

    A two-body decay with a particle of spin (B+ → J/ψ K+, J/ψ → μ+ μ−, D*+ → D0 π+) takes the
    decay table's model and parameters for the same mode (``table_mode``) when it is one of the
    helicity-amplitude models (SVS, VLL, VSS, SVV_HELAMP, …) and fits the particles; else None
    (phase space).  Phase space would leave a J/ψ from a B+ → J/ψ K+ unpolarised, which angular
    momentum forbids (it is longitudinal), so the descriptor's decay is the table's.
    """
    from sim.generation.amplitudes import _TWO_BODY, helicity_couplings

    if len(daughters) != 2 or table_mode is None or table_mode.model not in _TWO_BODY:
        return None
    try:
        helicity_couplings(table_mode.model, parent, tuple(daughters), table_mode.params)
    except DecayError:
        return None
    return table_mode.model, tuple(table_mode.params)


def _has_spin(pids: Sequence[int]) -> bool:
    from sim.generation.amplitudes import _pdata

    return any(_pdata(p)[0] > 0 for p in pids)


def _descriptor_spec(node: DecayNode, models: str = "phase-space", reg: _Registry | None = None) -> _TreeSpec:
    if not node.children:
        return _TreeSpec(node.name, None, ())
    names = tuple(c.name for c in node.children)
    mode = ModeSpec(1.0, names, "PHSP")
    if models == "physical":
        kids = [c.pid for c in node.children]
        if descriptor_form_factor(node.pid, kids) is not None:
            table_mode = reg.table_mode(node.pid, kids) if abs(node.pid) != 5122 and reg is not None else None
            ff = descriptor_form_factor(node.pid, kids, table_mode)
        elif len(kids) == 2 and reg is not None and _has_spin([node.pid, *kids]):
            ff = descriptor_spin_model(node.pid, kids, reg.table_mode(node.pid, kids))
        else:
            ff = None
        if ff is not None:
            mode = ModeSpec(1.0, names, ff[0], ff[1])
    return _TreeSpec(node.name, mode, tuple(_descriptor_spec(c, models, reg) for c in node.children))


class DecayModel:
    """Everything needed to generate a decay: exclusive user chains (and their CC), the table completions.

    Build with :func:`load_decay`.  ``chains[i].probability`` sum to one (as do
    ``cc_chains``' when the charge conjugate is generated too).

    Attributes:
        source: the descriptor or DecFile.
        mother: EvtGen name of the head.
        chains: exclusive chains of the head.
        cc_chains: exclusive chains of the charge-conjugate head (empty if not asked).
        head: the head node (nominal mass, PDG id).
    """

    def __init__(self, source: str, mother: str, chains: list[DecayChain], cc_chains: list[DecayChain], engine: _Engine) -> None:
        self.source = source
        self.mother = mother
        self.chains = chains
        self.cc_chains = cc_chains
        self.engine = engine
        self.head = chains[0].nodes[0]

    @property
    def probabilities(self) -> np.ndarray:
        return np.array([c.probability for c in self.chains])

    @property
    def has_cc(self) -> bool:
        return bool(self.cc_chains)

    def __repr__(self) -> str:
        cc = f" + {len(self.cc_chains)} CC" if self.cc_chains else ""
        return f"DecayModel({self.source!r}, {len(self.chains)} chain(s){cc})"

    def sample_heads(self, n: int, rng: np.random.Generator, cc_fraction: float = 0.5) -> np.ndarray:
        """Root species of ``n`` instances: the conjugate with probability ``cc_fraction`` (if CC), chain by probability."""
        side = rng.random(n) < cc_fraction if self.cc_chains else np.zeros(n, bool)
        out = np.empty(n, np.int64)
        for flag, chains in ((False, self.chains), (True, self.cc_chains)):
            sel = np.flatnonzero(side == flag)
            if len(sel) == 0:
                continue
            roots = np.array([c.root for c in chains])
            probs = np.array([c.probability for c in chains])
            pick = rng.choice(len(chains), size=len(sel), p=probs / probs.sum()) if len(chains) > 1 else np.zeros(len(sel), np.int64)
            out[sel] = roots[pick]
        return out

    def prepare(self) -> None:
        """Presample the accept–reject bounds of the user chains (before any batch)."""
        for c in self.chains + self.cc_chains:
            if c.weighted:
                if self.engine.chain_inline(c):
                    self.engine.sl_proposal(int(self.engine.mode_off[c.root]))
                else:
                    self.engine.chain_bound(c)


# --------------------------------------------------------------------------- the engine


@dataclass
class TreeRows:
    """Generated particles of a batch, one row per particle, instances contiguous, each in breadth-first order.

    Attributes:
        inst: ``(R,)`` instance of each row; species, mode: species / global mode id (-1 stable);
        parent: row of the mother (-1 for a head); first: row of the first daughter (-1);
        nd: number of daughters; gen: generation (0 = head); thr: smallest mass the drawn subtree allows [MeV];
        p4: ``(R, 4)`` lab four-momenta [MeV]; mass: ``(R,)`` [MeV].
    """

    inst: np.ndarray
    species: np.ndarray
    mode: np.ndarray
    parent: np.ndarray
    first: np.ndarray
    nd: np.ndarray
    gen: np.ndarray
    thr: np.ndarray
    p4: np.ndarray
    mass: np.ndarray

    def chain_rows(self, chain: DecayChain) -> np.ndarray:
        """``(n, len(chain))`` rows of the chain's nodes for the instances generated with ``chain``."""
        head = np.flatnonzero((self.species == chain.root) & (self.gen == 0))
        out = np.empty((len(head), len(chain.nodes)), np.int64)
        out[:, 0] = head
        for j, nd in enumerate(chain.nodes):
            if nd.first_daughter >= 0:
                for k in range(nd.first_daughter, nd.last_daughter + 1):
                    out[:, k] = self.first[out[:, j]] + (k - nd.first_daughter)
        return out

    def chain_p4(self, chain: DecayChain) -> np.ndarray:
        return self.p4[self.chain_rows(chain)]


class _Engine:
    """Vectorised generation over the species/mode arrays of a resolved registry."""

    def __init__(self, reg: _Registry) -> None:
        self.reg = reg
        sp = reg.species
        self.n_species = len(sp)
        self.mass = np.array([s.mass for s in sp])
        self.width = np.array([s.width for s in sp])
        self.lifetime = np.array([s.lifetime for s in sp])
        self.pid = np.array([s.pid for s in sp], np.int64)
        self.charge = np.array([s.charge for s in sp], np.int64)
        self.wide = np.array([reg.wide(i) for i in range(len(sp))])
        self.thr = np.array(reg.thresholds())
        self.modes = reg.modes
        mode_ids = {id(m): i for i, m in enumerate(self.modes)}
        n_modes = np.array([len(s.modes) for s in sp])
        self.mode_off = np.concatenate([[0], np.cumsum(n_modes)]).astype(np.int64)
        # modes in species order (reg.modes is built that way); cumulative BFs shifted by the species id
        cum: list[float] = []
        for i, s in enumerate(sp):
            for j, m in enumerate(s.modes):
                if mode_ids[id(m)] != self.mode_off[i] + j:
                    raise DecayError("internal: modes out of species order")
            c = np.cumsum([m.bf for m in s.modes])
            if len(c):
                c[-1] = 1.0
            cum.extend(i + c)
        self.cum_shifted = np.array(cum)
        self.decays = n_modes > 0
        self.mode_nd = np.array([len(m.daughters) for m in self.modes], np.int64)
        self.mode_doff = np.concatenate([[0], np.cumsum(self.mode_nd)]).astype(np.int64)
        self.mode_dflat = np.array([d for m in self.modes for d in m.daughters], np.int64)
        self.mode_weighted = np.array([m.model not in ("PHSP", "") for m in self.modes])
        self.mode_photos = np.array([m.photos for m in self.modes], bool)
        self.photon = reg.photon
        self._ps_bound: dict[tuple[int, float], float] = {}
        self._model_bound: dict[Any, float] = {}
        self._warned: set[Any] = set()
        self.chains: list[DecayChain] = []
        self._inline: set[int] | None = None
        self._joint: dict[int, tuple[int, ...]] = {}
        from sim.generation.amplitudes import _TWO_BODY

        #: table modes whose two-body spin model is weighted jointly with a user chain above them
        self.mode_joint = np.array([m.origin == "table" and m.model in _TWO_BODY for m in self.modes], bool)
        self._sl: dict[int, tuple[Any, tuple[int, int, int], float]] = {}

    # ---- phase 1: topology
    def _sample_modes(self, species: np.ndarray, rng: np.random.Generator, forced: np.ndarray | None) -> np.ndarray:
        u = rng.random(len(species))
        mode = np.searchsorted(self.cum_shifted, species + u, side="right")
        mode = np.minimum(mode, self.mode_off[species + 1] - 1)
        out = np.where(self.decays[species], mode, -1)
        if forced is not None:
            out = np.where(forced >= 0, forced, out)
        return out

    def _topology_once(self, heads: np.ndarray, inst: np.ndarray, rng: np.random.Generator, head_mode: np.ndarray | None) -> dict[str, np.ndarray]:
        gens: list[dict[str, np.ndarray]] = []
        cur_sp, cur_inst = heads, inst
        cur_parent = np.full(len(heads), -1, np.int64)
        offset = 0
        forced = head_mode
        while len(cur_sp):
            mode = self._sample_modes(cur_sp, rng, forced)
            forced = None
            rows = offset + np.arange(len(cur_sp))
            gens.append({"inst": cur_inst, "species": cur_sp, "mode": mode, "parent": cur_parent, "gen": np.full(len(cur_sp), len(gens))})
            dec = mode >= 0
            nd = self.mode_nd[mode[dec]]
            tot = int(nd.sum())
            starts = np.cumsum(nd) - nd
            slot = np.arange(tot) - np.repeat(starts, nd)
            cur_parent = np.repeat(rows[dec], nd)
            cur_sp = self.mode_dflat[np.repeat(self.mode_doff[mode[dec]], nd) + slot]
            cur_inst = np.repeat(cur_inst[dec], nd)
            offset += len(rows)
            if len(gens) > 40:
                raise DecayError(f"decay tree of {self.reg.source!r} deeper than 40 generations (a decay loop in the table?)")
        return {k: np.concatenate([g[k] for g in gens]) for k in gens[0]}

    def _row_thresholds(self, t: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Per row: smallest mass its drawn subtree allows, and the sum of its daughters' smallest masses."""
        R = len(t["inst"])
        species, gen, parent = t["species"], t["gen"], t["parent"]
        thr = self.mass[species].copy()
        sums = np.zeros(R)
        is_parent = np.zeros(R, bool)
        for g in range(int(gen.max()), 0, -1):
            sel = np.flatnonzero(gen == g)
            np.add.at(sums, parent[sel], thr[sel])
            is_parent[:] = False  # the sorted distinct parents (np.unique's result) without its sort:
            is_parent[parent[sel]] = True  # 9 % of the default job's generator time, 3 December 2026
            par = np.flatnonzero(is_parent)
            wide_par = par[self.wide[species[par]] & (gen[par] > 0)]
            thr[wide_par] = sums[wide_par]
        return thr, sums

    def _feasible(self, t: dict[str, np.ndarray], n_inst: int) -> np.ndarray:
        """Per instance: every fixed-mass decaying particle heavier than its daughters' thresholds."""
        _thr, sums = self._row_thresholds(t)
        species, gen, mode = t["species"], t["gen"], t["mode"]
        fixed = (mode >= 0) & ~(self.wide[species] & (gen > 0))
        nd1 = self.mode_nd[np.maximum(mode, 0)] == 1
        bad_row = fixed & np.where(nd1, sums > self.mass[species] + 1e-6, sums >= self.mass[species])
        ok = np.ones(n_inst, bool)
        ok[t["inst"][bad_row]] = False
        return ok

    def topology(self, heads: np.ndarray, rng: np.random.Generator, head_mode: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """Rows of complete decay trees (modes drawn) for instances with root species ``heads``."""
        n = len(heads)
        parts = []
        pending = np.arange(n)
        for _ in range(200):
            t = self._topology_once(heads[pending], pending, rng, None if head_mode is None else head_mode[pending])
            ok = self._feasible(t, n)
            keep = ok[t["inst"]]
            parts.append((t, keep))
            bad = pending[~ok[pending]]
            if len(bad) == 0:
                break
            pending = bad
        else:
            raise DecayError(f"cannot draw kinematically allowed decay trees of {self.reg.source!r} (200 tries)")
        # merge: keep rows of accepted instances, order by (instance, generation, sequence)
        cols: dict[str, list[np.ndarray]] = {k: [] for k in ("inst", "species", "mode", "parent", "gen")}
        base = 0
        old_ids = []
        for t, keep in parts:
            idx = np.flatnonzero(keep)
            for k in ("inst", "species", "mode", "gen"):
                cols[k].append(t[k][idx])
            cols["parent"].append(np.where(t["parent"][idx] >= 0, t["parent"][idx] + base, -1))
            old_ids.append(idx + base)
            base += len(t["inst"])
        out = {k: np.concatenate(v) for k, v in cols.items()}
        old = np.concatenate(old_ids)
        order = np.lexsort((np.arange(len(old)), out["gen"], out["inst"]))
        out = {k: v[order] for k, v in out.items()}
        old = old[order]
        new_of_old = np.full(base, -1, np.int64)
        new_of_old[old] = np.arange(len(old))
        out["parent"] = np.where(out["parent"] >= 0, new_of_old[np.maximum(out["parent"], 0)], -1)
        R = len(old)
        first = np.full(R, -1, np.int64)
        nd = np.zeros(R, np.int64)
        child = np.flatnonzero(out["parent"] >= 0)
        np.add.at(nd, out["parent"][child], 1)
        # children are contiguous and ordered: the first is the smallest row with that parent
        rev = child[::-1]
        first[out["parent"][rev]] = rev
        out["first"] = first
        out["nd"] = nd
        out["thr"] = self._row_thresholds(out)[0]
        return out

    # ---- phase 2: kinematics
    def _ps_factor_fn(self, gid: int, m: np.ndarray) -> np.ndarray:
        """Phase-space factor of the decay of a wide particle at mass ``m`` by mode ``gid``, up to a constant.

        Two-body modes: ``m Φ2(m) ∝ p*(m)`` with the daughters at their smallest
        masses (so a K*(892) → K π line shape is BW × p*, vanishing at threshold).
        Modes of three or more bodies: 1, i.e. the line shape is the BW times the
        phase space of the decay that produced the particle only (EvtGen's default
        for such resonances); a documented approximation.
        """
        mode = self.modes[gid]
        if len(mode.daughters) != 2:
            return np.ones_like(m)
        ds = np.array(mode.daughters)
        lo = np.where(self.wide[ds], self.thr[ds], self.mass[ds])
        return nbody.pdk(m, lo[0], lo[1])

    def _decay_group(self, gid: int, P: np.ndarray, rows: TreeRows, rng: np.random.Generator, with_model: bool = True) -> None:
        """Decay the rows ``P`` (all with mode ``gid``): daughters' masses and lab four-momenta.

        ``with_model=False``: a table mode's own model weight is left out (it is weighted with
        the user chain above it).
        """
        k = len(self.modes[gid].daughters)
        children = rows.first[P][:, None] + np.arange(k)[None, :]
        if k == 1:
            rows.p4[children[:, 0]] = rows.p4[P]
            rows.mass[children[:, 0]] = rows.mass[P]
            return
        parent_fixed = not self.wide[rows.species[P[0]]] or bool(np.all(rows.gen[P] == 0))
        if with_model and parent_fixed and self.semileptonic_inline(gid) and bool(np.all(rows.mass[P] == self.mass[self.modes[gid].parent])):
            rows.p4[children] = self._sample_semileptonic(gid, rows.p4[P], rng)
            rows.mass[children] = self.mass[np.array(self.modes[gid].daughters)][None, :]
            return
        lab, masses = self._sample_decays(
            gid, rows.mass[P], rows.p4[P], rows.thr[children], rows.mode[children], rng, parent_fixed=parent_fixed, with_model=with_model
        )
        rows.p4[children] = lab
        rows.mass[children] = masses

    def _sample_decays(
        self,
        gid: int,
        M: np.ndarray,
        parent_p4: np.ndarray,
        thr: np.ndarray,
        child_modes: np.ndarray,
        rng: np.random.Generator,
        *,
        parent_fixed: bool,
        with_model: bool,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Unweighted decays of ``n`` parents by mode ``gid``.

        Args:
            gid: the mode.
            M: ``(n,)`` parent masses [MeV]; parent_p4: ``(n, 4)`` their lab four-momenta.
            thr: ``(n, K)`` smallest masses of the daughters' drawn subtrees [MeV].
            child_modes: ``(n, K)`` the daughters' drawn modes (-1 stable).
            rng: random generator.
            parent_fixed: all parents have the same, nominal mass (a tighter presampled bound).
            with_model: apply the one-level model weight of a table mode (its own block).

        Returns:
            ``(lab, masses)``: ``(n, K, 4)`` lab four-momenta and ``(n, K)`` masses of the daughters.
        """
        mode = self.modes[gid]
        ds = np.array(mode.daughters)
        k = len(ds)
        n = len(M)
        wide = self.wide[ds]
        nominal = self.mass[ds]
        lo = np.where(wide[None, :], thr, nominal[None, :])
        hi = M[:, None] - (lo.sum(axis=1)[:, None] - lo)
        # a presampled (tighter) bound pays for big groups, and for table modes of four or more
        # bodies of any size: the analytic bound of a many-body mode is loose by orders of magnitude
        # (J/ψ → 4π+ 4π− π0 took 325 s for 34 decays with it)
        many = mode.origin == "table" and k >= _MANY_BODY
        fixed = not wide.any() and parent_fixed and (n >= _FIXED_MIN_GROUP or many) and bool(np.all(M[0] == M))
        ps_bound = self._fixed_bound(gid, nominal, float(M[0])) if fixed else 0.0
        model_block = with_model and bool(self.mode_weighted[gid]) and mode.origin == "table"
        model_bound = self.mode_bound(gid) if model_block else 1.0
        out_p4 = np.empty((n, k, 4))
        out_m = np.empty((n, k))
        pending = np.arange(n)
        # running acceptance: how many candidates each pending decay gets per round.  It starts from
        # the same value in every call (never from an earlier batch's), so a batch's random stream —
        # and the store — depends only on its seed, not on what ran before it in the process.
        eff = 0.5
        tried = accepted = 0
        for _ in range(2_000):
            if len(pending) == 0:
                break
            hits = _SL_HITS_LARGE if len(pending) >= _SL_MANY_PENDING else 1.2  # expected hits per pending decay
            rep = int(np.clip(hits / max(eff, 1e-9), 1, max(1, 100_000 // len(pending))))
            cand = np.repeat(pending, rep)  # candidate c belongs to pending decay cand[c]
            Mp = M[cand]
            m = np.tile(nominal, (len(cand), 1))
            f_num = np.ones(len(cand))
            f_den = np.ones(len(cand))
            for j in np.flatnonzero(wide):
                m[:, j] = nbody.truncated_breit_wigner(float(nominal[j]), float(self.width[ds[j]]), lo[cand, j], hi[cand, j], rng)
                cm = child_modes[cand, j]
                for g in np.unique(cm):
                    s = cm == g
                    f_num[s] *= self._ps_factor_fn(int(g), m[s, j])
                    f_den[s] *= self._ps_factor_fn(int(g), hi[cand[s], j])
            room = m.sum(axis=1) < Mp
            if fixed:
                p4, w = nbody.genbod(m, Mp, rng)
                if np.any(w > ps_bound * (1.0 + 1e-9)):
                    if not many:
                        raise DecayError(f"phase-space weight above its presampled bound in {mode.text} ({self.reg.source}); please report")
                    # a table mode (the program's completion, not the user's request): the bound is raised
                    # for the rest of this group, with one warning line (as for a table mode's model bound)
                    ps_bound = self._raised_bound("ps-bound", "phase-space weight", gid, float(w.max()), ps_bound,
                                                  _PS_SAFETY, mode.text)
                bound = np.full(len(cand), ps_bound)
                acc = rng.random(len(cand)) * bound < w
            else:
                # step 1 (masses only, cheap): T^(K-2) wb(m) Π f(m) against its bound at the thresholds
                mm = np.where(room[:, None], m, lo[cand])
                tmax = np.maximum(Mp - lo[cand].sum(axis=1), 1e-300)
                t_ratio = (np.maximum(Mp - mm.sum(axis=1), 0.0) / tmax) ** (k - 2) if k > 2 else np.ones(len(cand))
                wb_m = nbody.weight_bound(mm, Mp)
                wb_lo = np.maximum(nbody.weight_bound(lo[cand], Mp), 1e-300)
                a1 = room & (rng.random(len(cand)) * wb_lo * np.maximum(f_den, 1e-300) < t_ratio * wb_m * f_num)
                # step 2 (kinematics for the survivors): the Raubold–Lynch weight against its bound at these masses
                acc = np.zeros(len(cand), bool)
                s1 = np.flatnonzero(a1)
                p4 = np.empty((len(cand), k, 4))
                if len(s1):
                    p4s, w = nbody.genbod(m[s1], Mp[s1], rng)
                    p4[s1] = p4s
                    acc[s1] = rng.random(len(s1)) * wb_m[s1] < w
            hit = np.flatnonzero(acc)
            lab = nbody.boost(p4[hit], parent_p4[cand[hit]], Mp[hit])
            if model_block and len(hit):
                specs = self._mode_specs(gid)
                wm = self._chain_weight(specs, [parent_p4[cand[hit]]] + [lab[:, j] for j in range(k)], mode.text)
                if len(wm) and float(wm.max()) > model_bound * (1.0 + 1e-9):
                    # raised for the rest of this group only, so a batch's store depends on its seed alone
                    model_bound = self._raised_bound("bound", "model weight", gid, float(wm.max()), model_bound,
                                                     _MODEL_SAFETY, mode.text)
                keep = rng.random(len(hit)) * model_bound < wm
                hit, lab = hit[keep], lab[keep]
            tried += len(cand)
            accepted += len(hit)
            # (accepted + ½) / (tried + 1): before the first acceptance the candidates per decay grow
            # about threefold per round instead of jumping to the 100 000-row cap (a one-decay group
            # of a rare table mode drew 100 000 candidates per round: 60 ms of ~1 800 such groups
            # made "B0 -> D*- pi+" with the full D0 table take 120 s for 2 000 events)
            eff = (accepted + 0.5) / (tried + 1.0)
            # the first accepted candidate of each pending decay
            owners, first_hit = np.unique(cand[hit], return_index=True)
            out_p4[owners] = lab[first_hit]
            out_m[owners] = m[hit[first_hit]]
            done = np.zeros(n, bool)
            done[owners] = True
            pending = pending[~done[pending]]
        else:
            raise DecayError(f"accept-reject of {mode.text} ({self.reg.source}) does not converge (efficiency {eff:.2g})")
        return out_p4, out_m

    def _fixed_bound(self, gid: int, masses: np.ndarray, big_m: float) -> float:
        key = (gid, round(big_m, 6))
        if key not in self._ps_bound:
            rng = np.random.default_rng(12345 + gid)
            _, w = nbody.genbod(np.tile(masses, (_PRESAMPLE, 1)), np.full(_PRESAMPLE, big_m), rng)
            analytic = float(nbody.weight_bound(masses[None, :], np.array([big_m]))[0])
            self._ps_bound[key] = min(float(w.max()) * _PS_SAFETY, analytic)
        return self._ps_bound[key]

    def kinematics(self, t: dict[str, np.ndarray], head_p4: np.ndarray, rng: np.random.Generator, rows: TreeRows | None = None, inst_mask: np.ndarray | None = None) -> TreeRows:
        """Four-momenta of every row (heads given in the lab); only instances in ``inst_mask`` if given."""
        if rows is None:
            R = len(t["inst"])
            rows = TreeRows(t["inst"], t["species"], t["mode"], t["parent"], t["first"], t["nd"], t["gen"], t["thr"], np.zeros((R, 4)), np.zeros(R))
        sel_row = np.ones(len(rows.inst), bool) if inst_mask is None else inst_mask[rows.inst]
        heads = np.flatnonzero(sel_row & (rows.gen == 0))
        rows.p4[heads] = head_p4[rows.inst[heads]]
        rows.mass[heads] = self.mass[rows.species[heads]]
        joint = self._joint_rows(rows)
        for g in range(int(rows.gen.max()) + 1):
            dec = np.flatnonzero(sel_row & (rows.gen == g) & (rows.mode >= 0))
            if len(dec) == 0:
                continue
            modes = rows.mode[dec]
            order = np.argsort(modes, kind="stable")
            modes_sorted = modes[order]
            uniq, starts = np.unique(modes_sorted, return_index=True)
            ends = np.append(starts[1:], len(order))
            for gid, s, e in zip(uniq, starts, ends, strict=True):
                P = dec[order[s:e]]
                jm = joint[P] if joint is not None else None
                if jm is not None and jm.any():  # weighted with the user chain above them (_block_weights)
                    if not jm.all():
                        self._decay_group(int(gid), P[~jm], rows, rng)
                    self._decay_group(int(gid), P[jm], rows, rng, with_model=False)
                else:
                    self._decay_group(int(gid), P, rows, rng)
        return rows

    # ---- spin correlations from a user chain into the table's decay of its leaves
    def joint_leaves(self, chain: DecayChain) -> tuple[int, ...]:
        """Leaves of a user chain, daughters of a two-body spin node, that the table decays.

        Their table mode, when it has a two-body spin model (J/ψ → μ+ μ− VLL under
        B+ → J/ψ K+ SVS), is weighted together with the chain (one coherent amplitude), not
        as its own unpolarised block.  Only for chains whose bound is analytic (no
        semileptonic node) and one table level deep.
        """
        key = int(chain.root)
        if key not in self._joint:
            from sim.generation.amplitudes import _TWO_BODY, model_weight_bound

            out: list[int] = []
            if chain.weighted and not self.chain_inline(chain) and model_weight_bound(chain.node_specs()) is not None:
                for j, nd in enumerate(chain.nodes):
                    if nd.first_daughter < 0 and nd.mother >= 0 and chain.nodes[nd.mother].model in _TWO_BODY and self.decays[nd.species]:
                        out.append(j)
            self._joint[key] = tuple(out)
        return self._joint[key]

    def _joint_rows(self, rows: TreeRows) -> np.ndarray | None:
        """Rows whose table mode is weighted with their user chain (see :meth:`joint_leaves`), or None."""
        out: np.ndarray | None = None
        for chain in self.chains:
            js = self.joint_leaves(chain)
            if not js:
                continue
            r = rows.chain_rows(chain)
            for j in js:
                rr = r[:, j]
                m = rows.mode[rr]
                hit = rr[(m >= 0) & self.mode_joint[np.maximum(m, 0)]]
                if len(hit):
                    if out is None:
                        out = np.zeros(len(rows.inst), bool)
                    out[hit] = True
        return out

    def _joint_specs(self, chain: DecayChain, js: tuple[int, ...], modes: np.ndarray) -> tuple[list[Any], list[tuple[int, int]]]:
        """The chain's NodeSpecs with the table modes ``modes`` (-1: none) of its leaves ``js`` appended."""
        from dataclasses import replace

        from sim.generation.amplitudes import NodeSpec

        specs = list(chain.node_specs())
        extra: list[tuple[int, int]] = []
        for j, gid in zip(js, modes, strict=True):
            if gid < 0:
                continue
            m = self.modes[int(gid)]
            start = len(specs)
            specs[j] = replace(specs[j], model=m.model, params=m.params, children=tuple(range(start, start + len(m.daughters))))
            specs.extend(NodeSpec(pid=int(self.pid[d]), model="", params=(), children=(), mother=j) for d in m.daughters)
            extra.extend((j, k) for k in range(len(m.daughters)))
        return specs, extra

    # ---- phase 3: model weights
    def _block_weights(self, rows: TreeRows, inst_mask: np.ndarray, n_inst: int) -> np.ndarray:
        """Per instance: accepted by every model block (True where no block)."""
        ok = np.ones(n_inst, bool)
        for chain in self.chains:
            if not chain.weighted or self.chain_inline(chain):
                continue
            r = rows.chain_rows(chain)
            r = r[inst_mask[rows.inst[r[:, 0]]]]
            if len(r) == 0:
                continue
            js = self.joint_leaves(chain)
            if js:
                lm = np.stack([rows.mode[r[:, j]] for j in js], axis=1)
                lm = np.where((lm >= 0) & self.mode_joint[np.maximum(lm, 0)], lm, -1)
                keys, inv = np.unique(lm, axis=0, return_inverse=True)
                inv = inv.ravel()
            else:
                keys, inv = np.full((1, 0), -1, np.int64), np.zeros(len(r), np.int64)
            for ki, key in enumerate(keys):
                sel = np.flatnonzero(inv == ki)
                rs = r[sel]
                if js and bool(np.any(key >= 0)):
                    from sim.generation.amplitudes import model_weight_bound

                    specs, extra = self._joint_specs(chain, js, key)
                    p4 = [rows.p4[rs[:, j]] for j in range(rs.shape[1])] + [rows.p4[rows.first[rs[:, j]] + k] for j, k in extra]
                    bkey = ("joint", chain.root, tuple(int(v) for v in key))
                    if bkey not in self._model_bound:
                        b = model_weight_bound(specs)
                        if b is None:
                            raise DecayError(f"internal: no analytic bound for the joint weight of {chain.tree}")
                        self._model_bound[bkey] = float(b)
                    bound = self._model_bound[bkey]
                else:
                    specs, p4 = chain.node_specs(), [rows.p4[rs[:, j]] for j in range(rs.shape[1])]
                    bound = self.chain_bound(chain)
                w = self._chain_weight(specs, p4, chain.tree)
                self._check_bound(w, bound, str(chain.tree))
                ok[rows.inst[rs[:, 0]]] &= self._rng_u(len(w)) * bound < w
        return ok

    def _rng_u(self, n: int) -> np.ndarray:
        return self._rng.random(n)

    @staticmethod
    def _chain_weight(specs: list[Any], p4: list[np.ndarray], what: Any) -> np.ndarray:
        from sim.generation.amplitudes import chain_weight

        w = np.asarray(chain_weight(specs, p4), float)
        if w.shape != (len(p4[0]),) or not np.all(np.isfinite(w)) or np.any(w < 0):
            raise DecayError(f"model weights of {what} are not finite and >= 0 (chain_weight)")
        return w

    def _check_bound(self, w: np.ndarray, bound: float, what: str) -> None:
        if len(w) and float(w.max()) > bound * (1.0 + 1e-9):
            raise DecayError(
                f"model weight {float(w.max()):.4g} of {what} exceeds its accept-reject bound {bound:.4g} "
                f"(presample max x {_MODEL_SAFETY}); the sample would be biased"
            )

    # ---- semileptonic modes: importance sampling in (q², cosθ_ℓ)
    def chain_inline(self, chain: DecayChain) -> bool:
        """Whether a user chain's model weight is its head's semileptonic node alone (sampled in place)."""
        if self._inline is None:
            inline: set[int] = set()
            for c in self.chains:
                weighted = [i for i, nd in enumerate(c.nodes) if nd.model not in ("", "PHSP")]
                gid = int(self.mode_off[c.root])
                if weighted == [0] and c.nodes[0].model in _SL_MODELS and self._sl_narrow(gid):
                    inline.add(gid)
            self._inline = inline
        return int(self.mode_off[chain.root]) in self._inline

    def _sl_narrow(self, gid: int) -> bool:
        m = self.modes[gid]
        return len(m.daughters) == 3 and not bool(self.wide[np.array(m.daughters)].any())

    def semileptonic_inline(self, gid: int) -> bool:
        """Whether mode ``gid`` is generated by :meth:`_sample_semileptonic` (a user chain's head, or a table mode)."""
        m = self.modes[gid]
        if m.model not in _SL_MODELS:
            return False
        if m.origin == "table":
            return self._sl_narrow(gid)
        return any(self.chain_inline(c) for c in self.chains if int(self.mode_off[c.root]) == gid)

    def sl_proposal(self, gid: int) -> tuple[Any, tuple[int, int, int], float]:
        """(proposal, daughter positions of X, ℓ, ν, accept–reject bound) of a semileptonic mode, built once.

        The proposal (:func:`sim.generation.sampling.build_semileptonic_proposal`) is the
        mode's own |M|² for an unpolarised parent, a function of (q², cosθ_ℓ) alone, tabulated;
        the bound is the largest unpolarised |M|²·dΦ3/g of a 20 000-decay presample × 1.2,
        times d·λmax(ρ) for a parent with spin density ρ (BaryonPCR's parameters), which
        bounds |M|²_ρ/|M|²_unpolarised.  Fixed seeds: every process has the same.
        """
        if gid not in self._sl:
            from sim.generation.amplitudes import _semileptonic_roles
            from sim.generation.sampling import build_semileptonic_proposal

            m = self.modes[gid]
            ds = list(m.daughters)
            roles = _semileptonic_roles(m.model, int(self.pid[m.parent]), [int(self.pid[d]) for d in ds], m.params)
            big_m = float(self.mass[m.parent])
            masses = (big_m, *(float(self.mass[ds[r]]) for r in roles))
            specs = self._mode_specs(gid)
            # |M|² of the unpolarised parent depends on (q², cosθ_ℓ) only; a spin-density matrix ρ
            # (trace 1, dimension d) gives |M|²_ρ = Tr(ρ T T†) <= d·λmax(ρ)·|M|²_unpolarised
            factor = 1.0
            if m.model == "BaryonPCR":
                from dataclasses import replace

                r00, r01, r10, r11 = m.params
                rho = np.array([[r00, r01], [r10, r11]], dtype=complex)
                tr = float(np.real(np.trace(rho)))
                if tr > 0:  # else chain_weight refuses it below, naming the parameters
                    factor = 2.0 * float(np.max(np.linalg.eigvalsh(0.5 * (rho + rho.conj().T)))) / tr
                specs = [replace(specs[0], params=(1.0, 0.0, 0.0, 1.0)), *specs[1:]]

            def weight(p4: np.ndarray) -> np.ndarray:
                head = np.zeros((len(p4), 4))
                head[:, 3] = big_m
                lab: list[np.ndarray] = [p4[:, 0]] * 3
                for k, r in enumerate(roles):
                    lab[r] = p4[:, k]
                return self._chain_weight(specs, [head, *lab], m.text)

            prop = build_semileptonic_proposal(weight, masses, seed=555 + gid, n_avg=4)  # type: ignore[arg-type]
            p4, ratio = prop.sample(_PRESAMPLE, np.random.default_rng(777 + gid))
            w = weight(p4) * ratio
            head = np.zeros((8, 4))
            head[:, 3] = big_m
            lab8 = np.empty_like(p4[:8])
            lab8[:, list(roles)] = p4[:8]
            self._chain_weight(self._mode_specs(gid), [head] + [lab8[:, j] for j in range(3)], m.text)  # the real parameters
            if not np.any(w > 0):
                raise DecayError(f"model weights of {m.text} are zero on a {_PRESAMPLE}-decay presample")
            self._sl[gid] = (prop, (int(roles[0]), int(roles[1]), int(roles[2])), factor * float(w.max()) * _MODEL_SAFETY)
        return self._sl[gid]

    def _sample_semileptonic(self, gid: int, parent_p4: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Unweighted decays P → X ℓ ν of parents at their nominal mass with lab four-momenta ``parent_p4`` (n, 4).

        Candidates come from the mode's (q², cosθ_ℓ) proposal and are accepted with
        |M|²·dΦ3/g against the presampled bound, so the accepted decays follow |M|² dΦ3
        exactly (the head's spin density included: |M|² is evaluated in the lab).

        Returns:
            ``(n, 3, 4)`` lab four-momenta of the daughters in the mode's order.
        """
        prop, roles, bound = self.sl_proposal(gid)
        m = self.modes[gid]
        specs = self._mode_specs(gid)
        n = len(parent_p4)
        big_m = float(self.mass[m.parent])
        out = np.empty((n, 3, 4))
        pending = np.arange(n)
        eff = 0.5
        tried = accepted = 0
        for _ in range(2_000):
            if len(pending) == 0:
                break
            hits = _SL_HITS_LARGE if len(pending) >= _SL_MANY_PENDING else 1.2  # expected hits per pending decay
            rep = int(np.clip(hits / max(eff, 1e-9), 1, max(1, 100_000 // len(pending))))
            cand = np.repeat(pending, rep)
            p4, ratio = prop.sample(len(cand), rng)
            rest = np.empty_like(p4)
            rest[:, list(roles)] = p4
            lab = nbody.boost(rest, parent_p4[cand], np.full(len(cand), big_m))
            w = self._chain_weight(specs, [parent_p4[cand]] + [lab[:, j] for j in range(3)], m.text) * ratio
            if len(w) and float(w.max()) > bound * (1.0 + 1e-9):
                if m.origin != "table":
                    self._check_bound(w, bound, m.text)
                bound = self._raised_bound("bound", "model weight", gid, float(w.max()), bound, _MODEL_SAFETY, m.text)
            hit = np.flatnonzero(rng.random(len(cand)) * bound < w)
            tried += len(cand)
            accepted += len(hit)
            # (accepted + ½) / (tried + 1): before the first acceptance the candidates per decay grow
            # about threefold per round instead of jumping to the 100 000-row cap (a one-decay group
            # of a rare table mode drew 100 000 candidates per round: 60 ms of ~1 800 such groups
            # made "B0 -> D*- pi+" with the full D0 table take 120 s for 2 000 events)
            eff = (accepted + 0.5) / (tried + 1.0)
            owners, first_hit = np.unique(cand[hit], return_index=True)
            out[owners] = lab[hit[first_hit]]
            done = np.zeros(n, bool)
            done[owners] = True
            pending = pending[~done[pending]]
        else:
            raise DecayError(f"accept-reject of {m.text} ({self.reg.source}) does not converge (efficiency {eff:.2g})")
        return out

    def _raised_bound(self, key: str, what: str, gid: int, w_max: float, bound: float, safety: float, text: str) -> float:
        """The accept-reject bound raised to ``w_max * safety`` for the rest of group ``gid``, warned once per group and kind."""
        new_bound = w_max * safety
        if (key, gid) not in self._warned:
            self._warned.add((key, gid))
            log.warning(
                "%s %.4g of %s (decay table) exceeded its presampled bound %.4g: raised to %.4g "
                "within the group (decays accepted before it are biased by at most that ratio)",
                what, w_max, text, bound, new_bound,
            )
        return new_bound

    def _mode_specs(self, gid: int) -> list[Any]:
        from sim.generation.amplitudes import NodeSpec

        m = self.modes[gid]
        k = len(m.daughters)
        head = NodeSpec(pid=int(self.pid[m.parent]), model=m.model, params=m.params, children=tuple(range(1, k + 1)), mother=-1)
        return [head] + [NodeSpec(pid=int(self.pid[d]), model="", params=(), children=(), mother=0) for d in m.daughters]

    def _presample_bound(self, specs: list[Any], root: int, head_mode: int | None, seed: int, what: str, pick: Any) -> float:
        from sim.generation.amplitudes import model_weight_bound

        b = model_weight_bound(specs)
        if b is not None:
            return float(b)
        rng = np.random.default_rng(seed)
        heads = np.full(_PRESAMPLE, root, np.int64)
        t = self.topology(heads, rng, None if head_mode is None else np.full(_PRESAMPLE, head_mode, np.int64))
        hp4 = np.zeros((_PRESAMPLE, 4))
        hp4[:, 3] = self.mass[root]
        rows = self.kinematics(t, hp4, rng)
        w = self._chain_weight(specs, pick(rows), what)
        if not np.any(w > 0):
            raise DecayError(f"model weights of {what} are zero on a {_PRESAMPLE}-decay presample")
        return float(w.max()) * _MODEL_SAFETY

    def chain_bound(self, chain: DecayChain) -> float:
        key = ("chain", chain.root)
        if key not in self._model_bound:
            def pick(rows: TreeRows) -> list[np.ndarray]:
                r = rows.chain_rows(chain)
                return [rows.p4[r[:, j]] for j in range(r.shape[1])]

            self._model_bound[key] = self._presample_bound(chain.node_specs(), chain.root, None, 777 + chain.root, str(chain.tree), pick)
        return self._model_bound[key]

    def mode_bound(self, gid: int) -> float:
        """Accept–reject bound of a table mode's one-level model weight (analytic, or presampled once)."""
        key = ("mode", gid)
        if key not in self._model_bound:
            from sim.generation.amplitudes import model_weight_bound

            m = self.modes[gid]
            specs = self._mode_specs(gid)
            b = model_weight_bound(specs)
            if b is None:
                rng = np.random.default_rng(4242 + gid)
                n = _PRESAMPLE_TABLE
                ds = np.array(m.daughters)
                M = np.full(n, self.mass[m.parent])
                hp4 = np.zeros((n, 4))
                hp4[:, 3] = M
                cmodes = np.stack([self._sample_modes(np.full(n, d, np.int64), rng, None) for d in ds], axis=1)
                thr = np.where(cmodes >= 0, self._mode_thr_static(np.maximum(cmodes, 0)), self.mass[ds][None, :])
                thr = np.where(self.wide[ds][None, :], thr, self.mass[ds][None, :])
                lab, _ = self._sample_decays(gid, M, hp4, thr, cmodes, rng, parent_fixed=True, with_model=False)
                w = self._chain_weight(specs, [hp4] + [lab[:, j] for j in range(len(ds))], m.text)
                if not np.any(w > 0):
                    raise DecayError(f"model weights of {m.text} are zero on a {n}-decay presample")
                b = float(w.max()) * _MODEL_SAFETY
            self._model_bound[key] = float(b)
        return self._model_bound[key]

    def _mode_thr_static(self, gids: np.ndarray) -> np.ndarray:
        """Threshold of modes (sum of their daughters' smallest masses, species level)."""
        if not hasattr(self, "_mthr"):
            lo = np.where(self.wide[self.mode_dflat], self.thr[self.mode_dflat], self.mass[self.mode_dflat])
            self._mthr = np.add.reduceat(lo, self.mode_doff[:-1]) if len(lo) else np.zeros(0)
        return self._mthr[gids]

    # ---- everything
    def generate(self, heads: np.ndarray, head_p4: np.ndarray, rng: np.random.Generator) -> TreeRows:
        """Complete decay trees for root species ``heads`` (n,) with lab four-momenta ``head_p4`` (n, 4)."""
        n = len(heads)
        t = self.topology(heads, rng)
        rows = self.kinematics(t, head_p4, rng)
        has_blocks = any(c.weighted and not self.chain_inline(c) for c in self.chains)
        if has_blocks:
            self._rng = rng
            pending = np.ones(n, bool)
            for _ in range(100_000):
                ok = self._block_weights(rows, pending, n)
                pending &= ~ok
                if not pending.any():
                    break
                rows = self.kinematics(t, head_p4, rng, rows, pending)
            else:
                raise DecayError(f"model accept-reject of {self.reg.source!r} does not converge")
        if self.mode_photos.any() and bool(np.any(self.mode_photos[rows.mode[rows.mode >= 0]])):
            rows = self._fsr(rows, rng)
        return rows

    # ---- phase 4: final-state radiation
    def _fsr(self, rows: TreeRows, rng: np.random.Generator) -> TreeRows:
        """PHOTOS lines: ``sim.generation.photos.add_fsr`` per (particle, mode) group, top down.

        The recoiling daughters' subtrees follow their new momenta (boosted from the
        old rest frame to the new one, so every vertex still conserves four-momentum);
        each radiated photon is appended to its mother's daughters (a stable leaf).
        """
        from sim.generation.photos import add_fsr

        new_parent: list[np.ndarray] = []
        new_p4: list[np.ndarray] = []
        gmax = int(rows.gen.max())
        for g in range(gmax):
            dec = np.flatnonzero((rows.gen == g) & (rows.mode >= 0))
            dec = dec[self.mode_photos[rows.mode[dec]] & (rows.nd[dec] >= 2)]
            if len(dec) == 0:
                continue
            old = rows.p4.copy()
            changed = np.zeros(len(rows.inst), bool)
            modes = rows.mode[dec]
            for gid in np.unique(modes):
                P = dec[modes == gid]
                k = len(self.modes[int(gid)].daughters)
                children = rows.first[P][:, None] + np.arange(k)[None, :]
                q = self.charge[np.array(self.modes[int(gid)].daughters)]
                if not np.any(q != 0):
                    continue
                before = rows.p4[children]
                res = add_fsr(before, q, rng, k_min=FSR_K_MIN)
                # guard (a safety net: add_fsr balances every decay, a lone neutrino recoil included):
                # a row whose radiation does not balance four-momentum keeps its decay without FSR
                miss = np.abs(res.daughters.sum(axis=1) + res.photons.sum(axis=1) - before.sum(axis=1)).max(axis=1)
                bad = miss > 1e-7 * before.sum(axis=1)[:, 3]
                daughters, emitted = res.daughters.copy(), res.emitted.copy()
                if bad.any():
                    daughters[bad], emitted[bad] = before[bad], False
                    key = ("fsr", int(gid))
                    if key not in self._warned:
                        self._warned.add(key)
                        log.warning(
                            "add_fsr did not conserve four-momentum in %d of %d decays %s: no FSR for those",
                            int(bad.sum()), len(bad), self.modes[int(gid)].text,
                        )
                rows.p4[children] = daughters
                changed[children.ravel()] = True
                hit = np.flatnonzero(emitted.ravel())
                if len(hit):
                    new_parent.append(np.repeat(P, k)[hit])
                    new_p4.append(res.photons.reshape(-1, 4)[hit])
            # descendants of recoiled daughters: from the old rest frame to the new one
            carry_old = np.where(changed[:, None], old, np.nan)
            carry_new = np.where(changed[:, None], rows.p4, np.nan)
            for h in range(g + 2, gmax + 1):
                sel = np.flatnonzero(rows.gen == h)
                par = rows.parent[sel]
                moved = sel[~np.isnan(carry_old[par, 3])]
                if len(moved) == 0:
                    break
                po, pn = carry_old[rows.parent[moved]], carry_new[rows.parent[moved]]
                inv = po.copy()
                inv[:, :3] *= -1.0
                at_rest = nbody.boost(rows.p4[moved][:, None, :], inv)
                rows.p4[moved] = nbody.boost(at_rest, pn)[:, 0]
                carry_old[moved], carry_new[moved] = po, pn
        if not new_parent:
            return rows
        return self._append_leaves(rows, np.concatenate(new_parent), np.concatenate(new_p4), self.photon)

    def _append_leaves(self, rows: TreeRows, parents: np.ndarray, p4: np.ndarray, species: int) -> TreeRows:
        """Rows with stable leaves added after the existing daughters of ``parents`` (breadth-first order kept)."""
        R, A = len(rows.inst), len(parents)
        order_in = np.argsort(parents, kind="stable")
        parents, p4 = parents[order_in], p4[order_in]
        rank = np.arange(A) - np.searchsorted(parents, parents)
        slot_old = np.where(rows.parent >= 0, np.arange(R) - rows.first[np.maximum(rows.parent, 0)], 0)
        parent = np.concatenate([rows.parent, parents])
        slot = np.concatenate([slot_old, rows.nd[parents] + rank])
        inst = np.concatenate([rows.inst, rows.inst[parents]])
        gen = np.concatenate([rows.gen, rows.gen[parents] + 1])
        order = np.lexsort((slot, parent, gen, inst))
        new_of_old = np.empty(R + A, np.int64)
        new_of_old[order] = np.arange(R + A)
        par = parent[order]
        par = np.where(par >= 0, new_of_old[np.maximum(par, 0)], -1)
        nd = np.zeros(R + A, np.int64)
        kid = np.flatnonzero(par >= 0)
        np.add.at(nd, par[kid], 1)
        first = np.full(R + A, -1, np.int64)
        first[par[kid[::-1]]] = kid[::-1]
        cat = lambda a, b: np.concatenate([a, b])[order]  # noqa: E731
        return TreeRows(
            inst=inst[order], species=cat(rows.species, np.full(A, species, np.int64)), mode=cat(rows.mode, np.full(A, -1, np.int64)),
            parent=par, first=first, nd=nd, gen=gen[order], thr=cat(rows.thr, np.zeros(A)),
            p4=np.concatenate([rows.p4, p4])[order], mass=cat(rows.mass, np.zeros(A)),
        )

    def decay_positions(self, rows: TreeRows, head_pos: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Production and decay positions ``(R, 4)`` [mm, ns] (decay NaN for stable rows)."""
        R = len(rows.inst)
        prod = np.empty((R, 4))
        dec = np.full((R, 4), np.nan)
        heads = np.flatnonzero(rows.gen == 0)
        prod[heads] = head_pos[rows.inst[heads]]
        tau = self.lifetime[rows.species]
        for g in range(int(rows.gen.max()) + 1):
            sel = np.flatnonzero(rows.gen == g)
            if g > 0:
                prod[sel] = dec[rows.parent[sel]]
            d = sel[rows.mode[sel] >= 0]
            t = rng.exponential(1.0, len(d)) * tau[d]
            m = np.maximum(rows.mass[d], 1e-9)
            dec[d, :3] = prod[d, :3] + rows.p4[d, :3] / m[:, None] * (C_LIGHT * t)[:, None]
            dec[d, 3] = prod[d, 3] + rows.p4[d, 3] / m * t
        return prod, dec


# --------------------------------------------------------------------------- building


def load_decay(
    decay: str | None = None,
    *,
    dec_file: str | Path | None = None,
    mother: str | None = None,
    width_tolerance: float = 0.1,
    stable: Sequence[str] = DEFAULT_STABLE,
    decay_table: str = "DECAY_LHCB.DEC",
    unsupported_models: str = "error",
    table_unsupported_models: str = "phase-space",
    descriptor_models: str = "phase-space",
) -> DecayModel:
    """Build a :class:`DecayModel` from a descriptor or a DecFile.

    Args:
        decay: a descriptor, e.g. ``"Lambda_b0 -> (Lambda_c+ -> p+ K- pi+) mu- anti-nu_mu"``;
            ``"[...]cc"`` adds the charge-conjugate decay.
        dec_file: a ``.dec`` file (EvtGen format, aliases, ``CDecay``); every mode of
            ``mother`` with its branching fraction.  A Decay block of the conjugate
            (``CDecay``) adds the charge-conjugate decay.
        mother: the decaying particle of ``dec_file`` (default: first ``Decay`` block).
        width_tolerance: non-head particles wider than this [MeV] get a Breit–Wigner mass.
        stable: particles the table does not decay (antiparticles implied); what
            the user writes is always decayed as written.
        decay_table: the table completing undecayed particles: a shipped name
            (``DECAY_LHCB.DEC``, ``DECAY_BELLE2.DEC``) or a DecFile path.
        unsupported_models: ``"error" | "phase-space" | "skip"`` for what the user wrote.
        table_unsupported_models: the same for the table's modes (default
            ``"phase-space"``: the table is the program's choice, not the user's
            request; one warning line per substituted model, never silent).
        descriptor_models: ``"phase-space"`` (every decay a descriptor writes is PHSP) or
            ``"physical"``: its semileptonic decays get the form-factor model of
            :func:`descriptor_form_factor` (the default job's Λb0 → Λc+ μ− ν̄: BaryonPCR), its
            two-body decays with spin the decay table's helicity model
            (:func:`descriptor_spin_model`: B+ → J/ψ K+ is SVS).  DecFiles say their models themselves.

    Raises:
        DecayError, UnknownParticleError: malformed, unphysical or unsupported decay.
    """
    if (decay is None) == (dec_file is None):
        raise DecayError("give exactly one of a decay descriptor or a .dec file")
    stable_set = stable_pids(stable)
    if descriptor_models not in DESCRIPTOR_MODELS:
        raise DecayError(f"descriptor_models must be one of {', '.join(DESCRIPTOR_MODELS)}, got {descriptor_models!r}")
    if decay is not None:
        tree, cc = parse_descriptor(decay)
        source = decay
        reg = _Registry(user=None, table=decay_table, stable=stable_set, user_policy=unsupported_models,
                        table_policy=table_unsupported_models, width_tolerance=width_tolerance, source=source)
        specs = [(1.0, _descriptor_spec(tree, descriptor_models, reg))]
        cc_specs = [(1.0, _descriptor_spec(tree.conjugate(), descriptor_models, reg))] if cc and tree.conjugate().pid != tree.pid else []
        blocks: DecBlocks | None = None
        head_name = tree.name
    else:
        path = Path(dec_file)  # type: ignore[arg-type]
        blocks = read_dec_file(path)
        source = str(path)
        mothers = blocks.mothers()
        if not mothers:
            raise DecayError(f"DecFile '{path}' has no Decay block")
        if mother is None:
            mother = mothers[0]
        elif mother not in mothers:
            from mambah.descriptor import _evtgen_name

            try:
                canon = _evtgen_name(lookup_particle(mother))
            except Exception:
                canon = mother
            if canon not in mothers:
                raise DecayError(f"DecFile '{path}' has no Decay block for {mother!r}; it has {', '.join(mothers)}")
            mother = canon
        reg = _Registry(user=blocks, table=decay_table, stable=stable_set, user_policy=unsupported_models,
                        table_policy=table_unsupported_models, width_tolerance=width_tolerance, source=source)
        specs = _expand_user(blocks, mother, reg)
        conj = blocks.conjugates.get(mother)
        if conj is None:
            from mambah.descriptor import _evtgen_name

            p = lookup_particle(blocks.particle_name(mother), context=source)
            bar = p.invert()
            conj = _evtgen_name(bar) if int(bar.pdgid) != int(p.pdgid) else None
        cc_specs = _expand_user(blocks, conj, reg) if conj is not None and conj in blocks.blocks and conj != mother else []
        head_name = blocks.particle_name(mother)
    total = sum(p for p, _ in specs)
    if not specs or total <= 0:
        raise DecayError(f"decay of {head_name!r} in {source!r} has no mode with a positive branching fraction")
    raw = []
    for side, pairs in (("", specs), ("cc", cc_specs)):
        tot = sum(p for p, _ in pairs)
        for i, (p, spec) in enumerate(pairs):
            nodes, dtree = _tree_nodes(reg, spec, f"c{side}{i}", blocks)
            raw.append((side, p / tot, nodes, dtree))
    reg.finish()
    engine = _Engine(reg)
    chains = [DecayChain(p, nodes, dtree, engine) for side, p, nodes, dtree in raw if side == ""]
    cc_chains = [DecayChain(p, nodes, dtree, engine) for side, p, nodes, dtree in raw if side == "cc"]
    engine.chains = chains + cc_chains
    return DecayModel(source, chains[0].nodes[0].name, chains, cc_chains, engine)


