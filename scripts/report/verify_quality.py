"""Measure the verifier, and audit what it graded.

Three checks, each a flag:

- default: for each problem of GSM8K test and MATH test, the gold worked solution is graded
  against (a) its own reference answer, which should be accepted, and (b) the reference answer
  of another problem whose answer differs (a seeded shuffle), which should be rejected;
- ``--suite``: the robustness suite (``eval/verifier_suite.py``): every MATH-500 and
  OlympiadBench reference written in at least 6 equivalent forms a model might write (all should
  be accepted) and at least 3 wrong forms (all should be rejected); prints every failure;
- ``--differential FILE_OR_DIR`` (``--audit DIR`` for a folder): re-grades a corpus file (JSONL rows
  with ``completion``, ``reference`` and optionally a hand ``label``), the completions of a training
  run (``DIR/completions.jsonl``) or of an evaluation (``DIR/samples.jsonl``) with this project's
  verifier and with raw math-verify (``verify(parse("$ref$"), parse(completion))``, its default
  extraction), groups every disagreement by the rule that explains it (``eval/differential.py``),
  lists the unexplained ones, and writes them with the completion's end to ``audit.md`` /
  ``audit.jsonl`` in the folder (``<file>.differential.md`` / ``.jsonl`` beside a file).

    python scripts/report/verify_quality.py                      # GSM8K (1319) and MATH (5000) gold solutions
    python scripts/report/verify_quality.py --limit 200          # a quick sample
    python scripts/report/verify_quality.py --suite              # the robustness suite
    python scripts/report/verify_quality.py --audit runs/eval_math500
    python scripts/report/verify_quality.py --differential tests/data/verifier_corpus.jsonl
"""

from __future__ import annotations

import json
import random
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

from data_prep import load_problems, read_jsonl
from data_prep.benchmarks import default_data_dir
from reasoning_rl.cli import run
from rewards import accuracy_verdicts, default_pool
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
    suite: bool = False
    """Run the robustness suite (equivalent and wrong forms of MATH-500 and OlympiadBench answers) instead."""
    differential: str | None = None
    """Run both verifiers (this project's and raw math-verify) on a corpus file (JSONL: completion, reference, label)
    or a run or evaluation folder (completions.jsonl or samples.jsonl); group the disagreements by the rule that
    explains them (eval/differential.py) and list the unexplained ones."""
    audit: str | None = None
    """The same as --differential, for a run or evaluation folder (writes audit.md and audit.jsonl into it)."""
    output: str | None = None
    """Also write the results (and every failure) as JSON here."""


# --- gold solutions ---------------------------------------------------------------------------

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
    solutions, answers = [s for s, _ in pairs], [a for _, a in pairs]
    wrong_refs = shuffled_references(answers, seed)
    start = time.perf_counter()
    gold = accuracy_verdicts(solutions, answers)
    shuffled = accuracy_verdicts(solutions, wrong_refs)
    seconds = time.perf_counter() - start
    failures = [{"kind": "gold rejected", "reference": a, "extracted": v.answer, "solution_end": s[-200:]}
                for s, a, v in zip(solutions, answers, gold) if not v.correct]
    failures += [{"kind": "shuffled accepted", "reference": w, "gold": a}
                 for a, w, v in zip(answers, wrong_refs, shuffled) if v.correct]
    n = len(pairs)
    return {"benchmark": benchmark, "problems": n, "gold_accepted": sum(v.correct for v in gold) / n,
            "shuffled_rejected": 1 - sum(v.correct for v in shuffled) / n,
            "verifications_per_second": 2 * n / seconds, "seconds": seconds, "failures": failures}


def check_gold(cfg: Config) -> list[dict]:
    results = [measure(b, gold_solutions(b, cfg.data_path, cfg.limit), cfg.seed) for b in cfg.benchmark]
    print("\n| benchmark | problems | gold accepted | shuffled rejected | verifications/s |\n|---|---|---|---|---|")
    for r in results:
        print(f"| {r['benchmark']} | {r['problems']} | {r['gold_accepted']:.2%} | {r['shuffled_rejected']:.2%} | {r['verifications_per_second']:.0f} |")
    for r in results:
        for failure in r["failures"][:10]:
            print(f"  {r['benchmark']}: {failure}")
    return results


