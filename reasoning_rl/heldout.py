"""Held-out evaluation during training: the one place where the trainers call the benchmark harness (``eval``)."""

from __future__ import annotations

from eval.harness import run_benchmark, summarize
from runtime.distributed import SINGLE, Dist


def held_out_accuracy(generator, tokenizer, problems, template: str, n: int, max_new_tokens: int,
                      dist: Dist = SINGLE) -> dict[str, float]:
    """Greedy accuracy and sampled pass@1 (temperature 1.0, ``n`` samples) on ``problems``.

    Each rank grades every ``world``-th problem, and the accuracy is over all ranks' records: the same
    problems, and the same number, as one process would grade."""

    def pass_at_1(samples: int, temperature: float) -> float:
        records, _ = run_benchmark(generator, tokenizer, problems, template, samples, temperature, 1.0, max_new_tokens,
                                   progress=False, dist=dist)
        return summarize(records, [1])["pass@1"]

    result = {"greedy": pass_at_1(1, 0.0)}
    if n > 0:
        result["pass@1"] = pass_at_1(n, 1.0)
    return result
