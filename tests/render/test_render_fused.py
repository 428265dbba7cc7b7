"""The fused CPU kernels (dsrbody.render.fused) held against the pure-PyTorch reference path and the
brute force (tests/render/softras_reference.py); the backend setting and the fallback without numba.

Every test of test_render_soft.py also runs on the fused kernels (its ``backend`` fixture); this file
compares the two paths directly, on the test scenes and on a full body at the DSR setting."""

from __future__ import annotations

import logging

import pytest
import torch
from softras_reference import reference_render
from test_render_soft import CAM, H, W, _max_err, _run, random_scene

from dsrbody.render import fused
from dsrbody.render.soft import SoftRasterSettings, soft_render

needs_fused = pytest.mark.skipif(
    not fused.available(), reason=f"no fused kernels: {fused.unavailable_reason()}"
)


def _both(v, faces, feats, gI, gS, **kw):
    ref = _run(soft_render, v, faces, feats, gI, gS, backend="reference", **kw)
    got = _run(soft_render, v, faces, feats, gI, gS, backend="fused", **kw)
    return got, ref


def _grads(seed, C, shape, dtype):
    g = torch.Generator().manual_seed(seed)
    gI = torch.randn(shape[0], C, *shape[1:], generator=g, dtype=torch.float64).to(dtype)
    gS = torch.randn(shape[0], 1, *shape[1:], generator=g, dtype=torch.float64).to(dtype)
    return gI, gS


@needs_fused
@pytest.mark.parametrize("mode", ["face", "vertex", "batch_face"])
@pytest.mark.parametrize("gamma", [1e-1, 1e-3])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_fused_matches_reference_path_and_brute_force(mode, gamma, dtype):
    """Images to 1e-5 and gradients to 1e-4 (relative to the largest) against the reference path and the
    brute force; float64 to ~1e-10. With gamma = 1e-3 in float32 the reference *path* itself is off the
    brute force by up to 2e-3 in the gradients (the depth rounding amplified by 1/gamma,
    test_render_soft.py), so there the fused kernels (float64 inside) are held to the brute force only."""
    v, faces, ff, vf = random_scene(1)
    feats = {"face": {"face_features": ff}, "vertex": {"vertex_features": vf}}.get(mode)
    if mode == "batch_face":
        feats = {"face_features": torch.stack([ff, ff.flip(0)])}
    kw = dict(CAM, sigma=1e-2, gamma=gamma, near=0.5, far=5.0)
    gI, gS = _grads(7, ff.shape[1], (2, H, W), torch.float64)
    brute = _run(reference_render, v, faces, feats, gI, gS, **kw)
    cast = {k: t.to(dtype) for k, t in feats.items()}
    got, ref = _both(v.to(dtype), faces, cast, gI.to(dtype), gS.to(dtype), **kw)
    tol_img, tol_grad = (1e-10, 1e-10) if dtype == torch.float64 else (1e-5, 1e-4)
    against = [brute] if (dtype == torch.float32 and gamma < 0.1) else [brute, ref]
    for other in against:
        assert _max_err(got[0], other[0]) < tol_img and _max_err(got[1], other[1]) < tol_img
        for a, b in zip(got[2:], other[2:]):
            assert _max_err(a, b) < tol_grad * max(1.0, float(b.abs().max()))


@needs_fused
def test_fused_matches_reference_on_a_body_at_the_dsr_setting(anny_body):
    """The Anny body (27k faces) at 224 x 224, sigma 1e-5, gamma 0.1, two samples turned differently,
    nine channels; values 1e-5 and gradients 1e-4 (relative) in float32, 1e-9 in float64."""
    mp = anny_body.mean_params()
    with torch.no_grad():
        v = anny_body(mp["global_orient"][None], mp["body_pose"][None], mp["shape"][None]).vertices[0]
    v = v * torch.tensor([1.0, -1.0, -1.0])
    v = v - v.mean(0)
    yaw = torch.tensor([0.2, -0.25])
    c, s = torch.cos(yaw), torch.sin(yaw)
    R = torch.zeros(2, 3, 3)
    R[:, 0, 0], R[:, 0, 2], R[:, 1, 1], R[:, 2, 0], R[:, 2, 2] = c, s, 1.0, -s, c
    verts = torch.einsum("bij,vj->bvi", R, v) + torch.tensor([0.0, 0.0, 2 * 5000 / (224 * 0.9)])
    faces = anny_body.faces
    feat = torch.rand(faces.shape[0], 9, generator=torch.Generator().manual_seed(3))
    kw = dict(focal=5000.0, principal_point=(112.0, 112.0), image_size=(224, 224))
    for dtype, tol_img, tol_grad in [(torch.float32, 1e-5, 1e-4), (torch.float64, 1e-9, 1e-9)]:
        gI, gS = _grads(11, 9, (2, 224, 224), dtype)
        got, ref = _both(verts.to(dtype), faces, {"face_features": feat.to(dtype)}, gI, gS, **kw)
        assert float(ref[1].mean()) > 0.05
        assert _max_err(got[0], ref[0]) < tol_img and _max_err(got[1], ref[1]) < tol_img
        for a, b in zip(got[2:], ref[2:]):
            assert _max_err(a, b) < tol_grad * max(1.0, float(b.abs().max()))


