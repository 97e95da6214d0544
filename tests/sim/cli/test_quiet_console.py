"""The ``mambah`` console script prints its summary and nothing else; an error is one line; ``-v`` brings the logs back.

Each test starts the console entry point in a fresh interpreter (TensorFlow's
C++ start-up lines are only written by the first import in a process).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from mambah.quiet import QUIET_MARKER


def mambah(*argv: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """``mambah ARGV`` through :func:`mambah.cli.entry_point`, without the test session's TensorFlow settings."""
    env = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", QUIET_MARKER)}
    code = "import sys; from mambah.cli import entry_point; sys.argv[0] = 'mambah'; entry_point()"
    return subprocess.run(
        [sys.executable, "-c", code, *argv], check=False, capture_output=True, text=True, env=env, cwd=cwd, timeout=300
    )


def test_run_prints_only_its_summary(tmp_path: Path) -> None:
    done = mambah("run", "--events", "200", "--batch-size", "100", "--no-progress", "-o", "s.duckdb", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    assert len(done.stdout.splitlines()) == 1 and done.stdout.startswith("s.duckdb: 2 batch(es) run, 200 events")


def test_error_after_tensorflow_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "bad.duckdb").write_text("not a store\n")
    done = mambah("run", "--events", "200", "--resume", "-o", "bad.duckdb", cwd=tmp_path)
    assert done.returncode == 2
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("mambah: error: 'bad.duckdb'") and "not" in lines[0]


def test_verbose_brings_the_logs_back(tmp_path: Path) -> None:
    done = mambah("-v", "run", "--events", "100", "--no-progress", "-o", "v.duckdb", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip() != ""  # TensorFlow's and Mambah's INFO lines


@pytest.mark.slow
def test_distributed_run_prints_only_its_summary(tmp_path: Path) -> None:
    pytest.importorskip("distributed")
    done = mambah(
        "run", "--events", "200", "--batch-size", "100", "--workers", "1", "--no-progress", "-o", "d.duckdb", cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    assert len(done.stdout.splitlines()) == 1 and done.stdout.startswith("d.duckdb: 2 batch(es) run, 200 events")
