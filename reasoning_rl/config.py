"""The options of a training run (``RLConfig``) and how any entry point's options are parsed: a dataclass per
entry point, YAML presets, command-line overrides (tyro).

    python scripts/train_grpo.py --preset curriculum --lr 1e-5

``--preset NAME`` reads ``configs/NAME.yaml`` (or a YAML path); its keys override the
dataclass defaults, and command-line flags override both. Presets are shared by the trainers
and do not name an output folder: it becomes the trainer's default plus the preset's name
(``runs/grpo_gsm8k``, ``runs/ppo_gsm8k``). Field docstrings are the help text.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import tyro
import yaml

from rewards import TRAIN_TIMEOUT
from runtime.errors import UserError

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"


def load_preset(name_or_path: str) -> dict:
    path = Path(name_or_path)
    if not path.exists():
        path = CONFIG_DIR / f"{name_or_path}.yaml"
    if not path.exists():
        choices = ", ".join(sorted(p.stem for p in CONFIG_DIR.glob("*.yaml")))
        raise SystemExit(f"--preset {name_or_path!r}: no such file or preset (presets: {choices})")
    return yaml.safe_load(path.read_text()) or {}


def parse_config(cls, argv: list[str] | None = None, description: str | None = None):
    """Parse ``argv`` into ``cls``; a ``--preset`` flag, if present, supplies the defaults. A run that resumes
    (``--resume``, or ``--auto-resume`` with a checkpoint) takes its saved settings as the defaults instead
    (``resumed_config``)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    defaults = preset_defaults(cls, argv)  # takes --preset NAME out of argv
    if not defaults:  # no preset: tyro's own defaults (and required fields stay required)
        cfg = tyro.cli(cls, args=argv, description=description)
    else:
        cfg = tyro.cli(cls, args=argv, default=cls(**defaults), description=description)
    return resumed_config(cls, cfg, argv, defaults, description)


def preset_defaults(cls, argv: list[str]) -> dict:
    """The defaults that ``--preset NAME`` in ``argv`` sets (removing it from ``argv``); {} without one."""
    defaults = {}
    if "--preset" in argv:
        i = argv.index("--preset")
        if i + 1 >= len(argv):
            raise SystemExit("--preset needs a name or a YAML path")
        preset = argv[i + 1]
        defaults = load_preset(preset)
        del argv[i : i + 2]
        unknown = set(defaults) - {f.name for f in dataclasses.fields(cls)} - {"preset"}
        if unknown:
            raise SystemExit(f"preset sets unknown option(s): {', '.join(sorted(unknown))}")
        defaults = {k: tuple(v) if isinstance(v, list) else v for k, v in defaults.items()}  # YAML lists -> tuples
        fields = {f.name: f for f in dataclasses.fields(cls)}
        if "output_dir" in fields and "output_dir" not in defaults:  # runs/grpo -> runs/grpo_gsm8k
            defaults["output_dir"] = f"{fields['output_dir'].default}_{Path(preset).stem}"
        if "preset" in fields:  # recorded in config.json
            defaults["preset"] = preset
    return defaults


# What a resumed run may change; it is recorded in config.json's "resumes". Every other option is the run's own: a
# resumed run continues with it (from config.json), and a flag that would change it is refused.
MAY_CHANGE_ON_RESUME = frozenset({
    "steps", "time_limit", "eval_every", "sample_every", "save_every", "keep_checkpoints", "optimizer_state",
    "log_completions", "tensorboard", "resume", "auto_resume", "overwrite", "output_dir", "preset", "eval_before",
    "vllm_memory_fraction", "vllm_enforce_eager"})


def saved_config(cfg) -> dict | None:
    """The settings of the run that ``cfg`` resumes (its ``config.json``), or None: not resuming, or nothing to resume
    (no checkpoint that holds the optimizer state, so ``--auto-resume`` starts a new run)."""
    if not (getattr(cfg, "resume", False) or getattr(cfg, "auto_resume", False)):
        return None
    from reasoning_rl.checkpoint import latest_checkpoint  # torch: loaded only when a run resumes

    out = Path(cfg.output_dir)
    if not (out / "config.json").exists() or latest_checkpoint(out) is None:
        return None
    try:
        return json.loads((out / "config.json").read_text())
    except (OSError, ValueError) as error:
        raise UserError(f"--resume: cannot read the run's settings in {out / 'config.json'}: {error}") from None


