"""Anny adapter: frame, rest pose, kinematics against an independent SMPL-style LBS, keypoints, grads."""

from __future__ import annotations

import pytest
import roma
import torch

from dsrbody.body.anny import (
    ANNY24_BONES,
    ANNY_SMPL_EQUIVALENTS,
    ANNY_SPIN49_SOURCES,
    ANNY_TO_SMPL_FRAME,
    MID_PHENOTYPES,
    AnnyBody,
    load_anny,
)
from dsrbody.body.base import BodyModel
from dsrbody.body.keypoints import SMPL24, SPIN49


def _zero(body: BodyModel, B: int = 1, shape: torch.Tensor | None = None):
    mp = body.mean_params()
    go = mp["global_orient"].expand(B, 3, 3).clone()
    bp = mp["body_pose"].expand(B, -1, 3, 3).clone()
    sh = mp["shape"].expand(B, -1).clone() if shape is None else shape
    return go, bp, sh


def _kp(out, name: str) -> torch.Tensor:
    return out.joints[:, SPIN49.index(name)]


def _random_rotations(n: int, scale: float, gen: torch.Generator) -> torch.Tensor:
    return roma.rotvec_to_rotmat(scale * torch.randn(n, 3, generator=gen))


def test_interface(anny_body):
    b = anny_body
    assert b.name == "anny" and b.num_joints == 24 and b.shape_dim == 6
    assert b.joint_names == list(ANNY24_BONES)
    assert b.faces.shape == (27420, 3) and b.faces.dtype == torch.long
    assert b.lbs_weights.shape == (13718, 24) and b.num_vertices == 13718
    assert torch.allclose(b.lbs_weights.sum(1), torch.ones(13718), atol=1e-5)
    assert b.parents[0] == -1 and all(0 <= p < i for i, p in enumerate(b.parents.tolist()[1:], start=1))
    assert b.topology_id.startswith("27420f-")
    assert set(ANNY_SMPL_EQUIVALENTS.values()) <= set(SMPL24.names)
    mp = b.mean_params()
    assert mp["global_orient"].shape == (3, 3) and mp["body_pose"].shape == (23, 3, 3)
    assert mp["shape"].tolist() == list(MID_PHENOTYPES)


def test_construction_is_cached(anny_body):
    """A second construction reuses the loaded anny model data (no reload: the same tensors)."""
    assert load_anny() is load_anny()
    again = AnnyBody()
    assert again.anny_model is not anny_body.anny_model  # own module, so .to() stays private
    for name in ("blendshapes", "template_vertices", "vertex_bone_weights"):
        assert getattr(again.anny_model, name).data_ptr() == getattr(load_anny(), name).data_ptr()
    assert torch.equal(again.faces, anny_body.faces)


def test_to_moves_a_private_copy(anny_body):
    body = AnnyBody().to(torch.float64)
    assert body.anny_model.template_vertices.dtype == torch.float64
    assert load_anny().template_vertices.dtype == torch.float32
    assert anny_body.anny_model.template_vertices.dtype == torch.float32


def test_rest_pose_is_y_up_facing_plus_z(anny_body):
    out = anny_body(*_zero(anny_body))
    v = out.vertices[0]
    height = v[:, 1].max() - v[:, 1].min()
    assert 1.4 < height < 2.0, height
    # head above the pelvis above the feet
    nose, lank, rank = _kp(out, "OP Nose")[0], _kp(out, "OP LAnkle")[0], _kp(out, "OP RAnkle")[0]
    pelvis = out.skeleton_joints[0, 0]
    assert nose[1] > pelvis[1] + 0.4 and pelvis[1] > lank[1] + 0.5
    # facing +z: the nose and the toes are in front of the head centre and the heels
    head = out.skeleton_joints[0, anny_body.joint_names.index("head")]
    assert nose[2] > head[2] + 0.05
    assert _kp(out, "OP LBigToe")[0, 2] > _kp(out, "OP LHeel")[0, 2] + 0.1
    # +x is the subject's left
    assert _kp(out, "OP LWrist")[0, 0] > 0.2 and _kp(out, "OP RWrist")[0, 0] < -0.2
    assert lank[0] > 0 > rank[0]
    left_hand = out.skeleton_joints[0, anny_body.joint_names.index("wrist.L")]
    assert left_hand[0] > 0.3
    # the rest pose is an A-pose: the wrists hang well below the shoulders
    assert (_kp(out, "OP LShoulder")[0, 1] - _kp(out, "OP LWrist")[0, 1]) > 0.2


