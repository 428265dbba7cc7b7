"""dsrbody.losses.targets: a batch to loss targets, against values computed here by hand or with a
plain numpy reference of the rules (docs/design.md, Clothing labels, Losses), on a toy body model and on
a synthetic batch with the Anny body."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from dsrbody.body.base import BodyModel, BodyOutput
from dsrbody.losses import LossWeights
from dsrbody.losses.targets import (
    apply_keypoint_confidence,
    dsr_targets,
    gt_body,
    params_valid,
    spin_targets,
)

# CIHP labels used below
UPPER, PANTS, FACE, LARM = 5, 9, 13, 14
#: DSR-MC labels: face, leftArm, rightArm, leftShoe, rightShoe.
MC = (13, 14, 15, 18, 19)
#: the DSR-C merged class of each CIHP label.
MERGED = np.array([0, 1, 1, 2, 1, 2, 2, 2, 3, 3, 2, 1, 3, 1, 4, 5, 6, 7, 6, 7])

TEMPLATE = torch.tensor([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 2.0, 0.0], [0.0, 0.0, 3.0]])
#: 90 degrees about z: (x, y, z) -> (-y, x, z).
RZ90 = torch.tensor([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])


class ToyBody(BodyModel):
    """J = 2 joints, S = 3 shape values, 4 vertices, 5 keypoints. Rest pose: the template moved by the
    sum of the shape values along every axis; posed: the rest pose turned by the root rotation."""

    num_joints, shape_dim = 2, 3

    def __init__(self, name: str = "toy", keypoint_confidence: torch.Tensor | None = None):
        super().__init__()
        self.name = name
        self.register_buffer("faces", torch.tensor([[0, 1, 2], [0, 2, 3]]))
        if keypoint_confidence is not None:
            self.register_buffer("keypoint_confidence", keypoint_confidence)
        self.scale = torch.nn.Parameter(torch.ones(()))  # a weight: the targets must carry no gradient
        self.calls: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []

    def forward(self, global_orient, body_pose, shape):
        self.calls.append((global_orient, body_pose, shape))
        rest = self.scale * (TEMPLATE[None] + shape.sum(1)[:, None, None])
        verts = rest @ global_orient.transpose(1, 2)
        return BodyOutput(vertices=verts, joints=verts[:, [0, 1, 2, 3, 0]], skeleton_joints=verts[:, :2],
                          rest_vertices=rest)  # fmt: skip


class MidPaddedToyBody(ToyBody):
    """A toy whose missing shape values are 0.5 (as Anny's mid phenotypes)."""

    def pad_shape(self, shape):
        return torch.cat([shape, shape.new_full((shape.shape[0], self.shape_dim - shape.shape[1]), 0.5)], 1)


def toy_batch() -> dict:
    """Three samples: 5 keypoints, 3 3D joints, toy parameters for samples 0 and 2 (pose: root turned
    90 degrees about z for sample 0, identity for sample 2)."""
    kp = torch.tensor([[0.1, 0.2, 1.0], [0.3, 0.4, 0.5], [-0.5, 0.5, 1.0], [0.0, 0.0, 0.0], [0.9, -0.9, 1.0]])
    joints = torch.tensor([[1.0, 2.0, 3.0, 1.0], [4.0, 5.0, 6.0, 0.5], [7.0, 8.0, 9.0, 1.0]])
    pose = torch.zeros(3, 6)
    pose[0, 2] = math.pi / 2
    pose[1] = 0.3
    return {
        "keypoints": kp.repeat(3, 1, 1),
        "pose_3d": joints.repeat(3, 1, 1),
        "has_pose_3d": torch.tensor([1.0, 0.0, 1.0]),
        "pose": pose,
        "betas": torch.tensor([[0.1, 0.2], [5.0, 5.0], [0.0, -0.3]]),
        "has_params": torch.tensor([1.0, 1.0, 1.0]),
        "body_model": ["toy", "anny", "TOY"],
        "has_smpl": torch.tensor([1.0, 0.0, 0.0]),
    }  # fmt: skip


# ----------------------------------------------------------------------------------------------
# params_valid, gt_body
# ----------------------------------------------------------------------------------------------


def test_params_valid():
    b = toy_batch()
    assert params_valid(b, "toy").tolist() == [True, False, True]  # the file's name, any case
    assert params_valid(b, "smpl").tolist() == [True, False, False]  # SMPL: has_smpl
    assert params_valid({**b, "has_params": torch.tensor([0.0, 1.0, 1.0])}, "toy").tolist() == [
        False,
        False,
        True,
    ]
    for key in ("body_model", "has_params"):  # no names or no flags: nothing is the model's
        rest = {k: v for k, v in b.items() if k != key}
        assert params_valid(rest, "toy").tolist() == [False] * 3
    no_smpl = {k: v for k, v in b.items() if k != "has_smpl"}
    assert params_valid(no_smpl, "smpl").dtype == torch.bool and not params_valid(no_smpl, "smpl").any()


def test_old_names_stay_importable_from_eval():
    import dsrbody.eval.synth_eval as synth_eval
    import dsrbody.losses as losses

    assert synth_eval.gt_body is gt_body and synth_eval.params_valid is params_valid
    assert losses.gt_body is gt_body and losses.spin_targets is spin_targets


def test_gt_body_runs_the_valid_samples():
    body = ToyBody()
    b = toy_batch()
    g = gt_body(body, b, torch.tensor([True, False, True]))
    orient, body_pose, shape = body.calls[-1]
    torch.testing.assert_close(orient, torch.stack([RZ90, torch.eye(3)]), atol=1e-6, rtol=0)
    torch.testing.assert_close(body_pose, torch.eye(3).expand(2, 1, 3, 3), atol=1e-6, rtol=0)
    # a SMPL-like model's betas narrower than its shape are padded with zeros
    torch.testing.assert_close(shape, torch.tensor([[0.1, 0.2, 0.0], [0.0, -0.3, 0.0]]))
    rest0 = TEMPLATE + 0.3
    torch.testing.assert_close(g.rest_vertices[0], rest0)
    # rotated 90 degrees about z: (x, y, z) -> (-y, x, z)
    torch.testing.assert_close(g.vertices[0], torch.stack([-rest0[:, 1], rest0[:, 0], rest0[:, 2]], 1))
    torch.testing.assert_close(g.vertices[1], TEMPLATE - 0.3)
    # a model that completes its shape otherwise (Anny: the mid phenotypes) gets its own padding
    mid = MidPaddedToyBody()
    gt_body(mid, b, torch.tensor([True, False, False]))
    assert mid.calls[-1][2].tolist() == [pytest.approx([0.1, 0.2, 0.5])]


def test_gt_body_of_anny_equals_its_unpadded_forward(anny_body):
    """Anny's shape is completed with its mid phenotypes, which is what its forward does with fewer."""
    b = {"pose": torch.zeros(1, 72), "betas": torch.tensor([[0.2, 0.7]])}
    g = gt_body(anny_body, b, torch.tensor([True]))
    eye = torch.eye(3)[None]
    with torch.no_grad():
        ref = anny_body(eye, eye.expand(1, 23, 3, 3), b["betas"])
    assert torch.equal(g.vertices, ref.vertices) and torch.equal(g.rest_vertices, ref.rest_vertices)


# ----------------------------------------------------------------------------------------------
# spin_targets
# ----------------------------------------------------------------------------------------------


def test_apply_keypoint_confidence():
    kp = torch.tensor([[[0.5, -0.5, 0.75], [0.25, 0.125, 1.0]]])
    out = apply_keypoint_confidence(kp, torch.tensor([0.0, 1.0]))
    assert out.tolist() == [[[0.5, -0.5, 0.0], [0.25, 0.125, 1.0]]] and kp[0, 0, 2] == 0.75
    same = apply_keypoint_confidence(kp, None)
    assert torch.equal(same, kp) and same is not kp


def test_keypoints_carry_the_body_models_confidence():
    conf = torch.tensor([1.0, 0.0, 1.0, 1.0, 0.0])  # keypoints 1 and 4 do not exist on this model
    body = ToyBody(keypoint_confidence=conf)
    b = toy_batch()
    before = {k: v.clone() for k, v in b.items() if torch.is_tensor(v)}
    gt = spin_targets(b, body)
    expected = [[0.1, 0.2, 1.0], [0.3, 0.4, 0.0], [-0.5, 0.5, 1.0], [0.0, 0.0, 0.0], [0.9, -0.9, 0.0]]
    assert gt["keypoints"].shape == (3, 5, 3)
    torch.testing.assert_close(gt["keypoints"][2], torch.tensor(expected))
    # 3D joints: the last 3 confidences (1, 1, 0)
    torch.testing.assert_close(gt["pose_3d"][0, :, 3], torch.tensor([1.0, 0.5, 0.0]))
    torch.testing.assert_close(gt["pose_3d"][..., :3], b["pose_3d"][..., :3])
    assert gt["has_pose_3d"] is b["has_pose_3d"]
    for k, v in before.items():  # the batch is left as it was
        assert torch.equal(b[k], v), k
    # an explicit confidence replaces the model's; a model without one leaves the keypoints as they are
    ones = spin_targets(b, body, keypoint_confidence=torch.ones(5))
    assert torch.equal(ones["keypoints"], b["keypoints"]) and torch.equal(ones["pose_3d"], b["pose_3d"])
    plain = spin_targets(b, ToyBody())
    assert torch.equal(plain["keypoints"], b["keypoints"]) and plain["keypoints"] is not b["keypoints"]


def test_3d_joints_only_where_a_sample_has_them():
    b = toy_batch()
    assert "pose_3d" not in spin_targets({**b, "has_pose_3d": torch.zeros(3)}, ToyBody())
    no3d = {k: v for k, v in b.items() if k not in ("pose_3d", "has_pose_3d")}
    assert "pose_3d" not in spin_targets(no3d, ToyBody())


def test_parameters_only_of_the_trained_body_model():
    b = toy_batch()
    gt = spin_targets(b, ToyBody())
    assert gt["pose"] is b["pose"] and gt["betas"] is b["betas"]
    assert gt["has_smpl"].tolist() == [True, False, True]  # sample 1 holds another model's parameters
    assert "vertices" not in gt and "rest_vertices" not in gt  # default weights: no mesh terms
    for bad in (
        {"body_model": ["anny"] * 3},  # none is the model's
        {"pose": torch.zeros(3, 9)},  # not 3 J wide
        {"betas": torch.zeros(3, 4)},  # wider than the model's shape
    ):
        gt = spin_targets({**b, **bad}, ToyBody())
        assert not {"pose", "betas", "has_smpl"} & set(gt), bad
    no_params = {k: v for k, v in b.items() if k not in ("pose", "betas")}
    assert "pose" not in spin_targets(no_params, ToyBody())


def test_ground_truth_meshes_for_non_zero_weights():
    b = toy_batch()
    body = ToyBody()
    gt = spin_targets(b, body, LossWeights(vertices=1.0, rest_vertices=0.0))
    assert "rest_vertices" not in gt and gt["vertices"].shape == (3, 4, 3)
    assert not gt["vertices"].requires_grad
    rest0, rest2 = TEMPLATE + 0.3, TEMPLATE - 0.3
    torch.testing.assert_close(gt["vertices"][0], torch.stack([-rest0[:, 1], rest0[:, 0], rest0[:, 2]], 1))
    assert not gt["vertices"][1].any()  # not the model's parameters: zeros (masked by has_smpl)
    torch.testing.assert_close(gt["vertices"][2], rest2)
    gt = spin_targets(b, body, LossWeights(vertices=0.0, rest_vertices=2.0))
    assert "vertices" not in gt
    torch.testing.assert_close(gt["rest_vertices"], torch.stack([rest0, torch.zeros(4, 3), rest2]))
    # the scale-free terms alone need the meshes too
    gt = spin_targets(b, body, LossWeights(vertices=0.0, vertices_sc=2.0))
    assert "rest_vertices" not in gt and gt["vertices"].shape == (3, 4, 3)
    gt = spin_targets(b, body, LossWeights(vertices=0.0, rest_vertices=0.0, rest_vertices_sc=10.0))
    assert "vertices" not in gt
    torch.testing.assert_close(gt["rest_vertices"], torch.stack([rest0, torch.zeros(4, 3), rest2]))
    n = len(body.calls)
    spin_targets(b, body, LossWeights(vertices=0.0, rest_vertices=0.0))
    assert len(body.calls) == n  # no mesh term: the body model is not run


# ----------------------------------------------------------------------------------------------
# dsr_targets
# ----------------------------------------------------------------------------------------------


def reference_targets(labels: np.ndarray, kp_px: np.ndarray | None, min_pixels: int = 60):
    """The DSR targets of one ``(H, W)`` map by the rules, in plain numpy (docs/design.md, Clothing
    labels): cleaning box of the keypoints with confidence > 0.3 grown by 30 px (pixel centres), MC
    labels over 60 px, merged classes, class weights over classes of at least 60 px."""
    labels = labels.copy()
    if kp_px is not None and (kp_px[:, 2] > 0.3).any():
        sel = kp_px[kp_px[:, 2] > 0.3]
        x0, x1 = sel[:, 0].min() - 30, sel[:, 0].max() + 30
        y0, y1 = sel[:, 1].min() - 30, sel[:, 1].max() + 30
        for r in range(labels.shape[0]):
            for c in range(labels.shape[1]):
                if not (x0 <= c + 0.5 <= x1 and y0 <= r + 0.5 <= y1):
                    labels[r, c] = 0
    present = np.zeros(20, bool)
    for lab in MC:
        present[lab] = (labels == lab).sum() > min_pixels
    mask = present[labels]
    merged = MERGED[labels]
    counts = np.array([(merged == c).sum() for c in range(8)])
    valid = counts >= min_pixels
    weights = np.zeros(8, np.float32)
    if valid.any():
        weights[valid] = counts[valid].min() / counts[valid]
    return labels, present, mask, merged, weights


def parsing_batch(res: int = 96) -> dict:
    """Two 96 px crops. Sample 0: keypoints at pixels (60, 10) and (70, 20) (a third, at confidence 0.2,
    does not count): the box is x in [30, 100], y in [-20, 50], so columns 30..95 and rows 0..49 stay; a
    face inside it, a left arm below it, upper clothes across its left edge. Sample 1: the same map,
    no confident keypoint (kept whole), no parsing file (no DSR loss)."""
    m = np.zeros((res, res), np.uint8)
    m[5:15, 40:50] = FACE  # 100 px, kept
    m[60:70, 40:50] = LARM  # 100 px, outside the box
    m[20:40, 20:60] = UPPER  # 800 px, columns 20..29 outside the box
    m[45:55, 80:90] = PANTS  # rows 50..54 outside the box
    px = np.array(
        [[[60.0, 10.0, 0.9], [70.0, 20.0, 0.8], [5.0, 90.0, 0.2]], [[60.0, 10.0, 0.25], [0, 0, 0], [1, 1, 0]]]
    )
    kp = px.copy()
    kp[..., :2] = px[..., :2] / (res / 2.0) - 1.0  # normalised as in a batch
    return {
        "parsing": torch.from_numpy(np.stack([m, m])),
        "has_parsing": torch.tensor([True, False]),
        "keypoints": torch.from_numpy(kp).float(),
        "px": px,
    }  # fmt: skip


def test_dsr_targets_clean_around_the_keypoints():
    b = parsing_batch()
    t = dsr_targets(b, 96)
    for i in range(2):
        labels, present, mask, merged, weights = reference_targets(b["parsing"][i].numpy(), b["px"][i])
        assert t.mc_present[i].numpy().tolist() == present.tolist(), i
        np.testing.assert_array_equal(t.mc_mask[i].numpy(), mask)
        np.testing.assert_array_equal(t.merged[i].numpy(), merged)
        np.testing.assert_allclose(t.class_weights[i].numpy(), weights, rtol=1e-6)
    # by hand, sample 0: the face stays, the arm and the clothes' left columns go
    assert torch.nonzero(t.mc_present[0]).flatten().tolist() == [FACE]
    assert int((t.merged[0] == 2).sum()) == 20 * 30 and int((t.merged[0] == 3).sum()) == 5 * 10
    # weights: smallest class over 60 px (head, 100) / count; pants (50 px) get 0
    bg = 96 * 96 - 100 - 600 - 50
    torch.testing.assert_close(t.class_weights[0], torch.tensor([100 / bg, 1.0, 100 / 600, 0, 0, 0, 0, 0]))
    assert torch.nonzero(t.mc_present[1]).flatten().tolist() == [FACE, LARM]  # not cleaned
    assert t.has_parsing is b["has_parsing"] and t.valid().tolist() == [True, False]
    assert t.distance is None and t.merged.dtype == torch.int64


def test_dsr_targets_without_cleaning_and_with_distances():
    b = parsing_batch()
    t = dsr_targets(b, 96, clean=False, with_distance=True)
    for i in range(2):
        _, present, mask, merged, _ = reference_targets(b["parsing"][i].numpy(), None)
        assert t.mc_present[i].numpy().tolist() == present.tolist()
        np.testing.assert_array_equal(t.mc_mask[i].numpy(), mask)
    d = t.distance[0]
    assert d.shape == (96, 96) and not d[t.mc_mask[0]].any()
    assert float(d[10, 55]) == pytest.approx(6.0)  # nearest mask pixel: (10, 49)
    assert float(d[50, 45]) == pytest.approx(10.0)  # between the face (row 14) and the arm (row 60)


def test_dsr_targets_follow_the_crop_size():
    """Keypoints are normalised to the crop: the same keypoints in a 224 px crop give another box."""
    b = parsing_batch()
    kp224 = b["px"].copy()
    kp224[..., :2] = b["px"][..., :2] / 112.0 - 1.0  # the pixel positions of a 224 px crop
    labels = torch.zeros(2, 224, 224, dtype=torch.uint8)
    labels[:, 10:60, :] = UPPER
    t = dsr_targets({**b, "parsing": labels, "keypoints": torch.from_numpy(kp224).float()}, 224)
    kept = t.merged[0].amax(0).nonzero().flatten()
    assert kept.min() == 30 and kept.max() == 99  # columns whose centre is in [30, 100]
    rows = t.merged[0].amax(1).nonzero().flatten()
    assert rows.min() == 10 and rows.max() == 49  # rows whose centre is above y1 = 50
    assert int((t.merged[1] == 2).sum()) == 50 * 224  # no confident keypoint: kept whole


# ----------------------------------------------------------------------------------------------
# a synthetic batch with the Anny body
# ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def synth_batch(tmp_path_factory):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "demo"))
    from demo_testkit import shared_synth

    from dsrbody.data import SpinNpzDataset, collate_samples

    root = shared_synth(tmp_path_factory)
    ds = SpinNpzDataset(root / "synth_test.npz", root, parsing=True)  # 224 px crops
    return collate_samples([ds[i] for i in range(len(ds))])


def test_synthetic_batch_targets(synth_batch, anny_body):
    """What the training step took before the targets had their module: the keypoints times Anny's
    keypoint confidence, the file's Anny parameters, Anny's posed and rest meshes of them."""
    from dsrbody.geometry.rotations import axis_angle_to_matrix

    b = synth_batch
    B = b["keypoints"].shape[0]
    gt = spin_targets(b, anny_body, LossWeights(vertices=1.0, rest_vertices=2.0))
    conf = anny_body.keypoint_confidence
    assert 0 < int((conf == 0).sum()) < conf.numel()
    torch.testing.assert_close(gt["keypoints"][..., :2], b["keypoints"][..., :2], rtol=0, atol=0)
    torch.testing.assert_close(gt["keypoints"][..., 2], b["keypoints"][..., 2] * conf, rtol=0, atol=0)
    torch.testing.assert_close(gt["pose_3d"][..., 3], b["pose_3d"][..., 3] * conf[25:], rtol=0, atol=0)
    assert gt["has_smpl"].tolist() == [True] * B
    rot = axis_angle_to_matrix(b["pose"].float().reshape(B, -1, 3))
    with torch.no_grad():
        ref = anny_body(rot[:, 0], rot[:, 1:], b["betas"].float())
    torch.testing.assert_close(gt["vertices"], ref.vertices)
    torch.testing.assert_close(gt["rest_vertices"], ref.rest_vertices)

    t = dsr_targets(b, 224, with_distance=True)
    px = b["keypoints"].float().clone()
    px[..., :2] = (px[..., :2] + 1.0) * 112.0  # the crop's pixels
    px = px.double().numpy()
    assert t.valid().all()
    for i in range(B):
        _, present, mask, merged, weights = reference_targets(b["parsing"][i].numpy(), px[i])
        assert present.any()
        assert t.mc_present[i].numpy().tolist() == present.tolist()
        np.testing.assert_array_equal(t.mc_mask[i].numpy(), mask)
        np.testing.assert_array_equal(t.merged[i].numpy(), merged)
        np.testing.assert_allclose(t.class_weights[i].numpy(), weights, rtol=1e-6)
        assert not t.distance[i][t.mc_mask[i]].any() and t.distance[i][~t.mc_mask[i]].min() >= 1.0
