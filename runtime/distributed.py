"""Ranks and devices: the same loop on one CPU, one GPU, or many processes on many machines.

Nothing here is a distributed engine of its own. ``Dist.start()`` asks ``accelerate`` for this
process's place (rank, world size, device), which it reads from the launcher (``torchrun``,
``accelerate launch``); the policy and PPO's critic are wrapped in DDP by ``accelerator.prepare``;
the few collectives the loop needs (sums of counts, gathering Python objects, a barrier) are
accelerate's and torch.distributed's. The pattern is TRL's "colocate" one: every rank holds the
policy and its own in-process vLLM engine, samples its own share of each step's prompts, and the
gradients are averaged over ranks in the one synchronised backward of each optimizer step.

With ``--shard fsdp`` (or ``hsdp``) the models are sharded with FSDP2 instead of wrapped in DDP
(``runtime/sharding.py``): each rank keeps a shard of every weight, gradient and moment. Every forward
is then a collective, so ``lockstep`` and ``lockstep_forwards`` let a rank with fewer rows run the
empty passes that keep it in step with the others (each rank says first how many passes it has).

A single process (no launcher) is the case ``world == 1``: every collective returns at once, and
the same lines run on the CPU here and on a GPU (``device`` is ``cuda:<local rank>`` there).
"""

from __future__ import annotations

import functools
import os
import warnings
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass

import torch

from runtime import sharding


@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    local_world: int = 1
    device: torch.device = torch.device("cpu")
    accelerator: object | None = None  # accelerate.Accelerator, None for a plain single process (unit tests)
    shard: str = "ddp"  # ddp (whole models, DDP), fsdp or hsdp (FSDP2 shards; runtime/sharding.py)
    mesh: object | None = None  # the FSDP2 device mesh (several ranks with fsdp or hsdp)

    @classmethod
    def start(cls, shard: str = "ddp", shard_group: int = 0) -> "Dist":
        """This process's place, from the launcher's environment (one process without one).

        On a machine without CUDA the ranks talk over gloo on the CPU (accelerate's ``MULTI_CPU``);
        with CUDA, over NCCL, one GPU per rank. Mixed precision stays the trainer's own bf16 autocast
        (``--autocast``), on either device: accelerate's would cast the whole ``[B, T, V]`` logits
        to float32, the tensor that ``logprobs.SelectiveLogSoftmax`` exists to never copy.
        """
        from accelerate import Accelerator, DistributedDataParallelKwargs

        # torch 2.13 renames the option (forward_sync_buffers); the old name works on every version users have
        warnings.filterwarnings("ignore", message=r".*`broadcast_buffers` is deprecated.*")
        # Ranks run different numbers of forward passes (their own rows, micro-batches, skipped rows), so DDP
        # must not broadcast buffers in every forward, a collective that would pair unrelated passes.
        ddp = DistributedDataParallelKwargs(broadcast_buffers=False)
        accelerator = Accelerator(cpu=not torch.cuda.is_available(), mixed_precision="no", kwargs_handlers=[ddp])
        local_world = int(os.environ.get("LOCAL_WORLD_SIZE", 1))
        dist = cls(accelerator.process_index, accelerator.num_processes, accelerator.local_process_index, local_world,
                   accelerator.device, accelerator, shard)
        if dist.sharded:  # ranks per shard group: hsdp's --shard-group-size, by default one machine's
            dist.mesh = sharding.mesh(shard, dist.world, shard_group or local_world, dist.device.type)
        return dist

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def sharded(self) -> bool:
        """Models are FSDP2-sharded (``--shard fsdp`` or ``hsdp`` on several ranks; one process has nothing to shard)."""
        return self.shard != "ddp" and self.world > 1

    def shard_model(self, model: torch.nn.Module) -> torch.nn.Module:
        """``model`` on this rank's device, FSDP2-sharded when ``sharded`` (before any optimizer is built on it)."""
        model = model.to(self.device)
        return sharding.shard(model, self.mesh) if self.sharded else model

    def prepare(self, model: torch.nn.Module) -> torch.nn.Module:
        """``model`` on this rank's device, ready to train on every rank: wrapped in DDP when there are several ranks
        (accelerate's ``prepare_model``), or sharded (``shard_model``; the module itself is returned)."""
        if self.sharded:
            return self.shard_model(model)
        if self.accelerator is None:
            return model.to(self.device)
        return self.accelerator.prepare_model(model)

    def sum(self, values: list[float]) -> list[float]:
        """Elementwise sum over ranks (float64)."""
        if self.world == 1:
            return list(values)
        t = torch.tensor(values, dtype=torch.float64, device=self.device)
        torch.distributed.all_reduce(t)
        return t.tolist()

    def gather(self, obj) -> list:
        """``[obj of rank 0, obj of rank 1, ...]`` on every rank (any picklable object)."""
        if self.world == 1:
            return [obj]
        out = [None] * self.world
        torch.distributed.all_gather_object(out, obj)
        return out

    def print(self, *args, **kwargs) -> None:
        """``print`` on rank 0 only."""
        if self.is_main:
            print(*args, **kwargs)

    def barrier(self) -> None:
        if self.world > 1:
            torch.distributed.barrier()

    def share(self, items: list) -> list:
        """This rank's contiguous share of ``items`` (their number divisible by the world size)."""
        n = len(items) // self.world
        return items[self.rank * n : (self.rank + 1) * n]

    @contextmanager
    def accumulate(self, models: list[torch.nn.Module], sync: bool):
        """Backward passes inside add into ``.grad`` locally; with ``sync`` the DDP all-reduce (FSDP2's
        reduce-scatter) of the summed gradients runs at the end of the backward (the last micro-batch of an
        optimizer step)."""
        if self.sharded:
            for model in models:
                sharding.set_gradient_sync(model, sync)
            try:
                yield
            finally:
                for model in models:
                    sharding.set_gradient_sync(model, True)
            return
        with ExitStack() as stack:
            if not sync and self.world > 1:
                for model in models:
                    stack.enter_context(model.no_sync())
            yield

    def lockstep(self, n: int) -> int:
        """The number of passes every rank runs where this rank has ``n``: the most of any rank when the models are
        sharded (each pass is a collective), else ``n``."""
        if not self.sharded:
            return n
        t = torch.tensor([n], device=self.device)
        torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MAX)
        return int(t.item())

    @contextmanager
    def lockstep_forwards(self, model: torch.nn.Module, pad_id: int, planned: int):
        """The ``planned`` forward passes (without gradient) of a sharded ``model`` run inside; then as many one-token
        forwards as this rank planned fewer than the busiest rank. The plans are compared before any pass, since
        an all-gather must pair with the other ranks' all-gathers, not with a count."""
        if not self.sharded:
            yield
            return
        total = self.lockstep(planned)
        with sharding.ForwardCount(model) as count:
            yield
        if count.n != planned:
            raise RuntimeError(f"{count.n} forward passes ran where {planned} were planned; the ranks are out of step")
        ids = torch.tensor([[pad_id]], device=self.device)
        with torch.no_grad():
            for _ in range(total - planned):
                model(input_ids=ids, attention_mask=torch.ones_like(ids))


