"""dsrbody.render.soft against the independent brute-force reference (tests/render/softras_reference.py),
on both of its backends: the pure-PyTorch reference path and the fused CPU kernels."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch
from softras_reference import reference_render

from dsrbody.render import fused, soft
from dsrbody.render.hard import rasterize
from dsrbody.render.soft import SoftRasterizer, SoftRasterSettings, coverage_threshold, soft_render

H, W = 12, 14
CAM = dict(focal=20.0, principal_point=(7.0, 6.0), image_size=(H, W))


@pytest.fixture(autouse=True, params=["reference", "fused"])
def backend(request, monkeypatch):
    """Every test of this file runs on both paths: the ``"auto"`` backend is pinned to the pure-PyTorch
    reference or to the fused CPU kernels (skipped where numba is missing)."""
    if request.param == "fused" and not fused.available():
        pytest.skip(f"fused kernels unavailable: {fused.unavailable_reason()}")
    use = request.param == "fused"
    monkeypatch.setattr(soft, "_use_fused", lambda backend, device, dtype: use and device.type == "cpu")
    return request.param


def random_scene(seed: int, B: int = 2, V: int = 14, F: int = 12, C: int = 3, dtype=torch.float64):
    """Random triangles in front of a small camera (about a third of the pixels covered)."""
    g = torch.Generator().manual_seed(seed)
    xy = (torch.rand(B, V, 2, generator=g) - 0.5) * 0.55
    z = 2.0 + torch.rand(B, V, 1, generator=g) * 0.6
    v = torch.cat([xy * z, z], -1).to(dtype)
    faces = torch.stack([torch.randperm(V, generator=g)[:3] for _ in range(F)])
    ff = torch.rand(F, C, generator=g).to(dtype)
    vf = torch.rand(B, V, C, generator=g).to(dtype)
    return v, faces, ff, vf


def _run(fn, v, faces, feats, gI, gS, **kw):
    v = v.clone().requires_grad_(True)
    feats = {k: t.clone().requires_grad_(True) for k, t in feats.items()}
    I, S = fn(v, faces, **feats, **kw)
    ((I * gI).sum() + (S * gS).sum()).backward()
    (feat,) = feats.values()
    return I.detach(), S.detach(), v.grad, feat.grad


def _max_err(a, b):
    return float((a.double() - b.double()).abs().max())


@pytest.mark.parametrize("mode", ["face", "vertex", "batch_face"])
@pytest.mark.parametrize("gamma", [1e-1, 1e-3])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_matches_brute_force_reference(mode, gamma, dtype):
    v, faces, ff, vf = random_scene(1)
    feats = {"face": {"face_features": ff}, "vertex": {"vertex_features": vf}}.get(mode)
    if mode == "batch_face":
        feats = {"face_features": torch.stack([ff, ff.flip(0)])}
    kw = dict(CAM, sigma=1e-2, gamma=gamma, near=0.5, far=5.0)
    g = torch.Generator().manual_seed(7)
    gI = torch.randn(2, ff.shape[1], H, W, generator=g, dtype=torch.float64)
    gS = torch.randn(2, 1, H, W, generator=g, dtype=torch.float64)
    ref = _run(reference_render, v, faces, feats, gI, gS, **kw)
    assert 0.2 < float(ref[1].mean()) < 0.9  # a scene with both covered and empty pixels
    cast = {k: t.to(dtype) for k, t in feats.items()}
    # small chunks: the multi-chunk path (and its running per-pixel max for small gamma) is exercised
    got = _run(
        soft_render, v.to(dtype), faces, cast, gI.to(dtype), gS.to(dtype), max_pairs_per_chunk=64, **kw
    )
    # float32 with gamma = 1e-3 amplifies depth rounding by 1/gamma: compare that case more loosely
    tol_img = 1e-5 if (dtype == torch.float64 or gamma >= 0.1) else 1e-4
    assert _max_err(got[0], ref[0]) < tol_img
    assert _max_err(got[1], ref[1]) < 1e-5
    for a, b in zip(got[2:], ref[2:]):
        scale = max(1.0, float(b.abs().max()))
        tol = 1e-4 if (dtype == torch.float64 or gamma >= 0.1) else 1e-3
        assert _max_err(a, b) < tol * scale


def test_small_sigma_and_default_settings_match_reference():
    """The DSR setting (sigma 1e-5, gamma 0.1) at a 224-like scale of one pixel, on a small image."""
    v, faces, ff, _ = random_scene(3, F=20)
    kw = dict(focal=60.0, principal_point=(16.0, 16.0), image_size=(32, 32), sigma=1e-4)
    I0, S0 = reference_render(v, faces, face_features=ff, **kw)
    I1, S1 = soft_render(v.float(), faces, face_features=ff.float(), **kw)
    assert _max_err(I1, I0) < 1e-5 and _max_err(S1, S0) < 1e-5


def test_gradcheck_float64():
    v, faces, ff, vf = random_scene(5, B=1, V=6, F=4, C=2)
    kw = dict(CAM, sigma=3e-2, gamma=0.3, near=0.5, far=5.0)

    def f_face(verts, feat):
        I, S = soft_render(verts, faces, face_features=feat, **kw)
        return I, S

    def f_vertex(verts, feat):
        return soft_render(verts, faces, vertex_features=feat, **kw)

    assert torch.autograd.gradcheck(
        f_face, (v.requires_grad_(True), ff.requires_grad_(True)), atol=1e-5, fast_mode=True
    )
    assert torch.autograd.gradcheck(f_vertex, (v, vf.requires_grad_(True)), atol=1e-5, fast_mode=True)


def test_finite_differences_on_a_few_vertices_float32():
    """float32 analytic gradients of a scalar loss against central differences in float64."""
    v, faces, ff, _ = random_scene(9)
    kw = dict(CAM, sigma=1e-2, gamma=0.1, near=0.5, far=5.0)
    target = torch.rand(2, ff.shape[1], H, W, generator=torch.Generator().manual_seed(0), dtype=torch.float64)

    def loss(verts, dtype):
        I, S = soft_render(verts.to(dtype), faces, face_features=ff.to(dtype), **kw)
        return ((I.double() - target) ** 2).sum() + S.double().sum()

    vg = v.float().requires_grad_(True)
    loss(vg, torch.float32).backward()
    h = 1e-7  # small: the loss is only piecewise smooth (clamps, min over edges)
    for b, i, c in [(0, 0, 0), (0, 3, 1), (1, 5, 2), (1, 7, 0), (0, 11, 1)]:
        vp, vm = v.clone(), v.clone()
        vp[b, i, c] += h
        vm[b, i, c] -= h
        fd = float(loss(vp, torch.float64) - loss(vm, torch.float64)) / (2 * h)
        assert abs(float(vg.grad[b, i, c]) - fd) <= 1e-3 * max(1.0, abs(fd)), (b, i, c)


def test_face_order_does_not_matter():
    v, faces, ff, vf = random_scene(11, F=16)
    perm = torch.randperm(faces.shape[0], generator=torch.Generator().manual_seed(2))
    kw = dict(CAM, sigma=1e-2)
    for dtype, tol in [(torch.float64, 1e-12), (torch.float32, 1e-6)]:
        a = soft_render(v.to(dtype), faces, face_features=ff.to(dtype), **kw)
        b = soft_render(v.to(dtype), faces[perm], face_features=ff[perm].to(dtype), **kw)
        c = soft_render(v.to(dtype), faces[perm], vertex_features=vf.to(dtype), **kw)
        d = soft_render(v.to(dtype), faces, vertex_features=vf.to(dtype), **kw)
        assert _max_err(a[0], b[0]) < tol and _max_err(a[1], b[1]) < tol
        assert _max_err(c[0], d[0]) < tol
        # rotating a face's vertex order changes nothing either
        e = soft_render(v.to(dtype), faces.roll(1, dims=1), face_features=ff.to(dtype), **kw)
        assert _max_err(a[0], e[0]) < tol and _max_err(a[1], e[1]) < tol


def test_chunking_changes_nothing():
    v, faces, ff, _ = random_scene(13, F=30)
    kw = dict(CAM, sigma=1e-2, face_features=ff)
    a = soft_render(v, faces, **kw)
    for gamma in (0.1, 1e-3):
        ref = soft_render(v, faces, **{**kw, "gamma": gamma})
        for mp in (1, 17, 1000):
            got = soft_render(v, faces, max_pairs_per_chunk=mp, **{**kw, "gamma": gamma})
            assert _max_err(got[0], ref[0]) < 1e-12 and _max_err(got[1], ref[1]) < 1e-12
    assert a[0].shape == (2, 3, H, W) and a[1].shape == (2, 1, H, W)


def test_all_channels_in_one_pass_equal_single_channel_calls():
    v, faces, ff, _ = random_scene(15, C=4)
    I, S = soft_render(v, faces, face_features=ff, **CAM, sigma=1e-2)
    for c in range(4):
        Ic, Sc = soft_render(v, faces, face_features=ff[:, c : c + 1], **CAM, sigma=1e-2)
        assert _max_err(Ic[:, 0], I[:, c]) < 1e-12 and _max_err(Sc, S) < 1e-12


def test_camera_forms_and_non_square_image():
    v, faces, ff, _ = random_scene(17)
    kw = dict(image_size=(10, 16), sigma=1e-2)
    ref = reference_render(v, faces, face_features=ff, focal=20.0, principal_point=(8.0, 5.0), **kw)
    for focal, pp in [
        (torch.tensor([20.0, 20.0]), torch.tensor([[8.0, 5.0]] * 2)),
        (torch.full((2, 2), 20.0), (8.0, 5.0)),
    ]:
        got = soft_render(v, faces, face_features=ff, focal=focal, principal_point=pp, **kw)
        assert _max_err(got[0], ref[0]) < 1e-12 and _max_err(got[1], ref[1]) < 1e-12
    # a per-sample focal length changes only that sample
    per_sample = torch.tensor([[20.0, 20.0], [25.0, 25.0]])
    got = soft_render(v, faces, face_features=ff, focal=per_sample, principal_point=(8.0, 5.0), **kw)
    assert _max_err(got[1][0], ref[1][0]) < 1e-12 and _max_err(got[1][1], ref[1][1]) > 1e-3


def test_module_wrapper():
    v, faces, ff, _ = random_scene(19)
    m = SoftRasterizer((H, W), focal=20.0, principal_point=(7.0, 6.0), sigma=1e-2)
    a = m(v, faces, face_features=ff)
    b = soft_render(v, faces, face_features=ff, **CAM, sigma=1e-2)
    assert _max_err(a[0], b[0]) == 0 and _max_err(a[1], b[1]) == 0
    assert "sigma=0.01" in repr(m)


def test_coverage_threshold_drops_pairs_below_1e4():
    """A single triangle: pixels just inside the footprint radius are covered, those beyond are 0."""
    v = torch.tensor([[[-0.5, -0.5, 2.0], [0.5, -0.5, 2.0], [0.0, 0.5, 2.0]]], dtype=torch.float64)
    faces = torch.tensor([[0, 1, 2]])
    _, S = soft_render(v, faces, focal=20.0, principal_point=(16.0, 16.0), image_size=(32, 32), sigma=1e-3)
    outside = S[(S > 0) & (S < 0.5)]
    assert outside.numel() > 0 and float(outside.min()) >= 1e-4 * (1 - 1e-9)
    thr = coverage_threshold(1e-3)
    assert math.isclose(1 / (1 + math.exp(thr / 1e-3)), 1e-4, rel_tol=1e-9)


# ---------------------------------------------------------------------------------------------------
# bad input


def test_empty_meshes():
    v = torch.rand(2, 5, 3) + torch.tensor([0, 0, 2.0])
    for faces in (torch.zeros(0, 3, dtype=torch.long),):
        vr = v.clone().requires_grad_(True)
        ff = torch.zeros(0, 4, requires_grad=True)
        I, S = soft_render(vr, faces, face_features=ff, **CAM)
        assert I.shape == (2, 4, H, W) and S.shape == (2, 1, H, W)
        assert float(I.detach().abs().sum()) == 0 and float(S.detach().abs().sum()) == 0
        (I.sum() + S.sum()).backward()
        assert float(vr.grad.abs().sum()) == 0
    I, S = soft_render(torch.zeros(1, 0, 3), torch.zeros(0, 3, dtype=torch.long), **CAM)
    assert I.shape == (1, 0, H, W) and float(S.sum()) == 0


def test_degenerate_and_behind_camera_faces_are_excluded():
    v, faces, ff, _ = random_scene(21)
    kw = dict(CAM, sigma=1e-2)
    ref = soft_render(v, faces, face_features=ff, **kw)
    V = v.shape[1]
    extra_v = torch.tensor(
        [[0.0, 0.0, 2.0], [0.1, 0.1, 2.0], [0.2, 0.2, 2.0],  # collinear: zero area
         [0.0, 0.0, 2.0], [0.0, 0.0, 2.0], [0.3, 0.0, 2.0],  # two equal vertices
         [0.0, 0.0, -1.0], [0.5, 0.0, 2.0], [0.0, 0.5, 2.0],  # one vertex behind the camera
         [0.0, 0.0, 0.0], [0.5, 0.0, 2.0], [0.0, 0.5, 2.0]],  # one vertex on the camera plane
        dtype=v.dtype,
    )  # fmt: skip
    v2 = torch.cat([v, extra_v[None].expand(2, -1, -1)], 1).requires_grad_(True)
    extra_f = torch.arange(V, V + 12).reshape(4, 3)
    faces2 = torch.cat([faces, extra_f])
    ff2 = torch.cat([ff, torch.ones(4, ff.shape[1], dtype=ff.dtype)])
    I, S = soft_render(v2, faces2, face_features=ff2, **kw)
    assert _max_err(I, ref[0]) < 1e-12 and _max_err(S, ref[1]) < 1e-12
    (I.sum() + S.sum()).backward()
    assert torch.isfinite(v2.grad).all() and float(v2.grad[:, V:].abs().sum()) == 0


def test_nan_vertices_raise_or_mask():
    v, faces, ff, _ = random_scene(23, B=3)
    bad = v.clone()
    bad[1, 4, 2] = float("nan")
    with pytest.raises(ValueError, match=r"sample\(s\) \[1\]"):
        soft_render(bad, faces, face_features=ff, **CAM)
    vr = bad.clone().requires_grad_(True)
    I, S = soft_render(vr, faces, face_features=ff, **CAM, sigma=1e-2, nonfinite="mask")
    assert torch.isnan(I[1]).all() and torch.isnan(S[1]).all()
    ref = soft_render(v[[0, 2]], faces, face_features=ff, **CAM, sigma=1e-2)
    assert _max_err(I[[0, 2]], ref[0]) < 1e-12 and _max_err(S[[0, 2]], ref[1]) < 1e-12
    loss = torch.nansum(I) + torch.nansum(S)
    loss.backward()
    assert torch.isfinite(vr.grad).all() and float(vr.grad[1].abs().sum()) == 0
    assert float(vr.grad[0].abs().sum()) > 0


def test_bad_arguments():
    v, faces, ff, vf = random_scene(25)
    with pytest.raises(ValueError, match="not both"):
        soft_render(v, faces, face_features=ff, vertex_features=vf, **CAM)
    with pytest.raises(ValueError, match="faces index"):
        soft_render(v, faces + 100, **CAM)
    with pytest.raises(ValueError, match="face_features"):
        soft_render(v, faces, face_features=ff[:-1], **CAM)
    with pytest.raises(ValueError, match="focal"):
        soft_render(v, faces, focal=torch.ones(3, 3), principal_point=(1.0, 1.0), image_size=(4, 4))


# ---------------------------------------------------------------------------------------------------
# against the hard rasteriser


def _body_in_camera(anny_body):
    mp = anny_body.mean_params()  # rest pose, average adult shape
    out = anny_body(mp["global_orient"][None], mp["body_pose"][None], mp["shape"][None])
    v = out.vertices.detach().float()
    v = v * torch.tensor([1.0, -1.0, -1.0])  # 180 deg about x: y down, facing the camera
    v = v - v.mean(1, keepdim=True) + torch.tensor([0.0, 0.0, 2 * 5000 / (224 * 0.9)])
    return v, anny_body.faces


def test_small_sigma_silhouette_equals_hard_rasteriser(anny_body):
    v, faces = _body_in_camera(anny_body)
    cam = dict(focal=5000.0, principal_point=(112.0, 112.0), image_size=(224, 224))
    _, S = soft_render(v, faces, sigma=1e-9, **cam)
    hard = rasterize(v, faces, **cam).mask[0]
    soft = S[0, 0] > 0.5
    iou = float((hard & soft).sum()) / float((hard | soft).sum())
    assert hard.float().mean() > 0.05 and iou > 0.99
    # the DSR setting (sigma 1e-5) blurs the boundary by about a pixel but stays close
    _, S5 = soft_render(v, faces, sigma=1e-5, **cam)
    iou5 = float((hard & (S5[0, 0] > 0.5)).sum()) / float((hard | (S5[0, 0] > 0.5)).sum())
    assert iou5 > 0.85


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu():
    v, faces, ff, vf = random_scene(27)
    kw = dict(CAM, sigma=1e-2)
    g = torch.Generator().manual_seed(7)
    gI = torch.randn(2, 3, H, W, generator=g, dtype=torch.float64)
    gS = torch.randn(2, 1, H, W, generator=g, dtype=torch.float64)
    for feats in ({"face_features": ff}, {"vertex_features": vf}):
        cpu = _run(soft_render, v, faces, feats, gI, gS, **kw)
        cuda_feats = {k: t.cuda() for k, t in feats.items()}
        got = _run(soft_render, v.cuda(), faces.cuda(), cuda_feats, gI.cuda(), gS.cuda(), **kw)
        for a, b in zip(got, cpu):
            assert a.is_cuda and _max_err(a.cpu(), b) < 1e-10


# ---------------------------------------------------------------------------------------------------
# settings


def test_settings_defaults_are_dsr_and_frozen():
    s = SoftRasterSettings()
    assert (s.sigma, s.gamma, s.near, s.far, s.eps) == (1e-5, 0.1, 1.0, 100.0, 1e-3)
    assert s.max_pairs_per_chunk == 65536 and s.nonfinite == "raise"
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.sigma = 1.0
    # numbers are stored as Python floats / ints, so equal settings compare and hash equal
    t = SoftRasterSettings(
        sigma=np.float64(1e-5),
        gamma=torch.tensor(0.1, dtype=torch.float64),
        near=1,
        max_pairs_per_chunk=65536.0,
    )
    assert t == s and hash(t) == hash(s)
    assert isinstance(t.gamma, float) and isinstance(t.near, float) and isinstance(t.max_pairs_per_chunk, int)


@pytest.mark.parametrize(
    "bad, message",
    [
        (dict(sigma=0.0), "sigma must be > 0, got 0.0"),
        (dict(sigma=-1e-5), "sigma must be > 0"),
        (dict(sigma=math.nan), "sigma must be finite"),
        (dict(sigma="small"), "sigma must be a number, got 'small'"),
        (dict(gamma=0.0), "gamma must be > 0"),
        (dict(gamma=math.inf), "gamma must be finite"),
        (dict(near=2.0, far=2.0), r"need far > near, got near=2.0, far=2.0"),
        (dict(near=5.0, far=1.0), "need far > near"),
        (dict(eps=math.nan), "eps must be finite"),
        (dict(max_pairs_per_chunk=0), "max_pairs_per_chunk must be an integer >= 1, got 0"),
        (dict(max_pairs_per_chunk=None), "max_pairs_per_chunk must be an integer >= 1, got None"),
        (dict(nonfinite="drop"), "nonfinite must be 'raise' or 'mask', got 'drop'"),
    ],
)
def test_settings_reject_bad_values_in_one_line(bad, message):
    for make in (
        lambda: SoftRasterSettings(**bad),
        lambda: soft_render(*random_scene(29)[:2], **CAM, **bad),
        lambda: SoftRasterizer((H, W), **bad),
    ):
        with pytest.raises(ValueError, match="^SoftRasterSettings: " + message) as err:
            make()
        assert "\n" not in str(err.value)


def test_settings_object_gives_the_same_render_as_the_keywords():
    v, faces, ff, vf = random_scene(31)
    keywords = dict(sigma=1e-2, gamma=1e-3, near=2.0, far=3.0, eps=1e-2, max_pairs_per_chunk=50)
    settings = SoftRasterSettings(**keywords)
    for feats in ({"face_features": ff}, {"vertex_features": vf}):
        a = soft_render(v, faces, **feats, **CAM, **keywords)
        b = soft_render(v, faces, **feats, **CAM, settings=settings)
        assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    m = SoftRasterizer((H, W), focal=20.0, principal_point=(7.0, 6.0), settings=settings)
    c = m(v, faces, face_features=ff)
    a = soft_render(v, faces, face_features=ff, **CAM, **keywords)
    assert torch.equal(a[0], c[0]) and torch.equal(a[1], c[1])
    assert m.settings is settings and m.gamma == 1e-3 and m.max_pairs_per_chunk == 50
    # both at once is ambiguous; keywords left at their defaults are not "given"
    with pytest.raises(
        ValueError, match="^soft_render: give settings= or the keywords sigma, nonfinite, not both$"
    ):
        soft_render(v, faces, **CAM, settings=settings, sigma=1e-3, nonfinite="mask")
    with pytest.raises(ValueError, match="SoftRasterizer: give settings="):
        SoftRasterizer((H, W), settings=settings, far=50.0)
    with pytest.raises(TypeError, match="SoftRasterSettings"):
        soft_render(v, faces, **CAM, settings={"sigma": 1e-2})
    assert soft_render(v, faces, **CAM, settings=settings, sigma=1e-5)[1].shape == (2, 1, H, W)


def test_module_settings_read_and_write_as_attributes():
    m = SoftRasterizer((H, W), sigma=1e-2)
    assert m.sigma == 1e-2 and m.nonfinite == "raise"
    m.sigma = 1e-3
    m.nonfinite = "mask"
    assert m.settings == SoftRasterSettings(sigma=1e-3, nonfinite="mask")
    assert "sigma=0.001" in repr(m)
    with pytest.raises(ValueError, match="sigma must be > 0"):
        m.sigma = 0.0
    assert m.sigma == 1e-3
