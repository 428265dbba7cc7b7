"""Cameras in the SPIN/DSR convention (docs/design.md, Cameras).

- Camera frame: x right, y down, z forward (OpenCV), metres.
- Crop: ``IMG_RES`` x ``IMG_RES`` pixels (224), focal length ``FOCAL_LENGTH`` (5000 px), principal
  point at the crop centre. Pixel (row r, column c) covers ``[c, c+1) x [r, r+1)``; its centre is
  ``(c + 0.5, r + 0.5)``.
- The network predicts a weak-perspective camera ``(s, tx, ty)``; the equivalent translation is
  ``t = (tx, ty, 2 f / (IMG_RES s + 1e-9))``.
- Keypoints in losses are normalised to [-1, 1]: ``x_n = x_px / (IMG_RES / 2) - 1``.
"""

from __future__ import annotations

import torch

__all__ = [
    "IMG_RES",
    "FOCAL_LENGTH",
    "weak_perspective_to_translation",
    "translation_to_weak_perspective",
    "perspective_projection",
    "project_vertices",
    "normalize_keypoints",
    "denormalize_keypoints",
    "estimate_translation",
    "intrinsics_matrix",
    "focal_for_res",
]

IMG_RES: int = 224
FOCAL_LENGTH: float = 5000.0


def focal_for_res(img_res: int) -> float:
    """Focal length in pixels of an ``img_res`` crop with the field of view of SPIN's 224 px / 5000 px
    camera: ``5000 * img_res / 224``. With it, ``t_z = 2 f / (img_res s)`` gives the same depth for the
    same weak-perspective scale ``s`` at every crop size."""
    return FOCAL_LENGTH * float(img_res) / float(IMG_RES)


def weak_perspective_to_translation(
    cam: torch.Tensor, focal: float = FOCAL_LENGTH, img_res: int = IMG_RES, eps: float = 1e-9
) -> torch.Tensor:
    """Weak-perspective camera to camera-frame translation (SPIN's ``pred_cam_t``).

    Args:
        cam: ``(B, 3)`` = ``(s, tx, ty)``; ``s`` scales metres to normalised crop units [-1, 1].
        focal: focal length in pixels.
        img_res: crop side in pixels.
        eps: SPIN's ``1e-9`` guard against ``s = 0``.

    Returns:
        ``(B, 3)`` translation in metres: ``(tx, ty, 2 focal / (img_res s + eps))``.
    """
    if cam.shape[-1] != 3:
        raise ValueError(f"weak-perspective camera must be (B, 3) = (s, tx, ty), got {tuple(cam.shape)}")
    s, tx, ty = cam.unbind(-1)
    tz = 2.0 * focal / (img_res * s + eps)
    return torch.stack([tx, ty, tz], dim=-1)


def translation_to_weak_perspective(
    t: torch.Tensor, focal: float = FOCAL_LENGTH, img_res: int = IMG_RES
) -> torch.Tensor:
    """Inverse of :func:`weak_perspective_to_translation` (ignoring its ``eps``).

    Args:
        t: ``(B, 3)`` translation in metres, ``t_z > 0``.

    Returns:
        ``(B, 3)`` = ``(s, tx, ty)`` with ``s = 2 focal / (img_res t_z)``.
    """
    if t.shape[-1] != 3:
        raise ValueError(f"translation must be (B, 3), got {tuple(t.shape)}")
    tx, ty, tz = t.unbind(-1)
    s = 2.0 * focal / (img_res * tz)
    return torch.stack([s, tx, ty], dim=-1)


def _as_xy(value: float | torch.Tensor, B: int, like: torch.Tensor, what: str) -> torch.Tensor:
    """Broadcast a focal length / principal point (``what``, named in errors) to ``(B, 2)``.

    A scalar, ``(2,)`` = ``(x, y)``, ``(B,)`` (one value per sample; for ``B = 2`` a ``(2,)`` tensor
    means ``(x, y)``) or ``(B, 2)``; dtype and device of ``like``.
    """
    v = torch.as_tensor(value, dtype=like.dtype, device=like.device)
    if v.dim() == 0:
        v = v.expand(2)
    if v.dim() == 1 and v.shape[0] == B and B != 2:
        v = v[:, None].expand(B, 2)
    elif v.dim() == 1 and v.shape[0] == 2:
        v = v[None].expand(B, 2)
    if v.shape != (B, 2):
        raise ValueError(f"{what} must be a scalar, (2,), (B,) or (B, 2) with B={B}, got {tuple(v.shape)}")
    return v


