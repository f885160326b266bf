"""A pool of verifier worker processes: parallel, deterministic, and never hanging.

Each worker is a child process (``rewards._verify_worker``) that grades one completion at a
time with ``rewards.verify.grade``. The parent hands out completions from one thread per
worker and waits at most ``timeout`` seconds for each verdict; a worker that runs past it is
killed (scored ``timeout``) and restarted on its next task. A batch may also have a
``budget`` in seconds: whatever is still unscored when it runs out scores 0 as ``timeout``.

A verdict depends only on (completion, reference, timeout), not on which worker computed it
or in what order, so results do not depend on the number of workers unless a timeout fires.
"""

from __future__ import annotations

import atexit
import json
import os
import select
import subprocess
import sys
import threading
import time

from rewards.verify import EVAL_TIMEOUT, Verdict

STARTUP_SECONDS = 120  # importing sympy and math-verify; a worker that cannot start is an error


def default_workers() -> int:
    return int(os.environ.get("REASONING_RL_VERIFY_WORKERS", 0)) or os.cpu_count() or 1


class _Worker:
    """One child process, started lazily and again after it was killed."""

    def __init__(self) -> None:
        self.proc: subprocess.Popen | None = None

    def ensure(self) -> subprocess.Popen:
        if self.proc is None or self.proc.poll() is not None:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "rewards._verify_worker"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"},
            )
            ready, _, _ = select.select([self.proc.stdout], [], [], STARTUP_SECONDS)
            if not ready or self.proc.stdout.readline().strip() != "ready":
                self.kill()
                raise RuntimeError("the verifier worker (python -m rewards._verify_worker) failed to start")
        return self.proc

    def ask(self, task: list, wait: float) -> dict | None:
        """Send one task; the verdict as a dict, or None when none came within ``wait`` seconds (killed)."""
        proc = self.ensure()
        proc.stdin.write(json.dumps(task) + "\n")
        proc.stdin.flush()
        ready, _, _ = select.select([proc.stdout], [], [], max(0.0, wait))
        line = proc.stdout.readline() if ready else ""
        if not line:  # still thinking (or died): kill it, a fresh one starts on the next task
            self.kill()
            return None
        return json.loads(line)

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None


class VerifierPool:
    """``grade(completions, references, timeout, budget)`` over ``workers`` child processes."""

    def __init__(self, workers: int | None = None) -> None:
        self.workers = [_Worker() for _ in range(workers or default_workers())]
        self._lock = threading.Lock()  # one batch at a time; callers from any thread are fine
        atexit.register(self.close)

    def grade(self, completions: list[str], references: list[str], timeout: float = EVAL_TIMEOUT,
              budget: float | None = None) -> list[Verdict]:
        """One verdict per (completion, reference), in order. Never raises for a bad completion, never hangs."""
        if len(completions) != len(references):
            raise ValueError(f"{len(completions)} completions but {len(references)} references")
        return self._verdicts([["grade", c, r, timeout] for c, r in zip(completions, references)], timeout, budget)

    def raw_math_verify(self, completions: list[str], references: list[str], timeout: float = EVAL_TIMEOUT) -> list[Verdict]:
        """math-verify alone, with its default extraction (for audits: ``scripts/verify_quality.py --audit``)."""
        return self._verdicts([["raw", c, r, timeout] for c, r in zip(completions, references)], timeout)

    def references_parse(self, references: list[str], timeout: float = EVAL_TIMEOUT) -> list[bool]:
        """For each reference answer: can the verifier read it (see ``data_prep.checks``)?"""
        return [v.correct for v in self._verdicts([["reference", r, "", timeout] for r in references], timeout)]

    def equivalent(self, pred: str, gold: str, timeout: float = EVAL_TIMEOUT) -> bool:
        """Are two answer strings the same answer (no extraction)?"""
        return self._verdicts([["compare", pred, gold, timeout]], timeout)[0].correct

    def _verdicts(self, tasks: list[list], timeout: float, budget: float | None = None) -> list[Verdict]:
        """The workers' verdicts; a task that got none (killed, or past the budget) is a timeout."""
        return [Verdict(**v) if v else Verdict(False, "timeout", seconds=s) for v, s in self._run(tasks, timeout, budget)]

    def _run(self, tasks: list[list], timeout: float, budget: float | None) -> list[tuple[dict | None, float]]:
        results: list[tuple[dict | None, float]] = [(None, 0.0)] * len(tasks)
        deadline = time.monotonic() + budget if budget is not None else float("inf")
        cursor = iter(range(len(tasks)))
        cursor_lock = threading.Lock()
        failures: list[BaseException] = []  # a worker that cannot start is an error, not a row of timeouts

        def serve(worker: _Worker) -> None:
            while not failures:
                with cursor_lock:
                    i = next(cursor, None)
                if i is None:
                    return
                start = time.monotonic()
                if start >= deadline:  # the batch's budget is spent: unscored, counted as a timeout
                    continue
                try:
                    results[i] = (worker.ask(tasks[i], min(timeout, deadline - start)), time.monotonic() - start)
                except RuntimeError as error:
                    failures.append(error)

        with self._lock:
            active = self.workers[: max(1, min(len(self.workers), len(tasks)))]
            if len(active) == 1:
                serve(active[0])
            else:
                threads = [threading.Thread(target=serve, args=(w,), daemon=True) for w in active]
                for t in threads:
                    t.start()
                for t in threads:
                    t.join()
        if failures:
            raise failures[0]
        return results

    def close(self) -> None:
        for worker in self.workers:
            worker.kill()


_DEFAULT: VerifierPool | None = None
_DEFAULT_LOCK = threading.Lock()


def default_pool() -> VerifierPool:
    """The process-wide pool (``REASONING_RL_VERIFY_WORKERS`` workers, default: the number of cores)."""
    global _DEFAULT
    with _DEFAULT_LOCK:
        if _DEFAULT is None:
            _DEFAULT = VerifierPool()
        return _DEFAULT
