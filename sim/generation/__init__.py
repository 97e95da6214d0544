"""Generation: the beam (luminous region), the particle gun, decays and the generator passes.

The home of everything that produces generator-level events (``events``,
``mc_particles``, ``mc_vertices``).  May import: :mod:`mambah` and :mod:`sim.core`.
"""
