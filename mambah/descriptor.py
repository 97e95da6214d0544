"""Decay descriptors: ``"Lambda_b0 -> (Lambda_c+ -> p+ K- pi+) mu- anti-nu_mu"``.

Particle names are EvtGen names as used by DecFiles and decaylanguage, PDG names
of the ``particle`` package (``K*(892)~0``) or LHCb spellings (``KS0``, ``Lc+``;
:data:`LHCB_NAMES`), resolved with ``particle`` (``Particle.from_evtgen_name``,
``Particle.from_name``) and stored in their EvtGen spelling.  A descriptor is
``mother -> daughter daughter ...``; a daughter that decays further is written
``(mother -> ...)``.  Wrapping the whole descriptor in ``[...]CC`` asks for the
charge-conjugate decay as well (used when matching candidates).

This module only describes decay *trees*; phasespace generation from them lives
in :mod:`sim.generation.decay` (with decaylanguage for the DecFile grammar).
"""

from __future__ import annotations

import difflib
import functools
import re
from dataclasses import dataclass, field

from mambah.errors import DecayError, UnknownParticleError

__all__ = ("DecayNode", "parse_descriptor", "lookup_particle", "default_aliases")


@dataclass(frozen=True)
class DecayNode:
    """One particle of a decay tree.

    Attributes:
        name: EvtGen name, e.g. ``"Lambda_c+"``.
        pid: PDG Monte Carlo id.
        children: daughters (empty for a final-state particle).
    """

    name: str
    pid: int
    children: tuple[DecayNode, ...] = field(default=())

    def walk(self) -> list[DecayNode]:
        """Nodes in breadth-first order (the order of particle indices in the store)."""
        out, queue = [], [self]
        while queue:
            node = queue.pop(0)
            out.append(node)
            queue.extend(node.children)
        return out

    def conjugate(self) -> DecayNode:
        """The charge-conjugate tree."""
        from particle import Particle

        p = Particle.from_pdgid(self.pid)
        bar = p.invert()
        return DecayNode(_evtgen_name(bar), int(bar.pdgid), tuple(c.conjugate() for c in self.children))

    def __str__(self) -> str:
        if not self.children:
            return self.name
        inner = " ".join(f"({c})" if c.children else c.name for c in self.children)
        return f"{self.name} -> {inner}"


@functools.cache
def _evtgen_names() -> tuple[str, ...]:
    from particle import Particle
    from particle.converters.evtgen import EvtGenName2PDGIDBiMap

    names = set()
    for p in Particle.all():
        try:
            names.add(EvtGenName2PDGIDBiMap[p.pdgid])
        except Exception:
            names.add(p.name)
    return tuple(sorted(names))


def _evtgen_name(p: object) -> str:
    from particle.converters.evtgen import EvtGenName2PDGIDBiMap

    try:
        return str(EvtGenName2PDGIDBiMap[p.pdgid])  # type: ignore[attr-defined]
    except Exception:
        return str(p.name)  # type: ignore[attr-defined]


