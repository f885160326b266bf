"""Multi-turn rollouts with a tool: the model writes code, a sandbox runs it, its output joins the context.

``ToolGenerator`` wraps an engine (``generation.Generator``) and a ``tools.Tool`` behind the same ``generate``
interface, so the trainers, the held-out evaluation and ``evaluate.py`` sample with tools without knowing it:

1. every completion of the batch is generated in one engine call, stopped at a code block's closing fence
   (``tools.format.STOP``);
2. the code blocks the completions end with run in the sandbox, ``pool_size`` at a time, and each output is appended
   as an output block (``tools.format.output_block``) of tokens that the tool, not the model, wrote;
3. the completions that called the tool go on, all together, in the next engine call (each prompt is the original
   prompt plus everything so far); until every completion has ended.

Limits: ``max_calls`` tool calls per completion (a completion that writes one more code block ends at its fence;
that block is not graded as its answer), and ``max_new_tokens`` for everything after the prompt, model and tool tokens together (a completion
that reaches it is truncated, as a single-turn one is). A completion that keeps stopping at fences without code
(an unlabelled ```) ends after ``2 * max_calls + 2`` engine calls, truncated.

Per token, ``Completion.from_tool`` says who wrote it: 1 for the tool's output, which stays in the context but is
masked out of the loss, the log-prob ratio and the mismatch correction (``Rollouts.token_mask``). The answer is
graded in ``Completion.answer_text``, the text after the last output block.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from reasoning_rl.generation import Completion, Generator, prompt_seeds
from tools import Tool, ToolResult
from tools.format import STOP, before_pending_code, output_block, pending_code
from tools.metrics import tool_metrics


@dataclass
class Turns:
    """One completion being written over several engine calls."""

    prompt: list[int]
    seed: int | None = None  # the seed its later turns are drawn from (None: the engine's own stream)
    tokens: list[int] = field(default_factory=list)
    from_tool: list[int] = field(default_factory=list)
    logprobs: list[float] | None = field(default_factory=list)
    calls: list[ToolResult] = field(default_factory=list)
    text_since_output: str = ""  # the model's text since the last tool output: where a code block is looked for
    engine_calls: int = 0
    code: str | None = None  # the code to run before the next engine call
    done: bool = False
    truncated: bool = False

    def add_model_turn(self, sample: Completion, tokenizer) -> None:
        self.tokens += sample.token_ids
        self.from_tool += [0] * len(sample.token_ids)
        self.logprobs = None if self.logprobs is None or sample.logprobs is None else self.logprobs + sample.logprobs
        self.text_since_output += tokenizer.decode(sample.token_ids, skip_special_tokens=True)
        self.engine_calls += 1

    def add_tool_output(self, result: ToolResult, tokenizer, budget: int) -> None:
        """The output block's tokens, cut at the token budget (the completion is then truncated)."""
        block = tokenizer(output_block(result.output), add_special_tokens=False).input_ids[: budget - len(self.tokens)]
        self.tokens += block
        self.from_tool += [1] * len(block)
        self.logprobs = None if self.logprobs is None else self.logprobs + [0.0] * len(block)
        self.calls.append(result)
        self.text_since_output, self.code = "", None
        if len(self.tokens) >= budget:
            self.done = self.truncated = True


