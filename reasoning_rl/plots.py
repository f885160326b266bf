"""The figure every training run writes: ``training.png``."""

from __future__ import annotations

from pathlib import Path


def plot_run(metrics: list[dict], path: Path, title: str, report: dict) -> None:
    """One PNG: training reward per step (curriculum levels marked) and held-out accuracy.

    With one task the right panel is held-out accuracy against step (``report["before"]`` at step
    0); with a curriculum it is each level's greedy accuracy against step.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks, before, after = report["tasks"], report["before"], report["after"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.2), layout="constrained")
    trained = [m for m in metrics if "reward/mean" in m]
    steps = [m["step"] for m in trained]
    left.plot(steps, [m["reward/mean"] for m in trained], label="train reward (mean)")
    if any("reward/accuracy" in m for m in trained) and any(m["reward/mean"] != m.get("reward/accuracy") for m in trained):
        left.plot(steps, [m["reward/accuracy"] for m in trained], label="train accuracy", alpha=0.7)
    for prev, m in zip(trained, trained[1:]):
        if m.get("curriculum/level") != prev.get("curriculum/level"):
            left.axvline(m["step"] - 0.5, color="gray", ls="--", lw=0.8)
            left.text(m["step"], 0.02, tasks[m["curriculum/level"]].removeprefix("arith:"), rotation=90, fontsize=8,
                      va="bottom", transform=left.get_xaxis_transform())  # x in steps, y in axes fraction
    left.set_xlabel("step"), left.set_title("training batches"), left.legend(loc="upper left"), left.grid(alpha=0.3)

    if len(tasks) == 1:
        for key, label in [("greedy", "greedy"), ("pass@1", "sampled pass@1 (T=1)")]:
            points = [(0, before[tasks[0]][key])] if key in before.get(tasks[0], {}) else []
            points += [(m["step"], m[f"heldout/{key}"]) for m in metrics if f"heldout/{key}" in m]
            if points:
                right.plot(*zip(*points), marker="o", label=label)
        right.set_xlabel("step"), right.set_title("held-out accuracy")
    else:  # a curriculum: each level's greedy accuracy over the run (untrained at 0, every --eval-every, trained at the end)
        last = max(steps, default=0)
        for t in tasks:
            name = t.removeprefix("arith:")
            points = [(0, before[t]["greedy"])] if t in before else []
            points += [(m["step"], m[f"heldout/greedy/{name}"]) for m in metrics if f"heldout/greedy/{name}" in m]
            points += [(last, after[t]["greedy"])] if t in after else []
            right.plot(*zip(*points), marker="o", ms=3, label=name)
        right.set_xlabel("step"), right.set_title("held-out greedy accuracy per level")
    right.set_ylim(0, 1), right.legend(fontsize=8), right.grid(alpha=0.3)
    for ax in (left, right):  # steps are whole numbers
        ax.xaxis.get_major_locator().set_params(integer=True)
    fig.suptitle(title)
    fig.savefig(path, dpi=110)
    plt.close(fig)
