"""GRPO, PPO and DPO compared: same task, starting model, budget of sampled completions and evaluation.

    python scripts/bench/compare.py                                   # about 40 minutes on 2 CPU cores
    python scripts/bench/compare.py --steps 30 --task arith:add_2d --output-dir runs/compare_add_2d
    python scripts/bench/compare.py --methods grpo ppo --ppo-args "--kl-coef 0.02 --mu 2"

Each method runs as its own process (``scripts/train_<method>.py``), so its peak memory is its
own, with the shared options below; everything else is the method's default (see each script's
``--help``), and ``--<method>-args`` adds options to one method. Every method samples
``steps x prompts_per_step x group_size`` completions from its current policy, so the budget
is the same. The held-out problems and seed are the same; the untrained policy is evaluated
once (by the first method) since the starting model is the same.

A finished method (its results.json exists) is not run again: a killed comparison continues
where it stopped (``--auto-resume``: from its checkpoint; ``--force`` reruns everything, the earlier
runs moved aside to dated folders). The report is ``comparison.md`` and
``comparison.png`` in ``output_dir``.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from reasoning_rl.cli import run
from reasoning_rl.tracking import format_seconds, read_metrics

SCRIPTS = Path(__file__).resolve().parents[1]  # the entry points (scripts/train_*.py)
METHODS = ("grpo", "ppo", "dpo")


@dataclass
class Config:
    methods: tuple[str, ...] = METHODS
    """Methods to run, in this order: grpo, ppo, dpo."""
    model: str = "smollm2-135m-instruct"
    """Starting model for every method."""
    task: str = "arith:add_20"
    """Training task (see train_grpo.py --help)."""
    steps: int = 16
    """Steps per method; each samples prompts_per_step x group_size completions."""
    prompts_per_step: int = 8
    """Prompts per step (B)."""
    group_size: int = 8
    """Completions per prompt (G)."""
    max_new_tokens: int = 64
    """Completion length limit."""
    eval_problems: int = 128
    """Held-out problems, the same for every method."""
    eval_samples: int = 2
    """Samples per held-out problem for sampled pass@1 (greedy is always measured)."""
    eval_every: int = 4
    """Greedy held-out accuracy every this many steps (the accuracy-against-budget curve)."""
    seed: int = 0
    """Seed of every run."""
    grpo_args: str = ""
    """Extra options for train_grpo.py, e.g. "--beta 0.04"."""
    ppo_args: str = ""
    """Extra options for train_ppo.py, e.g. "--mu 2 --kl-coef 0.02"."""
    dpo_args: str = ""
    """Extra options for train_dpo.py, e.g. "--dpo-beta 0.2"."""
    output_dir: str = "runs/compare"
    """One sub-folder per method, plus comparison.md and comparison.png."""
    force: bool = False
    """Rerun methods that already finished."""


def run_method(cfg: Config, method: str, first: bool) -> None:
    out = Path(cfg.output_dir) / method
    if (out / "results.json").exists() and not cfg.force:
        print(f"{method}: finished earlier ({out / 'results.json'}), not run again")
        return
    command = [sys.executable, str(SCRIPTS / f"train_{method}.py"), "--model", cfg.model, "--task", cfg.task,
               "--steps", str(cfg.steps), "--prompts-per-step", str(cfg.prompts_per_step), "--group-size", str(cfg.group_size),
               "--max-new-tokens", str(cfg.max_new_tokens), "--eval-problems", str(cfg.eval_problems),
               "--eval-samples", str(cfg.eval_samples), "--eval-every", str(cfg.eval_every), "--seed", str(cfg.seed),
               "--output-dir", str(out), "--save-every", str(max(1, cfg.steps // 4)),
               *([] if first else ["--no-eval-before"]), *shlex.split(getattr(cfg, f"{method}_args")),
               "--overwrite" if cfg.force else "--auto-resume"]  # --force: the earlier run is moved aside
    print(f"\n=== {method}: {shlex.join(command)}")
    subprocess.run(command, check=True)


def summarize(cfg: Config) -> dict[str, dict]:
    rows = {}
    for method in cfg.methods:
        out = Path(cfg.output_dir) / method
        report = json.loads((out / "results.json").read_text())
        metrics = [m for m in read_metrics(out) if "reward/mean" in m]
        rows[method] = {"report": report, "metrics": metrics,
                        "sampled": metrics[-1]["completions/sampled_total"] if metrics else 0,
                        "train_seconds": sum(m["time/train"] for m in metrics),
                        "step_seconds": sum(m["time/step"] for m in metrics) / max(1, len(metrics))}
    return rows


def write_report(cfg: Config, rows: dict[str, dict], path: Path) -> str:
    task = rows[cfg.methods[0]]["report"]["tasks"][0]
    before = next(r["report"]["before"][task] for r in rows.values() if r["report"]["before"])
    lines = [
        f"Task `{task}`, model `{cfg.model}`, {cfg.steps} steps x {cfg.prompts_per_step} prompts x {cfg.group_size} samples "
        f"per method; held-out: {cfg.eval_problems} test-split problems (greedy, and sampled pass@1 at T=1 with "
        f"{cfg.eval_samples} samples each). Untrained: greedy {before['greedy']:.1%}, pass@1 {before['pass@1']:.1%}.",
        "",
        "| method | sampled completions | held-out greedy | held-out pass@1 (T=1) | final train accuracy (last 3 steps) "
        "| wall time | update time per step | step time | peak memory |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for method, row in rows.items():
        after = row["report"]["after"][task]
        last = [m["train/accuracy"] for m in row["metrics"][-3:]]
        lines.append(
            f"| {method.upper()} | {row['sampled']} | {after['greedy']:.1%} | {after['pass@1']:.1%} | {sum(last) / len(last):.1%} "
            f"| {format_seconds(row['report']['wall_seconds'])} | {row['train_seconds'] / len(row['metrics']):.1f} s "
            f"| {row['step_seconds']:.1f} s | {row['report']['peak_memory_gib']:.1f} GiB |"
        )
    text = "\n".join(lines) + "\n"
    path.write_text(text)
    return text


def plot(cfg: Config, rows: dict[str, dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    task = rows[cfg.methods[0]]["report"]["tasks"][0]
    before = next(r["report"]["before"][task] for r in rows.values() if r["report"]["before"])
    fig, axes = plt.subplots(1, 4, figsize=(18, 4.2), layout="constrained")
    reward, heldout, wall, memory = axes
    names = [m.upper() for m in rows]
    for method, row in rows.items():
        ms = row["metrics"]
        reward.plot([m["completions/sampled_total"] for m in ms], [m["train/accuracy"] for m in ms], label=method.upper())
        points = [(0, before["greedy"])] + [(m["completions/sampled_total"], m["heldout/greedy"]) for m in ms if "heldout/greedy" in m]
        heldout.plot(*zip(*points), marker="o", label=method.upper())
    reward.set_xlabel("sampled completions"), reward.set_title("training accuracy of each batch")
    heldout.set_xlabel("sampled completions"), heldout.set_title("held-out greedy accuracy")
    for ax in (reward, heldout):
        ax.set_ylim(0, 1), ax.grid(alpha=0.3), ax.legend()
    wall.bar(names, [r["report"]["wall_seconds"] / 60 for r in rows.values()], color=["C0", "C1", "C2"][: len(rows)])
    wall.set_ylabel("minutes"), wall.set_title("wall time (incl. evaluation)")
    memory.bar(names, [r["report"]["peak_memory_gib"] for r in rows.values()], color=["C0", "C1", "C2"][: len(rows)])
    memory.set_ylabel("GiB"), memory.set_title("peak memory (RSS; GPU: allocated)")
    fig.suptitle(f"GRPO vs PPO vs DPO on {task} ({cfg.model}), same budget of sampled completions")
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(cfg: Config) -> str:
    unknown = set(cfg.methods) - set(METHODS)
    if unknown:
        raise SystemExit(f"--methods: unknown {sorted(unknown)}; choose from {', '.join(METHODS)}")
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    for i, method in enumerate(cfg.methods):
        run_method(cfg, method, first=i == 0)
    rows = summarize(cfg)
    text = write_report(cfg, rows, out / "comparison.md")
    plot(cfg, rows, out / "comparison.png")
    print("\n" + text + f"\nreport: {out / 'comparison.md'}, plot: {out / 'comparison.png'}")
    return text


if __name__ == "__main__":
    run(main, Config, __doc__)
