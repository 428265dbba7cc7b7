"""Fitting priors against hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch

from dsrbody.body.base import BodyModel
from dsrbody.body.keypoints import SMPL24
from dsrbody.fit.priors import joint_limit_penalty, joint_limit_table, pose_angle_prior, shape_prior
from dsrbody.geometry.rotations import axis_angle_to_matrix


class _SmplNames(BodyModel):
    """A skeleton named as SMPL's (the limits need nothing else)."""

    name = "smpl"
    joint_names = list(SMPL24.names)


def test_pose_angle_prior_by_hand():
    aa = torch.zeros(2, 3, 3)
    aa[0, 0] = torch.tensor([0.3, 0.0, 0.0])
    aa[1, 2] = torch.tensor([0.0, 0.4, 0.3])  # angle 0.5
    got = pose_angle_prior(axis_angle_to_matrix(aa))
    torch.testing.assert_close(got, torch.tensor([0.09 / 3, 0.25 / 3]))


def test_joint_limits_smpl_knee_by_hand():
    index, limits = joint_limit_table(_SmplNames())
    assert index.tolist() == list(range(1, 24))  # every joint but the root
    knee = SMPL24.index("left_knee")
    assert limits[index.tolist().index(knee), 0].tolist() == pytest.approx([0.0, 2.4])
    aa = torch.zeros(3, 24, 3)
    aa[1, knee, 0] = -0.5  # knee bent backwards by 0.5 rad: 0.5 below its lower limit
    aa[2, knee, 0] = 1.0  # a normal flexion
    pen = joint_limit_penalty(axis_angle_to_matrix(aa), index, limits)
    torch.testing.assert_close(pen, torch.tensor([0.0, 0.25, 0.0]), atol=1e-6, rtol=0)


def test_joint_limits_anny_skip_the_arms(anny_body):
    index, _ = joint_limit_table(anny_body)
    names = {anny_body.joint_names[i] for i in index.tolist()}
    assert {"lowerleg01.L", "lowerleg01.R", "upperleg01.L", "neck01", "head"} <= names
    assert not any(n.startswith(("upperarm", "lowerarm", "wrist", "clavicle", "root")) for n in names)


def test_joint_limit_gradient_matches_finite_difference():
    index, limits = joint_limit_table(_SmplNames())
    knee = SMPL24.index("right_knee")
    x = torch.tensor(-0.3, dtype=torch.float64, requires_grad=True)

    def f(v):
        aa = torch.zeros(1, 24, 3, dtype=torch.float64)
        aa[0, knee, 0] = v
        return joint_limit_penalty(axis_angle_to_matrix(aa), index, limits.double())[0]

    f(x).backward()
    h = 1e-6
    fd = (f(torch.tensor(-0.3 + h, dtype=torch.float64)) - f(torch.tensor(-0.3 - h, dtype=torch.float64))) / (
        2 * h
    )
    assert float(x.grad) == pytest.approx(float(fd), rel=1e-5)
    assert float(x.grad) == pytest.approx(2 * -0.3, rel=1e-5)  # d/dx (0 - x)^2 = 2x


def test_shape_prior():
    s = torch.tensor([[1.0, -1.0, 2.0], [0.0, 0.0, 0.0]])
    torch.testing.assert_close(shape_prior(s, False), torch.tensor([2.0, 0.0]))
    assert math.isclose(float(shape_prior(s, True)[0]), 2.0)


def test_shape_prior_is_centred_on_the_mean_body(anny_body):
    """Anny's mean body is not at logit 0 for every phenotype: the prior centred on the head's
    ``init_shape`` is 0 at the mean body and grows with the distance from it, by hand."""
    from dsrbody.fit import mean_regressor
    from dsrbody.fit.priors import shape_prior

    init = mean_regressor(anny_body).head.init_shape.reshape(1, -1)
    assert float(init.abs().max()) > 0.1  # else this test would not tell the two priors apart
    assert float(shape_prior(init, True, init)) == 0.0
    assert float(shape_prior(init, True)) > 0.0  # the uncentred prior pulls the mean body away
    x = init + torch.tensor([[0.3, 0.0, -0.6, 0.0, 0.0, 0.0]])
    assert abs(float(shape_prior(x, True, init)) - (0.09 + 0.36) / 6) < 1e-6
