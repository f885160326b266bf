"""Per-token log-probabilities of completions under a causal LM.

``completion_logprobs`` is the plain forward (each row its prompt and completion); ``EncodedPrompts``
encodes each distinct prompt once for all the completions that continue it (the shared-prompt
forward); both end in ``selective_log_softmax``, which never holds a float32 copy of all the logits.
"""

from __future__ import annotations

import torch
from transformers import DynamicCache

from runtime.distributed import native_bf16


def pad_left(seqs: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``ids [n, L]`` and ``mask [n, L]`` (long) with each sequence at the right end (prompts)."""
    L = max(map(len, seqs))
    ids, mask = torch.full((len(seqs), L), pad_id, dtype=torch.long), torch.zeros((len(seqs), L), dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, L - len(s) :], mask[i, L - len(s) :] = torch.tensor(s, dtype=torch.long), 1
    return ids, mask


def pad_right(seqs: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``ids [n, T]`` and ``mask [n, T]`` (long) with each sequence at the left end (completions); T >= 1."""
    T = max(1, max(map(len, seqs)))
    ids, mask = torch.full((len(seqs), T), pad_id, dtype=torch.long), torch.zeros((len(seqs), T), dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, : len(s)], mask[i, : len(s)] = torch.tensor(s, dtype=torch.long), 1
    return ids, mask


def pack(prompts: list[list[int]], completions: list[list[int]], pad_id: int):
    """Left-pad prompts and right-pad completions into one batch.

    Returns ``input_ids [B, P + T]``, ``attention_mask [B, P + T]``, ``completion_mask [B, T]``
    where P and T are the longest prompt and completion. Position ids are derived from the
    attention mask (``position_ids``), so left padding does not shift positions.
    """
    (prompt_ids, prompt_mask), (completion_ids, completion_mask) = pad_left(prompts, pad_id), pad_right(completions, pad_id)
    return (torch.cat([prompt_ids, completion_ids], 1), torch.cat([prompt_mask, completion_mask], 1),
            completion_mask.float())


def device_of(model: torch.nn.Module) -> torch.device:
    """Where ``model``'s weights are (a DDP wrapper's too): every input of its forward goes there."""
    return next(model.parameters()).device


def position_ids(attention_mask: torch.Tensor) -> torch.Tensor:
    return (attention_mask.cumsum(-1) - 1).clamp(min=0)


class SelectiveLogSoftmax(torch.autograd.Function):
    """``log softmax(logits)[target]`` per token, with its gradient written straight into the logits' dtype.

    Forward: ``x[target] - logsumexp(x)`` in float32, ``chunk`` tokens at a time, so no float32 copy of
    all ``[N, V]`` logits exists at once. Backward: ``d/dx_v = g * (1[v = target] - softmax(x)_v)``,
    computed from the saved logits and log-sum-exp in the same chunks. Autograd through
    ``float()``, ``logsumexp`` and ``gather`` gives the same numbers with several more passes over the
    ``[N, V]`` tensor (a float32 copy, its gradient, a dense zero tensor for ``gather``): over a
    49,152-word vocabulary that was half of the update's time here.
    """

    @staticmethod
    def forward(ctx, logits, targets, with_entropy: bool, chunk: int):
        flat, ids = logits.reshape(-1, logits.shape[-1]), targets.reshape(-1)  # [N, V], [N]
        logps, lses, entropies = [], [], []
        for x, t in zip(flat.split(chunk), ids.split(chunk)):
            x = x.float()  # [n, V]
            lse = torch.logsumexp(x, dim=-1)  # [n]
            logps.append(x.gather(-1, t[:, None]).squeeze(-1) - lse)
            lses.append(lse)
            if with_entropy:  # H = lse - sum_v p_v x_v
                entropies.append(lse - (torch.exp(x - lse[:, None]) * x).sum(-1))
        ctx.save_for_backward(logits, targets, torch.cat(lses))
        ctx.chunk = chunk
        entropy = torch.cat(entropies).view(targets.shape) if with_entropy else None
        return torch.cat(logps).view(targets.shape), entropy

    @staticmethod
    def backward(ctx, grad, _):
        logits, targets, lse = ctx.saved_tensors
        flat, ids, g = logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), grad.reshape(-1).float()
        out = torch.empty_like(flat)  # [N, V] in the logits' dtype
        for start in range(0, len(ids), ctx.chunk):
            rows = slice(start, start + ctx.chunk)
            gi = g[rows, None]  # [n, 1]
            d = torch.exp(flat[rows].float() - lse[rows, None]).mul_(-gi)  # -g softmax(x)
            out[rows] = d.scatter_add_(-1, ids[rows, None], gi)  # + g at the target
        return out.view_as(logits), None, None, None


