"""Does GRPO learn to use a Python tool? Two runs at the same budget on a multiplication level, with the tool and
without.

    python scripts/bench/bench_tools.py --docs                     # 2 runs of 24 steps on arith:mul_2d1d
    python scripts/bench/bench_tools.py --steps 3 --eval-problems 16 --output-dir runs/tools_quick

Each run is its own ``scripts/train_grpo.py`` process, with the same task, seed, steps, prompts, completions per
prompt and token budget (``--max-new-tokens``, model and tool tokens together):

    tool      --tools python --template chat_tool --rewards accuracy=1.0,tool_answer=0.2
              (the prompt asks for a ```python block; it runs in the sandbox)
    no_tool   --template chat --rewards accuracy=1.0  (the main job's template: the model computes in its head)

Writes ``results_tools.json`` (top-level keys ``tool`` and ``no_tool``, each with ``before_greedy`` and
``after_greedy`` as fractions, the sampled pass@1 and the tool metrics per step) and ``tools.png`` to
``--output-dir``; ``--docs`` copies both to docs/.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

from bench_efficiency import train_run
from bench_outputs import publish

from reasoning_rl.cli import run
from reasoning_rl.tracking import read_metrics

TOOL_METRICS = ("tools/used_fraction", "tools/calls_per_completion", "tools/error_rate", "tools/timeout_rate",
                "tools/seconds", "tools/accuracy_with_call", "tools/accuracy_without_call")


@dataclass
class Config:
    task: str = "arith:mul_2d1d"
    """The level both runs train on (a two-digit times a one-digit number)."""
    steps: int = 24
    """Steps of each run."""
    max_new_tokens: int = 128
    """The token budget of every completion (model and tool tokens together), the same in both runs."""
    rewards: str = "accuracy=1.0"
    """The rewards of the run without the tool."""
    tool_rewards: str = "accuracy=1.0,tool_answer=0.2"
    """The rewards of the run with the tool: accuracy, and tool_answer (rewards/format.py): 1 when the answer after
    the last output states what the tool printed, whether right or wrong. Without it the untrained model prints the
    product and then describes its code instead of stating the result (greedy 9 % on 32 problems)."""
    eval_problems: int = 128
    """Held-out problems evaluated before and after each run (greedy and 4 samples)."""
    seed: int = 0
    """The same seed for both runs."""
    runs: tuple[str, ...] = ("tool", "no_tool")
    """Which runs to make now; the others are read from their folders (an earlier run of this script)."""
    output_dir: str = "runs/tools"
    """The runs go to tool/ and no_tool/ below it, the summary and the plot beside them."""
    docs: bool = False
    """Also copy the summary and the plot to docs/."""


FLAGS = {"tool": ["--tools", "python", "--template", "chat_tool"], "no_tool": ["--template", "chat"]}


def summary(folder: Path) -> dict:
    """Held-out accuracy before -> after, the training accuracy and the tool metrics per step of one run."""
    steps = [m for m in read_metrics(folder) if "time/step" in m]
    report = json.loads((folder / "results.json").read_text())
    task = report["tasks"][0]
    before, after = report["before"][task], report["after"][task]
    return {"before_greedy": before["greedy"], "after_greedy": after["greedy"], "before_pass@1": before.get("pass@1"),
            "after_pass@1": after.get("pass@1"), "wall_seconds": report["wall_seconds"],
            "train_accuracy": [m.get("train/accuracy") for m in steps],
            "mean_length": [m.get("completions/mean_length") for m in steps],
            "per_step": {key: [m.get(key) for m in steps] for key in TOOL_METRICS if any(key in m for m in steps)},
            "flags": FLAGS[folder.name]}


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (bars, accuracy, tools) = plt.subplots(1, 3, figsize=(15, 4.2), layout="constrained")
    names = ["tool", "no_tool"]
    bars.bar([f"{n}\nbefore" for n in names], [results[n]["before_greedy"] for n in names], color="lightgray")
    bars.bar([f"{n}\nafter" for n in names], [results[n]["after_greedy"] for n in names], color="tab:blue")
    bars.set_ylim(0, 1), bars.set_ylabel("held-out greedy accuracy"), bars.grid(alpha=0.3, axis="y")
    for name in names:
        accuracy.plot(range(1, len(results[name]["train_accuracy"]) + 1), results[name]["train_accuracy"], label=name)
    accuracy.set_xlabel("step"), accuracy.set_title("training accuracy (sampled, T = 1)"), accuracy.legend()
    per_step = results["tool"]["per_step"]
    for key in ("tools/used_fraction", "tools/error_rate", "tools/accuracy_with_call"):
        if key in per_step:
            tools.plot(range(1, len(per_step[key]) + 1), per_step[key], label=key.removeprefix("tools/"))
    tools.set_xlabel("step"), tools.set_title("the tool run's calls"), tools.legend(), tools.set_ylim(0, 1)
    for ax in (accuracy, tools):
        ax.grid(alpha=0.3), ax.xaxis.get_major_locator().set_params(integer=True)
    fig.suptitle(f"GRPO on {results['task']} with a Python tool and without ({results['steps']} steps, "
                 f"{results['max_new_tokens']} tokens, seed {results['seed']})")
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(cfg: Config) -> dict:
    same = ["--task", cfg.task, "--max-new-tokens", str(cfg.max_new_tokens)]
    rewards = {"tool": cfg.tool_rewards, "no_tool": cfg.rewards}
    for name in cfg.runs:
        train_run(cfg, name, [*same, *FLAGS[name], "--rewards", rewards[name]])
    results = {"command": " ".join(sys.argv), "task": cfg.task, "steps": cfg.steps, "seed": cfg.seed,
               "max_new_tokens": cfg.max_new_tokens, "rewards": rewards,
               **{name: summary(Path(cfg.output_dir) / name) for name in FLAGS}}
    results["difference_after_greedy"] = results["tool"]["after_greedy"] - results["no_tool"]["after_greedy"]
    print("\n| run | greedy before -> after | sampled pass@1 before -> after |\n|---|---|---|")
    for name in FLAGS:
        r = results[name]
        print(f"| {name} | {r['before_greedy']:.1%} -> {r['after_greedy']:.1%} | "
              f"{r['before_pass@1'] or 0:.1%} -> {r['after_pass@1'] or 0:.1%} |")
    print(f"tool - no_tool after training: {results['difference_after_greedy'] * 100:+.1f} points")
    publish(Path(cfg.output_dir), "tools", results, lambda path: plot(results, path), cfg.docs)
    return results


if __name__ == "__main__":
    run(main, Config, __doc__)
