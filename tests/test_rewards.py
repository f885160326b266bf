import threading
import time

import pytest

from rewards import REWARDS, accuracy_reward, boxed_format_reward, extract_answer, soft_overlong_penalty, think_format_reward, trl_reward

# (completion, reference answer, expected reward)
ACCURACY_CASES = [
    ("so the answer is \\boxed{\\frac{1}{2}}", "0.5", 1.0),
    ("so the answer is \\boxed{\\frac{1}{3}}", "0.5", 0.0),
    ("\\boxed{\\dfrac{3}{6}}", "\\frac12", 1.0),
    ("The total is 1,234 dollars.\n#### 1,234", "1234", 1.0),
    ("#### 72", "72", 1.0),
    ("#### 73", "72", 0.0),
    ("First 3 + 4 = 7, so the answer is 7.", "7", 1.0),
    ("3 + 4 = 7", "7", 1.0),  # last number fallback
    ("3 + 4 = 7, then add 1 to get 8", "7", 0.0),  # the last number is what counts
    ("<think>2+2</think> <answer>4</answer>", "4", 1.0),
    ("<think>2+2</think> <answer>\\boxed{5}</answer>", "4", 0.0),
    ("\\boxed{10\\%}", "10", 1.0),
    ("\\boxed{90^\\circ}", "90", 1.0),
    ("\\boxed{\\text{(C)}}", "\\text{(C)}", 1.0),
    ("\\boxed{(1,2]}", "(1,2]", 1.0),
    ("\\boxed{(1,2)}", "(1,2]", 0.0),
    ("\\boxed{\\{2, 1\\}}", "\\{1,2\\}", 1.0),
    ("\\boxed{\\sqrt{2}/2}", "\\frac{\\sqrt{2}}{2}", 1.0),
    ("\\boxed{2\\sqrt{2}}", "\\sqrt{8}", 1.0),
    ("\\boxed{x^2+2x+1}", "(x+1)^2", 1.0),
    ("\\boxed{3.50}", "3.5", 1.0),
    ("\\boxed{-3}", "3", 0.0),
    ("The answer is $\\boxed{5 \\text{ cm}}$", "5", 1.0),
    ("no number here", "5", 0.0),
    ("", "5", 0.0),
    ("\\boxed{", "5", 0.0),  # cut off inside the box
]


@pytest.mark.parametrize("completion,answer,expected", ACCURACY_CASES)
def test_accuracy_reward_table(completion, answer, expected):
    assert accuracy_reward(completion, answer) == expected


def test_extract_answer_order():
    assert extract_answer("#### 3 and \\boxed{4}") == "4"  # boxed wins
    assert extract_answer("\\boxed{a{b}c}") == "a{b}c"  # nested braces
    assert extract_answer("the answer is 12. Then 13") == "12"
    assert extract_answer("nothing") is None


@pytest.mark.parametrize("completion,expected", [
    ("<think>a</think> <answer>b</answer>", 1.0),
    ("a</think><answer>b</answer>", 1.0),  # R1-Zero prompts end with <think>
    ("<think>a</think> <answer>b</answer> trailing words", 0.0),
    ("<answer>b</answer>", 0.0),
    ("<think>a</think> <answer>b</answer><answer>c</answer>", 0.0),
])
def test_think_format(completion, expected):
    assert think_format_reward(completion, "x") == expected


def test_boxed_format():
    assert boxed_format_reward("so \\boxed{3}", "3") == 1.0
    assert boxed_format_reward("so 3", "3") == 0.0
    assert boxed_format_reward("\\boxed{}", "3") == 0.0


def test_soft_overlong_penalty():
    # max 100 tokens, cache 20: no penalty up to 80, linear to -1 at 100, -1 beyond
    assert soft_overlong_penalty(80, 100, 20) == 0.0
    assert soft_overlong_penalty(90, 100, 20) == -0.5
    assert soft_overlong_penalty(100, 100, 20) == -1.0
    assert soft_overlong_penalty(130, 100, 20) == -1.0
    assert soft_overlong_penalty(130, 100, 0) == 0.0


