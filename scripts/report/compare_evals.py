"""Compare evaluation runs: one markdown table, a plot of pass@k against k per model, and each run
against the first on the problems both graded (the paired difference in pass@1 with its 95 % interval,
and McNemar's exact test).

    python scripts/report/compare_evals.py runs/eval_base runs/eval_grpo --labels base grpo --output-dir runs/compare

Each argument is an output folder of scripts/evaluate.py (holding summary.json, or one
sub-folder per benchmark).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import tyro

from eval.harness import load_samples, load_summaries, per_problem_pass1
from eval.metrics import paired_difference
from reasoning_rl.cli import run


@dataclass
class Config:
    runs: tyro.conf.Positional[tuple[str, ...]]
    """Output folders of scripts/evaluate.py."""
    labels: tuple[str, ...] = ()
    """A name per run (default: the folder names)."""
    output_dir: str = "runs/compare_evals"
    """Where comparison.md, paired.json and pass_at_k.png go."""


def paired_table(runs: dict[str, dict[str, dict]], benchmarks: list[str]) -> tuple[str, list[dict]]:
    """Each run against the first, per benchmark, on the problems both graded."""
    (base_label, base), rows = next(iter(runs.items())), []
    theirs_by_benchmark = {b: per_problem_pass1(load_samples(base[b])) for b in benchmarks if b in base}
    lines = [f"| model vs {base_label} | benchmark | problems in both | pass@1 difference (95 % CI) | solved only by the model "
             f"| solved only by {base_label} | McNemar p |", "|---|---|---|---|---|---|---|"]
    for label, summaries in list(runs.items())[1:]:
        for b in benchmarks:
            if b in summaries and b in base:
                mine, theirs = per_problem_pass1(load_samples(summaries[b])), theirs_by_benchmark[b]
                common = [i for i in theirs if i in mine]
                r = paired_difference([theirs[i] for i in common], [mine[i] for i in common])
                rows.append(dict(r, model=label, base=base_label, benchmark=b))
                low, high = r["difference_ci95"]
                lines.append(f"| {label} | {b} | {r['problems']} | {r['difference']:+.1%} ({low:+.1%} to {high:+.1%}) "
                             f"| {r['only_other']} | {r['only_base']} | {r['mcnemar_p']:.2g} |")
    return "\n".join(lines) + "\n", rows


def ks_of(summary: dict) -> list[int]:
    return sorted(int(key[5:]) for key in summary if key.startswith("pass@") and key[5:].isdigit())


USAGE = "usage: compare_evals.py RUN [RUN ...] [--labels NAME ...] [--output-dir DIR], each RUN an evaluate.py output folder"


def main(cfg: Config) -> str:
    if not cfg.runs:
        raise SystemExit(f"no runs to compare; {USAGE}")
    labels = list(cfg.labels) or [Path(r).name for r in cfg.runs]
    if len(labels) != len(cfg.runs):
        raise SystemExit(f"{len(cfg.runs)} runs but {len(labels)} labels")
    runs = {label: load_summaries(Path(r)) for label, r in zip(labels, cfg.runs)}
    benchmarks = sorted({b for s in runs.values() for b in s})
    all_ks = sorted({k for s in runs.values() for summary in s.values() for k in ks_of(summary)})
    lines = [f"| model | benchmark | problems | n | temperature | {' | '.join(f'pass@{k}' for k in all_ks)} | mean tokens |",
             "|" + "---|" * (len(all_ks) + 6)]
    for label, summaries in runs.items():
        for b in benchmarks:
            if b in summaries:
                s = summaries[b]
                cells = [f"{s[f'pass@{k}']:.1%}" if f"pass@{k}" in s else "" for k in all_ks]
                temperature = f"{s['temperature']:g}" if "temperature" in s else "?"  # summaries before it was recorded
                lines.append(f"| {label} | {b} | {s['n_problems']} | {s['n_samples']} | {temperature} | {' | '.join(cells)} | "
                             f"{s['mean_completion_tokens']:.0f} |")
    table = "\n".join(lines) + "\n"
    if len(runs) > 1:
        paired, rows = paired_table(runs, benchmarks)
        table += "\n" + paired
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "comparison.md").write_text(table)
    if len(runs) > 1:
        (out / "paired.json").write_text(json.dumps(rows, indent=2))

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(benchmarks), figsize=(5 * len(benchmarks), 4), squeeze=False)
    for ax, b in zip(axes[0], benchmarks):
        for label, summaries in runs.items():
            if b in summaries:
                ks = ks_of(summaries[b])
                ax.plot(ks, [summaries[b][f"pass@{k}"] for k in ks], marker="o", label=label)
        ax.set_xscale("log", base=2)
        ax.set_ylim(0, 1)  # a probability: the axis stays [0, 1] even when every value is 0
        ax.set_xlabel("k"), ax.set_ylabel("pass@k"), ax.set_title(b), ax.grid(alpha=0.3), ax.legend()
    fig.tight_layout()
    fig.savefig(out / "pass_at_k.png", dpi=110)
    plt.close(fig)
    print(table)
    print(f"wrote {out / 'comparison.md'} and {out / 'pass_at_k.png'}")
    return table


if __name__ == "__main__":
    run(main, Config, __doc__)
