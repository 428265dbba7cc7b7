"""Soft semantic rasteriser: the fused kernels vs the pure-PyTorch reference path vs nine single-channel
calls vs brute force (and PyTorch3D, when it is importable).

Scenes: the Anny default mesh (13,718 vertices, 27,420 faces; mean adult shape, rest A-pose) and the same
mesh decimated by vertex clustering to about 14k faces (SMPL-sized), in the DSR camera (f = 5000 px,
224 x 224, weak-perspective scale ``--scale``, i.e. t_z = 2 f / (224 s)), each sample turned by a
random yaw in [-0.3, 0.3] rad and shifted a little. Features: C = 9 random per-face channels.
sigma 1e-5, gamma 0.1 (the DSR recipe).

Methods, side by side in one run (each configuration in a fresh subprocess, so that its peak memory
can be read from the process's peak RSS, ``VmHWM``):

- ``fused``: one :func:`dsrbody.render.soft.soft_render` call with all 9 channels on the fused kernels
  (``backend="fused"``: numba on the CPU, Triton on CUDA; skipped with a note where they are missing);
- ``reference``: the same call on the pure-PyTorch path (``backend="reference"``);
- ``9x1ch``: nine single-channel calls of the reference path (the official approach: one render per
  channel);
- ``brute``: every face against every pixel (SoftRas formulas, float32, faces in blocks of 128),
  forward only, B = 1 (it does not fit beyond that in reasonable time);
- ``pytorch3d``: PyTorch3D's ``MeshRasterizer`` (blur radius ``ln(1/1e-4 - 1) sigma``, the
  ``--p3d-faces`` nearest faces per pixel, naive rasterisation) and SoftRas's blend of the 9 channels
  written out on its fragments, as in ``softmax_rgb_blend`` (which handles 3 channels only); only when
  ``pytorch3d`` is importable (else skipped with a note), and only for batches of at most
  ``--p3d-max-batch`` (it takes seconds per image on a CPU).

``--same-process`` adds ``alternating``: ``fused`` and ``reference`` timed call by call in turn in one
process, reported as the median of the per-repeat ratios (the least disturbed by other work on a shared
machine). ``--thp`` runs the workers with ``THP_MEM_ALLOC_ENABLE=1``, which makes torch's own allocator ask
for transparent huge pages (it affects both paths: the loss's buffers and the reference path's).

Reported: forward (no grad) and forward+backward milliseconds per image (median of ``--repeats``;
wall clock, and the process's CPU time, which is what an idle core would take on a shared machine),
peak RSS increase over the process's state before the first render (MiB; for ``fused`` after numba,
LLVM and the compiled kernels are loaded, whose own RSS is reported beside it), face-pixel pairs per image,
silhouette coverage, and the ratios to ``fused``. ``--device cuda`` times the Triton kernels and the
reference calls on a GPU (through ``torch.cuda.synchronize``; peak memory is then
``torch.cuda.max_memory_allocated``; the kernels are compiled before the timing).
``--ab-commit COMMIT`` times this working tree's fused path against that of an earlier commit (its
``fused.py`` and kernel module imported under other names), alternating call by call in one process, with
each kernel's CPU time: the way to measure a kernel change side by side on a shared machine.
``--mesh-cache FILE`` stores the two meshes in an ``.npz`` (or reads them from it), so that a machine
without the ``anny`` package can run the benchmark. Usage::

    .venv/bin/python benchmarks/render.py                 # all meshes, B = 1, 8, 32
    .venv/bin/python benchmarks/render.py --threads 1 --batch 32 --mesh body14k --no-brute --constant-features
    .venv/bin/python benchmarks/render.py --threads 1 --batch 32 --mesh body14k --no-brute --no-nine \
        --constant-features --same-process --repeats 7
    .venv/bin/python benchmarks/render.py --threads 1 --batch 32 --mesh body14k --ab-commit HEAD --repeats 10
    .venv/bin/python benchmarks/render.py --mesh-cache meshes.npz --device cuda --batch 32 128 --no-brute
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

FOCAL, RES = 5000.0, 224
C = 9


def cluster_decimate(v: np.ndarray, f: np.ndarray, target_faces: int) -> tuple[np.ndarray, np.ndarray]:
    """Vertex-clustering decimation (grid cells of side h; h bisected to reach ``target_faces``)."""

    def cluster(h: float):
        q = np.floor(v / h).astype(np.int64)
        _, inv = np.unique(q, axis=0, return_inverse=True)
        inv = inv.ravel()
        n = int(inv.max()) + 1
        nv = np.zeros((n, 3))
        np.add.at(nv, inv, v)
        nv /= np.bincount(inv, minlength=n)[:, None]
        nf = inv[f]
        nf = nf[(nf[:, 0] != nf[:, 1]) & (nf[:, 1] != nf[:, 2]) & (nf[:, 0] != nf[:, 2])]
        _, first = np.unique(np.sort(nf, 1), axis=0, return_index=True)
        return nv, nf[np.sort(first)]

    lo, hi = 1e-4, 0.1
    for _ in range(30):
        h = 0.5 * (lo + hi)
        nv, nf = cluster(h)
        lo, hi = (h, hi) if len(nf) > target_faces else (lo, h)
    return cluster(lo)


def build_meshes(cache: str | None = None) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Anny mean-shape rest mesh in the SMPL frame (y up, facing +z) and its ~14k-face decimation
    (read from / written to the ``.npz`` ``cache`` when one is given)."""
    if cache and Path(cache).is_file():
        d = np.load(cache, allow_pickle=False)
        return {name: (d[f"{name}_v"], d[f"{name}_f"]) for name in ("body14k", "anny27k")}
    from dsrbody.body.anny import AnnyBody

    body = AnnyBody()
    mp = body.mean_params()
    with torch.no_grad():
        v = body(mp["global_orient"][None], mp["body_pose"][None], mp["shape"][None]).vertices[0]
    v = v.double().numpy()
    f = body.faces.numpy().astype(np.int64)
    v14, f14 = cluster_decimate(v, f, 14000)
    if cache:
        np.savez(cache, body14k_v=v14, body14k_f=f14, anny27k_v=v, anny27k_f=f)
    return {"body14k": (v14, f14), "anny27k": (v, f)}


