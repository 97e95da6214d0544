"""A Python session on a Mambah store: SQL and pandas queries, a decay tree, a mass plot.

Opens ``--store`` (or first generates a small sample of the default job,
Lambda_b0 -> (Lambda_c+ -> p+ K- pi+) mu- anti-nu_mu, into ``--store``), then:

1. counts with SQL (DuckDB) and with pandas;
2. walks the decay tree of one Lambda_b0 with ``mambah.daughters`` /
   ``mambah.descendants`` and flattens all candidates with ``mambah.match_decay``;
3. plots the p K- pi+ invariant mass with mplhep into ``--plot``: reconstructed
   from the matched tracks (``protoparticles``) when the store has them, else
   the true visible mass m(Lambda_c+ mu-).

    python examples/01_session.py                        # 20 000 events into session.duckdb, plot session_mass.png
    python examples/01_session.py --store mambah.duckdb  # any existing store
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

DECAY = "Lambda_b0 -> (Lambda_c+ -> p+ K- pi+) mu- anti-nu_mu"
MASS = {"p": 938.272, "K": 493.677, "pi": 139.570}  # MeV


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--store", default="session.duckdb", help="store to open (generated if missing)")
    ap.add_argument("--events", type=int, default=20_000, help="events to generate if --store is missing")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--plot", default="session_mass.png", help="PNG to write")
    args = ap.parse_args(argv)

    import numpy as np

    import mambah

    store_path = Path(args.store)
    if not store_path.exists():
        print(f"generating {args.events} events into {store_path} ...")
        make_sample(store_path, args.events, args.seed)

    with mambah.EventStore.open(store_path, read_only=True) as store:
        # 1. SQL on the store (DuckDB), results as Arrow or pandas
        print(store.query_df("SELECT count(*) AS events, avg(pv_z) AS mean_pv_z_mm FROM events").to_string(index=False))
        top = store.query_df(
            "SELECT pid, count(*) AS n, avg(sqrt(px*px + py*py)) AS mean_pt_MeV FROM mc_particles GROUP BY pid ORDER BY n DESC, pid LIMIT 8"
        )
        print(top.to_string(index=False))
        #    ... or pull a table into pandas and work there
        mc = store.table("mc_particles", batch=0, columns=["event", "pid", "pz", "e"]).to_pandas()
        print("mean energy per species in batch 0 [MeV]:", mc.groupby("pid")["e"].mean().round(0).to_dict())

        # 2. the decay tree of the first Lambda_b0 of batch 0
        lb = store.query("SELECT event, \"index\" FROM mc_particles WHERE batch = 0 AND abs(pid) = 5122 LIMIT 1").to_pylist()[0]
        where = f"m.event = {lb['event']} AND m.\"index\" = {lb['index']}"
        print("daughters:", mambah.daughters(store, where, batch=0).column("pid").to_pylist())
        print("descendants:", mambah.descendants(store, where, batch=0).column("pid").to_pylist())
        cands = mambah.match_decay(store, DECAY).to_pandas()  # one row per candidate: Lb_*, Lc_*, mu_*, p_*, K_*, pi_*
        print(f"{len(cands)} candidates of {DECAY}; columns like {', '.join(cands.columns[:6])} ...")

        # 3. a mass: reconstructed p K pi from matched tracks if the store has them, else true m(Lc mu)
        if store.count("protoparticles") > 0:
            reco = store.query_df(
                "SELECT batch, event, mc_particle, px, py, pz FROM protoparticles WHERE track_type = 3"
                " AND mc_particle >= 0"  # truth-matched tracks (ghosts have mc_particle = -1)
            )
            e_tot = np.zeros(len(cands))
            p_tot = np.zeros((len(cands), 3))
            ok = np.ones(len(cands), bool)
            keyed = reco.set_index(["batch", "event", "mc_particle"])
            for name, m in MASS.items():
                idx = list(zip(cands["batch"], cands["event"], cands[f"{name}_index"]))
                trk = keyed.reindex(idx)
                ok &= trk["px"].notna().to_numpy()
                mom = trk[["px", "py", "pz"]].to_numpy(float)
                p_tot += np.nan_to_num(mom)
                e_tot += np.sqrt(np.nansum(mom**2, axis=1) + m**2)
            mass = np.sqrt(np.maximum(e_tot**2 - (p_tot**2).sum(axis=1), 0))[ok]
            label, bins = r"reconstructed $m(pK^-\pi^+)$ [MeV]", np.linspace(2200, 2370, 60)
        else:
            e = cands["Lc_e"] + cands["mu_e"]
            px, py, pz = (cands[f"Lc_{c}"] + cands[f"mu_{c}"] for c in ("px", "py", "pz"))
            mass = np.sqrt(np.maximum(e**2 - px**2 - py**2 - pz**2, 0)).to_numpy()
            label, bins = r"true $m(\Lambda_c^+\mu^-)$ [MeV]", np.linspace(2300, 5700, 60)
    print(f"{len(mass)} entries, mean {np.mean(mass):.1f} MeV")

    import matplotlib as mpl

    mpl.use("Agg")
    import matplotlib.pyplot as plt
    import mplhep as hep

    plt.style.use(hep.style.LHCb2)
    counts, edges = np.histogram(mass, bins=bins)
    fig, ax = plt.subplots()
    hep.histplot(counts, edges, yerr=True, histtype="errorbar", ax=ax, label="Mambah")
    ax.set_ylim(0, 1.25 * max(counts.max(), 1))
    ax.set_xlabel(label)
    ax.set_ylabel("candidates / bin")
    ax.legend()
    fig.savefig(args.plot)
    plt.close(fig)
    print(f"wrote {args.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
