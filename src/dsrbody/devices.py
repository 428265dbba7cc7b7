"""The torch device a command runs on: ``auto`` is CUDA when present, else the CPU."""

from __future__ import annotations

__all__ = ["AUTO", "resolve_device"]

#: the default of every ``--device`` option.
AUTO = "auto"


def resolve_device(device: object = AUTO) -> str:
    """``"cuda"`` for ``auto`` (or None) when ``torch.cuda.is_available()``, else ``"cpu"``; any other
    value (``cpu``, ``cuda:1``, a ``torch.device``) is returned as its string."""
    if device is None or str(device).lower() == AUTO:
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    return str(device)
