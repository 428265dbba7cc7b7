"""Videos: people tracked across frames by box overlap, each track smoothed over time, progress bars
whose total is the number of frames processed; images where the detector finds nobody are skipped
with one message (or reconstructed from the whole image when asked)."""

from __future__ import annotations

import json

import imageio.v2 as imageio
import numpy as np
import pytest

from dsrbody.demo.run import BoxSource, DemoOptions, run_images, run_video, smooth_tracks, track_boxes


def test_track_ids_are_stable_across_frames():
    frames = []
    for f in range(8):
        a = [10 + 4 * f, 20, 60 + 4 * f, 120]  # walks right
        b = [200 - 4 * f, 25, 250 - 4 * f, 125]  # walks left
        boxes = [b, a] if f % 2 else [a, b]  # detection order changes from frame to frame
        if f == 4:
            boxes = [a]  # b missed for one frame
        if f >= 6:
            boxes = boxes + [[400, 30, 450, 130]]  # a third person comes in
        frames.append(np.array(boxes, float))
    ids = track_boxes(frames)
    for f, (boxes, tid) in enumerate(zip(frames, ids)):
        for box, t in zip(boxes, tid):
            want = 0 if box[1] == 20 else 1 if box[1] == 25 else 2
            assert t == want, (f, ids)
    assert track_boxes([np.zeros((0, 4)), np.array([[0, 0, 10, 10]])]) == [[], [0]]
    # a box that jumps far away is somebody else
    assert track_boxes([np.array([[0, 0, 10, 10]]), np.array([[50, 50, 60, 60]])]) == [[0], [1]]


def test_smoothing_reduces_jitter_and_keeps_rotations():
    from scipy.spatial.transform import Rotation

    rng = np.random.default_rng(0)
    n = 30
    truth = np.linspace(0, 1, n)
    cam = truth[:, None] + rng.normal(0, 0.05, (n, 3))
    rot = Rotation.from_rotvec(np.c_[truth, np.zeros(n), np.zeros(n)]) * Rotation.from_rotvec(
        rng.normal(0, 0.05, (n, 3))
    )
    values = {"cam": cam, "rotmat": rot.as_matrix()[:, None]}  # (N, 1, 3, 3)
    frame = np.r_[np.arange(n), np.arange(n)]
    track = np.r_[np.zeros(n, int), np.ones(n, int)]
    both = {k: np.concatenate([v, v[::-1] * 0 + v[:1]]) for k, v in values.items()}  # track 1: constant
    sm = smooth_tracks(both, frame, track, sigma=2.0)
    err_before = np.abs(cam - truth[:, None])[3:-3].mean()
    err_after = np.abs(sm["cam"][:n] - truth[:, None])[3:-3].mean()
    assert err_after < 0.6 * err_before
    np.testing.assert_allclose(sm["cam"][n:], both["cam"][n:], atol=1e-12)  # tracks do not mix
    R = sm["rotmat"][:n, 0]
    np.testing.assert_allclose(R @ np.swapaxes(R, -1, -2), np.broadcast_to(np.eye(3), R.shape), atol=1e-9)
    np.testing.assert_allclose(np.linalg.det(R), 1.0, atol=1e-9)
    ang = Rotation.from_matrix(R).as_rotvec()[:, 0]
    assert np.abs(ang - truth)[3:-3].mean() < 0.6 * np.abs(rot.as_rotvec()[:, 0] - truth)[3:-3].mean()
    assert smooth_tracks(values, frame[:n], track[:n], 0.0)["cam"] is not values["cam"]


@pytest.fixture(scope="module")
def regressor(tiny_ckpt):
    from dsrbody.models.loader import load_model

    return load_model(tiny_ckpt).regressor


@pytest.fixture(scope="module")
def clip(synth_dir, tmp_path_factory):
    """A 5-frame 224 x 300 video: synthetic photos padded on the right."""
    path = tmp_path_factory.mktemp("clip") / "clip.mp4"
    with imageio.get_writer(str(path), format="FFMPEG", fps=5, codec="libx264", macro_block_size=1) as w:
        for k in range(5):
            frame = np.full((224, 300, 3), 90, np.uint8)
            frame[:, :224] = imageio.imread(synth_dir / "images" / f"test_{k % 3:06d}.jpg")
            w.append_data(frame)
    return path


