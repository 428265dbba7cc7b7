"""HMR head and Regressor: SPIN's names, the IEF start point, output shapes and the camera."""

from __future__ import annotations

import math

import pytest
import torch
from models_testkit import TinyBody, tiny_backbone

from dsrbody.geometry.cameras import focal_for_res
from dsrbody.geometry.rotations import axis_angle_to_matrix, matrix_to_rot6d, rot6d_to_matrix
from dsrbody.models.hmr import CAMERA_FLIP, HMRHead, Regressor


def test_head_names_and_shapes_are_spins():
    head = HMRHead(2048)  # SMPL: 24 joints, 10 betas
    sd = head.state_dict()
    assert list(sd) == [
        "init_pose", "init_shape", "init_cam",
        "fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias",
        "decpose.weight", "decpose.bias", "decshape.weight", "decshape.bias", "deccam.weight", "deccam.bias",
    ]  # fmt: skip
    assert sd["fc1.weight"].shape == (1024, 2048 + 144 + 13)
    assert sd["decpose.weight"].shape == (144, 1024)
    assert (
        sd["init_pose"].shape == (1, 144)
        and sd["init_shape"].shape == (1, 10)
        and sd["init_cam"].shape == (1, 3)
    )
    assert (
        isinstance(head.drop1, torch.nn.Dropout)
        and head.drop1.p == 0.5
        and isinstance(head.drop2, torch.nn.Dropout)
    )
    # xavier_uniform with gain 0.01: |w| <= 0.01 * sqrt(6 / (fan_in + fan_out))
    for dec, fan_out in ((head.decpose, 144), (head.decshape, 10), (head.deccam, 3)):
        bound = 0.01 * math.sqrt(6.0 / (1024 + fan_out))
        assert dec.weight.abs().max() <= bound and dec.weight.abs().max() > 0.5 * bound


def test_head_sizes_follow_the_body_model():
    head = HMRHead(512, num_joints=24, shape_dim=6)  # Anny: 24-bone rig, 6 phenotypes
    assert head.fc1.in_features == 512 + 24 * 6 + 6 + 3
    assert head.decshape.out_features == 6


def test_first_iteration_starts_from_the_mean_and_feeds_back():
    torch.manual_seed(0)
    J, S, C = 5, 3, 16
    init_pose = torch.randn(J * 6)
    init_shape = torch.randn(S)
    head = HMRHead(
        C, J, S, init_pose=init_pose, init_shape=init_shape, init_cam=torch.tensor([0.9, 0.1, -0.1])
    )
    head.eval()
    seen = []
    head.fc1.register_forward_pre_hook(lambda m, args: seen.append(args[0][:, C:].detach().clone()))
    feats = torch.randn(2, C, 3, 3)
    out = head(feats, return_iterations=True)
    assert len(seen) == 3 and len(out["iterations"]) == 3
    start = torch.cat([init_pose, init_shape, torch.tensor([0.9, 0.1, -0.1])])
    assert torch.equal(seen[0], start.expand(2, -1))
    for i in (1, 2):  # iteration i reads the estimate of iteration i-1
        it = out["iterations"][i - 1]
        assert torch.allclose(seen[i], torch.cat([it["pose6d"], it["shape"], it["cam"]], dim=1))
    # the features are average-pooled (SPIN's AvgPool2d(7) on a 7x7 map)
    assert torch.allclose(head(feats)["pose6d"], head(feats.mean(dim=(2, 3)))["pose6d"])


