"""The generator pass: particle gun + phasespace decays → events, mc_particles, mc_vertices.

Everything is vectorised over the batch: the gun draws all heavy hadrons at
once, each exclusive decay chain is generated for all of its instances in one
call of its compiled phasespace graph, and the tree bookkeeping (indices,
mother/daughter links, vertices) is numpy array arithmetic.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import pyarrow as pa

from mambah.errors import ConfigError

from sim.generation.decay import C_LIGHT, DecayChain, DecayModel, load_decay
from sim.generation.gun import HeavyHadronSpectrum, LuminousRegion, sample_primary_vertices
from sim.core.pipeline import BatchContext, Kernel, Pass
from sim.core.registry import register_pass

if TYPE_CHECKING:
    from sim.generation.gun import Spectrum

__all__ = ("Generator", "DEFAULT_DECAY", "generate_tables")

#: The default signal: semileptonic Λb0 decay with Λc+ → p K− π+.
DEFAULT_DECAY = "Lambda_b0 -> (Lambda_c+ -> p+ K- pi+) mu- anti-nu_mu"


@register_pass
@dataclass(frozen=True)
class Generator(Pass):
    """Particle gun plus phasespace decays.

    Args:
        name: pass name.
        decay: decay descriptor (ignored when ``dec_file`` is given).
        dec_file: EvtGen DecFile; all modes of ``mother`` with their branching fractions.
        mother: decaying particle of ``dec_file`` (default: its first Decay block).
        spectrum: heavy-hadron kinematics (see :mod:`sim.generation.gun`).
        luminous_region: primary-vertex distribution [mm, ns].
        particles_per_event: gun particles (signal decays) per event.

    Writes ``events`` (PV), ``mc_particles``, ``mc_vertices``.
    """

    kind: ClassVar[str] = "generator"
    reads: ClassVar[tuple[str, ...]] = ()
    writes: ClassVar[tuple[str, ...]] = ("events", "mc_particles", "mc_vertices")

    name: str = "generator"
    decay: str = DEFAULT_DECAY
    dec_file: str | None = None
    mother: str | None = None
    spectrum: Any = field(default_factory=HeavyHadronSpectrum)
    luminous_region: LuminousRegion = field(default_factory=LuminousRegion)
    particles_per_event: int = 1

    def __post_init__(self) -> None:
        n = self.particles_per_event
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ConfigError(f"particles_per_event must be a positive integer, got {n!r}")
        if not hasattr(self.spectrum, "sample"):
            raise ConfigError(f"spectrum must be a spectrum config, got {self.spectrum!r}")

    def load(self) -> DecayModel:
        """The decay model (parses and checks the decay; builds phasespace trees)."""
        if self.dec_file is not None:
            return load_decay(dec_file=self.dec_file, mother=self.mother)
        return load_decay(self.decay)

    def build(self) -> Kernel:
        model = self.load()
        for chain in model.chains:  # compile and find max weights once, before any batch
            chain.generate_rest_frame(1, seed=0)
        spectrum, region, k, name = self.spectrum, self.luminous_region, self.particles_per_event, self.name

        def kernel(ctx: BatchContext) -> None:
            b = ctx.batch
            tables = generate_tables(model, b.n_events, ctx.rng(name), spectrum=spectrum, region=region, particles_per_event=k)
            for tname, tab in tables.items():
                ctx.insert(tname, tab.append_column("batch", pa.array(np.full(tab.num_rows, b.batch, np.int32))))

        return kernel


def _boost(rest: np.ndarray, head: np.ndarray) -> np.ndarray:
    """Boost rest-frame four-vectors ``rest`` (n, S, 4) to the frame where the head has ``head`` (n, 4)."""
    m = np.sqrt(np.maximum(head[:, 3] ** 2 - np.sum(head[:, :3] ** 2, axis=1), 0.0))
    b = head[:, :3] / m[:, None]  # γβ
    gamma = head[:, 3] / m
    p, e = rest[..., :3], rest[..., 3]
    bp = np.einsum("nsk,nk->ns", p, b)
    out = np.empty_like(rest)
    out[..., :3] = p + b[:, None, :] * (bp / (1.0 + gamma[:, None]) + e)[..., None]
    out[..., 3] = gamma[:, None] * e + bp
    return out


def generate_tables(
    model: DecayModel,
    n_events: int,
    rng: np.random.Generator,
    *,
    spectrum: Spectrum | None = None,
    region: LuminousRegion = LuminousRegion(),
    particles_per_event: int = 1,
) -> dict[str, pa.Table]:
    """Generate one batch: Arrow tables ``events``, ``mc_particles``, ``mc_vertices`` (no batch column).

    Args:
        model: the decay model.
        n_events: number of events.
        rng: numpy generator (everything random, phasespace included, derives from it).
        spectrum: gun kinematics; default b-hadron spectrum at 13 TeV.
        region: luminous region.
        particles_per_event: signal decays per event.

    Returns:
        Tables keyed by name; momenta [MeV], positions [mm], times [ns].
    """
    spectrum = spectrum if spectrum is not None else HeavyHadronSpectrum()
    k = particles_per_event
    n_inst = n_events * k
    event_of = np.repeat(np.arange(n_events, dtype=np.int32), k)
    pv = sample_primary_vertices(n_events, rng, region)
    head_mass = model.head.mass
    px, py, pz = spectrum.sample(n_inst, head_mass, rng)
    head = np.stack([px, py, pz, np.sqrt(px**2 + py**2 + pz**2 + head_mass**2)], axis=1)
    mode = rng.choice(len(model.chains), size=n_inst, p=model.probabilities) if len(model.chains) > 1 else np.zeros(n_inst, np.int64)
    sizes = np.array([len(c) for c in model.chains])[mode]
    n_dv = np.array([sum(1 for nd in c.nodes if nd.first_daughter >= 0) for c in model.chains])[mode]
    # offsets of each instance within its event (particles and decay vertices)
    p_off = (np.cumsum(sizes.reshape(n_events, k), axis=1) - sizes.reshape(n_events, k)).ravel()
    v_off = (np.cumsum(n_dv.reshape(n_events, k), axis=1) - n_dv.reshape(n_events, k)).ravel() + 1
    chain_seeds = rng.integers(0, 2**62, size=len(model.chains))

    parts: list[dict[str, np.ndarray]] = []
    verts: list[dict[str, np.ndarray]] = [
        {
            "event": np.arange(n_events, dtype=np.int32),
            "index": np.zeros(n_events, np.int32),
            "x": pv["pv_x"], "y": pv["pv_y"], "z": pv["pv_z"], "t": pv["pv_t"],
            "mother_particle": np.full(n_events, -1, np.int32),
        }
    ]
    for ci, chain in enumerate(model.chains):
        sel = np.flatnonzero(mode == ci)
        if len(sel) == 0:
            continue
        p, v = _chain_rows(chain, head[sel], event_of[sel], p_off[sel], v_off[sel], pv, int(chain_seeds[ci]), rng)
        parts.append(p)
        verts.append(v)
    return {
        "events": pa.table({"event": np.arange(n_events, dtype=np.int32), **pv}),
        "mc_particles": _sorted_table(parts),
        "mc_vertices": _sorted_table(verts),
    }


def _chain_rows(
    chain: DecayChain,
    head: np.ndarray,
    event: np.ndarray,
    p_off: np.ndarray,
    v_off: np.ndarray,
    pv: dict[str, np.ndarray],
    seed: int,
    rng: np.random.Generator,
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    n = len(head)
    nodes = chain.nodes
    S = len(nodes)
    rest = chain.generate_rest_frame(n, seed)
    lab = _boost(rest, head)
    mass = np.sqrt(np.maximum(rest[..., 3] ** 2 - np.sum(rest[..., :3] ** 2, axis=2), 0.0))
    mass[:, 0] = chain.nodes[0].mass
    mother = np.array([nd.mother for nd in nodes])
    first = np.array([nd.first_daughter for nd in nodes])
    last = np.array([nd.last_daughter for nd in nodes])
    decays = first >= 0
    vrank = np.cumsum(decays) - 1  # local decay-vertex number of each decaying node
    # production and decay positions, node by node in BFS order (mothers come first)
    prod = np.empty((n, S, 4))
    dec = np.full((n, S, 4), np.nan)
    prod[:, 0] = np.stack([pv["pv_x"][event], pv["pv_y"][event], pv["pv_z"][event], pv["pv_t"][event]], axis=1)
    tau = np.array([nd.lifetime for nd in nodes])
    for j in range(S):
        if j > 0:
            prod[:, j] = dec[:, mother[j]]
        if decays[j]:
            t = rng.exponential(1.0, n) * tau[j]  # proper time [ns]
            m = np.maximum(mass[:, j], 1e-9)
            dec[:, j, :3] = prod[:, j, :3] + lab[:, j, :3] / m[:, None] * (C_LIGHT * t)[:, None]
            dec[:, j, 3] = prod[:, j, 3] + lab[:, j, 3] / m * t
    idx = p_off[:, None] + np.arange(S)[None, :]
    pv_link = np.where(mother >= 0, v_off[:, None] + vrank[np.maximum(mother, 0)][None, :], 0)
    particles = {
        "event": np.repeat(event, S),
        "index": idx.ravel().astype(np.int32),
        "pid": np.tile([nd.pid for nd in nodes], n).astype(np.int32),
        "px": lab[..., 0].ravel(), "py": lab[..., 1].ravel(), "pz": lab[..., 2].ravel(), "e": lab[..., 3].ravel(),
        "mass": mass.ravel(),
        "charge": np.tile([nd.charge for nd in nodes], n).astype(np.int16),
        "mother": np.where(mother >= 0, p_off[:, None] + mother, -1).ravel().astype(np.int32),
        "first_daughter": np.where(first >= 0, p_off[:, None] + first, -1).ravel().astype(np.int32),
        "last_daughter": np.where(last >= 0, p_off[:, None] + last, -1).ravel().astype(np.int32),
        "prod_vertex": pv_link.ravel().astype(np.int32),
        "decay_vertex": np.where(decays, v_off[:, None] + vrank, -1).ravel().astype(np.int32),
        "is_signal": np.ones(n * S, bool),
    }
    dj = np.flatnonzero(decays)
    vertices = {
        "event": np.repeat(event, len(dj)),
        "index": (v_off[:, None] + vrank[dj][None, :]).ravel().astype(np.int32),
        "x": dec[:, dj, 0].ravel(), "y": dec[:, dj, 1].ravel(), "z": dec[:, dj, 2].ravel(), "t": dec[:, dj, 3].ravel(),
        "mother_particle": (p_off[:, None] + dj[None, :]).ravel().astype(np.int32),
    }
    return particles, vertices


def _sorted_table(chunks: list[dict[str, np.ndarray]]) -> pa.Table:
    cols = {key: np.concatenate([c[key] for c in chunks]) for key in chunks[0]}
    order = np.lexsort((cols["index"], cols["event"]))
    return pa.table({key: val[order] for key, val in cols.items()})
