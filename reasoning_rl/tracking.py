"""Run outputs: ``metrics.jsonl`` (one line per step), TensorBoard scalars, sample completions."""

from __future__ import annotations

import json
from pathlib import Path


class MetricsLogger:
    def __init__(self, output_dir: Path, resume_step: int = 0, tensorboard: bool = True):
        self.path = Path(output_dir) / "metrics.jsonl"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._truncate_after(resume_step)
        self.tb = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(Path(output_dir) / "tensorboard"), purge_step=resume_step + 1 if resume_step else None)

    def _truncate_after(self, step: int) -> None:
        """On resume, drop lines of steps after the checkpoint (they will be redone)."""
        if not self.path.exists():
            return
        lines = [line for line in self.path.read_text().splitlines() if line.strip()]
        kept = [line for line in lines if json.loads(line)["step"] <= step]
        self.path.write_text("".join(line + "\n" for line in kept))

    def log(self, step: int, metrics: dict) -> None:
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


def read_metrics(output_dir: Path) -> list[dict]:
    path = Path(output_dir) / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def write_samples(output_dir: Path, step: int, prompts: list[str], completions: list[str], rewards: list[float], answers: list) -> None:
    path = Path(output_dir) / "samples.jsonl"
    with open(path, "a") as f:
        for p, c, r, a in zip(prompts, completions, rewards, answers):
            f.write(json.dumps({"step": step, "prompt": p, "completion": c, "reward": r, "answer": a}) + "\n")
