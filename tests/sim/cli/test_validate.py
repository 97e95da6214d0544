"""``mambah validate``: options written before the kind are refused, never silently replaced by the kind's defaults."""

from __future__ import annotations

from pathlib import Path

import pytest

from mambah.cli import build_parser, main


@pytest.mark.parametrize(
    ("argv", "given"),
    [
        (["validate", "--events", "100", "occupancy"], "--events"),
        (["validate", "--report", "/nonexistent/r", "--strict", "acceptance"], "--report, --strict"),
        (["validate", "--seed", "3", "all"], "--seed"),
    ],
)
def test_options_before_the_kind_are_refused(argv: list[str], given: str, capsys: pytest.CaptureFixture[str]) -> None:
    # before: argparse filled the kind's defaults over them (20 000 events, no report) and the run went ahead
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    kind = argv[-1]
    assert err == (f"mambah: error: {given} before the kind would be ignored by 'mambah validate {kind}'; "
                   f"write the options after it: 'mambah validate {kind} {given.replace(',', '')} ...'"), err


def test_options_after_the_kind_and_without_a_kind_are_taken(capsys: pytest.CaptureFixture[str]) -> None:
    args = build_parser().parse_args(["validate", "occupancy", "--events", "100", "--seed", "7"])
    assert (args.kind, args.events, args.seed) == ("occupancy", 100, 7)
    assert not getattr(args, "_options_before_kind", [])
    args = build_parser().parse_args(["validate", "--events", "100"])  # no kind: every detector model
    assert args.kind in (None, "all") and args.events == 100
    # without a kind, options are the command's own (not refused as 'before the kind')
    assert main(["validate", "--events", "100", "--report", str(Path(__file__))]) == 2
    assert "is a file, not a folder" in capsys.readouterr().err


@pytest.mark.parametrize("kind", [None, "occupancy", "pid", "calorimeter"])
def test_an_unwritable_report_folder_is_refused_before_the_validation(kind: str | None, tmp_path, capsys) -> None:
    """--report onto /proc or below a file: a FileNotFoundError / FileExistsError traceback after the validation before."""
    notes = tmp_path / "notes.txt"
    notes.write_text("x")
    cases = [(str(notes / "r"), f"--report {notes / 'r'}: '{notes}' is a file, not a folder")]
    if Path("/proc").is_dir():
        cases.append(("/proc/r", "--report /proc/r: cannot write in '/proc': "))
    for report, message in cases:
        argv = ["validate", *([kind] if kind else []), "--report", report]
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and err.startswith(f"mambah: error: {message}"), err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]