#: LHCb (LoKi/Gaudi particle table) and common short spellings → EvtGen names.
#: The antiparticles follow from the ``~`` / ``anti-`` rules in :func:`_spellings`.
LHCB_NAMES: dict[str, str] = {
    "KS0": "K_S0", "K0S": "K_S0", "KS": "K_S0", "K_S": "K_S0", "Ks": "K_S0", "Ks0": "K_S0",
    "KL0": "K_L0", "K0L": "K_L0", "KL": "K_L0", "K_L": "K_L0",
    "Lc+": "Lambda_c+", "Lc~-": "anti-Lambda_c-", "Lc-": "anti-Lambda_c-",
    "Lb0": "Lambda_b0", "Lb~0": "anti-Lambda_b0", "Lb": "Lambda_b0",
    "L0": "Lambda0", "L~0": "anti-Lambda0", "Lambda": "Lambda0", "Lambda~0": "anti-Lambda0",
    "Xic+": "Xi_c+", "Xic0": "Xi_c0", "Xib-": "Xi_b-", "Xib0": "Xi_b0", "Omegab-": "Omega_b-", "Omegac0": "Omega_c0",
    "Sc++": "Sigma_c++", "Sigmac++": "Sigma_c++",
    "Bs0": "B_s0", "Bs~0": "anti-B_s0", "Bs": "B_s0", "Bc+": "B_c+", "Bc-": "B_c-", "Bu+": "B+", "Bu-": "B-", "Bd0": "B0", "Bd~0": "anti-B0",
    "Ds+": "D_s+", "Ds-": "D_s-", "Ds*+": "D_s*+", "Ds*-": "D_s*-",
    "Jpsi": "J/psi", "J/psi(1S)": "J/psi", "psi(2S)": "psi(2S)", "psi2S": "psi(2S)",
    "p": "p+", "p~-": "anti-p-", "pbar": "anti-p-", "n": "n0", "n~0": "anti-n0",
    "e": "e-", "mu": "mu-", "pi": "pi+", "K": "K+", "g": "gamma",
}


def _spellings(name: str) -> list[str]:
    """EvtGen/PDG spellings to try for an LHCb-style name (``Lambda_c~-``, ``B_s~0``, ``nu_mu~``)."""
    out = [name]
    if name in LHCB_NAMES:
        out.append(LHCB_NAMES[name])
    if "~" in name:  # LHCb antiparticles: 'D~0', 'Lambda_c~-', 'nu_mu~', 'p~-'
        base = name.replace("~", "")
        out += [re.sub(r"_(\w+?)([+\-0]*)$", r"(\1)~\2", name), name.rstrip("+-0"), re.sub(r"~[+\-0]$", "~", name)]
        flipped = base.translate(str.maketrans("+-", "-+"))
        out += [f"anti-{flipped}", f"anti-{base}"]
    if "_" in name:
        out.append(re.sub(r"_(\w+?)([+\-0~]*)$", r"(\1)\2", name))  # PDG style: Lambda(c)+, B(s)0
        out.append(re.sub(r"_([A-Za-z0-9]+)(?=\()", r"(\1)", name))  # eta_c(1S) -> eta(c)(1S), chi_c1(1P)
        out.append(re.sub(r"\(\d[SPD]\)", "", name))  # EvtGen drops the (1S): chi_c1(1P) -> chi_c1
    return list(dict.fromkeys(out))


def lookup_particle(name: str | int, *, context: str = ""):
    """The ``particle.Particle`` of an EvtGen, PDG or LHCb name or a PDG id.

    Accepted: EvtGen names (``K_S0``, ``Lambda_c+``, ``anti-D0``), PDG names of the
    ``particle`` package (``K(S)0``, ``Lambda(c)+``, ``D*(2010)+``, ``K*(892)~0``) and
    LHCb spellings (``KS0``, ``K0S``, ``Lc+``, ``Lb0``, ``Bs0``, ``D~0``, ``Lambda_c~-``,
    ``nu_mu~``; table :data:`LHCB_NAMES`).

    Raises:
        UnknownParticleError: with close accepted spellings suggested.
    """
    from particle import Particle
    from particle.particle import InvalidParticle, ParticleNotFound

    where = f" in {context}" if context else ""
    if isinstance(name, int) or (isinstance(name, str) and re.fullmatch(r"[+-]?\d+", name)):
        try:
            return Particle.from_pdgid(int(name))
        except (ParticleNotFound, InvalidParticle, KeyError, ValueError) as err:
            raise UnknownParticleError(f"unknown PDG id {name}{where}") from err
    found = _lookup_name(str(name))
    if found is not None:
        return found
    close = _suggest(str(name))
    hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    raise UnknownParticleError(f"unknown particle {str(name)!r}{where}{hint}")


