"""``dsrbody render``: the pictures it writes agree with each other."""

from __future__ import annotations

import imageio.v3 as iio
import numpy as np

from dsrbody.cli import main


def test_render_command_writes_consistent_pictures(tmp_path, capsys):
    image = np.zeros((300, 300, 3), np.uint8)
    image[..., 2] = 200
    iio.imwrite(tmp_path / "crop.png", image)
    out = tmp_path / "out"
    assert main(["render", "--out", str(out), "--image", str(tmp_path / "crop.png"), "--size", "128"]) == 0
    assert "anny" in capsys.readouterr().out
    pics = {
        n: iio.imread(out / f"{n}.png") for n in ("shaded", "parts", "silhouette", "side", "overlay", "panel")
    }
    body = (pics["shaded"] != 255).any(-1)
    assert 0.03 < body.mean() < 0.5
    np.testing.assert_array_equal((pics["parts"] != 255).any(-1), body)
    soft = pics["silhouette"] > 127
    assert (body & soft).sum() / (body | soft).sum() > 0.8  # sigma 1e-5 widens it by about a pixel
    # the overlay changes the image exactly where the body is
    changed = (pics["overlay"].astype(int) != np.array([0, 0, 200])).any(-1)
    np.testing.assert_array_equal(changed, body)
    assert pics["panel"].shape == (128, 5 * 128, 3)
    # front view: the head is at the top of the image
    rows = np.nonzero(body.any(1))[0]
    head_row, feet_row = rows.min(), rows.max()
    assert head_row < 40 and feet_row > 88


def test_render_command_bad_input(tmp_path, capsys):
    assert main(["render", "--out", str(tmp_path), "--image", str(tmp_path / "missing.png")]) == 1
    assert "missing.png does not exist" in capsys.readouterr().err
    (tmp_path / "bad.png").write_text("not an image")
    assert main(["render", "--out", str(tmp_path), "--image", str(tmp_path / "bad.png")]) == 1
    assert "bad.png: not a readable image" in capsys.readouterr().err
    assert main(["render", "--out", str(tmp_path), "--camera", "0", "0", "0"]) == 1
    assert "scale must be positive" in capsys.readouterr().err
