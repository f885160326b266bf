"""The RL library: the loop, the updates (GRPO, PPO, DPO), rollouts, models and checkpoints.

Importing it imports ``runtime`` first, which quiets torch's C++ start-up notes before torch loads.
"""

import runtime  # noqa: F401  (imported for its side effect: see its docstring)
