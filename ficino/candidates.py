"""Building the candidate table of one batch: MC-truth candidates joined with reconstruction.

A *candidate* is one MC-truth match of the decay descriptor, exactly as
:func:`mambah.match_decay` finds them, but matched in numpy (:func:`_match`)
on the batch's ``mc_particles`` rows, which are read anyway: no self-join in
DuckDB.  For every particle of the descriptor this module
collects, as 1-D numpy arrays with one entry per candidate:

* truth: momentum, PDG id, mother id, production and decay vertices
  (``mc_particles``, ``mc_vertices``);
* for charged final-state particles ("tracks"): the reconstructed track, i.e.
  the ``protoparticles`` row with ``mc_particle`` = the particle's index (the
  lowest-index one if the particle was reconstructed more than once) and
  ``track_type > 0``; E and M use the PDG mass of the true species;
* for composites (particles with daughters in the descriptor): the four-vector
  sum of their reconstructed charged final-state descendants (the *visible*
  momentum; neutrinos and other neutral final-state particles are never
  reconstructed), a decay vertex, a primary vertex and, from those, flight
  distance, its chi2, DIRA, the decay time and the corrected mass.

Vertex model (documented in ``docs/ficino.md``): the decay vertex of a composite
is *fitted* (:func:`sim.detector.vertexing.fit_vertex`, a Billoir fit) from its
daughters' track states and covariances (``protoparticles`` ``x, y, z, tx, ty``,
``charge/p`` and the 15 ``cov_*`` columns), bottom-up: a flying intermediate
(cτ ≥ 1 µm: D, Λc, K_S, ...) enters its parent's fit as the line of its fitted
vertex and momentum; a resonance (J/ψ, K*, φ, ...) is fitted through its tracks.
A composite needs every input track matched and at least two inputs, else its
vertex columns are NaN.  Its own primary vertex (``OWNPV``) is, among the event's
reconstructed PVs (``vertices`` rows with ``is_primary``, diagonal covariance
``cov_xx/yy/zz``), the one with the smallest IPχ² of the composite; these PVs are
parametrised from the event's occupancy and never contain the signal tracks, so no
refit is needed to exclude them.  An event without reconstructed PV uses the true
production vertex of the head smeared with :attr:`VertexResolution.pv_sigma`
(random numbers from ``(seed, batch)`` only).  FD, FDχ², DIRA and MCORR use the
visible momentum (the same as ``M``); the decay time τ comes from a lifetime fit of
PV, decay vertex and the fitted momentum (:func:`sim.detector.vertexing.decay_time`).

Truth matching (``<composite>_BKGCAT``, LHCb's BackgroundCategory codes as far as
truth-matched candidates reach them, :func:`background_category`): 0 signal; 30
reflection (a track with the wrong reconstructed charge); 40 / 50 partially
reconstructed / low-mass background (a π0, K_S0, ... leaf of the descriptor is never
reconstructed); 60 a charged final-state descendant without matched track or a
missing photon (only in ``reconstructed_only=False`` exports).
"""

from __future__ import annotations

import dataclasses
import logging
import re
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ficino.variables import VARIABLES, Variable
from mambah.codes import NEUTRINOS
from mambah.descriptor import DecayNode, default_aliases, lookup_particle, parse_descriptor
from mambah.errors import ExportError, MambahError
from mambah.schema import column_names
from sim.detector import vertexing as vx
from sim.detector.trackcov import COV_COLUMNS

if TYPE_CHECKING:
    from mambah.store import EventStore

__all__ = (
    "DEFAULT_DECAY",
    "DecaySpec",
    "VertexResolution",
    "Candidates",
    "Column",
    "decay_spec",
    "default_decay",
    "build_candidates",
    "check_photons",
    "candidates_from_tables",
    "fetch_tables",
    "resolve_columns",
    "present_sources",
    "compute_columns",
    "BKGCAT_SIGNAL",
    "BKGCAT_REFLECTION",
    "BKGCAT_WRONG_CHARGE",
    "BKGCAT_PART_RECO",
    "BKGCAT_LOW_MASS",
    "BKGCAT_NOT_RECONSTRUCTED",
    "background_category",
)

log = logging.getLogger(__name__)

#: The decay exported when neither the caller nor the store says otherwise.
DEFAULT_DECAY = "Lambda_b0 -> (Lambda_c+ -> p+ K- pi+) mu- anti-nu_mu"

#: ``_BKGCAT`` values: LHCb's BackgroundCategory codes reachable by truth-matched candidates
#: (DaVinciMCTools ``IBackgroundCategory``; see :func:`background_category`).
BKGCAT_SIGNAL = 0
BKGCAT_REFLECTION = 30
BKGCAT_WRONG_CHARGE = BKGCAT_REFLECTION  # the former name
BKGCAT_PART_RECO = 40
BKGCAT_LOW_MASS = 50
BKGCAT_NOT_RECONSTRUCTED = 60
#: LHCb's ``LowMassBackgroundCut`` default [MeV]: a partial candidate whose true mass is below
#: PDG mass + this is low-mass background (50), else partially reconstructed (40).
BKGCAT_LOW_MASS_CUT = 100.0

_MC_COLS = ("index", "pid", "px", "py", "pz", "e", "charge", "prod_vertex", "decay_vertex", "mother")
_PP_COLS = tuple(c for c in column_names("protoparticles") if c not in ("batch", "event", "index", "mc_particle"))
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass(frozen=True)
class VertexResolution:
    """Gaussian PV resolution [mm] (x, y, z) used when an event has no reconstructed PV.

    Decay vertices are fitted from the tracks (module docstring); the former
    decay-vertex smearing (``sv_sigma``) is gone.

    Attributes:
        pv_sigma: primary-vertex smearing when the store has no reconstructed PV.
    """

    pv_sigma: tuple[float, float, float] = (0.010, 0.010, 0.050)

#: Intermediates with cτ below this [mm] are resonances: fitted through their tracks.
RESONANCE_CTAU = 1e-3


@dataclass(frozen=True)
class DecaySpec:
    """A parsed descriptor with aliases and the role of each particle.

    Attributes:
        descriptor: the descriptor text.
        tree: the parsed tree.
        cc: also match the charge conjugate.
        aliases: one per node, breadth-first (:meth:`DecayNode.walk` order).
        kinds: alias -> ``"composite"``, ``"track"`` (charged final state) or ``"neutral"``.
        masses: alias -> PDG mass [MeV] (the mass hypothesis of a track).
        charges: alias -> charge [e] of the descriptor's particle.
        tracks: composite alias -> aliases of its charged final-state descendants.
        photons: composite alias -> aliases of its photon descendants (kind ``"photon"``:
            reconstructed from ``neutral_protoparticles``, calorimeter pass).
    """

    descriptor: str
    tree: DecayNode
    cc: bool
    aliases: tuple[str, ...]
    kinds: Mapping[str, str]
    masses: Mapping[str, float]
    charges: Mapping[str, float]
    tracks: Mapping[str, tuple[str, ...]]
    photons: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    @property
    def head(self) -> str:
        return self.aliases[0]


