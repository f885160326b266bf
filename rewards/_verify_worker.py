"""Child process that runs math-verify, one JSON line in, one JSON line out.

It runs in its own process so that a parse or a sympy simplification that never ends can be
killed from outside (see ``rewards.verify``); math-verify's own signal-based timeouts work
here because this is the child's main thread.
"""

import json
import sys
import warnings

from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse, verify

CONFIG = [LatexExtractionConfig(boxed_match_priority=0), ExprExtractionConfig()]


def equivalent(pred: str, gold: str, seconds: int) -> bool:
    gold_parsed = parse(f"\\boxed{{{gold}}}", extraction_config=CONFIG, parsing_timeout=seconds)
    pred_parsed = parse(f"\\boxed{{{pred}}}", extraction_config=CONFIG, parsing_timeout=seconds)
    if not gold_parsed or not pred_parsed:
        return False
    return bool(verify(gold_parsed, pred_parsed, timeout_seconds=seconds))


def main() -> None:
    warnings.filterwarnings("ignore")
    seconds = int(sys.argv[1])
    print("ready", flush=True)
    for line in sys.stdin:
        pred, gold = json.loads(line)
        try:
            result = equivalent(pred, gold, seconds)
        except BaseException:  # a timeout or a parser crash means "not shown equivalent"
            result = False
        print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
