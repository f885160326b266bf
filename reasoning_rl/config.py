"""Config parsing: a dataclass per entry point, YAML presets, command-line overrides (tyro).

    python scripts/train_grpo.py --preset curriculum --lr 1e-5

``--preset NAME`` reads ``configs/NAME.yaml`` (or a YAML path); its keys override the
dataclass defaults, and command-line flags override both. Presets are shared by the trainers
and do not name an output folder: it becomes the trainer's default plus the preset's name
(``runs/grpo_gsm8k``, ``runs/ppo_gsm8k``). Field docstrings are the help text.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import tyro
import yaml

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"


def load_preset(name_or_path: str) -> dict:
    path = Path(name_or_path)
    if not path.exists():
        path = CONFIG_DIR / f"{name_or_path}.yaml"
    if not path.exists():
        choices = ", ".join(sorted(p.stem for p in CONFIG_DIR.glob("*.yaml")))
        raise SystemExit(f"--preset {name_or_path!r}: no such file or preset (presets: {choices})")
    return yaml.safe_load(path.read_text()) or {}


def parse_config(cls, argv: list[str] | None = None, description: str | None = None):
    """Parse ``argv`` into ``cls``; a ``--preset`` flag, if present, supplies the defaults."""
    argv = list(sys.argv[1:] if argv is None else argv)
    defaults = {}
    if "--preset" in argv:
        i = argv.index("--preset")
        if i + 1 >= len(argv):
            raise SystemExit("--preset needs a name or a YAML path")
        preset = argv[i + 1]
        defaults = load_preset(preset)
        del argv[i : i + 2]
        unknown = set(defaults) - {f.name for f in dataclasses.fields(cls)} - {"preset"}
        if unknown:
            raise SystemExit(f"preset sets unknown option(s): {', '.join(sorted(unknown))}")
        defaults = {k: tuple(v) if isinstance(v, list) else v for k, v in defaults.items()}  # YAML lists -> tuples
        fields = {f.name: f for f in dataclasses.fields(cls)}
        if "output_dir" in fields and "output_dir" not in defaults:  # runs/grpo -> runs/grpo_gsm8k
            defaults["output_dir"] = f"{fields['output_dir'].default}_{Path(preset).stem}"
        if "preset" in fields:  # recorded in config.json
            defaults["preset"] = preset
    if not defaults:  # no preset: tyro's own defaults (and required fields stay required)
        return tyro.cli(cls, args=argv, description=description)
    return tyro.cli(cls, args=argv, default=cls(**defaults), description=description)
