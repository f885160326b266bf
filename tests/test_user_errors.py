"""Bad input and interruptions: one clear line, early, exit status 2 (130 for Ctrl-C), and nothing lost.

One test (or a few) per finding of the issue, numbered as there.
"""

import json
import os
import signal
import subprocess
import sys
import time
import warnings

import pytest

from conftest import ROOT
from reasoning_rl.cli import run
from runtime.errors import UserError
from test_train_smoke import TINY_RUN, read_steps
from reasoning_rl.config import parse_config


def run_script(module: str, argv: list[str], capsys) -> tuple[int, str]:
    """Run a script's ``main`` through ``run`` in this process: (exit status, what it printed to stderr)."""
    script = __import__(module)
    with pytest.raises(SystemExit) as exit_info:
        run(script.main, script.Config, script.__doc__, argv)
    return exit_info.value.code, capsys.readouterr().err


def one_line_error(err: str, *words: str) -> None:
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    for word in words:
        assert word in lines[0], (word, lines[0])


def no_engine(*args, **kwargs):
    raise AssertionError("the generation engine was started before the input was validated")


# --- 1. custom data files ---------------------------------------------------------------------

def test_1_a_custom_jsonl_benchmark_is_read_by_its_documented_fields(tmp_path):
    from data_prep import load_problems

    path = tmp_path / "my_quiz.jsonl"
    path.write_text('{"question": "What is 3 + 4?", "answer": "7"}\n{"problem": "Half of 8?", "answer": 4}\n')
    problems = load_problems("jsonl", path=path)
    assert [(p.problem, p.answer, p.source) for p in problems] == [("What is 3 + 4?", "7", "my_quiz"), ("Half of 8?", "4", "my_quiz")]


def test_1_evaluate_names_the_custom_file_and_refuses_one_without_usable_rows(tmp_path, capsys, monkeypatch):
    import evaluate

    monkeypatch.setattr(evaluate, "make_generator", no_engine)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "no question field"}\n')
    code, err = run_script("evaluate", ["--benchmark", "jsonl", "--data-path", str(bad), "--output-dir", str(tmp_path / "out")], capsys)
    assert code == 2
    one_line_error(err, str(bad), "question")
    mine = tmp_path / "mine.jsonl"
    mine.write_text('{"question": "What is 3 + 4?", "answer": "7"}\n')
    code, err = run_script("evaluate", ["--data-path", str(mine), "--output-dir", str(tmp_path / "out")], capsys)
    assert code == 2  # the default benchmark is gsm8k: its rows need '#### n'; the message says what to do
    one_line_error(err, "--benchmark jsonl")
    assert not (tmp_path / "out").exists()


# --- 2. --limit does not hide malformed rows ------------------------------------------------------

def test_2_malformed_rows_inside_the_limit_are_reported(tmp_path):
    from data_prep import load_problems

    path = tmp_path / "quiz.jsonl"
    path.write_text('{"question": "a", "answer": "1"}\n{"question": "b"}\n{"question": "c", "answer": "3"}\n')
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        problems = load_problems("jsonl", path=path, limit=2)
    assert [p.answer for p in problems] == ["1", "3"]
    assert any(f"{path}:2" in str(w.message) for w in caught), [str(w.message) for w in caught]


# --- 3. model names ---------------------------------------------------------------------------------

def test_3_a_missing_model_folder_is_named(tmp_path):
    from reasoning_rl.models import resolve_model

    with pytest.raises(UserError, match="does not exist"):
        resolve_model(str(tmp_path / "does" / "not" / "exist"))
    with pytest.raises(UserError, match="does not exist"):
        resolve_model("./does/not/exist")


def test_3_an_unknown_hub_name_fails_fast_and_says_offline_mode_is_on():
    from reasoning_rl.models import resolve_model

    start = time.perf_counter()
    with pytest.raises(UserError, match="offline mode"):
        resolve_model("someone/not-a-model")
    assert time.perf_counter() - start < 5


# --- 4. one line, exit status 2, no folder left behind ------------------------------------------

@pytest.mark.parametrize("argv,words", [
    (["--model", "no-such-model"], ["no-such-model"]),
    (["--task", "arith:nonsense"], ["nonsense"]),
    (["--task", "gsm9k"], ["gsm9k"]),
    (["--rewards", "accuracy=1.0,brevityy=0.5"], ["brevityy"]),
])
def test_4_user_errors_are_one_line_and_leave_no_folder(argv, words, tmp_path, capsys, monkeypatch):
    import reasoning_rl.run as run

    monkeypatch.setattr(run, "make_generator", no_engine)
    out = tmp_path / "run"
    code, err = run_script("train_grpo", [*argv, "--output-dir", str(out)], capsys)
    assert code == 2
    one_line_error(err, *words)
    assert not out.exists()


