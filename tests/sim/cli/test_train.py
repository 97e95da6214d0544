"""``mambah train --help`` lists, per model, the columns ``--data`` needs."""

from __future__ import annotations

from pathlib import Path

import pytest

from mambah.cli import main
from sim.core.registry import trainers


def test_train_help_lists_the_columns_per_model(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["train", "--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    assert "columns --data needs, per model" in text
    listed = " ".join(text.split("columns --data needs, per model", 1)[1].split())
    for kind, spec in trainers().items():
        assert spec.columns, kind
        assert f"{kind}: {' '.join(spec.columns)}" in listed, kind
    for column in ("track_class", "in_acceptance", "dp_rel", "n_pv", "RichDLLK"):
        assert column in listed


COLUMNS = ["log10_p", "eta", "phi", "charge", "origin_x", "origin_y", "origin_z", "in_acceptance", "forward"]


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Training files a user could hand to ``mambah train acceptance``: sound and broken."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    d = tmp_path_factory.mktemp("train")
    rng = np.random.default_rng(0)
    cols = {c: rng.normal(size=200) for c in COLUMNS}
    pq.write_table(pa.table(cols), d / "ok.parquet")
    with_nan = dict(cols, eta=np.where(np.arange(200) == 7, np.nan, cols["eta"]))
    pq.write_table(pa.table(with_nan), d / "nan.parquet")
    pq.write_table(pa.table({c: cols[c] for c in COLUMNS[:6]}), d / "cols.parquet")
    (d / "junk.parquet").write_bytes(b"PAR1garbage" * 100)
    (d / "notes.txt").write_text("hello\n")
    return {p.stem: str(p) for p in d.iterdir()}


BAD_TRAININGS = [
    (["acceptance", "--data", "{missing}"], r"training file .*missing.parquet does not exist"),
    (["acceptance", "--data", "{junk}"], r"junk.parquet: cannot read Parquet file: Parquet magic bytes not found"),
    (["acceptance", "--data", "{notes}"], r"notes.txt: neither a Parquet nor a ROOT file \(magic bytes b'hell'\)"),
    (["acceptance", "--data", "{nan}", "--epochs", "1"], r"nan.parquet: NaN or inf in column\(s\) 'eta' \(1 values\)"),
    (["acceptance", "--data", "{cols}"], r"cols.parquet: missing column\(s\) \['origin_z', 'in_acceptance', 'forward'\]; available: "),
    (["acceptance", "--data", "{ok}", "--inputs", "etaa"], r"missing column\(s\) \['etaa'\]; available: \['charge', 'eta'"),
    (["acceptance", "--data", "{ok}", "-o", "{dir}/m.h5"], r"--output .*m.h5 must end in '.keras'"),
    # refused before the training (was a FileNotFoundError traceback, exit 1, after it)
    (["acceptance", "--data", "{ok}", "--epochs", "1", "-o", "/proc/m.keras"], r"^mambah: error: cannot write model /proc/m.keras: "),
    (["acceptance", "--data", "{ok}", "--epochs", "1", "-o", "{notes}/m.keras"], r"cannot write model .*notes.txt/m.keras: '.*notes.txt' is not a directory"),
]


@pytest.mark.parametrize(("argv", "match"), BAD_TRAININGS)
def test_bad_training_input_exit_2_one_line(data: dict[str, str], tmp_path, argv: list[str], match: str,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    import re

    files = {**data, "missing": str(tmp_path / "missing.parquet"), "dir": str(tmp_path)}
    args = [a.format(**files) for a in argv]
    if "-o" not in args:
        args += ["-o", str(tmp_path / "m.keras")]
    assert main(["train", *args, "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert re.search(match, err), err
    assert list(tmp_path.iterdir()) == []  # no model file, no sidecar


def test_selection_outputs_are_checked_before_the_training(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    """-o /proc/sel.keras or --report /proc/r: refused before the sample is simulated and the model trained."""
    import mambah

    if not Path("/proc").is_dir():
        pytest.skip("no /proc")
    store = tmp_path / "s.duckdb"
    mambah.EventStore.create(store).close()
    for extra, message in ((["-o", "/proc/sel.keras"], "cannot write model /proc/sel.keras: "),
                           (["-o", str(tmp_path / "sel.keras"), "--report", "/proc/r"], "--report /proc/r: cannot write in '/proc'")):
        assert main(["train", "selection", "--sql", "true", "--store", str(store), *extra]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and err.startswith(f"mambah: error: {message}"), err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.duckdb"]
