"""The ``hepmc`` input pass: events of any generator from HepMC3 / HepMC2 ASCII files.

Reads one file, a list or a glob with ``pyhepmc`` (``mambah[hepmc]``).  Batch *i*
holds events ``[i·B, (i+1)·B)`` of the files in order (``B`` = ``batch_size``, the
run's batch size), so a batch reads the same events in any process, after
``--resume`` and in distributed runs: at build time every file is scanned once
for the byte offsets of its events (and checked: a HepMC header, the end-of-listing
line, the last event complete), and a batch then parses only its own events.

Parsers (``reader``, :func:`read_segment`): a HepMC3 batch's bytes are parsed in bulk
(:mod:`sim.generation._hepmc_text`: numpy on the lines, ``pyarrow.csv`` for the ``P`` and
``V`` lines), giving the same arrays as pyhepmc's ``ReaderAscii`` bit for bit; HepMC2
files, and under ``reader="auto"`` a HepMC3 layout the bulk parser does not cover (one
warning line each), are parsed event by event with pyhepmc; ``reader="pyhepmc"`` always.

Conversion (see :mod:`sim.generation._event_tables` for the layout):

* units from each event's ``U`` line: momenta GeV or MeV → MeV, lengths mm or
  cm → mm; HepMC vertex times are c·t in length units → ns (t / c);
* status 1 (final), 2 (decayed), 4 (beam) kept as ``mc_particles.status``; any
  other line (documentation, partons, strings) dropped and the links re-attached
  to the nearest kept ancestor;
* interactions: the top vertex of each particle's ancestry (the collision of its
  beams, or a production vertex without incoming particles) is its primary vertex;
  ``events.n_interactions`` counts them, ``events.process`` is HepMC's
  ``signal_process_id`` when the file has it;
* ``signal``: an optional descriptor (``"[B+ -> (J/psi -> mu+ mu-) K+]CC"``); every
  particle whose stored decay matches it is flagged ``is_signal`` with all its
  descendants.  The interaction holding the first signal particle becomes PV 0.

A file that is not HepMC (a gzip/bzip2/xz/zstd/lz4-compressed one is named as such:
decompress it first), a truncated file, an event without particles, a particle with a
NaN/infinite or negative energy, an event that does not parse or whose
links are broken (a particle other than a beam without production vertex counts as
broken: the reader leaves unresolved links that way) stop the run with a one-line :class:`~mambah.errors.DataError`
naming the file, the event and the line.  Links are checked for every event of every file
at build time (a text scan, :func:`_check_links`), so a broken event stops the run before
the store is created, whichever batch it belongs to; an event that still fails to parse
when its batch runs rolls that batch back.
"""

from __future__ import annotations

import contextlib
import glob
import io
import logging
import mmap
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from mambah.errors import ConfigError, DataError
from sim.core.pipeline import BatchContext, Kernel, Pass
from sim.core.registry import register_pass
from sim.generation._event_tables import (
    CUT_KEY,
    STATUS_BEAM,
    GeneratorRecord,
    charges,
    check_theta_window,
    daughters_in_acceptance,
    layout_tables,
    write_tables,
)

__all__ = (
    "C_LIGHT", "READERS", "HepMCIndex", "HepMCInput", "flag_signal", "read_events", "read_segment", "scan_hepmc", "write_hepmc",
)

log = logging.getLogger(__name__)

#: speed of light [mm/ns]
C_LIGHT = 299.792458

_HEADERS = {
    b"HepMC::Asciiv3-START_EVENT_LISTING": ("hepmc3", b"HepMC::Asciiv3-END_EVENT_LISTING"),
    b"HepMC::IO_GenEvent-START_EVENT_LISTING": ("hepmc2", b"HepMC::IO_GenEvent-END_EVENT_LISTING"),
}


def _require_pyhepmc() -> Any:
    try:
        import pyhepmc
    except ImportError:
        raise ConfigError("the hepmc pass needs pyhepmc: pip install mambah[hepmc]") from None
    return pyhepmc


@dataclass(frozen=True)
class HepMCIndex:
    """Where the events of one HepMC ASCII file are.

    Attributes:
        path: the file.
        format: ``"hepmc3"`` or ``"hepmc2"``.
        header: the bytes before the first event (version, listing start, run info).
        footer: the end-of-listing line.
        offsets: ``(n_events + 1,)`` byte offsets of each ``E`` line, then of the footer.
    """

    path: str
    format: str
    header: bytes
    footer: bytes
    offsets: np.ndarray

    @property
    def n_events(self) -> int:
        return int(self.offsets.size - 1)

    def line_of(self, offset: int) -> int:
        """1-based line number of the byte at ``offset``."""
        with open(self.path, "rb") as f:
            return f.read(offset).count(b"\n") + 1


#: magic bytes of compressed files (a ``.hepmc3.gz`` or a compressed file under any name)
_COMPRESSED = ((b"\x1f\x8b", "gzip"), (b"BZh", "bzip2"), (b"\xfd7zXZ\x00", "xz"), (b"\x28\xb5\x2f\xfd", "zstd"),
               (b"\x04\x22\x4d\x18", "lz4"))
_UNPACK = {"gzip": "gunzip -k", "bzip2": "bunzip2 -k", "xz": "unxz -k", "zstd": "unzstd", "lz4": "unlz4"}


