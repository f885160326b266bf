"""What every benchmark does with its results: ``results_<name>.json`` and ``<name>.png`` in its output folder, and
with ``--docs`` the same two copied to docs/ and docs/images/."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[2]


def publish(out: Path, name: str, results: dict, plot: Callable[[Path], None], docs: bool) -> None:
    """Write ``out/results_<name>.json``, draw ``out/<name>.png`` with ``plot(path)``; with ``docs``, copy both."""
    out.mkdir(parents=True, exist_ok=True)
    (out / f"results_{name}.json").write_text(json.dumps(results, indent=2))
    plot(out / f"{name}.png")
    if docs:
        shutil.copy(out / f"results_{name}.json", ROOT / "docs" / f"results_{name}.json")
        shutil.copy(out / f"{name}.png", ROOT / "docs" / "images" / f"{name}.png")
