"""Parsing-map processing speed: dsrbody's vectorised code vs straightforward per-label loops.

Run: ``.venv/bin/python benchmarks/parsing.py`` (prints per-map times and ratios; see docs/benchmarks.md).

Baseline = the obvious implementation: decode colours with one ``np.all(rgb == colour)`` pass per palette
entry, build the MC mask / merged map / class counts with one comparison pass per label or class, one
map at a time. dsrbody: maps are decoded one at a time in data loading (:func:`read_parsing`); the
targets are built for the whole batch in the training step (``dsrbody.losses.targets.dsr_targets``, the
batched torch functions of :mod:`dsrbody.semantics.parsing`), so they are timed on a batch, per map.
Both sides use the same scipy distance transform and produce the same results (checked below).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import scipy.ndimage
import torch
from PIL import Image

from dsrbody.semantics import labels as L
from dsrbody.semantics import parsing as P


def synthetic_person(size: int = 224, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A person-like CIHP map (head, hair, torso, arms, legs, shoes) plus a second person's torso at the
    edge, and keypoints of the first person. Returns ``labels (H, W) uint8`` and ``keypoints (K, 3)``."""
    rng = np.random.default_rng(seed)
    s = size / 224
    m = np.zeros((size, size), np.uint8)
    yy, xx = np.mgrid[:size, :size]

    def box(r0, r1, c0, c1, lab):
        m[int(r0 * s) : int(r1 * s), int(c0 * s) : int(c1 * s)] = lab

    box(45, 120, 80, 140, 5)  # upper clothes
    box(50, 115, 62, 80, 14)  # left arm
    box(50, 115, 140, 158, 15)  # right arm
    box(120, 190, 82, 108, 9)  # pants
    box(120, 190, 112, 138, 9)
    box(190, 200, 80, 108, 18)  # shoes
    box(190, 200, 112, 140, 19)
    m[(yy - 28 * s) ** 2 + (xx - 110 * s) ** 2 < (17 * s) ** 2] = 2  # hair
    m[(yy - 32 * s) ** 2 + (xx - 110 * s) ** 2 < (13 * s) ** 2] = 13  # face
    box(60, 200, 200, 224, 12)  # another person's skirt at the edge
    noise = rng.random(m.shape) < 0.01  # a sprinkle of parser noise
    m[noise] = rng.integers(0, 20, noise.sum())
    kp = np.array([[110, 30, 0.9], [70, 60, 0.8], [150, 60, 0.8], [95, 195, 0.7], [125, 195, 0.7]], float) * [
        s,
        s,
        1,
    ]
    return m, kp


# ----------------------------------------------------------------------------------------------
# Baseline: per-label loops
# ----------------------------------------------------------------------------------------------


def decode_loop(rgb: np.ndarray, palette: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    labels = np.zeros(rgb.shape[:2], np.uint8)
    known = np.zeros(rgb.shape[:2], bool)
    for i, colour in enumerate(palette):
        hit = np.all(rgb == colour, axis=-1)
        labels[hit] = i
        known |= hit
    return labels, ~known


def targets_loop(labels: np.ndarray, kp: np.ndarray, distance: bool = True) -> tuple[np.ndarray, ...]:
    H, W = labels.shape
    sel = kp[kp[:, 2] > 0.3]
    x0, x1 = sel[:, 0].min() - 30, sel[:, 0].max() + 30
    y0, y1 = sel[:, 1].min() - 30, sel[:, 1].max() + 30
    cx, cy = np.arange(W) + 0.5, np.arange(H) + 0.5
    keep = ((cy >= y0) & (cy <= y1))[:, None] & ((cx >= x0) & (cx <= x1))[None]
    labels = np.where(keep, labels, 0)
    mask = np.zeros((H, W), bool)
    present = np.zeros(20, bool)
    for lab in L.MC_INDICES:
        hit = labels == lab
        if hit.sum() > 60:
            mask |= hit
            present[lab] = True
    merged = np.zeros((H, W), np.uint8)
    for lab in range(20):
        merged[labels == lab] = L.CIHP_TO_MERGED[lab]
    counts = np.array([(merged == c).sum() for c in range(8)])
    valid = counts >= 60
    w = np.zeros(8, np.float32)
    if valid.any():
        w[valid] = counts[valid].min() / counts[valid]
    dist = (
        scipy.ndimage.distance_transform_edt(~mask).astype(np.float32)
        if mask.any() and distance
        else np.zeros((H, W), np.float32)
    )
    return labels, merged, mask, present, dist, w


def bench(fn, repeat: int) -> float:
    fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times)) * 1e3


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--repeat", type=int, default=200)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (data-loader workers use 1)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    labels, kp = synthetic_person(args.size)
    rgb = L.CIHP_PALETTE[labels]

    B = args.batch
    maps = [synthetic_person(args.size, seed=i)[0] for i in range(B)]
    lab_b = torch.from_numpy(np.stack(maps)).long()  # as the training step takes them
    kp_b = torch.from_numpy(np.stack([kp] * B))

    def torch_batch(distance: bool = True):
        cl = P.clean_parsing_batch(lab_b, kp_b)
        mask, present = P.mc_mask_batch(cl)
        merged = P.merge_labels_batch(cl)
        dist = P.distance_map_batch(mask) if distance else None
        return cl, merged, mask, present, dist, P.class_weights_batch(merged)

    def numpy_loop(distance: bool = True):
        return [targets_loop(m, kp, distance) for m in maps]

    # the same results
    a, ua = P.decode_colors(rgb)
    b, ub = decode_loop(rgb, L.CIHP_PALETTE)
    assert (a == b).all() and (ua == ub).all()
    ours = torch_batch()
    for i, ref in enumerate(numpy_loop()):
        for x, y in zip(ours[:-1], ref[:-1]):
            assert np.array_equal(x[i].numpy(), y)
        assert np.allclose(ours[-1][i].numpy(), ref[-1], rtol=1e-6, atol=0)  # weights: float32 division

    rows = []
    ms_new = bench(lambda: P.decode_colors(rgb), args.repeat)
    ms_old = bench(lambda: decode_loop(rgb, L.CIHP_PALETTE), args.repeat)
    rows.append(("decode colours -> labels", ms_old, ms_new))

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "map.png"
        Image.fromarray(rgb).save(path)

        def old_file():
            with Image.open(path) as im:
                decode_loop(np.asarray(im.convert("RGB")), L.CIHP_PALETTE)

        ms_new = bench(lambda: P.read_parsing(path), args.repeat)
        ms_old = bench(old_file, args.repeat)
        rows.append(("colour PNG file -> labels (read_parsing)", ms_old, ms_new))

    n = max(5, args.repeat // 10)
    ms_new = bench(torch_batch, n) / B
    ms_old = bench(numpy_loop, n) / B
    rows.append((f"targets with distance maps (B={B}, per map)", ms_old, ms_new))
    ms_new = bench(lambda: torch_batch(False), n) / B
    ms_old = bench(lambda: numpy_loop(False), n) / B
    rows.append((f"targets, no distance map (B={B}, per map)", ms_old, ms_new))

    print(f"parsing maps {args.size}x{args.size}, median of {args.repeat} runs, torch threads {args.threads}")
    print(f"{'step':<55} {'loops ms':>9} {'dsrbody ms':>11} {'speed-up':>9}")
    for name, old, new in rows:
        print(f"{name:<55} {old:9.3f} {new:11.3f} {old / new:8.1f}x")


if __name__ == "__main__":
    main()
