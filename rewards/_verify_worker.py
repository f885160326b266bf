"""Child process of ``rewards.pool``: one JSON task a line in, one JSON verdict a line out.

It runs in its own process so that a parse or a sympy simplification that never ends can be
killed from outside; math-verify's own signal-based timeouts work here because this is the
child's main thread. Tasks: ``["grade", completion, reference, timeout]`` (extract, then
compare), ``["compare", answer, reference, timeout]`` (two answer strings) and
``["reference", reference, "", timeout]`` (can the reference be parsed?) and
``["raw", completion, reference, timeout]`` (math-verify alone with its default extraction,
the comparison that ``scripts/verify_quality.py --audit`` makes).
"""

import json
import logging
import math
import signal
import sys
import warnings

from rewards.verify import Verdict, compare, grade, reference_readable


def raw_math_verify(completion: str, reference: str, timeout: float) -> Verdict:
    """math-verify as its README uses it: ``verify(parse("$ref$"), parse(completion))``."""
    from math_verify import parse, verify

    seconds = max(1, math.ceil(timeout))
    gold = parse(f"${reference}$", parsing_timeout=seconds)
    pred = parse(completion, parsing_timeout=seconds)
    answer = str(pred[-1]) if pred else None  # the string it extracted (its fallback)
    return Verdict(bool(gold and pred and verify(gold, pred, timeout_seconds=seconds)), "math_verify", answer)


def run(task: list) -> Verdict:
    kind, text, reference, timeout = task
    if kind == "grade":
        return grade(text, reference, timeout)  # never raises: its verdict says what went wrong
    try:
        if kind == "reference":
            return Verdict(reference_readable(text, timeout), "reference")
        if kind == "raw":
            return raw_math_verify(text, reference, timeout)
        return Verdict(*compare(text, reference, timeout), answer=text)
    except BaseException:  # a timeout or a parser crash means "not shown equivalent"
        return Verdict(False, "error", answer=text if kind == "compare" else None)


def main() -> None:
    # Ctrl-C in a terminal reaches the whole process group; the trainer finishes its step (and scores it) before it
    # stops, so a worker must not die of it. The pool ends its workers itself.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    warnings.filterwarnings("ignore")
    logging.disable(logging.WARNING)  # math-verify logs every parse timeout
    import math_verify  # noqa: F401  (imported before "ready", so the first task is not slowed by it)

    print("ready", flush=True)
    for line in sys.stdin:
        print(json.dumps(run(json.loads(line)).to_dict()), flush=True)


if __name__ == "__main__":
    main()
