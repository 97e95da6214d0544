"""The ``pythia`` generator pass: full pp events from Pythia 8, the signal decayed by Mambah.

Pythia 8 (``pythia8mc``, GPL, the optional extra ``mambah[pythia]``) makes the
whole event: the hard process of a preset plus underlying event, hadronisation
and the decays of everything (``ParticleDecays`` defaults: K_S0, Λ, Σ, Ξ, Ω and
the heavy hadrons decay with their sampled proper lifetimes and displaced
vertices, so long-lived particles decay in flight; K_L0, π±, K±, μ, p, n are
stable).  The batch of events comes out of ``Pythia.nextBatch`` as columns
(awkward arrays), and the record is laid out as the gun generator's
(:mod:`sim.generation._event_tables`).

Signal, as LHCb's Gauss does it (Belyaev et al., "Handling of the generation of
primary events in Gauss, the LHCb simulation framework", J. Phys. Conf. Ser. 331
(2011) 032047): events are kept only if they contain the signal species or its
charge conjugate; one of them (chosen at random when there are several) has its
Pythia decay undone (every descendant removed) and is decayed by Mambah's decay
model (:func:`sim.generation.decay.load_decay`: descriptor or DecFile), with its
flight distance from Mambah's lifetime; its mass is Mambah's (the 3-momentum is
Pythia's), so four-momentum is conserved at every vertex Mambah makes.
Long-lived daughters of the Mambah decay (K_S0, Λ in a descriptor) stay undecayed
(the decay engine treats them as stable).  ``events.n_tried`` counts the Pythia events generated for each kept
event (the events without signal before it, plus itself), so
``sum(n_tried) / count(*)`` is the inverse signal efficiency and
``σ_gen · count(*) / sum(n_tried)`` the cross-section of what the store holds
(σ_gen is in the ``generator`` metadata).

Signal daughters in the acceptance (optional, ``daughters_in_acceptance``; Gauss'
``DaughtersInLHCb`` cut, same reference): an event is kept only if every stable daughter
of its signal (final-state lines, and K0S, Λ, ... taken as themselves; neutrinos
ignored) has its polar angle within 10–400 mrad if charged, 5–400 mrad if neutral
(``charged_theta``, ``neutral_theta``), after inverting (z → −z) the signal interaction of
an event whose signal goes backward, as Gauss does (``invert_backward``).  The Pythia events of a rejected event count
in the next kept event's ``n_tried``, so ``count(*) / sum(n_tried)`` is then the
efficiency of species and cut together; each batch also records in ``metadata``
(``generator_cut/<batch>``) how many signal events the cut looked at and kept, summed by
:func:`signal_cut_efficiency`.

Pile-up (Gauss' pile-up tools, same reference): for the ``minbias`` preset the
crossing has ``n ~ Poisson(ν)`` interactions given ``n >= 1`` (zero-truncated,
``FixedLuminosity``); for a rare hard process (``bbbar``, ``ccbar``) the crossing holds
the hard interaction plus ``Poisson(ν)`` others (``FixedLuminosityForRareProcess``:
the number of interactions of a crossing that made a rare process is size-biased,
1 + Poisson(ν)).  The others are minimum-bias events (``SoftQCD:nonDiffractive``)
from a second Pythia instance.  Each interaction has its own primary vertex from
the luminous region (:mod:`sim.generation.beam`).  ν: :data:`NU_RUN2` = 1.1 and
:data:`NU_RUN3` = 5.5 (issue #17; the visible pile-up of Run 2 and Run 3 used by
:mod:`sim.reference.occupancy`, LHCb detector performance IJMPA 30 (2015) 1530022 and
LHCb Upgrade I JINST 19 (2024) P05065).

Re-decay (optional, ``redecay = N``; LHCb's ReDecay, D. Müller, M. Clemencic, G. Corti and
M. Gersabeck, "ReDecay: a novel approach to speed up the simulation at LHCb", Eur. Phys. J. C
78 (2018) 1009, arXiv:1810.10362): each Pythia event, with its pile-up, makes ``N`` consecutive
events, the signal decayed afresh by Mambah in each; the rest of the event and the signal
hadron's momentum are shared, the primary vertices are drawn afresh per event (the whole
crossing translated).  Pythia's CPU per event drops by ``N``; the events of a group are
correlated (same underlying event and signal kinematics), which the analyst treats as
ReDecay samples are treated (the paper's Sec. 4).  ``n_tried`` is 0 on an event that shares the
previous event's Pythia event, so ``sum(n_tried)`` still counts Pythia events; the
``generator`` metadata records ``redecay``.  Each Pythia event's record is converted and laid
out once; per copy only the signal tree is made and merged into that layout
(:func:`~sim.generation._event_tables.layout_copies`, equal to laying out every copy in full).

Deferred truth (``defer_truth``, set by ``with_preselect(..., drop_skipped=True)``): the pass
writes ``events`` only and hands the batch's truth to the preselect pass after it
(:class:`~sim.generation._event_tables.DeferredTruth`), which scores the events from the
generator's arrays and writes the truth of the events it keeps; with ReDecay (and without
``daughters_in_acceptance``) nothing is laid out before that, and the signal particles it
scores are made without a layout, so a skipped copy costs its signal decay only.  The store
is bit for bit the one of writing every event's truth and deleting the skipped events'.

Seeds: every batch makes fresh Pythia instances with ``Random:setSeed = on`` and
``Random:seed`` from the batch seed (``ctx.batch.int_seed``, mapped to 1 … 900 000 000),
so a batch is the same in any process and order (one ``init`` per batch and instance,
≈ 0.35 s; larger batches amortise it).  One ``init`` per process, reseeded per batch
(``Pythia.rndm.init``), would not give these events: ``init`` itself draws ≈ 2.5 million random
numbers (the multiparton-interaction tables; 2 514 489 for ``bbbar`` at seed 12345 in Pythia
8.317, a count that depends on the seed) and its tables depend on them.
"""

from __future__ import annotations

import functools
import json
import logging
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from mambah.errors import ConfigError, DecayError
from mambah.kinematics import boost
from sim.core.pipeline import Batch, BatchContext, Kernel, Pass
from sim.core.registry import register_pass
from sim.generation._event_tables import (
    CUT_KEY,
    DEFERRED_TRUTH,
    LONG_LIVED,
    STATUS_BEAM,
    STATUS_DECAYED,
    STATUS_FINAL,
    DeferredTruth,
    GeneratorRecord,
    charges,
    check_theta_window,
    copies_events,
    copies_signal_rows,
    daughters_in_acceptance,
    layout_copies,
    layout_tables,
    nearest_kept,
    signal_cut_efficiency,
    write_tables,
)
from sim.generation.beam import LuminousRegion, sample_primary_vertices

__all__ = (
    "CUT_KEY",
    "LONG_LIVED",
    "NU_RUN2",
    "NU_RUN3",
    "PRESETS",
    "SQRT_S",
    "Pythia",
    "daughters_in_acceptance",
    "pythia_columns",
    "pythia_lines",
    "signal_cut_efficiency",
)

log = logging.getLogger(__name__)

#: speed of light [mm/ns]
C_LIGHT = 299.792458

