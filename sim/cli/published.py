"""``mambah validate published``: the reference detector and the fast chain against published LHCb figures.

``mambah validate published [--events N] [--n-pid N] [--n-pv N] [--seed S] [--models DIR]
[--report DIR] [--strict]`` runs :func:`sim.validation.published.validate_published` and
prints, per figure of :data:`sim.reference.published.FIGURES`, the published value, its
tolerance, the reference detector's and the fast chain's measurement with pass/FAIL.
``--report`` writes the PIDCalib-like curves (mplhep) and ``summary.json`` there.
"""

from __future__ import annotations

import argparse

from mambah.cli import nonnegative_int

__all__ = ("add_validate_arguments", "cmd_validate_published")


def add_validate_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``mambah validate published``."""
    parser.add_argument("--events", type=nonnegative_int, default=200_000, help="particles of the tracking sample")
    parser.add_argument("--n-pid", type=nonnegative_int, default=20_000, help="Long tracks per PID species")
    parser.add_argument("--n-pv", type=nonnegative_int, default=4_000, help="PVs of 25 tracks")
    parser.add_argument("--seed", type=nonnegative_int, default=2031, help="seed of the samples")
    parser.add_argument("--models", default=None, help="PID model folder (default: the shipped models)")
    parser.add_argument("--report", default=None, help="plots and summary.json here (default: none)")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a compared figure fails")


def cmd_validate_published(args: argparse.Namespace) -> int:
    """Run the comparison and print the table; 1 with ``--strict`` when a figure fails."""
    from sim.validation.published import validate_published

    report = validate_published(events=args.events, n_pid=args.n_pid, n_pv=args.n_pv, seed=args.seed,
                                report_dir=args.report, pid_models=args.models)
    for line in report.lines():
        print(line)
    if args.report:
        print(f"report written to {args.report}")
    failed = report.failed()
    print("PASS" if not failed else f"outside the tolerance: {', '.join(failed)}")
    return 1 if failed and args.strict else 0
