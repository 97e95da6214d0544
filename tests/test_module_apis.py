"""Public names of each package, pinned: API changes must be deliberate."""

from __future__ import annotations

import subprocess
import sys

import mambah


def test_mambah_api():
    assert dir(mambah) == [
        "BatchRecord",
        "ConfigError",
        "DATA_TABLES",
        "DataError",
        "DecayError",
        "DecayNode",
        "DistributedError",
        "EventStore",
        "ExportError",
        "METADATA",
        "MambahError",
        "ModelError",
        "SCHEMA_VERSION",
        "SchemaVersionError",
        "StoreError",
        "StoreExistsError",
        "TABLES",
        "TrainingError",
        "UnknownParticleError",
        "__version__",
        "daughters",
        "default_aliases",
        "descendants",
        "lookup_particle",
        "match_decay",
        "mother",
        "parse_descriptor",
    ]


def test_sim_api():
    import sim

    assert dir(sim) == [
        "Acceptance",
        "Batch",
        "BatchContext",
        "DEFAULT_DECAY",
        "DaskExecutor",
        "DecayModel",
        "DetectorCard",
        "Efficiency",
        "FixedMomentum",
        "Generator",
        "HeavyHadronSpectrum",
        "LuminousRegion",
        "Occupancy",
        "PID",
        "Pass",
        "Pipeline",
        "Resolution",
        "RunConfig",
        "RunSummary",
        "SerialExecutor",
        "UniformSpectrum",
        "batch_seed",
        "default_pipeline",
        "fit_vertices",
        "generate_tables",
        "load_decay",
        "load_pid_models",
        "make_reference_sample",
        "run",
        "run_distributed",
        "sample_primary_vertices",
    ]


def test_ficino_api():
    import ficino

    assert dir(ficino) == [
        "DEFAULT_DECAY",
        "ExportSummary",
        "NtupleWriter",
        "VARIABLES",
        "Variable",
        "VertexResolution",
        "decay_spec",
        "export",
        "register",
        "to_csv",
        "to_parquet",
        "to_root",
    ]


def test_errors_share_one_base():
    for name in mambah.__all__:
        obj = getattr(mambah, name)
        if isinstance(obj, type) and issubclass(obj, Exception):
            assert issubclass(obj, mambah.MambahError), name


def test_light_imports():
    """``import mambah`` and ``import sim`` do not import TensorFlow."""
    code = "import sys, mambah, sim, ficino; bad = [m for m in ('tensorflow', 'keras', 'zfit', 'phasespace') if m in sys.modules]; print(bad); sys.exit(bool(bad))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
