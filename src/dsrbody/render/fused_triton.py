"""The fused soft rasteriser on CUDA: the pair loop of :mod:`dsrbody.render.soft` as Triton kernels.

Same formulation, settings and results as the reference path (``_SoftRasterize`` in
:mod:`dsrbody.render.soft`, which the tests hold this one against) for per-face features (the DSR losses'
case; per-vertex features go through the reference path). Where the reference path makes some twenty
passes over a list of face-pixel pairs in memory, here no pair is ever stored:

1. **binning** (PyTorch, no gradient): the faces' footprints (:func:`dsrbody.render.pairs.prepare_faces`)
   are cut into screen tiles of ``TILE_H x TILE_W`` pixels; each ``(sample, tile)`` gets the list of faces
   whose footprint meets it (sorted by tile, face order kept within a tile);
2. **forward** (:func:`~dsrbody.render._triton_kernels.forward_kernel`, one program per tile): every
   face of the tile's list against all its pixels at once, accumulated per pixel in registers (online
   softmax for small gamma), then ``I``, ``S`` and three statistics per pixel stored;
3. **backward** (:func:`~dsrbody.render._triton_kernels.backward_kernel`, one program per tile): each
   pair recomputed, the reference path's hand-derived gradients applied, summed over the tile and added
   to the face's row of the face-table gradient (one vector atomic add per face and tile), from where
   autograd carries them to the vertices as on the reference path.

Memory: the per-pixel outputs and statistics, ``B H W (C + 3)`` numbers, and the bins (two integers per
face-tile pair); no per-pair storage. Atomic adds make the order of the per-face sums, and so the last
bits of the gradients, vary from run to run.

The kernels compile on first use (Triton caches them on disk), so there is no build step at install.
Triton comes with PyTorch's CUDA builds; where it cannot be imported (or a first call fails) the
``"auto"`` backend falls back to the reference path on CUDA tensors and says so once. On CPU tensors the
same kernels run under Triton's interpreter when ``TRITON_INTERPRET=1`` is set before Triton is first
imported (slow, for tests only: how this path is checked on a machine without a GPU;
tests/render/test_render_fused_triton.py runs them in a subprocess).
"""

from __future__ import annotations

import logging
import math
import os
from types import ModuleType

import torch

from dsrbody.render.pairs import prepare_faces

__all__ = [
    "available",
    "ready",
    "interpreted",
    "unavailable_reason",
    "notice_fallback",
    "triton_render",
    "bin_faces",
    "TILE_H",
    "TILE_W",
]

log = logging.getLogger(__name__)

#: Tile of one program (pixels): 8 rows of 16 columns, 128 pixels per face visited.
TILE_H = 8
TILE_W = 16

_MODULE: ModuleType | None = None
_REASON: str | None = None
_NOTICED = False
#: (device, dtype) -> whether the kernels ran there (:func:`ready`).
_CHECKED: dict[tuple[str, torch.dtype], bool] = {}


def _load() -> ModuleType | None:
    """The kernel module (None when Triton cannot be imported). Its kernels are compiled, or
    interpreted when ``TRITON_INTERPRET=1`` was set before Triton was first imported (Triton decides
    when it defines a kernel, its own library functions included)."""
    global _MODULE, _REASON
    if _MODULE is None and _REASON is None:
        try:
            from dsrbody.render import _triton_kernels

            _MODULE = _triton_kernels
        except Exception as err:  # ImportError, or a Triton that does not fit this torch
            _REASON = f"{type(err).__name__}: {err}".splitlines()[0]
    return _MODULE


def interpreted() -> bool:
    """Whether the kernels run under Triton's interpreter (``TRITON_INTERPRET=1``)."""
    if _load() is None:
        return False
    try:
        from triton import knobs  # Triton >= 3.4
    except ImportError:
        return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")
    return bool(knobs.runtime.interpret)


def available() -> bool:
    """Whether Triton imports (the kernels themselves compile on first use)."""
    return _load() is not None


