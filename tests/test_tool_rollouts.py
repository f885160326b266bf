"""Multi-turn rollouts with a tool (reasoning_rl/tool_use.py), driven by a scripted engine.

The engine answers each context with the next turn of a script (found by how many tool outputs the context holds), so
every test knows exactly what the model "wrote": the tool's output must come back into the context, be masked out of
the loss, and the limits (tool calls, the token budget, the output's size) must hold.
"""

import pytest
import torch

from data_prep import Problem
from reasoning_rl.generation import Completion
from reasoning_rl.models import load_policy, load_tokenizer, resolve_model
from reasoning_rl.rollout import Rollouts, collect_rollouts, row_logprobs, score_rollouts
from reasoning_rl.tool_use import ToolGenerator, batch_tool_metrics
from tools import ToolResult
from tools.format import OUTPUT_OPEN, STOP, output_block, pending_code


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer(resolve_model("smollm2-135m-instruct"))


class ScriptedEngine:
    """A ``Generator`` whose completion of a prompt is ``script[question][k]`` at the k-th turn (k = the tool outputs
    in the context so far), stopped at a stop string as vLLM stops, cut at the token limit; records every call."""

    def __init__(self, tokenizer, script: dict[str, list[str]]):
        self.tokenizer, self.script, self.calls, self.seeds = tokenizer, script, [], []

    def generate(self, prompt_ids, n, temperature, top_p, max_new_tokens, stop=None, seeds=None):
        limits = max_new_tokens if isinstance(max_new_tokens, list) else [max_new_tokens] * len(prompt_ids)
        self.calls.append((len(prompt_ids), n, limits, stop))
        self.seeds.append(seeds)
        return [[self.sample(ids, limit, stop) for _ in range(n)] for ids, limit in zip(prompt_ids, limits)]

    def sample(self, ids: list[int], limit: int, stop) -> Completion:
        context = self.tokenizer.decode(ids)
        question = next(q for q in self.script if q in context)
        turn = self.script[question][min(context.count(OUTPUT_OPEN), len(self.script[question]) - 1)]
        stopped_at = None
        for s in stop or []:
            if s in turn:
                turn, stopped_at = turn[: turn.index(s) + len(s)], s
        tokens = self.tokenizer(turn, add_special_tokens=False).input_ids
        if stopped_at is None:
            tokens.append(self.tokenizer.eos_token_id)
        truncated = len(tokens) > limit
        tokens = tokens[:limit]
        return Completion(tokens, self.tokenizer.decode(tokens, skip_special_tokens=True), truncated,
                          [-0.5] * len(tokens), None if truncated else stopped_at)

    def sync_weights(self, model) -> float:
        return 0.0


class Calculator:
    """A ``Tool`` that evaluates the code's ``print(...)`` argument (no sandbox needed to test the rollout)."""

    def __init__(self):
        self.codes = []

    def run(self, code: str) -> ToolResult:
        self.codes.append(code)
        expression = code.strip().removeprefix("print(").removesuffix(")")
        try:
            return ToolResult(f"{eval(expression, {})}\n", "ok", 0.01)
        except Exception as error:  # noqa: BLE001 - the model's code may fail in any way; so may this stand-in
            return ToolResult(f"{type(error).__name__}: {error}", "error", 0.01)


CODE = "Let me compute it.\n```python\nprint(78 * 6)\n```\n"


def rollouts_for(tokenizer, script, max_new_tokens=200, max_calls=2, group_size=1, tool=None, seeds=None):
    """``script``: question -> (reference answer, the model's turns); the rollouts of one step and the engine."""
    problems = [Problem(f"p{i}", q, answer, "test") for i, (q, (answer, _)) in enumerate(script.items())]
    engine = ScriptedEngine(tokenizer, {q: turns for q, (_, turns) in script.items()})
    generator = ToolGenerator(engine, tokenizer, tool or Calculator(), max_calls)
    rollouts = collect_rollouts(generator, tokenizer, problems, "chat_tool", group_size, 1.0, 1.0, max_new_tokens,
                                seeds=seeds)
    return rollouts, engine


