"""The import graph: arrows point one way (mambah <- sim <- ficino; sim's rooms in stage order).

Every ``import`` statement of the three packages is read with ``ast`` (module level
and inside functions), so a wrong arrow fails here before it shows up as an import
cycle or a heavy ``mambah run``.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

#: sim's rooms in stage order: a room may import only rooms of lower or equal rank.
RANK = {
    "sim.core": 0,
    "sim.generation": 1,
    "sim.detector": 2,
    "sim.pid": 3,
    "sim.reference": 4,
    "sim.training": 5,
    "sim.validation": 6,
    "sim.cli": 7,
}
#: The facade and the default job sit above every room they name.
FACADES = {"sim", "sim.defaults"}


def _module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _imports(path: Path) -> list[tuple[str, int, bool]]:
    """(imported module, line, at module level) of every import in ``path``."""
    tree = ast.parse(path.read_text(), filename=str(path))
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: list[tuple[str, int, bool]] = []
    top = {id(n) for n in tree.body}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(a.name, node.lineno, id(node) in top) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                mod = ".".join([*base, node.module] if node.module else base)
            else:
                mod = node.module or ""
            out.append((mod, node.lineno, id(node) in top))
    return out


def _files(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


def _room(module: str) -> str | None:
    for room in RANK:
        if module == room or module.startswith(room + "."):
            return room
    return None


def test_store_package_names_neither_sim_nor_ficino() -> None:
    bad = [f"{p.relative_to(ROOT)}:{line} imports {mod}" for p in _files("mambah")
           for mod, line, _ in _imports(p) if mod.split(".")[0] in ("sim", "ficino")]
    assert not bad, bad


def test_sim_never_imports_ficino() -> None:
    bad = [f"{p.relative_to(ROOT)}:{line} imports {mod}" for p in _files("sim")
           for mod, line, _ in _imports(p) if mod.split(".")[0] == "ficino"]
    assert not bad, bad


def test_rooms_import_only_lower_rooms() -> None:
    bad = []
    for p in _files("sim"):
        me = _module_name(p)
        if me in FACADES:
            continue
        mine = _room(me)
        if mine is None:
            bad.append(f"{p.relative_to(ROOT)} is outside the rooms {sorted(RANK)}")
            continue
        for mod, line, _ in _imports(p):
            if mod in FACADES and mine != "sim.cli":
                bad.append(f"{p.relative_to(ROOT)}:{line} imports the facade {mod}")
                continue
            other = _room(mod)
            if other is not None and RANK[other] > RANK[mine]:
                bad.append(f"{p.relative_to(ROOT)}:{line} ({mine}) imports {mod} ({other})")
    assert not bad, "\n".join(bad)


def test_sim_top_level_holds_only_the_facade_and_rooms() -> None:
    modules = sorted(p.name for p in (ROOT / "sim").glob("*.py"))
    assert modules == ["__init__.py", "defaults.py"]
    rooms = sorted(p.name for p in (ROOT / "sim").iterdir() if p.is_dir() and (p / "__init__.py").exists())
    assert rooms == sorted(r.split(".")[1] for r in RANK)


def test_every_room_says_what_it_is_for() -> None:
    for room in RANK:
        doc = ast.get_docstring(ast.parse((ROOT / room.replace(".", "/") / "__init__.py").read_text()))
        assert doc and len(doc) > 60, room


@pytest.mark.slow
def test_run_path_imports_neither_reference_nor_training() -> None:
    """Building the default job's kernels (models loaded) imports no workshop module."""
    code = (
        "import json, sys\n"
        "import sim.cli.run\n"
        "from sim.defaults import default_pipeline\n"
        "from sim.core.pipeline import build_kernels\n"
        "build_kernels(default_pipeline(events=10, batch_size=10))\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith(('sim.reference', 'sim.training', "
        "'sim.validation', 'ficino')))))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=600,
                         env={**__import__("os").environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert out.returncode == 0, out.stderr[-2000:]
    loaded = json.loads(out.stdout.strip().splitlines()[-1])
    assert loaded == [], loaded