def scene(v: np.ndarray, B: int, scale: float, seed: int = 0) -> torch.Tensor:
    """``(B, V, 3)`` camera-frame vertices: 180 deg about x (y down, facing the camera), random yaw."""
    g = torch.Generator().manual_seed(seed)
    vt = torch.tensor(v, dtype=torch.float32) * torch.tensor([1.0, -1.0, -1.0])
    vt = vt - vt.mean(0)
    yaw = (torch.rand(B, generator=g) - 0.5) * 0.6
    c, s = torch.cos(yaw), torch.sin(yaw)
    R = torch.zeros(B, 3, 3)
    R[:, 0, 0], R[:, 0, 2], R[:, 1, 1], R[:, 2, 0], R[:, 2, 2] = c, s, 1.0, -s, c
    tz = 2 * FOCAL / (RES * scale)
    shift = (torch.rand(B, 1, 3, generator=g) - 0.5) * torch.tensor([0.1, 0.1, 0.05 * tz])
    return torch.einsum("bij,vj->bvi", R, vt) + torch.tensor([0.0, 0.0, tz]) + shift


def brute_force(vertices, faces, feats, sigma=1e-5, gamma=0.1, near=1.0, far=100.0, eps=1e-3, block=128):
    """SoftRas forward by every face against every pixel (float32), faces in blocks (online softmax)."""
    B = vertices.shape[0]
    ndc = 2.0 / RES
    ys, xs = torch.meshgrid(torch.arange(RES) + 0.5, torch.arange(RES) + 0.5, indexing="ij")
    p = torch.stack([xs, ys], -1).reshape(-1, 1, 2)
    thr = math.log(1 / 1e-4 - 1) * sigma / ndc**2
    outs, sils = [], []
    for b in range(B):
        v = vertices[b]
        uv = v[:, :2] / v[:, 2:] * FOCAL + RES / 2
        logS = torch.zeros(RES * RES)
        m = torch.full((RES * RES,), eps / gamma)
        Z = torch.ones(RES * RES)
        num = torch.zeros(RES * RES, feats.shape[1])
        for f0 in range(0, faces.shape[0], block):
            fb = faces[f0 : f0 + block]
            tri, tz = uv[fb], v[fb][..., 2]
            a, b_, c_ = tri[:, 0], tri[:, 1], tri[:, 2]

            def cross(x, y):
                return x[..., 0] * y[..., 1] - x[..., 1] * y[..., 0]

            det = cross(b_ - a, c_ - a)
            w = (
                torch.stack([cross(c_ - b_, p - b_), cross(a - c_, p - c_), cross(b_ - a, p - a)], -1)
                / det[:, None]
            )
            inside = (w > 0).all(-1)
            d2 = None
            for s0, s1 in ((a, b_), (b_, c_), (c_, a)):
                e = s1 - s0
                t = (((p - s0) * e).sum(-1) / (e * e).sum(-1)).clamp(0, 1)
                dk = ((p - s0 - t[..., None] * e) ** 2).sum(-1)
                d2 = dk if d2 is None else torch.minimum(d2, dk)
            keep = inside | (d2 < thr)
            x = torch.where(inside, d2, -d2) * ndc**2 / sigma
            logS += torch.where(keep, -torch.nn.functional.softplus(x), 0.0).sum(1)
            D = torch.where(keep, torch.sigmoid(x), 0.0)
            wc = w.clamp(0, 1)
            wc = wc / wc.sum(-1, keepdim=True)
            zp = 1.0 / (wc / tz[None]).sum(-1)
            zn = (far - zp) / (far - near)
            ok = keep & (zp >= near) & (zp <= far)
            logit = torch.where(ok, zn / gamma, -math.inf)
            m_new = torch.maximum(m, logit.amax(1))
            sc = torch.exp(m - m_new)
            e_ = D * torch.exp(logit - m_new[:, None])
            Z = Z * sc + e_.sum(1)
            num = num * sc[:, None] + e_ @ feats[f0 : f0 + block]
            m = m_new
        outs.append((num / Z[:, None]).t().reshape(-1, RES, RES))
        sils.append((1 - torch.exp(logS)).reshape(1, RES, RES))
    return torch.stack(outs), torch.stack(sils)


