"""Refinement on the person's keypoints: it lowers the keypoint error of a body regressed from a crop,
keeps the body's camera, leaves people without keypoints alone, and uses the person's mask."""

from __future__ import annotations

import imageio.v3 as iio
import numpy as np
import pytest
import torch

from dsrbody.demo.inputs import Person
from dsrbody.demo.refine import (
    LIMB_KEYPOINTS,
    RefineOptions,
    crop_keypoints,
    keypoint_error_px,
    keypoint_pck,
    refine_people,
)
from dsrbody.demo.run import PersonResult, predict_people, result_from_prediction


@pytest.fixture(scope="module")
def regressor(tiny_ckpt):
    from dsrbody.models.loader import load_model

    return load_model(tiny_ckpt).regressor


def target_keypoints(regressor, result) -> np.ndarray:
    """BODY_25 keypoints (pixels, confidence 1 where the body model has the keypoint) of the regressed
    body with its arms and knees bent: what the refinement should find back."""
    rot = torch.from_numpy(result.rotmat).float()[None].clone()
    from dsrbody.body.anny import ANNY_SMPL_EQUIVALENTS
    from dsrbody.geometry.rotations import axis_angle_to_matrix

    smpl_name = {a: s for a, s in ANNY_SMPL_EQUIVALENTS.items()}
    names = [smpl_name.get(n, n) for n in regressor.body_model.joint_names]

    for name, aa in (
        ("left_shoulder", (0, 0, 0.9)),
        ("right_elbow", (0, -1.0, 0)),
        ("left_knee", (0.8, 0, 0)),
    ):
        k = names.index(name)
        rot[0, k] = axis_angle_to_matrix(torch.tensor([aa], dtype=torch.float32))[0] @ rot[0, k]
    shape = torch.from_numpy(result.shape).float()[None]
    with torch.no_grad():
        pred = regressor.pose_body(rot, shape, torch.from_numpy(result.cam).float()[None])
    moved = result_from_prediction(regressor, result.person, pred, 0)
    kp = np.zeros((25, 3))
    kp[:, :2] = moved.keypoints_2d()[:25]
    kp[:, 2] = (moved.keypoint_confidence[:25] > 0).astype(float)
    return kp


@pytest.fixture(scope="module")
def regressed(regressor, synth_dir):
    img = iio.imread(synth_dir / "images" / "test_000000.jpg")
    person = Person(center=np.array([112.0, 112.0]), scale=1.12, source="bbox")
    return img, predict_people(regressor, img, [person])[0]


def test_crop_keypoints_normalise_to_the_crop():
    kp = np.array([[112.0, 112.0, 0.9], [0.0, 224.0, 0.5], [50.0, 50.0, 0.1]] + [[0, 0, 0]] * 22)
    out = crop_keypoints(kp, np.array([112.0, 112.0]), 1.12, threshold=0.2)
    np.testing.assert_allclose(out[:2, :2], [[0, 0], [-1, 1]], atol=1e-6)
    assert out[0, 2] == pytest.approx(0.9) and out[2, 2] == 0  # below the threshold: ignored


def test_pck_of_limb_joints_by_hand():
    """Projected joints at known distances from the keypoints: counted by hand."""
    joints = np.zeros((49, 3))
    joints[:, 2] = 1.0  # depth 1, focal 1, principal point 0: the image position is (x, y)
    kp = np.zeros((25, 3))
    for j in LIMB_KEYPOINTS:
        kp[j] = (100.0, 100.0, 1.0)
        joints[j, :2] = (100.0, 100.0)
    joints[2, :2] = (100.0, 115.0)  # 15 px off: within 0.2 x 100, not within 0.1 x 100
    joints[3, :2] = (130.0, 100.0)  # 30 px off: a miss at both
    joints[4, :2] = (106.0, 108.0)  # 10 px off: within both (<=)
    joints[0, :2] = (500.0, 500.0)  # the nose is not a limb joint: not scored
    kp[0] = (0.0, 0.0, 1.0)
    kp[14, 2] = 0.0  # left ankle not labelled: not scored
    r = PersonResult(
        person=Person(np.zeros(2), 1.0, "bbox"),
        rotmat=np.eye(3)[None],
        shape=np.zeros(1),
        cam=np.zeros(3),
        translation=np.zeros(3),
        vertices_cam=np.zeros((1, 3)),
        joints_cam=joints,
        focal_length=1.0,
        principal_point=np.zeros(2),
    )
    hits, n = keypoint_pck(r, kp, size=100.0)
    assert n == 11 and hits.tolist() == [9, 10]  # 11 scored; 0.1: 11 - 2 misses; 0.2: 11 - 1 miss
    r.keypoint_confidence = np.ones(49)
    r.keypoint_confidence[5] = 0  # the body model lacks the left shoulder: scored, never correct
    hits, n = keypoint_pck(r, kp, size=100.0, fractions=(0.2,))
    assert n == 11 and hits.tolist() == [9]
    hits, n = keypoint_pck(r, kp, size=100.0, joints=(14,))
    assert n == 0 and hits.tolist() == [0, 0]