class ToolGenerator:
    """A ``Generator`` whose completions may call ``tool`` (see the module docstring); ``sync_weights`` goes to the
    engine."""

    def __init__(self, engine: Generator, tokenizer, tool: Tool, max_calls: int = 2):
        self.engine, self.tokenizer, self.tool, self.max_calls = engine, tokenizer, tool, max_calls

    def sync_weights(self, model: torch.nn.Module) -> float:
        return self.engine.sync_weights(model)

    def generate(self, prompt_ids: list[list[int]], n: int, temperature: float, top_p: float,
                 max_new_tokens: int, stop: list[str] | None = None,
                 seeds: list[int] | None = None) -> list[list[Completion]]:
        """``n`` completions of each prompt, each with as many tool calls as it makes (up to ``max_calls``). ``stop``
        is not used: the code block's closing fence is the stop of every turn. With ``seeds``, a later turn of
        completion ``j`` of prompt ``i`` is sampled with a seed drawn from ``seeds[i] + j`` and the turn."""
        seqs = [Turns(p, None if seeds is None else seeds[i] + j) for i, p in enumerate(prompt_ids) for j in range(n)]
        first = self.engine.generate(prompt_ids, n, temperature, top_p, max_new_tokens, stop=[STOP], seeds=seeds)
        self.advance(seqs, [s for group in first for s in group], max_new_tokens)
        while pending := [s for s in seqs if not s.done]:
            self.run_tools([s for s in pending if s.code is not None], max_new_tokens)
            going = [s for s in pending if not s.done]
            if not going:
                break
            turn_seeds = None if seeds is None else [prompt_seeds(s.seed, s.engine_calls, count=1)[0] for s in going]
            outputs = self.engine.generate([s.prompt + s.tokens for s in going], 1, temperature, top_p,
                                           [max_new_tokens - len(s.tokens) for s in going], stop=[STOP],
                                           seeds=turn_seeds)
            self.advance(going, [s for (s,) in outputs], max_new_tokens)
        completions = [self.completion(s) for s in seqs]
        return [completions[i : i + n] for i in range(0, len(completions), n)]

    def advance(self, seqs: list[Turns], samples: list[Completion], budget: int) -> None:
        """Add each engine output to its completion, and decide what happens next: a tool call, another engine call
        (a fence without code), or the end (EOS, the token budget, a call past ``max_calls``, the turn limit)."""
        for seq, sample in zip(seqs, samples):
            seq.add_model_turn(sample, self.tokenizer)
            if sample.truncated or len(seq.tokens) >= budget or seq.engine_calls >= 2 * self.max_calls + 2:
                seq.done, seq.truncated = True, sample.stopped_at is not None or sample.truncated
            elif sample.stopped_at is None:  # EOS: the model finished
                seq.done = True
            else:
                seq.code = pending_code(seq.text_since_output)
                seq.done = seq.code is not None and len(seq.calls) >= self.max_calls  # one call too many: it ends

    def run_tools(self, seqs: list[Turns], budget: int) -> None:
        """Run every pending code block (through ``run_many`` when the tool has it: the sandbox's pool at once)."""
        codes = [s.code for s in seqs]
        results = self.tool.run_many(codes) if hasattr(self.tool, "run_many") else [self.tool.run(c) for c in codes]
        for seq, result in zip(seqs, results):
            seq.add_tool_output(result, self.tokenizer, budget)

    def completion(self, seq: Turns) -> Completion:
        """The finished completion: its tokens, who wrote each, its calls, and the text to grade."""
        text = self.tokenizer.decode(seq.tokens, skip_special_tokens=True)
        answer = None
        if seq.calls:
            last = max(i for i, t in enumerate(seq.from_tool) if t)
            answer = self.tokenizer.decode(seq.tokens[last + 1 :], skip_special_tokens=True)
        if seq.code is not None:  # it ended at a call past max_calls: that code is not its answer
            answer = before_pending_code(text if answer is None else answer)
        return Completion(seq.tokens, text, seq.truncated, seq.logprobs, None, seq.from_tool, seq.calls, answer)


def make_tool(name: str, timeout: float, output_chars: int, pool_size: int = 2) -> Tool | None:
    """The tool that ``--tools NAME`` names: ``python`` (the local sandbox), or None for ``none``."""
    if name == "none":
        return None
    if name != "python":
        raise ValueError(f"unknown tool {name!r}; choose python or none")
    from tools import Limits, PythonSandbox

    return PythonSandbox(Limits(wall_seconds=timeout, cpu_seconds=max(1, int(timeout)), output_chars=output_chars),
                         pool_size=pool_size)


def with_tools(engine: Generator, tokenizer, tool: Tool | None, max_calls: int) -> Generator:
    """The engine itself without a tool; with one, a ``ToolGenerator`` around it."""
    return engine if tool is None else ToolGenerator(engine, tokenizer, tool, max_calls)


def batch_tool_metrics(calls: list[list[ToolResult]], correct: list[float] | None) -> dict[str, float]:
    """``tools/*`` of a step (``tools.metrics.tool_metrics``): ``calls`` per completion, ``correct`` its accuracy."""
    return tool_metrics([[r.status for r in row] for row in calls], correct, sum(r.seconds for row in calls for r in row))