def selective_log_softmax(logits: torch.Tensor, targets: torch.Tensor, with_entropy: bool = False, chunk: int = 128):
    """``log softmax(logits)[targets]`` in float32, ``chunk`` tokens at a time (``SelectiveLogSoftmax``).

    ``logits [B, T, V]`` (any float dtype), ``targets [B, T]``. Returns ``[B, T]`` log-probs and,
    if asked, ``[B, T]`` entropies (no grad).
    """
    return SelectiveLogSoftmax.apply(logits, targets, with_entropy, chunk)


def completion_logprobs(model, input_ids, attention_mask, num_completion_tokens: int, with_entropy: bool = False,
                        autocast: bool = False, temperature: float = 1.0):
    """Log-probs ``[B, T]`` of the last ``T = num_completion_tokens`` tokens of each row (and entropies).

    Only the logits of the completion positions are computed (``logits_to_keep``).
    """
    T = num_completion_tokens
    with torch.autocast(input_ids.device.type, dtype=torch.bfloat16, enabled=autocast and native_bf16(input_ids.device.type)):
        logits = model(
            input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids(attention_mask),
            logits_to_keep=T + 1, use_cache=False,
        ).logits[:, :-1]  # [B, T, V]: position t predicts token t + 1
    return selective_log_softmax(tempered(logits, temperature), input_ids[:, -T:], with_entropy)


