"""The ``run``, ``train`` and ``validate`` subcommands, registered through the ``mambah.commands`` entry points.

May import every room; each command imports what it needs when it runs.
"""
