"""Run every Mambah benchmark in one command: ``python benchmarks/run.py [--quick]``.

Each ``bench_*.py`` measures Mambah against a baseline in the same run and prints
its ratio; see ``benchmarks/README.md`` for recorded figures.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).parent
QUICK = {"bench_generation.py": ["--events", "100000"]}


def main() -> int:
    quick = "--quick" in sys.argv[1:]
    status = 0
    for script in sorted(HERE.glob("bench_*.py")):
        print(f"\n## {script.name}\n", flush=True)
        args = QUICK.get(script.name, []) if quick else []
        rc = subprocess.call([sys.executable, str(script), *args])
        status = status or rc
    return status


if __name__ == "__main__":
    sys.exit(main())
