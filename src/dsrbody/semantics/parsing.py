"""Human-parsing maps: reading, writing, cleaning, and the targets of the DSR losses (docs/design.md,
Clothing labels, Losses).

A parsing map is an ``(H, W)`` uint8 array of CIHP labels (:mod:`dsrbody.semantics.labels`), row 0 at the
top. Files come in three forms, all read by :func:`read_parsing`:

- a colour PNG (RGB/RGBA) in the label set's palette (Graphonomy's for CIHP, SCHP's for ATR);
- a single-channel index PNG (``L``/``I;16``/``I``): pixel values are the labels;
- a palette PNG (``P`` mode, as Graphonomy/SCHP save them): the indices are the labels, whatever colours
  the embedded palette has.

Colours outside the palette (and indices outside the label set) are counted: they become background
with a :class:`ParsingWarning` naming the file and the count, or raise :class:`ParsingError` in strict
mode. A map that is all background is reported (warning, or error with ``on_empty="error"``). A map
whose size differs from its image's raises :class:`ParsingError` naming both sizes and both files.

The targets of the DSR losses, batched (``(B, H, W)`` torch tensors on any device; built from a batch by
:func:`dsrbody.losses.targets.dsr_targets`, for training and fitting alike):

- :func:`clean_parsing_batch`: pixels outside the box of the keypoints with confidence > 0.3, grown by a
  30 px margin, become background (other people in the crop do not count).
- :func:`mc_mask_batch`: the DSR-MC labels covering more than 60 pixels and the binary union ``M`` of
  their pixels (:func:`label_counts_batch` counts the pixels of each label).
- :func:`distance_map_batch`: Euclidean distance (pixels) from each pixel to the nearest pixel of ``M``
  (:func:`distance_map`: ``scipy.ndimage.distance_transform_edt`` of the complement of ``M``, on the
  CPU, one map at a time); 0 inside ``M``.
- :func:`merge_labels_batch`: the 8 DSR-C merged classes.
- :func:`class_weights_batch`: per merged class, (smallest count among classes with >= 60 pixels) /
  (class count) for classes with >= 60 pixels, else 0; background included.
- :func:`flip_parsing` (numpy or torch): mirror a map and swap its left/right labels.

Speed: everything is vectorised (look-up tables, ``bincount``, gather/scatter; no loop over labels or
pixels). Measured on the shared 2-core CPU under a training run's load (``python benchmarks/parsing.py``,
see docs/benchmarks.md): decoding a 224x224 colour map ~0.2 ms (a cached 24-bit colour table, ~110x
faster than one pass per palette colour), reading a colour PNG ~0.7 ms; the batched targets ~0.5 ms per
map at B=32 on one thread, ~2 ms with the distance maps (mostly scipy's transform), about as fast as
per-label loops on the CPU.
"""

from __future__ import annotations

import warnings
from os import PathLike
from pathlib import Path

import numpy as np
import scipy.ndimage
import torch
from PIL import Image

from dsrbody.semantics.labels import (
    CIHP,
    CIHP_TO_MERGED,
    MC_MASK,
    NUM_LABELS,
    NUM_MERGED,
    LabelSet,
    as_torch,
    get_label_set,
)

__all__ = [
    "ParsingError",
    "ParsingWarning",
    "decode_colors",
    "encode_colors",
    "read_parsing",
    "write_parsing",
    "check_parsing_size",
    "flip_parsing",
    "distance_map",
    "clean_parsing_batch",
    "label_counts_batch",
    "mc_mask_batch",
    "merge_labels_batch",
    "class_weights_batch",
    "distance_map_batch",
    "MC_MIN_PIXELS",
    "CLEAN_CONF_THRESHOLD",
    "CLEAN_MARGIN",
]


#: A DSR-MC label counts for an image only if it covers more than this many pixels
#: (docs/design.md, Clothing labels).
MC_MIN_PIXELS: int = 60
#: Keypoints used by the cleaning box need a confidence above this.
CLEAN_CONF_THRESHOLD: float = 0.3
#: Margin (pixels) around the keypoint box.
CLEAN_MARGIN: float = 30.0

_INDEX_MODES = ("L", "I", "I;16", "I;16B", "I;16L", "I;16N", "1", "P", "LA", "PA")


class ParsingError(ValueError):
    """A parsing map that cannot be used (unreadable, wrong size, unknown colours in strict mode, ...)."""


