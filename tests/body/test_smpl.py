"""SMPL model: equality with smplx, LBS steps against brute force, gradients, keypoints, errors."""

from __future__ import annotations

import numpy as np
import pytest
import roma
import torch

from dsrbody.body import lbs
from dsrbody.body.keypoints import SMPL24, SMPL_SPIN49_SOURCES, SMPLH_EXTRA_VERTEX_IDS, SPIN49
from dsrbody.body.smpl import SMPL
from dsrbody.testing.smpl_files import SMPL_PARENTS, write_smpl_files

GENDERS = ("neutral", "male", "female")


@pytest.fixture(scope="module")
def models(smpl_dir):
    return {g: SMPL(smpl_dir, gender=g) for g in GENDERS}


@pytest.fixture(scope="module")
def bare_dir(tmp_path_factory):
    """A folder with only the neutral model (no regressors, no mean parameters), 12 betas."""
    return write_smpl_files(
        tmp_path_factory.mktemp("smpl_bare"),
        genders=("neutral",),
        formats=("npz",),
        num_betas=12,
        regressors=False,
        mean_params=False,
    )


def _random_inputs(B: int, S: int, seed: int = 0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    go = roma.rotvec_to_rotmat(torch.randn(B, 3, generator=g, dtype=torch.float64)).to(dtype)
    bp = roma.rotvec_to_rotmat(0.5 * torch.randn(B, 23, 3, generator=g, dtype=torch.float64)).to(dtype)
    betas = (1.5 * torch.randn(B, S, generator=g, dtype=torch.float64)).to(dtype)
    return go, bp, betas


def _smplx_model(smpl_dir, gender, num_betas=10):
    smplx = pytest.importorskip("smplx")
    with np.load(smpl_dir / f"SMPL_{gender.upper()}.npz", allow_pickle=True) as z:
        struct = smplx.utils.Struct(**{k: z[k] for k in z.files})
    return smplx.SMPL(str(smpl_dir), data_struct=struct, num_betas=num_betas)


# ------------------------------------------------------------------------------------------------
# equality with smplx
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("gender", GENDERS)
def test_equals_smplx_on_the_same_file(smpl_dir, models, gender):
    ref = _smplx_model(smpl_dir, gender)
    model = models[gender]
    go, bp, betas = _random_inputs(16, 10, seed=GENDERS.index(gender))
    out = model(go, bp, betas)
    r = ref(global_orient=go.unsqueeze(1), body_pose=bp, betas=betas, pose2rot=False)
    assert out.vertices.shape == (16, 6890, 3)
    assert (out.vertices - r.vertices).abs().max() < 1e-5
    assert (out.skeleton_joints - r.joints[:, :24]).abs().max() < 1e-5
    # smplx appends the smplh keypoint vertices (face, then feet) after the 24 joints, as SPIN uses them
    ids = list(SMPLH_EXTRA_VERTEX_IDS.values())
    assert (out.vertices[:, ids] - r.joints[:, 24 : 24 + len(ids)]).abs().max() < 1e-5
    assert (out.joints[:, SPIN49.index("OP Nose")] - r.joints[:, 24]).abs().max() < 1e-5


def test_pkl_and_npz_models_agree(smpl_dir, models):
    from_npz = SMPL(smpl_dir / "SMPL_NEUTRAL.npz")
    go, bp, betas = _random_inputs(4, 10, seed=5)
    a, b = models["neutral"](go, bp, betas), from_npz(go, bp, betas)
    torch.testing.assert_close(a.vertices, b.vertices, rtol=0, atol=0)
    torch.testing.assert_close(a.joints, b.joints, rtol=0, atol=0)


def test_attributes(models):
    m = models["female"]
    assert m.name == "smpl" and m.num_joints == 24 and m.shape_dim == 10 and m.num_vertices == 6890
    assert m.joint_names == list(SMPL24.names)
    assert m.faces.shape == (13776, 3) and m.faces.dtype == torch.long
    assert m.parents.tolist() == SMPL_PARENTS
    assert m.lbs_weights.shape == (6890, 24) and m.keypoint_set is SPIN49
    assert m.topology_id == models["male"].topology_id  # genders share the mesh
    for name in ("faces", "parents", "lbs_weights", "v_template", "shapedirs", "posedirs", "J_regressor"):
        assert name in dict(m.named_buffers())


# ------------------------------------------------------------------------------------------------
# the LBS steps against brute-force references
# ------------------------------------------------------------------------------------------------
def _brute_force_smpl(model: SMPL, go, bp, betas):
    """SMPL written out per joint and per vertex in float64 from the raw file arrays."""
    d = {
        k: getattr(model, k).double()
        for k in ("v_template", "shapedirs", "posedirs", "J_regressor", "lbs_weights")
    }
    V = d["v_template"].shape[0]
    S = betas.shape[1]
    R = torch.cat([go[:, None], bp], 1).double()
    out = []
    for b in range(R.shape[0]):
        v = d["v_template"] + torch.einsum("s,scv->vc", betas[b].double(), d["shapedirs"][:S])
        J = d["J_regressor"] @ v
        feat = torch.cat([(R[b, j] - torch.eye(3, dtype=torch.float64)).reshape(-1) for j in range(1, 24)])
        v = v + torch.einsum("p,pcv->vc", feat, d["posedirs"])
        G = [None] * 24
        for j in range(24):
            local = torch.eye(4, dtype=torch.float64)
            local[:3, :3] = R[b, j]
            local[:3, 3] = J[j] - (J[SMPL_PARENTS[j]] if j else 0)
            G[j] = local if j == 0 else G[SMPL_PARENTS[j]] @ local
        A = torch.stack([g.clone() for g in G])
        A[:, :3, 3] -= (A[:, :3, :3] @ J[:, :, None])[..., 0]
        T = torch.einsum("vj,jab->vab", d["lbs_weights"], A)
        vh = torch.cat([v, torch.ones(V, 1, dtype=torch.float64)], 1)
        out.append(((T @ vh[:, :, None])[:, :3, 0], torch.stack([g[:3, 3] for g in G])))
    return torch.stack([o[0] for o in out]), torch.stack([o[1] for o in out])


def test_matches_brute_force_float64(smpl_dir):
    model = SMPL(smpl_dir, dtype=torch.float64)
    go, bp, betas = _random_inputs(2, 7, seed=11, dtype=torch.float64)
    out = model(go, bp, betas)
    v_ref, j_ref = _brute_force_smpl(model, go, bp, betas)
    torch.testing.assert_close(out.vertices, v_ref, rtol=0, atol=1e-10)
    torch.testing.assert_close(out.skeleton_joints, j_ref, rtol=0, atol=1e-10)
    # the reference lbs() chains the same steps from the basic arrays
    rot = torch.cat([go[:, None], bp], 1)
    vertex_major = {k: getattr(model, k).permute(0, 2, 1).flatten(1) for k in ("shapedirs", "posedirs")}
    v2, j2, rest = lbs.lbs(
        betas,
        rot,
        model.v_template,
        vertex_major["shapedirs"],
        vertex_major["posedirs"],
        model.J_regressor,
        SMPL_PARENTS,
        model.lbs_weights,
    )
    torch.testing.assert_close(v2, v_ref, rtol=0, atol=1e-10)
    torch.testing.assert_close(rest, out.rest_vertices, rtol=0, atol=1e-12)


def test_rest_pose_identity_gives_the_shaped_template(models):
    m = models["neutral"]
    eye = torch.eye(3).expand(3, 24, 3, 3)
    betas = torch.randn(3, 10)
    out = m(eye[:, 0], eye[:, 1:], betas)
    torch.testing.assert_close(out.vertices, out.rest_vertices, rtol=0, atol=1e-6)
    expected = m.v_template + torch.einsum("bs,scv->bvc", betas, m.shapedirs)
    torch.testing.assert_close(out.rest_vertices, expected, rtol=0, atol=1e-5)
    torch.testing.assert_close(out.skeleton_joints, m.J_regressor @ expected, rtol=0, atol=1e-5)


def test_skinning_gradcheck_and_reference():
    g = torch.Generator().manual_seed(0)
    v = torch.randn(2, 9, 3, dtype=torch.float64, generator=g, requires_grad=True)
    w = torch.rand(9, 5, dtype=torch.float64, generator=g, requires_grad=True)
    A = torch.randn(2, 5, 3, 4, dtype=torch.float64, generator=g, requires_grad=True)
    assert torch.autograd.gradcheck(lbs.skin_vertices, (v, w, A))
    torch.testing.assert_close(lbs.skin_vertices(v, w, A), lbs.skin_vertices_reference(v, w, A))


def test_kinematic_levels_and_bad_trees():
    levels = lbs.kinematic_levels(SMPL_PARENTS)
    assert sorted(j for idx, _ in levels for j in idx) == list(range(1, 24))
    assert levels[0][0] == [1, 2, 3]
    with pytest.raises(ValueError, match="before"):
        lbs.kinematic_levels([-1, 2, 0])


def test_fewer_betas_equal_zero_padding(models):
    m = models["male"]
    go, bp, betas = _random_inputs(2, 10, seed=3)
    betas[:, 4:] = 0
    a = m(go, bp, betas[:, :4])
    b = m(go, bp, betas)
    torch.testing.assert_close(a.vertices, b.vertices, rtol=0, atol=1e-6)
    c = m(go, bp, betas[:, :0])  # no shape coefficients at all: the template shape
    assert c.vertices.shape == (2, 6890, 3)


# ------------------------------------------------------------------------------------------------
# gradients
# ------------------------------------------------------------------------------------------------
def test_gradients_flow_to_pose_and_shape(models):
    m = models["neutral"]
    go, bp, betas = _random_inputs(3, 10, seed=2)
    go.requires_grad_(True)
    bp.requires_grad_(True)
    betas.requires_grad_(True)
    out = m(go, bp, betas)
    (out.vertices.square().sum() + out.joints.square().sum()).backward()
    for t in (go, bp, betas):
        assert t.grad is not None and torch.isfinite(t.grad).all() and t.grad.abs().sum() > 0
    assert (bp.grad.flatten(2).abs().sum(-1) > 0).all()  # every joint's rotation matters


def test_gradients_match_finite_differences(smpl_dir):
    model = SMPL(smpl_dir / "SMPL_NEUTRAL.npz", dtype=torch.float64)
    go, bp, betas = _random_inputs(1, 10, seed=9, dtype=torch.float64)
    weights = torch.randn(1, 6890, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1))

    def loss(rotvec: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        R = roma.rotvec_to_rotmat(rotvec)
        out = model(R[:, 0], R[:, 1:], b)
        return (out.vertices * weights).sum() + out.joints.sum()

    rotvec = roma.rotmat_to_rotvec(torch.cat([go[:, None], bp], 1)).requires_grad_(True)
    b = betas.clone().requires_grad_(True)
    loss(rotvec, b).backward()
    eps = 1e-6
    for k in range(10):
        d = torch.zeros_like(b)
        d[0, k] = eps
        fd = (loss(rotvec.detach(), b.detach() + d) - loss(rotvec.detach(), b.detach() - d)) / (2 * eps)
        assert abs(fd.item() - b.grad[0, k].item()) < 1e-5 * max(1.0, abs(fd.item()))
    for j, c in ((0, 1), (1, 0), (4, 2), (16, 2), (20, 1)):
        d = torch.zeros_like(rotvec)
        d[0, j, c] = eps
        fd = (loss(rotvec.detach() + d, b.detach()) - loss(rotvec.detach() - d, b.detach())) / (2 * eps)
        assert abs(fd.item() - rotvec.grad[0, j, c].item()) < 1e-5 * max(1.0, abs(fd.item()))


# ------------------------------------------------------------------------------------------------
# keypoints, H36M joints, mean parameters
# ------------------------------------------------------------------------------------------------
def test_spin49_keypoints_follow_their_sources(smpl_dir, models):
    m = models["female"]
    go, bp, betas = _random_inputs(2, 10, seed=4)
    out = m(go, bp, betas)
    assert out.joints.shape == (2, 49, 3)
    extra = torch.as_tensor(np.load(smpl_dir / "J_regressor_extra.npy"), dtype=torch.float32)
    for k, (kind, i) in enumerate(SMPL_SPIN49_SOURCES):
        if kind == "joint":
            expected = out.skeleton_joints[:, i]
        elif kind == "vertex":
            expected = out.vertices[:, i]
        else:
            expected = torch.einsum("v,bvc->bc", extra[i], out.vertices)
        torch.testing.assert_close(out.joints[:, k], expected, rtol=0, atol=1e-5, msg=SPIN49.names[k])
    torch.testing.assert_close(m.spin49_joints(out.vertices, out.skeleton_joints), out.joints)


def test_h36m_joints(smpl_dir, models):
    m = models["male"]
    go, bp, betas = _random_inputs(2, 10, seed=6)
    out = m(go, bp, betas)
    h = m.h36m_joints(out.vertices)
    assert h.shape == (2, 17, 3)
    reg = np.load(smpl_dir / "J_regressor_h36m.npy")
    expected = np.einsum("kv,bvc->bkc", reg, out.vertices.detach().double().numpy())
    np.testing.assert_allclose(h.detach().numpy(), expected, atol=1e-5)
    with pytest.raises(ValueError, match="vertices"):
        m.h36m_joints(out.vertices[:, :100])


def test_mean_params_from_file(smpl_dir, models):
    mp = models["neutral"].mean_params()
    data = np.load(smpl_dir / "smpl_mean_params.npz")
    a = data["pose"].reshape(24, 3, 2)
    R = torch.cat([mp["global_orient"][None], mp["body_pose"]]).double().numpy()
    np.testing.assert_allclose(R[:, :, :2], a, atol=1e-6)  # the 6D are the first two columns
    np.testing.assert_allclose(np.linalg.det(R), 1.0, atol=1e-5)
    np.testing.assert_allclose(mp["shape"].numpy(), data["shape"], atol=1e-6)
    np.testing.assert_allclose(mp["cam"].numpy(), data["cam"], atol=1e-6)
    assert mp["body_pose"].shape == (23, 3, 3) and mp["shape"].shape == (10,)


def test_without_optional_files(bare_dir):
    m = SMPL(bare_dir)
    assert m.keypoint_set is SMPL24 and m.shape_dim == 12
    go, bp, betas = _random_inputs(2, 12, seed=8)
    out = m(go, bp, betas)
    torch.testing.assert_close(out.joints, out.skeleton_joints)
    with pytest.raises(FileNotFoundError) as e:
        m.h36m_joints(out.vertices)
    assert "J_regressor_h36m.npy" in str(e.value) and "SPIN" in str(e.value)
    with pytest.raises(FileNotFoundError, match="J_regressor_extra.npy"):
        m.spin49_joints(out.vertices, out.skeleton_joints)
    mp = m.mean_params()
    torch.testing.assert_close(mp["body_pose"], torch.eye(3).expand(23, 3, 3))
    assert mp["shape"].abs().sum() == 0 and "cam" not in mp
    assert SMPL(bare_dir, num_betas=5).shape_dim == 5


def test_regressor_dir_is_used(bare_dir, smpl_dir):
    m = SMPL(bare_dir, regressor_dir=smpl_dir)
    assert m.keypoint_set is SPIN49 and m.J_regressor_h36m is not None


# ------------------------------------------------------------------------------------------------
# errors
# ------------------------------------------------------------------------------------------------
def test_too_many_betas(bare_dir, models):
    with pytest.raises(ValueError) as e:
        SMPL(bare_dir, num_betas=13)
    assert "num_betas=13" in str(e.value) and "12 shape components" in str(e.value)
    m = models["neutral"]
    go, bp, betas = _random_inputs(1, 11, seed=0)
    with pytest.raises(ValueError, match="11 coefficients but this model supports at most 10"):
        m(go, bp, betas)


def test_wrong_tensor_shapes(models):
    m = models["neutral"]
    go, bp, betas = _random_inputs(2, 10, seed=0)
    with pytest.raises(ValueError, match=r"body_pose must be \(B, 23, 3, 3\)"):
        m(go, bp[:, :22], betas)
    with pytest.raises(ValueError, match=r"global_orient must be \(B, 3, 3\)"):
        m(go.reshape(2, 9), bp, betas)
    with pytest.raises(ValueError, match="batch sizes differ"):
        m(go, bp, betas[:1])
    with pytest.raises(ValueError, match=r"shape must be \(B, S\)"):
        m(go, bp, betas[0])


@pytest.mark.parametrize("parents", [[-1, 0, 1, 1, 0, 4, 2, 6, 6, 3], [-1, 0, 0, 1, 2, 3, 4], [-1]])
def test_rigid_transform_on_other_trees(parents):
    g = torch.Generator().manual_seed(len(parents))
    J = len(parents)
    R = roma.rotvec_to_rotmat(torch.randn(2, J, 3, dtype=torch.float64, generator=g))
    joints = torch.randn(2, J, 3, dtype=torch.float64, generator=g)
    posed, A = lbs.batch_rigid_transform(R, joints, parents)
    for b in range(2):
        G = []
        for j in range(J):
            local = torch.eye(4, dtype=torch.float64)
            local[:3, :3] = R[b, j]
            local[:3, 3] = joints[b, j] - (joints[b, parents[j]] if j else 0)
            G.append(local if j == 0 else G[parents[j]] @ local)
        for j in range(J):
            torch.testing.assert_close(posed[b, j], G[j][:3, 3])
            torch.testing.assert_close(A[b, j, :, :3], G[j][:3, :3])
            torch.testing.assert_close(A[b, j, :, 3], G[j][:3, 3] - G[j][:3, :3] @ joints[b, j])
