"""The whole GRPO loop on a tiny random model with the transformers back end (no vLLM)."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file

from conftest import ROOT
from reasoning_rl.config import parse_config

TINY_RUN = ["--task", "arith:add_1d", "--backend", "hf", "--prompts-per-step", "2", "--group-size", "4",
            "--max-new-tokens", "8", "--eval-problems", "4", "--eval-samples", "2", "--eval-every", "0",
            "--lr", "1e-2", "--warmup-steps", "0", "--no-tensorboard"]


def read_steps(path):
    return [json.loads(line)["step"] for line in path.read_text().splitlines() if line.strip()]


def test_two_grpo_steps_change_the_parameters(tiny_model, tmp_path, monkeypatch):
    import train_grpo
    from rewards import REWARDS

    # A random model is never right, so every group's accuracy is 0 and there is no gradient. A reward
    # added the way a user adds one (a function in REWARDS) that varies with the text gives one.
    monkeypatch.setitem(REWARDS, "distinct_chars", lambda completion, answer: len(set(completion)) / 20)
    cfg = parse_config(train_grpo.Config, ["--model", str(tiny_model), "--steps", "2", "--output-dir", str(tmp_path),
                                                      *TINY_RUN, "--rewards", "accuracy=1.0,distinct_chars=1.0"])
    report = train_grpo.main(cfg)
    assert read_steps(tmp_path / "metrics.jsonl") == [1, 2]
    before = load_file(tiny_model / "model.safetensors")
    after = load_file(tmp_path / "checkpoints" / "step_000002" / "policy" / "model.safetensors")
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert changed, "no parameter changed after two GRPO steps"
    metrics = json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[-1])
    assert metrics["train/grad_norm"] > 0 and metrics["reward/distinct_chars_std"] > 0
    for key in ("reward/mean", "reward/accuracy", "train/frac_reward_zero_std", "train/kl", "train/clip_fraction",
                "train/entropy", "completions/mean_length", "completions/truncated", "time/generate", "time/reward", "time/train",
                "time/sync", "heldout/greedy", "heldout/pass@1"):
        assert key in metrics, key
    assert (tmp_path / "training.png").stat().st_size > 0
    assert set(report["before"]) == {"arith:add_1d"}
    # the verifier audit: per-step metrics, every completion with its verdict, and the re-grading script
    for key in ("verifier/no_answer", "verifier/symbolic", "verifier/timeout", "verifier/fallback_last_number",
                "verifier/seconds_mean"):
        assert 0 <= metrics[key] <= (1 if key != "verifier/seconds_mean" else 60), key
    logged = [json.loads(line) for line in (tmp_path / "completions.jsonl").read_text().splitlines()]
    assert [r["step"] for r in logged] == [1] * 8 + [2] * 8 and all(r["verdict"]["method"] for r in logged)
    import verify_quality

    audit = verify_quality.main(parse_config(verify_quality.Config, ["--audit", str(tmp_path)]))
    assert audit["completions"] == 16 and (tmp_path / "audit.md").exists()


def test_dapo_and_dr_grpo_options_train_and_refill(tiny_model, tmp_path, monkeypatch):
    """DAPO's dynamic sampling drops the groups whose rewards are all equal and samples more prompts; the kept groups
    then reach an update with clip-higher, token-mean, mu = 2, a KL term, Dr. GRPO's advantages and LoRA."""
    import train_grpo
    from rewards import REWARDS

    # varies on random text for odd answers, 0 for every completion of an even one: those groups carry no gradient
    monkeypatch.setitem(REWARDS, "odd_distinct", lambda completion, answer: len(set(completion)) / 20 if int(answer) % 2 else 0.0)
    cfg = parse_config(train_grpo.Config, [
        "--model", str(tiny_model), "--steps", "3", "--output-dir", str(tmp_path), *TINY_RUN, "--rewards", "odd_distinct=1.0",
        "--dynamic-sampling", "--max-refills", "3", "--clip-high", "0.28", "--loss-aggregation", "token_mean",
        "--overlong-cache", "4", "--mu", "2", "--beta", "0.04", "--no-normalize-std", "--lora-rank", "4"])
    train_grpo.main(cfg)
    steps = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert "reward/overlong" in steps[0]
    assert all(m["train/groups_trained"] > 0 and m["train/grad_norm"] > 0 for m in steps)
    refilled = [m for m in steps if m["train/refills"] > 0]
    assert refilled, "no step needed a refill: the test no longer exercises dynamic sampling"
    for m in refilled:  # more completions were generated than one engine call makes, and the batch was filled again
        assert m["completions/sampled"] == (1 + m["train/refills"]) * 2 * 4
        assert m["train/groups_trained"] == 2 or m["train/refills"] == 3


