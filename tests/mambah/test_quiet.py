"""mambah.quiet: TensorFlow's C++ start-up lines held back, errors kept, ``-v`` brings the logs back."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from mambah import quiet

NOISY = '''
import os
os.write(2, b"I0000 00:00:1.0 port.cc:153] noisy start-up line\\n")
VALUE = 42
'''

FAILING = '''
import os
os.write(2, b"E0000 why it failed\\n")
raise ImportError("broken build")
'''


@pytest.fixture
def hushed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Two throw-away modules (``noisy_mod``, ``failing_mod``) that write to descriptor 2 on import, hushed like tensorflow."""
    (tmp_path / "noisy_mod.py").write_text(NOISY)
    (tmp_path / "failing_mod.py").write_text(FAILING)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(quiet, "_HUSHED_MODULES", ("noisy_mod", "failing_mod"))
    # without a hook another test (an example run in-process) may have left in this session
    monkeypatch.setattr(sys, "meta_path", [f for f in sys.meta_path if not isinstance(f, quiet._HushFinder)])
    for key in (*quiet.QUIET_ENV, quiet.QUIET_MARKER):
        monkeypatch.delenv(key, raising=False)
    yield tmp_path
    for name in ("noisy_mod", "failing_mod"):
        sys.modules.pop(name, None)


def test_import_without_hook_is_noisy(hushed: Path, capfd: pytest.CaptureFixture[str]) -> None:
    import noisy_mod  # type: ignore[import-not-found]

    assert noisy_mod.VALUE == 42
    assert "noisy start-up line" in capfd.readouterr().err


def test_hook_holds_back_descriptor_2(hushed: Path, capfd: pytest.CaptureFixture[str]) -> None:
    assert quiet.quiet_tensorflow() is True
    assert quiet.is_quiet()
    assert os.environ["TF_CPP_MIN_LOG_LEVEL"] == "3" and os.environ[quiet.QUIET_MARKER] == "1"
    import noisy_mod

    assert noisy_mod.VALUE == 42
    assert not isinstance(noisy_mod.__loader__, quiet._HushedLoader)  # the module keeps its real loader
    assert capfd.readouterr().err == ""
    print("after", file=sys.stderr)  # descriptor 2 is back
    assert capfd.readouterr().err == "after\n"


def test_failed_import_replays_what_it_wrote(hushed: Path, capfd: pytest.CaptureFixture[str]) -> None:
    quiet.quiet_tensorflow()
    with pytest.raises(ImportError, match="broken build"):
        import failing_mod  # type: ignore[import-not-found]  # noqa: F401
    assert "E0000 why it failed" in capfd.readouterr().err


def test_verbose_changes_nothing(hushed: Path, capfd: pytest.CaptureFixture[str]) -> None:
    assert quiet.quiet_tensorflow(verbose=1) is False
    assert not quiet.is_quiet() and "TF_CPP_MIN_LOG_LEVEL" not in os.environ
    import noisy_mod  # noqa: F401

    assert "noisy start-up line" in capfd.readouterr().err


def test_user_setting_wins_and_workers_inherit(hushed: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "1")
    assert quiet.quiet_if_inherited() is False and not quiet.is_quiet()  # no MAMBAH_QUIET: not a quiet parent
    quiet.quiet_tensorflow()
    assert os.environ["TF_CPP_MIN_LOG_LEVEL"] == "1"
    monkeypatch.setattr(sys, "meta_path", [f for f in sys.meta_path if not isinstance(f, quiet._HushFinder)])
    assert quiet.quiet_if_inherited() is True and quiet.is_quiet()


def test_verbosity_from_argv() -> None:
    assert quiet.verbosity_from_argv(["run", "--events", "10"]) == 0
    assert quiet.verbosity_from_argv(["-v", "run"]) == 1
    assert quiet.verbosity_from_argv(["-vv", "--verbose", "run", "-v"]) == 3  # options after the command are its own
    assert quiet.verbosity_from_argv(["query", "s.duckdb", "-v"]) == 0


def test_tensorflow_starts_silently() -> None:
    """The real thing: TensorFlow (and zfit) imported and run after quiet_tensorflow() write nothing to stderr."""
    pytest.importorskip("tensorflow")
    pytest.importorskip("zfit")
    code = ("from mambah.quiet import quiet_tensorflow; quiet_tensorflow(); import tensorflow as tf; import zfit; "
            "print(float(tf.constant(1.0) + 1))")
    env = {k: v for k, v in os.environ.items() if k not in (*quiet.QUIET_ENV, quiet.QUIET_MARKER)}
    done = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "2.0\n"
    assert done.stderr == ""