# --- the robustness suite ---------------------------------------------------------------------

def run_suite(cfg: Config) -> dict:
    from eval.verifier_suite import build_suite

    cases = build_suite(cfg.data_path)
    start = time.perf_counter()
    verdicts = accuracy_verdicts([c.completion for c in cases], [c.reference for c in cases])
    seconds = time.perf_counter() - start
    equivalent = [(c, v) for c, v in zip(cases, verdicts) if c.equivalent]
    wrong = [(c, v) for c, v in zip(cases, verdicts) if not c.equivalent]
    failures = [{"should": "accept" if c.equivalent else "reject", "form": c.form, "source": c.source,
                 "reference": c.reference, "completion": c.completion, "extracted": v.answer, "method": v.method}
                for c, v in zip(cases, verdicts) if v.correct != c.equivalent]
    result = {"references": len({c.source for c in cases}), "equivalent_forms": len(equivalent), "wrong_forms": len(wrong),
              "accepted": sum(v.correct for _, v in equivalent) / len(equivalent),
              "rejected": 1 - sum(v.correct for _, v in wrong) / len(wrong),
              "seconds": seconds, "forms": dict(Counter(c.form for c in cases)), "failures": failures}
    print(f"{result['references']} references, {len(equivalent)} equivalent forms: {result['accepted']:.2%} accepted; "
          f"{len(wrong)} wrong forms: {result['rejected']:.2%} rejected ({seconds:.0f} s)")
    for f in failures:
        print(f"  should {f['should']} ({f['form']}, {f['source']}): reference {f['reference']!r}, "
              f"extracted {f['extracted']!r} [{f['method']}]")
    return result


# --- the differential harness (and the audit) ------------------------------------------------

def read_graded(source: Path) -> list[dict]:
    """(id, reference, completion, stored verdict, label) of every completion in a training run
    (``completions.jsonl``), an evaluation (``samples.jsonl``) or a corpus file (JSONL rows with ``completion``,
    ``reference`` or ``answer``, and optionally ``label``, true when the completion's final answer is right)."""
    if source.is_file():
        rows = read_jsonl(source, lambda row, i: row)
        return [{"id": r.get("id", f"{source.name}:{i + 1}"), "answer": r.get("reference", r.get("answer")),
                 "completion": r["completion"], "stored": None, "label": r.get("label"), "style": r.get("style")}
                for i, r in enumerate(rows)]
    if (source / "completions.jsonl").exists():  # a training run
        rows = read_jsonl(source / "completions.jsonl", lambda row, i: row)
        return [{"id": r["id"], "answer": r["answer"], "completion": r.get("graded", r["completion"]),  # tools: graded
                 "stored": (r.get("verdict") or {}).get("correct"), "label": None} for r in rows if r["answer"] is not None]
    if (source / "samples.jsonl").exists():  # an evaluation
        rows = read_jsonl(source / "samples.jsonl", lambda row, i: row)
        return [{"id": r["id"], "answer": r["answer"], "completion": c, "stored": bool(ok), "label": None}
                for r in rows for c, ok in zip(r.get("graded", r["completions"]), r["correct"])]
    raise SystemExit(f"{source}: not a corpus file, and neither completions.jsonl (a training run) nor samples.jsonl "
                     "(an evaluation) is there")