def test_killed_run_resumes_without_repeating_or_skipping_steps(tiny_model, tmp_path):
    command = [sys.executable, str(ROOT / "scripts" / "train_grpo.py"), "--model", str(tiny_model), "--steps", "5",
               "--save-every", "1", "--output-dir", str(tmp_path), *TINY_RUN]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    metrics = tmp_path / "metrics.jsonl"
    deadline = time.time() + 300
    while time.time() < deadline and (not metrics.exists() or len(read_steps(metrics)) < 2):
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done = read_steps(metrics)
    assert 2 <= len(done) < 5, f"the run was not killed half-way: {done}"

    subprocess.run(command + ["--resume"], env=env, check=True, capture_output=True, timeout=300)
    assert read_steps(metrics) == [1, 2, 3, 4, 5]
    assert json.loads((tmp_path / "checkpoints" / "step_000005" / "trainer_state.json").read_text())["step"] == 5


def test_time_limit_ends_the_run_with_a_checkpoint_and_resume_goes_on(tiny_model, tmp_path):
    import train_grpo

    def run(*flags):
        return train_grpo.main(parse_config(train_grpo.Config, ["--model", str(tiny_model), "--steps", "3",
                                                                           "--output-dir", str(tmp_path), *TINY_RUN, *flags]))

    report = run("--time-limit", "1e-6")  # runs out during step 1
    assert report["steps"] == 1 and read_steps(tmp_path / "metrics.jsonl") == [1]
    assert [p.name for p in (tmp_path / "checkpoints").glob("step_*")] == ["step_000001"]
    assert "arith:add_1d" in json.loads((tmp_path / "results.json").read_text())["after"]
    report = run("--resume", "--time-limit", "0")  # a resume keeps the run's settings; a time limit may change
    assert report["steps"] == 3 and read_steps(tmp_path / "metrics.jsonl") == [1, 2, 3]


def test_presets_parse_and_flags_override(tmp_path):
    import train_grpo

    cfg = parse_config(train_grpo.Config, ["--preset", "curriculum", "--steps", "7"])
    assert cfg.curriculum[0] == "add_20" and cfg.steps == 7 and cfg.output_dir == "runs/grpo_curriculum"
    for name in ("gsm8k", "math", "gpu_qwen", "dapo", "dr_grpo"):
        parse_config(train_grpo.Config, ["--preset", name])
    bad = tmp_path / "bad.yaml"
    bad.write_text("stepz: 3\n")
    try:
        parse_config(train_grpo.Config, ["--preset", str(bad)])
    except SystemExit as error:
        assert "stepz" in str(error)
    else:
        raise AssertionError("an unknown preset key was accepted")


def test_ppo_shares_the_presets():
    import train_ppo

    for name in ("curriculum", "gsm8k", "math", "gpu_qwen", "dapo"):
        cfg = parse_config(train_ppo.Config, ["--preset", name])
        assert cfg.output_dir == f"runs/ppo_{name}" and cfg.lam == 0.95
    cfg = parse_config(train_ppo.Config, ["--preset", "gsm8k", "--output-dir", "elsewhere"])
    assert cfg.task == "gsm8k" and cfg.output_dir == "elsewhere"
    with pytest.raises(SystemExit, match="normalize_std"):  # Dr. GRPO's std switch is GRPO's own
        parse_config(train_ppo.Config, ["--preset", "dr_grpo"])


