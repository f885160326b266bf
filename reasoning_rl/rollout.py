"""Rollouts: sample G completions per prompt, score them, and hold them as typed tensors."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch

from data_prep import Problem, render_prompt
from reasoning_rl.logprobs import EncodedPrompts, completion_logprobs, device_of, pack
from rewards import EVAL_TIMEOUT, REWARDS, Verdict, soft_overlong_penalty


@dataclass
class Rollouts:
    problems: list[Problem]  # [B] one per group
    prompts: list[str]  # [B] rendered prompt text
    prompt_ids: list[list[int]]  # [B * G] prompt tokens (repeated G times)
    completion_ids: list[list[int]]  # [B * G] sampled tokens, exactly as the engine produced them
    texts: list[str]  # [B * G] decoded completions
    truncated: torch.Tensor  # [B * G] bool, cut off at max_new_tokens
    group_size: int  # G
    rewards: torch.Tensor = field(default=None)  # [B * G] weighted sum of the components
    components: dict[str, torch.Tensor] = field(default_factory=dict)  # name -> [B * G]
    verdicts: list[Verdict | None] = field(default_factory=list)  # [B * G] the accuracy verifier's, None if not graded
    engine_logprobs: list[list[float]] | None = None  # [B * G][T_i] the engine's log-prob of each sampled token (vLLM)
    # with tools (reasoning_rl/tool_use.py), else None:
    from_tool: list[list[int]] | None = None  # [B * G][T_i] 1 where a tool wrote the token: context, never trained on
    tool_calls: list[list] | None = None  # [B * G] each completion's ToolResults
    answer_texts: list[str | None] | None = None  # [B * G] the text after the last tool output (None: the whole text)

    def __len__(self) -> int:
        return len(self.completion_ids)

    @property
    def answers(self) -> list[str | None]:  # [B * G]
        return [p.answer for p in self.problems for _ in range(self.group_size)]

    @property
    def graded_texts(self) -> list[str]:  # [B * G] what the verifiers grade
        if self.answer_texts is None:
            return self.texts
        return [t if a is None else a for t, a in zip(self.texts, self.answer_texts)]

    def token_mask(self, rows: list[int], T: int) -> torch.Tensor:
        """``[len(rows), T]`` 1.0 on the tokens the model sampled (the loss's), 0 on padding and on tool output."""
        lengths = torch.tensor([len(self.completion_ids[i]) for i in rows])
        mask = (torch.arange(T) < lengths[:, None]).float()
        if self.from_tool is not None:
            for k, i in enumerate(rows):
                tool = torch.tensor(self.from_tool[i][:T], dtype=torch.float)
                mask[k, : len(tool)] *= 1 - tool
        return mask

    def sampled_tokens(self, i: int) -> int:
        """Row ``i``'s tokens that the model sampled (tool output excluded): what the loss counts."""
        return len(self.completion_ids[i]) - (sum(self.from_tool[i]) if self.from_tool is not None else 0)

    def engine_logprob_tensor(self, rows: list[int], T: int, device: torch.device | str = "cpu") -> torch.Tensor | None:
        """``[len(rows), T]`` the engine's log-probs of ``rows`` (zeros on padding), or None when the engine gave none."""
        if self.engine_logprobs is None:
            return None
        out = torch.zeros(len(rows), T)
        for k, i in enumerate(rows):
            values = self.engine_logprobs[i][:T]
            out[k, : len(values)] = torch.tensor(values)
        return out.to(device)

    def completion_mask(self) -> torch.Tensor:
        """``[B * G, T]`` 1.0 on the sampled completion tokens (``token_mask``), T the longest completion (at least 1)."""
        return self.token_mask(list(range(len(self))), max(1, max(map(len, self.completion_ids))))

    def pack(self, rows: list[int], pad_id: int, device: torch.device | str = "cpu"):
        """``input_ids [b, P + T]``, ``attention_mask [b, P + T]`` (tool output attended to) and ``completion_mask
        [b, T]`` (``token_mask``: tool output left out) for ``rows``, on ``device``."""
        ids, attention, mask = pack([self.prompt_ids[i] for i in rows], [self.completion_ids[i] for i in rows], pad_id)
        if self.from_tool is not None:
            mask = self.token_mask(rows, mask.shape[1])
        return ids.to(device), attention.to(device), mask.to(device)

    def select_groups(self, keep: torch.Tensor) -> "Rollouts":
        """The groups where ``keep [B]`` is True."""
        groups = keep.nonzero().flatten().tolist()
        rows = [g * self.group_size + j for g in groups for j in range(self.group_size)]
        return Rollouts(
            [self.problems[g] for g in groups], [self.prompts[g] for g in groups],
            [self.prompt_ids[i] for i in rows], [self.completion_ids[i] for i in rows], [self.texts[i] for i in rows],
            self.truncated[rows], self.group_size, self.rewards[rows], {k: v[rows] for k, v in self.components.items()},
            [self.verdicts[i] for i in rows] if self.verdicts else [],
            *[None if x is None else [x[i] for i in rows]
              for x in (self.engine_logprobs, self.from_tool, self.tool_calls, self.answer_texts)],
        )

    @staticmethod
    def concat(parts: list["Rollouts"]) -> "Rollouts":
        first = parts[0]
        return Rollouts(
            [p for r in parts for p in r.problems], [p for r in parts for p in r.prompts],
            [x for r in parts for x in r.prompt_ids], [x for r in parts for x in r.completion_ids],
            [x for r in parts for x in r.texts], torch.cat([r.truncated for r in parts]), first.group_size,
            torch.cat([r.rewards for r in parts]), {k: torch.cat([r.components[k] for r in parts]) for k in first.components},
            [v for r in parts for v in r.verdicts],
            *[None if any(getattr(r, name) is None for r in parts) else [x for r in parts for x in getattr(r, name)]
              for name in ("engine_logprobs", "from_tool", "tool_calls", "answer_texts")],
        )


def collect_rollouts(generator, tokenizer, problems: list[Problem], template: str, group_size: int,
                     temperature: float, top_p: float, max_new_tokens: int, seeds: list[int] | None = None) -> Rollouts:
    """One batched engine call: ``group_size`` samples for each problem (from its seed in ``seeds``, if given)."""
    prompts = [render_prompt(p.problem, template, tokenizer) for p in problems]
    prompt_ids = [tokenizer(text, add_special_tokens=False).input_ids for text in prompts]
    outputs = generator.generate(prompt_ids, group_size, temperature, top_p, max_new_tokens, seeds=seeds)
    samples = [s for group in outputs for s in group]
    engine_logprobs = None if any(s.logprobs is None for s in samples) else [s.logprobs for s in samples]
    with_tools = any(s.from_tool is not None for s in samples)  # a tools.ToolGenerator sampled them
    return Rollouts(
        problems, prompts, [ids for ids in prompt_ids for _ in range(group_size)],
        [s.token_ids for s in samples], [s.text for s in samples],
        torch.tensor([s.truncated for s in samples]), group_size, engine_logprobs=engine_logprobs,
        from_tool=[s.from_tool for s in samples] if with_tools else None,
        tool_calls=[s.tool_calls for s in samples] if with_tools else None,
        answer_texts=[s.answer_text for s in samples] if with_tools else None,
    )


def score_rollouts(rollouts: Rollouts, weights: dict[str, float], max_new_tokens: int, overlong_cache: int = 0,
                   open_ended_scorer: Callable[[list[str], list[str]], list[float]] | None = None,
                   verify_timeout: float = EVAL_TIMEOUT, verify_budget: float | None = None) -> None:
    """Fill ``rollouts.rewards``, ``rollouts.components`` and ``rollouts.verdicts`` in place.

    Verifiable prompts (with a reference answer) get ``sum_k weights[k] * REWARDS[k]``; open-ended
    prompts (answer None) get ``open_ended_scorer(questions, completions)`` (a trained reward model,
    given the raw questions before the template) as the component ``reward_model``. DAPO's soft overlong penalty is added as ``overlong``.
    A format reward (``register(..., format_reward=True)``) scores 0 for a truncated completion.
    A reward with a batched ``verdicts`` form (accuracy) grades the batch in parallel, each completion under
    ``verify_timeout`` seconds and the batch under ``verify_budget`` seconds (unscored: 0, a timeout).
    """
    unknown = set(weights) - set(REWARDS)
    if unknown:
        raise ValueError(f"unknown reward(s) {sorted(unknown)}; known: {sorted(REWARDS)}")
    answers, texts, n = rollouts.answers, rollouts.graded_texts, len(rollouts)
    verifiable = torch.tensor([a is not None for a in answers])
    total = torch.zeros(n)
    for name, weight in weights.items():
        batched = getattr(REWARDS[name], "verdicts", None)
        if batched is not None:
            rows = verifiable.nonzero().flatten().tolist()
            graded = batched([texts[i] for i in rows], [answers[i] for i in rows], verify_timeout, verify_budget)
            verdicts = [None] * n
            for i, verdict in zip(rows, graded):
                verdicts[i] = verdict
            values = torch.tensor([float(v.correct) if v else 0.0 for v in verdicts])
            rollouts.verdicts = verdicts
        else:
            read = rollouts.texts if getattr(REWARDS[name], "whole_text", False) else texts
            values = torch.tensor([REWARDS[name](t, a) if a is not None else 0.0 for t, a in zip(read, answers)])
            if getattr(REWARDS[name], "format_reward", False):  # a shape is earned by a finished completion only
                values = values * ~rollouts.truncated
        rollouts.components[name] = values
        total += weight * values
    if not verifiable.all():
        if open_ended_scorer is None:
            raise ValueError("some prompts have no reference answer; pass a reward model to score them")
        rows = (~verifiable).nonzero().flatten().tolist()
        prompts = [rollouts.problems[i // rollouts.group_size].problem for i in rows]
        scores = torch.zeros(n)
        scores[rows] = torch.tensor(open_ended_scorer(prompts, [texts[i] for i in rows]), dtype=torch.float)
        rollouts.components["reward_model"] = scores
        total += scores
    if overlong_cache > 0:
        penalty = torch.tensor([soft_overlong_penalty(len(c), max_new_tokens, overlong_cache) for c in rollouts.completion_ids])
        rollouts.components["overlong"] = penalty
        total += penalty
    rollouts.rewards = total


def micro_batches(rollouts: Rollouts, size: int, rows: list[int] | None = None) -> list[list[int]]:
    """Row indices (all, or ``rows``) in micro-batches of ``size``, similar lengths together (less padding), the
    longest first.

    Longest first: the first micro-batch's activations are the largest, and the later ones fit in the memory they
    freed. Shortest first, every micro-batch needs larger blocks than the allocator holds free, and CPU malloc kept
    the freed ones: 7.8 GiB held free against 1.9 GiB in use after one GSM8K-shaped update
    (``scripts/bench/bench_step_memory.py``, docs/efficiency.md). The sort is stable, so rows of equal length stay in
    row order, that is with their group: a shared-prompt forward then has fewer distinct prompts to encode.
    """
    order = sorted(range(len(rollouts)) if rows is None else rows,
                   key=lambda i: -(len(rollouts.prompt_ids[i]) + len(rollouts.completion_ids[i])))
    return [order[i : i + size] for i in range(0, len(order), size)]


def encode_prompts(model, rollouts: Rollouts, rows: list[int], pad_id: int, autocast: bool, chunk: int,
                   separate_backward: bool = False) -> EncodedPrompts:
    """The prompt of each group among ``rows``, encoded once (``logprobs.EncodedPrompts``, named by group)."""
    G = rollouts.group_size
    groups = sorted({i // G for i in rows})
    return EncodedPrompts(model, [rollouts.prompt_ids[g * G] for g in groups], pad_id, autocast, chunk, separate_backward,
                          names=groups)


def row_logprobs(model, rollouts: Rollouts, rows: list[int], pad_id: int, autocast: bool, with_entropy: bool = False,
                 prompts: EncodedPrompts | None = None, temperature: float = 1.0):
    """``[b, T]`` log-probs of the sampled tokens of ``rows`` (and entropies, or None), and their ``[b, T]`` mask.

    With ``prompts`` (``encode_prompts``) the completions run on their group's encoded prompt; without,
    every row encodes its own prompt (``logprobs.completion_logprobs``). Both give the same numbers. The
    log-probs are those of softmax(logits / ``temperature``), the distribution the rollouts were sampled from. The
    mask is ``Rollouts.token_mask``: tool output is attended to but is not the model's, so it is left out.
    """
    if prompts is not None:
        logprobs, entropy, mask = prompts.logprobs(model, [i // rollouts.group_size for i in rows],
                                                   [rollouts.completion_ids[i] for i in rows], pad_id, with_entropy, temperature)
        return logprobs, entropy, rollouts.token_mask(rows, mask.shape[1]).to(mask.device)
    ids, attention, mask = rollouts.pack(rows, pad_id, device_of(model))
    return (*completion_logprobs(model, ids, attention, mask.shape[1], with_entropy, autocast, temperature), mask)


@torch.no_grad()
def per_token(rollouts: Rollouts, pad_id: int, micro_batch_size: int, fn: Callable, device: torch.device | str = "cpu",
              rows: list[int] | None = None) -> torch.Tensor:
    """``[B * G, T]`` on ``device``: ``fn(input_ids, attention_mask, T) -> [b, T]`` over micro-batches of all rows
    (or of ``rows``; the others stay 0), zeros on padding."""
    out = rollouts.completion_mask().zero_().to(device)
    for rows in micro_batches(rollouts, micro_batch_size, rows):
        ids, attention, mask = rollouts.pack(rows, pad_id, device)
        out[rows, : mask.shape[1]] = fn(ids, attention, mask.shape[1]) * mask
    return out


@torch.no_grad()
def rollout_logprobs(model, rollouts: Rollouts, pad_id: int, micro_batch_size: int, autocast: bool,
                     rows: list[int] | None = None, shared_prompt: bool = False, temperature: float = 1.0) -> torch.Tensor:
    """``[B * G, T]`` log-probs of every sampled token (of all rows, or of ``rows``) under ``model`` (zeros on padding),
    on the model's device."""
    out = rollouts.completion_mask().zero_().to(device_of(model))
    batches = micro_batches(rollouts, micro_batch_size, rows)
    prompts = None
    if shared_prompt and batches:
        prompts = encode_prompts(model, rollouts, [i for rows in batches for i in rows], pad_id, autocast, micro_batch_size)
    for rows in batches:
        logprobs, _, mask = row_logprobs(model, rollouts, rows, pad_id, autocast, prompts=prompts, temperature=temperature)
        out[rows, : mask.shape[1]] = logprobs * mask
    return out


def rollout_forwards(rollouts: Rollouts, micro_batch_size: int, rows: list[int] | None = None,
                     shared_prompt: bool = False) -> int:
    """The forward passes ``rollout_logprobs`` runs with these arguments (ranks of a sharded model compare them
    beforehand): one per micro-batch, and with ``shared_prompt`` one per chunk of distinct prompts."""
    batches = micro_batches(rollouts, micro_batch_size, rows)
    groups = {i // rollouts.group_size for rows in batches for i in rows}
    return len(batches) + (-(-len(groups) // micro_batch_size) if shared_prompt else 0)
