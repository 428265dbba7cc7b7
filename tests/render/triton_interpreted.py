"""The Triton kernels (dsrbody.render.fused_triton) on CPU tensors under Triton's interpreter, against
the reference path and the brute force: run by tests/render/test_render_fused_triton.py in a subprocess
with ``TRITON_INTERPRET=1`` (Triton decides at import whether its kernels are interpreted). On a CUDA
machine the same checks run in-process on the GPU (``--device cuda``).

Prints one JSON object: case name -> the largest errors of (features, silhouette, vertex gradient,
feature gradient), each relative to ``max(1, the other side's largest value)``, against the reference
path (``ref``) and the brute force (``brute``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from softras_reference import reference_render  # noqa: E402
from test_render_soft import CAM, H, W, _max_err, _run, random_scene  # noqa: E402

from dsrbody.render import soft  # noqa: E402
from dsrbody.render.soft import soft_render  # noqa: E402


def _triton_only(monkeypatch_device: str) -> None:
    """Send every soft_render call with per-face features through the Triton kernels (CPU tensors
    included, which the interpreter runs)."""
    from dsrbody.render import fused_triton

    if monkeypatch_device == "cpu" and not fused_triton.interpreted():
        raise SystemExit("run with TRITON_INTERPRET=1 (CPU tensors need Triton's interpreter)")
    soft._use_triton = lambda backend, device, dtype, vertex_mode: backend != "reference" and not vertex_mode
    soft._use_fused = lambda backend, device, dtype=torch.float32: False


def _errors(got, other) -> list[float]:
    return [
        _max_err(a, b) / max(1.0, float(b.abs().max())) if b.numel() else float(a.numel())
        for a, b in zip(got, other)
    ]


def _grads(seed: int, C: int, B: int, h: int, w: int, dtype):
    g = torch.Generator().manual_seed(seed)
    gI = torch.randn(B, C, h, w, generator=g, dtype=torch.float64).to(dtype)
    gS = torch.randn(B, 1, h, w, generator=g, dtype=torch.float64).to(dtype)
    return gI, gS


def run_cases(device: str) -> dict[str, dict[str, list[float]]]:
    """Every case, on ``device``."""
    dev = torch.device(device)
    out: dict[str, dict[str, list[float]]] = {}

    def put(name, v, faces, feats, gI, gS, kw, brute=True):
        to = {k: t.to(dev) for k, t in feats.items()}
        got = _run(soft_render, v.to(dev), faces.to(dev), to, gI.to(dev), gS.to(dev), **kw)
        got = [t.cpu() if t is not None else None for t in got]
        ref = _run(soft_render, v, faces, feats, gI, gS, backend="reference", **kw)
        out[name] = {"ref": _errors(got, ref)}
        if brute:
            b = _run(reference_render, v.double(), faces, {k: t.double() for k, t in feats.items()},
                     gI.double(), gS.double(), **kw)  # fmt: skip
            out[name]["brute"] = _errors(got, b)

    # the scenes of test_render_soft.py: shared and per-sample face features, both softmax forms
    for mode in ("face", "batch_face"):
        for gamma in (1e-1, 1e-3):
            for dtype in (torch.float64, torch.float32):
                v, faces, ff, _ = random_scene(1)
                feats = {"face_features": ff if mode == "face" else torch.stack([ff, ff.flip(0)])}
                kw = dict(CAM, sigma=1e-2, gamma=gamma, near=0.5, far=5.0)
                gI, gS = _grads(7, ff.shape[1], 2, H, W, dtype)
                cast = {k: t.to(dtype) for k, t in feats.items()}
                put(f"{mode}_g{gamma}_{str(dtype)[6:]}", v.to(dtype), faces, cast, gI, gS, kw)
    # channel counts around the lanes' power of two, and none
    for C in (0, 1, 9):
        v, faces, _, _ = random_scene(5, C=max(C, 1))
        ff = torch.rand(faces.shape[0], C, generator=torch.Generator().manual_seed(C), dtype=torch.float64)
        kw = dict(CAM, sigma=1e-2, gamma=1e-1, near=0.5, far=5.0)
        gI, gS = _grads(8, C, 2, H, W, torch.float64)
        put(f"channels_{C}", v, faces, {"face_features": ff}, gI, gS, kw)
    # a non-finite sample under nonfinite="mask": NaN image, zero gradient, the other sample unaffected
    v, faces, ff, _ = random_scene(9)
    v[1, 3, 0] = float("nan")
    kw = dict(CAM, sigma=1e-2, gamma=1e-1, near=0.5, far=5.0, nonfinite="mask")
    feats = {"face_features": ff}
    to = {k: t.to(dev) for k, t in feats.items()}
    vv = v.to(dev).clone().requires_grad_(True)
    I, S = soft_render(vv, faces.to(dev), **to, **kw)
    torch.nan_to_num(I[0]).sum().add(torch.nan_to_num(S[0]).sum()).backward()
    ref_v = v.clone().requires_grad_(True)
    Ir, Sr = soft_render(ref_v, faces, **feats, **kw, backend="reference")
    torch.nan_to_num(Ir[0]).sum().add(torch.nan_to_num(Sr[0]).sum()).backward()
    out["nonfinite_mask"] = {
        "ref": [
            _max_err(I[0].cpu(), Ir[0]),
            _max_err(S[0].cpu(), Sr[0]),
            _max_err(vv.grad.cpu(), ref_v.grad),
            0.0,
        ],  # fmt: skip
        "nan_sample": [
            float(torch.isnan(I[1]).all()),
            float(torch.isnan(S[1]).all()),
            float(vv.grad[1].abs().max()),
            0.0,
        ],  # fmt: skip
    }
    # a larger scene: many faces over several tiles (footprints crossing tile borders), 40 x 48 pixels
    g = torch.Generator().manual_seed(12)
    Vn, Fn = 60, 150
    xy = (torch.rand(2, Vn, 2, generator=g) - 0.5) * 0.8
    z = 2.0 + torch.rand(2, Vn, 1, generator=g)
    v = torch.cat([xy * z, z], -1).double()
    faces = torch.stack([torch.randperm(Vn, generator=g)[:3] for _ in range(Fn)])
    ff = torch.rand(Fn, 4, generator=g, dtype=torch.float64)
    kw = dict(focal=60.0, principal_point=(24.0, 20.0), image_size=(40, 48), sigma=1e-4, gamma=1e-1)
    gI, gS = _grads(13, 4, 2, 40, 48, torch.float64)
    put("tiles_40x48", v, faces, {"face_features": ff}, gI, gS, kw)
    # a near plane through the scene (depths 2-2.6 m): faces partly out of the depth range leave the
    # features but keep their silhouette
    v, faces, ff, _ = random_scene(4)
    kw = dict(CAM, sigma=1e-2, gamma=1e-1, near=2.3, far=5.0)
    gI, gS = _grads(14, ff.shape[1], 2, H, W, torch.float64)
    put("near_cuts", v, faces, {"face_features": ff}, gI, gS, kw)
    # constant features (the DSR losses' case): no feature gradient asked for, both softmax forms
    for gamma in (1e-1, 1e-3):
        v, faces, ff, _ = random_scene(3)
        vv = v.to(dev).clone().requires_grad_(True)
        I, S = soft_render(vv, faces.to(dev), face_features=ff.to(dev), **CAM, sigma=1e-2, gamma=gamma)
        (I.square().sum() + S.sum()).backward()
        ref_v = v.clone().requires_grad_(True)
        Ir, Sr = soft_render(
            ref_v, faces, face_features=ff, **CAM, sigma=1e-2, gamma=gamma, backend="reference"
        )
        (Ir.square().sum() + Sr.sum()).backward()
        out[f"constant_features_g{gamma}"] = {
            "ref": [_max_err(I.cpu(), Ir), _max_err(S.cpu(), Sr), _max_err(vv.grad.cpu(), ref_v.grad), 0.0]
        }
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    _triton_only(args.device)
    print(json.dumps(run_cases(args.device)))


if __name__ == "__main__":
    main()
