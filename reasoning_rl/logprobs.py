"""Per-token log-probabilities of completions under a causal LM, without a [B, T, V] float32 copy."""

from __future__ import annotations

import torch


def pack(prompts: list[list[int]], completions: list[list[int]], pad_id: int):
    """Left-pad prompts and right-pad completions into one batch.

    Returns ``input_ids [B, P + T]``, ``attention_mask [B, P + T]``, ``completion_mask [B, T]``
    where P and T are the longest prompt and completion. Position ids are derived from the
    attention mask (``position_ids``), so left padding does not shift positions.
    """
    P, T = max(map(len, prompts)), max(1, max(map(len, completions)))
    B = len(prompts)
    input_ids = torch.full((B, P + T), pad_id, dtype=torch.long)
    attention = torch.zeros((B, P + T), dtype=torch.long)
    for i, (p, c) in enumerate(zip(prompts, completions)):
        input_ids[i, P - len(p) : P] = torch.tensor(p)
        input_ids[i, P : P + len(c)] = torch.tensor(c, dtype=torch.long)
        attention[i, P - len(p) : P + len(c)] = 1
    return input_ids, attention, attention[:, P:].float()


def position_ids(attention_mask: torch.Tensor) -> torch.Tensor:
    return (attention_mask.cumsum(-1) - 1).clamp(min=0)


def selective_log_softmax(logits: torch.Tensor, targets: torch.Tensor, with_entropy: bool = False, chunk: int = 8):
    """``log softmax(logits)[targets]`` row-chunk by row-chunk, in float32 per chunk only.

    ``logits [B, T, V]`` (any float dtype), ``targets [B, T]``. Returns ``[B, T]`` log-probs and,
    if asked, ``[B, T]`` entropies (no grad).
    """
    logps, entropies = [], []
    for rows, ids in zip(logits.split(chunk), targets.split(chunk)):
        rows = rows.float()  # [b, T, V]
        lse = torch.logsumexp(rows, dim=-1)  # [b, T]
        logps.append(rows.gather(-1, ids.unsqueeze(-1)).squeeze(-1) - lse)
        if with_entropy:
            with torch.no_grad():
                p = torch.softmax(rows, dim=-1)
                entropies.append(lse - (p * rows).sum(-1))
    return torch.cat(logps), (torch.cat(entropies) if with_entropy else None)


def completion_logprobs(model, input_ids, attention_mask, num_completion_tokens: int, with_entropy: bool = False, autocast: bool = False):
    """Log-probs ``[B, T]`` of the last ``T = num_completion_tokens`` tokens of each row (and entropies).

    Only the logits of the completion positions are computed (``logits_to_keep``).
    """
    T = num_completion_tokens
    with torch.autocast(input_ids.device.type, dtype=torch.bfloat16, enabled=autocast):
        logits = model(
            input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids(attention_mask),
            logits_to_keep=T + 1, use_cache=False,
        ).logits[:, :-1]  # [B, T, V]: position t predicts token t + 1
    return selective_log_softmax(logits, input_ids[:, -T:], with_entropy)
