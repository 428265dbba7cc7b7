"""The everyday surface: ``from dsrbody import load_model, predict``, ``python -m dsrbody`` and the
automatic device of every ``--device`` option."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import dsrbody
from dsrbody.devices import resolve_device

SRC = str(Path(dsrbody.__file__).resolve().parents[1])


def _python(*args: str) -> subprocess.CompletedProcess:
    env = {"PYTHONPATH": SRC, "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"}
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env, timeout=300)


def test_import_is_cheap_and_python_m_works():
    r = _python("-c", "import sys, dsrbody; dsrbody.load_model; print('torch' in sys.modules)")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "False"  # load_model/predict import torch only when called
    r = _python("-m", "dsrbody", "--version")
    assert r.returncode == 0 and r.stdout.strip() == f"dsrbody {dsrbody.__version__}", r.stderr


def test_resolve_device(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == resolve_device(None) == "cpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == "cuda"
    assert resolve_device("cpu") == "cpu" and resolve_device("cuda:1") == "cuda:1"


@pytest.mark.parametrize("command", ["demo", "eval", "fit"])
def test_cli_device_defaults_to_auto(command, monkeypatch):
    import importlib

    from dsrbody.cli import _command_parser, main

    parser, _ = _command_parser(command, command)
    assert parser.get_default("device") == "auto"
    module = importlib.import_module(f"dsrbody.cli.{command}")
    seen = {}
    monkeypatch.setattr(module, "run", lambda args: seen.setdefault("device", args.device) and 0)
    argv = {
        "demo": ["demo", "--image", "x.png", "--out", "o"],
        "eval": ["eval", "--data", "d"],
        "fit": ["fit", "--data", "d", "--out", "o"],
    }[command]
    for cuda, want in ((True, "cuda"), (False, "cpu")):
        seen.clear()
        monkeypatch.setattr(torch.cuda, "is_available", lambda c=cuda: c)
        main(argv)
        assert seen["device"] == want
    seen.clear()
    main([*argv, "--device", "cpu"])
    assert seen["device"] == "cpu"


def _crop(rgb: np.ndarray, person, res: int) -> np.ndarray:
    """The regressor's crop of ``person`` (the demo's)."""
    from dsrbody.data.crop_augment import AugmentParams, rgb_processing

    return rgb_processing(rgb, person.center, person.scale, AugmentParams(), res)


def test_load_model_and_predict(tiny_ckpt, synth_dir):
    from dsrbody.demo.inputs import Person
    from dsrbody.demo.run import PersonResult, predict_people

    model = dsrbody.load_model(tiny_ckpt, device="auto")
    assert model.body_name == "anny" and next(model.regressor.parameters()).device.type == resolve_device()
    image = sorted(Path(synth_dir).glob("images/*.jpg"))[0]
    from dsrbody.data.spin_npz import read_image

    rgb = read_image(image)
    H, W = rgb.shape[:2]
    people = dsrbody.predict(model, rgb, box=[W * 0.25, H * 0.1, W * 0.5, H * 0.8])
    assert len(people) == 1 and isinstance(people[0], PersonResult)
    p = people[0]
    V = model.regressor.faces.max().item() + 1
    assert p.vertices_cam.shape == (V, 3) and np.isfinite(p.vertices_cam).all()
    assert p.keypoints_2d().shape == (p.joints_cam.shape[0], 2) and p.cam.shape == (3,)
    assert p.rotmat.shape[1:] == (3, 3) and p.shape.ndim == 1
    # the same numbers as the demo's own code path, from a path or an array, from the loaded model or
    # its regressor
    box = Person(center=p.person.center, scale=p.person.scale, source="bbox")
    ref = predict_people(model.regressor, rgb, [box])[0]
    again = dsrbody.predict(model.regressor, image, box=[[W * 0.25, H * 0.1, W * 0.5, H * 0.8]])[0]
    for r in (ref, again):
        np.testing.assert_allclose(r.vertices_cam, p.vertices_cam, atol=1e-6)
    # flip test-time augmentation: the averaged estimate, refined or not, as the demo's --flip
    from dsrbody.eval.protocols import FlipAveraged

    flipped = dsrbody.predict(model, rgb, box=[box], flip=True, refine=False)[0]
    with torch.no_grad():
        crop = torch.from_numpy(_crop(rgb, box, model.regressor.img_res))[None]
        want = FlipAveraged(model.regressor)(crop.to(next(model.regressor.parameters()).device))
    np.testing.assert_allclose(flipped.cam, want["cam"][0].cpu().numpy(), atol=1e-5)
    assert not np.allclose(flipped.vertices_cam, p.vertices_cam, atol=1e-4)
    np.testing.assert_allclose(flipped.shape_raw, want["shape_raw"][0].cpu().double().numpy(), atol=1e-5)
    whole = dsrbody.predict(model, rgb, box="image")
    assert len(whole) == 1 and whole[0].person.source == "image"
    found = dsrbody.predict(model, rgb)  # the built-in detector, the whole image when it finds nobody
    assert len(found) >= 1
    with pytest.raises(ValueError, match="uint8 RGB"):
        dsrbody.predict(model, rgb[..., 0])
    with pytest.raises(FileNotFoundError):
        dsrbody.predict(model, "no/such/image.png")
    with pytest.raises(ValueError, match="x, y, w, h"):
        dsrbody.predict(model, rgb, box=[1, 2, 3])


def test_predict_with_a_known_height(tiny_ckpt, synth_dir):
    """``height=``: the body is that tall, covers the same pixels, and stands as much farther away as it
    grew; its weak-perspective camera says the same translation; a height in centimetres is refused."""
    from dsrbody.body.stature import rest_stature
    from dsrbody.data.spin_npz import read_image
    from dsrbody.geometry.cameras import weak_perspective_to_translation

    model = dsrbody.load_model(tiny_ckpt, device="cpu")
    reg, body = model.regressor, model.regressor.body_model
    rgb = read_image(sorted(Path(synth_dir).glob("images/*.jpg"))[0])
    H, W = rgb.shape[:2]
    box = [W * 0.25, H * 0.1, W * 0.5, H * 0.8]
    plain = dsrbody.predict(model, rgb, box=box, refine=False)[0]
    start = float(rest_stature(body, torch.tensor(plain.shape[None], dtype=torch.float32))[0])
    seen = plain.keypoint_confidence > 0
    for height in (start - 0.12, start + 0.15):
        tall = dsrbody.predict(model, rgb, box=box, refine=False, height=height)[0]
        got = float(rest_stature(body, torch.tensor(tall.shape[None], dtype=torch.float32))[0])
        assert got == pytest.approx(height, abs=1e-3)
        moved = np.abs(tall.keypoints_2d()[seen] - plain.keypoints_2d()[seen]).max()
        assert moved < 0.01 * box[3], moved  # pixels
        assert tall.translation[2] / plain.translation[2] == pytest.approx(height / start, rel=0.02)
        cam_t = weak_perspective_to_translation(torch.tensor(tall.cam[None]), reg.focal, reg.img_res)[0]
        np.testing.assert_allclose(cam_t.numpy(), tall.translation, rtol=1e-6)
        np.testing.assert_allclose(
            reg.shape_from_raw(torch.tensor(tall.shape_raw[None])).numpy()[0], tall.shape, atol=1e-4
        )
    with pytest.raises(ValueError, match="in metres"):
        dsrbody.predict(model, rgb, box=box, refine=False, height=175)
    with pytest.raises(ValueError, match=r"cannot be 2.90 m tall .*\(anny: 1\.\d\d-2\.\d\d m\)"):
        dsrbody.predict(model, rgb, box=box, refine=False, height=2.9)
    # several people are searched in batches of batch_size, with the same result
    from dsrbody.demo.run import with_known_stature

    two = dsrbody.predict(model, rgb, box=[box, [W * 0.3, H * 0.2, W * 0.4, H * 0.6]], refine=False)
    one_by_one = with_known_stature(reg, two, 1.7, batch_size=1)
    together = with_known_stature(reg, two, 1.7)
    for a, b in zip(one_by_one, together):
        np.testing.assert_allclose(a.vertices_cam, b.vertices_cam, atol=1e-5)
    far: list[str] = []
    kept = with_known_stature(reg, two, 2.9, out_of_reach=far)
    assert len(far) == 2 and "; made 2." in far[0] and len(kept) == 2


def test_load_model_default_is_the_shipped_model():
    from dsrbody.models.shipped import shipped_model_path

    try:
        path = shipped_model_path()
    except FileNotFoundError:
        pytest.skip("this installation has no shipped model")
    model = dsrbody.load_model(device="cpu")
    assert model.kind == "dsrbody" and model.body_name == "anny"
    rgb = np.zeros((120, 80, 3), np.uint8)
    people = dsrbody.predict(model, rgb, box="image")
    assert len(people) == 1 and np.isfinite(people[0].vertices_cam).all()
    assert path.is_file()
