"""The event-store schema, declared once with SQLAlchemy Core.

Every table is keyed by ``batch`` first, so a batch can be written, read,
deleted, exported or merged as one unit.  Units: momenta and energies in MeV,
lengths in mm, times in ns; particle species as PDG Monte Carlo ids.

Tables
------
``events``          one row per event: primary vertex, occupancy.
``mc_particles``    generated particles with mother/daughter links (indices
                    within the event) and production/decay vertex links.
``mc_vertices``     generated vertices (index 0 is the primary vertex).
``protoparticles``  reconstructed tracks, each linked to its MC particle, with
                    reconstructed kinematics, track quality and PID columns.
``vertices``        reconstructed vertices (primary vertices).
``calo_clusters``   ECAL clusters (calorimeter pass).
``neutral_protoparticles``  photon candidates from neutral clusters (calorimeter pass).
``batches``         one row per complete batch (written in the batch's transaction).
``metadata``        key/value: schema version, run seed, pipeline config.

Views (in every store and Parquet dataset, :data:`VIEWS`)
---------------------------------------------------------
``particles``       ``mc_particles`` with global keys ``particle_id``, ``event_id``,
                    ``mother_id`` and the mother's ``mother_pid``.
``tracks``          ``protoparticles`` joined to their MC particle: ``track_id``,
                    ``event_id``, ``particle_id``, ``true_pid``, ``true_px/py/pz/e``,
                    ``mother_id``, ``true_mother_pid`` (NULL for ghosts).

Track-state covariance (``protoparticles``, resolution pass): the state is
``(x, y, tx, ty, qop)`` at ``z`` (mm, mm, rad, rad, q/p in 1/MeV); its symmetric 5 × 5
covariance is stored as the 15 independent elements of the upper triangle, row by
row: ``cov_x_x, cov_x_y, cov_x_tx, cov_x_ty, cov_x_qop, cov_y_y, cov_y_tx, cov_y_ty,
cov_y_qop, cov_tx_tx, cov_tx_ty, cov_tx_qop, cov_ty_ty, cov_ty_qop, cov_qop_qop``
(``sim.detector.trackcov.COV_COLUMNS``; ``cov_from_columns`` rebuilds the matrix).

Column types
------------
Chosen per quantity to keep the store small (the default job: about 700 bytes per
event; DuckDB compresses every column by itself: bit-packing, RLE, dictionaries and
ALP/ALP-RD for floats, lossless):

* generated four-momenta (``mc_particles.px/py/pz/e``): ``DOUBLE`` rounded to 1e-7 MeV
  (:data:`TRUTH_DECIMALS`): four-momentum is conserved at every vertex to 4e-7 MeV and
  truth invariant masses of boosted systems stay exact;
* reconstructed momenta and energies [MeV], masses, positions [mm], times [ns], slopes,
  covariances, impact parameters, χ² and every detector response (PID, ProbNN, cluster
  shapes): ``FLOAT`` (IEEE float32, 24-bit mantissa: 6e-8 relative, i.e. 6 keV at
  100 GeV, 0.1 µm at 1 m; far below any resolution simulated).  An invariant mass made
  from float32 momenta carries ~6e-8 (p/m)² relative error (0.07 % for a D0 at
  200 GeV, against a resolution of ~0.4 %); compute it in DOUBLE (``px::DOUBLE``,
  ``numpy.float64``), never in float32 arithmetic;
  Log-likelihoods (``RichDLL*``, ``PID*``, ``Muon*LL``) are rounded to 1e-2 when written
  (:data:`DLL_DECIMALS`), reconstructed positions and impact parameters to 1e-4 mm
  (:data:`POSITION_DECIMALS`; the track state's z to 1e-3 mm, :data:`STATE_Z_DECIMALS`),
  track slopes to 1e-6 rad (:data:`SLOPE_DECIMALS`), track χ²/ndf to 1e-4
  (:data:`CHI2NDOF_DECIMALS`), generated vertex positions to 1e-4 mm
  (:data:`TRUE_POSITION_DECIMALS`);
* event weights: ``DOUBLE`` (summed over many events);
* indices, links and counts: ``INTEGER``; codes and flags (charge, track type, region,
  status, small counts): ``SMALLINT`` or ``BOOLEAN`` (integers are bit-packed by their
  range, so a wider type costs nothing on disk);
* keys: ``batch``/``event``/``index`` ``INTEGER`` (RLE / bit-packed).

A global key is one BIGINT: ``event_id = batch * 2**24 + event`` and
``particle_id = event_id * 2**19 + index`` (so batches < 2**20, events per batch
< 2**24, particles per event < 2**19; beyond, DuckDB stops with an overflow error),
so joins on it cannot forget ``batch``.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

__all__ = (
    "SCHEMA_VERSION",
    "METADATA",
    "DATA_TABLES",
    "TABLES",
    "VIEWS",
    "create_ddl",
    "create_view_ddl",
    "column_decimals",
    "column_names",
)

#: Bumped whenever a table or column changes meaning; checked on open.
#: 2: track-state covariance (cov_*), calorimeter tables and columns, full-event
#: columns (events.process/n_interactions/n_tried, mc_particles.status), preselection
#: (events.simulated/preselect_score), the tracks/particles views.
#: 3: every momentum, energy, mass, position, time and covariance is FLOAT (32 bit) instead
#: of DOUBLE, but the generated four-momenta, DOUBLE rounded to 1e-7 MeV; log-likelihoods
#: rounded to 1e-3 (the store of the default job is ~0.55x the size; values are the DOUBLE
#: ones rounded).
SCHEMA_VERSION = 3

METADATA = sa.MetaData()

# Column types per quantity (schema version 3; the module docstring's "Column types"):
_F = sa.REAL  # FLOAT (32 bit): momenta, energies, masses, positions, times, covariances (24-bit mantissa, 6e-8 relative)
_f = sa.REAL  # FLOAT (32 bit): detector responses (PID, cluster shapes, scores)
_D: sa.Double[float] = sa.Double()  # DOUBLE: event weights, generated four-momenta (rounded, below)

#: Generated (MC truth) four-momenta are DOUBLE rounded to 1e-7 MeV (0.1 eV) when written
#: (``info={"decimals": 7}``, applied by :func:`mambah.store.insert`/``update``): four-momentum
#: stays conserved at every vertex to 4e-7 MeV and truth invariant masses of boosted systems
#: exact (float32's 6e-8 relative would give ~1 % on m(pK-pi+) of a 1 TeV Lambda_c+, measured),
#: while DuckDB's ALP codec stores such decimals in ~6 bytes instead of ~7.4.
TRUTH_DECIMALS = 7
TRUTH_QUANTUM_MEV = 10.0**-TRUTH_DECIMALS
#: Log-likelihoods (RichDLL*, PID*, MuonMuLL/MuonBkgLL) are rounded to 1e-2 when written: their
#: spreads are units and analyses cut on them in steps of 1 (DLLK > 0, > 5), so 0.005 at most
#: moves a cut's efficiency by the density at the cut times 0.005 (2e-4 for pions at DLLK = 0);
#: decimals compress (ALP: 1e-2 saves 0.4 byte per value against 1e-3, 29 -> 25 bits; 1e-3 was
#: the seventh stop's choice).  ProbNN* and ghost_prob are not rounded: their tails near 0 and 1
#: are used through logit/log.
DLL_DECIMALS = 2
_DLL = {"decimals": DLL_DECIMALS}
#: Reconstructed positions and impact parameters (protoparticles x/y/z/ip, vertices x/y/z) are
#: rounded to 1e-4 mm (0.1 um) when written: resolutions are 10-100 um, and decimals compress.
POSITION_DECIMALS = 4
_POS = {"decimals": POSITION_DECIMALS}
#: Generated vertex positions (mc_vertices x/y/z, events pv_x/y/z) are rounded to 1e-4 mm (0.1 um), as the
#: reconstructed ones: 100 times below the finest vertex resolution (PV x/y ~ 10 um), and a true
#: impact parameter of a prompt track stays below 0.1 um; 1e-5 mm (float32's own precision at
#: z = 170 mm) cost 5 bytes per event more.  Times are not rounded.
TRUE_POSITION_DECIMALS = 4
_TRUE_POS = {"decimals": TRUE_POSITION_DECIMALS}
#: Track slopes (protoparticles tx/ty) are rounded to 1e-6 rad: the smallest slope error of the
#: default job is 2.9e-5 rad (0.01 % quantile of sqrt(cov_tx_tx)), so the rounding's 2.9e-7 rad rms
#: adds 5e-5 of it in quadrature (1.6 -> 1.0 byte saved per value, float32 -> ALP).
SLOPE_DECIMALS = 6
_SLOPE = {"decimals": SLOPE_DECIMALS}
#: The track state's z (protoparticles z, -200 to 2 500 mm) is rounded to 1e-3 mm (1 um): the state
#: is defined at that z, and 0.5 um along the track moves x/y by 0.5 um x |t| < 0.2 um, far below
#: the 10-100 um resolutions; at 1e-4 mm the values need too many bits for ALP.
STATE_Z_DECIMALS = 3
_STATE_Z = {"decimals": STATE_Z_DECIMALS}
#: Track-fit chi2/ndf is rounded to 1e-4 (values 0.3-10; analyses cut at 3-5).
CHI2NDOF_DECIMALS = 4
_CHI2NDOF = {"decimals": CHI2NDOF_DECIMALS}


def _key(*extra: sa.Column) -> list[sa.Column]:
    return [
        sa.Column("batch", sa.Integer, nullable=False, comment="batch number"),
        sa.Column("event", sa.Integer, nullable=False, comment="event number within the batch"),
        *extra,
    ]


EVENTS = sa.Table(
    "events",
    METADATA,
    *_key(),
    sa.Column("pv_x", _F, comment="signal primary vertex x [mm]", info=_TRUE_POS),
    sa.Column("pv_y", _F, comment="signal primary vertex y [mm]", info=_TRUE_POS),
    sa.Column("pv_z", _F, comment="signal primary vertex z [mm]", info=_TRUE_POS),
    sa.Column("pv_t", _F, comment="signal primary vertex time [ns]"),
    sa.Column("n_pv", sa.SmallInteger, comment="number of primary vertices (occupancy pass)"),
    sa.Column("n_tracks", sa.Integer, comment="number of reconstructed tracks, nTracks (occupancy pass)"),
    sa.Column("n_interactions", sa.SmallInteger, comment="pp interactions in the crossing (full-event generators; NULL for the gun)"),
    sa.Column("process", sa.Integer, comment="generator process code (Pythia code, HepMC signal_process_id); NULL if unknown"),
    sa.Column("n_tried", sa.Integer, comment="generator events tried for this kept event (signal filter); sum/count = 1/efficiency"),
    sa.Column("simulated", sa.Boolean, comment="false: skipped by the preselect pass, no detector simulation (NULL or true: simulated)"),
    sa.Column("preselect_score", _f, comment="selection-model score of the preselect pass (NULL without it)"),
    sa.Column("weight", _D, comment="event weight of the preselect pass's sampling mode, 1/P(kept) (NULL: 1)"),
    sa.PrimaryKeyConstraint("batch", "event"),
    comment="one row per event",
)

MC_PARTICLES = sa.Table(
    "mc_particles",
    METADATA,
    *_key(sa.Column("index", sa.Integer, nullable=False, comment="particle index within the event")),
    sa.Column("pid", sa.Integer, nullable=False, comment="PDG Monte Carlo id"),
    *[
        sa.Column(k, _D, nullable=False, comment=f"{what}[MeV], rounded to {TRUTH_QUANTUM_MEV:g} MeV", info={"decimals": TRUTH_DECIMALS})
        for k, what in (("px", ""), ("py", ""), ("pz", ""), ("e", "energy "))
    ],
    sa.Column("mass", _F, nullable=False, comment="generated invariant mass [MeV]"),
    sa.Column("charge", sa.SmallInteger, nullable=False, comment="electric charge [e]"),
    sa.Column("mother", sa.Integer, nullable=False, comment="index of the mother, -1 if none"),
    sa.Column("first_daughter", sa.Integer, nullable=False, comment="index of the first daughter, -1 if none"),
    sa.Column("last_daughter", sa.Integer, nullable=False, comment="index of the last daughter (inclusive), -1 if none"),
    sa.Column("prod_vertex", sa.Integer, nullable=False, comment="index of the production vertex in mc_vertices"),
    sa.Column("decay_vertex", sa.Integer, nullable=False, comment="index of the decay vertex, -1 if stable"),
    sa.Column("is_signal", sa.Boolean, nullable=False, comment="part of a generated signal decay"),
    sa.Column("in_acceptance", sa.Boolean, comment="geometric acceptance (acceptance pass)"),
    sa.Column("status", sa.SmallInteger, comment="HepMC status: 1 final, 2 decayed, 4 beam (full-event generators; NULL for the gun)"),
    sa.PrimaryKeyConstraint("batch", "event", "index"),
    comment="generated (MC truth) particles",
)

MC_VERTICES = sa.Table(
    "mc_vertices",
    METADATA,
    *_key(sa.Column("index", sa.Integer, nullable=False, comment="vertex index within the event; 0 = primary")),
    sa.Column("x", _F, nullable=False, comment="[mm]", info=_TRUE_POS),
    sa.Column("y", _F, nullable=False, comment="[mm]", info=_TRUE_POS),
    sa.Column("z", _F, nullable=False, comment="[mm]", info=_TRUE_POS),
    sa.Column("t", _F, nullable=False, comment="[ns]"),
    sa.Column("mother_particle", sa.Integer, nullable=False, comment="index of the decaying particle, -1 for a primary vertex"),
    sa.PrimaryKeyConstraint("batch", "event", "index"),
    comment="generated (MC truth) vertices",
)

PROTOPARTICLES = sa.Table(
    "protoparticles",
    METADATA,
    *_key(sa.Column("index", sa.Integer, nullable=False, comment="track index within the event")),
    sa.Column("mc_particle", sa.Integer, nullable=False, comment="index of the matched MC particle, -1 for a ghost"),
    sa.Column("track_type", sa.SmallInteger, nullable=False, comment="LHCb Track::Types: 3 Long, 4 Upstream, 5 Downstream"),
    sa.Column("charge", sa.SmallInteger, comment="reconstructed charge [e]"),
    sa.Column("px", _F, comment="reconstructed momentum [MeV]"),
    sa.Column("py", _F, comment="[MeV]"),
    sa.Column("pz", _F, comment="[MeV]"),
    sa.Column("tx", _F, comment="slope dx/dz at the first state", info=_SLOPE),
    sa.Column("ty", _F, comment="slope dy/dz at the first state", info=_SLOPE),
    sa.Column("x", _F, comment="state at closest approach to the beam line [mm]", info=_POS),
    sa.Column("y", _F, comment="[mm]", info=_POS),
    sa.Column("z", _F, comment="[mm]", info=_STATE_Z),
    sa.Column("ip", _F, comment="impact parameter w.r.t. the primary vertex [mm]", info=_POS),
    sa.Column("ip_chi2", _F, comment="impact-parameter chi2"),
    sa.Column("track_chi2ndof", _F, comment="track fit chi2/ndf", info=_CHI2NDOF),
    sa.Column("ghost_prob", _F, comment="ghost probability"),
    *[
        sa.Column(f"cov_{a}_{b}", _F, comment=f"state covariance ({a}, {b}) at z [units of {a} x {b}; mm, rad, 1/MeV]")
        for i, a in enumerate(("x", "y", "tx", "ty", "qop"))
        for b in ("x", "y", "tx", "ty", "qop")[i:]
    ],
    sa.Column("has_rich", sa.Boolean, comment="RICH information available (pid pass)"),
    *[sa.Column(f"RichDLL{h}", _f, comment=f"RICH delta log-likelihood {h} - pi", info=_DLL) for h in ("e", "mu", "K", "p")],
    sa.Column("is_muon", sa.Boolean, comment="IsMuon"),
    sa.Column("MuonMuLL", _f, comment="muon-system log-likelihood, muon hypothesis", info=_DLL),
    sa.Column("MuonBkgLL", _f, comment="muon-system log-likelihood, non-muon hypothesis", info=_DLL),
    *[sa.Column(f"PID{h}", _f, comment=f"combined delta log-likelihood {h} - pi", info=_DLL) for h in ("e", "mu", "K", "p")],
    *[
        sa.Column(f"ProbNN{h}", _f, comment=f"ProbNN-like probability for {h}")
        for h in ("e", "mu", "pi", "k", "p", "ghost")
    ],
    sa.Column("calo_cluster", sa.Integer, comment="matched ECAL cluster (calorimeter pass), -1 if none"),
    sa.Column("calo_e_over_p", _f, comment="E(cluster)/p(track) (calorimeter pass)"),
    sa.Column("EcalPIDe", _f, comment="calorimeter electron delta log-likelihood e - pi (calorimeter pass)"),
    sa.Column("track_p", _F, comment="track momentum before brem recovery [MeV] (calorimeter pass)"),
    sa.Column("brem_multiplicity", sa.SmallInteger, comment="brem photon clusters added back (calorimeter pass)"),
    sa.Column("has_brem_added", sa.Boolean, comment="brem recovery added energy (calorimeter pass)"),
    sa.Column("brem_energy", _F, comment="energy added by brem recovery [MeV]; px, py, pz include it"),
    sa.PrimaryKeyConstraint("batch", "event", "index"),
    comment="reconstructed tracks (detector and PID passes)",
)

VERTICES = sa.Table(
    "vertices",
    METADATA,
    *_key(sa.Column("index", sa.Integer, nullable=False, comment="vertex index within the event")),
    sa.Column("x", _F, comment="[mm]", info=_POS),
    sa.Column("y", _F, comment="[mm]", info=_POS),
    sa.Column("z", _F, comment="[mm]", info=_POS),
    sa.Column("cov_xx", _F, comment="[mm^2]"),
    sa.Column("cov_yy", _F, comment="[mm^2]"),
    sa.Column("cov_zz", _F, comment="[mm^2]"),
    sa.Column("chi2", _F),
    sa.Column("ndof", sa.Integer),
    sa.Column("n_tracks", sa.Integer, comment="tracks used in the vertex fit"),
    sa.Column("is_primary", sa.Boolean, nullable=False),
    sa.Column("mc_vertex", sa.Integer, comment="index of the matched MC vertex, -1 if none"),
    sa.PrimaryKeyConstraint("batch", "event", "index"),
    comment="reconstructed vertices",
)

CALO_CLUSTERS = sa.Table(
    "calo_clusters",
    METADATA,
    *_key(sa.Column("index", sa.Integer, nullable=False, comment="cluster index within the event")),
    sa.Column("mc_particle", sa.Integer, nullable=False, comment="MC particle with the largest deposit in the seed cell, -1 if none"),
    sa.Column("track", sa.Integer, nullable=False, comment="index of the matched protoparticle, -1 for a neutral cluster"),
    sa.Column("seed_cell", sa.Integer, nullable=False, comment="ECAL cell id of the seed: region*10^6 + iy*1000 + ix"),
    sa.Column("region", sa.SmallInteger, nullable=False, comment="0 inner, 1 middle, 2 outer"),
    sa.Column("x", _F, comment="energy-weighted barycentre at the ECAL face [mm]"),
    sa.Column("y", _F, comment="[mm]"),
    sa.Column("z", _F, comment="ECAL front face [mm]"),
    sa.Column("energy", _F, comment="3x3 cluster energy, corrected for the mean containment [MeV]"),
    sa.Column("e3x3", _F, comment="raw 3x3 energy sum [MeV]"),
    sa.Column("e_seed", _F, comment="seed-cell energy [MeV]"),
    sa.Column("e_seed_frac", _f, comment="E(seed)/E(3x3)"),
    sa.Column("sxx", _f, comment="second moment about the barycentre [mm^2]"),
    sa.Column("syy", _f, comment="[mm^2]"),
    sa.Column("sxy", _f, comment="[mm^2]"),
    sa.Column("n_cells", sa.SmallInteger, comment="cells above threshold in the 3x3 block"),
    sa.Column("track_distance", _f, comment="distance to the nearest track extrapolation [seed-cell sizes]; NULL if none"),
    sa.Column("matrix", sa.ARRAY(sa.REAL, dimensions=1), comment="30x30 deposits of the matched particle [MeV], row = y; NULL unless asked for"),
    sa.PrimaryKeyConstraint("batch", "event", "index"),
    comment="ECAL clusters (calorimeter pass)",
)

NEUTRAL_PROTOPARTICLES = sa.Table(
    "neutral_protoparticles",
    METADATA,
    *_key(sa.Column("index", sa.Integer, nullable=False, comment="neutral index within the event")),
    sa.Column("mc_particle", sa.Integer, nullable=False, comment="matched MC particle (of the cluster seed), -1 if none"),
    sa.Column("cluster", sa.Integer, nullable=False, comment="index in calo_clusters"),
    sa.Column("e", _F, comment="energy [MeV]"),
    sa.Column("px", _F, comment="momentum from the primary vertex to the cluster [MeV]"),
    sa.Column("py", _F, comment="[MeV]"),
    sa.Column("pz", _F, comment="[MeV]"),
    sa.Column("pt", _F, comment="transverse momentum [MeV]"),
    sa.Column("CL", _f, comment="photon confidence level in [0, 1]"),
    sa.Column("is_not_e", _f, comment="1 - exp(-d^2/2), d the distance to the nearest track [cell sizes]"),
    sa.Column("is_merged_pi0", sa.Boolean, comment="cluster shape of two merged photons (high-pT pi0)"),
    sa.PrimaryKeyConstraint("batch", "event", "index"),
    comment="photon candidates (calorimeter pass)",
)

BATCHES = sa.Table(
    "batches",
    METADATA,
    sa.Column("batch", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("n_events", sa.Integer, nullable=False),
    sa.Column("seed", sa.BigInteger, nullable=False, comment="batch seed derived from (run seed, batch)"),
    comment="complete batches; a batch is present here iff all its rows are",
)

META = sa.Table(
    "metadata",
    METADATA,
    sa.Column("key", sa.String, primary_key=True),
    sa.Column("value", sa.String, nullable=False),
)

#: Tables that hold per-batch data, in dependency order.
DATA_TABLES: tuple[str, ...] = (
    "events", "mc_particles", "mc_vertices", "protoparticles", "vertices", "calo_clusters", "neutral_protoparticles",
)
TABLES: tuple[str, ...] = (*DATA_TABLES, "batches", "metadata")


def column_names(table: str) -> tuple[str, ...]:
    """Column names of ``table`` in schema order."""
    return tuple(c.name for c in METADATA.tables[table].columns)


def column_decimals(table: str) -> dict[str, int]:
    """Columns of ``table`` rounded to a number of decimals when written (``info["decimals"]``)."""
    return {c.name: int(c.info["decimals"]) for c in METADATA.tables[table].columns if "decimals" in c.info}


def create_ddl(*, primary_keys: bool = False) -> list[str]:
    """``CREATE TABLE`` statements for DuckDB, compiled from :data:`METADATA`.

    The data tables are created without their primary-key index by default:
    DuckDB keeps ART indexes in memory and checks them on every insert, which
    would make memory grow with the store.  Uniqueness of (batch, event, index)
    holds by construction (a batch is written once, in one transaction, guarded
    by the primary key of ``batches``); pass ``primary_keys=True`` to enforce it
    with indexes as well (slower, used in tests).
    """
    from sqlalchemy.schema import CreateTable

    dialect = _dialect()
    out = []
    for name in TABLES:
        table = METADATA.tables[name]
        if not primary_keys and name in DATA_TABLES:
            table = _without_pk(table)
        out.append(str(CreateTable(table).compile(dialect=dialect)).strip())
    return out


def _without_pk(table: sa.Table) -> sa.Table:
    md = sa.MetaData()
    cols = [sa.Column(c.name, c.type, nullable=c.nullable, comment=c.comment) for c in table.columns]
    return sa.Table(table.name, md, *cols, comment=table.comment)


def _dialect() -> sa.engine.Dialect:
    try:
        from duckdb_engine import Dialect

        return Dialect()
    except ImportError:  # pragma: no cover - duckdb_engine is a dependency
        from sqlalchemy.dialects import postgresql

        return postgresql.dialect()


# ---------------------------------------------------------------------------- views
#: Views of every store: the natural analysis query is also the right one (keys include ``batch``).
VIEWS: tuple[str, ...] = ("particles", "tracks")

_EVENT_BITS = 24  # events per batch < 2**24
_INDEX_BITS = 19  # particles (tracks) per event < 2**19


def _event_id(t: sa.FromClause) -> sa.ColumnElement[int]:
    return sa.cast(t.c.batch, sa.BigInteger) * (1 << _EVENT_BITS) + t.c.event


def _object_id(t: sa.FromClause, index: sa.ColumnElement[int]) -> sa.ColumnElement[int]:
    """Global key of object ``index`` of ``t``'s event."""
    return _event_id(t) * (1 << _INDEX_BITS) + index


