"""The fast detector: the detector card, shared truth features and the detector passes.

Occupancy, acceptance, efficiency, resolution (and the calorimeter and vertexing)
passes, each one module with a frozen config and a pure array kernel.  May import:
:mod:`mambah`, :mod:`sim.core` and :mod:`sim.generation` — never the reference
detector, the training code or the validation.
"""