def test_curriculum_moves_on_when_training_accuracy_is_high(tiny_model, tmp_path, monkeypatch):
    import train_grpo
    from rewards import REWARDS

    monkeypatch.setitem(REWARDS, "accuracy", lambda completion, answer: 1.0)  # every sample right
    cfg = parse_config(train_grpo.Config, [
        "--model", str(tiny_model), "--steps", "3", "--output-dir", str(tmp_path), *TINY_RUN,
        "--curriculum", "add_1d", "add_20", "--curriculum-window", "2", "--curriculum-threshold", "0.9"])
    report = train_grpo.main(cfg)
    levels = [json.loads(line)["curriculum/level"] for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert levels == [0, 0, 1]  # two steps at accuracy 1.0 fill the window, then the next level
    assert set(report["after"]) == {"arith:add_1d", "arith:add_20"}


def test_curriculum_replays_passed_levels_moves_on_after_patience_and_evaluates_every_level(tiny_model, tmp_path):
    import train_grpo

    cfg = parse_config(train_grpo.Config, [
        "--model", str(tiny_model), "--steps", "3", "--output-dir", str(tmp_path), *TINY_RUN, "--eval-every", "2",
        "--eval-samples", "0", "--curriculum", "add_1d", "add_20", "--curriculum-patience", "1", "--curriculum-replay", "0.5",
        "--select-by-difficulty"])
    train_grpo.main(cfg)
    metrics = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [m["curriculum/level"] for m in metrics] == [0, 1, 1]  # a random model learns nothing: patience moves it on
    assert [m["curriculum/level_completions"] for m in metrics] == [8, 4, 4]  # 2 prompts x G = 4; half replayed later
    sources = {}
    for row in map(json.loads, (tmp_path / "completions.jsonl").read_text().splitlines()):
        sources.setdefault(row["step"], set()).add(row["id"].split("/")[1])
    assert sources == {1: {"add_1d"}, 2: {"add_20", "add_1d"}, 3: {"add_20", "add_1d"}}
    assert {"heldout/greedy/add_1d", "heldout/greedy/add_20"} <= set(metrics[1])  # every level, every --eval-every
    assert (tmp_path / "training.png").stat().st_size > 0


def test_two_ppo_steps_train_policy_and_critic(tiny_model, tmp_path, monkeypatch):
    import train_ppo
    from rewards import REWARDS

    monkeypatch.setitem(REWARDS, "distinct_chars", lambda completion, answer: len(set(completion)) / 20)
    cfg = parse_config(train_ppo.Config, ["--model", str(tiny_model), "--steps", "2", "--output-dir", str(tmp_path),
                                                    *TINY_RUN, "--rewards", "accuracy=1.0,distinct_chars=1.0", "--mu", "2"])
    train_ppo.main(cfg)
    lines = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in lines] == [1, 2]
    metrics = lines[-1]
    for key in ("train/value_loss", "train/value_clip_fraction", "ppo/value_mean", "ppo/explained_variance", "ppo/kl_penalty",
                "train/clip_fraction", "train/grad_norm"):
        assert key in metrics, key
    assert metrics["train/grad_norm"] > 0 and metrics["train/value_grad_norm"] > 0
    # the zero-initialised value head has learned something, and PPO's KL moved the policy off the reference
    assert lines[0]["ppo/value_mean"] == 0.0 and metrics["ppo/value_mean"] != 0.0
    assert metrics["ppo/kl_penalty"] != 0.0
    checkpoint = tmp_path / "checkpoints" / "step_000002"
    blob = torch.load(checkpoint / "critic.pt", weights_only=False)
    assert blob["critic"]["score.weight"].abs().sum() > 0
    before = load_file(tiny_model / "model.safetensors")
    after = load_file(checkpoint / "policy" / "model.safetensors")
    assert any(not torch.equal(before[k], after[k]) for k in before)


