"""A pre-flight memory plan: what one rank of a run will hold, from the model's config.json alone.

``plan(shape, setting)`` adds up, per rank, in bytes:

* training state: float32 weights (4 B per parameter), gradients (4 B per trained parameter), AdamW's two
  moments (8 B per trained parameter), divided by the shard group under ``--shard fsdp``; DDP keeps a second
  copy of the gradients in its buckets (4 B) when there are several ranks; with FSDP the layer being computed
  and the next one (prefetched), and the root's own weights (embeddings, head), are gathered in full, and in the
  backward the largest unit's full gradients are held twice (FSDP2's ``foreach_reduce`` copies them into the
  reduce-scatter's input before it frees them: 8 B per parameter of that unit);
* the frozen reference (GRPO with ``--beta`` > 0, PPO's KL penalty): float32 weights, sharded alike;
* PPO's critic: a second model with its gradients and AdamW state;
* the engine: on a GPU, vLLM takes ``--vllm-memory-fraction`` of the device for its weights and KV cache; on the
  CPU its bf16 weights plus a KV cache of that fraction of the RAM, shared by the machine's ranks. The KV cache
  the step's sequences need is checked against what the engine gets;
* activations kept for the backward of one micro-batch (per token and layer, about 22 h + 10 i bytes under bf16
  autocast, twice that in float32; with gradient checkpointing only each layer's input, 4 h bytes, plus one
  layer in full), and the logits of its completion tokens with their gradient (2 x 2 B x vocabulary);
* the runtime (Python, torch, vLLM and, on a GPU, the CUDA context): a constant (``RUNTIME_GIB``).

These are estimates of the largest terms, checked against measured peaks on this machine (docs/sharding.md),
not a simulation of an allocator. ``suggest`` names the smallest single change that makes a failing setting fit.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

GIB = 2**30
RUNTIME_GIB = {"cpu": 1.0, "gpu": 1.5}  # CPU: 0.43 GiB measured for the imports alone, the engine adds its buffers

# Published config.json values, for planning without network access (the planner reads the real file when it can).
PUBLISHED = {
    "Qwen/Qwen2.5-0.5B-Instruct": dict(vocab_size=151936, hidden_size=896, intermediate_size=4864, num_hidden_layers=24,
                                       num_attention_heads=14, num_key_value_heads=2, tie_word_embeddings=True,
                                       model_type="qwen2"),
    "Qwen/Qwen2.5-1.5B-Instruct": dict(vocab_size=151936, hidden_size=1536, intermediate_size=8960, num_hidden_layers=28,
                                       num_attention_heads=12, num_key_value_heads=2, tie_word_embeddings=True,
                                       model_type="qwen2"),
    "Qwen/Qwen2.5-7B-Instruct": dict(vocab_size=152064, hidden_size=3584, intermediate_size=18944, num_hidden_layers=28,
                                     num_attention_heads=28, num_key_value_heads=4, tie_word_embeddings=False,
                                     model_type="qwen2"),
    "Qwen/Qwen2.5-32B-Instruct": dict(vocab_size=152064, hidden_size=5120, intermediate_size=27648, num_hidden_layers=64,
                                      num_attention_heads=40, num_key_value_heads=8, tie_word_embeddings=False,
                                      model_type="qwen2"),
}


@dataclass(frozen=True)
class ModelShape:
    """What memory depends on, from a decoder's config.json."""

    vocab: int
    hidden: int
    intermediate: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    tied: bool
    qkv_bias: bool

    @classmethod
    def from_config(cls, config: dict) -> "ModelShape":
        heads = config["num_attention_heads"]
        return cls(config["vocab_size"], config["hidden_size"], config["intermediate_size"], config["num_hidden_layers"],
                   heads, config.get("num_key_value_heads") or heads,
                   config.get("head_dim") or config["hidden_size"] // heads, bool(config.get("tie_word_embeddings", False)),
                   bool(config.get("attention_bias", config.get("model_type") == "qwen2")))

    @property
    def layer_parameters(self) -> int:
        h, q, kv = self.hidden, self.heads * self.head_dim, self.kv_heads * self.head_dim
        attention = h * q + 2 * h * kv + q * h + ((q + 2 * kv) if self.qkv_bias else 0)
        return attention + 3 * h * self.intermediate + 2 * h  # q, k, v, o; gate, up, down; two norms

    @property
    def root_parameters(self) -> int:
        """Embeddings, the head when it is not tied to them, and the final norm."""
        return self.vocab * self.hidden * (1 if self.tied else 2) + self.hidden

    @property
    def parameters(self) -> int:
        return self.root_parameters + self.layers * self.layer_parameters

    def lora_parameters(self, rank: int) -> int:
        """LoRA on every linear layer (``target_modules="all-linear"``): r x (in + out) each."""
        h, i, q, kv = self.hidden, self.intermediate, self.heads * self.head_dim, self.kv_heads * self.head_dim
        per_layer = (h + q) + 2 * (h + kv) + (q + h) + 2 * (h + i) + (i + h)
        return rank * per_layer * self.layers


