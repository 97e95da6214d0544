"""``mambah validate``: options written before the kind are refused, never silently replaced by the kind's defaults."""

from __future__ import annotations

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


def test_options_after_the_kind_and_without_a_kind_are_taken() -> None:
    args = build_parser().parse_args(["validate", "occupancy", "--events", "100", "--seed", "7"])
    assert (args.kind, args.events, args.seed) == ("occupancy", 100, 7)
    assert not getattr(args, "_options_before_kind", [])
    args = build_parser().parse_args(["validate", "--events", "100"])  # no kind: every detector model
    from sim.cli.detector import cmd_validate

    assert args.kind in (None, "all") and args.func is cmd_validate and args.events == 100
