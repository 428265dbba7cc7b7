"""Turning a clothed body in the camera frame into a synthetic photograph and its parsing map."""

from __future__ import annotations

import cv2
import numpy as np
import torch

from dsrbody.data.synth.appearance import (
    garment_texture,
    sample_garment_colour,
    sample_hair_colour,
    sample_skin_colour,
)
from dsrbody.data.synth.scene import CameraSample
from dsrbody.semantics.labels import CIHP

__all__ = ["render_clothed", "label_colours"]

_SKIN = {CIHP.index(n) for n in ("face", "leftArm", "rightArm", "leftLeg", "rightLeg")}
_HAIR = CIHP.index("hair")
_PAIRS = {CIHP.index("rightShoe"): CIHP.index("leftShoe")}  # both shoes share a colour


def label_colours(rng: np.random.Generator, labels_present: np.ndarray) -> dict[int, np.ndarray]:
    """An RGB colour in [0, 1] for each CIHP label present: one skin tone for every skin label, a hair
    colour, a garment colour per garment label (both shoes alike)."""
    skin = sample_skin_colour(rng)
    hair = sample_hair_colour(rng)
    colours: dict[int, np.ndarray] = {}
    for lab in sorted(int(x) for x in labels_present):
        if lab == 0:
            continue
        if lab in _SKIN:
            colours[lab] = skin
        elif lab == _HAIR:
            colours[lab] = hair
        elif lab in _PAIRS and _PAIRS[lab] in colours:
            colours[lab] = colours[_PAIRS[lab]]
        else:
            colours[lab] = sample_garment_colour(rng)
    return colours


def render_clothed(
    vertices_cam: np.ndarray,
    faces: np.ndarray,
    face_labels: np.ndarray,
    cam: CameraSample,
    background: np.ndarray,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Render a clothed body over a background.

    Args:
        vertices_cam: ``(V, 3)`` clothed vertices in the camera frame, metres.
        faces: ``(F, 3)``.
        face_labels: ``(F,)`` CIHP label per face.
        cam: the camera (focal, principal point; the translation is already applied).
        background: ``(H, W, 3)`` float in [0, 1].
        rng: random generator (colours, textures, light).

    Returns:
        ``rgb (H, W, 3) uint8``, ``labels (H, W) uint8`` (the parsing map), ``depth (H, W)`` metres
        (``inf`` where no face is seen).
    """
    from dsrbody.render.hard import rasterize

    H, W = background.shape[:2]
    v = torch.from_numpy(np.ascontiguousarray(vertices_cam, dtype=np.float32))[None]
    f = torch.from_numpy(np.ascontiguousarray(faces, dtype=np.int64))
    frag = rasterize(v, f, focal=cam.focal, principal_point=tuple(cam.principal_point), image_size=(H, W))
    face_idx = frag.face_index[0].numpy()
    depth = frag.depth[0].numpy().astype(np.float64)
    mask = face_idx >= 0
    depth = np.where(mask, depth, np.inf)
    labels = np.zeros((H, W), np.uint8)
    labels[mask] = face_labels[face_idx[mask]]

    # Lambert shading with flat face normals (camera frame), a key light from the front-top and ambient.
    seen = np.unique(face_idx[mask])
    tri = vertices_cam[faces[seen]]
    n = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    n /= np.linalg.norm(n, axis=1, keepdims=True) + 1e-12
    light = np.array([rng.uniform(-0.6, 0.6), rng.uniform(-1.0, -0.2), -1.0])
    light /= np.linalg.norm(light)
    ambient = rng.uniform(0.3, 0.5)
    lam = np.zeros(len(faces), np.float32)
    lam[seen] = ambient + (1 - ambient) * np.abs(n @ light)  # two-sided: face orientation is not relied on

    colours = label_colours(rng, np.unique(labels))
    img = background.astype(np.float32).copy()
    if mask.any():  # work inside the person's box only
        rows, cols = np.nonzero(mask.any(1))[0], np.nonzero(mask.any(0))[0]
        r0, r1, c0, c1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
        lab_c, fid_c = labels[r0:r1, c0:c1], face_idx[r0:r1, c0:c1]
        crop = img[r0:r1, c0:c1]
        shade = lam[np.maximum(fid_c, 0)]
        for lab, col in colours.items():
            sel = lab_c == lab
            if not sel.any():
                continue
            if lab in _SKIN:
                tex = 1.0 + rng.normal(0, 0.02, (int(sel.sum()), 1)).astype(np.float32)
            else:
                tex = garment_texture(rng, (r1 - r0, c1 - c0))[sel]
            crop[sel] = col[None, :].astype(np.float32) * tex * shade[sel][:, None]
    # soften the silhouette a little (a lens is never perfectly sharp), then sensor noise
    img = cv2.GaussianBlur(img, (3, 3), rng.uniform(0.3, 0.7))
    img = img + rng.normal(0, rng.uniform(0.005, 0.02), img.shape).astype(np.float32)
    rgb = (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)
    return rgb, labels, depth
