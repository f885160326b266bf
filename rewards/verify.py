"""Decide whether a predicted answer equals a reference answer.

Cheap exact checks run in-process first (normalized string equality, plain numbers and
simple fractions). Everything else goes to math-verify (sympy under the hood) in a child
process with a hard timeout: a completion crafted to make sympy work forever (a power tower,
thousands of nested fractions) is killed after ``timeout`` seconds and scored as not equal.
The child is restarted on the next call. Safe to call from any thread.
"""

from __future__ import annotations

import json
import math
import os
import re
import select
import subprocess
import sys
import threading
from fractions import Fraction

DEFAULT_TIMEOUT = float(os.environ.get("REASONING_RL_VERIFY_TIMEOUT", "5"))
MAX_ANSWER_CHARS = 1000  # longer "answers" are garbage, not math; never sent to sympy

_STRIP = [r"\left", r"\right", r"\!", r"\,", r"\;", r"\:", r"\displaystyle", "$", "^\\circ", "^{\\circ}", "\\%", "%"]
_TEXT_RE = re.compile(r"\\(?:text|textbf|mathrm|mbox)\{([^{}]*)\}")
_COMMA_NUMBER_RE = re.compile(r"^-?\d{1,3}(,\d{3})+(\.\d+)?$")
_FRAC_RE = re.compile(r"^(-?)\\frac\{(-?\d+)\}\{(-?\d+)\}$|^(-?)\\frac(\d)(\d)$")


def normalize(answer: str) -> str:
    """A canonical string form: no spaces, dollars, \\left/\\right, \\text{} wrappers or units of degrees."""
    s = answer.strip().rstrip(".")
    s = s.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac")
    s = _TEXT_RE.sub(r"\1", s)
    for token in _STRIP:
        s = s.replace(token, "")
    s = "".join(s.split())
    if _COMMA_NUMBER_RE.match(s):
        s = s.replace(",", "")
    return s


def as_number(s: str) -> Fraction | None:
    """A normalized string that is a plain integer, decimal or simple fraction, as an exact Fraction."""
    try:
        if re.fullmatch(r"-?(\d+(\.\d*)?|\.\d+)", s):
            return Fraction(s)
        if re.fullmatch(r"-?\d+/-?\d+", s):
            return Fraction(s)
        if m := _FRAC_RE.match(s):
            sign, num, den = (m.group(1), m.group(2), m.group(3)) if m.group(2) else (m.group(4), m.group(5), m.group(6))
            value = Fraction(int(num), int(den))
            return -value if sign else value
    except (ValueError, ZeroDivisionError):
        return None
    return None


def is_equivalent(pred: str, gold: str, timeout: float = DEFAULT_TIMEOUT) -> bool:
    """True when ``pred`` and ``gold`` are the same answer. Never raises, never runs past ``timeout``."""
    p, g = normalize(pred), normalize(gold)
    if not p or not g:
        return False
    if p == g:
        return True
    p_num, g_num = as_number(p), as_number(g)
    if p_num is not None and g_num is not None:
        return p_num == g_num or math.isclose(p_num, g_num, rel_tol=1e-9)
    if len(pred) > MAX_ANSWER_CHARS:
        return False
    return _SYMBOLIC.equivalent(pred, gold, timeout)


class _SymbolicChecker:
    """One math-verify child process, fed one question at a time, killed when it runs too long."""

    def __init__(self) -> None:
        self._proc: subprocess.Popen | None = None
        self._lock = threading.Lock()

    def _start(self, timeout: float) -> subprocess.Popen:
        proc = subprocess.Popen(
            [sys.executable, "-m", "rewards._verify_worker", str(max(1, int(timeout)))],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
            env={**os.environ, "OMP_NUM_THREADS": "1"},
        )
        if proc.stdout.readline().strip() != "ready":
            raise RuntimeError("the math-verify worker (rewards._verify_worker) failed to start")
        return proc

    def equivalent(self, pred: str, gold: str, timeout: float) -> bool:
        with self._lock:
            if self._proc is None or self._proc.poll() is not None:
                self._proc = self._start(timeout)
            proc = self._proc
            proc.stdin.write(json.dumps([pred, gold]) + "\n")
            proc.stdin.flush()
            ready, _, _ = select.select([proc.stdout], [], [], timeout)
            if not ready:  # still thinking: kill it, a fresh one starts on the next call
                proc.kill()
                proc.wait()
                self._proc = None
                return False
            return json.loads(proc.stdout.readline() or "false")

    def close(self) -> None:
        if self._proc is not None:
            self._proc.kill()
            self._proc = None


_SYMBOLIC = _SymbolicChecker()
