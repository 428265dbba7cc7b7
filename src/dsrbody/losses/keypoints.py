"""SPIN's keypoint losses, per sample (docs/design.md, Losses).

Both are confidence-weighted squared errors averaged over joints and coordinates, as SPIN's
``nn.MSELoss(reduction='none')`` followed by ``.mean()``; the batch mean is taken by
:func:`dsrbody.losses.reduce.drop_nonfinite` (over the samples the loss applies to), which gives
SPIN's value exactly when every sample is finite.
"""

from __future__ import annotations

import torch

__all__ = ["keypoint_2d_loss", "keypoint_3d_loss", "NUM_OPENPOSE"]

#: the first 25 of SPIN's 49 keypoints are OpenPose's BODY_25; the last 24 are the "GT" joints.
NUM_OPENPOSE = 25


def keypoint_2d_loss(
    pred: torch.Tensor,
    gt: torch.Tensor,
    openpose_weight: float = 0.0,
    gt_weight: float = 1.0,
    num_openpose: int = NUM_OPENPOSE,
) -> torch.Tensor:
    """Confidence-weighted MSE of projected keypoints, normalised coordinates ([-1, 1]).

    ``loss_b = mean_{k, c} w_k conf_bk (pred_bkc - gt_bkc)^2`` with ``w_k = openpose_weight`` for the
    first ``num_openpose`` keypoints and ``gt_weight`` for the rest (SPIN: 0 and 1).

    Args:
        pred: ``(B, K, 2)`` predicted keypoints, normalised.
        gt: ``(B, K, 3)`` ground truth, normalised, with confidence in the last column.
        openpose_weight: weight of the OpenPose keypoints.
        gt_weight: weight of the GT keypoints.
        num_openpose: how many leading keypoints are OpenPose ones (25 in SPIN's 49-set).

    Returns:
        ``(B,)`` per-sample loss.
    """
    if pred.dim() != 3 or pred.shape[-1] != 2 or gt.shape[:2] != pred.shape[:2] or gt.shape[-1] != 3:
        raise ValueError(
            f"keypoint_2d_loss: pred must be (B, K, 2) and gt (B, K, 3), "
            f"got {tuple(pred.shape)}, {tuple(gt.shape)}"
        )
    K = pred.shape[1]
    w = pred.new_full((K,), float(gt_weight))
    w[: min(num_openpose, K)] = float(openpose_weight)
    conf = gt[..., 2:] * w[None, :, None]
    return (conf * (pred - gt[..., :2]) ** 2).mean(dim=(1, 2))


def keypoint_3d_loss(
    pred: torch.Tensor,
    gt: torch.Tensor,
    pelvis: tuple[int, int] = (2, 3),
) -> torch.Tensor:
    """Confidence-weighted MSE of pelvis-aligned 3D keypoints (metres).

    Both sets are translated so that their pelvis, the mean of the two hip joints, is at the origin;
    ``loss_b = mean_{k, c} conf_bk (pred_bkc - gt_bkc)^2``. SPIN applies it to the 24 GT joints
    (``joints[:, 25:]`` of the 49-set, hips at 2 and 3) of the samples with ``has_pose_3d``; pass that
    mask to :func:`~dsrbody.losses.reduce.drop_nonfinite`.

    Args:
        pred: ``(B, K, 3)`` predicted joints (the orientation must match the GT frame).
        gt: ``(B, K, 4)`` ground-truth joints and confidence.
        pelvis: indices of the two hips.

    Returns:
        ``(B,)`` per-sample loss.
    """
    if pred.dim() != 3 or pred.shape[-1] != 3 or gt.shape[:2] != pred.shape[:2] or gt.shape[-1] != 4:
        raise ValueError(
            f"keypoint_3d_loss: pred must be (B, K, 3) and gt (B, K, 4), "
            f"got {tuple(pred.shape)}, {tuple(gt.shape)}"
        )
    i, j = pelvis
    conf = gt[..., 3:]
    g = gt[..., :3]
    g = g - 0.5 * (g[:, i] + g[:, j])[:, None]
    p = pred - 0.5 * (pred[:, i] + pred[:, j])[:, None]
    return (conf * (p - g) ** 2).mean(dim=(1, 2))
