"""Pictures for training logs and evaluation: input | prediction overlay | GT overlay | DSR maps."""

from __future__ import annotations

import numpy as np
import torch

from dsrbody.data.crop_augment import IMG_NORM_MEAN, IMG_NORM_STD

__all__ = [
    "denormalize_image",
    "mesh_overlay",
    "mc_panel",
    "class_panel",
    "label_panel",
    "training_panel",
    "hstack",
    "grid",
]

#: colours of the 8 merged DSR-C classes (background black).
MERGED_COLORS = np.array(
    [[0, 0, 0], [230, 25, 75], [255, 150, 40], [0, 130, 200], [60, 180, 75], [145, 30, 180],
     [240, 200, 40], [70, 220, 220]],
    dtype=np.float32,
)  # fmt: skip


def denormalize_image(img: torch.Tensor) -> np.ndarray:
    """``(3, H, W)`` ImageNet-normalised crop -> ``(H, W, 3)`` uint8 RGB."""
    x = img.detach().float().cpu().numpy().transpose(1, 2, 0)
    x = x * np.asarray(IMG_NORM_STD, np.float32) + np.asarray(IMG_NORM_MEAN, np.float32)
    return (np.clip(x, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def mc_panel(rendered: torch.Tensor, mask: torch.Tensor) -> np.ndarray:
    """Rendered DSR-MC map ``(H, W)`` in red over the MC mask ``(H, W)`` in green (overlap yellow)."""
    r = rendered.detach().float().cpu().clamp(0, 1).numpy()
    m = mask.detach().float().cpu().numpy()
    return (np.stack([r, m, np.zeros_like(r)], axis=-1) * 255.0 + 0.5).astype(np.uint8)


def class_panel(probs: torch.Tensor) -> np.ndarray:
    """Rendered class probabilities ``(8, H, W)`` as a probability-weighted mix of class colours."""
    p = probs.detach().float().cpu().clamp(0, 1).numpy()
    rgb = np.einsum("chw,cd->hwd", p, MERGED_COLORS)
    return np.clip(rgb + 0.5, 0, 255).astype(np.uint8)


def label_panel(merged: torch.Tensor) -> np.ndarray:
    """Merged class labels ``(H, W)`` in class colours."""
    lab = merged.detach().cpu().long().numpy()
    return MERGED_COLORS[np.clip(lab, 0, len(MERGED_COLORS) - 1)].astype(np.uint8)


def mesh_overlay(
    image: np.ndarray, vertices: torch.Tensor | None, faces, focal, principal_point
) -> np.ndarray:
    if vertices is None or not torch.isfinite(vertices).all():
        out = image.copy() // 3  # no mesh: dimmed input
        return out
    from dsrbody.render.overlay import overlay

    return overlay(
        image, vertices.detach().float().cpu(), faces, focal=focal, principal_point=principal_point
    )


def training_panel(
    image: torch.Tensor,
    faces: torch.Tensor,
    pred_vertices_cam: torch.Tensor,
    focal: float,
    gt_vertices_cam: torch.Tensor | None = None,
    gt_focal: float | tuple[float, float] | None = None,
    gt_principal_point: tuple[float, float] | None = None,
    rendered_mc: torch.Tensor | None = None,
    mc_mask: torch.Tensor | None = None,
    rendered_classes: torch.Tensor | None = None,
    merged_labels: torch.Tensor | None = None,
) -> np.ndarray:
    """One row of panels: input | prediction overlay | GT overlay | MC map (red) vs MC mask (green) |
    rendered classes | parsing labels (merged classes). Missing parts are black.

    Args:
        image: ``(3, H, W)`` normalised crop. faces: ``(F, 3)``.
        pred_vertices_cam: ``(V, 3)`` camera-frame vertices (metres) seen with ``focal`` px at the centre.
        gt_vertices_cam: ``(V', 3)`` GT mesh in its camera (``gt_focal``, ``gt_principal_point``).
        rendered_mc: ``(H, W)``; mc_mask: ``(H, W)``; rendered_classes: ``(8, H, W)``;
        merged_labels: ``(H, W)``.

    Returns:
        ``(H, 6 W, 3)`` uint8.
    """
    rgb = denormalize_image(image)
    H, W = rgb.shape[:2]
    c = (W / 2.0, H / 2.0)
    black = np.zeros_like(rgb)
    pred = mesh_overlay(rgb, pred_vertices_cam, faces, focal, c)
    gt = (
        mesh_overlay(rgb, gt_vertices_cam, faces, gt_focal or focal, gt_principal_point or c)
        if gt_vertices_cam is not None
        else black
    )
    mc = mc_panel(rendered_mc, mc_mask) if rendered_mc is not None and mc_mask is not None else black
    cls = class_panel(rendered_classes) if rendered_classes is not None else black
    lab = label_panel(merged_labels) if merged_labels is not None else black
    return np.concatenate([rgb, pred, gt, mc, cls, lab], axis=1)


def hstack(images: list[np.ndarray], gap: int = 2) -> np.ndarray:
    """Images of equal height side by side with white gaps."""
    H = images[0].shape[0]
    sep = np.full((H, gap, 3), 255, np.uint8)
    parts = []
    for i, im in enumerate(images):
        if i:
            parts.append(sep)
        parts.append(im)
    return np.concatenate(parts, axis=1)


def grid(rows: list[np.ndarray], gap: int = 2) -> np.ndarray:
    """Rows of equal width stacked with white gaps."""
    W = max(r.shape[1] for r in rows)
    out = []
    for i, r in enumerate(rows):
        if r.shape[1] < W:
            r = np.concatenate([r, np.full((r.shape[0], W - r.shape[1], 3), 255, np.uint8)], axis=1)
        if i:
            out.append(np.full((gap, W, 3), 255, np.uint8))
        out.append(r)
    return np.concatenate(out, axis=0)