def intrinsics_matrix(
    focal: float | torch.Tensor,
    principal_point: float | torch.Tensor | tuple[float, float],
    B: int,
    like: torch.Tensor,
) -> torch.Tensor:
    """Pinhole intrinsics ``K = [[fx, 0, cx], [0, fy, cy], [0, 0, 1]]``.

    Args:
        focal: scalar, ``(B,)`` or ``(B, 2)`` pixels.
        principal_point: ``(2,)`` or ``(B, 2)`` pixels.
        B: batch size.
        like: tensor giving dtype and device.

    Returns:
        ``(B, 3, 3)``.
    """
    f = _as_xy(focal, B, like, "focal")
    c = _as_xy(principal_point, B, like, "principal_point")
    K = torch.zeros(B, 3, 3, dtype=like.dtype, device=like.device)
    K[:, 0, 0] = f[:, 0]
    K[:, 1, 1] = f[:, 1]
    K[:, 0, 2] = c[:, 0]
    K[:, 1, 2] = c[:, 1]
    K[:, 2, 2] = 1.0
    return K


def perspective_projection(
    points: torch.Tensor,
    translation: torch.Tensor | None = None,
    focal: float | torch.Tensor = FOCAL_LENGTH,
    principal_point: float | torch.Tensor | tuple[float, float] = (IMG_RES / 2, IMG_RES / 2),
    rotation: torch.Tensor | None = None,
) -> torch.Tensor:
    """Project 3D points with a pinhole camera (SPIN's ``perspective_projection``).

    Args:
        points: ``(B, N, 3)`` metres, model or camera frame.
        translation: ``(B, 3)`` metres added after ``rotation``; ``None`` for zero.
        focal: scalar, ``(B,)`` or ``(B, 2)`` pixels.
        principal_point: ``(2,)`` or ``(B, 2)`` pixels.
        rotation: ``(B, 3, 3)`` applied first; ``None`` for identity.

    Returns:
        ``(B, N, 2)`` pixel coordinates ``(u, v)`` (u to the right, v down).
    """
    if points.dim() != 3 or points.shape[-1] != 3:
        raise ValueError(f"points must be (B, N, 3), got {tuple(points.shape)}")
    B = points.shape[0]
    X = points if rotation is None else points @ rotation.transpose(1, 2)
    if translation is not None:
        X = X + translation[:, None, :]
    f = _as_xy(focal, B, points, "focal")
    c = _as_xy(principal_point, B, points, "principal_point")
    return _pinhole(X, f, c)


def project_vertices(
    vertices: torch.Tensor, focal: float | torch.Tensor, principal_point: float | torch.Tensor
) -> torch.Tensor:
    """Pinhole projection of camera-frame points to pixels (the renderers' projection).

    Args:
        vertices: ``(B, V, 3)`` camera frame (x right, y down, z forward), metres; ``z > 0``.
        focal: pixels, scalar, ``(B,)`` or ``(B, 2)`` (fx, fy).
        principal_point: pixels, ``(2,)`` or ``(B, 2)`` (cx, cy).

    Returns:
        ``(B, V, 2)`` pixel coordinates ``(u, v)`` (column, row; pixel centres at ``c + 0.5``), in the
        dtype of ``vertices``. :func:`perspective_projection` is the same with an optional rotation and
        translation first.
    """
    B = vertices.shape[0]
    f = _as_xy(focal, B, vertices, "focal")
    c = _as_xy(principal_point, B, vertices, "principal_point")
    return _pinhole(vertices, f, c)


