"""Decay tables: DecFiles read into per-particle mode lists, the shipped tables, model policies.

A DecFile (EvtGen format: ``Alias``, ``ChargeConj``, ``Decay ... Enddecay``,
``CDecay``, ``PHOTOS`` keywords, ``Define``) is parsed by decaylanguage's
``DecFileParser`` and read into :class:`DecBlocks`: for every decaying label its
modes (:class:`ModeSpec`: branching fraction, daughter labels, model name, model
parameters, PHOTOS flag).  ``CDecay`` blocks come out as real blocks of the
conjugate (decaylanguage expands them).

The *decay table* completes what a user leaves undecayed: decaylanguage ships
``DECAY_LHCB.DEC`` (LHCb's DECAY.DEC) and ``DECAY_BELLE2.DEC``; any other DecFile
path works too.  Parsing the 11 000-line LHCb table takes about 2 s; it is
cached per (path, modification time) for the process.

Model policy (:func:`apply_model_policy`): a mode whose model (or ``PHOTOS``)
the engine cannot honour is, by ``policy``:

* ``"error"`` — a :class:`~mambah.errors.DecayError` naming the model, the mode
  and the supported models;
* ``"phase-space"`` — generated as phase space (``PHSP``; no FSR for
  ``PHOTOS``), with ONE warning line per substituted model name;
* ``"skip"`` — dropped, the other modes' branching fractions renormalised, one
  warning line per dropped mode.

Modes that need hadronisation (quarks, gluons, diquarks or strings among the
daughters, EvtGen's ``PYTHIA``/``JETSET`` inclusive lines) can never be phase
space: ``"phase-space"`` drops them as ``"skip"`` does (one warning line each).
"""

from __future__ import annotations

import functools
import logging
import math
import os
import re
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from mambah.descriptor import lookup_particle
from mambah.errors import ConfigError, DecayError, MambahError

__all__ = (
    "DEFAULT_STABLE",
    "POLICIES",
    "SHIPPED_TABLES",
    "DecBlocks",
    "ModeSpec",
    "apply_model_policy",
    "needs_hadronisation",
    "read_dec_file",
    "read_dec_text",
    "read_table",
    "stable_pids",
    "supported_models",
    "table_path",
)

log = logging.getLogger(__name__)

#: what to do with a model the engine cannot honour
POLICIES = ("error", "phase-space", "skip")

#: decay tables shipped inside decaylanguage (``decaylanguage/data``)
SHIPPED_TABLES = ("DECAY_LHCB.DEC", "DECAY_BELLE2.DEC")

#: particles an LHCb-like detector sees as stable (antiparticles implied): not decayed by the table
DEFAULT_STABLE: tuple[str, ...] = ("e-", "mu-", "pi+", "K+", "p+", "n0", "gamma", "nu_e", "nu_mu", "nu_tau", "K_L0")


@dataclass(frozen=True)
class ModeSpec:
    """One decay mode as written in a DecFile.

    Attributes:
        bf: branching fraction as written (normalised later over the block).
        daughters: daughter labels (aliases or EvtGen names), in DecFile order.
        model: EvtGen model name (``"PHSP"``, ``"SVS"``, ...).
        params: model parameters (``Define``'d names resolved to numbers).
        photos: the line (or the file, ``yesPhotos``) asks for PHOTOS.
    """

    bf: float
    daughters: tuple[str, ...]
    model: str
    params: tuple[float, ...] = ()
    photos: bool = False

    def describe(self, mother: str) -> str:
        return f"{mother} -> {' '.join(self.daughters)}"


@dataclass(frozen=True)
class DecBlocks:
    """A parsed DecFile.

    Attributes:
        source: file path or a short description.
        blocks: decaying label → its modes (``CDecay`` blocks expanded).
        aliases: label → particle name (EvtGen).
        conjugates: ``ChargeConj`` pairs, both directions.
    """

    source: str
    blocks: Mapping[str, tuple[ModeSpec, ...]]
    aliases: Mapping[str, str] = field(default_factory=dict)
    conjugates: Mapping[str, str] = field(default_factory=dict)

    def particle_name(self, label: str) -> str:
        """The particle name behind a label (alias resolved)."""
        return self.aliases.get(label, label)

    def mothers(self) -> list[str]:
        return list(self.blocks)


#: decaylanguage's message for a model name its grammar does not know
_UNKNOWN_MODEL = re.compile(r"Decay model or ModelAlias (\S+) is not defined")


