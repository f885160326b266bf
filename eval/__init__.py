"""Benchmark evaluation: pass@k, maj@k and the generate-and-grade harness."""

from eval.harness import evaluate, grade_problem, run_benchmark, summarize
from eval.metrics import maj_at_k, majority_answer, mean_ci95, pass_at_k

__all__ = ["evaluate", "grade_problem", "maj_at_k", "majority_answer", "mean_ci95", "pass_at_k", "run_benchmark", "summarize"]
