"""Tiny benchmark folders in the exact layouts of the four evaluation files, for the protocol tests.

Layouts (as SPIN's preprocessing writes them and DSR ships them):

- ``3dpw_test.npz``: ``imgname, center, scale, pose (N,72), shape (N,10), gender ('m'/'f')``;
  ``3dpw_test_with_mmpose.npz`` adds ``part`` / ``openpose`` 2D keypoints.
- ``h36m_valid_protocol{1,2}.npz``: ``imgname, center, scale, part (N,24,3), S (N,24,4)``; ``S`` holds the
  17 H36M joints in metres, centred on the H36M pelvis, at SPIN's ``global_idx`` rows of the 24 GT
  joints (confidence 1 there, 0 elsewhere).
- ``mpi_inf_3dhp_valid.npz``: same keys as Human3.6M's, ``S`` with 17 joints.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch

#: SPIN's h36m preprocessing ``global_idx``: row of the 24 GT joints for each of the 17 H36M joints.
H36M17_TO_S24 = [14, 3, 4, 5, 2, 1, 0, 16, 12, 17, 18, 9, 10, 11, 8, 7, 6]


def random_smpl_params(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``(pose (n, 72), shape (n, 10))``: upright bodies facing the camera (SPIN's convention: the
    global orientation holds the 180 deg x flip), mild joint angles."""
    pose = rng.normal(0.0, 0.25, (n, 72))
    pose[:, :3] = np.array([np.pi, 0.0, 0.0]) + rng.normal(0, 0.1, (n, 3))
    shape = rng.normal(0.0, 1.0, (n, 10))
    return pose, shape


def write_images(img_dir: Path, imgnames, rng: np.random.Generator, size=(96, 128)) -> None:
    """Small JPEGs at ``img_dir/imgname``."""
    for name in imgnames:
        path = img_dir / name
        path.parent.mkdir(parents=True, exist_ok=True)
        img = cv2.resize(rng.integers(0, 256, (4, 5, 3)).astype(np.uint8), (size[1], size[0]))
        assert cv2.imwrite(str(path), img)


def base_arrays(n: int, rng: np.random.Generator, prefix: str) -> dict[str, np.ndarray]:
    """``imgname``, ``center``, ``scale`` (the person box of a 96x128 image)."""
    return {
        "imgname": np.array([f"{prefix}/seq_{i // 3:02d}/image_{i:05d}.jpg" for i in range(n)]),
        "center": np.stack([rng.uniform(55, 75, n), rng.uniform(40, 55, n)], axis=1),
        "scale": rng.uniform(0.35, 0.45, n),
    }


def S_from_h36m(h36m17: np.ndarray) -> np.ndarray:
    """``(N, 24, 4)`` ``S`` from ``(N, 17, 3)`` H36M joints: pelvis-centred, SPIN's rows, confidence 1."""
    n = h36m17.shape[0]
    S = np.zeros((n, 24, 4))
    S[:, H36M17_TO_S24, :3] = h36m17 - h36m17[:, :1]
    S[:, H36M17_TO_S24, 3] = 1.0
    return S


def smpl_vertices(model, pose: np.ndarray, shape: np.ndarray) -> torch.Tensor:
    """``(N, 6890, 3)`` float32 vertices of an SMPL model for axis-angle poses."""
    from dsrbody.geometry.rotations import axis_angle_to_matrix

    rot = axis_angle_to_matrix(torch.as_tensor(pose, dtype=torch.float32).reshape(len(pose), 24, 3))
    with torch.no_grad():
        return model(rot[:, 0], rot[:, 1:], torch.as_tensor(shape, dtype=torch.float32)).vertices


def write_3dpw(root: Path, n: int, rng: np.random.Generator, mmpose: bool = False) -> dict:
    """A 3DPW test file (+ images) under ``root``; returns the arrays."""
    arrays = base_arrays(n, rng, "imageFiles")
    pose, shape = random_smpl_params(n, rng)
    arrays |= {"pose": pose, "shape": shape, "gender": np.array((["m", "f"] * n)[:n])}
    if mmpose:
        part = np.zeros((n, 24, 3))
        part[:, :12, :2] = rng.uniform(10, 90, (n, 12, 2))
        part[:, :12, 2] = rng.uniform(0.0, 1.0, (n, 12))
        arrays |= {"part": part, "openpose": np.zeros((n, 25, 3))}
    name = "3dpw_test_with_mmpose.npz" if mmpose else "3dpw_test.npz"
    np.savez(root / name, **arrays)
    write_images(root, arrays["imgname"], rng)
    return arrays


def write_s_file(root: Path, filename: str, h36m17: np.ndarray, rng: np.random.Generator) -> dict:
    """A Human3.6M / MPI-INF-3DHP validation file whose ``S`` comes from ``(N, 17, 3)`` H36M joints."""
    n = h36m17.shape[0]
    arrays = base_arrays(n, rng, "images")
    part = np.zeros((n, 24, 3))
    part[:, H36M17_TO_S24, :2] = rng.uniform(10, 90, (n, 17, 2))
    part[:, H36M17_TO_S24, 2] = 1.0
    arrays |= {"part": part, "S": S_from_h36m(h36m17)}
    np.savez(root / filename, **arrays)
    write_images(root, arrays["imgname"], rng)
    return arrays


class TablePredictor:
    """A predictor returning fixed vertices per sample index (``batch["sample_index"]``)."""

    def __init__(self, vertices: torch.Tensor, body_model=None, translation: torch.Tensor | None = None):
        self.vertices = vertices
        self.body_model = body_model
        self.translation = translation
        self.calls = 0

    @property
    def faces(self):
        return None if self.body_model is None else self.body_model.faces

    def __call__(self, batch):
        self.calls += 1
        idx = torch.as_tensor(batch["sample_index"])
        out = {"vertices": self.vertices[idx]}
        if self.translation is not None:
            out["translation"] = self.translation[idx]
        return out
