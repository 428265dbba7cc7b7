"""``dsrbody export``, ``dsrbody eval --data --mean-body`` with the checkpoint's stored recipe, and
demo/eval/fit without ``--ckpt``: the shipped model (here the tiny run's export, put where the package
keeps it) with a one-line notice, or a one-line error when the package has no model file."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "train"))
from train_testkit import make_synth16  # noqa: E402

from dsrbody.cli import main  # noqa: E402
from dsrbody.models import shipped  # noqa: E402

NOTICE = "no --ckpt: using the shipped model"
METRICS = ("mpjpe", "pa_mpjpe", "pve", "pve_t")

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def synth(tmp_path_factory) -> Path:
    return make_synth16(tmp_path_factory.getbasetemp())


@pytest.fixture(scope="module")
def model_file(cpu_run, tmp_path_factory) -> Path:
    """The tiny run's last.ckpt through ``dsrbody export`` (fp16): what a shipped model file is."""
    out = tmp_path_factory.mktemp("export") / "dsrbody_tiny.pt"
    assert main(["export", "--ckpt", str(cpu_run / "checkpoints" / "last.ckpt"), "--out", str(out)]) == 0
    return out


@pytest.fixture
def shipped_as(monkeypatch, tmp_path):
    """``shipped_as(file)``: the package's shipped model is ``file`` (None: the package has none)."""

    def use(model: Path | None) -> Path:
        root = tmp_path / "package"
        target = root / "assets" / "models" / shipped.SHIPPED_MODEL
        target.parent.mkdir(parents=True, exist_ok=True)
        if model is not None:
            target.symlink_to(model)
        monkeypatch.setattr(shipped, "resources", types.SimpleNamespace(files=lambda pkg: root))
        return target

    return use


def notices(err: str) -> list[str]:
    return [line for line in err.splitlines() if NOTICE in line]