class ParsingWarning(UserWarning):
    """Something questionable in a parsing map (unknown colours set to background, empty map)."""


# ----------------------------------------------------------------------------------------------
# Colours <-> labels
# ----------------------------------------------------------------------------------------------


def _rgb_keys(rgb: np.ndarray) -> np.ndarray:
    rgb = rgb.astype(np.int32, copy=False)
    return (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]


_UNKNOWN = 255
_LUT_CACHE: dict[bytes, np.ndarray] = {}


def _colour_lut(palette: np.ndarray) -> np.ndarray:
    """``(2**24,)`` uint8 table from a 24-bit RGB key to its label (255 = not in the palette), built once
    per palette (16 MB): one table look-up per pixel beats a binary search ~6x."""
    key = palette.tobytes()
    lut = _LUT_CACHE.get(key)
    if lut is None:
        if len(palette) >= _UNKNOWN:
            raise ValueError(f"palettes of at most {_UNKNOWN - 1} colours are supported, got {len(palette)}")
        lut = np.full(1 << 24, _UNKNOWN, dtype=np.uint8)
        lut[_rgb_keys(palette)] = np.arange(len(palette), dtype=np.uint8)
        lut.setflags(write=False)
        _LUT_CACHE[key] = lut
    return lut


def decode_colors(rgb: np.ndarray, label_set: str | LabelSet = CIHP) -> tuple[np.ndarray, np.ndarray]:
    """Labels of an RGB parsing image.

    Args:
        rgb: ``(H, W, 3)`` uint8 RGB colours (extra channels such as alpha are ignored).
        label_set: the palette's label set (``"cihp"`` or ``"atr"``).

    Returns:
        ``labels (H, W) uint8`` (unknown colours -> 0) and ``unknown (H, W) bool``.
    """
    ls = get_label_set(label_set)
    if rgb.ndim != 3 or rgb.shape[2] < 3:
        raise ValueError(f"decode_colors expects (H, W, 3) RGB, got shape {rgb.shape}")
    if rgb.dtype != np.uint8:
        raise ValueError(f"decode_colors expects uint8 colours, got {rgb.dtype}")
    labels = _colour_lut(ls.palette)[_rgb_keys(rgb[..., :3])]
    unknown = labels == _UNKNOWN
    labels[unknown] = 0
    return labels, unknown


def encode_colors(labels: np.ndarray, label_set: str | LabelSet = CIHP) -> np.ndarray:
    """Palette colours of a label map: ``(H, W)`` integer labels -> ``(H, W, 3)`` uint8 RGB."""
    ls = get_label_set(label_set)
    labels = _check_labels(labels, len(ls), "encode_colors")
    return ls.palette[labels]


def _describe_unknown(rgb_or_idx: np.ndarray, unknown: np.ndarray, colour: bool) -> str:
    vals = rgb_or_idx[unknown]
    if colour:
        uniq, counts = np.unique(_rgb_keys(vals), return_counts=True)
        top = np.argsort(-counts)[:3]
        items = [f"({u >> 16 & 255},{u >> 8 & 255},{u & 255}) x{c}" for u, c in zip(uniq[top], counts[top])]
    else:
        uniq, counts = np.unique(vals, return_counts=True)
        top = np.argsort(-counts)[:3]
        items = [f"{int(u)} x{int(c)}" for u, c in zip(uniq[top], counts[top])]
    return ", ".join(items)


