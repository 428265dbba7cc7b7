"""SPIN/DSR annotation files (``.npz``) as a torch ``Dataset`` (docs/design.md, Data formats).

File layout (as the field ships it; ``N`` samples):

==============  ===============  =====================================================================
key             shape            meaning
==============  ===============  =====================================================================
``imgname``     ``(N,)`` str     image path relative to the image folder
``center``      ``(N, 2)``       box centre, original pixels
``scale``       ``(N,)``         box side / 200
``part``        ``(N, 24, 3)``   the 24 "GT" 2D keypoints (SPIN_GT24), px + confidence (zeros if absent)
``openpose``    ``(N, 25, 3)``   optional OpenPose BODY_25 detections (zeros if absent)
``S``           ``(N, 24, 4)``   optional 3D joints (SPIN_GT24), metres + confidence
``pose``        ``(N, 72)``      optional SMPL axis-angle pose (24 joints x 3; other rigs: J x 3)
``shape``       ``(N, 10)``      optional SMPL betas (other models: their shape vector)
``has_smpl``    ``(N,)``         optional; 1 where pose/shape are valid (1 everywhere if absent but
                                 pose and shape present)
``has_params``  ``(N,)``         optional; 1 where pose/shape are valid targets for the file's body model
                                 (e.g. synthetic Anny data: ``has_smpl`` 0, ``has_params`` 1); defaults
                                 to ``has_smpl``
``gender``      ``(N,)`` str     optional ``'m'``/``'f'``
others          ``(N, ...)``     passed through per sample (e.g. synthetic ``body_model``, ``phenotype``)
==============  ===============  =====================================================================

Camera extras: when a file has per-sample ``focal_length`` (px, ``(N,)`` or ``(N, 2)``) and
``principal_point`` (``(N, 2)``), items also carry the crop's camera ``crop_focal_length (2,)`` and
``crop_principal_point (2,)`` (the camera under which the augmented ``pose_3d`` projects onto the
augmented ``keypoints``); a ``cam_t (N, 3)`` also gives ``crop_cam_t`` (turned and mirrored as the
joints). The raw extras are passed through unchanged.

Images live at ``<img_dir>/<imgname>``; parsing maps (human parsing, CIHP labels, colour or index
PNG) at ``<parsing_root>/grph_sequences/<imgname with its suffix replaced by .png>``, ``parsing_root``
defaulting to ``img_dir``.

Bad samples. A missing or unreadable image (undecodable, or a truncated JPEG/PNG that decoders would
fill with grey: :func:`incomplete_image`), an unusable box, or a synthetic sample whose generation
failed (:mod:`dsrbody.data.synth.stream`) makes the sample invalid: it is
returned with ``valid=False`` (zero image, ``skip_reason`` set), and :func:`collate_samples` drops it
from the batch and lists it under ``batch["skipped"]``. We chose this over replacing the sample by
another one because evaluation must not count a sample twice, and because the flag travels through
DataLoader worker processes inside the batch. A missing or unreadable parsing map leaves the sample
valid with ``has_parsing=False`` (no DSR loss for it) and ``parsing_status`` ``"missing"`` or
``"corrupt"``; so does a map mostly in colours outside the palette (``"off_palette"``,
:func:`off_palette`: as background it would pull the body off the person), and the crop pixels of
unknown colour are counted for every map (``parsing_unknown``). NaN/infinite annotations are removed
from a batch before a forward pass by :func:`drop_nonfinite_samples` (training and fitting), with their
reason. Counts: every dataset has a :class:`SkipLog` at ``dataset.skipped``; ``__getitem__``
records into it in its own process, and the consumer calls ``dataset.skipped.update(batch)`` on
each batch (needed with ``num_workers > 0``, harmless without: events are de-duplicated per
sample), then ``dataset.summary()`` at the end of the epoch and ``dataset.skipped.reset()``.

Augmentation is drawn per sample from :func:`~dsrbody.data.crop_augment.augment_rng` (``[seed, epoch,
index, AUG_STREAM]``; call
:meth:`SpinNpzDataset.set_epoch` each epoch), so a run is reproducible regardless of workers. The
epoch lives in a shared-memory tensor (:class:`SharedEpoch`), so ``set_epoch`` in the main process
reaches persistent DataLoader workers too. ``__getitem__`` uses numpy and OpenCV and no
multi-threaded torch operation (those stall under CPU oversubscription).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset, default_collate

from dsrbody.body.factory import spin_body_model
from dsrbody.body.keypoints import SMPL24, SPIN49, SPIN_GT24, KeypointSet
from dsrbody.data.crop_augment import (
    CIHP_LABEL_FLIP_PERM,
    MIRROR_STREAM,
    PARSING_INTERPOLATIONS,
    UNKNOWN_LABEL,
    AugmentParams,
    augment_rng,
    crop_camera,
    j2d_processing,
    j3d_processing,
    parsing_processing,
    pose_processing,
    rgb_processing,
    sample_augment_params,
    transform_translation,
)
from dsrbody.semantics.labels import NUM_LABELS
from dsrbody.semantics.parsing import ParsingWarning, read_parsing

__all__ = [
    "DatasetFileInfo",
    "DATASET_FILES",
    "BASE_KEYS",
    "DROP_REASONS",
    "PARSING_REASONS",
    "OFF_PALETTE_FRACTION",
    "off_palette",
    "NONFINITE_CHECKS",
    "EXPECTED_LAYOUT",
    "SharedEpoch",
    "SkipLog",
    "SpinAnnotations",
    "SpinNpzDataset",
    "build_item",
    "check_annotations",
    "collate_samples",
    "drop_nonfinite_samples",
    "load_annotations",
    "read_image",
    "incomplete_image",
    "read_parsing_map",
    "parsing_path_for",
    "pose_joint_names",
    "find_annotation_file",
]

#: Keys every annotation file must have.
BASE_KEYS = ("imgname", "center", "scale")
_KNOWN_KEYS = {
    "imgname", "center", "scale", "part", "openpose", "S", "pose", "shape", "has_smpl", "has_params",
    "gender",
}  # fmt: skip

EXPECTED_LAYOUT = (
    "expected a SPIN/DSR annotation .npz (keys imgname, center, scale; optional part, openpose, S, pose, "
    "shape, has_smpl, gender) with images at <img_dir>/<imgname> and parsing maps at "
    "<img_dir>/grph_sequences/<imgname as .png>"
)


@dataclass(frozen=True)
class DatasetFileInfo:
    """What a recognised annotation file holds.

    Attributes:
        filename: the file name the field uses.
        name: dataset name given to its samples (``dataset_name``).
        split: ``"train"`` or ``"test"``.
        protocol: evaluation protocol id (``"3dpw"``, ``"h36m-p1"``, ``"h36m-p2"``, ``"mpi-inf-3dhp"``)
            or ``None`` for training files.
        required: keys beyond :data:`BASE_KEYS` that the file must have for its use.
        description: one line.
    """

    filename: str
    name: str
    split: str
    protocol: str | None
    required: tuple[str, ...]
    description: str


_FILES = [
    DatasetFileInfo("h36m_train.npz", "h36m", "train", None, ("part", "S"),
                    "Human3.6M training: 2D GT keypoints, 3D joints S; pose/shape where the file has them"),
    DatasetFileInfo("mpi_inf_3dhp_train.npz", "mpi-inf-3dhp", "train", None, ("part", "S"),
                    "MPI-INF-3DHP training: 2D keypoints, OpenPose, 3D joints; SPIN fits as pose/shape"),
    DatasetFileInfo("coco_2014_train.npz", "coco", "train", None, ("part",),
                    "COCO 2014 training with EFT pseudo ground-truth pose/shape"),
    DatasetFileInfo("3dpw_train.npz", "3dpw", "train", None, ("pose", "shape"),
                    "3DPW training split: SMPL pose/shape, gender"),
    DatasetFileInfo("3dpw_test.npz", "3dpw", "test", "3dpw", ("pose", "shape", "gender"),
                    "3DPW test (SPIN): gender-specific SMPL ground truth"),
    DatasetFileInfo("3dpw_test_with_mmpose.npz", "3dpw", "test", "3dpw", ("pose", "shape", "gender"),
                    "3DPW test (DSR) with MMPose 2D keypoints"),
    DatasetFileInfo("h36m_valid_protocol1.npz", "h36m-p1", "test", "h36m-p1", ("S",),
                    "Human3.6M protocol 1 (all cameras): 3D joints S"),
    DatasetFileInfo("h36m_valid_protocol2.npz", "h36m-p2", "test", "h36m-p2", ("S",),
                    "Human3.6M protocol 2 (frontal camera): 3D joints S"),
    DatasetFileInfo("mpi_inf_3dhp_valid.npz", "mpi-inf-3dhp", "test", "mpi-inf-3dhp", ("S",),
                    "MPI-INF-3DHP test: 3D joints S (17 used)"),
]  # fmt: skip

#: Registry of the annotation file names of docs/design.md, Data formats: file name ->
#: :class:`DatasetFileInfo`.
DATASET_FILES: dict[str, DatasetFileInfo] = {f.filename: f for f in _FILES}


def find_annotation_file(root: str | os.PathLike, filename: str) -> Path:
    """Locate an annotation file under a data root (``root/filename`` or ``root/dataset_extras/filename``).

    Raises:
        FileNotFoundError: naming the places looked at and the expected layout.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: data root does not exist; {EXPECTED_LAYOUT}")
    for cand in (root / filename, root / "dataset_extras" / filename):
        if cand.is_file():
            return cand
    raise FileNotFoundError(f"{filename} not found in {root} or {root / 'dataset_extras'}; {EXPECTED_LAYOUT}")


