"""Atomic checkpoints and resume.

A checkpoint is a folder ``<output>/checkpoints/step_000010`` holding the policy
(``save_pretrained``: full weights, or the LoRA adapter), ``training_state.pt`` (optimizer,
scheduler, RNG states) and ``trainer_state.json`` (step, data cursor). It is written into a
temporary folder next to it and renamed into place, so a killed run never leaves a half
written checkpoint; only the newest ``keep`` checkpoints are kept. Folders and files get the
usual permissions (the umask's), so others in a shared group can read them.

Size: the float32 weights plus AdamW's two moments, three times the weights: about 1.6 GB for
the embedded 135M model (0.54 GB of weights). By default one checkpoint is kept (``keep``) and
only the newest holds the optimizer state (``optimizer_state="newest"``); ``"none"`` keeps models
only (0.54 GB each, not resumable), ``"all"`` the state in every kept one. A LoRA checkpoint holds
only the adapter and its optimizer state.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

import torch


@contextmanager
def atomic_folder(target: Path) -> Iterator[Path]:
    """Yield an empty temporary folder beside ``target``; when the block ends, it replaces ``target``
    in one rename, so a reader never sees a half-written folder (a killed writer leaves ``.name-*``; a write
    that fails, for example on a full disk, removes its temporary folder and leaves ``target`` untouched)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    tmp.chmod(0o777 & ~_umask())  # mkdtemp makes it private (700); a checkpoint gets the usual permissions
    try:
        yield tmp
    except BaseException:  # a failed write (a full disk) leaves nothing behind, and ``target`` as it was
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if target.exists():
        shutil.rmtree(target)
    os.replace(tmp, target)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def save_checkpoint(output_dir: Path, step: int, policy, tokenizer, optimizer, scheduler, state: dict, keep: int = 1,
                    extra: Callable[[Path], None] | None = None, optimizer_state: str = "newest") -> Path:
    """Write the checkpoint of ``step``; ``extra(folder)`` adds an algorithm's own state (PPO's critic).

    ``optimizer_state="newest"`` removes ``training_state.pt`` (AdamW's two moments: twice the size of
    float32 weights) from the older kept checkpoints, which stay loadable as models; ``"none"`` from all of them.
    """
    root = checkpoint_root(output_dir)
    final = root / f"step_{step:06d}"
    with atomic_folder(final) as tmp:
        policy.save_pretrained(tmp / "policy")
        tokenizer.save_pretrained(tmp / "policy")
        if extra is not None:
            extra(tmp)
        write_training_state(tmp, step, state, scheduler, optimizer)
    retain(root, keep, optimizer_state)
    return final


def checkpoint_root(output_dir: Path) -> Path:
    """``output_dir/checkpoints``, made if need be, without the temporary folders a run killed while saving left."""
    root = Path(output_dir) / "checkpoints"
    root.mkdir(parents=True, exist_ok=True)
    for stale in root.glob(".step_*"):
        shutil.rmtree(stale, ignore_errors=True)
    return root


def write_training_state(folder: Path, step: int, state: dict, scheduler, optimizer=None) -> None:
    """``training_state.pt`` (the optimizer unless a sharded run keeps it apart, the scheduler, the random generators)
    and ``trainer_state.json``."""
    blob = {"scheduler": scheduler.state_dict(), "torch_rng": torch.get_rng_state(), "python_rng": random.getstate()}
    torch.save({"optimizer": optimizer.state_dict(), **blob} if optimizer is not None else blob, folder / "training_state.pt")
    (folder / "trainer_state.json").write_text(json.dumps({**state, "step": step}, indent=2))


def retain(root: Path, keep: int, optimizer_state: str) -> None:
    """Keep the newest ``keep`` checkpoints; the optimizer's state (``training_state.pt``, and a sharded run's
    ``sharded/optimizer``) only in the newest (``newest``) or in none (``none``: models only, nothing to resume)."""
    kept = sorted(root.glob("step_*"))
    for old in kept[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    if optimizer_state in ("newest", "none"):
        for old in kept[-keep:] if optimizer_state == "none" else kept[-keep:-1]:
            shutil.rmtree(old / "sharded" / "optimizer", ignore_errors=True)
            (old / "training_state.pt").unlink(missing_ok=True)


def latest_checkpoint(output_dir: Path) -> Path | None:
    """The newest checkpoint that a run can resume from (with its optimizer and trainer state)."""
    done = [c for c in sorted((Path(output_dir) / "checkpoints").glob("step_*")) if (c / "training_state.pt").exists()]
    return done[-1] if done else None


def load_training_state(checkpoint: Path, optimizer, scheduler) -> dict:
    """Restore optimizer, scheduler and RNG states; returns the trainer_state.json dict."""
    blob = torch.load(checkpoint / "training_state.pt", weights_only=False)
    if "optimizer" in blob:  # a sharded run's is in sharded/optimizer (sharded_checkpoint.load_state)
        optimizer.load_state_dict(blob["optimizer"])
    scheduler.load_state_dict(blob["scheduler"])
    torch.set_rng_state(blob["torch_rng"])
    random.setstate(blob["python_rng"])
    return json.loads((checkpoint / "trainer_state.json").read_text())
