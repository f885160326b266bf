"""The README's recipe for a new reward, copied as written into a scratch copy of the repository, trains."""

import json
import os
import re
import shutil
import subprocess
import sys

from conftest import ROOT
from test_train_smoke import TINY_RUN


def readme_recipe() -> tuple[str, str]:
    """The reward file and the registration line, exactly as the README shows them."""
    readme = (ROOT / "README.md").read_text()
    start = readme.index("## Rewards, and adding a verifier")
    section = readme[start:readme.index("\n## ", start + 1)]
    blocks = re.findall(r"```python\n(.*?)```", section, re.DOTALL)
    reward_file = next(b for b in blocks if b.startswith("# rewards/brevity.py"))
    registration = next(b for b in blocks if "from rewards import brevity" in b)
    return reward_file, registration


def test_readme_reward_recipe_trains_two_steps(tiny_model, tmp_path):
    reward_file, registration = readme_recipe()
    scratch = tmp_path / "clone"
    shutil.copytree(ROOT, scratch, ignore=shutil.ignore_patterns(".venv", ".git", "runs", "__pycache__", "*.egg-info"))
    (scratch / "rewards" / "brevity.py").write_text(reward_file)
    with open(scratch / "rewards" / "__init__.py", "a") as f:
        f.write("\n" + registration)

    out = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(scratch)}
    result = subprocess.run(
        [sys.executable, str(scratch / "scripts" / "train_grpo.py"), "--model", str(tiny_model), "--steps", "2",
         "--output-dir", str(out), *TINY_RUN, "--rewards", "accuracy=1.0,brevity=0.5"],
        cwd=scratch, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics] == [1, 2]
    assert all("reward/brevity" in m for m in metrics)
    assert "brevity" in json.loads((out / "config.json").read_text())["rewards"]
