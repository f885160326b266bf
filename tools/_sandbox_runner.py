"""The process that runs one piece of a model's code (started by ``tools.sandbox``; never imported by the trainer).

It starts as PID 1 of fresh PID, network and mount namespaces when the sandbox could create them (``unshare``), so
that every process the code starts dies when it exits, and no network is reachable. It mounts fresh, size-limited
tmpfs over /tmp, /var/tmp and /dev/shm (nothing written there is seen outside) with a working directory /tmp/work,
then forks the code's process, which before running the code takes:

1. resource limits: CPU seconds, address space, processes, file size, open files;
2. where it runs as root: no supplementary groups and the user ``nobody``;
3. an empty environment.

The code comes on stdin; what it prints goes to stdout, and an exception's last line to stderr. The first process
waits for it and writes how it ended (``exit N`` or ``signal N``) as the last line of stderr, after a marker.
"""

import ctypes
import json
import os
import resource
import sys
import traceback

NOBODY = 65534
STATUS_MARK = "\x00sandbox-status: "


def _mount_tmpfs(libc, target: bytes, size_mb: int) -> None:
    if os.path.isdir(target) and libc.mount(b"tmpfs", target, b"tmpfs", 0, f"size={size_mb}m,mode=1777".encode()) != 0:
        raise OSError(ctypes.get_errno(), f"mount tmpfs on {target.decode()}")


def private_mounts(limits: dict) -> None:
    """Fresh tmpfs mounts over /tmp, /var/tmp and /dev/shm (this mount namespace only), and /tmp/work."""
    libc = ctypes.CDLL(None, use_errno=True)
    MS_REC, MS_PRIVATE = 0x4000, 0x40000
    libc.mount(b"none", b"/", None, MS_REC | MS_PRIVATE, None)  # mounts below stay in this namespace
    for target in (b"/tmp", b"/var/tmp", b"/dev/shm"):
        _mount_tmpfs(libc, target, limits["disk_mb"])
    os.makedirs("/tmp/work", exist_ok=True)
    if os.getuid() == 0:
        os.chown("/tmp/work", NOBODY, NOBODY)
    os.chdir("/tmp/work")


def confine(limits: dict) -> None:
    """Resource limits, the user nobody (where it is root) and an empty environment, for the code's process."""
    resource.setrlimit(resource.RLIMIT_CPU, (limits["cpu_seconds"], limits["cpu_seconds"] + 1))  # SIGXCPU first
    for name, value in (("RLIMIT_AS", limits["memory_mb"] << 20), ("RLIMIT_NPROC", limits["processes"]),
                        ("RLIMIT_FSIZE", limits["file_mb"] << 20), ("RLIMIT_NOFILE", limits["open_files"])):
        resource.setrlimit(getattr(resource, name), (value, value))
    if os.getuid() == 0:
        os.setgroups([])
        os.setgid(NOBODY)
        os.setuid(NOBODY)
    os.environ.clear()


def run_code(code: str, limits: dict) -> None:
    """In the code's process: confine it, run it, report its error's last line; never returns."""
    confine(limits)
    sys.setrecursionlimit(limits["recursion"])
    try:
        exec(compile(code, "<tool>", "exec"), {"__name__": "__main__"})
    except BaseException as error:  # the code's own error, reported as its last line
        sys.stdout.flush()
        line = traceback.format_exception_only(type(error), error)[-1].strip()
        sys.stderr.write(line + "\n")
        sys.stderr.flush()
        os._exit(1)
    sys.stdout.flush()
    os._exit(0)


# Imported before the code's process drops its privileges, so that the code finds them loaded: what math code
# imports (and a Python installed where the user nobody cannot read it, as under /root here, stays usable).
PRELOAD = ("math", "cmath", "fractions", "decimal", "itertools", "functools", "collections", "random", "statistics",
           "re", "string", "heapq", "bisect", "operator", "numbers", "datetime", "time", "json", "socket", "encodings.idna",
           "subprocess", "sympy", "numpy")


def preload() -> None:
    for name in PRELOAD:
        try:
            __import__(name)
        except ImportError:
            pass  # not installed: the code gets the ImportError itself


def main() -> None:
    limits = json.loads(sys.argv[1])
    preload()  # while the pool keeps this process warm, before any code arrives
    code = sys.stdin.read()
    if limits["namespaces"]:
        private_mounts(limits)
    child = os.fork()
    if child == 0:
        run_code(code, limits)
    _, status = os.waitpid(child, 0)  # this process stays root and outside the code's limits; it only waits
    how = f"exit {os.WEXITSTATUS(status)}" if os.WIFEXITED(status) else f"signal {os.WTERMSIG(status)}"
    sys.stderr.write(f"{STATUS_MARK}{how}\n")  # the sandbox's last line: how the code ended
    sys.stderr.flush()
    os._exit(0)  # as the namespace's first process, its exit kills whatever the code left running


if __name__ == "__main__":
    main()
