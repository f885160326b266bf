"""Phases 1 and 2 of a step: sample G completions per prompt in the engine, and score them.

``collect_batch`` is the phase; with DAPO's dynamic sampling (``--dynamic-sampling``) it hands the batch
to ``refill_dynamic``, which drops the groups whose rewards are all equal and samples more prompts until
the batch is full. Every rank draws the same prompts (the prompt streams and the record are seeded and
checkpointed) and samples its own share of them.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass

import torch

from data_prep import Problem
from reasoning_rl.advantages import zero_std_groups
from reasoning_rl.curriculum import prompts_per_level
from reasoning_rl.generation import prompt_seeds
from reasoning_rl.rollout import Rollouts, collect_rollouts, score_rollouts
from reasoning_rl.run import Run
from reasoning_rl.selection import select_prompts


@dataclass
class Batch:
    """One step's rollouts: those the update trains on, and all that were generated (DAPO drops some)."""

    rollouts: Rollouts  # this rank's, to train on
    generated: Rollouts  # this rank's, every completion sampled in the step
    frac_zero_std: float  # of the first engine call's groups
    seconds: dict[str, float]  # generate, reward (train and sync are added by their phases)
    groups: int  # groups to train on, over all ranks (0: DAPO found none, and no rank updates)
    refills: int  # extra engine calls of DAPO's dynamic sampling
    level: int  # the curriculum level the batch was drawn at


def collect_batch(run: Run) -> Batch:
    """Phases 1 and 2: one engine call and its scores, refilled by dynamic sampling if asked.

    A rank left without an informative group while others have some keeps its first group: its advantages are 0,
    it trains nothing, and the rank still takes part in the step.
    """
    seconds, level = {"generate": 0.0, "reward": 0.0}, run.state.level
    rollouts = score(run, generate_groups(run, seconds), seconds)
    frac_zero_std = zero_std_groups(rollouts.rewards, run.cfg.group_size).float().mean().item()
    generated, refills = rollouts, 0
    if run.cfg.dynamic_sampling:
        rollouts, generated, refills = refill_dynamic(run, rollouts, seconds)
    groups = int(run.dist.sum([len(rollouts.problems)])[0])
    if groups and not len(rollouts.problems):
        rollouts = generated.select_groups(torch.arange(len(generated.problems)) < 1)
    return Batch(rollouts, generated, frac_zero_std, seconds, groups, refills, level)


def refill_dynamic(run: Run, rollouts: Rollouts, seconds: dict[str, float]) -> tuple[Rollouts, Rollouts, int]:
    """DAPO's dynamic sampling (Yu et al. 2025, sec. 3.2): keep the groups with mixed rewards, and sample and score
    more prompts until the batch holds ``prompts_per_step`` of them or ``max_refills`` extra engine calls were made.

    Returns the kept groups (at most this rank's share), every completion generated, and the extra calls made. With
    several ranks each fills its own share (``prompts_per_step / ranks`` groups) and the decision to refill is taken
    on the count over all ranks, so that every rank makes the same engine calls and draws the same prompts.
    """
    cfg, dist, G = run.cfg, run.dist, run.cfg.group_size
    quota = cfg.prompts_per_step // dist.world
    kept, generated, refills = [rollouts.select_groups(~zero_std_groups(rollouts.rewards, G))], rollouts, 0

    def filled() -> bool:
        return dist.sum([min(quota, sum(len(r.problems) for r in kept))])[0] >= cfg.prompts_per_step

    while not filled() and refills < cfg.max_refills:
        extra = score(run, generate_groups(run, seconds, call=refills + 1), seconds)
        generated = Rollouts.concat([generated, extra])
        kept.append(extra.select_groups(~zero_std_groups(extra.rewards, G)))
        refills += 1
    rollouts = Rollouts.concat(kept)
    return rollouts.select_groups(torch.arange(len(rollouts.problems)) < quota), generated, refills


def generate_groups(run: Run, seconds: dict[str, float], call: int = 0) -> Rollouts:
    """Phase 1: ``group_size`` completions for each of ``prompts_per_step`` prompts, in one engine call (this rank's
    share of the prompts); the prompts come from the levels ``curriculum.prompts_per_level`` names. Each prompt is
    sampled from a seed drawn from the run's seed, the step, the step's engine ``call`` and its place in the global
    batch, so the samples do not depend on the number of ranks, and a resumed run draws what an unbroken one would."""
    cfg, start = run.cfg, time.perf_counter()
    problems = [p for level, k in prompts_per_level(run.state.level, cfg.prompts_per_step, cfg.curriculum_replay)
                for p in draw(run, level, k)]
    seeds = prompt_seeds(cfg.seed, run.state.step, call, count=len(problems))
    rollouts = collect_rollouts(run.generator, run.tokenizer, run.dist.share(problems), cfg.template, cfg.group_size,
                                cfg.temperature, cfg.top_p, cfg.max_new_tokens, seeds=run.dist.share(seeds))
    seconds["generate"] += time.perf_counter() - start
    return rollouts


def draw(run: Run, level: int, k: int) -> list[Problem]:
    """``k`` prompts of ``level``: by the record (``--select-by-difficulty``) or the prompt stream's next ones. The
    same draw on every rank: the record and the streams are the same everywhere."""
    cfg, stream = run.cfg, run.streams[level]
    if not cfg.select_by_difficulty or k == 0:
        return stream.take(k)
    rng = random.Random(f"{cfg.seed}/{level}/{stream.cursor}/{sum(entry[0] for entry in run.record.counts.values())}")
    return select_prompts(stream, run.record, run.pools[level], k, cfg.explore_fraction, cfg.retry_weight, rng)


def score(run: Run, rollouts: Rollouts, seconds: dict[str, float]) -> Rollouts:
    """Phase 2: the verifiers for prompts with a reference answer, the reward model for the others (in place);
    every rank's groups go into the prompt record."""
    cfg, start = run.cfg, time.perf_counter()
    score_rollouts(rollouts, run.reward_weights, cfg.max_new_tokens, cfg.overlong_cache, run.scorer, cfg.verify_timeout,
                   cfg.verify_budget)
    accuracy = rollouts.components.get("accuracy", rollouts.rewards)
    for ids, values in run.dist.gather(([p.id for p in rollouts.problems], accuracy)):
        run.record.update(ids, values, cfg.group_size)
    seconds["reward"] += time.perf_counter() - start
    return rollouts
