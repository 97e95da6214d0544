"""The generator pass: particle gun + the decay engine → events, mc_particles, mc_vertices.

Everything is vectorised over the batch: the gun draws all heads at once, the
decay engine (:mod:`sim.generation.decay`) draws complete trees (user chains
completed by the decay table) per (particle, mode) group, and the tree
bookkeeping (indices, mother/daughter links, vertices) is numpy array arithmetic.
Every random number comes from the batch's stream (``ctx.rng(name)``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import pyarrow as pa

from mambah.errors import ConfigError
from sim.core.pipeline import BatchContext, Kernel, Pass
from sim.core.registry import register_pass
from sim.generation.decay import DESCRIPTOR_MODELS, DecayModel, load_decay
from sim.generation.dectable import DEFAULT_STABLE, POLICIES, SHIPPED_TABLES, table_path
from sim.generation.gun import (
    SPECTRA,
    FixedMomentum,
    HeavyHadronSpectrum,
    LuminousRegion,
    UniformSpectrum,
    sample_primary_vertices,
)

if TYPE_CHECKING:
    from sim.generation.gun import Spectrum

__all__ = ("DEFAULT_DECAY", "SPECTRUM_CHOICES", "Generator", "generate_tables", "spectrum_for")

#: The default signal: semileptonic Λb0 decay with Λc+ → p K− π+.
DEFAULT_DECAY = "Lambda_b0 -> (Lambda_c+ -> p+ K- pi+) mu- anti-nu_mu"

#: ``--spectrum`` choices → spectrum configs (parameters through ``--config``)
SPECTRUM_CHOICES: dict[str, Any] = {
    "b": lambda: HeavyHadronSpectrum(flavour="b"),
    "c": lambda: HeavyHadronSpectrum(flavour="c"),
    "uniform": UniformSpectrum,
    "fixed": FixedMomentum,
}


def spectrum_for(pid: int) -> HeavyHadronSpectrum:
    """The heavy-hadron spectrum that follows a head: b content → b, else c content → c.

    Raises:
        ConfigError: a head with neither (set ``spectrum`` / ``--spectrum``).
    """
    from particle import PDGID

    p = PDGID(pid)
    if p.has_bottom:
        return HeavyHadronSpectrum(flavour="b")
    if p.has_charm:
        return HeavyHadronSpectrum(flavour="c")
    raise ConfigError(
        f"the head (PDG id {pid}) is neither a b nor a c hadron: choose its spectrum "
        f"(--spectrum {'|'.join(SPECTRUM_CHOICES)}, or spectrum in the config)"
    )


@register_pass
@dataclass(frozen=True)
class Generator(Pass):
    """Particle gun plus complete decay trees.

    Args:
        name: pass name.
        decay: decay descriptor (ignored when ``dec_file`` is given); ``[...]cc`` for both states.
        dec_file: EvtGen DecFile; all modes of ``mother`` with their branching fractions
            (a Decay/CDecay block of the conjugate adds the charge-conjugate decay).
        mother: decaying particle of ``dec_file`` (default: its first Decay block).
        spectrum: head kinematics (see :mod:`sim.generation.gun`), or ``"auto"``:
            the heavy-hadron spectrum of the head's flavour (b, else c).
        luminous_region: primary-vertex distribution [mm, ns].
        particles_per_event: gun particles (signal decays) per event.
        cc_fraction: fraction of charge-conjugate decays when CC is asked (``[...]cc``, CDecay).
        decay_table: table completing undecayed particles: ``DECAY_LHCB.DEC``,
            ``DECAY_BELLE2.DEC`` (shipped with decaylanguage) or a DecFile path.
        stable: particles the table leaves undecayed (antiparticles implied).
        width_tolerance: non-head particles wider than this [MeV] get Breit–Wigner masses.
        unsupported_models: ``error | phase-space | skip`` for models the user wrote that
            the engine cannot honour (phase-space: one warning line per model).
        table_unsupported_models: the same for the table's modes (default phase-space,
            one warning line per model; ``error`` to refuse).
        descriptor_models: ``physical`` (default): the descriptor's semileptonic decays
            get a form-factor model — the default Λb0 → Λc+ μ− ν̄ is BaryonPCR, unpolarised
            (:func:`sim.generation.decay.descriptor_form_factor`) — and its two-body decays
            with spin the decay table's helicity model (B+ → J/ψ K+: SVS;
            :func:`sim.generation.decay.descriptor_spin_model`); ``phase-space``: every
            decay the descriptor writes is PHSP.  Ignored with ``dec_file`` (its lines name their models).

    Writes ``events`` (PV), ``mc_particles``, ``mc_vertices``.
    """

    kind: ClassVar[str] = "generator"
    concurrent: ClassVar[bool] = True
    reads: ClassVar[tuple[str, ...]] = ()
    writes: ClassVar[tuple[str, ...]] = ("events", "mc_particles", "mc_vertices")

    name: str = "generator"
    decay: str = DEFAULT_DECAY
    dec_file: str | None = None
    mother: str | None = None
    spectrum: Any = "auto"
    luminous_region: LuminousRegion = field(default_factory=LuminousRegion)
    particles_per_event: int = 1
    cc_fraction: float = 0.5
    decay_table: str = "DECAY_LHCB.DEC"
    stable: tuple[str, ...] = DEFAULT_STABLE
    width_tolerance: float = 0.1
    unsupported_models: str = "error"
    table_unsupported_models: str = "phase-space"
    descriptor_models: str = "physical"

    def __post_init__(self) -> None:
        n = self.particles_per_event
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ConfigError(f"particles_per_event must be a positive integer, got {n!r}")
        if isinstance(self.spectrum, str):
            if self.spectrum != "auto" and self.spectrum not in SPECTRUM_CHOICES:
                raise ConfigError(f"spectrum {self.spectrum!r} is not 'auto', {', '.join(SPECTRUM_CHOICES)} or a spectrum table ({', '.join(SPECTRA)})")
            if self.spectrum in SPECTRUM_CHOICES:
                object.__setattr__(self, "spectrum", SPECTRUM_CHOICES[self.spectrum]())
        elif not hasattr(self.spectrum, "sample"):
            raise ConfigError(f"spectrum must be a spectrum config or 'auto', got {self.spectrum!r}")
        f = self.cc_fraction
        if isinstance(f, bool) or not isinstance(f, int | float) or not (0.0 <= f <= 1.0):
            raise ConfigError(f"cc_fraction must be a number in [0, 1], got {f!r}")
        for key in ("unsupported_models", "table_unsupported_models"):
            if getattr(self, key) not in POLICIES:
                raise ConfigError(f"{key} must be one of {', '.join(POLICIES)}, got {getattr(self, key)!r}")
        if self.descriptor_models not in DESCRIPTOR_MODELS:
            raise ConfigError(f"descriptor_models must be one of {', '.join(DESCRIPTOR_MODELS)}, got {self.descriptor_models!r}")
        if not isinstance(self.stable, tuple) or not all(isinstance(s, str) for s in self.stable):
            raise ConfigError(f"stable must be a list of particle names, got {self.stable!r}")
        if not isinstance(self.decay_table, str) or not self.decay_table:
            raise ConfigError(f"decay_table must be {' or '.join(SHIPPED_TABLES)} or a DecFile path, got {self.decay_table!r}")
        w = self.width_tolerance
        if isinstance(w, bool) or not isinstance(w, int | float) or not (w >= 0 and math.isfinite(w)):
            raise ConfigError(f"width_tolerance must be a number >= 0 [MeV], got {w!r}")

    def load(self) -> DecayModel:
        """The decay model (parses and checks the decay, resolves the table completions).

        Raises:
            DecayError: a malformed or unphysical decay, or a ``decay_table`` that is neither
                shipped nor an existing file (refused even when no particle needs the table).
        """
        table_path(self.decay_table)
        opts: dict[str, Any] = {
            "stable": self.stable, "decay_table": self.decay_table, "width_tolerance": float(self.width_tolerance),
            "unsupported_models": self.unsupported_models, "table_unsupported_models": self.table_unsupported_models,
        }
        if self.dec_file is not None:
            return load_decay(dec_file=self.dec_file, mother=self.mother, **opts)
        return load_decay(self.decay, descriptor_models=self.descriptor_models, **opts)

    def resolved_spectrum(self, model: DecayModel) -> Spectrum:
        """The spectrum used: the configured one, or the one that follows the head."""
        return spectrum_for(model.head.pid) if isinstance(self.spectrum, str) else self.spectrum  # type: ignore[no-any-return]

    def build(self) -> Kernel:
        model = self.load()
        model.prepare()  # presampled accept-reject bounds, before any batch
        spectrum = self.resolved_spectrum(model)
        region, k, name, ccf = self.luminous_region, self.particles_per_event, self.name, float(self.cc_fraction)

        def kernel(ctx: BatchContext) -> None:
            b = ctx.batch
            tables = generate_tables(model, b.n_events, ctx.rng(name), spectrum=spectrum, region=region, particles_per_event=k, cc_fraction=ccf)
            for tname, tab in tables.items():
                ctx.insert(tname, tab.append_column("batch", pa.array(np.full(tab.num_rows, b.batch, np.int32))))

        return kernel


def generate_tables(
    model: DecayModel,
    n_events: int,
    rng: np.random.Generator,
    *,
    spectrum: Spectrum | None = None,
    region: LuminousRegion = LuminousRegion(),
    particles_per_event: int = 1,
    cc_fraction: float = 0.5,
) -> dict[str, pa.Table]:
    """Generate one batch: Arrow tables ``events``, ``mc_particles``, ``mc_vertices`` (no batch column).

    Args:
        model: the decay model.
        n_events: number of events.
        rng: numpy generator (everything random derives from it).
        spectrum: gun kinematics; default: the heavy-hadron spectrum of the head's flavour.
        region: luminous region.
        particles_per_event: signal decays per event.
        cc_fraction: fraction of charge-conjugate heads when the model has CC.

    Returns:
        Tables keyed by name; momenta [MeV], positions [mm], times [ns].  Particles
        of an event: its instances one after the other, each breadth-first
        (daughters of a particle contiguous); vertex 0 is the PV, then one decay
        vertex per decaying particle in particle order.
    """
    spectrum = spectrum if spectrum is not None else spectrum_for(model.head.pid)
    k = particles_per_event
    n_inst = n_events * k
    pv = sample_primary_vertices(n_events, rng, region)
    head_mass = model.head.mass
    px, py, pz = spectrum.sample(n_inst, head_mass, rng)
    head = np.stack([px, py, pz, np.sqrt(px**2 + py**2 + pz**2 + head_mass**2)], axis=1)
    roots = model.sample_heads(n_inst, rng, cc_fraction)
    engine = model.engine
    rows = engine.generate(roots, head, rng)
    event_of_inst = np.arange(n_inst) // k
    pv4 = np.stack([pv["pv_x"], pv["pv_y"], pv["pv_z"], pv["pv_t"]], axis=1)
    _prod, dec = engine.decay_positions(rows, pv4[event_of_inst], rng)
    R = len(rows.inst)
    event = event_of_inst[rows.inst].astype(np.int32)
    start = np.searchsorted(event, np.arange(n_events))
    idx = np.arange(R) - start[event]
    decays = rows.mode >= 0
    vrank = np.cumsum(decays) - 1  # global rank among decaying rows
    dv_start = np.concatenate([[0], np.cumsum(decays)])[start]  # decaying rows before each event
    vidx = np.where(decays, vrank - dv_start[event] + 1, -1)
    par = np.maximum(rows.parent, 0)
    particles = {
        "event": event,
        "index": idx.astype(np.int32),
        "pid": engine.pid[rows.species].astype(np.int32),
        "px": rows.p4[:, 0], "py": rows.p4[:, 1], "pz": rows.p4[:, 2], "e": rows.p4[:, 3],
        "mass": rows.mass,
        "charge": engine.charge[rows.species].astype(np.int16),
        "mother": np.where(rows.parent >= 0, idx[par], -1).astype(np.int32),
        "first_daughter": np.where(rows.first >= 0, idx[np.maximum(rows.first, 0)], -1).astype(np.int32),
        "last_daughter": np.where(rows.first >= 0, idx[np.maximum(rows.first, 0)] + rows.nd - 1, -1).astype(np.int32),
        "prod_vertex": np.where(rows.parent >= 0, vidx[par], 0).astype(np.int32),
        "decay_vertex": vidx.astype(np.int32),
        "is_signal": np.ones(R, bool),
    }
    dj = np.flatnonzero(decays)
    vertices = {
        "event": np.concatenate([np.arange(n_events, dtype=np.int32), event[dj]]),
        "index": np.concatenate([np.zeros(n_events, np.int32), vidx[dj].astype(np.int32)]),
        "x": np.concatenate([pv["pv_x"], dec[dj, 0]]),
        "y": np.concatenate([pv["pv_y"], dec[dj, 1]]),
        "z": np.concatenate([pv["pv_z"], dec[dj, 2]]),
        "t": np.concatenate([pv["pv_t"], dec[dj, 3]]),
        "mother_particle": np.concatenate([np.full(n_events, -1, np.int32), idx[dj].astype(np.int32)]),
    }
    return {
        "events": pa.table({"event": np.arange(n_events, dtype=np.int32), **pv}),
        "mc_particles": pa.table(particles),
        "mc_vertices": _sorted_table([vertices]),
    }


def _sorted_table(chunks: list[dict[str, np.ndarray]]) -> pa.Table:
    cols = {key: np.concatenate([c[key] for c in chunks]) for key in chunks[0]}
    order = np.lexsort((cols["index"], cols["event"]))
    return pa.table({key: val[order] for key, val in cols.items()})
