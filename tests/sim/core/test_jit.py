"""sim.core.jit: the one decorator of the compiled kernels, and when numba's extensions are skipped."""

from __future__ import annotations

import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from sim.core import jit


def test_njit_cached_compiles_and_inlines() -> None:
    @jit.njit_cached(inline=True)
    def twice(x: float) -> float:
        return 2.0 * x

    @jit.njit_cached
    def total(a: np.ndarray) -> float:
        s = 0.0
        for v in a:
            s += twice(v)
        return s

    assert total(np.arange(4.0)) == 12.0
    assert total.targetoptions["nogil"] and not total.targetoptions.get("fastmath", False)


def test_python_m_mambah_cli_counts_as_the_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "argv", ["/somewhere/mambah/cli.py", "run"])
    main = types.ModuleType("__main__")
    monkeypatch.setitem(sys.modules, "__main__", main)
    assert not jit._in_command()  # a script or a session
    main.__spec__ = types.SimpleNamespace(name="mambah.cli")  # type: ignore[assignment]
    assert jit._in_command()  # python -m mambah.cli
    monkeypatch.setattr(sys, "argv", ["/usr/bin/mambah", "run"])
    main.__spec__ = None
    assert jit._in_command()  # the console script


def test_a_python_session_keeps_numbas_extensions() -> None:
    code = "import sim.core.jit, numba.core.entrypoints as e; print(e._already_initialized)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         cwd=Path(__file__).resolve().parents[3])
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


def test_skip_numba_extensions_does_what_the_command_does() -> None:
    code = ("import sim.core.jit as j, numba.core.entrypoints as e; a = e._already_initialized; "
            "j.skip_numba_extensions(); print(a, e._already_initialized)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         cwd=Path(__file__).resolve().parents[3])
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False True"