def test_refinement_lowers_the_keypoint_error(regressor, regressed):
    _, result = regressed
    result.person.keypoints = target_keypoints(regressor, result)
    before, n = keypoint_error_px(result)
    assert n >= 15 and before > 3.0
    (refined,), (report,) = refine_people(regressor, [result], RefineOptions(iters=40, init_weight=0.0))
    after, _ = keypoint_error_px(refined)
    assert refined.refined and report.keypoints == n
    assert report.error_before_px == pytest.approx(before) and report.error_after_px == pytest.approx(after)
    assert after < 0.5 * before, (before, after)
    assert refined.focal_length == result.focal_length  # same box, same camera
    np.testing.assert_allclose(refined.principal_point, result.principal_point)
    assert report.seconds > 0


def test_people_without_keypoints_are_left_alone(regressor, regressed):
    img, result = regressed
    bare = predict_people(regressor, img, [Person(np.array([112.0, 112.0]), 1.12, "bbox")])[0]
    few = predict_people(regressor, img, [Person(np.array([112.0, 112.0]), 1.12, "bbox")])[0]
    few.person.keypoints = np.zeros((25, 3))
    few.person.keypoints[:2] = (50, 50, 1.0)  # 2 keypoints < min_keypoints
    out, reports = refine_people(regressor, [bare, few])
    assert reports == [None, None] and out[0] is bare and out[1] is few


def test_refinement_with_a_mask_keeps_the_body_inside(regressor, regressed):
    _, result = regressed
    kp = target_keypoints(regressor, result)
    result.person.keypoints = kp
    seen = kp[kp[:, 2] > 0, :2]
    x0, y0 = np.floor(seen.min(0) - 25).astype(int)
    x1, y1 = np.ceil(seen.max(0) + 25).astype(int)
    mask = np.zeros((224, 224), bool)
    mask[max(y0, 0) : y1, max(x0, 0) : x1] = True  # the target body's region, with a margin
    result.person.mask = mask
    before, _ = keypoint_error_px(result)
    (refined,), (report,) = refine_people(regressor, [result], RefineOptions(iters=15, init_weight=0.0))
    result.person.mask = None
    assert refined.refined and report.error_after_px < before


def test_mask_term_counts_the_crop_beyond_the_image_as_person():
    """A person cut by the image border: the crop's pixels outside the image are "person" for the
    inside form (the body may continue there), background for the IoU form."""
    from dsrbody.demo.refine import _mask_targets

    mask = np.zeros((100, 100), bool)
    mask[40:, 30:70] = True  # the person runs off the bottom edge
    p = Person(np.array([50.0, 80.0]), 0.8, "bbox", mask=mask)  # crop x -30..130, y 0..160 (64 px)
    inside = _mask_targets([p], 64, outside_image_allowed=True).merged[0].numpy() > 0
    plain = _mask_targets([p], 64).merged[0].numpy() > 0
    assert inside[-1].all() and not plain[-1].any()  # the crop's last row is beyond the image
    assert (inside | ~plain).all() and inside.sum() > plain.sum()
    assert not inside[4, 16] and not plain[4, 16]  # image pixel (10, 10): outside the mask, in the image
    assert inside[4, 4] and not plain[4, 4]  # x < 0: beyond the image
    grown = _mask_targets([p], 64, margin=0.05).merged[0].numpy() > 0  # a disk of radius 3 px
    assert (grown >= plain).all() and grown[30, 22] and not plain[30, 22] and not grown[30, 19]


def test_refinement_with_a_spin_checkpoint(smpl_dir, synth_dir, tmp_path):
    """SMPL bodies from a checkpoint in SPIN's release layout refine like the shipped Anny ones."""
    from dsrbody.body.factory import build_body_model
    from dsrbody.models import build_regressor
    from dsrbody.models.loader import load_model

    torch.manual_seed(1)
    reg = build_regressor(build_body_model("smpl", model_path=smpl_dir), "resnet18", head_hidden=16)
    spin = tmp_path / "model_checkpoint.pt"
    torch.save({"model": {k.split(".", 1)[1]: v for k, v in reg.state_dict().items()}}, spin)
    loaded = load_model(spin, model_path=smpl_dir)
    assert loaded.kind == "spin"
    smpl_reg = loaded.regressor
    img = iio.imread(synth_dir / "images" / "test_000001.jpg")
    assert predict_people(smpl_reg, img, [Person(np.array([112.0, 112.0]), 1.12, "bbox")])[0].shape.shape == (
        10,
    )
    # an untrained head gives implausible poses (the joint limits then outweigh the keypoints): start
    # from SMPL's rest pose, upright in the camera frame, as a trained SPIN model would roughly give
    J = smpl_reg.body_model.num_joints
    rot = torch.eye(3).repeat(1, J, 1, 1)
    rot[0, 0] = torch.diag(torch.tensor([1.0, -1.0, -1.0]))
    with torch.no_grad():
        pred = smpl_reg.pose_body(rot, torch.zeros(1, 10), torch.tensor([[0.9, 0.0, 0.0]]))
    person = Person(np.array([112.0, 112.0]), 1.12, "bbox")
    result = result_from_prediction(smpl_reg, person, pred, 0, shape_raw=torch.zeros(10))
    result.person.keypoints = target_keypoints(smpl_reg, result)
    before, n = keypoint_error_px(result)
    assert n == 25 and before > 3.0  # SMPL has every OpenPose keypoint
    (refined,), (report,) = refine_people(smpl_reg, [result], RefineOptions(iters=40, init_weight=0.0))
    assert refined.refined and report.error_after_px < 0.5 * before, (before, report.error_after_px)
