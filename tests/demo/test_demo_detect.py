"""The optional MediaPipe detector: landmark mapping by hand; the detector itself where mediapipe installs."""

from __future__ import annotations

import numpy as np
import pytest

from dsrbody.demo.detect import MEDIAPIPE_TO_OPENPOSE, detector_available, landmarks_to_openpose


def test_landmarks_to_openpose_by_hand():
    lm = np.zeros((33, 3))
    lm[:, 0] = np.arange(33) / 100.0  # x = index / 100
    lm[:, 1] = 0.5
    lm[:, 2] = 0.9
    lm[24, 2] = 0.3  # right hip less visible
    op = landmarks_to_openpose(lm, width=200, height=100)
    assert op[0].tolist() == pytest.approx([0.0, 50.0, 0.9])  # nose = landmark 0
    assert op[4].tolist() == pytest.approx([16 / 100 * 200, 50.0, 0.9])  # right wrist = landmark 16
    assert op[1, 0] == pytest.approx((11 + 12) / 2 / 100 * 200)  # neck: mid-shoulders
    assert op[8].tolist() == pytest.approx([(23 + 24) / 2 / 100 * 200, 50.0, 0.3])  # mid-hip, min visibility
    assert op[20, 2] == 0 and op[23, 2] == 0  # small toes: not provided
    assert len(set(MEDIAPIPE_TO_OPENPOSE.values())) == len(MEDIAPIPE_TO_OPENPOSE)


@pytest.mark.skipif(not detector_available(), reason="mediapipe (dsrbody[detect]) is not installed")
def test_mediapipe_detects_the_astronaut():  # pragma: no cover - needs the optional extra
    from skimage import data

    from dsrbody.demo.detect import MediaPipeDetector

    img = data.astronaut()
    det = MediaPipeDetector()
    person = det.detect_one(img)
    det.close()
    assert person is not None and person.source == "detector"
    assert person.mask is not None and person.mask.shape == img.shape[:2] and person.mask.mean() > 0.1
    assert (person.keypoints[:, 2] > 0.5).sum() >= 5
