"""Data sets as prompts with reference answers: benchmarks, synthetic arithmetic, templates."""

from data_prep.benchmarks import BENCHMARKS, load_problems
from data_prep.problems import MalformedRowError, Problem, read_jsonl
from data_prep.synthetic import LEVELS, make_arithmetic, make_mixture
from data_prep.templates import TEMPLATES, render_prompt

__all__ = ["BENCHMARKS", "LEVELS", "TEMPLATES", "MalformedRowError", "Problem", "load_problems", "make_arithmetic",
           "make_mixture", "read_jsonl", "render_prompt"]
