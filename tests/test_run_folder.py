"""Long runs and shared folders: one run per folder, a resume that continues its own run, Ctrl-C that keeps the
finished step, a full disk and a NaN that lose nothing (issue 24; the cache tests are in test_models.py)."""

import errno
import hashlib
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from conftest import ROOT
from runtime.errors import UserError
from runtime.run_folder import LOCK_NAME, lock, release
from test_train_smoke import TINY_RUN, read_steps
from test_user_errors import one_line_error, run_script

HOLD = ("import sys, time; from pathlib import Path; from runtime.run_folder import lock; "
        "lock(Path(sys.argv[1])); print('locked', flush=True); time.sleep(120)")


def hold_lock(folder: Path) -> subprocess.Popen:
    """Another process that holds ``folder``'s lock (as a running run does) until it is killed."""
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(folder)], stdout=subprocess.PIPE, text=True, cwd=ROOT)
    assert holder.stdout.readline().strip() == "locked"
    return holder


def fingerprint(folder: Path) -> dict[str, str]:
    """sha256 of every file below ``folder`` (the lock file aside)."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and p.name != LOCK_NAME}


def tiny_args(model: Path, out: Path, *extra: str) -> list[str]:
    return ["--model", str(model), "--output-dir", str(out), *TINY_RUN, *extra]


def train(argv: list[str]) -> dict:
    import train_grpo

    from reasoning_rl.cli import run

    return run(train_grpo.main, train_grpo.Config, None, argv)


# --- one run per folder -------------------------------------------------------------------------

def test_a_second_run_into_a_locked_folder_exits_2_at_once_naming_the_holder(tmp_path):
    out = tmp_path / "run"
    holder = hold_lock(out)
    try:
        started = time.time()
        # a model that does not exist: the refusal must come before any model is looked for
        result = subprocess.run([sys.executable, str(ROOT / "scripts" / "train_grpo.py"), "--model", "/no/such/model",
                                 "--output-dir", str(out)], capture_output=True, text=True, timeout=120)
        assert result.returncode == 2 and time.time() - started < 30
        one_line_error(result.stderr, str(out), "in use by another run", f"pid {holder.pid}")
    finally:
        holder.kill()
        holder.wait()


def test_a_lock_left_by_a_killed_run_does_not_block_the_next(tmp_path):
    holder = hold_lock(tmp_path)
    with pytest.raises(UserError, match=f"pid {holder.pid}"):
        lock(tmp_path)
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    lock(tmp_path)  # the kernel let go of the killed holder's lock
    release(tmp_path)


@pytest.mark.parametrize("script", ["train_reward_model", "train_dpo"])
def test_the_preference_trainers_take_the_folder_lock_and_refuse_a_finished_run(script, tiny_model, tmp_path, capsys):
    """The reward model's and offline DPO's trainers follow the same rule as the RL trainers (neither can resume)."""
    from reasoning_rl.cli import run

    module = __import__(script)
    rows = [{"prompt": f"Q{i}:", "chosen": f" good answer {i}", "rejected": f" bad answer {i}"} for i in range(12)]
    (tmp_path / "pairs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    data = ["--data", str(tmp_path / "pairs.jsonl"), "--max-length", "32"] if script == "train_reward_model" else \
           ["--pairs", str(tmp_path / "pairs.jsonl"), "--pair-batch-size", "4"]
    out = tmp_path / "run"
    argv = ["--model", str(tiny_model), "--output-dir", str(out), "--heldout-fraction", "0.25", "--epochs", "1",
            "--no-tensorboard", *data]
    holder = hold_lock(out)
    try:
        code, err = run_script(script, argv, capsys)
        assert code == 2
        one_line_error(err, str(out), "in use by another run", f"pid {holder.pid}")
    finally:
        holder.kill()
        holder.wait()
    run(module.main, module.Config, None, argv)
    before = fingerprint(out)
    capsys.readouterr()
    code, err = run_script(script, argv, capsys)
    assert code == 2 and fingerprint(out) == before
    one_line_error(err, str(out), "holds another run (", "metrics.jsonl, results.json", "--overwrite")
    assert "--resume" not in err  # neither trainer can resume
    run(module.main, module.Config, None, [*argv, "--overwrite"])
    aside = [p for p in tmp_path.iterdir() if p.name.startswith("run.")]
    assert len(aside) == 1 and fingerprint(aside[0]) == before and (out / "results.json").exists()


def test_a_new_run_refuses_another_runs_folder_and_leaves_it_byte_identical(tiny_model, tmp_path, capsys):
    train(tiny_args(tiny_model, tmp_path, "--steps", "2", "--save-every", "1"))
    before = fingerprint(tmp_path)
    assert "metrics.jsonl" in before and "checkpoints/step_000002/trainer_state.json" in before
    capsys.readouterr()
    code, err = run_script("train_grpo", tiny_args(tiny_model, tmp_path, "--steps", "1"), capsys)
    assert code == 2
    one_line_error(err, str(tmp_path), "checkpoints up to step 2", "--resume", "--overwrite")
    assert fingerprint(tmp_path) == before


def test_overwrite_moves_the_old_run_aside_to_a_dated_sibling(tiny_model, tmp_path, capsys):
    out = tmp_path / "run"
    train(tiny_args(tiny_model, out, "--steps", "2"))
    before = fingerprint(out)
    train(tiny_args(tiny_model, out, "--steps", "1", "--overwrite"))
    asides = [p for p in tmp_path.iterdir() if p.name.startswith("run.")]
    assert len(asides) == 1 and fingerprint(asides[0]) == before  # the old run, whole
    assert read_steps(out / "metrics.jsonl") == [1] and f"now in {asides[0]}" in capsys.readouterr().out


def test_auto_resume_without_a_checkpoint_moves_a_killed_runs_leftovers_aside(tiny_model, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "metrics.jsonl").write_text('{"step": 1}\n')  # a run killed before its first checkpoint
    train(tiny_args(tiny_model, out, "--steps", "1", "--auto-resume"))
    aside = [p for p in tmp_path.iterdir() if p.name.startswith("run.")]
    assert len(aside) == 1 and (aside[0] / "metrics.jsonl").read_text() == '{"step": 1}\n'
    assert read_steps(out / "metrics.jsonl") == [1]


def test_evaluate_follows_the_same_rule(tiny_model, tmp_path, capsys, shared_data):
    args = ["--model", str(tiny_model), "--benchmark", "gsm8k", "--limit", "2", "--max-new-tokens", "4", "--backend", "hf",
            "--output-dir", str(tmp_path)]
    run_script_ok("evaluate", args)
    before = fingerprint(tmp_path)
    capsys.readouterr()
    code, err = run_script("evaluate", args, capsys)
    assert code == 2
    one_line_error(err, str(tmp_path), "samples.jsonl", "--resume", "--overwrite")
    code, err = run_script("evaluate", [*args, "--resume", "--template", "chat"], capsys)
    assert code == 2
    one_line_error(err, "--template 'chat'", "'chat_boxed'")
    assert fingerprint(tmp_path) == before
    summary = run_script_ok("evaluate", [*args, "--resume", "--limit", "3"])
    assert summary["gsm8k"]["n_problems"] == 3  # two kept, one more generated


def run_script_ok(module: str, argv: list[str]):
    from reasoning_rl.cli import run

    script = __import__(module)
    return run(script.main, script.Config, None, argv)


# --- a resume continues the run it resumes ------------------------------------------------------

def test_resume_keeps_the_runs_task_and_refuses_a_changed_one(tiny_model, tmp_path, capsys):
    args = [a for a in tiny_args(tiny_model, tmp_path) if a not in ("--task", "arith:add_1d")]
    train([*args, "--task", "arith:mul_1d", "--steps", "1"])
    capsys.readouterr()
    code, err = run_script("train_grpo", [*args, "--task", "arith:add_1d", "--steps", "2", "--resume"], capsys)
    assert code == 2
    one_line_error(err, "--task 'arith:add_1d'", "'arith:mul_1d'", "--resume")
    assert read_steps(tmp_path / "metrics.jsonl") == [1]
    report = train([*args, "--steps", "2", "--resume"])  # no --task: the run's own
    assert report["tasks"] == ["arith:mul_1d"] and read_steps(tmp_path / "metrics.jsonl") == [1, 2]
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["task"] == "arith:mul_1d" and config["resumes"] == [{"at_step": 1, "changed": {"steps": [1, 2]}}]


# --- Ctrl-C keeps the finished step -------------------------------------------------------------

def test_ctrl_c_during_step_2_saves_that_step_and_resume_goes_on(tiny_model, tmp_path):
    out = tmp_path / "run"
    command = [sys.executable, str(ROOT / "scripts" / "train_grpo.py"), *tiny_args(tiny_model, out, "--steps", "6",
                                                                                  "--save-every", "6")]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 300
    while time.time() < deadline and not ((out / "metrics.jsonl").exists() and read_steps(out / "metrics.jsonl")):
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)  # step 1 is logged: this lands in step 2 (or just after it)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr[-2000:]
    done = read_steps(out / "metrics.jsonl")
    assert 2 <= done[-1] < 6 and "Traceback" not in stderr
    assert [p.name for p in (out / "checkpoints").glob("step_*")] == [f"step_{done[-1]:06d}"]  # not the save-every's
    resumed = subprocess.run([*command, "--resume"], capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert read_steps(out / "metrics.jsonl") == list(range(1, 7)) and f"(step {done[-1]})" in resumed.stdout


# --- a full disk and a NaN ----------------------------------------------------------------------

def test_a_checkpoint_that_cannot_be_written_stops_the_run_and_keeps_the_previous_one(tiny_model, tmp_path, capsys,
                                                                                        monkeypatch):
    from reasoning_rl import checkpoint

    real_save, calls = checkpoint.torch.save, []

    def disk_full_on_the_second_checkpoint(obj, path, *args, **kwargs):
        calls.append(path)
        if len(calls) == 2:
            real_save(obj, path, *args, **kwargs)  # half a file, as a full disk leaves it
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(obj, path, *args, **kwargs)

    monkeypatch.setattr(checkpoint.torch, "save", disk_full_on_the_second_checkpoint)
    code, err = run_script("train_grpo", tiny_args(tiny_model, tmp_path, "--steps", "3", "--save-every", "1"), capsys)
    assert code == 2
    errors = [line for line in err.splitlines() if line.startswith("error: ")]  # on its own line, after the step bar
    assert len(errors) == 1 and "Traceback" not in err, err
    for words in ("checkpoint of step 2", "No space left on device", "step_000001 is intact", "--resume"):
        assert words in errors[0]
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["step_000001"]  # no half-written folder
    monkeypatch.setattr(checkpoint.torch, "save", real_save)  # space freed
    train(tiny_args(tiny_model, tmp_path, "--steps", "3", "--save-every", "1", "--resume"))
    assert read_steps(tmp_path / "metrics.jsonl") == [1, 2, 3]


def test_a_non_finite_gradient_never_reaches_the_weights():
    from reasoning_rl.optim import clip_and_step

    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1)
    model(torch.ones(1, 3)).sum().backward()
    assert clip_and_step(optimizer, model.parameters(), 1.0)["nonfinite_steps"] == 0  # a real step: AdamW has state
    weights, moments = [p.detach().clone() for p in model.parameters()], json.dumps(str(optimizer.state_dict()))
    (model(torch.ones(1, 3)).sum() * float("nan")).backward()
    result = clip_and_step(optimizer, model.parameters(), 1.0)
    assert result["nonfinite_steps"] == 1 and result["grad_norm"] != result["grad_norm"]  # NaN
    assert all(torch.equal(a, b) for a, b in zip(weights, model.parameters()))
    assert json.dumps(str(optimizer.state_dict())) == moments and all(p.grad is None for p in model.parameters())


def test_a_nan_loss_in_a_run_skips_the_update_and_counts_it(tiny_model, tmp_path, monkeypatch, capsys):
    from safetensors.torch import load_file

    from reasoning_rl import policy_gradient
    from rewards import REWARDS

    real = policy_gradient.POLICY_LOSSES["clipped"]
    # a reward that varies with the text gives a random model's groups a gradient (see test_train_smoke)
    monkeypatch.setitem(REWARDS, "distinct_chars", lambda completion, answer: len(set(completion)) / 20)

    def nan_loss(*args, **kwargs):
        loss, metrics = real(*args, **kwargs)
        return loss * float("nan"), metrics

    monkeypatch.setitem(policy_gradient.POLICY_LOSSES, "clipped", nan_loss)
    train(tiny_args(tiny_model, tmp_path, "--steps", "1", "--rewards", "distinct_chars=1.0"))
    metrics = json.loads((tmp_path / "metrics.jsonl").read_text())
    assert metrics["train/rows_skipped"] < 8 and metrics["train/nonfinite_steps"] == 1 and "not finite" in capsys.readouterr().err
    start = load_file(tiny_model / "model.safetensors")
    end = load_file(tmp_path / "checkpoints" / "step_000001" / "policy" / "model.safetensors")
    assert all(torch.equal(start[k], end[k]) for k in start)
