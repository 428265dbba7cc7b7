"""The Triton kernels of the soft rasteriser (dsrbody.render.fused_triton): their binning, the backend
dispatch on CUDA devices, and the kernels themselves held against the reference path and the brute force,
under Triton's interpreter on the CPU (a subprocess with TRITON_INTERPRET=1; skipped where Triton is not
installed) and compiled on a GPU (skipped without one)."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from test_render_soft import CAM, _max_err, random_scene
from triton_interpreted import run_cases

from dsrbody.render import fused_triton, soft
from dsrbody.render.fused_triton import TILE_H, TILE_W, bin_faces
from dsrbody.render.soft import soft_render

HERE = Path(__file__).resolve().parent
needs_triton = pytest.mark.skipif(
    not fused_triton.available(), reason=f"no Triton: {fused_triton.unavailable_reason()}"
)
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def test_bin_faces_lists_every_tile_a_footprint_meets():
    """Against a brute force over all tiles: each face is in exactly the tiles its footprint meets (of its
    own sample), in face order within a tile; empty footprints are in none."""
    g = torch.Generator().manual_seed(0)
    B, F, H, W = 2, 40, 37, 50
    c0 = torch.randint(0, W, (B * F,), generator=g)
    r0 = torch.randint(0, H, (B * F,), generator=g)
    bw = torch.minimum(torch.randint(0, 30, (B * F,), generator=g), W - c0)
    bh = torch.minimum(torch.randint(0, 20, (B * F,), generator=g), H - r0)
    bw[::7] = 0  # faces not drawn
    face_list, tile_ptr, nTx, nTy = bin_faces(c0, r0, bw, bh, F, B, H, W)
    assert (nTx, nTy) == (-(-W // TILE_W), -(-H // TILE_H))
    assert tile_ptr.shape == (B * nTx * nTy + 1,) and int(tile_ptr[-1]) == face_list.numel()
    for t in range(B * nTx * nTy):
        b, rest = divmod(t, nTx * nTy)
        ty, tx = divmod(rest, nTx)
        want = [
            i
            for i in range(b * F, (b + 1) * F)
            if bw[i] > 0 and bh[i] > 0
            and c0[i] < (tx + 1) * TILE_W and c0[i] + bw[i] > tx * TILE_W
            and r0[i] < (ty + 1) * TILE_H and r0[i] + bh[i] > ty * TILE_H
        ]  # fmt: skip
        assert face_list[tile_ptr[t] : tile_ptr[t + 1]].tolist() == want, t


def test_dispatch_on_cuda_devices(monkeypatch, caplog):
    """The backend decision for CUDA tensors (no tensor needed): "auto" takes the Triton kernels where
    they run, else the reference path with one notice; "fused" insists; per-vertex features take the
    reference path ("fused" refuses them); CPU tensors never go to Triton."""
    cuda = torch.device("cuda")
    monkeypatch.setattr(fused_triton, "ready", lambda device, dtype=torch.float32: True)
    assert soft._use_triton("auto", cuda, torch.float32, False)
    assert soft._use_triton("fused", cuda, torch.float32, False)
    assert not soft._use_triton("reference", cuda, torch.float32, False)
    assert not soft._use_triton("auto", cuda, torch.float32, True)
    assert not soft._use_triton("auto", torch.device("cpu"), torch.float32, False)
    assert not soft._use_fused("fused", cuda, torch.float32)  # the numba kernels are the CPU's
    with pytest.raises(ValueError, match="per-face features"):
        soft._use_triton("fused", cuda, torch.float32, True)
    monkeypatch.setattr(fused_triton, "ready", lambda device, dtype=torch.float32: False)
    monkeypatch.setattr(fused_triton, "_REASON", "ModuleNotFoundError: No module named 'triton'")
    monkeypatch.setattr(fused_triton, "_NOTICED", False)
    with caplog.at_level(logging.WARNING, logger="dsrbody.render.fused_triton"):
        assert not soft._use_triton("auto", cuda, torch.float32, False)
        assert not soft._use_triton("auto", cuda, torch.float32, False)
    notices = [r.getMessage() for r in caplog.records if r.name == "dsrbody.render.fused_triton"]
    assert len(notices) == 1 and "triton" in notices[0] and "\n" not in notices[0]
    with pytest.raises(RuntimeError, match="backend='fused' on CUDA needs Triton"):
        soft._use_triton("fused", cuda, torch.float32, False)


def _check(cases: dict) -> None:
    """Images to 1e-5 and gradients to 1e-4 (relative to the largest), float64 to 1e-10, against the
    brute force; against the reference path too, except float32 at gamma 1e-3 where the reference path
    itself is off the brute force by more (test_render_fused.py)."""
    assert len(cases) == 16
    for name, errs in cases.items():
        f64 = "float32" not in name
        tol_img, tol_grad = (1e-10, 1e-10) if f64 else (1e-5, 1e-4)
        sides = (
            ["brute"] if ("float32" in name and "g0.001" in name) else [k for k in errs if k != "nan_sample"]
        )
        for side in sides:
            e = errs[side]
            assert e[0] < tol_img and e[1] < tol_img, (name, side, e)
            assert e[2] < tol_grad and e[3] < tol_grad, (name, side, e)
    nan = cases["nonfinite_mask"]["nan_sample"]
    assert nan[0] == 1.0 and nan[1] == 1.0 and nan[2] == 0.0  # NaN images, no gradient


@needs_triton
def test_kernels_under_the_interpreter_match_reference_and_brute_force():
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    proc = subprocess.run(
        [sys.executable, str(HERE / "triton_interpreted.py")],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    _check(json.loads(proc.stdout.strip().splitlines()[-1]))


@needs_triton
def test_kernels_that_fail_their_first_check_fall_back(monkeypatch, caplog):
    """A Triton that imports but cannot compile or launch the kernels (the one-triangle check, once per
    device and dtype) is a fallback with one notice for "auto", an error naming the failure for
    "fused"."""

    def broken(device, dtype):
        raise RuntimeError("cannot compile")

    cuda = torch.device("cuda")
    monkeypatch.setattr(fused_triton, "_smoke", broken)
    monkeypatch.setattr(fused_triton, "_CHECKED", {})
    monkeypatch.setattr(fused_triton, "_REASON", None)
    monkeypatch.setattr(fused_triton, "_NOTICED", False)
    with caplog.at_level(logging.WARNING, logger="dsrbody.render.fused_triton"):
        assert not soft._use_triton("auto", cuda, torch.float32, False)
        assert not soft._use_triton("auto", cuda, torch.float32, False)
    notices = [r.getMessage() for r in caplog.records if r.name == "dsrbody.render.fused_triton"]
    assert len(notices) == 1 and "cannot compile" in notices[0]
    assert fused_triton._CHECKED == {("cuda", torch.float32): False}  # checked once
    with pytest.raises(RuntimeError, match="cannot compile"):
        soft._use_triton("fused", cuda, torch.float32, False)


def test_fused_on_another_device_is_refused():
    with pytest.raises(ValueError, match="CPU and CUDA tensors, got a meta tensor"):
        soft._use_fused("fused", torch.device("meta"), torch.float32)


@needs_triton
def test_cpu_tensors_need_the_interpreter():
    if fused_triton.interpreted():
        pytest.skip("this process runs Triton interpreted")
    v, faces, ff, _ = random_scene(2)
    with pytest.raises(RuntimeError, match="TRITON_INTERPRET=1"):
        fused_triton.triton_render(
            v, faces, ff, torch.ones(2, dtype=torch.bool), 20.0, (7.0, 6.0), 12, 14,
            soft.SoftRasterSettings(sigma=1e-2), (2 / 14) ** 2, 1.0, False,
        )  # fmt: skip
    assert not fused_triton.ready(torch.device("cpu"))


@pytest.mark.cuda
@needs_cuda
@needs_triton
def test_kernels_on_the_gpu_match_reference_and_brute_force(monkeypatch):
    monkeypatch.setattr(
        soft, "_use_triton", lambda backend, device, dtype, vm: backend != "reference" and not vm
    )
    _check(run_cases("cuda"))


@pytest.mark.cuda
@needs_cuda
@needs_triton
def test_auto_takes_the_kernels_on_the_gpu(monkeypatch):
    """The default backend on CUDA tensors with face features is the Triton path; with vertex features
    the reference path; "fused" with vertex features is refused."""
    calls = []
    real = fused_triton.triton_render
    monkeypatch.setattr(fused_triton, "triton_render", lambda *a, **k: calls.append(1) or real(*a, **k))
    v, faces, ff, vf = random_scene(41)
    v, faces, ff, vf = v.cuda(), faces.cuda(), ff.cuda(), vf.cuda()
    a = soft_render(v, faces, face_features=ff, **CAM)
    b = soft_render(v, faces, face_features=ff, **CAM, backend="reference")
    assert calls and _max_err(a[0], b[0]) < 1e-10
    n = len(calls)
    soft_render(v, faces, vertex_features=vf, **CAM)
    assert len(calls) == n
    with pytest.raises(ValueError, match="per-face features"):
        soft_render(v, faces, vertex_features=vf, **CAM, backend="fused")


def _body_sized_mesh(B: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    """A closed mesh of a person's size and face count (an ellipsoid of 20,480 faces, 0.6 x 1.8 x 0.4 m)
    in the DSR camera at 224 x 224, each sample turned differently: ``vertices (B, V, 3)``, ``faces``."""
    import trimesh

    sphere = trimesh.creation.icosphere(subdivisions=5)
    v = torch.tensor(sphere.vertices, dtype=torch.float32) * torch.tensor([0.3, 0.9, 0.2])
    yaw = torch.linspace(0.2, -0.25, B)
    c, s = torch.cos(yaw), torch.sin(yaw)
    R = torch.zeros(B, 3, 3)
    R[:, 0, 0], R[:, 0, 2], R[:, 1, 1], R[:, 2, 0], R[:, 2, 2] = c, s, 1.0, -s, c
    verts = torch.einsum("bij,vj->bvi", R, v) + torch.tensor([0.0, 0.0, 2 * 5000 / (224 * 0.9)])
    return verts, torch.tensor(sphere.faces, dtype=torch.long)


@pytest.mark.cuda
@needs_cuda
@needs_triton
def test_kernels_on_the_gpu_on_a_body_sized_mesh_at_the_dsr_setting():
    """20k faces at 224 x 224, sigma 1e-5, gamma 0.1 (the DSR setting), nine channels, two samples:
    values 1e-5 and gradients 1e-4 (relative) in float32 against the reference path on the same GPU."""
    verts, faces = _body_sized_mesh()
    verts, faces = verts.cuda(), faces.cuda()
    feat = torch.rand(faces.shape[0], 9, generator=torch.Generator().manual_seed(3)).cuda()
    g = torch.Generator().manual_seed(11)
    gI = torch.randn(2, 9, 224, 224, generator=g).cuda()
    gS = torch.randn(2, 1, 224, 224, generator=g).cuda()
    kw = dict(focal=5000.0, principal_point=(112.0, 112.0), image_size=(224, 224))
    out = {}
    for backend in ("fused", "reference"):
        vv = verts.clone().requires_grad_(True)
        ff = feat.clone().requires_grad_(True)
        I, S = soft_render(vv, faces, face_features=ff, **kw, backend=backend)
        ((I * gI).sum() + (S * gS).sum()).backward()
        out[backend] = (I.detach(), S.detach(), vv.grad, ff.grad)
    got, ref = out["fused"], out["reference"]
    assert float(ref[1].mean()) > 0.05
    assert _max_err(got[0], ref[0]) < 1e-5 and _max_err(got[1], ref[1]) < 1e-5
    for a, b in zip(got[2:], ref[2:]):
        assert _max_err(a, b) < 1e-4 * max(1.0, float(b.abs().max()))