def test_zero_pose_is_rest_pose_and_matches_raw_anny_rest(anny_body):
    gen = torch.Generator().manual_seed(0)
    shape = torch.rand(2, 6, generator=gen)
    out = anny_body(*_zero(anny_body, 2, shape))
    assert torch.allclose(out.vertices, out.rest_vertices, atol=1e-5)
    # rest vertices are anny's rest vertices rotated into the SMPL frame
    m = load_anny()
    coeffs = m._get_phenotype_blendshape_coefficients(
        shape, torch.zeros(1, len(m.local_change_labels)), torch.zeros(1, len(m.facial_action_labels))
    )
    raw_rest = m.get_rest_vertices(coeffs)
    assert torch.allclose(out.rest_vertices, raw_rest @ ANNY_TO_SMPL_FRAME.T, atol=1e-5)
    # and the shape changes the body
    assert (out.vertices[0] - out.vertices[1]).abs().max() > 0.01


def _reference_lbs(body: AnnyBody, go, bp, shape) -> torch.Tensor:
    """Independent SMPL-style LBS (smplx's lbs.py formulas) on the adapter's rest mesh/joints/weights."""
    rest = body(*_zero(body, go.shape[0], shape))
    J = rest.skeleton_joints  # zero-pose joints = rest joints
    rot = torch.cat([go[:, None], bp], dim=1)
    parents = body.parents.tolist()
    G = [rot[:, 0]]
    t = [J[:, 0]]
    for i in range(1, body.num_joints):
        p = parents[i]
        t.append(t[p] + (G[p] @ (J[:, i] - J[:, p])[..., None])[..., 0])
        G.append(G[p] @ rot[:, i])
    G = torch.stack(G, 1)
    t = torch.stack(t, 1)
    trans = t - (G @ J[..., None])[..., 0]  # x -> G x + trans
    W = body.lbs_weights
    A = torch.einsum("vj,bjxy->bvxy", W, G)
    bt = torch.einsum("vj,bja->bva", W, trans)
    return (A @ rest.rest_vertices[..., None])[..., 0] + bt


def test_kinematics_match_smpl_style_lbs(anny_body):
    gen = torch.Generator().manual_seed(1)
    B = 2
    go = _random_rotations(B, 1.0, gen)
    bp = _random_rotations(B * 23, 0.5, gen).view(B, 23, 3, 3)
    shape = torch.rand(B, 6, generator=gen)
    out = anny_body(go, bp, shape)
    ref = _reference_lbs(anny_body, go, bp, shape)
    assert (out.vertices - ref).abs().max() < 1e-4


def test_global_orient_rotates_about_the_root(anny_body):
    go, bp, sh = _zero(anny_body)
    R = roma.rotvec_to_rotmat(torch.tensor([[0.0, 1.2, 0.0]]))
    rest = anny_body(go, bp, sh)
    out = anny_body(R, bp, sh)
    root = rest.skeleton_joints[:, :1]
    expected = (rest.vertices - root) @ R[0].T + root
    assert torch.allclose(out.vertices, expected, atol=1e-5)
    assert torch.allclose(out.skeleton_joints[:, 0], rest.skeleton_joints[:, 0], atol=1e-6)


