"""``mambah train KIND``: train a fast model with its registered trainer.

The kinds are the registered trainers (:func:`sim.core.registry.trainers`); each
gets the detector-model options (:func:`sim.cli.detector.add_train_arguments`) unless
its family has options of its own (:data:`FAMILIES`, e.g. ``pid``).  ``selection`` (the
``preselect`` pass's model, :mod:`sim.cli.selection`) trains from a simulated sample, not a file.
"""

from __future__ import annotations

import argparse
import textwrap
from collections.abc import Callable
from typing import Any

__all__ = ("register", "FAMILIES")


def _families() -> dict[str, tuple[Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]]]:
    from sim.cli import detector, pid

    return {"pid": (pid.add_train_arguments, pid.cmd_train_pid), "": (detector.add_train_arguments, detector.cmd_train)}


#: kind -> (add_arguments, command) for kinds whose options differ from the detector models'.
FAMILIES: tuple[str, ...] = ("pid",)


def register(sub: Any) -> None:
    """Add ``mambah train`` with one sub-command per registered trainer."""
    from sim.core.registry import trainers

    specs = trainers()
    needs = [
        textwrap.fill(" ".join(spec.columns), width=88, initial_indent=f"  {kind}: ", subsequent_indent="    ")
        for kind, spec in specs.items() if spec.columns
    ]
    epilog = ("columns --data needs, per model (options: mambah train MODEL --help):\n" + "\n".join(needs)
              + "\n  and the --weight column if one is given (pid: sweight unless --weight none)")
    train = sub.add_parser("train", help="train a fast model from a Parquet/ROOT file", epilog=epilog,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    kinds = train.add_subparsers(dest="model", metavar="MODEL", required=True)
    families = _families()
    for kind, spec in specs.items():
        own_epilog = f"columns --data needs: {' '.join(spec.columns)}" if spec.columns else None
        p = kinds.add_parser(kind, help=spec.help or f"train the {kind} model", epilog=own_epilog)
        add_arguments, command = families.get(kind, families[""])
        add_arguments(p)
        p.set_defaults(func=command)
    from sim.cli import selection

    p = kinds.add_parser("selection", help="train the preselect pass's selection model from your selection "
                         "(--cut or --sql) on a simulated sample", description=selection.__doc__.split("\n")[0])
    selection.add_train_arguments(p)
    p.set_defaults(func=selection.cmd_train_selection)
