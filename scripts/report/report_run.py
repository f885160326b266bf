"""One training run and the benchmark before and after it: a JSON and a figure for the docs.

    python scripts/report/report_run.py runs/gsm8k --before runs/eval/gsm8k_untrained --after runs/eval/gsm8k_trained \\
        --json docs/results_gsm8k.json --plot docs/images/gsm8k.png

RUN is a trainer's output folder (metrics.jsonl, config.json, results.json); --before and --after are
scripts/evaluate.py output folders on the same benchmark, of the untrained model and of the run's final
checkpoint. The JSON keeps the run's configuration and wall time, its per-step curve, both benchmark
summaries and the paired comparison (eval/metrics.py: paired_difference). The figure has three panels:
what the training batches got right and boxed, how long the completions were, and held-out greedy
accuracy (the run's own small evaluations, and the full benchmark before and after with 95 % intervals).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import tyro

from eval.harness import load_samples, load_summaries, per_problem_pass1
from eval.metrics import paired_difference
from reasoning_rl.cli import run
from reasoning_rl.tracking import read_metrics
from rewards import boxed_format_reward
from runtime.errors import UserError

CURVE = ("reward/mean", "train/accuracy", "reward/boxed_format", "reward/overlong", "completions/mean_length",
         "completions/truncated", "train/frac_reward_zero_std", "prompts/informative", "time/step", "heldout/greedy")
SUMMARY = ("benchmark", "n_problems", "n_samples", "pass@1", "pass@1_ci95", "mean_completion_tokens", "fraction_truncated",
           "wall_seconds", "model", "template", "max_new_tokens", "temperature")


@dataclass
class Config:
    run_dir: tyro.conf.Positional[str]
    """The trainer's output folder."""
    before: str
    """evaluate.py output folder of the untrained model."""
    after: str
    """evaluate.py output folder of the run's final checkpoint (same benchmark)."""
    json: str = "runs/report/results.json"
    """Where the JSON goes."""
    plot: str = "runs/report/run.png"
    """Where the figure goes."""
    smooth: int = 5
    """Steps in the running mean drawn over the noisy per-step curves."""


def only_benchmark(folder: str) -> dict:
    summaries = load_summaries(Path(folder))
    if len(summaries) != 1:
        raise UserError(f"{folder}: holds {len(summaries)} benchmarks ({', '.join(summaries)}); give one benchmark's folder")
    return next(iter(summaries.values()))


def fraction_boxed(records: dict[str, dict]) -> float:
    """Share of the completions with a non-empty final ``\\boxed{}`` (rewards' boxed_format)."""
    completions = [c for r in records.values() for c in r["completions"]]
    return sum(boxed_format_reward(c) for c in completions) / max(len(completions), 1)


def build_report(cfg: Config) -> dict:
    out = Path(cfg.run_dir)
    if not (out / "metrics.jsonl").exists():
        raise UserError(f"{out}: no metrics.jsonl (is it a trainer's --output-dir?)")
    before, after = only_benchmark(cfg.before), only_benchmark(cfg.after)
    if before["benchmark"] != after["benchmark"]:
        raise UserError(f"--before is {before['benchmark']} but --after is {after['benchmark']}")
    before_records, after_records = load_samples(before), load_samples(after)
    base, trained = per_problem_pass1(before_records), per_problem_pass1(after_records)
    common = [i for i in base if i in trained]
    metrics = read_metrics(out)
    results = json.loads((out / "results.json").read_text()) if (out / "results.json").exists() else {}
    return {
        "config": json.loads((out / "config.json").read_text()) if (out / "config.json").exists() else {},
        "wall_seconds": results.get("wall_seconds"),
        "steps": results.get("steps", metrics[-1]["step"] if metrics else 0),
        "heldout_in_run": {"before": results.get("before"), "after": results.get("after")},
        "curve": [{k: m[k] for k in ("step", *CURVE) if k in m} for m in metrics],
        "benchmark": {"before": {**{k: before[k] for k in SUMMARY if k in before}, "fraction_boxed": fraction_boxed(before_records)},
                      "after": {**{k: after[k] for k in SUMMARY if k in after}, "fraction_boxed": fraction_boxed(after_records)},
                      "paired": paired_difference([base[i] for i in common], [trained[i] for i in common])},
    }