@pytest.mark.parametrize("joint", ["lowerarm01.L", "upperleg01.R", "neck01"])
def test_rotating_one_joint_moves_only_its_descendants(anny_body, joint):
    b = anny_body
    j = b.joint_names.index(joint)
    parents = b.parents.tolist()
    desc = {j}
    for i in range(len(parents)):
        if parents[i] in desc:
            desc.add(i)
    go, bp, sh = _zero(b)
    rest = b(go, bp, sh)
    bp = bp.clone()
    bp[0, j - 1] = roma.rotvec_to_rotmat(torch.tensor([0.3, 0.8, -0.4]))
    out = b(go, bp, sh)
    moved = (out.vertices - rest.vertices).norm(dim=-1)[0]
    influence = b.lbs_weights[:, sorted(desc)].sum(1)
    assert moved[influence == 0].max() < 1e-5
    assert moved[influence > 0.5].max() > 0.05
    # joints: only the descendants move (the joint itself stays where it is)
    jmoved = (out.skeleton_joints - rest.skeleton_joints).norm(dim=-1)[0]
    for i in range(b.num_joints):
        if i in desc and i != j:
            assert jmoved[i] > 1e-3, b.joint_names[i]
        else:
            assert jmoved[i] < 1e-5, b.joint_names[i]


def test_keypoint_mapping(anny_body):
    conf = anny_body.keypoint_confidence
    assert conf.shape == (49,)
    missing = {n for n, src in ANNY_SPIN49_SOURCES.items() if not src}
    assert missing == {
        "Neck (LSP)", "Top of Head (LSP)", "Pelvis (MPII)", "Thorax (MPII)", "Spine (H36M)",
        "Jaw (H36M)", "Head (H36M)",
    }  # fmt: skip
    for i, name in enumerate(SPIN49.names):
        assert conf[i] == (0.0 if name in missing else 1.0), name
    # missing keypoints are exactly zero; present ones have regressor rows summing to 1
    rows = anny_body.keypoint_regressor.sum(1)
    assert torch.allclose(rows, conf, atol=1e-4)
    out = anny_body(*_zero(anny_body))
    assert torch.all(out.joints[0, conf == 0] == 0)
    # the same joint in the OpenPose and the GT halves, and the midpoints
    assert torch.allclose(_kp(out, "OP LKnee"), _kp(out, "Left Knee"))
    assert torch.allclose(_kp(out, "OP Nose"), _kp(out, "Nose"))
    mid = (_kp(out, "OP LHip") + _kp(out, "OP RHip")) / 2
    assert torch.allclose(_kp(out, "OP MidHip"), mid, atol=1e-6)
    # anny's own regressor on anny's own output, in the SMPL frame
    import anny

    m = load_anny()
    coco = anny.KeypointsRegressor.coco(m)
    gen = torch.Generator().manual_seed(5)
    posed = anny_body(_random_rotations(1, 1.0, gen), _random_rotations(23, 0.5, gen)[None], torch.rand(1, 6))
    raw_kp = coco({"vertices": posed.vertices})
    for name, src in ANNY_SPIN49_SOURCES.items():
        if len(src) == 1:  # anny's regressor, pruned to 99.9 % of each row's weight: < 0.5 mm
            expected = raw_kp[:, coco.labels.index(src[0])]
            assert (_kp(posed, name) - expected).norm(dim=-1).max() < 5e-4, name
    # left keypoints at +x, symmetric body
    lw, rw = _kp(out, "Left Wrist")[0], _kp(out, "Right Wrist")[0]
    assert lw[0] > 0 and torch.allclose(lw * torch.tensor([-1.0, 1, 1]), rw, atol=2e-3)


def test_gradients_flow_to_pose_and_shape(anny_body):
    gen = torch.Generator().manual_seed(2)
    go = roma.rotvec_to_rotmat(0.3 * torch.randn(2, 3, generator=gen)).requires_grad_(True)
    bp = roma.rotvec_to_rotmat(0.3 * torch.randn(2, 23, 3, generator=gen)).requires_grad_(True)
    shape = (0.2 + 0.6 * torch.rand(2, 6, generator=gen)).requires_grad_(True)
    out = anny_body(go, bp, shape)
    loss = out.vertices.square().sum() + out.joints.square().sum()
    loss.backward()
    for g in (go.grad, bp.grad, shape.grad):
        assert g is not None and torch.isfinite(g).all()
    assert go.grad.abs().sum() > 0 and shape.grad.abs().min() > 0
    assert (bp.grad.flatten(2).abs().sum(-1) > 0).all()  # every joint drives the mesh


