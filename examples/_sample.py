"""Shared by the examples: generate a small sample of the default job into a store."""

from __future__ import annotations

from pathlib import Path


def make_sample(path: Path, events: int, seed: int) -> bool:
    """The default job (generator + detector passes) into ``path``; MC truth only if its models are missing.

    Returns:
        Whether the detector passes ran (the store has ``protoparticles``).
    """
    from mambah.errors import MambahError
    from sim import Generator, Pipeline, RunConfig, run
    from sim.core.pipeline import build_kernels
    from sim.defaults import default_pipeline

    cfg = RunConfig(events=events, batch_size=min(events, 10_000), seed=seed)
    pipeline = Pipeline(default_pipeline().passes, cfg)
    detector = True
    try:
        build_kernels(pipeline)
    except MambahError as err:  # e.g. detector models not trained on this checkout
        print(f"(default job not buildable here: {err}; generating MC truth only)")
        pipeline, detector = Pipeline((Generator(),), cfg), False
    run(pipeline, path, overwrite=True, progress=False)
    return detector