def scan_hepmc(path: str | Path) -> HepMCIndex:
    """Check a HepMC3/HepMC2 ASCII file and find its events.

    Raises:
        DataError: missing file, not HepMC ASCII, no events, or truncated.
    """
    p = Path(path)
    if p.is_dir():  # a folder of files: its files (or a glob), not the folder
        raise DataError(f"HepMC file '{p}' is a directory; give its files, e.g. '{p / '*.hepmc3'}' (globs are expanded)")
    if not p.is_file():
        raise DataError(f"HepMC file '{p}' does not exist")
    with open(p, "rb") as f:
        if p.stat().st_size == 0:
            raise DataError(f"'{p}' is empty; expected a HepMC3 or HepMC2 ASCII file")
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
            head = mm[:4096].split(b"\n")
            lines = [ln.strip() for ln in head[:3]]
            kind = next((_HEADERS[ln] for ln in lines[:2] if ln in _HEADERS), None)
            if not lines[0].startswith(b"HepMC::Version") or kind is None:
                packed = next((name for magic, name in _COMPRESSED if mm[: len(magic)] == magic), None)
                if packed is not None:
                    raise DataError(
                        f"'{p}' is {packed}-compressed; the hepmc pass reads HepMC3 / HepMC2 ASCII text "
                        f"(its events are indexed by byte offset): decompress it first (e.g. {_UNPACK[packed]} '{p}')"
                    )
                first = lines[0][:60].decode("utf-8", "replace")
                raise DataError(
                    f"'{p}' is not a HepMC ASCII file (first line {first!r}); expected 'HepMC::Version' and an "
                    "Asciiv3 (HepMC3) or IO_GenEvent (HepMC2) listing"
                )
            fmt, footer = kind
            starts = _event_starts(mm)
            end = mm.rfind(footer)
            if starts.size == 0:
                raise DataError(f"HepMC file '{p}' holds no events")
            index = HepMCIndex(str(p), fmt, bytes(mm[: int(starts[0])]), footer + b"\n", np.r_[starts, max(end, 0)])
            if end < int(starts[-1]):
                raise DataError(
                    f"HepMC file '{p}' is truncated: no '{footer.decode()}' after its last event "
                    f"(event {starts.size - 1}, line {index.line_of(int(starts[-1]))})"
                )
            _check_last_event(index, bytes(mm[int(starts[-1]) : end]))
            _check_links(index, mm)
    return index


def _event_starts(mm: Any) -> np.ndarray:
    """Byte offsets of the lines starting with ``"E "`` (HepMC event lines) of a mapped file, ``(n,)`` int64.

    The same as the regular expression ``^E `` (multi-line) over the bytes, in numpy.
    """
    arr = np.frombuffer(mm, dtype=np.uint8)
    try:
        cand = np.flatnonzero(arr == 69)  # "E"
        cand = cand[cand + 1 < arr.size]
        at_line_start = (cand == 0) | (arr[np.maximum(cand - 1, 0)] == 10)
        return cand[at_line_start & (arr[np.minimum(cand + 1, arr.size - 1)] == 32)].astype(np.int64)
    finally:
        del arr  # the map must close after this


def _int_fields(arr: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The decimal integers in ``arr[starts[i]:ends[i]]`` (vectorised), and which of them are integers.

    An optional leading ``-``, then digits only; fields of 19 bytes or more are not int64
    numbers (not ok).  One pass per digit column (Horner), over ``(n,)`` arrays.
    """
    width = ends - starts
    last = arr.size - 1
    neg = (width > 1) & (arr[np.clip(starts, 0, last)] == 45)
    first = starts + neg
    digits = width - neg
    ok = (width > 0) & (width < 19)
    val = np.zeros(width.size, np.int64)
    for c in range(int(digits[ok].max(initial=0))):
        active = ok & (c < digits)
        d = arr[np.minimum(first + c, last)].astype(np.int64) - 48
        ok &= ~(active & ((d < 0) | (d > 9)))
        val = np.where(active, val * 10 + d, val)
    val = np.where(ok, val, 0)
    return np.where(neg, -val, val), ok


def _check_links(index: HepMCIndex, mm: Any) -> None:
    """:func:`_find_broken_link` on the mapped file, its numpy view released before any error leaves (the map must close)."""
    arr = np.frombuffer(mm, dtype=np.uint8)
    message = None
    try:
        _find_broken_link(index, arr)
    except DataError as err:
        message = str(err)  # the traceback, which holds the view, goes with err at the end of this clause
    finally:
        del arr
    if message is not None:
        raise DataError(message)


def _find_broken_link(index: HepMCIndex, arr: np.ndarray) -> None:
    """Every link of every event points to a particle or vertex the event defines (whole file, at build time).

    HepMC3: a particle's production link (a vertex id < 0 or a particle id > 0) must be
    defined before it, a vertex's incoming particles before the vertex, and a particle
    without production vertex must be a beam (status 4), as :func:`read_events` needs.
    HepMC2: a particle's end-vertex barcode must be 0 or a vertex of its event.  So a
    broken event stops the run before the store is touched, not when its batch runs.
    The integer fields are parsed straight from the file's bytes with numpy (no
    per-line Python), about 0.1 s per 100 MB.

    Raises:
        DataError: naming the file, the event and the line of the first broken link.
    """
    nl = np.flatnonzero(arr == 10)
    line_start = np.r_[0, nl + 1]
    line_end = np.r_[nl, arr.size]
    line_end = np.where((line_end > line_start) & (arr[np.maximum(line_end - 1, 0)] == 13), line_end - 1, line_end)  # CRLF
    keep = (line_end - line_start >= 2) & (arr[np.minimum(line_start + 1, arr.size - 1)] == 32)
    first = np.where(keep, arr[np.minimum(line_start, arr.size - 1)], 0)
    is_e, is_p, is_v = first == ord("E"), first == ord("P"), first == ord("V")
    ev_of = np.cumsum(is_e) - 1  # event of every line (E lines open events)
    sp = np.flatnonzero(arr == 32)

    after_letter: dict[int, np.ndarray] = {}  # the index in ``sp`` of the space after each line's type letter, per row set

    def field(rows: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Start and end of space-separated field ``k`` (the type letter is field 0) of lines ``rows``."""
        j = after_letter.get(id(rows))
        if j is None:
            j = after_letter[id(rows)] = np.searchsorted(sp, line_start[rows])
        lo = sp[np.minimum(j + k - 1, sp.size - 1)] + 1
        hi = np.minimum(sp[np.minimum(j + k, sp.size - 1)], line_end[rows])
        hi = np.where(j + k < sp.size, hi, line_end[rows])
        return lo, np.maximum(hi, lo)

    def ints(rows: np.ndarray, k: int) -> np.ndarray:
        lo, hi = field(rows, k)
        val, ok = _int_fields(arr, lo, hi)
        if not ok.all():
            r = int(rows[np.flatnonzero(~ok)[0]])
            raise DataError(
                f"HepMC file '{index.path}', event {int(ev_of[r])}: line {r + 1}: field {k} is not an integer"
            )
        return val

    def fail(row: int, what: str) -> None:
        raise DataError(f"HepMC file '{index.path}', event {int(ev_of[row])}: line {row + 1}: {what}")

    pr, vr = np.flatnonzero(is_p & (ev_of >= 0)), np.flatnonzero(is_v & (ev_of >= 0))
    big = np.int64(1) << 32
    if index.format == "hepmc3":
        p_id, p_link = ints(pr, 1), ints(pr, 2)
        lo9, _ = field(pr, 9)
        p_status, _ok = _int_fields(arr, lo9, line_end[pr])
        v_id = ints(vr, 1)
        p_ev, v_ev = ev_of[pr], ev_of[vr]
        v_key = v_ev * big - v_id
        order = np.argsort(v_key, kind="stable")
        k_sorted = v_key[order]
        want = p_ev * big - p_link
        if k_sorted.size:
            pos = np.minimum(np.searchsorted(k_sorted, want), k_sorted.size - 1)
            ok_v = (k_sorted[pos] == want) & (vr[order][pos] < pr)
        else:
            ok_v = np.zeros(pr.size, bool)
        bad = ((p_link < 0) & ~ok_v) | ((p_link > 0) & (p_link >= p_id)) | ((p_link == 0) & (p_status != STATUS_BEAM))
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            if p_link[i] == 0:
                fail(int(pr[i]), f"particle {int(p_id[i])} is not a beam (status 4) and has no production vertex")
            kind = "vertex" if p_link[i] < 0 else "particle"
            fail(int(pr[i]), f"particle {int(p_id[i])} links to undefined {kind} {int(p_link[i])}")
        # a vertex's incoming particles: defined before it (particle ids run 1 ... n in file order)
        p_cum = np.cumsum(is_p & (ev_of >= 0))
        first_p = np.searchsorted(p_ev, np.arange(int(ev_of[-1]) + 1), side="left") if pr.size else np.zeros(int(ev_of[-1]) + 1, np.int64)
        n_before = p_cum[vr] - first_p[v_ev]
        lo, hi = field(vr, 3)
        bracket = (arr[lo] == ord("[")) & (arr[np.maximum(hi - 1, 0)] == ord("]"))
        commas = np.flatnonzero(arr == 44)
        single = bracket & (np.searchsorted(commas, hi) == np.searchsorted(commas, lo)) & (hi - lo > 2)
        inc, ok = _int_fields(arr, lo + 1, np.where(single, hi - 1, lo + 1))
        bad_v = single & ok & ((inc < 1) | (inc > n_before))
        if bad_v.any():
            i = int(np.flatnonzero(bad_v)[0])
            fail(int(vr[i]), f"vertex {int(v_id[i])} has undefined incoming particle {int(inc[i])}")
        for q in np.flatnonzero(~(single & ok)).tolist():  # several incoming particles (the collision), or no list
            text = bytes(arr[lo[q] : hi[q]]).strip(b"[]")
            ids = [int(x) for x in text.split(b",") if x.strip()] if bracket[q] else []
            bad_id = next((x for x in ids if x < 1 or x > n_before[q]), None)
            if bad_id is not None:
                fail(int(vr[q]), f"vertex {int(v_id[q])} has undefined incoming particle {bad_id}")
    else:
        p_bar, p_end, v_bar = ints(pr, 1), ints(pr, 11), ints(vr, 1)
        keys = np.sort(ev_of[vr] * big - v_bar)
        want = ev_of[pr] * big - p_end
        if keys.size:
            found_v = keys[np.minimum(np.searchsorted(keys, want), keys.size - 1)] == want
        else:
            found_v = np.zeros(pr.size, bool)
        bad = (p_end != 0) & ~found_v
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            fail(int(pr[i]), f"particle {int(p_bar[i])} ends in undefined vertex {int(p_end[i])}")


