"""The ``tools/*`` metrics of a batch of completions (docs/metrics.md), for training and evaluation alike."""

from __future__ import annotations


def tool_metrics(statuses: list[list[str]], correct: list[float] | None,
                 seconds: float | None = None) -> dict[str, float]:
    """``statuses``: per completion, the status of each of its calls (ok, error, timeout, killed); ``correct``: each
    completion's accuracy, or None; ``seconds``: the calls' seconds summed, when known."""
    calls = [s for row in statuses for s in row]
    used = [bool(row) for row in statuses]
    n = max(len(statuses), 1)
    out = {
        "tools/calls_per_completion": len(calls) / n,
        "tools/used_fraction": sum(used) / n,
        "tools/error_rate": sum(s != "ok" for s in calls) / max(len(calls), 1),
        "tools/timeout_rate": sum(s == "timeout" for s in calls) / max(len(calls), 1),
    }
    if seconds is not None:
        out["tools/seconds"] = seconds
    if correct is not None:
        for name, want in (("with_call", True), ("without_call", False)):
            rows = [c for c, u in zip(correct, used) if u == want]
            if rows:
                out[f"tools/accuracy_{name}"] = sum(rows) / len(rows)
    return out