@dataclass(frozen=True)
class Setting:
    """A run's settings that memory depends on (the trainers' option names)."""

    processes: int = 1
    device_gib: float = 80.0
    device: str = "gpu"  # gpu, or cpu (the engine's KV cache is then a share of the RAM)
    processes_per_machine: int = 0  # 0: all of them on one machine
    shard: str = "ddp"
    shard_group_size: int = 0
    lora_rank: int = 0
    beta: float = 0.0
    algorithm: str = "grpo"
    micro_batch_size: int = 16
    max_new_tokens: int = 64
    prompt_tokens: int = 128
    prompts_per_step: int = 8
    group_size: int = 8
    vllm_memory_fraction: float = 0.25
    vllm_tensor_parallel_size: int = 1
    gradient_checkpointing: bool = False
    bf16: bool = True  # the trainer's autocast (where the device computes bf16 natively)

    @classmethod
    def of(cls, options, processes: int, device: str, device_gib: float, per_machine: int = 0, prompt_tokens: int = 128,
           algorithm: str = "grpo", bf16: bool = True) -> "Setting":
        """The setting of ``options``: any object with the trainers' option names (a training config, a saved
        config.json as a namespace, scripts/plan.py's options)."""
        same = ("shard", "shard_group_size", "lora_rank", "micro_batch_size", "max_new_tokens", "prompts_per_step",
                "group_size", "vllm_memory_fraction", "vllm_tensor_parallel_size", "gradient_checkpointing")
        return cls(processes=processes, device_gib=device_gib, device=device, processes_per_machine=per_machine,
                   beta=getattr(options, "beta", 0.0), algorithm=algorithm, prompt_tokens=prompt_tokens, bf16=bf16,
                   **{name: getattr(options, name) for name in same})

    @property
    def per_machine(self) -> int:
        return self.processes_per_machine or self.processes

    @property
    def shards(self) -> int:
        """How many ranks share one copy of the model: 1 with DDP or one process."""
        if self.shard == "ddp" or self.processes == 1:
            return 1
        return self.processes if self.shard == "fsdp" else (self.shard_group_size or self.per_machine)


def plan(shape: ModelShape, s: Setting) -> dict[str, float]:
    """Bytes per rank by component (see the module's docstring); the keys are the table's rows."""
    P, S = shape.parameters, s.shards
    trained = shape.lora_parameters(s.lora_rank) if s.lora_rank else P
    rows = {"weights": 4 * P / S, "gradients": 4 * trained / S, "AdamW moments": 8 * trained / S}
    rows["DDP gradient buckets"] = 4 * trained if s.shard == "ddp" and s.processes > 1 else 0
    rows["gathered for compute (FSDP)"] = 4 * (shape.root_parameters + 2 * shape.layer_parameters) if S > 1 else 0
    largest_unit = shape.lora_parameters(s.lora_rank) / shape.layers if s.lora_rank else max(
        shape.root_parameters, shape.layer_parameters)
    rows["unsharded gradients (FSDP)"] = 8 * largest_unit if S > 1 else 0
    needs_reference = s.beta > 0 or s.algorithm == "ppo"  # PPO: the KL penalty to the reference (kl_coef 0.05)
    rows["reference"] = 4 * P / S if needs_reference else 0
    rows["critic (PPO)"] = 16 * P / S + (4 * P if s.shard == "ddp" and s.processes > 1 else 0) if s.algorithm == "ppo" else 0
    rows["engine weights"], rows["engine KV cache"] = engine_bytes(shape, s)
    tokens = s.micro_batch_size * (s.prompt_tokens + s.max_new_tokens)
    width = 1 if s.bf16 else 2
    per_token_layer = width * (22 * shape.hidden + 10 * shape.intermediate)
    if s.gradient_checkpointing:
        rows["activations"] = tokens * (shape.layers * 4 * shape.hidden + per_token_layer)
    else:
        rows["activations"] = tokens * shape.layers * per_token_layer
    rows["logits"] = 2 * 2 * width * s.micro_batch_size * s.max_new_tokens * shape.vocab
    rows["runtime"] = RUNTIME_GIB[s.device] * GIB
    return rows