def _check_last_event(index: HepMCIndex, text: bytes) -> None:
    """The declared particle (HepMC3) / vertex (HepMC2) count of the last event is there."""
    lines = text.split(b"\n")
    fields = lines[0].split()
    try:
        if index.format == "hepmc3":
            want, got, what = int(fields[3]), sum(1 for ln in lines if ln.startswith(b"P ")), "particles"
        else:
            want, got, what = int(fields[8]), sum(1 for ln in lines if ln.startswith(b"V ")), "vertices"
    except (IndexError, ValueError):
        raise DataError(
            f"HepMC file '{index.path}': malformed event line {lines[0][:60].decode('utf-8', 'replace')!r} "
            f"(event {index.n_events - 1}, line {index.line_of(int(index.offsets[-2]))})"
        ) from None
    if got < want:
        raise DataError(
            f"HepMC file '{index.path}' is truncated: its last event (event {index.n_events - 1}, line "
            f"{index.line_of(int(index.offsets[-2]))}) declares {want} {what} and has {got}"
        )


def _diagnose(index: HepMCIndex, event: int, text: bytes) -> str:
    """The first line of an event that does not parse: undefined links or too few fields."""
    first_line = index.line_of(int(index.offsets[event]))
    lines = text.split(b"\n")
    if index.format == "hepmc3":
        particles: set[int] = set()
        vertices: set[int] = set()
        for f in (ln.split() for ln in lines):
            if f[:1] == [b"V"] and len(f) > 1:
                with contextlib.suppress(ValueError):
                    vertices.add(int(f[1]))
        for k, ln in enumerate(lines):
            f = ln.split()
            if f[:1] == [b"P"]:
                if len(f) < 10:
                    return f"line {first_line + k}: particle line has {len(f)} fields, expected 10"
                link = int(f[2])
                if (link < 0 and link not in vertices) or (link > 0 and link not in particles):
                    return f"line {first_line + k}: particle {int(f[1])} links to undefined {'vertex' if link < 0 else 'particle'} {link}"
                particles.add(int(f[1]))
            elif f[:1] == [b"V"]:
                inc = re.findall(rb"-?\d+", ln.split(b"[")[1].split(b"]")[0]) if b"[" in ln else []
                for x in inc:
                    if int(x) not in particles:
                        return f"line {first_line + k}: vertex {int(f[1])} has undefined incoming particle {int(x)}"
    if not any(ln.split()[:1] == [b"P"] for ln in lines):
        return f"line {first_line}: the event holds no particles; drop it from the file"
    if index.format != "hepmc3":
        vertices2 = {int(f[1]) for f in (ln.split() for ln in lines) if f[:1] == [b"V"] and len(f) > 1}
        for k, ln in enumerate(lines):
            f = ln.split()
            if f[:1] == [b"P"]:
                if len(f) < 12:
                    return f"line {first_line + k}: particle line has {len(f)} fields, expected at least 12"
                end = int(f[11])
                if end != 0 and end not in vertices2:
                    return f"line {first_line + k}: particle {int(f[1])} ends in undefined vertex {end}"
    return f"line {first_line}: the event does not parse"


