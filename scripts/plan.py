"""Will a run fit? Memory per rank, from the model's config.json alone (no weights are loaded).

    python scripts/plan.py --model smollm2-135m-instruct --processes 8 --device-memory-gib 80
    python scripts/plan.py --model Qwen/Qwen2.5-7B-Instruct --processes 8 --device-memory-gib 80 --shard fsdp
    python scripts/plan.py --model Qwen/Qwen2.5-1.5B-Instruct --processes 2 --device cpu --beta 0.04
    python scripts/plan.py --compare runs/plan/grpo_1proc runs/plan/grpo_fsdp2 --output docs/results_plan.json
    python scripts/plan.py --grid smollm2-135m-instruct Qwen/Qwen2.5-7B-Instruct --grid-processes 1 8 16 --beta 0.04

Prints one table per rank: the training state (weights, gradients, AdamW's moments, DDP's buckets or what FSDP
gathers and the gradients it holds in full), the reference, PPO's critic, the engine's weights and KV cache, the
activations and logits of one micro-batch, the runtime, and the total against the device; then whether it fits
and, if not, the smallest change that makes it fit. How each row is estimated: reasoning_rl/memory_plan.py. The trainers run the same plan at start.

``--compare`` reads finished training runs (their config.json and results.json) and prints the plan of each
beside the peak memory it measured (on the CPU the plan of this machine's RAM). ``--grid`` prints a Markdown table
of models x process counts, DDP and FSDP, with the other options as given.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

from reasoning_rl.cli import check_options, run
from reasoning_rl.memory_plan import GIB, Setting, plan, read_shape, table
from reasoning_rl.tracking import read_metrics
from runtime.errors import UserError
from runtime.sharding import SHARD_KINDS


@dataclass
class Config:
    model: str = "smollm2-135m-instruct"
    """An embedded short name, a model folder (or a run's checkpoint), or a Hugging Face Hub name."""
    processes: int = 1
    """Ranks (GPUs, or processes on the CPU) of the run."""
    device_memory_gib: float = 0.0
    """Memory of one device in GiB (0: this machine's RAM with --device cpu, 80 with --device gpu)."""
    device: str = "gpu"
    """gpu, or cpu (the engine's KV cache is then a share of the RAM, split over the machine's processes)."""
    processes_per_machine: int = 0
    """Ranks per machine (0: all on one machine); sets hsdp's shard groups and the CPU's share of RAM per rank."""
    shard: str = "ddp"
    """ddp, fsdp or hsdp, as the trainers' --shard."""
    shard_group_size: int = 0
    """hsdp's ranks per shard group (0: one machine's)."""
    algorithm: str = "grpo"
    """grpo, dpo or ppo (PPO adds a critic and a reference)."""
    lora_rank: int = 0
    """LoRA rank (0: every weight is trained)."""
    beta: float = 0.0
    """GRPO's KL coefficient; above 0 a frozen reference is loaded."""
    micro_batch_size: int = 16
    """Sequences per forward/backward."""
    max_new_tokens: int = 64
    """Completion length limit."""
    prompt_tokens: int = 128
    """A prompt's length in tokens (a chat-formatted GSM8K question is about 150)."""
    prompts_per_step: int = 8
    """Prompts per step, over all ranks (for the engine's KV cache)."""
    group_size: int = 8
    """Completions per prompt."""
    vllm_memory_fraction: float = 0.25
    """As the trainers' option: the device's share for the engine (on the CPU, the RAM's share for its KV cache)."""
    vllm_tensor_parallel_size: int = 1
    """Ranks per engine."""
    gradient_checkpointing: bool = False
    """Recompute activations in the backward."""
    bf16: bool = True
    """The trainer's bf16 autocast (off on devices without native bf16)."""
    compare: list[str] = field(default_factory=list)
    """Finished run folders: the plan of each beside its measured peak memory per rank."""
    output: str | None = None
    """With --compare: write the comparison as JSON here."""
    grid: list[str] = field(default_factory=list)
    """Models: a Markdown table of GiB per rank with DDP and with FSDP for each of --grid-processes."""
    grid_processes: list[int] = field(default_factory=lambda: [1, 8, 16])
    """Process counts (devices) of --grid's columns."""


def setting(cfg: Config) -> Setting:
    import psutil

    gib = cfg.device_memory_gib or (psutil.virtual_memory().total / GIB if cfg.device == "cpu" else 80.0)
    return Setting.of(cfg, cfg.processes, cfg.device, gib, cfg.processes_per_machine, cfg.prompt_tokens, cfg.algorithm,
                      cfg.bf16)


def compare(folders: list[str], output: str | None) -> list[dict]:
    """Each run's plan (from its own settings, on this machine's CPU) beside its measured peak per rank."""
    import psutil

    from runtime.distributed import native_bf16

    rows = []
    for folder in map(Path, folders):
        if not (folder / "results.json").exists():
            raise UserError(f"{folder}: no results.json (a finished training run is needed)")
        saved, results = json.loads((folder / "config.json").read_text()), json.loads((folder / "results.json").read_text())
        options = SimpleNamespace(**{"shard": "ddp", "shard_group_size": 0, **saved})  # runs from before --shard
        s = Setting.of(options, saved["processes"], "cpu", psutil.virtual_memory().total / GIB, algorithm=saved["algorithm"],
                       bf16=saved["autocast"] and native_bf16())
        predicted = sum(plan(read_shape(saved["model"])[0], s).values()) / GIB
        # the highest step's peak too: results.json's peak missed the steps before the last in runs made before the
        # run's peak survived the per-step reset of the high-water mark (``tracking.peak_memory_gib``)
        step_peaks = [m["memory/step_peak_gib"] for m in read_metrics(folder) if "memory/step_peak_gib" in m]
        measured = max(results["peak_memory_gib_per_rank"] + step_peaks)
        rows.append({"run": str(folder), "algorithm": saved["algorithm"], "processes": s.processes, "shard": s.shard,
                     "beta": s.beta, "planned_gib": round(predicted, 2), "measured_gib": round(measured, 2),
                     "error_percent": round(100 * (predicted - measured) / measured, 1)})
        print(f"{folder}: planned {predicted:.2f} GiB per rank, measured {measured:.2f} ({rows[-1]['error_percent']:+.1f} %)")
    if output:
        Path(output).write_text(json.dumps({"machine_ram_gib": round(psutil.virtual_memory().total / GIB, 1),
                                            "prompt_tokens": 128, "runs": rows}, indent=2) + "\n")
    return rows


def grid(cfg: Config) -> str:
    """A Markdown table: per model, GiB per rank on each process count with DDP and with FSDP (a cross where it does
    not fit), and the smallest change that makes DDP on the largest count fit."""
    from dataclasses import replace

    from reasoning_rl.memory_plan import fits, suggest

    counts, largest = cfg.grid_processes, max(cfg.grid_processes)
    head = " | ".join(f"{n} device" if n == 1 else f"{n} devices, DDP | {n} devices, FSDP" for n in counts)
    lines = [f"| model | parameters | {head} | to fit on {largest} devices |",
             "|---|---|" + "".join("---|" if n == 1 else "---|---|" for n in counts) + "---|"]
    for model in cfg.grid:
        shape, _ = read_shape(model)
        cells = []
        for n in counts:
            for shard in ("ddp",) if n == 1 else ("ddp", "fsdp"):
                s = replace(setting(cfg), processes=n, shard=shard)
                cells.append(f"{sum(plan(shape, s).values()) / GIB:.1f}" + ("" if fits(shape, s) else " ✗"))
        ddp = replace(setting(cfg), processes=largest, shard="ddp")
        change = "fits" if fits(shape, ddp) else suggest(shape, ddp) or "no setting found"
        lines.append(f"| {model} | {shape.parameters / 1e9:.2f} B | " + " | ".join(cells) + f" | {change} |")
    return "\n".join(lines)


def main(cfg: Config) -> None:
    if cfg.compare:
        compare(cfg.compare, cfg.output)
        return
    if cfg.grid:
        print(grid(cfg))
        return
    check_options(cfg, {"device": ("gpu", "cpu"), "shard": SHARD_KINDS, "algorithm": ("grpo", "dpo", "ppo")})
    shape, source = read_shape(cfg.model)
    s = setting(cfg)
    title = (f"{cfg.model} ({shape.parameters / 1e6:,.0f} M parameters; config: {source}), {cfg.algorithm.upper()}, "
             f"{cfg.processes} process{'es' if cfg.processes > 1 else ''}, --shard {cfg.shard}")
    print(table(shape, s, title))


if __name__ == "__main__":
    run(main, Config, __doc__)
