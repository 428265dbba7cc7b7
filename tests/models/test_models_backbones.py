"""ResNet backbones: torchvision's state-dict names and shapes, and loading weight files."""

from __future__ import annotations

import sys
import types

import pytest
import torch

from dsrbody.models.backbones import BACKBONES, build_backbone, load_pretrained
from dsrbody.models.backbones.resnet import ResNet, resnet18, resnet34, resnet50

BN = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


def torchvision_names(depth: int, with_fc: bool = True) -> list[str]:
    """State-dict names of torchvision's resnet{18,34,50}, written from its documented architecture:
    stem conv1/bn1; 4 stages of [2,2,2,2] / [3,4,6,3] blocks; BasicBlock = conv1,bn1,conv2,bn2;
    Bottleneck = conv1..3, bn1..3; the first block of a stage has downsample.0 (conv) / .1 (BN) when
    the stride or width changes (every stage of ResNet-50, stages 2-4 of 18/34); fc last."""
    blocks = {18: [2, 2, 2, 2], 34: [3, 4, 6, 3], 50: [3, 4, 6, 3]}[depth]
    nconv = 3 if depth == 50 else 2
    names = ["conv1.weight"] + [f"bn1.{b}" for b in BN]
    for s, n in enumerate(blocks, start=1):
        for i in range(n):
            p = f"layer{s}.{i}"
            for c in range(1, nconv + 1):
                names.append(f"{p}.conv{c}.weight")
                names += [f"{p}.bn{c}.{b}" for b in BN]
            if i == 0 and (depth == 50 or s > 1):
                names.append(f"{p}.downsample.0.weight")
                names += [f"{p}.downsample.1.{b}" for b in BN]
    if with_fc:
        names += ["fc.weight", "fc.bias"]
    return names


@pytest.mark.parametrize("ctor,depth,count", [(resnet18, 18, 122), (resnet34, 34, 218), (resnet50, 50, 320)])
def test_state_dict_names_match_torchvision(ctor, depth, count):
    sd = ctor(with_fc=True).state_dict()
    expected = torchvision_names(depth)
    assert len(expected) == count  # torchvision's published entry counts
    assert list(sd.keys()) == expected
    assert list(ctor().state_dict().keys()) == torchvision_names(depth, with_fc=False)


def test_state_dict_shapes():
    sd = resnet50(with_fc=True).state_dict()
    assert sd["conv1.weight"].shape == (64, 3, 7, 7)
    assert sd["layer1.0.conv1.weight"].shape == (64, 64, 1, 1)
    assert sd["layer1.0.downsample.0.weight"].shape == (256, 64, 1, 1)
    assert sd["layer2.0.conv2.weight"].shape == (128, 128, 3, 3)  # v1.5: stride on the 3x3
    assert sd["layer4.2.conv3.weight"].shape == (2048, 512, 1, 1)
    assert sd["layer4.2.bn3.running_var"].shape == (2048,)
    assert sd["fc.weight"].shape == (1000, 2048)
    sd18 = resnet18().state_dict()
    assert sd18["layer2.0.downsample.0.weight"].shape == (128, 64, 1, 1)
    assert sd18["layer4.1.conv2.weight"].shape == (512, 512, 3, 3)
    assert "layer1.0.downsample.0.weight" not in sd18


def test_stride_of_bottleneck_is_on_3x3():
    m = resnet50()
    assert m.layer2[0].conv1.stride == (1, 1) and m.layer2[0].conv2.stride == (2, 2)
    assert m.layer2[0].downsample[0].stride == (2, 2)


@pytest.mark.parametrize("name", ["resnet18", "resnet34", "resnet50"])
def test_build_backbone_feature_dims(name):
    model, dim = build_backbone(name)
    assert dim == BACKBONES[name] == {"resnet18": 512, "resnet34": 512, "resnet50": 2048}[name]
    if name == "resnet18":
        out = model.eval()(torch.zeros(1, 3, 96, 96))
        assert out.shape == (1, 512, 3, 3)  # /32


def test_unknown_backbone():
    with pytest.raises(ValueError, match="unknown backbone 'resnet101'"):
        build_backbone("resnet101")


def _randomised(model: ResNet, seed: int) -> ResNet:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for k, v in model.state_dict().items():
            if v.dtype.is_floating_point:
                v.copy_(
                    torch.rand(v.shape, generator=g) * 0.2 + 0.9
                    if "running_var" in k
                    else torch.randn(v.shape, generator=g) * 0.05
                )
    return model.eval()


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_load_torchvision_bare_file_with_fc(tmp_path):
    src = _randomised(resnet18(with_fc=True), 0)
    path = tmp_path / "resnet18-f37072fd.pth"
    torch.save(src.state_dict(), path)
    dst = resnet18()
    report = load_pretrained(dst, path)
    assert report.ok and len(report.loaded) == 120
    assert report.ignored == {
        "ImageNet classifier (the backbone was built without fc)": ["fc.weight", "fc.bias"]
    }
    x = torch.randn(2, 3, 64, 64)
    assert torch.equal(src(x), dst.eval()(x))
    # with fc it loads strictly, classifier included
    dst_fc = resnet18(with_fc=True)
    assert load_pretrained(dst_fc, path).ok
    assert _same_weights(src, dst_fc)