def decay_spec(decay: str, aliases: Sequence[str] | Mapping[str, str] | None = None) -> DecaySpec:
    """Parse ``decay`` and assign aliases.

    Args:
        decay: descriptor, e.g. ``"Lambda_b0 -> (Lambda_c+ -> p+ K- pi+) mu- anti-nu_mu"``.
        aliases: ``None`` (defaults of :func:`mambah.default_aliases`), one alias per
            particle in breadth-first order, or a mapping default alias -> new alias.

    Raises:
        ExportError: malformed descriptor, unknown or duplicate alias.
    """
    try:
        tree, cc = parse_descriptor(decay)
    except MambahError as err:
        raise ExportError(str(err)) from err
    nodes = tree.walk()
    defaults = default_aliases(tree)
    if aliases is None:
        names = list(defaults)
    elif isinstance(aliases, Mapping):
        unknown = [k for k in aliases if k not in defaults]
        if unknown:
            raise ExportError(f"unknown alias(es) {', '.join(map(repr, unknown))} for decay {decay!r}; aliases are {', '.join(defaults)}")
        names = [str(aliases.get(a, a)) for a in defaults]
    else:
        names = [str(a) for a in aliases]
        if len(names) != len(nodes):
            raise ExportError(
                f"{len(names)} aliases given for the {len(nodes)} particles of {decay!r} "
                f"(breadth-first: {', '.join(n.name for n in nodes)}); default aliases are {', '.join(defaults)}"
            )
    bad = [a for a in names if not _IDENT.fullmatch(a)]
    if bad:
        raise ExportError(f"alias(es) {', '.join(map(repr, bad))} are not identifiers (letters, digits, _)")
    if len(set(names)) != len(names):
        raise ExportError(f"aliases must be unique, got {', '.join(names)}")
    kinds: dict[str, str] = {}
    masses: dict[str, float] = {}
    charges: dict[str, float] = {}
    for node, name in zip(nodes, names):
        part = lookup_particle(node.pid)
        charges[name] = float(part.charge or 0.0)
        masses[name] = float(part.mass) if part.mass is not None else 0.0
        kinds[name] = "composite" if node.children else (
            "track" if charges[name] != 0 else ("photon" if node.pid == 22 else "neutral"))
    alias_of = {id(n): a for n, a in zip(nodes, names)}
    tracks = {
        alias_of[id(n)]: tuple(alias_of[id(d)] for d in n.walk()[1:] if kinds[alias_of[id(d)]] == "track")
        for n in nodes
        if n.children
    }
    photons = {
        alias_of[id(n)]: tuple(alias_of[id(d)] for d in n.walk()[1:] if kinds[alias_of[id(d)]] == "photon")
        for n in nodes
        if n.children
    }
    return DecaySpec(decay, tree, cc, tuple(names), kinds, masses, charges, tracks, photons)


def default_decay(store: EventStore) -> str:
    """The decay of the store's generator pass (from its ``pipeline`` metadata), else :data:`DEFAULT_DECAY`.

    Raises:
        ExportError: the store was generated from a DecFile (several modes): give the decay.
    """
    text = store.get_metadata("pipeline")
    if not text:
        return DEFAULT_DECAY
    try:
        passes = tomllib.loads(text).get("passes", [])
    except tomllib.TOMLDecodeError:
        return DEFAULT_DECAY
    for p in passes:
        # the gun generator, or a full-event one (pythia: its signal decay, hepmc: its signal descriptor)
        if isinstance(p, Mapping) and p.get("kind") in ("generator", "pythia", "hepmc"):
            if p.get("dec_file"):
                raise ExportError(
                    f"store '{store.path}' was generated from DecFile {p['dec_file']!r}; give the decay to export (--decay)"
                )
            decay = p.get("signal") if p.get("kind") == "hepmc" else p.get("decay")
            if p.get("kind") != "generator" and not decay:
                raise ExportError(f"store '{store.path}' holds {p['kind']} events without a signal decay; give the decay to export (--decay)")
            return str(decay or DEFAULT_DECAY)
    return DEFAULT_DECAY


# --------------------------------------------------------------------------- columns
@dataclass(frozen=True)
class Column:
    """One output column: its name, the alias it belongs to (None: event), and its variable."""

    name: str
    alias: str | None
    var: Variable


def _applies(scope: str, kind: str) -> bool:
    return scope == "truth" or (scope == "reco" and kind != "neutral") or scope == kind


def resolve_columns(
    spec: DecaySpec, variables: Iterable[str] | None = None, present: set[str] | None = None
) -> list[Column]:
    """The columns of the ntuple.

    Args:
        spec: decay and aliases.
        variables: ``None`` for all applicable variables, else names: a variable
            (``"PT"``: for every particle it applies to; ``"nTracks"``) or one
            column (``"Lc_M"``).
        present: ``protoparticles`` columns that hold data; with ``variables=None``
            variables reading only absent columns are left out (``None``: keep all).

    Raises:
        ExportError: unknown variable or alias, naming the available ones.
    """
    every = [
        Column(f"{a}_{v.name}", a, v)
        for a in spec.aliases
        for v in VARIABLES.values()
        if v.scope != "event" and _applies(v.scope, spec.kinds[a])
    ] + [Column(v.name, None, v) for v in VARIABLES.values() if v.scope == "event"]
    if variables is None:
        if present is None:
            return every
        return [c for c in every if not c.var.source or any(s in present for s in c.var.source)]
    if isinstance(variables, str):
        variables = [v.strip() for v in variables.split(",") if v.strip()]
    variables = list(variables)
    if not variables:  # an ntuple without columns is no request one can honour
        raise ExportError("variables names no variable; give e.g. ['PT', 'M'] or 'PT,M', or None for all")
    by_name = {c.name: c for c in every}
    out: dict[str, Column] = {}
    for token in variables:
        if token in by_name:
            out[token] = by_name[token]
        elif token in VARIABLES:
            cols = [c for c in every if c.var.name == token]
            if not cols:
                raise ExportError(f"variable {token!r} ({VARIABLES[token].scope}) applies to no particle of {spec.descriptor!r}")
            out.update((c.name, c) for c in cols)
        else:
            alias, _, var = token.partition("_")
            hint = ""
            for a in spec.aliases:
                if token.startswith(a + "_"):
                    alias, var = a, token[len(a) + 1 :]
            if alias in spec.aliases and var in VARIABLES:
                hint = f" ({var} does not apply to {alias}, a {spec.kinds[alias]} particle)"
                raise ExportError(f"unknown column {token!r}{hint}")
            if alias in spec.aliases or (var and var in VARIABLES):
                hint = f"; aliases are {', '.join(spec.aliases)}"
            raise ExportError(
                f"unknown variable {token!r}{hint}; variables are {', '.join(VARIABLES)} "
                f"(alone, or as <alias>_<variable> with aliases {', '.join(spec.aliases)})"
            )
    return list(out.values())


def check_photons(store: EventStore, spec: DecaySpec, columns: Sequence[Column]) -> None:
    """Refuse reconstructed photon columns from a store without calorimeter output.

    Raises:
        ExportError: a column needs a reconstructed photon (a photon's reco/photon
            variables, or a composite with photon descendants) and the store's
            ``neutral_protoparticles`` table is empty.
    """
    photons = [a for a, k in spec.kinds.items() if k == "photon"]
    if not photons:
        return
    needs = [c.name for c in columns if c.alias is not None and (
        (c.alias in photons and c.var.scope != "truth")
        or (spec.photons.get(c.alias) and c.var.scope in ("reco", "composite")))]
    if needs and store.count("neutral_protoparticles") == 0:
        raise ExportError(
            f"decay {spec.descriptor!r} has photon(s) {', '.join(photons)} but the store holds no calorimeter output "
            f"(neutral_protoparticles is empty) for {needs[0]} and {len(needs) - 1} more column(s); "
            "run the 'calorimeter' pass (in the default pipeline) or export truth variables of all candidates "
            "(--all-candidates)"
        )


