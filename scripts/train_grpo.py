"""GRPO: group sampling in vLLM, group-relative advantages, clipped ratio, KL to a reference.

With no arguments this trains the embedded SmolLM2-135M-Instruct on additions of numbers up
to 20 on the CPU, evaluates the untrained and the trained policy on the same held-out problems,
and writes metrics, a plot and checkpoints to runs/grpo.

    python scripts/train_grpo.py                       # the main job (about 4 minutes on 2 cores)
    python scripts/train_grpo.py --preset curriculum   # easy -> hard arithmetic
    python scripts/train_grpo.py --preset gsm8k        # GSM8K train split, boxed answers
    python scripts/train_grpo.py --help                # every option

The loop (sampling, rewards, the clipped surrogate, logging, checkpoints) is shared with PPO in
``reasoning_rl/trainer.py``; GRPO's own part is its advantage estimator,
``reasoning_rl.advantage_estimators.GroupRelative``.

Deviations from DeepSeekMath (arXiv 2402.03300), each an option:
* ``beta`` defaults to 0 (no reference model), as in DAPO and Dr. GRPO; set ``--beta 0.04`` for the paper.
* ``mu`` defaults to 1 update per batch, so old log-probs equal the current ones and the ratio is 1
  at the first update (the clip only acts when ``mu > 1`` or ``mini_batches > 1``).
"""

from __future__ import annotations

from dataclasses import dataclass

from reasoning_rl.advantage_estimators import GroupRelative
from reasoning_rl.cli import run
from reasoning_rl.policy_gradient import PolicyGradient, PolicyGradientConfig
from reasoning_rl.trainer import train


@dataclass
class Config(PolicyGradientConfig):
    normalize_std: bool = True
    """Divide advantages by the group's reward std (GRPO); False is Dr. GRPO."""
    output_dir: str = "runs/grpo"
    """Where metrics.jsonl, tensorboard/, samples.jsonl, checkpoints/ and the plot go."""


def main(cfg: Config) -> dict:
    return train(cfg, PolicyGradient(cfg, GroupRelative(cfg.normalize_std)), "grpo")


if __name__ == "__main__":
    run(main, Config, __doc__)
