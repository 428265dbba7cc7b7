"""Writers of tiny files in the exact SPIN/DSR layout (.npz, image folder, grph_sequences), for tests."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from dsrbody.semantics.labels import CIHP_PALETTE


def write_image(path: Path, rgb: np.ndarray) -> None:
    """Write an RGB uint8 image (JPEG at quality 95 or PNG by suffix)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    params = [cv2.IMWRITE_JPEG_QUALITY, 95] if path.suffix.lower() in (".jpg", ".jpeg") else []
    assert cv2.imwrite(str(path), np.ascontiguousarray(rgb[:, :, ::-1]), params)


def write_parsing(path: Path, labels: np.ndarray, colour: bool) -> None:
    """Write a parsing map as a CIHP colour PNG or a single-channel index PNG."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if colour:
        write_image(path, CIHP_PALETTE[labels])
    else:
        assert cv2.imwrite(str(path), labels.astype(np.uint8))


def spin_arrays(n: int, rng: np.random.Generator, h: int = 120, w: int = 160) -> dict[str, np.ndarray]:
    """Random but valid annotation arrays in the SPIN layout (part, openpose, S, pose, shape...)."""
    part = np.zeros((n, 24, 3))
    part[:, :, 0] = rng.uniform(20, w - 20, (n, 24))
    part[:, :, 1] = rng.uniform(20, h - 20, (n, 24))
    part[:, :, 2] = 1.0
    openpose = np.zeros((n, 25, 3))
    openpose[:, :, :2] = part[:, :1, :2] + rng.normal(0, 5, (n, 25, 2))
    openpose[:, :, 2] = rng.uniform(0.2, 1.0, (n, 25))
    s = np.concatenate([rng.normal(0, 0.3, (n, 24, 3)), np.ones((n, 24, 1))], axis=2)
    return {
        "imgname": np.array([f"images/img_{i:03d}.jpg" for i in range(n)]),
        "center": np.stack([rng.uniform(70, 90, n), rng.uniform(50, 70, n)], axis=1),
        "scale": rng.uniform(0.4, 0.6, n),
        "part": part,
        "openpose": openpose,
        "S": s,
        "pose": rng.normal(0, 0.3, (n, 72)),
        "shape": rng.normal(0, 1, (n, 10)),
        "has_smpl": np.ones(n),
        "gender": np.array(["m", "f"] * (n // 2) + ["m"] * (n % 2)),
    }
