"""Measure the verifier: does it accept every gold solution and reject mismatched references?

For each problem of GSM8K test and MATH test, the gold worked solution is scored with
``rewards.accuracy_reward`` against (a) its own reference answer, which should be accepted,
and (b) the reference answer of another problem whose answer string differs (a seeded
shuffle), which should be rejected.

    python scripts/verify_quality.py                     # all 1319 + 5000 problems
    python scripts/verify_quality.py --limit 200         # a quick sample
"""

from __future__ import annotations

import json
import random
import time
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

from data_prep import load_problems, read_jsonl
from data_prep.benchmarks import default_data_dir
from reasoning_rl.config import parse_config
from rewards import accuracy_reward
from rewards.verify import normalize


@dataclass
class Config:
    benchmark: tuple[str, ...] = ("gsm8k", "math")
    """Benchmarks whose gold solutions are checked (their rows need a worked solution)."""
    data_path: str | None = None
    """Data folder (default: ../shared/data)."""
    limit: int | None = None
    """Check only the first this-many problems of each benchmark."""
    seed: int = 0
    """Seed of the shuffle that pairs a solution with another problem's answer."""
    output: str | None = None
    """Also write the results (and every failure) as JSON here."""


def gold_solutions(benchmark: str, data_path, limit) -> list[tuple[str, str]]:
    """(worked solution, reference answer) pairs, in file order."""
    folder = Path(data_path) if data_path else default_data_dir()
    if folder is None:
        raise SystemExit("no local data folder: pass --data-path")
    path = folder / benchmark / "test.jsonl"
    field = {"gsm8k": "answer"}.get(benchmark, "solution")
    solutions = list(read_jsonl(path, lambda row, i: row[field]))
    problems = load_problems(benchmark, "test", path)
    if len(solutions) != len(problems):
        raise SystemExit(f"{path}: {len(solutions)} solutions but {len(problems)} problems were loaded")
    pairs = [(s, p.answer) for s, p in zip(solutions, problems)]
    return pairs[:limit] if limit else pairs


def shuffled_references(answers: list[str], seed: int) -> list[str]:
    """For each i, the answer of another problem whose normalized answer differs."""
    rng = random.Random(seed)
    order = list(range(len(answers)))
    rng.shuffle(order)
    out = []
    for i, answer in enumerate(answers):
        j = order[i]
        while normalize(answers[j]) == normalize(answer):
            j = rng.randrange(len(answers))
        out.append(answers[j])
    return out


def measure(benchmark: str, pairs: list[tuple[str, str]], seed: int) -> dict:
    wrong_refs = shuffled_references([a for _, a in pairs], seed)
    accepted, rejected, failures = 0, 0, []
    start = time.perf_counter()
    for (solution, answer), wrong in tqdm(list(zip(pairs, wrong_refs)), desc=benchmark, unit="problem"):
        if accuracy_reward(solution, answer) == 1.0:
            accepted += 1
        else:
            failures.append({"kind": "gold rejected", "reference": answer, "solution_end": solution[-200:]})
        if accuracy_reward(solution, wrong) == 0.0:
            rejected += 1
        else:
            failures.append({"kind": "shuffled accepted", "reference": wrong, "gold": answer})
    seconds = time.perf_counter() - start
    n = len(pairs)
    return {"benchmark": benchmark, "problems": n, "gold_accepted": accepted / n, "shuffled_rejected": rejected / n,
            "verifications_per_second": 2 * n / seconds, "seconds": seconds, "failures": failures}


def main(cfg: Config) -> list[dict]:
    results = [measure(b, gold_solutions(b, cfg.data_path, cfg.limit), cfg.seed) for b in cfg.benchmark]
    print("\n| benchmark | problems | gold accepted | shuffled rejected | verifications/s |\n|---|---|---|---|---|")
    for r in results:
        print(f"| {r['benchmark']} | {r['problems']} | {r['gold_accepted']:.2%} | {r['shuffled_rejected']:.2%} | {r['verifications_per_second']:.0f} |")
    for r in results:
        for failure in r["failures"][:10]:
            print(f"  {r['benchmark']}: {failure}")
    if cfg.output:
        Path(cfg.output).write_text(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main(parse_config(Config, description=__doc__))