def test_pending_code_finds_the_block_a_turn_ends_with():
    assert pending_code("x\n```python\nprint(1)\n```\n") == "print(1)"
    assert pending_code("```python\na = 1\n```\n```output\n1\n```\nthen\n```python\nprint(2)\n```\n") == "print(2)"
    assert pending_code("```\n") is None  # an unlabelled fence opened: not code to run
    assert pending_code("```python\nprint(1)\n```\nand more ```\n") is None  # the block was closed earlier
    assert pending_code("no code at all") is None


def test_tool_output_joins_the_context_and_is_masked_out_of_the_loss(tokenizer):
    script = {"What is 78 * 6?": ("468", [CODE, "So the answer is 468."])}
    rollouts, engine = rollouts_for(tokenizer, script)
    text, tool = rollouts.texts[0], rollouts.from_tool[0]
    assert f"{OUTPUT_OPEN}468\n```\n" in text and text.endswith("So the answer is 468.")
    tool_tokens = [t for t, mine in zip(rollouts.completion_ids[0], tool) if mine]
    assert tokenizer.decode(tool_tokens) == output_block("468\n")  # exactly the output block is the tool's
    assert rollouts.answer_texts[0] == "So the answer is 468."  # graded after the last output
    assert rollouts.tool_calls[0][0].status == "ok"
    # the second engine call continued the first completion: prompt + model turn + tool output
    assert [(calls, n) for calls, n, _, _ in engine.calls] == [(1, 1), (1, 1)] and engine.calls[0][3] == [STOP]
    mask = rollouts.completion_mask()[0]
    assert mask.tolist()[: len(tool)] == [1.0 - t for t in tool] and sum(tool) > 0
    _, _, packed_mask = rollouts.pack([0], tokenizer.pad_token_id)
    assert torch.equal(packed_mask[0], mask[: packed_mask.shape[1]])
    assert rollouts.sampled_tokens(0) == len(tool) - sum(tool)
    score_rollouts(rollouts, {"accuracy": 1.0, "tool_format": 0.1}, 200)
    assert rollouts.components["accuracy"].tolist() == [1.0] and rollouts.components["tool_format"].tolist() == [1.0]


def test_an_answer_only_the_tool_printed_is_not_the_models(tokenizer):
    """The verifier grades the text after the last output: 468 printed by the tool, then nothing, scores 0."""
    script = {"What is 78 * 6?": ("468", [CODE, ""])}
    rollouts, _ = rollouts_for(tokenizer, script)
    assert "468" in rollouts.texts[0] and rollouts.answer_texts[0] == ""
    score_rollouts(rollouts, {"accuracy": 1.0}, 200)
    assert rollouts.components["accuracy"].tolist() == [0.0]


def test_the_tool_call_limit_ends_a_completion_at_its_extra_block(tokenizer):
    code = "```python\nprint(2 + 2)\n```\n"
    script = {"Count.": ("4", [code, code, "Maybe 4.\n" + code, "never reached"])}
    rollouts, engine = rollouts_for(tokenizer, script, max_calls=2)
    assert len(rollouts.tool_calls[0]) == 2 and len(engine.calls) == 3  # two calls ran; the third block ended it
    assert rollouts.texts[0].count(OUTPUT_OPEN) == 2 and "never reached" not in rollouts.texts[0]
    assert rollouts.answer_texts[0] == "Maybe 4.\n"  # the unrun block is not graded as the answer
    assert not rollouts.truncated[0]


def test_the_token_budget_covers_model_and_tool_tokens(tokenizer):
    long_print = "```python\nprint('ab ' * 400)\n```\n"
    script = {"Spell.": ("x", [long_print, "done"])}
    for budget in (12, 30, 60):
        rollouts, engine = rollouts_for(tokenizer, script, max_new_tokens=budget)
        assert len(rollouts.completion_ids[0]) <= budget and rollouts.truncated[0]
        assert len(engine.calls) <= 2 and all(limit <= budget for _, _, limits, _ in engine.calls for limit in limits)
    # a budget that leaves room after the tool's output: the next turn is asked for exactly what is left
    rollouts, engine = rollouts_for(tokenizer, {"What is 78 * 6?": ("468", [CODE, "468"])}, max_new_tokens=200)
    used = len(rollouts.completion_ids[0]) - len(tokenizer("468", add_special_tokens=False).input_ids) - 1  # - answer, EOS
    assert engine.calls[1][2] == [200 - used]


