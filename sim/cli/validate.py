"""``mambah validate [KIND]``: validate fast models against the reference detector.

The kinds are the registered validators (:func:`sim.core.registry.validators`);
without a kind every detector model is validated (``all``).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

__all__ = ("register", "check_report_folder")


def _families() -> dict[str, tuple[Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]]]:
    from sim.cli import calorimeter, detector, pid, published, selection

    return {"pid": (pid.add_validate_arguments, pid.cmd_validate_pid),
            "selection": (selection.add_validate_arguments, selection.cmd_validate_selection),
            "calorimeter": (calorimeter.add_validate_arguments, calorimeter.cmd_validate_calorimeter),
            "published": (published.add_validate_arguments, published.cmd_validate_published),
            "": (detector.add_validate_arguments, detector.cmd_validate)}


#: namespace attribute listing the options given before KIND (``mambah validate --events 100 occupancy``)
_BEFORE_KIND = "_options_before_kind"


def _record_given(action: argparse.Action) -> None:
    """Make ``action`` (an option of ``mambah validate`` itself) note on the namespace that it was given.

    argparse fills a sub-command's defaults over the values parsed before it, so an option
    written before KIND would be silently replaced by the kind's default; the note lets the
    command refuse it instead.
    """
    base = type(action)

    def __call__(self: argparse.Action, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: Any, option_string: str | None = None) -> None:
        base.__call__(self, parser, namespace, values, option_string)
        setattr(namespace, _BEFORE_KIND, [*getattr(namespace, _BEFORE_KIND, []), option_string or self.dest])

    action.__class__ = type(f"Recorded{base.__name__}", (base,), {"__call__": __call__})


def check_report_folder(report: str | None) -> None:
    """Refuse, before the validation, a ``--report`` folder that cannot be made or written.

    Raises:
        ConfigError: a file stands at (or on the way to) it, or its nearest existing folder
            takes no new file (named, with the reason).
    """
    from mambah.errors import ConfigError
    from sim.core.io import probe_folder

    if not report:
        return
    try:
        probe_folder(report)
    except NotADirectoryError as err:
        raise ConfigError(f"--report {report}: '{err.filename}' is a file, not a folder") from None
    except OSError as err:
        raise ConfigError(f"--report {report}: cannot write in '{err.filename}': {err.strerror or err}") from err


def _options_after_kind(kind: str, command: Callable[[argparse.Namespace], int], *,
                        no_kind: bool = False) -> Callable[[argparse.Namespace], int]:
    """``command``, refusing (one line, exit 2) options written before ``kind`` and an unwritable ``--report``.

    ``no_kind``: the command of ``mambah validate`` without a kind, whose options are those before it.
    """

    def checked(args: argparse.Namespace) -> int:
        given = getattr(args, _BEFORE_KIND, [])
        if given and not no_kind:
            from mambah.errors import ConfigError

            raise ConfigError(
                f"{', '.join(given)} before the kind would be ignored by 'mambah validate {kind}'; "
                f"write the options after it: 'mambah validate {kind} {' '.join(given)} ...'"
            )
        check_report_folder(getattr(args, "report", None))
        return command(args)

    return checked


def register(sub: Any) -> None:
    """Add ``mambah validate`` with one sub-command per registered validator."""
    from sim.core.registry import validators

    families = _families()
    val = sub.add_parser("validate", help="validate fast models against the reference detector")
    add_default, cmd_default = families[""]
    add_default(val)
    for action in val._actions:
        if action.option_strings and not isinstance(action, argparse._HelpAction):
            _record_given(action)
    val.set_defaults(func=_options_after_kind("all", cmd_default, no_kind=True), kind="all")
    kinds = val.add_subparsers(dest="kind", metavar="KIND")
    for kind, spec in validators().items():
        p = kinds.add_parser(kind, help=spec.help or f"validate the {kind} model")
        add_arguments, command = families.get(kind, families[""])
        add_arguments(p)
        p.set_defaults(func=_options_after_kind(kind, command))
