"""Colours, textures and backgrounds for the synthetic images.

Everything is drawn from a ``numpy.random.Generator`` so a sample is a pure function of its seed.

- Skin tones: a range from light to dark (RGB anchors along the Fitzpatrick-like scale), with jitter.
- Hair: black, brown, blond, red, grey.
- Garments: a colour in HSV with a garment-specific saturation/value range, and a texture
  (plain, noise, stripes, checks, a print of random blobs) modulating it in the image plane.
- Backgrounds: procedural (gradient + noise, a wall/floor split, random rectangles) or a photograph
  from scikit-image's bundled data (only pictures without people), randomly cropped, flipped and
  recoloured.
"""

from __future__ import annotations

from functools import cache

import cv2
import numpy as np

__all__ = [
    "SKIN_TONES",
    "HAIR_COLOURS",
    "BACKGROUND_PHOTOS",
    "sample_skin_colour",
    "sample_hair_colour",
    "sample_garment_colour",
    "garment_texture",
    "sample_background",
]

#: RGB anchors (0-255) of skin tones from light to dark.
SKIN_TONES = np.array(
    [
        [255, 224, 196],
        [241, 194, 164],
        [224, 172, 135],
        [198, 134, 99],
        [161, 102, 68],
        [110, 70, 45],
        [72, 46, 30],
    ],
    dtype=np.float64,
)
#: RGB hair colours: black, dark brown, brown, blond, red, grey.
HAIR_COLOURS = np.array(
    [[25, 20, 18], [60, 40, 28], [105, 72, 45], [200, 165, 105], [150, 70, 35], [170, 170, 165]],
    dtype=np.float64,
)
_HAIR_P = np.array([0.35, 0.25, 0.15, 0.12, 0.05, 0.08])

#: scikit-image sample pictures used as backgrounds (bundled in its wheel; none shows a person).
BACKGROUND_PHOTOS = (
    "brick", "chelsea", "coffee", "coins", "grass", "gravel", "hubble_deep_field",
    "immunohistochemistry", "moon", "page", "retina", "rocket", "text", "clock", "cell",
)  # fmt: skip


def sample_skin_colour(rng: np.random.Generator) -> np.ndarray:
    """A skin RGB colour in [0, 1], ``(3,)``: interpolated between two neighbouring tones, jittered."""
    t = rng.uniform(0, len(SKIN_TONES) - 1)
    i = int(np.floor(t))
    j = min(i + 1, len(SKIN_TONES) - 1)
    c = (1 - (t - i)) * SKIN_TONES[i] + (t - i) * SKIN_TONES[j]
    c = c * rng.uniform(0.93, 1.05) + rng.normal(0, 4, 3)
    return np.clip(c / 255.0, 0, 1)


def sample_hair_colour(rng: np.random.Generator) -> np.ndarray:
    """A hair RGB colour in [0, 1], ``(3,)``."""
    c = HAIR_COLOURS[rng.choice(len(HAIR_COLOURS), p=_HAIR_P)] * rng.uniform(0.85, 1.15)
    return np.clip(c / 255.0, 0, 1)


def sample_garment_colour(rng: np.random.Generator) -> np.ndarray:
    """A garment RGB colour in [0, 1], ``(3,)``: neutrals (black, white, grey, navy, denim) half the time."""
    if rng.random() < 0.5:
        neutrals = np.array(
            [
                [20, 20, 22],
                [235, 235, 230],
                [128, 128, 128],
                [30, 40, 80],
                [60, 90, 140],
                [90, 70, 50],
                [200, 190, 160],
            ]
        )
        c = neutrals[rng.integers(len(neutrals))] * rng.uniform(0.85, 1.1) + rng.normal(0, 6, 3)
        return np.clip(c / 255.0, 0, 1)
    hsv = np.array([[[rng.uniform(0, 180), rng.uniform(60, 230), rng.uniform(60, 240)]]], dtype=np.float32)
    rgb = cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2RGB)[0, 0].astype(np.float64)
    return rgb / 255.0