def _parse(ctor: Any, arg: str, what: str) -> Any:
    """Parse a DecFile with decaylanguage.

    A model name decaylanguage does not know (a typo, or a model newer than its list) is
    loaded as an additional model and parsed again, so that the unsupported-model policy
    (:func:`apply_model_policy`) names it and offers the near spellings, or substitutes it.
    """
    from decaylanguage import DecFileParser  # noqa: F401 - heavy-ish import, only here

    extra: list[str] = []
    while True:
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")  # MisconfiguredAliasWarning etc. of the shipped tables: not shown
                parser = ctor(arg)
                if extra:
                    parser.load_additional_decay_models(*extra)
                parser.parse()
            redefined = [w for w in caught if type(w.message).__name__ == "DuplicateDecayWarning"]
            if redefined:  # decaylanguage keeps the first block and drops the others without a word
                names = str(redefined[0].message).split(":", 1)[-1].split("!")[0].strip()
                raise DecayError(f"DecFile {what!r} has more than one Decay block for {names}; "
                                 "decaylanguage would keep the first and drop the others: keep one block per particle")
        except DecayError:
            raise
        except Exception as err:
            unknown = _UNKNOWN_MODEL.search(str(err))
            if unknown and unknown.group(1) not in extra and len(extra) < 100:
                extra.append(unknown.group(1))
                continue
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise DecayError(f"malformed decay {what!r}: {first}") from err
        return parser


def _near_models(model: str, supported: Iterable[str]) -> str:
    """``"; did you mean 'PHSP'?"`` for a model name that is not an EvtGen model, else ``""``."""
    import difflib

    from decaylanguage.dec.enums import known_decay_models

    if model in known_decay_models or model in supported:
        return ""
    near = difflib.get_close_matches(model, sorted({*known_decay_models, *supported}), n=3, cutoff=0.6)
    hint = f"; did you mean {' or '.join(repr(n) for n in near)}?" if near else ""
    return f" (not an EvtGen model{hint})"


def _blocks_from_parser(parser: Any, source: str) -> DecBlocks:
    defs = dict(parser.dict_definitions())
    global_photos = int(parser.global_photos_flag()) == 1  # yesPhotos
    blocks: dict[str, tuple[ModeSpec, ...]] = {}
    for mother in parser.list_decay_mother_names():
        modes = []
        for mode in parser._find_decay_modes(mother):
            d = parser._decay_mode_details(mode, display_photos_keyword=True)
            words = str(d["model"]).split()
            photos = "PHOTOS" in words or global_photos
            model = " ".join(w for w in words if w != "PHOTOS") or "PHSP"
            raw = d["model_params"] or []
            params: list[float] = []
            for p in raw if isinstance(raw, list | tuple) else str(raw).split():
                if isinstance(p, int | float):
                    params.append(float(p))
                elif str(p) in defs:
                    params.append(float(defs[str(p)]))
                else:
                    try:
                        params.append(float(p))
                    except ValueError as err:
                        raise DecayError(f"model parameter {p!r} of {mother} -> {' '.join(d['fs'])} in {source!r} is not a number or a Define") from err
            bf = float(d["bf"])
            if not (math.isfinite(bf) and bf >= 0):
                raise DecayError(
                    f"branching fraction {d['bf']} of {mother} -> {' '.join(d['fs'])} in {source!r} must be a finite number >= 0"
                )
            modes.append(ModeSpec(bf, tuple(str(x) for x in d["fs"]), model, tuple(params), photos))
        blocks[str(mother)] = tuple(modes)
    conj = dict(parser.dict_charge_conjugates())
    conj.update({v: k for k, v in list(conj.items())})
    return DecBlocks(source, blocks, dict(parser.dict_aliases()), conj)


def read_dec_text(text: str, what: str) -> DecBlocks:
    """Parse DecFile text (``what`` names it in messages)."""
    from decaylanguage import DecFileParser

    return _blocks_from_parser(_parse(DecFileParser.from_string, text, what), what)


def read_dec_file(path: str | Path) -> DecBlocks:
    """Parse a DecFile on disk (cached per path and modification time)."""
    p = Path(path)
    if not p.is_file():
        raise DecayError(f"DecFile '{p}' " + ("is a directory, not a .dec file" if p.is_dir() else "does not exist"))
    return _read_cached(str(p.resolve()), os.stat(p).st_mtime_ns)