def present_sources(store: EventStore, batch: int | Sequence[int] | None = None) -> set[str]:
    """``protoparticles`` columns with at least one non-NULL value (in ``batch``, or the whole store)."""
    counts = ", ".join(f'count("{c}") AS "{c}"' for c in _PP_COLS)
    where = ""
    params: list[Any] | None = None
    if batch is not None:
        batches = [int(batch)] if isinstance(batch, (int, np.integer)) else [int(b) for b in batch]
        where, params = " WHERE batch IN (SELECT unnest(?))", [batches]
    row = store.query(f"SELECT {counts} FROM protoparticles{where}", params).to_pylist()[0]
    return {c for c, n in row.items() if n}


# --------------------------------------------------------------------------- candidates
@dataclass
class Candidates:
    """Candidates of one batch as arrays.

    Attributes:
        particles: alias -> key -> array (n,) (keys listed in :mod:`ficino.variables`).
        event: key -> array (n,): ``batch, event, n_tracks, n_pv, weight, n_candidate, tot_candidates``.
        n_matched: MC-truth candidates before the reconstruction requirement.
    """

    particles: dict[str, dict[str, np.ndarray]]
    event: dict[str, np.ndarray]
    n_matched: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.event["event"])

    def take(self, mask: np.ndarray) -> Candidates:
        """The candidates where ``mask`` (bool (n,)) holds."""
        return Candidates(
            {a: {k: v[mask] for k, v in d.items()} for a, d in self.particles.items()},
            {k: v[mask] for k, v in self.event.items()},
            self.n_matched,
        )


def _numpy(col: pa.ChunkedArray | pa.Array) -> np.ndarray:
    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks() if col.num_chunks != 1 else col.chunk(0)
    return col.to_numpy(zero_copy_only=False)