def zero_backward(models: list[torch.nn.Module], pad_id: int, device: torch.device) -> None:
    """A backward of 0 through each (DDP-wrapped) model: a rank with nothing to train in an optimizer
    step still takes part in the gradient all-reduce that the other ranks are waiting in."""
    ids = torch.tensor([[pad_id]], device=device)
    for model in models:
        out = model(input_ids=ids, attention_mask=torch.ones_like(ids))
        getattr(out, "logits", out).sum().mul(0).backward()


SINGLE = Dist()


@functools.cache
def native_bf16(device_type: str = "cpu") -> bool:
    """Whether this machine's ``device_type`` computes bfloat16 natively: a CUDA GPU that supports it, or a CPU with
    AVX512_BF16 or AMX (x86) or BF16 (Arm). Elsewhere torch and vLLM emulate bf16 in float32 code, and it is slower,
    not faster: on an AVX2-only CPU here a 1024 x 1024 matrix product ran at 0.7 GFLOP/s in bf16 against 62 in
    float32, and vLLM sampled 15 tokens/s against 57. The trainer's bf16 autocast and the engine's dtype follow it."""
    if device_type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if device_type != "cpu":
        return False
    try:
        flags = open("/proc/cpuinfo").read()
    except OSError:  # not Linux: no way to tell, so stay with the safe float32
        return False
    return any(flag in flags.split() for flag in ("avx512_bf16", "amx_bf16", "bf16"))


def bf16_dtype(device_type: str = "cpu") -> str:
    """The dtype for a bf16-by-default computation on this machine: bfloat16 where it is native, else float32."""
    return "bfloat16" if native_bf16(device_type) else "float32"
