"""The Python sandbox holds (issue 23): each attack is a code string sent as a model would send it. Each must come back
as an error or output string within its limit, the sandbox must go on serving calls, and nothing outside it may
change."""

import os
import socket
import threading
import time

import psutil
import pytest

from tools import Limits, PythonSandbox

LIMITS = Limits(wall_seconds=8.0, cpu_seconds=2, memory_mb=1024, output_chars=2000)


@pytest.fixture(scope="module")
def sandbox():
    os.environ["REASONING_RL_TEST_SECRET"] = "hunter2"  # a secret in the trainer's environment
    box = PythonSandbox(LIMITS, pool_size=2)
    yield box
    box.close()
    del os.environ["REASONING_RL_TEST_SECRET"]


needs_namespaces = pytest.mark.skipif(not PythonSandbox(LIMITS, pool_size=1).namespaces,
                                      reason="no PID/network namespaces here (needs Linux, root and unshare)")


def run(sandbox, code: str):
    start = time.perf_counter()
    result = sandbox.run(code)
    assert time.perf_counter() - start < LIMITS.wall_seconds + 5, result
    assert sandbox.run("print(6 * 7)").output.strip() == "42"  # and it goes on serving calls
    return result


def nobody_processes() -> list[str]:
    return [" ".join(p.info["cmdline"] or []) for p in psutil.process_iter(["uids", "cmdline"])
            if p.info["uids"] and p.info["uids"].real == 65534]


def test_plain_code_prints_and_errors_come_back_as_their_last_line(sandbox):
    assert sandbox.run("import sympy\nprint(sympy.factor('x**2 + 2*x + 1'))").output.strip() == "(x + 1)**2"
    result = sandbox.run("print('partial')\n1 / 0")
    assert result.status == "error" and result.output.splitlines() == ["partial", "ZeroDivisionError: division by zero"]


def test_an_endless_loop_is_stopped(sandbox):
    result = run(sandbox, "while True: pass")
    assert result.status in ("killed", "timeout") and "CPU limit" in result.output or result.status == "timeout"


def test_a_fork_bomb_is_stopped_and_leaves_nothing(sandbox):
    result = run(sandbox, "import os\nwhile True:\n    os.fork()")
    assert result.status in ("error", "killed", "timeout")
    time.sleep(0.5)
    assert not nobody_processes()


def test_allocating_10_gb_fails(sandbox):
    result = run(sandbox, "x = bytearray(10 * 2**30)")
    assert result.status in ("error", "killed") and "MemoryError" in result.output or result.status == "killed"


def test_writing_1_gb_to_a_file_is_stopped_and_nothing_is_left(sandbox, tmp_path):
    free = psutil.disk_usage("/").free
    result = run(sandbox, "with open('big', 'wb') as f:\n    for _ in range(1024):\n        f.write(b'0' * 2**20)")
    assert result.status in ("error", "killed")
    assert abs(psutil.disk_usage("/").free - free) < 2**28  # not 1 GB of the host's disk


def test_no_secret_is_readable(sandbox):
    code = ("import os\nprint(dict(os.environ))\n"
            "for path in ['/etc/shadow', '/proc/1/environ', '/proc/self/environ', f'/proc/{os.getppid()}/environ']:\n"
            "    try:\n        print(path, open(path, 'rb').read()[:200])\n"
            "    except OSError as e:\n        print(path, type(e).__name__)")
    result = run(sandbox, code)
    assert "hunter2" not in result.output and "root:" not in result.output
    assert result.output.splitlines()[0] == "{}" and "/etc/shadow PermissionError" in result.output


def test_files_outside_the_working_directory_survive(sandbox, tmp_path):
    canary = tmp_path / "canary.txt"
    canary.write_text("alive")
    repo_file = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "sandbox_was_here")
    code = (f"import os, shutil\nfor attempt in [lambda: os.remove({str(canary)!r}), "
            f"lambda: open({str(canary)!r}, 'w').write('dead'), lambda: open({repo_file!r}, 'w').write('x'), "
            f"lambda: shutil.rmtree({str(tmp_path)!r})]:\n"
            "    try:\n        attempt()\n    except OSError as e:\n        print(type(e).__name__)")
    run(sandbox, code)
    assert canary.read_text() == "alive" and not os.path.exists(repo_file)


@needs_namespaces
def test_no_network_not_even_localhost(sandbox):
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    server.settimeout(5)
    port, accepted = server.getsockname()[1], []
    threading.Thread(target=lambda: accepted.append(_accept(server)), daemon=True).start()
    result = run(sandbox, f"import socket\ns = socket.create_connection(('127.0.0.1', {port}), timeout=3)\nprint('connected')")
    assert "connected" not in result.output and result.status == "error"
    time.sleep(0.2)
    assert accepted in ([], [None])
    server.close()


def _accept(server):
    try:
        return server.accept()
    except OSError:
        return None


def test_killing_the_parent_fails(sandbox):
    result = run(sandbox, "import os\nos.kill(os.getppid(), 9)\nprint('still here')")
    assert "still here" not in result.output or result.status == "ok"  # the runner survives, so does this process
    assert psutil.Process().is_running()


def test_a_segfault_comes_back_as_an_error(sandbox):
    result = run(sandbox, "import ctypes\nctypes.string_at(0)")
    assert result.status == "killed" and "segmentation fault" in result.output


def test_printing_100_mb_is_truncated(sandbox):
    result = run(sandbox, "print('x' * 100_000_000)")
    assert len(result.output) < 3 * LIMITS.output_chars and "characters cut" in result.output


def test_deep_recursion_is_an_error(sandbox):
    result = run(sandbox, "import sys\nsys.setrecursionlimit(10**7)\ndef f(n):\n    return f(n + 1)\nf(0)")
    assert result.status in ("error", "killed")


@needs_namespaces
def test_a_subprocess_that_outlives_the_call_is_killed(sandbox):
    run(sandbox, "import subprocess\nsubprocess.Popen(['sleep', '300'], start_new_session=True)\nprint('started')")
    time.sleep(0.5)
    assert not [c for c in nobody_processes() if "sleep 300" in c]
