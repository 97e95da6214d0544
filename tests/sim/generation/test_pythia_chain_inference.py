"""A full-event run (Pythia + the default detector passes) runs its networks without TensorFlow."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("pythia8mc")


def test_full_event_run_does_not_import_tensorflow(tmp_path: Path) -> None:
    code = (
        "import argparse, sys\n"
        "import mambah\n"
        "from sim.cli.full_events import full_event_pipeline\n"
        "from sim.core.runner import run\n"
        "from sim.defaults import default_pipeline\n"
        "args = argparse.Namespace(pythia='bbbar', hepmc=None, decay='[B+ -> (J/psi -> mu+ mu-) K+]cc', dec_file=None,\n"
        "                          mother=None, events=12, batch_size=12)\n"
        "pipe = full_event_pipeline(default_pipeline(), args)\n"
        f"run(pipe, {str(tmp_path / 'full.duckdb')!r}, progress=False)\n"
        f"with mambah.EventStore.open({str(tmp_path / 'full.duckdb')!r}, read_only=True) as s:\n"
        "    n = s.query('SELECT count(*) AS n FROM protoparticles').to_pylist()[0]['n']\n"
        "    e = s.query('SELECT count(*) AS n FROM calo_clusters').to_pylist()[0]['n']\n"
        "print(n > 0, e > 0, 'tensorflow' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=Path(__file__).parents[3])
    assert out.returncode == 0, out.stderr[-2000:]
    # tracks and calorimeter clusters were made, by networks that ran in numpy
    assert out.stdout.split()[-3:] == ["True", "True", "False"], out.stdout