def read_parsing(
    path: str | PathLike,
    *,
    label_set: str | LabelSet = CIHP,
    strict: bool = False,
    expected_size: tuple[int, int] | None = None,
    image_path: str | PathLike | None = None,
    on_empty: str = "warn",
    unknown_value: int = 0,
) -> np.ndarray:
    """Read a parsing map (colour PNG, index PNG or palette PNG; see the module docstring).

    An RGB image whose three channels are equal everywhere and whose values are all valid label indices
    (a grey index map saved as RGB) is read as an index map; the only grey palette colour is black
    (background), so this cannot misread a colour map.

    Args:
        path: the map file.
        label_set: label set of the file (``"cihp"``, default, or ``"atr"``); labels are returned in it
            (convert ATR with :func:`dsrbody.semantics.labels.atr_to_cihp`).
        strict: raise :class:`ParsingError` on unknown colours/indices instead of warning.
        expected_size: ``(H, W)`` the map must have (the size of its image).
        image_path: the image the map belongs to; its size is read (header only) when ``expected_size``
            is not given, and it is named in the size-mismatch message.
        on_empty: what to do with an all-background map: ``"warn"`` (default), ``"error"``, ``"ignore"``.
        unknown_value: the value given to pixels of unknown colours/indices (default 0: background;
            the data loader marks them 255 to count them in the crop).

    Returns:
        ``(H, W)`` uint8 labels.

    Raises:
        FileNotFoundError: missing file. ParsingError: unreadable file, unsupported image mode, size
        mismatch, unknown colours (strict), empty map (``on_empty="error"``).
    """
    path = Path(path)
    ls = get_label_set(label_set)
    if on_empty not in ("warn", "error", "ignore"):
        raise ValueError(f"on_empty must be 'warn', 'error' or 'ignore', got {on_empty!r}")
    if not path.is_file():
        raise FileNotFoundError(f"parsing map not found: {path}")
    try:
        with Image.open(path) as img:
            mode = img.mode
            arr = np.asarray(img)
    except Exception as e:  # PIL raises several types for broken files
        raise ParsingError(f"{path}: cannot read parsing map ({type(e).__name__}: {e})") from None

    if mode in ("LA", "PA"):
        arr = arr[..., 0]
    if mode in _INDEX_MODES:
        idx = arr.astype(np.int64, copy=False)
        unknown = (idx < 0) | (idx >= len(ls))
        labels = np.where(unknown, 0, idx).astype(np.uint8)
        raw, colour = idx, False
    elif mode in ("RGB", "RGBA"):
        rgb = arr[..., :3]
        if (rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all() and rgb.max() < len(ls):
            labels = rgb[..., 0].astype(np.uint8)
            unknown = np.zeros(labels.shape, dtype=bool)
        else:
            labels, unknown = decode_colors(rgb, ls)
        raw, colour = rgb, True
    else:
        raise ParsingError(
            f"{path}: unsupported image mode {mode!r} for a parsing map (expected a colour PNG in the "
            f"{ls.name} palette, or a single-channel/palette index PNG)"
        )

    n_unknown = int(unknown.sum())
    if n_unknown:
        what = "colours not in the" if colour else "indices outside the"
        msg = (
            f"{path}: {n_unknown} of {unknown.size} pixels have {what} {ls.name} label set "
            f"(most frequent: {_describe_unknown(raw, unknown, colour)})"
        )
        if strict:
            raise ParsingError(msg)
        warnings.warn(msg + "; set to background", ParsingWarning, stacklevel=2)

    if expected_size is None and image_path is not None:
        try:
            with Image.open(image_path) as im:
                expected_size = (im.height, im.width)
        except FileNotFoundError:
            raise FileNotFoundError(f"image of parsing map {path} not found: {image_path}") from None
    if expected_size is not None:
        check_parsing_size(labels, expected_size, path=path, image_path=image_path)

    if unknown_value != 0 and n_unknown:
        labels[unknown] = unknown_value
    if on_empty != "ignore" and not labels.any():
        msg = f"{path}: parsing map is empty (all {labels.shape[0]}x{labels.shape[1]} pixels background)"
        if on_empty == "error":
            raise ParsingError(msg)
        warnings.warn(msg, ParsingWarning, stacklevel=2)
    return labels


def write_parsing(path: str | PathLike, labels: np.ndarray, *, label_set: str | LabelSet = CIHP) -> None:
    """Write ``(H, W)`` integer labels as a palette (``P`` mode) PNG: indices are the labels, the embedded
    palette is the label set's, so viewers show the usual colours and :func:`read_parsing` reads it back."""
    ls = get_label_set(label_set)
    labels = _check_labels(labels, len(ls), f"write_parsing({path})")
    if labels.ndim != 2:
        raise ValueError(f"write_parsing({path}): labels must be (H, W), got {labels.shape}")
    img = Image.fromarray(labels.astype(np.uint8))  # "L"; putpalette turns it into "P"
    pal = np.zeros((256, 3), dtype=np.uint8)
    pal[: len(ls)] = ls.palette
    img.putpalette(pal.ravel().tolist())
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    img.save(path)


def check_parsing_size(
    labels: np.ndarray,
    image_size: tuple[int, int],
    *,
    path: str | PathLike | None = None,
    image_path: str | PathLike | None = None,
) -> None:
    """Raise :class:`ParsingError` when a map ``(H, W)`` does not have its image's size ``(H, W)``."""
    h, w = int(labels.shape[0]), int(labels.shape[1])
    H, W = int(image_size[0]), int(image_size[1])
    if (h, w) != (H, W):
        img = f"its image {image_path}" if image_path is not None else "its image"
        raise ParsingError(
            f"parsing map {path if path is not None else '<array>'} is {h}x{w} (HxW) but {img} is {H}x{W}"
        )


def _check_labels(labels: np.ndarray, num_labels: int, what: str) -> np.ndarray:
    labels = np.asarray(labels)
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"{what}: labels must be integers, got {labels.dtype}")
    if labels.size and (int(labels.min()) < 0 or int(labels.max()) >= num_labels):
        raise ValueError(
            f"{what}: labels outside [0, {num_labels - 1}] (min {labels.min()}, max {labels.max()})"
        )
    return labels


