"""``dsrbody demo`` on synthetic images, a video made from them, box/OpenPose/COCO inputs, the detector
finding nobody, refinement on and off, and bad inputs."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "demo"))
from demo_testkit import shared_checkpoint, shared_synth  # noqa: E402

from dsrbody.cli import main  # noqa: E402

FAST = ["--side-size", "64", "--quiet"]


@pytest.fixture(scope="module")
def ckpt(anny_body, tmp_path_factory):
    return shared_checkpoint(anny_body, tmp_path_factory)


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    return shared_synth(tmp_path_factory)


def test_demo_folder_writes_every_output(ckpt, synth, tmp_path, capsys, anny_body):
    import imageio.v3 as iio
    import trimesh

    out = tmp_path / "out"
    args = ["demo", "--ckpt", str(ckpt), "--folder", str(synth / "images"), "--out", str(out)]
    assert main([*args, "--detector", "none", *FAST]) == 0
    stdout = capsys.readouterr()
    assert "3 people from 3 of 3 images" in stdout.out and "refined" not in stdout.out
    for stem in ("test_000000", "test_000001", "test_000002"):
        for suffix in ("_p0_overlay.png", "_p0_side.png", "_p0.obj", "_p0_params.npz", "_p0_params.json"):
            assert (out / f"{stem}{suffix}").is_file(), stem + suffix
    img = iio.imread(synth / "images" / "test_000000.jpg")
    ov = iio.imread(out / "test_000000_p0_overlay.png")
    assert ov.shape == img.shape and np.abs(ov.astype(int) - img.astype(int)).mean() > 1.0  # a body is drawn
    assert iio.imread(out / "test_000000_p0_side.png").shape == (64, 64, 3)
    p = np.load(out / "test_000000_p0_params.npz")
    assert p["body_pose"].shape == (23, 3) and p["global_orient"].shape == (3,) and p["shape"].shape == (6,)
    assert str(p["body_model"]) == "anny" and str(p["box_source"]) == "image"
    np.testing.assert_allclose(p["center"], [112, 112])  # whole 224 image
    # the crop camera IS the original camera (224 crop of a 224 image): focal 5000 * 200 * 1.12 / 224
    assert float(p["focal_length"]) == pytest.approx(5000.0)
    js = json.loads((out / "test_000000_p0_params.json").read_text())
    np.testing.assert_allclose(js["translation"], p["translation"], rtol=1e-6)
    mesh = trimesh.load(out / "test_000000_p0.obj", process=False)
    assert mesh.vertices.shape == (anny_body.num_vertices, 3)
    # the mesh is in the y-up frame; mesh_to_camera takes it to the camera, where it projects into the image
    T = p["mesh_to_camera"]
    np.testing.assert_allclose(T[:3, :3], np.diag([1.0, -1.0, -1.0]))
    np.testing.assert_allclose(T[:3, 3], p["translation"], rtol=1e-6)
    cam = mesh.vertices @ T[:3, :3].T + T[:3, 3]
    uv = float(p["focal_length"]) * cam[:, :2] / cam[:, 2:] + p["principal_point"]
    assert ((uv > 0) & (uv < 224)).mean() > 0.5
    assert np.abs(mesh.vertices.mean(0)).max() < 2.0  # centred on the body, not tens of metres away


def test_demo_video(ckpt, synth, tmp_path):
    import imageio.v2 as imageio

    video = tmp_path / "clip.mp4"
    with imageio.get_writer(str(video), format="FFMPEG", fps=5, codec="libx264", macro_block_size=1) as w:
        for name in ("test_000000", "test_000001", "test_000002"):
            w.append_data(imageio.imread(synth / "images" / f"{name}.jpg"))
    out = tmp_path / "out"
    args = [
        "demo",
        "--ckpt",
        str(ckpt),
        "--video",
        str(video),
        "--out",
        str(out),
        "--detector",
        "none",
        *FAST,
    ]
    assert main(args) == 0
    p = np.load(out / "clip_params.npz")
    assert p["frame"].tolist() == [0, 1, 2] and p["person"].tolist() == [0, 0, 0]
    assert p["body_pose"].shape == (3, 23, 3) and int(p["num_frames"]) == 3
    frames = []
    with imageio.get_reader(str(out / "clip_overlay.mp4"), format="FFMPEG") as reader:
        for f in reader:  # (list() would ask the reader for its length, which ffmpeg reports as inf)
            frames.append(f)
    assert len(frames) == 3 and frames[0].shape[:2] == (224, 224)
    # --height: every frame's body that tall (after the smoothing), farther away as it grew
    import torch

    from dsrbody.body.stature import rest_stature
    from dsrbody.models.loader import load_model

    body = load_model(str(ckpt)).regressor.body_model
    before = rest_stature(body, torch.tensor(p["shape"], dtype=torch.float32)).numpy()
    for name, extra in (("tall", []), ("tall_unsmoothed", ["--smooth", "0"])):
        tall_args = [str(tmp_path / name) if a == str(out) else a for a in args]
        assert main([*tall_args, "--height", "1.92", *extra]) == 0
        tall = np.load(tmp_path / name / "clip_params.npz")
        heights = rest_stature(body, torch.tensor(tall["shape"], dtype=torch.float32))
        np.testing.assert_allclose(heights.numpy(), 1.92, atol=2e-5)  # last: smoothing would move it
        ratio = tall["translation"][:, 2] / p["translation"][:, 2]
        np.testing.assert_allclose(ratio, 1.92 / before, rtol=0.02 if not extra else 0.2)


def test_demo_boxes_and_openpose(ckpt, synth, tmp_path, capsys):
    image = synth / "images" / "test_000001.jpg"
    boxes = tmp_path / "boxes.json"
    boxes.write_text(json.dumps({"bbox": [[40, 20, 120, 180], [0, 0, 224, 224]]}))
    out = tmp_path / "box"
    assert (
        main(
            [
                "demo",
                "--ckpt",
                str(ckpt),
                "--image",
                str(image),
                "--bbox",
                str(boxes),
                "--out",
                str(out),
                "--no-mesh",
                *FAST,
            ]
        )
        == 0
    )
    assert (out / "test_000001_p0_params.npz").is_file() and (out / "test_000001_p1_params.npz").is_file()
    assert not (out / "test_000001_p0.obj").exists()
    np.testing.assert_allclose(np.load(out / "test_000001_p0_params.npz")["center"], [100, 110])
    # OpenPose: the file's keypoints for the person, plus a second person below the threshold
    kp = np.load(synth / "synth_test.npz")["openpose"][1]
    weak = np.zeros((25, 3))
    weak[:, 2] = 0.1
    op_dir = tmp_path / "openpose"
    op_dir.mkdir()
    people = [{"pose_keypoints_2d": kp.ravel().tolist()}, {"pose_keypoints_2d": weak.ravel().tolist()}]
    (op_dir / "test_000001_keypoints.json").write_text(json.dumps({"people": people}))
    out = tmp_path / "op"
    capsys.readouterr()
    assert (
        main(
            [
                "demo",
                "--ckpt",
                str(ckpt),
                "--image",
                str(image),
                "--openpose",
                str(op_dir),
                "--out",
                str(out),
                "--no-mesh",
                *FAST,
            ]
        )
        == 0
    )
    err = capsys.readouterr().err
    assert "person 1 skipped" in err
    assert (out / "test_000001_p0_params.npz").is_file() and not (out / "test_000001_p1_params.npz").exists()
    p = np.load(out / "test_000001_p0_params.npz")
    assert str(p["box_source"]) == "openpose"
    # refined on the OpenPose keypoints by default
    assert bool(p["refined"]) and float(p["keypoint_error_px_after"]) < float(p["keypoint_error_px_before"])
    out = tmp_path / "op_plain"
    assert (
        main(
            ["demo", "--ckpt", str(ckpt), "--image", str(image), "--openpose", str(op_dir), "--out", str(out)]
            + ["--no-mesh", "--no-refine", *FAST]
        )
        == 0
    )
    assert not bool(np.load(out / "test_000001_p0_params.npz")["refined"])
    # --flip: the refinement starts from the flip-averaged estimate (it has the head's vectors too)
    for name, extra in (("op_flip", ["--no-refine"]), ("op_flip_refined", [])):
        assert main(["demo", "--ckpt", str(ckpt), "--image", str(image), "--openpose", str(op_dir),
                     "--out", str(tmp_path / name), "--no-mesh", "--flip", *extra, *FAST]) == 0  # fmt: skip
    plain = np.load(out / "test_000001_p0_params.npz")
    flipped = np.load(tmp_path / "op_flip" / "test_000001_p0_params.npz")
    refined = np.load(tmp_path / "op_flip_refined" / "test_000001_p0_params.npz")
    assert not np.allclose(flipped["body_pose"], plain["body_pose"], atol=1e-4)
    assert bool(refined["refined"]) and not bool(flipped["refined"])
    assert float(refined["keypoint_error_px_after"]) < float(refined["keypoint_error_px_before"])
    # refinement started from the flip-averaged body, not the plain one: another starting error
    first = np.load(out.parent / "op" / "test_000001_p0_params.npz")
    assert float(refined["keypoint_error_px_before"]) != pytest.approx(
        float(first["keypoint_error_px_before"])
    )


def test_demo_coco_keypoints(ckpt, synth, tmp_path, capsys):
    """A COCO keypoint file: every annotated person with enough keypoints, refined on them."""
    image = synth / "images" / "test_000002.jpg"
    op = np.load(synth / "synth_test.npz")["openpose"][2]  # BODY_25 of the synthetic person
    coco_of_op = {0: 0, 1: 16, 2: 15, 3: 18, 4: 17, 5: 5, 6: 2, 7: 6, 8: 3, 9: 7, 10: 4}
    coco_of_op |= {11: 12, 12: 9, 13: 13, 14: 10, 15: 14, 16: 11}
    kp = np.zeros((17, 3))
    for c, o in coco_of_op.items():
        kp[c] = (op[o, 0], op[o, 1], 2 if op[o, 2] > 0 else 0)
    coco = {
        "images": [{"id": 7, "file_name": image.name}, {"id": 8, "file_name": "other.jpg"}],
        "annotations": [
            {"id": 1, "image_id": 7, "keypoints": kp.ravel().tolist(), "bbox": [0, 0, 10, 10]},
            {"id": 2, "image_id": 7, "keypoints": [0] * 51, "bbox": [0, 0, 10, 10]},
            {"id": 3, "image_id": 8, "keypoints": kp.ravel().tolist(), "bbox": [0, 0, 10, 10]},
        ],
    }
    (tmp_path / "coco.json").write_text(json.dumps(coco))
    out = tmp_path / "coco"
    args = ["demo", "--ckpt", str(ckpt), "--image", str(image), "--coco", str(tmp_path / "coco.json")]
    assert main([*args, "--out", str(out), "--no-mesh", *FAST]) == 0
    cap = capsys.readouterr()
    assert "person 1 skipped: 0 labelled keypoints" in cap.err
    assert "1 people from 1 of 1 images" in cap.out and "1 refined on their keypoints" in cap.out
    p = np.load(out / "test_000002_p0_params.npz")
    assert str(p["box_source"]) == "coco" and bool(p["refined"])
    assert not (out / "test_000002_p1_params.npz").exists()


def test_demo_detector_finds_nobody(ckpt, tmp_path, capsys):
    import imageio.v3 as iio

    image = tmp_path / "empty.png"
    iio.imwrite(image, np.full((200, 260, 3), 128, np.uint8))
    rc = main(["demo", "--ckpt", str(ckpt), "--image", str(image), "--out", str(tmp_path / "o"), *FAST])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1
    assert sum("empty.png: the detector found nobody; skipped" in line for line in err) == 1
    assert not (tmp_path / "o" / "empty_result.png").exists()
    out = tmp_path / "whole"
    args = ["demo", "--ckpt", str(ckpt), "--image", str(image), "--out", str(out), "--whole-image-if-none"]
    assert main([*args, "--no-mesh", *FAST]) == 0
    assert "using the whole image" in capsys.readouterr().err
    assert str(np.load(out / "empty_p0_params.npz")["box_source"]) == "image"


def test_demo_height_out_of_reach_is_a_note_not_a_stop(ckpt, synth, tmp_path, capsys):
    """An image whose person cannot be as tall as --height asks is still written, the person at the
    nearest height they can reach, with a line saying so; the next image is processed too."""
    out = tmp_path / "out"
    args = ["demo", "--ckpt", str(ckpt), "--folder", str(synth / "images"), "--out", str(out)]
    assert main([*args, "--detector", "none", "--whole-image-if-none", "--no-refine", "--height", "2.9",
                 "--no-mesh", *FAST]) == 0  # fmt: skip
    text = capsys.readouterr()
    said = text.out + text.err
    assert "cannot be 2.90 m tall with the rest of their estimated shape" in said and "; made 2." in said
    assert len(list(out.glob("*_result.png"))) == len(list((synth / "images").glob("*.jpg")))


def test_demo_bad_inputs(ckpt, synth, tmp_path, capsys):
    image = synth / "images" / "test_000000.jpg"
    outside = tmp_path / "outside.json"
    outside.write_text(json.dumps([500, 500, 50, 50]))
    bad_video = tmp_path / "broken.mp4"
    bad_video.write_text("this is not a video")
    cases = [
        (["--image", str(image), "--bbox", str(outside)], "lies outside the 224x224 image"),
        (["--video", str(bad_video)], "cannot be decoded as a video"),
        (["--image", str(tmp_path / "missing.jpg")], "missing.jpg"),
        (["--folder", str(tmp_path / "nofolder")], "nofolder"),
        (["--image", str(image), "--height", "175"], "--height is a stature in metres (0.3-3), got 175"),
    ]
    for extra, message in cases:
        capsys.readouterr()
        rc = main(["demo", "--ckpt", str(ckpt), *extra, "--out", str(tmp_path / "o"), *FAST])
        err = capsys.readouterr().err.strip().splitlines()
        assert rc == 1, extra
        assert message in err[-1] and err[-1].startswith("dsrbody demo: error:"), err
    capsys.readouterr()
    assert (
        main(
            ["demo", "--ckpt", str(tmp_path / "no.ckpt"), "--image", str(image), "--out", str(tmp_path / "o")]
        )
        == 1
    )
    assert "no.ckpt" in capsys.readouterr().err


def test_demo_default_detector_finds_and_refines_a_real_person(ckpt, tmp_path, capsys):
    """The default detector (BlazePose) on a real photo: one person, its keypoints, refined on them."""
    image = Path(__file__).resolve().parents[2] / "examples" / "images" / "astronaut.jpg"
    out = tmp_path / "o"
    args = ["demo", "--ckpt", str(ckpt), "--image", str(image), "--out", str(out), "--no-mesh"]
    assert main([*args, "--refine-iters", "5", *FAST]) == 0
    assert "refined" in capsys.readouterr().out
    p = np.load(out / "astronaut_p0_params.npz")
    assert str(p["box_source"]) == "blazepose" and bool(p["refined"])
    assert float(p["keypoint_error_px_after"]) < float(p["keypoint_error_px_before"])
    assert not (out / "astronaut_p1_params.npz").exists()
    assert (out / "astronaut_result.png").is_file()
    assert main([*args, "--detector", "hog", "--whole-image-if-none", *FAST]) == 0  # the other built-in one
