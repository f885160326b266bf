"""Format rewards that cannot be farmed, and the reward-hacking monitor (issue 22)."""

import torch

from reasoning_rl.hacking import HackingMonitor, hacking_metrics
from reasoning_rl.rollout import Rollouts, score_rollouts
from rewards import REWARDS
from data_prep import Problem


def test_a_farmed_boxed_format_scores_0_and_a_final_box_1():
    boxed = REWARDS["boxed_format"]
    assert boxed("Adding, 3 + 4 = 7, so the answer is \\boxed{7}.") == 1.0
    assert boxed("Final Answer: The final answer is $\\boxed{7}$. I hope it is correct.") == 1.0
    for farmed in ["\\boxed{2x} \\boxed{2x} \\boxed{2x} \\boxed{2x}",  # the loop the GSM8K run learnt
                   "\\boxed{7} and then a long stretch of more reasoning that never ends with a final answer",  # not at the end
                   "So the answer is \\boxed{}.",  # empty
                   "\\boxed{7} or maybe \\boxed{8}"]:  # two answers
        assert boxed(farmed) == 0.0, farmed


def test_a_format_reward_pays_nothing_for_a_truncated_completion():
    problem = Problem("p/0", "What is 3 + 4?", "7", "test")
    texts = ["So \\boxed{7}.", "So \\boxed{7}."]
    rollouts = Rollouts([problem], ["What is 3 + 4?"], [[1], [1]], [[5, 6], [5, 6]], texts, torch.tensor([False, True]), 2)
    score_rollouts(rollouts, {"boxed_format": 1.0}, max_new_tokens=2)
    assert rollouts.components["boxed_format"].tolist() == [1.0, 0.0]
    assert getattr(REWARDS["boxed_format"], "format_reward") and getattr(REWARDS["think_format"], "format_reward")
    assert not getattr(REWARDS["accuracy"], "format_reward", False)


def test_hacking_metrics_count_each_pattern():
    texts = ["Since 3 + 4 = 7 the sum is \\boxed{7}.",  # clean
             "\\boxed{2x} \\boxed{2x}",  # repeated, and no reasoning before the answer
             "First \\boxed{3}, or rather \\boxed{4}",  # two different answers
             "We start by writing \\boxed{5} and then"]  # cut off at the limit with a box
    metrics = hacking_metrics(texts, [False, False, False, True])
    assert metrics == {"hacking/repeated_boxes": 0.25, "hacking/multiple_final_answers": 0.25,
                       "hacking/truncated_with_box": 0.25, "hacking/answer_without_reasoning": 0.25}


def test_the_monitor_fires_when_a_format_reward_rises_while_accuracy_falls():
    monitor, fired = HackingMonitor(window=3), []
    boxed = [0.05, 0.1, 0.1, 0.5, 0.8, 0.95, 0.95, 0.97]  # boxed answers spread ...
    accuracy = [0.40, 0.42, 0.41, 0.35, 0.30, 0.28, 0.25, 0.25]  # ... while fewer are right
    for step, (b, a) in enumerate(zip(boxed, accuracy), start=1):
        if line := monitor.observe(step, {"reward/boxed_format": b, "reward/accuracy": a}):
            fired.append((step, line))
    assert len(fired) == 1 and fired[0][0] == 6 and "reward/boxed_format" in fired[0][1]  # once, at the first window


def test_the_monitor_stays_quiet_when_both_rise():
    monitor = HackingMonitor(window=3)
    for step in range(1, 13):
        assert monitor.observe(step, {"reward/boxed_format": min(1.0, 0.1 * step), "reward/accuracy": 0.03 * step}) is None