@needs_fused
def test_row_bands_and_threads_change_nothing():
    """With fewer samples than twice the threads the forward kernel splits each image into row bands; the
    pixels see their faces in the same order, so the results are bitwise those of one thread."""
    v, faces, ff, vf = random_scene(33, B=1, F=40)
    kw = dict(CAM, sigma=1e-2, backend="fused")
    gI, gS = _grads(3, ff.shape[1], (1, H, W), torch.float64)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = _run(soft_render, v, faces, {"vertex_features": vf}, gI, gS, **kw)
        torch.set_num_threads(4)
        four = _run(soft_render, v, faces, {"vertex_features": vf}, gI, gS, **kw)
    finally:
        torch.set_num_threads(before)
    for a, b in zip(one, four):
        assert torch.equal(a, b)


@needs_fused
@pytest.mark.parametrize("C", [0, 1, 17])
@pytest.mark.parametrize("mode", ["face", "vertex"])
def test_any_number_of_channels_matches_the_reference(C, mode):
    """The number of channels is a constant of the compiled kernels (one compilation per C, their channel
    loops unrolled): none (silhouette only), one, and more than a vector of float32 lanes hold, with
    per-face and per-corner features, against the reference path."""
    v, faces, ff, vf = random_scene(41, C=C)
    feats = {"face_features": ff} if mode == "face" else {"vertex_features": vf}
    kw = dict(CAM, sigma=1e-2, gamma=0.1, near=0.5, far=5.0)
    gI, gS = _grads(5, C, (2, H, W), torch.float64)
    got, ref = _both(v, faces, feats, gI, gS, **kw)
    assert float(ref[1].mean()) > 0.1
    for a, b in zip(got, ref):
        if a is None or b is None or b.numel() == 0:  # no channels: no feature gradient to speak of
            assert C == 0 and (a is None or a.numel() == 0) and (b is None or b.numel() == 0)
            continue
        assert a.shape == b.shape
        assert _max_err(a, b) < 1e-10 * max(1.0, float(b.abs().max()))


@needs_fused
@pytest.mark.parametrize("gamma", [1e-1, 1e-3])
def test_a_face_with_candidates_but_no_kept_pair(gamma):
    """A sliver whose footprint holds pixel centres, none of them inside it or near enough to be kept: the
    backward pass lists no pair of it (from the coverage the forward pass stored) and gives it no gradient,
    as the reference path; beside it a face with kept pairs in the same batch."""
    f, z = 20.0, 2.0
    # pixel coordinates (u, v) of the sliver: along the line v = u + 0.2, some 0.14 px from the centres
    # (c + 0.5, r + 0.5) that its bounding box holds; camera at principal point (0, 0)
    uv = torch.tensor([[1.9, 2.1], [5.1, 5.3], [5.1, 5.33], [7.0, 1.0], [11.0, 2.0], [8.0, 7.0]])
    v = torch.cat([uv * z / f, torch.full((6, 1), z)], -1)[None].to(torch.float64)
    faces = torch.tensor([[0, 1, 2], [3, 4, 5]])
    ff = torch.tensor([[0.3, 0.6], [0.8, 0.2]], dtype=torch.float64)
    kw = dict(focal=f, principal_point=(0.0, 0.0), image_size=(H, W), sigma=1e-5, gamma=gamma)
    gI, gS = _grads(9, 2, (1, H, W), torch.float64)
    got, ref = _both(v, faces, {"face_features": ff}, gI, gS, **kw)
    assert float(ref[1][0, 0, 2:5, 2:5].max()) == 0.0  # the sliver covers nothing
    assert float(ref[1].max()) > 0.5  # the other face does
    assert float(got[2][0, :3].abs().max()) == 0.0 and float(ref[2][0, :3].abs().max()) == 0.0
    assert float(got[2][0, 3:].abs().max()) > 0.0
    for a, b in zip(got, ref):
        assert _max_err(a, b) < 1e-10 * max(1.0, float(b.abs().max()))


