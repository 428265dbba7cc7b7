"""Fitting priors against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest
import roma
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


# ------------------------------------------------------------------------------------- pose GMM
def _toy_gmm(K=3, J=3, seed=0):
    from dsrbody.fit.priors import PoseGMM

    g = torch.Generator().manual_seed(seed)
    D = 3 * J
    means = 0.3 * torch.randn(K, D, generator=g)
    A = torch.randn(K, D, D, generator=g)
    cov = A @ A.transpose(1, 2) / D + 0.05 * torch.eye(D)
    weights = torch.rand(K, generator=g) + 0.2
    return PoseGMM(means, torch.linalg.inv(cov), weights, "toy"), means, cov, weights / weights.sum()


def test_pose_gmm_is_the_mixture_negative_log_density_up_to_a_constant():
    """Against scipy's multivariate normal densities: nll(x) - nll(y) = log p(y) - log p(x)."""
    from scipy.stats import multivariate_normal

    gmm, means, cov, w = _toy_gmm()
    g = torch.Generator().manual_seed(1)
    aa = 0.4 * torch.randn(5, 3, 3, generator=g, dtype=torch.float64)
    nll = gmm(roma.rotvec_to_rotmat(aa).float()).double()
    x = aa.reshape(5, -1).numpy()
    dens = sum(float(w[k]) * multivariate_normal(means[k].double().numpy(), cov[k].double().numpy()).pdf(x)
               for k in range(len(w)))  # fmt: skip
    logp = torch.as_tensor(np.log(dens))
    torch.testing.assert_close(nll - nll[0], -(logp - logp[0]), atol=2e-3, rtol=1e-4)


def test_pose_gmm_gradient_matches_finite_difference():
    gmm, *_ = _toy_gmm()
    aa = (0.3 * torch.randn(2, 3, 3, generator=torch.Generator().manual_seed(2))).double()
    f = lambda a: gmm(roma.rotvec_to_rotmat(a)).sum()  # noqa: E731
    gmm.means, gmm.precisions, gmm._log_peak = (
        gmm.means.double(),
        gmm.precisions.double(),
        gmm._log_peak.double(),
    )
    assert torch.autograd.gradcheck(f, (aa.requires_grad_(True),), eps=1e-6, atol=1e-5)


def test_pose_gmm_save_load_and_bad_files(tmp_path):
    from dsrbody.fit.priors import PoseGMM

    gmm, *_ = _toy_gmm()
    gmm.save(tmp_path / "g.npz")
    back = PoseGMM.load(tmp_path / "g.npz")
    assert back.body_model == "toy" and back.num_joints == 3
    x = roma.rotvec_to_rotmat(0.2 * torch.ones(1, 3, 3))
    torch.testing.assert_close(back(x), gmm(x))
    np.savez(tmp_path / "bad.npz", means=np.zeros((2, 9)))
    with pytest.raises(ValueError, match=r"bad\.npz: not a pose prior file \(missing precisions, weights\)"):
        PoseGMM.load(tmp_path / "bad.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match=r"junk\.npz: not a pose prior file"):
        PoseGMM.load(tmp_path / "junk.npz")
    (tmp_path / "cut.npz").write_bytes((tmp_path / "g.npz").read_bytes()[:2000])  # a download cut short
    with pytest.raises(ValueError, match=r"cut\.npz: not a pose prior file"):
        PoseGMM.load(tmp_path / "cut.npz")
    with pytest.raises(FileNotFoundError, match="missing.npz"):
        PoseGMM.load(tmp_path / "missing.npz")
    bad = gmm.precisions.clone()
    bad[0] = -bad[0]  # negative definite: the 9 x 9 determinant is negative, but an even size would hide it
    with pytest.raises(ValueError, match="not symmetric positive definite"):
        PoseGMM(gmm.means, bad, gmm.weights)
    with pytest.raises(ValueError, match="covers 3 body joints"):
        gmm(roma.rotvec_to_rotmat(torch.zeros(1, 4, 3)))


def test_fit_pose_gmm_finds_two_clusters():
    pytest.importorskip("sklearn")
    from dsrbody.fit.priors import fit_pose_gmm

    rng = np.random.default_rng(0)
    a = rng.normal(0.0, 0.05, (300, 2, 3))
    b = rng.normal(0.0, 0.05, (100, 2, 3)) + np.array([0.0, 0.0, 0.8])
    gmm = fit_pose_gmm(np.concatenate([a, b]), components=2, body_model="toy")
    order = torch.argsort(gmm.weights)
    torch.testing.assert_close(gmm.weights[order], torch.tensor([0.25, 0.75]), atol=0.01, rtol=0)
    torch.testing.assert_close(gmm.means[order[0], 2], torch.tensor(0.8), atol=0.03, rtol=0)
    inside = roma.rotvec_to_rotmat(torch.tensor([[[0.0, 0.0, 0.8]] * 2]).float())
    between = roma.rotvec_to_rotmat(torch.tensor([[[0.0, 0.0, 0.4]] * 2]).float())
    assert float(gmm(inside)) < float(gmm(between))
    with pytest.raises(ValueError, match="need >= 10 each"):
        fit_pose_gmm(a[:15], components=2)


def test_shipped_pose_prior(anny_body, smpl_dir):
    from dsrbody.body.factory import build_body_model
    from dsrbody.fit.priors import default_pose_prior

    gmm = default_pose_prior(anny_body)
    assert gmm is not None and gmm.num_joints == anny_body.num_joints - 1 and gmm.body_model == "anny"
    rest = torch.eye(3).expand(1, anny_body.num_joints - 1, 3, 3)
    bent = rest.clone()
    bent[0, 3] = roma.rotvec_to_rotmat(torch.tensor([0.0, 0.0, 2.5]))  # a spine bent sideways by 143 deg
    assert float(gmm(bent)) > float(gmm(rest)) + 10
    assert default_pose_prior(build_body_model("smpl", model_path=smpl_dir)) is None