def changed_settings(saved: dict, cfg, allowed: frozenset = frozenset()) -> dict[str, tuple]:
    """{option: (saved value, value in ``cfg``)} for each of ``cfg``'s options not in ``allowed`` that differs from
    ``saved``."""
    changed = {}
    for f in dataclasses.fields(cfg):
        if f.name in saved and f.name not in allowed:
            old, new = saved[f.name], getattr(cfg, f.name)
            if (tuple(old) if isinstance(old, list) else old) != new:
                changed[f.name] = (old, new)
    return changed


def as_flags(changed: dict[str, tuple], owner: str) -> str:
    """``--task 'b' (the run has 'a'); ...``: the changes of ``changed_settings`` as the flags that made them."""
    return "; ".join(f"--{k.replace('_', '-')} {new!r} ({owner} has {old!r})" for k, (old, new) in changed.items())


def resumed_config(cls, cfg, argv: list[str], defaults: dict, description: str | None):
    """``cfg`` for a new run; for a resumed one, the run's saved settings with ``argv``'s flags on top, and a
    ``UserError`` naming every flag that would change what the run trains (anything not in ``MAY_CHANGE_ON_RESUME``)."""
    saved = saved_config(cfg)
    if saved is None:
        return cfg
    names = {f.name for f in dataclasses.fields(cls)}
    own = {k: tuple(v) if isinstance(v, list) else v for k, v in saved.items() if k in names}
    resumed = tyro.cli(cls, args=argv, default=cls(**{**own, **defaults}), description=description)
    if refused := changed_settings(saved, resumed, MAY_CHANGE_ON_RESUME):
        raise UserError(f"--resume continues the run in {cfg.output_dir} with its own settings, and these would change "
                        f"what it trains: {as_flags(refused, 'the run')}. Drop them, or start a new run (another "
                        "--output-dir, or --overwrite)")
    return resumed