def pytorch3d_render(vertices, faces, feats, sigma=1e-5, gamma=0.1, near=1.0, far=100.0, faces_per_pixel=100):
    """PyTorch3D's rasteriser on the same camera (OpenCV intrinsics converted by
    ``cameras_from_opencv_projection``) and SoftRas's blend of all channels on its fragments (the formula of
    PyTorch3D's ``softmax_rgb_blend``, background 0). Returns ``(B, C, H, W)`` and ``(B, 1, H, W)``."""
    from pytorch3d.renderer import MeshRasterizer, RasterizationSettings
    from pytorch3d.structures import Meshes
    from pytorch3d.utils import cameras_from_opencv_projection

    B, dev = vertices.shape[0], vertices.device
    K = torch.tensor([[FOCAL, 0.0, RES / 2], [0.0, FOCAL, RES / 2], [0.0, 0.0, 1.0]], device=dev)
    cams = cameras_from_opencv_projection(
        R=torch.eye(3, device=dev).expand(B, 3, 3),
        tvec=torch.zeros(B, 3, device=dev),
        camera_matrix=K.expand(B, 3, 3),
        image_size=torch.tensor([[RES, RES]], device=dev).expand(B, 2),
    )
    settings = RasterizationSettings(
        image_size=RES,
        blur_radius=math.log(1 / 1e-4 - 1) * sigma,
        faces_per_pixel=faces_per_pixel,
        bin_size=0,
        perspective_correct=True,
    )
    frags = MeshRasterizer(cameras=cams, raster_settings=settings)(
        Meshes(verts=vertices, faces=faces[None].expand(B, -1, -1))
    )
    mask = frags.pix_to_face >= 0
    face_of = frags.pix_to_face.clamp(min=0) % faces.shape[0]
    colors = feats[face_of]  # (B, H, W, K, C)
    prob = torch.sigmoid(-frags.dists / sigma) * mask
    alpha = torch.prod(1.0 - prob, dim=-1)
    z_inv = (far - frags.zbuf) / (far - near) * mask
    z_inv_max = z_inv.max(dim=-1).values[..., None].clamp(min=1e-10)
    num = prob * torch.exp((z_inv - z_inv_max) / gamma)
    delta = torch.exp((1e-10 - z_inv_max) / gamma).clamp(min=1e-10)
    image = (num[..., None] * colors).sum(-2) / (num.sum(-1)[..., None] + delta)
    return image.permute(0, 3, 1, 2), (1.0 - alpha)[:, None]