PATHOLOGICAL = {
    "power tower": "\\boxed{" + "9^{" * 30 + "9" + "}" * 30 + "}",
    "nested fractions": "\\boxed{" + "\\frac{1}{1+" * 2000 + "1" + "}" * 2000 + "}",
    "huge factorial": "\\boxed{(10^{10})!}",
}


@pytest.mark.parametrize("name", PATHOLOGICAL)
def test_pathological_completion_times_out_to_zero(name):
    accuracy_reward("\\boxed{x^2}", "x^{2}")  # start the verifier process outside the timed part
    timeout = 2.0
    start = time.perf_counter()
    assert accuracy_reward(PATHOLOGICAL[name], "\\frac{5}{7}", timeout=timeout) == 0.0
    assert time.perf_counter() - start < timeout + 1.0
    assert accuracy_reward("\\boxed{\\frac{10}{14}}", "\\frac{5}{7}") == 1.0  # the verifier still works after a kill


def test_verifier_works_off_the_main_thread():
    results = []
    threads = [threading.Thread(target=lambda: results.append(accuracy_reward("\\boxed{\\sqrt{8}}", "2\\sqrt{2}"))) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert results == [1.0] * 4


def test_registry_and_trl_adapter():
    assert set(REWARDS) >= {"accuracy", "think_format", "boxed_format"}
    reward = trl_reward("accuracy")
    completions = [[{"role": "assistant", "content": "\\boxed{2}"}], "it is 3", "anything"]
    assert reward(["p"] * 3, completions, answer=["2", "2", None]) == [1.0, 0.0, None]


def test_parse_weights():
    from rewards import parse_weights

    assert parse_weights("accuracy=1.0,boxed_format=0.1") == {"accuracy": 1.0, "boxed_format": 0.1}
    assert parse_weights("accuracy") == {"accuracy": 1.0}
    with pytest.raises(ValueError, match="unknown reward 'acc'"):
        parse_weights("acc=1")
    with pytest.raises(ValueError, match="not a number"):
        parse_weights("accuracy=high")


@pytest.mark.parametrize("text,expected", [
    ("\\boxed{5}", "5"),
    ("\\boxed 5 and then {x}", "5"),
    ("$\\boxed 12$.", "12"),
    ("\\fbox{a{b}c}", "a{b}c"),
    ("\\boxed{1} and \\boxed{2}", "2"),
    ("\\boxed {3}", "3"),
    ("\\boxed{\\frac{1}{2", None),
    ("\\boxed", None),
])
def test_last_boxed(text, expected):
    from rewards import last_boxed

    assert last_boxed(text) == expected


def test_latex_mangled_by_string_escapes_is_repaired():
    from rewards import repair_escapes

    # '\boxed{\frac{1}{2}}' in a non-raw Python string: backspace + "oxed", form feed + "rac"
    mangled = "so the answer is \boxed{\frac{1}{2}}"
    assert "\x08" in mangled and "\x0c" in mangled
    assert accuracy_reward(mangled, "0.5") == 1.0
    assert accuracy_reward("so the answer is \boxed{\frac{1}{3}}", "0.5") == 0.0
    assert accuracy_reward("\\boxed{x \times y}", "xy") == 1.0  # tab + "imes"
    assert repair_escapes("\\left(1\right)") == "\\left(1\\right)"
    assert repair_escapes("a\tb\r\nc") == "a\tb\r\nc"  # real tabs and line ends stay


def test_acceptance_command_from_the_shell():
    import subprocess
    import sys

    code = "from rewards import accuracy_reward; print(accuracy_reward('so the answer is \\\\boxed{\\\\frac{1}{2}}', '0.5'))"
    out = subprocess.run(["bash", "-c", f'{sys.executable} -c "{code}"'], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "1.0", out.stderr