def test_regressor_outputs_and_camera():
    torch.manual_seed(1)
    body = TinyBody()
    reg = Regressor(tiny_backbone(), 8, body).eval()
    out = reg(torch.randn(3, 3, 64, 64))
    J, S, V, K = body.num_joints, body.shape_dim, body.num_vertices, body.num_joints + 1
    shapes = {
        "rotmat": (3, J, 3, 3), "global_orient": (3, 3, 3), "body_pose": (3, J - 1, 3, 3), "shape": (3, S),
        "cam": (3, 3), "translation": (3, 3), "vertices": (3, V, 3), "joints": (3, K, 3),
        "keypoints_2d": (3, K, 2), "vertices_cam": (3, V, 3), "pose6d": (3, J * 6), "shape_raw": (3, S),
    }  # fmt: skip
    for k, shp in shapes.items():
        assert tuple(out[k].shape) == shp, k
    R = out["rotmat"]
    assert torch.allclose(R @ R.transpose(-1, -2), torch.eye(3).expand_as(R), atol=1e-5)
    s, tx, ty = out["cam"].unbind(-1)
    t = out["translation"]
    assert torch.allclose(t, torch.stack([tx, ty, 2 * 5000.0 / (224 * s + 1e-9)], -1))
    assert torch.allclose(out["vertices_cam"], out["vertices"] + t[:, None])
    # brute-force pinhole projection: u = f X / Z + 112, then u / 112 - 1
    X = out["joints"] + t[:, None]
    u = 5000.0 * X[..., 0] / X[..., 2] + 112.0
    v = 5000.0 * X[..., 1] / X[..., 2] + 112.0
    assert torch.allclose(out["keypoints_2d"], torch.stack([u / 112.0 - 1, v / 112.0 - 1], -1), atol=1e-5)
    # the body model ran on exactly these parameters
    ref = body(R[:, 0], R[:, 1:], out["shape"])
    assert torch.allclose(out["vertices"], ref.vertices)


def test_regressor_starts_from_mean_params():
    body = TinyBody()
    reg = Regressor(tiny_backbone(), 8, body).eval()
    with torch.no_grad():
        for dec in (reg.head.decpose, reg.head.decshape, reg.head.deccam):
            dec.weight.zero_()
            dec.bias.zero_()
    out = reg(torch.randn(2, 3, 64, 64))
    mean = body.mean_params()
    assert torch.allclose(out["global_orient"], mean["global_orient"].expand(2, 3, 3), atol=1e-6)
    assert torch.allclose(out["body_pose"], mean["body_pose"].expand(2, -1, -1, -1), atol=1e-6)
    assert torch.allclose(out["shape"], mean["shape"].expand(2, -1))
    assert torch.allclose(out["cam"], torch.tensor([[0.9, 0.0, 0.0]]).expand(2, 3))
    assert "flip" not in reg.init_note
    # the mean orientation maps the body's up (+y) to image up (-y) and its front (+z) to the camera (-z)
    assert torch.allclose(out["global_orient"][0], CAMERA_FLIP)


def test_unflipped_mean_orientation_gets_the_camera_flip():
    body = TinyBody(flip_mean=False)
    reg = Regressor(tiny_backbone(), 8, body)
    R0 = rot6d_to_matrix(reg.head.init_pose.view(-1, 6))[0]
    assert torch.allclose(R0, CAMERA_FLIP, atol=1e-6)
    assert "flip" in reg.init_note


def test_bounded_shape_space_uses_a_sigmoid():
    body = TinyBody()
    body.shape_bounds = (torch.zeros(3), torch.tensor([1.0, 2.0, 1.0]))
    reg = Regressor(tiny_backbone(), 8, body)
    # mean 0.3 in [0, 1] -> logit(0.3); in [0, 2] -> logit(0.15)
    expected = torch.tensor([math.log(0.3 / 0.7), math.log(0.15 / 0.85), math.log(0.3 / 0.7)])
    assert torch.allclose(reg.head.init_shape[0], expected, atol=1e-6)
    raw = torch.tensor([[-50.0, 0.0, 50.0]])
    assert torch.allclose(reg.shape_from_raw(raw), torch.tensor([[0.0, 1.0, 1.0]]), atol=1e-6)
    with torch.no_grad():
        reg.head.deccam.weight.zero_()
        reg.head.decshape.weight.zero_()
        reg.head.decshape.bias.fill_(1e3)  # far outside: still inside the box
    out = reg.eval()(torch.randn(1, 3, 64, 64))
    assert (out["shape"] <= torch.tensor([1.0, 2.0, 1.0]) + 1e-6).all()


