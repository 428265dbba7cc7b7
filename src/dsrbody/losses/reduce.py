"""Per-sample loss reduction that drops (and counts) NaN or infinite samples (docs/design.md, Losses)."""

from __future__ import annotations

import torch

__all__ = ["drop_nonfinite"]


def drop_nonfinite(
    per_sample: torch.Tensor, valid: torch.Tensor | None = None, denominator: str = "valid"
) -> tuple[torch.Tensor, int]:
    """Mean of a per-sample loss over the samples it applies to, leaving out non-finite ones.

    The official code zeroes a NaN sample silently; here the sample is excluded from the mean (so it
    neither poisons the batch nor dilutes it) and counted, for the trainer to log.

    Args:
        per_sample: ``(B,)`` loss of each sample.
        valid: ``(B,)`` bool, the samples the loss applies to (e.g. ``has_smpl``); ``None`` for all.
        denominator: ``"valid"`` (default: divide by the number of valid finite samples, as SPIN's
            masked losses) or ``"batch"`` (divide by the number of finite samples of the whole batch,
            invalid ones counting 0: the official DSR code's ``loss_srp.mean()`` over the batch).

    Returns:
        ``(mean, n_dropped)``: the mean over valid finite samples (a zero scalar, still attached to the
        graph where possible, when there is none) and the number of valid samples that were NaN or
        infinite. Gradients of the dropped samples are exactly zero in this reduction; the trainer should
        still skip a step whose gradients are non-finite (a NaN upstream of a dropped sample can reach
        shared weights through other paths).
    """
    if per_sample.dim() != 1:
        raise ValueError(f"drop_nonfinite expects a (B,) per-sample loss, got {tuple(per_sample.shape)}")
    if valid is None:
        valid = torch.ones_like(per_sample, dtype=torch.bool)
    else:
        valid = valid.to(device=per_sample.device, dtype=torch.bool).reshape(-1)
        if valid.shape != per_sample.shape:
            raise ValueError(
                f"valid {tuple(valid.shape)} does not match per_sample {tuple(per_sample.shape)}"
            )
    finite = torch.isfinite(per_sample.detach())
    keep = valid & finite
    n_dropped = int((valid & ~finite).sum())
    if denominator == "valid":
        n = int(keep.sum())
    elif denominator == "batch":
        n = int(finite.sum())
    else:
        raise ValueError(f"denominator must be 'valid' or 'batch', got {denominator!r}")
    safe = torch.where(keep, per_sample, torch.zeros_like(per_sample))
    return safe.sum() / max(n, 1), n_dropped
