"""The BlazePose backbone: which tensors its 1,465 features are, that nothing in the frozen variant
trains, what the tuned variant trains and caches, and that checkpoints trained on either are recognised."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from models_testkit import TinyBody

from dsrbody.data.crop_augment import IMG_NORM_MEAN, IMG_NORM_STD
from dsrbody.models.backbones import BACKBONES, build_backbone, infer_backbone, warm_start_sources
from dsrbody.models.backbones.blazepose import BLAZEPOSE_FEATURES, BlazePoseBackbone
from dsrbody.models.hmr import Regressor


@pytest.fixture(scope="module")
def backbone() -> BlazePoseBackbone:
    return BlazePoseBackbone()


def _crops(n: int, res: int = 256, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` smooth random RGB crops in [0, 1] (N, 3, res, res) and the same ImageNet-normalised."""
    g = torch.Generator().manual_seed(seed)
    rgb = F.interpolate(torch.rand(n, 3, 8, 8, generator=g), size=(res, res), mode="bilinear")
    mean, std = torch.tensor(IMG_NORM_MEAN).view(1, 3, 1, 1), torch.tensor(IMG_NORM_STD).view(1, 3, 1, 1)
    return rgb, (rgb - mean) / std


def test_features_are_the_graph_outputs(backbone):
    rgb, x = _crops(2)
    feats = backbone(x)[:, :, 0, 0]
    assert feats.shape == (2, BLAZEPOSE_FEATURES) and BACKBONES["blazepose"] == BLAZEPOSE_FEATURES
    lm, presence, _seg, _heat, world = backbone.graph(rgb.permute(0, 2, 3, 1).contiguous())
    f2, coords, extra = feats[:, :1152], feats[:, 1152:1347].reshape(2, 39, 5), feats[:, 1347:]
    lm = lm.reshape(2, 39, 5)
    torch.testing.assert_close(coords[..., :2], lm[..., :2] / 128 - 1, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(coords[..., 2], lm[..., 2] / 128, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(coords[..., 3:], torch.sigmoid(lm[..., 3:]), atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(extra[:, :117], world, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(extra[:, 117:], presence, atol=1e-4, rtol=1e-4)
    # the first block is the map the landmark head reads: its 2 x 2 convolution gives the landmarks
    head = backbone.graph.producer(backbone.graph.producer(backbone._lm)["inputs"][0])
    i = backbone.graph.ops.index(head)
    w, b = getattr(backbone.graph, f"w{i}"), getattr(backbone.graph, f"b{i}")
    again = F.conv2d(f2.reshape(2, 288, 2, 2), w, b).flatten(1)
    torch.testing.assert_close(again, lm.flatten(1), atol=1e-3, rtol=1e-4)


def test_other_crop_sizes_are_resized(backbone):
    _, x = _crops(1, res=128, seed=1)
    up = F.interpolate(x, size=(256, 256), mode="bilinear", align_corners=False)
    torch.testing.assert_close(backbone(x), backbone(up))


def test_frozen(backbone):
    assert list(backbone.parameters()) == []
    backbone.train()
    assert not backbone.training
    assert list(backbone.state_dict()) == ["blazepose_full_version"]
    with pytest.raises(ValueError, match="ships its own weights"):
        build_backbone("blazepose", pretrained="weights.pt")
    with pytest.raises(ValueError, match="ships its own weights"):
        build_backbone("blazepose_tuned", pretrained="weights.pt")


def test_a_regressor_on_it_trains_only_its_head_and_is_recognised(backbone):
    reg = Regressor(backbone, BLAZEPOSE_FEATURES, TinyBody(), img_res=256)
    names = {n.split(".")[0] for n, p in reg.named_parameters() if p.requires_grad}
    assert names == {"head"}
    keys = list(reg.state_dict())
    assert "backbone.blazepose_full_version" in keys
    assert infer_backbone(keys) == "blazepose"
    _, x = _crops(2, seed=2)
    reg.eval()
    out = reg(x)
    again = reg.forward_features(backbone(x))
    torch.testing.assert_close(out["joints"], again["joints"])


@pytest.fixture(scope="module")
def tuned() -> BlazePoseBackbone:
    return build_backbone("blazepose_tuned")[0]


@pytest.fixture(scope="module")
def tuned8() -> BlazePoseBackbone:
    return build_backbone("blazepose_tuned8")[0]


@pytest.fixture(scope="module")
def tuned8b() -> BlazePoseBackbone:
    return build_backbone("blazepose_tuned8b")[0]


@pytest.mark.parametrize(
    "variant,shape", [("tuned", (288, 4, 4)), ("tuned8", (144, 8, 8)), ("tuned8b", (144, 8, 8))]
)
def test_tuned_starts_as_the_frozen_network_and_caches_its_cut(backbone, request, variant, shape):
    tuned = request.getfixturevalue(variant)
    _, x = _crops(2, seed=3)
    torch.testing.assert_close(tuned(x), backbone(x), atol=1e-4, rtol=1e-4)
    rows = tuned.cache_rows(x)
    C, h, w = shape
    assert rows.shape == (2, C * h * w) and tuned.cache_dim == rows.shape[1]
    assert not rows.requires_grad
    # the rows are the graph's tensor at the cut, the map of the stated shape
    assert tuple(tuned.graph.run(tuned._graph_input(x), [tuned.cut.tensor])[tuned.cut.tensor].shape) == (
        2,
        *shape,
    )
    torch.testing.assert_close(tuned.from_cache(rows), tuned(x))
    # the frozen variant's rows are its features
    torch.testing.assert_close(backbone.from_cache(backbone.cache_rows(x)), backbone(x))
    with pytest.raises(ValueError, match=rf"rows must be \(B, {C * h * w}\)"):
        tuned.from_cache(rows[:, :100])


def test_tuned8_trains_more_than_tuned_and_shares_its_weights_by_name(tuned, tuned8):
    """The deeper cut's trainable weights include every weight of the 4 x 4 cut under the same name
    and value (so a ``blazepose_tuned`` checkpoint's tuned stages load into it), plus the trunk's last
    expansion and the regression branch's 8 x 8 stage."""
    shallow, deep = dict(tuned.named_parameters()), dict(tuned8.named_parameters())
    assert set(shallow) < set(deep)
    assert all(torch.equal(shallow[n], deep[n]) for n in shallow)
    extra = sum(p.numel() for n, p in deep.items() if n not in shallow)
    assert 300_000 < extra < 600_000
    reg = Regressor(tuned8, BLAZEPOSE_FEATURES, TinyBody(), img_res=256)
    keys = list(reg.state_dict())
    assert "backbone.blazepose_tuned8_version" in keys and "backbone.blazepose_tuned_version" not in keys
    assert infer_backbone(keys) == "blazepose_tuned8"
    assert BACKBONES["blazepose_tuned8"] == BLAZEPOSE_FEATURES
    with pytest.raises(ValueError, match="unknown tuned BlazePose variant 'blazepose_tuned3'"):
        BlazePoseBackbone(tune="blazepose_tuned3")


def test_tuned8b_adds_the_trunks_last_unit_to_tuned8(tuned8, tuned8b):
    """One inverted-residual unit earlier: every ``blazepose_tuned8`` weight under the same name and
    value, plus that unit's expansion, 5 x 5 depthwise and projection convolutions (144 -> 864 -> 144 at
    8 x 8); its cache is another tensor of the same shape."""
    shallow, deep = dict(tuned8.named_parameters()), dict(tuned8b.named_parameters())
    assert set(shallow) < set(deep)
    assert all(torch.equal(shallow[n], deep[n]) for n in shallow)
    extra = {n: p for n, p in deep.items() if n not in shallow}
    weights = sorted(tuple(p.shape) for n, p in extra.items() if n.startswith("tail.w"))
    assert weights == sorted([(864, 144, 1, 1), (864, 1, 5, 5), (144, 864, 1, 1)])
    assert tuned8b.cut.tensor != tuned8.cut.tensor and tuned8b.cache_dim == tuned8.cache_dim
    reg = Regressor(tuned8b, BLAZEPOSE_FEATURES, TinyBody(), img_res=256)
    keys = list(reg.state_dict())
    assert infer_backbone(keys) == "blazepose_tuned8b"
    assert warm_start_sources("blazepose_tuned8b") == ("blazepose", "blazepose_tuned", "blazepose_tuned8")


def test_tuned_trains_its_last_stages_only_and_is_recognised(tuned):
    assert not tuned.frozen
    names = [n for n, _ in tuned.named_parameters()]
    assert names and all(n.startswith("tail.") for n in names)
    assert 1_000_000 < sum(p.numel() for p in tuned.parameters()) < 1_500_000
    _, x = _crops(2, seed=4)
    tuned.zero_grad()
    tuned.from_cache(tuned.cache_rows(x)).square().sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in tuned.parameters())
    tuned.zero_grad()
    reg = Regressor(tuned, BLAZEPOSE_FEATURES, TinyBody(), img_res=256)
    keys = list(reg.state_dict())
    assert "backbone.blazepose_tuned_version" in keys and "backbone.blazepose_full_version" not in keys
    assert infer_backbone(keys) == "blazepose_tuned"
    reg.eval()
    torch.testing.assert_close(reg(x)["joints"], reg.forward_cached(tuned.cache_rows(x))["joints"])
    tuned.train()
    assert tuned.training and not tuned.graph.training
    tuned.eval()