def test_set_init_shape_moves_the_start_point_in_body_model_units():
    from dsrbody.models.hmr import at_mean

    body = TinyBody()
    body.shape_bounds = (torch.zeros(3), torch.tensor([1.0, 2.0, 1.0]))
    reg = Regressor(tiny_backbone(), 8, body).eval()
    reg.set_init_shape([0.8, 1.5])  # the third keeps the body model's mean, 0.3
    expected = torch.tensor([math.log(0.8 / 0.2), math.log(0.75 / 0.25), math.log(0.3 / 0.7)])
    torch.testing.assert_close(reg.head.init_shape[0], expected)
    with torch.no_grad():  # the mean body (all updates zero) now has that shape
        got = at_mean(reg)(torch.randn(1, 3, 64, 64))["shape"][0]
    torch.testing.assert_close(got, torch.tensor([0.8, 1.5, 0.3]))
    for bad, what in (([0.1, 2.5], "entry 1 = 2.5 is outside .* \\[0, 2\\]"),
                      ([0.1, 0.1, 0.1, 0.1], "expected 1 to 3 finite values"),
                      ([], "expected 1 to 3 finite values"),
                      ([float("nan")], "expected 1 to 3 finite values")):  # fmt: skip
        with pytest.raises(ValueError, match=f"^model.init_shape: {what}"):
            reg.set_init_shape(bad, "model.init_shape")
    # an unbounded shape space takes the values as they are
    free = Regressor(tiny_backbone(), 8, TinyBody())
    free.set_init_shape([-2.0, 5.0, 0.0])
    torch.testing.assert_close(free.head.init_shape[0], torch.tensor([-2.0, 5.0, 0.0]))


def test_state_dict_holds_no_body_model_tensors():
    reg = Regressor(tiny_backbone(), 8, TinyBody())
    keys = list(reg.state_dict())
    assert keys and all(k.startswith(("backbone.", "head.")) for k in keys)
    other = Regressor(tiny_backbone(), 8, TinyBody(seed=5))
    assert not other.load_state_dict(reg.state_dict(), strict=True).missing_keys
    # inside a parent module too (e.g. a LightningModule's ``model``)
    parent = torch.nn.Module()
    parent.model = reg
    assert all(".body_model." not in k for k in parent.state_dict())
    parent.load_state_dict(parent.state_dict(), strict=True)


def test_gradients_reach_backbone_and_head():
    reg = Regressor(tiny_backbone(), 8, TinyBody())
    out = reg(torch.randn(2, 3, 64, 64))
    (out["keypoints_2d"].square().sum() + out["vertices_cam"].sum()).backward()
    assert reg.head.fc1.weight.grad.abs().sum() > 0
    assert next(reg.backbone.parameters()).grad.abs().sum() > 0


def test_rot6d_round_trip_of_init_pose():
    body = TinyBody()
    reg = Regressor(tiny_backbone(), 8, body)
    mean = body.mean_params()
    R = torch.cat([mean["global_orient"][None], mean["body_pose"]])
    assert torch.allclose(reg.head.init_pose[0], matrix_to_rot6d(R).reshape(-1))


def test_bad_image_shape():
    reg = Regressor(tiny_backbone(), 8, TinyBody())
    with pytest.raises(ValueError, match=r"images \(B, 3, H, W\)"):
        reg(torch.zeros(2, 64, 64))


