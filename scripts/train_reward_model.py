"""Train a Bradley-Terry reward model on preference pairs and report held-out pairwise accuracy.

    python scripts/train_reward_model.py                               # hh-rlhf harmless split in ../shared/data
    python scripts/train_reward_model.py --data pairs.jsonl            # any JSONL of prompt/chosen/rejected
    python scripts/train_reward_model.py --data Anthropic/hh-rlhf --split train   # a Hub data set

The model is the policy's architecture with a one-output linear head on the last token
(``reasoning_rl/reward_model.py``); the loss is -log sigmoid(s_chosen - s_rejected)
(``losses.bradley_terry_loss``). A part of the pairs, chosen by a hash of their id, is held out;
the pairwise accuracy on it (the fraction of pairs where the chosen response scores higher)
is measured before and after training. The trained model is saved to ``<output_dir>/model``
and used in GRPO/PPO with ``--reward-model <output_dir>/model``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import runtime  # noqa: F401  (above torch: it quiets torch's C++ start-up notes, read once when torch loads)
import torch
from tqdm.auto import tqdm

from data_prep.preferences import heldout_split, load_preference_pairs
from reasoning_rl.checkpoint import atomic_folder
from reasoning_rl.cli import check_options, run
from reasoning_rl.losses import bradley_terry_loss
from reasoning_rl.models import load_tokenizer, resolve_model
from reasoning_rl.optim import clip_and_step, epoch_order, make_optimizer, seed_everything
from reasoning_rl.reward_model import encode, freeze_lower_layers, load_reward_model, score_ids
from reasoning_rl.run import run_contents
from reasoning_rl.tracking import MetricsLogger, format_seconds, peak_memory_gib, read_metrics
from runtime.errors import UserError
from runtime.run_folder import claim


@dataclass
class Config:
    model: str = "smollm2-135m-instruct"
    """Starting model: embedded short name, Hub name or folder (a causal LM; a score head is added)."""
    data: str | None = None
    """JSONL file, folder with <split>.jsonl, or Hub data set of preference pairs (default: hh-rlhf harmless in ../shared/data)."""
    split: str = "test"
    """Split to read (the local hh-rlhf copy has only 'test'; held-out pairs are carved out of it)."""
    heldout_fraction: float = 0.2
    """Fraction of pairs held out for the pairwise accuracy (chosen by a hash of the pair id)."""
    train_pairs: int = 0
    """Use at most this many training pairs (0: all)."""
    max_length: int = 160
    """Tokens per prompt + response (the prompt is cut from the left, the response from the right)."""
    epochs: int = 1
    """Passes over the training pairs."""
    batch_size: int = 8
    """Pairs per optimizer step."""
    lr: float = 2e-5
    """AdamW learning rate (after warm-up)."""
    warmup_steps: int = 10
    """Linear warm-up steps."""
    weight_decay: float = 0.0
    """AdamW weight decay."""
    max_grad_norm: float = 1.0
    """Gradient clipping."""
    trainable_layers: int = 8
    """Train only the top this-many transformer layers (and the head); 0 trains all. Fewer is faster."""
    autocast: bool = True
    """bf16 autocast for the forward pass (weights stay float32)."""
    eval_every: int = 60
    """Held-out accuracy every this many steps (and before and after training)."""
    output_dir: str = "runs/reward_model"
    """Where metrics.jsonl, results.json, the plot and the trained model (model/) go. A folder is locked while a run
    uses it, and a new run refuses a folder that holds another run's files."""
    overwrite: bool = False
    """Move the run already in --output-dir aside (to a dated folder beside it) and start anew."""
    seed: int = 0
    """Seeds the head's initialisation, the split and the pair order."""
    tensorboard: bool = True
    """Also write TensorBoard scalars."""


@torch.no_grad()
def pairwise_accuracy(model, data: list[tuple[list[int], list[int]]], pad_id: int, batch_size: int, autocast: bool) -> dict[str, float]:
    """Fraction of pairs whose chosen response scores higher (ties count half), and the mean BT loss."""
    model.eval()
    margins = []
    for i in range(0, len(data), batch_size):
        chunk = data[i : i + batch_size]
        scores = score_ids(model, [c for c, _ in chunk] + [r for _, r in chunk], pad_id, autocast)
        margins.append(scores[: len(chunk)] - scores[len(chunk) :])
    model.train()
    margin = torch.cat(margins)
    accuracy = ((margin > 0).float() + 0.5 * (margin == 0).float()).mean().item()
    return {"accuracy": accuracy, "loss": -torch.nn.functional.logsigmoid(margin).mean().item(), "margin": margin.mean().item()}


