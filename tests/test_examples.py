"""Every script in ``examples/`` runs, and prints what ``examples/README.md`` shows.

Each ``console`` block of the examples README is a command (``$ python examples/NAME.py
ARGS``) and its output.  The command runs in-process (via runpy, so TensorFlow loads
once) in a temporary directory, and every printed line must match the README's, in
order: ``...`` inside a line stands for any text (timings, machine-dependent numbers), a
line of only ``...`` for any number of lines.  So the documented output cannot drift.
"""

from __future__ import annotations

import re
import runpy
import shlex
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
README = (EXAMPLES / "README.md").read_text()


def run_example(name: str, *argv: str) -> int:
    """Load ``examples/<name>`` as a module (not as __main__) and call its ``main(argv)``."""
    namespace = runpy.run_path(str(EXAMPLES / name), run_name=f"example_{Path(name).stem}")
    return int(namespace["main"](list(argv)))


def readme_examples() -> dict[str, tuple[list[str], list[str]]]:
    """Script name -> (its arguments, the expected output lines) from the README's console blocks."""
    out = {}
    for block in re.findall(r"```console\n(.*?)```", README, flags=re.DOTALL):
        first, *expected = block.rstrip("\n").splitlines()
        words = shlex.split(first.removeprefix("$ "))
        assert words[0] == "python" and words[1].startswith("examples/"), first
        out[Path(words[1]).name] = (words[2:], expected)
    return out


def _line_pattern(line: str) -> re.Pattern[str]:
    return re.compile(".*".join(re.escape(part) for part in line.rstrip().split("...")) + r"\Z")


def match_output(expected: list[str], actual: list[str]) -> str | None:
    """None if ``actual`` matches ``expected`` (see the module docstring), else what differs."""

    def match(i: int, j: int) -> bool:
        if i == len(expected):
            return j == len(actual)
        if expected[i].strip() == "...":
            return any(match(i + 1, k) for k in range(j, len(actual) + 1))
        return j < len(actual) and bool(_line_pattern(expected[i]).match(actual[j].rstrip())) and match(i + 1, j + 1)

    if match(0, 0):
        return None
    for i, (e, a) in enumerate(zip(expected, actual, strict=False)):
        if e.strip() != "..." and not _line_pattern(e).match(a.rstrip()):
            return f"line {i + 1}: README {e!r}, printed {a!r}"
    return f"README shows {len(expected)} lines, the script printed {len(actual)}"


def test_examples_are_listed_in_readme() -> None:
    shown = readme_examples()
    for script in sorted(EXAMPLES.glob("[0-9][0-9]_*.py")):
        assert script.name in README, f"{script.name} missing from examples/README.md"
        assert script.name in shown, f"examples/README.md shows no run of {script.name}"


def test_output_matcher_can_fail() -> None:
    assert match_output(["a ... b", "...", "end"], ["a 1.5 b", "x", "y", "end"]) is None
    assert match_output(["a ... b", "end"], ["a 1.5 c", "end"]) == "line 1: README 'a ... b', printed 'a 1.5 c'"
    assert match_output(["2000 rows x 173 columns"], ["638 rows x 265 columns"]) is not None
    assert match_output(["one"], ["one", "two"]) is not None


def _run_as_documented(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> list[str]:
    argv, expected = readme_examples()[name]
    monkeypatch.chdir(tmp_path)
    assert run_example(name, *argv) == 0
    printed = capsys.readouterr().out.splitlines()
    problem = match_output(expected, printed)
    assert problem is None, f"examples/README.md is out of date for {name}: {problem}\nprinted:\n" + "\n".join(printed)
    return printed


def test_01_session(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    _run_as_documented("01_session.py", tmp_path, monkeypatch, capsys)
    assert (tmp_path / "session_mass.png").stat().st_size > 10_000


def test_02_production_on_workers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("distributed")
    _run_as_documented("02_production.py", tmp_path, monkeypatch, capsys)
    import mambah

    with mambah.EventStore.open(tmp_path / "small.duckdb", read_only=True) as s:
        assert s.batches() == [0, 1]
        n_pi = s.query("SELECT count(*) AS n FROM mc_particles WHERE pid = 211 AND mother = 0").to_pylist()[0]["n"]
    assert 30 < n_pi < 130  # 3.7 % of 2000 B+ -> J/psi pi+


def test_03_export(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("uproot")
    _run_as_documented("03_export.py", tmp_path, monkeypatch, capsys)
    assert (tmp_path / "export" / "sample.root").is_file()
    assert (tmp_path / "export" / "sample_parquet").is_dir()


def test_04_training(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    printed = _run_as_documented("04_training.py", tmp_path, monkeypatch, capsys)
    assert f"ran 500 events with {(tmp_path / 'training' / 'my_efficiency.keras').resolve()}" in printed
    assert (tmp_path / "training" / "my_job.toml").is_file() and (tmp_path / "training" / "my_efficiency.json").is_file()


def test_production_defaults_are_moderate(capsys: pytest.CaptureFixture[str]) -> None:
    """examples/README.md promises small-to-moderate defaults: 02 must not default to 10 M events on all cores."""
    with pytest.raises(SystemExit):
        run_example("02_production.py", "--help")
    text = " ".join(capsys.readouterr().out.split())
    assert "events (default 200000)" in text and "processes (default 2)" in text
