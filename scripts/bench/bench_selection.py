"""Uniform sampling, DAPO's dynamic sampling and difficulty-aware selection on a task where most groups
start all wrong (arith:add_2d: about 12 % of the untrained model's groups have mixed rewards).

    python scripts/bench/bench_selection.py --docs            # 3 runs of 24 steps, about 20 minutes on 2 cores
    python scripts/bench/bench_selection.py --steps 4 --eval-problems 16 --output-dir runs/selection_quick

Each method is its own ``scripts/train_grpo.py`` run at the same seed and for the same number of steps:
``uniform`` (the plain sampler), ``dapo`` (``--dynamic-sampling``: groups with equal rewards are dropped
and more prompts sampled, up to 3 refills) and ``selection`` (``--select-by-difficulty``). Per method:
seconds spent generating, informative groups (rewards not all equal) per 100 sampled completions, the
informative groups trained on, generation seconds per informative group, ``train/frac_reward_zero_std``
and held-out greedy accuracy. Writes ``results_selection.json`` and ``selection.png`` to
``--output-dir``; ``--docs`` copies them to docs/ (the plot to docs/images/).
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

METHODS = {"uniform": [], "dapo": ["--dynamic-sampling"], "selection": ["--select-by-difficulty"]}


@dataclass
class Config:
    task: str = "arith:add_2d"
    """The task: one where most groups of the untrained model are all wrong."""
    steps: int = 24
    """Steps of each run."""
    eval_problems: int = 128
    """Held-out problems, evaluated greedily before, every 6 steps and after each run."""
    seed: int = 0
    """The same seed for every run."""
    output_dir: str = "runs/selection"
    """The runs go to uniform/, dapo/ and selection/ below it, with the results beside them."""
    docs: bool = False
    """Also copy results_selection.json to docs/ and selection.png to docs/images/."""
    rerun: tuple[str, ...] = ("uniform", "dapo", "selection")
    """The methods to run; the others are read from their folders of an earlier invocation."""


def summary(folder: Path) -> dict:
    steps = [m for m in read_metrics(folder) if "time/step" in m]
    report = json.loads((folder / "results.json").read_text())
    task = report["tasks"][0]
    sampled = sum(m["completions/sampled"] for m in steps)
    informative = sum(m["train/informative_groups"] for m in steps)
    trained_informative = sum(min(m["train/groups_trained"], m["train/informative_groups"]) for m in steps)
    generate = sum(m["time/generate"] for m in steps)
    return {
        "generate_seconds": generate,
        "completions_sampled": sampled,
        "informative_groups": informative,
        "informative_groups_per_100_completions": 100 * informative / sampled,
        "informative_groups_trained": trained_informative,
        "generate_seconds_per_informative_group": generate / max(informative, 1),
        "frac_reward_zero_std_mean": sum(m["train/frac_reward_zero_std"] for m in steps) / len(steps),
        "loop_seconds": sum(m["time/step"] for m in steps),
        "before": report["before"][task], "after": report["after"][task],
        "greedy_curve": [[0, report["before"][task]["greedy"]]] + [[m["step"], m["heldout/greedy"]] for m in steps if "heldout/greedy" in m],
        "cumulative": [[sum(x["time/generate"] for x in steps[: i + 1]), sum(x["train/informative_groups"] for x in steps[: i + 1])]
                       for i in range(len(steps))],
        "record_at_end": {k: v for k, v in steps[-1].items() if k.startswith("prompts/")},
    }


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4), layout="constrained")
    for name in METHODS:
        r = results[name]
        left.plot(*zip(*r["cumulative"]), marker=".", label=name)
        right.plot(*zip(*r["greedy_curve"]), marker="o", label=name)
    left.set_xlabel("generation seconds (cumulative)"), left.set_ylabel("informative groups sampled (cumulative)")
    left.set_title("what generation buys"), left.legend(), left.grid(alpha=0.3)
    right.set_xlabel("step"), right.set_ylabel("held-out greedy accuracy"), right.set_ylim(0, 1)
    right.set_title(f"held-out greedy, {results['task']}"), right.legend(), right.grid(alpha=0.3)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(cfg: Config) -> dict:
    results = {"command": " ".join(sys.argv), "task": cfg.task, "steps": cfg.steps, "seed": cfg.seed}
    for name, flags in METHODS.items():
        folder = train_run(cfg, name, ["--task", cfg.task, *flags]) if name in cfg.rerun else Path(cfg.output_dir) / name
        results[name] = summary(folder)
    results["rerun"] = list(cfg.rerun)
    out = Path(cfg.output_dir)
    print("\n| method | generation s | informative groups / 100 completions | informative groups trained | "
          "generation s / informative group | frac_reward_zero_std | held-out greedy |\n|---|---|---|---|---|---|---|")
    for name in METHODS:
        r = results[name]
        print(f"| {name} | {r['generate_seconds']:.1f} | {r['informative_groups_per_100_completions']:.2f} | "
              f"{r['informative_groups_trained']} | {r['generate_seconds_per_informative_group']:.2f} | "
              f"{r['frac_reward_zero_std_mean']:.2f} | {r['before']['greedy']:.1%} -> {r['after']['greedy']:.1%} |")
    publish(out, "selection", results, lambda path: plot(results, path), cfg.docs)
    return results


if __name__ == "__main__":
    run(main, Config, __doc__)
