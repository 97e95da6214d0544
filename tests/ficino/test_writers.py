"""Writers: formats, compression, temporary name + rename, abort leaves nothing."""

from __future__ import annotations

import numpy as np
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
import uproot

from ficino.writers import CsvFile, ParquetFile, RootFile, check_output, open_ntuple, parse_compression, resolve_format
from mambah.errors import ExportError

DTYPES = {"a_PX": "f8", "a_TRUEID": "i4", "a_PIDK": "f4"}
UNITS = {"a_PX": "MeV", "a_TRUEID": "", "a_PIDK": ""}


def _chunk(n: int, start: int = 0) -> dict[str, np.ndarray]:
    x = np.arange(start, start + n)
    return {"a_PX": x * 1.5, "a_TRUEID": x.astype(np.int32), "a_PIDK": np.where(x % 3 == 0, np.nan, x).astype(np.float32)}


def test_resolve_format():
    assert resolve_format("x.root") == "root"
    assert resolve_format("x.PARQUET") == "parquet"
    assert resolve_format("x.pq") == "parquet"
    assert resolve_format("x.csv") == "csv"
    assert resolve_format("dir", "Parquet") == "parquet"
    with pytest.raises(ExportError, match="suffix"):
        resolve_format("x.h5")
    with pytest.raises(ExportError, match="unknown format 'hdf5'"):
        resolve_format("x.root", "hdf5")


def test_parse_compression():
    assert parse_compression(None) == ("LZ4", None)
    assert parse_compression("zstd:5") == ("ZSTD", 5)
    assert parse_compression("none") == ("NONE", None)
    for bad in ("bz2", "LZ4:x", "ZLIB:99"):
        with pytest.raises(ExportError):
            parse_compression(bad)


@pytest.mark.parametrize("compression", [None, "ZLIB", "LZMA", "ZSTD:3", "NONE"])
def test_root_streaming_round_trip(tmp_path, compression):
    out = tmp_path / "t.root"
    w = RootFile(out, DTYPES, UNITS, tree="T", compression=compression, basket_rows=25)
    for i in range(4):
        w.write(_chunk(10, 10 * i))
        assert not out.exists()  # only the temporary file while writing
    size = w.close()
    assert size == out.stat().st_size
    assert list(tmp_path.iterdir()) == [out]
    with uproot.open(out) as f:
        arrays = f["T"].arrays(library="np")
        assert f["T"].num_entries == 40
    ref = _chunk(40)
    for k, v in ref.items():
        np.testing.assert_array_equal(arrays[k], v)
        assert arrays[k].dtype == v.dtype


def test_parquet_file_and_dataset(tmp_path):
    w = ParquetFile(tmp_path / "t.parquet", DTYPES, UNITS)
    w.write(_chunk(5))
    w.write(_chunk(5, 5))
    w.close()
    t = pq.read_table(tmp_path / "t.parquet")
    np.testing.assert_array_equal(t["a_TRUEID"].to_numpy(), np.arange(10))
    assert t.schema.field("a_PX").metadata == {b"unit": b"MeV"}
    d = open_ntuple(tmp_path / "ds", DTYPES, UNITS, fmt="parquet", compression="ZSTD")
    d.write(_chunk(5))
    d.write(_chunk(5, 5))
    d.close()
    assert sorted(p.name for p in (tmp_path / "ds").iterdir()) == ["part-00000.parquet", "part-00001.parquet"]
    np.testing.assert_array_equal(pq.read_table(tmp_path / "ds")["a_PX"].to_numpy(), _chunk(10)["a_PX"])
    with pytest.raises(ExportError, match="LZMA is not available for Parquet"):
        ParquetFile(tmp_path / "x.parquet", DTYPES, compression="LZMA")


def test_csv(tmp_path):
    w = CsvFile(tmp_path / "t.csv", DTYPES)
    w.write(_chunk(4))
    w.close()
    t = pacsv.read_csv(tmp_path / "t.csv")
    assert t.column_names == list(DTYPES)
    assert t.num_rows == 4
    with pytest.raises(ExportError, match="not compressed"):
        CsvFile(tmp_path / "u.csv", DTYPES, compression="ZSTD")