def load_annotations(
    path: str | os.PathLike, required: Iterable[str] = (), purpose: str = ""
) -> dict[str, np.ndarray]:
    """Read and check a SPIN/DSR annotation ``.npz``.

    Args:
        path: the ``.npz`` file.
        required: keys needed beyond :data:`BASE_KEYS` (and beyond the registry's for known names).
        purpose: what ``required`` is needed for (``"training: the 2D keypoint loss"``), named in the
            error when one is missing.

    Returns:
        every array of the file, materialised, with ``imgname`` as str and per-sample arrays checked
        to share the first dimension N.

    Raises:
        FileNotFoundError: the file does not exist (message names it and the expected layout).
        ValueError: unreadable file, a missing required key, or inconsistent shapes (names key and file).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: annotation file does not exist; {EXPECTED_LAYOUT}")
    info = DATASET_FILES.get(path.name)
    need = list(BASE_KEYS) + list(info.required if info else ()) + [k for k in required if k not in BASE_KEYS]
    try:
        npz = np.load(path, allow_pickle=False)
    except Exception as e:  # noqa: BLE001 - any reader error means the same to the user
        raise ValueError(f"{path}: not a readable .npz file ({e})") from None
    with npz:
        asked = set(required) - set(BASE_KEYS)
        for k in need:
            if k not in npz.files:
                why = f", needed for {purpose}" if purpose and k in asked else ""
                raise ValueError(f"{path}: missing required key {k!r}{why} (file has {sorted(npz.files)})")
        data = {}
        for k in npz.files:
            try:
                data[k] = npz[k]
            except ValueError as e:
                raise ValueError(f"{path}: key {k!r} cannot be read without pickle ({e})") from None
    return check_annotations(data, path)


def check_annotations(data: dict[str, np.ndarray], source: str | os.PathLike) -> dict[str, np.ndarray]:
    """Check and normalise annotation arrays as :func:`load_annotations` does after reading a file.

    ``imgname`` becomes str, a ``(N, 1)`` ``scale`` becomes ``(N,)``, a 3-column ``S`` gets a
    confidence column of ones; per-sample arrays must share the first dimension N.

    Args:
        data: the arrays (changed in place), with at least :data:`BASE_KEYS`.
        source: names the data in error messages (the file).

    Returns:
        ``data``.

    Raises:
        ValueError: inconsistent shapes (names key and source).
    """
    path = source
    data["imgname"] = np.asarray([s.decode() if isinstance(s, bytes) else str(s) for s in data["imgname"]])
    n = len(data["imgname"])
    shapes = {
        "center": (n, 2), "scale": (n,), "part": (n, 24, 3), "openpose": (n, 25, 3), "has_smpl": (n,),
        "gender": (n,),
    }  # fmt: skip
    if data["scale"].ndim == 2 and data["scale"].shape[1] == 1:
        data["scale"] = data["scale"][:, 0]
    for k, shp in shapes.items():
        if k in data and data[k].shape != shp:
            raise ValueError(f"{path}: key {k!r} has shape {data[k].shape}, expected {shp}")
    if "S" in data:
        s = data["S"]
        if s.ndim != 3 or s.shape[0] != n or s.shape[1] != 24 or s.shape[2] not in (3, 4):
            raise ValueError(f"{path}: key 'S' has shape {s.shape}, expected ({n}, 24, 4)")
        if s.shape[2] == 3:
            data["S"] = np.concatenate([s, np.ones((n, 24, 1), s.dtype)], axis=2)
    for k in ("pose", "shape"):
        if k in data and (data[k].ndim != 2 or data[k].shape[0] != n):
            raise ValueError(f"{path}: key {k!r} has shape {data[k].shape}, expected ({n}, D)")
    if "pose" in data and data["pose"].shape[1] % 3:
        raise ValueError(
            f"{path}: key 'pose' has {data['pose'].shape[1]} values per sample, not a multiple of 3"
        )
    return data


def _jpeg_problem(data: bytes) -> str:
    """Why a JPEG's bytes are incomplete (``""`` when they are not): the marker segments are walked to
    the first scan, after which an end-of-image marker must follow (in entropy-coded data ``0xFF`` is
    always followed by ``0x00`` or a restart marker, so ``FF D9`` there is the real end)."""
    i = 2
    while i + 4 <= len(data):
        if data[i] != 0xFF:
            return "corrupt JPEG (a marker segment is broken)"
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in (0x01, 0xD8) or 0xD0 <= marker <= 0xD7:  # segments without a length
            i += 2
            continue
        if marker == 0xD9:
            return "JPEG without image data (end-of-image before any scan)"
        length = int.from_bytes(data[i + 2 : i + 4], "big")
        if marker == 0xDA:  # start of scan
            if data.rfind(b"\xff\xd9", i + 2 + length) == -1:
                return "truncated JPEG (the image data ends without its end-of-image marker)"
            return ""
        i += 2 + length
    return "truncated JPEG (the file ends before the image data)"


def _png_problem(data: bytes) -> str:
    """Why a PNG's bytes are incomplete (``""`` when they are not): the chunks are walked to ``IEND``."""
    i = 8
    while i + 8 <= len(data):
        length = int.from_bytes(data[i : i + 4], "big")
        if data[i + 4 : i + 8] == b"IEND":
            return ""
        i += 12 + length
        if i > len(data):
            break
    return "truncated PNG (the file ends before its IEND chunk)"


