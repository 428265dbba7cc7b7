"""Person detectors: the registry :func:`make_detector`, and the optional legacy MediaPipe Pose.

:data:`DETECTORS` names every detector ``dsrbody demo --detector`` offers: ``blazepose`` (the default,
built in: every person, keypoints and mask; :mod:`dsrbody.demo.blazepose`), ``hog`` (built in: every
upright person, boxes only; :mod:`dsrbody.demo.hog`) and ``mediapipe`` (below). A detector is a
callable ``(H, W, 3) uint8 RGB image -> list[Person]``; adding one is a module plus an entry here.

The legacy MediaPipe Pose detector (``pip install 'dsrbody[detect]'``):

``mediapipe==0.10.21`` ships its pose and person-segmentation models inside the wheel; its legacy
``solutions.pose`` with ``model_complexity=1`` runs without network (complexities 0 and 2, and later
releases, download models at run time). It pins ``numpy<2``, so it is an optional extra installed in
an environment of its own, and is imported only when a detector is asked for.

One person per image (MediaPipe's legacy pose tracks a single person; the built-in
:class:`~dsrbody.demo.hog.HOGPeopleDetector` finds every upright person, without keypoints): 33
landmarks are mapped to OpenPose BODY_25 (:data:`MEDIAPIPE_TO_OPENPOSE`; neck and mid-hip are
midpoints, the small toes are absent), the box comes from them as from an OpenPose file, and the
segmentation gives the person mask.
"""

from __future__ import annotations

import numpy as np

from dsrbody.demo.inputs import Person, person_from_keypoints

__all__ = [
    "MEDIAPIPE_TO_OPENPOSE",
    "DETECTORS",
    "DEFAULT_DETECTOR",
    "make_detector",
    "DetectorUnavailable",
    "detector_available",
    "MediaPipeDetector",
]

#: OpenPose BODY_25 index -> MediaPipe Pose landmark index (midpoints: neck 1, mid-hip 8).
MEDIAPIPE_TO_OPENPOSE: dict[int, int] = {
    0: 0,  # nose
    2: 12, 3: 14, 4: 16,  # right shoulder, elbow, wrist
    5: 11, 6: 13, 7: 15,  # left shoulder, elbow, wrist
    9: 24, 10: 26, 11: 28,  # right hip, knee, ankle
    12: 23, 13: 25, 14: 27,  # left hip, knee, ankle
    15: 5, 16: 2, 17: 8, 18: 7,  # right eye, left eye, right ear, left ear
    19: 31, 21: 29,  # left big toe (foot index), left heel
    22: 32, 24: 30,  # right big toe, right heel
}  # fmt: skip

INSTALL_HINT = (
    "pip install 'dsrbody[detect]' (mediapipe==0.10.21, which needs numpy<2: use a separate environment)"
)


class DetectorUnavailable(RuntimeError):
    """MediaPipe is not installed (or cannot be imported)."""


def detector_available() -> bool:
    """True when ``mediapipe`` imports."""
    try:
        import mediapipe  # noqa: F401
    except Exception:  # noqa: BLE001 - any import failure (missing, numpy ABI) means unavailable
        return False
    return True


def landmarks_to_openpose(landmarks: np.ndarray, width: int, height: int) -> np.ndarray:
    """MediaPipe landmarks ``(33, 3)`` (x, y in [0, 1], visibility) to BODY_25 ``(25, 3)`` pixels."""
    lm = np.asarray(landmarks, dtype=np.float64)
    out = np.zeros((25, 3))
    for op, mp in MEDIAPIPE_TO_OPENPOSE.items():
        out[op] = (lm[mp, 0] * width, lm[mp, 1] * height, lm[mp, 2])
    for op, (a, b) in ((1, (11, 12)), (8, (23, 24))):
        out[op, :2] = 0.5 * (lm[a, :2] + lm[b, :2]) * (width, height)
        out[op, 2] = min(lm[a, 2], lm[b, 2])
    return out


class MediaPipeDetector:
    """Keypoints, box and person mask of the main person of an image (MediaPipe legacy Pose).

    Raises:
        DetectorUnavailable: mediapipe is not installed.
    """

    def __init__(self, mask_threshold: float = 0.5):
        try:
            import mediapipe as mp
        except Exception as e:  # noqa: BLE001
            raise DetectorUnavailable(f"the person detector needs mediapipe: {INSTALL_HINT} ({e})") from None
        self._pose = mp.solutions.pose.Pose(
            static_image_mode=True, model_complexity=1, enable_segmentation=True, min_detection_confidence=0.5
        )
        self.mask_threshold = float(mask_threshold)

    def __call__(self, image: np.ndarray) -> list[Person]:
        """Detect in an ``(H, W, 3)`` uint8 RGB image: ``[person]``, or ``[]`` when nobody is found."""
        p = self.detect_one(image)
        return [] if p is None else [p]

    def detect_one(self, image: np.ndarray) -> Person | None:
        """The main person of an ``(H, W, 3)`` uint8 RGB image; None when nobody is found."""
        res = self._pose.process(np.ascontiguousarray(image))
        if res.pose_landmarks is None:
            return None
        H, W = image.shape[:2]
        lm = np.array([(p.x, p.y, p.visibility) for p in res.pose_landmarks.landmark])
        kp = landmarks_to_openpose(lm, W, H)
        person = person_from_keypoints(kp)
        if person is None:
            return None
        person.source = "detector"
        if res.segmentation_mask is not None:
            person.mask = np.asarray(res.segmentation_mask) > self.mask_threshold
        return person

    def close(self) -> None:
        """Release MediaPipe's graph."""
        self._pose.close()


def _blazepose():
    from dsrbody.demo.blazepose import BlazePoseDetector

    return BlazePoseDetector()


def _hog():
    from dsrbody.demo.hog import HOGPeopleDetector

    return HOGPeopleDetector()


#: name -> (factory, one-line description).
DETECTORS = {
    "blazepose": (
        _blazepose,
        "built in: every person, 2D keypoints and mask (MediaPipe's BlazePose in PyTorch)",
    ),
    "hog": (_hog, "built in: every upright person, boxes only (HOG + linear SVM)"),
    "mediapipe": (MediaPipeDetector, "optional extra in its own environment: one person, keypoints and mask"),
}
DEFAULT_DETECTOR = "blazepose"


def make_detector(name: str):
    """The detector called ``name`` (``"auto"``: :data:`DEFAULT_DETECTOR`).

    Raises:
        ValueError: unknown name. DetectorUnavailable: its package or model cannot be loaded (one line).
    """
    name = DEFAULT_DETECTOR if name == "auto" else name
    if name not in DETECTORS:
        raise ValueError(f"unknown detector {name!r}; known: {', '.join(DETECTORS)}")
    try:
        return DETECTORS[name][0]()
    except DetectorUnavailable:
        raise
    except (OSError, ValueError) as e:
        raise DetectorUnavailable(f"the {name} detector cannot load its model: {e}") from None