def _reset_peak() -> None:
    """Reset the process's peak RSS to its current RSS (Linux >= 4.0; else the peak since the start)."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
    except OSError:
        pass


def _peak_mib() -> float:
    """Peak RSS (MiB) since the start or the last :func:`_reset_peak`."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _rss_mib() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def worker(args) -> None:
    """One configuration in this process; prints one JSON line."""
    from dsrbody.render.soft import SoftRasterSettings, soft_render

    torch.set_num_threads(args.threads)
    dev = torch.device(args.device)
    cuda = dev.type == "cuda"
    data = np.load(args.scene_file)
    verts = torch.tensor(data["v"], device=dev)
    faces = torch.tensor(data["f"], device=dev)
    feats = torch.tensor(data["feat"], device=dev)
    kw = dict(focal=FOCAL, principal_point=(RES / 2, RES / 2), image_size=(RES, RES))

    def dsr(backend: str) -> dict:
        return {"settings": SoftRasterSettings(sigma=1e-5, gamma=0.1, backend=backend)}

    B = verts.shape[0]
    lib = _rss_mib()
    # numba, LLVM and the kernels, once per process: reported on their own
    if args.method in ("fused", "alternating"):
        tri = torch.tensor(
            [[[0.0, 0.0, 2.0], [1.0, 0.0, 2.0], [0.0, 1.0, 2.0]]], device=dev, requires_grad=True
        )
        one = torch.ones(1, 1, device=dev)
        tri_faces = torch.tensor([[0, 1, 2]], device=dev)
        I, S = soft_render(tri, tri_faces, face_features=one, **kw, **dsr("fused"))
        (I.sum() + S.sum()).backward()
    base = _rss_mib()
    lib = base - lib
    _reset_peak()

    def run(grad: bool, method: str = args.method):
        v = verts.clone().requires_grad_(grad)
        ff = feats.clone().requires_grad_(grad and not args.constant_features)
        if method == "brute":
            with torch.no_grad():
                return brute_force(v, faces, ff)
        ctx = torch.enable_grad() if grad else torch.no_grad()
        with ctx:
            if method in ("fused", "reference"):
                I, S = soft_render(v, faces, face_features=ff, **kw, **dsr(method))
                loss = (I * I).sum() + S.sum()
            elif method == "pytorch3d":
                I, S = pytorch3d_render(v, faces, ff, faces_per_pixel=args.p3d_faces)
                loss = (I * I).sum() + S.sum()
            else:  # nine single-channel calls of the reference path
                loss = 0.0
                for c in range(ff.shape[1]):
                    I, S = soft_render(v, faces, face_features=ff[:, c : c + 1], **kw, **dsr("reference"))
                    loss = loss + (I * I).sum() + S.sum()
            if grad:
                loss.backward()
        return I, S

    if args.method == "alternating":
        print(json.dumps(alternate(run, B, args.repeats)))
        return
    result = {"method": args.method, "B": B}
    modes = [False] if args.method == "brute" else [False, True]
    for grad in modes:
        if args.method != "brute":
            run(grad)  # warm-up
        times, cpu = [], []
        for _ in range(args.repeats):
            if cuda:
                torch.cuda.synchronize(dev)
            t0, c0 = time.perf_counter(), time.process_time()
            last = run(grad)
            if cuda:
                torch.cuda.synchronize(dev)
            times.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
        key = "fwdbwd" if grad else "fwd"
        result[f"{key}_ms"] = 1e3 * float(np.median(times)) / B
        result[f"{key}_cpu_ms"] = 1e3 * float(np.median(cpu)) / B
    if cuda:
        result["peak_mib"] = torch.cuda.max_memory_allocated(dev) / 2**20
    else:
        result["peak_mib"] = _peak_mib() - base
        result["lib_mib"] = lib
    if args.profile and args.method == "fused":
        result["profile"] = profile_fused(run, B, args.repeats)
    if args.method == "brute":  # the two implementations agree
        Ib, Sb = last
        with torch.no_grad():
            Io, So = soft_render(verts, faces, face_features=feats, **kw, **dsr("reference"))
        result["max_abs_diff"] = max(float((Ib - Io).abs().max()), float((Sb - So).abs().max()))
        if cuda:
            result["max_abs_diff_cpu"] = result.pop("max_abs_diff")
    if args.method == "pytorch3d":  # agreement with the exact render (PyTorch3D keeps K faces per pixel)
        Ip, Sp = (t.detach() for t in last)
        with torch.no_grad():
            Io, So = soft_render(verts, faces, face_features=feats, **kw, **dsr("reference"))
        result["max_abs_diff"] = max(float((Ip - Io).abs().max()), float((Sp - So).abs().max()))
    if args.method in ("fused", "reference"):
        with torch.no_grad():
            _, S = soft_render(verts, faces, face_features=feats, **kw, **dsr(args.method))
        result["coverage"] = float((S > 0.5).float().mean())
        result["pairs_per_image"] = count_pairs(verts, faces) / B
    print(json.dumps(result))


