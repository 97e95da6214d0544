"""Decay descriptors: ``"Lambda_b0 -> (Lambda_c+ -> p+ K- pi+) mu- anti-nu_mu"``.

Particle names are EvtGen names as used by DecFiles and decaylanguage, resolved
with the ``particle`` package (``Particle.from_evtgen_name``).  A descriptor is
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
    from particle.converters.evtgen import EvtGenName2PDGIDBiMap
    from particle import Particle

    names = set()
    for p in Particle.all():
        try:
            names.add(EvtGenName2PDGIDBiMap[p.pdgid])
        except Exception:  # noqa: BLE001 - not every PDG id has an EvtGen name
            names.add(p.name)
    return tuple(sorted(names))


def _evtgen_name(p: object) -> str:
    from particle.converters.evtgen import EvtGenName2PDGIDBiMap

    try:
        return str(EvtGenName2PDGIDBiMap[p.pdgid])  # type: ignore[attr-defined]
    except Exception:  # noqa: BLE001
        return str(p.name)  # type: ignore[attr-defined]


def lookup_particle(name: str | int, *, context: str = ""):  # noqa: ANN201 - particle.Particle
    """The ``particle.Particle`` of an EvtGen/PDG name or a PDG id.

    Raises:
        UnknownParticleError: with close names suggested.
    """
    from particle import Particle
    from particle.particle import ParticleNotFound, InvalidParticle

    where = f" in {context}" if context else ""
    try:
        if isinstance(name, int) or (isinstance(name, str) and re.fullmatch(r"[+-]?\d+", name)):
            return Particle.from_pdgid(int(name))
        try:
            return Particle.from_evtgen_name(name)
        except (ParticleNotFound, InvalidParticle, KeyError, ValueError):
            return Particle.from_name(name)
    except (ParticleNotFound, InvalidParticle, KeyError, ValueError) as err:
        close = _suggest(str(name))
        hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        raise UnknownParticleError(f"unknown particle {str(name)!r}{where}{hint}") from err


def _suggest(name: str) -> list[str]:
    """Close EvtGen names: spelled-out charges ('Kplus'), case, typos."""
    names = _evtgen_names()
    lower = {n.lower(): n for n in names}
    query = re.sub(r"(?i)plus$", "+", re.sub(r"(?i)minus$", "-", name)).replace("bar", "anti-")
    out: list[str] = []
    for q in dict.fromkeys((query, name)):
        if q.lower() in lower:
            out.append(lower[q.lower()])
        out += [lower[m] for m in difflib.get_close_matches(q.lower(), list(lower), n=3, cutoff=0.6)]
    return list(dict.fromkeys(out))[:3]


_TOKEN = re.compile(r"\s*(->|\(|\)|[^\s()]+)")


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
        return DecayNode(mother, int(p.pdgid), tuple(children))

    tree = parse_chain()
    if pos != len(tokens):
        raise error(f"unexpected {tokens[pos]!r}")
    return tree, cc


def _leaf(name: str, text: str) -> DecayNode:
    p = lookup_particle(name, context=f"decay {text!r}")
    return DecayNode(name, int(p.pdgid))


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
