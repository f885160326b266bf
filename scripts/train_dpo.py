"""DPO: the preference-learning baseline, online on a verifiable task or offline on a file of pairs.

    python scripts/train_dpo.py                                # online: pairs from the policy's own samples
    python scripts/train_dpo.py --pairs hh-rlhf               # offline: the hh-rlhf pairs in ../shared/data
    python scripts/train_dpo.py --pairs prefs.jsonl            # offline: any JSONL of prompt/chosen/rejected

Online (the math baseline of ``scripts/bench/compare.py``): every step samples G completions for B
prompts exactly as GRPO does, pairs a correct with an incorrect completion of the same prompt
(``reasoning_rl.dpo.pairs_from_groups``) and takes a DPO step on those pairs, with the starting
model as the reference. Same loop, outputs and held-out evaluation as GRPO and PPO.

Offline: ``epochs`` passes over the pairs of the file, a part held out (by a hash of the pair id)
for the DPO loss and the implicit-reward accuracy (the fraction of held-out pairs where
beta * log pi/ref is higher for the chosen response).
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from dataclasses import dataclass

import runtime  # noqa: F401  (above torch: it quiets torch's C++ start-up notes, read once when torch loads)
import torch
from tqdm.auto import tqdm

from data_prep.preferences import heldout_split, load_preference_pairs
from reasoning_rl.checkpoint import save_checkpoint
from reasoning_rl.cli import check_options, run
from reasoning_rl.config import RLConfig
from reasoning_rl.dpo import DPOUpdate
from reasoning_rl.models import frozen_copy, load_policy, load_tokenizer, prepare_policy, resolve_model
from reasoning_rl.optim import epoch_order, make_optimizer, seed_everything
from reasoning_rl.rollout import Rollouts
from reasoning_rl.run import run_contents
from reasoning_rl.settings import CHOICES
from reasoning_rl.tracking import MetricsLogger, format_seconds, peak_memory_gib
from reasoning_rl.trainer import train
from runtime.errors import UserError
from runtime.run_folder import claim


@dataclass
class Config(RLConfig):
    dpo_beta: float = 0.1
    """DPO's beta: the strength of the implicit KL to the reference (higher: stay closer)."""
    pairs_per_group: int = 2
    """Online: at most this many (correct, incorrect) pairs from each group of G samples."""
    epochs: int = 1
    """Passes over each batch of pairs (online) or over the whole file (offline)."""
    pair_micro_batch: int = 8
    """Pairs per forward/backward (2x this many sequences)."""
    pairs: str | None = None
    """Offline mode: a JSONL of prompt/chosen/rejected, a folder, a Hub data set, or 'hh-rlhf' (../shared/data)."""
    pairs_split: str = "test"
    """Offline: the split to read (the local hh-rlhf copy has only 'test')."""
    pair_batch_size: int = 16
    """Offline: pairs per optimizer step."""
    train_pairs: int = 256
    """Offline: use at most this many training pairs (0: all)."""
    heldout_fraction: float = 0.1
    """Offline: fraction of pairs held out; online with --task jsonl: the share of your file's rows held out."""
    max_prompt_tokens: int = 128
    """Offline: prompts are cut to their last this-many tokens (responses to max_new_tokens)."""
    lr: float = 1e-5
    """AdamW learning rate."""
    output_dir: str = "runs/dpo"
    """Where metrics.jsonl, the plot and checkpoints go."""


def pairs_as_rollouts(pairs, tokenizer, max_prompt_tokens: int, max_response_tokens: int) -> Rollouts:
    """Preference pairs as a batch of groups of two (chosen, rejected) with rewards (1, 0)."""
    prompt_ids, completion_ids, texts = [], [], []
    for pair in pairs:
        ids = tokenizer(pair.prompt, add_special_tokens=False).input_ids[-max_prompt_tokens:]
        for response in (pair.chosen, pair.rejected):
            prompt_ids.append(ids)
            completion_ids.append(tokenizer(response, add_special_tokens=False).input_ids[:max_response_tokens] or [tokenizer.eos_token_id])
            texts.append(response)
    return Rollouts([], [p.prompt for p in pairs], prompt_ids, completion_ids, texts, torch.zeros(len(texts), dtype=torch.bool), 2,
                    torch.tensor([1.0, 0.0] * len(pairs)))


