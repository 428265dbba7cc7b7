"""Contact sheets of synthetic samples: image | parsing map | keypoints, for looking at the data."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

__all__ = ["contact_sheet"]

# SPIN-49 GT joints (indices into `part`) joined by lines: legs, arms, torso, head.
_BONES = [
    (0, 1), (1, 2), (3, 4), (4, 5), (6, 7), (7, 8), (9, 10), (10, 11), (2, 14), (3, 14), (8, 12),
    (9, 12), (12, 13), (2, 8), (3, 9),
]  # fmt: skip


def contact_sheet(root: str | Path, split: str = "train", num: int = 16, cols: int = 4) -> np.ndarray:
    """A grid of samples, each as image | parsing map | keypoints over the image.

    Args:
        root: dataset folder written by ``dsrbody synth``.
        split: which split's annotation file to read.
        num: number of samples (the first ``num``).
        cols: samples per row.

    Returns:
        ``(H, W, 3)`` uint8 RGB picture.
    """
    from dsrbody.semantics.labels import CIHP_PALETTE
    from dsrbody.semantics.parsing import read_parsing

    root = Path(root)
    data = np.load(root / f"synth_{split}.npz")
    n = min(num, len(data["imgname"]))
    tiles = []
    for i in range(n):
        name = str(data["imgname"][i])
        img = cv2.cvtColor(cv2.imread(str(root / name)), cv2.COLOR_BGR2RGB)
        lab = read_parsing(root / "grph_sequences" / name.replace(".jpg", ".png"))
        par = np.asarray(CIHP_PALETTE, dtype=np.uint8)[lab]
        kp = img.copy()
        part = data["part"][i]
        for a, b in _BONES:
            if part[a, 2] > 0 and part[b, 2] > 0:
                pa, pb = part[a, :2].astype(int), part[b, :2].astype(int)
                cv2.line(kp, tuple(pa.tolist()), tuple(pb.tolist()), (255, 255, 0), 1, cv2.LINE_AA)
        for j, p in enumerate(part):
            if p[2] > 0:
                colour = (255, 60, 60) if j in (0, 1, 2, 6, 7, 8) else (60, 160, 255)  # right red, left blue
                cv2.circle(kp, (int(p[0]), int(p[1])), 2, colour, -1, cv2.LINE_AA)
        tile = np.concatenate([img, par, kp], axis=1)
        tiles.append(np.pad(tile, ((2, 2), (2, 2), (0, 0)), constant_values=255))
    while len(tiles) % cols:
        tiles.append(np.full_like(tiles[0], 255))
    rows = [np.concatenate(tiles[r : r + cols], axis=1) for r in range(0, len(tiles), cols)]
    return np.concatenate(rows, axis=0)