def main(cfg: Config) -> dict:
    check_options(cfg)
    out = claim(cfg.output_dir, run_contents, resume=False, overwrite=cfg.overwrite,
                resume_flags=None)  # one run per folder
    seed_everything(cfg.seed)
    start = time.perf_counter()

    pairs = load_preference_pairs(cfg.data, cfg.split)
    train, heldout = heldout_split(pairs, cfg.heldout_fraction, cfg.seed)
    if cfg.train_pairs:
        train = train[: cfg.train_pairs]
    if not train or not heldout:
        raise UserError(f"{len(pairs)} pairs give {len(train)} training and {len(heldout)} held-out pairs; change "
                        "--heldout-fraction or give more pairs")
    model_path = resolve_model(cfg.model)
    tokenizer = load_tokenizer(model_path)
    model = load_reward_model(model_path, tokenizer)
    freeze_lower_layers(model, cfg.trainable_layers)
    model.train()

    def tokenize(ps):
        return [(encode(tokenizer, p.prompt, p.chosen, cfg.max_length), encode(tokenizer, p.prompt, p.rejected, cfg.max_length)) for p in ps]

    train_ids, heldout_ids = tokenize(train), tokenize(heldout)
    pad = tokenizer.pad_token_id
    steps = cfg.epochs * math.ceil(len(train_ids) / cfg.batch_size)
    optimizer, scheduler = make_optimizer(model, cfg.lr, cfg.weight_decay, cfg.warmup_steps)
    logger = MetricsLogger(out, 0, cfg.tensorboard)
    (out / "config.json").write_text(json.dumps(dataclasses.asdict(cfg), indent=2))
    print(f"{len(train)} training pairs, {len(heldout)} held out; {steps} steps of {cfg.batch_size} pairs")

    before = pairwise_accuracy(model, heldout_ids, pad, 2 * cfg.batch_size, cfg.autocast)
    logger.log(0, {f"heldout/{k}": v for k, v in before.items()})
    print(f"held-out pairwise accuracy before training: {before['accuracy']:.1%}")
    order, step = epoch_order(len(train_ids), cfg.epochs, cfg.seed), 0
    bar = tqdm(range(0, len(order), cfg.batch_size), desc="reward model", unit="step")
    for i in bar:
        step += 1
        t0 = time.perf_counter()
        chunk = [train_ids[j] for j in order[i : i + cfg.batch_size]]
        scores = score_ids(model, [c for c, _ in chunk] + [r for _, r in chunk], pad, cfg.autocast)
        loss, m = bradley_terry_loss(scores[: len(chunk)], scores[len(chunk) :])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        done = clip_and_step(optimizer, model.parameters(), cfg.max_grad_norm)  # skipped if not finite
        scheduler.step()
        metrics = {"train/loss": loss.item(), "train/accuracy": m["accuracy"], "train/margin": m["margin"],
                   "train/grad_norm": done["grad_norm"], "train/nonfinite_steps": done["nonfinite_steps"], "train/lr": scheduler.get_last_lr()[0], "time/step": time.perf_counter() - t0,
                   "memory/peak_gib": peak_memory_gib()}
        if (cfg.eval_every and step % cfg.eval_every == 0) or step == steps:
            metrics.update({f"heldout/{k}": v for k, v in pairwise_accuracy(model, heldout_ids, pad, 2 * cfg.batch_size, cfg.autocast).items()})
            tqdm.write(f"step {step}: held-out pairwise accuracy {metrics['heldout/accuracy']:.1%}")
        logger.log(step, metrics)
        bar.set_postfix(loss=f"{loss.item():.3f}")
    logger.close()

    after = {k.removeprefix("heldout/"): v for k, v in metrics.items() if k.startswith("heldout/")}
    with atomic_folder(out / "model") as tmp:  # a killed run leaves no half-written model
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
    wall = time.perf_counter() - start
    report = {"train_pairs": len(train), "heldout_pairs": len(heldout), "steps": steps, "before": before, "after": after,
              "wall_seconds": wall, "peak_memory_gib": peak_memory_gib()}
    (out / "results.json").write_text(json.dumps(report, indent=2))
    plot(read_metrics(out), out / "training.png", f"Bradley-Terry reward model ({cfg.model})")
    print(f"held-out pairwise accuracy ({len(heldout)} pairs): {before['accuracy']:.1%} -> {after['accuracy']:.1%} "
          f"(chance 50%); wall time {format_seconds(wall)}; model in {out / 'model'}")
    return report


def plot(metrics: list[dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4), layout="constrained")
    train = [m for m in metrics if "train/loss" in m]
    window = 10
    smooth = [sum(m["train/loss"] for m in train[max(0, i - window + 1) : i + 1]) / min(i + 1, window) for i in range(len(train))]
    left.plot([m["step"] for m in train], smooth, label=f"train loss ({window}-step mean)")
    left.axhline(math.log(2), color="gray", ls="--", lw=0.8, label="log 2 (chance)")
    left.set_xlabel("step"), left.set_title("Bradley-Terry loss"), left.legend(), left.grid(alpha=0.3)
    held = [m for m in metrics if "heldout/accuracy" in m]
    right.plot([m["step"] for m in held], [m["heldout/accuracy"] for m in held], marker="o")
    right.axhline(0.5, color="gray", ls="--", lw=0.8)
    right.set_xlabel("step"), right.set_title("held-out pairwise accuracy"), right.grid(alpha=0.3)
    fig.suptitle(title)
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    run(main, Config, __doc__)
