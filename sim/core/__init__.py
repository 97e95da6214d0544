"""The engine room: Pass, Pipeline, RunConfig, Batch, the registry, the runner and its executors, model I/O.

May import: :mod:`mambah` and third-party libraries only — never another room of
``sim``.  The rooms above register their passes, trainers and validators into
:mod:`sim.core.registry`.
"""
