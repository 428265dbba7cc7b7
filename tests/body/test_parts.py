"""Body-part labels from skinning weights, on Anny, on SMPL (generated official-layout files) and on
a hand-built SMPL-named model where every answer is known."""

from __future__ import annotations

import pytest
import torch

from dsrbody.body.base import BodyModel, BodyOutput
from dsrbody.body.keypoints import SMPL24
from dsrbody.body.parts import (
    BODY_PARTS,
    LIMBS,
    anny_bone_part,
    face_body_parts,
    joint_body_parts,
    limb_coordinate,
    rest_skeleton,
    vertex_body_parts,
)

P = {p: i for i, p in enumerate(BODY_PARTS)}


def _check_layout(model: BodyModel) -> None:
    """Spatial sanity of the labels in the rest pose (SMPL frame: y up, +x the subject's left)."""
    v, _ = rest_skeleton(model)
    parts = vertex_body_parts(model)
    assert parts.shape == (model.num_vertices,) and parts.dtype == torch.long

    def centre(name: str) -> torch.Tensor:
        sel = parts == P[name]
        assert sel.any(), name
        return v[sel].mean(0)

    # the head is the top of the body, the feet its bottom
    assert v[parts == P["head"], 1].max() >= v[:, 1].max() - 1e-6
    assert v[parts == P["head"], 1].mean() > centre("neck")[1] > centre("torso")[1] > centre("hips")[1]
    for side in ("left", "right"):
        assert centre(f"{side}_thigh")[1] > centre(f"{side}_calf")[1] > centre(f"{side}_foot")[1]
    lowest = v[:, 1].argmin()
    assert parts[lowest] in (P["left_foot"], P["right_foot"])
    # left is +x
    for a in ("upper_arm", "forearm", "hand", "thigh", "calf", "foot"):
        assert centre(f"left_{a}")[0] > 0 > centre(f"right_{a}")[0], a
    assert centre("left_hand")[0] > centre("left_forearm")[0] > centre("left_upper_arm")[0]
    # faces: every part has faces and face labels agree with their vertices' labels
    fparts = face_body_parts(model)
    assert fparts.shape == (model.faces.shape[0],)
    assert set(fparts.unique().tolist()) == set(range(len(BODY_PARTS)))
    fv = parts[model.faces]
    agree = (fv == fparts[:, None]).sum(1)
    assert (agree >= 1).all()
    assert ((fv[:, 0] == fv[:, 1]) & (fv[:, 1] == fv[:, 2]) <= (fparts == fv[:, 0])).all()


def test_parts_on_anny(anny_body):
    _check_layout(anny_body)
    jp = joint_body_parts(anny_body)
    assert jp[anny_body.joint_names.index("head")] == "head"
    assert jp[anny_body.joint_names.index("wrist.L")] == "left_hand"
    assert jp[anny_body.joint_names.index("lowerleg01.R")] == "right_calf"


def test_limb_coordinate_on_anny(anny_body):
    parts = vertex_body_parts(anny_body)
    v, J = rest_skeleton(anny_body)
    for limb in ("left_forearm", "right_thigh", "left_upper_arm", "right_calf"):
        t = limb_coordinate(anny_body, limb)
        sel = t[parts == P[limb]]
        # the limb's vertices span [0, 1] give or take the flesh around the joints
        assert -0.3 < sel.min() < 0.2 and 0.8 < sel.max() < 1.3, (limb, sel.min(), sel.max())
    # exact at the joints themselves
    names = anny_body.joint_names
    p, d = J[names.index("upperleg01.L")], J[names.index("lowerleg01.L")]
    t = limb_coordinate(anny_body, "left_thigh")
    mid = (p + d) / 2
    nearest = (v - mid).norm(dim=1).argmin()
    expected = ((v[nearest] - p) @ (d - p)) / (d - p).dot(d - p)
    assert torch.isclose(t[nearest], expected)


def test_parts_on_smpl(smpl_dir):
    from dsrbody.body.smpl import SMPL

    model = SMPL(smpl_dir)
    assert model.joint_names == list(SMPL24.names)
    _check_layout(model)
    t = limb_coordinate(model, "right_leg")
    sel = t[vertex_body_parts(model) == P["right_calf"]]
    assert sel.median() > 0.5


def test_anny_bone_names_of_every_rig():
    assert anny_bone_part("finger2-3.L") == "left_hand"
    assert anny_bone_part("metacarpal1.R") == "right_hand"
    assert anny_bone_part("toe1-1.R") == "right_foot"
    assert anny_bone_part("upperleg02.L") == "left_thigh"
    assert anny_bone_part("lowerarm02.R") == "right_forearm"
    assert anny_bone_part("neck03") == "neck"
    assert anny_bone_part("eye.L") == "head"
    assert anny_bone_part("oris04.R") == "head"
    assert anny_bone_part("breast.L") == "torso"
    assert anny_bone_part("pelvis.R") == "hips"
    with pytest.raises(ValueError, match="unknown anny bone"):
        anny_bone_part("tail01")