@functools.lru_cache(maxsize=8)
def _read_cached(path: str, mtime: int) -> DecBlocks:
    """Parse once per process; big files (the shipped tables) also pickled under the cache directory."""
    import hashlib
    import pickle

    from decaylanguage import DecFileParser, __version__

    size = os.stat(path).st_size
    cache = None
    if size > 200_000:
        tag = hashlib.sha1(f"{path}|{mtime}|{size}|{__version__}|{_CACHE_FORMAT}".encode()).hexdigest()[:16]
        cache = cache_dir() / f"dec-{Path(path).stem}-{tag}.pickle"
        if cache.is_file():
            try:
                with cache.open("rb") as fh:
                    blocks = pickle.load(fh)
                if isinstance(blocks, DecBlocks):
                    return blocks
            except Exception:
                log.debug("decay-table cache %s unreadable; parsing again", cache)
    blocks = _blocks_from_parser(_parse(DecFileParser, path, path), path)
    if cache is not None:
        try:
            cache.parent.mkdir(parents=True, exist_ok=True)
            tmp = cache.with_suffix(f".{os.getpid()}.tmp")
            with tmp.open("wb") as fh:
                pickle.dump(blocks, fh)
            tmp.replace(cache)
        except OSError as err:
            log.debug("cannot write the decay-table cache %s: %s", cache, err)
    return blocks


_CACHE_FORMAT = 1


def cache_dir() -> Path:
    """Where parsed decay tables are cached: ``$MAMBAH_CACHE`` or ``~/.cache/mambah``."""
    return Path(os.environ.get("MAMBAH_CACHE") or Path.home() / ".cache" / "mambah")


def table_path(table: str) -> Path:
    """The file of a decay table: a shipped name (``"DECAY_LHCB.DEC"``) or a DecFile path."""
    if table in SHIPPED_TABLES:  # decaylanguage's data folder, found without importing it (~0.1 s of start-up)
        import importlib.util

        spec = importlib.util.find_spec("decaylanguage")
        if spec is None or not spec.submodule_search_locations:
            raise DecayError(f"decay table {table!r} ships with decaylanguage, which is not installed (pip install decaylanguage)")
        return Path(next(iter(spec.submodule_search_locations))) / "data" / table
    p = Path(table)
    if not p.is_file():
        raise DecayError(f"decay table {table!r} is neither a shipped table ({', '.join(SHIPPED_TABLES)}) nor an existing DecFile")
    return p


def read_table(table: str) -> DecBlocks:
    """The decay table ``table`` (see :func:`table_path`), parsed and cached."""
    return read_dec_file(table_path(table))


def stable_pids(names: Iterable[str]) -> frozenset[int]:
    """PDG ids of ``names`` and of their antiparticles."""
    out: set[int] = set()
    for n in names:
        pid = int(lookup_particle(n, context="the stable particles").pdgid)
        out.update((pid, -pid))
    return frozenset(out)


def supported_models() -> frozenset[str]:
    """Models honoured: ``PHSP`` plus :data:`sim.generation.amplitudes.SUPPORTED_MODELS` when that module exists."""
    try:
        from sim.generation.amplitudes import SUPPORTED_MODELS
    except ImportError:
        return frozenset({"PHSP"})
    return frozenset(SUPPORTED_MODELS) | {"PHSP"}


def photos_available() -> bool:
    """Whether :mod:`sim.generation.photos` (final-state radiation) exists."""
    import importlib.util

    return importlib.util.find_spec("sim.generation.photos") is not None


_PARTON_PIDS = frozenset({1, 2, 3, 4, 5, 6, 21, 91, 92, 93})


