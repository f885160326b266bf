"""The main job twice in one invocation, at the same seed: once with the update's two savings off
(every row forwarded, every row encoding its prompt) and once with both on (the defaults), then the
ratio of their loop times.

    python scripts/bench/bench_efficiency.py                        # 2 x the main job, about 15 minutes on 2 cores
    python scripts/bench/bench_efficiency.py --steps 4 --eval-problems 16 --output-dir runs/efficiency_quick

The loop time is what the 24 steps spend sampling (generation and reward scoring), updating and
syncing weights into vLLM (``time/step`` in metrics.jsonl), without model loading, the engine's
start and the held-out evaluations. Each run is its own ``scripts/train_grpo.py`` process (its own
vLLM engine and memory), one after the other. Writes ``results_efficiency.json`` (with
``loop_speedup``) and a per-step breakdown to ``--output-dir``; ``--docs`` copies them to docs/.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from reasoning_rl.cli import run
from reasoning_rl.tracking import read_metrics
from runtime.errors import UserError

ROOT = Path(__file__).resolve().parents[2]
PHASES = {"generate": "time/generate", "reward": "time/reward", "update": "time/train", "sync": "time/sync", "step": "time/step"}


@dataclass
class Config:
    steps: int = 24
    """Steps of each run (the main job's 24)."""
    eval_problems: int = 128
    """Held-out problems evaluated before and after each run (greedy and 4 samples)."""
    seed: int = 0
    """The same seed for both runs."""
    output_dir: str = "runs/efficiency"
    """The two runs go to plain/ and fast/ below it, with results_efficiency.json beside them."""
    docs: bool = False
    """Also copy results_efficiency.json to docs/."""


def train_run(cfg: Config, name: str, flags: list[str]) -> Path:
    folder = Path(cfg.output_dir) / name
    command = [sys.executable, str(ROOT / "scripts" / "train_grpo.py"), "--steps", str(cfg.steps), "--seed", str(cfg.seed),
               "--eval-problems", str(cfg.eval_problems), "--output-dir", str(folder), "--overwrite", *flags]  # an earlier run: moved aside
    print(f"\n=== {name}: {' '.join(command[1:])}", flush=True)
    if subprocess.run(command).returncode != 0:
        raise UserError(f"the {name} run failed (its output is above; its folder is {folder})")
    return folder


def summary(folder: Path) -> dict:
    """Loop seconds (sum of ``time/step``), per-phase totals and means, and held-out accuracy of one run."""
    steps = [m for m in read_metrics(folder) if "time/step" in m]
    report = json.loads((folder / "results.json").read_text())
    group_size = json.loads((folder / "config.json").read_text())["group_size"]
    task = report["tasks"][0]
    return {
        "loop_seconds": sum(m["time/step"] for m in steps),
        "phase_seconds": {phase: sum(m[key] for m in steps) for phase, key in PHASES.items()},
        "phase_mean_seconds": {phase: sum(m[key] for m in steps) / len(steps) for phase, key in PHASES.items()},
        "rows_skipped": sum(m.get("train/rows_skipped", 0) for m in steps),
        "rows": sum(m["train/groups_trained"] for m in steps) * group_size,
        "completion_mean_length": [m["completions/mean_length"] for m in steps],
        "before": report["before"].get(task), "after": report["after"][task], "wall_seconds": report["wall_seconds"],
    }


def main(cfg: Config) -> dict:
    plain = train_run(cfg, "plain", ["--no-skip-zero-advantage", "--no-shared-prompt"])
    fast = train_run(cfg, "fast", [])
    results = {"command": " ".join(sys.argv), "steps": cfg.steps, "seed": cfg.seed,
               "plain": summary(plain), "fast": summary(fast)}
    results["loop_speedup"] = results["plain"]["loop_seconds"] / results["fast"]["loop_seconds"]
    results["update_speedup"] = results["plain"]["phase_seconds"]["update"] / results["fast"]["phase_seconds"]["update"]

    print(f"\nper step, mean over {cfg.steps} steps (seconds):\n")
    print("| phase | plain | skip + shared prompt | ratio |\n|---|---|---|---|")
    for phase in PHASES:
        p, f = results["plain"]["phase_mean_seconds"][phase], results["fast"]["phase_mean_seconds"][phase]
        print(f"| {phase} | {p:.2f} | {f:.2f} | {p / f if f else float('nan'):.2f}x |")
    for name in ("plain", "fast"):
        r = results[name]
        print(f"{name}: loop {r['loop_seconds']:.1f} s, held-out greedy {r['before']['greedy']:.1%} -> {r['after']['greedy']:.1%}, "
              f"sampled pass@1 {r['before']['pass@1']:.1%} -> {r['after']['pass@1']:.1%}")
    print(f"loop_speedup {results['loop_speedup']:.2f}x (update {results['update_speedup']:.2f}x)")
    text = json.dumps(results, indent=2)
    (Path(cfg.output_dir) / "results_efficiency.json").write_text(text)
    if cfg.docs:
        (ROOT / "docs" / "results_efficiency.json").write_text(text)
    return results


if __name__ == "__main__":
    run(main, Config, __doc__)
