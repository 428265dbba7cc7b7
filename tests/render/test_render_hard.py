"""dsrbody.render.hard (z-buffer) and dsrbody.render.overlay, against hand-computed pictures."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dsrbody.render.hard import rasterize, render_mesh
from dsrbody.render.overlay import overlay, rotate_about_vertical, side_view

CAM = dict(focal=10.0, principal_point=(8.0, 8.0), image_size=(16, 16))


def _inside_by_hand(tri_px: np.ndarray, H: int, W: int) -> np.ndarray:
    """Pixel centres inside a pixel-space triangle (edges included), by the sign of edge functions."""
    ys, xs = np.mgrid[0:H, 0:W] + 0.5
    s = []
    for k in range(3):
        a, b = tri_px[k], tri_px[(k + 1) % 3]
        s.append((b[0] - a[0]) * (ys - a[1]) - (b[1] - a[1]) * (xs - a[0]))
    s = np.stack(s)
    return (s >= 0).all(0) | (s <= 0).all(0)


def test_single_triangle_coverage_depth_and_barycentrics():
    z = 2.0
    v = torch.tensor([[-0.9, -0.7, z], [1.1, -0.5, z], [0.1, 1.3, z]], dtype=torch.float64)
    frags = rasterize(v, torch.tensor([[0, 1, 2]]), **CAM)
    tri_px = (v[:, :2] / z * 10.0 + 8.0).numpy()
    expected = _inside_by_hand(tri_px, 16, 16)
    assert expected.sum() > 20
    np.testing.assert_array_equal(frags.mask[0].numpy(), expected)
    assert torch.allclose(frags.depth[0][frags.mask[0]], torch.tensor(z, dtype=torch.float64))
    assert torch.isinf(frags.depth[0][~frags.mask[0]]).all()
    b = frags.bary[0][frags.mask[0]]
    assert torch.allclose(b.sum(-1), torch.ones(len(b), dtype=torch.float64)) and (b >= 0).all()
    # barycentrics reproduce the pixel centre
    r, c = np.nonzero(expected)
    centre = (b.numpy()[:, :, None] * tri_px[None]).sum(1)
    np.testing.assert_allclose(centre, np.stack([c + 0.5, r + 0.5], 1), atol=1e-9)


def test_nearest_face_wins_in_any_order():
    near = [[-1.0, -1.0, 2.0], [1.0, -1.0, 2.0], [0.0, 1.0, 2.0]]
    far = [[-1.0, -0.8, 3.0], [1.5, -0.8, 3.0], [0.2, 1.5, 3.0]]
    v = torch.tensor(near + far)
    for faces, front in (
        (torch.tensor([[0, 1, 2], [3, 4, 5]]), 0),
        (torch.tensor([[3, 4, 5], [0, 1, 2]]), 1),
    ):
        frags = rasterize(v, faces, **CAM)
        fi = frags.face_index[0]
        both = _inside_by_hand((v[:3, :2] / 2.0 * 10 + 8).numpy(), 16, 16)
        assert (fi.numpy()[both] == front).all()
        assert ((fi == 1 - front).sum() > 0) and torch.all(frags.depth[0][fi == 1 - front] > 2.5)


def test_perspective_correct_depth_on_a_slanted_triangle():
    v = torch.tensor([[-1.0, -1.0, 2.0], [1.0, -1.0, 4.0], [0.0, 1.5, 3.0]], dtype=torch.float64)
    frags = rasterize(v, torch.tensor([[0, 1, 2]]), **CAM)
    m = frags.mask[0]
    r, c = torch.nonzero(m, as_tuple=True)
    # the ray through each pixel centre meets the triangle's plane at the buffered depth
    n = torch.linalg.cross(v[1] - v[0], v[2] - v[0])
    ray = torch.stack([(c + 0.5 - 8.0) / 10.0, (r + 0.5 - 8.0) / 10.0, torch.ones_like(c, dtype=v.dtype)], 1)
    t = (n @ v[0]) / (ray @ n)
    assert torch.allclose(frags.depth[0][m], t, atol=1e-9)
    # perspective-correct barycentrics interpolate the 3D point exactly
    p = (frags.bary[0][m][:, :, None] * v[None]).sum(1)
    assert torch.allclose(p, ray * t[:, None], atol=1e-9)


def test_bad_vertices_are_skipped():
    v = torch.tensor(
        [
            [[-1.0, -1.0, 2.0], [1.0, -1.0, 2.0], [0.0, 1.0, -2.0]],
            [[-1.0, -1.0, 2.0], [1.0, -1.0, 2.0], [0.0, 1.0, 2.0]],
        ]
    )
    frags = rasterize(v, torch.tensor([[0, 1, 2]]), **CAM)
    assert not frags.mask[0].any() and frags.mask[1].any()
    v[1, 0, 0] = float("nan")
    frags = rasterize(v, torch.tensor([[0, 1, 2]]), **CAM)
    assert not frags.mask.any()
    empty = rasterize(v, torch.zeros(0, 3, dtype=torch.long), **CAM)
    assert not empty.mask.any()


def test_colours_and_shading():
    v = torch.tensor([[-1.0, -1.0, 2.0], [1.0, -1.0, 2.0], [1.0, 1.0, 2.0], [-1.0, 1.0, 2.0]])
    faces = torch.tensor([[0, 1, 2], [0, 2, 3]])
    out = render_mesh(v, faces, **CAM, face_colors=torch.tensor([[1.0, 0, 0], [0, 0, 1.0]]), shading="none")
    fi = out.face_index[0]
    assert torch.allclose(out.rgba[0][fi == 0], torch.tensor([1.0, 0, 0, 1]))
    assert torch.allclose(out.rgba[0][fi == 1], torch.tensor([0, 0, 1.0, 1]))
    assert torch.all(out.rgba[0][fi < 0] == 0)
    vc = torch.tensor([[0.2, 0.4, 0.6]]).expand(4, 3)
    flat = render_mesh(
        v, faces, **CAM, vertex_colors=vc, shading="flat", light_dir=(0, 0, -1), ambient=0.5, diffuse=0.5
    )
    # a fronto-parallel square lit from the camera: full Lambert term
    assert torch.allclose(flat.rgba[0][fi >= 0][:, :3], torch.tensor([0.2, 0.4, 0.6]), atol=1e-6)
    side = render_mesh(v, faces, **CAM, shading="smooth", light_dir=(1, 0, 0), ambient=0.3, diffuse=0.7)
    assert torch.allclose(side.rgba[0][fi >= 0][:, 0], torch.tensor(0.78 * 0.3), atol=1e-5)
    img = out.to_uint8()
    assert img.shape == (1, 16, 16, 3) and img.dtype == np.uint8 and (img[0][fi.numpy() < 0] == 255).all()
    with pytest.raises(ValueError, match="shading"):
        render_mesh(v, faces, **CAM, shading="phong")


def test_overlay_and_side_view():
    v = torch.tensor([[-0.5, -0.5, 2.0], [0.5, -0.5, 2.0], [0.5, 0.5, 2.0], [-0.5, 0.5, 2.0]])
    faces = torch.tensor([[0, 1, 2], [0, 2, 3]])
    image = np.zeros((16, 16, 3), np.uint8)
    image[..., 1] = 100
    out = overlay(image, v, faces, focal=10.0)
    mask = rasterize(v, faces, **CAM).mask[0].numpy()
    assert out.shape == image.shape and out.dtype == np.uint8
    assert (out[~mask] == image[~mask]).all() and (out[mask] != image[mask]).any(-1).all()
    # a square facing the camera seen from the side is edge-on: (almost) nothing left
    sv = side_view(v, faces, focal=10.0, image_size=(16, 16))
    assert sv.shape == (16, 16, 3) and (sv != 255).any(-1).sum() <= 2
    r = rotate_about_vertical(v, 90.0)
    assert torch.allclose(r.mean(0), v.mean(0), atol=1e-6) and torch.allclose(
        r[:, 0], torch.zeros(4), atol=1e-6
    )
    with pytest.raises(ValueError, match="uint8"):
        overlay(image.astype(np.float32), v, faces, focal=10.0)
