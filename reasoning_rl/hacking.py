"""A reward-hacking monitor in every run: the rates of what a policy writes when it games a format reward, and one
warning when a format reward rises while accuracy falls.

Per step (``hacking_metrics``, logged as ``hacking/*``, explained in docs/metrics.md):

- ``repeated_boxes``: completions with the same boxed answer twice or more, or with more than 3 boxes;
- ``multiple_final_answers``: completions whose boxes hold different answers (not one list);
- ``truncated_with_box``: completions cut off at the token limit that hold a box (a format reward then pays 0);
- ``answer_without_reasoning``: completions whose final answer comes after fewer than 20 characters of text.

``HackingMonitor`` compares the last ``window`` steps with the ``window`` before them: when a format reward's mean
(``reward/<name>``, for every reward registered with ``format_reward=True``) rose by ``rise`` or more while the
accuracy fell by ``fall`` or more, it warns once, naming the steps and the numbers.
"""

from __future__ import annotations

from collections import deque

from rewards import REWARDS
from rewards.extract import after_thinking, boxed_spans, extract_final, repair_escapes


def hacking_metrics(texts: list[str], truncated: list[bool]) -> dict[str, float]:
    """The batch's rates of the patterns of a gamed format reward (see the module docstring)."""
    if not texts:
        return {}
    counts = dict.fromkeys(["repeated_boxes", "multiple_final_answers", "truncated_with_box", "answer_without_reasoning"], 0)
    for text, cut in zip(texts, truncated):
        body = after_thinking(repair_escapes(text))
        boxes = [content.strip() for _, _, content in boxed_spans(body)]
        counts["repeated_boxes"] += len(boxes) > 3 or len(boxes) != len(set(boxes))
        counts["multiple_final_answers"] += len(set(boxes)) > 1
        counts["truncated_with_box"] += bool(cut and boxes)
        found = extract_final(body)
        if found is not None:
            at = body.rfind(found.answer)
            counts["answer_without_reasoning"] += 0 <= at < 20
    return {f"hacking/{name}": count / len(texts) for name, count in counts.items()}


class HackingMonitor:
    """Warns once when a format reward rises while accuracy falls (see the module docstring)."""

    def __init__(self, window: int = 3, rise: float = 0.2, fall: float = 0.05):
        self.window, self.rise, self.fall = window, rise, fall
        self.history: deque[tuple[int, dict[str, float]]] = deque(maxlen=2 * window)  # the two windows compared
        self.warned = False

    def observe(self, step: int, metrics: dict[str, float]) -> str | None:
        """Record a step's metrics; the warning line the first time the pattern shows, else None."""
        formats = [k for k in metrics if k.startswith("reward/") and getattr(REWARDS.get(k[7:]), "format_reward", False)]
        self.history.append((step, {k: metrics[k] for k in [*formats, "reward/accuracy"] if k in metrics}))
        w = self.window
        if self.warned or len(self.history) < 2 * w or "reward/accuracy" not in self.history[-1][1]:
            return None
        before, after = list(self.history)[:w], list(self.history)[w:]

        def mean(rows, key):
            return sum(m.get(key, 0.0) for _, m in rows) / len(rows)

        fell = mean(before, "reward/accuracy") - mean(after, "reward/accuracy")
        for key in formats:
            rose = mean(after, key) - mean(before, key)
            if rose >= self.rise and fell >= self.fall:
                self.warned = True
                return (f"warning: possible reward hacking: {key} rose {mean(before, key):.2f} -> {mean(after, key):.2f} "
                        f"while reward/accuracy fell {mean(before, 'reward/accuracy'):.2f} -> "
                        f"{mean(after, 'reward/accuracy'):.2f} (steps {before[0][0]}-{before[-1][0]} against "
                        f"{after[0][0]}-{after[-1][0]}); see hacking/* in metrics.jsonl and samples.jsonl")
        return None
