"""The fused soft rasteriser: the pair loop of :mod:`dsrbody.render.soft` as compiled CPU kernels.

Same formulation, settings and results as the reference path (``_SoftRasterize`` in
:mod:`dsrbody.render.soft`, which stays the implementation the tests hold this one against), but every
face-pixel pair is visited twice in all instead of by some twenty vectorised passes:

- **forward** (parallel over sample x row-band tasks, so that no two threads write one pixel): for each
  face, every pixel of its footprint: barycentrics, segment distances, the keep test, coverage, the
  silhouette product, the depth softmax term and all C feature channels, accumulated per pixel;
- **backward** (parallel over faces, each face writing only its own gradient): the same enumeration
  and geometry recomputed, the hand-derived gradients of ``_SoftRasterize`` applied per pair from
  per-pixel statistics (``gS (1 - S)``, ``gI . I``, ``1 / Z``, the softmax shift) and summed per face,
  then carried from the face table to the projected corners and scattered to the vertices.

Saved for the backward pass: ``B H W`` per-pixel statistics (``prod (1 - D)``, ``Z`` and, for small
gamma, the running maximum) besides the outputs, a footprint per face, and two numbers per candidate
pair (the coverage and the softmax term, in the input dtype: 8 bytes in float32, where the reference
path keeps 24 bytes of indices per kept pair), which spare the backward pass its exponentials.

Memory: the buffers of a call are allocated through numpy, which asks for transparent huge pages (one
page fault per 2 MiB instead of per 4 KiB: on the 2-core machine of docs/benchmarks.md, faulting in
fresh per-call buffers had cost ~3-4 ms per image at B = 32). The outputs and what a forward saves for
its backward are recycled by ``_RECYCLER``: handed out again only once no tensor refers to them any more
(so retained graphs and outputs the caller keeps are never overwritten), at most two per name, which
spares a training loop the faulting-in of ~130 MB per call at B = 32; ``_RECYCLER.clear()`` frees them.
The backward pass's scratch (per-pixel
statistics and per-face corner gradients, ~40 MB at B = 32, 224 x 224) is kept from call to call in
``_WORKSPACE`` and only used under the kernels' lock within one call, never for what a forward saves for
its backward, so two forwards before their backwards are safe; ``_WORKSPACE.clear()`` frees it.

The kernels (:mod:`dsrbody.render._fused_kernels`) are numba functions compiled on first use and cached
on disk, so there is no build step at install. Where numba cannot be imported the ``"auto"`` backend
falls back to the reference path and says so once (a logging warning). CUDA tensors go to the Triton
kernels of :mod:`dsrbody.render.fused_triton` instead.

Threads: the kernels use as many threads as torch (``torch.get_num_threads()``), so that one setting
governs both paths.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import weakref
from types import ModuleType

import numpy as np
import torch

from dsrbody.render.pairs import project

__all__ = ["available", "ready", "fused_render", "unavailable_reason"]

log = logging.getLogger(__name__)

_KERNELS: ModuleType | None = None
_REASON: str | None = None
_NOTICED = False
#: dtype -> whether the kernels ran for it (:func:`ready`).
_CHECKED: dict[torch.dtype, bool] = {}
#: One render call at a time goes through the kernels (each is parallel inside).
_LOCK = threading.Lock()


def _load() -> ModuleType | None:
    """The kernel module, imported once (``None`` when numba is missing or broken)."""
    global _KERNELS, _REASON
    if _KERNELS is None and _REASON is None:
        try:
            import numba

            if "NUMBA_THREADING_LAYER" not in os.environ:
                # numba's OpenMP layer spins its threads between kernels, which slows torch's own
                # (OpenMP) work in the same process about threefold on a 2-core machine; the workqueue
                # layer sleeps instead. It does not allow concurrent launches, hence _LOCK.
                numba.config.THREADING_LAYER = "workqueue"
            from dsrbody.render import _fused_kernels

            _KERNELS = _fused_kernels
        except Exception as err:  # ImportError, or numba refusing this numpy version
            _REASON = f"{type(err).__name__}: {err}".splitlines()[0]
    return _KERNELS


def available() -> bool:
    """Whether numba and the kernel module import (see :func:`ready` for a given dtype)."""
    return _load() is not None


def ready(dtype: torch.dtype = torch.float32) -> bool:
    """Whether the kernels run for ``dtype``: numba imports, and a one-triangle render, forward and
    backward, compiles (or loads from numba's cache) and gives finite values. Checked once per dtype and
    process; a failure is kept as :func:`unavailable_reason`, so that ``"auto"`` falls back instead of
    failing in the middle of a training step."""
    global _REASON
    if _load() is None:
        return False
    if dtype not in _CHECKED:
        try:
            _smoke(dtype)
            _CHECKED[dtype] = True
        except Exception as err:  # a numba that cannot compile the kernels, a broken cache, ...
            _REASON = f"{dtype} kernels failed: {type(err).__name__}: {err}".splitlines()[0]
            _CHECKED[dtype] = False
    return _CHECKED[dtype]


def _smoke(dtype: torch.dtype) -> None:
    """One triangle on an 8 x 8 image through :func:`fused_render`, forward and backward."""
    from dsrbody.render.soft import SoftRasterSettings, coverage_threshold

    raster = SoftRasterSettings(sigma=1e-2)
    scale = (2.0 / 8) ** 2
    tri = [[[-0.5, -0.5, 2.0], [0.5, -0.5, 2.0], [0.0, 0.5, 2.0]]]
    v = torch.tensor(tri, dtype=dtype, requires_grad=True)
    feat = torch.ones(1, 1, dtype=dtype, requires_grad=True)
    with torch.enable_grad():
        ok = torch.ones(1, dtype=torch.bool)
        I, S = fused_render(
            v, torch.tensor([[0, 1, 2]]), feat, ok, 8.0, (4.0, 4.0), 8, 8, raster, scale,
            coverage_threshold(raster.sigma) / scale, False,
        )  # fmt: skip
        (I.sum() + S.sum()).backward()
    covered = float(S.detach().sum())
    if not (0.0 < covered < 64.0 and torch.isfinite(v.grad).all() and torch.isfinite(feat.grad).all()):
        raise RuntimeError("the one-triangle check gave wrong values")


def unavailable_reason() -> str | None:
    """Why the fused kernels cannot be used, or ``None`` when they can."""
    _load()
    return _REASON


def notice_fallback() -> None:
    """Log, once per process, that the ``"auto"`` backend fell back to the reference path."""
    global _NOTICED
    if not _NOTICED:
        _NOTICED = True
        reason = unavailable_reason() or "unknown"
        hint = " (pip install numba for the fast one)" if "No module named 'numba'" in reason else ""
        log.warning(
            "dsrbody soft rasteriser: fused CPU kernels unavailable (%s); using the pure-PyTorch path%s",
            reason,
            hint,
        )


def _empty(shape: tuple[int, ...] | int, dtype: torch.dtype) -> torch.Tensor:
    """An uninitialised CPU tensor whose memory numpy allocates: numpy asks the kernel for transparent huge
    pages for arrays of 4 MiB and more (``madvise``), so that first touching a fresh buffer takes one page
    fault per 2 MiB instead of one per 4 KiB (torch's allocator does not, unless ``THP_MEM_ALLOC_ENABLE``
    is set). On this machine that made filling a fresh 58 MB buffer 3x faster (24 -> 7.5 ms)."""
    return torch.from_numpy(np.empty(shape, dtype=torch.empty((), dtype=dtype).numpy().dtype))


class _Workspace:
    """Scratch buffers reused from call to call, so that their pages are touched once per process instead
    of faulted in again at every call. Only for scratch that does not outlive one kernel call under
    ``_LOCK`` (never for outputs or tensors saved for the backward pass, which a second forward before the
    backward would overwrite); every use overwrites what it reads. A buffer grows to the largest size
    asked for and is viewed at the size of each call."""

    def __init__(self) -> None:
        self._bufs: dict[tuple[str, torch.dtype], torch.Tensor] = {}

    def get(self, name: str, shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
        n = math.prod(shape)
        buf = self._bufs.get((name, dtype))
        if buf is None or buf.numel() < n:
            buf = _empty(max(n, 1), dtype)
            self._bufs[(name, dtype)] = buf
        return buf[:n].view(shape)

    def clear(self) -> None:
        self._bufs.clear()


#: The scratch of the backward pass, used under ``_LOCK`` only.
_WORKSPACE = _Workspace()


class _Recycler:
    """Buffers for a call's outputs and for what its forward saves for its backward, handed out again
    once nothing refers to them any more, so that a training loop renders into memory whose pages are
    already faulted in (fresh ones, even with huge pages, cost 2-6 % of a B = 32 forward+backward call on
    the machine of docs/benchmarks.md, alternating in one process).

    A buffer is a numpy array kept here; what a call gets is a tensor on a fresh numpy *view* of it, of
    which this class keeps a weak reference only. The buffer is free again when that view has died, that
    is when every tensor on it has (the caller dropped the outputs; autograd freed the saved tensors after
    the backward pass, or with the graph): so a retained graph, two forwards before their backwards, or
    outputs kept by the caller are never overwritten. At most ``keep`` buffers per name (the latest call's
    and the one before, which a loop like ``out = render(...)`` still holds during the next call); more
    are allocated fresh and dropped. Every use writes all it reads. ``clear()`` frees them."""

    def __init__(self, keep: int = 2) -> None:
        self.keep = keep
        self._bufs: dict[tuple[str, torch.dtype], list[list]] = {}  # [buffer, weakref to the view or None]

    def take(self, name: str, shape: tuple[int, ...] | int, dtype: torch.dtype) -> torch.Tensor:
        shape = (shape,) if isinstance(shape, int) else tuple(shape)
        n = max(math.prod(shape), 1)
        slots = self._bufs.setdefault((name, dtype), [])
        free = [s for s in slots if s[1] is None or s[1]() is None]
        slot = next((s for s in free if s[0].size >= n), None)
        if slot is None:
            buf = _empty(n, dtype).numpy()
            if len(slots) < self.keep:
                slot = [buf, None]
                slots.append(slot)
            elif free:  # replace a free buffer that is too small
                slot = free[0]
                slot[0] = buf
            else:
                return torch.from_numpy(buf[: math.prod(shape)].reshape(shape))
        view = slot[0][: math.prod(shape)].reshape(shape)
        slot[1] = weakref.ref(view)
        return torch.from_numpy(view)

    def clear(self) -> None:
        self._bufs.clear()


#: Outputs and saved tensors of the kernels, recycled once unreferenced (under ``_LOCK``).
_RECYCLER = _Recycler()


def _threads(kernels: ModuleType) -> None:
    import numba

    numba.set_num_threads(max(1, min(torch.get_num_threads(), numba.config.NUMBA_NUM_THREADS)))


class _Call:
    """Non-tensor state of one call."""

    def __init__(self, **kw):
        self.__dict__.update(kw)


class _FusedRasterize(torch.autograd.Function):
    """Inputs: projected vertices ``(B V, 3)`` and the feature table ``(Nf, K, C)``; outputs ``I (B H W,
    C)`` and ``S (B H W,)``."""

    @staticmethod
    def forward(ctx, proj: torch.Tensor, feat: torch.Tensor, cfg: _Call):  # noqa: D102
        with _LOCK:
            return _FusedRasterize._forward(ctx, proj, feat, cfg)

    @staticmethod
    def backward(ctx, gI: torch.Tensor | None, gS: torch.Tensor | None):  # noqa: D102
        with _LOCK:
            return _FusedRasterize._backward(ctx, gI, gS)

    @staticmethod
    def _forward(ctx, proj: torch.Tensor, feat: torch.Tensor, cfg: _Call):
        k = cfg.kernels
        _threads(k)
        raster = cfg.raster
        B, H, W = cfg.B, cfg.H, cfg.W
        C = feat.shape[-1]
        N = B * cfg.F
        npix = B * H * W
        dtype = proj.dtype
        P = proj.detach().contiguous()
        fe = feat.detach().contiguous()
        take = _RECYCLER.take
        foot = take("foot", (N, 4), torch.int32)
        k.footprints(P.numpy(), cfg.faces_np, cfg.V, cfg.ok, H, W, cfg.radius_px, foot.numpy())
        I = take("I", (npix, C), dtype)
        S = take("S", npix, dtype)
        # per-pixel statistics in the input dtype, as the reference path; in float64 when the softmax
        # needs its running maximum (small gamma amplifies their rounding by 1 / gamma)
        sdtype = torch.float64 if cfg.per_pixel_max else dtype
        prod = take("prod", npix, sdtype)
        Z = take("Z", npix, sdtype)
        M = take("M", npix if cfg.per_pixel_max else 1, sdtype)
        off = take("off", N, torch.int64)
        total = k.pair_offsets(foot.numpy(), off.numpy())  # each face's first slot in De
        # per candidate pair: coverage D (-1 for the pairs not kept) and softmax term e (with the running
        # maximum, small gamma, only D: e is recomputed against the final maximum), so that the backward
        # pass needs neither the keep test nor an exponential; nothing when no gradient will be asked for
        store = any(ctx.needs_input_grad[:2])
        De = take("De", (2, total if store else 1), dtype)
        # the number of channels as the length of a tuple: a constant of the compiled kernels (one compilation
        # per C), so that their channel loops are unrolled
        chans = (0,) * C
        nthreads = torch.get_num_threads()
        nband = 1 if nthreads == 1 or B >= 2 * nthreads else min(H, -(-4 * nthreads // max(B, 1)))
        k.forward(
            P.numpy(), cfg.faces_np, cfg.V, foot.numpy(), off.numpy(), fe.numpy(), chans, B, H, W, nband,
            cfg.thr_px, cfg.k_sig, raster.gamma, raster.near, raster.far, raster.eps, cfg.per_pixel_max,
            I.numpy(), S.numpy(), prod.numpy(), Z.numpy(), M.numpy(), De.numpy(), store,
        )  # fmt: skip
        ctx.cfg = cfg
        ctx.save_for_backward(P, fe, foot, off, De, I, prod, Z, M)
        return I, S

    @staticmethod
    def _backward(ctx, gI: torch.Tensor | None, gS: torch.Tensor | None):
        cfg = ctx.cfg
        k = cfg.kernels
        _threads(k)
        raster = cfg.raster
        P, fe, foot, off, De, I, prod, Z, M = ctx.saved_tensors
        gI = torch.zeros_like(I) if gI is None else gI.to(I.dtype).contiguous()
        gS = torch.zeros(prod.shape, dtype=I.dtype) if gS is None else gS.to(I.dtype).contiguous()
        st = _WORKSPACE.get("st", (prod.shape[0], 4), prod.dtype)
        k.pixel_stats(
            gI.numpy(),
            gS.numpy(),
            I.numpy(),
            prod.numpy(),
            Z.numpy(),
            M.numpy(),
            cfg.per_pixel_max,
            st.numpy(),
        )
        N = foot.shape[0]
        want_feat = bool(ctx.needs_input_grad[1])
        g_corner = _WORKSPACE.get("g_corner", (N, 3, 3), P.dtype)
        nchunk = max(1, min(N, 16 * torch.get_num_threads()))  # ranges of faces for the threads
        g_feat = _empty((N, *fe.shape[1:]), fe.dtype).zero_() if want_feat else fe.new_zeros(1, 1, 1)
        k.backward(
            P.numpy(), cfg.faces_np, cfg.V, foot.numpy(), off.numpy(), fe.numpy(), (0,) * fe.shape[-1], cfg.H,
            cfg.W, cfg.thr_px, cfg.k_sig, raster.gamma, raster.near, raster.far, cfg.per_pixel_max,
            De.numpy(), gI.numpy(), st.numpy(), want_feat, g_corner.numpy(), g_feat.numpy(), nchunk,
        )  # fmt: skip
        g_proj = torch.zeros_like(P)
        k.scatter_corners(g_corner.numpy(), cfg.faces_np, cfg.V, g_proj.numpy())
        if want_feat and fe.shape[0] != N:  # features shared by the batch
            g_feat = g_feat.view(cfg.B, *fe.shape).sum(0)
        return g_proj, (g_feat if want_feat else None), None


def fused_render(
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
    """The soft render through the fused kernels (called by :func:`dsrbody.render.soft.soft_render`, which
    validates the arguments).

    Args:
        vertices: ``(B, V, 3)`` finite camera-frame vertices (CPU).
        faces: ``(F, 3)`` long.
        feat: ``(F, C)`` per-face features shared by the batch, ``(B F, C)`` per sample, or ``(B F, 3, C)``
            per-corner features (vertex features gathered onto the faces).
        ok: ``(B,)`` bool, samples to draw (the others render empty).
        raster: the :class:`~dsrbody.render.soft.SoftRasterSettings`.
        dist_scale: ``(2 / max(H, W))^2``, pixel^2 to NDC^2. thr_px: the keep threshold on the squared
            distance, pixel^2. per_pixel_max: stabilise the depth softmax per pixel (small gamma).

    Returns:
        ``I (B H W, C)`` and ``S (B H W,)`` in the dtype of ``vertices``.
    """
    kernels = _load()
    if kernels is None:
        raise RuntimeError(f"the fused soft rasteriser needs numba ({unavailable_reason()})")
    B, V, _ = vertices.shape
    proj = project(vertices, focal, principal_point).reshape(B * V, 3)
    feat3 = feat if feat.dim() == 3 else feat[:, None, :]
    cfg = _Call(
        kernels=kernels, raster=raster, B=B, V=V, F=faces.shape[0], H=H, W=W,
        faces_np=faces.to(torch.int64).contiguous().numpy(), ok=ok.to(torch.bool).numpy(),
        radius_px=math.sqrt(thr_px), thr_px=thr_px, k_sig=dist_scale / raster.sigma,
        per_pixel_max=per_pixel_max,
    )  # fmt: skip
    return _FusedRasterize.apply(proj, feat3, cfg)