def test_4_an_unwritable_output_folder_is_one_line(capsys, monkeypatch):
    import reasoning_rl.run as run

    monkeypatch.setattr(run, "make_generator", no_engine)
    code, err = run_script("train_grpo", ["--output-dir", "/proc/x"], capsys)
    assert code == 2
    one_line_error(err, "/proc/x")


def test_4_from_the_shell(tmp_path):
    """The real command line: one line on stderr, status 2, within seconds (no engine starts)."""
    out = tmp_path / "run"
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "train_grpo.py"), "--task", "gsm9k", "--output-dir", str(out)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    one_line_error(result.stderr, "gsm9k")
    assert not out.exists()


# --- 5. evaluate.py validates everything before it starts vLLM ----------------------------------

@pytest.mark.parametrize("argv,words", [
    (["--benchmark", "gsm9k"], ["gsm9k"]),
    (["--max-new-tokens", "0"], ["--max-new-tokens"]),
    (["--n", "0"], ["--n"]),
    (["--output-dir", "/proc/x"], ["/proc/x"]),
])
def test_5_evaluate_validates_before_the_engine(argv, words, tmp_path, capsys, monkeypatch):
    import evaluate

    monkeypatch.setattr(evaluate, "make_generator", no_engine)
    argv = argv if "--output-dir" in argv else [*argv, "--output-dir", str(tmp_path / "out")]
    code, err = run_script("evaluate", argv, capsys)
    assert code == 2
    one_line_error(err, *words)


# --- 6. settings that cannot learn --------------------------------------------------------------

@pytest.mark.parametrize("script,argv,words", [
    ("train_grpo", ["--group-size", "1"], ["--group-size", "group"]),
    ("train_grpo", ["--steps", "0"], ["--steps"]),
    ("train_grpo", ["--lr", "0"], ["--lr"]),
    ("train_grpo", ["--temperature", "0"], ["--temperature"]),
    ("train_dpo", ["--group-size", "1"], ["--group-size", "pair"]),
    ("train_ppo", ["--steps", "0"], ["--steps"]),
])
def test_6_settings_that_cannot_learn_are_refused(script, argv, words, tmp_path, capsys, monkeypatch):
    import reasoning_rl.run as run

    monkeypatch.setattr(run, "make_generator", no_engine)
    code, err = run_script(script, [*argv, "--output-dir", str(tmp_path / "run")], capsys)
    assert code == 2
    one_line_error(err, *words)


def test_6_ppo_learns_from_groups_of_one(tiny_model, tmp_path):
    import train_ppo

    cfg = parse_config(train_ppo.Config, ["--model", str(tiny_model), "--steps", "1", "--output-dir", str(tmp_path),
                                                    *TINY_RUN, "--group-size", "1"])
    train_ppo.main(cfg)  # a learned critic is PPO's baseline: one sample per prompt is fine
    assert read_steps(tmp_path / "metrics.jsonl") == [1]


# --- 7. --resume with nothing to resume -----------------------------------------------------------

def test_7_resume_without_a_checkpoint_fails_naming_the_folder(tiny_model, tmp_path, capsys):
    out = tmp_path / "typo"
    code, err = run_script("train_grpo", ["--model", str(tiny_model), *TINY_RUN, "--resume", "--output-dir", str(out)], capsys)
    assert code == 2
    one_line_error(err, str(out), "checkpoints/step_")
    assert not out.exists()


def test_7_auto_resume_starts_fresh_and_says_so(tiny_model, tmp_path, capsys):
    import train_grpo

    argv = ["--model", str(tiny_model), "--steps", "1", *TINY_RUN, "--auto-resume", "--output-dir", str(tmp_path)]
    run(train_grpo.main, train_grpo.Config, None, argv)
    assert "no checkpoint in" in capsys.readouterr().out
    run(train_grpo.main, train_grpo.Config, None, [*argv[:2], "--steps", "2", *argv[4:]])
    assert "resuming from" in capsys.readouterr().out
    assert read_steps(tmp_path / "metrics.jsonl") == [1, 2]


# --- 8. Ctrl-C: one line, exit 130, and --resume continues ------------------------------------------