def _f8(col: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """Floating numpy array (float32 kept as float32); NULL -> NaN."""
    if col.null_count == 0 and (pa.types.is_floating(col.type) or pa.types.is_integer(col.type)):
        out = _numpy(col)
        return out if out.dtype in (np.float32, np.float64) else out.astype(np.float64)
    target = pa.float32() if pa.types.is_float32(col.type) else pa.float64()
    return _numpy(pc.fill_null(pc.cast(col, target), np.nan))


def _i4(col: pa.ChunkedArray | pa.Array, null: int) -> np.ndarray:
    """int32 numpy array; NULL -> ``null``."""
    if col.null_count == 0 and pa.types.is_integer(col.type):
        return _numpy(col).astype(np.int32, copy=False)
    return np.asarray(_numpy(pc.fill_null(pc.cast(col, pa.int32()), null)), dtype=np.int32)


class _Lookup:
    """Row positions of ``(event, index)`` keys in one batch's table (first row of each key).

    Store tables come sorted by ``(event, index)`` with ``index`` counting 0, 1, ... in
    each event; then the row of a key is ``start[event] + index`` (checked against the
    key; any key not found that way falls back to a binary search, so sparse or unsorted
    tables work too), one compiled pass over the queries (:mod:`ficino._kernels`).
    """

    def __init__(self, event: np.ndarray, index: np.ndarray, order_by: np.ndarray | None = None) -> None:
        from ficino._kernels import lookup_keys

        key = np.empty(len(event), np.int64)
        in_order = bool(lookup_keys(event, index, key))  # key (int64 (m,)) and whether it is sorted
        if order_by is not None and in_order:
            step = np.diff(key)
            in_order = bool(np.all((step > 0) | ((step == 0) & (np.diff(order_by) >= 0))))
        self.start = np.zeros(0, np.int64)  # empty: no event starts, binary search only
        if in_order:  # rows usually come sorted by (event, index): no sort, identity order
            self.order = np.arange(len(key))
            self.sorted = key
            ev = np.asarray(event, np.int64)
            if len(ev) and ev[0] >= 0 and ev[-1] <= 4 * len(ev) + 1024:  # events of a batch: 0..n-1
                self.start = np.searchsorted(ev, np.arange(ev[-1] + 2))
        else:
            self.order = np.lexsort((order_by, key)) if order_by is not None else np.argsort(key, kind="stable")
            self.sorted = key[self.order]

    def find(self, event: np.ndarray, index: np.ndarray) -> np.ndarray:
        """Positions (int64 (n,)), -1 where the key is absent or ``index < 0`` (one compiled pass,
        :func:`ficino._kernels.lookup_find`)."""
        from ficino._kernels import lookup_find

        out = np.empty(len(event), np.int64)
        lookup_find(self.sorted, self.order, self.start, np.ascontiguousarray(event), np.ascontiguousarray(index), out)
        return out


def _key(event: np.ndarray, index: np.ndarray) -> np.ndarray:
    return (np.asarray(event, np.int64) << 32) | (np.asarray(index, np.int64) & 0xFFFFFFFF)


def _take(values: np.ndarray, pos: np.ndarray, fill: float | int = np.nan, *, found: bool | None = None) -> np.ndarray:
    """``values[pos]``, ``fill`` where ``pos < 0``; ``found``: whether every ``pos >= 0``, if known."""
    if found is None:
        found = len(pos) == 0 or (len(values) > 0 and pos.min() >= 0)
    if found and (len(pos) == 0 or len(values)):
        return values.take(pos)  # every key found: plain gather (take: cheaper than fancy indexing)
    out = values[np.maximum(pos, 0)] if len(values) else np.zeros(len(pos), values.dtype)
    if np.issubdtype(out.dtype, np.floating) or not isinstance(fill, float):
        return np.where(pos >= 0, out, fill)
    return np.where(pos >= 0, out.astype(np.float64), fill)


def _first_track(mp_lookup: _Lookup, pp: Mapping[str, np.ndarray], n_mp: int) -> np.ndarray:
    """For each ``mc_particles`` row, the ``protoparticles`` row matched to it (int64 (n_mp,), -1: none).

    Several tracks of one MC particle (clones): the one with the smallest ``index``.
    """
    out = np.full(n_mp, -1, np.int64)
    target = mp_lookup.find(pp["event"], pp["mc_particle"])
    rows = np.flatnonzero(target >= 0)
    key = _key(pp["event"][rows], pp["index"][rows])
    if len(key) > 1 and not np.all(key[1:] >= key[:-1]):
        rows = rows[np.argsort(key, kind="stable")]
    t = target[rows]
    if len(t) and np.bincount(t).max() > 1:  # clones: keep the first (smallest index)
        _, first = np.unique(t, return_index=True)
        rows, t = rows[first], t[first]
    out[t] = rows
    return out


#: protoparticles columns every candidate needs (kinematics, matching).
_PP_BASE = ("track_type", "charge", "px", "py", "pz", "x", "y", "z", "tx", "ty")


def _match_tree(tree: DecayNode, mp: Mapping[str, np.ndarray]) -> list[np.ndarray]:
    """Rows of ``mp`` matching ``tree``, one array of row positions per node (breadth-first).

    The numpy twin of one ``SELECT`` of :func:`mambah.tree.match_decay`: a node
    matches a row with its PDG id; a node with children also needs
    ``last_daughter - first_daughter + 1`` = its number of children, and each
    child is a row of the same event whose ``mother`` is the node's row index;
    a child with the PDG id of an earlier sibling needs a larger index than
    that sibling's (identical daughters: one assignment per candidate).

    Args:
        tree: the decay tree.
        mp: ``mc_particles`` columns ``event, index, pid, mother, n_daughters``
            (int arrays (m,), one batch; any row order).

    Returns:
        One int64 array (n,) of row positions per node of ``tree.walk()``, n
        candidates in no particular order.
    """
    from ficino._kernels import key_ranges

    nodes = tree.walk()
    event, index, pid = mp["event"], mp["index"], mp["pid"]

    def rows_of(node: DecayNode) -> np.ndarray:
        ok = pid == node.pid
        if node.children:
            ok &= mp["n_daughters"] == len(node.children)
        return np.flatnonzero(ok)

    pos = {id(nodes[0]): rows_of(nodes[0])}
    for node in nodes:
        prev_same: dict[int, int] = {}
        for child in node.children:
            parent = pos[id(node)]
            cand = rows_of(child)
            ckey = _key(event[cand], mp["mother"][cand])
            order = np.argsort(ckey, kind="stable")
            cand, ckey = cand[order], ckey[order]
            pkey = _key(event[parent], index[parent])
            lo, hi = np.empty(len(parent), np.int64), np.empty(len(parent), np.int64)
            key_ranges(ckey, pkey, lo, hi)  # searchsorted(ckey, pkey, "left"), (..., "right")
            count = hi - lo
            total = int(count.sum())
            if total == len(parent) and (total == 0 or int(count.min()) == 1):  # one child row per parent
                child_rows = cand[lo]
            else:
                rep = np.repeat(np.arange(len(parent)), count)
                offset = np.arange(total) - np.repeat(np.cumsum(count) - count, count)
                child_rows = cand[np.repeat(lo, count) + offset]
                pos = {k: v[rep] for k, v in pos.items()}
            pos[id(child)] = child_rows
            if child.pid in prev_same:
                keep = index[child_rows] > index[pos[prev_same[child.pid]]]
                pos = {k: v[keep] for k, v in pos.items()}
            prev_same[child.pid] = id(child)
    return [pos[id(n)] for n in nodes]


def _match(spec: DecaySpec, mp: Mapping[str, np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]:
    """MC-truth candidates of ``spec`` in one batch's ``mc_particles`` rows, as :func:`mambah.match_decay` finds them.

    The conjugate tree is matched too when ``spec.cc`` and it differs (rows of
    both, as ``UNION ALL``).  Candidates are sorted by (event, head index), ties
    by the indices of the other nodes (breadth-first).

    Returns:
        ``(event, rows)``: event int32 (n,) and one int64 array (n,) of row
        positions in ``mp`` per alias.
    """
    nodes = spec.tree.walk()
    parts = [_match_tree(spec.tree, mp)]
    if spec.cc:
        conj = spec.tree.conjugate()
        if conj.walk() != nodes:
            parts.append(_match_tree(conj, mp))
    rows = [np.concatenate([p[i] for p in parts]) for i in range(len(nodes))]
    event = mp["event"][rows[0]]
    keys = [_key(event, mp["index"][rows[0]])] + [mp["index"][r] for r in rows[1:]]  # primary key first
    if not len(event):
        return event, rows
    from ficino._kernels import keys_sorted

    if keys_sorted(np.stack(keys).astype(np.int64, copy=False)):  # already in order (the usual case): lexsort is the identity
        return event, rows
    order = np.lexsort(keys[::-1])
    return event[order], [r[order] for r in rows]


def _weight_sql() -> str:
    """The event weight (``events.weight``, written by the preselect pass's sampling mode; NULL means 1)."""
    return "coalesce(weight, 1.0)" if "weight" in column_names("events") else "1.0"


def _fetch(store: EventStore, batch: int, pp_columns: Sequence[str] = _PP_COLS) -> dict[str, dict[str, np.ndarray]]:
    """The rows of ``batch`` the join needs, as numpy (NULL -> NaN, or -1 for integer keys)."""
    b = int(batch)
    out: dict[str, dict[str, np.ndarray]] = {}
    pp_cols = ", ".join(f'"{c}"' for c in pp_columns)
    queries = {
        "mv": f'SELECT event, "index", x, y, z FROM mc_vertices WHERE batch = {b}',
        "mp": f'SELECT event, "index", {", ".join(_MC_COLS[1:])}, last_daughter - first_daughter + 1 AS n_daughters FROM mc_particles WHERE batch = {b}',
        "pp": f'SELECT event, "index", mc_particle, {pp_cols} FROM protoparticles WHERE batch = {b} AND mc_particle >= 0 AND track_type > 0',
        "pv": f'SELECT event, "index", mc_vertex, x, y, z, cov_xx, cov_yy, cov_zz, chi2, ndof FROM vertices WHERE batch = {b} AND is_primary',
        "ev": f"SELECT event, n_tracks, n_pv, {_weight_sql()} AS weight FROM events WHERE batch = {b}",
        "np": f'SELECT event, "index", mc_particle, e, px, py, pz, "CL", is_not_e, is_merged_pi0::DOUBLE AS is_merged_pi0 '
              f"FROM neutral_protoparticles WHERE batch = {b} AND mc_particle >= 0 ORDER BY event, mc_particle, e DESC",
    }
    ints = {"event", "index", "mc_particle", "mc_vertex", "pid", "n_daughters", "track_type", "n_tracks", "n_pv", "prod_vertex", "decay_vertex", "mother", "ndof"}
    for name, sql in queries.items():
        t = store.query(sql)
        out[name] = {c: (_i4(t[c], -1) if c in ints else _f8(t[c])) for c in t.column_names}
    return out


def build_candidates(
    store: EventStore,
    spec: DecaySpec,
    batch: int,
    *,
    reconstructed_only: bool = True,
    seed: int = 0,
    resolution: VertexResolution = VertexResolution(),
    columns: Sequence[Column] | None = None,
) -> Candidates:
    """All candidates of ``spec`` in ``batch`` with truth, reconstruction and composite arrays.

    Args:
        store: the event store (reads ``mc_particles``, ``mc_vertices``,
            ``protoparticles``, ``vertices``, ``events``).
        spec: decay and aliases (:func:`decay_spec`).
        batch: batch number.
        reconstructed_only: keep only candidates whose charged final-state
            particles all have a matched track (``BKGCAT`` of the head != 60).
        seed: seed of the vertex smearing (with ``batch``).
        resolution: vertex smearing widths [mm].
        columns: the columns that will be computed; only the ``protoparticles``
            columns they read are fetched (default: all).

    Returns:
        :class:`Candidates`, the rows of :func:`mambah.match_decay` sorted by
        (event, head index, then the other particles' indices breadth-first).
    """
    tables = fetch_tables(store, batch, columns)
    return candidates_from_tables(
        tables, spec, batch, reconstructed_only=reconstructed_only, seed=seed, resolution=resolution
    )


def fetch_tables(store: EventStore, batch: int, columns: Sequence[Column] | None = None) -> dict[str, dict[str, np.ndarray]]:
    """Read the rows of ``batch`` that :func:`candidates_from_tables` needs (DuckDB; releases the GIL).

    ``columns``: only the ``protoparticles`` columns they read are fetched (default: all).
    """
    pp_columns = _PP_COLS
    if columns is not None:
        wanted = set(_PP_BASE).union(*(c.var.source for c in columns))
        pp_columns = tuple(c for c in _PP_COLS if c in wanted)
    return _fetch(store, batch, pp_columns)


def candidates_from_tables(
    tables: dict[str, dict[str, np.ndarray]],
    spec: DecaySpec,
    batch: int,
    *,
    reconstructed_only: bool = True,
    seed: int = 0,
    resolution: VertexResolution = VertexResolution(),
) -> Candidates:
    """:func:`build_candidates` on tables already read by :func:`fetch_tables` (numpy only)."""
    event, rows = _match(spec, tables["mp"])
    rng = np.random.default_rng([int(seed), int(batch)])
    return _assemble(spec, event, rows, tables, int(batch), reconstructed_only, rng, resolution)


def _photon_columns(neutrals: Mapping[str, np.ndarray], event: np.ndarray, mc_index: np.ndarray) -> dict[str, np.ndarray]:
    """Reconstructed photon of each candidate: the most energetic neutral matched to its MC particle (NaN: none)."""
    n = len(event)
    out = {k: np.full(n, np.nan) for k in ("px", "py", "pz", "e", "CL", "is_not_e", "is_merged_pi0")}
    out["m"] = np.zeros(n)
    out["ip_ownpv"] = out["ipchi2_ownpv"] = np.full(n, np.nan)  # a photon has no track state
    ne = neutrals.get("event", np.zeros(0, np.int32))
    if len(ne) and n:
        pos = _Lookup(ne, neutrals["mc_particle"], order_by=-neutrals["e"]).find(event, mc_index)
        for k in ("px", "py", "pz", "e", "CL", "is_not_e", "is_merged_pi0"):
            out[k] = _take(neutrals[k], pos)
    return out


def _vertex_plan(spec: DecaySpec) -> tuple[dict[str, tuple[tuple[str, str], ...]], list[str]]:
    """Fit inputs of each composite ((alias, "track" | "composite"), ...) and the bottom-up order."""
    nodes = spec.tree.walk()
    alias_of = {id(nd): a for nd, a in zip(nodes, spec.aliases)}
    inputs: dict[str, tuple[tuple[str, str], ...]] = {}

    def expand(node: DecayNode) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        for child in node.children:
            c = alias_of[id(child)]
            if spec.kinds[c] == "track":
                out.append((c, "track"))
            elif spec.kinds[c] == "composite":
                ctau = lookup_particle(child.pid).ctau
                if ctau is not None and np.isfinite(ctau) and ctau < RESONANCE_CTAU:
                    out.extend(expand(child))  # a resonance: its tracks fit the parent vertex
                else:
                    out.append((c, "composite"))
        return out

    for node, a in zip(nodes, spec.aliases):
        if spec.kinds[a] == "composite":
            inputs[a] = tuple(expand(node))
    order = [a for a in reversed(spec.aliases) if spec.kinds[a] == "composite"]
    return inputs, order


def _unseen_neutrals(spec: DecaySpec) -> dict[str, bool]:
    """Each composite: whether its descriptor has a neutral final-state particle other than a
    neutrino or photon (π0, K_S0 or n as a leaf: never reconstructed, so the candidate is partial)."""
    nodes = spec.tree.walk()
    alias_of = {id(nd): a for nd, a in zip(nodes, spec.aliases)}
    return {
        alias_of[id(nd)]: any(spec.kinds[alias_of[id(x)]] == "neutral" and abs(x.pid) not in NEUTRINOS
                              for x in nd.walk()[1:])
        for nd in nodes if nd.children
    }


def background_category(
    reconstructed: np.ndarray,
    identified: np.ndarray,
    complete: bool | np.ndarray,
    true_mass: np.ndarray,
    pdg_mass: float,
    low_mass_cut: float = BKGCAT_LOW_MASS_CUT,
) -> np.ndarray:
    """LHCb ``BackgroundCategory`` decision tree for MC-truth-matched candidates (``(n,)`` int32).

    The candidates of :func:`build_candidates` are matches of the descriptor in the MC
    truth, so LHCb's conditions A (common mother), D and E (signal decay, all
    intermediates as in the descriptor) and the mother's identity hold by construction;
    what is left (DaVinciMCTools ``BackgroundCategory::category``, docs/ficino.md):

    * not ``reconstructed`` (a charged final-state particle without matched track, or a
      missing photon): 60 (LHCb: ghost);
    * ``complete`` (every final-state particle but neutrinos is in the candidate):
      0 (signal) if every track is ``identified`` (reconstructed charge = true charge),
      else 30 (reflection);
    * partial (a π0, K_S0, n, ... leaf is not reconstructed): 50 (low-mass background)
      if every track is identified and ``true_mass − low_mass_cut < pdg_mass``, else 40
      (partially reconstructed).

    Args:
        reconstructed, identified: ``(n,)`` bool.
        complete: bool or ``(n,)`` bool.
        true_mass: ``(n,)`` true (virtual) mass of the composite (MeV).
        pdg_mass: its PDG mass (MeV).
        low_mass_cut: LHCb's ``LowMassBackgroundCut`` (MeV).
    """
    ident = np.asarray(identified, bool)
    partial = np.where(ident & (np.asarray(true_mass) - low_mass_cut < pdg_mass), BKGCAT_LOW_MASS, BKGCAT_PART_RECO)
    cat = np.where(complete, np.where(ident, BKGCAT_SIGNAL, BKGCAT_REFLECTION), partial)
    return np.where(np.asarray(reconstructed, bool), cat, BKGCAT_NOT_RECONSTRUCTED).astype(np.int32)


def _direct_daughters(spec: DecaySpec) -> dict[str, tuple[tuple[str, str], ...]]:
    """Each composite's direct charged-track and composite daughters ((alias, kind), ...)."""
    nodes = spec.tree.walk()
    alias_of = {id(nd): a for nd, a in zip(nodes, spec.aliases)}
    return {
        alias_of[id(nd)]: tuple((alias_of[id(ch)], spec.kinds[alias_of[id(ch)]]) for ch in nd.children
                                if spec.kinds[alias_of[id(ch)]] in ("track", "composite"))
        for nd in nodes if nd.children
    }


def _every_row(rows: np.ndarray, n: int) -> bool:
    """Whether ``rows`` (sorted positions, as ``searchsorted`` gives them) are ``0, 1, ..., n-1``."""
    return rows.size == n and (n == 0 or (int(rows[0]) == 0 and int(rows[-1]) == n - 1))


def _slice_fit(fit: vx.VertexFit, rows: np.ndarray) -> vx.VertexFit:
    if _every_row(rows, fit.chi2.shape[0]):  # the same rows: no copy of every field
        return fit
    return vx.VertexFit(*(getattr(fit, f.name)[rows] for f in dataclasses.fields(fit)))


def _slice_daughters(d: vx.Daughters, rows: np.ndarray) -> vx.Daughters:
    if _every_row(rows, d.z.shape[0]):
        return d
    return vx.Daughters(*(getattr(d, f.name)[rows] for f in dataclasses.fields(d)))


def _fit_composite(
    inputs: tuple[tuple[str, str], ...],
    parts: Mapping[str, dict[str, np.ndarray]],
    fits: Mapping[str, tuple[np.ndarray, vx.VertexFit | None]],
    spec: DecaySpec,
    n: int,
    lines: Mapping[str, vx.Daughters | None],
    dtf: dict[str, np.ndarray] | None = None,
) -> tuple[np.ndarray, vx.VertexFit | None]:
    """Billoir fit of one composite for all candidates: (rows fitted (m,), fit of those rows)."""
    valid = np.full(n, len(inputs) >= 2)
    if any(kind == "track" and COV_COLUMNS[0] not in parts[b] for b, kind in inputs):
        return np.zeros(0, np.int64), None  # no vertex variable asked for: the covariance was not fetched
    tracks: list[tuple[np.ndarray, np.ndarray, np.ndarray, float]] = []
    for b, kind in inputs:
        if kind == "composite":
            ok = np.zeros(n, bool)
            ok[fits[b][0]] = True
            valid &= ok
            continue
        t = parts[b]
        z, state, cov = _track_states(t)
        valid &= _track_ok(t)
        tracks.append((z, state, cov, spec.masses[b]))
    idx = np.flatnonzero(valid)
    if idx.size == 0:
        return idx, None
    daughters: list[vx.Daughters] = []
    it = iter(tracks)
    run: list[tuple[np.ndarray, np.ndarray, np.ndarray, float]] = []  # consecutive track inputs: one call
    for j, (b, kind) in enumerate(inputs):
        if kind == "composite":
            # a composite with fitted rows has its line (lines[b] is None only when no row was fitted)
            daughters.append(_slice_daughters(cast(vx.Daughters, lines[b]), np.searchsorted(fits[b][0], idx)))
            continue
        run.append(next(it))
        if j + 1 == len(inputs) or inputs[j + 1][1] == "composite":
            daughters.append(vx.track_daughters_rows(idx, [r[:3] for r in run], [r[3] for r in run]))
            run = []
    stacked = vx.stack_daughters(daughters) if len(daughters) > 1 else daughters[0]
    slot = _narrow_slot(inputs, spec)
    if dtf is None or slot is None or not np.all(stacked.mass_var[:, slot] > 0):
        return idx, vx.fit_vertex(stacked)
    # the DTF mass of a single narrow composite daughter from this same fit (fit_vertex_dtf)
    fit, m_c, err, dchi2 = vx.fit_vertex_dtf(stacked, slot, spec.masses[inputs[slot][0]])
    child_rows, child_fit = fits[inputs[slot][0]]
    pos = np.searchsorted(child_rows, idx)
    chi2 = fit.chi2 + dchi2 + cast(vx.VertexFit, child_fit).chi2[pos]
    ndof = fit.ndof + 1 + cast(vx.VertexFit, child_fit).ndof[pos]
    for key, val in (("dtf_m", m_c), ("dtf_merr", err), ("dtf_chi2ndof", chi2 / ndof)):
        dtf[key] = np.full(n, np.nan)
        dtf[key][idx] = val
    return idx, fit


def _narrow_slot(inputs: tuple[tuple[str, str], ...], spec: DecaySpec) -> int | None:
    """Index in ``inputs`` of the one narrow composite (DTF-constrained) daughter, if exactly one."""
    node = dict(zip(spec.aliases, spec.tree.walk()))
    slots = [i for i, (b, kind) in enumerate(inputs) if kind == "composite"
             and (lookup_particle(node[b].pid).width or 0.0) < DTF_MAX_WIDTH]
    return slots[0] if len(slots) == 1 else None


def _track_ok(t: dict[str, np.ndarray]) -> np.ndarray:
    """``(n,)`` bool: the track is matched and its state and covariance are usable in a fit
    (:func:`sim.detector.vertexing.track_states`, computed once per batch with the states)."""
    _track_states(t)
    return t["_state_ok"]


#: Intermediates narrower than this [MeV] (J/ψ, ψ(2S), D, Λc, K_S, ...) get their PDG mass
#: constrained in the ``DTF_*`` fit of their mother; wide resonances (φ, K*, ρ) do not.
DTF_MAX_WIDTH = 1.0


def _dtf_columns(
    a: str,
    children: tuple[tuple[str, str], ...],
    parts: Mapping[str, dict[str, np.ndarray]],
    fits: Mapping[str, tuple[np.ndarray, vx.VertexFit | None]],
    lines: Mapping[str, vx.Daughters | None],
    spec: DecaySpec,
    n: int,
) -> dict[str, np.ndarray]:
    """``dtf_m``, ``dtf_merr``, ``dtf_chi2ndof`` of composite ``a`` (NaN where not defined).

    A DecayTreeFitter-like refit: ``a``'s vertex fitted from its direct daughters, each
    narrow composite daughter (width < :data:`DTF_MAX_WIDTH`, also a resonance such as the
    J/ψ) entering as its fitted line with its PDG mass constrained
    (:func:`sim.detector.vertexing.constrain_mass`); χ²/ndf sums ``a``'s vertex, its
    composite daughters' vertices and the mass constraints (1 dof each).  NaN when ``a``
    has no such daughter or has photon descendants (photons are not in the vertex fits).
    When ``a``'s own fit already uses its direct daughters and one of them is narrow (Λb → Λc μ),
    :func:`_fit_composite` takes the DTF mass from that fit instead
    (:func:`sim.detector.vertexing.fit_vertex_dtf`, the same answer to linear order).
    """
    out = {k: np.full(n, np.nan) for k in ("dtf_m", "dtf_merr", "dtf_chi2ndof")}
    node = dict(zip(spec.aliases, spec.tree.walk()))
    narrow = {c for c, kind in children if kind == "composite"
              and (lookup_particle(node[c].pid).width or 0.0) < DTF_MAX_WIDTH}
    if not narrow or spec.photons.get(a) or len(children) < 2:
        return out
    valid = np.ones(n, bool)
    for c, kind in children:
        if kind == "composite":
            line = lines.get(c)
            ok = np.zeros(n, bool)
            if line is not None:
                ok[fits[c][0]] = line.mass_var[:, 0] > 0
            valid &= ok
        else:
            valid &= _track_ok(parts[c])
    idx = np.flatnonzero(valid)
    if idx.size == 0:
        return out
    chi2 = np.zeros(idx.size)
    ndof = np.zeros(idx.size)
    daughters: list[vx.Daughters] = []
    for c, kind in children:
        if kind == "composite":
            rows, fit_c = fits[c]
            pos = np.searchsorted(rows, idx)
            d = _slice_daughters(cast(vx.Daughters, lines[c]), pos)
            chi2 += cast(vx.VertexFit, fit_c).chi2[pos]
            ndof += cast(vx.VertexFit, fit_c).ndof[pos]
            if c in narrow:
                chi2 += (d.mass[:, 0] - spec.masses[c]) ** 2 / d.mass_var[:, 0]
                ndof += 1
                d = vx.constrain_mass(d, 0, spec.masses[c])
        else:
            z, state, cov = _track_states(parts[c])
            d = vx.track_daughters_rows(idx, [(z, state, cov)], [spec.masses[c]])
        daughters.append(d)
    fit = vx.fit_vertex(vx.stack_daughters(daughters))
    chi2 += fit.chi2
    ndof += fit.ndof
    out["dtf_m"][idx] = fit.mass
    out["dtf_merr"][idx] = fit.mass_err
    out["dtf_chi2ndof"][idx] = chi2 / ndof
    return out


def _track_states(t: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`sim.detector.vertexing.track_states` of one track's columns, computed once per
    batch (kept in ``t`` under the keys of :data:`_STATE_KEYS`, which :func:`_assemble` drops)."""
    if _STATE_KEYS[0] not in t:
        t.update(zip(_STATE_KEYS, vx.track_states(t)))  # with the usability flag of _track_ok
    z, state, cov = (t[k] for k in _STATE_KEYS[:3])
    return z, state, cov


#: keys of the cached track states in a track's arrays (not columns).
_STATE_KEYS = ("_state_z", "_state", "_state_cov", "_state_ok")


def _event_pvs(
    pvt: Mapping[str, np.ndarray], event: np.ndarray, true_pv: np.ndarray, pv_sigma: np.ndarray,
    rng: np.random.Generator,
) -> dict[str, np.ndarray]:
    """Every reconstructed PV of each candidate's event, padded: pos (n, m, 3), cov (n, m, 3, 3),
    chi2/ndof (n, m), mask (n, m); events without one get the smeared true PV (one slot)."""
    n = len(event)
    ev = pvt["event"]
    order = np.lexsort((pvt["index"], ev))
    ev_s = ev[order]
    uniq, start, counts = np.unique(ev_s, return_index=True, return_counts=True)
    m = int(counts.max()) if counts.size else 1
    slot = np.arange(ev_s.size) - np.repeat(start, counts)
    e_of = np.searchsorted(uniq, ev_s)
    table = {
        "pos": np.full((uniq.size, m, 3), np.nan), "var": np.full((uniq.size, m, 3), np.nan),
        "chi2": np.full((uniq.size, m), np.nan), "ndof": np.full((uniq.size, m), -1, np.int32),
    }
    for i, k in enumerate("xyz"):
        table["pos"][e_of, slot, i] = pvt[k][order]
        table["var"][e_of, slot, i] = pvt[f"cov_{k}{k}"][order]
    table["chi2"][e_of, slot] = pvt["chi2"][order]
    table["ndof"][e_of, slot] = pvt["ndof"][order]
    at = np.minimum(np.searchsorted(uniq, event), max(uniq.size - 1, 0))
    found = (uniq[at] == event) if uniq.size else np.zeros(n, bool)
    smeared = true_pv + rng.normal(size=(n, 3)) * pv_sigma
    from ficino._kernels import candidate_pvs

    pos, cov = np.empty((n, m, 3)), np.empty((n, m, 3, 3))
    chi2, ndof, mask = np.empty((n, m)), np.empty((n, m), np.int32), np.empty((n, m), bool)
    candidate_pvs(at, found, table["pos"], table["var"], table["chi2"], table["ndof"], smeared,
                  np.ascontiguousarray(pv_sigma**2, dtype=np.float64), pos, cov, chi2, ndof, mask)
    return {"pos": pos, "cov": cov, "chi2": chi2, "ndof": ndof, "mask": mask}


def _vertex_columns(
    d: Mapping[str, np.ndarray], rows: np.ndarray, fit: vx.VertexFit | None, line: vx.Daughters | None,
    pvs: Mapping[str, np.ndarray], n: int, own_tau: bool = True,
) -> tuple[dict[str, np.ndarray], tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Vertex-fit columns of one composite (NaN where it was not fitted) and its own PV
    (rows fitted, position (m, 3), covariance (m, 3, 3)); ``line``: the composite as a line
    (:func:`sim.detector.vertexing.composite_daughters` of ``fit``); ``own_tau``: fit the decay
    time from the own PV (False for a flying intermediate, whose τ runs from its mother's vertex
    and is filled by :func:`_assemble`: ``tau``/``tauerr`` stay NaN here)."""
    keys = ("end_x", "end_y", "end_z", "end_xerr", "end_yerr", "end_zerr", "end_chi2", "pv_x", "pv_y", "pv_z",
            "pv_chi2", "ip_ownpv", "ipchi2_ownpv", "fd", "fdchi2", "dira", "tau", "tauerr", "mcorr", "mcorrerr")
    every = fit is not None and line is not None and rows.size > 0 and _every_row(rows, n)
    out = {} if every else {k: np.full(n, np.nan) for k in keys}
    if not every:
        out["end_ndof"] = np.full(n, -1, np.int32)
        out["pv_ndof"] = np.full(n, -1, np.int32)
    # true proper time from the true vertices and momentum [ns]
    with np.errstate(divide="ignore", invalid="ignore"):
        flight = np.sqrt(sum((d[f"ev_{k}"] - d[f"ov_{k}"]) ** 2 for k in "xyz"))
        tp = np.sqrt(d["true_px"] ** 2 + d["true_py"] ** 2 + d["true_pz"] ** 2)
        tm = np.sqrt(np.maximum(d["true_e"] ** 2 - tp**2, 0.0))
        out["truetau"] = tm * flight / (tp * vx.C_LIGHT)
    if fit is None or line is None or rows.size == 0:
        return out, (rows, np.zeros((0, 3)), np.zeros((0, 3, 3)))
    visible = np.column_stack([d[k][rows] for k in ("px", "py", "pz", "e")])
    # own PV (smallest IPχ²), IP, FD, DIRA, MCORR of the visible momentum: one compiled pass over the rows
    q = vx.own_pv_quantities(line.z[:, 0], line.state[:, 0], line.cov[:, 0], pvs["pos"], pvs["cov"], pvs["mask"],
                             fit, visible, rows)
    best = q["best"]
    own, own_cov = pvs["pos"][rows, best], pvs["cov"][rows, best]
    tau, tauerr = vx.decay_time(own, own_cov, fit)[:2] if own_tau else (np.full(rows.size, np.nan), np.full(rows.size, np.nan))
    err = np.sqrt(np.diagonal(fit.cov, axis1=1, axis2=2))
    vals = {
        "end_x": fit.position[:, 0], "end_y": fit.position[:, 1], "end_z": fit.position[:, 2],
        "end_xerr": err[:, 0], "end_yerr": err[:, 1], "end_zerr": err[:, 2], "end_chi2": fit.chi2,
        "pv_x": own[:, 0], "pv_y": own[:, 1], "pv_z": own[:, 2], "pv_chi2": pvs["chi2"][rows, best],
        "ip_ownpv": q["ip"], "ipchi2_ownpv": q["ipchi2"], "fd": q["fd"], "fdchi2": q["fdchi2"], "dira": q["dira"],
        "tau": tau, "tauerr": tauerr, "mcorr": q["mcorr"], "mcorrerr": q["mcorrerr"],
    }
    vals["end_ndof"], vals["pv_ndof"] = fit.ndof.astype(np.int32), pvs["ndof"][rows, best]
    if _every_row(rows, n):  # every candidate fitted (the usual case): the fit's arrays are the columns
        out.update(vals)
    else:
        for k, v in vals.items():
            out[k][rows] = v
    return out, (rows, own, own_cov)


def _track_ip_columns(
    parts: Mapping[str, dict[str, np.ndarray]], tracks: Sequence[str],
    own_pv: tuple[np.ndarray, np.ndarray, np.ndarray], n: int,
) -> None:
    """IP and IPχ² of the composite's tracks w.r.t. the composite's own PV (written on the tracks,
    the first composite that owns them, i.e. the lowest level, as LHCb's daughters' ``_OWNPV``)."""
    rows, pv, pv_cov = own_pv
    for a in tracks:
        t = parts[a]
        if "ip_ownpv" in t:
            continue
        t["ip_ownpv"] = np.full(n, np.nan)
        t["ipchi2_ownpv"] = np.full(n, np.nan)
        if len(rows) == 0 or COV_COLUMNS[0] not in t:
            continue
        z, state, cov = _track_states(t)
        t["ip_ownpv"][rows], t["ipchi2_ownpv"][rows] = vx.line_ip(rows, z, state, cov, pv, pv_cov)


def _assemble(
    spec: DecaySpec,
    event: np.ndarray,
    rows: Sequence[np.ndarray],
    tables: dict[str, dict[str, np.ndarray]],
    batch: int,
    reconstructed_only: bool,
    rng: np.random.Generator,
    res: VertexResolution,
) -> Candidates:
    n = len(event)
    mv, mp, pp, pvt, evt = (tables[k] for k in ("mv", "mp", "pp", "pv", "ev"))
    mv_lookup = _Lookup(mv["event"], mv["index"])
    mp_lookup = _Lookup(mp["event"], mp["index"])
    pp_of_mp = _first_track(mp_lookup, pp, len(mp["event"]))
    parts: dict[str, dict[str, np.ndarray]] = {}
    for a, row in zip(spec.aliases, rows):
        d: dict[str, np.ndarray] = {
            "pid": mp["pid"][row],
            "index": mp["index"][row],
            "true_charge": mp["charge"][row].astype(np.float64),
        }
        d["mother_pid"] = _take(mp["pid"], mp_lookup.find(event, mp["mother"][row]), 0).astype(np.int32)
        for k in ("px", "py", "pz", "e"):
            d[f"true_{k}"] = mp[k][row]
        ov = mv_lookup.find(event, mp["prod_vertex"][row])
        dv = mv_lookup.find(event, mp["decay_vertex"][row])
        ov_found = len(ov) == 0 or bool(ov.min() >= 0)
        dv_found = len(dv) == 0 or bool(dv.min() >= 0)
        for k in "xyz":
            d[f"ov_{k}"] = _take(mv[k], ov, found=ov_found)
            d[f"ev_{k}"] = _take(mv[k], dv, found=dv_found)
        if spec.kinds[a] == "track":
            pos = pp_of_mp[row]
            found = len(pos) == 0 or bool(pos.min() >= 0)
            for k in (c for c in _PP_COLS if c in pp):
                d[k] = _take(pp[k], pos, 0, found=found).astype(np.int32) if k == "track_type" else _take(pp[k], pos, found=found)
            d["m"] = np.full(n, spec.masses[a])
            px, py, pz = (d[k].astype(np.float64) for k in ("px", "py", "pz"))  # float32 squares lose M's digits
            d["e"] = np.sqrt(px * px + py * py + pz * pz + d["m"] ** 2)
        elif spec.kinds[a] == "photon":
            d.update(_photon_columns(tables["np"], event, mp["index"][row]))
        parts[a] = d
    ev_pos = _Lookup(evt["event"], np.zeros(len(evt["event"]), np.int32)).find(event, np.zeros(n, np.int32))
    head = parts[spec.head]
    true_pv = np.stack([head[f"ov_{k}"] for k in "xyz"], axis=1)
    pvs = _event_pvs(pvt, event, true_pv, np.asarray(res.pv_sigma, dtype=np.float64), rng)
    fits: dict[str, tuple[np.ndarray, vx.VertexFit | None]] = {}
    lines: dict[str, vx.Daughters | None] = {}
    inputs_of, order = _vertex_plan(spec)
    direct = _direct_daughters(spec)
    unseen = _unseen_neutrals(spec)
    # flying intermediates: their decay time runs from the mother's vertex (below), not from the own PV
    from_mother = {c for inputs in inputs_of.values() for c, kind in inputs if kind == "composite"}
    for a in order:
        d = parts[a]
        tr = [parts[t] for t in spec.tracks[a]]
        ph = [parts[g] for g in spec.photons.get(a, ())]
        for k in ("px", "py", "pz", "e"):
            # float64 sums: track momenta may be stored as float32 (the mass of a sum cancels digits); added
            # in daughter order, as numpy.sum(axis=0) of the stacked daughters does
            if tr or ph:
                parts_k = [t[k] for t in tr + ph]
                d[k] = parts_k[0].astype(np.float64)
                for x in parts_k[1:]:
                    d[k] += x
            else:
                d[k] = np.full(n, np.nan)
        p2 = d["px"] ** 2 + d["py"] ** 2 + d["pz"] ** 2
        d["m"] = np.sqrt(np.maximum(d["e"] ** 2 - p2, 0.0))
        # when the fit's inputs are the direct daughters with one narrow composite among them
        # (Λb → Λc μ), the DTF mass comes from the same fit; else _dtf_columns refits
        dtf: dict[str, np.ndarray] | None = (
            {} if inputs_of[a] == direct[a] and not spec.photons.get(a) and COV_COLUMNS[0] in pp else None)
        fits[a] = _fit_composite(inputs_of[a], parts, fits, spec, n, lines, dtf)
        fit_a = fits[a][1]
        lines[a] = vx.composite_daughters(fit_a) if fit_a is not None and len(fit_a.chi2) else None
        vcols, own_pv = _vertex_columns(d, *fits[a], lines[a], pvs, n, own_tau=a not in from_mother)
        d.update(vcols)
        if dtf:
            d.update(dtf)
        elif COV_COLUMNS[0] in pp:
            d.update(_dtf_columns(a, direct[a], parts, fits, lines, spec, n))
        _track_ip_columns(parts, spec.tracks[a], own_pv, n)
        matched = np.ones(n, bool)
        charge_ok = np.ones(n, bool)
        for t in tr:
            matched &= t["track_type"] > 0
            charge_ok &= np.isnan(t["charge"]) | (t["charge"] == t["true_charge"])
        for g in ph:
            matched &= ~np.isnan(g["e"])
        true_m = np.sqrt(np.maximum(d["true_e"] ** 2 - (d["true_px"] ** 2 + d["true_py"] ** 2 + d["true_pz"] ** 2), 0.0))
        d["bkgcat"] = background_category(matched, charge_ok, not unseen[a], true_m, spec.masses[a])
    # a flying intermediate's decay time runs from its mother's decay vertex (TupleToolPropertime)
    for parent, inputs in inputs_of.items():
        rows_p, fit_p = fits[parent]
        for child, kind in inputs:
            if kind != "composite":
                continue
            rows_c, fit_c = fits[child]
            tau, tauerr = np.full(n, np.nan), np.full(n, np.nan)
            if fit_p is not None and fit_c is not None and rows_p.size:
                fc = _slice_fit(fit_c, np.searchsorted(rows_c, rows_p))
                tau[rows_p], tauerr[rows_p], _ = vx.decay_time(fit_p.position, fit_p.cov, fc)
            parts[child]["tau"], parts[child]["tauerr"] = tau, tauerr
    event_cols = {
        "batch": np.full(n, batch, np.int32),
        "event": event,
        "n_tracks": _take(evt["n_tracks"], ev_pos, -1).astype(np.int32),
        "n_pv": _take(evt["n_pv"], ev_pos, -1).astype(np.int32),
        "weight": _take(evt["weight"], ev_pos, 1.0) if "weight" in evt else np.ones(n),
    }
    for d in parts.values():
        for key in _STATE_KEYS:
            d.pop(key, None)
    cands = Candidates(parts, event_cols, n)
    if reconstructed_only and spec.kinds[spec.head] == "composite" and n:
        keep = parts[spec.head]["bkgcat"] != BKGCAT_NOT_RECONSTRUCTED
        if not keep.all():
            cands = cands.take(keep)
    ev = cands.event["event"]
    m = len(ev)
    if m:
        starts = np.flatnonzero(np.r_[True, ev[1:] != ev[:-1]])
        counts = np.diff(np.r_[starts, m])
        cands.event["n_candidate"] = (np.arange(m) - np.repeat(starts, counts)).astype(np.int32)
        cands.event["tot_candidates"] = np.repeat(counts, counts).astype(np.int32)
    else:
        cands.event["n_candidate"] = np.zeros(0, np.int32)
        cands.event["tot_candidates"] = np.zeros(0, np.int32)
    return cands


def compute_columns(cands: Candidates, columns: Sequence[Column]) -> dict[str, np.ndarray]:
    """Evaluate ``columns`` on ``cands``: column name -> array (n,) of the variable's dtype."""
    out: dict[str, np.ndarray] = {}
    for c in columns:
        data = cands.event if c.alias is None else cands.particles[c.alias]
        out[c.name] = c.var(data)
    return out
