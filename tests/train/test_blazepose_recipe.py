"""configs/synth_blazepose.yaml on the 16-sample set: the frozen BlazePose backbone's features are cached
at the start of training, only the head trains, and the trained checkpoint predicts the same from images
(the backbone run live, as demo/eval/fit do) as from the cache."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from train_testkit import cpu_recipe_root, tiny_overrides

from dsrbody.cli import main
from dsrbody.data import SpinNpzDataset
from dsrbody.models.loader import load_model

CONFIG = Path(__file__).resolve().parents[2] / "configs" / "synth_blazepose.yaml"


def test_blazepose_recipe_trains_its_head_on_cached_features(synth16, tmp_path):
    root = cpu_recipe_root(synth16)
    test = [f"data.{s}.0.{k}={v}" for s in ("val", "test")
            for k, v in (("npz", synth16 / "synth_test.npz"), ("img_dir", synth16))]  # fmt: skip
    out = tmp_path / "run"
    args = ["train", "--config", str(CONFIG), "--out", str(out)]
    steps = ["trainer.max_steps=3", "trainer.val_every_n_steps=3", "trainer.checkpoint_every_n_steps=0"]
    args += tiny_overrides(root, *test, *steps, "optim.warmup_steps=1")
    assert main(args) == 0
    cache = synth16 / "features" / "synth_train.blazepose_256.npy"
    test_cache = synth16 / "features" / "synth_test.blazepose_256.npy"
    assert cache.is_file() and test_cache.is_file()
    assert np.load(cache).shape == (16, 1465)

    loaded = load_model(out / "checkpoints" / "last.ckpt", mesh="train")
    assert loaded.backbone == "blazepose"
    reg = loaded.regressor.eval()
    ds = SpinNpzDataset(synth16 / "synth_test.npz", synth16, parsing=False, res=256)
    imgs = torch.stack([ds[i]["img"] for i in range(len(ds))])
    feats = torch.from_numpy(np.load(test_cache).astype(np.float32))
    with torch.no_grad():
        live = reg(imgs)
        cached = reg.forward_features(feats[:, :, None, None])
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