def train_offline(cfg: Config) -> dict:
    out = claim(cfg.output_dir, run_contents, resume=False, overwrite=cfg.overwrite,
                resume_flags=None)  # one run per folder, as online
    seed_everything(cfg.seed)
    start = time.perf_counter()
    pairs = load_preference_pairs(None if cfg.pairs == "hh-rlhf" else cfg.pairs, cfg.pairs_split)
    train_pairs, heldout = heldout_split(pairs, cfg.heldout_fraction, cfg.seed)
    train_pairs = train_pairs[: cfg.train_pairs] if cfg.train_pairs else train_pairs
    if not train_pairs or not heldout:
        raise UserError(f"{len(pairs)} pairs give {len(train_pairs)} training and {len(heldout)} held-out pairs; "
                        "change --heldout-fraction or give more pairs")
    model_path = resolve_model(cfg.model)
    tokenizer = load_tokenizer(model_path)
    policy = prepare_policy(load_policy(model_path), cfg.lora_rank, cfg.lora_alpha, cfg.gradient_checkpointing).train()
    reference = frozen_copy(load_policy(model_path))
    optimizer, scheduler = make_optimizer(policy, cfg.lr, cfg.weight_decay, cfg.warmup_steps)
    update = DPOUpdate(cfg.dpo_beta, 1, 1, cfg.pair_micro_batch, cfg.max_grad_norm, cfg.autocast)
    update.setup(policy, reference, tokenizer, optimizer, model_path)
    heldout_batch = pairs_as_rollouts(heldout, tokenizer, cfg.max_prompt_tokens, cfg.max_new_tokens)
    logger = MetricsLogger(out, 0, cfg.tensorboard)
    (out / "config.json").write_text(json.dumps({"algorithm": "dpo-offline", **dataclasses.asdict(cfg)}, indent=2))

    order = epoch_order(len(train_pairs), cfg.epochs, cfg.seed)
    steps = math.ceil(len(order) / cfg.pair_batch_size)
    print(f"{len(train_pairs)} training pairs, {len(heldout)} held out; {steps} steps of {cfg.pair_batch_size} pairs")
    for step, i in enumerate(tqdm(range(0, len(order), cfg.pair_batch_size), desc="DPO (offline)", unit="step"), start=1):
        batch = pairs_as_rollouts([train_pairs[j] for j in order[i : i + cfg.pair_batch_size]], tokenizer, cfg.max_prompt_tokens,
                                  cfg.max_new_tokens)
        metrics = update(batch)
        scheduler.step()
        metrics["memory/peak_gib"] = peak_memory_gib()
        if step == steps or (cfg.eval_every and step % cfg.eval_every == 0):
            metrics.update({f"heldout/{k}": v for k, v in update.evaluate(heldout_batch).items()})
        logger.log(step, metrics)
    logger.close()
    save_checkpoint(out, steps, policy, tokenizer, optimizer, scheduler, {"step": steps})
    wall = time.perf_counter() - start
    after = {k.removeprefix("heldout/"): v for k, v in metrics.items() if k.startswith("heldout/")}
    report = {"algorithm": "dpo-offline", "train_pairs": len(train_pairs), "heldout_pairs": len(heldout), "steps": steps,
              "heldout": after, "wall_seconds": wall, "peak_memory_gib": peak_memory_gib()}
    (out / "results.json").write_text(json.dumps(report, indent=2))
    print(f"held-out ({len(heldout)} pairs): DPO loss {math.log(2):.3f} -> {after['loss']:.3f}, implicit-reward accuracy "
          f"{after['reward_accuracy']:.1%}; wall time {format_seconds(wall)}")
    return report


def main(cfg: Config) -> dict:
    if cfg.pairs:
        check_options(cfg, CHOICES)  # the online run checks its settings in train()
        return train_offline(cfg)
    update = DPOUpdate(cfg.dpo_beta, cfg.pairs_per_group, cfg.epochs, cfg.pair_micro_batch, cfg.max_grad_norm, cfg.autocast)
    return train(cfg, update, "dpo")


if __name__ == "__main__":
    run(main, Config, __doc__)
