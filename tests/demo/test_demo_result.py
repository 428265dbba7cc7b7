"""The demo's summary picture NAME_result.png: the input | every body over it with boxes and keypoints |
everyone from the side, all at the input's height, for a non-square image with one and two people; and
the y-up mesh frame of the .obj files."""

from __future__ import annotations

import json

import imageio.v3 as iio
import numpy as np
import pytest

from dsrbody.demo.run import (
    BoxSource,
    DemoOptions,
    draw_people,
    person_color,
    predict_people,
    result_picture,
    run_images,
    side_of_everyone,
)

H, W = 224, 300  # wider than high: the panels' widths tell which is which


@pytest.fixture(scope="module")
def regressor(tiny_ckpt):
    from dsrbody.models.loader import load_model

    return load_model(tiny_ckpt).regressor


@pytest.fixture(scope="module")
def wide(synth_dir, tmp_path_factory):
    """A synthetic photo padded to W x H, written as wide.png."""
    img = np.full((H, W, 3), 90, np.uint8)
    img[:, 38 : 38 + 224] = iio.imread(synth_dir / "images" / "test_000000.jpg")
    path = tmp_path_factory.mktemp("wide") / "wide.png"
    iio.imwrite(path, img)
    return path, img


@pytest.mark.parametrize("boxes", [None, [[40, 10, 140, 200], [150, 20, 120, 190]]], ids=["image", "two"])
def test_run_images_writes_the_result_picture(regressor, wide, boxes, tmp_path):
    path, img = wide
    source = BoxSource()
    if boxes is not None:
        (tmp_path / "boxes.json").write_text(json.dumps({"bbox": boxes}))
        source = BoxSource(bbox=tmp_path / "boxes.json")
    out = tmp_path / "out"
    opts = DemoOptions(side_size=64, mesh=False, progress=False)
    files = run_images(regressor, "anny", [path], source, out, opts)[str(path)]
    n = 1 if boxes is None else 2
    assert files[0] == out / "wide_result.png"
    assert sum(f.name.endswith("_params.npz") for f in files) == n
    pic = iio.imread(files[0])
    assert pic.shape == (H, 2 * W + H, 3) and pic.dtype == np.uint8
    np.testing.assert_array_equal(pic[:, :W], img)  # the input as it is
    bodies = pic[:, W : 2 * W]
    assert np.abs(bodies.astype(int) - img.astype(int)).mean() > 1.0  # bodies drawn over it
    side = pic[:, 2 * W :]
    assert side.std() > 1.0  # bodies in the side view
    assert iio.imread(out / "wide_p0_side.png").shape == (64, 64, 3)  # the per-person file keeps its size
    # the same picture from its parts, in that order
    people = source.people(img, path.name)
    results = predict_people(regressor, img, people)
    faces = regressor.faces.cpu().numpy()
    np.testing.assert_array_equal(pic, result_picture(img, results, faces))
    np.testing.assert_array_equal(bodies, draw_people(img, results, faces, annotate=True))
    np.testing.assert_array_equal(side, side_of_everyone(results, faces, H))
    # the boxes are drawn in each person's colour
    plain = draw_people(img, results, faces)
    for k, r in enumerate(results):
        x0, y0, x1, y1 = (round(v) for v in r.person.box)
        x0, y0 = max(x0, 0), max(y0, 0)
        drawn = bodies[y0 + 1 : min(y1, H - 1), x0]
        assert (np.abs(drawn.astype(int) - person_color(k).astype(int)).sum(-1) == 0).mean() > 0.5
        assert not np.array_equal(drawn, plain[y0 + 1 : min(y1, H - 1), x0])
    if n == 2:  # two people: two colours in the side view
        cols = {tuple(person_color(k)) for k in range(2)}
        assert len(cols) == 2


def test_mesh_is_written_y_up_facing_the_viewer(regressor, tmp_path):
    """An upright body of the camera frame (root turned 180 degrees about x) is written as the body
    model's own y-up, +z-facing mesh, up to a shift; ``mesh_to_camera`` maps it back."""
    import torch
    import trimesh

    from dsrbody.demo.inputs import Person
    from dsrbody.demo.run import result_from_prediction, write_person

    body = regressor.body_model
    J = body.num_joints
    rot = torch.eye(3).repeat(1, J, 1, 1)
    rot[0, 0] = torch.diag(torch.tensor([1.0, -1.0, -1.0]))  # upright in the camera frame (y down)
    shape = (
        torch.zeros(1, body.shape_dim)
        if regressor.shape_lo is None
        else regressor.shape_from_raw(torch.zeros(1, body.shape_dim))
    )
    with torch.no_grad():
        pred = regressor.pose_body(rot, shape, torch.tensor([[0.9, 0.0, 0.0]]))
        upright = body(torch.eye(3)[None], rot[:, 1:], shape).vertices[0].numpy()  # model frame: y up
    person = Person(center=np.array([112.0, 112.0]), scale=1.12, source="bbox")
    result = result_from_prediction(regressor, person, pred, 0)
    opts = DemoOptions(side_size=32, mesh=True, progress=False)
    img = np.zeros((224, 224, 3), np.uint8)
    faces = regressor.faces.cpu().numpy()
    write_person(tmp_path, "up", 0, img, result, faces, "anny", regressor, opts)
    v = trimesh.load(tmp_path / "up_p0.obj", process=False).vertices
    shift = v - upright
    assert np.abs(shift - shift.mean(0)).max() < 1e-4  # the model's y-up frame, moved
    head, feet = v[:, 1].argmax(), v[:, 1].argmin()
    assert v[head, 1] - v[feet, 1] > 1.2  # upright: > 1.2 m from the feet up to the head
    assert np.abs(v.mean(0)).max() < 1.0  # centred on the body, not 50 m away
    p = np.load(tmp_path / "up_p0_params.npz")
    T = p["mesh_to_camera"]
    cam = v @ T[:3, :3].T + T[:3, 3]
    np.testing.assert_allclose(cam, result.vertices_cam, atol=1e-4)
