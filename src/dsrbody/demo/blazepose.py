"""Every person of a photo, with 2D keypoints and a mask, offline: MediaPipe's BlazePose run in PyTorch.

MediaPipe Pose (Bazarevsky et al., "BlazePose", 2020; Apache-2.0) is two small networks: a person
detector (224 x 224 input, SSD anchors; per person a face box and four alignment points: hip centre,
a point giving the body's size and rotation, and the same two for the upper body) and a landmark
model that, on a rotated square crop around each detected person (256 x 256), gives 33 landmarks with
visibility, a presence score and a person segmentation. Both models are shipped converted
(``dsrbody/assets/blazepose_*.npz``, by ``tools/convert_mediapipe_pose.py``) and run by
:class:`~dsrbody.demo.tflite_graph.TFLiteGraph` in plain PyTorch: no MediaPipe, no second environment.

The pre- and post-processing follow MediaPipe's graphs (``pose_detection_cpu``,
``pose_detection_to_roi``, ``pose_landmark_by_roi_cpu``): letterboxed input in ``[-1, 1]``, scores
through a sigmoid (raw values clipped at +-100), weighted non-maximum suppression of the face boxes
(IoU 0.3), detections above ``min_score`` (0.5, MediaPipe's default); the crop is centred on the hip
centre, its side 2 x 1.25 times the distance to the size point, rotated so that this point is up;
the landmark model's input is in ``[0, 1]`` with replicated borders, a person is kept when the
presence score is at least 0.5. Unlike MediaPipe's single-person legacy graph, every detection is
followed, and the image is also seen in overlapping windows (small people); detections that are one
person (:meth:`BlazePoseDetector.same_person`: overlapping boxes, a much smaller box inside another, the
same nose or shoulders) are kept once, the most confident.

Coordinates here are continuous pixels: pixel ``(i, j)`` covers ``[j, j+1) x [i, i+1)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

import cv2
import numpy as np
import torch

from dsrbody.demo.detect import landmarks_to_openpose
from dsrbody.demo.hog import box_iou
from dsrbody.demo.inputs import Person, person_from_keypoints
from dsrbody.demo.tflite_graph import TFLiteGraph

__all__ = [
    "ssd_anchors",
    "decode_detections",
    "weighted_nms",
    "letterbox_matrix",
    "Roi",
    "roi_from_alignment",
    "roi_matrix",
    "PoseDetection",
    "BlazePoseDetector",
]

DETECTOR_FILE = "blazepose_detector.npz"
LANDMARK_FILE = "blazepose_landmark_full.npz"


def ssd_anchors(size: int = 224, strides: tuple[int, ...] = (8, 16, 32, 32, 32)) -> np.ndarray:
    """Centres of MediaPipe's fixed-size SSD anchors, ``(N, 2)`` in ``[0, 1]`` (x, y).

    Layers with the same stride share a feature map; each layer puts two anchors on every cell (the
    aspect ratio 1 and the interpolated scale, equal when anchors have a fixed size). Order: feature
    map, row, column, anchor. For the pose detector (224, strides 8, 16, 32 x 3): 2,254 anchors.
    """
    out = []
    i = 0
    while i < len(strides):
        j = i
        while j < len(strides) and strides[j] == strides[i]:
            j += 1
        n = 2 * (j - i)
        fm = math.ceil(size / strides[i])
        ys, xs = np.meshgrid((np.arange(fm) + 0.5) / fm, (np.arange(fm) + 0.5) / fm, indexing="ij")
        centres = np.stack([xs, ys], -1).reshape(-1, 1, 2).repeat(n, axis=1).reshape(-1, 2)
        out.append(centres)
        i = j
    return np.concatenate(out).astype(np.float64)


def decode_detections(
    raw_boxes: np.ndarray, raw_scores: np.ndarray, anchors: np.ndarray, size: int = 224
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Decode the detector's outputs relative to the anchors.

    Args:
        raw_boxes: ``(N, 4 + 2K)``: box centre offset, width, height, then K keypoint offsets, in
            input pixels. raw_scores: ``(N,)`` logits. anchors: ``(N, 2)`` centres in ``[0, 1]``.

    Returns:
        ``boxes (N, 4)`` as ``(x0, y0, x1, y1)``, ``keypoints (N, K, 2)``, both in ``[0, 1]`` of the
        input, and ``scores (N,)`` in ``[0, 1]``.
    """
    raw = np.asarray(raw_boxes, np.float64) / size
    c = raw[:, :2] + anchors
    wh = raw[:, 2:4]
    boxes = np.concatenate([c - wh / 2, c + wh / 2], axis=1)
    keypoints = raw[:, 4:].reshape(len(raw), -1, 2) + anchors[:, None, :]
    scores = 1.0 / (1.0 + np.exp(-np.clip(np.asarray(raw_scores, np.float64).reshape(-1), -100, 100)))
    return boxes, keypoints, scores