def test_the_sandbox_truncates_long_output_and_a_failing_call_does_not_stop_the_rollout(tokenizer):
    from tools import Limits, PythonSandbox

    sandbox = PythonSandbox(Limits(output_chars=60, wall_seconds=5), pool_size=1)
    try:
        script = {"Loud.": ("1", ["```python\nprint('x' * 5000)\n```\n", "```python\n1 / 0\n```\n", "It is 1."])}
        rollouts, _ = rollouts_for(tokenizer, script, max_new_tokens=400, max_calls=3, tool=sandbox)
    finally:
        sandbox.close()
    first, second = rollouts.tool_calls[0]
    assert first.status == "ok" and len(first.output) < 200 and "x" * 20 in first.output  # cut to its start and end
    assert second.status == "error" and "ZeroDivisionError" in second.output
    assert "ZeroDivisionError" in rollouts.texts[0] and rollouts.answer_texts[0] == "It is 1."
    metrics = batch_tool_metrics(rollouts.tool_calls, [1.0])
    assert metrics["tools/calls_per_completion"] == 2 and metrics["tools/error_rate"] == 0.5
    assert metrics["tools/accuracy_with_call"] == 1.0 and "tools/accuracy_without_call" not in metrics


def test_all_completions_of_a_turn_go_to_the_engine_together(tokenizer):
    script = {f"What is {a} * 3?": (str(a * 3), [f"```python\nprint({a} * 3)\n```\n", f"It is {a * 3}."])
              for a in (11, 12, 13)}
    script["What is 2 + 2?"] = ("4", ["4"])  # no tool call: done after the first engine call
    rollouts, engine = rollouts_for(tokenizer, script, group_size=2)
    assert [(prompts, n) for prompts, n, _, _ in engine.calls] == [(4, 2), (6, 1)]  # 4 prompts x 2, then 6 together
    score_rollouts(rollouts, {"accuracy": 1.0}, 200)
    assert rollouts.components["accuracy"].tolist() == [1.0] * 8
    metrics = batch_tool_metrics(rollouts.tool_calls, rollouts.components["accuracy"].tolist())
    assert metrics["tools/used_fraction"] == 0.75 and metrics["tools/accuracy_without_call"] == 1.0


def test_later_turns_are_seeded_from_their_completion_alone(tokenizer):
    """With prompt seeds, each later turn gets a seed drawn from its prompt's seed, its completion and the turn: the
    same whichever other prompts share the engine call (so 1 and N ranks sample it alike), distinct per completion."""
    script = {f"What is {a} * 3?": (str(a * 3), [f"```python\nprint({a} * 3)\n```\n", f"It is {a * 3}."])
              for a in (11, 12)}
    _, engine = rollouts_for(tokenizer, script, group_size=2, seeds=[100, 200])
    assert engine.seeds[0] == [100, 200]
    later = engine.seeds[1]
    assert len(later) == 4 and len(set(later)) == 4 and not {100, 101, 200, 201} & set(later)
    alone = {q: a for q, a in list(script.items())[1:]}
    _, engine_alone = rollouts_for(tokenizer, alone, group_size=2, seeds=[200])
    assert engine_alone.seeds[1] == later[2:]
    _, unseeded = rollouts_for(tokenizer, script, group_size=2)
    assert unseeded.seeds == [None, None]


def mark_tool_tokens(rollouts: Rollouts) -> Rollouts:
    """Mark the 2nd and 3rd token of every completion as a tool's (what the distributed test trains on)."""
    rollouts.from_tool = [[1 if k in (1, 2) else 0 for k in range(len(c))] for c in rollouts.completion_ids]
    return rollouts