def tempered(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """``logits / T``: the distribution the engine sampled from at temperature T (vLLM and TRL divide the same way).

    The ratio pi_theta / pi_old and the KL must compare the policy that produced the samples, softmax(z / T),
    not softmax(z). T <= 0 (greedy) has no such distribution; the logits are returned as they are.
    """
    return logits / temperature if temperature > 0 and temperature != 1.0 else logits


class EncodedPrompts:
    """Distinct prompts encoded once, for the completions of any of them: Prefix Grouper's shared-prefix
    forward (Liu et al. 2025, arXiv 2506.05433).

    In GRPO the G completions of a group share one prompt, and the plain forward encodes it G times.
    Here the prompts (left-padded, in chunks of ``chunk`` prompts) go through the model once,
    keeping their keys and values (``use_cache=True``) and the logits of their last position, which
    predict each completion's first token. ``logprobs`` then runs any rows' completions on top:
    the cache is indexed out to the rows that read it, and the completions (right-padded, all but
    their last token, which predicts nothing) attend to their prompt's keys and values and to
    themselves, at positions that continue the prompt's.

    Every attention and per-token operation sees the inputs of the plain forward, so log-probs are
    the same up to float rounding; so are the gradients, because the gradients of all rows reading
    a prompt's keys and values are summed into its one encoding, as the plain forward sums them over
    its G copies. With ``separate_backward`` the encoding's outputs are held as leaves: each micro-
    batch's ``backward`` stops there and adds into them, and ``backward()`` here sends the sum through
    the encoding once, so micro-batches of any make-up share one encoding per prompt. Without it the
    gradient flows straight through (one micro-batch). Exact for full-attention decoders
    (transformers' ``DynamicCache``; see ``supports_shared_prompt``).
    """

    def __init__(self, model, prompts: list[list[int]], pad_id: int, autocast: bool = False, chunk: int = 16,
                 separate_backward: bool = False, names: list | None = None):
        n = len(prompts)
        self.index = {name: k for k, name in enumerate(names if names is not None else range(n))}  # owner -> prompt
        self.device = device_of(model)
        ids, self.mask = (t.to(self.device) for t in pad_left(prompts, pad_id))  # [n, P]
        self.autocast = autocast
        parts = []
        with torch.autocast(ids.device.type, dtype=torch.bfloat16, enabled=autocast and native_bf16(ids.device.type)):
            for rows in torch.arange(n).split(chunk):
                out = model(input_ids=ids[rows], attention_mask=self.mask[rows], position_ids=position_ids(self.mask[rows]),
                            use_cache=True, logits_to_keep=1)
                parts.append([out.logits[:, -1]] + [t for layer in out.past_key_values.layers for t in (layer.keys, layer.values)])
        # [n, V] last logits, then per layer keys and values [n, h, P, d]
        self.outputs = [torch.cat(column) if len(parts) > 1 else column[0] for column in zip(*parts)]
        self.separate = separate_backward and torch.is_grad_enabled()
        self.inputs = [t.detach().requires_grad_() for t in self.outputs] if self.separate else self.outputs

    def logprobs(self, model, owner: list[int], completions: list[list[int]], pad_id: int, with_entropy: bool = False,
                 temperature: float = 1.0):
        """``[b, T]`` log-probs (and entropies, or None) of ``completions``, row i continuing the prompt named
        ``owner[i]`` (its position, or its name in ``names``), and the ``[b, T]`` completion mask."""
        ids, mask = (t.to(self.device) for t in pad_right(completions, pad_id))  # [b, T]
        T = ids.shape[1]
        owner = torch.tensor([self.index[o] for o in owner], device=self.device)  # [b] row -> its prompt
        logits = self.inputs[0][owner, None]  # [b, 1, V]: the prompt's last position predicts completion token 0
        # Completion tokens 0..T-2 each predict the next. With T = 1 the model still runs on token 0 (its prediction
        # unused), so that every call runs the same forwards, which ranks of a sharded model must pair up.
        n = max(T - 1, 1)
        kv = self.inputs[1:]
        cache = DynamicCache(ddp_cache_data=[(kv[k][owner], kv[k + 1][owner]) for k in range(0, len(kv), 2)])
        with torch.autocast(ids.device.type, dtype=torch.bfloat16, enabled=self.autocast and native_bf16(ids.device.type)):
            rest = model(
                input_ids=ids[:, :n], past_key_values=cache, use_cache=True,
                attention_mask=torch.cat([self.mask[owner], mask[:, :n]], dim=1),  # [b, P + n]
                position_ids=self.mask.sum(1)[owner, None] + torch.arange(n, device=self.device),  # [b, n]: after the prompt
            ).logits[:, : T - 1]  # [b, T - 1, V]: completion token t predicts token t + 1
        logits = torch.cat([logits.to(rest.dtype), rest], dim=1)  # [b, T, V]
        logps, entropies = selective_log_softmax(tempered(logits, temperature), ids, with_entropy)
        return logps, entropies, mask.float()

    def backward(self) -> None:
        """With ``separate_backward``: the gradients gathered on the encoding's outputs, through the encoding, once."""
        if self.separate:
            pairs = [(out, leaf.grad) for out, leaf in zip(self.outputs, self.inputs) if leaf.grad is not None]
            if pairs:
                torch.autograd.backward([out for out, _ in pairs], [grad for _, grad in pairs])


def supports_shared_prompt(model) -> str | None:
    """None if the shared-prompt forward (``EncodedPrompts``) is exact for ``model``, else the reason it is not."""
    if getattr(model, "is_gradient_checkpointing", False):
        return "gradient checkpointing drops the key/value cache that carries the prompt"
    layer_types = getattr(model.config, "layer_types", None) or []
    if any(t != "full_attention" for t in layer_types) or getattr(model.config, "use_sliding_window", False):
        return "the model has sliding-window layers, whose cache keeps only the last window of the prompt"
    return None
