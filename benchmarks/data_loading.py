"""Data loading speed: one-affine OpenCV crop vs SPIN's pad/rotate/resize path, and reader throughput.

    .venv/bin/python benchmarks/data_loading.py [--repeats 30] [--size 1000] [--samples 32]

``bench_crop``: the augmentation crop of one RGB image (``--size`` square, a 600 px box, rotation
30 deg, flip) to 224x224, as SPIN's ``utils/imutils.crop`` does it (zero-padded copy of the rotated
box's bounding square, ``skimage.transform.rotate``, unpad, ``skimage.transform.resize``, then
``np.fliplr``; a re-implementation of the official steps, since ``scipy.misc.imrotate/imresize`` no
longer exist) against :func:`dsrbody.data.crop_augment.rgb_processing` (one ``cv2.warpAffine``).
Also the 49 keypoints: SPIN's per-point ``transform`` (one 3x3 matrix built, and inverted, per
point) against the vectorised :func:`~dsrbody.data.crop_augment.j2d_processing`.
Timings alternate between baseline and candidate; medians are reported.

``bench_reader``: ``SpinNpzDataset.__getitem__`` on ``--samples`` JPEG images of ``--size`` px with
colour parsing PNGs, augmentation on (samples per second, one process; JPEG decoding included).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import skimage.transform

from dsrbody.body.keypoints import SPIN49
from dsrbody.data.crop_augment import AugmentParams, j2d_processing, rgb_processing
from dsrbody.data.spin_npz import SpinNpzDataset
from dsrbody.semantics.labels import CIHP_PALETTE

RES = 224


# --- baseline: SPIN's crop and transform, step by step -------------------------------------------
def _spin_get_transform(center, scale, res, rot=0.0):
    h = 200 * scale
    t = np.zeros((3, 3))
    t[0, 0] = res / h
    t[1, 1] = res / h
    t[0, 2] = res * (-float(center[0]) / h + 0.5)
    t[1, 2] = res * (-float(center[1]) / h + 0.5)
    t[2, 2] = 1
    if rot != 0:
        rad = -rot * np.pi / 180
        sn, cs = np.sin(rad), np.cos(rad)
        rot_mat = np.array([[cs, -sn, 0], [sn, cs, 0], [0, 0, 1]])
        t_mat = np.eye(3)
        t_mat[0, 2] = t_mat[1, 2] = -res / 2
        t_inv = t_mat.copy()
        t_inv[:2, 2] *= -1
        t = t_inv @ rot_mat @ t_mat @ t
    return t


def _spin_transform(pt, center, scale, res, invert=False, rot=0.0):
    t = _spin_get_transform(center, scale, res, rot)
    if invert:
        t = np.linalg.inv(t)
    new = t @ np.array([pt[0] - 1, pt[1] - 1, 1.0])
    return new[:2].astype(int) + 1


def spin_crop(img, center, scale, res, rot, flip):
    ul = np.array(_spin_transform([1, 1], center, scale, res, invert=True)) - 1
    br = np.array(_spin_transform([res + 1, res + 1], center, scale, res, invert=True)) - 1
    pad = int(np.linalg.norm(br - ul) / 2 - float(br[1] - ul[1]) / 2)
    if rot != 0:
        ul -= pad
        br += pad
    new = np.zeros((br[1] - ul[1], br[0] - ul[0], img.shape[2]), np.float32)
    nx = max(0, -ul[0]), min(br[0], img.shape[1]) - ul[0]
    ny = max(0, -ul[1]), min(br[1], img.shape[0]) - ul[1]
    ox = max(0, ul[0]), min(img.shape[1], br[0])
    oy = max(0, ul[1]), min(img.shape[0], br[1])
    new[ny[0] : ny[1], nx[0] : nx[1]] = img[oy[0] : oy[1], ox[0] : ox[1]]
    if rot != 0:
        new = skimage.transform.rotate(new, rot, order=1, preserve_range=True)
        new = new[pad:-pad, pad:-pad]
    new = skimage.transform.resize(new, (res, res), order=1, preserve_range=True, anti_aliasing=False)
    if flip:
        new = np.fliplr(new)
    return new


def spin_j2d(kp, center, scale, res, rot, flip):
    out = kp.copy()
    for i in range(kp.shape[0]):
        out[i, :2] = _spin_transform(kp[i, :2] + 1, center, scale, res, rot=rot)
    out[:, :-1] = 2.0 * out[:, :-1] / res - 1.0
    if flip:
        out = out[SPIN49.flip_perm]
        out[:, 0] = -out[:, 0]
    return out


def _median_ms(fn, repeats):
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        ts.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(ts)


def _alternate(base, cand, repeats):
    b, c = [], []
    for _ in range(repeats):
        b.append(_median_ms(base, 1))
        c.append(_median_ms(cand, 1))
    return statistics.median(b), statistics.median(c)


def bench_crop(size: int, repeats: int) -> list[tuple[str, float, float]]:
    rng = np.random.default_rng(0)
    img = cv2.resize(rng.integers(0, 256, (32, 32, 3)).astype(np.uint8), (size, size))
    center, scale, rot, flip = (size * 0.5, size * 0.45), 3.0, 30.0, True
    params = AugmentParams(flip=flip, rot=rot, scale=1.0, pixel_noise=(1.0, 1.0, 1.0))
    kp = np.concatenate([rng.uniform(0, size, (49, 2)), np.ones((49, 1))], axis=1)

    # sanity: both crops show the same picture (up to SPIN's integer box rounding)
    a = spin_crop(img.astype(np.float32), center, scale, RES, rot, flip)
    b = rgb_processing(img, center, scale, params, RES, normalize=False).transpose(1, 2, 0) * 255
    diff = np.abs(a - b).mean()
    rows = [
        (
            "crop 224 (rot 30, flip)",
            *_alternate(
                lambda: spin_crop(img.astype(np.float32), center, scale, RES, rot, flip),
                lambda: rgb_processing(img, center, scale, params, RES),
                repeats,
            ),
        ),
        (
            "49 keypoints",
            *_alternate(
                lambda: spin_j2d(kp, center, scale, RES, rot, flip),
                lambda: j2d_processing(kp, center, scale, params, RES),
                repeats,
            ),
        ),
    ]
    print(f"mean |SPIN crop - dsrbody crop| = {diff:.1f} grey levels (of 255; box rounding, resampling)")
    return rows


def bench_reader(size: int, samples: int) -> float:
    rng = np.random.default_rng(1)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        names = [f"images/im_{i:03d}.jpg" for i in range(samples)]
        for name in names:
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            img = cv2.resize(rng.integers(0, 256, (24, 24, 3)).astype(np.uint8), (size, size))
            cv2.imwrite(str(root / name), img)
            lab = np.zeros((size, size), np.uint8)
            lab[size // 4 : 3 * size // 4, size // 3 : 2 * size // 3] = rng.integers(1, 20)
            p = root / "grph_sequences" / Path(name).with_suffix(".png")
            p.parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(p), CIHP_PALETTE[lab][:, :, ::-1])
        n = samples
        np.savez(
            root / "bench.npz",
            imgname=np.array(names),
            center=np.full((n, 2), size / 2),
            scale=np.full(n, size * 0.6 / 200),
            part=np.concatenate([rng.uniform(0, size, (n, 24, 2)), np.ones((n, 24, 1))], axis=2),
            pose=rng.normal(0, 0.2, (n, 72)),
            shape=rng.normal(0, 1, (n, 10)),
            S=np.concatenate([rng.normal(0, 0.3, (n, 24, 3)), np.ones((n, 24, 1))], axis=2),
        )
        ds = SpinNpzDataset(root / "bench.npz", root, augment=True)
        ds[0]
        t0 = time.perf_counter()
        for i in range(n):
            ds[i]
        return n / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--size", type=int, default=1000, help="image side in pixels")
    ap.add_argument("--samples", type=int, default=32)
    args = ap.parse_args()
    cv2.setNumThreads(1)
    rows = bench_crop(args.size, args.repeats)
    print(f"{'step':<26}{'SPIN path ms':>14}{'dsrbody ms':>12}{'speed-up':>10}")
    for name, b, c in rows:
        print(f"{name:<26}{b:>14.2f}{c:>12.3f}{b / c:>9.1f}x")
    sps = bench_reader(args.size, args.samples)
    print(f"SpinNpzDataset.__getitem__ ({args.size}px JPEG + parsing PNG, augment on): {sps:.0f} samples/s")


if __name__ == "__main__":
    main()
