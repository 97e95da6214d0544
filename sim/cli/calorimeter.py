"""``mambah validate calorimeter``: options and command (the validator is :mod:`sim.validation.calorimeter`)."""

from __future__ import annotations

import argparse

from mambah.cli import nonnegative_int, positive_int

__all__ = ("add_validate_arguments", "cmd_validate_calorimeter")


def add_validate_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``mambah validate calorimeter``."""
    parser.add_argument("--events", type=positive_int, default=6000, help="fresh reference showers (default 6000)")
    parser.add_argument("--seed", type=nonnegative_int, default=2, help="seed of the fresh sample (default 2)")
    parser.add_argument("--model", help="shower model .keras (default: the shipped one)")
    parser.add_argument("--report", help="folder for the plot and summary.json")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a threshold is not met")


def cmd_validate_calorimeter(args: argparse.Namespace) -> int:
    from sim.validation.calorimeter import validate_calorimeter

    report = validate_calorimeter(events=args.events, seed=args.seed, report_dir=args.report, model=args.model)
    for line in report.lines():
        print(line)
    failed = report.failed()
    if args.report:
        print(f"report written to {args.report}")
    print("PASS" if not failed else f"outside the thresholds: {', '.join(failed)}")
    return 0 if not failed or not args.strict else 1
