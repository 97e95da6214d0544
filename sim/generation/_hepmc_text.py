"""The HepMC3 ASCII text of a batch parsed in bulk: numpy on the raw bytes, ``pyarrow.csv`` for the numbers.

:func:`parse_hepmc3` turns the bytes of whole events (``E`` line to the next ``E`` line)
into the arrays :func:`sim.generation.hepmc.read_events` returns, with the same values
(to the bit: both parsers round every decimal to the nearest double) and the same
HepMC3 semantics as pyhepmc's ``ReaderAscii``:

* line starts are the bytes after each ``\\n``; a line's kind is its first byte
  (``E U W A P V``); ``P`` lines (``P id parent pid px py pz e m status``) and ``V``
  lines (``V id status [in,...]`` with or without ``@ x y z t``) go to
  ``pyarrow.csv.read_csv`` as contiguous buffers, one per layout, with explicit column
  types; the bracketed lists of incoming particles are cut at their commas with numpy;
* a particle whose parent is a particle id (``P 6 5 ...``) comes out of the implicit
  vertex that ends that particle (one per parent, as the reader makes it); parent 0
  is the event's root vertex (no production vertex);
* a vertex without position, or at (0, 0, 0, 0), takes the position of the production
  vertex of its first incoming particle, recursively; the root vertex is at the
  ``E`` line's ``@`` position, else 0 (``GenVertex::position``);
* ``A 0 signal_process_id N`` gives ``process`` (-1 if absent or not an integer); the
  ``U`` line the units.

A layout it does not cover (CR line ends, a line of another kind, extra spaces, a
second or missing ``U`` line, an empty incoming list, a particle entering two vertices)
and an event that pyhepmc would refuse (particle or vertex counts different from the
``E`` line's, undefined links) raise :class:`TextLayoutError`, naming the reason; the
caller then reads those events with pyhepmc (:mod:`sim.generation.hepmc`), which
diagnoses a broken event in its one-line error.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mambah.errors import DataError
from sim.generation.hepmc import _int_fields  # hepmc imports this module only inside read_segment: no cycle

__all__ = ("TextLayoutError", "parse_hepmc3")

#: speed of light [mm/ns] (the same constant as :data:`sim.generation.hepmc.C_LIGHT`)
_C_LIGHT = 299.792458
_MOMENTUM = {b"GEV": 1000.0, b"MEV": 1.0}
_LENGTH = {b"MM": 1.0, b"CM": 10.0}


def units_problem(line: bytes) -> str | None:
    """Why ``line`` is not a units line both readers take (``U GEV|MEV MM|CM``, single spaces), or ``None``.

    pyhepmc reads any other unit as GEV and CM without a word, so :func:`sim.generation.hepmc.read_events`
    asks this too before pyhepmc reads a segment.
    """
    f = line.split(b" ")
    if len(f) != 3 or f[0] != b"U" or f[1] not in _MOMENTUM or f[2] not in _LENGTH:
        return f"units line {line[:40]!r} not 'U GEV|MEV MM|CM'"
    return None
_KINDS = frozenset(b"EUWAPV")
_BIG = np.int64(1) << 32


class TextLayoutError(DataError):
    """The bytes are not in the layout the bulk text parser covers (the reason is the message)."""


def _lines_of(arr: np.ndarray, rows: np.ndarray, ls: np.ndarray, le: np.ndarray) -> np.ndarray:
    """The whole lines ``rows`` (with their ``\\n``), in order, as one contiguous uint8 array."""
    keep = np.zeros(ls.size, bool)
    keep[rows] = True
    return arr[np.repeat(keep, le - ls + 1)]


def _read_csv(buf: np.ndarray, names: list[str], types: dict[str, Any], what: str) -> Any:
    """``pyarrow.csv.read_csv`` of space-separated lines (no header, no quoting), only the typed columns."""
    import pyarrow as pa
    import pyarrow.csv as pcsv

    if buf.size == 0:
        return pa.table({c: pa.array([], t) for c, t in types.items()})
    try:  # one block (one chunk per column, zero-copy to numpy), one thread: the CPU is shared with the other passes
        return pcsv.read_csv(
            pa.py_buffer(buf),
            read_options=pcsv.ReadOptions(column_names=names, block_size=min(buf.size + 1, 2**31 - 1), use_threads=False),
            parse_options=pcsv.ParseOptions(delimiter=" ", quote_char=False, double_quote=False, escape_char=False),
            convert_options=pcsv.ConvertOptions(column_types=types, include_columns=list(types), null_values=[], strings_can_be_null=False),
        )
    except (pa.ArrowInvalid, pa.ArrowTypeError) as err:
        raise TextLayoutError(f"{what} lines not in the fixed layout ({str(err).splitlines()[0][:80]})") from None


def _np(table: Any, name: str) -> np.ndarray:
    return np.asarray(table.column(name).to_numpy())


def _incoming_lists(tables: list[Any]) -> tuple[np.ndarray, np.ndarray]:
    """The integers of the ``[a,b,...]`` columns of ``tables`` (in order): values and the list (row) of each.

    The lists are read as one Arrow string column each; their bytes (contiguous, with
    offsets) are cut at the commas with numpy.
    """
    import pyarrow as pa

    vals, owners, base = [], [], 0
    for t in tables:
        col = t.column("inc").combine_chunks() if t.num_rows else pa.array([], pa.string())
        n = len(col)
        if n == 0:
            continue
        _validity, off_buf, data_buf = col.buffers()
        offsets = np.frombuffer(off_buf, np.int32)[col.offset : col.offset + n + 1].astype(np.int64)
        data = np.frombuffer(data_buf, np.uint8)[: int(offsets[-1])] if data_buf is not None else np.zeros(0, np.uint8)
        lo, hi = offsets[:-1], offsets[1:]
        if data.size == 0 or np.any(hi - lo < 3) or np.any(data[lo] != 91) or np.any(data[hi - 1] != 93):
            raise TextLayoutError("a vertex line's incoming list is not '[id,...]' with at least one id")
        commas = np.flatnonzero(data == 44)
        owner_c = np.searchsorted(offsets, commas, side="right") - 1
        per = np.bincount(owner_c, minlength=n) + 1
        starts = np.sort(np.r_[lo + 1, commas + 1])
        ends = np.sort(np.r_[commas, hi - 1])
        v, ok = _int_fields(data, starts, ends)
        if not ok.all():
            raise TextLayoutError("a vertex line's incoming list holds something other than integer ids")
        vals.append(v)
        owners.append(np.repeat(np.arange(n), per) + base)
        base += n
    if not vals:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.concatenate(vals), np.concatenate(owners)


def parse_hepmc3(body: bytes, n_events: int) -> dict[str, Any]:
    """Parse the text of ``n_events`` whole HepMC3 events (``E`` line first, each line ending in ``\\n``).

    Args:
        body: the events' bytes.
        n_events: how many ``E`` lines ``body`` holds.

    Returns:
        The dictionary of :func:`sim.generation.hepmc.read_events` (``sizes, vsizes, pid,
        status, p4 [MeV], mass [MeV], prod, end, in_p, in_v, vpos [mm, ns], event_pos
        [mm, ns], process``); vertices in pyhepmc's order: the ``V`` lines and the
        implicit vertices (one per particle named as a parent, at its first child's line) in file order.

    Raises:
        TextLayoutError: a layout this parser does not cover, or an event pyhepmc refuses.
    """
    if b"\r" in body:
        raise TextLayoutError("CR line ends")
    if not body.endswith(b"\n"):
        raise TextLayoutError("the events do not end with a line end")
    arr = np.frombuffer(body, np.uint8)
    nl = np.flatnonzero(arr == 10)
    ls, le = np.r_[0, nl[:-1] + 1], nl  # line [ls, le), le at its \n
    if np.any(le - ls < 2) or np.any(arr[ls + 1] != 32):
        raise TextLayoutError("a line that is not '<kind letter> <fields>'")
    kind = arr[ls]
    bad_kind = ~np.isin(kind, np.frombuffer(bytes(_KINDS), np.uint8))
    if bad_kind.any():
        raise TextLayoutError(f"a line of kind {chr(int(kind[np.flatnonzero(bad_kind)[0]]))!r} (not E U W A P V)")
    is_e = kind == 69
    ev_of = np.cumsum(is_e) - 1
    if not is_e[0] or int(is_e.sum()) != n_events:
        raise TextLayoutError(f"{int(is_e.sum())} event lines where {n_events} were expected")

    # E, U and 'A 0' lines: a few per event, in Python
    declared = np.zeros((n_events, 2), np.int64)  # vertices, particles
    event_pos = np.zeros((n_events, 4))
    for k, r in enumerate(np.flatnonzero(is_e).tolist()):
        f = body[ls[r] : le[r]].split(b" ")
        try:
            int(f[1])  # the event number (not stored)
            declared[k] = (int(f[2]), int(f[3]))
            if len(f) == 9 and f[4] == b"@":
                event_pos[k] = [float(x) for x in f[5:9]]
            elif len(f) != 4:
                raise ValueError
        except (ValueError, IndexError):
            raise TextLayoutError(f"event line {body[ls[r] : le[r]][:60]!r} not 'E n nv np [@ x y z t]'") from None
    u_rows = np.flatnonzero(kind == 85)
    if not np.array_equal(np.bincount(ev_of[u_rows], minlength=n_events), np.ones(n_events, np.int64)):
        raise TextLayoutError("an event without exactly one units (U) line")
    mu_ev, lu_ev = np.empty(n_events), np.empty(n_events)
    for k, r in enumerate(u_rows.tolist()):
        line = body[ls[r] : le[r]]
        why = units_problem(line)
        if why is not None:
            raise TextLayoutError(why)
        f = line.split(b" ")
        mu_ev[k], lu_ev[k] = _MOMENTUM[f[1]], _LENGTH[f[2]]
    process = np.full(n_events, -1, np.int64)
    a0 = np.flatnonzero((kind == 65) & (arr[np.minimum(ls + 2, arr.size - 1)] == 48) & (arr[np.minimum(ls + 3, arr.size - 1)] == 32))
    for r in a0.tolist():
        name, _, value = body[ls[r] + 4 : le[r]].partition(b" ")
        if name == b"signal_process_id":
            try:
                process[ev_of[r]] = int(value)
            except ValueError:
                process[ev_of[r]] = -1

    # P lines
    pr = np.flatnonzero(kind == 80)
    p_ev = ev_of[pr]
    sizes = np.bincount(p_ev, minlength=n_events).astype(np.int64)
    if np.any(sizes != declared[:, 1]):
        raise TextLayoutError("an event whose particle count differs from its event line")
    if np.any(sizes == 0):
        raise TextLayoutError("an event without particles")
    i64, f64 = "int64", "float64"
    ptab = _read_csv(
        _lines_of(arr, pr, ls, le),
        ["k", "id", "parent", "pid", "px", "py", "pz", "e", "m", "status"],
        {"id": i64, "parent": i64, "pid": i64, "px": f64, "py": f64, "pz": f64, "e": f64, "m": f64, "status": i64},
        "particle",
    )
    if ptab.num_rows != pr.size:
        raise TextLayoutError("particle lines not one record each")
    p0 = np.cumsum(sizes) - sizes
    pid_in_ev = _np(ptab, "id")
    if not np.array_equal(pid_in_ev, np.arange(pr.size) - p0[p_ev] + 1):
        raise TextLayoutError("particle ids not 1 ... n in file order")
    parent = _np(ptab, "parent")
    status = _np(ptab, "status")

    # V lines: with and without '@ x y z t'
    vr = np.flatnonzero(kind == 86)
    has_at = arr[le[vr] - 1] != 93  # a line without position ends with its list's ']'
    v_text = _lines_of(arr, vr, ls, le)  # the V lines once, then split in the smaller buffer
    v_len = le[vr] - ls[vr]
    v_ls = np.cumsum(v_len + 1) - v_len - 1
    v_names = ["k", "id", "status", "inc", "at", "x", "y", "z", "t"]
    with_at = _read_csv(
        _lines_of(v_text, np.flatnonzero(has_at), v_ls, v_ls + v_len), v_names,
        {"id": i64, "inc": "string", "at": "string", "x": f64, "y": f64, "z": f64, "t": f64}, "vertex",
    )
    no_at = _read_csv(_lines_of(v_text, np.flatnonzero(~has_at), v_ls, v_ls + v_len), v_names[:4], {"id": i64, "inc": "string"}, "vertex")
    if with_at.num_rows != int(has_at.sum()) or no_at.num_rows != int((~has_at).sum()):
        raise TextLayoutError("vertex lines not one record each")
    if with_at.num_rows and with_at.column("at").unique().to_pylist() != ["@"]:
        raise TextLayoutError("a vertex line's position not after '@'")
    # back to file order: rows with '@' first in the tables
    order = np.r_[np.flatnonzero(has_at), np.flatnonzero(~has_at)]
    nvx = vr.size
    v_id = np.empty(nvx, np.int64)
    v_id[order] = np.r_[_np(with_at, "id") if with_at.num_rows else np.zeros(0, np.int64), _np(no_at, "id") if no_at.num_rows else np.zeros(0, np.int64)]
    own = np.zeros((nvx, 4))
    if with_at.num_rows:
        own[np.flatnonzero(has_at)] = np.stack([_np(with_at, c) for c in "xyzt"], axis=1)
    inc_vals, inc_owner_t = _incoming_lists([with_at, no_at])
    inc_owner = order[inc_owner_t]  # table row -> V line (file order)
    o = np.argsort(inc_owner, kind="stable")  # explicit links in file order, list order kept
    inc_vals, inc_owner = inc_vals[o], inc_owner[o]
    v_ev = ev_of[vr]

    # explicit vertex ids -> rows
    key = v_ev * _BIG - v_id
    ko = np.argsort(key, kind="stable")
    ks = key[ko]
    if np.any(v_id >= 0) or np.any(ks[1:] == ks[:-1]):
        raise TextLayoutError("vertex ids not negative and distinct within an event")

    def vertex_row(ev: np.ndarray, vid: np.ndarray) -> np.ndarray:
        want = ev * _BIG - vid
        if ks.size == 0:
            raise TextLayoutError("a particle links to an undefined vertex")
        pos = np.minimum(np.searchsorted(ks, want), ks.size - 1)
        if np.any(ks[pos] != want):
            raise TextLayoutError("a particle links to an undefined vertex")
        return ko[pos]

    n = pr.size
    prod = np.full(n, -1, np.int64)
    to_v = parent < 0
    prod[to_v] = vertex_row(p_ev[to_v], parent[to_v])
    # implicit vertices: one per particle named as a parent
    to_p = parent > 0
    if np.any(parent[to_p] >= pid_in_ev[to_p]):
        raise TextLayoutError("a particle's parent particle is not defined before it")
    if np.any((parent == 0) & (status != 4)):
        raise TextLayoutError("a particle that is not a beam without production vertex")
    par_row = p0[p_ev[to_p]] + parent[to_p] - 1
    imp_rows, imp_first, imp_inv = np.unique(par_row, return_index=True, return_inverse=True)
    by_mention = np.argsort(imp_first, kind="stable")
    rank = np.empty(by_mention.size, np.int64)
    rank[by_mention] = np.arange(by_mention.size)
    imp_parent = imp_rows[by_mention]  # implicit vertex k: incoming particle row
    imp_line = pr[np.flatnonzero(to_p)[imp_first[by_mention]]]  # the line of its first child
    prod[np.flatnonzero(to_p)] = nvx + rank[imp_inv.ravel()]
    m = nvx + imp_parent.size
    vev = np.r_[v_ev, ev_of[pr[imp_parent]]]
    vsizes = np.bincount(vev, minlength=n_events).astype(np.int64)
    if np.any(vsizes != declared[:, 0]):
        raise TextLayoutError("an event whose vertex count differs from its event line")

    # incoming links: explicit lists (file and list order), then the implicit vertices
    ev_inc = v_ev[inc_owner]
    if np.any((inc_vals < 1) | (inc_vals > sizes[ev_inc])):
        raise TextLayoutError("a vertex has an undefined incoming particle")
    in_p = np.r_[p0[ev_inc] + inc_vals - 1, imp_parent]
    in_v = np.r_[inc_owner, nvx + np.arange(imp_parent.size)]
    if in_p.size and int(np.bincount(in_p, minlength=n).max()) > 1:
        raise TextLayoutError("a particle entering two vertices")
    end = np.full(n, -1, np.int64)
    end[in_p] = in_v

    # positions: own, else the production vertex of the first incoming particle (root: the event's)
    own_set = np.zeros(m, bool)
    own_set[:nvx] = np.any(own != 0.0, axis=1)
    first_in = np.full(m, -1, np.int64)
    first_in[in_v[::-1]] = in_p[::-1]
    src = np.where(own_set, np.arange(m), np.where(first_in >= 0, prod[np.maximum(first_in, 0)], -1))
    for _ in range(64):
        follow = (src >= 0) & ~own_set[np.maximum(src, 0)]
        if not follow.any():
            break
        nxt = np.where(first_in[src[follow]] >= 0, prod[np.maximum(first_in[src[follow]], 0)], -1)
        src[follow] = nxt
    else:
        raise TextLayoutError("vertex positions inherited in a cycle")
    pos = np.zeros((m, 4))
    pos[:nvx] = own
    vp = np.where((src >= 0)[:, None], pos[np.maximum(src, 0)], event_pos[vev])
    # vertex rows in the order the reader makes them (file order of V lines and of first children)
    perm = np.argsort(np.r_[vr, imp_line], kind="stable")
    new_row = np.empty(m, np.int64)
    new_row[perm] = np.arange(m)
    vp, vev = vp[perm], vev[perm]
    prod = np.where(prod >= 0, new_row[np.maximum(prod, 0)], -1)
    end = np.where(end >= 0, new_row[np.maximum(end, 0)], -1)
    in_v = new_row[in_v]
    by_vertex = np.argsort(in_v, kind="stable")  # links vertex by vertex, each list in its order
    in_p, in_v = in_p[by_vertex], in_v[by_vertex]
    lu = lu_ev[vev]
    mu = np.repeat(mu_ev, sizes)
    p4 = np.stack([_np(ptab, "px") * mu, _np(ptab, "py") * mu, _np(ptab, "pz") * mu, _np(ptab, "e") * mu], axis=1)
    ep = event_pos * lu_ev[:, None]
    ep[:, 3] /= _C_LIGHT
    return {
        "sizes": sizes, "vsizes": vsizes, "pid": _np(ptab, "pid").astype(np.int64), "status": status.astype(np.int64),
        "p4": p4, "mass": _np(ptab, "m") * mu, "prod": prod, "end": end, "in_p": in_p, "in_v": in_v,
        "vpos": np.stack([vp[:, 0] * lu, vp[:, 1] * lu, vp[:, 2] * lu, vp[:, 3] * lu / _C_LIGHT], axis=1).reshape(m, 4),
        "event_pos": ep, "process": process,
    }
