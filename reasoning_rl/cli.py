"""Entry points: parse the options, run, and report a user's mistake in one line.

Every script ends with ``run(main, Config, __doc__)``. A ``UserError`` (a bad option, a missing
file, an unknown model, a setting that cannot learn) is printed as ``error: ...`` with exit
status 2 and no traceback; so is a ``SystemExit`` carrying a message. Ctrl-C exits with status
130 (the trainer prints which checkpoint ``--resume`` would continue from). An output folder
that this run created and that holds nothing yet is removed when the start fails, and the
folder's lock is let go of when ``main`` returns.
"""

from __future__ import annotations

import math
import shutil
import sys
import warnings
from pathlib import Path
from typing import Callable

from reasoning_rl.config import parse_config
from runtime.errors import UserError
from runtime.run_folder import LOCK_NAME, release_all


def _created_and_empty(folder: Path | None, existed: bool) -> bool:
    """This run made ``folder`` and put nothing in it but its lock."""
    return folder is not None and not existed and folder.is_dir() and all(p.name == LOCK_NAME for p in folder.iterdir())


def run(main, config_cls, description: str | None = None, argv: list[str] | None = None):
    """``main(parse_config(config_cls))`` with user errors as one line (exit 2) and Ctrl-C as exit 130."""
    warnings.formatwarning = lambda message, category, *args, **kwargs: f"warning: {message}\n"  # no source line
    output, existed = None, False
    try:
        cfg = parse_config(config_cls, argv, description)
        if getattr(cfg, "output_dir", None):
            output = Path(cfg.output_dir)
            existed = output.exists()
        return main(cfg)
    except (UserError, SystemExit) as error:
        if isinstance(error, SystemExit) and not isinstance(error.code, str):
            raise  # tyro's own parser errors and plain exits keep their status and message
        if _created_and_empty(output, existed):
            shutil.rmtree(output, ignore_errors=True)
        message = error.code if isinstance(error, SystemExit) else str(error)
        print(f"error: {message}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        if _created_and_empty(output, existed):
            shutil.rmtree(output, ignore_errors=True)
        sys.exit(130)
    finally:
        release_all()  # the output folder's lock (``runtime.run_folder``), for a later run in this process


# Rules for option values, by field name: (test, what the value must be). Every entry point checks its options against
# OPTION_RULES (``check_options``) before anything loads; a rule applies to the entry points that have the field.
def _range(low: float | None = None, high: float | None = None, low_open: bool = False, high_open: bool = False):
    def test(value) -> bool:
        if not math.isfinite(value):
            return False
        above = low is None or (value > low if low_open else value >= low)
        below = high is None or (value < high if high_open else value <= high)
        return above and below

    left, right = "(" if low_open else "[", ")" if high_open else "]"
    if high is None:
        what = f"{'above' if low_open else 'at least'} {low:g}"
    else:
        what = f"in {left}{low:g}, {high:g}{right}"
    return test, f"must be {what}"


AT_LEAST_1, AT_LEAST_0, POSITIVE = _range(1), _range(0), _range(0, low_open=True)
FRACTION, SHARE = _range(0, 1, low_open=True), _range(0, 1, high_open=True)
OPTION_RULES: dict[str, tuple[Callable, str]] = {
    **dict.fromkeys(["keep_checkpoints", "steps", "prompts_per_step", "max_new_tokens", "micro_batch_size", "train_problems", "save_every",
                     "curriculum_window", "mu", "mini_batches", "epochs", "pairs_per_group", "pair_micro_batch",
                     "pair_batch_size", "max_prompt_tokens", "n", "chunk_size", "limit", "max_model_len", "batch_size",
                     "max_length", "vllm_tensor_parallel_size", "max_tool_calls", "tool_output_chars", "processes"], AT_LEAST_1),
    **dict.fromkeys(["curriculum_patience", "warmup_steps", "max_refills", "overlong_cache", "lora_rank", "eval_problems",
                     "eval_samples", "eval_every", "sample_every", "rollout_staleness", "time_limit", "weight_decay", "beta",
                     "clip_high", "kl_coef", "critic_trainable_layers", "train_pairs", "trainable_layers", "shard_group_size",
                     "processes_per_machine", "device_memory_gib", "prompt_tokens"], AT_LEAST_0),
    **dict.fromkeys(["lr", "critic_lr", "max_grad_norm", "lora_alpha", "verify_timeout", "verify_budget", "retry_weight",
                     "dpo_beta", "value_clip", "tool_timeout"], POSITIVE),
    **dict.fromkeys(["top_p", "vllm_memory_fraction", "curriculum_threshold"], FRACTION),
    **dict.fromkeys(["curriculum_replay", "clip_low"], SHARE),
    "heldout_fraction": _range(0, 1, low_open=True, high_open=True),
    "explore_fraction": _range(0, 1), "gamma": _range(0, 1), "lam": _range(0, 1),
    "rollout_correction_threshold": _range(1, low_open=True),
    "reward_model_scale": (math.isfinite, "must be a finite number"),
}


def check_options(cfg, choices: dict[str, tuple] | None = None) -> None:
    """A ``UserError`` naming the first option whose value breaks its rule (``OPTION_RULES``), or that is not one of
    its ``choices`` (``{field: allowed values}``). Fields the entry point does not have, and None (unset), pass."""
    for name, (test, what) in OPTION_RULES.items():
        value = getattr(cfg, name, None)
        if value is not None and not isinstance(value, bool) and not test(value):
            raise UserError(f"--{name.replace('_', '-')} {value!r}: {what}")
    for name, allowed in (choices or {}).items():
        value = getattr(cfg, name, None)
        if value is not None and value not in allowed:
            raise UserError(f"--{name.replace('_', '-')} {value!r}: choose one of {', '.join(map(str, allowed))}")

