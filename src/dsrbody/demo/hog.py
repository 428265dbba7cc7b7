"""Every person of an image, offline, with the project's own dependencies: a HOG people detector.

The detector is Dalal and Triggs' (CVPR 2005): histograms of oriented gradients over a 64 x 128 window
scored by a linear SVM. Its SVM is OpenCV's default people detector (``cv2.HOGDescriptor_
getDefaultPeopleDetector()`` of OpenCV 4.x, Apache-2.0, trained on INRIA pedestrians), shipped as
``dsrbody/assets/hog_people_svm.npy`` (3,780 weights + bias): OpenCV 5 dropped the HOG detector from
its main module, so the descriptor is computed here in numpy exactly as OpenCV 4 computes it (square
root gamma, central differences on the strongest colour channel, 9 unsigned orientation bins with
linear interpolation, 8 x 8 cells, 16 x 16 blocks with a Gaussian window (sigma 4) and bilinear
spatial interpolation, L2-Hys normalisation; blocks x-major in the window). The test suite checks
the descriptor against OpenCV 4's when that is importable.

Detection scans a pyramid of the image (windows every 4 pixels, scales ``1.15 ** k``, starting at
0.5 so that people down to ~50 px tall are found), keeps windows scoring above ``threshold`` that
at least ``min_support`` windows agree with (IoU > 0.4: OpenCV's grouping in spirit), and suppresses
overlapping boxes (non-maximum suppression, IoU > 0.3, or a box mostly inside a better one): one box
per person. HOG sees upright people (standing, walking); it gives boxes, no keypoints and no mask.
A window holds the person in its central 96 of 128 pixels, so the crop box is the window's height
(about 1.3 x the person, like the official demo's 1.2 x the keypoints' extent).
"""

from __future__ import annotations

from functools import lru_cache
from importlib import resources

import numpy as np

from dsrbody.demo.inputs import Person

__all__ = ["hog_descriptor_grid", "window_descriptor", "HOGPeopleDetector", "box_iou", "nms"]

WIN_W, WIN_H, CELL, NBINS = 64, 128, 8, 9
BLOCKS_X, BLOCKS_Y = WIN_W // CELL - 1, WIN_H // CELL - 1  # 7 x 15 blocks of 2 x 2 cells


@lru_cache(maxsize=1)
def _svm() -> tuple[np.ndarray, float]:
    """``(weights (BLOCKS_X, BLOCKS_Y, 36), bias)`` of the shipped people SVM."""
    with resources.as_file(resources.files("dsrbody") / "assets" / "hog_people_svm.npy") as p:
        d = np.load(p).astype(np.float64)
    if d.shape != (BLOCKS_X * BLOCKS_Y * 36 + 1,):
        raise ValueError(f"{p}: expected {BLOCKS_X * BLOCKS_Y * 36 + 1} SVM coefficients, got {d.shape}")
    return d[:-1].reshape(BLOCKS_X, BLOCKS_Y, 36), float(d[-1])


@lru_cache(maxsize=1)
def _block_kernels() -> np.ndarray:
    """``(4 cells, 4 sub-cells, 8, 8)``: Gaussian x bilinear weight of a block pixel for each of the
    block's cells, split by the 8 x 8 quarter (sub-cell) of the block the pixel lies in. Cells and
    sub-cells are indexed ``cx * 2 + cy`` (OpenCV's order)."""
    t = np.arange(16) + 0.5
    g = np.exp(-((np.arange(16) - 8.0) ** 2) / (2 * 4.0**2))  # OpenCV: offsets i - 8, not i + 0.5 - 8
    gauss = np.outer(g, g)  # (y, x)
    f = t / CELL - 0.5  # cell coordinate of each pixel
    i0 = np.floor(f).astype(int)
    w1 = f - i0
    lin = np.zeros((2, 16))  # weight of pixel coordinate towards cell 0 / 1
    for k in range(16):
        for cell, w in ((i0[k], 1 - w1[k]), (i0[k] + 1, w1[k])):
            if 0 <= cell < 2:
                lin[cell, k] += w
    out = np.zeros((4, 4, 8, 8))
    for cx in range(2):
        for cy in range(2):
            full = gauss * np.outer(lin[cy], lin[cx])  # (16, 16)
            for qx in range(2):
                for qy in range(2):
                    out[cx * 2 + cy, qx * 2 + qy] = full[qy * 8 : qy * 8 + 8, qx * 8 : qx * 8 + 8]
    return out