def differential(cfg: Config) -> dict:
    """Both verifiers on every (completion, reference); the disagreements grouped by the rule that explains them
    (``eval.differential.RULES``), the unexplained ones listed; against the labels where a corpus has them."""
    from eval.differential import explain

    source = Path(cfg.differential or cfg.audit)
    graded = [g for g in read_graded(source) if g["answer"] is not None]
    if not graded:
        raise SystemExit(f"{source}: no graded completions to compare")
    completions, answers = [g["completion"] for g in graded], [g["answer"] for g in graded]
    start = time.perf_counter()
    ours = accuracy_verdicts(completions, answers)
    raw = default_pool().raw_math_verify(completions, answers)
    seconds = time.perf_counter() - start
    rows, rules = [], defaultdict(list)
    for g, o, r in zip(graded, ours, raw):
        if o.correct != r.correct:
            side = "project accepts, math-verify rejects" if o.correct else "math-verify accepts, project rejects"
            rule = explain(g["completion"], g["answer"], o, r) or "unexplained"
            row = {"rule": rule, "side": side, "id": g["id"], "reference": g["answer"], "label": g["label"],
                   "project": o.correct, "project_extracted": o.answer, "project_method": o.method,
                   "project_source": o.source, "math_verify": r.correct, "math_verify_extracted": r.answer,
                   "completion_end": g["completion"][-300:]}
            rows.append(row)
            rules[(side, rule)].append(row)
    labelled = [(g["label"], o.correct, r.correct) for g, o, r in zip(graded, ours, raw) if g["label"] is not None]
    stale = sum(g["stored"] is not None and bool(g["stored"]) != o.correct for g, o in zip(graded, ours))
    unexplained = [r for r in rows if r["rule"] == "unexplained"]
    result = {"source": str(source), "completions": len(graded),
              "project_accuracy": sum(o.correct for o in ours) / len(ours),
              "math_verify_accuracy": sum(r.correct for r in raw) / len(raw), "disagreements": len(rows),
              "unexplained": len(unexplained),
              "rules": [{"side": side, "rule": rule, "count": len(members)}
                        for (side, rule), members in sorted(rules.items(), key=lambda kv: (kv[0][0], -len(kv[1])))],
              "stored_verdicts_changed": stale, "seconds": seconds}
    if labelled:
        result["labelled"] = len(labelled)
        result["project_agrees_with_labels"] = sum(label == o for label, o, _ in labelled) / len(labelled)
        result["math_verify_agrees_with_labels"] = sum(label == r for label, _, r in labelled) / len(labelled)
    lines = [f"# Differential: this project's verifier against raw math-verify on {source}", "",
             f"{len(graded)} completions: project accepts {result['project_accuracy']:.2%}, raw math-verify "
             f"{result['math_verify_accuracy']:.2%}; {len(rows)} disagreements, {len(unexplained)} unexplained."]
    if labelled:
        lines += ["", f"Against the {len(labelled)} labels: project {result['project_agrees_with_labels']:.2%}, "
                      f"raw math-verify {result['math_verify_agrees_with_labels']:.2%}."]
    lines += ["", "| side | rule | count |", "|---|---|---|"]
    lines += [f"| {r['side']} | {r['rule']} | {r['count']} |" for r in result["rules"]]
    for (side, rule), members in sorted(rules.items(), key=lambda kv: (kv[0][1] != "unexplained", -len(kv[1]))):
        lines += ["", f"## {rule}: {side} ({len(members)})", ""]
        for m in members[:50]:
            end = m["completion_end"][-160:].replace("\n", " ").replace("|", "\\|")
            label = "" if m["label"] is None else f" label {m['label']};"
            lines.append(f"- `{m['id']}` reference `{m['reference']}`:{label} project `{m['project_extracted']}` "
                         f"({m['project_method']}), math-verify `{m['math_verify_extracted']}`; ends: {end}")
    folder = source if source.is_dir() else source.parent
    stem = "audit" if source.is_dir() else f"{source.stem}.differential"
    (folder / f"{stem}.md").write_text("\n".join(lines) + "\n")
    (folder / f"{stem}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    print("\n".join(lines[: lines.index("| side | rule | count |") + 2 + len(result["rules"])]))
    if stale:
        print(f"({stale} stored verdicts differ from today's verifier: the folder was graded by an older version)")
    print(f"every disagreement: {folder / (stem + '.md')}")
    return result


def main(cfg: Config):
    result = differential(cfg) if cfg.differential or cfg.audit else run_suite(cfg) if cfg.suite else check_gold(cfg)
    if cfg.output:
        Path(cfg.output).write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    run(main, Config, __doc__)
