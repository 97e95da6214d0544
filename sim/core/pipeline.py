"""Pipelines as data: an ordered tuple of named, frozen pass configs.

A pass is a ``@dataclass(frozen=True)`` subclass of :class:`Pass` that declares
the tables it ``reads`` and ``writes`` and builds a *kernel* (a callable on a
:class:`BatchContext`) once per process.  Batches are values
(:class:`Batch`: number, number of events, seed), so a batch runs the same in
any process.  A pipeline round-trips to TOML.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import tomllib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, overload

import numpy as np

from mambah.errors import ConfigError, MambahError, StoreError
from mambah.store import insert, query_arrow, update
from sim.core import registry
from sim.core.configcheck import check_value, field_hints, load_yaml

__all__ = (
    "Batch",
    "BatchCancelled",
    "BatchContext",
    "Batches",
    "Pass",
    "Pipeline",
    "RunConfig",
    "batch_seed",
    "PASS_KINDS",
    "pass_class",
    "config_from_mapping",
)

#: Legacy table of pass kinds ("kind": "module:Class"), consulted after the registry.
#: New passes register themselves with :func:`sim.core.registry.register_pass`.
PASS_KINDS: dict[str, str] = {}


def pass_class(kind: str) -> type[Pass]:
    """The pass class registered under ``kind`` (see :mod:`sim.core.registry`)."""
    if kind in PASS_KINDS:
        module, _, name = PASS_KINDS[kind].partition(":")
        return getattr(importlib.import_module(module), name)  # type: ignore[no-any-return]
    return registry.pass_class(kind)  # type: ignore[no-any-return]


def batch_seed(run_seed: int, batch: int) -> int:
    """The seed of ``batch``: ``SeedSequence([run_seed, batch])``, 63 bits.

    Depends only on the run seed and the batch number, never on order or worker.
    """
    state = np.random.SeedSequence([int(run_seed), int(batch)]).generate_state(2, np.uint32)
    return int((int(state[0]) << 31) ^ int(state[1])) & (2**63 - 1)


def _stable_hash(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=4).digest(), "little")


@dataclass(frozen=True)
class Batch:
    """A batch as a value: its number, number of events and seed."""

    batch: int
    n_events: int
    seed: int

    def rng(self, stream: str) -> np.random.Generator:
        """An independent numpy generator for ``stream`` (e.g. the pass name)."""
        return np.random.default_rng(np.random.SeedSequence(self.seed, spawn_key=(_stable_hash(stream),)))

    def int_seed(self, stream: str) -> int:
        """An independent 62-bit integer seed for ``stream`` (for TensorFlow)."""
        ss = np.random.SeedSequence(self.seed, spawn_key=(_stable_hash(stream),))
        return int(ss.generate_state(1, np.uint64)[0] >> np.uint64(2))


class BatchContext:
    """What a kernel sees of one batch: SQL on the store (inside the batch transaction) and RNG.

    Args:
        con: DuckDB connection with the batch's transaction open.
        batch: the batch.
        prefetched: pass name → the product of its :meth:`Pass.produce` for this batch, made
            ahead by the run's producer process (:mod:`sim.core.producer`); a pass not named
            computes its own.
    """

    def __init__(self, con: Any, batch: Batch, prefetched: Mapping[str, Any] | None = None) -> None:
        self.con = con
        self.batch = batch
        self.prefetched: Mapping[str, Any] = dict(prefetched or {})

    def query(self, sql: str, params: Mapping[str, Any] | None = None) -> Any:
        """Run SQL with ``$batch`` bound (a real parameter) to the batch number; more named parameters in ``params``.

        Returns:
            The result as an Arrow table.

        Raises:
            StoreError: a DuckDB error, naming the batch.
        """
        import duckdb

        bound = {"batch": int(self.batch.batch), **dict(params or {})} if "$batch" in sql else (dict(params) if params else None)
        try:
            return query_arrow(self.con, sql, bound)
        except duckdb.InterruptException:
            raise KeyboardInterrupt from None  # Ctrl-C while DuckDB ran the statement
        except duckdb.Error as err:
            raise StoreError(f"query failed in batch {self.batch.batch}: {str(err).splitlines()[0]}") from err

    def insert(self, table: str, data: Any) -> None:
        """Insert Arrow/pandas/dict rows into ``table``."""
        insert(self.con, table, data)

    def update(self, table: str, data: Any, keys: tuple[str, ...] = ("batch", "event", "index")) -> None:
        """Set columns of existing rows of ``table`` from ``data`` (matched on ``keys``; :func:`mambah.store.update`)."""
        import duckdb

        try:
            update(self.con, table, data, keys)
        except duckdb.InterruptException:
            raise KeyboardInterrupt from None
        except StoreError as err:
            raise StoreError(f"{err} (batch {self.batch.batch})") from err

    def rng(self, stream: str) -> np.random.Generator:
        return self.batch.rng(stream)


Kernel = Callable[[BatchContext], None]


@dataclass(frozen=True)
class Pass:
    """Base of every pass config.  Subclasses are frozen dataclasses.

    Class attributes:
        kind: the name used in config files.
        reads: tables that must be produced upstream.
        writes: tables this pass writes (inserts into or updates).
        concurrent: its kernel may run on two batches at once, from two threads of one
            process (it keeps no state from one call to the next but caches whose value
            does not depend on the batch).  A serial run computes batches side by side
            only when every pass of the pipeline says so (:func:`sim.core.runner.run`).
    """

    kind: ClassVar[str] = ""
    reads: ClassVar[tuple[str, ...]] = ()
    writes: ClassVar[tuple[str, ...]] = ()
    concurrent: ClassVar[bool] = False

    name: str = ""

    def build(self) -> Kernel:
        """Load what the pass needs (models, compiled graphs) and return its kernel.

        Called once per process; bad configuration (missing model, bad decay)
        raises a :class:`~mambah.errors.MambahError` here, before any batch.
        """
        raise NotImplementedError

    @property
    def prefetchable(self) -> bool:
        """Whether :meth:`produce` computes the batch's work without the store, in any process, and the
        kernel writes a product of it found in :attr:`BatchContext.prefetched` (see :mod:`sim.core.producer`:
        a serial run of a pipeline starting with such a pass makes the next batch's product in a child
        process).  False unless a pass says otherwise."""
        return False

    def prepare_produce(self) -> None:
        """Build what :meth:`produce` needs in this process (a producer process calls it once, before the
        first batch, with logging off: the run's own :meth:`build` showed the same warnings).  Default: nothing."""

    def produce(self, batch: Batch) -> Any:
        """The store-free part of the kernel's work on ``batch`` (a picklable value), for a
        :attr:`prefetchable` pass; the same value in any process."""
        raise NotImplementedError(f"pass {self.name!r} ({self.kind}) has no produce step")

    # ---- config round trip
    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, **_fields_to_dict(self)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Pass:
        d = dict(d)
        kind = d.pop("kind", None)
        if kind is None:
            raise ConfigError(f"pass {d.get('name', '?')!r} has no 'kind'")
        klass = pass_class(str(kind))
        return _dataclass_from_dict(klass, d, f"pass {kind!r}")


def _fields_to_dict(obj: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in dataclasses.fields(obj):
        v = getattr(obj, f.name)
        if v is None:
            continue
        if dataclasses.is_dataclass(v):
            sub = _fields_to_dict(v)
            kind = getattr(type(v), "kind", None)
            if kind:
                sub = {"kind": kind, **sub}
            out[f.name] = sub
        elif isinstance(v, tuple):
            out[f.name] = [list(x) if isinstance(x, tuple) else x for x in v]
        else:
            out[f.name] = v
    return out


def config_from_mapping(klass: type, d: Mapping[str, Any], where: str) -> Any:
    """Build the frozen config ``klass`` from a mapping: unknown keys refused, every value type-checked.

    The one home of "dataclass from mapping" (pipelines, passes, reference-detector
    configs); nested configs may be given as mappings (with a ``kind`` for families).

    Raises:
        ConfigError: unknown key (naming the valid ones) or bad value, with the field's path.
    """
    return _dataclass_from_dict(klass, d, where)


def _dataclass_from_dict(klass: type, d: Mapping[str, Any], where: str) -> Any:
    if not isinstance(d, Mapping):  # `run: 5` in YAML, `run = 5` in TOML
        raise ConfigError(f"{where} must be a table of keys, got {d!r} ({type(d).__name__})")
    fields = {f.name: f for f in dataclasses.fields(klass) if f.init}
    unknown = sorted(set(d) - set(fields))
    if unknown:
        raise ConfigError(f"unknown key(s) {', '.join(map(repr, unknown))} in {where}; valid keys: {', '.join(sorted(fields))}")
    hints = field_hints(klass)
    kwargs: dict[str, Any] = {}
    for key, value in d.items():
        f = fields[key]
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else None  # type: ignore[misc]
        )
        if isinstance(value, Mapping):
            kwargs[key] = _nested_from_dict(default, value, f"{where}.{key}")
            continue
        if dataclasses.is_dataclass(default) and not isinstance(value, str) and not dataclasses.is_dataclass(value):
            raise ConfigError(
                f"{where}.{key} must be a table of keys, got {value!r} ({type(value).__name__})"
            )
        if isinstance(value, list):
            value = tuple(tuple(v) if isinstance(v, list) else v for v in value)
        # type and finiteness of every field, with its path (NaN, "abc" for a number, name = 3)
        kwargs[key] = check_value(value, hints[key], f"{where}.{key}") if key in hints else value
    try:
        return klass(**kwargs)
    except ConfigError:
        raise
    except (TypeError, ValueError, OverflowError, ArithmeticError) as err:
        raise ConfigError(f"bad value in {where}: {err}") from err


def _nested_from_dict(default: Any, value: Mapping[str, Any], where: str) -> Any:
    value = dict(value)
    kind = value.pop("kind", None)
    if kind is not None:
        family = getattr(default, "family", None) or where.rsplit(".", 1)[-1]
        return _dataclass_from_dict(registry.config_class(family, str(kind), where), value, where)
    if default is None or not dataclasses.is_dataclass(default):
        kinds = registry.config_kinds(where.rsplit(".", 1)[-1]).get(where.rsplit(".", 1)[-1], [])
        if kinds:
            raise ConfigError(f"{where} as a table needs its kind (kind = one of {', '.join(kinds)})")
        raise ConfigError(f"{where} must not be a table")
    return _dataclass_from_dict(type(default), value, where)


@dataclass(frozen=True)
class RunConfig:
    """How much to run: total events, events per batch, run seed."""

    events: int = 100_000
    batch_size: int = 25_000
    seed: int = 42

    def __post_init__(self) -> None:
        for key in ("events", "batch_size"):
            v = getattr(self, key)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v <= 0:
                raise ConfigError(f"{key.replace('_', ' ')} must be a positive integer, got {v!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, (int, np.integer)) or self.seed < 0:
            raise ConfigError(f"seed must be a non-negative integer, got {self.seed!r}")
        if self.seed > MAX_SEED:
            raise ConfigError(f"seed must be at most {MAX_SEED} (64 bits), got {self.seed}")
        # batch and event numbers are 32-bit columns of the store (mambah.schema)
        if self.batch_size > MAX_BATCH_NUMBER:
            raise ConfigError(f"batch size must be at most {MAX_BATCH_NUMBER:,} events (32-bit event numbers), got {self.batch_size:,}")
        if self.n_batches > MAX_BATCH_NUMBER:
            raise ConfigError(
                f"events = {self.events:,} needs {self.n_batches:,} batches of {self.batch_size:,}; at most "
                f"{MAX_BATCH_NUMBER:,} batches (32-bit batch numbers): at most {MAX_BATCH_NUMBER * self.batch_size:,} events"
            )

    @property
    def n_batches(self) -> int:
        return -(-self.events // self.batch_size)

    def batch(self, i: int) -> Batch:
        """Batch number ``i`` of the run, as a value."""
        if not 0 <= i < self.n_batches:
            raise IndexError(f"batch {i} is not in a run of {self.n_batches} batches")
        return Batch(i, min(self.batch_size, self.events - i * self.batch_size), batch_seed(self.seed, i))

    def batches(self) -> Batches:
        """All batches of the run, as a lazy sequence (nothing is made until it is asked for)."""
        return Batches(self)


#: largest batch number and batch size: ``batch`` and ``event`` are 32-bit integer columns
MAX_BATCH_NUMBER = 2**31 - 1
#: largest run seed (numpy SeedSequence takes any integer; the store records 64 bits)
MAX_SEED = 2**63 - 1


class Batches(Sequence[Batch]):
    """The batches of a run as a lazy, indexable sequence (``len``, ``[i]``, slices, iteration)."""

    def __init__(self, run: RunConfig) -> None:
        self._run = run

    def __len__(self) -> int:
        return self._run.n_batches

    @overload
    def __getitem__(self, i: int) -> Batch: ...

    @overload
    def __getitem__(self, i: slice) -> list[Batch]: ...

    def __getitem__(self, i: int | slice) -> Batch | list[Batch]:
        if isinstance(i, slice):
            return [self._run.batch(j) for j in range(*i.indices(len(self)))]
        n = len(self)
        j = i + n if i < 0 else i
        if not 0 <= j < n:
            raise IndexError(f"batch index {i} out of range for {n} batches")
        return self._run.batch(j)

    def __iter__(self) -> Iterator[Batch]:
        for i in range(len(self)):
            yield self._run.batch(i)

    def __repr__(self) -> str:
        return f"Batches({len(self)} of {self._run.batch_size} events, seed {self._run.seed})"


@dataclass(frozen=True)
class Pipeline:
    """An ordered tuple of passes; the first is the generator."""

    passes: tuple[Pass, ...]
    run: RunConfig = RunConfig()

    def __post_init__(self) -> None:
        object.__setattr__(self, "passes", tuple(self.passes))

    def validate(self) -> Pipeline:
        """Check names are unique and every table read is written upstream.

        Raises:
            ConfigError: naming the pass and the missing table.
        """
        if not self.passes:
            raise ConfigError("pipeline has no passes")
        names: set[str] = set()
        produced: set[str] = set()
        for p in self.passes:
            if not p.name:
                raise ConfigError(f"a {p.kind!r} pass has no name")
            if p.name in names:
                raise ConfigError(f"two passes are named {p.name!r}")
            names.add(p.name)
            missing = [t for t in p.reads if t not in produced]
            if missing:
                raise ConfigError(
                    f"pass {p.name!r} reads {', '.join(missing)}, which no pass before it writes "
                    f"(upstream writes: {', '.join(sorted(produced)) or 'nothing'})"
                )
            produced.update(p.writes)
        return self

    def __getitem__(self, name: str) -> Pass:
        for p in self.passes:
            if p.name == name:
                return p
        raise KeyError(name)

    def replace(self, name: str, **changes: Any) -> Pipeline:
        """A copy with pass ``name``'s config changed."""
        return Pipeline(tuple(dataclasses.replace(p, **changes) if p.name == name else p for p in self.passes), self.run)

    def without(self, *names: str) -> Pipeline:
        return Pipeline(tuple(p for p in self.passes if p.name not in names), self.run)

    # ---- config files
    def to_dict(self) -> dict[str, Any]:
        return {"run": _fields_to_dict(self.run), "passes": [p.to_dict() for p in self.passes]}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Pipeline:
        unknown = sorted(set(d) - {"run", "passes"})
        if unknown:
            raise ConfigError(f"unknown top-level key(s) {', '.join(map(repr, unknown))} in config; valid: 'run', 'passes'")
        run = _dataclass_from_dict(RunConfig, d.get("run", {}), "[run]")
        passes = d.get("passes")
        if not isinstance(passes, list) or not all(isinstance(p, Mapping) for p in passes):
            raise ConfigError("config needs a list of [[passes]] tables")
        return cls(tuple(Pass.from_dict(p) for p in passes), run)

    def to_toml(self) -> str:
        import tomli_w

        return tomli_w.dumps(self.to_dict())

    @classmethod
    def from_toml(cls, text: str, *, source: str = "config") -> Pipeline:
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as err:
            raise ConfigError(f"malformed config {source}: {err}") from err
        except RecursionError:
            raise ConfigError(f"malformed config {source}: nested too deeply") from None
        try:
            return cls.from_dict(data)
        except RecursionError:
            raise ConfigError(f"malformed config {source}: nested too deeply") from None

    @classmethod
    def load(cls, path: str | Path) -> Pipeline:
        """Read a TOML (``.toml``) or YAML (``.yaml``/``.yml``) config file."""
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"config file '{p}' " + ("is a directory; give a .toml or .yaml file" if p.is_dir() else "does not exist"))
        try:
            text = p.read_text(encoding="utf-8-sig")  # a byte-order mark (Windows editors) is not content
        except UnicodeDecodeError as err:
            raise ConfigError(f"config '{p}' is not a UTF-8 text file (byte {err.start}: {err.reason}); give a TOML or YAML file") from None
        except OSError as err:
            raise ConfigError(f"cannot read config '{p}': {err.strerror}") from None
        if p.suffix in (".yaml", ".yml"):
            import yaml

            try:
                data = load_yaml(text, f"'{p}'")  # yaml.safe_load, a key given twice refused
            except yaml.YAMLError as err:
                raise ConfigError(f"malformed config '{p}': {str(err).splitlines()[0]}") from err
            except RecursionError:
                raise ConfigError(f"malformed config '{p}': nested too deeply") from None
            if not isinstance(data, Mapping):
                raise ConfigError(f"config '{p}' must be a mapping")
            try:
                return cls.from_dict(data)
            except RecursionError:
                raise ConfigError(f"malformed config '{p}': nested too deeply") from None
        return cls.from_toml(text, source=f"'{p}'")

    def save(self, path: str | Path) -> None:
        """Write the config as YAML (``.yaml``/``.yml``) or TOML (any other suffix).

        Raises:
            ConfigError: the file cannot be written (missing directory, a directory, no permission).
        """
        p = Path(path)
        if not p.parent.is_dir():
            raise ConfigError(f"directory '{p.parent}' of config file '{p}' does not exist")
        if p.suffix in (".yaml", ".yml"):
            import yaml

            text = yaml.safe_dump(self.to_dict(), sort_keys=False)
        else:
            text = self.to_toml()
        try:
            p.write_text(text)
        except OSError as err:
            raise ConfigError(f"cannot write config file '{p}': {err.strerror or err}") from err


def build_kernels(pipeline: Pipeline) -> list[Kernel]:
    """Validate and build every pass's kernel (once per process)."""
    pipeline.validate()
    return [_build_cached(p) for p in pipeline.passes]


_KERNEL_CACHE: dict[Pass, Kernel] = {}


def _build_cached(p: Pass) -> Kernel:
    """Kernels are cached per process by their (frozen, hashable) config."""
    if p not in _KERNEL_CACHE:
        _KERNEL_CACHE[p] = p.build()
    return _KERNEL_CACHE[p]


def run_batch(kernels: Iterable[Kernel], con: Any, batch: Batch, *, cancelled: Callable[[], bool] | None = None,
              prefetched: Mapping[str, Any] | None = None) -> None:
    """Run every kernel on ``batch`` inside an open transaction ``con``.

    Args:
        cancelled: asked before each kernel; when it returns true the batch stops with
            :class:`BatchCancelled` (a run stopping its other batches after an error).
        prefetched: products of passes' :meth:`Pass.produce` made ahead (:class:`BatchContext`).
    """
    ctx = BatchContext(con, batch, prefetched)
    for k in kernels:
        if cancelled is not None and cancelled():
            raise BatchCancelled(f"batch {batch.batch} cancelled")
        k(ctx)


class BatchCancelled(MambahError):
    """A batch stopped between two passes because its run is stopping (never reaches the user)."""