def test_shape_gradient_matches_finite_differences(anny_body):
    go, bp, _ = _zero(anny_body)
    bp = bp.clone()
    bp[0, anny_body.joint_names.index("upperarm01.L") - 1] = roma.rotvec_to_rotmat(
        torch.tensor([0.0, 0.0, 0.7])
    )
    shape = torch.tensor([[0.3, 0.6, 0.45, 0.55, 0.4, 0.35]], requires_grad=True)
    w = torch.randn(1, 13718, 3, generator=torch.Generator().manual_seed(3))

    def f(s):
        return (anny_body(go, bp, s).vertices * w).sum()

    f(shape).backward()
    eps = 1e-2
    for k in (1, 4):  # age, height: piecewise linear in each phenotype, so central differences are exact
        e = torch.zeros(1, 6)
        e[0, k] = eps
        with torch.no_grad():
            fd = (f(shape + e) - f(shape - e)) / (2 * eps)
        assert torch.isclose(shape.grad[0, k], fd, rtol=2e-2, atol=1e-2), (k, shape.grad[0, k], fd)


def test_partial_shape_uses_mid_values(anny_body):
    go, bp, _ = _zero(anny_body)
    full = anny_body(go, bp, torch.tensor([[0.2, 0.5, 0.5, 0.5, 0.5, 0.5]]))
    part = anny_body(go, bp, torch.tensor([[0.2]]))
    assert torch.allclose(full.vertices, part.vertices)


def test_bad_inputs(anny_body):
    go, bp, sh = _zero(anny_body)
    with pytest.raises(ValueError, match="at most 6"):
        anny_body(go, bp, torch.zeros(1, 7))
    with pytest.raises(ValueError, match=r"\(B, 23, 3, 3\)"):
        anny_body(go, bp[:, :10], sh)
    with pytest.raises(ValueError, match="not allowed"):
        AnnyBody(topology="smpl")
    with pytest.raises(ValueError, match="rig"):
        AnnyBody(rig="bogus")


@pytest.fixture(scope="module")
def lowpoly():
    return AnnyBody(topology="notoes_collapse10pc")


def test_low_poly_topology(lowpoly, anny_body):
    assert lowpoly.num_vertices == 1229 and lowpoly.faces.shape == (2454, 3)
    assert lowpoly.topology_id != anny_body.topology_id
    gen = torch.Generator().manual_seed(4)
    go = _random_rotations(1, 0.5, gen)
    bp = _random_rotations(23, 0.3, gen)[None]
    sh = torch.rand(1, 6, generator=gen)
    lo, hi = lowpoly(go, bp, sh), anny_body(go, bp, sh)
    # same skeleton, and keypoints carried over to the low-poly surface within a couple of cm
    assert torch.allclose(lo.skeleton_joints, hi.skeleton_joints, atol=1e-4)
    conf = lowpoly.keypoint_confidence.bool()
    err = (lo.joints[0, conf] - hi.joints[0, conf]).norm(dim=-1)
    assert err.max() < 0.03, err.max()
    assert torch.allclose(lowpoly.keypoint_regressor.sum(1), lowpoly.keypoint_confidence, atol=1e-4)


def test_torch_skinning_matches_warp(anny_body):
    lbs = AnnyBody(skinning_method="lbs")
    gen = torch.Generator().manual_seed(6)
    args = (
        _random_rotations(2, 1.0, gen),
        _random_rotations(46, 0.4, gen).view(2, 23, 3, 3),
        torch.rand(2, 6),
    )
    assert torch.allclose(lbs(*args).vertices, anny_body(*args).vertices, atol=1e-5)


