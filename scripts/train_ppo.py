"""PPO with a learned critic and GAE: the comparison baseline for GRPO.

Same rollouts, rewards, presets and outputs as ``train_grpo.py``; the loop is the same
(``reasoning_rl/trainer.py``). The one difference is the advantage estimator,
``reasoning_rl.advantage_estimators.GAECritic``:

* the critic is a copy of the policy's backbone with a value head (or ``--critic-model``, e.g. a
  smaller model or a trained reward model), trained with the clipped value loss;
* per-token rewards carry the KL penalty to the frozen reference, -kl_coef * (log pi - log ref),
  and the verifier's score on the last token (InstructGPT, arXiv 2203.02155);
* advantages by GAE(gamma, lambda) backwards over tokens, whitened over the batch;
* ``mu`` PPO epochs over ``mini_batches`` shuffled mini-batches per batch of rollouts.

    python scripts/train_ppo.py                       # the arithmetic task of the GRPO main job
    python scripts/train_ppo.py --preset gsm8k --output-dir runs/ppo_gsm8k
"""

from __future__ import annotations

from dataclasses import dataclass

from reasoning_rl.advantage_estimators import GAECritic
from reasoning_rl.cli import run
from reasoning_rl.policy_gradient import PolicyGradient, PolicyGradientConfig
from reasoning_rl.trainer import train


@dataclass
class Config(PolicyGradientConfig):
    gamma: float = 1.0
    """Discount over tokens (1: the sequence reward reaches every token undiscounted)."""
    lam: float = 0.95
    """GAE's lambda: 1 is Monte-Carlo returns minus values, 0 one-step TD errors."""
    kl_coef: float = 0.05
    """Per-token KL penalty to the frozen reference in the reward (InstructGPT's beta); 0 loads no reference."""
    whiten_advantages: bool = True
    """Normalise advantages to mean 0, std 1 over the batch's tokens."""
    value_clip: float = 0.2
    """Clip of the value function's change per update in the clipped value loss."""
    critic_model: str | None = None
    """Critic backbone: default a copy of the policy's; or a smaller model / a trained reward model folder."""
    critic_lr: float = 2e-5
    """The critic's AdamW learning rate."""
    critic_trainable_layers: int = 0
    """Train only the critic's top this-many layers and its head (0: all); faster on a CPU."""
    mini_batches: int = 2
    """Optimizer steps per PPO epoch (the batch is split into this many shuffled mini-batches)."""
    loss_aggregation: str = "token_mean"
    """PPO averages the policy loss over all tokens of the mini-batch."""
    output_dir: str = "runs/ppo"
    """Where metrics.jsonl, tensorboard/, samples.jsonl, checkpoints/ and the plot go."""


def main(cfg: Config) -> dict:
    estimator = GAECritic(cfg.gamma, cfg.lam, cfg.kl_coef, cfg.whiten_advantages, cfg.value_clip, cfg.critic_model,
                          cfg.critic_lr, cfg.critic_trainable_layers)
    return train(cfg, PolicyGradient(cfg, estimator), "ppo")


if __name__ == "__main__":
    run(main, Config, __doc__)
