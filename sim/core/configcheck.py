"""Type and value checks of config fields as they are read (TOML, YAML, keywords).

:func:`check_value` compares one value with its field's annotation
(``int``, ``float``, ``str``, ``bool``, ``X | None``, ``tuple[float, float]``,
``tuple[str, ...]``) and returns it in the field's type, or raises a
:class:`~mambah.errors.ConfigError` naming the field's path
(``pass 'resolution'.downstream_state_z``).  Floats must be finite (NaN and
infinities are refused); integers must fit 64 bits.  Range checks that depend
on the field's meaning stay in each config's ``__post_init__``.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from typing import Any

import numpy as np

from mambah.errors import ConfigError

__all__ = ("INT64_MAX", "check_fields_finite", "check_finite", "check_value", "field_hints", "load_yaml", "settings_difference")

INT64_MAX = 2**63 - 1

_HINTS: dict[type, dict[str, Any]] = {}


def field_hints(klass: type) -> dict[str, Any]:
    """The resolved annotations of ``klass`` (empty where they cannot be resolved)."""
    if klass not in _HINTS:
        try:
            _HINTS[klass] = typing.get_type_hints(klass)
        except Exception:
            _HINTS[klass] = {}
    return _HINTS[klass]


def _describe(value: Any) -> str:
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{text} ({type(value).__name__})"


def check_finite(value: Any, where: str) -> float:
    """``value`` as a finite float (ConfigError naming ``where`` otherwise)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ConfigError(f"{where} must be a number, got {_describe(value)}")
    try:
        out = float(value)
    except OverflowError:
        raise ConfigError(f"{where} = {value!r} is too large for a float") from None
    if not math.isfinite(out):
        raise ConfigError(f"{where} must be a finite number, got {value!r}")
    return out


def check_fields_finite(config: Any, label: str) -> None:
    """Every dataclass field of ``config`` is a finite number (bools refused).

    The one "every field finite" loop of the all-numeric configs
    (``LuminousRegion``, ``GhostConfig``, ``ECALConfig``), called first in their
    ``__post_init__``; the range checks of each field stay with the config.

    Args:
        config: a dataclass instance whose fields are all ``int`` or ``float``.
        label: the config's name in the message (``"GhostConfig"``).

    Raises:
        ConfigError: ``"<label>.<field>=<value>; expected a finite number"`` for the
            first field that is not a finite int or float (a string, None, a bool,
            NaN, ±inf).
    """
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if (
            isinstance(value, (bool, np.bool_))
            or not isinstance(value, (int, float, np.integer, np.floating))
            or not math.isfinite(value)
        ):
            raise ConfigError(f"{label}.{f.name}={value!r}; expected a finite number")


def _check_int(value: Any, where: str) -> int:
    if isinstance(value, bool):
        raise ConfigError(f"{where} must be an integer, got {_describe(value)}")
    if isinstance(value, (float, np.floating)):
        if not math.isfinite(value) or not float(value).is_integer():
            raise ConfigError(f"{where} must be an integer, got {_describe(value)}")
        value = int(value)
    if not isinstance(value, (int, np.integer)):
        raise ConfigError(f"{where} must be an integer, got {_describe(value)}")
    if not -INT64_MAX - 1 <= int(value) <= INT64_MAX:
        raise ConfigError(f"{where} = {value} does not fit a 64-bit integer")
    return int(value)


def check_value(value: Any, hint: Any, where: str) -> Any:
    """``value`` checked against the annotation ``hint``; converted where lossless.

    Args:
        value: the value read from the config (TOML/YAML scalar, list, ...).
        hint: the field's resolved annotation.
        where: the field's path, for the message.

    Returns:
        The value (ints for ``int``, floats for ``float``, tuples for tuples).

    Raises:
        ConfigError: wrong type, non-finite float, out-of-range integer.
    """
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if hint is Any or hint is object:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        others = [a for a in args if a is not type(None)]
        if len(others) == 1:
            return check_value(value, others[0], where)
        return value  # a real union: left to the config's own checks
    if hint is bool:
        if not isinstance(value, (bool, np.bool_)):
            raise ConfigError(f"{where} must be true or false, got {_describe(value)}")
        return bool(value)
    if hint is int:
        return _check_int(value, where)
    if hint is float:
        return check_finite(value, where)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where} must be a string, got {_describe(value)}")
        return value
    if origin is tuple:
        if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where} must be a list, got {_describe(value)}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(check_value(v, args[0], f"{where}[{i}]") for i, v in enumerate(value))
        if args and args != ((),):
            if len(value) != len(args):
                raise ConfigError(f"{where} must be a list of {len(args)} values, got {len(value)}: {_describe(value)}")
            return tuple(check_value(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, args, strict=True)))
        return tuple(value)
    return value


