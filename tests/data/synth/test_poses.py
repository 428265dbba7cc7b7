"""The pose distribution: limits, determinism, sign conventions on a real skeleton, retargeting."""

from __future__ import annotations

import numpy as np
import pytest
import roma
import torch

from dsrbody.body.keypoints import SMPL24
from dsrbody.data.synth.poses import (
    JOINT_LIMITS,
    POSE_FAMILIES,
    retarget_tpose,
    sample_pose,
    smpl_equivalents,
)

I = {n: i for i, n in enumerate(SMPL24.names)}


@pytest.mark.parametrize("family", list(POSE_FAMILIES))
def test_families_inside_limits_and_deterministic(family):
    for seed in range(20):
        p = sample_pose(np.random.default_rng(seed), family)
        assert (p.euler >= JOINT_LIMITS[..., 0] - 1e-12).all() and (
            p.euler <= JOINT_LIMITS[..., 1] + 1e-12
        ).all()
        assert np.allclose(p.rotmats[0], np.eye(3))
        q = sample_pose(np.random.default_rng(seed), family)
        assert np.array_equal(p.euler, q.euler)


def test_right_limits_mirror_left():
    for side in ("hip", "knee", "shoulder", "elbow", "wrist"):
        lo_l, hi_l = JOINT_LIMITS[I[f"left_{side}"]].T
        lo_r, hi_r = JOINT_LIMITS[I[f"right_{side}"]].T
        assert np.allclose(lo_r[0], lo_l[0]) and np.allclose(hi_r[1:], -lo_l[1:])


def _pose_joints(body, euler: dict[str, tuple[float, float, float]]) -> torch.Tensor:
    """Skeleton joints of ``body`` posed by T-pose-semantics Euler angles, indexed by SMPL24 name."""
    e = torch.zeros(1, 24, 3, dtype=torch.float64)
    for name, v in euler.items():
        e[0, I[name]] = torch.tensor(v, dtype=torch.float64)
    R = roma.euler_to_rotmat("XYZ", e)
    J = body.num_joints
    shape = body.mean_params()["shape"][None].float()  # Anny's zero phenotypes would be a baby
    with torch.no_grad():
        rest = body(torch.eye(3)[None], torch.eye(3).expand(1, J - 1, 3, 3), shape)
        eq = smpl_equivalents(body)
        R = retarget_tpose(R, rest.skeleton_joints[0].double(), body.joint_names, body.parents, eq).float()
        joints = body(torch.eye(3)[None], R[:, 1:], shape).skeleton_joints[0]
    out = torch.full((24, 3), float("nan"))
    for m_name, s_name in eq.items():
        out[I[s_name]] = joints[body.joint_names.index(m_name)]
    return out


def test_sign_conventions_on_anny(anny_body):
    t = _pose_joints(anny_body, {})
    # T-pose after retargeting: arms horizontal, the left arm toward +x
    d = t[I["left_elbow"]] - t[I["left_shoulder"]]
    assert d[0] > 0 and abs(float(d[1])) < 0.03 * float(d.norm())
    d = t[I["right_elbow"]] - t[I["right_shoulder"]]
    assert d[0] < 0 and abs(float(d[1])) < 0.03 * float(d.norm())
    # knee flexion (+x) sends the ankle backward (-z)
    p = _pose_joints(anny_body, {"left_knee": (1.0, 0, 0)})
    assert p[I["left_ankle"], 2] < t[I["left_ankle"], 2] - 0.1
    # hip flexion (-x) sends the knee forward (+z)
    p = _pose_joints(anny_body, {"left_hip": (-1.0, 0, 0)})
    assert p[I["left_knee"], 2] > t[I["left_knee"], 2] + 0.1
    # left shoulder -z lowers the arm; -y brings it forward
    p = _pose_joints(anny_body, {"left_shoulder": (0, 0, -1.2)})
    assert p[I["left_elbow"], 1] < t[I["left_elbow"], 1] - 0.1
    p = _pose_joints(anny_body, {"left_shoulder": (0, -1.2, 0)})
    assert p[I["left_elbow"], 2] > t[I["left_elbow"], 2] + 0.1
    # left elbow -y brings the forearm forward; right elbow mirrored (+y)
    p = _pose_joints(anny_body, {"left_elbow": (0, -1.2, 0), "right_elbow": (0, 1.2, 0)})
    assert p[I["left_wrist"], 2] > t[I["left_wrist"], 2] + 0.1
    assert p[I["right_wrist"], 2] > t[I["right_wrist"], 2] + 0.1
    # spine forward bend (+x) moves the head forward
    p = _pose_joints(anny_body, {"spine2": (0.6, 0, 0)})
    assert p[I["head"], 2] > t[I["head"], 2] + 0.1


def test_standing_arms_hang_down_on_anny(anny_body):
    ys = []
    for seed in range(5):
        pose = sample_pose(np.random.default_rng(seed), "standing")
        e = {n: tuple(pose.euler[i]) for n, i in I.items()}
        j = _pose_joints(anny_body, e)
        ys.append(float(j[I["left_wrist"], 1] - j[I["left_shoulder"], 1]))
    assert max(ys) < -0.3  # wrists well below the shoulders
