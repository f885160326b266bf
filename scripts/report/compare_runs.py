"""Training runs side by side: their held-out greedy accuracy over the steps, grouped by a label (one process
against two, DDP against FSDP2, over several seeds).

    python scripts/report/compare_runs.py runs/a_s0 runs/a_s1 runs/b_s0 runs/b_s1 --labels A A B B \\
        --output docs/results_ranks.json --plot docs/images/ranks.png

Each RUN is a trainer's output folder (metrics.jsonl, results.json). It prints a Markdown table: per run its
held-out evaluations (the ``heldout/greedy`` lines), the last with its Wilson 95 % interval on the problems
evaluated, wall time and peak memory; per label the mean of the last evaluations and of all of them. The
plot draws each run's evaluations thin and each label's mean thick.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import tyro

from eval.metrics import wilson_ci95
from reasoning_rl.cli import run
from reasoning_rl.tracking import read_metrics
from runtime.errors import UserError


@dataclass
class Config:
    runs: tyro.conf.Positional[tuple[str, ...]]
    """Trainers' output folders."""
    labels: tuple[str, ...] = ()
    """A label per run; runs with the same label are averaged (default: each run's folder name)."""
    problems: int = 128
    """Held-out problems per evaluation (the trainer's --eval-problems), for the interval of the last one."""
    output: str = ""
    """Where the JSON goes (nothing when empty)."""
    plot: str = ""
    """Where the figure goes (nothing when empty)."""


def read_run(folder: Path, problems: int) -> dict:
    """One run's held-out greedy evaluations by step, its last with an interval, wall time and peak memory."""
    if not (folder / "metrics.jsonl").exists():
        raise UserError(f"{folder}: no metrics.jsonl (not a trainer's output folder)")
    evals = {m["step"]: value for m in read_metrics(folder) for key, value in m.items()
             if key.startswith("heldout/") and key.endswith("greedy")}
    if not evals:
        raise UserError(f"{folder}: no held-out evaluation in metrics.jsonl (was --eval-every 0?)")
    results = json.loads((folder / "results.json").read_text()) if (folder / "results.json").exists() else {}
    last = evals[max(evals)]
    low, high = wilson_ci95(round(last * problems), problems)
    return {"run": str(folder), "evals": evals, "last": last, "last_ci95": [low, high],
            "wall_seconds": results.get("wall_seconds"),
            "peak_gib": max(results.get("peak_memory_gib_per_rank") or [0])}


def table(runs: list[dict], labels: list[str]) -> str:
    steps = sorted({s for r in runs for s in r["evals"]})
    head = "| label | run | " + " | ".join(f"step {s}" for s in steps) + " | last, 95 % interval | wall time | peak |"
    lines = [head, "|" + "---|" * (len(steps) + 5)]
    for label, r in zip(labels, runs):
        wall = f"{r['wall_seconds'] // 60:.0f} min {r['wall_seconds'] % 60:.0f} s" if r["wall_seconds"] else ""
        cells = [f"{100 * r['evals'][s]:.1f} %" if s in r["evals"] else "" for s in steps]
        lines.append(f"| {label} | {Path(r['run']).name} | " + " | ".join(cells) +
                     f" | **{100 * r['last']:.1f} %** ({100 * r['last_ci95'][0]:.1f} to {100 * r['last_ci95'][1]:.1f}) "
                     f"| {wall} | {r['peak_gib']:.1f} GiB |")
    for label, group in grouped(runs, labels).items():
        means = ["" if m is None else f"{100 * m:.1f} %" for m in (mean_at(group, s) for s in steps)]
        every = [v for r in group for v in r["evals"].values()]
        lines.append(f"| {label}: mean of {len(group)} | | " + " | ".join(means) +
                     f" | **{100 * sum(r['last'] for r in group) / len(group):.1f} %** (all evaluations "
                     f"{100 * sum(every) / len(every):.1f} %) | | |")
    return "\n".join(lines)


def mean_at(group: list[dict], step: int) -> float | None:
    """The mean held-out accuracy at ``step`` over the runs of ``group`` that evaluated there (None: none did)."""
    values = [r["evals"][step] for r in group if step in r["evals"]]
    return sum(values) / len(values) if values else None


def grouped(runs: list[dict], labels: list[str]) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for label, r in zip(labels, runs):
        out.setdefault(label, []).append(r)
    return out


def plot(runs: list[dict], labels: list[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for k, (label, group) in enumerate(grouped(runs, labels).items()):
        color = f"C{k}"
        for r in group:
            steps = sorted(r["evals"])
            ax.plot(steps, [100 * r["evals"][s] for s in steps], color=color, alpha=0.3, lw=1)
        steps = sorted({s for r in group for s in r["evals"]})
        ax.plot(steps, [100 * mean_at(group, s) for s in steps], color=color, lw=2.5, marker="o",
                label=f"{label} (mean of {len(group)})")
    ax.set_xticks(sorted({s for r in runs for s in r["evals"]}))
    ax.set_xlabel("step"), ax.set_ylabel("held-out greedy accuracy (%)"), ax.grid(alpha=0.3), ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(cfg: Config) -> dict:
    labels = list(cfg.labels) or [Path(r).name for r in cfg.runs]
    if len(labels) != len(cfg.runs):
        raise UserError(f"--labels: {len(labels)} labels for {len(cfg.runs)} runs (give one per run)")
    runs = [read_run(Path(r), cfg.problems) for r in cfg.runs]
    text = table(runs, labels)
    print(text)
    result = {"runs": [{"label": label, **r} for label, r in zip(labels, runs)], "table": text}
    if cfg.output:
        Path(cfg.output).parent.mkdir(parents=True, exist_ok=True)
        Path(cfg.output).write_text(json.dumps(result, indent=2) + "\n")
    if cfg.plot:
        plot(runs, labels, Path(cfg.plot))
    return result


if __name__ == "__main__":
    run(main, Config, __doc__)
