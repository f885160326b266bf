"""A training run: ``Run`` holds everything the loop's phases share, and ``start_run`` builds it.

Every rank runs ``start_run``: it loads the same data, the policy onto its device (DDP-wrapped by the
update's ``setup``) and its own engine, and resumes from a checkpoint if asked; rank 0 alone writes
the output folder's files.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Protocol

import torch

from data_prep import Problem
from data_prep.own_data import OwnData, describe
from reasoning_rl.checkpoint import latest_checkpoint, load_training_state
from reasoning_rl.config import RLConfig, changed_settings
from reasoning_rl.generation import Generator, make_generator
from reasoning_rl.hacking import HackingMonitor
from reasoning_rl.heldout import held_out_accuracy
from reasoning_rl.memory_plan import preflight
from reasoning_rl.models import frozen_copy, load_policy, load_tokenizer, prepare_policy, resolve_model
from reasoning_rl.optim import make_optimizer, seed_everything
from reasoning_rl.rollout import Rollouts
from reasoning_rl.rollout_buffer import RolloutBuffer
from reasoning_rl.selection import PromptRecord
from reasoning_rl.settings import check_settings
from reasoning_rl.sharded_checkpoint import load_state
from reasoning_rl.state import TrainState
from reasoning_rl.tasks import PromptStream, load_task
from reasoning_rl.tool_use import make_tool, with_tools
from reasoning_rl.tracking import MetricsLogger
from rewards import parse_weights
from runtime.distributed import SINGLE, Dist, native_bf16
from runtime.errors import UserError, as_user_error
from runtime.run_folder import claim, claim_on_ranks


class Update(Protocol):
    """An algorithm's update (``PolicyGradient`` for GRPO and PPO, ``DPOUpdate``): the one algorithm-specific call."""

    needs_reference: bool  # load a frozen copy of the starting model
    min_group_size: int  # completions per prompt it needs to have any gradient

    def setup(self, policy, reference, tokenizer, optimizer, model_path: str, dist: Dist = SINGLE) -> None: ...

    def __call__(self, rollouts: Rollouts, step: int) -> dict[str, float]:
        """Train on one batch of scored rollouts; returns the update's metrics."""

    def save(self, folder: Path) -> None:
        """Its own state beyond the policy and its optimizer (PPO's critic) into a checkpoint folder."""

    def load(self, folder: Path) -> None: ...


@dataclass(kw_only=True)
class Run:
    """Everything the loop's phases share: the config, data, models, engine and the resumable state."""

    cfg: RLConfig
    update: Update
    algorithm: str  # grpo, ppo, dpo
    out: Path  # the output folder
    dist: Dist  # this process's rank, the number of ranks, its device
    tasks: list[str]  # one per curriculum level (one without a curriculum)
    pools: list[dict[str, Problem]]  # per level: problem id -> training problem
    streams: list[PromptStream]  # per level: the seeded, resumable walk over its pool
    heldout: dict[str, list[Problem]]  # per task: held-out problems with a reference answer
    record: PromptRecord  # per prompt: completions sampled and their accuracy
    reward_weights: dict[str, float]  # verifier rewards by name
    scorer: Callable[[list[str], list[str]], list[float]] | None  # the reward model for open-ended prompts
    tokenizer: object
    policy: torch.nn.Module  # the bare model (DDP-wrapped inside the update with several ranks)
    generator: Generator
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    logger: MetricsLogger
    state: TrainState
    buffer: RolloutBuffer  # scored batches generated ahead of the update (--rollout-staleness)
    start_time: float
    monitor: HackingMonitor = field(default_factory=HackingMonitor)  # warns when a format reward rises as accuracy falls

    def evaluate(self, n_samples: int, tasks: list[str] | None = None) -> dict[str, dict[str, float]]:
        """Held-out greedy accuracy (and sampled pass@1 with ``n_samples``) per task; each rank grades its share."""
        return {t: held_out_accuracy(self.generator, self.tokenizer, self.heldout[t], self.cfg.template, n_samples,
                                     self.cfg.max_new_tokens, self.dist)
                for t in tasks or self.tasks if self.heldout[t]}

    def is_last(self, step: int) -> bool:
        """``step`` is ``--steps``, or ``--time-limit`` ran out on some rank (all ranks decide alike)."""
        if step == self.cfg.steps:
            return True
        minutes = (time.perf_counter() - self.start_time) / 60
        return self.cfg.time_limit > 0 and max(self.dist.gather(minutes)) >= self.cfg.time_limit


