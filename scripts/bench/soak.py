"""Memory over a long run: does a step's peak memory grow with the steps?

    python scripts/bench/soak.py --label "caches bounded"     # 100 steps, about 30 minutes here
    python scripts/bench/soak.py --reuse --before runs/soak_before/results_soak.json --label "caches bounded" --docs
    python scripts/bench/soak.py --steps 20 --warmup 5 --output-dir runs/soak_quick

``--reuse`` summarises a soak already run (also one stopped early, as the earlier code's ``--before`` soak was) without
running it again.

One ``scripts/train_grpo.py`` run with the GSM8K preset's data, template and rewards, and
completions of varying length up to ``--max-new-tokens`` (256), and ``--beta 0.04``: the KL term gives every row a
gradient, so every completion is forwarded and back-propagated at every step whatever the rewards, and the work per
step stays level while its shapes vary (``bench_step_memory.py`` measures how the peak follows the rows trained
when rows are skipped). Each step logs ``memory/step_peak_gib`` (the
resident peak of that step alone: the kernel's high-water mark, reset after each step) and ``memory/rss_gib``. A
line fitted to the step peaks after ``--warmup`` steps gives the growth per 100 steps, in GiB and in percent of the
fitted level at the first step after the warm-up; a leak or allocator fragmentation shows as a positive slope. The
correlation of the step peak with the step's longest completion is reported beside it.

Writes ``results_soak.json`` (``growth_percent_per_100_steps`` and ``steps``; with ``--before``, the earlier soak
under ``before_fix``) and ``soak.png`` to ``--output-dir``; ``--docs`` copies them to docs/ (the plot to
docs/images/).
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from bench_outputs import publish

from reasoning_rl.cli import run
from reasoning_rl.tracking import read_metrics
from runtime.errors import UserError

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Config:
    steps: int = 100
    """Steps of each run (at least 100 for the documented figure)."""
    warmup: int = 10
    """Steps left out of the fit (the allocator's and vLLM's first shapes)."""
    max_new_tokens: int = 256
    """Completion length limit: lengths vary up to it."""
    prompts_per_step: int = 2
    """Prompts per step."""
    group_size: int = 4
    """Completions per prompt."""
    micro_batch_size: int = 4
    """Rows per forward pass (the GSM8K preset at 16, the setting that once ran out of memory, is run in full
    instead: docs/efficiency.md)."""
    before: str | None = None
    """A results_soak.json of an earlier soak (the code before a fix) to show beside this one, in the JSON
    (before_fix) and the plot."""
    label: str = "this code"
    """This run's name in the plot."""
    output_dir: str = "runs/soak"
    """The run goes to run/ below it, the summary and the plot beside it."""
    docs: bool = False
    """Also copy the summary and the plot to docs/."""
    reuse: bool = False
    """Summarise the run already in --output-dir/run (a finished soak, or one stopped early) instead of running one."""


def fit(steps: list[int], values: list[float]) -> tuple[float, float]:
    """Least-squares line ``value = level + slope * (step - steps[0])``: (level, slope per step)."""
    n, x0 = len(steps), steps[0]
    xs = [s - x0 for s in steps]
    mx, my = sum(xs) / n, sum(values) / n
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, values)) / max(sum((x - mx) ** 2 for x in xs), 1e-12)
    return my - slope * mx, slope


def correlation(a: list[float], b: list[float]) -> float:
    ma, mb = sum(a) / len(a), sum(b) / len(b)
    cov = sum((x - ma) * (y - mb) for x, y in zip(a, b))
    var = (sum((x - ma) ** 2 for x in a) * sum((y - mb) ** 2 for y in b)) ** 0.5
    return cov / var if var else 0.0


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (memory, heap) = plt.subplots(2, 1, figsize=(9, 6.5), sharex=True, layout="constrained")
    first = results["warmup"] + 1
    runs = ([("before the fix", results["before_fix"])] if "before_fix" in results else []) + [(results["label"], results)]
    for name, one in runs:
        per_step = one["per_step"]
        line, = memory.plot(per_step["step"], per_step["step_peak_gib"], alpha=0.6, label=f"{name}: peak of each step")
        xs = [s for s in per_step["step"] if s >= first]
        memory.plot(xs, [one["fit_level_gib"] + one["fit_slope_gib_per_step"] * (s - first) for s in xs], "--",
                    color=line.get_color(), label=f"fit after warm-up: {one['growth_percent_per_100_steps']:+.2f} % per 100 steps")
        if None not in per_step.get("heap_free_held_gib", [None]):
            heap.plot(per_step["step"], per_step["heap_free_held_gib"], color=line.get_color(), label=f"{name}: freed, held by malloc")
            heap.plot(per_step["step"], per_step["heap_in_use_gib"], color=line.get_color(), ls=":", label=f"{name}: in use")
    memory.set_ylabel("GiB"), memory.legend(fontsize=8), memory.grid(alpha=0.3)
    heap.set_ylabel("GiB at the step's end"), heap.set_xlabel("step"), heap.grid(alpha=0.3), heap.legend(fontsize=8)
    fig.suptitle(f"memory over {results['steps']} steps ({results['settings']})")
    fig.savefig(path, dpi=110)
    plt.close(fig)