def incomplete_image(path: str | os.PathLike) -> str:
    """Why a JPEG or PNG file is incomplete, or ``""``; other formats are not checked.

    Decoders fill a truncated JPEG or PNG with grey (OpenCV, PIL with ``LOAD_TRUNCATED_IMAGES``) and only
    print a warning, so a half file would be used as an image; this structural check (no decoding: the
    marker segments / chunks are walked) catches it.
    """
    with open(path, "rb") as f:
        data = f.read()
    if data[:3] == b"\xff\xd8\xff":
        return _jpeg_problem(data)
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return _png_problem(data)
    return ""


def read_image(path: str | os.PathLike, bgr: bool = False) -> np.ndarray:
    """Read an image.

    Args:
        path: the file.
        bgr: return OpenCV's BGR channel order (no conversion copy) instead of RGB.

    Returns:
        ``(H, W, 3)`` uint8, RGB (or BGR).

    Raises:
        FileNotFoundError: no such file.
        ValueError: the file cannot be decoded, or is a truncated JPEG/PNG (:func:`incomplete_image`;
            decoders would return it partly grey).
    """
    path = str(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: image does not exist")
    problem = incomplete_image(path)  # first: a truncated file is named so, not "cannot be decoded"
    if problem:
        raise ValueError(f"{path}: {problem}")
    img = cv2.imread(path, cv2.IMREAD_COLOR)
    if img is None or img.size == 0:
        raise ValueError(f"{path}: image cannot be decoded")
    return img if bgr else np.ascontiguousarray(img[:, :, ::-1])


def read_parsing_map(path: str | os.PathLike) -> np.ndarray:
    """Read a human-parsing map (CIHP labels): colour PNG in the CIHP palette, index or palette PNG.

    Uses :func:`dsrbody.semantics.parsing.read_parsing` (unknown colours/indices become background,
    silently here: a training loop would otherwise warn once per sample; empty maps are accepted).

    Returns:
        ``(H, W)`` uint8 labels in ``[0, 20)``.

    Raises:
        FileNotFoundError: no such file.
        ValueError: the file cannot be decoded (:class:`~dsrbody.semantics.parsing.ParsingError`).
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ParsingWarning)
        return read_parsing(path, on_empty="ignore")


def _read_parsing_raw(path: str) -> np.ndarray:
    """A parsing map as stored: ``(H, W)`` labels (index/palette PNG) or ``(H, W, 3)`` BGR colours.

    Colour PNGs are not decoded here (:func:`~dsrbody.data.crop_augment.parsing_processing` decodes
    the 224x224 crop instead of the whole map). Palette PNGs are read as label indices, other files
    through :func:`dsrbody.semantics.parsing.read_parsing`, unknown indices/colours marked
    :data:`~dsrbody.data.crop_augment.UNKNOWN_LABEL` (counted in the crop). A truncated colour PNG is
    an error (:func:`incomplete_image`; PIL refuses truncated index maps itself).
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: parsing map does not exist")
    with open(path, "rb") as f:
        head = f.read(26)
    colour_type = head[25] if head[:8] == b"\x89PNG\r\n\x1a\n" and len(head) == 26 else None
    if colour_type in (2, 6):  # RGB, RGBA
        problem = incomplete_image(path)
        if problem:
            raise ValueError(f"{path}: {problem}")
        bgr = cv2.imread(path, cv2.IMREAD_COLOR)
        if bgr is None:
            raise ValueError(f"{path}: parsing map cannot be decoded")
        if (
            bgr.max() < NUM_LABELS
            and (bgr[..., 0] == bgr[..., 1]).all()
            and (bgr[..., 1] == bgr[..., 2]).all()
        ):
            return bgr[..., 0].copy()  # a grey index map saved as RGB (as dsrbody.semantics reads it)
        return bgr
    with warnings.catch_warnings():  # unknown indices are marked, to be counted in the crop
        warnings.simplefilter("ignore", ParsingWarning)
        return read_parsing(path, on_empty="ignore", unknown_value=UNKNOWN_LABEL)


def _fit_parsing_to_image(parsing: np.ndarray, shape: tuple[int, int], path: str) -> np.ndarray:
    """A map of another size but the same aspect ratio (within 2 %) is resized (nearest); else error."""
    if parsing.shape[:2] == shape:
        return parsing
    (h, w), (ph, pw) = shape, parsing.shape[:2]
    if abs((pw / ph) / (w / h) - 1.0) > 0.02:
        raise ValueError(f"{path}: parsing map is {pw}x{ph}, its image {w}x{h}")
    return cv2.resize(parsing, (w, h), interpolation=cv2.INTER_NEAREST)


def parsing_path_for(imgname: str, root: str | os.PathLike, subdir: str = "grph_sequences") -> Path:
    """Where the parsing map of ``imgname`` lives: ``root/subdir/<imgname with suffix .png>``."""
    return Path(root) / subdir / Path(imgname).with_suffix(".png")


_REASON_TEXT = {
    "image_missing": "missing image",
    "image_corrupt": "unreadable image (undecodable or truncated)",
    "bad_box": "unusable box (center/scale)",
    "parsing_missing": "missing parsing map (no DSR loss)",
    "parsing_corrupt": "unreadable parsing map (undecodable or truncated; no DSR loss)",
    "generation_failed": "failed generation (synthetic sample)",
    "keypoints_nonfinite": "non-finite 2D keypoints (NaN/inf)",
    "joints3d_nonfinite": "non-finite 3D joints (NaN/inf)",
    "params_nonfinite": "non-finite pose/shape targets (NaN/inf)",
    "image_nonfinite": "non-finite image values (NaN/inf)",
    "parsing_off_palette": "parsing map mostly in colours outside the palette (no DSR loss)",
    "params_target_nonfinite": "non-finite pose/shape in the file (no pose/shape loss)",
}
#: Reasons that drop the sample; the others only disable a target of it: its parsing map
#: (:data:`PARSING_REASONS`) or its pose/shape (``params_target_nonfinite``).
DROP_REASONS = (
    "image_missing", "image_corrupt", "bad_box", "generation_failed", "keypoints_nonfinite",
    "joints3d_nonfinite", "params_nonfinite", "image_nonfinite",
)  # fmt: skip
#: Reasons of samples kept without their parsing map (no DSR loss).
PARSING_REASONS = ("parsing_missing", "parsing_corrupt", "parsing_off_palette")
#: Batch entries :func:`drop_nonfinite_samples` checks, and the reason a non-finite value gives.
NONFINITE_CHECKS = {
    "img": "image_nonfinite",
    "keypoints": "keypoints_nonfinite",
    "pose_3d": "joints3d_nonfinite",
    "pose": "params_nonfinite",
    "betas": "params_nonfinite",
}


class SkipLog:
    """Counts of skipped samples and missing parsing maps, de-duplicated per (dataset, sample, reason).

    Fed by :meth:`record` (in the process that loads) and :meth:`update` (from collated batches, so
    counts made in DataLoader workers reach the consumer).
    """

    def __init__(self) -> None:
        self._events: dict[tuple[str, str], dict[int, str]] = {}
        self._unknown: dict[tuple[str, int], int] = {}  # (dataset, sample) -> off-palette pixels of its crop

    def note_unknown(self, dataset_name: str, sample_index: int, pixels: int) -> None:
        """Note the crop pixels of a sample's parsing map whose colour (or index) is not in the palette."""
        if pixels > 0:
            self._unknown[(dataset_name, int(sample_index))] = int(pixels)

    @property
    def unknown_pixels(self) -> tuple[int, int]:
        """``(maps, pixels)``: parsing maps with colours outside the palette, and their pixel count."""
        return len(self._unknown), sum(self._unknown.values())

    def record(self, dataset_name: str, sample_index: int, reason: str, path: str = "") -> None:
        """Note one event: ``reason`` one of :data:`DROP_REASONS` (the sample is dropped:
        ``image_missing``, ``image_corrupt``, ``bad_box``, ``generation_failed`` (a streamed synthetic
        sample), the ``*_nonfinite`` ones of :func:`drop_nonfinite_samples`), :data:`PARSING_REASONS` (kept
        without its parsing map) or ``params_target_nonfinite`` (kept without its pose/shape targets)."""
        if reason not in _REASON_TEXT:
            raise ValueError(f"unknown skip reason {reason!r}")
        self._events.setdefault((dataset_name, reason), {})[int(sample_index)] = path

    def update(self, batch: dict[str, Any]) -> None:
        """Record the events carried by a batch made by :func:`collate_samples`."""
        for s in batch.get("skipped", []):
            self.record(s["dataset_name"], s["sample_index"], s["reason"], s.get("path", ""))
        if "sample_index" not in batch:  # no valid sample
            return
        idx = batch["sample_index"]
        idx = idx.tolist() if torch.is_tensor(idx) else list(idx)
        names = batch["dataset_name"]
        statuses = batch.get("parsing_status") or []
        paths = batch.get("parsing_path", [""] * len(statuses))
        for name, i, st, p in zip(names, idx, statuses, paths):
            if st in ("missing", "corrupt", "off_palette"):
                self.record(name, i, f"parsing_{st}", p)
        bad_params = batch.get("params_nonfinite")
        if torch.is_tensor(bad_params):
            for name, i, bad in zip(names, idx, bad_params.tolist()):
                if bad:  # kept, its pose/shape targets cleared (SpinAnnotations)
                    self.record(name, i, "params_target_nonfinite")
        unknown = batch.get("parsing_unknown")
        if unknown is not None:
            unknown = unknown.tolist() if torch.is_tensor(unknown) else list(unknown)
            for name, i, k in zip(names, idx, unknown):
                self.note_unknown(name, i, int(k))

    def merge(self, other: SkipLog) -> None:
        """Add another log's events."""
        for key, ev in other._events.items():
            self._events.setdefault(key, {}).update(ev)
        self._unknown.update(other._unknown)

    def count(self, reason: str | None = None, dataset_name: str | None = None) -> int:
        """Number of distinct samples with the given reason / dataset (``None``: any)."""
        return sum(
            len(ev)
            for (d, r), ev in self._events.items()
            if (reason is None or r == reason) and (dataset_name is None or d == dataset_name)
        )

    def reasons(self) -> dict[str, int]:
        """``{reason: distinct samples}`` over every dataset, in :data:`DROP_REASONS` order first."""
        out: dict[str, int] = {}
        for r in [*DROP_REASONS, *sorted(set(_REASON_TEXT) - set(DROP_REASONS))]:
            k = self.count(r)
            if k:
                out[r] = k
        return out

    @staticmethod
    def reason_text(reason: str) -> str:
        """What a reason means, for summaries (``"image_corrupt"`` -> ``"unreadable image"``)."""
        return _REASON_TEXT.get(reason, reason)

    @property
    def dropped(self) -> int:
        """Samples dropped (missing/unreadable image, unusable box, failed generation)."""
        return sum(self.count(r) for r in DROP_REASONS)

    def paths(self, reason: str | None = None) -> list[str]:
        """The recorded file paths (sorted), e.g. to list missing images in a report."""
        return sorted(
            p for (_, r), ev in self._events.items() if reason is None or r == reason for p in ev.values()
        )

    def reset(self) -> None:
        """Forget everything (call at the start of an epoch)."""
        self._events.clear()
        self._unknown.clear()

    def __len__(self) -> int:
        return self.dropped

    def summary(self) -> str:
        """One line per (dataset, reason) with counts and up to 3 example paths; a single line if clean."""
        maps, pixels = self.unknown_pixels
        colours = (
            f"  {maps} parsing map(s) with {pixels} crop pixel(s) in colours outside the palette (read as "
            "background)"
        )
        if not self._events:
            return "data: no sample skipped, no parsing map missing" + (f"\n{colours}" if maps else "")
        no_parsing = sum(self.count(r) for r in PARSING_REASONS)
        no_params = self.count("params_target_nonfinite")
        lines = [
            f"data: {self.dropped} sample(s) skipped, {no_parsing} without parsing map"
            + (f", {no_params} without pose/shape targets" if no_params else "")
        ]
        for (d, r), ev in sorted(self._events.items()):
            ex = ", ".join(sorted(p for p in ev.values() if p)[:3])
            lines.append(f"  {d}: {len(ev)} x {_REASON_TEXT[r]}" + (f" (e.g. {ex})" if ex else ""))
        if maps:
            lines.append(colours)
        return "\n".join(lines)


#: a parsing map is "off palette" (no DSR loss) when more than this fraction of its crop's non-background
#: pixels have colours (or indices) outside the palette: a map in another palette, or a photo.
OFF_PALETTE_FRACTION = 0.5


def off_palette(unknown: int, known_foreground: int) -> bool:
    """Whether a parsing crop is mostly in unknown colours: ``unknown`` pixels outside the palette against
    ``known_foreground`` pixels of a non-background label (background pixels do not count: a correct map
    of a small person is mostly background)."""
    return unknown > 0 and unknown > OFF_PALETTE_FRACTION * (unknown + known_foreground)


class SharedEpoch:
    """An epoch number in shared memory: written by the main process, read by DataLoader workers
    (also persistent ones, which keep their copy of the dataset across epochs)."""

    def __init__(self, epoch: int = 0) -> None:
        self._value = torch.tensor([int(epoch)], dtype=torch.int64).share_memory_()

    def get(self) -> int:
        """The current epoch."""
        return int(self._value[0])

    def set(self, epoch: int) -> None:
        """Change the epoch (visible to every process holding this object)."""
        self._value[0] = int(epoch)


def pose_joint_names(body_model: str) -> KeypointSet | tuple[str, ...]:
    """The joint names, in pose order, of a body model named in a file's ``body_model`` field.

    Each registered body model says (:attr:`dsrbody.body.factory.BodySpec.pose_joints`): SMPL's
    :data:`~dsrbody.body.keypoints.SMPL24`, the Anny adapter's 24-bone rig, ...

    Raises:
        ValueError: an unknown name.
    """
    from dsrbody.body.factory import BODY_MODELS, body_spec

    spec = body_spec(str(body_model).strip(), missing_ok=True)
    if spec is None:
        raise ValueError(f"unknown body_model {body_model!r} (known: {', '.join(BODY_MODELS)})")
    joints = spec.pose_joints()
    return joints if isinstance(joints, KeypointSet) else tuple(joints)


def _gender_codes(g: np.ndarray) -> np.ndarray:
    out = np.full(len(g), -1, dtype=np.int64)
    for i, v in enumerate(g):
        s = (v.decode() if isinstance(v, bytes) else str(v)).strip().lower()
        if s in ("m", "male", "0"):
            out[i] = 0
        elif s in ("f", "female", "1"):
            out[i] = 1
    return out


class SpinAnnotations:
    """The per-sample annotation tables of a SPIN/DSR file, as the datasets use them.

    Built from the arrays of :func:`load_annotations` (or :func:`check_annotations`); rows are samples.
    :class:`SpinNpzDataset` is one (plus its images); the synthetic stream builds one per generated
    sample, so that both turn annotations into items through the same code (:func:`build_item`).

    Args:
        data: the arrays.
        source: names the data in error messages (the file).
        ignore_3d: treat the data as having no SMPL and no 3D joints (SPIN's ``ignore_3d``).
        pose_joints: names (or set) of the pose's joints (see :class:`SpinNpzDataset`).

    Attributes:
        imgname, center (N, 2), scale (N,), keypoints (N, 49, 3) (OpenPose then GT), keypoint_keys (the
        2D keypoint keys the data has, among ``openpose`` and ``part``), pose (N, P) and
        betas (N, S) or None, has_smpl (N,), has_params (N,), params_nonfinite (N,) (pose/shape given
        as targets but not finite: ``has_smpl``/``has_params`` cleared), pose_dim, shape_dim, pose_3d
        (N, 24, 4) or None, gender (N,) codes (0 m, 1 f, -1 unknown), extras (other per-sample
        arrays), meta (other arrays).
    """

    def __init__(
        self,
        data: dict[str, np.ndarray],
        source: str | os.PathLike,
        *,
        ignore_3d: bool = False,
        pose_joints: KeypointSet | Sequence[str] | None = None,
    ) -> None:
        n = len(data["imgname"])
        self.imgname = data["imgname"]
        self.center = data["center"].astype(np.float64)
        self.scale = data["scale"].astype(np.float64)
        part = data.get("part", np.zeros((n, 24, 3)))
        openpose = data.get("openpose", np.zeros((n, 25, 3)))
        self.keypoints = np.concatenate([openpose, part], axis=1).astype(np.float64)
        self.keypoint_keys = tuple(k for k in ("openpose", "part") if k in data)
        if "pose" in data and "shape" in data and not ignore_3d:
            self.pose = data["pose"].astype(np.float64)
            self.betas = data["shape"].astype(np.float64)
            self.has_smpl = data["has_smpl"].astype(bool) if "has_smpl" in data else np.ones(n, bool)
            self.has_params = (
                data["has_params"].astype(bool) if "has_params" in data else self.has_smpl.copy()
            )
            finite = np.isfinite(self.pose).all(axis=1) & np.isfinite(self.betas).all(axis=1)
            # NaN/infinite parameters are no target (and no evaluation ground truth); remembered
            self.params_nonfinite = (self.has_smpl | self.has_params) & ~finite
            self.has_smpl &= finite
            self.has_params &= finite
        else:
            self.pose = None
            self.betas = None
            self.has_smpl = np.zeros(n, bool)
            self.has_params = np.zeros(n, bool)
            self.params_nonfinite = np.zeros(n, bool)
        self.pose_dim = data["pose"].shape[1] if "pose" in data else 72
        self.shape_dim = data["shape"].shape[1] if "shape" in data else 10
        self.pose_3d = data["S"].astype(np.float64) if ("S" in data and not ignore_3d) else None
        self.gender = _gender_codes(data["gender"]) if "gender" in data else np.full(n, -1, np.int64)
        self.extras = {
            k: v for k, v in data.items() if k not in _KNOWN_KEYS and v.ndim >= 1 and v.shape[0] == n
        }
        self.meta = {k: v for k, v in data.items() if k not in _KNOWN_KEYS and k not in self.extras}
        # joint names of each sample's pose (for the flip): one entry per distinct body model
        if pose_joints is not None:
            self._joint_tables = [pose_joints]
            self._joint_table_of = np.zeros(n, np.int64)
        elif "body_model" in self.extras:
            models, self._joint_table_of = np.unique(
                self.extras["body_model"].astype(str), return_inverse=True
            )
            try:
                self._joint_tables = [pose_joint_names(m) for m in models]
            except ValueError as e:
                raise ValueError(f"{source}: {e}; pass pose_joints=") from None
        else:
            self._joint_tables = [SMPL24]
            self._joint_table_of = np.zeros(n, np.int64)
        if self.pose is not None:
            for names in self._joint_tables:
                if len(names) * 3 != self.pose_dim:
                    raise ValueError(
                        f"{source}: 'pose' has {self.pose_dim // 3} joints but {len(names)} joint "
                        "names are known for its body model (pass pose_joints=)"
                    )

    def __len__(self) -> int:
        return len(self.imgname)

    def joint_names(self, row: int) -> KeypointSet | Sequence[str]:
        """The joint names of row ``row``'s pose (for mirroring it on flip)."""
        return self._joint_tables[self._joint_table_of[row]]


def build_item(
    ann: SpinAnnotations,
    row: int,
    *,
    index: int,
    name: str,
    params: AugmentParams,
    res: int,
    load_image: Callable[[], tuple[np.ndarray, bool]],
    img_path: str,
    load_parsing: Callable[[tuple[int, int]], tuple[np.ndarray, bool]] | None,
    parsing_path: str,
    parsing_interp: str,
    skipped: SkipLog,
    skip_reason: str = "",
) -> dict[str, Any]:
    """One dataset item (see :class:`SpinNpzDataset`) from an annotation row, its image and parsing map.

    Args:
        ann: the annotations; row: the sample's row in them.
        index: the item's ``sample_index`` (also the index recorded in ``skipped``).
        name: ``dataset_name``.
        params: the augmentation.
        res: crop side.
        load_image: returns ``(image (H, W, 3) uint8, is_bgr)``; raises ``FileNotFoundError`` (missing)
            or ``ValueError`` (unreadable). Not called for an unusable box or a given ``skip_reason``.
        img_path: the image's path (``img_path``, and the path recorded in ``skipped``).
        load_parsing: given the image's ``(H, W)``, returns ``(map, is_bgr)``: ``(H, W)`` labels or a
            colour map (see :func:`~dsrbody.data.crop_augment.parsing_processing`); raises
            ``FileNotFoundError`` (missing) or ``ValueError`` (unreadable). ``None``: parsing off.
        parsing_path: the parsing map's path (``parsing_path`` when parsing is on).
        parsing_interp: one of :data:`~dsrbody.data.crop_augment.PARSING_INTERPOLATIONS`.
        skipped: the log events are recorded in.
        skip_reason: a reason, known beforehand, to drop the sample (one of :data:`DROP_REASONS`).

    Returns:
        the item dict.
    """
    center = ann.center[row]
    scale = float(ann.scale[row])
    img = None
    if skip_reason:
        pass
    elif not (np.isfinite(center).all() and np.isfinite(scale) and scale > 0):
        skip_reason = "bad_box"
    else:
        try:
            img, bgr = load_image()
        except FileNotFoundError:
            skip_reason = "image_missing"
        except ValueError:
            skip_reason = "image_corrupt"
    if skip_reason == "bad_box":
        center, scale = np.zeros(2), 1.0
    if skip_reason:
        skipped.record(name, index, skip_reason, img_path)
        img_t = torch.from_numpy(np.zeros((3, res, res), np.float32))
        orig_shape = torch.from_numpy(np.zeros(2, np.int64))
    else:
        img_t = torch.from_numpy(rgb_processing(img, center, scale, params, res, bgr=bgr))
        orig_shape = torch.tensor(img.shape[:2], dtype=torch.int64)

    parsing = torch.from_numpy(np.zeros((res, res), np.uint8))
    parsing_status = "off"
    ppath = ""
    n_unknown = 0
    if load_parsing is not None and not skip_reason:
        ppath = parsing_path
        try:
            lab, lab_bgr = load_parsing(img.shape[:2])
            labels, n_unknown = parsing_processing(
                lab, center, scale, params, res, parsing_interp, CIHP_LABEL_FLIP_PERM, bgr=lab_bgr,
                with_unknown=True,
            )  # fmt: skip
            if off_palette(n_unknown, int(np.count_nonzero(labels))):
                parsing_status = "off_palette"  # DSR-C would pull the body towards background
            else:
                parsing = torch.from_numpy(labels)
                parsing_status = "ok"
        except FileNotFoundError:
            parsing_status = "missing"
        except ValueError:
            parsing_status = "corrupt"
        if parsing_status != "ok":
            skipped.record(name, index, f"parsing_{parsing_status}", ppath)

    has_smpl = bool(ann.has_smpl[row])
    if ann.has_params[row]:
        pose = pose_processing(ann.pose[row], params, ann.joint_names(row))
        betas = ann.betas[row].astype(np.float32)
    else:
        pose = np.zeros(ann.pose_dim, np.float32)
        betas = np.zeros(ann.shape_dim, np.float32)
    if ann.pose_3d is not None:
        pose_3d = j3d_processing(ann.pose_3d[row], params, SPIN_GT24)
    else:
        pose_3d = np.zeros((24, 4), np.float32)
    keypoints = j2d_processing(ann.keypoints[row], center, scale, params, res, SPIN49)

    item: dict[str, Any] = {
        "img": img_t,
        "keypoints": torch.from_numpy(keypoints),
        "pose": torch.from_numpy(pose),
        "betas": torch.from_numpy(betas),
        "pose_3d": torch.from_numpy(pose_3d),
        "has_smpl": torch.tensor(has_smpl),
        "has_params": torch.tensor(bool(ann.has_params[row])),
        "params_nonfinite": torch.tensor(bool(ann.params_nonfinite[row])),
        # per sample: a file may hold rows without 3D joints (all confidences 0, e.g. `synth --labels 2d`)
        "has_pose_3d": torch.tensor(ann.pose_3d is not None and bool((ann.pose_3d[row][:, 3] > 0).any())),
        "parsing": parsing,
        "has_parsing": torch.tensor(parsing_status == "ok"),
        "parsing_status": parsing_status,
        "parsing_path": ppath,
        "parsing_unknown": n_unknown,
        "valid": torch.tensor(not skip_reason),
        "skip_reason": skip_reason,
        "imgname": str(ann.imgname[row]),
        "img_path": img_path,
        "dataset_name": name,
        "sample_index": index,
        "scale": np.float32(scale * params.scale),
        "center": torch.as_tensor(np.asarray(center, np.float32)),
        "orig_shape": orig_shape,
        "is_flipped": torch.tensor(params.flip),
        "rot_angle": np.float32(params.rot),
        "gender": int(ann.gender[row]),
    }
    for k, v in ann.extras.items():
        x = v[row]
        if v.dtype.kind in "USO":
            item[k] = x.decode() if isinstance(x, bytes) else str(x)
        else:
            item[k] = torch.as_tensor(np.asarray(x))
    if "body_model" not in item:  # a file without the field holds SPIN's (SMPL) parameters; said per
        # item, so that a batch mixing it with a synthetic file keeps every sample's body model
        item["body_model"] = spin_body_model()
    if "focal_length" in ann.extras and "principal_point" in ann.extras:
        f, pp = crop_camera(
            ann.extras["focal_length"][row],
            ann.extras["principal_point"][row],
            center,
            scale,
            params,
            res,
        )
        item["crop_focal_length"] = torch.from_numpy(f.astype(np.float32))
        item["crop_principal_point"] = torch.from_numpy(pp.astype(np.float32))
    if "cam_t" in ann.extras:
        t = transform_translation(ann.extras["cam_t"][row], params)
        item["crop_cam_t"] = torch.from_numpy(t.astype(np.float32))
    return item


class SpinNpzDataset(SpinAnnotations, Dataset):
    """Samples of one SPIN/DSR annotation file, cropped and augmented (docs/design.md, Data formats).

    Args:
        npz_path: the annotation ``.npz``.
        img_dir: root of the images (``imgname`` is relative to it).
        name: ``dataset_name`` of its samples (default: the registry's name for known file names,
            else the file stem).
        augment: draw the training augmentation (flip, rotation, scale, pixel noise); ``False`` gives
            the plain crop (evaluation), or, with a mirrored feature cache attached
            (:func:`~dsrbody.data.feature_cache.attach_feature_cache`), the plain or mirrored crop.
        parsing: load parsing maps (``False``: ``has_parsing`` is always false, nothing counted);
            ``None`` (default): on, except for the evaluation files of the registry (split ``"test"``).
        parsing_root: root of the ``grph_sequences`` folder (default ``img_dir``).
        parsing_subdir: the parsing folder's name.
        parsing_interp: one of :data:`~dsrbody.data.crop_augment.PARSING_INTERPOLATIONS`.
        res: crop side (224).
        seed: augmentation seed.
        ignore_3d: treat the file as having no SMPL and no 3D joints (SPIN's ``ignore_3d``).
        required: keys the file must have beyond the base ones and the registry's.
        required_for: what ``required`` is needed for (named in the error when one is missing).
        pose_joints: names (or set) of the pose's joints, for mirroring on flip (a body model's
            ``joint_names``). ``None`` (default): from the file's per-sample ``body_model`` field when
            it has one (:func:`pose_joint_names`: ``"smpl"`` -> ``SMPL24``, ``"anny"`` -> Anny's
            24-bone rig, whose order differs from SMPL's at joints 1, 2, 12-14), else ``SMPL24``.
        rot_factor, scale_factor, noise_factor, flip_prob, rot_zero_prob: augmentation settings
            (official values by default).

    Each item is a dict: ``img (3,res,res)`` float32 normalised; ``keypoints (49,3)`` normalised
    crop coordinates + confidence (OpenPose then GT, zeros where absent); ``pose (P,)`` axis-angle and
    ``betas (S,)`` (zeros unless ``has_params``); ``pose_3d (24,4)`` camera-frame metres + confidence
    (zeros if none); ``has_smpl``, ``has_params``, ``params_nonfinite``, ``has_pose_3d``, ``has_parsing``,
    ``valid``,
    ``is_flipped`` bool tensors;
    ``parsing (res,res)`` uint8 labels; ``parsing_status`` (``ok``/``missing``/``corrupt``/``off_palette``
    (mostly colours outside the palette, :func:`off_palette`)/``off``), ``parsing_unknown`` (crop pixels
    whose colour or index is not in the palette; read as background),
    ``parsing_path``, ``skip_reason`` (``""`` if valid), ``imgname`` (as in the file), ``img_path``,
    ``dataset_name`` strings; ``sample_index`` int; ``scale`` (augmented box scale), ``rot_angle``
    (degrees) float32; ``center (2,)``, ``orig_shape (2,)`` (H, W; zeros if unreadable), ``gender`` (0 m, 1 f,
    -1 unknown); plus every extra per-sample field of the file (numbers as tensors, strings as str).

    The annotation tables are those of :class:`SpinAnnotations`; items are made by :func:`build_item`.
    """

    def __init__(
        self,
        npz_path: str | os.PathLike,
        img_dir: str | os.PathLike,
        *,
        name: str | None = None,
        augment: bool = False,
        parsing: bool | None = None,
        parsing_root: str | os.PathLike | None = None,
        parsing_subdir: str = "grph_sequences",
        parsing_interp: str = "nearest",
        res: int = 224,
        seed: int = 0,
        ignore_3d: bool = False,
        required: Sequence[str] = (),
        required_for: str = "",
        pose_joints: KeypointSet | Sequence[str] | None = None,
        rot_factor: float = 30.0,
        scale_factor: float = 0.25,
        noise_factor: float = 0.4,
        flip_prob: float = 0.5,
        rot_zero_prob: float = 0.6,
    ) -> None:
        if parsing_interp not in PARSING_INTERPOLATIONS:
            raise ValueError(
                f"parsing_interp must be one of {PARSING_INTERPOLATIONS}, got {parsing_interp!r}"
            )
        self.npz_path = Path(npz_path)
        self.img_dir = Path(img_dir)
        if not self.img_dir.is_dir():
            raise FileNotFoundError(f"{self.img_dir}: image folder does not exist; {EXPECTED_LAYOUT}")
        data = load_annotations(self.npz_path, required, required_for)
        self.info = DATASET_FILES.get(self.npz_path.name)
        self.name = name or (self.info.name if self.info else self.npz_path.stem)
        self.augment = augment
        self.parsing = (
            parsing if parsing is not None else not (self.info is not None and self.info.split == "test")
        )
        self.parsing_root = Path(parsing_root) if parsing_root is not None else self.img_dir
        self.parsing_subdir = parsing_subdir
        self.parsing_interp = parsing_interp
        self.res = res
        self.seed = seed
        self._epoch = SharedEpoch()
        self.aug_settings = dict(
            rot_factor=rot_factor,
            scale_factor=scale_factor,
            noise_factor=noise_factor,
            flip_prob=flip_prob,
            rot_zero_prob=rot_zero_prob,
        )
        self.skipped = SkipLog()
        # the cached output of a backbone's frozen part (dsrbody.data.feature_cache.attach_feature_cache)
        self.feature_file: Path | None = None
        self.feature_channels = 0
        self._features: np.ndarray | None = None
        # the same for the mirrored crops (flip augmentation with cached features)
        self.mirrored_feature_file: Path | None = None
        self._mirrored_features: np.ndarray | None = None

        SpinAnnotations.__init__(self, data, self.npz_path, ignore_3d=ignore_3d, pose_joints=pose_joints)

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_features"] = None  # a worker opens its own memory map
        state["_mirrored_features"] = None
        return state

    def cached_features(self, index: int, mirrored: bool = False) -> torch.Tensor:
        """``(C,)`` float32 features of sample ``index`` from the attached cache (of its mirrored crop
        with ``mirrored``)."""
        if mirrored:
            if self._mirrored_features is None:
                from dsrbody.data.feature_cache import load_feature_cache

                self._mirrored_features = load_feature_cache(
                    self.mirrored_feature_file, len(self), self.feature_channels
                )
            return torch.from_numpy(np.asarray(self._mirrored_features[index], dtype=np.float32))
        if self._features is None:
            from dsrbody.data.feature_cache import load_feature_cache

            self._features = load_feature_cache(self.feature_file, len(self), self.feature_channels)
        return torch.from_numpy(np.asarray(self._features[index], dtype=np.float32))

    @property
    def epoch(self) -> int:
        """The epoch whose augmentation draws are used."""
        return self._epoch.get()

    def set_epoch(self, epoch: int) -> None:
        """Select the augmentation draws of an epoch (they depend on seed, epoch and index only)."""
        self._epoch.set(epoch)

    def summary(self) -> str:
        """Text summary of the skipped samples and missing parsing maps counted so far."""
        return f"{self.name}: " + self.skipped.summary()

    def augment_params(self, index: int) -> AugmentParams:
        """The augmentation of sample ``index`` in the current epoch: identity when ``augment`` is off,
        except that with a mirrored feature cache attached the crop is mirrored with probability
        ``flip_prob`` (the one augmentation cached features allow)."""
        if not self.augment:
            if self.mirrored_feature_file is not None:
                # a stream of its own, apart from MixedDataset's choice of dataset
                rng = augment_rng(self.seed, self.epoch, index, MIRROR_STREAM)
                return AugmentParams(flip=bool(rng.uniform() < self.aug_settings["flip_prob"]))
            return AugmentParams()
        return sample_augment_params(augment_rng(self.seed, self.epoch, index), **self.aug_settings)

    def image_path(self, index: int) -> Path:
        """Path of sample ``index``'s image."""
        return self.img_dir / self.imgname[index]

    def parsing_path(self, index: int) -> Path:
        """Path of sample ``index``'s parsing map."""
        return parsing_path_for(self.imgname[index], self.parsing_root, self.parsing_subdir)

    def __getitem__(self, index: int) -> dict[str, Any]:
        index = int(index)
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {self.name} ({len(self)} samples)")
        params = self.augment_params(index)
        item = self.item(index, params)
        if self.feature_file is not None:
            item["features"] = self.cached_features(index, mirrored=params.flip)
        return item

    def item(self, index: int, params: AugmentParams) -> dict[str, Any]:
        """Sample ``index`` (``0 <= index < len(self)``) under the augmentation ``params``, without
        cached features (:meth:`__getitem__` draws ``params`` and adds them)."""
        img_path = str(self.image_path(index))
        ppath = str(self.parsing_path(index))

        def load_parsing(shape: tuple[int, int]) -> tuple[np.ndarray, bool]:
            return _fit_parsing_to_image(_read_parsing_raw(ppath), shape, ppath), True

        return build_item(
            self,
            index,
            index=index,
            name=self.name,
            params=params,
            res=self.res,
            load_image=lambda: (read_image(img_path, bgr=True), True),
            img_path=img_path,
            load_parsing=load_parsing if self.parsing else None,
            parsing_path=ppath,
            parsing_interp=self.parsing_interp,
            skipped=self.skipped,
        )


def drop_nonfinite_samples(
    batch: dict[str, Any], keys: Sequence[str] = tuple(NONFINITE_CHECKS)
) -> tuple[dict[str, Any], dict[str, int]]:
    """Remove the samples of a collated batch whose entries hold NaN or infinite values.

    Run before a forward pass: a NaN target reaches the gradients even when its loss term is masked
    afterwards (``0 * NaN`` is NaN in the backward pass), so such samples leave the batch instead.

    Args:
        batch: a batch of :func:`collate_samples`.
        keys: the entries checked, among :data:`NONFINITE_CHECKS` (``img (B, 3, H, W)``,
            ``keypoints (B, K, 3)``, ``pose_3d (B, 24, 4)`` where ``has_pose_3d``, ``pose (B, P)`` /
            ``betas (B, S)`` where ``has_smpl`` or ``has_params``); absent entries are not checked.

    Returns:
        ``(batch, counts)``: the batch of the remaining samples (every per-sample entry indexed, a new
        dict; ``num_valid`` updated, the removed samples appended to ``skipped`` with their reason, the
        first non-finite entry in ``keys`` order) and ``{reason: removed samples}``. When none remains the
        batch has only ``skipped`` and ``num_valid`` (as :func:`collate_samples` makes it).
    """
    n = int(batch.get("num_valid", 0))
    if n == 0:
        return batch, {}
    reason = [""] * n
    for key in keys:
        value = batch.get(key)
        if not torch.is_tensor(value) or value.dim() == 0 or value.shape[0] != n:
            continue
        bad = ~torch.isfinite(value.detach().reshape(n, -1).float()).all(dim=1)
        applies = None
        if key == "pose_3d":
            applies = batch.get("has_pose_3d")
        elif key in ("pose", "betas"):
            flags = [batch[f] for f in ("has_smpl", "has_params") if torch.is_tensor(batch.get(f))]
            applies = (
                (flags[0].bool() | flags[1].bool()) if len(flags) == 2 else (flags[0] if flags else None)
            )
        if applies is not None:
            bad &= torch.as_tensor(applies).bool().reshape(-1).to(bad.device)
        for i in torch.nonzero(bad).flatten().tolist():
            reason[i] = reason[i] or NONFINITE_CHECKS[key]
    if not any(reason):
        return batch, {}
    keep = [i for i, r in enumerate(reason) if not r]

    def entry(key: str, i: int) -> Any:
        v = batch.get(key)
        if isinstance(v, (list, tuple)) or (torch.is_tensor(v) and v.dim() > 0):
            x = v[i]
            return x.item() if torch.is_tensor(x) and x.dim() == 0 else x
        return ""

    removed = [
        {
            "dataset_name": entry("dataset_name", i),
            "sample_index": int(entry("sample_index", i)),
            "imgname": entry("imgname", i),
            "reason": r,
            "path": entry("img_path", i),
        }
        for i, r in enumerate(reason)
        if r
    ]
    counts: dict[str, int] = {}
    for s in removed:
        counts[s["reason"]] = counts.get(s["reason"], 0) + 1
    skipped = list(batch.get("skipped", [])) + removed
    if not keep:
        return {"skipped": skipped, "num_valid": 0}, counts
    index = torch.tensor(keep, dtype=torch.long)
    out: dict[str, Any] = {}
    for k, v in batch.items():
        if k in ("skipped", "num_valid"):
            continue
        if torch.is_tensor(v) and v.dim() > 0 and v.shape[0] == n:
            out[k] = v[index.to(v.device)]
        elif isinstance(v, (list, tuple)) and len(v) == n:
            out[k] = [v[i] for i in keep]
        else:
            out[k] = v
    out["skipped"] = skipped
    out["num_valid"] = len(keep)
    return out, counts


def collate_samples(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """Collate dataset items, dropping invalid ones (``valid=False``) and listing them.

    Args:
        samples: items of :class:`SpinNpzDataset` (or datasets built on it).

    Returns:
        the default-collated batch of the valid samples, plus ``skipped``: a list of dicts
        (``dataset_name``, ``sample_index``, ``imgname``, ``reason``, ``path``) for the dropped ones,
        and ``num_valid``. When every sample is invalid the batch has only those two keys. Keys that
        only some samples have (extra fields of one dataset in a mixed batch) are left out.
    """
    valid = [s for s in samples if bool(s["valid"])]
    if valid:
        common = set(valid[0]).intersection(*valid[1:])
        valid = [{k: v for k, v in s.items() if k in common} for s in valid]
    skipped = [
        {
            "dataset_name": s["dataset_name"],
            "sample_index": int(s["sample_index"]),
            "imgname": s["imgname"],
            "reason": s["skip_reason"],
            "path": s["img_path"],
        }
        for s in samples
        if not bool(s["valid"])
    ]
    batch: dict[str, Any] = default_collate(valid) if valid else {}
    batch["skipped"] = skipped
    batch["num_valid"] = len(valid)
    return batch
