"""Generate, grade and summarise: the benchmark loop shared by scripts/evaluate.py and the trainers.

Completions are graded with the same verifier the trainer uses (``rewards.accuracy_verdicts``,
a pool of worker processes). Results are appended to ``samples.jsonl`` chunk by chunk, so an
interrupted run started again with the same output folder skips the problems already done;
records written by an older verifier (no ``verdicts``) are graded again.
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from pathlib import Path

from tqdm.auto import tqdm

from data_prep import Problem, render_prompt
from eval.metrics import maj_at_k, mean_ci95, pass_at_k
from rewards import EVAL_TIMEOUT, Verdict, accuracy_verdicts, audit_metrics, is_equivalent
from runtime.distributed import SINGLE, Dist
from runtime.errors import UserError
from tools.metrics import tool_metrics


def grade_problem(problem: Problem, prompt: str, samples, verdicts: list[Verdict]) -> dict:
    """One ``samples.jsonl`` record: completions, extracted answers, correctness, verdicts, lengths."""
    return {
        "id": problem.id,
        "source": problem.source,
        "meta": problem.meta,
        "prompt": prompt,
        "answer": problem.answer,
        "completions": [s.text for s in samples],
        "extracted": [v.answer for v in verdicts],
        "correct": [float(v.correct) for v in verdicts],
        "verdicts": [v.to_dict() for v in verdicts],
        "num_tokens": [len(s.token_ids) for s in samples],
        "truncated": [s.truncated for s in samples],
        **tool_fields(samples),
    }


def graded_text(sample) -> str:
    """What is graded: with tools, the text after the last tool output (``Completion.graded_text``); else the text."""
    return getattr(sample, "graded_text", sample.text)


def tool_fields(samples) -> dict:
    """With tools (``reasoning_rl/tool_use.py``): the graded texts, and each completion's calls' statuses."""
    if all(getattr(s, "from_tool", None) is None for s in samples):
        return {}
    return {"graded": [graded_text(s) for s in samples], "tool_calls": [[c.status for c in s.tool_calls] for s in samples]}


def tool_summary(records: list[dict]) -> dict[str, float]:
    """``tools/*`` over an evaluation with tools (``tools.metrics.tool_metrics``); {} without tools."""
    rows = [(calls, correct) for r in records if "tool_calls" in r for calls, correct in zip(r["tool_calls"], r["correct"])]
    return tool_metrics([calls for calls, _ in rows], [correct for _, correct in rows]) if rows else {}


class _Stored:
    """A completion read back from samples.jsonl, shaped like a generator's sample."""

    def __init__(self, text: str, num_tokens: int, truncated: bool, graded: str | None = None):
        self.text, self.token_ids, self.truncated = text, range(num_tokens), truncated
        self.graded_text = text if graded is None else graded


def grade_chunk(problems: list[Problem], prompts: list[str], outputs, timeout: float) -> list[dict]:
    """Grade every completion of a chunk in one parallel call to the verifier pool."""
    texts = [graded_text(s) for samples in outputs for s in samples]
    answers = [p.answer for p, samples in zip(problems, outputs) for _ in samples]
    verdicts = iter(accuracy_verdicts(texts, answers, timeout))
    return [grade_problem(p, prompt, samples, [next(verdicts) for _ in samples])
            for p, prompt, samples in zip(problems, prompts, outputs)]


def read_records(path: Path, n: int, into: dict[str, dict]) -> None:
    """Add the complete records (``n`` completions) of a samples file to ``into`` by problem id."""
    if not path.exists():
        return
    for line in path.read_text().splitlines():
        if line.strip():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:  # the last line of a killed run may be cut short
                continue
            if len(record.get("completions", [])) == n:
                into[record["id"]] = record


def rank_files(samples_path: Path) -> list[Path]:
    """The per-rank files (``samples.rank<r>.jsonl``) that ranks write beside ``samples.jsonl`` while they run."""
    return sorted(samples_path.parent.glob(f"{samples_path.stem}.rank*.jsonl"))


def merge_rank_files(samples_path: Path, n: int) -> None:
    """Append the ranks' records that ``samples.jsonl`` lacks to it, then remove the rank files."""
    have: dict[str, dict] = {}
    read_records(samples_path, n, have)
    for path in rank_files(samples_path):
        found: dict[str, dict] = {}
        read_records(path, n, found)
        with open(samples_path, "a") as f:
            f.write("".join(json.dumps(r) + "\n" for key, r in found.items() if key not in have))
        have.update(found)
        path.unlink()


def run_benchmark(generator, tokenizer, problems: list[Problem], template: str, n: int, temperature: float, top_p: float,
                  max_new_tokens: int, samples_path: Path | None = None, chunk_size: int = 128, progress: bool = True,
                  verify_timeout: float = EVAL_TIMEOUT, dist: Dist = SINGLE) -> tuple[list[dict], int]:
    """Generate ``n`` samples per problem and grade them; resumes from ``samples_path`` if it exists.

    With several ranks (``dist``), each generates every ``world``-th problem not yet done and appends its
    records to its own ``samples.rank<r>.jsonl``; at the end the ranks exchange their records and rank 0
    moves them into ``samples.jsonl``. A killed run leaves the rank files, and a run started again (on any
    number of ranks) counts their records as done.

    Returns the records in problem order (on every rank) and the number of tokens this rank generated.
    """
    done: dict[str, dict] = {}
    if samples_path is not None:
        for path in [samples_path, *rank_files(samples_path)]:
            read_records(path, n, done)
    dist.barrier()  # every rank has read what was done before any rank writes: they split the same to-do list
    by_id = {p.id: p for p in problems}
    stale = [r for r in done.values() if "verdicts" not in r and r["id"] in by_id]  # an older verifier's: grade again
    if stale:
        samples = [[_Stored(*s) for s in zip(r["completions"], r["num_tokens"], r["truncated"],
                                             r.get("graded", [None] * len(r["completions"])))] for r in stale]
        for record, regraded in zip(stale, grade_chunk([by_id[r["id"]] for r in stale], [r["prompt"] for r in stale],
                                                       samples, verify_timeout)):
            record.update(regraded)
    todo = [p for p in problems if p.id not in done]
    mine = todo[dist.rank :: dist.world]
    own_path = samples_path if samples_path is None or dist.world == 1 else samples_path.with_name(f"{samples_path.stem}.rank{dist.rank}.jsonl")
    bar = tqdm(total=len(problems), initial=len(problems) - len(todo), desc="evaluating", unit="problem",
               disable=not progress or not dist.is_main)
    new_tokens, new = 0, []
    for start in range(0, len(mine), chunk_size):
        chunk = mine[start : start + chunk_size]
        prompts = [render_prompt(p.problem, template, tokenizer) for p in chunk]
        prompt_ids = [tokenizer(text, add_special_tokens=False).input_ids for text in prompts]
        outputs = generator.generate(prompt_ids, n, temperature, top_p, max_new_tokens)
        records = grade_chunk(chunk, prompts, outputs, verify_timeout)
        if own_path is not None:
            with open(own_path, "a") as f:
                f.write("".join(json.dumps(r) + "\n" for r in records))
        new += records
        new_tokens += sum(sum(r["num_tokens"]) for r in records)
        bar.update(min(len(chunk) * dist.world, bar.total - bar.n))  # the other ranks' chunks: about as many
    bar.n = bar.total
    bar.close()
    for records in dist.gather(new):
        done.update((r["id"], r) for r in records)
    if samples_path is not None and dist.is_main:
        merge_rank_files(samples_path, n)
    dist.barrier()
    return [done[p.id] for p in problems], new_tokens


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
    verdicts = [Verdict(**v) for r in records for v in r.get("verdicts", [])]
    if verdicts:
        summary.update(audit_metrics(verdicts))
    summary.update(tool_summary(records))
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
             output_dir: Path | None = None, chunk_size: int = 128, progress: bool = True,
             dist: Dist = SINGLE) -> tuple[list[dict], dict]:
    """Run a benchmark and return ``(records, summary)``; writes samples.jsonl if ``output_dir``. With several
    ranks each generates its share, and every rank returns the whole benchmark's records and summary."""
    start = time.perf_counter()
    samples_path = None
    if output_dir is not None:
        Path(output_dir).mkdir(parents=True, exist_ok=True)
        samples_path = Path(output_dir) / "samples.jsonl"
    records, new_tokens = run_benchmark(generator, tokenizer, problems, template, n, temperature, top_p, max_new_tokens,
                                        samples_path, chunk_size, progress, dist=dist)
    summary = summarize(records, ks)
    summary["wall_seconds"] = time.perf_counter() - start
    summary["tokens_per_second"] = sum(dist.gather(new_tokens)) / summary["wall_seconds"]  # by this run, all ranks (not resumed)
    summary["processes"] = dist.world
    summary["temperature"], summary["top_p"] = temperature, top_p  # what the samples were drawn from
    return records, summary


def load_summaries(folder: Path) -> dict[str, dict]:
    """benchmark -> summary for one evaluate.py output folder."""
    paths = [folder / "summary.json"] if (folder / "summary.json").exists() else sorted(folder.glob("*/summary.json"))
    if not paths:
        raise UserError(f"{folder}: no summary.json (is it an output folder of scripts/evaluate.py?)")
    summaries = [dict(json.loads(p.read_text()), folder=p.parent) for p in paths]
    return {s["benchmark"]: s for s in summaries}


def load_samples(summary: dict) -> dict[str, dict]:
    """problem id -> record of the run's samples.jsonl (beside the summary, as ``load_summaries`` gives it)."""
    path = summary["folder"] / "samples.jsonl"
    if not path.exists():
        raise UserError(f"{path}: missing; comparing runs problem by problem needs each run's samples.jsonl")
    records: dict[str, dict] = {}
    read_records(path, summary["n_samples"], records)
    return records


def per_problem_pass1(records: dict[str, dict]) -> dict[str, float]:
    """problem id -> pass@1 (the fraction of its samples graded right)."""
    return {pid: sum(r["correct"]) / len(r["correct"]) for pid, r in records.items()}