@dataclass
class RLConfig:
    preset: str | None = None
    """A YAML preset from configs/ (curriculum, gsm8k, math, gpu_qwen, dapo, dr_grpo, gspo, cispo) or a YAML path; its
    keys set the defaults, flags given beside it override them, and the output folder gets its name (the trainer's
    folder and the preset's: runs/<trainer>_<preset>)."""
    # model and data
    model: str = "smollm2-135m-instruct"
    """Embedded short name, Hugging Face Hub name or local folder (a checkpoint's folder works too)."""
    task: str = "arith:add_20"
    """arith:<level>[,<level>...] (synthetic), a benchmark (gsm8k, math), jsonl (your own problems: --data-path),
    hh_rlhf (open-ended prompts); join with + to mix."""
    curriculum: tuple[str, ...] = ()
    """Arithmetic levels to walk from easy to hard; overrides ``task``. Empty: no curriculum."""
    curriculum_threshold: float = 0.75
    """Move to the next level when the training accuracy on the current level's prompts, over the last
    ``curriculum_window`` steps, reaches this."""
    curriculum_patience: int = 0
    """Move to the next level after this many steps on a level even if it is not learnt (its prompts stay in the
    replay share); 0: wait until it is learnt."""
    curriculum_replay: float = 0.25
    """Share of each batch drawn from the levels already passed, spread evenly over them, so that the policy keeps
    practising them (a curriculum that does not forget); 0: none."""
    curriculum_window: int = 3
    """Steps averaged for the curriculum decision."""
    data_path: str | None = None
    """JSONL file, data folder or Hub data set for benchmark tasks (default: ../shared/data, else the Hub); for
    --task jsonl your own file of question/answer rows (data_prep/own_data.py)."""
    heldout_path: str | None = None
    """--task jsonl: a second file of held-out problems. Without it, rows whose split field is test are held out,
    else --heldout-fraction of the rows."""
    heldout_fraction: float = 0.1
    """--task jsonl without --heldout-path or split field: the share of rows held out (seeded, at least 3 rows, at
    most half), never trained on."""
    question_field: str | None = None
    """--task jsonl: the field holding the question (default: question, problem or prompt)."""
    answer_field: str | None = None
    """--task jsonl: the field holding the reference answer (default: answer or solution; a worked solution is
    reduced to the number after #### or the last \\boxed{})."""
    template: str = "chat"
    """Prompt template: chat, chat_boxed, chat_tool (with --tools python), r1_zero, few_shot (data_prep/templates.py)."""
    drop_unparseable_references: bool = False
    """Drop benchmark problems whose reference answer math-verify cannot parse (they are always counted and reported)."""
    train_problems: int = 4096
    """Size of the synthetic training pool (benchmarks use their whole train split)."""
    rewards: str = "accuracy=1.0"
    """Verifier rewards from rewards.REWARDS with their weights, e.g. accuracy=1.0,boxed_format=0.1."""
    reward_model: str | None = None
    """Folder of a trained reward model (scripts/train_reward_model.py); it scores prompts without a reference answer."""
    reward_model_scale: float = 1.0
    """The reward model's score is multiplied by this before it enters the reward."""
    verify_timeout: float = TRAIN_TIMEOUT
    """Seconds the accuracy verifier may spend on one completion before it scores 0 (a timeout); evaluation allows 5."""
    verify_budget: float = 60.0
    """Seconds for scoring one batch; completions still unscored then score 0 and count as timeouts."""

    # sampling
    steps: int = 24
    """Optimizer steps (each on one batch of rollouts)."""
    time_limit: float = 0.0
    """Minutes: the step during which they run out (counted from this start or resume) is the last one, with
    the final evaluation and a checkpoint, so --resume can go on to --steps (0: no limit)."""
    prompts_per_step: int = 8
    """Prompts per batch (B)."""
    group_size: int = 8
    """Completions sampled per prompt (G)."""
    max_new_tokens: int = 64
    """Completion length limit; longer completions are cut off and counted in completions/truncated."""
    temperature: float = 1.0
    """Sampling temperature of the rollouts; the update's log-probs (ratio, KL) are those of softmax(logits / T) too."""
    top_p: float = 1.0
    """Nucleus sampling of the rollouts."""
    dynamic_sampling: bool = False
    """DAPO: drop groups whose rewards are all equal and sample more prompts to refill the batch."""
    select_by_difficulty: bool = False
    """Draw each step's prompts from the run's record of pass rates (reasoning_rl/selection.py): prompts solved by some
    but not all completions at full weight, always or never solved ones at --retry-weight, --explore-fraction from the
    plain sampler."""
    explore_fraction: float = 0.25
    """With --select-by-difficulty: the share of each batch drawn by the plain sampler (unseen prompts first)."""
    retry_weight: float = 0.1
    """With --select-by-difficulty: the weight of a prompt with pass rate 0 or 1 against 1 for an informative one."""
    max_refills: int = 3
    """Dynamic sampling gives up refilling after this many extra engine calls per step."""
    overlong_cache: int = 0
    """DAPO's soft overlong punishment over the last this-many tokens before max_new_tokens (0: off)."""
    rollout_staleness: int = 0
    """Train each step on a batch sampled this many steps earlier (a rollout buffer filled ahead of the update, as
    asynchronous training does): the ratio's denominator is then the sampling weights' log-probs (the engine's), or,
    with --rollout-correction, the trainer's current ones with the correction weighing for the lag. 0: on-policy."""
    rollout_correction: str = "none"
    """Weigh each token's loss by the trainer/engine probability ratio (reasoning_rl/losses.py: rollout_correction):
    none, token_tis, sequence_tis (truncated at the threshold), token_mask, sequence_mask (masked outside
    [1/threshold, threshold]). Needs the engine's log-probs (--backend vllm)."""
    rollout_correction_threshold: float = 2.0
    """The threshold C of --rollout-correction (TRL's default is 3.0 with sequence_mask)."""

    # optimisation
    lr: float = 2e-5
    """AdamW learning rate."""
    warmup_steps: int = 2
    """Linear warm-up steps."""
    weight_decay: float = 0.0
    """AdamW weight decay."""
    max_grad_norm: float = 1.0
    """Gradient clipping."""
    micro_batch_size: int = 16
    """Sequences per forward/backward; gradients accumulate over the batch."""
    autocast: bool = True
    """bf16 autocast for the policy's forward where the device computes bf16 natively (a GPU, a CPU with AVX512_BF16
    or AMX: 1.5x faster there; weights stay float32); float32 where bf16 would be emulated (an AVX2-only CPU)."""
    lora_rank: int = 0
    """LoRA rank (peft); 0 trains every weight."""
    lora_alpha: int = 32
    """LoRA alpha."""
    gradient_checkpointing: bool = False
    """Recompute activations in the backward pass (less memory, about 30 % slower)."""
    shard: str = "ddp"
    """How several processes hold the models: ddp (each rank the whole policy, gradients and AdamW state; DDP),
    fsdp (FSDP2: each rank a 1/N shard of all three, for models larger than one device), or hsdp (hybrid: sharded
    within --shard-group-size ranks, replicated across groups, for several machines). docs/sharding.md."""
    shard_group_size: int = 0
    """With --shard hsdp: ranks per shard group (0: the ranks of one machine, torchrun's --nproc-per-node)."""

    # generation back end
    backend: str = "vllm"
    """vllm, or hf (transformers generate, for machines without vLLM)."""
    vllm_memory_fraction: float = 0.25
    """vLLM's gpu_memory_utilization: on the CPU the fraction of RAM for the KV cache."""
    vllm_enforce_eager: bool = True
    """Skip torch.compile in vLLM (starts in 30 s instead of 90 s; compiled decoding is 1.6x faster)."""
    vllm_tensor_parallel_size: int = 1
    """Devices per vLLM engine, for models that do not fit one: each group of this many consecutive ranks shares
    one engine (tensor parallelism, TRL's colocate pattern); it must divide the number of processes."""

    # tools (reasoning_rl/tool_use.py, docs/tools.md)
    tools: str = "none"
    """none, or python: completions may write ```python blocks; each runs in a local sandbox (tools/sandbox.py) and
    its output joins the context, masked out of the loss. Use with --template chat_tool; needs --backend vllm."""
    max_tool_calls: int = 2
    """Tool calls per completion; a completion that writes one more code block ends there."""
    tool_timeout: float = 5.0
    """Seconds of wall clock (and of CPU, rounded down, at least 1) for one tool call; past it the call is killed and
    its output says TimeoutError."""
    tool_output_chars: int = 256
    """Characters of a call's output put back into the context (its start and its end); the token budget
    (--max-new-tokens, model and tool tokens together) cuts it further."""

    # evaluation and outputs
    eval_problems: int = 128
    """Held-out problems (test split) evaluated before and after training."""
    eval_samples: int = 4
    """Samples per held-out problem at temperature 1.0 for pass@1 (greedy is always measured)."""
    eval_every: int = 6
    """Greedy held-out accuracy every this many steps (0: only before and after)."""
    eval_before: bool = True
    """Evaluate the untrained policy too (compare.py skips it after the first method: same model, same problems)."""
    output_dir: str = "runs/rl"
    """Where metrics.jsonl, tensorboard/, samples.jsonl, checkpoints/ and the plot go."""
    save_every: int = 6
    """Checkpoint every this many steps (and at the end)."""
    sample_every: int = 6
    """Write the completions of one group to samples.jsonl every this many steps."""
    log_completions: bool = True
    """Write every sampled completion with its reward and the verifier's verdict to completions.jsonl (for the audit)."""
    keep_checkpoints: int = 1
    """Checkpoints kept (the newest); each holds the float32 weights (0.54 GB for the embedded model) and, see
    --optimizer-state, AdamW's two moments (twice that)."""
    optimizer_state: str = "newest"
    """Which kept checkpoints hold AdamW's state, needed to --resume: newest, all, or none (the checkpoints are then
    models only, a third of the size, and the run cannot be resumed)."""
    resume: bool = False
    """Continue from the newest checkpoint in output_dir, with the run's own settings (config.json); flags that would
    change what it trains are refused, --steps, --time-limit, logging and evaluation cadence may change."""
    auto_resume: bool = False
    """Continue from the newest checkpoint in output_dir if there is one, else start a new run (and say which; what
    a run killed before its first checkpoint left there is moved aside to a dated folder beside it)."""
    overwrite: bool = False
    """Start a new run in an output_dir that holds another run: the old run is moved aside to a dated folder beside
    it (runs/grpo.2026-12-02T13-05-11), never deleted. Without it (or --resume), such a folder is refused."""
    seed: int = 0
    """Seeds data order, torch and the vLLM engine."""
    tensorboard: bool = True
    """Also write TensorBoard scalars."""
