"""scripts/evaluate.py on a tiny random model with the transformers back end."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

import evaluate as evaluate_script
from conftest import ROOT
from reasoning_rl.config import parse_config
from runtime.errors import UserError


def test_evaluate_writes_summary_and_samples(tiny_model, tmp_path, shared_data):
    cfg = parse_config(evaluate_script.Config, [
        "--model", str(tiny_model), "--benchmark", "gsm8k", "--limit", "8", "--n", "4", "--k", "1,4",
        "--max-new-tokens", "8", "--backend", "hf", "--output-dir", str(tmp_path)])  # n > 1: temperature 1.0
    evaluate_script.main(cfg)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert {"pass@1", "pass@4", "maj@4", "n_problems", "n_samples", "model", "template", "wall_seconds",
            "tokens_per_second"} <= set(summary)
    assert summary["n_problems"] == 8 and summary["n_samples"] == 4 and summary["temperature"] == 1.0
    assert 0.0 <= summary["pass@1"] <= summary["pass@4"] <= 1.0
    lines = (tmp_path / "samples.jsonl").read_text().splitlines()
    assert len(lines) == 8
    record = json.loads(lines[0])
    assert len(record["completions"]) == len(record["correct"]) == len(record["extracted"]) == 4
    assert "| gsm8k | 8 | 4 |" in (tmp_path / "summary.md").read_text()


def test_k_above_n_is_a_clear_error(tiny_model, tmp_path):
    cfg = parse_config(evaluate_script.Config, ["--model", str(tiny_model), "--n", "2", "--k", "1,4",
                                                                "--output-dir", str(tmp_path)])
    with pytest.raises(UserError, match="at most --n 2"):
        evaluate_script.main(cfg)


def test_killed_evaluation_resumes_without_regenerating(tiny_model, tmp_path, shared_data):
    command = [sys.executable, str(ROOT / "scripts" / "evaluate.py"), "--model", str(tiny_model), "--benchmark", "gsm8k",
               "--limit", "12", "--n", "2", "--k", "1,2", "--temperature", "1.0", "--max-new-tokens", "48",
               "--backend", "hf", "--chunk-size", "2", "--output-dir", str(tmp_path)]
    samples = tmp_path / "samples.jsonl"
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 300
    while time.time() < deadline and (not samples.exists() or len(samples.read_text().splitlines()) < 4):
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    first = samples.read_text().splitlines()
    assert 4 <= len(first) < 12, f"not killed half-way: {len(first)} problems done"

    refused = subprocess.run(command, capture_output=True, text=True, timeout=300)  # a new evaluation: refused
    assert refused.returncode == 2 and "--resume" in refused.stderr
    subprocess.run([*command, "--resume"], check=True, capture_output=True, timeout=300)
    lines = samples.read_text().splitlines()
    assert lines[: len(first)] == first  # finished problems were kept, not regenerated
    ids = [json.loads(line)["id"] for line in lines]
    assert len(ids) == len(set(ids)) == 12
    assert json.loads((tmp_path / "summary.json").read_text())["n_problems"] == 12


def test_compare_evals_table_and_plot(tmp_path):
    import compare_evals

    right = {"base": [[1, 0, 0, 0]] + [[0] * 4] * 7, "grpo": [[1, 1, 1, 1], [1, 1, 0, 0]] + [[0] * 4] * 5}  # grpo: 7 problems
    for name, p1, p4 in (("base", 0.1, 0.3), ("grpo", 0.4, 0.6)):
        folder = tmp_path / name
        folder.mkdir()
        summary = {"benchmark": "gsm8k", "n_problems": 8, "n_samples": 4, "pass@1": p1, "pass@4": p4, "mean_completion_tokens": 50,
                   "temperature": 1.0}
        (folder / "summary.json").write_text(json.dumps(summary))
        (folder / "samples.jsonl").write_text("".join(json.dumps({"id": f"q{i}", "correct": c, "completions": ["..."] * 4}) + "\n" for i, c in enumerate(right[name])))
    cfg = parse_config(compare_evals.Config, [str(tmp_path / "base"), str(tmp_path / "grpo"), "--output-dir", str(tmp_path / "cmp")])
    table = compare_evals.main(cfg)
    assert "| grpo | gsm8k | 8 | 4 | 1 | 40.0% | 60.0% | 50 |" in table  # the temperature the samples were drawn at
    # paired on the 7 problems both graded: per-problem pass@1 differences 0.75, 0.5 and five zeros
    paired = json.loads((tmp_path / "cmp" / "paired.json").read_text())
    assert len(paired) == 1 and paired[0]["problems"] == 7 and paired[0]["difference"] == pytest.approx(1.25 / 7)
    assert "| grpo | gsm8k | 7 | +17.9% (" in table
    assert (tmp_path / "cmp" / "pass_at_k.png").stat().st_size > 0
