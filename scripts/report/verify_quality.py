"""Measure the verifier, and audit what it graded.

Three checks, each a flag:

- default: for each problem of GSM8K test and MATH test, the gold worked solution is graded
  against (a) its own reference answer, which should be accepted, and (b) the reference answer
  of another problem whose answer differs (a seeded shuffle), which should be rejected;
- ``--suite``: the robustness suite (``eval/verifier_suite.py``): every MATH-500 and
  OlympiadBench reference written in at least 6 equivalent forms a model might write (all should
  be accepted) and at least 3 wrong forms (all should be rejected); prints every failure;
- ``--audit DIR``: re-grades the completions of a training run (``DIR/completions.jsonl``) or of
  an evaluation (``DIR/samples.jsonl``) with this project's verifier and with raw math-verify
  (``verify(parse("$ref$"), parse(completion))``, its default extraction), and lists every
  disagreement by class, with the completion's end, in ``DIR/audit.md`` and ``DIR/audit.jsonl``.

    python scripts/report/verify_quality.py                      # GSM8K (1319) and MATH (5000) gold solutions
    python scripts/report/verify_quality.py --limit 200          # a quick sample
    python scripts/report/verify_quality.py --suite              # the robustness suite
    python scripts/report/verify_quality.py --audit runs/eval_math500
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
from rewards import Verdict, accuracy_verdicts, default_pool
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
    audit: str | None = None
    """Audit a run or evaluation folder (completions.jsonl or samples.jsonl) against raw math-verify instead."""
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


# --- the audit ----------------------------------------------------------------------------------

def read_graded(folder: Path) -> list[dict]:
    """(id, reference, completion, stored verdict) of every completion in a run or evaluation folder."""
    if (folder / "completions.jsonl").exists():  # a training run
        rows = read_jsonl(folder / "completions.jsonl", lambda row, i: row)
        return [{"id": r["id"], "answer": r["answer"], "completion": r["completion"], "stored": (r.get("verdict") or {}).get("correct")}
                for r in rows if r["answer"] is not None]
    if (folder / "samples.jsonl").exists():  # an evaluation
        rows = read_jsonl(folder / "samples.jsonl", lambda row, i: row)
        return [{"id": r["id"], "answer": r["answer"], "completion": c, "stored": bool(ok)}
                for r in rows for c, ok in zip(r["completions"], r["correct"])]
    raise SystemExit(f"{folder}: neither completions.jsonl (a training run) nor samples.jsonl (an evaluation) is there")


def disagreement_class(ours: Verdict, raw: Verdict) -> str:
    """A short label for why the two graders differ."""
    side = "project accepts, math-verify rejects" if ours.correct else "math-verify accepts, project rejects"
    if ours.method == "no_answer":
        return f"{side}: project found no final answer"
    if ours.method in ("timeout", "screened"):
        return f"{side}: project {ours.method}"
    if raw.answer is None:
        return f"{side}: math-verify extracted nothing"
    return f"{side}: project took the {ours.source} answer"


def audit(cfg: Config) -> dict:
    folder = Path(cfg.audit)
    graded = read_graded(folder)
    if not graded:
        raise SystemExit(f"{folder}: no graded completions to audit")
    completions, answers = [g["completion"] for g in graded], [g["answer"] for g in graded]
    start = time.perf_counter()
    ours = accuracy_verdicts(completions, answers)
    raw = default_pool().raw_math_verify(completions, answers)
    seconds = time.perf_counter() - start
    rows, classes = [], defaultdict(list)
    for g, o, r in zip(graded, ours, raw):
        if o.correct != r.correct:
            row = {"class": disagreement_class(o, r), "id": g["id"], "reference": g["answer"], "project": o.correct,
                   "project_extracted": o.answer, "project_method": o.method, "project_source": o.source,
                   "math_verify": r.correct, "math_verify_extracted": r.answer, "completion_end": g["completion"][-300:]}
            rows.append(row)
            classes[row["class"]].append(row)
    stale = sum(g["stored"] is not None and bool(g["stored"]) != o.correct for g, o in zip(graded, ours))
    result = {"folder": str(folder), "completions": len(graded), "project_accuracy": sum(o.correct for o in ours) / len(ours),
              "math_verify_accuracy": sum(r.correct for r in raw) / len(raw), "disagreements": len(rows),
              "classes": {k: len(v) for k, v in sorted(classes.items(), key=lambda kv: -len(kv[1]))},
              "stored_verdicts_changed": stale, "seconds": seconds}
    lines = [f"# Verifier audit of {folder}", "",
             f"{len(graded)} completions: project accuracy {result['project_accuracy']:.2%}, raw math-verify "
             f"{result['math_verify_accuracy']:.2%}, {len(rows)} disagreements.", "", "| class | count |", "|---|---|"]
    lines += [f"| {k} | {n} |" for k, n in result["classes"].items()]
    for name, members in sorted(classes.items(), key=lambda kv: -len(kv[1])):
        lines += ["", f"## {name} ({len(members)})", ""]
        for m in members:
            end = m["completion_end"][-160:].replace("\n", " ").replace("|", "\\|")
            lines.append(f"- `{m['id']}` reference `{m['reference']}`: project `{m['project_extracted']}` "
                         f"({m['project_method']}), math-verify `{m['math_verify_extracted']}`; ends: {end}")
    (folder / "audit.md").write_text("\n".join(lines) + "\n")
    (folder / "audit.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    print("\n".join(lines[:8 + len(result["classes"])]))
    if stale:
        print(f"({stale} stored verdicts differ from today's verifier: the folder was graded by an older version)")
    print(f"every disagreement: {folder / 'audit.md'}")
    return result


def main(cfg: Config):
    result = audit(cfg) if cfg.audit else run_suite(cfg) if cfg.suite else check_gold(cfg)
    if cfg.output:
        Path(cfg.output).write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    run(main, Config, __doc__)