def test_load_spin_and_dsr_layouts(tmp_path):
    src = _randomised(resnet18(), 1)
    head = {
        "fc1.weight": torch.zeros(4, 3),
        "init_pose": torch.zeros(1, 144),
        "decpose.bias": torch.zeros(144),
    }
    spin = tmp_path / "model_checkpoint.pt"
    torch.save({"model": {**src.state_dict(), **head}, "optimizer": {"state": {}}, "epoch": 7}, spin)
    dst = resnet18()
    rep = load_pretrained(dst, spin)
    assert rep.ok and _same_weights(src, dst)
    assert sorted(rep.ignored["regressor-head weights (not part of a backbone)"]) == sorted(head)

    dsr = tmp_path / "dsr_w3DPW_checkpoint.pt"
    sd = {f"model.backbone.{k}": v for k, v in src.state_dict().items()}
    sd.update({f"model.head.{k}": v for k, v in head.items()})
    sd["model.smpl.smpl.v_template"] = torch.zeros(6890, 3)
    sd["J_regressor"] = torch.zeros(17, 6890)
    torch.save({"state_dict": sd, "epoch": 3}, dsr)
    dst2 = resnet18()
    rep2 = load_pretrained(dst2, dsr)
    assert rep2.ok and _same_weights(src, dst2)
    assert rep2.ignored["body-model buffers (not part of a backbone)"] == [
        "model.smpl.smpl.v_template",
        "J_regressor",
    ]

    ddp = tmp_path / "ddp.pt"
    torch.save({f"module.{k}": v for k, v in src.state_dict().items()}, ddp)
    dst3 = resnet18()
    assert load_pretrained(dst3, ddp).ok and _same_weights(src, dst3)


def test_load_errors(tmp_path):
    src = _randomised(resnet18(), 2)
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        load_pretrained(resnet18(), tmp_path / "nope.pth")
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"this is not a checkpoint")
    with pytest.raises(ValueError, match="bad.pth: not a PyTorch weight file"):
        load_pretrained(resnet18(), bad)

    # a ResNet-18 file into a ResNet-34: stages 1-4 have blocks the file lacks
    p18 = tmp_path / "r18.pth"
    torch.save(src.state_dict(), p18)
    m34 = resnet34()
    before = {k: v.clone() for k, v in m34.state_dict().items()}
    with pytest.raises(ValueError, match=r"r18.pth.*model keys are missing.*layer1.2"):
        load_pretrained(m34, p18)
    assert all(torch.equal(before[k], v) for k, v in m34.state_dict().items())  # refused: unchanged
    rep = load_pretrained(m34, p18, allow_missing=True)
    assert len(rep.missing) == 216 - 120 and not rep.unexpected

    # a ResNet-34 file into a ResNet-50: shapes differ -> always an error
    p34 = tmp_path / "r34.pth"
    torch.save(resnet34().state_dict(), p34)
    with pytest.raises(ValueError, match="other shapes.*another backbone"):
        load_pretrained(resnet50(), p34, allow_missing=True, allow_unexpected=True)

    # an unknown key is reported, and accepted only when allowed
    p_extra = tmp_path / "extra.pth"
    torch.save({**src.state_dict(), "attention.weight": torch.zeros(3)}, p_extra)
    with pytest.raises(ValueError, match=r"could not be placed \(first: \['attention.weight'\]"):
        load_pretrained(resnet18(), p_extra)
    rep = load_pretrained(resnet18(), p_extra, allow_unexpected=True)
    assert rep.unexpected == ["attention.weight"] and "attention.weight" in rep.summary()


def test_checkpoint_with_unknown_pickled_objects_is_refused(tmp_path):
    """A class outside the safe loader's allow-list is refused, in one line naming the file and the class
    (DSR's yacs/Lightning metadata is allowed: tests/models/test_models_checkpoint_safety.py)."""
    mod = types.ModuleType("not_installed_cfg_pkg")

    class CfgNode(dict):
        pass

    CfgNode.__module__ = mod.__name__
    CfgNode.__qualname__ = "CfgNode"
    mod.CfgNode = CfgNode
    sys.modules[mod.__name__] = mod
    src = _randomised(resnet18(), 3)
    path = tmp_path / "lightning.ckpt"
    try:
        cfg = CfgNode(LR=3e-5)
        torch.save(
            {
                "state_dict": {f"model.backbone.{k}": v for k, v in src.state_dict().items()},
                "hyper_parameters": cfg,
            },
            path,
        )
    finally:
        del sys.modules[mod.__name__]
    with pytest.raises(ValueError) as e:
        load_pretrained(resnet18(), path)
    msg = str(e.value)
    assert "\n" not in msg and str(path) in msg and "not_installed_cfg_pkg.CfgNode" in msg
