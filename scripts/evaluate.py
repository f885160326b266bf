"""Benchmark a model: pass@k, maj@k and greedy accuracy on GSM8K, MATH, MATH-500 and more.

    python scripts/evaluate.py --model smollm2-135m-instruct --benchmark gsm8k --limit 8 --n 4 --k 1,4 --output-dir OUT
    python scripts/evaluate.py --model runs/grpo/checkpoints/step_000024 --benchmark gsm8k math500 --temperature 0
    python scripts/evaluate.py --benchmark jsonl --data-path my_quiz.jsonl   # rows {"question": ..., "answer": ...}

Writes, per benchmark, ``OUT/<benchmark>/samples.jsonl`` (one line per problem: prompt,
completions, extracted answers, correctness), ``summary.json`` and ``summary.md``. With one
benchmark the files go straight into OUT, with ``config.json`` (the settings). An interrupted
evaluation started again with ``--resume`` skips the problems already in samples.jsonl; without
it, a folder that holds another evaluation is refused (``--overwrite`` moves it aside), and a
folder in use by a running evaluation is always refused.

On several processes each rank starts its own engine and generates its share of the problems;
rank 0 merges them into the same samples.jsonl and writes the summaries:

    torchrun --nproc-per-node 8 scripts/evaluate.py --model Qwen/Qwen2.5-1.5B-Instruct --benchmark math500
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from data_prep import TEMPLATES, load_problems
from data_prep.benchmarks import data_label
from eval import evaluate
from reasoning_rl.cli import check_options, run
from reasoning_rl.config import as_flags, changed_settings
from reasoning_rl.generation import make_generator
from reasoning_rl.settings import check_tools
from reasoning_rl.tool_use import make_tool, with_tools
from reasoning_rl.models import load_policy, load_tokenizer, resolve_model
from runtime.distributed import Dist
from runtime.errors import UserError, as_user_error
from runtime.run_folder import claim, claim_on_ranks


@dataclass
class Config:
    model: str = "smollm2-135m-instruct"
    """Embedded short name, Hub name, local folder or a training checkpoint folder."""
    benchmark: tuple[str, ...] = ("gsm8k",)
    """One or more of gsm8k, math, math500, aime24, amc23, minerva_math, olympiadbench; or jsonl, a data set of your
    own given by --data-path (a JSONL file or Hub data set with a 'question' or 'problem' field and an 'answer' field)."""
    data_path: str | None = None
    """JSONL file, data folder or Hub data set (default: ../shared/data, else the Hub); with --benchmark jsonl, your file."""
    split: str = "test"
    """Data split."""
    template: str = "chat_boxed"
    """Prompt template: chat, chat_boxed, chat_tool (with --tools python), r1_zero, few_shot."""
    n: int = 1
    """Samples per problem."""
    k: str = "1"
    """Comma-separated k values for pass@k and maj@k (each at most n)."""
    temperature: float | None = None
    """Sampling temperature; 0 is greedy decoding (n must be 1). Default: 0 when n = 1, else 1.0."""
    top_p: float = 1.0
    """Nucleus sampling."""
    max_new_tokens: int = 512
    """Completion length limit."""
    seed: int = 0
    """Engine seed."""
    limit: int | None = None
    """Evaluate only the first this-many problems."""
    drop_unparseable_references: bool = False
    """Drop problems whose reference answer math-verify cannot parse (they are always counted and reported)."""
    output_dir: str = "runs/eval"
    """Output folder (one evaluation per folder; see --resume and --overwrite)."""
    resume: bool = False
    """Continue the interrupted evaluation in output_dir: problems already in samples.jsonl are skipped. Settings that
    change the samples (model, benchmark, data, template, n, temperature, top-p, max-new-tokens, seed, backend, tools) must be
    the evaluation's own; --limit, --k and --chunk-size may change."""
    overwrite: bool = False
    """Start anew in an output_dir that holds another evaluation: it is moved aside to a dated folder beside it."""
    backend: str = "vllm"
    """vllm, or hf (transformers generate)."""
    chunk_size: int = 256
    """Problems per engine call; finished chunks are saved, so a killed run loses at most one."""
    vllm_memory_fraction: float = 0.3
    """vLLM's gpu_memory_utilization (on the CPU: the fraction of RAM for the KV cache)."""
    max_model_len: int = 4096
    """vLLM context length (prompt + completion)."""
    vllm_tensor_parallel_size: int = 1
    """Devices per vLLM engine for a model that does not fit one: each group of this many consecutive ranks shares one
    engine; it must divide the number of processes."""
    tools: str = "none"
    """none, or python: tool-integrated reasoning (TIR) mode, as in training with --tools python: completions may run
    ```python blocks in the sandbox and go on after their output; the answer after the last output is graded. Use with
    --template chat_tool."""
    max_tool_calls: int = 2
    """Tool calls per completion (as in training)."""
    tool_timeout: float = 5.0
    """Seconds per tool call (as in training)."""
    tool_output_chars: int = 256
    """Characters of a call's output put back into the context (as in training)."""