def _pinhole(X: torch.Tensor, f: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """``(B, N, 2)`` pixels ``X_xy / X_z * f + c`` of camera-frame points ``X (B, N, 3)``; ``f, c (B, 2)``."""
    return X[..., :2] / X[..., 2:3] * f[:, None] + c[:, None]


def normalize_keypoints(keypoints_px: torch.Tensor, img_res: int = IMG_RES) -> torch.Tensor:
    """Pixels to [-1, 1]: ``x / (img_res / 2) - 1`` on the first two columns (others kept).

    Args:
        keypoints_px: ``(..., D >= 2)`` crop pixels.

    Returns:
        same shape, normalised coordinates.
    """
    out = keypoints_px.clone()
    out[..., :2] = keypoints_px[..., :2] / (img_res / 2.0) - 1.0
    return out


def denormalize_keypoints(keypoints_n: torch.Tensor, img_res: int = IMG_RES) -> torch.Tensor:
    """[-1, 1] to pixels: ``(x + 1) img_res / 2`` on the first two columns (others kept).

    Args:
        keypoints_n: ``(..., D >= 2)`` normalised.

    Returns:
        same shape, crop pixels.
    """
    out = keypoints_n.clone()
    out[..., :2] = (keypoints_n[..., :2] + 1.0) * (img_res / 2.0)
    return out


def estimate_translation(
    joints3d: torch.Tensor,
    keypoints2d: torch.Tensor,
    focal: float | torch.Tensor = FOCAL_LENGTH,
    principal_point: float | torch.Tensor | tuple[float, float] = (IMG_RES / 2, IMG_RES / 2),
) -> torch.Tensor:
    """Camera translation that best projects ``joints3d`` onto ``keypoints2d`` (SPIN's weighted LS).

    Solves, for each sample, the linearised projection equations
    ``f_x t_x + (c_x - u) t_z = (u - c_x) Z - f_x X`` (and the same in y) in the least-squares sense
    with per-joint weights ``sqrt(conf)``, exactly as SPIN's ``estimate_translation_np``. SPIN calls it
    with the 24 GT joints (``[:, 25:]`` of the 49-keypoint set); the caller chooses the joints.

    Args:
        joints3d: ``(B, N, 3)`` metres, model frame already rotated into the camera frame.
        keypoints2d: ``(B, N, 3)`` pixel coordinates and confidence.
        focal: scalar, ``(B,)`` or ``(B, 2)`` pixels.
        principal_point: ``(2,)`` or ``(B, 2)`` pixels.

    Returns:
        ``(B, 3)`` translation in metres. Samples with fewer than 2 confident joints get a zero
        ``t_x, t_y`` and the least-norm solution (check confidences before trusting those).
    """
    if joints3d.dim() != 3 or joints3d.shape[-1] != 3:
        raise ValueError(f"joints3d must be (B, N, 3), got {tuple(joints3d.shape)}")
    if keypoints2d.shape[:2] != joints3d.shape[:2] or keypoints2d.shape[-1] != 3:
        raise ValueError(
            f"keypoints2d must be (B, N, 3) matching joints3d {tuple(joints3d.shape)}, "
            f"got {tuple(keypoints2d.shape)}"
        )
    dtype = torch.float64
    S = joints3d.to(dtype)
    kp = keypoints2d.to(dtype)
    B, N, _ = S.shape
    f = _as_xy(focal, B, S, "focal")  # (B, 2)
    c = _as_xy(principal_point, B, S, "principal_point")
    uv = kp[..., :2]  # (B, N, 2)
    w = kp[..., 2].clamp_min(0).sqrt()  # (B, N)
    # Rows per joint and axis a in {x, y}: [f_a * e_a, c_a - uv_a] . t = (uv_a - c_a) Z - f_a X_a
    Q = torch.zeros(B, N, 2, 3, dtype=dtype, device=S.device)
    Q[:, :, 0, 0] = f[:, None, 0]
    Q[:, :, 1, 1] = f[:, None, 1]
    Q[:, :, :, 2] = c[:, None, :] - uv
    rhs = (uv - c[:, None, :]) * S[..., 2:3] - f[:, None, :] * S[..., :2]  # (B, N, 2)
    Q = (Q * w[..., None, None]).reshape(B, 2 * N, 3)
    rhs = (rhs * w[..., None]).reshape(B, 2 * N, 1)
    A = Q.transpose(1, 2) @ Q
    b = Q.transpose(1, 2) @ rhs
    t = torch.linalg.lstsq(A, b).solution.squeeze(-1)
    return t.to(joints3d.dtype)
