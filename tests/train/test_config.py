"""Recipes load, unknown keys are named, overrides apply with types checked."""

from __future__ import annotations

from pathlib import Path

import pytest

from dsrbody.train.config import ConfigError, config_from_dict, load_config

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


@pytest.mark.parametrize("name", ["dsr_paper", "spin_baseline", "synth_dsr", "synth_baseline"])
def test_recipes_load(name):
    cfg = load_config(CONFIGS / f"{name}.yaml")
    assert cfg.name == name
    assert len(cfg.data.train) >= 1


def test_paper_recipe_is_the_official_one():
    cfg = load_config(CONFIGS / "dsr_paper.yaml", ["data.root=/data"])
    assert cfg.model.backbone == "resnet50" and cfg.body.name == "smpl"
    assert cfg.optim.lr == pytest.approx(3e-5) and cfg.data.batch_size == 128
    assert cfg.trainer.max_epochs == 50 and cfg.loss.start_dsr == 2
    assert cfg.loss.sigma == pytest.approx(1e-5) and cfg.loss.gamma == pytest.approx(0.1)
    ratios = {d.name: d.ratio for d in cfg.data.train}
    assert ratios == {"h36m": 0.5, "coco": 0.3, "mpi-inf-3dhp": 0.2}
    assert cfg.data.train[0].npz.startswith("/data/")
    w = cfg.loss.weights
    assert (w.keypoints_2d, w.keypoints_3d, w.pose, w.betas, w.dsr_mc, w.dsr_c, w.overall) == (
        5.0, 5.0, 1.0, 0.001, 0.1, 0.1, 60.0,
    )  # fmt: skip
    assert [d.name for d in cfg.data.val] == ["3dpw"]


def test_unknown_key_in_file_is_named(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("loss:\n  weights:\n    dsr_mcc: 0.1\n")
    with pytest.raises(ConfigError, match=r"unknown config key 'loss\.weights\.dsr_mcc'"):
        load_config(p)
    p.write_text("data:\n  train:\n    - npz: a.npz\n      img_dir: .\n      ration: 0.5\n")
    with pytest.raises(ConfigError, match=r"'data\.train\.0\.ration'"):
        load_config(p)


def test_overrides_apply_and_are_checked():
    cfg = load_config(
        CONFIGS / "synth_dsr.yaml", ["optim.lr=0.5", "data.train.0.ratio=2", "trainer.devices=2"]
    )
    assert cfg.optim.lr == 0.5 and cfg.data.train[0].ratio == 2.0 and cfg.trainer.devices == "2"
    with pytest.raises(ConfigError, match=r"unknown config key 'optim\.lrr'"):
        load_config(CONFIGS / "synth_dsr.yaml", ["optim.lrr=1"])
    with pytest.raises(ConfigError, match="optim.lr"):
        load_config(CONFIGS / "synth_dsr.yaml", ["optim.lr=fast"])
    with pytest.raises(ConfigError, match="key=value"):
        load_config(CONFIGS / "synth_dsr.yaml", ["optim.lr"])


def test_interpolation_and_missing_file(tmp_path):
    cfg = config_from_dict(
        {"data": {"root": "/x", "train": [{"npz": "${data.root}/a.npz", "img_dir": "/x"}]}}
    )
    assert cfg.data.train[0].npz == "/x/a.npz"
    with pytest.raises(FileNotFoundError, match="nope.yaml"):
        load_config(tmp_path / "nope.yaml")


def test_missing_dataset_path_names_path_and_layout(tmp_path):
    from dsrbody.train.build import build_train_set

    cfg = load_config(CONFIGS / "synth_dsr.yaml", [f"data.root={tmp_path}/absent"])
    with pytest.raises(FileNotFoundError, match=r"absent/synth_train\.npz.*expected a SPIN/DSR annotation"):
        build_train_set(cfg)


def test_regime_recipe_makes_the_papers_scarce_shape_supervision():
    """configs/synth_regime.yaml: few-subject full 3D / many bodies with 2D only / few subjects with 3D
    joints, at DSR's 0.5 / 0.3 / 0.2, made by the `dsrbody synth` commands in its header (the label
    sets themselves: tests/data/synth/test_synth.py)."""
    cfg = load_config(CONFIGS / "synth_regime.yaml", ["data.root=/d"])
    sets = {d.name: d for d in cfg.data.train}
    assert {k: d.ratio for k, d in sets.items()} == {"h36m_like": 0.5, "wild_like": 0.3, "mpi_like": 0.2}
    wild = sets["wild_like"]
    assert wild.npz == "/d/regime_wild/synth_train.npz" and wild.parsing is not False
    header = (CONFIGS / "synth_regime.yaml").read_text()
    for folder, flags in (("regime_3d", "--subjects 6"), ("regime_wild", "--labels 2d"),
                          ("regime_mpi", "--subjects 8 --labels 3d")):  # fmt: skip
        assert any(f"--out DATA/{folder} " in line and flags in line for line in header.splitlines())
    assert cfg.loss.weights.dsr_mc == 0.0 and cfg.model.img_res == 96