def markdown_table(summary: dict, ks: list[int]) -> str:
    cols = [f"pass@{k}" for k in ks] + [f"maj@{k}" for k in ks if k > 1]
    lines = [f"| benchmark | problems | n | {' | '.join(cols)} | pass@1 95% CI | mean tokens | truncated |",
             "|" + "---|" * (len(cols) + 6)]
    ci = summary["pass@1_ci95"]
    lines.append(f"| {summary['benchmark']} | {summary['n_problems']} | {summary['n_samples']} | "
                 + " | ".join(f"{summary[c]:.1%}" for c in cols)
                 + f" | {ci[0]:.1%} to {ci[1]:.1%} | {summary['mean_completion_tokens']:.0f} | {summary['fraction_truncated']:.1%} |")
    if "tools/used_fraction" in summary:
        lines += ["", "| completions calling the tool | calls per completion | calls failing | accuracy with a call | "
                  "without |", "|---|---|---|---|---|",
                  f"| {summary['tools/used_fraction']:.1%} | {summary['tools/calls_per_completion']:.2f} | "
                  f"{summary['tools/error_rate']:.1%} | " + " | ".join(
                      f"{summary[k]:.1%}" if k in summary else "-" for k in ("tools/accuracy_with_call",
                                                                             "tools/accuracy_without_call")) + " |"]
    for key in ("subject", "level"):
        if f"pass@1_by_{key}" in summary:
            lines += ["", f"| {key} | pass@1 |", "|---|---|"]
            lines += [f"| {g} | {v:.1%} |" for g, v in summary[f"pass@1_by_{key}"].items()]
    return "\n".join(lines) + "\n"


def check_settings(cfg: Config) -> list[int]:
    """The k values; a ``UserError`` for any option that cannot work (before anything loads)."""
    check_options(cfg, {"template": tuple(TEMPLATES), "backend": ("vllm", "hf"), "tools": ("none", "python")})
    check_tools(cfg)
    try:
        ks = sorted({int(k) for k in cfg.k.split(",")})
    except ValueError:
        raise UserError(f"--k {cfg.k!r}: give whole numbers separated by commas, e.g. 1,4") from None
    if cfg.n < 1 or cfg.max_new_tokens < 1 or cfg.chunk_size < 1 or min(ks) < 1:
        raise UserError("--n, --k, --max-new-tokens and --chunk-size must be at least 1")
    if max(ks) > cfg.n:
        raise UserError(f"--k {cfg.k}: every k must be at most --n {cfg.n}")
    if cfg.temperature is None:
        cfg.temperature = 0.0 if cfg.n == 1 else 1.0
    if cfg.temperature < 0 or not 0 < cfg.top_p <= 1:
        raise UserError("--temperature must be at least 0 and --top-p in (0, 1]")
    if cfg.temperature == 0 and cfg.n > 1:
        raise UserError("--temperature 0 is greedy decoding: all n samples would be the same; use --n 1")
    if cfg.limit is not None and cfg.limit < 1:
        raise UserError("--limit must be at least 1")
    return ks


def check_processes(cfg: Config, dist: Dist) -> None:
    tp = cfg.vllm_tensor_parallel_size
    if tp < 1 or dist.world % tp or (tp > 1 and cfg.backend != "vllm"):
        raise UserError(f"--vllm-tensor-parallel-size {tp} needs --backend vllm and must divide the number of processes ({dist.world})")


