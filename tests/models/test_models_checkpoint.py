"""Loading SPIN's and DSR's released checkpoint layouts into the SMPL-sized regressor."""

from __future__ import annotations

import pytest
import torch
from models_testkit import TinyBody

from dsrbody.models.backbones import build_backbone
from dsrbody.models.checkpoint import HEAD_KEYS, load_regressor_checkpoint
from dsrbody.models.hmr import Regressor


def _smpl_sized_regressor(seed: int | None = None, shape_dim: int = 10) -> Regressor:
    """ResNet-18 + an HMR head of SMPL's sizes (24 joints, 10 betas) on a tiny body model."""
    net, dim = build_backbone("resnet18")
    reg = Regressor(net, dim, TinyBody(num_joints=24, shape_dim=shape_dim))
    if seed is not None:
        g = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for k, v in reg.state_dict().items():
                if v.dtype.is_floating_point:
                    if "running_var" in k:
                        v.copy_(torch.rand(v.shape, generator=g) * 0.2 + 0.9)
                    else:
                        v.copy_(torch.randn(v.shape, generator=g) * 0.02)
    return reg.eval()


def _spin_state_dict(reg: Regressor) -> dict[str, torch.Tensor]:
    """SPIN's ``hmr.py`` names: the ResNet and the head side by side, flat."""
    sd = {k[len("backbone.") :]: v for k, v in reg.state_dict().items() if k.startswith("backbone.")}
    sd.update({k[len("head.") :]: v for k, v in reg.state_dict().items() if k.startswith("head.")})
    return sd


@pytest.fixture(scope="module")
def source():
    return _smpl_sized_regressor(seed=0)


@pytest.fixture(scope="module")
def images():
    return torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))


def _assert_same_outputs(a: Regressor, b: Regressor, images: torch.Tensor) -> None:
    with torch.no_grad():
        oa, ob = a.eval()(images), b.eval()(images)
    for k in ("rotmat", "shape", "cam", "vertices", "keypoints_2d"):
        assert torch.equal(oa[k], ob[k]), k


def test_spin_model_checkpoint(tmp_path, source, images):
    sd = _spin_state_dict(source)
    assert {k.split(".")[0] for k in sd} >= set(HEAD_KEYS) | {"conv1", "bn1", "layer4"}
    sd["init_pose"] = sd["init_pose"].double()  # SPIN's buffers come from a float64 npz
    sd["init_cam"] = sd["init_cam"].double()
    path = tmp_path / "model_checkpoint.pt"
    torch.save(
        {"model": sd, "optimizer": {"state": {}, "param_groups": []}, "epoch": 1, "total_step_count": 9}, path
    )
    dst = _smpl_sized_regressor()
    report = load_regressor_checkpoint(dst, path)
    assert report.ok and not report.ignored
    assert len(report.loaded) == len(sd) == len(dst.state_dict())
    assert "(model layout)" in report.summary()
    _assert_same_outputs(source, dst, images)


def test_dsr_lightning_checkpoint(tmp_path, source, images):
    sd = {f"model.{k}": v for k, v in source.state_dict().items()}  # model.backbone.*, model.head.*
    body_keys = {
        "model.smpl.smpl.betas": torch.zeros(1, 10),
        "model.smpl.smpl.shapedirs": torch.zeros(6890, 3, 10),
        "model.smpl.smpl.J_regressor_extra": torch.zeros(9, 6890),
        "smpl.v_template": torch.zeros(6890, 3),
        "smpl_native.posedirs": torch.zeros(207, 20670),
        "J_regressor": torch.zeros(17, 6890),
    }
    path = tmp_path / "dsr_w3DPW_checkpoint.pt"
    torch.save({"state_dict": {**sd, **body_keys}, "epoch": 12, "global_step": 100}, path)
    dst = _smpl_sized_regressor()
    report = load_regressor_checkpoint(dst, path)
    assert report.ok
    assert len(report.loaded) == len(dst.state_dict())
    ((reason, ignored),) = report.ignored.items()
    assert "body-model" in reason and sorted(ignored) == sorted(body_keys)
    _assert_same_outputs(source, dst, images)


def test_unplaceable_keys_are_named(tmp_path, source):
    sd = {**_spin_state_dict(source), "attention.weight": torch.zeros(3), "smpl_head.scale": torch.ones(1)}
    path = tmp_path / "odd.pt"
    torch.save({"model": sd}, path)
    with pytest.raises(ValueError, match=r"odd.pt.*2 keys could not be placed.*attention.weight"):
        load_regressor_checkpoint(_smpl_sized_regressor(), path)
    report = load_regressor_checkpoint(_smpl_sized_regressor(), path, allow_unexpected=True)
    assert sorted(report.unexpected) == ["attention.weight", "smpl_head.scale"]


def test_missing_head_is_an_error(tmp_path, source):
    sd = {k: v for k, v in _spin_state_dict(source).items() if not k.startswith("dec")}
    path = tmp_path / "partial.pt"
    torch.save(sd, path)
    with pytest.raises(ValueError, match=r"6 model keys are missing.*head.decpose"):
        load_regressor_checkpoint(_smpl_sized_regressor(), path)


def test_checkpoint_of_another_body_model_is_refused(tmp_path):
    other = _smpl_sized_regressor(seed=3, shape_dim=6)  # e.g. Anny's 6 phenotypes
    path = tmp_path / "anny_regressor.pt"
    torch.save({"state_dict": {f"model.{k}": v for k, v in other.state_dict().items()}}, path)
    dst = _smpl_sized_regressor()
    before = {k: v.clone() for k, v in dst.state_dict().items()}
    with pytest.raises(ValueError, match=r"anny_regressor.pt.*other shapes.*another backbone or body model"):
        load_regressor_checkpoint(dst, path, allow_missing=True, allow_unexpected=True)
    assert all(torch.equal(before[k], v) for k, v in dst.state_dict().items())
