"""The built-in BlazePose detector: anchors, decoding, suppression and crop geometry against hand
computations, and whole images (a bundled photo, an empty one, the shared real photos when present)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from dsrbody.demo.blazepose import (
    BlazePoseDetector,
    Roi,
    decode_detections,
    letterbox_matrix,
    roi_from_alignment,
    roi_matrix,
    ssd_anchors,
    weighted_nms,
)
from dsrbody.demo.hog import box_iou

ROOT = Path(__file__).resolve().parents[2]
REAL = ROOT.parent / "shared" / "real"


@pytest.fixture(scope="module")
def detector():
    return BlazePoseDetector()


def test_ssd_anchors_layout():
    a = ssd_anchors(224)
    assert a.shape == (28 * 28 * 2 + 14 * 14 * 2 + 7 * 7 * 6, 2) == (2254, 2)
    np.testing.assert_allclose(a[0], [0.5 / 28, 0.5 / 28])
    np.testing.assert_allclose(a[1], a[0])  # two anchors per cell
    np.testing.assert_allclose(a[2], [1.5 / 28, 0.5 / 28])  # then the next column
    np.testing.assert_allclose(a[1568], [0.5 / 14, 0.5 / 14])
    last = a[-294:].reshape(7, 7, 6, 2)  # three layers of stride 32 share one map: 6 per cell
    np.testing.assert_allclose(last[3, 5, :, 0], 5.5 / 7)
    np.testing.assert_allclose(last[3, 5, :, 1], 3.5 / 7)


def test_decode_detections_by_hand():
    anchors = np.array([[0.25, 0.5], [0.75, 0.75]])
    raw = np.zeros((2, 12))
    raw[1, :4] = [22.4, -11.2, 44.8, 22.4]  # offset (0.1, -0.05), size (0.2, 0.1) of the input
    raw[1, 4:6] = [-22.4, 0.0]
    boxes, kps, scores = decode_detections(raw, np.array([0.0, 200.0]), anchors, 224)
    np.testing.assert_allclose(boxes[0], [0.25, 0.5, 0.25, 0.5])
    np.testing.assert_allclose(boxes[1], [0.75, 0.65, 0.95, 0.75])
    np.testing.assert_allclose(kps[1, 0], [0.65, 0.75])
    np.testing.assert_allclose(kps[1, 1:], np.tile(anchors[1], (3, 1)))
    np.testing.assert_allclose(scores, [0.5, 1 / (1 + math.exp(-100))])  # raw scores clipped at 100


def test_weighted_nms_averages_overlapping_detections():
    boxes = np.array([[0, 0, 10, 10], [1, 0, 11, 10], [50, 50, 60, 60]], float)
    kps = np.array([[[0, 0]], [[3, 3]], [[9, 9]]], float)
    scores = np.array([0.9, 0.3, 0.5])
    out = weighted_nms(boxes, kps, scores, iou=0.3)
    assert len(out) == 2
    box, kp, score = out[0]
    assert score == 0.9
    np.testing.assert_allclose(box, (0.9 * boxes[0] + 0.3 * boxes[1]) / 1.2)
    np.testing.assert_allclose(kp, [[0.75, 0.75]])
    np.testing.assert_allclose(out[1][0], boxes[2])


def test_letterbox_centres_the_image():
    m = letterbox_matrix(100, 200, 224)  # landscape: full width, padded above and below
    corners = np.array([[0, 0], [200, 100]]) @ m[:, :2].T + m[:, 2]
    np.testing.assert_allclose(corners, [[0, 56], [224, 168]], atol=1e-9)


def test_roi_rotation_and_crop_geometry():
    upright = roi_from_alignment(np.array([100.0, 200.0]), np.array([100.0, 120.0]))
    assert upright.rotation == pytest.approx(0.0)
    assert upright.side == pytest.approx(2 * 80 * 1.25)
    lying = roi_from_alignment(np.array([100.0, 200.0]), np.array([180.0, 200.0]))  # head to the right
    assert lying.rotation == pytest.approx(math.pi / 2)
    for roi in (upright, lying, Roi(np.array([30.0, 40.0]), 64.0, 0.7)):
        m = roi_matrix(roi, 256)
        centre = m[:, :2] @ [128, 128] + m[:, 2]
        np.testing.assert_allclose(centre, roi.center)
        top = m[:, :2] @ [128, 0] + m[:, 2]  # the crop's top centre: half a side "up" the body
        up = np.array([math.sin(roi.rotation), -math.cos(roi.rotation)])
        np.testing.assert_allclose(top, roi.center + up * roi.side / 2, atol=1e-9)
    m = roi_matrix(lying, 256)
    np.testing.assert_allclose(
        m[:, :2] @ [128, 0] + m[:, 2], [100 + 100, 200]
    )  # up = towards the head (side 200)


def test_finds_the_astronaut(detector):
    import imageio.v3 as iio

    img = iio.imread(ROOT / "examples" / "images" / "astronaut.jpg")[..., :3]
    found = detector.find(img)
    assert len(found) == 1
    d = found[0]
    H, W = img.shape[:2]
    assert 0 <= d.box[0] < d.box[2] <= W and 0 <= d.box[1] < d.box[3] <= H
    nose, l_sh, r_sh = d.landmarks[0], d.landmarks[11], d.landmarks[12]
    assert nose[2] > 0.9 and l_sh[2] > 0.9 and r_sh[2] > 0.9
    assert l_sh[0] > nose[0] > r_sh[0]  # facing the camera: her left shoulder on the image's right
    assert l_sh[1] > nose[1] and r_sh[1] > nose[1]
    assert 0.05 < d.mask.mean() < 0.8 and d.mask[int(nose[1]), int(nose[0])]
    people = detector(img)
    assert len(people) == 1 and people[0].source == "blazepose" and people[0].keypoints.shape == (25, 3)
    np.testing.assert_array_equal(people[0].mask, d.mask)
    assert people[0].extent == tuple(d.box)


def test_nobody_in_an_empty_image(detector):
    assert detector(np.full((240, 320, 3), 128, np.uint8)) == []


@pytest.mark.skipif(not (REAL / "coco" / "test_coco.json").is_file(), reason=f"{REAL} absent")
def test_both_seated_people_of_a_real_photo(detector):
    """COCO 000000040083.jpg: two seated men, both annotated; each is found (IoU >= 0.5)."""
    import imageio.v3 as iio

    coco = json.loads((REAL / "coco" / "test_coco.json").read_text())
    image_id = next(i["id"] for i in coco["images"] if i["file_name"] == "000000040083.jpg")
    boxes = [
        [a["bbox"][0], a["bbox"][1], a["bbox"][0] + a["bbox"][2], a["bbox"][1] + a["bbox"][3]]
        for a in coco["annotations"]
        if a["image_id"] == image_id and a["num_keypoints"] >= 6
    ]
    assert len(boxes) == 2
    found = detector.find(iio.imread(REAL / "coco" / "000000040083.jpg"))
    iou = box_iou(np.array(boxes), np.array([d.box for d in found]))
    assert (iou.max(1) >= 0.5).all()


def test_a_detector_that_cannot_load_is_a_one_line_error(monkeypatch, tmp_path):
    import dsrbody.demo.blazepose as bp
    from dsrbody.demo.detect import DetectorUnavailable, make_detector

    monkeypatch.setattr(bp, "DETECTOR_FILE", "no_such_detector.npz")
    bp._graph.cache_clear()
    try:
        with pytest.raises(
            DetectorUnavailable, match="the blazepose detector cannot load its model: .*no_such"
        ):
            make_detector("auto")
    finally:
        bp._graph.cache_clear()
    with pytest.raises(ValueError, match="unknown detector 'yolo'"):
        make_detector("yolo")