def test_the_policy_loss_has_no_gradient_on_tool_tokens(tiny_model):
    """Through the shared-prompt forward and the plain one: the loss's gradient on the log-prob of every tool token
    is exactly 0, and on the model's own tokens it is not."""
    from reasoning_rl.losses import policy_loss
    from reasoning_rl.rollout import encode_prompts
    from test_efficient_update import MIXED, batch

    rollouts = mark_tool_tokens(batch(MIXED, seed=1))
    policy, pad = load_policy(str(tiny_model)), 0
    rows = [i for i in range(len(rollouts)) if len(rollouts.completion_ids[i]) > 3]
    for prompts in (None, encode_prompts(policy, rollouts, rows, pad, False, 8)):
        logprobs, _, mask = row_logprobs(policy, rollouts, rows, pad, False, prompts=prompts)
        logprobs.retain_grad()
        advantages = torch.linspace(-1, 1, len(rows))
        loss, _ = policy_loss(logprobs, old_logprobs=logprobs.detach(), advantages=advantages, mask=mask)
        loss.backward(retain_graph=prompts is not None)
        tool = torch.zeros_like(mask)
        tool[:, 1:3] = 1
        assert (logprobs.grad[tool.bool()] == 0).all() and mask[tool.bool()].sum() == 0
        assert (logprobs.grad[mask.bool()] != 0).any()


def test_ppo_puts_the_reward_on_the_last_sampled_token_when_tool_output_ends_a_completion():
    from reasoning_rl.advantages import gae, last_sampled

    mask = torch.tensor([[1.0, 1.0, 0.0, 0.0], [1.0, 0.0, 1.0, 0.0], [1.0, 1.0, 1.0, 1.0]])  # tool output: the 0s
    last = last_sampled(mask)
    assert last.tolist() == [1, 2, 3]
    rewards = torch.zeros(3, 4)
    rewards[torch.arange(3), last] = 1.0
    advantages, _ = gae(rewards, torch.zeros(3, 4), mask, 1.0, 1.0)
    assert advantages.tolist() == [[1.0, 1.0, 0.0, 0.0], [1.0, 0.0, 1.0, 0.0], [1.0] * 4]  # tool tokens: no step


def test_online_dpo_sums_the_log_probs_of_the_models_tokens_only(tiny_model):
    from reasoning_rl.dpo import DPOUpdate
    from reasoning_rl.logprobs import completion_logprobs, pack
    from test_efficient_update import MIXED, batch

    rollouts = mark_tool_tokens(batch(MIXED, seed=2))
    policy = load_policy(str(tiny_model))
    update = DPOUpdate()
    update.pad_id, update.autocast = 0, False
    rows = list(range(len(rollouts)))
    ids, attention, _ = pack(rollouts.prompt_ids, rollouts.completion_ids, 0)
    with torch.no_grad():
        every, _ = completion_logprobs(policy, ids, attention, ids.shape[1] - max(map(len, rollouts.prompt_ids)))
        ours = update.sequence_logprobs(policy, rollouts, rows)
    expected = torch.tensor([sum(v for k, v in enumerate(every[i, : len(c)].tolist()) if k not in (1, 2))
                             for i, c in enumerate(rollouts.completion_ids)])
    assert torch.allclose(ours, expected, atol=1e-5)


def test_the_tool_rewards_pay_for_a_call_that_ran_and_for_its_result_read_back():
    from rewards.format import tool_answer_reward, tool_format_reward

    ran = "Let me compute.\n```python\nprint(96 * 3)\n```\n```output\n288\n```\n"
    failed = "```python\nprint(x)\n```\n```output\nNameError: name 'x' is not defined\n```\n"
    assert tool_format_reward(ran + "The answer is 288.") == 1.0
    assert tool_format_reward(ran) == 0.0  # nothing after the output: no answer
    assert tool_format_reward(failed + "The answer is 288.") == 0.0
    assert tool_format_reward("The answer is 288.") == 0.0  # no call
    assert tool_answer_reward(ran + "So 96 * 3 = 288.") == 1.0
    assert tool_answer_reward(ran + "It is 289.") == 0.0  # not what the tool printed
    assert tool_answer_reward(ran + "This is a Python function.") == 0.0
    assert tool_answer_reward(failed + "The answer is 288.") == 0.0
