"""configs/synth_blazepose.yaml, synth_blazepose_tuned.yaml, synth_blazepose_shape.yaml,
synth_blazepose_tuned8.yaml, synth_blazepose_tuned8b.yaml and synth_blazepose_mirrored.yaml (over
synth_blazepose_100k.yaml, with mirrored caches) on the 16-sample set: the output of the BlazePose
backbone's frozen part is cached at the start of training, only the head (and the tuned stages) train, the
trained checkpoint predicts the same from images (the backbone run live, as demo/eval/fit do) as from the
cache, the tuned recipe starts from a frozen-backbone checkpoint (and the deeper cut from a tuned one), and
the shape recipe moves its start point to the data's mean shape."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from train_testkit import cpu_recipe_root, tiny_overrides

from dsrbody.cli import main
from dsrbody.data import SpinNpzDataset
from dsrbody.models.backbones import build_backbone
from dsrbody.models.hmr import at_mean
from dsrbody.models.loader import load_model

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
CONFIG = CONFIGS / "synth_blazepose.yaml"


@pytest.mark.parametrize(
    "recipe,backbone,channels",
    [
        ("synth_blazepose.yaml", "blazepose", 1465),
        ("synth_blazepose_tuned.yaml", "blazepose_tuned", 4608),
        ("synth_blazepose_shape.yaml", "blazepose_tuned", 4608),
        ("synth_blazepose_tuned8.yaml", "blazepose_tuned8", 9216),
        ("synth_blazepose_tuned8b.yaml", "blazepose_tuned8b", 9216),
        # the sixth stage's recipe and its mirrored caches (the 100k recipe is its base)
        ("synth_blazepose_mirrored.yaml", "blazepose_tuned8b", 9216),
    ],
)
def test_blazepose_recipe_trains_on_cached_features(synth16, tmp_path, recipe, backbone, channels):
    root = cpu_recipe_root(synth16)
    test = [f"data.{s}.0.{k}={v}" for s in ("val", "test")
            for k, v in (("npz", synth16 / "synth_test.npz"), ("img_dir", synth16))]  # fmt: skip
    out = tmp_path / "run"
    args = ["train", "--config", str(CONFIGS / recipe), "--out", str(out)]
    steps = ["trainer.max_steps=3", "trainer.val_every_n_steps=3", "trainer.checkpoint_every_n_steps=0"]
    tuned = backbone.startswith("blazepose_tuned")
    ratio = ["optim.backbone_lr_ratio=0.33"] if tuned else []
    args += tiny_overrides(root, *test, *steps, "optim.warmup_steps=1", *ratio)
    assert main(args) == 0
    cache = synth16 / "features" / f"synth_train.{backbone}_256.npy"
    test_cache = synth16 / "features" / f"synth_test.{backbone}_256.npy"
    assert cache.is_file() and test_cache.is_file()
    assert np.load(cache).shape == (16, channels)
    if recipe == "synth_blazepose_mirrored.yaml":  # the mirrored crops' cache too
        assert np.load(cache.with_name(cache.name.replace(".npy", ".mirrored.npy"))).shape == (16, channels)
    if recipe in (
        "synth_blazepose_shape.yaml",
        "synth_blazepose_tuned8.yaml",
        "synth_blazepose_tuned8b.yaml",
        "synth_blazepose_mirrored.yaml",
    ):  # the terms without stature were computed and logged
        metrics_csv = next((out / "csv").rglob("metrics.csv")).read_text().splitlines()[0]
        assert "train/vertices_sc" in metrics_csv and "train/rest_vertices_sc" in metrics_csv

    loaded = load_model(out / "checkpoints" / "last.ckpt", mesh="train")
    assert loaded.backbone == backbone
    reg = loaded.regressor.eval()
    if tuned:  # its last stages trained, here at a third of the head's rate
        fresh = build_backbone(backbone)[0]
        moved = [n for n, p in reg.backbone.named_parameters() if not torch.equal(p, fresh.get_parameter(n))]
        assert moved
        ckpt = torch.load(out / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
        lrs = [g["lr"] for g in ckpt["optimizer_states"][0]["param_groups"]]
        assert len(lrs) == 2 and lrs[1] == pytest.approx(lrs[0] * 0.33)
    ds = SpinNpzDataset(synth16 / "synth_test.npz", synth16, parsing=False, res=256)
    imgs = torch.stack([ds[i]["img"] for i in range(len(ds))])
    rows = torch.from_numpy(np.load(test_cache).astype(np.float32))
    with torch.no_grad():
        live = reg(imgs)
        cached = reg.forward_cached(rows)
    torch.testing.assert_close(live["joints"], cached["joints"], atol=5e-3, rtol=0)

    # dsrbody eval runs the backbone on the images: it writes no cache into the data folder
    test_cache.unlink()
    metrics = tmp_path / "eval"
    assert main(["eval", "--ckpt", str(out / "checkpoints" / "last.ckpt"), "--data", str(synth16),
                 "--out", str(metrics), "--pictures", "0", "--quiet"]) == 0  # fmt: skip
    assert (metrics / "metrics_test.json").is_file()
    assert not test_cache.exists()


def test_feature_caches_are_built_in_prepare_data(synth16, tmp_path):
    """Lightning calls prepare_data once per machine: the caches are complete before any DDP rank's
    setup, which then only attaches them."""
    from dsrbody.train import load_config
    from dsrbody.train.datamodule import DSRDataModule

    root = tmp_path / "root"
    for name in ("train128", "train128b", "train128_hard"):  # the recipe's layout, each a copy
        (root / name).mkdir(parents=True)
        for f in ("synth_train.npz", "images"):
            (root / name / f).symlink_to(synth16 / f, target_is_directory=f == "images")
    test = [
        f"data.val.0.{k}={v}"
        for k, v in (("npz", synth16 / "synth_test.npz"), ("img_dir", root / "train128"))
    ]
    dm = DSRDataModule(load_config(CONFIG, tiny_overrides(root, *test)))
    dm.prepare_data()
    made = sorted(p.relative_to(root).as_posix() for p in root.glob("*/features/*.npy"))
    want = [("train128", "test"), ("train128", "train"), ("train128_hard", "train"), ("train128b", "train")]
    assert made == [f"{n}/features/synth_{s}.blazepose_256.npy" for n, s in want]
    stamps = {p: p.stat().st_mtime_ns for p in root.glob("*/features/*.npy")}
    dm.setup("fit")
    assert {p: p.stat().st_mtime_ns for p in root.glob("*/features/*.npy")} == stamps
    assert "features" in dm.train_set[0] and "features" in dm.val_set[0]


def test_the_tuned_recipe_starts_from_a_frozen_checkpoint(synth16, tmp_path):
    """model.init_checkpoint of a run on the frozen backbone: the head loads, the tuned stages start
    from the asset, so the new regressor predicts what the checkpoint does; the reverse is refused."""
    from dsrbody.train import load_config
    from dsrbody.train.build import build_body, build_model

    root = cpu_recipe_root(synth16)
    test = [f"data.{s}.0.{k}={v}" for s in ("val", "test")
            for k, v in (("npz", synth16 / "synth_test.npz"), ("img_dir", synth16))]  # fmt: skip
    out = tmp_path / "frozen"
    steps = ["trainer.max_steps=2", "trainer.val_every_n_steps=0", "trainer.checkpoint_every_n_steps=0"]
    args = ["train", "--config", str(CONFIG), "--out", str(out)]
    assert main(args + tiny_overrides(root, *test, *steps, "optim.warmup_steps=1")) == 0
    ckpt = out / "checkpoints" / "last.ckpt"

    init = f"model.init_checkpoint={ckpt}"
    cfg = load_config(CONFIGS / "synth_blazepose_tuned.yaml", tiny_overrides(root, init))
    body = build_body(cfg)
    tuned = build_model(cfg, body).eval()
    frozen = load_model(ckpt, mesh="train").regressor.eval()
    assert any(n.startswith("backbone.tail.") for n, _ in tuned.named_parameters())
    ds = SpinNpzDataset(synth16 / "synth_test.npz", synth16, parsing=False, res=256)
    imgs = torch.stack([ds[i]["img"] for i in range(4)])
    with torch.no_grad():
        torch.testing.assert_close(tuned(imgs)["joints"], frozen(imgs)["joints"], atol=1e-3, rtol=0)

    # a bare state dict (no dsrbody metadata): its keys say it was trained on the frozen backbone
    bare = tmp_path / "bare.pt"
    torch.save(frozen.state_dict(), bare)
    cfg = load_config(
        CONFIGS / "synth_blazepose_tuned.yaml", tiny_overrides(root, f"model.init_checkpoint={bare}")
    )
    again = build_model(cfg, body).eval()
    with torch.no_grad():
        torch.testing.assert_close(again(imgs)["joints"], frozen(imgs)["joints"], atol=1e-3, rtol=0)

    # the shape recipe's start point replaces the checkpoint's, the rest loads as before
    cfg = load_config(CONFIGS / "synth_blazepose_shape.yaml", tiny_overrides(root, init))
    assert cfg.loss.weights.vertices == 0 and cfg.loss.weights.vertices_sc > 0
    shaped = build_model(cfg, body).eval()
    with torch.no_grad():
        mean = at_mean(shaped)(imgs[:1])["shape"][0, : len(cfg.model.init_shape)]
    torch.testing.assert_close(mean, torch.tensor(list(cfg.model.init_shape)), atol=1e-5, rtol=0)
    torch.testing.assert_close(shaped.head.fc1.weight, tuned.head.fc1.weight)
    assert not torch.equal(shaped.head.init_shape, tuned.head.init_shape)

    with torch.no_grad():  # tuned stages that differ from the asset's, as after training
        for p in tuned.backbone.tail.parameters():
            p.mul_(1.01)
    tuned_ckpt = tmp_path / "tuned.ckpt"
    torch.save({"state_dict": {f"model.{k}": v for k, v in tuned.state_dict().items()},
                "dsrbody": {**torch.load(ckpt, map_location="cpu", weights_only=False)["dsrbody"],
                            "backbone": "blazepose_tuned"}}, tuned_ckpt)  # fmt: skip
    # the deeper cut from the tuned checkpoint: the head and the tuned stages both have load, the
    # trunk's last expansion and the regression branch's 8 x 8 stage start from the asset
    cfg8 = load_config(
        CONFIGS / "synth_blazepose_tuned8.yaml", tiny_overrides(root, f"model.init_checkpoint={tuned_ckpt}")
    )
    deep = build_model(cfg8, body)
    shared = dict(tuned.backbone.tail.named_parameters())
    asset = dict(build_backbone("blazepose_tuned8")[0].tail.named_parameters())
    for n, p in deep.backbone.tail.named_parameters():
        torch.testing.assert_close(p, shared[n] if n in shared else asset[n], rtol=0, atol=0)
    assert len(asset) > len(shared) and not torch.equal(shared["w102"], asset["w102"])
    torch.testing.assert_close(deep.head.fc1.weight, tuned.head.fc1.weight)

    back = load_config(CONFIG, tiny_overrides(root, f"model.init_checkpoint={tuned_ckpt}"))
    with pytest.raises(ValueError, match="backbone 'blazepose_tuned'"):
        build_model(back, body)
