"""Every command in README.md and docs/*.md names a script that exists and flags that script accepts.

The flags are checked against each script's own ``--help`` (run once per script), so a renamed or
misspelt option in the docs fails here before a reader meets it.
"""

import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache

import pytest

from conftest import ROOT

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SCRIPT = re.compile(r"(?<![\w/])(scripts/[\w/]+\.py)\b")
FLAG = re.compile(r"(?<![\w-])(--[a-z][a-z0-9-]*)")


def shell_blocks(text: str) -> list[str]:
    """The fenced ``bash``/``sh``/``console`` blocks of a markdown text (continued lines joined), and the inline code
    spans that run a script (`` `.venv/bin/python scripts/x.py --flag` ``)."""
    blocks = re.findall(r"```(?:bash|sh|shell|console)\n(.*?)```", text, re.DOTALL)
    inline = re.findall(r"(?<!`)`([^`\n]*(?:python|torchrun|accelerate launch)[^`\n]*)`(?!`)", text)
    return [block.replace("\\\n", " ") for block in blocks] + inline


def commands(text: str) -> list[tuple[str, list[str]]]:
    """``(script, flags)`` for every script invocation in the shell blocks: the flags written after the script's
    path, up to the end of that command (``&&``, ``|``, ``;``, a redirection or a comment)."""
    found = []
    for block in shell_blocks(text):
        for line in block.splitlines():
            for match in SCRIPT.finditer(line):
                rest = re.split(r"&&|\|\||\||;|#|>", line[match.end():])[0]
                found.append((match.group(1), FLAG.findall(rest)))
    return found


@lru_cache(maxsize=None)
def accepted_flags(script: str) -> frozenset[str]:
    """The flags the script's ``--help`` lists."""
    result = subprocess.run([sys.executable, str(ROOT / script), "--help"], capture_output=True, text=True, timeout=300,
                            cwd=ROOT)
    assert result.returncode == 0, f"{script} --help failed:\n{result.stderr[-2000:]}"
    return frozenset(FLAG.findall(result.stdout)) | {"--help", "--preset"}


def problems(text: str, where: str) -> list[str]:
    """What is wrong with the commands of one document: scripts that do not exist, flags they do not accept."""
    out = []
    for script, flags in commands(text):
        if not (ROOT / script).is_file():
            out.append(f"{where}: {script} does not exist")
            continue
        out += [f"{where}: {script} has no option {flag}" for flag in flags if flag not in accepted_flags(script)]
    return out


def test_every_documented_command_names_a_script_and_flags_that_exist():
    texts = {path.relative_to(ROOT).as_posix(): path.read_text() for path in DOCS}
    scripts = sorted({s for text in texts.values() for s, _ in commands(text) if (ROOT / s).is_file()})
    assert len(scripts) >= 5  # the entry points are documented
    with ThreadPoolExecutor(2) as pool:  # warm the --help cache, two scripts at a time
        list(pool.map(accepted_flags, scripts))
    found = [p for where, text in texts.items() for p in problems(text, where)]
    assert not found, "\n".join(found)


def test_the_check_catches_a_misspelt_flag_and_a_missing_script():
    text = ("```bash\n.venv/bin/python scripts/train_grpo.py --preset gsm8k --learning-rate 1e-5 \\\n"
            "    --steps 3   # a comment --not-a-flag\n"
            "python scripts/no_such_script.py --x\n```\n"
            "Run `python scripts/train_ppo.py --kl-coeff 0.1` inline.\n")
    assert commands(text) == [("scripts/train_grpo.py", ["--preset", "--learning-rate", "--steps"]),
                              ("scripts/no_such_script.py", ["--x"]), ("scripts/train_ppo.py", ["--kl-coeff"])]
    assert problems(text, "example") == ["example: scripts/train_grpo.py has no option --learning-rate",
                                         "example: scripts/no_such_script.py does not exist",
                                         "example: scripts/train_ppo.py has no option --kl-coeff"]


def test_every_docs_page_is_linked_from_the_readme():
    readme = (ROOT / "README.md").read_text()
    unlinked = [p.name for p in DOCS[1:] if f"docs/{p.name}" not in readme]
    assert not unlinked, unlinked


@pytest.mark.parametrize("path", DOCS, ids=lambda p: p.name)
def test_relative_links_point_at_files(path):
    links = re.findall(r"\]\((?!https?:|#)([^)#\s]+)", path.read_text())
    missing = [link for link in links if not (path.parent / link).exists()]
    assert not missing, missing
