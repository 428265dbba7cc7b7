"""SPIN's losses against hand-computed values and against SPIN's batch formulas."""

from __future__ import annotations

import math

import pytest
import torch

from dsrbody.geometry.rotations import axis_angle_to_matrix
from dsrbody.losses import (
    LossWeights,
    betas_loss,
    camera_loss,
    combine_losses,
    drop_nonfinite,
    keypoint_2d_loss,
    keypoint_3d_loss,
    pose_loss,
    spin_loss_terms,
    vertex_loss,
)


def test_keypoint_2d_hand_computed():
    # 3 keypoints, the first one "OpenPose" (num_openpose=1)
    pred = torch.tensor([[[0.0, 0.0], [0.5, 0.5], [1.0, -1.0]]])
    gt = torch.tensor([[[1.0, 1.0, 1.0], [0.0, 0.5, 0.5], [0.0, 0.0, 1.0]]])
    # errors^2 per kp: (1+1), (0.25+0), (1+1); conf*w: op 1*0.2, gt 0.5*1, 1*1
    expected = (0.2 * 2 + 0.5 * 0.25 + 1.0 * 2) / 6
    out = keypoint_2d_loss(pred, gt, openpose_weight=0.2, gt_weight=1.0, num_openpose=1)
    assert out.shape == (1,) and out.item() == pytest.approx(expected)
    # official weights (OpenPose 0): the first keypoint does not count
    assert keypoint_2d_loss(pred, gt, 0.0, 1.0, 1).item() == pytest.approx((0.5 * 0.25 + 2) / 6)


def test_keypoint_3d_hand_computed_and_pelvis_aligned():
    gt = torch.tensor(
        [[[0.0, 1.0, 0.0, 1.0], [1.0, 0.0, 0.0, 0.5], [-1.0, 0.0, 0.0, 1.0], [1.0, 0.0, 0.0, 1.0]]]
    )
    pred = gt[..., :3].clone()
    pred[0, 0] = torch.tensor([0.0, 1.0, 2.0])  # head moved 2 along z
    shift = torch.tensor([5.0, -3.0, 7.0])
    # pelvis = mean of joints 2 and 3 = origin for both; only joint 0 differs: 4 * conf 1 / (4 * 3)
    assert keypoint_3d_loss(pred + shift, gt).item() == pytest.approx(4.0 / 12)
    # moving a hip moves the pelvis: hip 3 +0.2 in x shifts every pred joint by -0.1 after alignment
    pred2 = gt[..., :3].clone()
    pred2[0, 3, 0] += 0.2
    conf = torch.tensor([1.0, 0.5, 1.0, 1.0])
    per_joint_sq = torch.tensor([0.01, 0.01, 0.01, 0.01])  # (-0.1)^2 for joints 0,1,2; (+0.1)^2 for 3
    assert keypoint_3d_loss(pred2, gt).item() == pytest.approx((conf * per_joint_sq).sum().item() / 12)


def test_pose_loss_hand_computed():
    Rz = axis_angle_to_matrix(torch.tensor([0.0, 0.0, math.pi / 2]))
    pred = torch.stack([torch.eye(3), Rz])[None]  # 2 joints
    gt = torch.eye(3).expand(1, 2, 3, 3)
    # Rz - I = [[-1,-1,0],[1,-1,0],[0,0,0]]: squared sum 4 over 18 entries
    assert pose_loss(pred, gt).item() == pytest.approx(4.0 / 18)
    # ground truth as axis-angle (B, J*3), as in SPIN files
    assert pose_loss(pred, torch.zeros(1, 6)).item() == pytest.approx(4.0 / 18, abs=1e-6)
    with pytest.raises(ValueError, match="axis-angle"):
        pose_loss(pred, torch.zeros(1, 5))


