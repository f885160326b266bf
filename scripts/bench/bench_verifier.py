"""Benchmark the verifier pool: parallel speed-up, and adversarial completions that must not stall a step.

In one run, on the same completions:

1. 2,000 MATH-style gradings (default): MATH test worked solutions, each graded against its own
   reference and against another problem's reference, so half are right and half need sympy to
   be rejected. Timed with 1 worker and with ``--workers`` workers (each pool started and warmed
   before its timing); the ratio is the speed-up.
2. 64 adversarial completions (power towers, huge factorials, 2,000-deep nested fractions,
   100 kB strings) graded by ``--workers`` workers at the training timeout: the time and the rewards.

    python scripts/bench/bench_verifier.py                  # writes docs/results_verifier.json
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

from reasoning_rl.cli import run
from rewards import TRAIN_TIMEOUT, VerifierPool


@dataclass
class Config:
    completions: int = 2000
    """MATH-style gradings to time (half against the right reference, half against a wrong one)."""
    workers: int = 2
    """Workers of the parallel pool (compared with 1)."""
    data_path: str | None = None
    """Data folder (default: ../shared/data)."""
    output: str = "docs/results_verifier.json"
    """Where the measurements go."""


def adversarial_completions(n: int = 64) -> list[str]:
    kinds = [
        "\\boxed{" + "9^{" * 30 + "9" + "}" * 30 + "}",  # a power tower
        "\\boxed{9^{9^{9^{9^{9}}}}}",
        "\\boxed{(10^{10})!}",  # a huge factorial
        "\\boxed{" + "\\frac{1}{1+" * 2000 + "1" + "}" * 2000 + "}",  # 2,000-deep nested fractions
        "\\boxed{" + "1+" * 50_000 + "1}",  # 100 kB inside a box
        "$" + "x" * 100_000 + "$",  # 100 kB of LaTeX
        "7 " * 50_000,  # 100 kB of prose numbers
        "\\frac{" * 5000,  # unbalanced
    ]
    return [kinds[i % len(kinds)] for i in range(n)]


def timed(pool: VerifierPool, completions: list[str], references: list[str], timeout: float) -> tuple[float, list]:
    pool.grade(completions[: len(pool.workers)], references[: len(pool.workers)])  # start every worker first
    start = time.perf_counter()
    verdicts = pool.grade(completions, references, timeout)
    return time.perf_counter() - start, verdicts


def main(cfg: Config) -> dict:
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "report"))
    from verify_quality import gold_solutions, shuffled_references

    pairs = gold_solutions("math", cfg.data_path, cfg.completions // 2)
    solutions, answers = [s for s, _ in pairs], [a for _, a in pairs]
    completions = solutions + solutions
    references = answers + shuffled_references(answers, seed=0)

    serial_pool, parallel_pool = VerifierPool(1), VerifierPool(cfg.workers)
    serial, serial_verdicts = timed(serial_pool, completions, references, TRAIN_TIMEOUT)
    parallel, parallel_verdicts = timed(parallel_pool, completions, references, TRAIN_TIMEOUT)
    same = [v.correct for v in serial_verdicts] == [v.correct for v in parallel_verdicts]
    symbolic = sum(v.method == "symbolic" for v in serial_verdicts) / len(serial_verdicts)
    print(f"{len(completions)} MATH-style gradings ({symbolic:.0%} needed sympy): 1 worker {serial:.1f} s, "
          f"{cfg.workers} workers {parallel:.1f} s -> {serial / parallel:.2f}x (same verdicts: {same})")

    adversarial = adversarial_completions()
    seconds, verdicts = timed(parallel_pool, adversarial, ["5"] * len(adversarial), TRAIN_TIMEOUT)
    methods = sorted({v.method for v in verdicts})
    print(f"{len(adversarial)} adversarial completions with {cfg.workers} workers: {seconds:.2f} s, "
          f"rewards all 0: {not any(v.correct for v in verdicts)}, verdicts: {', '.join(methods)}")
    serial_pool.close(), parallel_pool.close()

    result = {"cores": os.cpu_count(), "gradings": len(completions), "fraction_symbolic": symbolic,
              "seconds_1_worker": serial, f"seconds_{cfg.workers}_workers": parallel, "speedup": serial / parallel,
              "same_verdicts": same, "adversarial_completions": len(adversarial), "adversarial_seconds": seconds,
              "adversarial_all_zero": not any(v.correct for v in verdicts), "adversarial_methods": methods,
              "timeout": TRAIN_TIMEOUT}
    Path(cfg.output).parent.mkdir(parents=True, exist_ok=True)
    Path(cfg.output).write_text(json.dumps(result, indent=2))
    print(f"written to {cfg.output}")
    return result


if __name__ == "__main__":
    run(main, Config, __doc__)
