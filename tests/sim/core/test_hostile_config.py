"""Hostile configs, sizes and model sidecars: refused where they are read, with the field's path, before any store exists."""

from __future__ import annotations

import json
import math
import shutil
import time
from pathlib import Path

import pytest

from mambah.errors import ConfigError, ModelError
from sim.core.pipeline import Pipeline, RunConfig
from sim.core.resources import batch_memory_bytes, check_batch_memory

GEN = '[[passes]]\nkind = "generator"\n'


def _toml(tmp_path: Path, text: str, name: str = "job.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("text", "match"),
    [
        (GEN + '[[passes]]\nkind = "resolution"\ndownstream_state_z = nan\n', r"pass 'resolution'\.downstream_state_z must be a finite number, got nan"),
        (GEN + '[[passes]]\nkind = "resolution"\ndownstream_state_z = inf\n', r"downstream_state_z must be a finite number"),
        (GEN + '[[passes]]\nkind = "resolution"\ndownstream_state_z = "abc"\n', r"downstream_state_z must be a number, got 'abc' \(str\)"),
        (GEN + 'name = 3\n', r"pass 'generator'\.name must be a string, got 3 \(int\)"),
        (GEN + 'particles_per_event = "2"\n', r"particles_per_event must be an integer, got '2'"),
        (GEN + 'particles_per_event = 2.5\n', r"particles_per_event must be an integer"),
        (GEN + 'decay = 7\n', r"pass 'generator'\.decay must be a string"),
        (GEN + '[passes.luminous_region]\nsigma_z = nan\n', r"luminous_region\.sigma_z must be a finite number"),
        (GEN + '[passes.spectrum]\nkind = "fixed"\neta = nan\n', r"spectrum\.eta must be a finite number"),
        (GEN + '[passes.spectrum]\nkind = "fixed"\neta = 1000.0\n', r"eta must be in \[-15, 15\]"),
        (GEN + '[passes.spectrum]\nkind = "fixed"\np = 1e30\n', r"p must be in \(0, 7e\+06\] MeV"),
        (GEN + '[passes.spectrum]\nkind = "uniform"\nrange = [1000.0, 1e30]\n', r"range must be \(min, max\) with 0 <= min < max <= 7e\+06"),
        (GEN + '[passes.spectrum]\nkind = "uniform"\neta = [2.0, "x"]\n', r"spectrum\.eta\[1\] must be a number"),
        (GEN + '[passes.spectrum]\nkind = "uniform"\neta = [2.0, 3.0, 4.0]\n', r"spectrum\.eta must be a list of 2 values"),
        (GEN + '[passes.spectrum]\nkind = "heavy-hadron"\ny_range = [1.5, 1e300]\n', r"y range must be"),
        ('[run]\nevents = 9223372036854775807\n' + GEN, r"at most 2,147,483,647 batches"),
        ('[run]\nevents = 1e400\n' + GEN, r"malformed config|must be an integer"),
        ('[run]\nevents = "many"\n' + GEN, r"\[run\]\.events must be an integer, got 'many'"),
        ('[run]\nbatch_size = 3000000000\n' + GEN, r"batch size must be at most 2,147,483,647"),
        ('[run]\nseed = true\n' + GEN, r"\[run\]\.seed must be an integer, got True"),
        ('[run]\nseed = -1\n' + GEN, r"seed must be a non-negative integer"),
        # the bad-input corpus: a scalar where a table belongs (a TypeError traceback / a message from deep inside)
        ('run = 5\n' + GEN, r"^\[run\] must be a table of keys, got 5 \(int\)$"),
        (GEN + 'luminous_region = 3\n', r"^pass 'generator'\.luminous_region must be a table of keys, got 3 \(int\)$"),
        (GEN + '[passes.spectrum]\neta = 3.0\n', r"spectrum as a table needs its kind \(kind = one of fixed, heavy-hadron, uniform\)"),
        (GEN + 'luminous_region = [1.0, 2.0]\n', r"luminous_region must be a table of keys, got \[1\.0, 2\.0\] \(list\)"),
    ],
)
def test_bad_values_named_by_path(text: str, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        Pipeline.from_toml(text)


def test_integral_floats_are_taken_as_integers() -> None:
    p = Pipeline.from_toml('[run]\nevents = 2e4\nbatch_size = 1e4\n' + GEN)
    assert p.run.events == 20_000 and isinstance(p.run.events, int) and p.run.n_batches == 2


def test_byte_order_mark_is_not_content(tmp_path: Path) -> None:
    """A TOML file saved with a UTF-8 byte-order mark (Windows editors) was 'malformed config: Invalid statement'."""
    path = tmp_path / "bom.toml"
    path.write_bytes(b"\xef\xbb\xbf" + ("[run]\nevents = 300\n" + GEN).encode())
    assert Pipeline.load(path).run.events == 300


def test_binary_and_deeply_nested_files(tmp_path: Path) -> None:
    binary = tmp_path / "job.toml"
    binary.write_bytes(bytes(range(256)) * 10)
    with pytest.raises(ConfigError, match="not a UTF-8 text file"):
        Pipeline.load(binary)
    deep = _toml(tmp_path, "a = " + "[" * 50_000 + "]" * 50_000 + "\n")
    with pytest.raises(ConfigError, match="nested too deeply"):
        Pipeline.load(deep)
    yml = tmp_path / "job.yaml"
    yml.write_text("a: " + "[" * 50_000 + "]" * 50_000 + "\n")
    with pytest.raises(ConfigError, match="nested too deeply|malformed config"):
        Pipeline.load(yml)
    deep_tables = _toml(tmp_path, "[" + ".".join(["a"] * 5000) + "]\nx = 1\n", "tables.toml")
    with pytest.raises(ConfigError):
        Pipeline.load(deep_tables)


def test_cli_bad_files_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from mambah.cli import main

    binary = tmp_path / "bin.toml"
    binary.write_bytes(b"\xff\xfe\x00\x01" * 100)
    huge = _toml(tmp_path, "[run]\nevents = 9223372036854775807\n" + GEN, "huge.toml")
    for cfg in (binary, huge):
        out = tmp_path / "o.duckdb"
        assert main(["run", "--config", str(cfg), "-o", str(out), "--no-progress"]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "Traceback" not in err, err
        assert not out.exists()


def test_batches_are_lazy() -> None:
    run = RunConfig(events=10**13, batch_size=25_000, seed=5)
    t0 = time.perf_counter()
    batches = run.batches()
    assert len(batches) == 400_000_000
    last = batches[-1]
    assert last.batch == 399_999_999 and last.n_events == 25_000
    assert [b.batch for b in batches[2:5]] == [2, 3, 4]
    assert next(iter(batches)).batch == 0
    assert time.perf_counter() - t0 < 1.0
    small = RunConfig(events=2_500, batch_size=1_000, seed=5)
    assert [b.n_events for b in small.batches()] == [1000, 1000, 500]
    assert list(small.batches()) == [small.batch(i) for i in range(3)]
    with pytest.raises(IndexError):
        small.batch(3)


def test_memory_estimate_refuses_what_cannot_fit() -> None:
    gen = Pipeline.from_toml('[run]\nevents = 100000000\nbatch_size = 100000000\n' + GEN)
    with pytest.raises(ConfigError, match=r"needs about .* GiB .* this machine has 8\.0 GiB; a batch size of at most [\d,]+ fits") as info:
        check_batch_memory(gen, memory=8 * 2**30)
    fits = int(str(info.value).split("at most ")[1].split(" fits")[0].replace(",", ""))
    # the suggested size passes, a 20 % larger one does not
    ok = Pipeline(gen.passes, RunConfig(events=fits, batch_size=fits))
    check_batch_memory(ok, memory=8 * 2**30)
    big = Pipeline(gen.passes, RunConfig(events=int(fits * 1.2), batch_size=int(fits * 1.2)))
    with pytest.raises(ConfigError):
        check_batch_memory(big, memory=8 * 2**30)
    many = Pipeline.from_toml('[run]\nevents = 1000\nbatch_size = 1000\n' + GEN + "particles_per_event = 1000000000\n")
    with pytest.raises(ConfigError, match="no batch size fits"):
        check_batch_memory(many, memory=8 * 2**30)
    # the default decay has 6 particles: estimate grows linearly with the batch size
    d1, d2 = (batch_memory_bytes(gen, n) for n in (10_000, 20_000))
    assert d2 - d1 == d1 - batch_memory_bytes(gen, 0) > 0


def test_cli_refuses_a_batch_that_cannot_fit_quickly(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from mambah.cli import main

    out = tmp_path / "o.duckdb"
    t0 = time.perf_counter()
    code = main(["run", "--events", "1000000000", "--batch-size", "1000000000", "-o", str(out), "--no-progress"])
    assert code == 2 and time.perf_counter() - t0 < 10.0
    err = capsys.readouterr().err.strip()
    assert "GiB" in err and "--batch-size" in err and len(err.splitlines()) == 1
    assert not out.exists()


# ---------------------------------------------------------------------------- model sidecars
def _model_copy(tmp_path: Path, name: str) -> tuple[Path, dict]:
    from sim.core.modelio import MODELS_DIR

    dst = tmp_path / f"{name}.keras"
    shutil.copy(MODELS_DIR / f"{name}.keras", dst)
    side = json.loads((MODELS_DIR / f"{name}.json").read_text())
    return dst, side


def _write(path: Path, side: dict) -> None:
    path.with_suffix(".json").write_text(json.dumps(side))


def _nan_quantile(side: dict) -> None:
    side["preprocessing"]["inputs"]["quantiles"][150][2] = math.nan


def _non_monotonic(side: dict) -> None:
    q = side["preprocessing"]["inputs"]["quantiles"]
    q[100][0], q[200][0] = q[200][0], q[100][0] - 1.0


def _column_short(side: dict) -> None:
    side["preprocessing"]["inputs"]["quantiles"] = [row[:-1] for row in side["preprocessing"]["inputs"]["quantiles"]]


def _reference_nan(side: dict) -> None:
    side["preprocessing"]["inputs"]["references"][5] = math.nan


@pytest.mark.parametrize(
    ("corrupt", "match"),
    [
        (_nan_quantile, "quantiles hold 1 NaN/inf"),
        (_non_monotonic, "quantiles are not monotonic"),
        (_column_short, "6 column\\(s\\), the model has 7"),
        (_reference_nan, "quantile references hold 1 NaN"),
    ],
)
def test_bad_sidecar_numbers_refused_when_the_pass_is_built(tmp_path: Path, corrupt, match: str) -> None:
    from sim.detector.acceptance import Acceptance

    path, side = _model_copy(tmp_path, "acceptance")
    corrupt(side)
    _write(path, side)
    with pytest.raises(ModelError, match=match):
        Acceptance(model=str(path)).build()


def test_bad_sidecar_leaves_no_store(tmp_path: Path) -> None:
    from sim.core.pipeline import Pipeline as P
    from sim.core.runner import run
    from sim.detector.acceptance import Acceptance
    from sim.generation.generator import Generator

    path, side = _model_copy(tmp_path, "acceptance")
    _nan_quantile(side)
    _write(path, side)
    out = tmp_path / "o.duckdb"
    with pytest.raises(ModelError):
        run(P((Generator(), Acceptance(model=str(path))), RunConfig(events=100, batch_size=100)), out, progress=False)
    assert not out.exists()


def test_shipped_models_pass_the_checks() -> None:
    from sim.core.io import load_model
    from sim.core.modelio import MODELS_DIR, check_model_numbers

    for name in ("acceptance", "efficiency", "occupancy", "resolution"):
        check_model_numbers(load_model(MODELS_DIR / f"{name}.keras"), name, name)