def start_run(cfg: RLConfig, update: Update, algorithm: str) -> Run:
    """Check the settings, load data, models and the engine, resume from a checkpoint if asked, and evaluate the
    untrained policy."""
    dist = Dist.start(cfg.shard, cfg.shard_group_size)
    check_settings(cfg, update, algorithm, dist)
    out = claim_on_ranks(dist, lambda: claim_run_folder(cfg))
    preflight(cfg, dist, algorithm)  # the memory plan: refused on a GPU if it cannot fit, a warning on the CPU
    tasks, pools, heldout, reward_weights = load_data(cfg)
    model_path = resolve_model(cfg.model)
    checkpoint = find_checkpoint(out, cfg, dist)
    seed_everything(cfg.seed)
    start_time = time.perf_counter()
    scorer = load_scorer(cfg, dist)
    tokenizer = load_tokenizer(model_path)
    policy, reference = load_models(cfg, update, model_path, checkpoint, dist)
    engine = make_generator(cfg.backend, model_path, policy, tokenizer, seed=cfg.seed, dist=dist,
                            memory_fraction=cfg.vllm_memory_fraction, enforce_eager=cfg.vllm_enforce_eager,
                            tensor_parallel_size=cfg.vllm_tensor_parallel_size)
    generator = with_tools(engine, tokenizer, make_tool(cfg.tools, cfg.tool_timeout, cfg.tool_output_chars),
                           cfg.max_tool_calls)
    if checkpoint:
        generator.sync_weights(policy)
    optimizer, scheduler = make_optimizer(policy, cfg.lr, cfg.weight_decay, cfg.warmup_steps)
    update.setup(policy, reference, tokenizer, optimizer, model_path, dist)
    state = restore(checkpoint, policy, optimizer, scheduler, update, len(tasks), dist)
    if dist.world > 1:  # the ranks' own random streams (transformers generate samples with torch's)
        torch.manual_seed(cfg.seed + 1_000_003 * dist.rank + state.step)
    run = Run(cfg=cfg, update=update, algorithm=algorithm, out=out, dist=dist, tasks=tasks,
              pools=[{p.id: p for p in pool} for pool in pools],
              streams=[PromptStream(pool, cfg.seed, cursor) for pool, cursor in zip(pools, state.cursors)],
              heldout=heldout, record=PromptRecord.from_json(state.record), reward_weights=reward_weights, scorer=scorer,
              tokenizer=tokenizer, policy=policy, generator=generator, optimizer=optimizer, scheduler=scheduler,
              logger=MetricsLogger(out, state.step, cfg.tensorboard, enabled=dist.is_main), state=state,
              buffer=RolloutBuffer.load(checkpoint, cfg.rollout_staleness, dist), start_time=start_time)
    if dist.is_main:
        write_config(out, cfg, algorithm, dist.world, state.step if checkpoint else None)
        announce(run, pools)
    if not state.before and cfg.eval_before:
        dist.print(f"evaluating the untrained policy on {cfg.eval_problems} held-out problems per task ...")
        state.before = run.evaluate(cfg.eval_samples)
    return run


def load_data(cfg: RLConfig) -> tuple[list[str], list[list[Problem]], dict[str, list[Problem]], dict[str, float]]:
    """Task names (one per curriculum level; a file of your own is named after the file), their training pools, their
    held-out problems with a reference answer, and the reward weights; a ``UserError`` for an unknown task or reward,
    or prompts nothing could score."""
    tasks = [f"arith:{level}" for level in cfg.curriculum] or [cfg.task]
    drop, own = cfg.drop_unparseable_references, own_data(cfg)
    with as_user_error():
        reward_weights = parse_weights(cfg.rewards)
        pools = [load_task(t, "train", cfg.train_problems, cfg.seed, cfg.data_path, drop, own) for t in tasks]
        heldout = [[p for p in load_task(t, "test", cfg.eval_problems, cfg.seed, cfg.data_path, drop, own) if p.answer]
                   for t in tasks]
    if any(p.answer is None for pool in pools for p in pool) and not cfg.reward_model:
        raise UserError(f"task {cfg.task!r} has prompts without a reference answer; pass --reward-model <folder> "
                        "(train one with scripts/train_reward_model.py)")
    names = [own.label if t == "jsonl" and own else t for t in tasks]
    return names, pools, dict(zip(names, heldout)), reward_weights