class _StickModel(BodyModel):
    """A hand-made SMPL-named model: one vertex per joint, at the joint, rigidly bound to it, plus a
    vertex half-way along the left thigh bound to the left hip; faces chosen to test majority votes."""

    name = "stick"

    def __init__(self) -> None:
        super().__init__()
        self.joint_names = list(SMPL24.names)
        self.num_joints = 24
        self.shape_dim = 1
        parents = [-1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19, 20, 21]
        self.register_buffer("parents", torch.tensor(parents))
        J = torch.zeros(24, 3)
        i = SMPL24.index
        J[i("left_hip")] = torch.tensor([0.1, -0.1, 0.0])
        J[i("left_knee")] = torch.tensor([0.1, -0.5, 0.0])
        J[i("left_ankle")] = torch.tensor([0.1, -0.9, 0.0])
        J[i("head")] = torch.tensor([0.0, 0.6, 0.0])
        self.register_buffer("J", J)
        V = torch.cat([J, torch.tensor([[0.1, -0.3, 0.05]])])
        self.register_buffer("v", V)
        W = torch.zeros(25, 24)
        W[torch.arange(24), torch.arange(24)] = 1.0
        W[24, i("left_hip")] = 0.6
        W[24, i("pelvis")] = 0.4
        self.register_buffer("lbs_weights", W)
        # face 0: two left_thigh vertices + head -> left_thigh; face 1: three different parts with
        # one unit of weight each (a tie the summed weights cannot break either)
        faces = [[i("left_hip"), 24, i("head")], [i("left_knee"), i("spine1"), i("neck")]]
        self.register_buffer("faces", torch.tensor(faces))

    def forward(self, global_orient, body_pose, shape):
        B = global_orient.shape[0]
        return BodyOutput(
            vertices=self.v.expand(B, -1, -1),
            joints=self.J.expand(B, -1, -1),
            skeleton_joints=self.J.expand(B, -1, -1),
            rest_vertices=self.v.expand(B, -1, -1),
        )

    def mean_params(self):
        eye = torch.eye(3)
        return {"global_orient": eye, "body_pose": eye.expand(23, 3, 3), "shape": torch.zeros(1)}


def test_parts_on_a_hand_built_smpl_named_model():
    m = _StickModel()
    parts = vertex_body_parts(m)
    for j, name in enumerate(SMPL24.names):
        expected = {
            "pelvis": "hips", "left_hip": "left_thigh", "left_knee": "left_calf", "left_ankle": "left_foot",
            "left_foot": "left_foot", "spine3": "torso", "left_collar": "torso", "neck": "neck",
            "left_shoulder": "left_upper_arm", "right_elbow": "right_forearm", "left_wrist": "left_hand",
            "right_hand": "right_hand", "head": "head",
        }.get(name)  # fmt: skip
        if expected is not None:
            assert BODY_PARTS[parts[j]] == expected, name
    assert BODY_PARTS[parts[24]] == "left_thigh"  # 0.6 hip vs 0.4 pelvis
    faces = face_body_parts(m)
    assert BODY_PARTS[faces[0]] == "left_thigh"  # two of three vertices
    # three different parts (left_calf, torso, neck), one weight each: the first in BODY_PARTS
    # order among the tied maximum sums wins deterministically -> "neck" (index 1) < "torso" (2)
    assert BODY_PARTS[faces[1]] == "neck"
    # limb coordinate: hand-computed
    t = limb_coordinate(m, "left_thigh")
    assert torch.isclose(t[SMPL24.index("left_hip")], torch.tensor(0.0))
    assert torch.isclose(t[SMPL24.index("left_knee")], torch.tensor(1.0))
    assert torch.isclose(t[24], torch.tensor(0.5))  # (0.1,-0.3) is half-way from (0.1,-0.1) to (0.1,-0.5)
    assert torch.isclose(t[SMPL24.index("left_ankle")], torch.tensor(2.0))
    t = limb_coordinate(m, "left_leg")
    assert torch.isclose(t[SMPL24.index("left_knee")], torch.tensor(0.5))
    with pytest.raises(ValueError, match="unknown limb"):
        limb_coordinate(m, "tail")


def test_every_limb_is_defined_for_both_families(anny_body):
    for limb in LIMBS:
        assert limb_coordinate(anny_body, limb).shape == (anny_body.num_vertices,)


def test_unknown_family_is_a_clear_error():
    m = _StickModel()
    m.joint_names = [f"j{i}" for i in range(24)]
    with pytest.raises(ValueError, match="neither SMPL's nor Anny's"):
        vertex_body_parts(m)
