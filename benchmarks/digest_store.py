"""Bit-exact digests of every table of a store (for before/after checks of a speed change).

Run: ``python benchmarks/digest_store.py STORE.duckdb [--json OUT]``

Each table is read ordered by all its columns and hashed column by column from its Arrow
buffers (floats bit for bit, NULLs by their validity), so a change of one last ulp in any
value changes the table's digest (``tests/test_reproducible_digest.py`` prints floats with
9 significant digits and pins only five tables).  Prints ``{table: sha256[:16]}`` as JSON.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path


def table_digests(path: Path) -> dict[str, str]:
    """``{table: digest}`` of every base table of the store at ``path``."""
    import numpy as np

    import mambah

    out: dict[str, str] = {}
    with mambah.EventStore.open(path, read_only=True) as s:
        names = [r["table_name"] for r in s.query(
            "SELECT table_name FROM information_schema.tables WHERE table_type = 'BASE TABLE' ORDER BY table_name").to_pylist()]
        for name in names:
            t = s.query(f'SELECT * FROM "{name}" ORDER BY ALL')
            h = hashlib.sha256(f"{name}:{t.num_rows}".encode())
            for col_name in t.column_names:
                col = t.column(col_name).combine_chunks()
                h.update(col_name.encode() + str(col.type).encode())
                if hasattr(col, "flatten") and str(col.type).startswith("list"):
                    h.update(np.asarray(col.offsets).tobytes())
                    col = col.flatten()
                valid = np.asarray(col.is_valid())
                h.update(valid.tobytes())
                vals = col.to_numpy(zero_copy_only=False)
                if vals.dtype == object:
                    h.update(repr(vals.tolist()).encode())
                else:
                    h.update(np.where(valid, vals, np.zeros(1, vals.dtype)).tobytes() if vals.dtype.kind in "fiub" else vals.tobytes())
            out[name] = h.hexdigest()[:16]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("store", type=Path)
    ap.add_argument("--json", type=Path, help="also write the digests here")
    args = ap.parse_args()
    d = table_digests(args.store)
    text = json.dumps(d, indent=1, sort_keys=True)
    if args.json:
        args.json.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
