"""``dsrbody train`` / ``dsrbody eval`` on a tiny synthetic set, a 2-process DDP CPU run, bad input."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from dsrbody.cli import main

ROOT = Path(__file__).resolve().parents[2]
CONFIG = str(ROOT / "configs" / "synth_dsr.yaml")
sys.path.insert(0, str(ROOT / "tests" / "train"))
from train_testkit import make_synth16, tiny_overrides  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def synth(tmp_path_factory) -> Path:
    return make_synth16(tmp_path_factory.getbasetemp())


@pytest.fixture(scope="module")
def trained(synth, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("cli_train")
    args = [
        "train",
        "--config",
        CONFIG,
        "--out",
        str(out),
        *tiny_overrides(synth, "data.epoch_length=8", "trainer.max_epochs=1"),
    ]
    assert main(args) == 0
    return out


def test_train_writes_config_checkpoints_and_logs(trained, capsys):
    assert (trained / "config.yaml").is_file()
    assert (trained / "checkpoints" / "last.ckpt").is_file()
    assert (trained / "checkpoints" / "best.ckpt").is_file()  # validated on the 4 test samples
    assert list((trained / "tensorboard").rglob("events.out.tfevents.*"))
    assert list((trained / "csv").rglob("metrics.csv"))
    ck = torch.load(trained / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert ck["global_step"] == 2 and ck["dsrbody"]["config"]["data"]["epoch_length"] == 8


def test_eval_prints_table_and_writes_json_and_picture(trained, synth, tmp_path, capsys):
    out = tmp_path / "eval"
    ckpt = trained / "checkpoints" / "best.ckpt"
    args = ["--out", str(out), "--quiet", "--pictures", "2", f"data.root={synth}", "data.num_workers=0"]
    rc = main(["eval", "--config", CONFIG, "--ckpt", str(ckpt), *args])
    assert rc == 0
    text = capsys.readouterr().out
    assert "PA-MPJPE" in text and "PVE-T" in text
    res = json.loads((out / "metrics_test.json").read_text())
    assert res["n_samples"] == 4 and res["mesh"] == "anny"
    for k in ("mpjpe", "pa_mpjpe", "pve", "pve_t"):
        assert res[f"n_{k}"] == 4 and 0 < res[k] < 5000
    assert res["score"] == pytest.approx(1.5 * res["pa_mpjpe"] + res["mpjpe"])
    assert len(res["joints"]) == 12
    import cv2

    pic = cv2.imread(str(out / "overlays_test.png"))
    assert pic is not None and pic.shape[0] >= 2 * 224 and pic.shape[1] >= 4 * 224


def _eval_without_and_with(flag: str, said: str, trained, synth, tmp_path, capsys) -> dict[bool, dict]:
    """``dsrbody eval --mean-body`` of the trained run on the test split, without and with ``flag``: its
    metrics_test.json each time; the printed line ``said`` appears only with the flag."""
    ckpt = trained / "checkpoints" / "best.ckpt"
    args = ["--quiet", "--pictures", "0", "--mean-body", f"data.root={synth}", "data.num_workers=0"]
    res = {}
    for on in (False, True):
        out = tmp_path / f"eval_{on}"
        extra = [flag] if on else []
        assert main(["eval", "--config", CONFIG, "--ckpt", str(ckpt), "--out", str(out), *extra, *args]) == 0
        assert (said in capsys.readouterr().out) == on
        res[on] = json.loads((out / "metrics_test.json").read_text())
        assert res[on]["n_samples"] == 4
    return res


def test_eval_with_flip_averages_crop_and_mirror(trained, synth, tmp_path, capsys):
    res = _eval_without_and_with("--flip", "flip test-time augmentation", trained, synth, tmp_path, capsys)
    assert [res[on]["flip"] for on in (False, True)] == [False, True]
    # the estimate changes (that the mirror is right for Anny: tests/eval/test_protocols.py)
    assert res[True]["pa_mpjpe"] != pytest.approx(res[False]["pa_mpjpe"], abs=1e-3)


def test_eval_with_known_stature_scores_both_columns_at_the_true_height(trained, synth, tmp_path, capsys):
    said = "known stature: each body given"
    res = _eval_without_and_with("--known-stature", said, trained, synth, tmp_path, capsys)
    assert [res[on]["known_stature"] for on in (False, True)] == [False, True]
    for col in (res[True], res[True]["mean_body"]):  # both columns: the height changes PVE-T
        assert col["pve_t"] > 0
    assert res[True]["pve_t"] != pytest.approx(res[False]["pve_t"], abs=1e-3)
    assert res[True]["mean_body"]["pve_t"] != pytest.approx(res[False]["mean_body"]["pve_t"], abs=1e-3)
    ckpt = trained / "checkpoints" / "best.ckpt"
    assert main(["eval", "--dataset", "3dpw", "--ckpt", str(ckpt), "--known-stature"]) == 1
    err = capsys.readouterr().err
    assert "--known-stature is for --data/--config" in err and err.count("\n") == 1


def test_eval_max_samples_takes_the_first_n(trained, synth, tmp_path, capsys):
    ckpt = trained / "checkpoints" / "best.ckpt"
    args = ["--quiet", "--pictures", "0", f"data.root={synth}", "data.num_workers=0"]
    counts = {}
    for n in (2, 100):
        out = tmp_path / f"eval_{n}"
        run = ["eval", "--config", CONFIG, "--ckpt", str(ckpt), "--out", str(out), "--max-samples", str(n)]
        assert main([*run, *args]) == 0
        counts[n] = json.loads((out / "metrics_test.json").read_text())["n_samples"]
    assert counts == {2: 2, 100: 4}  # the split has 4
    capsys.readouterr()
    assert main(["eval", "--config", CONFIG, "--ckpt", str(ckpt), "--max-samples", "0", *args]) == 1
    err = capsys.readouterr().err
    assert "--max-samples must be at least 1, got 0" in err and err.count("\n") == 1


def test_eval_refuses_another_backbone(trained, synth, capsys):
    ckpt = trained / "checkpoints" / "last.ckpt"
    rc = main(
        ["eval", "--config", CONFIG, "--ckpt", str(ckpt), f"data.root={synth}", "model.backbone=resnet34"]
    )
    assert rc == 1
    err = capsys.readouterr().err
    assert "last.ckpt: checkpoint was trained with body model 'anny' and backbone 'resnet18'" in err
    assert err.count("\n") == 1  # one line, no traceback


def test_train_bad_input_is_one_line(tmp_path, capsys):
    bad = tmp_path / "typo.yaml"
    bad.write_text("optim:\n  lrr: 0.1\n")
    assert main(["train", "--config", str(bad)]) == 1
    err = capsys.readouterr().err
    assert "unknown config key 'optim.lrr'" in err and err.count("\n") == 1
    assert main(["train", "--config", CONFIG, f"data.root={tmp_path}/nothing"]) == 1
    err = capsys.readouterr().err
    assert "nothing/synth_train.npz: dataset annotation file does not exist" in err
    assert main(["train", "--config", CONFIG, "--resume", "--out", str(tmp_path / "fresh")]) == 1
    assert "no checkpoint to resume from" in capsys.readouterr().err


def test_ddp_two_cpu_processes(synth, tmp_path):
    out = tmp_path / "ddp"
    ddp = ["trainer.strategy=ddp", "trainer.devices=2", "trainer.accelerator=cpu"]
    small = ["data.batch_size=2", "trainer.limit_train_batches=2", "trainer.max_epochs=1"]
    cmd = [sys.executable, "-m", "dsrbody.cli", "train", "--config", CONFIG, "--out", str(out)]
    cmd += tiny_overrides(synth, *ddp, *small)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600, cwd=str(ROOT))
    assert proc.returncode == 0, proc.stderr[-3000:]
    ck = torch.load(out / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert ck["global_step"] == 2  # 2 optimiser steps, each on 2 processes x 2 images
    rows = list(csv.DictReader(open(next((out / "csv").rglob("metrics.csv")))))
    n_val = [float(r["val/n_samples"]) for r in rows if r.get("val/n_samples")]
    assert n_val == [4.0]  # the 4 test samples, split over the 2 processes and gathered
