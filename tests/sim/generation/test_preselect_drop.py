"""``Preselect(drop_skipped=True)`` / ``mambah run --preselect ... --drop-skipped``: the skipped events' MC truth is deleted.

Everything else is the run without the option: the same events rows (the skipped ones flagged),
the same truth of the simulated events and the same detector output; it resumes to the same
store, runs the same on Dask workers, and round-trips through the config.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest

import mambah
from mambah.cli import main
from mambah.errors import ConfigError
from sim.core.pipeline import Pipeline
from sim.core.runner import run
from sim.defaults import default_pipeline
from sim.generation.preselect import Preselect, with_preselect

SHIPPED = str(Path(__file__).resolve().parents[3] / "sim" / "models" / "selection.keras")
TRUTH = ("mc_particles", "mc_vertices")


def _job(drop: bool) -> Pipeline:
    return with_preselect(default_pipeline(events=900, batch_size=300, seed=21), SHIPPED, retention=0.99, drop_skipped=drop)


def _tables(path: Path) -> dict[str, pa.Table]:
    with mambah.EventStore.open(path, read_only=True) as s:
        return {name: s.query(f"SELECT * FROM {name} ORDER BY ALL") for name in (*mambah.DATA_TABLES, "batches")}


def _same(a: dict[str, pa.Table], b: dict[str, pa.Table], skip: tuple[str, ...] = ()) -> None:
    for name, ta in a.items():
        if name in skip:
            continue
        assert ta.num_rows == b[name].num_rows, name
        for col in ta.column_names:
            assert ta[col].equals(b[name][col]), f"{name}.{col} differs"


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("drop")
    keep, drop = d / "keep.duckdb", d / "drop.duckdb"
    run(_job(False), keep, progress=False)
    run(_job(True), drop, progress=False)
    return keep, drop


def test_drop_skipped_deletes_only_the_skipped_events_truth(runs: tuple[Path, Path]) -> None:
    keep, drop = runs
    tk, td = _tables(keep), _tables(drop)
    _same(tk, td, skip=TRUTH)  # events (skipped ones flagged), detector output, batches: as without the option
    with mambah.EventStore.open(keep, read_only=True) as s:
        n_skipped = s.query("SELECT count(*) AS n FROM events WHERE NOT simulated").to_pylist()[0]["n"]
        assert 200 < n_skipped < 800  # the pass did skip events, and kept some
        for name in TRUTH:
            kept_rows = s.query(
                f"SELECT t.* FROM {name} t JOIN events e USING (batch, event) WHERE e.simulated ORDER BY ALL")
            assert kept_rows.equals(td[name]), f"{name}: the simulated events' truth differs"
            assert td[name].num_rows < tk[name].num_rows
    with mambah.EventStore.open(drop, read_only=True) as s:
        for name in TRUTH:
            left = s.query(f"SELECT count(*) AS n FROM {name} t JOIN events e USING (batch, event) WHERE NOT e.simulated")
            assert left.to_pylist()[0]["n"] == 0
        assert s.check().ok


def test_drop_skipped_config_round_trip_and_bad_value(tmp_path: Path) -> None:
    job = _job(True)
    back = Pipeline.from_toml(job.to_toml())
    assert back == job and back["preselect"].drop_skipped is True  # type: ignore[attr-defined]
    assert "drop_skipped = true" in job.to_toml()
    with pytest.raises(ConfigError, match="drop_skipped"):
        Pipeline.from_toml(job.to_toml().replace("drop_skipped = true", 'drop_skipped = "yes"'))
    with pytest.raises(ConfigError, match="drop_skipped must be true or false"):
        Preselect(model=SHIPPED, retention=0.99, decay="x", pipeline="y", drop_skipped=1)  # type: ignore[arg-type]


def test_cli_drop_skipped(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "job.toml"
    assert main(["run", "--events", "600", "--batch-size", "300", "--preselect", SHIPPED, "--drop-skipped",
                 "--save-config", str(cfg)]) == 0
    assert Pipeline.load(cfg)["preselect"].drop_skipped is True  # type: ignore[attr-defined]
    assert main(["run", "--events", "600", "--drop-skipped", "-o", str(tmp_path / "x.duckdb")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--drop-skipped" in err[0] and "need --preselect MODEL" in err[0]
    assert not (tmp_path / "x.duckdb").exists()


def test_interrupted_drop_skipped_run_resumes_to_the_same_store(tmp_path: Path, interrupt_once: type,
                                                                runs: tuple[Path, Path]) -> None:
    job = _job(True)
    pl = Pipeline((*job.passes, interrupt_once(marker=str(tmp_path / "marker"))), job.run)
    out = tmp_path / "r.duckdb"
    with pytest.raises(KeyboardInterrupt):
        run(pl, out, progress=False)
    assert run(pl, out, resume=True, progress=False).batches_run == 2
    _same(_tables(runs[1]), _tables(out))


@pytest.mark.slow  # two fresh worker processes each import TensorFlow and load the default job's models
def test_two_dask_workers_drop_as_the_serial_run(tmp_path: Path, runs: tuple[Path, Path]) -> None:
    pytest.importorskip("distributed")
    from sim.core.distributed import run_distributed

    out = tmp_path / "dist.duckdb"
    run_distributed(_job(True), out, workers=2, progress=False)
    _same(_tables(runs[1]), _tables(out))