def own_data(cfg: RLConfig) -> OwnData | None:
    """The field mapping and held-out rule of ``--task jsonl`` (None for the other tasks)."""
    if "jsonl" not in cfg.task.split("+") or cfg.data_path is None:
        return None
    return OwnData(cfg.data_path, cfg.heldout_path, cfg.heldout_fraction, cfg.question_field, cfg.answer_field, cfg.seed)


def run_contents(folder: Path) -> str | None:
    """What of a training run ``folder`` holds ("checkpoints up to step 24, metrics.jsonl, results.json"), or None;
    ``model/`` is the reward model's trained model."""
    found = []
    if steps := sorted((folder / "checkpoints").glob("step_*")):
        found.append(f"checkpoints up to step {int(steps[-1].name.removeprefix('step_'))}")
    found += [name for name in ("metrics.jsonl", "results.json") if (folder / name).exists() and (folder / name).stat().st_size]
    found += ["model/"] if (folder / "model").is_dir() else []
    return ", ".join(found) or None


def claim_run_folder(cfg: RLConfig) -> Path:
    """Lock the output folder for this run (``runtime.run_folder``). A new run into another run's folder is refused
    unless ``--overwrite``; ``--auto-resume`` with nothing to resume moves what a run killed before its first
    checkpoint left aside, and starts anew."""
    out = Path(cfg.output_dir)
    return claim(out, run_contents, resume=cfg.resume or bool(cfg.auto_resume and latest_checkpoint(out)),
                 overwrite=cfg.overwrite or cfg.auto_resume, resume_flags="--resume (or --auto-resume)")


def write_config(out: Path, cfg: RLConfig, algorithm: str, processes: int, resumed_at: int | None) -> None:
    """``config.json``: every setting; a resumed run adds to its ``resumes`` the step it resumed at and the settings
    it changed (``--steps``, ``--time-limit``, cadences: what ``MAY_CHANGE_ON_RESUME`` allows)."""
    path = out / "config.json"
    saved = json.loads(path.read_text()) if resumed_at is not None and path.exists() else {}
    resumes = saved.get("resumes", [])
    if resumed_at is not None:
        changed = {k: list(v) for k, v in changed_settings(saved, cfg, frozenset({"resume", "auto_resume"})).items()}
        resumes.append({"at_step": resumed_at, "changed": changed})
    blob = {"algorithm": algorithm, **dataclasses.asdict(cfg), "processes": processes}
    path.write_text(json.dumps({**blob, "resumes": resumes} if resumes else blob, indent=2))


def find_checkpoint(out: Path, cfg: RLConfig, dist: Dist = SINGLE) -> Path | None:
    """The checkpoint to resume from: ``--resume`` insists on one, ``--auto-resume`` takes one if there is one.
    Every rank reads the same folder (on several machines, a shared file system)."""
    if not (cfg.resume or cfg.auto_resume):
        return None
    checkpoint = latest_checkpoint(out)
    if checkpoint is None and cfg.resume:
        raise UserError(f"--resume: no checkpoint to resume from in {out} (looked for {out / 'checkpoints'}/step_*); "
                        "check the folder name, or use --auto-resume to start a new run when there is none")
    if checkpoint is None:
        dist.print(f"--auto-resume: no checkpoint in {out}; starting a new run")
    return checkpoint


def load_scorer(cfg: RLConfig, dist: Dist):
    """The trained reward model that scores prompts without a reference answer (``--reward-model``), or None."""
    if not cfg.reward_model:
        return None
    from reasoning_rl.reward_model import RewardModelScorer

    return RewardModelScorer(resolve_model(cfg.reward_model), scale=cfg.reward_model_scale, autocast=cfg.autocast,
                             device=dist.device)


