"""A local Python sandbox for the code a model writes, behind the ``Tool`` protocol.

``PythonSandbox().run(code)`` runs ``code`` in a child process and returns a ``ToolResult``: what it printed
(truncated to ``Limits.output_chars``) or its error's last line, and a status (ok, error, timeout, killed). The run
that calls it never hangs and never crashes because of the code: every call is bounded by a wall-clock timeout
after which the child and everything it started are killed.

What each call gets (``tools/_sandbox_runner.py``):

- its own process, started ahead of time from a small pool (``pool_size`` warm children, each used once and
  replaced), so a call does not wait for Python to start;
- where ``unshare`` works (Linux, as root, as on this project's CPU machine): fresh PID, network and mount
  namespaces. No network at all (not even 127.0.0.1); every process the code starts dies when the call ends;
  /tmp, /var/tmp and /dev/shm are fresh size-limited tmpfs mounts, the working directory is /tmp/work in it, and
  nothing written there is seen outside or kept;
- limits: CPU seconds, address space, processes (no fork bombs), file size and open files (``Limits``);
- where it starts as root: the user ``nobody``, no groups (it cannot read /etc/shadow or write the host's files);
- an empty environment (no secrets, no tokens).

Without ``unshare`` (not root, or another OS) the sandbox says so once at start: the limits, the empty environment,
a fresh temporary working directory and the killing of the process group still hold, but the code can reach the
network and could leave a process that puts itself in another session.

What it does not protect against: kernel exploits, and side channels (timing, CPU load). For untrusted code at
scale use a service built for it (gVisor, Firecracker, a remote sandbox): implement ``Tool.run(code) ->
ToolResult`` over it and pass it where a ``PythonSandbox`` goes.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import Protocol

# -I: isolated mode (no PYTHON* variables, no user site, not even the script's folder on sys.path); the project's
# venv and its packages (sympy, numpy) stay importable.
STATUS_MARK = "\x00sandbox-status: "  # the runner's last line on stderr (tools/_sandbox_runner.py)
RUNNER = [sys.executable, "-I", os.path.join(os.path.dirname(os.path.abspath(__file__)), "_sandbox_runner.py")]


@dataclass(frozen=True)
class Limits:
    wall_seconds: float = 10.0  # the call is killed after this long, whatever it does
    cpu_seconds: int = 5  # RLIMIT_CPU
    memory_mb: int = 2048  # RLIMIT_AS (Python and sympy need about 300)
    processes: int = 32  # RLIMIT_NPROC of the sandbox's user: no fork bomb
    file_mb: int = 16  # RLIMIT_FSIZE: the largest file it may write
    disk_mb: int = 64  # each tmpfs (/tmp with the working directory, /var/tmp, /dev/shm)
    open_files: int = 64  # RLIMIT_NOFILE
    output_chars: int = 2000  # what comes back into the model's context: the start and the end of the output
    recursion: int = 2000  # sys.setrecursionlimit inside (deep recursion fails as a RecursionError)


@dataclass
class ToolResult:
    output: str  # what the code printed (truncated), then its error's last line if it failed
    status: str  # ok | error | timeout | killed (a limit or a signal ended it)
    seconds: float


class Tool(Protocol):
    """Anything that runs a model's code and returns what it printed: this sandbox, or a remote service."""

    def run(self, code: str) -> ToolResult: ...


def namespaces_available() -> bool:
    """Can this process put a child in new PID, network and mount namespaces (``unshare``, as root)?"""
    if os.name != "posix" or shutil.which("unshare") is None or os.geteuid() != 0:
        return False
    probe = subprocess.run(["unshare", "--net", "--pid", "--mount", "--fork", "--kill-child", "true"],
                           capture_output=True, timeout=30)
    return probe.returncode == 0


