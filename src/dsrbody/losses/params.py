"""SPIN's body-parameter and camera losses, per sample (docs/design.md, Losses).

SPIN regresses rotation matrices and compares them with the ground truth's (``nn.MSELoss()`` over the
valid samples), compares betas the same way, penalises small camera scales with
``exp(-10 s)^2`` and (with weight 0 in the official recipes) the per-vertex L1 error. Each function
returns ``(B,)``; reduce with :func:`dsrbody.losses.reduce.drop_nonfinite` and the ``has_smpl`` mask.
:func:`rest_vertex_loss` (metric) and :func:`scale_free_vertex_loss` (without size) are dsrbody's own
mesh terms (not SPIN's).
"""

from __future__ import annotations

import torch

from dsrbody.geometry.procrustes import centre_and_scale
from dsrbody.geometry.rotations import axis_angle_to_matrix

__all__ = [
    "as_rotmat",
    "pose_loss",
    "betas_loss",
    "camera_loss",
    "vertex_loss",
    "rest_vertex_loss",
    "scale_free_vertex_loss",
]


def as_rotmat(pose: torch.Tensor, num_joints: int) -> torch.Tensor:
    """Ground-truth pose as rotation matrices.

    Args:
        pose: ``(B, J*3)`` or ``(B, J, 3)`` axis-angle (SPIN files: ``pose (N, 72)``), or ``(B, J, 3, 3)``.
        num_joints: J.

    Returns:
        ``(B, J, 3, 3)``.
    """
    B = pose.shape[0]
    if pose.dim() == 4 and tuple(pose.shape[1:]) == (num_joints, 3, 3):
        return pose
    if pose.numel() == B * num_joints * 3 and pose.dim() in (2, 3):
        return axis_angle_to_matrix(pose.reshape(B, num_joints, 3))
    raise ValueError(
        f"pose must be (B, {num_joints * 3}) / (B, {num_joints}, 3) axis-angle or (B, {num_joints}, 3, 3), "
        f"got {tuple(pose.shape)}"
    )


def pose_loss(pred_rotmat: torch.Tensor, gt_pose: torch.Tensor) -> torch.Tensor:
    """MSE between predicted and ground-truth rotation matrices (all joints, root included).

    Args:
        pred_rotmat: ``(B, J, 3, 3)``.
        gt_pose: ``(B, J, 3, 3)`` or axis-angle ``(B, J*3)``.

    Returns:
        ``(B,)`` ``mean_{j, r, c} (R_pred - R_gt)^2``.
    """
    if pred_rotmat.dim() != 4 or pred_rotmat.shape[-2:] != (3, 3):
        raise ValueError(f"pred_rotmat must be (B, J, 3, 3), got {tuple(pred_rotmat.shape)}")
    gt = as_rotmat(gt_pose, pred_rotmat.shape[1]).to(pred_rotmat.dtype)
    return ((pred_rotmat - gt) ** 2).mean(dim=(1, 2, 3))


def betas_loss(pred_shape: torch.Tensor, gt_shape: torch.Tensor) -> torch.Tensor:
    """MSE between predicted and ground-truth shape coefficients.

    Args:
        pred_shape: ``(B, S)``.
        gt_shape: ``(B, S')``; with ``S' < S`` the missing ground-truth coefficients count as 0.

    Returns:
        ``(B,)`` ``mean_s (pred - gt)^2`` over the S predicted coefficients.
    """
    if pred_shape.dim() != 2 or gt_shape.dim() != 2 or gt_shape.shape[0] != pred_shape.shape[0]:
        raise ValueError(f"shapes must be (B, S), got {tuple(pred_shape.shape)} and {tuple(gt_shape.shape)}")
    S, S2 = pred_shape.shape[1], gt_shape.shape[1]
    if S2 > S:
        raise ValueError(f"ground truth has {S2} shape coefficients but the prediction only {S}")
    gt = torch.nn.functional.pad(gt_shape.to(pred_shape.dtype), (0, S - S2))
    return ((pred_shape - gt) ** 2).mean(dim=1)