def hog_descriptor_grid(image: np.ndarray) -> np.ndarray:
    """Normalised HOG blocks of a whole image, every 8 pixels.

    Args:
        image: ``(H, W, 3)`` or ``(H, W)`` uint8 (any channel order: the strongest channel's gradient is
            used), ``H, W >= 16``.

    Returns:
        ``(H // 8 - 1, W // 8 - 1, 36)`` float: the block whose top-left pixel is ``(8 by, 8 bx)`` at
        ``[by, bx]`` (2 x 2 cells ``cx * 2 + cy``, 9 bins each), L2-Hys normalised.
    """
    img = np.sqrt(np.asarray(image, dtype=np.float32))
    if img.ndim == 2:
        img = img[..., None]
    H, W = (img.shape[0] // CELL) * CELL, (img.shape[1] // CELL) * CELL
    p = np.pad(img, ((1, 1), (1, 1), (0, 0)), mode="reflect")  # OpenCV's BORDER_REFLECT_101
    dx = p[1:-1, 2:] - p[1:-1, :-2]
    dy = p[2:, 1:-1] - p[:-2, 1:-1]
    mag2 = dx * dx + dy * dy
    ch = mag2.argmax(-1)[..., None]
    dx = np.take_along_axis(dx, ch, -1)[..., 0][:H, :W]
    dy = np.take_along_axis(dy, ch, -1)[..., 0][:H, :W]
    mag = np.sqrt(dx * dx + dy * dy)
    ang = np.arctan2(dy, dx)
    ang = np.where(ang < 0, ang + 2 * np.pi, ang) * (NBINS / np.pi) - 0.5
    h0 = np.floor(ang)
    frac = (ang - h0).astype(np.float32)
    h0 = h0.astype(int) % NBINS
    h1 = (h0 + 1) % NBINS
    bins = np.arange(NBINS)
    votes = (h0[..., None] == bins) * (mag * (1 - frac))[..., None]
    votes = (votes + (h1[..., None] == bins) * (mag * frac)[..., None]).astype(np.float32)
    hc, wc = H // CELL, W // CELL
    v = votes.reshape(hc, CELL, wc, CELL, NBINS)
    k = _block_kernels().astype(np.float32)  # (4, 4, 8, 8) [cell, sub-cell, y, x]
    s = np.einsum("cqyx,iyjxb->cqijb", k, v, optimize=True)  # (4, 4, hc, wc, 9)
    hb, wb = hc - 1, wc - 1
    blocks = np.zeros((hb, wb, 4, NBINS), np.float32)
    for qx in range(2):
        for qy in range(2):
            blocks += s[:, qx * 2 + qy, qy : qy + hb, qx : qx + wb].transpose(1, 2, 0, 3)
    blocks = blocks.reshape(hb, wb, 36)
    n = np.sqrt((blocks**2).sum(-1, keepdims=True)) + 0.1 * 36
    blocks = np.minimum(blocks / n, 0.2)
    return blocks / (np.sqrt((blocks**2).sum(-1, keepdims=True)) + 1e-3)


def window_descriptor(window: np.ndarray) -> np.ndarray:
    """OpenCV 4's ``HOGDescriptor().compute`` of one 64 x 128 window ``(128, 64[, 3])``: ``(3780,)``."""
    if window.shape[:2] != (WIN_H, WIN_W):
        raise ValueError(f"window_descriptor: expected a {WIN_H} x {WIN_W} window, got {window.shape[:2]}")
    return hog_descriptor_grid(window).transpose(1, 0, 2).reshape(-1)


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of boxes ``a (N, 4)`` and ``b (M, 4)`` given as ``(x0, y0, x1, y1)``: ``(N, M)``."""
    a, b = np.asarray(a, np.float64).reshape(-1, 4), np.asarray(b, np.float64).reshape(-1, 4)
    x0 = np.maximum(a[:, None, 0], b[None, :, 0])
    y0 = np.maximum(a[:, None, 1], b[None, :, 1])
    x1 = np.minimum(a[:, None, 2], b[None, :, 2])
    y1 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    area = lambda r: (r[:, 2] - r[:, 0]) * (r[:, 3] - r[:, 1])  # noqa: E731
    union = area(a)[:, None] + area(b)[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def nms(boxes: np.ndarray, scores: np.ndarray, iou: float = 0.3, inside: float = 0.7) -> list[int]:
    """Greedy non-maximum suppression.

    Args:
        boxes: ``(N, 4)`` ``(x0, y0, x1, y1)``. scores: ``(N,)``.
        iou: a box overlapping a kept one by more than this is dropped.
        inside: so is a box whose area lies more than this fraction inside a kept one (or the reverse).

    Returns:
        Indices of the kept boxes, best first.
    """
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    order = list(np.argsort(-np.asarray(scores)))
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    keep: list[int] = []
    for i in order:
        ok = True
        for j in keep:
            ov = box_iou(boxes[i], boxes[j])[0, 0]
            x0, y0 = np.maximum(boxes[i, :2], boxes[j, :2])
            x1, y1 = np.minimum(boxes[i, 2:], boxes[j, 2:])
            inter = max(x1 - x0, 0.0) * max(y1 - y0, 0.0)
            if ov > iou or inter > inside * min(area[i], area[j]):
                ok = False
                break
        if ok:
            keep.append(int(i))
    return keep


class HOGPeopleDetector:
    """Boxes of every upright person in an image (module docstring).

    Args:
        threshold: SVM score a window needs (OpenCV's ``hitThreshold`` is 0).
        min_support: windows (the box itself included) that must overlap a box by IoU > 0.4 for it to
            count; stray single windows are mostly false alarms.
        scale_step: pyramid step. min_scale: the first pyramid scale (< 1 upsamples, for small people).
        max_side: images are first resized so that their longer side is at most this (pixels), for speed.
        offsets: origins (pixels) of the window grids of each pyramid level: ``(0, 4)`` scans windows
            every 4 pixels (a person between two 8-pixel positions is easily missed).
    """

    def __init__(
        self,
        threshold: float = 0.5,
        min_support: int = 2,
        scale_step: float = 1.15,
        min_scale: float = 0.5,
        max_side: int = 640,
        offsets: tuple[int, ...] = (0, 4),
    ):
        self.threshold = float(threshold)
        self.min_support = int(min_support)
        self.scale_step = float(scale_step)
        self.min_scale = float(min_scale)
        self.max_side = int(max_side)
        self.offsets = tuple(int(o) for o in offsets)
        _svm()  # fail now, not on the first image, when the asset is missing

    def windows(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Every window scoring above ``threshold``: ``(boxes (N, 4) x0 y0 x1 y1 pixels, scores (N,))``."""
        import cv2

        w, b = _svm()
        img = np.ascontiguousarray(image[..., :3] if image.ndim == 3 else image)
        H0, W0 = img.shape[:2]
        pre = min(1.0, self.max_side / max(H0, W0))
        if pre < 1.0:
            img = cv2.resize(img, (round(W0 * pre), round(H0 * pre)), interpolation=cv2.INTER_AREA)
        H, W = img.shape[:2]
        boxes, scores = [], []
        s = self.min_scale
        while H / s >= WIN_H and W / s >= WIN_W:
            size = (max(WIN_W, round(W / s)), max(WIN_H, round(H / s)))
            level = cv2.resize(img, size, interpolation=cv2.INTER_LINEAR if s < 1 else cv2.INTER_AREA)
            sx, sy = W0 / size[0], H0 / size[1]
            for oy in self.offsets:  # windows every 8 px from several origins: a stride of 8 / len(offsets)
                for ox in self.offsets:
                    grid = hog_descriptor_grid(level[oy:, ox:])  # (hb, wb, 36)
                    ny, nx = grid.shape[0] - BLOCKS_Y + 1, grid.shape[1] - BLOCKS_X + 1
                    if ny <= 0 or nx <= 0:
                        continue
                    score = np.full((ny, nx), b)
                    for i in range(BLOCKS_X):
                        for j in range(BLOCKS_Y):
                            score += grid[j : j + ny, i : i + nx] @ w[i, j]
                    for y, x in zip(*np.nonzero(score > self.threshold)):
                        x0, y0 = x * CELL + ox, y * CELL + oy
                        boxes.append((x0 * sx, y0 * sy, (x0 + WIN_W) * sx, (y0 + WIN_H) * sy))
                        scores.append(float(score[y, x]))
            s *= self.scale_step
        return np.asarray(boxes, np.float64).reshape(-1, 4), np.asarray(scores, np.float64)

    def boxes(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """One window per person after support counting and NMS: ``(boxes (P, 4), scores (P,))``."""
        boxes, scores = self.windows(image)
        if len(boxes) == 0:
            return boxes, scores
        support = (box_iou(boxes, boxes) > 0.4).sum(1)
        ok = support >= self.min_support
        boxes, scores = boxes[ok], scores[ok]
        keep = nms(boxes, scores)
        return boxes[keep], scores[keep]

    def __call__(self, image: np.ndarray) -> list[Person]:
        """Every person of an ``(H, W, 3)`` uint8 RGB image (best first; empty when nobody is found)."""
        boxes, scores = self.boxes(image)
        people = []
        for (x0, y0, x1, y1), sc in zip(boxes, scores):
            center = np.array([(x0 + x1) / 2, (y0 + y1) / 2])
            people.append(Person(center=center, scale=(y1 - y0) / 200.0, source="hog", score=float(sc)))
        return people