def garment_texture(rng: np.random.Generator, size: tuple[int, int]) -> np.ndarray:
    """A multiplicative texture in the image plane, ``(H, W, 3)`` float32 around 1.

    Kinds: plain (fine noise), coarse noise, stripes (random angle and period), checks, blobs.
    """
    H, W = size
    kind = rng.choice(["plain", "noise", "stripes", "checks", "blobs"], p=[0.35, 0.2, 0.2, 0.1, 0.15])
    fine = rng.normal(0, 0.04, (H, W, 1)).astype(np.float32)
    if kind == "plain":
        return 1.0 + np.repeat(fine, 3, axis=2)
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
    if kind == "noise":
        low = rng.normal(0, 1, (max(2, H // 16), max(2, W // 16))).astype(np.float32)
        low = cv2.resize(low, (W, H), interpolation=cv2.INTER_CUBIC)[..., None]
        return 1.0 + 0.12 * low + fine
    if kind in ("stripes", "checks"):
        period = rng.uniform(5, 18)
        ang = rng.uniform(0, np.pi)
        u = np.cos(ang) * xx + np.sin(ang) * yy
        m = (np.floor(u / period) % 2).astype(np.float32)
        if kind == "checks":
            v = -np.sin(ang) * xx + np.cos(ang) * yy
            m = ((np.floor(u / period) + np.floor(v / period)) % 2).astype(np.float32)
        second = rng.uniform(0.55, 1.45, 3).astype(np.float32)
        return (1 - m[..., None]) + m[..., None] * second[None, None, :] + fine
    # blobs: a print of random discs of a second colour
    out = np.ones((H, W, 3), np.float32)
    second = rng.uniform(0.5, 1.5, 3).astype(np.float32)
    for _ in range(int(rng.integers(15, 50))):
        cx, cy, r = rng.uniform(0, W), rng.uniform(0, H), rng.uniform(1.5, 5)
        cv2.circle(out, (int(cx), int(cy)), int(round(r)), tuple(float(s) for s in second), -1)
    return out + fine


@cache
def _photo(name: str) -> np.ndarray:
    import skimage.data

    im = np.asarray(getattr(skimage.data, name)())
    if im.dtype == bool:
        im = im.astype(np.uint8) * 255
    if im.ndim == 2:
        im = np.repeat(im[..., None], 3, axis=2)
    return np.ascontiguousarray(im[..., :3].astype(np.uint8))


def _procedural_background(rng: np.random.Generator, size: tuple[int, int]) -> np.ndarray:
    H, W = size
    c0, c1 = rng.uniform(0.1, 0.95, 3), rng.uniform(0.1, 0.95, 3)
    yy = np.linspace(0, 1, H, dtype=np.float32)[:, None, None]
    img = (1 - yy) * c0 + yy * c1
    img = np.broadcast_to(img, (H, W, 3)).astype(np.float32).copy()
    if rng.random() < 0.5:  # wall / floor split
        horizon = int(rng.uniform(0.45, 0.85) * H)
        img[horizon:] = rng.uniform(0.15, 0.8, 3) * (1 + 0.2 * (yy[horizon:] - 0.5))
    for _ in range(int(rng.integers(0, 6))):  # furniture-like rectangles
        x0, y0 = rng.integers(0, W), rng.integers(0, H)
        w, h = rng.integers(10, W // 2), rng.integers(10, H // 2)
        img[y0 : y0 + h, x0 : x0 + w] = rng.uniform(0.05, 0.95, 3)
    low = rng.normal(0, 1, (max(2, H // 8), max(2, W // 8))).astype(np.float32)
    low = cv2.resize(low, (W, H), interpolation=cv2.INTER_CUBIC)[..., None]
    img = img * (1 + 0.08 * low) + rng.normal(0, 0.02, (H, W, 1)).astype(np.float32)
    return np.clip(img, 0, 1)


def sample_background(rng: np.random.Generator, size: tuple[int, int], photo_prob: float = 0.5) -> np.ndarray:
    """A background image ``(H, W, 3)`` float32 in [0, 1].

    Args:
        rng: random generator.
        size: ``(H, W)`` pixels.
        photo_prob: probability of a (cropped, flipped, recoloured) scikit-image photograph rather
            than a procedural background.
    """
    H, W = size
    if rng.random() >= photo_prob:
        return _procedural_background(rng, size)
    photo = _photo(BACKGROUND_PHOTOS[int(rng.integers(len(BACKGROUND_PHOTOS)))])
    ph, pw = photo.shape[:2]
    side = int(rng.uniform(0.4, 1.0) * min(ph, pw))
    y0, x0 = int(rng.integers(0, ph - side + 1)), int(rng.integers(0, pw - side + 1))
    crop = cv2.resize(photo[y0 : y0 + side, x0 : x0 + side], (W, H), interpolation=cv2.INTER_AREA)
    img = crop.astype(np.float32) / 255.0
    if rng.random() < 0.5:
        img = img[:, ::-1]
    tint = rng.uniform(0.6, 1.3, 3).astype(np.float32)
    img = img * tint * rng.uniform(0.7, 1.2) + rng.uniform(-0.1, 0.1)
    return np.clip(img, 0, 1)
