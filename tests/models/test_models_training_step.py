"""The plain modules wired as a trainer would: regressor + SPIN losses + DSR losses, a few optimiser steps."""

from __future__ import annotations

import torch
from models_testkit import TinyBody, tiny_backbone

from dsrbody.geometry.rotations import axis_angle_to_matrix
from dsrbody.losses import DSRLoss, DSRTargets, LossWeights, combine_losses, spin_loss_terms
from dsrbody.models.hmr import Regressor
from dsrbody.render.soft import soft_render
from dsrbody.semantics.prior import ClothingPrior

RES = 64
FOCAL = 5000.0 * RES / 224


def test_twenty_steps_with_every_loss_lower_the_total():
    torch.manual_seed(0)
    body = TinyBody(num_joints=5, shape_dim=3)
    reg = Regressor(tiny_backbone(), 8, body, focal=FOCAL, img_res=RES, dropout=0.0, head_hidden=128)
    B = 4
    g = torch.Generator().manual_seed(1)
    images = torch.randn(B, 3, 32, 32, generator=g)
    # ground truth: a slightly different pose and shape, projected with a known camera
    with torch.no_grad():
        go = body.mean_params()["global_orient"].expand(B, 3, 3)
        bp = axis_angle_to_matrix(0.2 * torch.randn(B, 4, 3, generator=g))
        betas = torch.randn(B, 3, generator=g)
        ref = reg.pose_body(
            torch.cat([go[:, None], bp], 1), betas, torch.tensor([[1.5, 0.05, -0.05]]).expand(B, 3)
        )
    K = ref["keypoints_2d"].shape[1]
    gt = {
        "keypoints": torch.cat([ref["keypoints_2d"], torch.ones(B, K, 1)], -1),
        "pose_3d": torch.cat([ref["joints"][:, 1:], torch.ones(B, K - 1, 1)], -1),
        "has_pose_3d": torch.ones(B),
        "pose": torch.cat([go[:, None], bp], 1),
        "betas": betas,
        "has_smpl": torch.tensor([1, 1, 0, 0]),
    }
    # parsing maps consistent with the ground-truth body: every face of the prior is 'face' (CIHP 13),
    # so the MC mask is the body's silhouette and the DSR-C labels are 'head' on the body
    F = body.faces.shape[0]
    prior = ClothingPrior(torch.nn.functional.one_hot(torch.full((F,), 13), 20).float(), topology_id=None)
    _, sil = soft_render(
        ref["vertices_cam"],
        body.faces,
        focal=FOCAL,
        principal_point=(RES / 2, RES / 2),
        image_size=(RES, RES),
    )
    labels = torch.where(sil[:, 0] > 0.5, 13, 0)
    targets = DSRTargets.from_parsing(labels)
    assert targets.valid().all()
    dsr = DSRLoss(body.faces, prior, focal=FOCAL, img_res=RES, sigma=1e-3)
    w = LossWeights()
    opt = torch.optim.Adam(reg.parameters(), lr=3e-4)
    totals = []
    for _ in range(20):
        opt.zero_grad()
        pred = reg(images)
        terms = spin_loss_terms(pred, gt, w, num_openpose=1)  # joint 0 plays the "OpenPose" part
        out = dsr(pred["vertices_cam"], targets)
        terms["dsr_mc"] = (out["dsr_mc"], out["dsr_mc_valid"])
        terms["dsr_c"] = (out["dsr_c"], out["dsr_c_valid"])
        total, means, dropped = combine_losses(terms, w)
        assert not any(dropped.values()) and out["dsr_mc_valid"].all()
        total.backward()
        opt.step()
        totals.append(total.item())
    assert totals[-1] < 0.75 * totals[0]
    assert set(means) == {"keypoints_2d", "keypoints_3d", "pose", "betas", "camera", "dsr_mc", "dsr_c"}