def test_betas_camera_vertex_hand_computed():
    assert betas_loss(
        torch.tensor([[1.0, 2.0, 0.0]]), torch.tensor([[0.0, 2.0, 3.0]])
    ).item() == pytest.approx(10 / 3)
    # fewer GT coefficients: the rest count as 0
    assert betas_loss(torch.tensor([[1.0, 2.0, 0.0]]), torch.tensor([[0.0, 2.0]])).item() == pytest.approx(
        1 / 3
    )
    cam = torch.tensor([[0.1, 5.0, 5.0], [0.0, 0.0, 0.0]])
    assert torch.allclose(camera_loss(cam), torch.tensor([math.exp(-2.0), 1.0]))
    v = torch.zeros(1, 2, 3)
    w = torch.tensor([[[1.0, -2.0, 0.0], [0.0, 0.0, 3.0]]])
    assert vertex_loss(v, w).item() == pytest.approx(1.0)


def test_drop_nonfinite():
    x = torch.tensor([1.0, float("nan"), 3.0, float("inf"), 10.0], requires_grad=True)
    valid = torch.tensor([True, True, True, True, False])
    mean, n = drop_nonfinite(x, valid)
    assert mean.item() == pytest.approx(2.0) and n == 2
    mean.backward()
    assert torch.equal(x.grad, torch.tensor([0.5, 0.0, 0.5, 0.0, 0.0]))
    # nothing valid: a zero that still backpropagates
    y = torch.tensor([float("nan"), 1.0], requires_grad=True)
    m, n = drop_nonfinite(y, torch.tensor([False, False]))
    assert m.item() == 0.0 and n == 0
    m.backward()
    assert torch.equal(y.grad, torch.zeros(2))
    assert drop_nonfinite(torch.tensor([2.0, 4.0]))[0].item() == 3.0
    # the official DSR normalisation: over the batch's finite samples, invalid ones counting 0
    assert drop_nonfinite(x.detach(), valid, "batch")[0].item() == pytest.approx(4.0 / 3)
    with pytest.raises(ValueError, match="denominator"):
        drop_nonfinite(x, valid, "sum")


def _spin_reference(pred, gt, w: LossWeights) -> torch.Tensor:
    """SPIN's ``trainer.py`` losses, transcribed as batch formulas (boolean indexing, ``.mean()``)."""
    mse = torch.nn.MSELoss(reduction="none")
    conf = gt["keypoints"][:, :, -1].unsqueeze(-1).clone()
    conf[:, :25] *= w.openpose
    conf[:, 25:] *= w.gt
    l_kp = (conf * mse(pred["keypoints_2d"], gt["keypoints"][:, :, :-1])).mean()
    has3d = gt["has_pose_3d"] == 1
    p3 = pred["joints"][:, 25:][has3d]
    g3 = gt["pose_3d"][has3d]
    c3 = g3[:, :, -1:]
    g3 = g3[:, :, :-1]
    g3 = g3 - ((g3[:, 2] + g3[:, 3]) / 2)[:, None]
    p3 = p3 - ((p3[:, 2] + p3[:, 3]) / 2)[:, None]
    l_kp3 = (c3 * mse(p3, g3)).mean()
    hs = gt["has_smpl"] == 1
    gt_rot = axis_angle_to_matrix(gt["pose"].view(-1, 24, 3))
    l_pose = torch.nn.functional.mse_loss(pred["rotmat"][hs], gt_rot[hs])
    l_betas = torch.nn.functional.mse_loss(pred["shape"][hs], gt["betas"][hs])
    l_cam = (torch.exp(-pred["cam"][:, 0] * 10) ** 2).mean()
    total = w.keypoints_2d * l_kp + w.keypoints_3d * l_kp3 + w.pose * l_pose + w.betas * l_betas + l_cam
    return total * w.overall