def weighted_nms(
    boxes: np.ndarray, keypoints: np.ndarray, scores: np.ndarray, iou: float = 0.3
) -> list[tuple[np.ndarray, np.ndarray, float]]:
    """MediaPipe's weighted non-maximum suppression.

    The best remaining detection and every other remaining one overlapping it by more than ``iou``
    become one detection: their boxes and keypoints averaged with the scores as weights, the best
    score kept. Returns ``[(box (4,), keypoints (K, 2), score)]``, best first.
    """
    order = list(np.argsort(-scores))
    out = []
    while order:
        top = order[0]
        ov = box_iou(boxes[top], boxes[order])[0]
        group = [order[k] for k in range(len(order)) if ov[k] > iou or k == 0]
        w = scores[group] / scores[group].sum()
        out.append(
            (
                (boxes[group] * w[:, None]).sum(0),
                (keypoints[group] * w[:, None, None]).sum(0),
                float(scores[top]),
            )
        )
        merged = set(group)
        order = [k for k in order if k not in merged]
    return out


def letterbox_matrix(height: int, width: int, size: int) -> np.ndarray:
    """``(2, 3)`` affine map from image pixels to a ``size`` square holding the whole image centred
    (aspect ratio kept, the rest padded): continuous coordinates."""
    s = size / max(height, width)
    return np.array([[s, 0.0, (size - s * width) / 2], [0.0, s, (size - s * height) / 2]])


@dataclass
class Roi:
    """A rotated square region of an image: centre ``(x, y)``, side and rotation, pixels / radians.

    ``rotation`` turns the crop's up direction clockwise in the image (MediaPipe's convention).
    """

    center: np.ndarray
    side: float
    rotation: float


def roi_from_alignment(hip: np.ndarray, size_point: np.ndarray, scale: float = 1.25) -> Roi:
    """The landmark model's crop from the detector's full-body alignment points (pixels)."""
    d = np.asarray(size_point, np.float64) - np.asarray(hip, np.float64)
    rotation = math.pi / 2 - math.atan2(-d[1], d[0])
    rotation = (rotation + math.pi) % (2 * math.pi) - math.pi
    return Roi(center=np.asarray(hip, np.float64), side=2.0 * float(np.hypot(*d)) * scale, rotation=rotation)


def roi_matrix(roi: Roi, size: int) -> np.ndarray:
    """``(2, 3)`` affine map from crop pixels (``size`` square) to image pixels, continuous coordinates."""
    c, s = math.cos(roi.rotation), math.sin(roi.rotation)
    a = np.array([[c, -s], [s, c]]) * (roi.side / size)
    return np.concatenate([a, (roi.center - a @ np.array([size / 2, size / 2]))[:, None]], axis=1)


def _starts(length: float, side: float) -> list[float]:
    """Starts of windows of ``side`` covering ``[0, length]`` with at least half overlap."""
    n = max(1, math.ceil((length - side) / (side / 2)) + 1)
    return [float(v) for v in np.linspace(0.0, max(length - side, 0.0), n)]


def _invert(m: np.ndarray) -> np.ndarray:
    a_inv = np.linalg.inv(m[:, :2])
    return np.concatenate([a_inv, (-a_inv @ m[:, 2])[:, None]], axis=1)


def _warp(image: np.ndarray, m: np.ndarray, size: tuple[int, int], border: int, interp=cv2.INTER_LINEAR):
    """``cv2.warpAffine`` with ``m`` mapping source to destination in continuous coordinates."""
    shift = m[:, :2] @ np.array([0.5, 0.5]) + m[:, 2] - 0.5  # to pixel-centre indices
    m_idx = np.concatenate([m[:, :2], shift[:, None]], axis=1)
    return cv2.warpAffine(image, m_idx, size, flags=interp, borderMode=border, borderValue=0)


@dataclass
class PoseDetection:
    """One person found by :class:`BlazePoseDetector`.

    Attributes:
        landmarks: ``(33, 3)`` MediaPipe landmarks: image pixels x, y and visibility in ``[0, 1]``.
        box: ``(4,)`` ``(x0, y0, x1, y1)`` of the person, pixels: the box of the mask (at least 50
            pixels), else of the landmarks (clipped to the image).
        score: detection score x presence score. mask: ``(H, W)`` bool segmentation or None.
        roi: the landmark model's crop.
    """

    landmarks: np.ndarray
    box: np.ndarray
    score: float
    mask: np.ndarray | None
    roi: Roi


