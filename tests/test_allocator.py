"""Freed batch buffers stay in the process: far fewer page faults, same numbers."""
from __future__ import annotations

import sys

import pytest

from helpers import run_python

LOOP = """
import ctypes, resource, sys, torch
from advrp2k.core import allocator
libc = ctypes.CDLL(None)
# Start from the worst case glibc can be in (it gets there on its own with several threads):
# every freed block handed back to the kernel at once.
libc.mallopt(allocator.M_MMAP_THRESHOLD, 64 * 1024)
libc.mallopt(allocator.M_TRIM_THRESHOLD, 0)
kept = allocator.keep_freed_memory() if sys.argv[1] == "keep" else False
x = torch.rand(64, 16, 32, 32)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(200):
    y = (x * 2).relu_()  # a 4 MiB buffer allocated and freed every iteration, as a batch's are
    del y
print(kept, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's thresholds")
def test_kept_memory_avoids_faulting_buffers_in_again(monkeypatch):
    monkeypatch.delenv("MALLOC_MMAP_THRESHOLD_", raising=False)
    monkeypatch.delenv("MALLOC_TRIM_THRESHOLD_", raising=False)
    default = run_python(LOOP.replace("sys.argv[1]", "'default'"))
    kept = run_python(LOOP.replace("sys.argv[1]", "'keep'"))
    assert default.returncode == 0 and kept.returncode == 0, default.stderr + kept.stderr
    (_, faults_default), (was_kept, faults_kept) = (r.stdout.split() for r in (default, kept))
    assert was_kept == "True"
    assert int(faults_kept) * 10 < int(faults_default), (faults_kept, faults_default)


def test_the_users_own_malloc_settings_win(monkeypatch):
    from advrp2k.core.allocator import keep_freed_memory

    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "131072")
    assert keep_freed_memory() is False