def camera_loss(cam: torch.Tensor) -> torch.Tensor:
    """SPIN's camera-scale regulariser ``exp(-10 s)^2``, keeping the weak-perspective scale positive.

    Args:
        cam: ``(B, 3)`` = ``(s, tx, ty)``.

    Returns:
        ``(B,)``.
    """
    if cam.dim() != 2 or cam.shape[1] != 3:
        raise ValueError(f"cam must be (B, 3), got {tuple(cam.shape)}")
    return torch.exp(-10.0 * cam[:, 0]) ** 2


def vertex_loss(pred_vertices: torch.Tensor, gt_vertices: torch.Tensor) -> torch.Tensor:
    """SPIN's per-vertex L1 "shape" loss (weight 0 in the official recipes).

    Args:
        pred_vertices, gt_vertices: ``(B, V, 3)`` metres.

    Returns:
        ``(B,)`` ``mean_{v, c} |pred - gt|``.
    """
    if pred_vertices.shape != gt_vertices.shape or pred_vertices.dim() != 3:
        raise ValueError(
            f"vertices must both be (B, V, 3), "
            f"got {tuple(pred_vertices.shape)} and {tuple(gt_vertices.shape)}"
        )
    return (pred_vertices - gt_vertices).abs().mean(dim=(1, 2))


def rest_vertex_loss(pred_rest: torch.Tensor, gt_rest: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Shape error in metric space: mean Euclidean distance of the rest-pose vertices (PVE-T, in metres).

    Unlike :func:`betas_loss`, it means the same for every body model: SMPL betas (unit variance) and
    Anny phenotypes (in ``[0, 1]``) are compared through the bodies they make, and each coefficient counts
    by how much it moves the surface. The rest pose takes pose out, so the term supervises shape alone.

    Args:
        pred_rest, gt_rest: ``(B, V, 3)`` metres, rest-pose (T-pose) vertices of the predicted and
            ground-truth shapes, on the same mesh.
        eps: inside the square root, keeps the gradient finite at zero distance.

    Returns:
        ``(B,)`` ``mean_v ||pred_v - gt_v||`` in metres.
    """
    if pred_rest.shape != gt_rest.shape or pred_rest.dim() != 3 or pred_rest.shape[-1] != 3:
        raise ValueError(
            f"rest vertices must both be (B, V, 3), got {tuple(pred_rest.shape)} and {tuple(gt_rest.shape)}"
        )
    d2 = ((pred_rest - gt_rest.to(pred_rest)) ** 2).sum(-1)
    return torch.sqrt(d2 + eps).mean(dim=1)


def scale_free_vertex_loss(pred: torch.Tensor, gt: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Mesh distance without size and placement: the mean Euclidean vertex distance after centring both
    meshes and scaling the prediction to the ground truth's RMS radius
    (:func:`~dsrbody.geometry.procrustes.centre_and_scale`; on rest-pose meshes, PVE-T-SC in metres).

    A crop scaled to the person's box does not show stature (a tall person far away and a short one
    nearby look alike), and stature is most of :func:`rest_vertex_loss` and much of :func:`vertex_loss`:
    there its noise drowns what the image does show (docs/training.md, "Terms without stature"). On
    rest-pose meshes this term sees the body's proportions; on posed meshes, its pose and proportions.
    Keep :func:`rest_vertex_loss` beside it for the size. No rotation is removed: the meshes share the
    body frame. On posed meshes the scale also absorbs some of a pose difference (the RMS radius
    depends on the pose).

    Args:
        pred, gt: ``(B, V, 3)`` metres, vertices of the predicted and ground-truth bodies, same mesh and
            frame (rest-pose, or posed in the body frame).
        eps: inside the square root, keeps the gradient finite at zero distance.

    Returns:
        ``(B,)`` ``mean_v ||aligned pred_v - centred gt_v||`` in metres.
    """
    if pred.shape != gt.shape or pred.dim() != 3 or pred.shape[-1] != 3:
        raise ValueError(f"vertices must both be (B, V, 3), got {tuple(pred.shape)} and {tuple(gt.shape)}")
    p, g = centre_and_scale(pred, gt.to(pred))
    return torch.sqrt(((p - g) ** 2).sum(-1) + eps).mean(dim=1)
