"""Boxes of the official demo inputs, computed by hand."""

from __future__ import annotations

import json

import numpy as np
import pytest

from dsrbody.demo.inputs import (
    check_box,
    mpii_to_openpose,
    openpose_file_for,
    people_from_boxes,
    people_from_openpose,
    person_from_keypoints,
    read_box_json,
    whole_image,
)


def _openpose_json(path, people):
    path.write_text(json.dumps({"version": 1.3, "people": [{"pose_keypoints_2d": p} for p in people]}))
    return path


def test_openpose_box_by_hand():
    kp = np.zeros((25, 3))
    kp[0] = (10, 20, 0.9)
    kp[1] = (30, 60, 0.5)
    kp[2] = (1000, 1000, 0.1)  # below the 0.2 threshold: ignored
    p = person_from_keypoints(kp)
    np.testing.assert_allclose(p.center, [20, 40])
    assert p.scale == pytest.approx(40 / 200 * 1.2)  # largest extent (y: 40 px), x1.2
    assert p.source == "openpose" and p.keypoints.shape == (25, 3)


def test_openpose_file_skips_people_below_threshold(tmp_path):
    good = np.zeros((25, 3))
    good[:2] = [(100, 100, 0.9), (120, 180, 0.9)]
    weak = np.zeros((25, 3))
    weak[:3, :2] = 50
    weak[:3, 2] = 0.1
    f = _openpose_json(tmp_path / "img_keypoints.json", [good.ravel().tolist(), weak.ravel().tolist()])
    people, messages = people_from_openpose(f)
    assert len(people) == 1 and np.allclose(people[0].center, [110, 140])
    assert len(messages) == 1 and "person 1 skipped" in messages[0] and "0.2" in messages[0]
    assert openpose_file_for(tmp_path, "img") == f


def test_openpose_bad_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing.json"):
        people_from_openpose(tmp_path / "nothing.json")
    bad = tmp_path / "bad.json"
    bad.write_text('{"persons": []}')
    with pytest.raises(ValueError, match="bad.json: not an OpenPose JSON"):
        people_from_openpose(bad)
    with pytest.raises(FileNotFoundError, match="no OpenPose JSON for x"):
        openpose_file_for(tmp_path, "x")


def test_box_json_layouts(tmp_path):
    f = tmp_path / "b.json"
    f.write_text(json.dumps({"bbox": [10, 20, 30, 60]}))
    (p,) = people_from_boxes(read_box_json(f))
    np.testing.assert_allclose(p.center, [25, 50])
    assert p.scale == pytest.approx(60 / 200)  # max(w, h) / 200, no rescale (official bbox_from_json)
    f.write_text(json.dumps([[0, 0, 10, 10], [50, 50, 20, 40]]))
    assert len(people_from_boxes(read_box_json(f))) == 2
    f.write_text(json.dumps({"a.jpg": [0, 0, 10, 10], "b": {"bbox": [[1, 2, 3, 4], [5, 6, 7, 8]]}}))
    assert len(read_box_json(f, "a.jpg")) == 1 and len(read_box_json(f, "b.png")) == 2
    with pytest.raises(ValueError, match="no box for image 'c.jpg'"):
        read_box_json(f, "c.jpg")
    f.write_text(json.dumps({"bbox": [1, 2, 3]}))
    with pytest.raises(ValueError, match=r"\[x, y, w, h\]"):
        read_box_json(f)
    with pytest.raises(ValueError, match="no area"):
        people_from_boxes([[0, 0, 0, 10]])


def test_whole_image_and_box_outside():
    p = whole_image(100, 300)
    np.testing.assert_allclose(p.center, [150, 50])
    assert p.scale == pytest.approx(1.5)
    check_box(p, 100, 300)
    (far,) = people_from_boxes([[500, 10, 20, 20]])  # right of a 300-wide image
    with pytest.raises(ValueError, match="lies outside the 300x100 image"):
        check_box(far, 100, 300, "img.jpg: ")


def test_mpii_joints_to_body25_by_hand():
    joints = np.array([[float(10 * i), float(i)] for i in range(16)])  # joint i at (10 i, i)
    vis = np.ones(16)
    vis[13] = 0  # left shoulder not labelled: no neck either
    kp = mpii_to_openpose(joints, vis)
    assert kp.shape == (25, 3)
    np.testing.assert_allclose(kp[2], [120, 12, 1])  # right shoulder = MPII 12
    np.testing.assert_allclose(kp[4], [100, 10, 1])  # right wrist = MPII 10
    np.testing.assert_allclose(kp[7], [150, 15, 1])  # left wrist = MPII 15
    np.testing.assert_allclose(kp[11], [0, 0, 1])  # right ankle = MPII 0
    np.testing.assert_allclose(kp[14], [50, 5, 1])  # left ankle = MPII 5
    np.testing.assert_allclose(kp[8], [25, 2.5, 1])  # mid-hip = mean of MPII 2 and 3
    assert kp[5, 2] == 0 and kp[1, 2] == 0  # unlabelled shoulder, so no neck
    assert kp[0, 2] == 0 and kp[15:, 2].sum() == 0  # no face or feet in MPII
    assert (kp[:, 2] > 0).sum() == 12  # 11 limb joints + mid-hip
