"""``mambah validate [KIND]``: validate fast models against the reference detector.

The kinds are the registered validators (:func:`sim.core.registry.validators`);
without a kind every detector model is validated (``all``).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

__all__ = ("register",)


def _families() -> dict[str, tuple[Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]]]:
    from sim.cli import calorimeter, detector, pid, published, selection

    return {"pid": (pid.add_validate_arguments, pid.cmd_validate_pid),
            "selection": (selection.add_validate_arguments, selection.cmd_validate_selection),
            "calorimeter": (calorimeter.add_validate_arguments, calorimeter.cmd_validate_calorimeter),
            "published": (published.add_validate_arguments, published.cmd_validate_published),
            "": (detector.add_validate_arguments, detector.cmd_validate)}


def register(sub: Any) -> None:
    """Add ``mambah validate`` with one sub-command per registered validator."""
    from sim.core.registry import validators

    families = _families()
    val = sub.add_parser("validate", help="validate fast models against the reference detector")
    add_default, cmd_default = families[""]
    add_default(val)
    val.set_defaults(func=cmd_default, kind="all")
    kinds = val.add_subparsers(dest="kind", metavar="KIND")
    for kind, spec in validators().items():
        p = kinds.add_parser(kind, help=spec.help or f"validate the {kind} model")
        add_arguments, command = families.get(kind, families[""])
        add_arguments(p)
        p.set_defaults(func=command)
