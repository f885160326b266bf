"""Generate, grade and summarise: the benchmark loop shared by scripts/evaluate.py and the trainers.

Completions are graded with the same ``rewards.accuracy_reward`` the trainer uses. Results
are appended to ``samples.jsonl`` chunk by chunk, so an interrupted run started again with
the same output folder skips the problems already done.
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from pathlib import Path

from tqdm.auto import tqdm

from data_prep import Problem, render_prompt
from eval.metrics import maj_at_k, mean_ci95, pass_at_k
from rewards import accuracy_reward, extract_answer, is_equivalent


def grade_problem(problem: Problem, prompt: str, samples) -> dict:
    """One ``samples.jsonl`` record: completions, extracted answers, correctness, lengths."""
    completions = [s.text for s in samples]
    return {
        "id": problem.id,
        "source": problem.source,
        "meta": problem.meta,
        "prompt": prompt,
        "answer": problem.answer,
        "completions": completions,
        "extracted": [extract_answer(c) for c in completions],
        "correct": [accuracy_reward(c, problem.answer) for c in completions],
        "num_tokens": [len(s.token_ids) for s in samples],
        "truncated": [s.truncated for s in samples],
    }


def run_benchmark(generator, tokenizer, problems: list[Problem], template: str, n: int, temperature: float, top_p: float,
                  max_new_tokens: int, samples_path: Path | None = None, chunk_size: int = 128, progress: bool = True) -> list[dict]:
    """Generate ``n`` samples per problem and grade them; resumes from ``samples_path`` if it exists."""
    done: dict[str, dict] = {}
    if samples_path is not None and samples_path.exists():
        for line in samples_path.read_text().splitlines():
            if line.strip():
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:  # the last line of a killed run may be cut short
                    continue
                if len(record.get("completions", [])) == n:
                    done[record["id"]] = record
    todo = [p for p in problems if p.id not in done]
    bar = tqdm(total=len(problems), initial=len(problems) - len(todo), desc="evaluating", unit="problem", disable=not progress)
    for start in range(0, len(todo), chunk_size):
        chunk = todo[start : start + chunk_size]
        prompts = [render_prompt(p.problem, template, tokenizer) for p in chunk]
        prompt_ids = [tokenizer(text, add_special_tokens=False).input_ids for text in prompts]
        outputs = generator.generate(prompt_ids, n, temperature, top_p, max_new_tokens)
        records = [grade_problem(p, text, samples) for p, text, samples in zip(chunk, prompts, outputs)]
        if samples_path is not None:
            with open(samples_path, "a") as f:
                f.write("".join(json.dumps(r) + "\n" for r in records))
        done.update((r["id"], r) for r in records)
        bar.update(len(chunk))
    bar.close()
    return [done[p.id] for p in problems]


def summarize(records: list[dict], ks: list[int]) -> dict:
    """pass@k, maj@k, pass@1 with a 95 % CI, lengths and per-subject/level breakdowns."""
    if not records:
        raise ValueError("no records to summarise")
    n = len(records[0]["correct"])
    per_problem = [pass_at_k(n, int(sum(r["correct"])), 1) for r in records]
    pass1, low, high = mean_ci95(per_problem)
    summary = {"n_problems": len(records), "n_samples": n, "pass@1_ci95": [low, high]}
    for k in ks:
        summary[f"pass@{k}"] = sum(pass_at_k(n, int(sum(r["correct"])), k) for r in records) / len(records)
        summary[f"maj@{k}"] = sum(maj_at_k(r["extracted"], r["answer"], k, is_equivalent) for r in records) / len(records)
    summary["pass@1"] = pass1
    tokens = [t for r in records for t in r["num_tokens"]]
    summary["mean_completion_tokens"] = sum(tokens) / len(tokens)
    summary["fraction_truncated"] = sum(t for r in records for t in r["truncated"]) / len(tokens)
    for key in ("subject", "level"):
        groups = defaultdict(list)
        for r, p in zip(records, per_problem):
            if (r.get("meta") or {}).get(key) is not None:
                groups[str(r["meta"][key])].append(p)
        if groups:
            summary[f"pass@1_by_{key}"] = {g: sum(v) / len(v) for g, v in sorted(groups.items())}
    return summary


def evaluate(generator, tokenizer, problems, template, n, ks, temperature, top_p, max_new_tokens,
             output_dir: Path | None = None, chunk_size: int = 128, progress: bool = True) -> tuple[list[dict], dict]:
    """Run a benchmark and return ``(records, summary)``; writes samples.jsonl if ``output_dir``."""
    start = time.perf_counter()
    samples_path = None
    if output_dir is not None:
        Path(output_dir).mkdir(parents=True, exist_ok=True)
        samples_path = Path(output_dir) / "samples.jsonl"
    records = run_benchmark(generator, tokenizer, problems, template, n, temperature, top_p, max_new_tokens,
                            samples_path, chunk_size, progress)
    summary = summarize(records, ks)
    summary["wall_seconds"] = time.perf_counter() - start
    return records, summary
