"""A dense 2D keypoint branch: heatmaps from the backbone's feature pyramid, read out by soft-argmax.

A regressor trained from random weights learns where the limbs are far faster from per-pixel
heatmap supervision than from a pooled feature vector (docs/training.md, "Learning from random
weights"). :class:`KeypointBranch` fuses the last three stages of the backbone top-down (as a feature
pyramid network: 1x1 lateral convolutions, nearest upsampling, sum) at the finest of them (stride 8,
12x12 for a 96 px crop), predicts one heatmap per keypoint and turns each into coordinates with
:func:`soft_argmax_2d` (integral regression: differentiable, sub-cell). The IEF head takes the
coordinates as extra inputs, and the loss term ``keypoints_2d_direct`` supervises them against the
ground-truth 2D keypoints.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["KeypointBranch", "soft_argmax_2d"]


def soft_argmax_2d(logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Expected position of each heatmap's softmax, in normalised crop coordinates.

    Cell ``(i, j)`` of an ``h x w`` map covers the crop's pixels ``[j, j + 1) * W / w`` (the same for
    rows), so its centre is at ``(2 j + 1) / w - 1`` in the ``[-1, 1]`` coordinates of
    :func:`dsrbody.geometry.cameras.normalize_keypoints`.

    Args:
        logits: ``(B, K, h, w)`` heatmap logits.

    Returns:
        ``(coords (B, K, 2) as (x, y) in [-1, 1], probabilities (B, K, h, w))``.
    """
    if logits.dim() != 4:
        raise ValueError(f"soft_argmax_2d expects (B, K, h, w) logits, got {tuple(logits.shape)}")
    B, K, h, w = logits.shape
    x = logits if logits.dtype in (torch.float32, torch.float64) else logits.float()  # fp16/bf16: in fp32
    prob = torch.softmax(x.reshape(B, K, h * w), dim=-1).reshape(B, K, h, w)
    xs = (2 * torch.arange(w, device=logits.device, dtype=prob.dtype) + 1) / w - 1
    ys = (2 * torch.arange(h, device=logits.device, dtype=prob.dtype) + 1) / h - 1
    x = (prob.sum(dim=2) * xs).sum(dim=-1)
    y = (prob.sum(dim=3) * ys).sum(dim=-1)
    return torch.stack([x, y], dim=-1), prob


class KeypointBranch(nn.Module):
    """Keypoint heatmaps from a feature pyramid (finest level first).

    Args:
        in_channels: channels of each pyramid level, finest first (ResNet-18 stages 2-4: 128, 256, 512).
        num_keypoints: K heatmaps.
        width: channels of the fused map.
    """

    def __init__(self, in_channels: Sequence[int], num_keypoints: int, width: int = 64):
        super().__init__()
        if len(in_channels) < 1 or num_keypoints < 1:
            raise ValueError("KeypointBranch needs at least one pyramid level and one keypoint")
        self.num_keypoints = int(num_keypoints)
        self.lateral = nn.ModuleList(nn.Conv2d(int(c), width, 1) for c in in_channels)
        self.fuse = nn.Sequential(
            nn.Conv2d(width, width, 3, padding=1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
        )
        self.heatmaps = nn.Conv2d(width, self.num_keypoints, 1)

    def forward(self, pyramid: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Keypoints of a feature pyramid.

        Args:
            pyramid: ``[(B, C_l, h_l, w_l)]`` finest first, as many levels as ``in_channels``.

        Returns:
            ``(coords (B, K, 2) in [-1, 1], logits (B, K, h_0, w_0))``.
        """
        if len(pyramid) != len(self.lateral):
            raise ValueError(f"KeypointBranch expects {len(self.lateral)} pyramid levels, got {len(pyramid)}")
        x = self.lateral[-1](pyramid[-1])
        for lat, feat in zip(reversed(self.lateral[:-1]), reversed(pyramid[:-1])):
            x = lat(feat) + F.interpolate(x, size=feat.shape[2:], mode="nearest")
        logits = self.heatmaps(self.fuse(x))
        coords, _ = soft_argmax_2d(logits)
        return coords, logits