@needs_fused
def test_constant_features_need_no_feature_gradient():
    """The DSR losses' case: features without gradient give the same vertex gradient."""
    v, faces, ff, _ = random_scene(35)
    kw = dict(CAM, sigma=1e-2, backend="fused")
    vg = v.clone().requires_grad_(True)
    I, S = soft_render(vg, faces, face_features=ff, **kw)
    ((I**2).sum() + S.sum()).backward()
    gI, gS = 2 * I.detach(), torch.ones_like(S)
    _, _, g_v, _ = _run(soft_render, v, faces, {"face_features": ff}, gI, gS, **kw)
    assert _max_err(vg.grad, g_v) < 1e-12


def test_backend_setting():
    assert SoftRasterSettings().backend == "auto"
    message = "^SoftRasterSettings: backend must be 'auto', 'fused' or 'reference', got 'gpu'$"
    with pytest.raises(ValueError, match=message):
        SoftRasterSettings(backend="gpu")
    v, faces, ff, _ = random_scene(37)
    a = soft_render(v, faces, face_features=ff, **CAM, backend="reference")
    b = soft_render(v, faces, face_features=ff, **CAM, settings=SoftRasterSettings(backend="reference"))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def test_without_numba_auto_falls_back_with_one_notice(monkeypatch, caplog):
    """Where the kernels cannot be imported, "auto" takes the reference path and says so once; "fused"
    is an error."""
    monkeypatch.setattr(fused, "_KERNELS", None)
    monkeypatch.setattr(fused, "_REASON", "ModuleNotFoundError: No module named 'numba'")
    monkeypatch.setattr(fused, "_NOTICED", False)
    v, faces, ff, _ = random_scene(39)
    ref = soft_render(v, faces, face_features=ff, **CAM, backend="reference")
    with caplog.at_level(logging.WARNING, logger="dsrbody.render.fused"):
        for _ in range(3):
            got = soft_render(v, faces, face_features=ff, **CAM)
            assert torch.equal(got[0], ref[0]) and torch.equal(got[1], ref[1])
    notices = [r for r in caplog.records if r.name == "dsrbody.render.fused"]
    assert len(notices) == 1 and "numba" in notices[0].getMessage()
    assert "\n" not in notices[0].getMessage()
    with pytest.raises(RuntimeError, match="backend='fused' needs numba"):
        soft_render(v, faces, face_features=ff, **CAM, backend="fused")


@needs_fused
def test_kernels_that_fail_at_first_use_fall_back_too(monkeypatch, caplog):
    """A numba that imports but cannot compile or run the kernels (checked once per dtype on a single
    triangle) is a fallback with one notice for "auto", an error naming the failure for "fused"."""

    def broken(dtype):
        raise RuntimeError("cannot compile")

    monkeypatch.setattr(fused, "_smoke", broken)
    monkeypatch.setattr(fused, "_CHECKED", {})
    monkeypatch.setattr(fused, "_REASON", None)
    monkeypatch.setattr(fused, "_NOTICED", False)
    v, faces, ff, _ = random_scene(43)
    ref = soft_render(v, faces, face_features=ff, **CAM, backend="reference")
    with caplog.at_level(logging.WARNING, logger="dsrbody.render.fused"):
        got = soft_render(v, faces, face_features=ff, **CAM)
        soft_render(v, faces, face_features=ff, **CAM)
    assert torch.equal(got[0], ref[0]) and torch.equal(got[1], ref[1])
    notices = [r.getMessage() for r in caplog.records if r.name == "dsrbody.render.fused"]
    assert len(notices) == 1 and "cannot compile" in notices[0]
    with pytest.raises(RuntimeError, match="cannot compile"):
        soft_render(v, faces, face_features=ff, **CAM, backend="fused")


@needs_fused
@pytest.mark.parametrize("gamma", [1e-1, 1e-3])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_sample_parallel_threads_change_nothing(gamma, dtype):
    """With at least twice as many samples as threads the forward kernel runs one task per sample and the
    backward one per range of faces; every pixel and every face is computed as with one thread, so the
    results, feature gradients summed over the batch included, are bitwise those of one thread."""
    v, faces, ff, _ = random_scene(45, B=5, F=30)
    kw = dict(CAM, sigma=1e-2, gamma=gamma, backend="fused")
    gI, gS = _grads(5, ff.shape[1], (5, H, W), dtype)
    before = torch.get_num_threads()
    runs = []
    try:
        for threads in (1, 2, 3):
            torch.set_num_threads(threads)
            runs.append(_run(soft_render, v.to(dtype), faces, {"face_features": ff.to(dtype)}, gI, gS, **kw))
    finally:
        torch.set_num_threads(before)
    for other in runs[1:]:
        for a, b in zip(runs[0], other):
            assert torch.equal(a, b)


