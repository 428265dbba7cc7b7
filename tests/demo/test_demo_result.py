"""The demo's summary picture NAME_result.png: the input | every body over it | one side view per person,
all at the input's height, for a non-square image with one and two people."""

from __future__ import annotations

import json

import imageio.v3 as iio
import numpy as np
import pytest

from dsrbody.demo.run import (
    BoxSource,
    DemoOptions,
    draw_people,
    predict_people,
    result_picture,
    run_images,
    side_picture,
)

H, W = 224, 300  # wider than high: the panels' widths tell which is which


@pytest.fixture(scope="module")
def regressor(tiny_ckpt):
    from dsrbody.demo.model import load_model

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
    assert pic.shape == (H, 2 * W + n * H, 3) and pic.dtype == np.uint8
    np.testing.assert_array_equal(pic[:, :W], img)  # the input as it is
    bodies = pic[:, W : 2 * W]
    assert np.abs(bodies.astype(int) - img.astype(int)).mean() > 1.0  # bodies drawn over it
    sides = [pic[:, 2 * W + k * H : 2 * W + (k + 1) * H] for k in range(n)]
    assert all(s.std() > 1.0 for s in sides)  # a body in every side view
    if n == 2:
        assert not np.array_equal(sides[0], sides[1])  # one per person
    assert iio.imread(out / "wide_p0_side.png").shape == (64, 64, 3)  # the per-person file keeps its size
    # the same picture from its parts, in that order
    people = source.people(img, path.name)
    results = predict_people(regressor, img, people)
    faces = regressor.faces.cpu().numpy()
    np.testing.assert_array_equal(pic, result_picture(img, results, faces, regressor))
    np.testing.assert_array_equal(bodies, draw_people(img, results, faces))
    for k, r in enumerate(results):
        np.testing.assert_array_equal(sides[k], side_picture(r, faces, H, regressor.focal, regressor.img_res))