def ready(device: torch.device, dtype: torch.dtype = torch.float32) -> bool:
    """Whether the kernels run on ``device`` for ``dtype``: Triton imports (and, for a CPU device, runs
    interpreted), and a one-triangle render, forward and backward, compiles and gives finite values.
    Checked once per device and dtype; a failure is kept as :func:`unavailable_reason`, so that
    ``"auto"`` falls back instead of failing in the middle of a training step."""
    global _REASON
    device = torch.device(device)
    if _load() is None or (device.type != "cuda" and not interpreted()):
        return False
    key = (str(device), dtype)
    if key not in _CHECKED:
        try:
            _smoke(device, dtype)
            _CHECKED[key] = True
        except Exception as err:  # a Triton or driver that cannot compile or launch the kernels
            _REASON = f"{dtype} kernels failed on {device}: {type(err).__name__}: {err}".splitlines()[0]
            _CHECKED[key] = False
    return _CHECKED[key]


def _smoke(device: torch.device, dtype: torch.dtype) -> None:
    """One triangle on an 8 x 8 image through :func:`triton_render`, forward and backward, in each
    compiled variant a render can need: the plain softmax with a feature gradient, and the per-pixel
    maximum of small gamma with constant features (the DSR losses' case)."""
    from dsrbody.render.soft import SoftRasterSettings, coverage_threshold

    scale = (2.0 / 8) ** 2
    tri = [[[-0.5, -0.5, 2.0], [0.5, -0.5, 2.0], [0.0, 0.5, 2.0]]]
    faces = torch.tensor([[0, 1, 2]], device=device)
    ok = torch.ones(1, dtype=torch.bool, device=device)
    for gamma, feat_grad in ((1e-1, True), (1e-3, False)):
        raster = SoftRasterSettings(sigma=1e-2, gamma=gamma)
        v = torch.tensor(tri, dtype=dtype, device=device, requires_grad=True)
        feat = torch.ones(1, 3, dtype=dtype, device=device, requires_grad=feat_grad)
        with torch.enable_grad():
            I, S = triton_render(
                v, faces, feat, ok, 8.0, (4.0, 4.0), 8, 8, raster, scale, coverage_threshold(1e-2) / scale,
                gamma < 1.0 / 80.0,
            )  # fmt: skip
            (I.sum() + S.sum()).backward()
        if not (torch.isfinite(I).all() and torch.isfinite(v.grad).all() and float(S.max()) > 0.5):
            raise RuntimeError(f"the one-triangle check gave wrong values (gamma {gamma})")


def unavailable_reason() -> str | None:
    """Why :func:`available` is False (or a first call failed), else None."""
    return _REASON


def notice_fallback(reason: str | None = None) -> None:
    """Log, once per process, that the ``"auto"`` backend fell back to the reference path on CUDA."""
    global _NOTICED, _REASON
    if reason is not None:
        _REASON = reason
    if not _NOTICED:
        _NOTICED = True
        log.warning(
            "dsrbody soft rasteriser: Triton kernels unavailable (%s); using the pure-PyTorch path on CUDA",
            _REASON or "unknown",
        )


