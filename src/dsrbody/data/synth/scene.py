"""Placing a posed body in front of a pinhole camera like a detector crop.

The camera follows docs/design.md, Cameras (x right, y down, z forward, metres; pixel centres at
``c + 0.5``). A body model's frame is y up and facing +z, so a person facing the camera has the
global orientation ``R_flip R_yaw R_tilt`` with ``R_flip`` the 180-degree rotation about x (the
rotation SPIN/DSR datasets already include in their global orientation).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import roma
import torch

__all__ = ["R_FLIP", "global_orientation", "CameraSample", "frame_person", "person_box"]

#: 180-degree rotation about x: model frame (y up, facing +z) -> camera frame (y down, facing the camera).
R_FLIP = np.diag([1.0, -1.0, -1.0])


def global_orientation(yaw: float, tilt_x: float = 0.0, tilt_z: float = 0.0) -> np.ndarray:
    """Root rotation in the camera convention, ``(3, 3)``: ``R_flip @ R_y(yaw) @ R_x(tilt_x) @ R_z(tilt_z)``.

    ``yaw`` (radians) turns the body about its vertical axis: 0 faces the camera, ``pi/2`` faces the
    image's right (the camera sees the subject's right side), ``pi`` shows the back. ``tilt_x`` leans
    the body forward/backward and ``tilt_z`` sideways.
    """
    R = roma.euler_to_rotmat("YXZ", torch.tensor([yaw, tilt_x, tilt_z], dtype=torch.float64)).numpy()
    return R_FLIP @ R


@dataclass
class CameraSample:
    """A pinhole camera for one synthetic image.

    Attributes:
        focal: focal length in pixels.
        principal_point: ``(2,)`` pixels (image centre).
        translation: ``(3,)`` metres added to the body (model origin at the root joint).
        truncated: whether the framing was drawn to cut the person at the image border.
    """

    focal: float
    principal_point: np.ndarray
    translation: np.ndarray
    truncated: bool


def frame_person(
    vertices: np.ndarray,
    rng: np.random.Generator,
    res: int,
    truncation_prob: float = 0.1,
    focal_range: tuple[float, float] = (2.5, 6.0),
) -> CameraSample:
    """Choose a camera so that the person fills a detector-like crop.

    The focal length is ``res * U(focal_range)`` pixels (a field of view of about 9-22 degrees);
    the distance makes the person's larger image extent ``U(0.62, 0.9) * res`` (``U(1.0, 1.5) * res``
    for truncated samples), and the person's box centre lands near the image centre (jitter
    ``+-4 %`` of the image, ``+-25 %`` when truncated).

    Args:
        vertices: ``(V, 3)`` the posed (clothed) body, camera-oriented, metres, relative to the root.
        rng: random generator.
        res: image side in pixels.
        truncation_prob: probability of a truncated framing.
        focal_range: focal length range as multiples of ``res``.

    Returns:
        :class:`CameraSample`.
    """
    truncated = bool(rng.random() < truncation_prob)
    f = float(res * rng.uniform(*focal_range))
    lo, hi = vertices.min(0), vertices.max(0)
    extent = float(max(hi[0] - lo[0], hi[1] - lo[1]))
    fill = rng.uniform(1.0, 1.5) if truncated else rng.uniform(0.62, 0.9)
    centre = 0.5 * (lo + hi)
    tz = f * extent / (fill * res) - centre[2]
    jitter = (0.25 if truncated else 0.04) * res
    target = np.array([res / 2, res / 2]) + rng.uniform(-jitter, jitter, 2)
    # Solve for tx, ty so that the box centre (at depth centre_z + tz) projects onto target.
    depth = centre[2] + tz
    txy = (target - res / 2) * depth / f - centre[:2]
    t = np.array([txy[0], txy[1], tz])
    return CameraSample(
        focal=f, principal_point=np.array([res / 2, res / 2]), translation=t, truncated=truncated
    )


def person_box(
    mask: np.ndarray, rng: np.random.Generator, jitter: float = 0.05, margin: float = 1.2
) -> tuple[np.ndarray, float]:
    """A detector-like box around a person mask, in the SPIN convention.

    Args:
        mask: ``(H, W)`` bool, the person's pixels.
        rng: random generator.
        jitter: relative jitter of the centre and size.
        margin: box side = ``margin * max(w, h)`` of the tight box (SPIN's 1.2).

    Returns:
        ``center (2,)`` pixels and ``scale`` = box side / 200.
    """
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        H, W = mask.shape
        return np.array([W / 2, H / 2]), max(H, W) / 200.0
    x0, x1, y0, y1 = xs.min(), xs.max() + 1, ys.min(), ys.max() + 1
    side = max(x1 - x0, y1 - y0)
    c = np.array([(x0 + x1) / 2, (y0 + y1) / 2]) + rng.uniform(-jitter, jitter, 2) * side
    s = side * margin * (1 + rng.uniform(-jitter, jitter)) / 200.0
    return c, float(s)
