"""The engine/trainer mismatch and its correction, measured on the main job: on-policy and with stale rollouts, each
with the correction off and on, GSPO and CISPO, and the trainer in float32 against the engine's bf16.

    python scripts/bench/bench_rollout_correction.py --docs          # 8 runs of the main job, about 45 minutes on 2 cores
    python scripts/bench/bench_rollout_correction.py --steps 3 --eval-problems 16 --output-dir runs/correction_quick

Each run is its own ``scripts/train_grpo.py`` process at the main job's settings and seed, one after the other:

    on_policy            --rollout-staleness 0 --rollout-correction none
    on_policy_corrected  --rollout-staleness 0 --rollout-correction MODE
    stale                --rollout-staleness 2 --rollout-correction none
    stale_corrected      --rollout-staleness 2 --rollout-correction MODE
    gspo                 --preset gspo (one clipped ratio per sequence, 2 passes per batch)
    cispo                --preset cispo (clipped stop-gradient weights on REINFORCE, 2 passes per batch)
    float32_trainer      --no-autocast (the trainer's forward in float32, the engine in bf16)
    float32_corrected    --no-autocast --rollout-correction MODE (the largest on-policy mismatch, corrected)

Writes ``results_rollout_correction.json`` (held-out greedy and sampled pass@1 before -> after, the mismatch metrics
and the fraction corrected, per run and per step) and ``rollout_correction.png`` to ``--output-dir``; ``--docs``
copies both to docs/. A run whose folder already holds ``results.json`` is not run again (``--rerun`` forces it; the earlier run is moved
aside to a dated folder, as ``--overwrite`` does).
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
MISMATCH = ("rollout/kl_engine_trainer", "rollout/logprob_diff_mean", "rollout/logprob_diff_max",
            "rollout/is_weight_mean", "rollout/corrected_fraction")


@dataclass
class Config:
    correction: str = "token_tis"
    """The correction of the *_corrected runs (see train_grpo.py --help, --rollout-correction)."""
    threshold: float = 2.0
    """Its --rollout-correction-threshold."""
    staleness: int = 2
    """--rollout-staleness of the stale runs."""
    steps: int = 24
    """Steps of each run (the main job's 24)."""
    eval_problems: int = 128
    """Held-out problems evaluated before and after each run."""
    seed: int = 0
    """The same seed for every run."""
    runs: tuple[str, ...] = ("on_policy", "on_policy_corrected", "stale", "stale_corrected", "gspo", "cispo",
                             "float32_trainer", "float32_corrected")
    """Which runs to make (default: all eight)."""
    output_dir: str = "runs/rollout_correction"
    """Each run goes to a folder of its name below it, with the summary and the plot beside them."""
    rerun: bool = False
    """Run again the runs whose folders already hold results.json."""
    docs: bool = False
    """Also copy the summary and the plot to docs/."""


def flags(cfg: Config) -> dict[str, list[str]]:
    corrected = ["--rollout-correction", cfg.correction, "--rollout-correction-threshold", str(cfg.threshold)]
    stale = ["--rollout-staleness", str(cfg.staleness)]
    return {"on_policy": ["--rollout-correction", "none"], "on_policy_corrected": corrected,
            "stale": [*stale, "--rollout-correction", "none"], "stale_corrected": [*stale, *corrected],
            "gspo": ["--preset", "gspo"], "cispo": ["--preset", "cispo"],
            "float32_trainer": ["--rollout-correction", "none", "--no-autocast"],
            "float32_corrected": [*corrected, "--no-autocast"]}


def train_run(cfg: Config, name: str, extra: list[str]) -> Path:
    folder = Path(cfg.output_dir) / name
    if (folder / "results.json").exists() and not cfg.rerun:
        print(f"=== {name}: done before ({folder / 'results.json'})", flush=True)
        return folder
    command = [sys.executable, str(ROOT / "scripts" / "train_grpo.py"), *extra, "--steps", str(cfg.steps), "--seed",
               str(cfg.seed), "--eval-problems", str(cfg.eval_problems), "--output-dir", str(folder),
               "--overwrite"]  # an unfinished earlier run of it is moved aside, not deleted
    print(f"\n=== {name}: {' '.join(command[1:])}", flush=True)
    if subprocess.run(command).returncode != 0:
        raise UserError(f"the {name} run failed (its output is above; its folder is {folder})")
    return folder


def summary(folder: Path, extra: list[str]) -> dict:
    steps = [m for m in read_metrics(folder) if "time/step" in m]
    report = json.loads((folder / "results.json").read_text())
    task = report["tasks"][0]
    per_step = {key: [m.get(key) for m in steps] for key in MISMATCH}
    measured = [m for m in steps if MISMATCH[0] in m]  # a step that forwarded no row has no mismatch to measure

    def mean(key: str) -> float | None:
        return sum(m[key] for m in measured) / len(measured) if measured else None

    return {"flags": extra, "before": report["before"].get(task), "after": report["after"][task],
            "wall_seconds": report["wall_seconds"], "loop_seconds": sum(m["time/step"] for m in steps),
            "train_accuracy": [m.get("train/accuracy") for m in steps],
            "mean": {key: mean(key) for key in MISMATCH},
            "max_logprob_diff": max((d for d in per_step[MISMATCH[2]] if d is not None), default=None),
            "per_step": per_step}


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = results["runs"]
    fig, (bars, kl, corrected) = plt.subplots(1, 3, figsize=(15, 4.2), layout="constrained")
    names = list(runs)
    before = [runs[n]["before"]["greedy"] for n in names]
    after = [runs[n]["after"]["greedy"] for n in names]
    bars.barh(names, after, color="tab:blue", label="after")
    bars.scatter(before, names, color="black", marker="|", s=200, label="untrained")
    bars.set_xlim(0, 1), bars.set_xlabel("held-out greedy accuracy"), bars.legend(loc="lower right")
    bars.invert_yaxis(), bars.grid(alpha=0.3, axis="x")
    for name in names:
        steps = range(1, len(runs[name]["per_step"][MISMATCH[0]]) + 1)
        kl.plot(steps, runs[name]["per_step"]["rollout/kl_engine_trainer"], label=name)
        corrected.plot(steps, runs[name]["per_step"]["rollout/corrected_fraction"], label=name)
    kl.set_yscale("log"), kl.set_xlabel("step"), kl.set_title("KL(engine || trainer) per token (k3)")
    corrected.set_xlabel("step"), corrected.set_title("fraction of tokens truncated or masked")
    for ax in (kl, corrected):
        ax.grid(alpha=0.3), ax.xaxis.get_major_locator().set_params(integer=True)
    corrected.legend(fontsize=7)
    fig.suptitle(f"rollout correction on the main job ({results['steps']} steps, seed {results['seed']})")
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(cfg: Config) -> dict:
    table = flags(cfg)
    unknown = set(cfg.runs) - set(table)
    if unknown:
        raise UserError(f"--runs: unknown run(s) {sorted(unknown)}; known: {', '.join(table)}")
    results = {"command": " ".join(sys.argv), "steps": cfg.steps, "seed": cfg.seed, "correction": cfg.correction,
               "threshold": cfg.threshold, "staleness": cfg.staleness,
               "runs": {name: summary(train_run(cfg, name, table[name]), table[name]) for name in cfg.runs}}
    print("\n| run | greedy before -> after | sampled pass@1 before -> after | KL(engine||trainer) | "
          "max |diff| | corrected |\n|---|---|---|---|---|---|")
    for name, r in results["runs"].items():
        m = r["mean"]
        kl = f"{m[MISMATCH[0]]:.2e}" if m[MISMATCH[0]] is not None else "-"
        print(f"| {name} | {r['before']['greedy']:.1%} -> {r['after']['greedy']:.1%} | {r['before']['pass@1']:.1%} -> "
              f"{r['after']['pass@1']:.1%} | {kl} | {r['max_logprob_diff'] or 0:.3f} | "
              f"{m['rollout/corrected_fraction'] or 0:.2%} |")
    publish(Path(cfg.output_dir), "rollout_correction", results, lambda path: plot(results, path), cfg.docs)
    return results


if __name__ == "__main__":
    run(main, Config, __doc__)
