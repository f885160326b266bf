"""Memory that stays level when every step brings new shapes (issue: long runs).

oneDNN compiles and caches a primitive per input shape; ``runtime`` bounds its two caches. Each case runs in a fresh
process, because the caches' capacities are read once, at torch's first oneDNN call.
"""

import os
import subprocess
import sys

import pytest

from conftest import ROOT
from reasoning_rl.tracking import heap_gib

# a bf16 Linear layer of the embedded model's MLP width, forward and backward over `lengths` sequence lengths: what
# the update does with completions of every length; prints the growth of malloc's bytes in use, in MiB
NEW_SHAPES = """
import runtime, torch
from reasoning_rl.tracking import heap_gib
torch.manual_seed(0)
layer = torch.nn.Linear(576, 1536)
def step(length):
    x = torch.randn(length, 576, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = layer(x)
    y.float().sum().backward()
for length in range(1, 9):  # the first calls' one-off allocations
    step(length)
start = heap_gib()["memory/heap_in_use_gib"]
for length in range(9, {lengths}):
    step(length)
print((heap_gib()["memory/heap_in_use_gib"] - start) * 1024)
"""


def growth_mib(lengths: int, **environment: str) -> float:
    env = {k: v for k, v in os.environ.items() if k not in ("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "LRU_CACHE_CAPACITY")}
    result = subprocess.run([sys.executable, "-c", NEW_SHAPES.format(lengths=lengths)], cwd=ROOT, capture_output=True,
                            text=True, timeout=300, env={**env, **environment})
    assert result.returncode == 0, result.stderr[-2000:]
    return float(result.stdout.split()[-1])


@pytest.mark.skipif(not heap_gib(), reason="needs glibc's mallinfo2")
def test_new_shapes_at_every_step_do_not_grow_memory():
    bounded = growth_mib(250)
    default = growth_mib(250, ONEDNN_PRIMITIVE_CACHE_CAPACITY="1024", LRU_CACHE_CAPACITY="1024")  # oneDNN's and torch's own
    assert default > 100, f"the default caches grew only {default:.0f} MiB: the test no longer shows the effect"
    assert bounded < 30, f"{bounded:.0f} MiB more in use after 241 new shapes (default capacities: {default:.0f} MiB)"
    assert growth_mib(500) < 30  # level, not slower growth


def test_a_capacity_the_user_set_is_kept():
    code = "import os; os.environ['ONEDNN_PRIMITIVE_CACHE_CAPACITY'] = '7'; import runtime; " \
           "print(os.environ['ONEDNN_PRIMITIVE_CACHE_CAPACITY'], os.environ['LRU_CACHE_CAPACITY'])"
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.stdout.split() == ["7", "32"]


PEAK_AFTER_RESETS = """
from reasoning_rl.tracking import peak_memory_gib, step_memory_gib
resident = step_memory_gib()["memory/rss_gib"]
block = bytearray(800 * 2**20)  # resident: bytearray writes its zeros
del block
step = step_memory_gib()["memory/step_peak_gib"]
next_step = step_memory_gib()["memory/step_peak_gib"]
print(resident, step, next_step, peak_memory_gib())
"""


def test_the_runs_peak_survives_the_per_step_reset_of_the_high_water_mark():
    """memory/peak_gib and results.json's peak are the run's: a step's peak is reset after the step, the run's not;
    and it is this process's own, not the ``ru_maxrss`` it inherits from the process that ``exec``-ed it (here one
    that held 1.5 GiB first)."""
    big_parent = ("import os, sys; block = bytearray(1536 * 2**20); "
                  "os.execv(sys.executable, [sys.executable, '-c', sys.argv[1]])")
    result = subprocess.run([sys.executable, "-c", big_parent, PEAK_AFTER_RESETS], cwd=ROOT, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr[-2000:]
    resident, step, next_step, run_peak = map(float, result.stdout.split())
    assert step > resident + 0.7  # the step saw the 800 MiB block
    assert run_peak < step + 0.2, f"run peak {run_peak:.2f} GiB: the parent's 1.5 GiB, not the step's {step:.2f} GiB"
    if next_step < step - 0.5:  # the kernel reset its high-water mark (clear_refs is allowed here)
        assert run_peak >= step