@needs_fused
def test_reused_scratch_is_safe_across_shapes_and_interleaved_calls():
    """The backward pass reuses its scratch from call to call (fused._WORKSPACE); what is saved for the
    backward pass is not reused. Two renders of different shapes, both forwards before either backward,
    the backward passes in the other order, then the first again: every result is bitwise that of the
    same render alone with an empty workspace."""
    big = random_scene(47, B=3, F=30)
    small = random_scene(49, B=1, F=5)
    kw = dict(CAM, sigma=1e-2, backend="fused")

    def alone(scene, seed):
        fused._WORKSPACE.clear()
        v, faces, ff, _ = scene
        gI, gS = _grads(seed, ff.shape[1], (v.shape[0], H, W), torch.float32)
        return _run(soft_render, v.float(), faces, {"face_features": ff.float()}, gI, gS, **kw)

    want_big, want_small = alone(big, 1), alone(small, 2)
    fused._WORKSPACE.clear()
    outs = []
    for scene, seed in ((big, 1), (small, 2)):
        v, faces, ff, _ = scene
        vg = v.float().requires_grad_(True)
        fg = ff.float().requires_grad_(True)
        I, S = soft_render(vg, faces, face_features=fg, **kw)
        gI, gS = _grads(seed, ff.shape[1], (v.shape[0], H, W), torch.float32)
        outs.append((vg, fg, I, S, (I * gI).sum() + (S * gS).sum()))
    for *_, loss in reversed(outs):  # small first: its scratch is the smaller one
        loss.backward()
    for (vg, fg, I, S, _), want in zip(outs, (want_big, want_small)):
        for a, b in zip((I.detach(), S.detach(), vg.grad, fg.grad), want):
            assert torch.equal(a, b)
    gI, gS = _grads(1, big[2].shape[1], (3, H, W), torch.float32)  # after the small one, without clearing
    again = _run(soft_render, big[0].float(), big[1], {"face_features": big[2].float()}, gI, gS, **kw)
    for a, b in zip(again, want_big):
        assert torch.equal(a, b)


@needs_fused
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_large_footprints_match_the_reference(dtype):
    """A triangle whose footprint holds some 1,500 candidate pairs (the kernels compute the pairs of a face
    in blocks of 64 and grow their scratch for it) and a sliver, against the reference path and the brute
    force."""
    v = torch.tensor(
        [[[-0.9, -0.8, 2.0], [0.8, -0.9, 2.1], [0.1, 0.9, 2.3], [0.3, 0.2, 1.9], [0.35, 0.21, 1.9]]],
        dtype=torch.float64,
    )
    faces = torch.tensor([[0, 1, 2], [3, 4, 2]])
    ff = torch.tensor([[0.2, 0.7], [0.9, 0.1]], dtype=torch.float64)
    kw = dict(focal=40.0, principal_point=(20.0, 19.0), image_size=(40, 41), sigma=1e-3, gamma=0.1)
    gI, gS = _grads(13, 2, (1, 40, 41), torch.float64)
    brute = _run(reference_render, v, faces, {"face_features": ff}, gI, gS, **kw)
    got, ref = _both(v.to(dtype), faces, {"face_features": ff.to(dtype)}, gI.to(dtype), gS.to(dtype), **kw)
    tol_img, tol_grad = (1e-10, 1e-10) if dtype == torch.float64 else (1e-5, 1e-4)
    assert float(ref[1].mean()) > 0.25
    for other in (brute, ref):
        assert _max_err(got[0], other[0]) < tol_img and _max_err(got[1], other[1]) < tol_img
        for a, b in zip(got[2:], other[2:]):
            assert _max_err(a, b) < tol_grad * max(1.0, float(b.abs().max()))


@needs_fused
def test_branch_free_exponential():
    """The kernels' exponential (a polynomial and an exponent assembled in bits, so that loops of it
    vectorise) against math.exp over the clamped range, and its clamping beyond."""
    import math

    import numpy as np

    from dsrbody.render._fused_kernels import _exp_parts

    for x in [*np.linspace(-708.0, 709.0, 2001), -1e-300, 0.0, 1e-12, -0.3465, 0.3466, -87.3, 9.2]:
        q, bits = _exp_parts(float(x))
        got = q * float(np.array([bits], dtype=np.int64).view(np.float64)[0])
        assert abs(got / math.exp(x) - 1.0) < 1e-13, x
    q, bits = _exp_parts(-2000.0)
    assert q * float(np.array([bits]).view(np.float64)[0]) == pytest.approx(math.exp(-708.0), rel=1e-13)


