"""Run outputs: ``metrics.jsonl`` (one line per step), TensorBoard scalars, sample completions; and what a run
measures of itself (peak memory, a fingerprint of the weights, wall time)."""

from __future__ import annotations

import ctypes
import functools
import hashlib
import json
import resource
from pathlib import Path

import torch


class MetricsLogger:
    """``log(step, metrics)`` to metrics.jsonl and TensorBoard; ``enabled=False`` (ranks other than 0) writes nothing."""

    def __init__(self, output_dir: Path, resume_step: int = 0, tensorboard: bool = True, enabled: bool = True):
        self.path, self.enabled, self.tb = Path(output_dir) / "metrics.jsonl", enabled, None
        if not enabled:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._truncate_after(resume_step)
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(Path(output_dir) / "tensorboard"), purge_step=resume_step + 1 if resume_step else None)

    def _truncate_after(self, step: int) -> None:
        """On resume, drop lines of steps after the checkpoint (they will be redone)."""
        for path in (self.path, self.path.parent / "completions.jsonl"):
            truncate_jsonl(path, step)

    def log(self, step: int, metrics: dict) -> None:
        if not self.enabled:
            return
        with open(self.path, "a") as f:
            f.write(json.dumps({"step": step, **metrics}) + "\n")
        if self.tb is not None:
            for key, value in metrics.items():
                if isinstance(value, (int, float)):
                    self.tb.add_scalar(key, value, step)
            self.tb.flush()

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


def truncate_jsonl(path: Path, step: int) -> None:
    """Keep the lines of a per-step JSONL file whose step is at most ``step`` (a cut-off last line is dropped)."""
    if not path.exists():
        return
    kept = []
    for line in path.read_text().splitlines():
        try:
            if line.strip() and json.loads(line)["step"] <= step:
                kept.append(line)
        except json.JSONDecodeError:
            pass
    path.write_text("".join(line + "\n" for line in kept))


def read_metrics(output_dir: Path) -> list[dict]:
    path = Path(output_dir) / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def write_samples(output_dir: Path, step: int, prompts: list[str], completions: list[str], rewards: list[float], answers: list) -> None:
    path = Path(output_dir) / "samples.jsonl"
    with open(path, "a") as f:
        for p, c, r, a in zip(prompts, completions, rewards, answers):
            f.write(json.dumps({"step": step, "prompt": p, "completion": c, "reward": r, "answer": a}) + "\n")


def write_completions(output_dir: Path, step: int, rollouts) -> None:
    """Every completion of the step with its reference answer, reward and verdict (``completions.jsonl``); with tools
    also the text that was graded (after the last tool output) and each call's status."""
    verdicts = rollouts.verdicts or [None] * len(rollouts)
    graded = rollouts.graded_texts
    with open(Path(output_dir) / "completions.jsonl", "a") as f:
        for i, (text, answer) in enumerate(zip(rollouts.texts, rollouts.answers)):
            problem = rollouts.problems[i // rollouts.group_size]
            verdict = verdicts[i].to_dict() if verdicts[i] is not None else None
            row = {"step": step, "id": problem.id, "answer": answer, "completion": text,
                   "reward": rollouts.rewards[i].item(), "verdict": verdict}
            if rollouts.tool_calls is not None:
                row.update(graded=graded[i], tool_calls=[c.status for c in rollouts.tool_calls[i]])
            f.write(json.dumps(row) + "\n")


_cuda_peak_bytes = 0  # the same on a GPU, before torch's peak was reset
_cpu_peak_kib = 0  # the highest resident peak read before ``step_memory_gib`` reset the kernel's high-water mark


def peak_memory_gib() -> float:
    """Peak resident memory of this process so far (CPU) or peak allocated GPU memory, in GiB.

    On the CPU ``step_memory_gib`` resets the kernel's high-water mark after each step, so the run's peak is the higher
    of what it read before each reset and the high-water mark since the last. That mark is the kernel's ``VmHWM``, not
    ``ru_maxrss``, which a process started by ``exec`` inherits from the one before it (a run launched from a large
    process would report that process's peak)."""
    if torch.cuda.is_available():
        return max(torch.cuda.max_memory_allocated(), _cuda_peak_bytes) / 2**30
    since_reset = _status_kib().get("VmHWM") or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # no /proc: rusage
    return max(since_reset, _cpu_peak_kib) / 2**20


def _status_kib() -> dict[str, int]:
    """The kernel's ``VmHWM`` and ``VmRSS`` of this process in KiB (empty where there is no ``/proc``)."""
    try:
        lines = Path("/proc/self/status").read_text().splitlines()
    except OSError:
        return {}
    status = dict(line.split(":", 1) for line in lines if ":" in line)
    return {key: int(status[key].split()[0]) for key in ("VmHWM", "VmRSS") if key in status}


def step_memory_gib() -> dict[str, float]:
    """The step's own memory: ``memory/step_peak_gib``, the peak since the previous call (CPU: the kernel's resident
    high-water mark, reset after reading through ``/proc/self/clear_refs``; GPU: torch's peak allocated, reset), and
    ``memory/rss_gib``, what the process holds now (CPU resident; GPU allocated). A peak that grows from step to step
    is a leak or fragmentation; ``memory/peak_gib``, the run's maximum so far, cannot show that."""
    global _cpu_peak_kib, _cuda_peak_bytes
    if torch.cuda.is_available():
        peak, now = torch.cuda.max_memory_allocated(), torch.cuda.memory_allocated()
        _cuda_peak_bytes = max(_cuda_peak_bytes, peak)
        torch.cuda.reset_peak_memory_stats()
        return {"memory/step_peak_gib": peak / 2**30, "memory/rss_gib": now / 2**30}
    kib = _status_kib()
    if not kib:  # no /proc (not Linux): no per-step figures; the run's peak is ru_maxrss
        return heap_gib()
    _cpu_peak_kib = max(_cpu_peak_kib, kib["VmHWM"])
    try:
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current resident size (Linux 4.0+)
    except OSError:
        pass  # not allowed here: the peak is then the run's so far
    return {"memory/step_peak_gib": kib["VmHWM"] / 2**20, "memory/rss_gib": kib["VmRSS"] / 2**20, **heap_gib()}


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]


@functools.cache
def _mallinfo2():
    """glibc's ``mallinfo2``, looked up once (None where the C library has none)."""
    try:
        mallinfo2 = ctypes.CDLL(None).mallinfo2
    except (OSError, AttributeError):
        return None
    mallinfo2.restype = _MallInfo2
    return mallinfo2


def heap_gib() -> dict[str, float]:
    """glibc malloc's own account (``mallinfo2``, glibc 2.33+; {} elsewhere): ``memory/heap_in_use_gib``, the bytes the
    process has allocated and not freed, and ``memory/heap_free_held_gib``, freed bytes malloc keeps in its arenas
    instead of returning them. Resident memory that grows while the first stays level is fragmentation, not a leak."""
    mallinfo2 = _mallinfo2()
    if mallinfo2 is None:
        return {}
    info = mallinfo2()
    return {"memory/heap_in_use_gib": (info.uordblks + info.hblkhd) / 2**30, "memory/heap_free_held_gib": info.fordblks / 2**30}


def weights_sha256(model: torch.nn.Module) -> str:
    """A fingerprint of every weight's exact bytes: ranks that trained in step hold the same one."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def format_seconds(seconds: float) -> str:
    return f"{int(seconds // 60)} min {seconds % 60:.0f} s" if seconds >= 60 else f"{seconds:.1f} s"
