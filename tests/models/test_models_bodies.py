"""The regressor on the real body families: SMPL from (generated) official files, and Anny."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from models_testkit import tiny_backbone

from dsrbody.geometry.rotations import rot6d_to_matrix
from dsrbody.models.backbones import build_backbone
from dsrbody.models.checkpoint import load_regressor_checkpoint
from dsrbody.models.hmr import CAMERA_FLIP, Regressor


@pytest.fixture(scope="module")
def smpl(smpl_dir):
    from dsrbody.body.smpl import SMPL

    return SMPL(smpl_dir)


def _zero_decoders(reg: Regressor) -> Regressor:
    with torch.no_grad():
        for dec in (reg.head.decpose, reg.head.decshape, reg.head.deccam):
            dec.weight.zero_()
            dec.bias.zero_()
    return reg.eval()


def test_smpl_regressor_starts_from_smpl_mean_params(smpl, smpl_dir):
    reg = Regressor(tiny_backbone(), 8, smpl)
    assert reg.head.fc1.in_features == 8 + 144 + 13 and reg.head.decshape.out_features == 10
    mean = np.load(smpl_dir / "smpl_mean_params.npz")
    file_rot = rot6d_to_matrix(torch.as_tensor(mean["pose"], dtype=torch.float32).view(24, 6))
    assert torch.allclose(rot6d_to_matrix(reg.head.init_pose.view(24, 6)), file_rot, atol=1e-5)
    assert torch.allclose(reg.head.init_shape[0], torch.as_tensor(mean["shape"], dtype=torch.float32))
    assert torch.allclose(reg.head.init_cam[0], torch.as_tensor(mean["cam"], dtype=torch.float32))
    assert "flip" not in reg.init_note  # SPIN's mean pose already holds the camera flip
    out = _zero_decoders(reg)(torch.randn(2, 3, 64, 64))
    assert out["vertices"].shape == (2, 6890, 3) and out["joints"].shape == (2, 49, 3)
    assert out["keypoints_2d"].shape == (2, 49, 2)
    assert torch.allclose(out["rotmat"][0], file_rot, atol=1e-5)
    # upright in the image: the head (H36M head, SPIN index 25+18) above the ankles (25+0, 25+5)
    kp = out["keypoints_2d"][0]
    assert kp[43, 1] < kp[25, 1] and kp[43, 1] < kp[30, 1]


def test_dsr_checkpoint_into_the_smpl_regressor(tmp_path, smpl):
    g = torch.Generator().manual_seed(0)
    net, dim = build_backbone("resnet18")
    src = Regressor(net, dim, smpl)
    with torch.no_grad():
        for k, v in src.state_dict().items():
            if v.dtype.is_floating_point:
                v.copy_(
                    torch.rand(v.shape, generator=g) + 0.5
                    if "running_var" in k
                    else torch.randn(v.shape, generator=g) * 0.02
                )
    sd = {f"model.{k}": v for k, v in src.state_dict().items()}
    # DSR's modules carry smplx's SMPL buffers (our SMPL keeps its own out of state dicts)
    smpl_buffers = dict(smpl.named_buffers())
    assert smpl_buffers
    sd.update({f"model.smpl.smpl.{k}": v for k, v in smpl_buffers.items()})
    sd.update({f"smpl.{k}": v for k, v in smpl_buffers.items()})
    path = tmp_path / "dsr_wo3DPW_checkpoint.pt"
    torch.save({"state_dict": sd, "epoch": 30}, path)
    net2, _ = build_backbone("resnet18")
    dst = Regressor(net2, dim, smpl)
    report = load_regressor_checkpoint(dst, path)
    assert report.ok and len(report.loaded) == len(dst.state_dict())
    assert len(next(iter(report.ignored.values()))) == 2 * len(smpl_buffers)
    x = torch.randn(1, 3, 64, 64, generator=g)
    with torch.no_grad():
        a, b = src.eval()(x), dst.eval()(x)
    assert torch.equal(a["vertices"], b["vertices"]) and torch.equal(a["cam"], b["cam"])


def test_anny_regressor(anny_body):
    reg = Regressor(tiny_backbone(), 8, anny_body)
    assert reg.head.fc1.in_features == 8 + 24 * 6 + 6 + 3
    assert "flip" in reg.init_note  # Anny's mean orientation is the identity: the flip is composed in
    out = _zero_decoders(reg)(torch.randn(2, 3, 64, 64))
    assert torch.allclose(out["global_orient"][0], CAMERA_FLIP, atol=1e-6)
    assert torch.allclose(out["shape"], torch.full((2, 6), 0.5), atol=1e-5)  # mid phenotypes
    assert torch.equal(out["keypoint_confidence"], anny_body.keypoint_confidence)
    assert 0 < out["keypoint_confidence"].sum() < 49
    V = anny_body.num_vertices
    assert out["vertices_cam"].shape == (2, V, 3)
    # upright and facing the camera: the body's top has the smallest image y, its front the smallest z
    rest = out["rest_vertices"][0]
    top, front = rest[:, 1].argmax(), rest[:, 2].argmax()
    vc = out["vertices_cam"][0]
    assert vc[top, 1] <= vc[:, 1].min() + 0.05
    assert vc[front, 2] <= vc[:, 2].min() + 0.05
    # phenotypes stay in Anny's ranges whatever the head says
    with torch.no_grad():
        reg.head.decshape.bias.copy_(torch.tensor([100.0, -100.0, 100.0, -100.0, 0.0, 0.0]))
    shp = reg(torch.randn(1, 3, 64, 64))["shape"][0]
    assert torch.allclose(shp[:4], torch.tensor([1.0, -1 / 3, 1.0, 0.0]), atol=1e-5)
