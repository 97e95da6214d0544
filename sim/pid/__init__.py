"""Particle identification: the per-species PID model chain and the PID pass.

May import: :mod:`mambah`, :mod:`sim.core`, :mod:`sim.generation` and
:mod:`sim.detector`; never the reference detector or the training code at import
time (training functions import :mod:`sim.training` inside the function).
"""