def load_yaml(text: str, source: str) -> Any:
    """``yaml.safe_load(text)``, refusing a mapping that holds a key twice.

    PyYAML keeps the last of two equal keys (``scale: 1.0`` then ``scale: 5.0`` runs with
    5.0) where TOML refuses the file; a config read either way must not drop a value
    without a word.

    Raises:
        ConfigError: ``"malformed config <source>: key 'scale' appears twice (lines 12 and 13)"``.
        yaml.YAMLError: the text does not parse (the caller names it).
    """
    import yaml

    class _UniqueKeyLoader(yaml.SafeLoader):
        pass

    def construct_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode, deep: bool = False) -> Any:
        seen: dict[Any, int] = {}
        for key_node, _value in node.value:  # the keys written here; '<<' merges may be overridden
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = loader.construct_object(key_node, deep=True)  # type: ignore[no-untyped-call]
            try:
                first = seen.get(key)
            except TypeError:  # an unhashable key: yaml's own error follows
                continue
            if first is not None:
                raise ConfigError(
                    f"malformed config {source}: key {key!r} appears twice (lines {first} and "
                    f"{key_node.start_mark.line + 1}); keep one"
                )
            seen[key] = key_node.start_mark.line + 1
        return loader.construct_mapping(node, deep=deep)

    _UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, construct_mapping)
    return yaml.load(text, Loader=_UniqueKeyLoader)  # a SafeLoader subclass: no Python objects


def _flatten(value: Any, prefix: str, out: dict[str, Any]) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            _flatten(v, f"{prefix}.{k}" if prefix else str(k), out)
    else:
        out[prefix] = value


def settings_difference(stored_pipeline: str, pipeline: str, stored_run: str | None = None, run: str | None = None) -> str:
    """The first setting in which two pipeline configs (TOML) or run records (JSON) differ, as a phrase.

    For the refusal of ``--resume`` onto a store made otherwise: ``"[run].events is 200 in
    the store, 400 here"``, ``"pass 'generator'.decay is 'B+ -> ...' in the store, 'B0 -> ...'
    here"``, ``"the store's passes are generator, occupancy; here generator"``.
    """
    import json
    import tomllib

    def parse(text: str | None, loads: Any) -> Any:
        try:
            return loads(text) if text else {}
        except ValueError:
            return None

    def show(v: Any) -> str:
        text = repr(v)
        return text if len(text) <= 60 else text[:57] + "..."

    a, b = parse(stored_pipeline, tomllib.loads), parse(pipeline, tomllib.loads)
    if not isinstance(a, dict) or not isinstance(b, dict):
        return "the store's pipeline config cannot be read"
    ra, rb = (parse(stored_run, json.loads) or {}), (parse(run, json.loads) or {})
    runs_a = {**a.get("run", {}), **(ra if isinstance(ra, dict) else {})}
    runs_b = {**b.get("run", {}), **(rb if isinstance(rb, dict) else {})}
    for key in sorted(set(runs_a) | set(runs_b)):
        if runs_a.get(key) != runs_b.get(key):
            return f"[run].{key} is {show(runs_a.get(key))} in the store, {show(runs_b.get(key))} here"
    pa, pb = a.get("passes", []), b.get("passes", [])
    names_a = [str(p.get("name")) for p in pa if isinstance(p, dict)]
    names_b = [str(p.get("name")) for p in pb if isinstance(p, dict)]
    if names_a != names_b:
        return f"the store's passes are {', '.join(names_a)}; here {', '.join(names_b)}"
    for p, q in zip(pa, pb, strict=True):
        fa: dict[str, Any] = {}
        fb: dict[str, Any] = {}
        _flatten(p, "", fa)
        _flatten(q, "", fb)
        for key in sorted(set(fa) | set(fb)):
            if fa.get(key) != fb.get(key):
                return f"pass {p.get('name')!r}.{key} is {show(fa.get(key))} in the store, {show(fb.get(key))} here"
    return "the settings differ"