def _link_id(t: sa.FromClause, index: sa.ColumnElement[int]) -> sa.ColumnElement[int]:
    """Global key of the object a link ``index`` of ``t`` points to; NULL where ``index`` < 0 (no mother, a ghost)."""
    return sa.case((index >= 0, _object_id(t, index)), else_=sa.null())


def _view_selects() -> dict[str, sa.Select[Any]]:
    m, mo = MC_PARTICLES.alias("m"), MC_PARTICLES.alias("mo")
    particles: sa.Select[Any] = sa.select(
        _object_id(m, m.c.index).label("particle_id"),
        _event_id(m).label("event_id"),
        _link_id(m, m.c.mother).label("mother_id"),
        mo.c.pid.label("mother_pid"),
        sa.literal_column("m.*"),  # every column the table has (also in a store made before a column was added)
    ).select_from(m.outerjoin(mo, sa.and_(mo.c.batch == m.c.batch, mo.c.event == m.c.event, mo.c.index == m.c.mother)))
    t, tm, tmo = PROTOPARTICLES.alias("t"), MC_PARTICLES.alias("tm"), MC_PARTICLES.alias("tmo")
    tracks: sa.Select[Any] = sa.select(
        _object_id(t, t.c.index).label("track_id"),
        _event_id(t).label("event_id"),
        _link_id(t, t.c.mc_particle).label("particle_id"),
        sa.literal_column("t.*"),
        tm.c.pid.label("true_pid"),
        *[tm.c[k].label(f"true_{k}") for k in ("px", "py", "pz", "e")],
        _link_id(tm, tm.c.mother).label("mother_id"),
        tmo.c.pid.label("true_mother_pid"),
    ).select_from(
        t.outerjoin(tm, sa.and_(tm.c.batch == t.c.batch, tm.c.event == t.c.event, tm.c.index == t.c.mc_particle)).outerjoin(
            tmo, sa.and_(tmo.c.batch == tm.c.batch, tmo.c.event == tm.c.event, tmo.c.index == tm.c.mother)
        )
    )
    return {"particles": particles, "tracks": tracks}


def create_view_ddl(*, temporary: bool = False) -> list[str]:
    """``CREATE VIEW`` statements of :data:`VIEWS` (after the tables of :func:`create_ddl`).

    Args:
        temporary: ``CREATE TEMP VIEW`` (for a store file opened read-only that predates the views).
    """
    dialect = _dialect()
    kind = "TEMP VIEW" if temporary else "VIEW"
    out = []
    for name, select in _view_selects().items():
        sql = str(select.compile(dialect=dialect, compile_kwargs={"literal_binds": True}))
        out.append(f"CREATE {kind} {name} AS {sql}")
    return out