# What an evaluation resumed with --resume may change: which problems (--limit), what is reported, and chunking.
MAY_CHANGE_ON_RESUME = frozenset({"limit", "k", "chunk_size", "resume", "overwrite", "output_dir", "vllm_memory_fraction",
                                  "max_model_len", "vllm_tensor_parallel_size"})


def eval_contents(folder: Path) -> str | None:
    """What of an evaluation ``folder`` holds ("samples.jsonl, summary.json"), or None."""
    found = sorted({p.name for pattern in ("samples*.jsonl", "summary.json", "*/samples*.jsonl", "*/summary.json")
                    for p in folder.glob(pattern) if p.stat().st_size})
    return ", ".join(found) or None


def claim_eval_folder(cfg: Config) -> Path:
    """Lock the output folder (``runtime.run_folder``); refuse another evaluation's folder unless ``--resume`` (with the
    same sample settings as its config.json) or ``--overwrite``; write this evaluation's config.json."""
    out = claim(cfg.output_dir, eval_contents, resume=cfg.resume, overwrite=cfg.overwrite)
    path = out / "config.json"
    if cfg.resume and path.exists():
        if changed := changed_settings(json.loads(path.read_text()), cfg, MAY_CHANGE_ON_RESUME):
            raise UserError(f"--resume: the evaluation in {out} was made with other settings: "
                            f"{as_flags(changed, 'it')}. Use them, or start a new evaluation (another --output-dir, "
                            "or --overwrite)")
    path.write_text(json.dumps(asdict(cfg), indent=2))
    return out


def load_benchmarks(cfg: Config) -> dict[str, list]:
    """label -> problems for each benchmark; a ``UserError`` for an unknown name or a file without usable rows."""
    loaded = {}
    for benchmark in cfg.benchmark:
        with as_user_error():
            problems = load_problems(benchmark, cfg.split, cfg.data_path, cfg.limit, check_references=True,
                                     drop_unparseable=cfg.drop_unparseable_references)
        loaded[data_label(benchmark, cfg.data_path)] = problems
    return loaded


def main(cfg: Config) -> dict[str, dict]:
    # --- everything the user asked for is checked before the engine starts ---------------
    ks = check_settings(cfg)
    dist = Dist.start()
    check_processes(cfg, dist)
    benchmarks = load_benchmarks(cfg)
    model_path = resolve_model(cfg.model)
    claim_on_ranks(dist, lambda: claim_eval_folder(cfg))

    tokenizer = load_tokenizer(model_path)
    policy = load_policy(model_path).to(dist.device) if cfg.backend == "hf" else None
    engine = make_generator(cfg.backend, model_path, policy, tokenizer, seed=cfg.seed, dist=dist,
                            memory_fraction=cfg.vllm_memory_fraction, max_model_len=cfg.max_model_len,
                            tensor_parallel_size=cfg.vllm_tensor_parallel_size)
    generator = with_tools(engine, tokenizer, make_tool(cfg.tools, cfg.tool_timeout, cfg.tool_output_chars),
                           cfg.max_tool_calls)
    summaries = {}
    for benchmark, problems in benchmarks.items():
        out = Path(cfg.output_dir) / benchmark if len(benchmarks) > 1 else Path(cfg.output_dir)
        dist.print(f"{benchmark}: {len(problems)} problems x {cfg.n} samples, {cfg.template} template -> {out}"
                   + (f", on {dist.world} processes" if dist.world > 1 else ""))
        _, summary = evaluate(generator, tokenizer, problems, cfg.template, cfg.n, ks, cfg.temperature, cfg.top_p,
                              cfg.max_new_tokens, out, cfg.chunk_size, dist=dist)
        summary.update(benchmark=benchmark, model=cfg.model, template=cfg.template, temperature=cfg.temperature,
                       top_p=cfg.top_p, max_new_tokens=cfg.max_new_tokens, seed=cfg.seed, backend=cfg.backend,
                       config=asdict(cfg))
        if cfg.temperature == 0:
            summary["greedy_accuracy"] = summary["pass@1"]
        if dist.is_main:
            (out / "summary.json").write_text(json.dumps(summary, indent=2))
            (out / "summary.md").write_text(markdown_table(summary, ks))
            print(markdown_table(summary, ks))
        summaries[benchmark] = summary
    return summaries


if __name__ == "__main__":
    run(main, Config, __doc__)