def _mid_shoulder(d: PoseDetection) -> np.ndarray:
    return 0.5 * (d.landmarks[11, :2] + d.landmarks[12, :2])


@lru_cache(maxsize=2)
def _graph(name: str) -> TFLiteGraph:
    with resources.as_file(resources.files("dsrbody") / "assets" / name) as p:
        return TFLiteGraph.load(p).eval()


class BlazePoseDetector:
    """Every person of an image: box, BODY_25 keypoints and mask (MediaPipe's BlazePose, in PyTorch).

    Args:
        min_score: detection score threshold (MediaPipe: 0.5).
        min_presence: landmark presence threshold (MediaPipe: 0.5).
        mask_threshold: segmentation probability for the person mask.
        dedup_iou, dedup_inside, dedup_height, dedup_distance: when two detections are one person
            (:meth:`same_person`).
        max_people: at most this many people per image (the most confident).
        window_scales: besides the whole image, the detector also looks at square windows of these
            fractions of the image's shorter side (overlapping by half); ``()`` for the whole image only.

    Raises:
        ValueError / FileNotFoundError: a model file is missing or unreadable (one line naming it).
    """

    def __init__(
        self,
        min_score: float = 0.5,
        min_presence: float = 0.5,
        mask_threshold: float = 0.5,
        dedup_iou: float = 0.5,
        dedup_distance: float = 0.1,
        dedup_inside: float = 0.8,
        dedup_height: float = 0.6,
        max_people: int = 20,
        window_scales: tuple[float, ...] = (1.0, 0.5),
    ):
        self.detector = _graph(DETECTOR_FILE)
        self.landmarker = _graph(LANDMARK_FILE)
        self.anchors = ssd_anchors(self.detector.input_size[0])
        self.min_score = float(min_score)
        self.min_presence = float(min_presence)
        self.mask_threshold = float(mask_threshold)
        self.dedup_iou = float(dedup_iou)
        self.dedup_distance = float(dedup_distance)
        self.dedup_inside = float(dedup_inside)
        self.dedup_height = float(dedup_height)
        self.max_people = int(max_people)
        self.window_scales = tuple(float(f) for f in window_scales)

    def windows(self, height: int, width: int) -> list[np.ndarray]:
        """The detector's views of an image: ``(2, 3)`` maps from image pixels to the detector's input.

        The whole image letterboxed, then, for each of ``window_scales`` (fractions of the image's
        shorter side), square windows overlapping by half that cover the image: people too small for
        the whole-image view are found in a window.
        """
        size = self.detector.input_size[0]
        views = [letterbox_matrix(height, width, size)]
        for frac in self.window_scales:
            side = frac * min(height, width)
            if side >= max(height, width) or side < 16:
                continue
            xs = _starts(width, side)
            ys = _starts(height, side)
            for y0 in ys:
                for x0 in xs:
                    s = size / side
                    views.append(np.array([[s, 0.0, -s * x0], [0.0, s, -s * y0]]))
        return views

    @torch.no_grad()
    def detect(self, image: np.ndarray) -> list[tuple[Roi, float]]:
        """Person detections of an ``(H, W, 3)`` uint8 RGB image: ``[(crop, score)]``, best first."""
        H, W = image.shape[:2]
        size = self.detector.input_size[0]
        views = self.windows(H, W)
        x = np.stack([_warp(image, m, (size, size), cv2.BORDER_CONSTANT) for m in views])
        x = torch.from_numpy(x.astype(np.float32) / 127.5 - 1.0)
        raw_boxes, raw_scores = self.detector(x)
        all_boxes, all_kps, all_scores = [], [], []
        for v, m in enumerate(views):
            boxes, kps, scores = decode_detections(
                raw_boxes[v].numpy(), raw_scores[v].numpy(), self.anchors, size
            )
            ok = scores >= self.min_score
            inv = _invert(m)
            corners = boxes[ok].reshape(-1, 2, 2) * size @ inv[:, :2].T + inv[:, 2]
            all_boxes.append(corners.reshape(-1, 4))
            all_kps.append(kps[ok] * size @ inv[:, :2].T + inv[:, 2])
            all_scores.append(scores[ok])
        boxes, kps, scores = (np.concatenate(a) for a in (all_boxes, all_kps, all_scores))
        return [
            (roi_from_alignment(kp[0], kp[1]), score) for _, kp, score in weighted_nms(boxes, kps, scores)
        ]

    @torch.no_grad()
    def landmarks(self, image: np.ndarray, rois: list[Roi]) -> list[tuple[np.ndarray, float, np.ndarray]]:
        """Landmarks of each crop: ``[(landmarks (33, 3) pixels + visibility, presence, seg logits
        (256, 256))]``, one batch."""
        if not rois:
            return []
        size = self.landmarker.input_size[0]
        crops = [_warp(image, _invert(roi_matrix(r, size)), (size, size), cv2.BORDER_REPLICATE) for r in rois]
        x = torch.from_numpy(np.stack(crops).astype(np.float32) / 255.0)
        lm, flag, seg, _heat, _world = self.landmarker(x)
        lm = lm.reshape(len(rois), -1, 5).numpy().astype(np.float64)
        out = []
        for k, r in enumerate(rois):
            m = roi_matrix(r, size)
            xy = lm[k, :33, :2] @ m[:, :2].T + m[:, 2]
            vis = 1.0 / (1.0 + np.exp(-lm[k, :33, 3]))
            out.append((np.concatenate([xy, vis[:, None]], 1), float(flag[k, 0]), seg[k, :, :, 0].numpy()))
        return out

    def find(self, image: np.ndarray) -> list[PoseDetection]:
        """Every person of an ``(H, W, 3)`` uint8 RGB image, most confident first."""
        image = np.ascontiguousarray(image[..., :3])
        H, W = image.shape[:2]
        dets = self.detect(image)
        found = []
        for (roi, score), (lm, presence, seg) in zip(
            dets, self.landmarks(image, [r for r, _ in dets]), strict=True
        ):
            if presence < self.min_presence:
                continue
            xy = lm[:, :2]
            box = np.array([*xy.min(0), *xy.max(0)])
            box = np.clip(box, 0, [W, H, W, H])
            if box[2] - box[0] < 2 or box[3] - box[1] < 2:
                continue
            mask = None
            if self.mask_threshold is not None:
                size = self.landmarker.input_size[0]
                prob = 1.0 / (1.0 + np.exp(-np.clip(seg.astype(np.float64), -50, 50)))
                mask = _warp(prob.astype(np.float32), roi_matrix(roi, size), (W, H), cv2.BORDER_CONSTANT)
                mask = mask > self.mask_threshold
            if mask is not None and mask.sum() >= 50:  # the segmentation's box includes the head and clothes
                ys, xs = np.nonzero(mask)
                box = np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], np.float64)
            found.append(PoseDetection(landmarks=lm, box=box, score=score * presence, mask=mask, roi=roi))
        found.sort(key=lambda d: -d.score)
        kept: list[PoseDetection] = []
        for d in found:
            if not any(self.same_person(d, k) for k in kept):
                kept.append(d)
        return kept[: self.max_people]

    def same_person(self, a: PoseDetection, b: PoseDetection) -> bool:
        """Two detections of one person: their boxes overlap by more than ``dedup_iou``; or the
        shorter box lies more than ``dedup_inside`` inside the other and is less than
        ``dedup_height`` of its height (a body part taken for a person, e.g. legs seen in a small
        window); or their noses or mid-shoulders lie within ``dedup_distance`` of the larger box's
        height (a second crop of one person)."""
        if box_iou(a.box, b.box)[0, 0] > self.dedup_iou:
            return True
        small, large = (a.box, b.box) if a.box[3] - a.box[1] <= b.box[3] - b.box[1] else (b.box, a.box)
        inter = np.prod(np.clip(np.minimum(small[2:], large[2:]) - np.maximum(small[:2], large[:2]), 0, None))
        area = np.prod(small[2:] - small[:2])
        if inter > self.dedup_inside * area and small[3] - small[1] < self.dedup_height * (
            large[3] - large[1]
        ):  # a much smaller "person" inside someone's box: a body part seen in a small window
            return True
        height = max(a.box[3] - a.box[1], b.box[3] - b.box[1])
        for pa, pb in ((a.landmarks[0, :2], b.landmarks[0, :2]), (_mid_shoulder(a), _mid_shoulder(b))):
            if np.hypot(*(pa - pb)) < self.dedup_distance * height:
                return True
        return False

    def __call__(self, image: np.ndarray) -> list[Person]:
        """Detect in an ``(H, W, 3)`` uint8 RGB image: one :class:`Person` per person found (BODY_25
        keypoints from the landmarks, box from the keypoints as for OpenPose, mask), or ``[]``."""
        H, W = image.shape[:2]
        people = []
        for d in self.find(image):
            lm = d.landmarks.copy()
            lm[:, 0] /= W
            lm[:, 1] /= H
            kp = landmarks_to_openpose(lm, W, H)
            p = person_from_keypoints(kp)
            if p is None:
                continue
            p.source = "blazepose"
            p.score = d.score
            p.mask = d.mask
            p.extent = tuple(float(v) for v in d.box)
            people.append(p)
        return people