def test_abort_and_errors_leave_nothing(tmp_path):
    out = tmp_path / "t.root"
    w = RootFile(out, DTYPES, tree="T")
    w.write(_chunk(5))
    w.abort()
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ExportError, match="lacks column"), ParquetFile(tmp_path / "t.parquet", DTYPES) as p:
        p.write({"a_PX": np.zeros(3)})
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("fmt", ["root", "parquet", "csv"])
def test_ctrl_c_while_the_file_is_being_created_leaves_nothing(tmp_path, monkeypatch, fmt):
    """Ctrl-C inside the writer's constructor (uproot's mktree: seen when SIGINT hit 'mambah export' there)."""
    import pyarrow.csv
    import pyarrow.parquet
    import uproot.writing.writable

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    if fmt == "root":
        monkeypatch.setattr(uproot.writing.writable.WritableDirectory, "mktree", interrupted)
    else:  # the temporary file exists, then the interrupt arrives
        real = pyarrow.parquet.ParquetWriter if fmt == "parquet" else pyarrow.csv.CSVWriter

        def created_then_interrupted(where, *args, **kwargs):
            real(where, *args, **kwargs)
            raise KeyboardInterrupt

        target = pyarrow.parquet if fmt == "parquet" else pyarrow.csv
        monkeypatch.setattr(target, "ParquetWriter" if fmt == "parquet" else "CSVWriter", created_then_interrupted)
    with pytest.raises(KeyboardInterrupt):
        open_ntuple(tmp_path / f"t.{fmt}", DTYPES, UNITS)
    assert list(tmp_path.iterdir()) == []  # was: '.t.root.ficino-<pid>.tmp' left behind


def test_overwrite_replaces_only_at_close(tmp_path):
    out = tmp_path / "t.parquet"
    out.write_text("old")
    w = ParquetFile(out, DTYPES)
    w.write(_chunk(3))
    assert out.read_text() == "old"
    w.close()
    assert pq.read_table(out).num_rows == 3


def test_check_output(tmp_path):
    (tmp_path / "x.root").write_text("")
    with pytest.raises(ExportError, match="exists; pass overwrite"):
        check_output(tmp_path / "x.root", overwrite=False)
    check_output(tmp_path / "x.root", overwrite=True)
    with pytest.raises(ExportError, match="does not exist"):
        check_output(tmp_path / "no" / "x.root", overwrite=False)
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        import os

        if os.access(ro, os.W_OK):  # running as root: permissions do not bind
            pytest.skip("directory permissions are not enforced for this user")
        with pytest.raises(ExportError, match="not writable"):
            check_output(ro / "x.root", overwrite=False)
    finally:
        ro.chmod(0o700)


def test_root_basket_arrays_sized_to_the_chunks_to_come(tmp_path):
    """chunks=N: the tree's basket arrays hold N + 2 (uproot's default 10 is rewritten when 9 baskets fill);
    big-endian input is written as is, small chunks are copied while buffered (the caller may reuse them)."""
    for chunks, capacity in ((None, 100), (12, 14)):
        w = RootFile(tmp_path / f"{chunks}.root", DTYPES, UNITS, basket_rows=10, chunks=chunks)
        reused = _chunk(5)
        for i in range(24):  # 5 rows each: a basket every second chunk, 12 baskets
            c = _chunk(5, 5 * i)
            if i % 2 == 0:  # buffered (5 < 10 rows), then its arrays are overwritten before the flush
                for k in reused:
                    reused[k][...] = c[k]
                w.write(reused)
                for k in reused:
                    reused[k][...] = -1
            else:
                w.write({k: v.astype(v.dtype.newbyteorder(">")) for k, v in c.items()})
        w.close()
        with uproot.open(tmp_path / f"{chunks}.root") as f:
            tree = f["DecayTree"]
            arrays = tree.arrays(library="np")
            assert tree["a_PX"].member("fMaxBaskets") == capacity and tree["a_PX"].num_baskets == 12
        want = _chunk(120)
        for k, v in want.items():
            np.testing.assert_array_equal(arrays[k], v)
