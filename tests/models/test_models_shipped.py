"""dsrbody.models.shipped and at_mean: the inference weights of a training checkpoint (fp16 and fp32) read
back by the demo loader and predicting what the checkpoint predicts, the shipped model's path (present or
not, whatever the installed package holds), and the mean-body copy of a regressor."""

from __future__ import annotations

import types
from pathlib import Path

import pytest
import torch
from models_testkit import TinyBody, tiny_backbone

from dsrbody.models import at_mean
from dsrbody.models import shipped as shipped_mod
from dsrbody.models.hmr import Regressor
from dsrbody.models.shipped import SHIPPED_MODEL, ShippedModelMissing, export_inference, shipped_model_path

#: head outputs compared between the checkpoint and its fp16 export
HEAD_KEYS = ("pose6d", "shape_raw", "cam")


@pytest.fixture(scope="module")
def exported(cpu_run, tmp_path_factory):
    """``{"ckpt", "fp16", "fp32"}``: last.ckpt of the tiny run (optimiser state included) and its exports."""
    d = tmp_path_factory.mktemp("exported")
    ckpt = cpu_run / "checkpoints" / "last.ckpt"
    return {
        "ckpt": ckpt,
        "fp16": export_inference(ckpt, d / "sub" / "model_fp16.pt"),
        "fp32": export_inference(ckpt, d / "model_fp32.pt", half=False),
    }


def test_export_holds_the_regressor_only(exported):
    full = torch.load(exported["ckpt"], map_location="cpu", weights_only=False)
    assert full["optimizer_states"] and full["global_step"] == 4  # the training state is in last.ckpt ...
    want = {k for k in full["state_dict"] if k.startswith(("model.backbone.", "model.head."))}
    assert any(k.startswith("model.backbone.") for k in want) and "model.head.fc1.weight" in want
    for precision in ("fp16", "fp32"):
        path = exported[precision]
        assert path.is_file() and not path.with_name(path.name + ".part").exists()
        obj = torch.load(path, map_location="cpu", weights_only=True)  # plain containers and tensors
        assert set(obj) == {"dsrbody", "state_dict"}  # ... not in the export
        assert set(obj["state_dict"]) == want
        for k, v in obj["state_dict"].items():
            ref = full["state_dict"][k]
            if ref.is_floating_point():
                assert v.dtype == (torch.float16 if precision == "fp16" else torch.float32), k
                assert torch.equal(v, ref.to(v.dtype)), k  # rounded once, nothing else
            else:
                assert v.dtype == ref.dtype and torch.equal(v, ref), k  # e.g. num_batches_tracked
        meta = dict(obj["dsrbody"])
        export = meta.pop("export")
        assert meta == full["dsrbody"]  # the self-description (recipe, body, backbone) is kept as it is
        assert export == {"from": "last.ckpt", "precision": precision, "global_step": 4, "epoch": 1}
    size = {k: p.stat().st_size for k, p in exported.items()}
    # Adam keeps two more copies of every weight: the fp32 export is ~1/3 of last.ckpt, fp16 half of that
    assert size["fp32"] < 0.4 * size["ckpt"]
    assert 0.45 * size["fp32"] < size["fp16"] < 0.55 * size["fp32"]


@pytest.fixture(scope="module")
def loaded(exported):
    """The three files through the demo's loader (the low-poly training mesh: cheaper to pose)."""
    from dsrbody.models.loader import load_model

    return {k: load_model(p, mesh="train") for k, p in exported.items()}