def expand_files(files: Sequence[str]) -> list[str]:
    """Files and globs → the list of files, globs sorted; a glob matching nothing is an error."""
    out: list[str] = []
    for f in files:
        if any(c in f for c in "*?["):
            hits = sorted(glob.glob(f))
            if not hits:
                raise DataError(f"HepMC glob '{f}' matches no file")
            out += hits
        else:
            out.append(f)
    if not out:
        raise ConfigError("the hepmc pass needs at least one file (files = [...])")
    return out


#: a units line of either format ("U GEV MM"), checked before pyhepmc reads the events
_UNITS_LINE = re.compile(rb"^U [^\r\n]*", re.M)  # a CR line end is not part of the units
_MOMENTUM = {"GEV": 1000.0, "MEV": 1.0}
_LENGTH = {"MM": 1.0, "CM": 10.0}


def read_events(index: HepMCIndex, first: int, stop: int) -> dict[str, Any]:
    """Parse events ``[first, stop)`` of one file into arrays over the whole segment (units converted).

    Per event only the parse and a copy of its arrays happen in Python; links, units and
    checks are vectorised over the segment.

    Returns:
        ``sizes, vsizes`` (particles and vertices per event); per particle ``pid, status,
        p4 (n, 4) [MeV], mass [MeV], prod, end`` (segment row of the production / end vertex,
        -1 none); ``in_p, in_v`` (particle → vertex links as segment rows); per vertex
        ``vpos (m, 4)`` [mm, ns]; per event ``event_pos (4,)`` [mm, ns] and ``process`` (-1 unknown).

    Raises:
        DataError: an event that does not parse or has broken links (file, event and line named).
    """
    pyhepmc = _require_pyhepmc()
    body = _segment_bytes(index, first, stop)
    from sim.generation._hepmc_text import units_problem

    for units_line in _UNITS_LINE.finditer(body):  # pyhepmc reads 'U FOO BAR' as GEV and CM, a silent substitute
        why = units_problem(units_line.group(0))
        if why is not None:
            raise DataError(f"HepMC file '{index.path}', events [{first}, {stop}): {why}; fix the file's units")
    stream = pyhepmc.io.pyiostream(io.BytesIO(index.header + body + index.footer))
    reader = (pyhepmc.io.ReaderAscii if index.format == "hepmc3" else pyhepmc.io.ReaderAsciiHepMC2)(stream)
    base = int(index.offsets[first])

    def text_of(k: int) -> bytes:
        return body[int(index.offsets[k]) - base : int(index.offsets[k + 1]) - base]

    parts, l1s, l2s, vxs, vys, vzs, vts, vids, units, eps, procs = [], [], [], [], [], [], [], [], [], [], []
    evt = pyhepmc.GenEvent()  # one event, cleared by every read_event
    try:
        for k in range(first, stop):
            ok = reader.read_event(evt)
            data = pyhepmc.GenEventData()
            if ok is not False and not reader.failed():
                evt.write_data(data)
            if ok is False or reader.failed() or data.particles.size == 0:
                raise DataError(f"HepMC file '{index.path}', event {k}: {_diagnose(index, k, text_of(k))}")
            nv = evt.numpy.vertices
            parts.append(data.particles)
            l1s.append(np.asarray(data.links1, dtype=np.int64))
            l2s.append(np.asarray(data.links2, dtype=np.int64))
            vxs.append(np.array(nv.x, dtype=np.float64))  # copies: the event is reused
            vys.append(np.array(nv.y, dtype=np.float64))
            vzs.append(np.array(nv.z, dtype=np.float64))
            vts.append(np.array(nv.t, dtype=np.float64))
            vids.append(np.array(nv.id, dtype=np.int64))  # the reader's vertex order is not their id order
            units.append((_MOMENTUM[str(data.momentum_unit.name)], _LENGTH[str(data.length_unit.name)]))
            ep = data.event_pos
            eps.append((ep.x, ep.y, ep.z, ep.t))
            process = -1
            attrs = evt.attributes
            if "signal_process_id" in attrs:
                with contextlib.suppress(TypeError, ValueError):
                    process = int(str(attrs["signal_process_id"]))
            procs.append(process)
    finally:
        reader.close()
    n_ev = stop - first
    sizes = np.array([x.size for x in parts], np.int64)
    vsizes = np.array([x.size for x in vxs], np.int64)
    lsizes = np.array([x.size for x in l1s], np.int64)
    p0, v0 = np.cumsum(sizes) - sizes, np.cumsum(vsizes) - vsizes
    n, m = int(sizes.sum()), int(vsizes.sum())
    part = np.concatenate(parts)
    mu = np.repeat(np.array([u[0] for u in units]), sizes)
    lu_ev = np.array([u[1] for u in units])
    lu = np.repeat(lu_ev, vsizes)
    p4 = np.stack([part["px"] * mu, part["py"] * mu, part["pz"] * mu, part["e"] * mu], axis=1)
    mass = np.where(part["is_mass_set"], part["mass"] * mu, np.sqrt(np.maximum(p4[:, 3] ** 2 - np.sum(p4[:, :3] ** 2, axis=1), 0.0)))
    l1, l2 = np.concatenate(l1s), np.concatenate(l2s)
    lev = np.repeat(np.arange(n_ev), lsizes)
    out_v = (l1 < 0) & (l2 > 0)  # vertex -> particle
    in_v_ = (l1 > 0) & (l2 < 0)  # particle -> vertex
    bad = ~(out_v | in_v_) | (out_v & ((l2 > sizes[lev]) | (-l1 > vsizes[lev]))) | (in_v_ & ((l1 > sizes[lev]) | (-l2 > vsizes[lev])))
    if bad.any():
        k = first + int(lev[np.flatnonzero(bad)[0]])
        raise DataError(f"HepMC file '{index.path}', event {k}: links between undefined particles or vertices")
    # vertex id -k of event e -> its row in the segment's vertex arrays
    vid = np.concatenate(vids)
    vev = np.repeat(np.arange(n_ev), vsizes)
    if np.any((vid >= 0) | (-vid > vsizes[vev])):
        k = first + int(vev[np.flatnonzero((vid >= 0) | (-vid > vsizes[vev]))[0]])
        raise DataError(f"HepMC file '{index.path}', event {k}: vertex ids are not -1 ... -n")
    row_of_id = np.empty(m, np.int64)
    row_of_id[v0[vev] - vid - 1] = np.arange(m)
    prod = np.full(n, -1, np.int64)
    prod[p0[lev[out_v]] + l2[out_v] - 1] = row_of_id[v0[lev[out_v]] - l1[out_v] - 1]
    end = np.full(n, -1, np.int64)
    end[p0[lev[in_v_]] + l1[in_v_] - 1] = row_of_id[v0[lev[in_v_]] - l2[in_v_] - 1]
    status = part["status"].astype(np.int64)
    orphan = np.flatnonzero((prod < 0) & (status != STATUS_BEAM))
    if orphan.size:  # the reader leaves a particle whose link it cannot resolve without production vertex
        e = int(np.searchsorted(p0, orphan[0], side="right")) - 1
        k = first + e
        why = _diagnose(index, k, text_of(k))
        if why.endswith("does not parse"):
            why = f"particle {int(orphan[0] - p0[e]) + 1} is not a beam (status 4) and has no production vertex"
        raise DataError(f"HepMC file '{index.path}', event {k}: {why}")
    vx, vy, vz, vt = (np.concatenate(a) for a in (vxs, vys, vzs, vts))
    ep_arr = np.array(eps, dtype=np.float64).reshape(n_ev, 4) * lu_ev[:, None]
    ep_arr[:, 3] /= C_LIGHT
    return {
        "sizes": sizes, "vsizes": vsizes, "pid": part["pid"].astype(np.int64), "status": status, "p4": p4, "mass": mass,
        "prod": prod, "end": end, "in_p": p0[lev[in_v_]] + l1[in_v_] - 1, "in_v": row_of_id[v0[lev[in_v_]] - l2[in_v_] - 1],
        "vpos": np.stack([vx * lu, vy * lu, vz * lu, vt * lu / C_LIGHT], axis=1).reshape(m, 4),
        "event_pos": ep_arr, "process": np.array(procs, np.int64),
    }


