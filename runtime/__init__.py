"""What every layer of the project needs at run time, and nothing else: user errors and ranks.

It imports nothing from the project, so ``rewards``, ``data_prep``, ``eval`` and ``reasoning_rl``
may all import it without a cycle (the layers are drawn in ``tests/test_structure.py``).
"""
