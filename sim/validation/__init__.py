"""Validation of the fast models against the reference detector (``mambah validate``).

The workshop: may import every room below it (core, generation, detector, pid,
reference, training).  Nothing on the ``mambah run`` path imports it.
"""
