"""Checkpoints of sharded runs (``--shard fsdp``/``hsdp``): every rank writes its own shards.

A checkpoint folder holds what a DDP one holds (``checkpoint.py``), with the weights and AdamW's moments as
``torch.distributed.checkpoint`` (DCP) folders instead of one file:

* ``sharded/model`` and ``sharded/optimizer``: each rank's shards and DCP's metadata. DCP reshards on load, so a
  run saved on 2 ranks resumes on 1 or on 4 (and a 1-process ``--shard fsdp`` run resumes on 2);
* ``policy/``: the weights as a plain Hugging Face folder (``model-0000k-of-0000n.safetensors`` and their index),
  gathered one tensor at a time and written by rank 0 in files of at most ``EXPORT_FILE_BYTES``, so no rank holds
  the whole model twice; ``evaluate.py``, transformers and vLLM load it; a LoRA run writes its adapter;
* ``training_state.pt`` (scheduler and random generators) and ``trainer_state.json``, written by rank 0.

The folder is written under a temporary name that rank 0 renames once every rank has finished, so a run killed
during a save leaves the previous checkpoint as it was (``checkpoint.latest_checkpoint`` never sees the new one).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Callable

import torch

from reasoning_rl.checkpoint import checkpoint_root, retain, write_training_state
from runtime.distributed import Dist
from runtime.sharding import full_items

# a run on one process (resuming a sharded run, or --shard fsdp alone) reads and writes DCP without a process group
warnings.filterwarnings("ignore", message=r"torch.distributed is disabled, unavailable or uninitialized")

EXPORT_FILE_BYTES = 2 * 2**30  # per safetensors file of an exported model (transformers' own default is 5 GB)


def save_sharded_checkpoint(output_dir: Path, step: int, policy, tokenizer, optimizer, scheduler, state: dict,
                            dist: Dist, keep: int = 1, extra: Callable[[Path], None] | None = None,
                            optimizer_state: str = "newest") -> Path:
    """Every rank: write the checkpoint of ``step`` (see the module's docstring); ``extra(folder)`` runs on every
    rank. An ``OSError`` on any rank (a full disk) is raised on every rank, the temporary folder removed and the
    previous checkpoints left as they were."""
    tmp, error = new_folder(Path(output_dir), step, dist), None
    root = tmp.parent
    try:
        save_state(tmp / "sharded", policy, optimizer)
        export_pretrained(policy, tokenizer, tmp / "policy", dist)
        if extra is not None:
            extra(tmp)
        if dist.is_main:
            write_training_state(tmp, step, state, scheduler)  # AdamW's moments are in sharded/optimizer
    except OSError as failed:
        error = failed
    errors = [e for e in dist.gather(error) if e is not None]
    final = root / f"step_{step:06d}"
    if dist.is_main:
        if errors:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            if final.exists():
                shutil.rmtree(final)
            os.replace(tmp, final)
            retain(root, keep, optimizer_state)
    dist.barrier()
    if errors:
        raise errors[0]
    return final


def save_state(folder: Path, model: torch.nn.Module, optimizer=None) -> None:
    """``model``'s (and ``optimizer``'s) sharded state into ``folder/model`` (and ``folder/optimizer``), every rank."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_model_state_dict, get_optimizer_state_dict

    dcp.save(get_model_state_dict(model), checkpoint_id=folder / "model")
    if optimizer is not None:
        dcp.save(get_optimizer_state_dict(model, optimizer), checkpoint_id=folder / "optimizer")


def load_state(folder: Path, model: torch.nn.Module, optimizer=None) -> None:
    """The inverse of ``save_state``, resharded to this run's ranks (any number; one process too)."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import (get_model_state_dict, get_optimizer_state_dict,
                                                         set_model_state_dict, set_optimizer_state_dict)

    state = get_model_state_dict(model)
    dcp.load(state, checkpoint_id=folder / "model")
    set_model_state_dict(model, state)
    if optimizer is not None:
        state = get_optimizer_state_dict(model, optimizer)  # initialises AdamW's moments, then fills them
        dcp.load(state, checkpoint_id=folder / "optimizer")
        set_optimizer_state_dict(model, optimizer, state)


def export_pretrained(model: torch.nn.Module, tokenizer, folder: Path, dist: Dist) -> None:
    """``model`` as a Hugging Face folder, gathered tensor by tensor on every rank and written by rank 0 in files of
    at most ``EXPORT_FILE_BYTES`` (a LoRA model: its adapter only, which is small)."""
    from safetensors.torch import save_file

    if hasattr(model, "peft_config"):
        adapter = {k: v.cpu() for k, v in full_items({k: v for k, v in model.state_dict().items() if "lora_" in k})}
        if dist.is_main:
            model.save_pretrained(folder, state_dict=adapter)
            tokenizer.save_pretrained(folder)
        return
    files, part, size, error = [], {}, 0, None
    tied = {name for name, _ in model.named_parameters(remove_duplicate=False)} - {n for n, _ in model.named_parameters()}
    for name, tensor in full_items(model.state_dict()):  # every rank takes part in every gather, even after an error
        if name in tied or not dist.is_main or error:  # a tied weight (the head that shares the embedding) once
            continue
        part[name], size = tensor.cpu().contiguous(), size + tensor.nbytes
        if size >= EXPORT_FILE_BYTES:
            try:
                files.append(_write_part(folder, len(files), part, save_file))
            except OSError as failed:
                error = failed
            part, size = {}, 0
    if not dist.is_main:
        return
    if error:
        raise error
    if part or not files:
        files.append(_write_part(folder, len(files), part, save_file))
    _name_parts(folder, files)
    model.config.save_pretrained(folder)
    if getattr(model, "generation_config", None) is not None:
        model.generation_config.save_pretrained(folder)
    tokenizer.save_pretrained(folder)


def _write_part(folder: Path, k: int, part: dict[str, torch.Tensor], save_file) -> tuple[Path, list[str]]:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"part-{k:05d}.safetensors"
    save_file(part, str(path), metadata={"format": "pt"})
    return path, list(part)


def _name_parts(folder: Path, files: list[tuple[Path, list[str]]]) -> None:
    """transformers' names (``model.safetensors``, or ``model-0000k-of-0000n.safetensors`` with an index)."""
    if len(files) == 1:
        files[0][0].rename(folder / "model.safetensors")
        return
    weight_map = {}
    for k, (path, names) in enumerate(files, 1):
        final = f"model-{k:05d}-of-{len(files):05d}.safetensors"
        path.rename(folder / final)
        weight_map.update(dict.fromkeys(names, final))
    total = sum((folder / f).stat().st_size for f in set(weight_map.values()))
    (folder / "model.safetensors.index.json").write_text(json.dumps({"metadata": {"total_size": total},
                                                                     "weight_map": weight_map}, indent=2))


def new_folder(output_dir: Path, step: int, dist: Dist) -> Path:
    """The temporary folder in ``output_dir/checkpoints`` that every rank writes the checkpoint of ``step`` into
    (made by rank 0)."""
    name = None
    if dist.is_main:
        name = tempfile.mkdtemp(prefix=f".step_{step:06d}-", dir=checkpoint_root(output_dir))
    return Path(dist.gather(name)[0])
