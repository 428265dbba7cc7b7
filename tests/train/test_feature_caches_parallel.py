"""``dsrbody cache`` / :func:`dsrbody.train.build.build_feature_caches`: a recipe's feature caches built
by several processes hold what the backbone's frozen part gives for each crop, once per cache file
(folders linked to one another share one), are kept when there, and bad recipes are refused in one line."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from train_testkit import tiny_overrides

from dsrbody.cli import main
from dsrbody.data import SpinNpzDataset
from dsrbody.models.backbones import build_backbone
from dsrbody.train import load_config
from dsrbody.train.build import build_feature_caches
from dsrbody.train.config import ConfigError

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
RECIPE = CONFIGS / "synth_blazepose_tuned8.yaml"


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("features"))
    return dst


@pytest.fixture()
def root(synth16, tmp_path) -> tuple[Path, list[str]]:
    """The recipe's layout on two copies of the 16-sample set: train128 and train128b are one folder
    (one cache file), train128_hard the other; validation on the first copy's 4 test samples."""
    a, b = _copy(synth16, tmp_path / "a"), _copy(synth16, tmp_path / "b")
    root = tmp_path / "root"
    root.mkdir()
    (root / "train128").symlink_to(a, target_is_directory=True)
    (root / "train128b").symlink_to(a, target_is_directory=True)
    (root / "train128_hard").symlink_to(b, target_is_directory=True)
    val = [f"data.val.0.npz={a / 'synth_test.npz'}", f"data.val.0.img_dir={a}"]
    return root, tiny_overrides(root, *val)


def test_cache_command_builds_each_file_once_in_parallel(root, capsys):
    data, overrides = root
    # overrides may follow --splits (its list ends where KEY=VALUE words begin)
    assert main(["cache", "--config", str(RECIPE), "--jobs", "2", "--splits", "val", *overrides]) == 0
    assert "1 cache file(s) of backbone blazepose_tuned8 ready" in capsys.readouterr().out
    assert main(["cache", "--config", str(RECIPE), "--jobs", "2", *overrides]) == 0
    out = capsys.readouterr().out
    assert "3 cache file(s) of backbone blazepose_tuned8 ready" in out and out.count("(built)") == 2
    a, b = (data / "train128").resolve(), (data / "train128_hard").resolve()
    name = "blazepose_tuned8_256.npy"
    files = [
        a / f"features/synth_train.{name}",
        b / f"features/synth_train.{name}",
        a / f"features/synth_test.{name}",
    ]
    assert all(f.is_file() for f in files)
    assert not list(a.glob("features/*.partial.*")) and not list(b.glob("features/*.partial.*"))

    # each row is the frozen part's output for that crop
    backbone = build_backbone("blazepose_tuned8")[0].eval()
    for f, npz in ((files[0], a / "synth_train.npz"), (files[2], a / "synth_test.npz")):
        ds = SpinNpzDataset(npz, a, parsing=False, res=256)
        rows = np.load(f)
        assert rows.shape == (len(ds), backbone.cache_dim) and rows.dtype == np.float16
        imgs = torch.stack([ds[i]["img"] for i in range(3)])
        want = backbone.cache_rows(imgs)
        torch.testing.assert_close(torch.from_numpy(rows[:3].astype(np.float32)), want, atol=2e-2, rtol=2e-3)

    # run again: nothing is rebuilt
    stamps = [f.stat().st_mtime_ns for f in files]
    cfg = load_config(RECIPE, overrides)
    again = build_feature_caches(cfg, jobs=2)
    assert [built for _, _, built in again] == [False, False, False]
    assert [n for _, n, _ in again] == [16, 16, 4]
    assert [f.stat().st_mtime_ns for f in files] == stamps


def test_cache_refuses_what_has_nothing_to_cache(root, capsys):
    data, overrides = root
    cfg = load_config(CONFIGS / "synth_cpu.yaml", overrides)  # a ResNet trains as a whole
    with pytest.raises(ConfigError, match="'resnet18' trains as a whole"):
        build_feature_caches(cfg, jobs=2)
    assert main(["cache", "--config", str(RECIPE), "--jobs", "0", *overrides]) == 1
    assert "--jobs must be at least 1" in capsys.readouterr().err
    assert main(["cache", "--config", str(RECIPE), "--splits", "train", "tset", *overrides]) == 1
    assert "--splits: expected some of train, val, test, got train tset" in capsys.readouterr().err
    stream = [
        "data.train.0.npz=null",
        "data.train.0.img_dir=null",
        "data.train.0.synth={num: 8, split: train}",
    ]
    assert main(["cache", "--config", str(RECIPE), *overrides, *stream]) == 1
    err = capsys.readouterr().err
    assert err.startswith("dsrbody cache: error:") and "not an annotation file" in err


def test_a_workers_error_is_one_line(root, capsys):
    """A file whose unfinished cache was started for another number of samples: its worker's error
    reaches the command as one line."""
    from dsrbody.data.feature_cache import file_fingerprint

    data, overrides = root
    b = (data / "train128_hard").resolve()
    partial = b / "features" / "synth_train.blazepose_tuned8_256.partial.npy"
    partial.parent.mkdir()
    np.save(partial, np.zeros((5, 9216), np.float16))
    fp = file_fingerprint(b / "synth_train.npz")
    partial.with_name(partial.name.replace(".npy", ".json")).write_text(
        f'{{"done": 2, "n": 5, "fingerprint": "{fp}"}}'
    )
    assert main(["cache", "--config", str(RECIPE), "--jobs", "2", *overrides]) == 1
    err = capsys.readouterr().err
    assert err.startswith("dsrbody cache: error:") and "an unfinished cache of 5 samples" in err
    assert len(err.strip().splitlines()) == 1


def test_mirrored_caches_are_built_for_the_training_files(root, capsys):
    """``model.feature_cache_mirrored``: each training file also gets the cache of its mirrored crops
    (validation files do not: validation never mirrors), and the training set reads both."""
    from dsrbody.train.build import build_train_set

    data, overrides = root
    overrides = [*overrides, "model.feature_cache_mirrored=true"]
    assert main(["cache", "--config", str(RECIPE), "--jobs", "2", *overrides]) == 0
    out = capsys.readouterr().out
    assert "5 cache file(s) of backbone blazepose_tuned8 ready" in out and out.count("(built)") == 5
    a = (data / "train128").resolve()
    mirrored = a / "features/synth_train.blazepose_tuned8_256.mirrored.npy"
    assert mirrored.is_file()
    assert not (a / "features/synth_test.blazepose_tuned8_256.mirrored.npy").exists()
    backbone = build_backbone("blazepose_tuned8")[0].eval()
    ds = SpinNpzDataset(a / "synth_train.npz", a, parsing=False, res=256)
    imgs = torch.stack([ds[i]["img"].flip(-1) for i in range(3)])
    rows = torch.from_numpy(np.load(mirrored)[:3].astype(np.float32))
    torch.testing.assert_close(rows, backbone.cache_rows(imgs), atol=2e-2, rtol=2e-3)

    train = build_train_set(load_config(RECIPE, overrides))
    assert all(s.mirrored_feature_file is not None for s in train.datasets)
    for build in (build_train_set, build_feature_caches):
        with pytest.raises(ConfigError, match="feature_cache_mirrored needs model.feature_cache"):
            build(load_config(CONFIGS / "synth_cpu.yaml", overrides))