def needs_hadronisation(pids: Sequence[int]) -> bool:
    """Quarks, gluons, diquarks (PDG ``abs(id)`` in 1101..5503 with a zero third digit) or strings/clusters."""
    for pid in pids:
        a = abs(pid)
        if a in _PARTON_PIDS or (1000 < a < 6000 and (a // 10) % 10 == 0):
            return True
    return False


def apply_model_policy(
    mother: str,
    modes: Sequence[ModeSpec],
    daughter_pids: Sequence[Sequence[int] | None],
    policy: str,
    *,
    where: str,
    option: str,
    warned: set[str],
    supported: frozenset[str] | None = None,
    photos: bool | None = None,
    parent_pid: int | None = None,
) -> list[ModeSpec]:
    """Modes of ``mother`` the engine will generate, after the unsupported-model ``policy``.

    Args:
        mother: the decaying particle (for messages).
        modes: its modes.
        daughter_pids: per mode, the daughters' PDG ids, or ``None`` if a daughter is unknown.
        policy: one of :data:`POLICIES`.
        where: the file or descriptor (for messages).
        option: the option that sets ``policy`` (for messages, e.g. ``"--unsupported-models"``).
        warned: model names already warned about (updated): one warning line per model.
        supported: models honoured (default :func:`supported_models`).
        photos: whether FSR is available (default :func:`photos_available`).
        parent_pid: PDG id of ``mother``; when given, a supported model is also asked
            (``model_weight_bound``) whether it honours this very transition (spins,
            parameters, form-factor tables); a refusal counts as unsupported.

    Returns:
        The modes kept (models replaced by ``PHSP`` / ``photos`` cleared where substituted);
        modes with zero branching fraction are dropped.

    Raises:
        DecayError: ``policy="error"`` and an unsupported model; or no mode left.
    """
    if policy not in POLICIES:
        raise DecayError(f"unsupported-model policy {policy!r} is not one of {', '.join(POLICIES)}")
    supported = supported_models() if supported is None else supported
    photos = photos_available() if photos is None else photos
    names = ", ".join(sorted(supported))
    out: list[ModeSpec] = []
    for mode, pids in zip(modes, daughter_pids, strict=True):
        if mode.bf <= 0:
            continue
        text = mode.describe(mother)
        if pids is None or needs_hadronisation(pids):
            why = "has a daughter unknown to `particle`" if pids is None else f"needs hadronisation ({mode.model})"
            if policy == "error":
                raise DecayError(f"mode {text} ({where}) {why}; use {option} skip to drop such modes")
            log.warning("dropped %s (%s): %s (%s %s)", text, where, why, option, policy)
            continue
        refusal = None
        if mode.model in supported and mode.model != "PHSP" and parent_pid is not None:
            refusal = model_refusal(mode, parent_pid, pids)
        bad = list(([mode.model] if (mode.model not in supported or refusal) else []) + (["PHOTOS"] if mode.photos and not photos else []))
        if not bad:
            out.append(mode)
            continue
        if policy == "error":
            if refusal:
                raise DecayError(f"model {bad[0]} cannot generate {text} ({where}): {refusal}; or use {option} phase-space|skip")
            raise DecayError(
                f"model {bad[0]} of {text} ({where}) is not supported{_near_models(bad[0], supported)}; supported: {names}"
                f"{', PHOTOS' if photos else ''}; or use {option} phase-space|skip"
            )
        if policy == "skip":
            log.warning("dropped %s (%s): model %s not supported (%s skip); branching fractions renormalised", text, where, bad[0], option)
            continue
        for b in bad:
            tag = f"{b} (refused)" if (refusal and b == mode.model) else b
            if tag not in warned:
                warned.add(tag)
                what = "no final-state radiation" if b == "PHOTOS" else "generated as phase space"
                why = f"cannot generate some decays ({refusal})" if (refusal and b == mode.model) else "not supported"
                log.warning("model %s %s: %s (first: %s in %s; %s phase-space)", b, why, what, text, where, option)
        new = mode
        if mode.model not in supported or refusal:
            new = replace(new, model="PHSP", params=())
        if mode.photos and not photos:
            new = replace(new, photos=False)
        out.append(new)
    if not out:
        raise DecayError(f"no mode of {mother} ({where}) is left to generate")
    return out


def model_refusal(mode: ModeSpec, parent_pid: int, daughter_pids: Sequence[int]) -> str | None:
    """Why :mod:`sim.generation.amplitudes` cannot honour ``mode`` for this parent, or ``None``.

    Asks ``model_weight_bound`` on the one-level chain (parent + daughters), which
    checks spins, parameters and form-factor transitions.
    """
    try:
        from sim.generation.amplitudes import NodeSpec, model_weight_bound
    except ImportError:
        return "sim.generation.amplitudes is not available"
    k = len(daughter_pids)
    nodes = [NodeSpec(pid=parent_pid, model=mode.model, params=mode.params, children=tuple(range(1, k + 1)), mother=-1)]
    nodes += [NodeSpec(pid=int(p), model="", params=(), children=(), mother=0) for p in daughter_pids]
    try:
        model_weight_bound(nodes)
    except MambahError as err:
        return str(err).splitlines()[0] if str(err) else type(err).__name__
    return None


def check_policy(policy: str, option: str) -> None:
    """Refuse an unknown policy name."""
    if policy not in POLICIES:
        raise ConfigError(f"{option} must be one of {', '.join(POLICIES)}, got {policy!r}")
