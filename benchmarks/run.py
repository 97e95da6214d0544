"""Run every Mambah benchmark in one command: ``python benchmarks/run.py [--quick]``.

Each ``bench_*.py`` measures Mambah against a baseline in the same run and prints
its ratio; see ``benchmarks/README.md`` for recorded figures.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).parent
QUICK = {"bench_generation.py": ["--events", "100000"]}


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="shorter runs where a benchmark has a quick setting")
    parser.add_argument("--only", nargs="+", metavar="NAME", help="run only these benchmarks (e.g. chain calorimeter)")
    opts = parser.parse_args()
    status = 0
    for script in sorted(HERE.glob("bench_*.py")):
        if opts.only and script.stem.removeprefix("bench_") not in opts.only:
            continue
        print(f"\n## {script.name}\n", flush=True)
        args = QUICK.get(script.name, []) if opts.quick else []
        rc = subprocess.call([sys.executable, str(script), *args])
        status = status or rc
    return status


if __name__ == "__main__":
    sys.exit(main())