def test_ppo_resumed_run_matches_an_uninterrupted_one(tiny_model, tmp_path, monkeypatch):
    """Stopping after step 1 and resuming gives the same critic and policy as running 2 steps straight:
    the critic, its optimizer and the RNG states travel in the checkpoint."""
    import train_ppo
    from rewards import REWARDS

    # a random model is never right: a reward that varies with the text gives both the critic and the policy a gradient
    monkeypatch.setitem(REWARDS, "distinct_chars", lambda completion, answer: len(set(completion)) / 20)

    def run(out, *extra):
        # --eval-samples 0: the 1-step run's final evaluation is then greedy and draws nothing from torch's generator,
        # which the hf back end samples the rollouts with (a sampled one would shift the resumed run's samples)
        args = ["--model", str(tiny_model), "--output-dir", str(out), *TINY_RUN, "--save-every", "1", "--eval-samples", "0",
                "--rewards", "accuracy=1.0,distinct_chars=1.0", *extra]
        train_ppo.main(parse_config(train_ppo.Config, args))
        last = sorted((out / "checkpoints").glob("step_*"))[-1]
        return torch.load(last / "critic.pt", weights_only=False)["critic"], load_file(last / "policy" / "model.safetensors")

    straight_critic, straight_policy = run(tmp_path / "straight", "--steps", "2")
    run(tmp_path / "resumed", "--steps", "1")
    resumed_critic, resumed_policy = run(tmp_path / "resumed", "--steps", "2", "--resume")
    assert read_steps(tmp_path / "resumed" / "metrics.jsonl") == [1, 2]
    assert straight_critic["score.weight"].abs().sum() > 0  # the zero-initialised value head learned
    for key in straight_critic:
        torch.testing.assert_close(resumed_critic[key], straight_critic[key], msg=key)
    initial = load_file(tiny_model / "model.safetensors")
    assert any(not torch.equal(initial[k], straight_policy[k]) for k in initial)  # the policy did train
    for key in straight_policy:
        torch.testing.assert_close(resumed_policy[key], straight_policy[key], msg=key)


def test_online_dpo_trains_on_pairs_from_its_own_samples(tiny_model, tmp_path, monkeypatch):
    import train_dpo
    from rewards import REWARDS

    monkeypatch.setitem(REWARDS, "distinct_chars", lambda completion, answer: len(set(completion)) / 20)
    cfg = parse_config(train_dpo.Config, ["--model", str(tiny_model), "--steps", "2", "--output-dir", str(tmp_path),
                                                    *TINY_RUN, "--rewards", "distinct_chars=1.0"])
    train_dpo.main(cfg)
    lines = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in lines] == [1, 2]
    assert all(m["dpo/pairs"] > 0 for m in lines)
    # the first step starts at the reference: every implicit reward is 0 and the loss is log 2
    assert abs(lines[0]["train/loss"] - 0.6931) < 1e-3 and lines[0]["train/grad_norm"] > 0
    before = load_file(tiny_model / "model.safetensors")
    after = load_file(tmp_path / "checkpoints" / "step_000002" / "policy" / "model.safetensors")
    assert any(not torch.equal(before[k], after[k]) for k in before)


def test_offline_dpo_on_a_preference_file(tiny_model, tmp_path):
    import train_dpo

    rows = [{"prompt": f"Question {i}?", "chosen": f" Good answer {i}.", "rejected": f" bad {i} bad"} for i in range(24)]
    rows.append({"prompt": "broken", "chosen": "same", "rejected": "same"})  # malformed: skipped with a warning
    path = tmp_path / "pairs.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = parse_config(train_dpo.Config, ["--model", str(tiny_model), "--pairs", str(path), "--output-dir",
                                                    str(tmp_path / "run"), "--pair-batch-size", "4", "--epochs", "2",
                                                    "--heldout-fraction", "0.25", "--lr", "1e-3", "--warmup-steps", "0",
                                                    "--no-tensorboard"])
    with pytest.warns(UserWarning, match="skipped 1 malformed row"):
        report = train_dpo.main(cfg)
    assert report["heldout_pairs"] > 0 and report["train_pairs"] + report["heldout_pairs"] == 24
    lines = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert lines[-1]["train/loss"] < lines[0]["train/loss"]  # the training pairs are learnt
    assert "loss" in report["heldout"] and (tmp_path / "run" / "checkpoints").is_dir()
