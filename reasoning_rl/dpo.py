"""DPO's update: preference pairs instead of advantages (Rafailov et al. 2023, arXiv 2305.18290).

On a verifiable task the pairs come from the policy's own samples: in each group of G
completions, one with the highest reward (correct) is paired with one with the lowest
(incorrect); groups where all rewards are equal give no pair. This is online (iterative) DPO
when it runs inside ``trainer.train`` (new samples from the current policy every step) and the
math baseline of ``scripts/bench/compare.py``. A file of preference pairs becomes the same kind of
batch (groups of two: chosen, rejected) in ``scripts/train_dpo.py --pairs``.

The loss, ``losses.dpo_loss``, compares summed log-probs of the chosen and rejected completions
under the policy and the frozen starting model (the reference):

    L = -log sigmoid(beta * [(log pi(y_w) - log ref(y_w)) - (log pi(y_l) - log ref(y_l))])
"""

from __future__ import annotations

from pathlib import Path

import torch

from reasoning_rl.logprobs import completion_logprobs, device_of
from reasoning_rl.losses import dpo_loss
from reasoning_rl.optim import clip_and_step
from reasoning_rl.rollout import Rollouts
from runtime.distributed import SINGLE, Dist, zero_backward


def pairs_from_groups(rollouts: Rollouts, pairs_per_group: int) -> list[tuple[int, int]]:
    """``(chosen_row, rejected_row)`` pairs: best against worst reward within each group.

    With several best and several worst completions, up to ``pairs_per_group`` disjoint pairs
    are made in sampling order. Groups with equal rewards give none.
    """
    G, pairs = rollouts.group_size, []
    for g in range(len(rollouts) // G):
        rewards = rollouts.rewards[g * G : (g + 1) * G]
        best, worst = rewards.max(), rewards.min()
        if best == worst:
            continue
        winners = [g * G + j for j in range(G) if rewards[j] == best]
        losers = [g * G + j for j in range(G) if rewards[j] == worst]
        pairs += list(zip(winners, losers))[:pairs_per_group]
    return pairs


class DPOUpdate:
    """One DPO pass (or ``epochs``) over the pairs of a batch, one optimizer step per pass."""

    needs_reference = True
    min_group_size = 2  # a pair needs a correct and an incorrect completion of the same prompt

    def __init__(self, beta: float = 0.1, pairs_per_group: int = 2, epochs: int = 1, micro_batch_pairs: int = 8,
                 max_grad_norm: float = 1.0, autocast: bool = True):
        self.beta, self.pairs_per_group, self.epochs = beta, pairs_per_group, epochs
        self.micro_batch_pairs, self.max_grad_norm, self.autocast = micro_batch_pairs, max_grad_norm, autocast

    def setup(self, policy, reference, tokenizer, optimizer, model_path: str, dist: Dist = SINGLE) -> None:
        self.policy, self.reference, self.optimizer, self.pad_id = policy, reference, optimizer, tokenizer.pad_token_id
        self.dist, self.model = dist, dist.prepare(policy)  # trained through DDP with several ranks

    def save(self, folder: Path) -> None:  # no state beyond the policy and its optimizer
        pass

    def load(self, folder: Path) -> None:
        pass

    def sequence_logprobs(self, model, rollouts: Rollouts, rows: list[int]) -> torch.Tensor:
        """``[len(rows)]`` summed log-probs of the completions of ``rows`` under ``model``."""
        ids, attention, mask = rollouts.pack(rows, self.pad_id, device_of(model))
        logprobs, _ = completion_logprobs(model, ids, attention, mask.shape[1], autocast=self.autocast)
        return (logprobs * mask).sum(-1)

    @staticmethod
    def chunks(pairs: list[tuple[int, int]], size: int):
        """``(start, rows)`` per micro-batch of pairs; ``rows`` lists the chosen rows, then the rejected."""
        for i in range(0, len(pairs), size):
            chunk = pairs[i : i + size]
            yield i, [c for c, _ in chunk] + [r for _, r in chunk]

    @torch.no_grad()
    def reference_logprobs(self, rollouts: Rollouts, pairs: list[tuple[int, int]]) -> torch.Tensor:
        """``[P, 2]`` summed log-probs of (chosen, rejected) under the frozen reference, once per batch."""
        out = torch.zeros(len(pairs), 2, device=self.dist.device)
        chunks = list(self.chunks(pairs, self.micro_batch_pairs))
        with self.dist.lockstep_forwards(self.reference, self.pad_id, len(chunks)):  # a sharded reference
            for i, rows in chunks:
                k = len(rows) // 2
                out[i : i + k] = self.sequence_logprobs(self.reference, rollouts, rows).view(2, k).T
        return out

    def one_pass(self, rollouts: Rollouts, pairs: list[tuple[int, int]], ref: torch.Tensor, train: bool) -> dict[str, float]:
        """The DPO loss and metrics over ``pairs`` (means over pairs), accumulating gradients if ``train``.

        Training, the gradient is that of the mean over every rank's pairs (DDP averages over ranks, so each
        rank weighs its pairs by the number of ranks over the number of all pairs)."""
        sums: dict[str, float] = {}
        dist = self.dist if train else SINGLE
        all_pairs = dist.sum([len(pairs)])[0]
        chunks = list(self.chunks(pairs, self.micro_batch_pairs))
        passes = dist.lockstep(len(chunks))  # sharded models: every rank runs the busiest rank's passes
        for n, (i, rows) in enumerate(chunks):
            with dist.accumulate([self.model], sync=n == passes - 1):
                k = len(rows) // 2
                pol = self.sequence_logprobs(self.model if train else self.policy, rollouts, rows)
                loss, m = dpo_loss(pol[:k], pol[k:], ref[i : i + k, 0], ref[i : i + k, 1], self.beta)
                if train:
                    (loss * k * dist.world / all_pairs).backward()
            for key, value in {"loss": loss.item(), **m}.items():
                sums[key] = sums.get(key, 0.0) + value * k / len(pairs)
        if train:
            self.join_if_idle(rollouts, len(chunks), passes)
        return sums

    def join_if_idle(self, rollouts: Rollouts, done: int, passes: int) -> None:
        """The passes this rank lacks: with DDP, a rank without pairs joins the all-reduce with zeros; with sharded
        models, ``passes - done`` forwards and backwards of one row, its loss times 0."""
        if not self.dist.sharded:
            if not done and self.dist.world > 1:
                zero_backward([self.model], self.pad_id, self.dist.device)
            return
        for n in range(done, passes):
            with self.dist.accumulate([self.model], sync=n == passes - 1):
                (self.sequence_logprobs(self.model, rollouts, [0]).sum() * 0).backward()

    def __call__(self, rollouts: Rollouts, step: int = 0) -> dict[str, float]:
        pairs = pairs_from_groups(rollouts, self.pairs_per_group)
        metrics = {"dpo/pairs": len(pairs)}
        if not self.dist.sum([len(pairs)])[0]:  # no rank has a pair
            return metrics
        ref = self.reference_logprobs(rollouts, pairs)
        sums: dict[str, float] = {}
        for _ in range(self.epochs):
            self.optimizer.zero_grad(set_to_none=True)
            epoch = self.one_pass(rollouts, pairs, ref, train=True)
            epoch.update(clip_and_step(self.optimizer, self.policy.parameters(), self.max_grad_norm))
            for key, value in epoch.items():
                sums[key] = sums.get(key, 0.0) + value
        metrics.update({f"train/{k}": v / self.epochs for k, v in sums.items()})
        metrics["train/nonfinite_steps"] = sums["nonfinite_steps"]  # a count, not a mean
        return metrics

    @torch.no_grad()
    def evaluate(self, rollouts: Rollouts) -> dict[str, float]:
        """DPO loss and implicit-reward accuracy on held-out pairs (no update)."""
        pairs = pairs_from_groups(rollouts, self.pairs_per_group)
        return self.one_pass(rollouts, pairs, self.reference_logprobs(rollouts, pairs), train=False)
