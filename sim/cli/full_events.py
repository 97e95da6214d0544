"""``mambah run --pythia PRESET`` / ``--hepmc FILE ...``: the default job with a full-event generator.

The first ``generator`` pass of the pipeline is replaced by :class:`~sim.generation.pythia.Pythia`
or :class:`~sim.generation.hepmc.HepMCInput`; the detector passes stay, and
:class:`~sim.detector.full_occupancy.TrackCount` follows the efficiency pass (nTracks of a
full event = its reconstructed Long + Downstream tracks).  Full events hold
about a thousand particles each, so the batch size defaults to :data:`FULL_EVENT_BATCH`
instead of the gun's 25 000.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from mambah.errors import ConfigError, DataError
from sim.core.pipeline import Pass, Pipeline

__all__ = ("FULL_EVENT_BATCH", "full_event_pipeline")

#: Default events per batch for full events (≈ 1 000 particles per event).
FULL_EVENT_BATCH = 500

#: ``mambah run`` options of the particle gun's generator pass (flag, argparse key), refused with
#: --pythia/--hepmc: neither full-event pass has these fields
_GUN_OPTIONS: tuple[tuple[str, str], ...] = (
    ("--spectrum", "spectrum"),
    ("--cc-fraction", "cc_fraction"),
    ("--decay-table", "decay_table"),
    ("--unsupported-models", "unsupported_models"),
    ("--table-unsupported-models", "table_unsupported_models"),
)


def _check_replaced_generator(gen: Pass, source: str) -> None:
    """Refuse replacing a generator pass whose settings differ from the default job's (a --config gave them).

    Raises:
        ConfigError: naming the settings the full-event pass would drop.
    """
    from sim.defaults import default_pipeline

    default = next(p for p in default_pipeline().passes if p.kind == "generator")
    changed = [f.name for f in dataclasses.fields(gen) if getattr(gen, f.name) != getattr(default, f.name, None)]
    if changed:
        raise ConfigError(
            f"{source} replaces the config's generator pass {gen.name!r}, whose {', '.join(changed)} it would drop; "
            f"leave them at their defaults, or write a [[passes]] kind = \"{source.lstrip('-')}\" pass in the config "
            f"instead of {source}"
        )


def full_event_pipeline(pipeline: Pipeline, args: argparse.Namespace) -> Pipeline:
    """``pipeline`` with its generator replaced as ``args.pythia`` / ``args.hepmc`` ask.

    Args:
        pipeline: the job (run settings from the command line already applied).
        args: ``mambah run`` arguments: ``pythia, hepmc, decay, dec_file, mother, events, batch_size`` and
            (optional) ``daughters_in_acceptance``: Gauss' ``DaughtersInLHCb`` cut on the signal, and
            ``redecay``: events per Pythia event (ReDecay).

    Raises:
        ConfigError: both generators asked, no generator pass, --dec-file with --hepmc, or the
            acceptance cut without a signal.
        DataError: more events asked than the HepMC files hold (or a bad file).
    """
    if args.pythia and args.hepmc:
        raise ConfigError("give only one of --pythia and --hepmc")
    gun_only = [flag for flag, key in _GUN_OPTIONS if getattr(args, key, None) is not None]
    if gun_only:  # the Pythia and HepMC passes have no such field: they would be dropped without a word
        source = "--pythia" if args.pythia is not None else "--hepmc"
        raise ConfigError(
            f"{', '.join(gun_only)} set(s) the particle gun's generator; {source} replaces it with a pass that has "
            f"no such setting: drop {'it' if len(gun_only) == 1 else 'them'}"
        )
    gens = [p for p in pipeline.passes if p.kind == "generator"]
    if not gens:
        raise ConfigError("the pipeline has no generator pass to replace with --pythia/--hepmc")
    _check_replaced_generator(gens[0], "--pythia" if args.pythia is not None else "--hepmc")
    batch = args.batch_size or FULL_EVENT_BATCH
    cut = bool(getattr(args, "daughters_in_acceptance", False))
    if cut and not (args.decay or (args.dec_file and not args.hepmc)):
        raise ConfigError("--daughters-in-acceptance needs a signal: add --decay DESCRIPTOR" + ("" if args.hepmc else " or --dec-file FILE"))
    gen: Pass
    redecay = getattr(args, "redecay", None)
    if redecay and args.hepmc:
        raise ConfigError("--redecay applies to --pythia only (the HepMC files hold their events as they are)")
    if args.hepmc:
        from sim.generation.hepmc import HepMCInput

        if args.dec_file:
            raise ConfigError("--dec-file does not apply to --hepmc (the file holds the decays); flag the signal with --decay DESCRIPTOR")
        hep = HepMCInput(files=tuple(args.hepmc), batch_size=batch, signal=args.decay, daughters_in_acceptance=cut)
        total = hep.n_events()
        events = args.events or total
        if events > total:
            raise DataError(f"the HepMC input holds {total} events; --events {events} asks for more")
        gen = hep
    else:
        from sim.generation.pythia import Pythia

        gen = Pythia(
            preset=args.pythia, decay=args.decay,
            dec_file=str(Path(args.dec_file).resolve()) if args.dec_file else None, mother=args.mother,
            daughters_in_acceptance=cut, redecay=redecay or 1,
        )
        events = args.events or pipeline.run.events
    run = dataclasses.replace(pipeline.run, events=events, batch_size=batch)
    passes: list[Pass] = []
    for p in pipeline.passes:
        passes.append(gen if p is gens[0] else p)
        if p.kind == "efficiency" and not any(q.kind == "track_count" for q in pipeline.passes):
            from sim.detector.full_occupancy import TrackCount

            passes.append(TrackCount())  # nTracks = reconstructed Long + Downstream tracks, before resolution and PID
    return Pipeline(tuple(passes), run)
