"""Entry points: parse the options, run, and report a user's mistake in one line.

Every script ends with ``run(main, Config, __doc__)``. A ``UserError`` (a bad option, a missing
file, an unknown model, a setting that cannot learn) is printed as ``error: ...`` with exit
status 2 and no traceback; so is a ``SystemExit`` carrying a message. Ctrl-C exits with status
130 (the trainer prints which checkpoint ``--resume`` would continue from). An output folder
that this run created and that holds nothing yet is removed when the start fails.
"""

from __future__ import annotations

import os
import shutil
import sys
import warnings
from pathlib import Path

from reasoning_rl.config import parse_config
from runtime.errors import UserError


def _created_and_empty(folder: Path | None, existed: bool) -> bool:
    return folder is not None and not existed and folder.is_dir() and not any(folder.iterdir())


def run(main, config_cls, description: str | None = None, argv: list[str] | None = None):
    """``main(parse_config(config_cls))`` with user errors as one line (exit 2) and Ctrl-C as exit 130."""
    warnings.formatwarning = lambda message, category, *args, **kwargs: f"warning: {message}\n"  # no source line
    output, existed = None, False
    try:
        cfg = parse_config(config_cls, argv, description)
        if getattr(cfg, "output_dir", None):
            output = Path(cfg.output_dir)
            existed = output.exists()
        return main(cfg)
    except (UserError, SystemExit) as error:
        if isinstance(error, SystemExit) and not isinstance(error.code, str):
            raise  # tyro's own parser errors and plain exits keep their status and message
        if _created_and_empty(output, existed):
            shutil.rmtree(output, ignore_errors=True)
        message = error.code if isinstance(error, SystemExit) else str(error)
        print(f"error: {message}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        if _created_and_empty(output, existed):
            shutil.rmtree(output, ignore_errors=True)
        sys.exit(130)


def check_output_dir(folder: str | Path) -> Path:
    """The output folder, created if needed; a ``UserError`` naming it when it cannot be written."""
    path = Path(folder)
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".write-test-{os.getpid()}"  # one per process: ranks check the same folder at once
        probe.write_text("")
        probe.unlink()
    except OSError as error:
        raise UserError(f"cannot write the output folder {path}: {error.strerror or error}") from None
    return path
