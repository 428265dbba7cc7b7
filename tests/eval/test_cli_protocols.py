"""``dsrbody eval --dataset ...`` with SPIN-layout released weights (``{'model': flat state dict}``)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from protocol_files import random_smpl_params, smpl_vertices, write_s_file

from dsrbody.cli import main


@pytest.fixture(scope="module")
def spin_weights(smpl_dir, tmp_path_factory):
    """A ResNet-18 SMPL regressor saved in SPIN's ``model_checkpoint.pt`` layout."""
    from dsrbody.body.smpl import SMPL
    from dsrbody.models import build_regressor

    torch.manual_seed(0)
    reg = build_regressor(SMPL(smpl_dir, gender="neutral"), backbone="resnet18").eval()
    flat = {k.split(".", 1)[1]: v for k, v in reg.state_dict().items()}  # conv1.weight, fc1.weight, ...
    path = tmp_path_factory.mktemp("ckpt") / "model_checkpoint.pt"
    torch.save({"model": flat, "optimizer": {}}, path)
    return path, reg


def test_eval_dataset_with_spin_weights(smpl_dir, spin_weights, tmp_path, capsys):
    from dsrbody.eval.protocols import RegressorPredictor, SMPLKit, evaluate

    path, reg = spin_weights
    kit = SMPLKit(smpl_dir, genders=("neutral",))
    rng = np.random.default_rng(0)
    pose, shape = random_smpl_params(3, rng)
    v = smpl_vertices(kit.models["neutral"], pose, shape)
    R = kit.J_regressor_h36m.double().numpy()
    root = tmp_path / "data"
    (root / "dataset_extras").mkdir(parents=True)
    write_s_file(
        root, "dataset_extras/h36m_valid_protocol2.npz", np.stack([R @ x for x in v.double().numpy()]), rng
    )
    out = tmp_path / "out"
    code = main(["eval", "--dataset", "h36m-p2", "--data-root", str(root), "--ckpt", str(path),
                 "--smpl-dir", str(smpl_dir), "--backbone", "resnet18", "--workers", "0", "--out", str(out),
                 "--quiet", "--pictures", "0", "--flip"])  # fmt: skip
    assert code == 0
    printed = capsys.readouterr().out
    assert "h36m-p2: 3 of 3 samples evaluated, flip TTA" in printed and "40.3" in printed
    js = json.loads((out / "metrics.json").read_text())
    assert js["flip_tta"] and js["num_evaluated"] == 3
    want = evaluate("h36m-p2", root / "dataset_extras" / "h36m_valid_protocol2.npz", root,
                    RegressorPredictor(reg, flip=True), smpl_kit=kit, progress=False)  # fmt: skip
    assert js["metrics"]["pa_mpjpe"] == pytest.approx(want.metrics["pa_mpjpe"], abs=1e-3)
    assert js["metrics"]["mpjpe"] == pytest.approx(want.metrics["mpjpe"], abs=1e-3)
    assert (out / "report.html").is_file() and (out / "per_sample.csv").is_file()


def test_eval_dataset_errors(spin_weights, tmp_path, capsys):
    path, _ = spin_weights
    (tmp_path / "h36m_valid_protocol1.npz").write_bytes(b"")
    code = main(["eval", "--dataset", "h36m-p1", "--data-root", str(tmp_path), "--ckpt", str(path)])
    assert code == 1
    assert "not a dsrbody checkpoint" in capsys.readouterr().err
    code = main(["eval", "--dataset", "3dpw", "--data-root", str(tmp_path), "--ckpt", str(path)])
    assert code == 1 and "3dpw_test.npz" in capsys.readouterr().err
    code = main(["eval", "--ckpt", str(path)])
    assert code == 1 and "stores no recipe: pass --config" in capsys.readouterr().err


@pytest.mark.slow
def test_eval_dataset_synth_with_a_dsrbody_checkpoint(tmp_path_factory, capsys):
    """A dsrbody checkpoint carries its recipe: ``--dataset synth`` needs no --config and gives the
    numbers of ``dsrbody eval --config``; the SMPL protocols refuse its Anny body in one line."""
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    sys.path.insert(0, str(root / "tests" / "train"))
    from protocol_files import write_3dpw
    from train_testkit import make_synth16, tiny_overrides

    config = str(root / "configs" / "synth_dsr.yaml")
    synth = make_synth16(tmp_path_factory.getbasetemp())
    out = tmp_path_factory.mktemp("eval_ckpt")
    train = ["train", "--config", config, "--out", str(out / "run"),
             *tiny_overrides(synth, "data.epoch_length=8", "trainer.max_epochs=1")]  # fmt: skip
    assert main(train) == 0
    ckpt = str(out / "run" / "checkpoints" / "last.ckpt")
    common = ["--ckpt", ckpt, "--quiet"]
    assert main(["eval", "--config", config, *common, "--out", str(out / "a"), "--pictures", "0",
                 f"data.root={synth}", "data.num_workers=0"]) == 0  # fmt: skip
    assert main(["eval", "--dataset", "synth", "--data-root", str(synth), *common, "--out", str(out / "b"),
                 "--workers", "0"]) == 0  # fmt: skip
    a = json.loads((out / "a" / "metrics_test.json").read_text())
    b = json.loads((out / "b" / "metrics.json").read_text())
    for k in ("mpjpe", "pa_mpjpe", "pve", "pve_t"):
        assert b["metrics"][k] == pytest.approx(a[k], rel=1e-4)
    assert b["num_evaluated"] == a["n_samples"] == 4
    capsys.readouterr()
    pw = out / "pw"
    pw.mkdir()
    write_3dpw(pw, 2, np.random.default_rng(0))
    assert main(["eval", "--dataset", "3dpw", "--data-root", str(pw), "--ckpt", ckpt, "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "body model is 'anny'" in err and "cannot be evaluated against SMPL ground truth" in err
    assert err.count("\n") == 1
