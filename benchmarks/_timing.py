"""Timing shared by the benchmark scripts (run as ``python benchmarks/<name>.py``)."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def time_alternating(
    fns: list[Callable[[], None]], repeats: int, warmup: int = 3
) -> tuple[list[float], list[float]]:
    """Median wall time and median process CPU time (ms; all threads) of each function, calling them
    in turn ``repeats`` times after ``warmup`` rounds. On a shared machine the CPU time is the steadier
    measure of work."""
    for _ in range(warmup):
        for fn in fns:
            fn()
    wall: list[list[float]] = [[] for _ in fns]
    cpu: list[list[float]] = [[] for _ in fns]
    for _ in range(repeats):
        for k, fn in enumerate(fns):
            c0, t0 = time.process_time(), time.perf_counter()
            fn()
            wall[k].append((time.perf_counter() - t0) * 1e3)
            cpu[k].append((time.process_time() - c0) * 1e3)
    return [statistics.median(t) for t in wall], [statistics.median(t) for t in cpu]