#: Process presets: Pythia setting lines.
PRESETS: dict[str, tuple[str, ...]] = {
    "minbias": ("SoftQCD:nonDiffractive = on",),
    "bbbar": ("HardQCD:hardbbbar = on",),
    "ccbar": ("HardQCD:hardccbar = on",),
}
#: Pythia process codes of the presets' subprocesses: (preset, gluon-gluon initial state) -> code.
_CODES: dict[tuple[str, bool], int] = {
    ("minbias", True): 101, ("minbias", False): 101,
    ("ccbar", True): 121, ("ccbar", False): 122,
    ("bbbar", True): 123, ("bbbar", False): 124,
}
#: Setting prefixes that switch processes on (then the process code is not known per event: NULL).
_PROCESS_GROUPS = ("HardQCD:", "SoftQCD:", "PromptPhoton:", "WeakBoson", "WeakSingleBoson:", "WeakDoubleBoson:",
                   "Charmonium:", "Bottomonium:", "Onia:", "Top:", "HiggsSM:", "PhotonParton:", "PhotonCollision:")
#: Centre-of-mass energies [TeV] of the LHC runs (Run 1: 7, 8; Run 2: 13; Run 3: 13.6; design: 14).
SQRT_S: tuple[float, ...] = (7.0, 8.0, 13.0, 13.6, 14.0)
#: Mean pp interactions per crossing: LHCb Run 2 and Run 3 (see the module docstring).
NU_RUN2 = 1.1
NU_RUN3 = 5.5
_PILEUP_LINES = PRESETS["minbias"]
#: Largest ``redecay`` (events per Pythia event).
MAX_REDECAY = 1000
#: What a pass with ``defer_truth`` declares it writes (``Pass.writes``): the truth, not yet in the tables.
GENERATOR_TRUTH = "generator_truth"


def _require_pythia() -> Any:
    try:
        import pythia8mc
    except ImportError:
        raise ConfigError("the pythia pass needs Pythia 8: pip install mambah[pythia]") from None
    return pythia8mc


def pythia_lines(process: tuple[str, ...], sqrt_s: float, settings: tuple[str, ...], seed: int) -> list[str]:
    """All setting lines of one Pythia instance (quiet, pp at ``sqrt_s`` TeV, seeded)."""
    return [
        "Print:quiet = on", "Next:numberCount = 0", "Beams:idA = 2212", "Beams:idB = 2212",
        f"Beams:eCM = {sqrt_s * 1000.0:.1f}", *process, *settings, "Random:setSeed = on", f"Random:seed = {seed}",
    ]


def _make_pythia(lines: list[str]) -> Any:
    p8 = _require_pythia()
    py = p8.Pythia("", False)
    for line in lines:
        if not py.readString(line):
            raise ConfigError(f"Pythia refuses the setting {line!r}; see the Pythia 8 manual for valid settings")
    if not py.init():
        raise ConfigError(f"Pythia does not initialise with the settings {'; '.join(lines)}")
    return py


def _pythia_seed(batch: Batch, stream: str) -> int:
    """A Pythia seed in 1 … 900 000 000 from the batch seed."""
    return int(batch.int_seed(stream) % 900_000_000) + 1


def pythia_columns(batch: Any) -> dict[str, np.ndarray]:
    """Flat numpy columns of a ``Pythia.nextBatch`` result.

    Read from the awkward array's buffers (one slice, or one cast, per column; the awkward
    operations ``flatten``, field access and ``fill_none`` cost 5-7x more, issue #17); a
    column already of its dtype is a view of the batch's buffer.

    Returns:
        ``counts (n_events,)`` and per line ``id, status, mother1, daughter1, daughter2, px, py, pz, e, m``
        [GeV], ``x, y, z, t`` (production vertex [mm, mm/c], 0 where Pythia gives none), ``tau`` [mm/c];
        per event ``id1, id2``.
    """
    import awkward as ak

    layout = ak.to_layout(batch)
    if not isinstance(layout, ak.contents.RecordArray):  # e.g. a selection of events: its buffers packed first
        layout = ak.to_layout(ak.to_packed(batch))
    prt = layout.content("prt")
    if not isinstance(prt, ak.contents.ListOffsetArray):
        prt = prt.to_ListOffsetArray64(True)
    offsets = np.asarray(prt.offsets, np.int64)
    lo, hi = int(offsets[0]), int(offsets[-1])
    rec = prt.content

    def flat(node: Any, dtype: type) -> np.ndarray:
        return np.asarray(_numpy_of(node)[lo:hi], dtype)

    out = {"counts": np.diff(offsets)}
    for key in ("id", "status", "mother1", "daughter1", "daughter2"):
        out[key] = flat(rec.content(key), np.int64)
    p4 = rec.content("p")
    for key in ("px", "py", "pz", "e"):
        out[key] = flat(p4.content(key), np.float64)
    out["m"] = flat(rec.content("m"), np.float64)
    out["tau"] = flat(rec.content("tau"), np.float64)
    vprod = rec.content("vProd")  # an option type: lines without a production vertex are None, taken as 0
    if isinstance(vprod, ak.contents.IndexedOptionArray):
        index = np.asarray(vprod.index, np.int64)[lo:hi]
        has, inner = index >= 0, vprod.content
        for key, comp in (("x", "px"), ("y", "py"), ("z", "pz"), ("t", "e")):
            out[key] = np.where(has, _numpy_of(inner.content(comp))[np.maximum(index, 0)], 0.0).astype(np.float64)
    else:  # another option layout: awkward's own fill_none
        sub = ak.Array(vprod)[lo:hi]
        for key, comp in (("x", "px"), ("y", "py"), ("z", "pz"), ("t", "e")):
            out[key] = ak.to_numpy(ak.fill_none(sub[comp], 0.0)).astype(np.float64)
    info = layout.content("info")
    for key in ("id1", "id2"):
        out[key] = np.asarray(_numpy_of(info.content(key)), np.int64)
    return out


def _numpy_of(node: Any) -> np.ndarray:
    """The numpy array of an awkward leaf layout (a ``NumpyArray``; any other leaf through ``ak.to_numpy``)."""
    import awkward as ak

    if isinstance(node, ak.contents.NumpyArray):
        return np.asarray(node.data)
    return np.asarray(ak.to_numpy(ak.Array(node)))


