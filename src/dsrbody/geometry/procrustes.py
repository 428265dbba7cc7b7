"""Similarity alignments: Procrustes (scale, rotation, translation), as used by PA-MPJPE, and centring
with RMS-radius scaling (no rotation), as used by PVE-T-SC and the scale-free shape loss."""

from __future__ import annotations

import torch

__all__ = ["similarity_procrustes", "centre_and_scale"]


def similarity_procrustes(
    X: torch.Tensor, Y: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Find ``s, R, t`` minimising ``sum_i || s R X_i + t - Y_i ||^2`` (Umeyama), per batch element.

    This is the alignment of SPIN/DSR's ``compute_similarity_transform`` (reflections excluded).

    Args:
        X: ``(B, N, 3)`` source points (e.g. predicted joints, metres).
        Y: ``(B, N, 3)`` target points (e.g. ground-truth joints, metres).

    Returns:
        ``X_aligned (B, N, 3)`` = ``s R X + t``, ``scale (B,)``, ``R (B, 3, 3)``, ``t (B, 3)``.
    """
    if X.shape != Y.shape or X.dim() != 3 or X.shape[-1] != 3:
        raise ValueError(
            f"similarity_procrustes expects two (B, N, 3) tensors, got {tuple(X.shape)} and {tuple(Y.shape)}"
        )
    mu_x = X.mean(dim=1, keepdim=True)
    mu_y = Y.mean(dim=1, keepdim=True)
    Xc = X - mu_x
    Yc = Y - mu_y
    var_x = (Xc**2).sum(dim=(1, 2))  # (B,)
    K = Xc.transpose(1, 2) @ Yc  # (B, 3, 3) = sum_i x_i y_i^T
    U, S, Vh = torch.linalg.svd(K)
    V = Vh.transpose(1, 2)
    # Correct for reflections: Z = diag(1, 1, sign(det(V U^T))).
    d = torch.sign(torch.linalg.det(V @ U.transpose(1, 2)))
    d = torch.where(d == 0, torch.ones_like(d), d)
    Z = torch.ones_like(S)
    Z[:, -1] = d
    R = V @ torch.diag_embed(Z) @ U.transpose(1, 2)
    scale = (S * Z).sum(dim=1) / var_x.clamp_min(torch.finfo(X.dtype).tiny)
    t = mu_y.squeeze(1) - scale[:, None] * (R @ mu_x.squeeze(1)[..., None]).squeeze(-1)
    X_aligned = scale[:, None, None] * (X @ R.transpose(1, 2)) + t[:, None, :]
    return X_aligned, scale, R, t


def centre_and_scale(
    X: torch.Tensor, Y: torch.Tensor, eps: float = 1e-12
) -> tuple[torch.Tensor, torch.Tensor]:
    """Centre both point sets on their means and scale ``X`` to ``Y``'s root-mean-square radius.

    No rotation: for point sets in a shared frame (rest-pose meshes, or posed meshes in the body frame),
    where only size and placement are to be removed (a crop cannot show stature). On posed meshes the RMS
    radius also depends on the pose (arms out or in), so the scale absorbs some of a pose difference as
    well as the stature. Differentiable in both.

    Args:
        X: ``(B, N, 3)`` source points (e.g. predicted rest-pose vertices, metres).
        Y: ``(B, N, 3)`` target points, same ``N``.
        eps: floor of ``X``'s radius (a degenerate source stays finite).

    Returns:
        ``(X_aligned (B, N, 3), Y_centred (B, N, 3))`` with ``X_aligned = (X - mean X) * r_Y / r_X``,
        ``r = sqrt(mean_i |p_i - mean p|^2)``.
    """
    if X.shape != Y.shape or X.dim() != 3 or X.shape[-1] != 3:
        raise ValueError(
            f"centre_and_scale expects two (B, N, 3) tensors, got {tuple(X.shape)} and {tuple(Y.shape)}"
        )
    Xc = X - X.mean(dim=1, keepdim=True)
    Yc = Y - Y.mean(dim=1, keepdim=True)
    r_x = Xc.square().sum(dim=-1).mean(dim=-1).sqrt().clamp_min(eps)
    r_y = Yc.square().sum(dim=-1).mean(dim=-1).sqrt()
    return Xc * (r_y / r_x)[:, None, None], Yc