def test_video_tracks_two_people_and_counts_frames_right(regressor, clip, tmp_path, monkeypatch):
    import tqdm

    bars: dict[int, tuple[str, int | None, int]] = {}  # per bar (close may run twice)
    real = tqdm.tqdm

    class Recording(real):
        def close(self):
            bars[id(self)] = (self.desc, self.total, self.n)
            super().close()

    monkeypatch.setattr(tqdm, "tqdm", Recording)
    (tmp_path / "boxes.json").write_text(json.dumps({"bbox": [[10, 10, 100, 200], [150, 20, 110, 190]]}))
    source = BoxSource(bbox=tmp_path / "boxes.json")
    opts = DemoOptions(side_size=32, mesh=False, progress=True, refine=False, smooth_sigma=1.0)
    files = run_video(regressor, "anny", clip, source, tmp_path / "out", opts, max_frames=3)
    assert list(bars.values()) == [("video: people", 3, 3), ("video: drawing", 3, 3)]
    p = np.load(files["params_npz"])
    assert p["frame"].tolist() == [0, 0, 1, 1, 2, 2] and int(p["num_frames"]) == 3
    assert p["track"].tolist() == [0, 1, 0, 1, 0, 1]  # the same two ids in every frame
    assert np.isfinite(p["translation"]).all() and p["body_pose"].shape == (6, 23, 3)
    frames = []
    with imageio.get_reader(str(files["video"]), format="FFMPEG") as reader:
        for f in reader:
            frames.append(f)
    assert len(frames) == 3 and frames[0].shape[:2] == (224, 300)


def test_video_with_flip_regresses_each_frame_flip_averaged(regressor, clip, tmp_path):
    """--flip on a video: each person's estimate is the flip-averaged one of its frame's crop (no
    smoothing here, so the written parameters are that estimate)."""
    from dsrbody.demo.inputs import people_from_boxes
    from dsrbody.demo.run import predict_people

    boxes = [[10, 10, 100, 200], [150, 20, 110, 190]]
    (tmp_path / "boxes.json").write_text(json.dumps({"bbox": boxes}))
    source = BoxSource(bbox=tmp_path / "boxes.json")
    written = {}
    for flip in (False, True):
        opts = DemoOptions(
            side_size=32, mesh=False, progress=False, refine=False, smooth_sigma=0.0, flip=flip
        )
        files = run_video(regressor, "anny", clip, source, tmp_path / f"out{flip}", opts, max_frames=2)
        written[flip] = np.load(files["params_npz"])
    with imageio.get_reader(str(clip), format="FFMPEG") as reader:
        frame0 = reader.get_data(0)
    want = predict_people(regressor, frame0, people_from_boxes(boxes), flip=True)
    for k, person in enumerate(want):
        np.testing.assert_allclose(written[True]["cam"][k], person.cam, atol=1e-5)
    assert not np.allclose(written[True]["body_pose"], written[False]["body_pose"], atol=1e-4)


def test_video_without_max_frames_counts_every_frame(regressor, clip, tmp_path):
    from dsrbody.demo.run import _frame_count

    reader = imageio.get_reader(str(clip), format="FFMPEG")
    try:
        assert (
            _frame_count(reader, None) == 5 and _frame_count(reader, 3) == 3 and _frame_count(reader, 9) == 5
        )
    finally:
        reader.close()


def test_nobody_found_skips_the_image_with_one_message(regressor, tmp_path):
    blank = tmp_path / "empty.png"
    imageio.imwrite(blank, np.full((120, 160, 3), 128, np.uint8))
    opts = DemoOptions(side_size=32, mesh=False, progress=False)
    source = BoxSource(detector=lambda image: [])
    assert run_images(regressor, "anny", [blank], source, tmp_path / "a", opts) == {}
    assert source.messages == [
        "empty.png: the detector found nobody; skipped (--whole-image-if-none uses the whole image)"
    ]
    assert not (tmp_path / "a" / "empty_result.png").exists()
    asked = BoxSource(detector=lambda image: [], whole_image_if_none=True)
    files = run_images(regressor, "anny", [blank], asked, tmp_path / "b", opts)[str(blank)]
    assert asked.messages == ["empty.png: the detector found nobody; using the whole image"]
    assert str(np.load([f for f in files if f.name.endswith("_params.npz")][0])["box_source"]) == "image"


def test_video_frames_with_nobody_get_one_line(regressor, clip, tmp_path):
    from dsrbody.demo.inputs import Person

    calls = []

    def every_other(image):
        calls.append(1)
        return [Person(np.array([112.0, 112.0]), 1.12, "hog")] if len(calls) % 2 else []

    source = BoxSource(detector=every_other)
    opts = DemoOptions(side_size=32, mesh=False, progress=False, refine=False)
    files = run_video(regressor, "anny", clip, source, tmp_path / "out", opts)
    assert source.messages == [
        "clip.mp4: the detector found nobody in 2 of 5 frames (1, 3); those frames are written unchanged"
    ]
    p = np.load(files["params_npz"])
    assert p["frame"].tolist() == [0, 2, 4] and p["track"].tolist() == [0, 0, 0]
