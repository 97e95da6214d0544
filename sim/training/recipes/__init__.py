"""Recipes of the shipped models: one module per model, each a registered trainer with its shipped settings.

May import every room below the workshop (core, generation, detector, pid,
reference) and :mod:`sim.training`.
"""
