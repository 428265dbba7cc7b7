"""Helpers for the worker processes that dsrbody starts itself (synthetic generation, feature caches)."""

from __future__ import annotations

import os
import threading
import time


def exit_with_parent(interval_s: float = 1.0) -> None:
    """End this process when the process that started it has gone.

    A ``ProcessPoolExecutor`` worker holds both ends of its task queue, so when its parent is killed
    (``kill``, a closed terminal) it never sees the queue close and waits forever, holding its memory.
    Called as the pool's ``initializer`` (or from it), this starts a daemon thread that checks every
    ``interval_s`` seconds whether the process was handed to another parent and, if so, exits at once.

    Args:
        interval_s: seconds between checks.
    """
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(interval_s)
        os._exit(1)

    threading.Thread(target=watch, name="dsrbody-exit-with-parent", daemon=True).start()