def soak(cfg: Config, out: Path) -> dict:
    """The run; its step peaks, their fitted slope, malloc's account and what the peak follows."""
    folder = out / "run"
    if cfg.reuse:
        if not (folder / "metrics.jsonl").exists():
            raise UserError(f"--reuse: {folder} holds no metrics.jsonl (run the soak without --reuse first)")
        return summarize(cfg, folder)
    flags = ["--preset", "gsm8k", "--steps", str(cfg.steps), "--time-limit", "0", "--max-new-tokens",
             str(cfg.max_new_tokens), "--prompts-per-step", str(cfg.prompts_per_step), "--group-size",
             str(cfg.group_size), "--micro-batch-size", str(cfg.micro_batch_size), "--beta", "0.04",
             "--no-eval-before", "--eval-problems", "0", "--eval-every", "0", "--save-every", str(cfg.steps),
             "--optimizer-state", "none"]
    command = [sys.executable, str(ROOT / "scripts" / "train_grpo.py"), *flags, "--output-dir", str(folder), "--overwrite"]
    print(" ".join(command[1:]), flush=True)
    if subprocess.run(command).returncode != 0:
        raise UserError(f"the soak run failed (its output is above; its folder is {folder})")
    return summarize(cfg, folder, flags)


def config_flags(saved: dict) -> list[str]:
    """The run's training flags, from its saved config.json (for --reuse)."""
    keys = ("preset", "steps", "max_new_tokens", "prompts_per_step", "group_size", "micro_batch_size", "beta")
    return [part for key in keys for part in (f"--{key.replace('_', '-')}", str(saved[key]))]


def summarize(cfg: Config, folder: Path, flags: list[str] | None = None) -> dict:
    """The step peaks of the run in ``folder``, their fitted slope, malloc's account and what the peak follows
    (``flags``: the training flags it ran with; None: read from its config.json)."""
    saved = json.loads((folder / "config.json").read_text())
    flags = config_flags(saved) if flags is None else flags
    steps = [m for m in read_metrics(folder) if "memory/step_peak_gib" in m]
    per_step = {"step": [m["step"] for m in steps], "step_peak_gib": [m["memory/step_peak_gib"] for m in steps],
                "rss_gib": [m["memory/rss_gib"] for m in steps], "max_length": [m["completions/max_length"] for m in steps],
                "heap_in_use_gib": [m.get("memory/heap_in_use_gib") for m in steps],
                "heap_free_held_gib": [m.get("memory/heap_free_held_gib") for m in steps],
                "rows_trained": [m["completions/sampled"] - m.get("train/rows_skipped", 0) for m in steps]}
    after = [i for i, s in enumerate(per_step["step"]) if s > cfg.warmup]
    if len(after) < 3:
        raise UserError(f"{folder}: {len(after)} steps after the --warmup {cfg.warmup}; a slope needs at least 3")
    pick = lambda key: [per_step[key][i] for i in after]  # noqa: E731
    level, slope = fit([per_step["step"][i] for i in after], pick("step_peak_gib"))
    heap = {}
    if None not in per_step["heap_in_use_gib"]:  # glibc's account: a leak grows "in use", fragmentation "free held"
        for key in ("heap_in_use_gib", "heap_free_held_gib", "rss_gib"):
            heap[f"{key}_growth_per_100_steps"] = 100 * fit([per_step["step"][i] for i in after], pick(key))[1]
    settings = (f"GSM8K, {saved['prompts_per_step']}x{saved['group_size']} completions up to {saved['max_new_tokens']} "
                f"tokens, micro-batches of {saved['micro_batch_size']}, beta {saved['beta']:g}")
    return {"train_flags": flags, "settings": settings, "steps": len(steps), "fit_level_gib": level,
            "fit_slope_gib_per_step": slope, **heap,
            "growth_gib_per_100_steps": 100 * slope, "growth_percent_per_100_steps": 100 * 100 * slope / level,
            "peak_vs_rows_trained_correlation": correlation(pick("step_peak_gib"), pick("rows_trained")),
            "peak_vs_longest_completion_correlation": correlation(pick("step_peak_gib"), pick("max_length")),
            "max_step_peak_gib": max(per_step["step_peak_gib"]), "per_step": per_step}


def main(cfg: Config) -> dict:
    if cfg.steps < cfg.warmup + 3:
        raise UserError(f"--steps {cfg.steps}: needs at least --warmup + 3 ({cfg.warmup + 3}) to fit a slope")
    out = Path(cfg.output_dir)
    before = json.loads(Path(cfg.before).read_text()) if cfg.before else None
    run_result = soak(cfg, out)
    results = {"command": " ".join(sys.argv), "warmup": cfg.warmup, "label": cfg.label, **run_result}
    if before:
        results["before_fix"] = {k: v for k, v in before.items() if k != "before_fix"}
    for name, one in ([("before the fix", before)] if before else []) + [(cfg.label, results)]:
        print(f"{name}: {one['steps']} steps, step peak {one['fit_level_gib']:.2f} GiB after warm-up, growth "
              f"{one['growth_gib_per_100_steps']:+.3f} GiB = {one['growth_percent_per_100_steps']:+.2f} % per 100 steps; "
              f"highest {one['max_step_peak_gib']:.2f} GiB; correlation of the step peak with the longest completion "
              f"{one['peak_vs_longest_completion_correlation']:.2f}")
        if "heap_in_use_gib_growth_per_100_steps" in one:
            print(f"  per 100 steps: malloc in use {one['heap_in_use_gib_growth_per_100_steps']:+.3f} GiB, freed but "
                  f"held {one['heap_free_held_gib_growth_per_100_steps']:+.3f} GiB, resident at step end "
                  f"{one['rss_gib_growth_per_100_steps']:+.3f} GiB")
    publish(out, "soak", results, lambda path: plot(results, path), cfg.docs)
    return results


if __name__ == "__main__":
    run(main, Config, __doc__)