def test_spin_total_matches_spins_batch_formulas():
    g = torch.Generator().manual_seed(0)
    B = 5
    pred = {
        "keypoints_2d": torch.randn(B, 49, 2, generator=g),
        "joints": torch.randn(B, 49, 3, generator=g),
        "rotmat": axis_angle_to_matrix(torch.randn(B, 24, 3, generator=g)),
        "shape": torch.randn(B, 10, generator=g),
        "cam": torch.rand(B, 3, generator=g),
    }
    gt = {
        "keypoints": torch.cat([torch.randn(B, 49, 2, generator=g), torch.rand(B, 49, 1, generator=g)], -1),
        "pose_3d": torch.cat([torch.randn(B, 24, 3, generator=g), torch.rand(B, 24, 1, generator=g)], -1),
        "has_pose_3d": torch.tensor([1, 0, 1, 1, 0]),
        "pose": torch.randn(B, 72, generator=g),
        "betas": torch.randn(B, 10, generator=g),
        "has_smpl": torch.tensor([0, 1, 1, 0, 1]),
    }
    w = LossWeights(openpose=0.3)  # non-zero so the OpenPose part is exercised
    total, means, dropped = combine_losses(spin_loss_terms(pred, gt, w), w)
    assert total.item() == pytest.approx(_spin_reference(pred, gt, w).item(), rel=1e-5)
    assert set(means) == {"keypoints_2d", "keypoints_3d", "pose", "betas", "camera"}
    assert all(v == 0 for v in dropped.values())
    # one sample's prediction becomes NaN: it is dropped from every term, and counted
    pred["joints"] = pred["joints"].clone()
    pred["joints"][2, 30] = float("nan")
    _, _, dropped = combine_losses(spin_loss_terms(pred, gt, w), w)
    assert dropped["keypoints_3d"] == 1


def test_keypoints_the_body_model_lacks_do_not_count():
    g = torch.Generator().manual_seed(3)
    B = 2
    pred = {
        "keypoints_2d": torch.randn(B, 49, 2, generator=g),
        "joints": torch.randn(B, 49, 3, generator=g),
        "cam": torch.ones(B, 3),
    }
    gt = {
        "keypoints": torch.cat([torch.randn(B, 49, 2, generator=g), torch.ones(B, 49, 1)], -1),
        "pose_3d": torch.cat([torch.randn(B, 24, 3, generator=g), torch.ones(B, 24, 1)], -1),
    }
    conf = torch.ones(49)
    conf[[30, 40, 45]] = 0.0  # e.g. Anny has no such keypoints
    with_conf = spin_loss_terms({**pred, "keypoint_confidence": conf}, gt)
    masked_gt = {"keypoints": gt["keypoints"].clone(), "pose_3d": gt["pose_3d"].clone()}
    masked_gt["keypoints"][:, [30, 40, 45], 2] = 0
    masked_gt["pose_3d"][:, [5, 15, 20], 3] = 0
    ref = spin_loss_terms(pred, masked_gt)
    for k in ("keypoints_2d", "keypoints_3d"):
        assert torch.allclose(with_conf[k][0], ref[k][0])
    assert not torch.allclose(spin_loss_terms(pred, gt)["keypoints_2d"][0], ref["keypoints_2d"][0])


def test_combine_weights_and_overall_factor():
    terms = {
        "keypoints_2d": (torch.tensor([1.0, 3.0]), None),
        "dsr_mc": (torch.tensor([0.5, 100.0]), torch.tensor([True, False])),
        "dsr_c": (torch.tensor([float("nan"), 2.0]), None),
        "silhouette": (torch.tensor([7.0, 7.0]), None),  # weight 0 by default: logged, not added
    }
    total, means, dropped = combine_losses(terms)
    assert total.item() == pytest.approx(60 * (5 * 2.0 + 0.1 * 0.5 + 0.1 * 2.0))
    assert means["silhouette"].item() == 7.0 and dropped == {
        "keypoints_2d": 0,
        "dsr_mc": 0,
        "dsr_c": 1,
        "silhouette": 0,
    }
    total_b, means_b, _ = combine_losses(terms, batch_mean=("dsr_mc",))
    assert means_b["dsr_mc"].item() == pytest.approx(0.25)
    assert total_b.item() == pytest.approx(60 * (5 * 2.0 + 0.1 * 0.25 + 0.1 * 2.0))
    with pytest.raises(ValueError, match="unknown loss term 'kp'"):
        combine_losses({"kp": (torch.ones(1), None)})