def test_export_cli(cpu_run, model_file, tmp_path, capsys):
    best = cpu_run / "checkpoints" / "best.ckpt"
    out32 = tmp_path / "fp32.pt"
    capsys.readouterr()
    assert main(["export", "--ckpt", str(best), "--out", str(out32), "--fp32"]) == 0
    assert capsys.readouterr().out.strip() == f"wrote {out32} ({out32.stat().st_size / 2**20:.1f} MiB, fp32)"
    sd32 = torch.load(out32, weights_only=True)["state_dict"]
    sd16 = torch.load(model_file, weights_only=True)["state_dict"]
    assert sd32.keys() == sd16.keys() and sd16["model.head.fc1.weight"].dtype == torch.float16
    ref = torch.load(best, map_location="cpu", weights_only=False)["state_dict"]
    assert all(torch.equal(v, ref[k]) for k, v in sd32.items())  # best.ckpt: the weights of step 4 too
    assert main(["export", "--ckpt", str(tmp_path / "none.ckpt"), "--out", str(tmp_path / "x.pt")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("dsrbody export: error:") and "none.ckpt" in err[0]


def test_eval_synth_folder_with_the_mean_body_and_the_stored_recipe(cpu_run, synth, tmp_path, capsys):
    """No --config (the recipe stored in the checkpoint), --data replacing the recipe's test split (made
    unreadable here), --mean-body: the numbers of the run's own validations on the same 4 samples."""
    from dsrbody.train.curves import read_validation_log

    out = tmp_path / "eval"
    ckpt = cpu_run / "checkpoints" / "last.ckpt"
    args = ["eval", "--ckpt", str(ckpt), "--data", str(synth), "--mean-body", "--out", str(out), "--quiet"]
    assert main([*args, "--pictures", "1", f"data.test.0.npz={tmp_path / 'absent.npz'}"]) == 0
    text = capsys.readouterr().out
    assert "mean body" in text and "PA-MPJPE" in text
    res = json.loads((out / "metrics_test.json").read_text())
    assert res["config"] == "stored in the checkpoint" and res["data"] == str(synth)
    assert res["checkpoint"] == str(ckpt) and res["n_samples"] == 4 and res["mesh"] == "anny"
    ref = res["mean_body"]
    assert ref["n_samples"] == 4
    for k in METRICS:
        assert res[f"n_{k}"] == 4 and ref[f"n_{k}"] == 4 and 0 < ref[k] < 5000
        assert abs(res[k] - ref[k]) > 0.01  # the model is not its start point
    assert ref["score"] == pytest.approx(1.5 * ref["pa_mpjpe"] + ref["mpjpe"])
    assert (out / "overlays_test.png").is_file()
    # training validated last.ckpt's weights (step 4) and the mean body on these samples
    log = read_validation_log(cpu_run)
    for k in METRICS:
        assert res[k] == pytest.approx(log[k][-1], rel=1e-3, abs=0.05), k
        assert ref[k] == pytest.approx(log.reference[k], rel=1e-3, abs=0.05), k
    # the folder must be a dsrbody synth folder
    assert main(["eval", "--ckpt", str(ckpt), "--data", str(tmp_path), "--quiet"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "expected synth_test.npz" in err[0]


def test_eval_without_ckpt_uses_the_shipped_model(cpu_run, model_file, synth, shipped_as, tmp_path, capsys):
    from dsrbody.train.curves import read_validation_log

    target = shipped_as(model_file)
    out = tmp_path / "eval"
    assert main(["eval", "--data", str(synth), "--out", str(out), "--pictures", "0"]) == 0
    cap = capsys.readouterr()
    assert len(notices(cap.err)) == 1 and str(target) in notices(cap.err)[0]
    assert notices(cap.err)[0].startswith("dsrbody eval: ") and NOTICE not in cap.out
    res = json.loads((out / "metrics_test.json").read_text())
    assert res["checkpoint"] == str(target) and res["n_samples"] == 4 and "mean_body" not in res
    last = read_validation_log(cpu_run)  # the exported weights (fp16) of the run's last validation
    for k in METRICS:
        assert res[k] == pytest.approx(last[k][-1], rel=0.02), k


def test_demo_without_ckpt_uses_the_shipped_model(model_file, synth, shipped_as, tmp_path, capsys):
    import numpy as np

    target = shipped_as(model_file)
    out = tmp_path / "demo"
    image = synth / "images" / "test_000000.jpg"
    args = ["demo", "--image", str(image), "--out", str(out), "--detector", "none", "--no-mesh"]
    assert main([*args, "--side-size", "64"]) == 0
    cap = capsys.readouterr()
    assert len(notices(cap.err)) == 1 and str(target) in notices(cap.err)[0]
    assert "dsrbody checkpoint: body model anny, backbone resnet18" in cap.err
    assert (out / "test_000000_result.png").is_file()
    p = np.load(out / "test_000000_p0_params.npz")
    assert str(p["body_model"]) == "anny"
    # the 96 px model's crop camera (focal 5000 * 96 / 224) on the whole 224 image (box 224 = 200 * 1.12)
    assert float(p["focal_length"]) == pytest.approx(5000.0 * 96 / 224 * 200 * 1.12 / 96, rel=1e-5)
    # the shipped model regresses Anny bodies
    assert main([*args, "--body", "smpl"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--body smpl needs --ckpt" in err[0]


def test_fit_without_ckpt_starts_from_the_shipped_model(model_file, synth, shipped_as, tmp_path, capsys):
    target = shipped_as(model_file)
    data = str(synth / "synth_test.npz")
    args = ["fit", "--data", data, "--losses", "kp", "--iters", "1", "--limit", "1", "--batch-size", "1"]
    assert main([*args, "--out", str(tmp_path / "fit")]) == 0
    cap = capsys.readouterr()
    assert len(notices(cap.err)) == 1 and str(target) in notices(cap.err)[0]
    report = json.loads((tmp_path / "fit" / "fit_metrics.json").read_text())
    assert report["start"] == "regressor"
    # --start mean needs no model: no notice
    assert main([*args, "--start", "mean", "--out", str(tmp_path / "fit_mean")]) == 0
    assert notices(capsys.readouterr().err) == []
    assert json.loads((tmp_path / "fit_mean" / "fit_metrics.json").read_text())["start"] == "mean"


def test_no_shipped_model_is_a_one_line_error(synth, shipped_as, tmp_path, capsys):
    target = shipped_as(None)
    image = synth / "images" / "test_000000.jpg"
    data = str(synth / "synth_test.npz")
    commands = {
        "eval": ["eval", "--data", str(synth)],
        "demo": ["demo", "--image", str(image), "--out", str(tmp_path / "demo")],
        "fit": ["fit", "--data", data, "--losses", "kp", "--out", str(tmp_path / "fit")],
    }
    for name, argv in commands.items():
        capsys.readouterr()
        assert main(argv) == 1, name
        cap = capsys.readouterr()
        err = cap.err.strip().splitlines()
        assert len(err) == 1, (name, err)
        assert err[0] == (
            f"dsrbody {name}: error: {target}: the shipped model is not installed; pass --ckpt with a "
            "checkpoint of `dsrbody train` (or reinstall dsrbody from a release that includes its assets)"
        )
    assert not (tmp_path / "demo").exists() and not (tmp_path / "fit").exists()
    # the mean body needs no model
    fit = ["fit", "--data", data, "--losses", "kp", "--iters", "1", "--limit", "1", "--start", "mean"]
    assert main([*fit, "--out", str(tmp_path / "fit_mean"), "--quiet"]) == 0
