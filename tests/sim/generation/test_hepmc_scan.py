"""The build-time scan's numpy pieces against plain Python: event lines and integer fields."""

from __future__ import annotations

import re

import numpy as np
import pytest

pytest.importorskip("pyhepmc")

from sim.generation.hepmc import _event_starts, _int_fields


def test_event_starts_are_the_lines_starting_with_e_space() -> None:
    text = (
        b"E 0 1 2\nP 1 0 2212 1 2 3 4 5 4\nE\nEE 1\n E 2\nE 3 @ 1 2 3 4\r\nX E 4\nE 5"
        b"\nP 2 0 211 1.0E+00 2 3 4 5 1\nE "
    )
    want = [m.start() for m in re.finditer(rb"^E ", text, re.MULTILINE)]
    got = _event_starts(text)
    assert got.dtype == np.int64 and got.tolist() == want == [0, 43, 64, 96]
    assert _event_starts(b"P 1\nV 2\n").size == 0


def test_int_fields_match_python_int() -> None:
    rng = np.random.default_rng(5)
    fields = [b"0", b"7", b"-1", b"-", b"", b"12a", b"a12", b"--3", b"-0", b"123456789012345678", b"1234567890123456789",
              b"-12345678901234567", b"3.0", b"+4", b" 5"]
    fields += [str(int(v)).encode() for v in rng.integers(-10**12, 10**12, 200)]
    text = b" ".join(fields)
    starts, pos = [], 0
    for f in fields:
        starts.append(pos)
        pos += len(f) + 1
    lo = np.array(starts, np.int64)
    hi = lo + np.array([len(f) for f in fields], np.int64)
    val, ok = _int_fields(np.frombuffer(text, np.uint8), lo, hi)
    for f, v, good in zip(fields, val.tolist(), ok.tolist(), strict=True):
        want_ok = bool(re.fullmatch(rb"-?[0-9]+", f)) and len(f) < 19
        assert good == want_ok, f
        if want_ok:
            assert v == int(f), f
