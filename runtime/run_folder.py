"""One run per output folder: an OS lock held for the run's life, and a refusal to start a new run over another's.

``claim(folder, holds, resume=..., overwrite=...)`` is the first thing an entry point does with its folder, before any
model loads:

1. It takes an exclusive ``flock`` on ``folder/.lock``. The kernel releases it when the process ends, however it
   ends, so a killed run never leaves a stale lock. The file names the holder (pid, host, start, command); a second
   run into the folder fails at once with that in one line. (``flock`` also holds between machines on NFS v4.)
2. A new run (no ``resume``) into a folder whose ``holds(folder)`` describes another run's outputs refuses, in one
   line that offers ``--resume`` and ``--overwrite``. ``overwrite`` moves the old run aside to a dated sibling
   folder (``runs/grpo.2026-12-02T13-05-11``) and starts in an empty one: nothing is deleted.

On several ranks, rank 0 claims the folder and the others learn the outcome (``claim_on_ranks``). The lock is
re-entrant within one process (a test that runs twice in-process), and ``release`` lets go of it when a run ends.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import sys
import time
from pathlib import Path
from typing import Callable

from runtime.errors import UserError

LOCK_NAME = ".lock"
_held: dict[Path, int] = {}  # folder (resolved) -> the open file descriptor holding its lock


def lock(folder: Path) -> None:
    """Hold ``folder``'s lock until ``release`` or the end of the process; a ``UserError`` naming the holder."""
    folder = Path(folder)
    key = folder.resolve()
    if key in _held:
        return
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(folder / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as error:
        raise UserError(f"cannot write the output folder {folder}: {error.strerror or error}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _read_holder(fd)
        os.close(fd)
        raise UserError(f"{folder} is in use by another run ({holder}); wait for it to end, or choose another "
                        "--output-dir") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                              "started": time.strftime("%Y-%m-%d %H:%M:%S"), "command": " ".join(sys.argv)}).encode(), 0)
    _held[key] = fd


def _read_holder(fd: int) -> str:
    try:
        info = json.loads(os.pread(fd, 65536, 0) or b"{}")
        return f"pid {info['pid']} on {info['host']}, started {info['started']}"
    except (OSError, ValueError, KeyError):
        return "its holder did not say who it is"


def release(folder: Path) -> None:
    """Let go of ``folder``'s lock (a no-op when this process does not hold it)."""
    fd = _held.pop(Path(folder).resolve(), None)
    if fd is not None:
        os.close(fd)  # closing the descriptor releases the flock


def release_all() -> None:
    """Let go of every folder lock this process holds."""
    for folder in list(_held):
        release(folder)


def aside_name(folder: Path) -> Path:
    """A dated sibling of ``folder`` that does not exist yet: ``runs/grpo.2026-12-02T13-05-11`` (``-2``, ... if taken)."""
    stamp = time.strftime("%Y-%m-%dT%H-%M-%S")
    candidate, n = folder.with_name(f"{folder.name}.{stamp}"), 1
    while candidate.exists():
        n += 1
        candidate = folder.with_name(f"{folder.name}.{stamp}-{n}")
    return candidate


def move_aside(folder: Path) -> Path:
    """Move ``folder`` (whose lock this process holds) to a dated sibling and lock a new, empty ``folder``."""
    aside = aside_name(folder)
    os.replace(folder, aside)
    release(folder)  # its descriptor now points into ``aside``: drop it
    lock(folder)
    (aside / LOCK_NAME).unlink(missing_ok=True)
    return aside


def claim(folder: str | Path, holds: Callable[[Path], str | None], *, resume: bool, overwrite: bool,
          resume_flags: str | None = "--resume") -> Path:
    """Lock ``folder`` for this run; a new run into a folder that ``holds`` another run refuses unless ``overwrite``,
    which moves the old one aside. ``holds(folder)`` says what the folder holds ("checkpoints up to step 24,
    results.json"), or None when it holds nothing of a run. Returns the folder."""
    folder = Path(folder)
    lock(folder)
    held = holds(folder)
    if not held or resume:
        return folder
    if not overwrite:
        release(folder)
        go_on = f"add {resume_flags} to continue it, " if resume_flags else ""
        raise UserError(f"{folder} holds another run ({held}); {go_on}--overwrite to move it aside to a dated folder "
                        "beside it and start anew, or choose another --output-dir")
    aside = move_aside(folder)
    print(f"--overwrite: the run that was in {folder} is now in {aside}", flush=True)
    return folder


def claim_on_ranks(dist, claim_it: Callable[[], Path]) -> Path:
    """Rank 0 runs ``claim_it``; every rank gets its folder, or the same ``UserError`` when rank 0's claim failed."""
    folder, error = None, None
    if dist.is_main:
        try:
            folder = claim_it()
        except UserError as failed:
            error = str(failed)
    folder, error = dist.gather((folder, error))[0]
    if error:
        raise UserError(error)
    return folder
