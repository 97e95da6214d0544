"""Export: the default sample to a ROOT ntuple and a Parquet dataset, read back with uproot and pandas.

Generates the default job (``--events``, into ``--store`` unless it exists),
exports the Lambda_b0 -> (Lambda_c+ -> p+ K- pi+) mu- anti-nu_mu candidates
with Ficino to ``<out>/sample.root`` (TTree ``DecayTree``) and to the Parquet
dataset ``<out>/sample_parquet/``, reads both back and checks they agree.

    python examples/03_export.py                         # 20 000 events, outputs in ./export/
    python examples/03_export.py --store mambah.duckdb --out /tmp/ntuples

The command-line equivalent is ``mambah export``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing
sys.path.insert(0, str(Path(__file__).resolve().parent))

from mambah.quiet import quiet_tensorflow

quiet_tensorflow()  # before anything imports TensorFlow: its C++ start-up lines are held back

from _sample import make_sample


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--store", default="export_sample.duckdb", help="store to export (generated if missing)")
    ap.add_argument("--events", type=int, default=20_000, help="events to generate if --store is missing")
    ap.add_argument("--seed", type=int, default=3)
    ap.add_argument("--out", default="export", help="directory of the outputs")
    args = ap.parse_args(argv)

    import numpy as np
    import pandas as pd
    import uproot

    import ficino
    import mambah

    store_path, out = Path(args.store), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if not store_path.exists():
        print(f"generating {args.events} events into {store_path} ...")
        make_sample(store_path, args.events, args.seed)

    with mambah.EventStore.open(store_path, read_only=True) as store:
        reco = store.count("protoparticles") > 0  # detector passes ran: export reconstructed candidates only
        root = ficino.export(store, out / "sample.root", reconstructed_only=reco, overwrite=True)
        pq = ficino.export(store, out / "sample_parquet", fmt="parquet", reconstructed_only=reco, overwrite=True)
    for s in (root, pq):
        print(f"{s.format:>7}: {s.rows} rows x {len(s.columns)} columns, {s.bytes / 1e6:.2f} MB, {s.seconds:.2f} s -> {s.path}")

    # read back: ROOT with uproot, Parquet with pandas
    with uproot.open(out / "sample.root") as f:
        tree = f["DecayTree"]
        print(f"uproot: DecayTree with {tree.num_entries} entries; branches {', '.join(tree.keys()[:6])}, ...")
        from_root = tree.arrays(library="pd")
    from_parquet = pd.read_parquet(out / "sample_parquet")
    print(f"pandas: {len(from_parquet)} rows from the Parquet dataset")
    keys = [c for c in ("batch", "event") if c in from_root.columns]
    a = from_root.sort_values(keys).reset_index(drop=True) if keys else from_root
    b = from_parquet.sort_values(keys).reset_index(drop=True) if keys else from_parquet
    common = [c for c in a.columns if c in b.columns and np.issubdtype(a[c].dtype, np.number)]
    same = len(a) == len(b) and all(np.allclose(a[c], b[c], equal_nan=True) for c in common)
    print(f"ROOT and Parquet agree on {len(common)} numeric columns: {same}")
    show = [c for c in ("Lb_TRUEPT", "Lb_PT", "Lc_M", "mu_PT", "Lc_FD") if c in b.columns and b[c].notna().any()]
    if show:
        print(b[show].describe().loc[["mean", "std"]].round(2).to_string())
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