def _hepmc_status(pid: np.ndarray, status: np.ndarray) -> np.ndarray:
    """Pythia status → HepMC status: 1 final, 2 decayed hadron/lepton, 4 beam, 0 documentation/parton."""
    a = np.abs(pid)
    parton = (a < 10) | (a == 21) | ((a > 1000) & ((a // 10) % 10 == 0)) | ((a >= 81) & (a <= 100))
    decayable = ((a >= 100) & ~parton) | (a == 11) | (a == 13) | (a == 15)
    s = np.abs(status)
    out = np.zeros(pid.size, np.int64)
    out[status > 0] = STATUS_FINAL
    out[(status < 0) & (s >= 81) & (s <= 99) & decayable] = STATUS_DECAYED
    out[status == -12] = STATUS_BEAM
    return out


def _zero_truncated_poisson(nu: float, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` draws of Poisson(ν) conditioned on >= 1 (inverse CDF; exactly 1 when ν = 0)."""
    if nu <= 0:
        return np.ones(n, np.int64)
    from scipy.stats import poisson

    p0 = np.exp(-nu)
    u = p0 + rng.random(n) * (1.0 - p0)
    return np.maximum(poisson.ppf(u, nu).astype(np.int64), 1)


@functools.cache
def _conjugate_pid(pid: int) -> int:
    from mambah.descriptor import lookup_particle

    try:
        return -pid if int(lookup_particle(-pid).pdgid) == -pid else pid
    except Exception:  # self-conjugate species have no antiparticle entry
        return pid


@register_pass
@dataclass(frozen=True)
class Pythia(Pass):
    """Full pp events from Pythia 8 with pile-up; the signal decayed by Mambah.

    Args:
        name: pass name.
        preset: process preset, one of :data:`PRESETS` (``minbias``, ``bbbar``, ``ccbar``).
        sqrt_s: centre-of-mass energy [TeV], one of :data:`SQRT_S`.
        settings: extra Pythia setting lines (``"PhaseSpace:pTHatMin = 2."``, tunes, ...).
        nu: mean pp interactions per crossing (Poisson, at least one); 0 for exactly one.
        decay: signal descriptor, e.g. ``"[B+ -> (J/psi -> mu+ mu-) K+]cc"``; ``None`` keeps every event.
        dec_file: signal DecFile instead of ``decay`` (its mother and charge conjugate are the signal).
        mother: decaying particle of ``dec_file``.
        max_tries: give up (error) when this many Pythia events in a row hold no signal (or none
            whose daughters are in the acceptance).
        luminous_region: primary-vertex distribution [mm, ns].
        daughters_in_acceptance: keep only events whose signal daughters are in the acceptance
            (Gauss' ``DaughtersInLHCb``; see :func:`daughters_in_acceptance`).
        charged_theta: polar-angle window ``(min, max)`` [rad] of the charged daughters (Gauss: 10–400 mrad).
        neutral_theta: polar-angle window ``(min, max)`` [rad] of the neutral daughters (Gauss: 5–400 mrad).
        invert_backward: with the cut, first invert (z → −z) the signal interaction of an event
            whose signal goes backward, as Gauss does (doubles the efficiency of a forward cut).
        redecay: events made from each Pythia event (and its pile-up), the signal re-decayed in
            each (ReDecay; see the module docstring); 1: every event its own Pythia event.
        defer_truth: write only ``events`` and hand the MC truth to the preselect pass after
            it (:class:`~sim.generation._event_tables.DeferredTruth`), which writes the truth
            of the events it keeps: with ``drop_skipped`` the skipped events' truth is never
            written (with ReDecay and without ``daughters_in_acceptance`` not even laid out).
            Set by :func:`~sim.generation.preselect.with_preselect` with ``drop_skipped``; the
            store is the one without it.  The pass then declares ``generator_truth`` instead
            of ``mc_particles`` and ``mc_vertices``, so a pipeline whose later passes read the
            truth without a preselect pass in between is refused by ``Pipeline.validate``.

    Writes ``events`` (PV of the hard interaction, ``n_interactions``, ``process``, ``n_tried``),
    ``mc_particles`` (with ``status``), ``mc_vertices``.
    """

    kind: ClassVar[str] = "pythia"
    reads: ClassVar[tuple[str, ...]] = ()
    writes: ClassVar[tuple[str, ...]] = ("events", "mc_particles", "mc_vertices")

    name: str = "pythia"
    preset: str = "bbbar"
    sqrt_s: float = 13.0
    settings: tuple[str, ...] = ()
    nu: float = NU_RUN2
    decay: str | None = None
    dec_file: str | None = None
    mother: str | None = None
    max_tries: int = 20_000
    luminous_region: LuminousRegion = field(default_factory=LuminousRegion)
    daughters_in_acceptance: bool = False
    charged_theta: tuple[float, float] = (0.010, 0.400)
    neutral_theta: tuple[float, float] = (0.005, 0.400)
    invert_backward: bool = True
    redecay: int = 1
    defer_truth: bool = False

    def __post_init__(self) -> None:
        if self.preset not in PRESETS:
            raise ConfigError(f"unknown Pythia preset {self.preset!r}; presets: {', '.join(PRESETS)}")
        if float(self.sqrt_s) not in SQRT_S:
            raise ConfigError(f"sqrt_s must be one of {', '.join(f'{s:g}' for s in SQRT_S)} [TeV], got {self.sqrt_s!r}")
        object.__setattr__(self, "settings", (self.settings,) if isinstance(self.settings, str) else tuple(self.settings))
        if not (isinstance(self.nu, (int, float)) and 0 <= float(self.nu) <= 50):
            raise ConfigError(f"pile-up nu must be a number in [0, 50], got {self.nu!r}")
        if self.decay is not None and self.dec_file is not None:
            raise ConfigError("give only one of decay and dec_file for the pythia signal")
        if isinstance(self.max_tries, bool) or not isinstance(self.max_tries, int) or self.max_tries < 1:
            raise ConfigError(f"max_tries must be a positive integer, got {self.max_tries!r}")
        for flag in ("daughters_in_acceptance", "invert_backward"):
            if not isinstance(getattr(self, flag), bool):
                raise ConfigError(f"{flag} must be true or false, got {getattr(self, flag)!r}")
        if self.daughters_in_acceptance and self.decay is None and self.dec_file is None:
            raise ConfigError("daughters_in_acceptance needs a signal: give decay or dec_file")
        for name in ("charged_theta", "neutral_theta"):
            object.__setattr__(self, name, check_theta_window(name, getattr(self, name)))
        if isinstance(self.redecay, bool) or not isinstance(self.redecay, int) or not 1 <= self.redecay <= MAX_REDECAY:
            raise ConfigError(f"redecay must be an integer in [1, {MAX_REDECAY}] (events per Pythia event), got {self.redecay!r}")
        if self.redecay > 1 and self.decay is None and self.dec_file is None:
            raise ConfigError("redecay re-decays the signal: give decay or dec_file (or redecay = 1)")
        if not isinstance(self.defer_truth, bool):
            raise ConfigError(f"defer_truth must be true or false, got {self.defer_truth!r}")
        if self.defer_truth:  # the truth reaches the store through the preselect pass (Pipeline.validate checks one follows)
            object.__setattr__(self, "writes", ("events", GENERATOR_TRUTH))

    def _model(self) -> tuple[Any, bool]:
        from sim.generation.decay import load_decay

        if self.decay is not None:
            from mambah.descriptor import parse_descriptor

            _tree, cc = parse_descriptor(self.decay)
            return load_decay(self.decay), cc
        if self.dec_file is not None:
            model = load_decay(dec_file=self.dec_file, mother=self.mother)
            return model, bool(getattr(model, "has_cc", True))  # the complete-tree engine knows the DecFile's CDecay
        return None, False

    @property
    def prefetchable(self) -> bool:
        """Pythia's events, the signal decays and the laid-out tables need no store: a producer process
        (:mod:`sim.core.producer`) makes the next batch's while the run writes this one; not with
        ``defer_truth`` (the truth is handed to the preselect pass as an object)."""
        return not self.defer_truth

    def _prepared(self) -> tuple[Any, bool, bool]:
        """The signal model (its accept-reject bounds ready), its charge-conjugate flag, and whether the
        settings keep the preset's process (``events.process`` known); built once per process and config."""
        return _prepared(self)

    def prepare_produce(self) -> None:
        self._prepared()

    def produce(self, batch: Batch) -> tuple[dict[str, dict[str, np.ndarray]], float, tuple[int, int], DeferredTruth | None]:
        """The batch's tables, σ_gen [mb] and cut counts (:func:`_generate`), in any process: the kernel's
        work but the writing, the same numbers wherever it runs (the batch seed is all it uses)."""
        model, cc, process_known = self._prepared()
        return _generate(self, batch, batch.rng(self.name), model, cc, process_known)

    def build(self) -> Kernel:
        _require_pythia()
        self._prepared()
        hard_lines = pythia_lines(PRESETS[self.preset], float(self.sqrt_s), self.settings, 1)
        check = _make_pythia(hard_lines)  # bad settings fail here, before the store is touched
        meta = {
            "generator": "Pythia", "version": f"{check.parm('Pythia:versionNumber'):.3f}", "preset": self.preset,
            "sqrt_s_TeV": float(self.sqrt_s), "nu": float(self.nu), "settings": list(self.settings),
            "signal": self.decay or self.dec_file,
        }
        if self.redecay > 1:
            meta["redecay"] = self.redecay
        if self.daughters_in_acceptance:
            meta["daughters_in_acceptance"] = {
                "charged_theta_rad": list(self.charged_theta), "neutral_theta_rad": list(self.neutral_theta),
                "invert_backward": self.invert_backward,
            }
        del check
        cfg = self

        def kernel(ctx: BatchContext) -> None:
            product = ctx.prefetched.get(cfg.name)  # made by the run's producer process (sim.core.producer)
            tables, sigma, (tried, kept), truth = cfg.produce(ctx.batch) if product is None else product
            if truth is None:
                write_tables(ctx, tables)
            else:  # the preselect pass writes the truth of the events it keeps
                write_tables(ctx, tables, ("events",))
                setattr(ctx, DEFERRED_TRUTH, truth)
            ctx.con.execute(
                "INSERT OR REPLACE INTO metadata VALUES ('generator', ?)", [json.dumps({**meta, "sigma_gen_mb": sigma})]
            )
            if cfg.daughters_in_acceptance:
                ctx.con.execute(
                    "INSERT OR REPLACE INTO metadata VALUES (?, ?)",
                    [f"{CUT_KEY}{ctx.batch.batch}", json.dumps({"tried": tried, "kept": kept})],
                )

        return kernel


@functools.cache
def _prepared(cfg: Pythia) -> tuple[Any, bool, bool]:
    """:meth:`Pythia._prepared`, cached per (hashable, frozen) pass config in this process."""
    _require_pythia()
    model, cc = cfg._model()
    if model is not None and hasattr(model, "prepare"):
        model.prepare()  # accept-reject bounds, before any batch
    elif model is not None:
        for chain in model.chains:  # compile the phasespace graphs once, before any batch
            chain.generate_rest_frame(1, seed=0)
    charges(np.array([211]))  # load the PDG table now, not in the first batch
    process_known = not any(s.strip().startswith(_PROCESS_GROUPS) for s in cfg.settings)
    return model, cc, process_known


def _generate(
    cfg: Pythia, batch: Batch, rng: np.random.Generator, model: Any, cc: bool, process_known: bool
) -> tuple[dict[str, dict[str, np.ndarray]], float, tuple[int, int], DeferredTruth | None]:
    """One batch: hard events with signal, pile-up, Mambah signal decays → laid-out tables, σ_gen [mb], cut counts.

    With ``daughters_in_acceptance`` the events are made in rounds until enough pass the
    cut; a rejected event's Pythia tries are added to the next kept event's ``n_tried``.

    Returns:
        The tables, σ_gen [mb], ``(tried, kept)``: signal events the acceptance cut
        looked at (up to the last one kept) and kept (``(n, n)`` without the cut), and with
        ``defer_truth`` the truth (the tables then hold only ``events``; else ``None``).
    """
    n_events = batch.n_events
    lazy = cfg.defer_truth and not cfg.daughters_in_acceptance  # one round: every copy made is kept (the first n_events)
    deferred: DeferredTruth | None = None
    hard = _make_pythia(pythia_lines(PRESETS[cfg.preset], float(cfg.sqrt_s), cfg.settings, _pythia_seed(batch, cfg.name)))
    search = {"since_last": 0, "eff": 1.0}
    minb: Any = None
    parts: list[dict[str, dict[str, np.ndarray]]] = []
    n_kept = n_cand = carry = 0
    while n_kept < n_events:
        need = n_events - n_kept
        n_want = need
        if cfg.daughters_in_acceptance:  # the cut's efficiency so far, 1 in 4 to start with
            acc_eff = n_kept / n_cand if n_cand else 0.25
            n_want = int(min(max(need / max(acc_eff, 0.02) * 1.2 + 4, need), 50 * need + 50))
        ev, chosen, n_tried = _signal_events(cfg, hard, -(-n_want // cfg.redecay), model, cc, rng, search)
        n = int(ev["counts"].size)
        if cfg.preset == "minbias":
            n_int = _zero_truncated_poisson(float(cfg.nu), n, rng)
        else:  # a rare hard process: 1 + Poisson(nu)
            n_int = 1 + rng.poisson(float(cfg.nu), n).astype(np.int64)
        n_pu = int((n_int - 1).sum())
        pu = None
        if n_pu:
            if minb is None:
                minb = _make_pythia(pythia_lines(_PILEUP_LINES, float(cfg.sqrt_s), (), _pythia_seed(batch, cfg.name + ":pileup")))
            pu_chunks = [_prune(pythia_columns(minb.nextBatch(n_pu)), None)[0]]
            while sum(c["counts"].size for c in pu_chunks) < n_pu:  # nextBatch skips failed events
                pu_chunks.append(_prune(pythia_columns(minb.nextBatch(n_pu - sum(c["counts"].size for c in pu_chunks))), None)[0])
            pu = _concat(pu_chunks)
        gg = (ev["id1"] == 21) & (ev["id2"] == 21)
        if cfg.redecay > 1 and lazy:  # nothing laid out yet: the preselect pass asks for the copies it keeps
            tables, deferred = _redecay_tables(cfg, ev, pu, n_int, chosen, rng, model, defer=True)
            n_tried = np.where(np.arange(n * cfg.redecay) % cfg.redecay == 0, np.repeat(n_tried, cfg.redecay), 0)
            gg = np.repeat(gg, cfg.redecay)
            n *= cfg.redecay
        elif cfg.redecay > 1:  # the Pythia event laid out once, each copy's signal tree merged into it
            tables = _redecay_tables(cfg, ev, pu, n_int, chosen, rng, model)
            n_tried = np.where(np.arange(n * cfg.redecay) % cfg.redecay == 0, np.repeat(n_tried, cfg.redecay), 0)
            gg = np.repeat(gg, cfg.redecay)
            n *= cfg.redecay
        else:
            rec, prod_pos, hard_start = _record(ev, pu, n_int, rng, cfg.luminous_region)
            if cfg.daughters_in_acceptance and cfg.invert_backward:
                _invert_backward(rec, prod_pos, hard_start + chosen)
            if model is not None:
                _decay_signal(rec, hard_start + chosen, prod_pos, model, rng)
            tables = layout_tables(rec)
        tables["events"]["process"] = (
            np.array([_CODES[(cfg.preset, bool(g))] for g in gg], np.int64) if process_known else np.full(n, -1)
        )
        ok = (
            daughters_in_acceptance(tables["mc_particles"], n, cfg.charged_theta, cfg.neutral_theta)
            if cfg.daughters_in_acceptance else np.ones(n, bool)
        )
        cum = carry + np.cumsum(n_tried)
        k = np.flatnonzero(ok)[:need]
        n_cand += int(k[-1]) + 1 if k.size == need else n
        carry = int(cum[-1] - (cum[k[-1]] if k.size else 0))
        if k.size < need and carry >= cfg.max_tries:
            raise DecayError(
                f"Pythia preset {cfg.preset!r} made no {model.mother} with its daughters in the acceptance in {carry} "
                f"events in a row (max_tries {cfg.max_tries}); widen charged_theta/neutral_theta or drop daughters_in_acceptance"
            )
        sub = tables if (n_kept == 0 and k.size == n) else _take_table_events(tables, k, n_kept)
        sub["events"]["n_tried"] = np.diff(np.r_[0, cum[k]]).astype(np.int64)
        parts.append(sub)
        n_kept += int(k.size)
    sigma = float(hard.infoPython().sigmaGen())
    merged = parts[0] if len(parts) == 1 else {
        name: {col: np.concatenate([p[name][col] for p in parts]) for col in parts[0][name]} for name in parts[0]}
    if not cfg.defer_truth:
        return merged, sigma, (n_cand, n_kept), None
    if deferred is None:  # laid out already (one Pythia event per event, or the acceptance cut's rounds)
        return {"events": merged["events"]}, sigma, (n_cand, n_kept), DeferredTruth.of_tables(merged)
    return merged, sigma, (n_cand, n_kept), DeferredTruth(merged["events"], deferred._layout, deferred._signal_rows)


def _invert_backward(rec: GeneratorRecord, prod_pos: np.ndarray, heads: np.ndarray) -> None:
    """Gauss: an event whose signal goes backward (pz < 0) is inverted, z → −z about its PV, before the cut (in place).

    Only the signal's interaction (0) is inverted: momenta ``pz → −pz``, production and decay
    positions mirrored in z about that interaction's PV.

    Args:
        rec: the batch's record (before the signal decay).
        prod_pos: ``(n, 4)`` production positions of the lines [mm, ns].
        heads: ``(n_events,)`` rows of the chosen signal lines.
    """
    back = rec.p4[heads, 2] < 0
    if not back.any():
        return
    lines = np.flatnonzero(back[rec.event] & (rec.interaction == 0))
    first_pv = np.cumsum(rec.n_interactions) - rec.n_interactions
    pv_z = rec.pv[first_pv[rec.event[lines]], 2]
    rec.p4[lines, 2] = -rec.p4[lines, 2]
    rec.decay_pos[lines, 2] = 2.0 * pv_z - rec.decay_pos[lines, 2]
    prod_pos[lines, 2] = 2.0 * pv_z - prod_pos[lines, 2]


def _signal_events(
    cfg: Pythia, hard: Any, n_want: int, model: Any, cc: bool, rng: np.random.Generator, search: dict[str, Any]
) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """``n_want`` Pythia events holding the signal (pruned), the chosen signal line of each and its Pythia tries.

    ``search`` carries the count of signal-less events since the last kept one and the
    efficiency estimate between calls of a batch; events made after the last one kept are dropped.
    """
    chunks: list[dict[str, np.ndarray]] = []
    n_kept, since_last = 0, int(search["since_last"])
    tried_of: list[np.ndarray] = []
    chosen_of: list[np.ndarray] = []
    eff = float(search["eff"])
    n_total = 0
    while n_kept < n_want:
        need = n_want - n_kept
        n_try = int(min(max(need / max(eff, 1e-3) * 1.1 + 8, 16), 5000))
        cols = pythia_columns(hard.nextBatch(n_try))
        keep, chosen = _select_signal(cols, model, cc, rng)
        n_gen = cols["counts"].size
        idx = np.flatnonzero(keep)
        # tries per kept event: events since the previous kept one
        pos = np.r_[-1, idx]
        tries = np.diff(pos)
        if tries.size:
            tries[0] += since_last
        since_last = (n_gen - 1 - idx[-1]) if idx.size else since_last + n_gen
        if since_last >= cfg.max_tries:
            raise DecayError(
                f"Pythia preset {cfg.preset!r} made no {model.mother} (or its conjugate) in {since_last} events in a row "
                f"(max_tries {cfg.max_tries}); choose a preset that makes it"
            )
        idx, tries = idx[: need], tries[: need]
        taken, picked = _prune(cols, chosen[idx], events=idx)
        chunks.append(taken)
        tried_of.append(tries)
        chosen_of.append(np.asarray(picked))
        n_kept += idx.size
        n_total += int(tries.sum())
        eff = max(n_kept, 1) / max(n_total, 1)
    search["since_last"], search["eff"] = 0, eff
    return _concat(chunks), np.concatenate(chosen_of), np.concatenate(tried_of)


def _take_table_events(tables: dict[str, dict[str, np.ndarray]], keep: np.ndarray, offset: int) -> dict[str, dict[str, np.ndarray]]:
    """The laid-out tables of the events ``keep`` (sorted), renumbered ``offset, offset + 1, ...``."""
    out: dict[str, dict[str, np.ndarray]] = {}
    for name, cols in tables.items():
        ev = np.asarray(cols["event"], np.int64)
        rows = np.flatnonzero(np.isin(ev, keep))
        out[name] = {c: np.asarray(v)[rows] for c, v in cols.items()}
        out[name]["event"] = (offset + np.searchsorted(keep, ev[rows])).astype(np.int32)
    return out


def _select_signal(cols: dict[str, np.ndarray], model: Any, cc: bool, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Events holding the signal species, and the chosen signal line (within the event) of each (-1 none)."""
    counts = cols["counts"]
    n = counts.size
    if model is None:
        return np.ones(n, bool), np.full(n, -1, np.int64)
    pid = cols["id"]
    head = int(model.head.pid)
    cand = (pid == head) | ((pid == -head) if cc else False)
    # not an oscillation copy (B0 -> anti-B0 with one daughter): keep the last copy only
    d1, d2 = cols["daughter1"], cols["daughter2"]
    start = np.cumsum(counts) - counts
    ev = np.repeat(np.arange(n), counts)
    d1g = np.where(d1 > 0, start[ev] + d1, 0)
    osc = (d1 > 0) & (d1 == d2) & (np.abs(pid[d1g]) == abs(head))
    cand &= ~osc & (cols["status"] != 0)
    rows = np.flatnonzero(cand)
    n_c = np.bincount(ev[rows], minlength=n)
    keep = n_c > 0
    pick = np.full(n, -1, np.int64)
    if rows.size:
        first = np.cumsum(n_c) - n_c
        r = rng.integers(0, np.maximum(n_c, 1))  # one per event, at random among its candidates
        sel = keep
        pick[sel] = rows[first[sel] + r[sel]] - start[sel]
    return keep, pick


def _event_rows(counts: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """Rows of the events ``idx`` (in that order, repeats allowed) of columns holding ``counts`` rows per event."""
    start = np.cumsum(counts) - counts
    c = np.asarray(counts)[idx]
    return np.arange(int(c.sum()), dtype=np.int64) + np.repeat(start[idx] - (np.cumsum(c) - c), c)


def _take_events(cols: dict[str, np.ndarray], idx: np.ndarray) -> dict[str, np.ndarray]:
    counts = cols["counts"]
    rows = _event_rows(counts, np.asarray(idx, np.int64))
    out = {k: v[rows] for k, v in cols.items() if k not in ("counts", "id1", "id2")}
    out["counts"] = counts[idx]
    out["id1"], out["id2"] = cols["id1"][idx], cols["id2"][idx]
    return out


def _prune(
    cols: dict[str, np.ndarray], chosen: np.ndarray | None, events: np.ndarray | None = None,
) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
    """Keep the physical lines of Pythia events (HepMC status 1, 2, 4), mothers re-attached to the nearest kept ancestor.

    Args:
        cols: :func:`pythia_columns` of a batch.
        chosen: the chosen signal line within each event (of ``events``), or ``None``.
        events: the events to keep (sorted); all when ``None``.  Equal to pruning
            ``_take_events(cols, events)``, each column indexed once.

    Returns:
        Columns with ``hstatus`` (HepMC status) and ``parent`` (the mother's line within the
        event, -1 none) instead of Pythia's links, and the chosen signal lines renumbered.
    """
    counts = cols["counts"]
    if events is None:
        take = None
        id1, id2 = cols["id1"], cols["id2"]
    else:
        events = np.asarray(events, np.int64)
        take = _event_rows(counts, events)
        counts, id1, id2 = counts[events], cols["id1"][events], cols["id2"][events]
    n_ev = counts.size
    start = np.cumsum(counts) - counts
    ev = np.repeat(np.arange(n_ev), counts)
    local = np.arange(ev.size) - start[ev]
    mother1, pid, status = ((cols[k] if take is None else cols[k][take]) for k in ("mother1", "id", "status"))
    parent = np.where((mother1 > 0) & (local > 0), start[ev] + mother1, -1)
    hst = _hepmc_status(pid, status)
    kept = hst > 0
    anc = nearest_kept(parent, kept)
    rows = np.flatnonzero(kept)
    new_counts = np.bincount(ev[rows], minlength=n_ev)
    new_start = np.cumsum(new_counts) - new_counts
    new_local = np.full(ev.size, -1, np.int64)
    new_local[rows] = np.arange(rows.size) - new_start[ev[rows]]
    skip = ("counts", "id1", "id2", "mother1", "daughter1", "daughter2", "status")
    src = rows if take is None else take[rows]
    out = {k: v[src] for k, v in cols.items() if k not in skip}
    a = anc[rows]
    out["parent"] = np.where(a >= 0, new_local[np.maximum(a, 0)], -1)
    out["hstatus"] = hst[rows]
    out["counts"], out["id1"], out["id2"] = new_counts, id1, id2
    picked = None if chosen is None else np.where(chosen >= 0, new_local[start + np.maximum(chosen, 0)], -1)
    return out, picked


def _replicate(
    ev: dict[str, np.ndarray], pu: dict[str, np.ndarray] | None, n_int: np.ndarray, chosen: np.ndarray,
    n_tried: np.ndarray, times: int,
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray] | None, np.ndarray, np.ndarray, np.ndarray]:
    """ReDecay: every hard event (and its pile-up events) ``times`` times in a row, before the signal decay.

    Returns:
        The hard events, the pile-up events (each copy's in the order :func:`_record` reads
        them), interactions per event, the chosen signal line of each and its Pythia tries
        (the first copy's; 0 on the others).
    """
    n = int(ev["counts"].size)
    idx = np.repeat(np.arange(n), times)
    tries = np.where(np.arange(idx.size) % times == 0, np.asarray(n_tried)[idx], 0)
    pu_r = None
    if pu is not None:
        k = np.asarray(n_int, np.int64) - 1  # pile-up events of each hard event, consecutive in ``pu``
        pu_r = _take_events(pu, _event_rows(k, idx))
    return _take_events(ev, idx), pu_r, np.asarray(n_int)[idx], np.asarray(chosen)[idx], tries


def _concat(chunks: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    return {k: np.concatenate([c[k] for c in chunks]) for k in chunks[0]}


def _interaction_parts(
    ev: dict[str, np.ndarray], pu: dict[str, np.ndarray] | None, n_int: np.ndarray,
) -> list[tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]]:
    """The hard events and their pile-up events as ``(columns, event of each, interaction of each)``.

    ``ev`` holds ``n`` hard events (interaction 0 of events 0..n-1); ``pu`` the pile-up
    events, ``n_int[i] - 1`` of them for event ``i`` in order (interactions 1..n_int[i]-1).
    """
    n = int(ev["counts"].size)
    parts = [(ev, np.arange(n), np.zeros(n, np.int64))]
    if pu is not None:
        pu_event = np.repeat(np.arange(n), n_int - 1)
        pu_inter = np.concatenate([np.arange(1, k) for k in n_int]) if pu_event.size else np.zeros(0, np.int64)
        parts.append((pu, pu_event, pu_inter))
    return parts


def _record(
    ev: dict[str, np.ndarray], pu: dict[str, np.ndarray] | None, n_int: np.ndarray,
    rng: np.random.Generator, region: LuminousRegion,
) -> tuple[GeneratorRecord, np.ndarray, np.ndarray]:
    """Hard events plus pile-up as one :class:`GeneratorRecord` (GeV → MeV, mm/c → ns, PVs added).

    Returns:
        The record, the production position ``(n, 4)`` [mm, ns] of every line and the row of
        line 0 of each hard event.
    """
    n_ev = ev["counts"].size
    parts = _interaction_parts(ev, pu, n_int)
    pvd = sample_primary_vertices(int(n_int.sum()), rng, region)
    pv = np.stack([pvd["pv_x"], pvd["pv_y"], pvd["pv_z"], pvd["pv_t"]], axis=1)  # event by event, interaction by interaction
    first_pv = np.cumsum(n_int) - n_int
    cols: dict[str, list[np.ndarray]] = {k: [] for k in ("event", "pid", "status", "p4", "mass", "parent", "decay_pos", "interaction", "pos")}
    offset = 0
    hard_start = np.zeros(0, np.int64)
    for c, event_of, inter_of in parts:
        counts = c["counts"]
        n = int(counts.sum())
        start = np.cumsum(counts) - counts
        event = np.repeat(event_of, counts)
        inter = np.repeat(inter_of, counts)
        parent = np.where(c["parent"] >= 0, np.repeat(start, counts) + c["parent"] + offset, -1)
        status = c["hstatus"]
        p4 = np.stack([c["px"], c["py"], c["pz"], c["e"]], axis=1) * 1000.0
        shift = pv[first_pv[event] + inter]
        prod = np.stack([c["x"], c["y"], c["z"], c["t"] / C_LIGHT], axis=1) + shift
        m = np.where(c["m"] > 0, c["m"], 1.0)
        step = (c["tau"] / m)[:, None] * np.stack([c["px"], c["py"], c["pz"], c["e"] / C_LIGHT], axis=1)
        dpos = prod + step
        cols["event"].append(event)
        cols["pid"].append(c["id"])
        cols["status"].append(status)
        cols["p4"].append(p4)
        cols["mass"].append(c["m"] * 1000.0)
        cols["parent"].append(parent)
        cols["decay_pos"].append(dpos)
        cols["interaction"].append(inter)
        cols["pos"].append(prod)
        if c is ev:
            hard_start = start
        offset += n
    cat = {k: np.concatenate(v) for k, v in cols.items()}
    rec = GeneratorRecord(
        n_events=n_ev, event=cat["event"], pid=cat["pid"], status=cat["status"], p4=cat["p4"], mass=cat["mass"],
        parent=cat["parent"], decay_pos=cat["decay_pos"], interaction=cat["interaction"], n_interactions=n_int,
        pv=pv, is_signal=np.zeros(cat["pid"].size, bool),
    )
    return rec, cat["pos"], hard_start


def _drop_descendants(rec: GeneratorRecord, heads: np.ndarray) -> None:
    """Remove every descendant of the lines ``heads`` (status 0, no mother), in place."""
    n_lines = rec.pid.size
    desc = np.zeros(n_lines, bool)
    mark = np.zeros(n_lines, bool)
    mark[heads] = True
    par = rec.parent
    has_par = par >= 0
    while True:  # propagate down the mother links
        new = np.zeros(n_lines, bool)
        new[has_par] = mark[par[has_par]] & ~desc[has_par]
        new[heads] = False
        if not new.any():
            break
        desc |= new
        mark = mark | new
    rec.status[desc] = 0
    rec.parent[desc] = -1


def _redecay_tables(
    cfg: Pythia, ev: dict[str, np.ndarray], pu: dict[str, np.ndarray] | None, n_int: np.ndarray, chosen: np.ndarray,
    rng: np.random.Generator, model: Any, defer: bool = False,
) -> Any:
    """ReDecay: ``cfg.redecay`` laid-out events from each hard event (and its pile-up), the signal decayed in each.

    Equal to writing every copy out (:func:`_replicate`, :func:`_record`, :func:`_decay_signal`,
    :func:`layout_tables`), with the same random numbers in the same order: the primary vertices
    of every copy's interactions, then the signal decays of all copies.  The record of each
    Pythia event is laid out once (:func:`~sim.generation._event_tables.layout_copies`); per copy
    only the signal tree is made and merged, and the end vertices of the other lines are the
    group's, translated to the copy's primary vertices.

    Args:
        cfg: the pass.
        ev: ``n`` hard events (pruned), ``pu`` their pile-up events, ``n_int`` ``(n,)`` interactions.
        chosen: ``(n,)`` signal line within each hard event.
        rng: the pass's randomness.
        model: the signal decay model.
        defer: lay nothing out: return the ``events`` table and the copies' truth as a
            :class:`~sim.generation._event_tables.DeferredTruth` (laid out on demand, copy by copy;
            the signal particles the preselect pass scores made without a layout).

    Returns:
        The tables; with ``defer``, ``({"events": ...}, DeferredTruth)``.
    """
    times = int(cfg.redecay)
    n_g = int(ev["counts"].size)
    copy_group = np.repeat(np.arange(n_g), times)
    n_int = np.asarray(n_int, np.int64)
    n_int_c = n_int[copy_group]
    # the record of the groups, positions relative to their interaction's PV (what _record shifts)
    parts = _interaction_parts(ev, pu, n_int)
    pvd = sample_primary_vertices(int(n_int_c.sum()), rng, cfg.luminous_region)
    pv = np.stack([pvd["pv_x"], pvd["pv_y"], pvd["pv_z"], pvd["pv_t"]], axis=1)  # copy by copy, interaction by interaction
    first_pv = np.cumsum(n_int_c) - n_int_c
    cols: dict[str, list[np.ndarray]] = {k: [] for k in ("event", "pid", "status", "p4", "mass", "parent", "interaction", "rel", "step")}
    offset = 0
    hard_start = np.zeros(0, np.int64)
    for c, event_of, inter_of in parts:
        counts = c["counts"]
        start = np.cumsum(counts) - counts
        cols["event"].append(np.repeat(event_of, counts))
        cols["interaction"].append(np.repeat(inter_of, counts))
        cols["parent"].append(np.where(c["parent"] >= 0, np.repeat(start, counts) + c["parent"] + offset, -1))
        cols["status"].append(c["hstatus"])
        cols["pid"].append(c["id"])
        cols["p4"].append(np.stack([c["px"], c["py"], c["pz"], c["e"]], axis=1) * 1000.0)
        cols["mass"].append(c["m"] * 1000.0)
        cols["rel"].append(np.stack([c["x"], c["y"], c["z"], c["t"] / C_LIGHT], axis=1))
        m = np.where(c["m"] > 0, c["m"], 1.0)
        cols["step"].append((c["tau"] / m)[:, None] * np.stack([c["px"], c["py"], c["pz"], c["e"] / C_LIGHT], axis=1))
        if c is ev:
            hard_start = start
        offset += int(counts.sum())
    cat = {k: np.concatenate(v) for k, v in cols.items()}
    rel, step, inter = cat["rel"], cat["step"], cat["interaction"]
    base = GeneratorRecord(
        n_events=n_g, event=cat["event"], pid=cat["pid"], status=cat["status"], p4=cat["p4"], mass=cat["mass"],
        parent=cat["parent"], decay_pos=np.zeros((cat["pid"].size, 4)), interaction=inter, n_interactions=n_int,
        pv=np.zeros((int(n_int.sum()), 4)), is_signal=np.zeros(cat["pid"].size, bool),
    )
    heads = hard_start + np.asarray(chosen, np.int64)
    mirror = np.zeros(n_g, bool)
    if cfg.daughters_in_acceptance and cfg.invert_backward:  # as _invert_backward, on the groups' momenta
        mirror = base.p4[heads, 2] < 0
        lines = np.flatnonzero(mirror[base.event] & (inter == 0))
        base.p4[lines, 2] = -base.p4[lines, 2]

    def positions(rows: np.ndarray, copies: np.ndarray, with_step: bool) -> np.ndarray:
        """Production (or end) position [mm, ns] of the group's lines ``rows`` in the copies ``copies``."""
        out = rel[rows] + pv[first_pv[copies] + inter[rows]]
        if with_step:
            out = out + step[rows]
        flip = np.flatnonzero(mirror[copy_group[copies]] & (inter[rows] == 0))
        out[flip, 2] = 2.0 * pv[first_pv[copies[flip]], 2] - out[flip, 2]
        return out

    copies = np.arange(copy_group.size)
    head_rows = heads[copy_group]
    signal = GeneratorRecord(
        n_events=copy_group.size, event=copies.copy(), pid=base.pid[head_rows].copy(),
        status=np.full(copies.size, STATUS_DECAYED, np.int64), p4=base.p4[head_rows].copy(), mass=base.mass[head_rows].copy(),
        parent=np.full(copies.size, -1, np.int64), decay_pos=positions(head_rows, copies, True),
        interaction=np.zeros(copies.size, np.int64), n_interactions=n_int_c, pv=pv, is_signal=np.zeros(copies.size, bool),
    )
    _drop_descendants(base, heads)
    base.status[heads] = STATUS_DECAYED
    base.is_signal[heads] = True
    _decay_signal(signal, copies, positions(head_rows, copies, False), model, rng)

    def end_pos(rows: np.ndarray, cps: np.ndarray) -> np.ndarray:
        return positions(rows, cps, True)

    if not defer:
        return layout_copies(base, heads, copy_group, signal, pv, end_pos)
    events = copies_events(pv, n_int_c)
    return {"events": events}, DeferredTruth(
        events, lambda keep: layout_copies(base, heads, copy_group, signal, pv, end_pos, copies=keep),
        lambda: copies_signal_rows(base, heads, copy_group, signal, pv, end_pos))


def _decay_signal(rec: GeneratorRecord, heads: np.ndarray, prod_pos: np.ndarray, model: Any, rng: np.random.Generator) -> None:
    """Undo Pythia's decay of the signal lines ``heads`` and append Mambah's decay (in place).

    With the complete-tree decay engine (``model.engine``) the signal's whole tree comes from
    Mambah, the particles the user left undecayed completed by its decay table (K_S0, Λ
    decaying in flight); otherwise the user's chains are generated as written.

    Args:
        rec: the batch's record.
        heads: ``(k,)`` rows of the chosen signal lines, one per event.
        prod_pos: ``(n, 4)`` production positions of the lines [mm, ns].
        model: the signal :class:`~sim.generation.decay.DecayModel`.
        rng: randomness (mode choice, phasespace seeds, decay times).
    """
    _drop_descendants(rec, heads)
    conj = rec.pid[heads] != model.head.pid
    m_head = float(model.head.mass)
    rec.p4[heads, 3] = np.sqrt(np.sum(rec.p4[heads, :3] ** 2, axis=1) + m_head**2)  # Mambah's mass, Pythia's 3-momentum
    rec.mass[heads] = m_head
    rec.status[heads] = STATUS_DECAYED
    rec.is_signal[heads] = True
    make = _engine_rows if hasattr(model, "engine") and hasattr(model, "sample_heads") else _chain_rows
    add = make(rec, heads, conj, prod_pos[heads], model, rng)
    if add is None:
        return
    rec.event = np.concatenate([rec.event, rec.event[heads][add["inst"]]])
    rec.pid = np.concatenate([rec.pid, add["pid"]])
    rec.status = np.concatenate([rec.status, add["status"]])
    rec.p4 = np.concatenate([rec.p4, add["p4"]])
    rec.mass = np.concatenate([rec.mass, add["mass"]])
    rec.parent = np.concatenate([rec.parent, add["parent"]])
    rec.decay_pos = np.concatenate([rec.decay_pos, add["decay_pos"]])
    rec.interaction = np.concatenate([rec.interaction, rec.interaction[heads][add["inst"]]])
    rec.is_signal = np.concatenate([rec.is_signal, np.ones(add["pid"].size, bool)])


def _engine_rows(
    rec: GeneratorRecord, heads: np.ndarray, conj: np.ndarray, head_pos: np.ndarray, model: Any, rng: np.random.Generator
) -> dict[str, np.ndarray] | None:
    """Complete trees from the decay engine: appended lines (``inst`` = instance) and the heads' decay positions."""
    engine = model.engine
    k = heads.size
    if np.any(conj) and not model.has_cc:
        raise DecayError(f"the signal {model.source!r} has no charge-conjugate decay for the {int(rec.pid[heads[conj][0]])} Pythia made")
    roots = np.empty(k, np.int64)
    for flag, chains in ((False, model.chains), (True, model.cc_chains)):
        sel = np.flatnonzero(conj == flag)
        if sel.size == 0:
            continue
        r = np.array([c.root for c in chains])
        probs = np.array([c.probability for c in chains])
        pick = rng.choice(len(chains), size=sel.size, p=probs / probs.sum()) if len(chains) > 1 else np.zeros(sel.size, np.int64)
        roots[sel] = r[pick]
    rows = engine.generate(roots, rec.p4[heads], rng)
    _prod, dec = engine.decay_positions(rows, head_pos, rng)
    is_head = rows.gen == 0
    head_rows = np.flatnonzero(is_head)
    rec.decay_pos[heads[rows.inst[head_rows]]] = dec[head_rows]
    rec.p4[heads[rows.inst[head_rows]]] = rows.p4[head_rows]
    rec.mass[heads[rows.inst[head_rows]]] = rows.mass[head_rows]
    other = np.flatnonzero(~is_head)
    if other.size == 0:
        return None
    new_index = np.full(is_head.size, -1, np.int64)
    new_index[other] = rec.pid.size + np.arange(other.size)
    new_index[head_rows] = heads[rows.inst[head_rows]]
    return {
        "inst": rows.inst[other], "pid": engine.pid[rows.species[other]].astype(np.int64),
        "status": np.where(rows.mode[other] >= 0, STATUS_DECAYED, STATUS_FINAL), "p4": rows.p4[other], "mass": rows.mass[other],
        "parent": new_index[rows.parent[other]], "decay_pos": dec[other],
    }


def _chain_rows(
    rec: GeneratorRecord, heads: np.ndarray, conj: np.ndarray, head_pos: np.ndarray, model: Any, rng: np.random.Generator
) -> dict[str, np.ndarray] | None:
    """The user's exclusive chains (phasespace in the head's rest frame, boosted); CC by conjugating the ids."""
    k = heads.size
    mode = rng.choice(len(model.chains), size=k, p=model.probabilities) if len(model.chains) > 1 else np.zeros(k, np.int64)
    seeds = rng.integers(0, 2**62, size=len(model.chains))
    out: dict[str, list[np.ndarray]] = {key: [] for key in ("inst", "pid", "status", "p4", "mass", "parent", "decay_pos")}
    base = rec.pid.size
    m_head = float(model.head.mass)
    for ci, chain in enumerate(model.chains):
        sel = np.flatnonzero(mode == ci)
        if sel.size == 0:
            continue
        nodes = chain.nodes
        S = len(nodes)
        rest = chain.generate_rest_frame(sel.size, int(seeds[ci]))
        head4 = rec.p4[heads[sel]]
        lab = boost(rest, head4[:, None, :])
        lab[:, 0] = head4
        mass = np.sqrt(np.maximum(rest[..., 3] ** 2 - np.sum(rest[..., :3] ** 2, axis=2), 0.0))
        mass[:, 0] = m_head
        pos = np.empty((sel.size, S, 4))
        dec = np.full((sel.size, S, 4), np.nan)
        pos[:, 0] = head_pos[sel]
        for j, nd in enumerate(nodes):
            if j > 0:
                pos[:, j] = dec[:, nd.mother]
            if nd.first_daughter >= 0:
                t = rng.exponential(1.0, sel.size) * nd.lifetime  # proper time [ns]
                mj = np.maximum(mass[:, j], 1e-9)
                dec[:, j, :3] = pos[:, j, :3] + lab[:, j, :3] / mj[:, None] * (C_LIGHT * t)[:, None]
                dec[:, j, 3] = pos[:, j, 3] + lab[:, j, 3] / mj * t
        rec.decay_pos[heads[sel]] = dec[:, 0]
        if S == 1:
            continue
        # appended lines: nodes 1..S-1 of each instance, instance by instance
        row_of = base + np.arange(sel.size)[:, None] * (S - 1) + (np.arange(S) - 1)[None, :]
        row_of[:, 0] = heads[sel]
        pids = np.array([nd.pid for nd in nodes], np.int64)
        cpids = np.array([_conjugate_pid(int(p)) for p in pids], np.int64)
        pid_i = np.where(conj[sel][:, None], cpids[None, :], pids[None, :])
        mothers = np.array([max(nd.mother, 0) for nd in nodes])
        st = np.array([STATUS_DECAYED if nd.first_daughter >= 0 else STATUS_FINAL for nd in nodes])
        out["inst"].append(np.repeat(sel, S - 1))
        out["pid"].append(pid_i[:, 1:].ravel())
        out["status"].append(np.tile(st[1:], sel.size))
        out["p4"].append(lab[:, 1:].reshape(-1, 4))
        out["mass"].append(mass[:, 1:].ravel())
        out["parent"].append(row_of[:, mothers[1:]].ravel())
        out["decay_pos"].append(dec[:, 1:].reshape(-1, 4))
        base += sel.size * (S - 1)
    if not out["pid"]:
        return None
    return {key: np.concatenate(v) for key, v in out.items()}