@functools.lru_cache(maxsize=4096)
def _lookup_name(name: str):  # type: ignore[no-untyped-def]
    """The particle of an accepted spelling, or ``None``; successful lookups are remembered.

    A decay table names the same few hundred particles thousands of times; the
    ``particle`` package's ``from_name`` scans all its ~6 500 particles per call.
    """
    from particle import Particle
    from particle.particle import InvalidParticle, ParticleNotFound

    for cand in _spellings(name):
        for ctor in (Particle.from_evtgen_name, _from_pdg_name):
            try:
                return ctor(cand)
            except (ParticleNotFound, InvalidParticle, KeyError, ValueError):
                continue
    return None


@functools.lru_cache(maxsize=1)
def _pdg_name_index() -> dict[str, list]:  # type: ignore[type-arg]
    """``particle``'s names → the particles of that name (built once: one pass over the table)."""
    from particle import Particle

    index: dict[str, list] = {}  # type: ignore[type-arg]
    for p in Particle.all():
        index.setdefault(p.name, []).append(p)
    return index


def _from_pdg_name(name: str):  # type: ignore[no-untyped-def]
    """``Particle.from_name`` through the name index; an ambiguous name goes to ``from_name`` itself."""
    from particle import Particle
    from particle.particle import ParticleNotFound

    hits = _pdg_name_index().get(name)
    if not hits:
        raise ParticleNotFound(f"Could not find name {name!r}")
    return hits[0] if len(hits) == 1 else Particle.from_name(name)


def _suggest(name: str) -> list[str]:
    """Close accepted spellings (EvtGen names and :data:`LHCB_NAMES`): spelled-out charges ('Kplus'), case, typos."""
    names = _evtgen_names() + tuple(LHCB_NAMES)
    lower = {n.lower(): n for n in names}
    query = re.sub(r"(?i)plus$", "+", re.sub(r"(?i)minus$", "-", name)).replace("bar", "anti-")
    out: list[str] = []
    for q in dict.fromkeys((query, name)):
        if q.lower() in lower:
            out.append(lower[q.lower()])
        out += [lower[m] for m in difflib.get_close_matches(q.lower(), list(lower), n=3, cutoff=0.6)]
    return list(dict.fromkeys(out))[:3]


#: tokens: '->', parentheses, and particle names, which may carry parentheses
#: without spaces (``K*(892)~0``, ``rho(770)0``, ``D*(2010)+``, ``K(S)0``)
_TOKEN = re.compile(r"\s*(->|[^\s()]+(?:\([^\s()]*\)[^\s()]*)+|\(|\)|[^\s()]+)")


def parse_descriptor(text: str) -> tuple[DecayNode, bool]:
    """Parse a decay descriptor.

    Args:
        text: e.g. ``"Lambda_b0 -> (Lambda_c+ -> p+ K- pi+) mu- anti-nu_mu"``,
            optionally wrapped as ``"[...]CC"``.

    Returns:
        ``(tree, cc)``: the decay tree and whether the charge conjugate was asked.

    Raises:
        DecayError: malformed descriptor.
        UnknownParticleError: a name not known to ``particle``.
    """
    if not isinstance(text, str) or not text.strip():
        raise DecayError("empty decay descriptor")
    src = text.strip()
    cc = False
    m = re.fullmatch(r"\[(.*)\]\s*(cc|CC)", src, flags=re.S)
    if m:
        src, cc = m.group(1).strip(), True
    if "[" in src or "]" in src:  # no particle name holds a square bracket
        raise DecayError(
            f"malformed decay descriptor {text!r}: square brackets only wrap the whole descriptor, as '[... -> ...]cc' (or CC)"
        )
    tokens = [t for t in _TOKEN.findall(src) if t]
    if "".join(tokens).replace(" ", "") != re.sub(r"\s+", "", src):
        raise DecayError(f"cannot parse decay descriptor {text!r}")
    pos = 0

    def error(msg: str) -> DecayError:
        return DecayError(f"malformed decay descriptor {text!r}: {msg}")

    def parse_chain() -> DecayNode:
        nonlocal pos
        if pos >= len(tokens) or tokens[pos] in ("->", "(", ")"):
            raise error("expected a particle name" + (f" before {tokens[pos]!r}" if pos < len(tokens) else " at the end"))
        mother = tokens[pos]
        pos += 1
        if pos >= len(tokens) or tokens[pos] != "->":
            raise error(f"expected '->' after {mother!r}")
        pos += 1
        children: list[DecayNode] = []
        while pos < len(tokens) and tokens[pos] != ")":
            tok = tokens[pos]
            if tok == "(":
                pos += 1
                children.append(parse_chain())
                if pos >= len(tokens) or tokens[pos] != ")":
                    raise error("unbalanced parentheses")
                pos += 1
            elif tok == "->":
                raise error("unexpected '->' (put a decaying daughter in parentheses)")
            else:
                children.append(_leaf(tok, text))
                pos += 1
        if not children:
            raise error(f"{mother!r} has no daughters")
        p = lookup_particle(mother, context=f"decay {text!r}")
        return DecayNode(_evtgen_name(p), int(p.pdgid), tuple(children))  # canonical EvtGen spelling

    tree = parse_chain()
    if pos != len(tokens):
        raise error(f"unexpected {tokens[pos]!r}")
    return tree, cc


