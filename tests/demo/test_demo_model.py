"""Checkpoint loading for inference: dsrbody, SPIN/DSR release layouts and bare state dicts."""

from __future__ import annotations

import pytest
import torch

from dsrbody.models.backbones import build_backbone
from dsrbody.models.loader import infer_backbone, load_model


@pytest.mark.parametrize("name", ["resnet18", "resnet34", "resnet50"])
def test_infer_backbone(name):
    net, _ = build_backbone(name)
    sd = net.state_dict()
    assert infer_backbone(sd) == name
    assert infer_backbone({f"model.backbone.{k}": v for k, v in sd.items()}) == name
    assert infer_backbone({"head.fc1.weight": torch.zeros(1)}) is None


def test_dsrbody_checkpoint_round_trip(tiny_ckpt, anny_body):
    loaded = load_model(tiny_ckpt)
    assert (loaded.kind, loaded.body_name, loaded.backbone) == ("dsrbody", "anny", "resnet18")
    assert loaded.regressor.head.fc1.out_features == 32  # head width read from the weights
    sd = torch.load(tiny_ckpt, weights_only=False)["state_dict"]
    for k, v in loaded.regressor.state_dict().items():
        assert torch.equal(v, sd[f"model.{k}"]), k
    with pytest.raises(ValueError, match="trained with body model 'anny', not 'smpl'"):
        load_model(tiny_ckpt, body="smpl")


def test_bare_state_dict_and_errors(tiny_ckpt, tmp_path):
    sd = torch.load(tiny_ckpt, weights_only=False)["state_dict"]
    bare = tmp_path / "bare.pt"
    torch.save({k[len("model.") :]: v for k, v in sd.items()}, bare)
    loaded = load_model(bare)  # Anny by default
    assert loaded.kind == "state_dict" and loaded.body_name == "anny"
    partial = tmp_path / "partial.pt"
    torch.save({k: v for k, v in sd.items() if "decshape" not in k}, partial)
    with pytest.raises(ValueError, match="missing"):
        load_model(partial)
    with pytest.raises(FileNotFoundError, match="nope.pt"):
        load_model(tmp_path / "nope.pt")


def test_spin_layout_needs_smpl_files(smpl_dir, tmp_path):
    from dsrbody.body.factory import build_body_model
    from dsrbody.models import build_regressor

    torch.manual_seed(1)
    reg = build_regressor(build_body_model("smpl", model_path=smpl_dir), "resnet18", head_hidden=16)
    spin = tmp_path / "model_checkpoint.pt"
    flat = {k.split(".", 1)[1]: v for k, v in reg.state_dict().items()}  # SPIN: flat names
    torch.save({"model": flat, "epoch": 3}, spin)
    with pytest.raises(ValueError, match="--model-path"):
        load_model(spin)
    loaded = load_model(spin, model_path=smpl_dir)
    assert (loaded.kind, loaded.body_name) == ("spin", "smpl")
    x = torch.randn(1, 3, 224, 224)
    reg.eval()
    with torch.no_grad():
        a, b = reg(x), loaded.regressor(x)
    torch.testing.assert_close(a["vertices"], b["vertices"])


def test_dsr_lightning_layout(smpl_dir, tmp_path):
    from dsrbody.body.factory import build_body_model
    from dsrbody.models import build_regressor

    torch.manual_seed(2)
    reg = build_regressor(build_body_model("smpl", model_path=smpl_dir), "resnet18", head_hidden=16)
    sd = {f"model.{k}": v for k, v in reg.state_dict().items()}
    sd["model.smpl.smpl.v_template"] = torch.zeros(6890, 3)  # DSR's SMPL buffers: rebuilt, not loaded
    path = tmp_path / "dsr_w3DPW_checkpoint.pt"
    torch.save({"state_dict": sd, "epoch": 1}, path)
    loaded = load_model(path, model_path=smpl_dir)
    assert (loaded.kind, loaded.body_name, loaded.backbone) == ("dsr", "smpl", "resnet18")
    assert "body-model buffers" in loaded.summary
    for k, v in reg.state_dict().items():
        assert torch.equal(loaded.regressor.state_dict()[k], v), k
