"""Pictures: a shaded mesh over an image, and a side view (pure PyTorch z-buffer, no OpenGL)."""

from __future__ import annotations

import math

import numpy as np
import torch

from dsrbody.render.hard import render_mesh

__all__ = ["overlay", "side_view", "rotate_about_vertical", "label_colors"]


def _to_tensor(x, dtype=torch.float32) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x)
    return t.detach().to("cpu", dtype)


def overlay(
    image: np.ndarray,
    vertices: torch.Tensor | np.ndarray,
    faces: torch.Tensor | np.ndarray,
    *,
    focal: float | tuple[float, float],
    principal_point: tuple[float, float] | None = None,
    face_colors: torch.Tensor | np.ndarray | None = None,
    vertex_colors: torch.Tensor | np.ndarray | None = None,
    alpha: float = 0.85,
    shading: str = "smooth",
) -> np.ndarray:
    """Draw a shaded mesh over an image.

    Args:
        image: ``(H, W, 3)`` uint8 RGB (the crop the camera looks at).
        vertices: ``(V, 3)`` camera frame (x right, y down, z forward), metres.
        faces: ``(F, 3)``.
        focal: pixels (scalar or ``(fx, fy)``). principal_point: pixels, default the image centre.
        face_colors / vertex_colors: optional RGB in [0, 1] (see :func:`dsrbody.render.hard.render_mesh`).
        alpha: opacity of the mesh.
        shading: ``"smooth"``, ``"flat"`` or ``"none"``.

    Returns:
        ``(H, W, 3)`` uint8 RGB.
    """
    img = np.asarray(image)
    if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
        raise ValueError(f"image must be (H, W, 3) uint8, got {img.shape} {img.dtype}")
    H, W = img.shape[:2]
    v = _to_tensor(vertices)
    if v.dim() != 2 or v.shape[1] != 3:
        raise ValueError(f"vertices must be (V, 3), got {tuple(v.shape)}")
    pp = (W / 2.0, H / 2.0) if principal_point is None else principal_point
    f = torch.as_tensor(focal, dtype=torch.float32)
    f = f[None] if f.dim() == 1 else f  # (2,) -> (1, 2): one sample
    out = render_mesh(
        v[None],
        _to_tensor(faces, torch.long),
        focal=f,
        principal_point=torch.as_tensor(pp, dtype=torch.float32),
        image_size=(H, W),
        face_colors=face_colors,
        vertex_colors=vertex_colors,
        shading=shading,
    )
    rgba = out.rgba[0].numpy()
    a = rgba[..., 3:] * float(alpha)
    blended = img.astype(np.float32) / 255.0 * (1.0 - a) + rgba[..., :3] * a
    return (np.clip(blended, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def rotate_about_vertical(
    vertices: torch.Tensor | np.ndarray, angle_deg: float = 90.0, center: torch.Tensor | None = None
) -> torch.Tensor:
    """Rotate ``(V, 3)`` or ``(B, V, 3)`` camera-frame vertices about the vertical (camera y) axis
    through ``center`` (default: the mean vertex of each mesh). Positive angles turn the mesh's front
    towards the image's right (a right-handed rotation about +y, which points down)."""
    v = _to_tensor(vertices) if not isinstance(vertices, torch.Tensor) else vertices
    c = v.mean(-2, keepdim=True) if center is None else center
    a = math.radians(angle_deg)
    ca, sa = math.cos(a), math.sin(a)
    R = torch.tensor([[ca, 0.0, sa], [0.0, 1.0, 0.0], [-sa, 0.0, ca]], dtype=v.dtype, device=v.device)
    return (v - c) @ R.T + c


def side_view(
    vertices: torch.Tensor | np.ndarray,
    faces: torch.Tensor | np.ndarray,
    *,
    focal: float | tuple[float, float],
    image_size: tuple[int, int],
    principal_point: tuple[float, float] | None = None,
    angle_deg: float = 90.0,
    background: tuple[int, int, int] = (255, 255, 255),
    face_colors: torch.Tensor | np.ndarray | None = None,
    vertex_colors: torch.Tensor | np.ndarray | None = None,
    shading: str = "smooth",
) -> np.ndarray:
    """The mesh seen from the side: rotated ``angle_deg`` about the vertical axis through its centre,
    rendered with the same camera on a plain background.

    Args:
        vertices: ``(V, 3)`` camera frame, metres. faces: ``(F, 3)``.
        focal, principal_point, image_size: the camera (principal point default: image centre).

    Returns:
        ``(H, W, 3)`` uint8 RGB.
    """
    H, W = image_size
    canvas = np.empty((H, W, 3), np.uint8)
    canvas[:] = np.asarray(background, np.uint8)
    return overlay(
        canvas,
        rotate_about_vertical(_to_tensor(vertices), angle_deg),
        faces,
        focal=focal,
        principal_point=principal_point,
        face_colors=face_colors,
        vertex_colors=vertex_colors,
        alpha=1.0,
        shading=shading,
    )


def label_colors(labels: torch.Tensor | np.ndarray, palette: np.ndarray | None = None) -> np.ndarray:
    """RGB colours in [0, 1] ``(N, 3)`` for integer labels ``(N,)`` from a ``(K, 3)`` uint8 palette
    (default: a fixed, well-separated palette of 24 colours)."""
    lab = np.asarray(labels, dtype=np.int64)
    if palette is None:
        palette = _DEFAULT_PALETTE
    pal = np.asarray(palette, dtype=np.float32) / 255.0
    return pal[lab % len(pal)]


_DEFAULT_PALETTE = np.array(
    [
        [230, 25, 75], [60, 180, 75], [255, 225, 25], [0, 130, 200], [245, 130, 48], [145, 30, 180],
        [70, 240, 240], [240, 50, 230], [210, 245, 60], [250, 190, 212], [0, 128, 128], [220, 190, 255],
        [170, 110, 40], [255, 250, 200], [128, 0, 0], [170, 255, 195], [128, 128, 0], [255, 215, 180],
        [0, 0, 128], [128, 128, 128], [255, 255, 255], [0, 0, 0], [100, 149, 237], [188, 143, 143],
    ],
    dtype=np.uint8,
)  # fmt: skip
