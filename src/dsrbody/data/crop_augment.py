"""Crop and augmentation of one sample, as the official SPIN/DSR code does (docs/design.md, Data formats).

The official code (SPIN's ``crop``/``transform``/``rgb_processing``/``j2d_processing``/
``j3d_processing``/``pose_processing``) crops with a chain of scipy/skimage calls and quantises
keypoints to integer pixels. Here the crop, zoom, in-plane rotation and horizontal flip are one
affine map from original-image coordinates to crop coordinates (:func:`crop_matrix`), applied with a
single ``cv2.warpAffine`` to the image and the parsing map and with a matrix product to the
keypoints, so that all of them stay consistent to sub-pixel precision. The crop equals SPIN's to
within 0.3 grey levels on average (``benchmarks/data_loading.py``) and is 50x faster; like DSR's own
``crop_cv2`` (also ``cv2.warpAffine``, bilinear) it does not low-pass the image when zooming out.
Differences from the official code, all deliberate: no rounding of the box to whole pixels and of
keypoints to integers (SPIN's ``transform`` truncates), and the parsing-map handling below.

Conventions (docs/design.md, Cameras):

- Continuous pixel coordinates: pixel (row r, column c) covers ``[c, c+1) x [r, r+1)``; its centre is
  ``(c + 0.5, r + 0.5)``. Original-image keypoints and ``center`` use the same convention.
- The box is the square of side ``scale * 200`` px centred on ``center``; it maps onto the
  ``res x res`` crop (``res`` = 224).
- ``rot`` is in degrees; a positive angle turns the image content counter-clockwise on screen (as
  SPIN's ``imrotate``); keypoints, 3D joints (camera frame x right, y down) and the global
  orientation are turned with it.
- ``flip`` mirrors the crop horizontally (``u -> res - u``); keypoints and joints are then re-ordered
  by their left/right permutation, the pose is mirrored (joints swapped, axis-angle y and z negated),
  the parsing map's left/right labels are swapped.

All functions are pure (no global random state); :func:`sample_augment_params` draws the random
parameters from a ``numpy.random.Generator``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np
import torch

from dsrbody.body.keypoints import SMPL24, SPIN49, SPIN_GT24, KeypointSet, swap_left_right
from dsrbody.semantics.labels import CIHP_FLIP_PERM, CIHP_PALETTE
from dsrbody.semantics.parsing import decode_colors, encode_colors

__all__ = [
    "IMG_NORM_MEAN",
    "IMG_NORM_STD",
    "CIHP_LABEL_FLIP_PERM",
    "CIHP_PALETTE",
    "PARSING_INTERPOLATIONS",
    "UNKNOWN_LABEL",
    "AugmentParams",
    "sample_augment_params",
    "crop_matrix",
    "transform_points",
    "warp_image",
    "rgb_processing",
    "j2d_processing",
    "j3d_processing",
    "rotate_global_orient",
    "crop_camera",
    "transform_translation",
    "flip_pose",
    "pose_processing",
    "parsing_processing",
    "flip_perm_from_names",
]

#: ImageNet normalisation (docs/design.md, Cameras).
IMG_NORM_MEAN = (0.485, 0.456, 0.406)
IMG_NORM_STD = (0.229, 0.224, 0.225)

#: The flip swap of the CIHP labels (leftArm<->rightArm, leftLeg<->rightLeg, leftShoe<->rightShoe), from
#: :mod:`dsrbody.semantics.labels`, as uint8: ``flipped_label = CIHP_LABEL_FLIP_PERM[label]``.
CIHP_LABEL_FLIP_PERM = np.asarray(CIHP_FLIP_PERM, dtype=np.uint8)

#: ``"nearest"``: nearest-neighbour sampling and left/right label swap on flip (dsrbody default).
#: ``"bilinear_official"``: what the official DSR code does, for reproduction only: the map is turned
#: into its colour image, sampled bilinearly, and decoded by exact colour match, so blended boundary
#: pixels (colours of no label) become background; labels are not swapped on flip.
PARSING_INTERPOLATIONS = ("nearest", "bilinear_official")
#: the label marking, in an index map handed to :func:`parsing_processing`, a pixel whose colour or index
#: was outside the label set (counted, then background).
UNKNOWN_LABEL = 255


@dataclass(frozen=True)
class AugmentParams:
    """The random augmentation of one sample (identity by default).

    Attributes:
        flip: horizontal flip.
        rot: in-plane rotation in degrees (positive: content turns counter-clockwise on screen).
        scale: box scale multiplier (> 1 zooms out).
        pixel_noise: per-channel (R, G, B) multiplicative factors.
    """

    flip: bool = False
    rot: float = 0.0
    scale: float = 1.0
    pixel_noise: tuple[float, float, float] = (1.0, 1.0, 1.0)


#: Appended to ``[seed, epoch, index]`` for a sample's augmentation draw (ASCII "aug"): a stream of its
#: own, apart from the synthetic generator's ``SeedSequence([seed, split, index])``, which is the same
#: stream when a recipe's seed equals the data's generation seed (the colour noise then followed the
#: drawn body weight in the first epoch), and from :class:`~dsrbody.data.MixedDataset`'s choice.
AUG_STREAM = 0x617567
#: The stream of the mirror draw alone (a dataset that does not augment but reads a mirrored feature
#: cache).
MIRROR_STREAM = 1


def augment_rng(seed: int, epoch: int, index: int, stream: int = AUG_STREAM) -> np.random.Generator:
    """The random generator of sample ``index``'s augmentation in ``epoch``: a pure function of its
    arguments, so items do not depend on DataLoader workers or the order of requests."""
    return np.random.default_rng([int(seed), int(epoch), int(index), int(stream)])


def sample_augment_params(
    rng: np.random.Generator,
    *,
    rot_factor: float = 30.0,
    scale_factor: float = 0.25,
    noise_factor: float = 0.4,
    flip_prob: float = 0.5,
    rot_zero_prob: float = 0.6,
) -> AugmentParams:
    """Draw augmentation parameters as SPIN's ``augm_params`` (same distributions, same draw order).

    flip with probability ``flip_prob``; pixel noise ``U[1-noise_factor, 1+noise_factor]`` per channel;
    rotation ``clip(N(0, rot_factor), +-2 rot_factor)`` degrees, set to 0 with probability
    ``rot_zero_prob``; scale ``clip(N(1, scale_factor), 1 +- scale_factor)``.

    Args:
        rng: the random generator (e.g. :func:`augment_rng`).

    Returns:
        the drawn :class:`AugmentParams`.
    """
    flip = bool(rng.uniform() < flip_prob)
    pn = rng.uniform(1.0 - noise_factor, 1.0 + noise_factor, 3)
    rot = float(np.clip(rng.standard_normal() * rot_factor, -2.0 * rot_factor, 2.0 * rot_factor))
    sc = float(np.clip(rng.standard_normal() * scale_factor + 1.0, 1.0 - scale_factor, 1.0 + scale_factor))
    if rng.uniform() < rot_zero_prob:
        rot = 0.0
    return AugmentParams(flip=flip, rot=rot, scale=sc, pixel_noise=(float(pn[0]), float(pn[1]), float(pn[2])))


def _inplane_rotation(rot: float) -> np.ndarray:
    """``(2, 2)`` matrix turning image-frame vectors (x right, y down) by ``rot`` degrees
    counter-clockwise on screen (SPIN's ``rot_mat`` built from ``-rot``)."""
    r = np.deg2rad(rot)
    c, s = np.cos(r), np.sin(r)
    return np.array([[c, s], [-s, c]])


def crop_matrix(
    center: Sequence[float] | np.ndarray, scale: float, res: int = 224, rot: float = 0.0, flip: bool = False
) -> np.ndarray:
    """The affine map from original-image to crop pixel coordinates (continuous, docs/design.md, Cameras).

    ``u = (x - center) * res / (200 scale) + res / 2``, then a rotation by ``rot`` about the crop
    centre, then ``u -> res - u`` if ``flip``.

    Args:
        center: ``(2,)`` box centre (x, y) in original pixels.
        scale: box side / 200 (already multiplied by the augmentation scale).
        res: crop side in pixels.
        rot: degrees, counter-clockwise on screen.
        flip: horizontal mirror of the crop.

    Returns:
        ``(2, 3)`` float64 matrix ``A`` with ``[u, v] = A @ [x, y, 1]``.
    """
    if not np.isfinite(scale) or scale <= 0:
        raise ValueError(f"box scale must be positive, got {scale}")
    k = res / (200.0 * float(scale))
    cx, cy = float(center[0]), float(center[1])
    half = res / 2.0
    lin = k * _inplane_rotation(rot)
    # u = lin @ (x - c) + half
    off = half - lin @ np.array([cx, cy])
    a = np.concatenate([lin, off[:, None]], axis=1)
    if flip:
        a[0] = -a[0]
        a[0, 2] += res
    return a


def transform_points(points: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Apply a ``(2, 3)`` affine matrix to points.

    Args:
        points: ``(..., 2)`` pixel coordinates.
        matrix: ``(2, 3)``.

    Returns:
        ``(..., 2)`` float64 transformed coordinates.
    """
    p = np.asarray(points, dtype=np.float64)
    return p @ matrix[:, :2].T + matrix[:, 2]


def _cv2_matrix(matrix: np.ndarray) -> np.ndarray:
    """Express a continuous-coordinate affine map in OpenCV's convention (pixel centres at integers)."""
    m = matrix.astype(np.float64).copy()
    m[:, 2] = m[:, 2] + m[:, :2] @ np.array([0.5, 0.5]) - 0.5
    return m


def warp_image(
    image: np.ndarray, matrix: np.ndarray, res: int = 224, interpolation: str = "bilinear"
) -> np.ndarray:
    """Resample an image into the crop defined by ``matrix`` (outside the image: 0).

    Args:
        image: ``(H, W)`` or ``(H, W, C)``, uint8 or float32.
        matrix: ``(2, 3)`` map from original to crop continuous pixel coordinates (:func:`crop_matrix`).
        res: crop side.
        interpolation: ``"bilinear"`` or ``"nearest"``.

    Returns:
        ``(res, res)`` or ``(res, res, C)`` array of the input dtype.
    """
    flags = {"bilinear": cv2.INTER_LINEAR, "nearest": cv2.INTER_NEAREST}[interpolation]
    return cv2.warpAffine(
        image,
        _cv2_matrix(matrix),
        (res, res),
        flags=flags,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=0,
    )


def rgb_processing(
    image: np.ndarray,
    center: Sequence[float] | np.ndarray,
    scale: float,
    params: AugmentParams,
    res: int = 224,
    normalize: bool = True,
    bgr: bool = False,
) -> np.ndarray:
    """Crop, rotate, flip an RGB image, apply pixel noise, scale to [0, 1] and normalise (ImageNet).

    Args:
        image: ``(H, W, 3)`` uint8 RGB.
        center: ``(2,)`` box centre px.
        scale: box side / 200 before augmentation (``params.scale`` multiplies it).
        params: the augmentation.
        res: crop side.
        normalize: apply the ImageNet mean/std.
        bgr: the image is BGR (as ``cv2.imread`` gives it); the crop's channels are reversed, which
            saves converting the whole image.

    Returns:
        ``(3, res, res)`` float32, RGB.
    """
    a = crop_matrix(center, scale * params.scale, res, params.rot, params.flip)
    crop = warp_image(image, a, res, "bilinear")
    if crop.ndim == 2:
        crop = np.repeat(crop[:, :, None], 3, axis=2)
    elif bgr:
        crop = crop[:, :, 2::-1]
    # channel-first first, then in-place passes: a few passes over the crop instead of one per step
    x = np.ascontiguousarray(crop.transpose(2, 0, 1), dtype=np.float32)
    noise = np.asarray(params.pixel_noise, dtype=np.float32).reshape(3, 1, 1)
    if np.any(noise != 1.0):
        x *= noise
        np.clip(x, 0.0, 255.0, out=x)
    if normalize:
        std = np.asarray(IMG_NORM_STD, np.float32).reshape(3, 1, 1)
        x *= 1.0 / (255.0 * std)
        x -= np.asarray(IMG_NORM_MEAN, np.float32).reshape(3, 1, 1) / std
    else:
        x *= np.float32(1.0 / 255.0)
    return x


def j2d_processing(
    keypoints: np.ndarray,
    center: Sequence[float] | np.ndarray,
    scale: float,
    params: AugmentParams,
    res: int = 224,
    kp_set: KeypointSet = SPIN49,
) -> np.ndarray:
    """Transform 2D keypoints into normalised crop coordinates.

    Args:
        keypoints: ``(K, 3)`` original pixels (x, y) and confidence.
        center: ``(2,)`` box centre px.
        scale: box side / 200 before augmentation.
        params: the augmentation.
        res: crop side.
        kp_set: the set the K keypoints follow (its left/right permutation is used on flip).

    Returns:
        ``(K, 3)`` float32: x, y in [-1, 1] over the crop (``2u/res - 1``), confidence unchanged.
    """
    kp = np.asarray(keypoints, dtype=np.float64)
    if kp.shape != (len(kp_set), 3):
        raise ValueError(
            f"expected keypoints of shape ({len(kp_set)}, 3) for set {kp_set.name!r}, got {kp.shape}"
        )
    a = crop_matrix(center, scale * params.scale, res, params.rot, params.flip)
    out = kp.copy()
    out[:, :2] = 2.0 * transform_points(kp[:, :2], a) / res - 1.0
    if params.flip:
        out = out[list(_cached_flip_perm(kp_set))]
    return out.astype(np.float32)


def j3d_processing(joints: np.ndarray, params: AugmentParams, kp_set: KeypointSet = SPIN_GT24) -> np.ndarray:
    """Rotate 3D joints in the image plane and mirror them, as the image.

    Args:
        joints: ``(K, 3)`` or ``(K, 4)`` camera-frame metres (x right, y down, z forward), optional
            confidence column kept.
        params: the augmentation (``rot``, ``flip`` used).
        kp_set: the joints' set (its left/right permutation is used on flip).

    Returns:
        ``(K, D)`` float32.
    """
    s = np.asarray(joints, dtype=np.float64).copy()
    if s.shape[0] != len(kp_set):
        raise ValueError(f"expected {len(kp_set)} joints for set {kp_set.name!r}, got {s.shape[0]}")
    s[:, :2] = s[:, :2] @ _inplane_rotation(params.rot).T
    if params.flip:
        s = s[list(_cached_flip_perm(kp_set))]
        s[:, 0] = -s[:, 0]
    return s.astype(np.float32)


def crop_camera(
    focal: float | np.ndarray,
    principal_point: np.ndarray,
    center: Sequence[float] | np.ndarray,
    scale: float,
    params: AugmentParams,
    res: int = 224,
) -> tuple[np.ndarray, np.ndarray]:
    """The pinhole camera of the crop, given the original image's camera.

    With ``A = s R`` (+ offset) the crop map, ``A K X / z = K' (Rz X) / z``: 3D points turned and
    mirrored as :func:`j3d_processing` does project into the crop with focal ``s f`` and principal
    point ``A(pp)``. Square pixels are assumed when ``rot != 0``.

    Args:
        focal: original focal length px, scalar or ``(2,)`` (fx, fy).
        principal_point: ``(2,)`` original principal point px.
        center: ``(2,)`` box centre px.
        scale: box side / 200 before augmentation.
        params: the augmentation.
        res: crop side.

    Returns:
        ``(focal (2,), principal_point (2,))`` of the crop, px, float64.
    """
    a = crop_matrix(center, scale * params.scale, res, params.rot, params.flip)
    k = res / (200.0 * scale * params.scale)
    f = np.broadcast_to(np.asarray(focal, dtype=np.float64), (2,)) * k
    return f.copy(), transform_points(np.asarray(principal_point, dtype=np.float64), a)


def transform_translation(translation: np.ndarray, params: AugmentParams) -> np.ndarray:
    """Turn and mirror a camera-frame translation as :func:`j3d_processing` does with joints.

    Exact when there is no rotation (flips only: a symmetric body's root lies on its mirror plane). The
    turned pose (:func:`rotate_global_orient`) turns the body about its root joint ``r``, not the origin,
    so under a rotation ``Rz`` the body's translation is ``Rz (t + r) - r``; this gives ``Rz t``, off by
    ``Rz r - r`` (centimetres at 30 degrees: ground-truth overlays of rotated training crops are
    shifted by a few pixels; no loss uses it).

    Args:
        translation: ``(3,)`` metres.
        params: the augmentation.

    Returns:
        ``(3,)`` float64.
    """
    t = np.asarray(translation, dtype=np.float64).copy()
    t[:2] = _inplane_rotation(params.rot) @ t[:2]
    if params.flip:
        t[0] = -t[0]
    return t


def rotate_global_orient(global_orient: np.ndarray, rot: float) -> np.ndarray:
    """Turn a body's global orientation by the in-plane image rotation (SPIN's ``rot_aa``).

    Args:
        global_orient: ``(3,)`` axis-angle (radians) in the camera frame.
        rot: degrees, counter-clockwise on screen (rotation about the camera z axis).

    Returns:
        ``(3,)`` float64 axis-angle of ``Rz @ R``.
    """
    if rot == 0:
        return np.asarray(global_orient, dtype=np.float64).copy()
    import roma  # imported here: it pulls in torch._dynamo (seconds), only needed for rotated poses

    rz = np.eye(3)
    rz[:2, :2] = _inplane_rotation(rot)
    r = roma.rotvec_to_rotmat(torch.as_tensor(np.asarray(global_orient, dtype=np.float64)))
    out = roma.rotmat_to_rotvec(torch.as_tensor(rz) @ r)
    return out.numpy()


_SUFFIX_LR = [
    (r"\.L$", ".R"),
    (r"\.R$", ".L"),
    (r"_L$", "_R"),
    (r"_R$", "_L"),
    (r"_l$", "_r"),
    (r"_r$", "_l"),
]


def flip_perm_from_names(names: Sequence[str] | KeypointSet) -> list[int]:
    """Left/right permutation of named joints: ``flipped[i] = x[perm[i]]``.

    Uses :func:`dsrbody.body.keypoints.swap_left_right` (``Left``/``left_``/``L_``/``OP L``), and
    also the ``.L``/``.R``, ``_L``/``_R``, ``_l``/``_r`` suffixes of rig bone names (Anny's bones are
    ``upperarm01.L``...). A name whose mirror is not in the list maps to itself.

    Args:
        names: the joint names in order, or a :class:`KeypointSet`.

    Returns:
        the permutation, a list of ``len(names)`` indices.
    """
    return list(_cached_flip_perm(names if isinstance(names, KeypointSet) else tuple(names)))


@lru_cache(maxsize=64)
def _cached_flip_perm(names: tuple[str, ...] | KeypointSet) -> tuple[int, ...]:
    if isinstance(names, KeypointSet):
        return tuple(names.flip_perm)
    index = {n: i for i, n in enumerate(names)}
    perm = []
    for n in names:
        m = swap_left_right(n)
        if m == n:
            for pat, repl in _SUFFIX_LR:
                m2, k = re.subn(pat, repl, n)
                if k:
                    m = m2
                    break
        perm.append(index.get(m, index[n]))
    return tuple(perm)


def flip_pose(pose: np.ndarray, joints: Sequence[str] | KeypointSet = SMPL24) -> np.ndarray:
    """Mirror a body pose for a horizontal image flip (SPIN's ``flip_pose``).

    The joints' axis-angle vectors are permuted left <-> right and their y and z components negated
    (a rotation ``R`` becomes ``M R M`` with ``M = diag(-1, 1, 1)``). Valid for any body whose joint
    rotations are expressed in axes aligned with a left/right-symmetric canonical frame with x the
    left/right axis: SMPL, and the Anny adapter's 24-joint rig in the SMPL canonical frame.

    Args:
        pose: ``(J*3,)`` or ``(J, 3)`` axis-angle, joints in the order of ``joints``.
        joints: the joint names (or set), e.g. ``SMPL24`` or a body model's ``joint_names``.

    Returns:
        the mirrored pose, same shape, float64.
    """
    p = np.asarray(pose, dtype=np.float64)
    perm = list(_cached_flip_perm(joints if isinstance(joints, KeypointSet) else tuple(joints)))
    flat = p.ndim == 1
    q = p.reshape(-1, 3)
    if q.shape[0] != len(perm):
        raise ValueError(f"pose has {q.shape[0]} joints but {len(perm)} joint names were given")
    q = q[perm].copy()
    q[:, 1:] = -q[:, 1:]
    return q.reshape(-1) if flat else q


def pose_processing(
    pose: np.ndarray, params: AugmentParams, joints: Sequence[str] | KeypointSet = SMPL24
) -> np.ndarray:
    """Rotate the global orientation by ``params.rot`` and mirror the pose if ``params.flip``.

    Args:
        pose: ``(J*3,)`` axis-angle; the first 3 values are the global orientation.
        params: the augmentation.
        joints: the joint names in pose order (for the flip).

    Returns:
        ``(J*3,)`` float32.
    """
    p = np.asarray(pose, dtype=np.float64).copy()
    p[:3] = rotate_global_orient(p[:3], params.rot)
    if params.flip:
        p = flip_pose(p, joints)
    return p.astype(np.float32)


def parsing_processing(
    parsing: np.ndarray,
    center: Sequence[float] | np.ndarray,
    scale: float,
    params: AugmentParams,
    res: int = 224,
    interpolation: str = "nearest",
    flip_labels: np.ndarray = CIHP_LABEL_FLIP_PERM,
    bgr: bool = False,
    with_unknown: bool = False,
) -> np.ndarray | tuple[np.ndarray, int]:
    """Apply the image's geometric transform to a parsing map.

    Colour maps are resampled first and decoded afterwards (nearest sampling keeps colours exact, so
    the labels equal those of decoding first, for a 224x224 instead of a full-image decode).

    Args:
        parsing: ``(H, W)`` uint8 labels (CIHP order; :data:`UNKNOWN_LABEL` marks pixels whose colour or
            index was outside the label set), or ``(H, W, 3)`` uint8 RGB in the CIHP palette, same size
            as the image. Unknown pixels become background.
        center: ``(2,)`` box centre px.
        scale: box side / 200 before augmentation.
        params: the augmentation (``rot``, ``scale``, ``flip``; pixel noise is not applied).
        res: crop side.
        interpolation: one of :data:`PARSING_INTERPOLATIONS` (``"nearest"`` default;
            ``"bilinear_official"`` for reproducing the official code).
        flip_labels: ``(L,)`` label permutation applied on flip (``"nearest"`` only).
        bgr: a colour map is in BGR order (``cv2.imread``).
        with_unknown: also return how many crop pixels are unknown in the file (for
            ``"bilinear_official"`` counted on a nearest sampling of the same crop: its blended edge
            colours are not the file's).

    Returns:
        ``(res, res)`` uint8 labels; outside the image: 0 (background). With ``with_unknown``:
        ``(labels, unknown pixel count)``.
    """
    a = crop_matrix(center, scale * params.scale, res, params.rot, params.flip)
    src = np.ascontiguousarray(parsing, dtype=np.uint8)
    colour = src.ndim == 3
    if colour:
        src = np.ascontiguousarray(src[..., :3])
    if interpolation == "nearest":
        out = warp_image(src, a, res, "nearest")
        if colour:
            out, unknown = decode_colors(out[:, :, ::-1] if bgr else out)
        else:
            unknown = out == UNKNOWN_LABEL
            out[unknown] = 0
        if params.flip:
            out = np.asarray(flip_labels, dtype=np.uint8)[out]
        return (out, int(unknown.sum())) if with_unknown else out
    if interpolation == "bilinear_official":
        unknown = 0
        if with_unknown:  # the file's unknown pixels, on a nearest sampling of the same crop
            near = warp_image(src, a, res, "nearest")
            bad = decode_colors(near[:, :, ::-1] if bgr else near)[1] if colour else near == UNKNOWN_LABEL
            unknown = int(bad.sum())
        if not colour:
            src = np.where(src == UNKNOWN_LABEL, 0, src).astype(np.uint8)
        colors = (src if colour else encode_colors(src)).astype(np.float32)
        warped = np.clip(np.rint(warp_image(colors, a, res, "bilinear")), 0, 255).astype(np.uint8)
        out = decode_colors(warped[:, :, ::-1] if (bgr and colour) else warped)[0]
        return (out, unknown) if with_unknown else out
    raise ValueError(
        f"unknown parsing interpolation {interpolation!r}; expected one of {PARSING_INTERPOLATIONS}"
    )