@needs_fused
def test_pair_offsets_are_the_exclusive_sums_of_the_footprints():
    """``pair_offsets``: each face's first slot among the candidate pairs (``bw bh`` per face, none for an
    undrawn one) and the number of candidates in all."""
    import numpy as np

    from dsrbody.render._fused_kernels import pair_offsets

    rng = np.random.default_rng(3)
    foot = rng.integers(0, 9, size=(500, 4)).astype(np.int32)
    foot[::7, 2:] = 0  # faces that are not drawn
    off = np.full(500, -1, dtype=np.int64)
    total = pair_offsets(foot, off)
    counts = foot[:, 2].astype(np.int64) * foot[:, 3]
    assert total == counts.sum()
    assert np.array_equal(off, np.cumsum(counts) - counts)
    assert pair_offsets(np.zeros((0, 4), dtype=np.int32), np.zeros(0, dtype=np.int64)) == 0


def test_recycler_hands_out_a_buffer_again_only_once_nothing_refers_to_it():
    """``fused._Recycler``: a buffer comes back once every tensor on it (views included) has died, never
    while one lives; at most ``keep`` buffers per name are kept, the others are fresh and dropped; a free
    buffer too small for a request is replaced; ``clear`` forgets them all."""
    rec = fused._Recycler(keep=2)
    a = rec.take("x", (4, 3), torch.float32)
    assert a.shape == (4, 3) and a.dtype == torch.float32 and a.is_contiguous()
    ptr_a = a.data_ptr()
    view = a[1:]
    del a
    b = rec.take("x", (4, 3), torch.float32)  # a's view is alive: another buffer
    assert b.data_ptr() != ptr_a
    c = rec.take("x", 12, torch.float32)  # two live ones kept: a fresh, untracked one
    assert c.data_ptr() not in (ptr_a, b.data_ptr())
    del view
    d = rec.take("x", (2, 5), torch.float32)  # a's buffer is free again (10 <= 12 elements)
    assert d.data_ptr() == ptr_a and d.shape == (2, 5)
    assert rec.take("x", 3, torch.float64).data_ptr() not in (ptr_a, b.data_ptr())  # another dtype
    ptr_b = b.data_ptr()
    del b, c
    e = rec.take("x", 1000, torch.float32)  # larger than the free buffer: it is replaced
    assert e.numel() == 1000 and e.data_ptr() != ptr_b
    del e
    assert rec.take("x", 1000, torch.float32).numel() == 1000
    rec.clear()
    assert rec._bufs == {}


@needs_fused
def test_recycled_buffers_keep_retained_graphs_and_held_outputs_intact():
    """The forward's outputs and saved tensors are recycled (fused._RECYCLER) only once unreferenced: a
    graph kept with ``retain_graph`` gives the same gradients after other renders have run in between,
    outputs held by the caller keep their values, and repeated renders into recycled buffers are bitwise
    those of a render with no buffer to recycle."""
    v, faces, ff, _ = random_scene(51, B=2, F=20)
    kw = dict(CAM, sigma=1e-2, backend="fused")
    gI, gS = _grads(3, ff.shape[1], (2, H, W), torch.float32)
    fused._RECYCLER.clear()
    want = [
        t.clone() for t in _run(soft_render, v.float(), faces, {"face_features": ff.float()}, gI, gS, **kw)
    ]
    vg = v.float().requires_grad_(True)
    I, S = soft_render(vg, faces, face_features=ff.float(), **kw)
    held = (I.detach().clone(), S.detach().clone())
    loss = (I * gI).sum() + (S * gS).sum()
    loss.backward(retain_graph=True)
    first = vg.grad.clone()
    for seed in (53, 55, 57):  # other renders, forward and backward, while the graph and outputs live
        v2, f2, ff2, _ = random_scene(seed, B=2, F=20)
        _run(soft_render, v2.float(), f2, {"face_features": ff2.float()}, gI, gS, **kw)
    assert torch.equal(I, held[0]) and torch.equal(S, held[1])
    vg.grad = None
    loss.backward()
    assert torch.equal(vg.grad, first)
    for _ in range(3):  # into recycled buffers
        again = _run(soft_render, v.float(), faces, {"face_features": ff.float()}, gI, gS, **kw)
        for a, b in zip(again, want):
            assert torch.equal(a, b)
        del again, a, b
