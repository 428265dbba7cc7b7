"""The one checkpoint loader (models/loader.py): a new backbone is one family entry, and a recipe builds
the same regressor as the checkpoint's own description."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from dsrbody.models import backbones as bb
from dsrbody.models.loader import check_checkpoint, checkpoint_meta, infer_backbone, load_model

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "demo"))
from demo_testkit import shared_checkpoint  # noqa: E402


@pytest.fixture(scope="module")
def tiny_ckpt(anny_body, tmp_path_factory):
    return shared_checkpoint(anny_body, tmp_path_factory)


class TinyNet(nn.Module):
    """A two-convolution backbone: stride 32 overall, like a ResNet's last map."""

    state_dict_roots = ("stem", "down")

    def __init__(self, width: int):
        super().__init__()
        self.feature_dim = width
        self.stem = nn.Conv2d(3, 8, kernel_size=8, stride=8)
        self.down = nn.Conv2d(8, width, kernel_size=4, stride=4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(torch.relu(self.stem(x)))


def _recognise_tiny(keys: list[str]) -> str | None:
    w = [k for k in keys if k == "down.weight"]
    return "tiny" if w else None


@pytest.fixture
def tiny_family(monkeypatch):
    """Register the tiny backbone for one test (the registry is restored afterwards)."""
    monkeypatch.setattr(bb, "FAMILIES", list(bb.FAMILIES))
    monkeypatch.setattr(bb, "BACKBONES", dict(bb.BACKBONES))
    fam = bb.BackboneFamily(
        names=("tiny",),
        build=lambda name: TinyNet(16),
        feature_dim=lambda name: 16,
        key_roots=TinyNet.state_dict_roots,
        recognise=_recognise_tiny,
    )
    bb.register_family(fam)
    return fam


def test_a_new_backbone_is_one_registry_entry(tiny_family, anny_body, tmp_path):
    from dsrbody.models import build_regressor

    with pytest.raises(ValueError, match="already registered"):
        bb.register_family(tiny_family)
    torch.manual_seed(0)
    reg = build_regressor(anny_body, backbone="tiny", head_hidden=8, img_res=64).eval()
    assert reg.backbone.feature_dim == 16
    path = tmp_path / "tiny.pt"
    torch.save(reg.state_dict(), path)  # a bare state dict: nothing says which backbone
    assert infer_backbone(torch.load(path, weights_only=True)) == "tiny"
    loaded = load_model(path, topology="notoes_collapse10pc")
    assert (loaded.backbone, loaded.kind) == ("tiny", "state_dict")
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        # the bare file states no crop size: the head's pooled input does not depend on it
        a, b = reg(x), loaded.regressor.to(torch.float32)(x)
    assert torch.allclose(a["pose6d"], b["pose6d"], atol=1e-5)
    # SPIN's flat layout (no "backbone." prefix) is recognised by the family's roots
    flat = {k.split(".", 1)[1]: v for k, v in reg.state_dict().items()}
    assert infer_backbone(flat) == "tiny"


def test_unrecognised_weights_are_one_line_errors(tmp_path):
    path = tmp_path / "odd.pt"
    torch.save({"head.fc1.weight": torch.zeros(4, 4), "encoder.w": torch.zeros(2)}, path)
    with pytest.raises(ValueError, match="odd.pt: no backbone weights"):
        load_model(path)


def test_recipe_and_description_build_the_same_regressor(tiny_ckpt):
    """``load_model(config=...)`` (what ``dsrbody eval --config`` uses) and the stored description
    give the same weights; a recipe of another backbone or head is refused, naming the file."""
    from omegaconf import OmegaConf

    from dsrbody.models.loader import read_checkpoint_meta
    from dsrbody.train.config import config_from_dict

    meta = read_checkpoint_meta(tiny_ckpt)
    recipe = {
        "model": {"backbone": "resnet18", "n_iter": 3},
        "body": {"name": "anny", "eval_topology": "anny"},
    }
    cfg = config_from_dict(recipe, "test recipe")
    a = load_model(tiny_ckpt).regressor
    b = load_model(tiny_ckpt, config=cfg).regressor
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert ka == kb and torch.equal(va, vb), ka
    other = OmegaConf.merge(cfg, {"model": {"backbone": "resnet34"}})
    with pytest.raises(ValueError, match="backbone 'resnet18'"):
        load_model(tiny_ckpt, config=other)
    with pytest.raises(ValueError, match="backbone 'resnet18'"):
        check_checkpoint(meta, other, tiny_ckpt)
    head = OmegaConf.merge(cfg, {"model": {"keypoints": int(cfg.model.keypoints) + 5}})
    with pytest.raises(ValueError, match="model.keypoints"):
        load_model(tiny_ckpt, config=head)


def test_checkpoint_meta_is_plain(anny_body):
    meta = checkpoint_meta(anny_body, {"name": "anny", "topology": "x"}, "resnet18", {"a": (1, 2)})
    assert meta["body"]["num_joints"] == anny_body.num_joints
    assert meta["config"] == {"a": [1, 2]} and meta["backbone"] == "resnet18"
    with pytest.raises(TypeError, match=r"checkpoint metadata\.config\.o"):
        checkpoint_meta(anny_body, {"name": "anny"}, "resnet18", {"o": object()})


def test_unknown_body_model_names_the_file(tiny_ckpt):
    from omegaconf import OmegaConf

    from dsrbody.train.config import config_from_dict

    cfg = config_from_dict({"model": {"backbone": "resnet18"}, "body": {"name": "anny"}}, "test recipe")
    cfg = OmegaConf.merge(cfg, {"body": {"name": "star"}})
    with pytest.raises(ValueError, match=r"demo_shared_tiny\.ckpt: .*'star'"):
        load_model(tiny_ckpt, config=cfg)
    sd = torch.load(tiny_ckpt, weights_only=False)["state_dict"]
    bare = tiny_ckpt.parent / "bare_for_star.pt"
    torch.save({k[len("model.") :]: v for k, v in sd.items()}, bare)
    with pytest.raises(ValueError, match=r"bare_for_star\.pt: unknown body model 'star'; known: anny"):
        load_model(bare, body="star")