def profile_fused(run, B: int, repeats: int) -> dict:
    """CPU milliseconds per image of each fused kernel and of the rest of a forward+backward call (the
    glue, the loss and its backward), with process-CPU timers around the kernels (they may run in numba's
    worker thread); medians over ``repeats`` calls, after the timed ones. ``loss``: the benchmark's loss
    and its backward timed alone on leaf tensors like the outputs; ``glue``: ``rest`` less ``loss`` (the
    renderer's own work outside its kernels: argument checks, projection, autograd)."""
    from dsrbody.render import fused

    kernels = fused._load()
    names = ["footprints", "forward", "pixel_stats", "backward", "scatter_corners"]
    acc = dict.fromkeys(names, 0.0)
    original = {n: getattr(kernels, n) for n in names}

    def timed(name):
        def call(*a):
            c0 = time.process_time()
            out = original[name](*a)
            acc[name] += time.process_time() - c0
            return out

        return call

    rows = []
    try:
        for n in names:
            setattr(kernels, n, timed(n))
        for _ in range(repeats):
            for n in names:
                acc[n] = 0.0
            c0 = time.process_time()
            run(True, "fused")
            total = time.process_time() - c0
            rows.append([acc[n] for n in names] + [total - sum(acc.values()), total])
    finally:
        for n in names:
            setattr(kernels, n, original[n])
    med = 1e3 * np.median(np.array(rows), 0) / B
    out = dict(zip([*names, "rest", "total"], (float(x) for x in med)))
    # the benchmark's loss on its own: the same expression, forward and backward, on leaf tensors of the
    # outputs' shapes and strides (fresh per call, as the renderer's); "glue" is what the rest leaves
    I, S = run(False, "fused")
    loss_cpu = []
    for _ in range(repeats):
        Il = torch.empty_like(I).copy_(I).requires_grad_(True)
        Sl = S.clone().requires_grad_(True)
        c0 = time.process_time()
        ((Il * Il).sum() + Sl.sum()).backward()
        loss_cpu.append(time.process_time() - c0)
    out["loss"] = 1e3 * float(np.median(loss_cpu)) / B
    out["glue"] = out["rest"] - out["loss"]
    return out


def alternate(run, B: int, repeats: int) -> dict:
    """``fused`` and ``reference`` in this one process, alternating call by call (after a warm-up of
    each): medians of wall and CPU milliseconds per image, and the median of the per-repeat ratios
    reference / fused, which a machine shared with other work disturbs least."""
    out: dict = {"method": "alternating", "B": B}
    for grad in (False, True):
        key = "fwdbwd" if grad else "fwd"
        t: dict = {"fused": [], "reference": []}
        c: dict = {"fused": [], "reference": []}
        for m in t:
            run(grad, m)
        for _ in range(repeats):
            for m in t:
                t0, c0 = time.perf_counter(), time.process_time()
                run(grad, m)
                t[m].append(time.perf_counter() - t0)
                c[m].append(time.process_time() - c0)
        for m in t:
            out[f"{m}_{key}_ms"] = 1e3 * float(np.median(t[m])) / B
            out[f"{m}_{key}_cpu_ms"] = 1e3 * float(np.median(c[m])) / B
        out[f"ratio_{key}"] = float(np.median(np.array(t["reference"]) / np.array(t["fused"])))
        out[f"ratio_{key}_cpu"] = float(np.median(np.array(c["reference"]) / np.array(c["fused"])))
    return out


def _commit_fused(commit: str):
    """``dsrbody.render.fused`` and its kernel module as of git ``commit``, imported under other names from
    a folder of their own (kept, so that numba's cache of their kernels survives from run to run)."""
    import importlib

    root = Path(__file__).resolve().parent.parent
    sha = subprocess.check_output(["git", "rev-parse", "--short", commit], cwd=root, text=True).strip()
    folder = Path(tempfile.gettempdir()) / f"dsrbody_ab_{sha}"
    folder.mkdir(exist_ok=True)
    for name in ("fused", "_fused_kernels"):
        src = subprocess.check_output(
            ["git", "show", f"{sha}:src/dsrbody/render/{name}.py"], cwd=root, text=True
        )
        src = src.replace(
            "from dsrbody.render import _fused_kernels", f"import _ab_{sha}_kernels as _fused_kernels"
        )
        path = folder / (f"_ab_{sha}_kernels.py" if name != "fused" else f"_ab_{sha}_fused.py")
        if not path.is_file() or path.read_text() != src:
            path.write_text(src)
    sys.path.insert(0, str(folder))
    return sha, importlib.import_module(f"_ab_{sha}_fused")