# ----------------------------------------------------------------------------------------------
# Flips and DSR targets (batched torch; the distance transform is scipy's, one map at a time)
# ----------------------------------------------------------------------------------------------


def flip_parsing(
    labels: np.ndarray | torch.Tensor, label_set: str | LabelSet = CIHP
) -> np.ndarray | torch.Tensor:
    """Mirror a parsing map horizontally (last axis) and swap its left/right labels.

    Args:
        labels: ``(..., H, W)`` integer labels (numpy or torch).
        label_set: ``"cihp"`` (default) or ``"atr"``.
    """
    perm = get_label_set(label_set).flip_perm
    if isinstance(labels, torch.Tensor):
        p = as_torch(perm, labels.device)
        return p[labels.flip(-1).long()].to(labels.dtype)
    arr = np.asarray(labels)
    return perm[arr[..., ::-1]].astype(arr.dtype)


def distance_map(mask: np.ndarray) -> np.ndarray:
    """Euclidean distance (pixels) from every pixel to the nearest pixel of ``mask``.

    ``scipy.ndimage.distance_transform_edt`` of the complement of ``mask`` (0 on the mask). An empty
    mask has no distance: the result is all zeros (such a sample has no MC label and gets no DSR loss).

    Args:
        mask: ``(H, W)`` bool.

    Returns:
        ``(H, W)`` float32.
    """
    mask = np.asarray(mask, dtype=bool)
    if not mask.any():
        return np.zeros(mask.shape, dtype=np.float32)
    return scipy.ndimage.distance_transform_edt(~mask).astype(np.float32)


def _validate_batch(labels: torch.Tensor, what: str) -> None:
    if labels.dim() != 3:
        raise ValueError(f"{what}: labels must be (B, H, W), got {tuple(labels.shape)}")
    if labels.dtype.is_floating_point or labels.dtype.is_complex or labels.dtype == torch.bool:
        raise ValueError(f"{what}: labels must be an integer tensor, got {labels.dtype}")


def _check_batch(labels: torch.Tensor, num_labels: int, what: str) -> torch.Tensor:
    """Validate ``(B, H, W)`` integer labels and return them as int64 (no copy when already int64).
    Label values are not range-checked (that would synchronise a GPU); out-of-range values raise in the
    gather/scatter that uses them."""
    _validate_batch(labels, what)
    return labels.long()


def clean_parsing_batch(
    labels: torch.Tensor,
    keypoints: torch.Tensor,
    *,
    conf_threshold: float = CLEAN_CONF_THRESHOLD,
    margin: float = CLEAN_MARGIN,
) -> torch.Tensor:
    """Set to background the pixels outside each person's keypoint box.

    The box spans the keypoints with confidence ``> conf_threshold``, grown by ``margin`` pixels on each
    side; a pixel (row r, column c) is kept when its centre ``(c + 0.5, r + 0.5)`` lies in the box. A map
    without a confident keypoint is left unchanged: there is nothing to judge by.

    Args:
        labels: ``(B, H, W)`` integer labels.
        keypoints: ``(B, K, 3)`` keypoints in the maps' pixel coordinates (x, y) plus confidence.

    Returns:
        ``(B, H, W)`` labels, same dtype.
    """
    _validate_batch(labels, "clean_parsing_batch")
    B, H, W = labels.shape
    kp = keypoints.to(device=labels.device, dtype=torch.float64)
    conf = kp[..., 2] > conf_threshold  # (B, K)
    inf = torch.tensor(float("inf"), dtype=kp.dtype, device=kp.device)
    x0 = torch.where(conf, kp[..., 0], inf).amin(1) - margin
    x1 = torch.where(conf, kp[..., 0], -inf).amax(1) + margin
    y0 = torch.where(conf, kp[..., 1], inf).amin(1) - margin
    y1 = torch.where(conf, kp[..., 1], -inf).amax(1) + margin
    cx = torch.arange(W, device=kp.device, dtype=kp.dtype) + 0.5
    cy = torch.arange(H, device=kp.device, dtype=kp.dtype) + 0.5
    keep_x = (cx[None] >= x0[:, None]) & (cx[None] <= x1[:, None])  # (B, W)
    keep_y = (cy[None] >= y0[:, None]) & (cy[None] <= y1[:, None])  # (B, H)
    none = ~conf.any(1, keepdim=True)  # no confident keypoint: keep everything
    return labels * (keep_y | none)[:, :, None] * (keep_x | none)[:, None, :]