def load_models(cfg: RLConfig, update: Update, model_path: str, checkpoint: Path | None, dist: Dist):
    """The policy (from the checkpoint when resuming; LoRA and gradient checkpointing applied), in training mode, and
    the frozen reference (always the starting model) when the update needs one; both on this rank's device, and
    sharded with ``--shard fsdp`` (before the optimizer is built on them)."""
    policy = load_policy(str(checkpoint / "policy") if checkpoint and cfg.lora_rank == 0 else model_path)
    reference = dist.shard_model(frozen_copy(load_policy(model_path))) if update.needs_reference else None
    policy = prepare_policy(policy, cfg.lora_rank, cfg.lora_alpha, cfg.gradient_checkpointing)
    if checkpoint and cfg.lora_rank > 0:
        from peft import set_peft_model_state_dict
        from safetensors.torch import load_file

        set_peft_model_state_dict(policy, load_file(checkpoint / "policy" / "adapter_model.safetensors"))
    policy = dist.shard_model(policy)
    policy.train()
    return policy, reference


def restore(checkpoint: Path | None, policy, optimizer, scheduler, update: Update, levels: int, dist: Dist) -> TrainState:
    """A new run's state, or the checkpoint's with the optimizer, scheduler, random generators and the update's own
    state restored (a sharded run's checkpoint: the weights and AdamW's shards too, resharded to this run's ranks)."""
    if checkpoint is None:
        return TrainState(cursors=[0] * levels)
    if (checkpoint / "sharded").is_dir():  # a sharded run: weights and AdamW's moments, resharded to these ranks
        load_state(checkpoint / "sharded", policy, optimizer)
    state = TrainState.from_json(load_training_state(checkpoint, optimizer, scheduler))
    update.load(checkpoint)
    dist.print(f"resuming from {checkpoint} (step {state.step})")
    return state


def announce(run: Run, pools: list[list[Problem]]) -> None:
    """The resolved settings, a few lines on the console at start (everything is in config.json); for a file of your
    own, where its held-out problems came from, and those problems written beside the run for evaluate.py."""
    cfg, dist = run.cfg, run.dist
    data = ", ".join(f"{t} ({len(pool)} training, {len(run.heldout[t])} held-out problems)" for t, pool in zip(run.tasks, pools))
    print(f"{run.algorithm.upper()} on {data}")
    if own := own_data(cfg):
        print(describe(own, pools[0], run.heldout[own.label]))
        write_heldout(run.out / f"{own.label}_heldout.jsonl", run.heldout[own.label])
    loss = getattr(cfg, "loss_type", None)
    native = native_bf16(dist.device.type)
    precision = "bf16 autocast" if cfg.autocast and native else "float32" + ("" if native or not cfg.autocast else
                                                                             " (bf16 is not native on this CPU)")
    print(f"model {cfg.model} on {dist.world} process{'es' if dist.world > 1 else ''} ({dist.device}, {precision}); "
          f"{cfg.prompts_per_step} prompts x {cfg.group_size} completions per step, temperature {cfg.temperature:g}, "
          f"up to {cfg.max_new_tokens} new tokens; {cfg.steps} step{'s' if cfg.steps > 1 else ''} at lr {cfg.lr:g}"
          + (f", {loss} loss" if loss else ""))
    if cfg.tools != "none":
        print(f"tools: {cfg.tools} (up to {cfg.max_tool_calls} calls per completion, {cfg.tool_timeout:g} s each, "
              f"{cfg.tool_output_chars} characters of output), template {cfg.template}")
    print(f"rewards {cfg.rewards}" + (f" + reward model {cfg.reward_model}" if cfg.reward_model else "")
          + f"; outputs in {run.out} (config.json holds every setting)")


def write_heldout(path: Path, problems: list[Problem]) -> None:
    """The held-out problems as a JSONL of question/answer rows: ``evaluate.py --benchmark jsonl --data-path`` it."""
    path.write_text("".join(json.dumps({"id": p.id.split("/", 1)[-1], "question": p.problem, "answer": p.answer}) + "\n"
                            for p in problems))

