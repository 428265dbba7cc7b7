"""dsrbody.eval.synth_eval's helpers that need no model: the split of a batch by its ground truth's body
model (gendered SMPL)."""

from __future__ import annotations

import torch

from dsrbody.eval.synth_eval import gender_groups


def test_gender_groups_partition_the_valid_samples_by_gender():
    """Each valid sample lands in exactly one group: male and female codes in their model's group,
    unknown codes (-1, 2) in the default's; invalid samples in none."""
    gender = torch.tensor([0, 1, -1, 0, 2, 1, 0])
    valid = torch.tensor([True, True, True, False, True, True, True])
    groups = gender_groups(gender, {0: "male", 1: "female"}, "neutral", valid)
    assert [m for _, m in groups] == ["male", "female", "neutral"]
    masks = torch.stack([g for g, _ in groups]).int()
    assert torch.equal(masks.sum(0), valid.int())  # disjoint, and their union is `valid`
    by_model = {m: g.nonzero().flatten().tolist() for g, m in groups}
    assert by_model == {"male": [0, 6], "female": [1, 5], "neutral": [2, 4]}


def test_gender_groups_without_gendered_models_is_one_group():
    valid = torch.tensor([True, False, True])
    for gender, models in ((torch.tensor([0, 1, 0]), None), (torch.tensor([0, 1, 0]), {}), (None, {0: "m"})):
        ((mask, model),) = gender_groups(gender, models, "default", valid)
        assert model == "default" and torch.equal(mask, valid)


def test_known_stature_gives_back_a_height_phenotype_that_only_scaled_the_body(anny_body):
    """Predictions right in everything but Anny's height phenotype: scored as they are, PVE-T and MPJPE
    see the height; given the true stature first, the height phenotype is found again and every error
    is (nearly) zero. Samples without body ground truth stay NaN."""
    import numpy as np

    from dsrbody.eval.metrics import eval_joints
    from dsrbody.eval.synth_eval import batch_metrics
    from dsrbody.geometry.rotations import axis_angle_to_matrix

    rng = np.random.default_rng(5)
    B, J = 3, anny_body.num_joints
    pose = torch.tensor(rng.normal(0, 0.2, (B, J * 3)), dtype=torch.float32)
    betas = torch.tensor([[0.1, 0.8, 0.4, 0.6, 0.3, 0.5], [0.9, 0.7, 0.5, 0.3, 0.8, 0.6], [0.5] * 6])
    batch = {
        "keypoints": torch.zeros(B, 49, 3), "pose": pose, "betas": betas,
        "has_params": torch.tensor([1.0, 1.0, 0.0]), "body_model": ["anny"] * B,
    }  # fmt: skip
    shape = betas.clone()
    shape[:, anny_body.stature_index] = torch.tensor([0.6, 0.5, 0.5])  # a wrong height for the first two
    rot = axis_angle_to_matrix(pose.reshape(B, J, 3))
    with torch.no_grad():
        out = anny_body(rot[:, 0], rot[:, 1:], shape)
    pred = {"rotmat": rot, "shape": shape, "joints": out.joints, "vertices": out.vertices,
            "rest_vertices": out.rest_vertices}  # fmt: skip
    joints = eval_joints(anny_body)
    plain = batch_metrics(pred, batch, anny_body, joints, rerun=False)
    known = batch_metrics(pred, batch, anny_body, joints, rerun=False, known_stature=True)
    assert bool((plain["pve_t"][:2] > 20).all()) and bool((plain["mpjpe"][:2] > 5).all())
    for k in ("mpjpe", "pa_mpjpe", "pve", "pve_t", "pve_t_sc"):
        assert float(known[k][:2].abs().max()) < 1.0, k  # mm
        assert bool(torch.isnan(known[k][2])), k


def test_known_stature_counts_unreachable_heights_and_leaves_joints_only_samples_out(anny_body):
    """A true stature out of the prediction's reach is scored at the nearest and counted; a sample with
    3D joints alone has no stature to give: it gets no metric, with its own exclusion reason."""

    from dsrbody.eval.metrics import eval_joints
    from dsrbody.eval.synth_eval import batch_metrics, exclusion_reasons
    from dsrbody.geometry.rotations import axis_angle_to_matrix

    B, J = 3, anny_body.num_joints
    pose = torch.zeros(B, J * 3)
    betas = torch.tensor([[0.5, 0.8, 0.5, 0.5, 0.5, 0.5], [0.5, 0.8, 0.5, 0.5, 0.5, 0.5], [0.5] * 6])
    with torch.no_grad():
        gt = anny_body(torch.eye(3).expand(B, 3, 3), torch.eye(3).expand(B, J - 1, 3, 3), betas)
    pose_3d = torch.zeros(B, 24, 4)
    pose_3d[:, :, 3] = 1.0
    batch = {
        "keypoints": torch.zeros(B, 49, 3), "pose": pose, "betas": betas, "body_model": ["anny"] * B,
        "has_params": torch.tensor([1.0, 1.0, 0.0]), "pose_3d": pose_3d, "has_pose_3d": torch.ones(B),
    }  # fmt: skip
    shape = betas.clone()
    shape[1, 1] = -1 / 3  # a newborn: no height phenotype makes it as tall as the adult it should be
    rot = axis_angle_to_matrix(pose.reshape(B, J, 3))
    pred = {"rotmat": rot, "shape": shape, "joints": gt.joints, "vertices": gt.vertices,
            "rest_vertices": gt.rest_vertices}  # fmt: skip
    joints = eval_joints(anny_body)
    plain = batch_metrics(pred, batch, anny_body, joints, rerun=True)
    assert bool(torch.isfinite(plain["mpjpe"][2]))  # scored on its 3D joints ...
    known = batch_metrics(pred, batch, anny_body, joints, rerun=True, known_stature=True)
    assert known["stature_clamped"][:2].tolist() == [0.0, 1.0] and bool(
        torch.isnan(known["stature_clamped"][2])
    )
    assert bool(torch.isnan(known["mpjpe"][2]))  # ... but not given a stature it does not have
    assert float(known["pve_t"][0]) < 1e-3 and float(known["pve_t"][1]) > 50
    values = {k: v for k, v in known.items() if k != "stature_clamped"}
    assert exclusion_reasons(values, pred, batch, known_stature=True) == ["joints_only_known_stature"]
