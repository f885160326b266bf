"""A run writes what the README says a run writes, and nothing it promises is missing."""

import re

from conftest import ROOT
from reasoning_rl.config import parse_config
from test_train_smoke import TINY_RUN


def documented_outputs() -> list[str]:
    readme = (ROOT / "README.md").read_text()
    start = readme.index("A run's output folder holds")
    paragraph = readme[start: readme.index("\n\n", start)]
    return re.findall(r"`([\w./]+)`", paragraph.split("--resume")[0])


def test_a_three_step_run_writes_every_file_the_readme_names(tiny_model, tmp_path):
    import train_grpo

    names = documented_outputs()
    assert {"config.json", "metrics.jsonl", "samples.jsonl", "completions.jsonl", "results.json",
            "training.png"} <= set(names)
    train_grpo.main(parse_config(train_grpo.Config, ["--model", str(tiny_model), "--steps", "3", "--output-dir",
                                                     str(tmp_path), *TINY_RUN, "--tensorboard"]))  # the default
    for name in names:
        if name.startswith("--"):
            continue
        pattern = name.replace("NNNNNN", "[0-9]" * 6)
        assert list(tmp_path.glob(pattern.rstrip("/"))), f"{name} is documented but the run did not write it"
    assert (tmp_path / "samples.jsonl").read_text().strip()  # written at the last step even before --sample-every 6