def ab_commit(args) -> None:
    """``--ab-commit``: the fused path of this working tree against that of an earlier commit, in this one
    process, alternating call by call (order swapped every repeat), forward+backward with the benchmark's
    loss; CPU ms per image of the whole call and of the kernels alone (process-CPU timers around every
    kernel call), medians, and the median of the per-repeat ratios; the outputs and vertex gradients of the
    two compared."""
    import numba

    from dsrbody.render import fused
    from dsrbody.render.soft import SoftRasterSettings, soft_render

    torch.set_num_threads(args.threads)
    sha, old = _commit_fused(args.ab_commit)
    v0, f0 = build_meshes(args.mesh_cache)[args.mesh[0]]
    B = args.batch[0]
    verts = scene(v0, B, args.scale)
    faces = torch.tensor(f0)
    feats = torch.rand(len(f0), C, generator=torch.Generator().manual_seed(1))
    kw = dict(focal=FOCAL, principal_point=(RES / 2, RES / 2), image_size=(RES, RES))
    settings = SoftRasterSettings(sigma=1e-5, gamma=0.1, backend="fused")
    new_render = fused.fused_render
    variants = {"new": (fused, new_render), sha: (old, old.fused_render)}
    kern_cpu = {}

    def wrap(mod):
        k = mod._load()
        for n in dir(k):
            fn = getattr(k, n)
            if n.startswith("_") or not isinstance(fn, numba.core.dispatcher.Dispatcher):
                continue

            def call(*a, _fn=fn, _n=n):
                c0 = time.process_time()
                out = _fn(*a)
                kern_cpu[_n] = kern_cpu.get(_n, 0.0) + time.process_time() - c0
                return out

            setattr(k, n, call)

    def run(name):
        mod, render = variants[name]
        fused.fused_render = render  # soft_render imports it at each call
        try:
            v = verts.clone().requires_grad_(True)
            I, S = soft_render(v, faces, face_features=feats, **kw, settings=settings)
            ((I * I).sum() + S.sum()).backward()
        finally:
            fused.fused_render = new_render
        return I.detach(), S.detach(), v.grad

    outs = {name: run(name) for name in variants}  # compile / warm up, and compare
    diff = [
        float((a - b).abs().max()) / max(float(b.abs().max()), 1e-30) for a, b in zip(outs["new"], outs[sha])
    ]
    for mod, _ in variants.values():
        wrap(mod)
    tot: dict = {n: [] for n in variants}
    ker: dict = {n: [] for n in variants}
    each: dict = {n: {} for n in variants}
    loads = [os.getloadavg()[0]]
    for r in range(args.repeats):
        for name in list(variants)[:: 1 if r % 2 == 0 else -1]:
            kern_cpu.clear()
            c0 = time.process_time()
            run(name)
            tot[name].append(1e3 * (time.process_time() - c0) / B)
            ker[name].append(1e3 * sum(kern_cpu.values()) / B)
            for k, t in kern_cpu.items():
                each[name].setdefault(k, []).append(1e3 * t / B)
        loads.append(os.getloadavg()[0])
    print(
        f"{args.mesh[0]}, B={B}, threads={args.threads}, {args.repeats} alternating repeats; "
        f"load average (1 min) {min(loads):.1f}-{max(loads):.1f}"
    )
    print(
        f"max |new - {sha}| / max |{sha}|: image {diff[0]:.1e}, silhouette {diff[1]:.1e}, "
        f"vertex gradient {diff[2]:.1e}"
    )
    for name in variants:
        print(
            f"  {name:>8}: forward+backward CPU ms per image {np.median(tot[name]):.2f} "
            f"(kernels {np.median(ker[name]):.2f}: "
            + ", ".join(f"{k} {np.median(t):.2f}" for k, t in each[name].items())
            + ")"
        )
    rt = np.median(np.array(tot[sha]) / np.array(tot["new"]))
    rk = np.median(np.array(ker[sha]) / np.array(ker["new"]))
    per = {
        k: np.median(np.array(each[sha][k]) / np.array(each["new"][k]))
        for k in ("forward", "backward")
        if k in each[sha] and k in each["new"]
    }
    print(
        f"  {sha} / new, median of the per-repeat ratios: whole call {rt:.3f}x, kernels {rk:.3f}x"
        + "".join(f", {k} kernel {r:.3f}x" for k, r in per.items())
    )


