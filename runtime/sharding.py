"""FSDP2: each rank holds a shard of every weight, gradient and AdamW moment (``--shard fsdp``).

PyTorch's ``fully_shard`` does the work; this module only says what to shard and how to read it back:

* ``shard`` wraps each decoder layer (the classes a Hugging Face model lists in ``_no_split_modules``), then the
  root: the root's own weights (embeddings, final norm, head) form one group, each layer another. A forward
  all-gathers one group at a time and frees it after use, so a rank holds its shards plus one layer in full.
* ``mesh`` is a 1-D mesh over all ranks (``fsdp``), or 2-D for hybrid sharding (``hsdp``: shard within a group of
  ranks, usually one machine, and replicate across groups, so the all-gathers stay on the machine's fast links).
  It is built on ``Dist``'s own device type, passed explicitly: on the CPU a gloo mesh, so the CPU tests run the
  code a GPU runs (accelerate's FSDP plugin silently does not shard on a CPU run).
* ``full_items`` streams the full weights one tensor at a time (an all-gather each, on every rank in the same
  order), for the engine's weight sync and the exported model; the whole model is never held twice.

Every forward of a sharded model is a collective, so every rank must run the same sequence of forwards and
backwards; ``Dist.lockstep`` and ``ForwardCount`` make the ranks that have fewer rows do empty ones.
"""

from __future__ import annotations

from typing import Iterator

import torch

SHARD_KINDS = ("ddp", "fsdp", "hsdp")


def mesh(kind: str, world: int, group: int, device_type: str):
    """The device mesh for ``kind``: ``(world,)`` for fsdp, ``(world // group, group)`` (replicate, shard) for hsdp."""
    from torch.distributed.device_mesh import init_device_mesh

    if kind == "hsdp":
        return init_device_mesh(device_type, (world // group, group), mesh_dim_names=("replicate", "shard"))
    return init_device_mesh(device_type, (world,), mesh_dim_names=("shard",))


def layer_classes(model: torch.nn.Module) -> set[str]:
    """The names of the classes that transformers keeps whole (``_no_split_modules``): the decoder layers."""
    names: set[str] = set()
    for module in model.modules():
        names.update(getattr(module, "_no_split_modules", None) or [])
    return names


def root(model: torch.nn.Module) -> torch.nn.Module:
    """The module sharded as the root: the model itself, or under LoRA the transformers model inside the peft
    wrapper, because ``generate`` calls that one's forward, not the wrapper's."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def is_sharded(model: torch.nn.Module) -> bool:
    from torch.distributed.fsdp import FSDPModule

    return isinstance(root(model), FSDPModule)


def set_gradient_sync(model: torch.nn.Module, sync: bool) -> None:
    """FSDP2's switch: without sync a backward adds into unsharded local gradients; with it, they are reduce-scattered."""
    root(model).set_requires_gradient_sync(sync)


def shard(model: torch.nn.Module, device_mesh) -> torch.nn.Module:
    """``model`` with FSDP2 on each decoder layer and on the root (in place; the same module is returned).

    Parameters become ``DTensor`` shards, so an optimizer must be built after this. Frozen parameters (a
    reference model, LoRA's base weights) are sharded alike and simply get no gradient.
    """
    from torch.distributed.fsdp import fully_shard

    if is_sharded(model):
        return model
    layers = layer_classes(model)
    blocks = [m for m in model.modules() if type(m).__name__ in layers]
    if not blocks:
        raise ValueError(f"{type(model).__name__} names no decoder layer class (_no_split_modules) to shard by")
    for block in blocks:
        fully_shard(block, mesh=device_mesh)
    fully_shard(root(model), mesh=device_mesh)
    return model


def full_tensor(t: torch.Tensor) -> torch.Tensor:
    """A ``DTensor``'s full value (an all-gather, on every rank), or the tensor itself."""
    from torch.distributed.tensor import DTensor

    return t.full_tensor() if isinstance(t, DTensor) else t


def full_items(state: dict[str, torch.Tensor]) -> Iterator[tuple[str, torch.Tensor]]:
    """``(name, full tensor)`` one at a time, in the state dict's order (the same on every rank)."""
    for name, value in state.items():
        yield name, full_tensor(value.detach())


def local_bytes(tensors) -> int:
    """The bytes this rank holds of ``tensors`` (a ``DTensor``'s local shard; a plain tensor whole)."""
    from torch.distributed.tensor import DTensor

    return sum((t.to_local() if isinstance(t, DTensor) else t).nbytes for t in tensors)


class ForwardCount:
    """Counts a model's root forwards inside a ``with`` block; ``Dist.catch_up`` then runs the forwards this rank
    lacks against the busiest rank (an FSDP forward all-gathers, so all ranks must run as many)."""

    def __init__(self, model: torch.nn.Module):
        self.model, self.n = model, 0

    def __enter__(self) -> "ForwardCount":
        self.handle = self.model.register_forward_pre_hook(self.count)
        return self

    def count(self, module, args) -> None:
        self.n += 1

    def __exit__(self, *exc) -> None:
        self.handle.remove()