def running_mean(values: list[float], width: int) -> list[float]:
    return [sum(values[max(0, i - width + 1) : i + 1]) / len(values[max(0, i - width + 1) : i + 1]) for i in range(len(values))]


def plot_report(report: dict, path: Path, smooth: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curve = [c for c in report["curve"] if "reward/mean" in c]
    steps = [c["step"] for c in curve]
    fig, (left, middle, right) = plt.subplots(1, 3, figsize=(15, 4.2), layout="constrained")
    for ax, keys in ((left, (("train/accuracy", "right answers"), ("reward/boxed_format", "boxed answers"))),
                     (middle, (("completions/truncated", "cut off at max_new_tokens"),))):
        for key, label in keys:
            if any(key in c for c in curve):
                values = [c.get(key, 0.0) for c in curve]
                line, = ax.plot(steps, values, alpha=0.3)
                ax.plot(steps, running_mean(values, smooth), color=line.get_color(), label=f"{label} ({smooth}-step mean)")
    left.set_title("training batches (fraction of completions)")
    middle.set_title("completion length")
    middle.set_ylabel("fraction")
    twin = middle.twinx()
    lengths = [c.get("completions/mean_length", 0.0) for c in curve]
    twin.plot(steps, running_mean(lengths, smooth), color="black", ls="--", label=f"mean tokens ({smooth}-step mean)")
    twin.set_ylabel("tokens")
    twin.legend(loc="lower left", fontsize=8)
    in_run = [(0, (report["heldout_in_run"]["before"] or {}).get(report["config"].get("task"), {}).get("greedy"))]
    in_run += [(c["step"], c["heldout/greedy"]) for c in report["curve"] if "heldout/greedy" in c]
    in_run = [(s, v) for s, v in in_run if v is not None]
    config, bench = report["config"], report["benchmark"]
    if in_run:
        right.plot(*zip(*in_run), marker="o", label=f"{config.get('eval_problems', '?')} held-out problems, "
                                                    f"{config.get('max_new_tokens', '?')} tokens")
    for x, key in ((0, "before"), (report["steps"], "after")):
        s = bench[key]
        low, high = s["pass@1_ci95"]
        right.errorbar([x], [s["pass@1"]], yerr=[[s["pass@1"] - low], [high - s["pass@1"]]], fmt="s", color="C3", capsize=4,
                       label=f"full {s['benchmark']} test ({s['n_problems']}), {s.get('max_new_tokens', '?')} tokens, 95 % CI"
                       if key == "before" else None)
    right.set_title("greedy accuracy")
    right.set_xlabel("step")
    right.legend(loc="upper left", fontsize=8)
    for ax in (left, middle, right):
        ax.set_xlabel("step"), ax.grid(alpha=0.3)
    left.legend(loc="upper left", fontsize=8), middle.legend(loc="upper left", fontsize=8)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(cfg: Config) -> dict:
    report = build_report(cfg)
    path = Path(cfg.json)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=1, default=str))
    plot_report(report, Path(cfg.plot), cfg.smooth)
    bench, paired = report["benchmark"], report["benchmark"]["paired"]
    for key in ("before", "after"):
        s = bench[key]
        print(f"{key:>6}: {s['benchmark']} pass@1 {s['pass@1']:.1%} (95 % CI {s['pass@1_ci95'][0]:.1%} to {s['pass@1_ci95'][1]:.1%}), "
              f"{s['n_problems']} problems, {s['mean_completion_tokens']:.0f} tokens, {s['fraction_truncated']:.1%} cut off, "
              f"{s['fraction_boxed']:.1%} boxed")
    low, high = paired["difference_ci95"]
    print(f"paired on {paired['problems']} problems: {paired['difference']:+.1%} (95 % CI {low:+.1%} to {high:+.1%}); "
          f"solved only after {paired['only_other']}, only before {paired['only_base']}, McNemar p = {paired['mcnemar_p']:.2g}")
    print(f"wrote {path} and {cfg.plot}")
    return report


if __name__ == "__main__":
    run(main, Config, __doc__)