def _segment_bytes(index: HepMCIndex, first: int, stop: int) -> bytes:
    """The bytes of events ``[first, stop)`` of one file (``E`` line of ``first`` to that of ``stop``)."""
    with open(index.path, "rb") as f:
        f.seek(int(index.offsets[first]))
        return f.read(int(index.offsets[stop]) - int(index.offsets[first]))


#: the ``reader`` choices of :class:`HepMCInput`
READERS = ("auto", "text", "pyhepmc")


def read_segment(index: HepMCIndex, first: int, stop: int, reader: str = "auto") -> dict[str, Any]:
    """Events ``[first, stop)`` of one file by the chosen parser; the arrays of :func:`read_events`.

    ``reader``: ``"pyhepmc"`` parses every event with pyhepmc (:func:`read_events`);
    ``"text"`` parses a HepMC3 file's bytes in bulk (:func:`sim.generation._hepmc_text.parse_hepmc3`,
    the same arrays) and refuses a layout it does not cover; ``"auto"`` does the same but
    reads such a segment with pyhepmc instead, with one warning line naming the reason.
    HepMC2 files are always read with pyhepmc (``"text"`` refuses them at build time).
    A broken event fails in either parser with pyhepmc's one-line diagnosis.

    Raises:
        DataError: an event that does not parse, or (``"text"``) a layout the text parser does not cover.
    """
    if index.format != "hepmc3" or reader == "pyhepmc":
        return _check_finite(read_events(index, first, stop), index, first)
    from sim.generation._hepmc_text import TextLayoutError, parse_hepmc3

    try:
        return _check_finite(parse_hepmc3(_segment_bytes(index, first, stop), stop - first), index, first)
    except TextLayoutError as err:
        reason = str(err)
    seg = read_events(index, first, stop)  # a broken event or units line stops here with its one-line error
    if reader == "text":
        raise DataError(
            f"HepMC file '{index.path}', events [{first}, {stop}): the text reader does not cover {reason}; "
            "use reader 'auto' or 'pyhepmc'"
        )
    log.warning("hepmc: '%s' events [%d, %d): %s; read with pyhepmc", index.path, first, stop, reason)
    return _check_finite(seg, index, first)


def _check_finite(seg: dict[str, Any], index: HepMCIndex, first: int) -> dict[str, Any]:
    """``seg`` unchanged, or a :class:`DataError` naming the file, event and particle (or vertex) of
    the first momentum, mass or position that is NaN or infinite, or the first negative energy
    (never stored as it is)."""
    for key, what, sizes in (("p4", "particle", "sizes"), ("mass", "particle", "sizes"), ("vpos", "vertex", "vsizes")):
        arr = np.asarray(seg[key], dtype=np.float64)
        bad = ~np.isfinite(arr.reshape(arr.shape[0], -1)).all(axis=1)
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            ends = np.cumsum(np.asarray(seg[sizes], np.int64))
            e = int(np.searchsorted(ends, row, side="right"))
            k = row - (int(ends[e - 1]) if e else 0)
            field = {"p4": "momentum", "mass": "mass", "vpos": "position"}[key]
            raise DataError(
                f"HepMC file '{index.path}', event {first + e}: {what} {k + 1} has a non-finite {field} "
                f"({np.asarray(seg[key])[row].tolist()}); fix or drop the event"
            )
    energy = np.asarray(seg["p4"], dtype=np.float64)[:, 3]
    if np.any(energy < 0.0):  # a negative energy is no particle; |p| > E (rounding of massless ones) is kept
        row = int(np.flatnonzero(energy < 0.0)[0])
        ends = np.cumsum(np.asarray(seg["sizes"], np.int64))
        e = int(np.searchsorted(ends, row, side="right"))
        k = row - (int(ends[e - 1]) if e else 0)
        raise DataError(
            f"HepMC file '{index.path}', event {first + e}: particle {k + 1} has a negative energy "
            f"(E = {energy[row]:.6g} MeV); fix or drop the event"
        )
    return seg


