"""The curriculum: arithmetic levels walked from easy to hard (``--curriculum`` or ``--preset curriculum``).

Two decisions live here, each called from its phase of ``trainer.train``:

* which levels a step's prompts come from (``prompts_per_level``, in the sampling phase): the current
  level's, and ``--curriculum-replay`` of them spread evenly over the levels already passed, so that the
  policy keeps practising them;
* whether to move on (``advance``, after the update and before the log): the training accuracy on the
  current level's prompts, averaged over the last ``--curriculum-window`` steps, reaches
  ``--curriculum-threshold``, or ``--curriculum-patience`` steps have passed on the level.

A run without a curriculum is the case of one level: every prompt comes from it and it never advances.
"""

from __future__ import annotations

from tqdm.auto import tqdm

from reasoning_rl.run import Run


def prompts_per_level(level: int, prompts_per_step: int, replay_share: float) -> list[tuple[int, int]]:
    """``[(level, prompts), ...]`` for one step: the current level first, then each passed level's replay share."""
    replay = round(replay_share * prompts_per_step) if level > 0 else 0
    plan = [(level, prompts_per_step - replay)]
    plan += [(earlier, replay // level + (earlier < replay % level)) for earlier in range(level)]
    return plan


def advance(run: Run, step: int, metrics: dict[str, float]) -> None:
    """After step ``step``: add ``curriculum/level_accuracy`` to the step's (rank-reduced) metrics and move to the
    next level if the current one is learnt or its patience ran out. Every rank decides alike."""
    cfg, state = run.cfg, run.state
    if not cfg.curriculum:
        return
    accuracy = metrics["curriculum/level_correct"] / max(metrics["curriculum/level_completions"], 1)
    metrics["curriculum/level_accuracy"] = accuracy
    if state.level + 1 >= len(run.tasks):
        return
    window = (state.recent_accuracy + [accuracy])[-cfg.curriculum_window:]
    state.recent_accuracy = window
    mean = sum(window) / len(window)
    learnt = len(window) == cfg.curriculum_window and mean >= cfg.curriculum_threshold
    patience_out = cfg.curriculum_patience > 0 and step - state.level_start >= cfg.curriculum_patience
    if learnt or patience_out:
        why = "learnt" if learnt else f"not learnt after {cfg.curriculum_patience} steps"
        if run.dist.is_main:
            tqdm.write(f"step {step}: training accuracy {mean:.2f} on {run.tasks[state.level]} ({why}) "
                       f"-> moving to {run.tasks[state.level + 1]}")
        state.level, state.recent_accuracy, state.level_start = state.level + 1, [], step