def test_pose_gradient_matches_finite_differences(anny_body):
    """Through the local-ref conversion and anny's warp skinning backward."""
    go, bp, sh = _zero(anny_body)
    j = anny_body.joint_names.index("upperleg01.R") - 1
    w = torch.randn(1, 13718, 3, generator=torch.Generator().manual_seed(7))
    base = torch.tensor([0.3, -0.2, 0.4])

    def f(aa: torch.Tensor, root: torch.Tensor) -> torch.Tensor:
        pose = torch.cat([bp[:, :j], roma.rotvec_to_rotmat(aa)[None, None], bp[:, j + 1 :]], dim=1)
        return (anny_body(roma.rotvec_to_rotmat(root)[None], pose, sh).vertices * w).sum()

    aa = base.clone().requires_grad_(True)
    root = torch.tensor([0.1, 0.5, -0.2], requires_grad=True)
    f(aa, root).backward()
    eps = 1e-3
    for k in range(3):
        e = torch.zeros(3)
        e[k] = eps
        with torch.no_grad():
            fd_aa = (f(base + e, root) - f(base - e, root)) / (2 * eps)
            fd_root = (f(base, root + e) - f(base, root - e)) / (2 * eps)
        assert torch.isclose(aa.grad[k], fd_aa, rtol=2e-3, atol=1e-2), (k, aa.grad[k], fd_aa)
        assert torch.isclose(root.grad[k], fd_root, rtol=2e-3, atol=1e-2), (k, root.grad[k], fd_root)


def test_closest_point_on_triangle_against_dense_sampling():
    """The low-poly keypoint transfer's closest-point routine vs a dense barycentric grid."""
    from dsrbody.body.anny import _triangle_closest_barycentrics

    gen = torch.Generator().manual_seed(8)
    tri = torch.randn(50, 3, 3, generator=gen, dtype=torch.float64)
    p = 2 * torch.randn(50, 3, generator=gen, dtype=torch.float64)
    a, b, c = tri[:, 0], tri[:, 1], tri[:, 2]
    bary = _triangle_closest_barycentrics(p, a, b, c)
    assert (bary >= -1e-9).all() and torch.allclose(bary.sum(-1), torch.ones(50, dtype=torch.float64))
    q = bary[:, :1] * a + bary[:, 1:2] * b + bary[:, 2:] * c
    exact = (q - p).norm(dim=-1)
    n = 200
    i, j = torch.meshgrid(torch.arange(n + 1), torch.arange(n + 1), indexing="ij")
    keep = (i + j) <= n
    u, v = i[keep].double() / n, j[keep].double() / n
    grid = a[:, None] + u[None, :, None] * (b - a)[:, None] + v[None, :, None] * (c - a)[:, None]
    sampled = (grid - p[:, None]).norm(dim=-1).min(dim=1).values
    assert (exact <= sampled + 1e-12).all()
    edge = torch.stack([(b - a).norm(dim=-1), (c - a).norm(dim=-1), (c - b).norm(dim=-1)], -1).max(-1).values
    assert (sampled - exact <= edge / n).all()


def test_check_phenotypes_names_value_range_and_source():
    from dsrbody.body.anny import PHENOTYPE_RANGES, check_phenotypes

    assert check_phenotypes([0, -1 / 3, 1, 0.5]) == [0.0, -1 / 3, 1.0, 0.5]
    assert check_phenotypes([lo for lo, _ in PHENOTYPE_RANGES.values()], "x") == [
        lo for lo, _ in PHENOTYPE_RANGES.values()
    ]
    with pytest.raises(ValueError, match=r"^my.json 'shape': Anny phenotype height = 1.2 is out of range; "
                       r"valid range \[0, 1\]$"):  # fmt: skip
        check_phenotypes([0.5, 0.5, 0.5, 0.5, 1.2], "my.json 'shape'")
    with pytest.raises(ValueError, match=r"age = nan is not a finite number"):
        check_phenotypes([0.5, float("nan")])
    with pytest.raises(ValueError, match="7 values but anny takes at most 6"):
        check_phenotypes([0.5] * 7)