def count_pairs(verts, faces, sigma=1e-5) -> int:
    """Kept face-pixel pairs (inside, or outside with D >= 1e-4)."""
    from dsrbody.render import pairs
    from dsrbody.render.soft import coverage_threshold

    thr = coverage_threshold(sigma) / (2.0 / RES) ** 2
    fc = pairs.prepare_faces(verts, faces, FOCAL, (RES / 2, RES / 2), RES, RES, math.sqrt(thr), sort=True)
    counts, base, bw = fc.counts, fc.base, fc.bw
    tT = pairs.localize_(fc.table.detach().t().contiguous(), fc.c0, fc.r0)
    total = 0
    for f0, f1, n in pairs.chunk_ranges(counts, 1 << 20):
        fid, _, coff, roff = pairs.enumerate_pairs(f0, f1, n, counts, base, bw, RES)
        w, d2, _ = pairs.barycentric_distance(pairs.gather_rows(tT, fid), coff.float(), roff.float())
        total += int(((w.amin(0) > 0) | (d2 < thr)).sum())
    return total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mesh", nargs="+", default=["body14k", "anny27k"])
    ap.add_argument("--batch", type=int, nargs="+", default=[1, 8, 32])
    ap.add_argument("--scale", type=float, default=0.9, help="weak-perspective scale s (body size)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--no-brute", action="store_true")
    ap.add_argument("--brute-mesh", nargs="+", default=["body14k"], help="meshes to run brute force on (B=1)")
    ap.add_argument("--no-nine", action="store_true")
    ap.add_argument("--no-pytorch3d", action="store_true", help="skip PyTorch3D even when it is importable")
    ap.add_argument("--p3d-faces", type=int, default=100, help="PyTorch3D: faces kept per pixel")
    ap.add_argument("--p3d-max-batch", type=int, default=1, help="PyTorch3D: largest batch to run it on")
    ap.add_argument(
        "--constant-features",
        action="store_true",
        help="no gradient w.r.t. the features (the DSR losses' case)",
    )
    ap.add_argument(
        "--same-process",
        action="store_true",
        help="also time fused and reference alternately in one process (median of per-repeat ratios)",
    )
    ap.add_argument(
        "--profile",
        action="store_true",
        help="fused: also report the CPU time of each kernel and of the rest of the call",
    )
    ap.add_argument(
        "--thp",
        action="store_true",
        help="run the workers with THP_MEM_ALLOC_ENABLE=1 (torch's allocator asks for huge pages)",
    )
    ap.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    ap.add_argument("--mesh-cache", help="an .npz of the meshes: read when it exists, else written")
    ap.add_argument(
        "--ab-commit",
        help="time this tree's fused path against that of a git commit, alternating in one process "
        "(first --mesh and --batch; forward+backward, constant features)",
    )
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--method", help=argparse.SUPPRESS)
    ap.add_argument("--scene-file", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker(args)
        return
    if args.ab_commit:
        ab_commit(args)
        return
    meshes = build_meshes(args.mesh_cache)
    where = f"threads={args.threads}"
    cuda = args.device.startswith("cuda")
    if cuda:
        where = f"device {torch.cuda.get_device_name(torch.device(args.device))}"
        args.no_brute = True  # the brute force is a CPU reference
    from dsrbody.render import fused, fused_triton

    kernels = fused_triton if cuda else fused
    have_fused = kernels.available()
    if not have_fused:
        print(f"note: fused kernels skipped ({kernels.unavailable_reason()})")
    try:
        import pytorch3d  # noqa: F401

        have_p3d = not args.no_pytorch3d
    except ImportError as err:
        have_p3d = False
        if not args.no_pytorch3d:
            print(f"note: PyTorch3D column skipped (pytorch3d not importable: {err})")
    print(
        f"soft rasteriser, 224x224, C={C}, sigma 1e-5, gamma 0.1, scale s={args.scale}, "
        f"{where}, constant features: {args.constant_features}, torch {torch.__version__}"
    )
    header = f"{'mesh':>8} {'faces':>6} {'B':>3} {'method':>9} {'fwd ms/img':>10} {'f+b ms/img':>10}"
    header += f" {'peak MiB':>9} {'fwd cpu':>8} {'f+b cpu':>8} {'lib MiB':>8}"
    rows = []
    env = dict(os.environ, THP_MEM_ALLOC_ENABLE="1") if args.thp else None
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.mesh:
            v, f = meshes[name]
            feat = torch.rand(len(f), C, generator=torch.Generator().manual_seed(1)).numpy()
            for B in args.batch:
                path = Path(tmp) / f"{name}_{B}.npz"
                np.savez(path, v=scene(v, B, args.scale).numpy(), f=f, feat=feat)
                methods = (["fused"] if have_fused else []) + ["reference"]
                methods += [] if args.no_nine else ["9x1ch"]
                methods += [] if (args.no_brute or B != 1 or name not in args.brute_mesh) else ["brute"]
                methods += ["pytorch3d"] if (have_p3d and B <= args.p3d_max_batch) else []
                methods += ["alternating"] if (args.same_process and have_fused) else []
                res = {}
                for m in methods:
                    cmd = [sys.executable, __file__, "--worker", "--method", m, "--scene-file", str(path)]
                    cmd += [
                        "--repeats",
                        str(args.repeats if m != "brute" else 1),
                        "--threads",
                        str(args.threads),
                        "--device",
                        args.device,
                    ]
                    cmd += ["--constant-features"] if args.constant_features else []
                    cmd += ["--profile"] if args.profile else []
                    cmd += ["--p3d-faces", str(args.p3d_faces)]
                    out = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env)
                    if out.returncode != 0:
                        print(out.stderr[-2000:], file=sys.stderr)
                        continue
                    res[m] = json.loads(out.stdout.strip().splitlines()[-1])
                alt = res.pop("alternating", None)
                o = res.get("fused", res.get("reference", {}))
                print(
                    f"\n{name}: {len(f)} faces, B={B}: coverage {o.get('coverage', float('nan')):.3f}, "
                    f"{o.get('pairs_per_image', 0) / 1e3:.0f}k face-pixel pairs per image, "
                    f"load average {os.getloadavg()[0]:.1f}"
                )
                print(header)
                for m, r in res.items():
                    print(
                        f"{name:>8} {len(f):>6} {B:>3} {m:>9} {r.get('fwd_ms', float('nan')):>10.1f} "
                        f"{r.get('fwdbwd_ms', float('nan')):>10.1f} {r['peak_mib']:>9.0f} "
                        f"{r.get('fwd_cpu_ms', math.nan):>8.1f} {r.get('fwdbwd_cpu_ms', math.nan):>8.1f}"
                        + (f" {r['lib_mib']:>8.0f}" if m == "fused" and "lib_mib" in r else "")
                    )
                    rows.append((name, B, m, r))
                base = "fused" if "fused" in res else "reference"
                for m in ("reference", "9x1ch", "pytorch3d"):
                    if m == base or m not in res or base not in res:
                        continue
                    ratio = f"  ratio {m} / {base}: forward {res[m]['fwd_ms'] / res[base]['fwd_ms']:.2f}x"
                    if "fwdbwd_ms" in res[m]:
                        ratio += f", forward+backward {res[m]['fwdbwd_ms'] / res[base]['fwdbwd_ms']:.2f}x"
                        ratio += f" (CPU time {res[m]['fwdbwd_cpu_ms'] / res[base]['fwdbwd_cpu_ms']:.2f}x)"
                    if m == "pytorch3d":
                        ratio += f"; max |image difference| to the exact render {res[m]['max_abs_diff']:.1e}"
                    print(ratio)
                if "brute" in res:
                    brute = res["brute"]["fwd_ms"] / res[base]["fwd_ms"]
                    print(
                        f"  ratio brute / {base} (forward): {brute:.1f}x "
                        f"(max |difference| of the images: {res['brute']['max_abs_diff']:.1e})"
                    )
                prof = res.get("fused", {}).get("profile")
                if prof:
                    print(
                        "  fused, CPU ms per image of a forward+backward call: "
                        + ", ".join(f"{k} {v:.2f}" for k, v in prof.items())
                    )
                if alt:
                    a = alt
                    print(
                        f"  same process, alternating ({args.repeats} repeats): fused f+b "
                        f"{a['fused_fwdbwd_ms']:.1f} ms/img (CPU {a['fused_fwdbwd_cpu_ms']:.1f}), reference "
                        f"{a['reference_fwdbwd_ms']:.1f} (CPU {a['reference_fwdbwd_cpu_ms']:.1f}); "
                        f"reference / fused, median of the per-repeat ratios: forward {a['ratio_fwd']:.2f}x "
                        f"(CPU {a['ratio_fwd_cpu']:.2f}x), forward+backward {a['ratio_fwdbwd']:.2f}x (CPU "
                        f"{a['ratio_fwdbwd_cpu']:.2f}x)"
                    )
                    rows.append((name, B, "alternating", alt))


if __name__ == "__main__":
    main()
