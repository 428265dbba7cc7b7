"""The built-in HOG people detector: OpenCV 4's descriptor reproduced, every person of a picture of two
rendered people found (one box each), nobody in an empty picture, and the box helpers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from dsrbody.demo.hog import HOGPeopleDetector, box_iou, hog_descriptor_grid, nms, window_descriptor

DATA = Path(__file__).resolve().parent / "data"


def test_descriptor_matches_opencv4():
    """Reference: ``cv2.HOGDescriptor().compute(astronaut()[100:228, 200:264])`` with
    opencv-python-headless 4.10.0.84 (OpenCV 5 has no HOGDescriptor), saved as .npy."""
    from skimage import data

    ref = np.load(DATA / "hog_opencv4_astronaut_100_200.npy")
    win = np.ascontiguousarray(data.astronaut()[100:228, 200:264])
    mine = window_descriptor(win)
    assert mine.shape == (3780,)
    np.testing.assert_allclose(mine, ref, atol=1e-3)


def test_descriptor_of_a_vertical_edge_by_hand():
    img = np.zeros((32, 32), np.uint8)
    img[:, 16:] = 255
    grid = hog_descriptor_grid(img)
    assert grid.shape == (3, 3, 36)
    assert np.abs(hog_descriptor_grid(np.full((32, 32), 77, np.uint8))).max() == 0  # flat: no gradient
    # a horizontal gradient (angle 0) votes half into bin 0 and half into bin 8 (bin centres 10 deg,
    # 170 deg), nothing elsewhere
    hist = grid[1, 1].reshape(4, 9)
    assert np.allclose(hist[:, 1:8], 0) and hist[:, 0].sum() > 0
    np.testing.assert_allclose(hist[:, 0], hist[:, 8], rtol=1e-5)


def test_box_iou_and_nms():
    a = np.array([[0, 0, 10, 10], [5, 0, 15, 10], [100, 100, 110, 110], [1, 1, 9, 9]], float)
    iou = box_iou(a, a)
    assert iou[0, 1] == pytest.approx(50 / 150) and iou[0, 2] == 0 and np.allclose(np.diag(iou), 1)
    # best first: box 3; box 0 holds it (dropped); box 1 overlaps box 3 by IoU 0.24 and only half of
    # box 3 lies in it (kept); the far box stays
    assert nms(a, np.array([0.9, 0.8, 0.5, 0.95]), iou=0.3) == [3, 1, 2]
    # by score 0 first: box 1 overlaps it by IoU 0.33 > 0.3 and box 3 lies inside it: both dropped
    assert nms(a, np.array([0.9, 0.8, 0.5, 0.1]), iou=0.3) == [0, 2]
    # looser: box 1 (IoU 0.33) stays; box 3 (IoU 0.64 with box 0) still goes
    assert nms(a, np.array([0.9, 0.8, 0.5, 0.1]), iou=0.5, inside=1.0) == [0, 1, 2]


def two_people_picture(body) -> tuple[np.ndarray, list[tuple[float, float]]]:
    """Two standing Anny bodies (mean shape and pose, dark grey) 1.8 m apart, 4.5 m from a 500 px
    camera, on a light wall and a darker floor; returns the picture and each person's centre (px)."""
    from dsrbody.render.overlay import overlay

    p = body.mean_params()
    v = body(p["global_orient"][None], p["body_pose"][None], p["shape"][None]).vertices[0].detach().numpy()
    v = v.astype(np.float64) * np.array([1.0, -1.0, -1.0])  # y up, facing +z -> camera frame, facing it
    v[:, 1] -= 0.5 * (v[:, 1].max() + v[:, 1].min())
    H, W, f = 360, 480, 500.0
    img = np.full((H, W, 3), 200, np.uint8)
    img[H // 2 + 60 :] = 150
    colors = np.full((v.shape[0], 3), 0.3)
    centres = []
    for x in (-0.9, 0.9):
        img = overlay(img, v + [x, 0.0, 4.5], body.faces.numpy(), focal=f, alpha=1.0, vertex_colors=colors)
        centres.append((W / 2 + f * x / 4.5, H / 2))
    return img, centres


def test_two_rendered_people_are_both_found(anny_body):
    img, centres = two_people_picture(anny_body)
    people = HOGPeopleDetector()(img)
    assert len(people) == 2  # one box per person after non-maximum suppression
    for p in people:
        assert p.source == "hog" and p.keypoints is None and p.score > 0
    found = sorted(people, key=lambda p: p.center[0])
    for p, (cx, cy) in zip(found, centres):
        x0, y0, x1, y1 = p.box
        assert x0 < cx < x1 and y0 < cy < y1  # each box holds its person
        assert 200 < 200 * p.scale < 330  # the person is ~210 px tall; the box ~1.3 times that


def test_nobody_in_an_empty_picture():
    rng = np.random.default_rng(0)
    img = np.full((240, 320, 3), 128, np.uint8)
    img[120:] = 90
    img = np.clip(img + rng.normal(0, 3, img.shape), 0, 255).astype(np.uint8)
    assert HOGPeopleDetector()(img) == []
