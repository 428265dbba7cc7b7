"""Where the people are: the official demo's inputs (docs/design.md, Data formats) and the optional detector.

- OpenPose JSON (``{"people": [{"pose_keypoints_2d": [x, y, c] * 25}, ...]}``): per person, the
  keypoints with confidence > 0.2; the box centre is their mean, its side their largest extent
  (x or y) times 1.2 (SPIN's ``bbox_from_openpose``). A person with no keypoint above the threshold is
  skipped with a message.
- Box JSON: ``[x, y, w, h]`` (upper-left corner, size, pixels); centre = corner + size / 2,
  ``scale = max(w, h) / 200`` (SPIN's ``bbox_from_json``). Accepted layouts: ``{"bbox": [x, y, w, h]}``,
  ``{"bbox": [[...], [...]]}``, ``[[...], [...]]`` or ``[x, y, w, h]`` (one person per box), and for
  folders ``{"<image file name>": <any of these>}``.
- COCO keypoint JSON (``--coco``, e.g. a COCO ``person_keypoints_*.json``): the annotated people of the
  image, their 17 keypoints mapped to BODY_25 (:data:`COCO_TO_OPENPOSE`; neck and mid-hip are the
  midpoints of shoulders and hips), the box from the keypoints as for OpenPose.
- Nothing: the person detector (:mod:`dsrbody.demo.hog`, built in; or the optional MediaPipe one,
  :mod:`dsrbody.demo.detect`); the whole image (centre of the image, ``scale = max(H, W) / 200``)
  only when asked.

A box is in SPIN's terms a ``center (2,)`` and a ``scale`` (side / 200) of a square crop.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = [
    "Person",
    "OPENPOSE_THRESHOLD",
    "OPENPOSE_RESCALE",
    "person_from_keypoints",
    "people_from_openpose",
    "people_from_boxes",
    "read_box_json",
    "whole_image",
    "check_box",
    "openpose_file_for",
    "COCO_TO_OPENPOSE",
    "coco_to_openpose",
    "people_from_coco",
    "MPII_TO_OPENPOSE",
    "mpii_to_openpose",
]

#: OpenPose BODY_25 index -> COCO keypoint index (neck 1 and mid-hip 8 are midpoints).
COCO_TO_OPENPOSE: dict[int, int] = {
    0: 0, 2: 6, 3: 8, 4: 10, 5: 5, 6: 7, 7: 9, 9: 12, 10: 14, 11: 16, 12: 11, 13: 13, 14: 15,
    15: 2, 16: 1, 17: 4, 18: 3,
}  # fmt: skip

#: OpenPose BODY_25 index -> MPII joint index (MPII order: r ankle, r knee, r hip, l hip, l knee, l ankle,
#: pelvis, thorax, upper neck, head top, r wrist, r elbow, r shoulder, l shoulder, l elbow, l wrist).
#: The 12 limb joints; neck 1 and mid-hip 8 are midpoints as for COCO; MPII's pelvis, thorax, upper
#: neck and head top have no BODY_25 counterpart.
MPII_TO_OPENPOSE: dict[int, int] = {
    2: 12, 3: 11, 4: 10, 5: 13, 6: 14, 7: 15, 9: 2, 10: 1, 11: 0, 12: 3, 13: 4, 14: 5,
}  # fmt: skip

#: keypoints above this confidence define the OpenPose box (official demo).
OPENPOSE_THRESHOLD = 0.2
#: the OpenPose box is enlarged by this factor (official demo).
OPENPOSE_RESCALE = 1.2


@dataclass
class Person:
    """One person to reconstruct.

    Attributes:
        center: ``(2,)`` box centre, image pixels (x, y).
        scale: box side / 200.
        source: ``"openpose"``, ``"bbox"``, ``"coco"``, ``"hog"``, ``"blazepose"``, ``"detector"``
            (MediaPipe) or ``"image"``.
        keypoints: optional ``(25, 3)`` OpenPose BODY_25 keypoints (pixels + confidence).
        mask: optional ``(H, W)`` bool person mask (the detector's segmentation).
        score: the detector's confidence (None for other sources).
        track: the person's track id in a video (None for images).
        extent: optional ``(x0, y0, x1, y1)`` tight box of the person from a detector, pixels.
    """

    center: np.ndarray
    scale: float
    source: str
    keypoints: np.ndarray | None = None
    mask: np.ndarray | None = None
    score: float | None = None
    track: int | None = None
    extent: tuple[float, float, float, float] | None = None

    @property
    def box(self) -> tuple[float, float, float, float]:
        """The square crop box ``(x0, y0, x1, y1)`` in pixels."""
        h = 100.0 * self.scale
        return (self.center[0] - h, self.center[1] - h, self.center[0] + h, self.center[1] + h)


def person_from_keypoints(
    keypoints: np.ndarray, threshold: float = OPENPOSE_THRESHOLD, rescale: float = OPENPOSE_RESCALE
) -> Person | None:
    """The official box of one person's OpenPose keypoints ``(25, 3)``; None if none passes ``threshold``."""
    kp = np.asarray(keypoints, dtype=np.float64).reshape(-1, 3)
    valid = kp[kp[:, 2] > threshold, :2]
    if len(valid) == 0:
        return None
    center = valid.mean(axis=0)
    size = float((valid.max(axis=0) - valid.min(axis=0)).max())
    if size <= 0:
        return None
    return Person(center=center, scale=size / 200.0 * rescale, source="openpose", keypoints=kp)


def people_from_openpose(
    path: str | Path, threshold: float = OPENPOSE_THRESHOLD
) -> tuple[list[Person], list[str]]:
    """Every person of an OpenPose JSON file.

    Returns:
        ``(people, messages)``: the people with at least one keypoint above ``threshold``, and one
        message per skipped person.

    Raises:
        FileNotFoundError: no file. ValueError: not an OpenPose JSON.
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{p}: OpenPose JSON not found")
    try:
        data = json.loads(p.read_text())
        entries = data["people"]
    except (json.JSONDecodeError, KeyError, TypeError, UnicodeDecodeError) as e:
        raise ValueError(
            f"{p}: not an OpenPose JSON (expected {{'people': [...]}}; {type(e).__name__})"
        ) from None
    people, messages = [], []
    for i, entry in enumerate(entries):
        try:
            kp = np.asarray(entry["pose_keypoints_2d"], dtype=np.float64)
            kp = kp.reshape(-1, 3)[:25]
        except (KeyError, TypeError, ValueError):
            raise ValueError(
                f"{p}: person {i} has no valid 'pose_keypoints_2d' list of x, y, c triples"
            ) from None
        if kp.shape[0] < 25:
            kp = np.concatenate([kp, np.zeros((25 - kp.shape[0], 3))])
        person = person_from_keypoints(kp, threshold)
        if person is None:
            messages.append(f"{p}: person {i} skipped: no keypoint with confidence above {threshold}")
        else:
            people.append(person)
    if not entries:
        messages.append(f"{p}: no person in the file")
    return people, messages


def _as_boxes(value, where: str) -> list[list[float]]:
    arr = np.asarray(value, dtype=np.float64)
    if arr.ndim == 1 and arr.shape[0] == 4:
        arr = arr[None]
    if arr.ndim != 2 or arr.shape[1] != 4:
        raise ValueError(f"{where}: a box must be [x, y, w, h] (or a list of them), got shape {arr.shape}")
    return arr.tolist()


def read_box_json(path: str | Path, image_name: str | None = None) -> list[list[float]]:
    """The ``[x, y, w, h]`` boxes of a box JSON (layouts in the module docstring).

    Args:
        path: the JSON file.
        image_name: for a ``{"<image name>": boxes}`` file, the image's file name.

    Raises:
        FileNotFoundError, ValueError (malformed file; no entry for ``image_name``).
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{p}: box JSON not found")
    try:
        data = json.loads(p.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{p}: not a JSON file ({e})") from None
    if isinstance(data, dict) and "bbox" in data:
        return _as_boxes(data["bbox"], str(p))
    if isinstance(data, dict):
        if image_name is None:
            raise ValueError(f"{p}: expected {{'bbox': [x, y, w, h]}}")
        for key in (image_name, Path(image_name).stem):
            if key in data:
                v = data[key]
                return _as_boxes(v["bbox"] if isinstance(v, dict) else v, f"{p}[{key}]")
        raise ValueError(f"{p}: no box for image {image_name!r}")
    try:
        return _as_boxes(data, str(p))
    except (ValueError, TypeError):
        raise ValueError(f"{p}: expected [x, y, w, h], a list of such boxes or {{'bbox': ...}}") from None


def people_from_boxes(boxes: list[list[float]]) -> list[Person]:
    """SPIN's centre/scale of ``[x, y, w, h]`` boxes."""
    people = []
    for x, y, w, h in boxes:
        if not (w > 0 and h > 0):
            raise ValueError(f"box [{x}, {y}, {w}, {h}] has no area (w and h must be positive)")
        people.append(
            Person(center=np.array([x + 0.5 * w, y + 0.5 * h]), scale=max(w, h) / 200.0, source="bbox")
        )
    return people


def whole_image(height: int, width: int) -> Person:
    """The whole image as the box (official demo without a box)."""
    return Person(
        center=np.array([width / 2.0, height / 2.0]), scale=max(height, width) / 200.0, source="image"
    )


def check_box(person: Person, height: int, width: int, where: str = "") -> None:
    """Raise ``ValueError`` when the person's crop box does not overlap the image at all."""
    x0, y0, x1, y1 = person.box
    if x1 <= 0 or y1 <= 0 or x0 >= width or y0 >= height or not np.isfinite([x0, y0, x1, y1]).all():
        raise ValueError(
            f"{where}box ({x0:.0f}, {y0:.0f})-({x1:.0f}, {y1:.0f}) lies outside the {width}x{height} image"
        )


def openpose_file_for(folder: str | Path, stem: str) -> Path:
    """The OpenPose JSON of an image: ``folder/<stem>_keypoints.json`` (OpenPose), else ``<stem>.json``.

    Raises:
        FileNotFoundError: neither exists.
    """
    d = Path(folder)
    if d.is_file():
        return d
    for name in (f"{stem}_keypoints.json", f"{stem}.json"):
        if (d / name).is_file():
            return d / name
    raise FileNotFoundError(f"{d}: no OpenPose JSON for {stem} ({stem}_keypoints.json or {stem}.json)")


def coco_to_openpose(keypoints: np.ndarray) -> np.ndarray:
    """COCO keypoints ``(17, 3)`` ``[x, y, v]`` (v: 0 absent, 1 occluded, 2 visible) to BODY_25 ``(25, 3)``
    pixels + confidence (1 where labelled, 0 elsewhere)."""
    kp = np.asarray(keypoints, dtype=np.float64).reshape(17, 3)
    conf = (kp[:, 2] > 0).astype(np.float64)
    out = np.zeros((25, 3))
    for op, c in COCO_TO_OPENPOSE.items():
        out[op] = (kp[c, 0], kp[c, 1], conf[c])
    for op, (a, b) in ((1, (5, 6)), (8, (11, 12))):
        if conf[a] and conf[b]:
            out[op] = (*(0.5 * (kp[a, :2] + kp[b, :2])), 1.0)
    return out


def mpii_to_openpose(joints: np.ndarray, visible: np.ndarray) -> np.ndarray:
    """MPII joints ``(16, 2)`` (pixels) with their labels ``(16,)`` (> 0: labelled) to BODY_25
    ``(25, 3)`` pixels + confidence (1 where labelled, 0 elsewhere), by :data:`MPII_TO_OPENPOSE`; neck
    and mid-hip are the midpoints of the shoulders and of the hips when both are labelled (as
    :func:`coco_to_openpose`)."""
    j = np.asarray(joints, dtype=np.float64).reshape(16, 2)
    conf = (np.asarray(visible, dtype=np.float64).reshape(16) > 0).astype(np.float64)
    out = np.zeros((25, 3))
    for op, m in MPII_TO_OPENPOSE.items():
        out[op] = (j[m, 0], j[m, 1], conf[m])
    for op, (a, b) in ((1, (12, 13)), (8, (2, 3))):
        if conf[a] and conf[b]:
            out[op] = (*(0.5 * (j[a] + j[b])), 1.0)
    return out


def people_from_coco(
    path: str | Path, image_name: str, min_keypoints: int = 6
) -> tuple[list[Person], list[str]]:
    """The annotated people of one image of a COCO keypoint JSON.

    Args:
        path: the JSON (``images`` with ``file_name``, ``annotations`` with ``keypoints`` 17 x 3).
        image_name: the image's file name.
        min_keypoints: people with fewer labelled keypoints are skipped (with a message).

    Returns:
        ``(people, messages)``; the box comes from the keypoints (:func:`person_from_keypoints`).

    Raises:
        FileNotFoundError: no file. ValueError: not a COCO keypoint JSON, or the image is not in it.
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{p}: COCO keypoint JSON not found")
    try:
        data = json.loads(p.read_text())
        ids = [im["id"] for im in data["images"] if im["file_name"] == Path(image_name).name]
        anns = data["annotations"]
    except (json.JSONDecodeError, KeyError, TypeError, UnicodeDecodeError) as e:
        raise ValueError(f"{p}: not a COCO keypoint JSON (images/annotations; {type(e).__name__})") from None
    if not ids:
        raise ValueError(f"{p}: no image named {Path(image_name).name!r}")
    people, messages = [], []
    for i, a in enumerate(x for x in anns if x.get("image_id") == ids[0]):
        try:
            kp = coco_to_openpose(np.asarray(a["keypoints"], dtype=np.float64))
        except (KeyError, TypeError, ValueError):
            raise ValueError(f"{p}: annotation {a.get('id', i)} has no 17 x 3 'keypoints'") from None
        n = int((np.asarray(a["keypoints"]).reshape(17, 3)[:, 2] > 0).sum())
        person = person_from_keypoints(kp, threshold=0.5) if n >= min_keypoints else None
        if person is None:
            messages.append(
                f"{p}: {image_name} person {i} skipped: {n} labelled keypoints (< {min_keypoints})"
            )
            continue
        person.source = "coco"
        people.append(person)
    return people, messages