def bin_faces(
    c0: torch.Tensor, r0: torch.Tensor, bw: torch.Tensor, bh: torch.Tensor, F: int, B: int, H: int, W: int
) -> tuple[torch.Tensor, torch.Tensor, int, int]:
    """The faces of each screen tile.

    Args:
        c0, r0, bw, bh: ``(N,)`` long footprints (pixels; ``bw = bh = 0`` for a face not drawn), face
            ``i`` of sample ``i // F``.
        B, H, W: batch and image size.

    Returns:
        ``face_list (P,)`` int32 face indices sorted by tile (face order within a tile), ``tile_ptr (B nT +
        1,)`` int32 (tile ``t``'s faces are ``face_list[tile_ptr[t]:tile_ptr[t + 1]]``), and the tile grid
        ``nTx, nTy``.
    """
    dev = c0.device
    nTx, nTy = -(-W // TILE_W), -(-H // TILE_H)
    drawn = (bw > 0) & (bh > 0)
    tc0 = torch.div(c0, TILE_W, rounding_mode="floor")
    tr0 = torch.div(r0, TILE_H, rounding_mode="floor")
    ntx = torch.where(drawn, torch.div(c0 + bw - 1, TILE_W, rounding_mode="floor") - tc0 + 1, 0)
    nty = torch.where(drawn, torch.div(r0 + bh - 1, TILE_H, rounding_mode="floor") - tr0 + 1, 0)
    n = ntx * nty
    total = int(n.sum())
    face = torch.repeat_interleave(torch.arange(c0.shape[0], device=dev), n, output_size=total)
    k = torch.arange(total, device=dev) - (n.cumsum(0) - n).index_select(0, face)
    w = ntx.index_select(0, face)
    ty = tr0.index_select(0, face) + torch.div(k, w, rounding_mode="floor")
    tx = tc0.index_select(0, face) + k % w
    b = torch.div(face, max(F, 1), rounding_mode="floor")
    tile = (b * nTy + ty) * nTx + tx
    order = torch.sort(tile, stable=True).indices
    face_list = face.index_select(0, order).to(torch.int32)
    counts = torch.bincount(tile, minlength=B * nTx * nTy)
    tile_ptr = torch.zeros(B * nTx * nTy + 1, dtype=torch.int64, device=dev)
    tile_ptr[1:] = counts.cumsum(0)
    return face_list, tile_ptr.to(torch.int32), nTx, nTy


class _Call:
    """Non-tensor state of one render call."""

    def __init__(self, **kw):
        self.__dict__.update(kw)


def _on(device: torch.device):
    """``torch.cuda.device(device)`` for a CUDA device (the tensors' GPU, not the current one), else a
    context that does nothing (the interpreter)."""
    import contextlib

    return torch.cuda.device(device) if device.type == "cuda" else contextlib.nullcontext()


def _params(cfg: _Call, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """The kernels' numbers (``_triton_kernels._params``) as a tensor of the render's dtype."""
    r = cfg.raster
    values = [cfg.thr_px, cfg.k_sig, r.near, r.far, r.gamma, r.eps, 1.0 / (r.far - r.near)]
    return torch.tensor(values, dtype=dtype, device=device)


class _TritonRasterize(torch.autograd.Function):
    """``(table (N, 19), feat (R, C)) -> (I (B H W, C), S (B H W,))`` through the Triton kernels."""

    @staticmethod
    def forward(ctx, table: torch.Tensor, feat: torch.Tensor, cfg: _Call):  # noqa: D102
        k = cfg.kernels
        table = table.contiguous()
        feat = feat.contiguous()
        n_pix = cfg.B * cfg.H * cfg.W
        dtype, dev = table.dtype, table.device
        I = torch.empty(n_pix, cfg.C, dtype=dtype, device=dev)
        L = torch.empty(n_pix, dtype=dtype, device=dev)
        Z = torch.empty(n_pix, dtype=dtype, device=dev)
        m = torch.empty(n_pix if cfg.per_pixel_max else 1, dtype=torch.float64, device=dev)
        grid = (cfg.B * cfg.nTx * cfg.nTy,)
        with _on(dev):  # Triton launches on the current CUDA device
            k.forward_kernel[grid](
                table, feat, feat.shape[0], cfg.foot, cfg.face_list, cfg.tile_ptr, I, L, Z, m,
                _params(cfg, dtype, dev), cfg.H, cfg.W, cfg.nTx, cfg.nTy, cfg.C,
                TH=TILE_H, TW=TILE_W, CP=cfg.CP, PPM=cfg.per_pixel_max,
            )  # fmt: skip
        S = 1.0 - torch.exp(L)
        ctx.cfg = cfg
        ctx.save_for_backward(table, feat, I, L, Z, m)
        return I, S

    @staticmethod
    def backward(ctx, gI: torch.Tensor, gS: torch.Tensor):  # noqa: D102
        cfg = ctx.cfg
        k = cfg.kernels
        table, feat, I, L, Z, m = ctx.saved_tensors
        gI = gI.contiguous() if gI is not None else torch.zeros_like(I)
        a = (gS * torch.exp(L)).contiguous() if gS is not None else torch.zeros_like(L)
        q = torch.linalg.vecdot(gI, I).contiguous()
        invZ = 1.0 / Z
        g_tab = torch.zeros_like(table)
        feat_grad = bool(ctx.needs_input_grad[1])
        g_feat = torch.zeros_like(feat) if feat_grad else feat.new_zeros(1)
        grid = (cfg.B * cfg.nTx * cfg.nTy,)
        with _on(table.device):
            k.backward_kernel[grid](
                table, feat, feat.shape[0], cfg.foot, cfg.face_list, cfg.tile_ptr, a, q, invZ, m, gI, g_tab,
                g_feat, _params(cfg, table.dtype, table.device), cfg.H, cfg.W, cfg.nTx, cfg.nTy, cfg.C,
                TH=TILE_H, TW=TILE_W, CP=cfg.CP, PPM=cfg.per_pixel_max, FEAT_GRAD=feat_grad,
            )  # fmt: skip
        return g_tab, (g_feat if feat_grad else None), None


def triton_render(
    vertices: torch.Tensor,
    faces: torch.Tensor,
    feat: torch.Tensor,
    ok: torch.Tensor,
    focal: float | torch.Tensor,
    principal_point: float | torch.Tensor,
    H: int,
    W: int,
    raster,
    dist_scale: float,
    thr_px: float,
    per_pixel_max: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The soft render through the Triton kernels (called by :func:`dsrbody.render.soft.soft_render`,
    which validates the arguments).

    Args:
        vertices: ``(B, V, 3)`` finite camera-frame vertices (metres).
        faces: ``(F, 3)`` long.
        feat: ``(F, C)`` per-face features shared by the batch, or ``(B F, C)`` per sample.
        ok: ``(B,)`` bool, samples to draw (the others render empty).
        raster: the :class:`~dsrbody.render.soft.SoftRasterSettings`.
        dist_scale: ``(2 / max(H, W))^2``, pixel^2 to NDC^2. thr_px: the keep threshold on the squared
            distance, pixel^2. per_pixel_max: stabilise the depth softmax per pixel (small gamma).

    Returns:
        ``I (B H W, C)`` and ``S (B H W,)`` in the dtype of ``vertices``.

    Raises:
        RuntimeError: Triton cannot be imported, or CPU tensors without the interpreter.
    """
    kernels = _load()
    if kernels is None:
        raise RuntimeError(f"the Triton soft rasteriser needs triton ({unavailable_reason()})")
    if vertices.device.type != "cuda" and not interpreted():
        raise RuntimeError(
            "the Triton soft rasteriser runs CUDA tensors, or CPU tensors under Triton's interpreter "
            "(TRITON_INTERPRET=1 set before Python starts)"
        )
    if feat.dim() != 2:
        raise ValueError(f"triton_render takes per-face features (R, C), got {tuple(feat.shape)}")
    B = vertices.shape[0]
    F = faces.shape[0]
    C = feat.shape[1]
    fc = prepare_faces(vertices, faces, focal, principal_point, H, W, math.sqrt(thr_px), sort=False)
    with torch.no_grad():
        drawn = ok.to(fc.bw.device).repeat_interleave(F)
        bw, bh = fc.bw * drawn, fc.bh * drawn
        face_list, tile_ptr, nTx, nTy = bin_faces(fc.c0, fc.r0, bw, bh, F, B, H, W)
        foot = torch.stack([fc.c0, fc.r0, bw, bh], 1).to(torch.int32).contiguous()
    cfg = _Call(
        kernels=kernels, raster=raster, B=B, H=H, W=W, C=C, CP=max(1, 1 << max(C - 1, 0).bit_length()),
        thr_px=float(thr_px), k_sig=float(dist_scale / raster.sigma), per_pixel_max=bool(per_pixel_max),
        foot=foot, face_list=face_list, tile_ptr=tile_ptr, nTx=nTx, nTy=nTy,
    )  # fmt: skip
    return _TritonRasterize.apply(fc.table, feat.to(vertices.dtype), cfg)
