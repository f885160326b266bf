"""A Bradley-Terry reward model: a sequence classifier with one output, trained on preference pairs.

The model is ``AutoModelForSequenceClassification(num_labels=1)`` on the policy's architecture:
the language model's backbone with a linear head on the hidden state of the last token. It is
trained with ``losses.bradley_terry_loss`` by ``scripts/train_reward_model.py`` and plugs into
GRPO and PPO through ``RewardModelScorer`` (``--reward-model PATH``), which scores the prompts
that have no reference answer.
"""

from __future__ import annotations

import logging
import warnings

import torch

from data_prep.preferences import ASSISTANT, HUMAN
from reasoning_rl.logprobs import device_of, pad_left, position_ids
from runtime.distributed import native_bf16


def load_reward_model(path: str, tokenizer, dtype: torch.dtype = torch.float32):
    """A sequence classifier with one score. Loaded from a language model, its new head starts at zero
    (every response scores 0: loss log 2, no preference) rather than at a random function."""
    from transformers import AutoModelForSequenceClassification

    # transformers reports a missing head as a "LOAD REPORT" warning; a new head is expected here (it is zeroed
    # below), so that one record is held back (a filter, not the logger's level, which changes what transformers
    # checks) and only weights missing beyond the head are reported
    report = logging.getLogger("transformers.modeling_utils")
    hold_back = HoldBack("LOAD REPORT")
    report.addFilter(hold_back)
    try:
        model, info = AutoModelForSequenceClassification.from_pretrained(path, num_labels=1, dtype=dtype,
                                                                         output_loading_info=True)
    finally:
        report.removeFilter(hold_back)
    model.config.pad_token_id = tokenizer.pad_token_id
    if any(key.startswith("score.") for key in info["missing_keys"]):  # a new head: score everything 0
        torch.nn.init.zeros_(model.score.weight)
    unexpected = [key for key in info["missing_keys"] if not key.startswith("score.")]
    if unexpected:
        warnings.warn(f"{path}: {len(unexpected)} weight(s) missing from the checkpoint were newly initialised: "
                      f"{', '.join(unexpected[:5])}")
    return model


class HoldBack(logging.Filter):
    """Drops the log records whose message contains ``text``."""

    def __init__(self, text: str):
        super().__init__()
        self.text = text

    def filter(self, record: logging.LogRecord) -> bool:
        return self.text not in record.getMessage()


def freeze_lower_layers(model, trainable_layers: int) -> None:
    """Keep gradients only in the top ``trainable_layers`` layers, the final norm and the head
    (0, or at least the model's depth: train everything)."""
    layers = model.base_model.layers
    if trainable_layers <= 0 or trainable_layers >= len(layers):  # all of them
        return
    for p in model.base_model.parameters():
        p.requires_grad_(False)
    for module in [*layers[-trainable_layers:], model.base_model.norm]:
        for p in module.parameters():
            p.requires_grad_(True)


def encode(tokenizer, prompt: str, response: str, max_length: int) -> list[int]:
    """Token ids of ``prompt + response`` in at most ``max_length`` tokens.

    The response is what is judged, so it keeps up to three quarters of the budget (its start);
    the prompt keeps its end (the most recent turns).
    """
    response_ids = tokenizer(response, add_special_tokens=False).input_ids[: max_length * 3 // 4]
    prompt_ids = tokenizer(prompt, add_special_tokens=False).input_ids
    keep = max_length - len(response_ids)
    return (prompt_ids[-keep:] if keep > 0 else []) + response_ids


def token_scores(model, input_ids: torch.Tensor, attention_mask: torch.Tensor, autocast: bool = False) -> torch.Tensor:
    """``[B, L]``: the one-output head applied to the backbone's hidden state at every position."""
    with torch.autocast(input_ids.device.type, dtype=torch.bfloat16, enabled=autocast and native_bf16(input_ids.device.type)):
        hidden = model.base_model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids(attention_mask),
                                  use_cache=False).last_hidden_state  # [B, L, H]
        return model.score(hidden).squeeze(-1).float()  # [B, L]


class TokenScores(torch.nn.Module):
    """``model`` (a sequence classifier) with ``token_scores`` as its forward: PPO's critic is trained through
    this module, so that DDP, which wraps a module's forward, sees the per-position values it back-propagates."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, autocast: bool = False) -> torch.Tensor:
        return token_scores(self.model, input_ids, attention_mask, autocast)


def score_ids(model, sequences: list[list[int]], pad_id: int, autocast: bool = False) -> torch.Tensor:
    """``[B]`` scores. Sequences are left-padded, so the last position is every row's last token."""
    ids, attention = (t.to(device_of(model)) for t in pad_left(sequences, pad_id))  # [B, L]
    return token_scores(model, ids, attention, autocast)[:, -1]  # [B]


def as_dialogue(problem: str) -> str:
    """A question in hh-rlhf's dialogue form, the form the reward model was trained on."""
    return problem if problem.startswith(HUMAN) else f"{HUMAN} {problem}{ASSISTANT}"


class RewardModelScorer:
    """``scorer(problems, completions) -> list[float]``: a trained reward model as a training reward.

    ``problems`` are the raw questions (before the chat template); each is put in dialogue form,
    the completion appended, and the whole scored. ``scale``/``shift`` map raw scores to the size
    of the verifier rewards (``score * scale + shift``).
    """

    def __init__(self, path: str, max_length: int = 256, batch_size: int = 16, scale: float = 1.0, shift: float = 0.0,
                 autocast: bool = True, device: torch.device | str = "cpu"):
        from reasoning_rl.models import load_tokenizer

        self.tokenizer = load_tokenizer(path)
        self.model = load_reward_model(path, self.tokenizer).eval().to(device)
        self.max_length, self.batch_size, self.scale, self.shift, self.autocast = max_length, batch_size, scale, shift, autocast

    @torch.no_grad()
    def __call__(self, problems: list[str], completions: list[str]) -> list[float]:
        sequences = [encode(self.tokenizer, as_dialogue(p), " " + c.strip(), self.max_length) for p, c in zip(problems, completions)]
        scores = [score_ids(self.model, sequences[i : i + self.batch_size], self.tokenizer.pad_token_id, self.autocast)
                  for i in range(0, len(sequences), self.batch_size)]
        return (torch.cat(scores) * self.scale + self.shift).tolist() if scores else []
