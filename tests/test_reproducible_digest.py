"""A small default job's tables, pinned by their digests.

The layout move of this round (issue #11) was checked this way: a 3000-event default
run gave identical digests of every table before and after it.  The pin below is the
digest of the final chain; it fails on any change of a shipped model, a pass or the
random streams — update it (with the reason in the commit) only when that change is
intended.

The networks' float32 matrix products go through numpy's OpenBLAS, which picks its
kernels for the CPU it finds: the AVX-512 (SkylakeX) kernels sum in another order than
the AVX2 (Haswell) ones, and the last bit of a product that moves flips a digit of the
protoparticles' 9-digit print or a rounding to 1e-2 (found on 3 December 2026: an
AVX-512 host gave protoparticles ``e741747e47048479``, the AVX2 CI host the pin).  The
physics is the same to float32 precision on either; the pin is a regression check of the
code, so the job runs in a child process with ``OPENBLAS_CORETYPE=Haswell``, the kernel
every x86-64 host since 2013 runs.  That the kernel is what moved the digest is tested
below too (the pin holds on either kernel for every table but protoparticles).
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys

import pytest

#: sha256 (first 16 hex digits) of each table of default_pipeline(events=1000, batch_size=500, seed=7),
#: rows ordered by every column, floats printed with 9 significant digits, OpenBLAS's Haswell kernels.
PINNED: dict[str, str] = {
    "events": "064715a87ecded5a",
    "mc_particles": "f5b3fbe819fea724",
    "mc_vertices": "db3942102e87d4fd",
    "protoparticles": "ea0a367dd44fbb3c",
    "vertices": "316fc2d628afb1d9",
}

_JOB = """
import hashlib, json
import mambah
from sim import run
from sim.defaults import default_pipeline
from threadpoolctl import threadpool_info

store = mambah.EventStore.memory()
run(default_pipeline(events=1000, batch_size=500, seed=7), store=store, progress=False)
out = {}
for table in ("events", "mc_particles", "mc_vertices", "protoparticles", "vertices"):
    df = store.query_df(f"SELECT * FROM {table} ORDER BY ALL")
    out[table] = hashlib.sha256(df.to_csv(index=False, float_format="%.9g").encode()).hexdigest()[:16]
store.close()
kernels = sorted({str(i.get("architecture")) for i in threadpool_info() if i.get("internal_api") == "openblas"})
print(json.dumps({"digests": out, "kernels": kernels}))
"""


def _digests(coretype: str | None) -> tuple[dict[str, str], list[str]]:
    env = dict(os.environ)
    env.pop("OPENBLAS_CORETYPE", None)
    if coretype is not None:
        env["OPENBLAS_CORETYPE"] = coretype
    done = subprocess.run([sys.executable, "-c", _JOB], env=env, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return result["digests"], result["kernels"]


x86_only = pytest.mark.skipif(
    platform.machine().lower() not in {"x86_64", "amd64"},
    reason="OPENBLAS_CORETYPE=Haswell names an x86-64 kernel; the pin was made with it",
)


@pytest.mark.slow
@x86_only
def test_default_job_digests_are_pinned() -> None:
    digests, kernels = _digests("Haswell")
    assert kernels == ["Haswell"], f"OpenBLAS ran {kernels}, not the pin's Haswell kernels"
    assert digests == PINNED


@pytest.mark.slow
@x86_only
def test_only_the_networks_tables_follow_the_blas_kernel() -> None:
    """On the host's own kernels every table without network outputs keeps its pin."""
    digests, _ = _digests(None)
    assert {k: v for k, v in digests.items() if k != "protoparticles"} == {
        k: v for k, v in PINNED.items() if k != "protoparticles"
    }