#: what an EvtGen model name looks like (``SVS``, ``PHSP``, ``VSS_BMIX``): no particle is spelled so
_MODEL_LIKE = re.compile(r"[A-Z][A-Z0-9_]{2,}")


def _leaf(name: str, text: str) -> DecayNode:
    try:
        p = lookup_particle(name, context=f"decay {text!r}")
    except UnknownParticleError as err:
        if _MODEL_LIKE.fullmatch(name) and "did you mean" not in str(err):
            raise UnknownParticleError(
                f"{err}; a descriptor names particles only: a decay model such as {name} goes in a .dec file "
                "(mambah run --dec-file, or dec_file in the config)"
            ) from err
        raise
    return DecayNode(_evtgen_name(p), int(p.pdgid))


_SPECIAL = {"J/psi": "Jpsi", "psi(2S)": "psi2S", "gamma": "gamma", "p+": "p", "anti-p-": "p", "n0": "n", "anti-n0": "n"}


def _short(name: str) -> str:
    if name in _SPECIAL:
        return _SPECIAL[name]
    s = name.removeprefix("anti-")
    s = re.sub(r"[+\-0~]+$", "", s)  # charge suffix
    s = s.replace("*", "st").replace("(", "").replace(")", "").replace("'", "p")
    if s.startswith("nu_"):
        return "nu"
    head, _, sub = s.partition("_")
    if sub:  # Lambda_b -> Lb, B_s -> Bs, D_s -> Ds, Sigma_c -> Sc
        return head[0] + sub
    return s


def default_aliases(tree: DecayNode | str) -> list[str]:
    """LHCb-style branch aliases for the nodes of ``tree`` in :meth:`DecayNode.walk` order.

    ``Lambda_b0 -> (Lambda_c+ -> p+ K- pi+) mu- anti-nu_mu`` gives
    ``["Lb", "Lc", "mu", "nu", "p", "K", "pi"]``; repeated names get a number
    (``pi1``, ``pi2``).

    Args:
        tree: a parsed decay (:func:`parse_descriptor`) or a descriptor string.

    Raises:
        DecayError: a malformed descriptor string (UnknownParticleError: an unknown name).
    """
    if isinstance(tree, str):
        tree = parse_descriptor(tree)[0]
    nodes = tree.walk()
    base = [_short(n.name) for n in nodes]
    counts = {b: base.count(b) for b in base}
    seen: dict[str, int] = {}
    out = []
    for b in base:
        if counts[b] > 1:
            seen[b] = seen.get(b, 0) + 1
            out.append(f"{b}{seen[b]}")
        else:
            out.append(b)
    return out
