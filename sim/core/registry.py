"""One registry: pass kinds, nested config kinds, trainers and validators.

A pass declares its kind where it is defined (``@register_pass`` on the class);
a trainer or validator registers with ``@register_trainer("kind", ...)`` /
``@register_validator("kind")`` next to its recipe.  Lookups import the rooms
that hold passes (:data:`PASS_PACKAGES`) on first use, so a new pass touches
only its own module: nothing here lists the passes.

This module imports nothing of ``sim`` but :mod:`sim.core`; the rooms register
themselves into it (arrows point one way).
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from mambah.errors import ConfigError

__all__ = (
    "PASS_PACKAGES",
    "TRAINING_PACKAGES",
    "Trainer",
    "Validator",
    "register_pass",
    "register_config",
    "register_trainer",
    "register_validator",
    "pass_class",
    "pass_kinds",
    "config_class",
    "config_kinds",
    "trainer",
    "trainers",
    "validator",
    "validators",
)

#: Subpackages whose modules define passes; imported (module by module) on first lookup.
PASS_PACKAGES: tuple[str, ...] = ("sim.generation", "sim.detector", "sim.pid")
#: Subpackages whose modules define trainers and validators.
TRAINING_PACKAGES: tuple[str, ...] = ("sim.training.recipes", "sim.validation")

T = TypeVar("T")

_PASSES: dict[str, type] = {}
_CONFIGS: dict[str, dict[str, type]] = {}
_TRAINERS: dict[str, Trainer] = {}
_VALIDATORS: dict[str, Validator] = {}
_DISCOVERED: set[str] = set()


@dataclass(frozen=True)
class Trainer:
    """A registered trainer of one model kind.

    Attributes:
        kind: the model kind (``mambah train <kind>``).
        function: ``function(data, **settings) -> TrainedModel``.
        columns: columns the training file must hold (shown by ``mambah train --help``).
        recipe: the settings the shipped model was trained with (``--recipe shipped``).
        default_name: file name (without suffix) of the shipped model in ``sim/models``.
        help: one line for the CLI.
    """

    kind: str
    function: Callable[..., Any]
    columns: tuple[str, ...] = ()
    recipe: dict[str, Any] = field(default_factory=dict)
    default_name: str = ""
    help: str = ""


@dataclass(frozen=True)
class Validator:
    """A registered validator (``mambah validate <kind>``): ``function(**options) -> report``."""

    kind: str
    function: Callable[..., Any]
    help: str = ""


def register_pass(cls: type[T]) -> type[T]:
    """Class decorator: register a :class:`~sim.core.pipeline.Pass` subclass under its ``kind``."""
    kind = getattr(cls, "kind", "")
    if not kind:
        raise ConfigError(f"pass class {cls.__name__} has no kind")
    other = _PASSES.get(kind)
    if other is not None and other is not cls and other.__qualname__ != cls.__qualname__:
        raise ConfigError(f"pass kind {kind!r} registered twice ({other.__module__}.{other.__name__}, {cls.__module__}.{cls.__name__})")
    _PASSES[kind] = cls
    return cls


def register_config(family: str) -> Callable[[type[T]], type[T]]:
    """Class decorator: register a nested config class (e.g. a spectrum) of ``family`` under its ``kind``."""

    def deco(cls: type[T]) -> type[T]:
        _CONFIGS.setdefault(family, {})[getattr(cls, "kind")] = cls  # noqa: B009 - kind is a ClassVar of the config
        return cls

    return deco


def register_trainer(
    kind: str,
    *,
    columns: Sequence[str] = (),
    recipe: dict[str, Any] | None = None,
    default_name: str = "",
    help: str = "",
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Function decorator: register the trainer of model ``kind`` with its shipped recipe."""

    def deco(fn: Callable[..., Any]) -> Callable[..., Any]:
        _TRAINERS[kind] = Trainer(kind, fn, tuple(columns), dict(recipe or {}), default_name or kind, help)
        return fn

    return deco


def register_validator(kind: str, *, help: str = "") -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Function decorator: register the validator of ``kind``."""

    def deco(fn: Callable[..., Any]) -> Callable[..., Any]:
        _VALIDATORS[kind] = Validator(kind, fn, help)
        return fn

    return deco


def _discover(packages: Sequence[str]) -> None:
    for pkg_name in packages:
        if pkg_name in _DISCOVERED:
            continue
        _DISCOVERED.add(pkg_name)
        try:
            pkg = importlib.import_module(pkg_name)
        except ImportError:  # an optional room (e.g. ficino not installed)
            continue
        for info in pkgutil.iter_modules(pkg.__path__, prefix=pkg_name + "."):
            if info.name.rsplit(".", 1)[-1].startswith("_"):
                continue
            importlib.import_module(info.name)


def pass_class(kind: str) -> type:
    """The pass class registered under ``kind``.

    Raises:
        ConfigError: unknown kind, naming the known ones.
    """
    if kind not in _PASSES:
        _discover(PASS_PACKAGES)
    try:
        return _PASSES[kind]
    except KeyError:
        raise ConfigError(f"unknown pass kind {kind!r}; known kinds: {', '.join(pass_kinds())}") from None


def pass_kinds() -> list[str]:
    """Every registered pass kind, sorted."""
    _discover(PASS_PACKAGES)
    return sorted(_PASSES)


def config_class(family: str, kind: str, where: str) -> type:
    """The nested config class ``kind`` of ``family`` (e.g. ``spectrum``/``uniform``)."""
    _discover(PASS_PACKAGES)
    fam = _CONFIGS.get(family, {})
    if kind not in fam:
        raise ConfigError(f"unknown kind {kind!r} in {where}; known: {', '.join(sorted(fam))}")
    return fam[kind]


def config_kinds(family: str | None = None) -> dict[str, list[str]]:
    """Registered nested config kinds by family."""
    _discover(PASS_PACKAGES)
    return {f: sorted(k) for f, k in _CONFIGS.items() if family is None or f == family}


def trainer(kind: str) -> Trainer:
    """The registered trainer of ``kind``; :class:`ConfigError` naming the known ones."""
    _discover(TRAINING_PACKAGES)
    try:
        return _TRAINERS[kind]
    except KeyError:
        raise ConfigError(f"no trainer for {kind!r}; known: {', '.join(sorted(_TRAINERS))}") from None


def trainers() -> dict[str, Trainer]:
    """Every registered trainer by kind."""
    _discover(TRAINING_PACKAGES)
    return dict(sorted(_TRAINERS.items()))


def validator(kind: str) -> Validator:
    """The registered validator of ``kind``; :class:`ConfigError` naming the known ones."""
    _discover(TRAINING_PACKAGES)
    try:
        return _VALIDATORS[kind]
    except KeyError:
        raise ConfigError(f"no validator for {kind!r}; known: {', '.join(sorted(_VALIDATORS))}") from None


def validators() -> dict[str, Validator]:
    """Every registered validator by kind."""
    _discover(TRAINING_PACKAGES)
    return dict(sorted(_VALIDATORS.items()))
