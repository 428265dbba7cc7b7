"""dsrbody.data.workers.exit_with_parent: a pool worker ends when its parent is killed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

PARENT = textwrap.dedent(
    """
    import concurrent.futures as cf, multiprocessing as mp, os, sys, time
    from dsrbody.data.workers import exit_with_parent

    if __name__ == "__main__":
        init = exit_with_parent if sys.argv[1] == "watch" else None
        pool = cf.ProcessPoolExecutor(1, mp_context=mp.get_context("spawn"), initializer=init)
        print(pool.submit(os.getpid).result(), flush=True)
        time.sleep(600)
    """
)


def _running(pid: int) -> bool:
    """Whether ``pid`` is a live process (a zombie waiting to be reaped counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


def _orphan_after(mode: str, wait_s: float) -> bool:
    """Start a pool in a child process, kill that child, and say whether its worker still runs."""
    proc = subprocess.Popen([sys.executable, "-c", PARENT, mode], stdout=subprocess.PIPE, text=True)
    try:
        worker = int(proc.stdout.readline())
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        deadline = time.monotonic() + wait_s
        while _running(worker) and time.monotonic() < deadline:
            time.sleep(0.1)
        alive = _running(worker)
        if alive:
            os.kill(worker, signal.SIGKILL)
        return alive
    finally:
        proc.kill()


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")
def test_a_pool_worker_exits_when_its_parent_is_killed():
    assert _orphan_after("plain", wait_s=3.0)  # without it the worker stays (the reason it exists)
    assert not _orphan_after("watch", wait_s=10.0)