def test_8_ctrl_c_exits_130_with_one_line_and_resume_continues(tiny_model, tmp_path):
    out = tmp_path / "run"
    steps = 6
    command = [sys.executable, str(ROOT / "scripts" / "train_grpo.py"), "--model", str(tiny_model), "--steps", str(steps),
               "--save-every", "1", "--output-dir", str(out), *TINY_RUN]
    # a shell without job control starts background jobs with SIGINT ignored, and a child inherits that:
    # give the run Ctrl-C's default, as a terminal would
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 300
    while time.time() < deadline and not ((out / "metrics.jsonl").exists() and len(read_steps(out / "metrics.jsonl")) >= 2):
        time.sleep(0.2)
    assert proc.poll() is None, proc.communicate()[1][-2000:]
    sent = time.time()
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130 and time.time() - sent < 7
    assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr
    message = [line for line in (stdout + stderr).splitlines() if "interrupted" in line]
    assert len(message) == 1 and "--resume" in message[0] and "checkpoints/step_" in message[0], stdout + stderr
    done = max(read_steps(out / "metrics.jsonl"))
    resumed = subprocess.run([*command, "--resume"], capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert read_steps(out / "metrics.jsonl") == list(range(1, steps + 1)) and done < steps


# --- 9. console noise ------------------------------------------------------------------------------

def test_9_a_run_prints_no_library_noise(tiny_model, tmp_path):
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "train_grpo.py"), "--model", str(tiny_model), "--steps", "2",
                             "--output-dir", str(tmp_path), *TINY_RUN], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    console = result.stdout + result.stderr
    for noise in ("Writing model shards", "Loading weights", "\x1b[A", "FutureWarning", "UserWarning"):
        assert noise not in console, noise
    finals = [part for part in console.replace("\r", "\n").splitlines() if "2/2" in part and "grpo" in part]
    assert len(finals) == 1, finals  # the final step bar once


@pytest.mark.integration
def test_9_vllm_starts_without_noise():
    code = ("from reasoning_rl.generation import VLLMGenerator; from reasoning_rl.models import resolve_model; "
            "g = VLLMGenerator(resolve_model('smollm2-135m-instruct'), memory_fraction=0.05, max_model_len=256); print('ready')")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert result.returncode == 0 and "ready" in result.stdout, result.stderr[-2000:]
    console = result.stdout + result.stderr
    for noise in ("NUMA binding", "reduce_op", "Triton is installed", "Loading safetensors checkpoint shards", "FutureWarning"):
        assert noise not in console, noise


# --- 10. compare_evals.py with no runs --------------------------------------------------------------

def test_10_compare_evals_without_runs_prints_its_usage():
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "report" / "compare_evals.py")], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert "usage" in (result.stdout + result.stderr).lower() and "Traceback" not in result.stderr


# --- 11. the README's reward recipe: tests/test_readme_recipe.py, plus the registry itself -----------

def test_11_a_reward_file_may_import_the_package_or_its_modules():
    from rewards.registry import REWARDS, register

    @register("test_only_reward")
    def reward(completion, answer):
        return 1.0

    try:
        assert REWARDS["test_only_reward"] is reward
        with pytest.raises(ValueError, match="already registered"):
            register("test_only_reward")(lambda c, a: 0.0)
    finally:
        del REWARDS["test_only_reward"]


# --- 12. checkpoints ------------------------------------------------------------------------------------

def test_12_checkpoints_are_readable_by_the_group_and_can_keep_one_optimizer_state(tiny_model, tmp_path):
    import train_grpo

    cfg = parse_config(train_grpo.Config, ["--model", str(tiny_model), "--steps", "2", "--save-every", "1",
                                                      "--output-dir", str(tmp_path), *TINY_RUN, "--optimizer-state", "newest",
                                                      "--keep-checkpoints", "2"])
    train_grpo.main(cfg)
    old, new = sorted((tmp_path / "checkpoints").glob("step_*"))
    for path in (new, new / "policy", new / "training_state.pt"):
        assert os.stat(path).st_mode & 0o055 == 0o055 if path.is_dir() else os.stat(path).st_mode & 0o044 == 0o044, path
    assert (new / "training_state.pt").exists() and not (old / "training_state.pt").exists()
    assert (old / "policy" / "model.safetensors").exists()  # still a model to evaluate
    assert json.loads((old / "trainer_state.json").read_text())["step"] == 1


def test_12_the_default_keeps_one_resumable_checkpoint_and_none_keeps_models_only(tiny_model, tmp_path):
    import train_grpo

    for name, extra in (("default", []), ("models", ["--optimizer-state", "none"])):
        out = tmp_path / name
        train_grpo.main(parse_config(train_grpo.Config, ["--model", str(tiny_model), "--steps", "2", "--save-every", "1",
                                                         "--output-dir", str(out), *TINY_RUN, *extra]))
        [kept] = sorted((out / "checkpoints").glob("step_*"))
        assert kept.name == "step_000002" and (kept / "policy" / "model.safetensors").exists()
        assert (kept / "training_state.pt").exists() == (name == "default")