class PythonSandbox:
    """Runs code in isolated child processes (see the module docstring); ``run`` and ``run_many`` are thread-safe."""

    _warned = False

    def __init__(self, limits: Limits = Limits(), pool_size: int = 2):
        self.limits, self.pool_size = limits, max(1, pool_size)
        self.namespaces = namespaces_available()
        if not self.namespaces and not PythonSandbox._warned:
            PythonSandbox._warned = True
            print("sandbox: no PID/network namespaces here (needs Linux, root and unshare): the code's limits, empty "
                  "environment and temporary working directory hold, but it can reach the network", file=sys.stderr)
        self._lock = threading.Lock()
        self._ready: list[tuple[subprocess.Popen, str | None]] = []

    # ---- the pool of warm children ----

    def _start(self) -> tuple[subprocess.Popen, str | None]:
        settings = json.dumps({**asdict(self.limits), "namespaces": self.namespaces})
        command = [*RUNNER, settings]
        workdir = None
        if self.namespaces:
            command = ["unshare", "--net", "--pid", "--mount", "--fork", "--kill-child", "--mount-proc", *command]
        else:
            workdir = tempfile.mkdtemp(prefix="sandbox-")
        process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                   cwd=workdir or "/", env={}, start_new_session=True)
        return process, workdir

    def _take(self) -> tuple[subprocess.Popen, str | None]:
        with self._lock:
            while len(self._ready) < self.pool_size + 1:
                self._ready.append(self._start())
            return self._ready.pop(0)

    def close(self) -> None:
        """Stop the warm children."""
        with self._lock:
            for process, workdir in self._ready:
                _kill(process)
                if workdir:
                    shutil.rmtree(workdir, ignore_errors=True)
            self._ready = []

    # ---- one call ----

    def run(self, code: str) -> ToolResult:
        """Run ``code``; never raises because of it, never takes much longer than ``Limits.wall_seconds``."""
        start = time.perf_counter()
        process, workdir = self._take()
        try:
            stdout, stderr, timed_out = _communicate(process, code, self.limits)
        finally:
            _kill(process)  # whatever is left of it: the namespace's processes die with its first one
            if workdir:
                shutil.rmtree(workdir, ignore_errors=True)
        seconds = time.perf_counter() - start
        output = _truncate(stdout, self.limits.output_chars)
        if timed_out:
            return ToolResult(_join(output, f"TimeoutError: the code ran past {self.limits.wall_seconds:g} s"),
                              "timeout", seconds)
        status, lines = None, []
        for line in stderr.splitlines():
            if line.startswith(STATUS_MARK):
                status = line[len(STATUS_MARK):]
            elif line.strip() and not line.startswith("unshare:"):
                lines.append(line.strip())
        if status == "exit 0":
            return ToolResult(output, "ok", seconds)
        if status is not None and status.startswith("exit"):
            return ToolResult(_join(output, lines[-1] if lines else f"Error: the code {status}"), "error", seconds)
        number = int(status.split()[1]) if status else signal.SIGKILL
        return ToolResult(_join(output, _signal_message(number, self.limits)), "killed", seconds)

    def run_many(self, codes: list[str]) -> list[ToolResult]:
        """Run every code, ``pool_size`` at a time; results in order."""
        if not codes:
            return []
        with ThreadPoolExecutor(max_workers=self.pool_size) as pool:
            return list(pool.map(self.run, codes))


def _communicate(process: subprocess.Popen, code: str, limits: Limits) -> tuple[str, str, bool]:
    """Send the code, read at most a bounded amount of output, and wait until the wall-clock limit."""
    cap = 4 * limits.output_chars + 4096  # the output is read up to this and the rest is dropped
    chunks = {"out": b"", "err": b""}

    def read(stream, key):
        while chunk := stream.read(65536):
            if len(chunks[key]) < cap:
                chunks[key] += chunk[: cap - len(chunks[key])]

    readers = [threading.Thread(target=read, args=(process.stdout, "out"), daemon=True),
               threading.Thread(target=read, args=(process.stderr, "err"), daemon=True)]
    for reader in readers:
        reader.start()
    try:
        process.stdin.write(code.encode())
        process.stdin.close()
    except (BrokenPipeError, OSError):
        pass  # it died before reading its code: its status says why
    try:
        process.wait(timeout=limits.wall_seconds)
        timed_out = False
    except subprocess.TimeoutExpired:
        _kill(process)
        timed_out = True
    for reader in readers:
        reader.join(timeout=2)
    return (chunks["out"].decode(errors="replace"), chunks["err"].decode(errors="replace"), timed_out)


def _kill(process: subprocess.Popen) -> None:
    """SIGKILL the child's process group (and so, with namespaces, every process of the call)."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        pass


def _truncate(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    half = limit // 2
    return f"{text[:half]}\n... [{len(text) - 2 * half} characters cut] ...\n{text[-half:]}"


def _join(output: str, error: str) -> str:
    return f"{output.rstrip()}\n{error}".strip() if output.strip() else error


def _signal_message(number: int, limits: Limits) -> str:
    """What ended a code killed by signal ``number`` (its process, or the whole sandbox when no status came back)."""
    name = signal.Signals(number).name if number in signal.Signals._value2member_map_ else f"signal {number}"
    why = {"SIGXCPU": f"the CPU limit ({limits.cpu_seconds} s)", "SIGKILL": "a limit (memory, or the sandbox ending)",
           "SIGSEGV": "a crash (segmentation fault)", "SIGXFSZ": f"the file-size limit ({limits.file_mb} MB)"}.get(name, name)
    return f"Killed: the code was stopped by {why} ({name})"