def records_from_events(segments: list[dict[str, Any]]) -> tuple[GeneratorRecord, np.ndarray]:
    """Segments of parsed events (:func:`read_events`) → one :class:`GeneratorRecord` and ``process`` per event.

    The parent of a particle is the first incoming particle of its production vertex; its
    interaction is the top vertex of its ancestry (a production vertex without incoming
    particles, or the end vertex of a particle without production vertex, i.e. the beams'
    collision).
    """
    n_off = np.cumsum([0] + [int(g["sizes"].sum()) for g in segments])
    m_off = np.cumsum([0] + [int(g["vsizes"].sum()) for g in segments])

    def cat(key: str, shift: np.ndarray | None = None) -> np.ndarray:
        if shift is None:
            return np.concatenate([g[key] for g in segments])
        return np.concatenate([np.where(g[key] >= 0, g[key] + shift[i], -1) for i, g in enumerate(segments)])

    sizes = cat("sizes")
    n_ev = sizes.size
    n, m = int(n_off[-1]), int(m_off[-1])
    event = np.repeat(np.arange(n_ev), sizes)
    prod, end = cat("prod", m_off), cat("end", m_off)
    in_p, in_v = cat("in_p", n_off), cat("in_v", m_off)
    vpos = cat("vpos").reshape(m, 4)
    # first incoming particle of every vertex (links in file order: the first wins)
    first_in = np.full(m, -1, np.int64)
    first_in[in_v[::-1]] = in_p[::-1]
    parent = np.where(prod >= 0, first_in[np.maximum(prod, 0)], -1)
    # top of each ancestry by pointer jumping
    top = np.where(parent >= 0, parent, np.arange(n))
    for _ in range(64):
        nxt = top[top]
        if np.array_equal(nxt, top):
            break
        top = nxt
    else:
        raise DataError("HepMC mother links form a cycle")
    key = np.where(prod[top] >= 0, prod[top], end[top])  # the interaction vertex (global row), -1 none
    # interactions per event in order of first appearance
    width = np.int64(m + 1)  # (event, key) as one integer, ordered as the pair: a 1-D unique (≈ 10x faster than axis=0)
    codes, first_at, inv = np.unique(event * width + (key + 1), return_index=True, return_inverse=True)
    uniq = np.stack([codes // width, codes % width - 1], axis=1)
    inv = inv.ravel()
    by_first = np.argsort(first_at, kind="stable")
    uniq, first_at = uniq[by_first], first_at[by_first]
    remap = np.empty(len(by_first), np.int64)
    remap[by_first] = np.arange(len(by_first))
    u_sorted = np.lexsort((first_at, uniq[:, 0]))  # by event, then first appearance
    rank_in_ev = np.empty(len(uniq), np.int64)
    ev_u = uniq[u_sorted, 0]
    starts = np.flatnonzero(np.r_[True, ev_u[1:] != ev_u[:-1]]) if ev_u.size else np.zeros(0, np.int64)
    rank_in_ev[u_sorted] = np.arange(ev_u.size) - np.repeat(starts, np.diff(np.r_[starts, ev_u.size]))
    interaction = rank_in_ev[remap[inv]]
    n_int = np.bincount(uniq[:, 0], minlength=n_ev).astype(np.int64)
    event_pos = cat("event_pos").reshape(n_ev, 4)
    pv_rows = uniq[u_sorted]
    pv = np.where((pv_rows[:, 1] >= 0)[:, None], vpos[np.maximum(pv_rows[:, 1], 0)], event_pos[pv_rows[:, 0]])
    # events without particles still need one interaction
    empty = np.flatnonzero(n_int == 0)
    if empty.size:
        raise DataError(f"HepMC event {int(empty[0])} of the batch has no particles")
    decay_pos = np.full((n, 4), np.nan)
    has_end = end >= 0
    decay_pos[has_end] = vpos[end[has_end]]
    rec = GeneratorRecord(
        n_events=n_ev, event=event, pid=cat("pid"), status=cat("status"), p4=cat("p4").reshape(n, 4),
        mass=cat("mass"), parent=parent, decay_pos=decay_pos, interaction=interaction, n_interactions=n_int, pv=pv,
        is_signal=np.zeros(n, bool),
    )
    return rec, cat("process")


def _match(pid: np.ndarray, first: np.ndarray, last: np.ndarray, row: int, node: Any, conj: bool) -> bool:
    want = -node.pid if conj and _has_anti(node.pid) else node.pid
    if pid[row] != want:
        return False
    if not node.children:
        return True
    if first[row] < 0:
        return False
    kids = list(range(int(first[row]), int(last[row]) + 1))
    if len(kids) != len(node.children):
        return False
    used: set[int] = set()
    for child in sorted(node.children, key=lambda c: -len(c.children)):
        hit = next((k for k in kids if k not in used and _match(pid, first, last, k, child, conj)), None)
        if hit is None:
            return False
        used.add(hit)
    return True


def _has_anti(pid: int) -> bool:
    from mambah.descriptor import lookup_particle

    try:
        return int(lookup_particle(-pid).pdgid) == -pid
    except Exception:  # self-conjugate species
        return False


def flag_signal(particles: dict[str, np.ndarray], tree: Any, cc: bool) -> np.ndarray:
    """``is_signal`` for laid-out particles: every decay matching ``tree`` (or its CC) and its descendants.

    Args:
        particles: ``mc_particles`` columns sorted by (event, index): ``event, index, pid,
            first_daughter, last_daughter``.
        tree: :class:`mambah.descriptor.DecayNode`.
        cc: also match the charge conjugate.

    Returns:
        ``(n,)`` bool.
    """
    ev = np.asarray(particles["event"])
    pid = np.asarray(particles["pid"], dtype=np.int64)
    counts = np.bincount(ev) if ev.size else np.zeros(0, np.int64)
    start = np.cumsum(counts) - counts
    base = start[ev] if ev.size else ev
    first = np.where(np.asarray(particles["first_daughter"]) >= 0, np.asarray(particles["first_daughter"]) + base, -1)
    last = np.where(np.asarray(particles["last_daughter"]) >= 0, np.asarray(particles["last_daughter"]) + base, -1)
    heads = np.flatnonzero((pid == tree.pid) | ((pid == -tree.pid) if cc else False))
    flag = np.zeros(pid.size, bool)
    for r in heads:
        if _match(pid, first, last, int(r), tree, False) or (cc and _match(pid, first, last, int(r), tree, True)):
            todo = [int(r)]
            while todo:
                x = todo.pop()
                flag[x] = True
                if first[x] >= 0:
                    todo.extend(range(int(first[x]), int(last[x]) + 1))
    return flag


def _signal_first(tables: dict[str, dict[str, np.ndarray]], rec: GeneratorRecord, signal: np.ndarray) -> None:
    """Renumber interactions so that the one holding each event's first signal particle is PV 0 (in place)."""
    p, v, e = tables["mc_particles"], tables["mc_vertices"], tables["events"]
    n_int = np.asarray(e["n_interactions"], dtype=np.int64)
    ev = np.asarray(p["event"])
    sig_rows = np.flatnonzero(signal)
    if sig_rows.size == 0 or n_int.max(initial=1) <= 1:
        return
    # the interaction of a particle = the PV its chain of mothers starts from
    counts = np.bincount(ev, minlength=n_int.size)
    start = np.cumsum(counts) - counts
    mother = np.asarray(p["mother"], dtype=np.int64)
    row = np.arange(ev.size)
    top = row.copy()
    while True:
        m = mother[top]
        move = m >= 0
        if not move.any():
            break
        top = np.where(move, start[ev] + m, top)
    inter = np.asarray(p["prod_vertex"], dtype=np.int64)[top]
    ev_sig, first_sig = np.unique(ev[sig_rows], return_index=True)
    target = np.zeros(n_int.size, np.int64)
    target[ev_sig] = inter[sig_rows[first_sig]]

    def swap(ev_col: np.ndarray, idx: np.ndarray) -> np.ndarray:
        t = target[ev_col]
        is_pv = idx < n_int[ev_col]
        return np.where(is_pv & (idx == t), 0, np.where(is_pv & (idx == 0), t, idx))

    p["prod_vertex"] = swap(ev, np.asarray(p["prod_vertex"], dtype=np.int64)).astype(np.int32)
    dvx = np.asarray(p["decay_vertex"], dtype=np.int64)
    beam = np.asarray(p["status"]) == STATUS_BEAM
    p["decay_vertex"] = np.where(beam, swap(ev, dvx), dvx).astype(np.int32)
    vev = np.asarray(v["event"])
    v["index"] = swap(vev, np.asarray(v["index"], dtype=np.int64)).astype(np.int32)
    o = np.lexsort((v["index"], vev))
    for key in v:
        v[key] = np.asarray(v[key])[o]
    pv0 = np.asarray(v["index"]) == 0
    for c in ("x", "y", "z", "t"):
        e[f"pv_{c}"] = np.asarray(v[c])[pv0]


@register_pass
@dataclass(frozen=True)
class HepMCInput(Pass):
    """Events from HepMC3 / HepMC2 ASCII files.

    Args:
        name: pass name.
        files: file paths and/or globs (a glob's matches sorted), read in order.
        batch_size: events per batch; must be the run's batch size (``mambah run --hepmc`` sets it).
        signal: optional decay descriptor; matching decays are flagged ``is_signal``.
        daughters_in_acceptance: Gauss' ``DaughtersInLHCb`` cut on the flagged signal
            (:func:`~sim.generation._event_tables.daughters_in_acceptance`).  Batch *i* must
            hold events [i·B, (i+1)·B) of the files, so an event that fails is kept but
            marked ``events.simulated = false`` (no detector simulation, as a preselect-skipped
            event); each batch records ``{"tried": events with a signal, "kept": passing}`` in
            ``metadata['generator_cut/<batch>']`` (:func:`~sim.generation._event_tables.signal_cut_efficiency`).
        charged_theta, neutral_theta: polar-angle windows ``(min, max)`` [rad] of the cut
            (Gauss: 10–400 mrad charged, 5–400 mrad neutral).
        reader: ``"auto"`` (HepMC3 text parsed in bulk, a layout it does not cover read
            with pyhepmc with one warning line; HepMC2 with pyhepmc), ``"text"`` (the bulk
            parser only: HepMC2 or an uncovered layout is an error) or ``"pyhepmc"`` (every
            event through pyhepmc); the store's tables are the same (:func:`read_segment`).

    Writes ``events`` (PV of interaction 0, ``n_interactions``, ``process``), ``mc_particles``
    (with ``status``), ``mc_vertices``.
    """

    kind: ClassVar[str] = "hepmc"
    reads: ClassVar[tuple[str, ...]] = ()
    writes: ClassVar[tuple[str, ...]] = ("events", "mc_particles", "mc_vertices")

    name: str = "hepmc"
    files: tuple[str, ...] = ()
    batch_size: int = 1000
    signal: str | None = None
    daughters_in_acceptance: bool = False
    charged_theta: tuple[float, float] = (0.010, 0.400)
    neutral_theta: tuple[float, float] = (0.005, 0.400)
    reader: str = "auto"

    def __post_init__(self) -> None:
        files = (self.files,) if isinstance(self.files, str) else tuple(self.files)
        object.__setattr__(self, "files", tuple(str(f) for f in files))
        b = self.batch_size
        if isinstance(b, bool) or not isinstance(b, int) or b < 1:
            raise ConfigError(f"hepmc batch_size must be a positive integer, got {b!r}")
        if not isinstance(self.daughters_in_acceptance, bool):
            raise ConfigError(f"daughters_in_acceptance must be true or false, got {self.daughters_in_acceptance!r}")
        if self.daughters_in_acceptance and self.signal is None:
            raise ConfigError("daughters_in_acceptance needs a signal: give the hepmc pass a signal descriptor")
        for name in ("charged_theta", "neutral_theta"):
            object.__setattr__(self, name, check_theta_window(name, getattr(self, name)))
        if self.reader not in READERS:
            raise ConfigError(f"hepmc reader must be one of {', '.join(READERS)}, got {self.reader!r}")

    def scan(self) -> list[HepMCIndex]:
        """Index every file (checks them all; see :func:`scan_hepmc`)."""
        _require_pyhepmc()
        return [scan_hepmc(f) for f in expand_files(self.files)]

    def n_events(self) -> int:
        """Events in all the files."""
        return sum(ix.n_events for ix in self.scan())

    def build(self) -> Kernel:
        indexes = self.scan()
        for ix in indexes:
            if ix.format == "hepmc2" and self.reader == "text":
                raise ConfigError(f"hepmc reader 'text' reads HepMC3 only and '{ix.path}' is HepMC2; use reader 'auto' or 'pyhepmc'")
            parser = "pyhepmc" if ix.format == "hepmc2" or self.reader == "pyhepmc" else "the bulk text parser"
            log.info("hepmc: '%s' (%s, %d events) read with %s", ix.path, ix.format, ix.n_events, parser)
        sizes = np.array([ix.n_events for ix in indexes], np.int64)
        bounds = np.r_[0, np.cumsum(sizes)]
        total = int(bounds[-1])
        charges(np.array([211]))  # load the PDG table now, not in the first batch
        tree_cc = None
        if self.signal is not None:
            from mambah.descriptor import parse_descriptor

            tree_cc = parse_descriptor(self.signal)
        bsize = self.batch_size
        cfg = self
        mode = self.reader

        def kernel(ctx: BatchContext) -> None:
            b = ctx.batch
            if b.n_events > bsize:
                raise ConfigError(f"batch {b.batch} has {b.n_events} events but the hepmc pass has batch_size {bsize}; set them equal")
            lo = b.batch * bsize
            hi = lo + b.n_events
            if hi > total:
                raise DataError(f"batch {b.batch} needs HepMC events [{lo}, {hi}) but the files hold {total}; ask for at most {total} events")
            raw: list[dict[str, Any]] = []  # one segment per file touched
            for i, ix in enumerate(indexes):
                a, z = max(lo, int(bounds[i])), min(hi, int(bounds[i + 1]))
                if a < z:
                    raw.append(read_segment(ix, a - int(bounds[i]), z - int(bounds[i]), mode))
            rec, process = records_from_events(raw)
            tables = layout_tables(rec)
            if tree_cc is not None:
                sig = flag_signal(tables["mc_particles"], *tree_cc)
                tables["mc_particles"]["is_signal"] = sig
                _signal_first(tables, rec, sig)
            tables["events"]["process"] = process
            if cfg.daughters_in_acceptance:
                n_ev = len(tables["events"]["event"])
                ok = daughters_in_acceptance(tables["mc_particles"], n_ev, cfg.charged_theta, cfg.neutral_theta)
                p = tables["mc_particles"]
                tried = int(np.unique(np.asarray(p["event"])[np.asarray(p["is_signal"], bool)]).size)
                tables["events"]["simulated"] = ok
            write_tables(ctx, tables)
            if cfg.daughters_in_acceptance:
                ctx.con.execute(
                    "INSERT OR REPLACE INTO metadata VALUES (?, ?)",
                    [f"{CUT_KEY}{b.batch}", f'{{"tried": {tried}, "kept": {int(ok.sum())}}}'],
                )

        return kernel


def write_hepmc(store: Any, path: str | Path, *, limit: int | None = None) -> int:
    """Write the events of a store as HepMC3 ASCII (GeV, mm; mothers first), e.g. to hand them to another program.

    Particles keep their store order (breadth-first, so mothers come first); a prompt
    particle's parents are the two beams of its interaction (status 4 lines; a store
    without beams, such as the gun's, gets its prompt particles without parents).

    Args:
        store: an open :class:`mambah.EventStore`.
        path: output file.
        limit: at most this many events (in (batch, event) order).

    Returns:
        The number of events written.
    """
    pyhepmc = _require_pyhepmc()
    cut = f"LIMIT {int(limit)}" if limit is not None else ""
    p = store.query_df(f"""
        SELECT p.batch, p.event, p.pid, p.px, p.py, p.pz, p.e, p.mass, coalesce(p.status, CASE WHEN p.decay_vertex >= 0
               THEN 2 ELSE 1 END) AS status, p.mother, p.prod_vertex, p.decay_vertex, v.x, v.y, v.z, v.t
        FROM mc_particles p JOIN mc_vertices v ON v.batch = p.batch AND v.event = p.event AND v."index" = p.prod_vertex
        JOIN (SELECT batch, event FROM events ORDER BY batch, event {cut}) e ON e.batch = p.batch AND e.event = p.event
        ORDER BY p.batch, p.event, p."index" """)
    written = 0
    with pyhepmc.io.WriterAscii(str(path)) as w:
        for _key, g in p.groupby(["batch", "event"], sort=True):
            st = g["status"].to_numpy()
            mother = g["mother"].to_numpy()
            beam = np.flatnonzero(st == STATUS_BEAM)
            first_beam = {int(g["decay_vertex"].to_numpy()[i]): int(i) for i in beam[::-1]}
            parents = np.full((len(g), 2), -1, np.int64)
            has = mother >= 0
            parents[has, 0] = mother[has]
            prompt = np.flatnonzero(~has & (st != STATUS_BEAM))
            for i in prompt:
                b = first_beam.get(int(g["prod_vertex"].to_numpy()[i]))
                if b is not None:
                    parents[i] = (b, b + 1)
            ev = pyhepmc.GenEvent()
            ev.from_hepevt(
                written, g["px"].to_numpy() / 1e3, g["py"].to_numpy() / 1e3, g["pz"].to_numpy() / 1e3, g["e"].to_numpy() / 1e3,
                g["mass"].to_numpy() / 1e3, g["pid"].to_numpy().astype(np.int32), st.astype(np.int32), parents=parents,
                vx=g["x"].to_numpy(), vy=g["y"].to_numpy(), vz=g["z"].to_numpy(), vt=g["t"].to_numpy() * C_LIGHT, fortran=False,
            )
            w.write_event(ev)
            written += 1
    return written
