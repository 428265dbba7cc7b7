"""``dsrbody fit`` on synthetic samples: lower keypoint loss, DSR terms on, a valid SPIN-format .npz."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "demo"))
from demo_testkit import shared_checkpoint, shared_synth  # noqa: E402

from dsrbody.cli import main  # noqa: E402


@pytest.fixture(scope="module")
def ckpt(anny_body, tmp_path_factory):
    return shared_checkpoint(anny_body, tmp_path_factory)


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    return shared_synth(tmp_path_factory)


def test_fit_from_checkpoint_with_dsr(ckpt, synth, tmp_path, capsys):
    from dsrbody.data import SpinNpzDataset

    out = tmp_path / "fit"
    args = ["fit", "--data", str(synth), "--ckpt", str(ckpt), "--losses", "kp,mc,c", "--iters", "4"]
    assert (
        main([*args, "--lr", "0.02", "--limit", "2", "--batch-size", "2", "--out", str(out), "--quiet"]) == 0
    )
    stdout = capsys.readouterr().out
    assert "fitted 2 samples" in stdout and "pve_t (mm)" in stdout and "dsr_c" in stdout
    report = json.loads((out / "fit_metrics.json").read_text())
    ts, tf = report["terms_start"], report["terms_fit"]
    assert tf["keypoints"] < ts["keypoints"]
    assert ts["n_dsr_mc"] == 2 and ts["n_dsr_c"] == 2  # the parsing maps exist: DSR terms are on
    assert report["metrics_fit"]["n_pve_t"] == 2 and report["start"] == "regressor"
    fits = np.load(out / "fits.npz")
    src = np.load(synth / "synth_test.npz")
    assert fits["pose"].shape == (3, 72) and fits["shape"].shape == (3, 6)
    assert fits["fit_ok"].tolist() == [True, True, False]
    np.testing.assert_array_equal(fits["pose"][2], src["pose"][2])  # not fitted: kept
    assert not np.allclose(fits["pose"][0], src["pose"][0])
    assert fits["has_params"][:2].tolist() == [1.0, 1.0] and list(fits["body_model"][:2]) == ["anny", "anny"]
    np.testing.assert_array_equal(fits["imgname"], src["imgname"])
    # the fits file reads back as a training set; its pose is the fitted one
    ds = SpinNpzDataset(out / "fits.npz", synth)
    item = ds[0]
    assert bool(item["has_params"]) and np.allclose(item["pose"].numpy(), fits["pose"][0], atol=1e-5)
    # the comparison picture: image | ground truth | checkpoint | fit, one row per sample
    from dsrbody.fit.pictures import comparison_rows
    from dsrbody.models.loader import load_model

    pic = comparison_rows(
        load_model(ckpt).regressor, synth / "synth_test.npz", synth, [0, 1], {"fit": out / "fits.npz"}
    )
    assert pic.shape == (2 * 224, 4 * 224, 3) and pic.dtype == np.uint8
    assert not np.array_equal(pic[:224, 224:448], pic[:224, :224])  # the ground-truth body is drawn


def test_fit_from_the_flip_averaged_estimate(ckpt, synth, tmp_path):
    """--flip: the start is the regressor's flip test-time estimate (eval --flip's), in the report."""
    from dsrbody.data import SpinNpzDataset
    from dsrbody.eval.protocols import FlipAveraged
    from dsrbody.models.loader import load_model

    args = ["fit", "--data", str(synth), "--ckpt", str(ckpt), "--losses", "kp", "--iters", "1", "--lr", "0"]
    shapes = {}
    for flip in (False, True):
        out = tmp_path / f"flip{flip}"
        assert main([*args, "--limit", "1", "--batch-size", "1", "--out", str(out), "--quiet",
                     *(["--flip"] if flip else [])]) == 0  # fmt: skip
        report = json.loads((out / "fit_metrics.json").read_text())
        assert report["flip"] is flip and report["start"] == "regressor"
        shapes[flip] = np.load(out / "fits.npz")["shape"][0]
    reg = load_model(ckpt).regressor.eval()
    ds = SpinNpzDataset(synth / "synth_test.npz", synth, parsing=False, res=reg.img_res)
    with torch.no_grad():
        plain, flipped = reg(ds[0]["img"][None]), FlipAveraged(reg)(ds[0]["img"][None])
    # a learning rate of 0 leaves each fit where it started: the plain and the flip-averaged estimates
    np.testing.assert_allclose(shapes[False], plain["shape"][0].double().numpy(), atol=1e-5)
    np.testing.assert_allclose(shapes[True], flipped["shape"][0].double().numpy(), atol=1e-5)
    assert not np.allclose(shapes[True], shapes[False], atol=1e-5)
    assert main([*args, "--flip", "--start", "mean", "--out", str(tmp_path / "x"), "--quiet"]) == 1


def test_fit_keypoints_only_from_the_mean_body(synth, tmp_path, capsys):
    out = tmp_path / "fit"
    args = ["fit", "--data", str(synth / "synth_test.npz"), "--losses", "kp", "--iters", "5", "--lr", "0.02"]
    assert main([*args, "--start", "mean", "--limit", "1", "--out", str(out), "--quiet"]) == 0
    report = json.loads((out / "fit_metrics.json").read_text())
    assert report["start"] == "mean" and "dsr_mc" not in report["terms_start"]
    assert report["terms_fit"]["keypoints"] < report["terms_start"]["keypoints"]


def test_fit_bad_inputs(synth, tmp_path, capsys):
    cases = [
        (["--data", str(synth), "--losses", "kp,foo"], "unknown term"),
        (["--data", str(tmp_path / "none.npz")], "none.npz"),
        (["--data", str(synth), "--start", "regressor", "--body", "smpl"], "needs --ckpt"),
        (["--data", str(synth), "--start", "mean", "--weight", "dsr_x=1"], "--weight"),
    ]
    for extra, message in cases:
        capsys.readouterr()
        assert main(["fit", *extra, "--out", str(tmp_path / "o"), "--quiet"]) == 1, extra
        err = capsys.readouterr().err.strip().splitlines()
        assert message in err[-1] and err[-1].startswith("dsrbody fit: error:"), err


def test_fit_a_users_photo_with_openpose_and_parsing(synth, tmp_path, capsys):
    import shutil

    photos = tmp_path / "photos"
    (photos / "grph_sequences").mkdir(parents=True)
    shutil.copy(synth / "images" / "test_000002.jpg", photos / "me.jpg")
    shutil.copy(synth / "grph_sequences" / "images" / "test_000002.png", photos / "grph_sequences" / "me.png")
    kp = np.load(synth / "synth_test.npz")["openpose"][2]
    op = tmp_path / "openpose"
    op.mkdir()
    (op / "me_keypoints.json").write_text(
        json.dumps({"people": [{"pose_keypoints_2d": kp.ravel().tolist()}]})
    )
    out = tmp_path / "fit"
    args = ["fit", "--data", str(photos), "--openpose", str(op), "--iters", "3", "--lr", "0.02"]
    assert main([*args, "--start", "mean", "--out", str(out), "--quiet"]) == 0
    report = json.loads((out / "fit_metrics.json").read_text())
    assert report["n_fitted"] == 1 and report["terms_start"]["n_dsr_c"] == 1
    assert report["terms_fit"]["keypoints"] < report["terms_start"]["keypoints"]
    assert "no ground truth" in capsys.readouterr().out
    fits = np.load(out / "fits.npz")
    assert fits["imgname"].tolist() == ["me.jpg"] and fits["pose"].shape == (1, 72)


def test_fit_with_a_nan_keypoint_writes_the_other_samples(synth, tmp_path, capsys):
    """A NaN 2D keypoint used to reach the fit and crash the metrics (an SVD error), writing nothing: the
    sample is now skipped with its reason, and the others are fitted, measured and written."""
    import shutil

    data = tmp_path / "data"
    shutil.copytree(synth, data)
    with np.load(data / "synth_test.npz") as z:
        arrays = {k: z[k] for k in z.files}
    arrays["openpose"] = arrays["openpose"].astype(np.float64)
    arrays["openpose"][1, 4, 0] = np.nan
    np.savez(data / "synth_test.npz", **arrays)
    out = tmp_path / "fit"
    args = ["fit", "--data", str(data), "--losses", "kp", "--start", "mean", "--iters", "3", "--lr", "0.02"]
    assert main([*args, "--out", str(out), "--quiet"]) == 0
    captured = capsys.readouterr()
    assert "fitted 2 samples (1 skipped)" in captured.out
    assert "keypoints_nonfinite" in captured.err
    fits = np.load(out / "fits.npz")
    assert fits["fit_ok"].tolist() == [True, False, True]
    np.testing.assert_array_equal(fits["pose"][1], arrays["pose"][1])  # not fitted: kept
    assert np.isfinite(fits["pose"]).all() and np.isfinite(fits["shape"]).all()
    report = json.loads((out / "fit_metrics.json").read_text())
    assert report["n_fitted"] == 2 and report["skipped"] == [f"{arrays['imgname'][1]}: keypoints_nonfinite"]
    assert report["metrics_fit"]["n_pa_mpjpe"] == 2 and np.isfinite(report["metrics_fit"]["pa_mpjpe"])


def test_fit_in_stages_with_the_pose_prior_and_curves(synth, tmp_path, capsys):
    """A keypoint fit, then the same data continued from its fits.npz with DSR; --record-every keeps
    curves; --pose-prior none drops the pose_gmm term; a bad --start or --pose-prior is one line."""
    data = str(synth / "synth_test.npz")
    one, two = tmp_path / "one", tmp_path / "two"
    common = ["--iters", "4", "--lr", "0.02", "--limit", "2", "--batch-size", "2", "--quiet"]
    assert main(["fit", "--data", data, "--start", "mean", "--losses", "kp", *common, "--out", str(one),
                 "--record-every", "2"]) == 0  # fmt: skip
    r1 = json.loads((one / "fit_metrics.json").read_text())
    assert "pose_gmm" in r1["terms_fit"]  # the shipped Anny pose prior is on by default
    z = np.load(one / "fit_per_sample.npz")
    assert list(z["curve_iters"]) == [0, 2, 4] and z["curve_pve_t"].shape == (3, 2)
    assert main(["fit", "--data", data, "--start", str(one / "fits.npz"), "--losses", "kp,mc,c", *common,
                 "--pose-prior", "none", "--out", str(two)]) == 0  # fmt: skip
    r2 = json.loads((two / "fit_metrics.json").read_text())
    assert "pose_gmm" not in r2["terms_fit"] and "dsr_c" in r2["terms_fit"]
    assert r2["metrics_start"]["pa_mpjpe"] == pytest.approx(r1["metrics_fit"]["pa_mpjpe"], abs=0.05)
    for extra, message in (
        (["--start", str(tmp_path / "nofits.npz")], "neither regressor, mean nor an existing fits.npz"),
        (["--start", "mean", "--pose-prior", str(tmp_path / "x.npz")], "x.npz: pose prior file not found"),
        (["--start", "mean", "--record-every", "-1"], "--record-every must be >= 0"),
    ):
        capsys.readouterr()
        assert main(["fit", "--data", data, *extra, "--out", str(tmp_path / "o"), "--quiet"]) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert message in err[-1], err