def test_focal_follows_the_crop_size_and_the_field_of_view_stays():
    body = TinyBody()
    reg = {res: Regressor(tiny_backbone(), 8, body, img_res=res).eval() for res in (96, 224)}
    assert reg[224].focal == 5000.0 and reg[96].focal == pytest.approx(5000.0 * 96 / 224)
    assert reg[96].focal == focal_for_res(96)
    assert Regressor(tiny_backbone(), 8, body, img_res=96, focal=1234.0).focal == 1234.0  # explicit wins
    # the same parameters and weak-perspective camera: same 3D placement, same normalised keypoints
    g = torch.Generator().manual_seed(5)
    B, J = 3, body.num_joints
    rotmat = axis_angle_to_matrix(0.3 * torch.randn(B, J, 3, generator=g))
    shape = torch.randn(B, body.shape_dim, generator=g)
    cam = torch.tensor([[0.9, 0.05, -0.1], [1.3, -0.2, 0.1], [0.7, 0.0, 0.0]])
    out = {res: r.pose_body(rotmat, shape, cam) for res, r in reg.items()}
    assert torch.allclose(out[96]["translation"], out[224]["translation"])
    assert torch.allclose(out[96]["vertices_cam"], out[224]["vertices_cam"])
    assert torch.allclose(out[96]["keypoints_2d"], out[224]["keypoints_2d"], atol=1e-5)
    # in pixels they scale with the crop: px = (n + 1) res / 2
    px96 = (out[96]["keypoints_2d"] + 1) * 48.0
    px224 = (out[224]["keypoints_2d"] + 1) * 112.0
    assert torch.allclose(px96 * 224 / 96, px224, atol=1e-3)
    # through forward on crops of each size: with the decoders at zero both predict the mean camera
    for r in reg.values():
        with torch.no_grad():
            for dec in (r.head.decpose, r.head.decshape, r.head.deccam):
                dec.weight.zero_()
                dec.bias.zero_()
    f96 = reg[96](torch.randn(2, 3, 96, 96, generator=g))
    f224 = reg[224](torch.randn(2, 3, 224, 224, generator=g))
    assert torch.allclose(f96["cam"], f224["cam"])
    assert torch.allclose(f96["translation"], f224["translation"])
    assert torch.allclose(f96["keypoints_2d"], f224["keypoints_2d"], atol=1e-5)


def test_build_regressor_passes_img_res():
    from dsrbody.models import build_regressor

    reg = build_regressor(TinyBody(), backbone="resnet18", img_res=96)
    assert reg.img_res == 96 and reg.focal == pytest.approx(5000.0 * 96 / 224)
    assert build_regressor(TinyBody(), backbone="resnet18").focal == 5000.0


def test_spatial_summary_sees_where_features_are():
    """With ``spatial_channels`` the head's input depends on where a feature is in the map; SPIN's
    average pooling gives the same input for a feature moved to another cell."""
    torch.manual_seed(0)
    C = 8
    pooled = HMRHead(C, 4, 2, dropout=0.0).eval()
    spatial = HMRHead(C, 4, 2, dropout=0.0, spatial_channels=3, grid=(3, 3)).eval()
    assert spatial.fc1.in_features == C + 3 * 9 + 4 * 6 + 2 + 3
    with torch.no_grad():
        spatial.spatial[0].weight.copy_(torch.randn(3, C, 1, 1))
    a = torch.zeros(1, C, 3, 3)
    b = torch.zeros(1, C, 3, 3)
    a[0, :, 0, 0] = 1.0
    b[0, :, 2, 1] = 1.0
    same = [torch.allclose(h(a)["pose6d"], h(b)["pose6d"]) for h in (pooled, spatial)]
    assert same == [True, False]


def test_spatial_summary_needs_its_grid():
    with pytest.raises(ValueError, match="grid"):
        HMRHead(8, 4, 2, spatial_channels=3)
    head = HMRHead(8, 4, 2, spatial_channels=3, grid=(3, 3))
    with pytest.raises(ValueError, match="another crop size"):
        head(torch.randn(1, 8, 4, 4))


def test_spatial_regressor_round_trips_through_load_model(tmp_path):
    """A bare state dict of a spatial-head regressor is rebuilt at its crop size by ``load_model``."""
    from dsrbody.models import build_regressor
    from dsrbody.models.hmr import feature_grid
    from dsrbody.models.loader import load_model

    reg = build_regressor(TinyBody(), backbone="resnet18", img_res=96, spatial_channels=16).eval()
    assert reg.head.grid == feature_grid(reg.backbone, 96) == (3, 3)
    path = tmp_path / "spatial.pt"
    torch.save(reg.state_dict(), path)
    import dsrbody.body.factory as factory

    orig = factory.build_body_model
    factory.build_body_model = lambda *a, **k: TinyBody()
    try:
        loaded = load_model(path, body="anny")
    finally:
        factory.build_body_model = orig
    assert loaded.regressor.img_res == 96 and loaded.regressor.head.spatial_channels == 16
    x = torch.randn(2, 3, 96, 96)
    with torch.no_grad():
        assert torch.allclose(reg(x)["pose6d"], loaded.regressor.eval()(x)["pose6d"], atol=1e-6)