def engine_bytes(shape: ModelShape, s: Setting) -> tuple[float, float]:
    """The engine's weights (bf16, split over its tensor-parallel ranks) and its KV cache: on a GPU the rest of
    ``--vllm-memory-fraction`` of the device, on the CPU that fraction of the RAM over the machine's ranks."""
    weights = 2 * shape.parameters / s.vllm_tensor_parallel_size
    if s.device == "gpu":
        return weights, max(s.vllm_memory_fraction * s.device_gib * GIB - weights, 0.0)
    return weights, s.vllm_memory_fraction * s.device_gib * GIB / s.per_machine


def kv_cache_needed(shape: ModelShape, s: Setting) -> float:
    """Bytes of KV cache for one engine to hold all of its step's sequences at once (keys and values, bf16)."""
    sequences = s.prompts_per_step * s.group_size / s.processes * s.vllm_tensor_parallel_size
    per_token = 2 * shape.layers * shape.kv_heads * shape.head_dim * 2 / s.vllm_tensor_parallel_size
    return sequences * (s.prompt_tokens + s.max_new_tokens) * per_token


def engine_fits(shape: ModelShape, s: Setting) -> bool:
    """On a GPU the engine's weights must leave room for a KV cache inside its fraction (vLLM refuses to start
    otherwise); on the CPU its KV cache is set apart from the weights."""
    return s.device != "gpu" or 2 * shape.parameters / s.vllm_tensor_parallel_size <= 0.9 * s.vllm_memory_fraction * s.device_gib * GIB


def fits(shape: ModelShape, s: Setting) -> bool:
    return engine_fits(shape, s) and sum(plan(shape, s).values()) <= s.device_gib * GIB


def engine_parallel(shape: ModelShape, s: Setting) -> Setting:
    """``s`` with the smallest --vllm-tensor-parallel-size (a power of 2 dividing the processes) whose engine fits."""
    tp = s.vllm_tensor_parallel_size
    while not engine_fits(shape, replace(s, vllm_tensor_parallel_size=tp)) and tp * 2 <= s.processes:
        tp *= 2
    return replace(s, vllm_tensor_parallel_size=tp)


CHANGES = [  # (the flag a user would change, how the setting changes), cheapest first
    ("--gradient-checkpointing", lambda s: replace(s, gradient_checkpointing=True)),
    ("--micro-batch-size 4", lambda s: replace(s, micro_batch_size=min(s.micro_batch_size, 4))),
    ("--shard fsdp", lambda s: replace(s, shard="fsdp") if s.processes > 1 else s),
    ("--vllm-memory-fraction 0.15", lambda s: replace(s, vllm_memory_fraction=min(s.vllm_memory_fraction, 0.15))),
    ("--lora-rank 64", lambda s: replace(s, lora_rank=64) if not s.lora_rank else s),
    ("--shard fsdp --gradient-checkpointing", lambda s: replace(s, shard="fsdp", gradient_checkpointing=True)
     if s.processes > 1 else s),
    ("--lora-rank 64 --gradient-checkpointing", lambda s: replace(s, lora_rank=64, gradient_checkpointing=True)),
]


def suggest(shape: ModelShape, s: Setting) -> str | None:
    """The first change (cheapest first) after which ``s`` fits; else the fewest processes (powers of 2, up to 1024)
    over which FSDP makes it fit; None when nothing does."""
    for flags, change in CHANGES:
        changed = change(s)
        if changed != s and fits(shape, changed):
            return flags
    n = s.processes
    while n <= 1024:
        for checkpointing in (False, True):
            changed = engine_parallel(shape, replace(s, processes=n, shard="fsdp" if n > 1 else s.shard,
                                                     gradient_checkpointing=checkpointing))
            if changed != s and fits(shape, changed):
                tp = changed.vllm_tensor_parallel_size
                return (("--shard fsdp" if changed.shard != s.shard else "") +
                        (" --gradient-checkpointing" if checkpointing and not s.gradient_checkpointing else "") +
                        (f" --vllm-tensor-parallel-size {tp}" if tp != s.vllm_tensor_parallel_size else "") +
                        (f" on {n} processes (devices)" if n != s.processes else "")).strip()
        n *= 2
    return None


