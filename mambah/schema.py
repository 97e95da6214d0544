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
``batches``         one row per complete batch (written in the batch's transaction).
``metadata``        key/value: schema version, run seed, pipeline config.
"""

from __future__ import annotations

import sqlalchemy as sa

__all__ = (
    "SCHEMA_VERSION",
    "METADATA",
    "DATA_TABLES",
    "TABLES",
    "create_ddl",
    "column_names",
)

#: Bumped whenever a table or column changes meaning; checked on open.
SCHEMA_VERSION = 1

METADATA = sa.MetaData()

_F = sa.Double()  # DOUBLE
_f = sa.REAL  # FLOAT (32 bit) for detector-level quantities


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
    sa.Column("pv_x", _F, comment="signal primary vertex x [mm]"),
    sa.Column("pv_y", _F, comment="signal primary vertex y [mm]"),
    sa.Column("pv_z", _F, comment="signal primary vertex z [mm]"),
    sa.Column("pv_t", _F, comment="signal primary vertex time [ns]"),
    sa.Column("n_pv", sa.SmallInteger, comment="number of primary vertices (occupancy pass)"),
    sa.Column("n_tracks", sa.Integer, comment="number of reconstructed tracks, nTracks (occupancy pass)"),
    sa.Column("n_interactions", sa.SmallInteger, comment="pp interactions in the crossing (full-event generators; NULL for the gun)"),
    sa.Column("process", sa.Integer, comment="generator process code (Pythia code, HepMC signal_process_id); NULL if unknown"),
    sa.Column("n_tried", sa.Integer, comment="generator events tried for this kept event (signal filter); sum/count = 1/efficiency"),
    sa.PrimaryKeyConstraint("batch", "event"),
    comment="one row per event",
)

MC_PARTICLES = sa.Table(
    "mc_particles",
    METADATA,
    *_key(sa.Column("index", sa.Integer, nullable=False, comment="particle index within the event")),
    sa.Column("pid", sa.Integer, nullable=False, comment="PDG Monte Carlo id"),
    sa.Column("px", _F, nullable=False, comment="[MeV]"),
    sa.Column("py", _F, nullable=False, comment="[MeV]"),
    sa.Column("pz", _F, nullable=False, comment="[MeV]"),
    sa.Column("e", _F, nullable=False, comment="energy [MeV]"),
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
    sa.Column("x", _F, nullable=False, comment="[mm]"),
    sa.Column("y", _F, nullable=False, comment="[mm]"),
    sa.Column("z", _F, nullable=False, comment="[mm]"),
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
    sa.Column("tx", _F, comment="slope dx/dz at the first state"),
    sa.Column("ty", _F, comment="slope dy/dz at the first state"),
    sa.Column("x", _F, comment="state at closest approach to the beam line [mm]"),
    sa.Column("y", _F, comment="[mm]"),
    sa.Column("z", _F, comment="[mm]"),
    sa.Column("ip", _F, comment="impact parameter w.r.t. the primary vertex [mm]"),
    sa.Column("ip_chi2", _F, comment="impact-parameter chi2"),
    sa.Column("track_chi2ndof", _F, comment="track fit chi2/ndf"),
    sa.Column("ghost_prob", _F, comment="ghost probability"),
    sa.Column("has_rich", sa.Boolean, comment="RICH information available (pid pass)"),
    *[sa.Column(f"RichDLL{h}", _f, comment=f"RICH delta log-likelihood {h} - pi") for h in ("e", "mu", "K", "p")],
    sa.Column("is_muon", sa.Boolean, comment="IsMuon"),
    sa.Column("MuonMuLL", _f, comment="muon-system log-likelihood, muon hypothesis"),
    sa.Column("MuonBkgLL", _f, comment="muon-system log-likelihood, non-muon hypothesis"),
    *[sa.Column(f"PID{h}", _f, comment=f"combined delta log-likelihood {h} - pi") for h in ("e", "mu", "K", "p")],
    *[
        sa.Column(f"ProbNN{h}", _f, comment=f"ProbNN-like probability for {h}")
        for h in ("e", "mu", "pi", "k", "p", "ghost")
    ],
    sa.PrimaryKeyConstraint("batch", "event", "index"),
    comment="reconstructed tracks (detector and PID passes)",
)

VERTICES = sa.Table(
    "vertices",
    METADATA,
    *_key(sa.Column("index", sa.Integer, nullable=False, comment="vertex index within the event")),
    sa.Column("x", _F, comment="[mm]"),
    sa.Column("y", _F, comment="[mm]"),
    sa.Column("z", _F, comment="[mm]"),
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
DATA_TABLES: tuple[str, ...] = ("events", "mc_particles", "mc_vertices", "protoparticles", "vertices")
TABLES: tuple[str, ...] = (*DATA_TABLES, "batches", "metadata")


def column_names(table: str) -> tuple[str, ...]:
    """Column names of ``table`` in schema order."""
    return tuple(c.name for c in METADATA.tables[table].columns)


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