def test_exported_weights_predict_what_the_checkpoint_predicts(loaded):
    for k in ("fp16", "fp32"):
        assert loaded[k].kind == "dsrbody" and loaded[k].backbone == "resnet18"
        assert loaded[k].regressor.img_res == 96 and loaded[k].body_name == "anny"
        assert next(loaded[k].regressor.parameters()).dtype == torch.float32  # fp16 on disk only
    x = torch.randn(3, 3, 96, 96, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        out = {k: m.regressor(x) for k, m in loaded.items()}
        feats = {k: m.regressor.backbone(x) for k, m in loaded.items()}
        start = at_mean(loaded["ckpt"].regressor)(x)
    for key in (*HEAD_KEYS, "rotmat", "vertices_cam", "joints"):
        assert torch.equal(out["fp32"][key], out["ckpt"][key]), key  # --fp32: the same numbers
    rel = (feats["fp16"] - feats["ckpt"]).norm() / feats["ckpt"].norm()
    assert rel < 1e-2  # fp16 weights: ~2e-3 here
    for key in HEAD_KEYS:
        err = (out["fp16"][key] - out["ckpt"][key]).abs().max()
        moved = (out["ckpt"][key] - start[key]).abs().max()  # how far the 4 steps took it from the start
        # fp16 rounds each weight to ~5e-4 of itself: the error scales with the output's size
        size = max(1.0, float(out["ckpt"][key].abs().max()))
        assert err < 1e-3 * size and moved > 50 * err, (key, float(err), float(moved))


def test_export_refuses_what_is_not_a_dsrbody_checkpoint(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        export_inference(tmp_path / "none.ckpt", tmp_path / "o.pt")
    bare = tmp_path / "bare.pt"
    torch.save({"state_dict": {"model.head.fc1.weight": torch.zeros(2)}}, bare)
    with pytest.raises(ValueError, match="not a dsrbody training checkpoint"):
        export_inference(bare, tmp_path / "o.pt")
    no_head = tmp_path / "no_head.pt"
    torch.save({"dsrbody": {}, "state_dict": {"model.backbone.conv1.weight": torch.zeros(2)}}, no_head)
    with pytest.raises(ValueError, match="no regressor head"):
        export_inference(no_head, tmp_path / "o.pt")
    assert not (tmp_path / "o.pt").exists()


def test_shipped_model_path_is_in_the_package(monkeypatch, tmp_path):
    import dsrbody

    expected = Path(dsrbody.__file__).parent / "assets" / "models" / SHIPPED_MODEL
    try:  # the installed package may hold the file or not: either way it is this path
        assert shipped_model_path() == expected
    except ShippedModelMissing as e:
        assert str(expected) in str(e) and not expected.is_file()
    # a package root that holds the file / does not
    monkeypatch.setattr(shipped_mod, "resources", types.SimpleNamespace(files=lambda pkg: tmp_path))
    model = tmp_path / "assets" / "models" / SHIPPED_MODEL
    model.parent.mkdir(parents=True)
    model.write_bytes(b"weights")
    assert shipped_model_path() == model
    model.unlink()
    with pytest.raises(ShippedModelMissing) as err:
        shipped_model_path()
    assert isinstance(err.value, FileNotFoundError)  # the CLI reports it as one line
    msg = str(err.value)
    assert str(model) in msg and "--ckpt" in msg and "\n" not in msg


def test_shipped_model_missing_whatever_the_install(monkeypatch):
    monkeypatch.setattr(shipped_mod, "SHIPPED_MODEL", "no_such_model.pt")
    with pytest.raises(ShippedModelMissing, match=r"no_such_model\.pt: the shipped model is not installed"):
        shipped_model_path()


def _far_from_the_start(reg: Regressor) -> Regressor:
    """Decoders with weights large enough that the regressor's output is far from its start point."""
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for dec in (reg.head.decpose, reg.head.decshape, reg.head.deccam):
            dec.weight.copy_(0.05 * torch.randn(dec.weight.shape, generator=g))
            dec.bias.copy_(0.1 * torch.randn(dec.bias.shape, generator=g))
    return reg


@pytest.mark.parametrize("train_mode", [False, True])
def test_at_mean_predicts_the_start_point_for_any_image(train_mode):
    reg = _far_from_the_start(Regressor(tiny_backbone(), 8, TinyBody(), head_hidden=16, dropout=0.5))
    reg.train(train_mode)  # dropout on or off: the zeroed decoders add nothing either way
    before = {k: v.clone() for k, v in reg.state_dict().items()}
    ref = at_mean(reg)
    assert ref is not reg and ref.head is not reg.head
    head = reg.head
    for seed in (0, 1):
        x = 3.0 * torch.randn(4, 3, 64, 64, generator=torch.Generator().manual_seed(seed))
        with torch.no_grad():
            got, orig = ref(x), reg(x)
        assert torch.equal(got["pose6d"], head.init_pose.expand(4, -1))
        assert torch.equal(got["shape_raw"], head.init_shape.expand(4, -1))
        assert torch.equal(got["cam"], head.init_cam.expand(4, -1))
        assert torch.equal(got["shape"], reg.shape_from_raw(head.init_shape).expand(4, -1))
        # the mean body posed by the regressor's own body model and camera
        with torch.no_grad():
            posed = reg.pose_body(got["rotmat"][:1], got["shape"][:1], got["cam"][:1])
        assert torch.allclose(got["vertices_cam"], posed["vertices_cam"].expand(4, -1, -1), atol=1e-6)
        assert (orig["cam"] - got["cam"]).abs().max() > 1e-2  # the original still regresses
    after = reg.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # the original is untouched


def test_at_mean_of_a_bounded_shape_space(loaded):
    """Anny's phenotypes live in [lo, hi]: the start point's shape is the bounded mean, not the raw one."""
    reg = loaded["fp32"].regressor
    ref = at_mean(reg)
    x = torch.randn(2, 3, 96, 96, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        got = ref(x)
    assert reg.shape_lo is not None
    assert torch.equal(got["shape_raw"], reg.head.init_shape.expand(2, -1))
    assert torch.equal(got["shape"], reg.shape_from_raw(reg.head.init_shape).expand(2, -1))
    assert ((got["shape"] >= reg.shape_lo) & (got["shape"] <= reg.shape_hi)).all()
    assert torch.equal(got["cam"], reg.head.init_cam.expand(2, -1))