def read_shape(model: str) -> tuple[ModelShape, str]:
    """The shape of ``model`` (an embedded short name, a folder, a Hub name) and where its config came from.

    Only config.json is read: a folder's, the Hugging Face cache's, the published values in ``PUBLISHED``, else the
    Hub's (online)."""
    from reasoning_rl.models import EMBEDDED_MODELS, cache_dir, resolve_model
    from runtime.errors import UserError

    if model in EMBEDDED_MODELS:
        model = str(cache_dir() / model) if (cache_dir() / model / "config.json").exists() else resolve_model(model)
    folder = Path(model).expanduser()
    if (folder / "policy" / "config.json").exists():
        folder = folder / "policy"
    if (folder / "config.json").exists():
        return ModelShape.from_config(json.loads((folder / "config.json").read_text())), str(folder / "config.json")
    import huggingface_hub

    try:
        cached = huggingface_hub.try_to_load_from_cache(model, "config.json")
    except Exception:  # not a Hub name either (a folder that does not exist)
        raise UserError(f"model {model}: not a folder with a config.json, nor a Hugging Face Hub name") from None
    if isinstance(cached, str):
        return ModelShape.from_config(json.loads(Path(cached).read_text())), cached
    if model in PUBLISHED:
        return ModelShape.from_config(PUBLISHED[model]), "published values (reasoning_rl/memory_plan.py: PUBLISHED)"
    try:
        path = huggingface_hub.hf_hub_download(model, "config.json", etag_timeout=5)
    except Exception as error:
        raise UserError(f"model {model}: no config.json in a folder, the Hugging Face cache or the Hub "
                        f"({type(error).__name__}); pass a local folder") from None
    return ModelShape.from_config(json.loads(Path(path).read_text())), path


def table(shape: ModelShape, s: Setting, title: str) -> str:
    """The plan as text: one row per component in GiB, the total against the device, and the verdict."""
    rows = plan(shape, s)
    total, limit = sum(rows.values()), s.device_gib * GIB
    lines = [title, f"  {'per rank':<30} {'GiB':>8}"]
    lines += [f"  {name:<30} {value / GIB:>8.2f}" for name, value in rows.items() if value]
    lines.append(f"  {'total':<30} {total / GIB:>8.2f}   of {s.device_gib:.1f} GiB ({s.device})")
    need = kv_cache_needed(shape, s)
    if need > rows["engine KV cache"]:
        lines.append(f"  note: the step's sequences need {need / GIB:.2f} GiB of KV cache at once and the engine gets "
                     f"{rows['engine KV cache'] / GIB:.2f}; vLLM then samples them in several waves (slower)")
    if not engine_fits(shape, s):
        lines.append(f"  the engine's weights ({rows['engine weights'] / GIB:.1f} GiB) do not fit its "
                     f"--vllm-memory-fraction of the device ({s.vllm_memory_fraction * s.device_gib:.1f} GiB)")
    if fits(shape, s):
        lines.append(f"  fits ({(limit - total) / GIB:.1f} GiB to spare)")
    else:
        change = suggest(shape, s)
        lines.append(f"  does not fit ({max(total - limit, 0) / GIB:.1f} GiB over the device): " +
                     (f"add {change}" if change else "no single change is enough; shard over more processes or use LoRA"))
    return "\n".join(lines)


def run_setting(cfg, dist, algorithm: str) -> Setting:
    """The ``Setting`` of a training run's config on this rank's device (a GPU's memory, or the machine's RAM)."""
    import psutil
    import torch

    from runtime.distributed import native_bf16

    gpu = dist.device.type == "cuda"
    gib = (torch.cuda.get_device_properties(dist.device).total_memory if gpu else psutil.virtual_memory().total) / GIB
    return Setting.of(cfg, dist.world, "gpu" if gpu else "cpu", gib, dist.local_world, algorithm=algorithm,
                      bf16=cfg.autocast and native_bf16(dist.device.type))


def over_budget(shape: ModelShape, s: Setting) -> str | None:
    """One line saying what ``s`` needs against the device and the change that would make it fit; None if it fits."""
    total = sum(plan(shape, s).values()) / GIB
    if fits(shape, s):
        return None
    change = suggest(shape, s)
    return (f"this setting needs about {total:.1f} GiB per rank and the {s.device} has {s.device_gib:.0f} GiB "
            f"(scripts/plan.py shows each part); " + (f"add {change}" if change else "shard over more processes or use LoRA"))


def preflight(cfg, dist, algorithm: str) -> None:
    """The plan of this run, on every rank before anything loads: on a GPU a setting that cannot fit is refused in one
    line naming the change that would make it fit; on the CPU (where the kernel, not an allocator, has the last word)
    it is a warning."""
    from runtime.errors import UserError

    try:
        shape, _ = read_shape(cfg.model)
    except UserError:
        return  # the model's own check (resolve_model) says what is wrong with the name
    s = run_setting(cfg, dist, algorithm)
    message = over_budget(shape, s)
    if message and s.device == "gpu":
        raise UserError(message)
    if message and dist.is_main:
        print(f"warning: {message}")