def label_counts_batch(labels: torch.Tensor, num_labels: int = NUM_LABELS) -> torch.Tensor:
    """``(B, H, W)`` integer labels -> ``(B, num_labels)`` int64 pixel counts per map."""
    lab = _check_batch(labels, num_labels, "label_counts_batch").reshape(labels.shape[0], -1)
    ones = torch.ones((), dtype=torch.int64, device=lab.device).expand_as(lab)
    return torch.zeros(lab.shape[0], num_labels, dtype=torch.int64, device=lab.device).scatter_add_(
        1, lab, ones
    )


def mc_mask_batch(labels: torch.Tensor, min_pixels: int = MC_MIN_PIXELS) -> tuple[torch.Tensor, torch.Tensor]:
    """The DSR-MC masks ``M`` of CIHP maps: ``(B, H, W)`` labels -> ``mask (B, H, W) bool`` (union of
    the pixels of the present MC labels) and ``present (B, 20) bool`` (the DSR-MC labels covering more
    than ``min_pixels`` pixels)."""
    lab = _check_batch(labels, NUM_LABELS, "mc_mask_batch")
    present = as_torch(MC_MASK, lab.device)[None] & (label_counts_batch(lab) > min_pixels)
    mask = torch.gather(present, 1, lab.flatten(1)).view_as(lab)
    return mask, present


def merge_labels_batch(labels: torch.Tensor) -> torch.Tensor:
    """The DSR-C merged class (0..7, :data:`~dsrbody.semantics.labels.MERGED_NAMES`) of each pixel of
    CIHP maps: ``(B, H, W)`` labels -> ``(B, H, W)`` int64."""
    lab = _check_batch(labels, NUM_LABELS, "merge_labels_batch")
    table = as_torch(CIHP_TO_MERGED, lab.device)[None].expand(lab.shape[0], -1)
    return torch.gather(table, 1, lab.flatten(1)).view_as(lab)  # gather: much faster than indexing on CPU


def class_weights_batch(merged: torch.Tensor, min_pixels: int = MC_MIN_PIXELS) -> torch.Tensor:
    """DSR-C class weights of merged-class maps (docs/design.md, Losses).

    ``w_c = min_{k: n_k >= min_pixels} n_k / n_c`` for classes with ``n_c >= min_pixels`` pixels, else 0
    (background included); all zeros for a map where no class reaches ``min_pixels``.

    Args:
        merged: ``(B, H, W)`` merged classes in [0, 8).

    Returns:
        ``(B, 8)`` float32.
    """
    counts = label_counts_batch(merged, NUM_MERGED).to(torch.float32)
    valid = counts >= min_pixels
    smallest = torch.where(valid, counts, torch.full_like(counts, float("inf"))).amin(1, keepdim=True)
    return torch.where(valid, smallest / counts.clamp_min(1.0), torch.zeros_like(counts))


def distance_map_batch(mask: torch.Tensor) -> torch.Tensor:
    """:func:`distance_map` of each mask: ``(B, H, W)`` bool -> ``(B, H, W)`` float32 on the mask's
    device (computed with scipy on the CPU; meant for data loading, not for a training loop's hot path)."""
    if mask.dim() != 3:
        raise ValueError(f"distance_map_batch: mask must be (B, H, W), got {tuple(mask.shape)}")
    m = mask.detach().to("cpu", torch.bool).numpy()
    out = np.stack([distance_map(mi) for mi in m]) if len(m) else np.zeros(m.shape, np.float32)
    return torch.from_numpy(out).to(mask.device)
