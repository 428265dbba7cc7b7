"""Differentiable soft semantic rasteriser (SoftRas formulation, docs/design.md, Soft rasteriser).

For pixel ``p`` and projected face ``j``:

- coverage ``D_j(p) = sigmoid(delta_j(p) d_j(p)^2 / sigma)``, ``d_j`` the distance from ``p`` to the
  triangle's boundary in NDC units (one pixel is ``2 / max(H, W)``), ``delta_j = +1`` inside (all
  barycentric coordinates > 0) and ``-1`` outside;
- silhouette ``S(p) = 1 - prod_j (1 - D_j(p))``;
- features ``I(p) = sum_j w_j(p) C_j`` with
  ``w_j = D_j exp(z_j / gamma) / (sum_k D_k exp(z_k / gamma) + exp(eps / gamma))`` (background colour 0);
  the depth is SoftRas's: the pixel's barycentric coordinates clipped to [0, 1] and renormalised, the
  perspective-correct depth ``zp = 1 / sum_k (w_k / z_k)`` and ``z_j = (far - zp) / (far - near)``. A face
  whose ``zp`` lies outside ``[near, far]`` leaves the feature term but still counts in the silhouette.
- Pairs outside the triangle with ``D < 1e-4`` (``d^2 >= ln(1 / 1e-4 - 1) sigma``) are dropped. No back-face
  culling. Per-vertex features are interpolated with the clipped, perspective-corrected barycentrics.

Conventions that go beyond SoftRas (documented choices):

- A face with a vertex on or behind the camera plane (``z <= 0``) is excluded entirely (silhouette and
  features): its projection is undefined. A face with (near-)zero projected area
  (``|2 area| <= 1e-10`` pixel^2) is excluded as well (it has no inside).
- Non-finite vertices: ``nonfinite="raise"`` (default) raises ``ValueError`` naming the batch indices;
  ``nonfinite="mask"`` renders those samples as NaN images (features and silhouette) with zero gradient,
  so that a loss can drop them, while the other samples are unaffected.

Implementation: the work is proportional to the face-pixel pairs in each face's footprint (its screen
bounding box grown by ``sqrt(ln(1/1e-4 - 1) sigma)``; the enumeration is :mod:`dsrbody.render.pairs`,
shared with the z-buffer), fully vectorised over pairs, processed in chunks
of at most ``max_pairs_per_chunk`` candidate pairs (the peak-memory knob: about
``max_pairs_per_chunk * (150 + 12 C)`` bytes of transient memory in float32, on top of the per-pixel
accumulators, ``B H W (C + 4)`` floats, and the pair list kept for the backward pass, 24 bytes per kept
pair). The default, 65,536 pairs, keeps a chunk's working set in the CPU caches. A custom
``torch.autograd.Function`` recomputes the pair geometry in the backward pass and applies hand-derived
gradients; all C channels are aggregated in the same pass. The same code runs on CPU and CUDA.

That pure-PyTorch path is the *reference* backend, the implementation the tests hold the others
against; the default backend (``SoftRasterSettings.backend="auto"``) runs the same forward and backward
fused per face-pixel pair, on CPU tensors in numba kernels (:mod:`dsrbody.render.fused`), on CUDA
tensors with per-face features in Triton kernels (:mod:`dsrbody.render.fused_triton`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace

import torch
from torch import nn

from dsrbody.geometry.cameras import project_vertices
from dsrbody.render.pairs import (
    ROW_IDET,
    ROW_IZ,
    TABLE_ROWS,
    barycentric_distance,
    chunk_ranges,
    enumerate_pairs,
    gather_rows,
    localize_,
    prepare_faces,
)

# project_vertices lives in dsrbody.geometry.cameras; it stays importable from here.
__all__ = ["soft_render", "SoftRasterizer", "SoftRasterSettings", "project_vertices", "coverage_threshold"]

#: Coverage below which a pair outside its triangle is dropped (SoftRas's ``eps`` of the distance test).
COVERAGE_EPS = 1e-4
#: Default peak-memory knob: candidate face-pixel pairs processed at once.
DEFAULT_MAX_PAIRS = 1 << 16
#: Below this gamma the depth softmax is stabilised per pixel (running max); above it a fixed shift
#: suffices because z lies in [0, 1] (exp(1 / gamma) cannot overflow float32).
_PER_PIXEL_MAX_GAMMA = 1.0 / 80.0


#: The values of ``nonfinite``.
NONFINITE_MODES = ("raise", "mask")
#: The values of ``backend``: ``"fused"`` the fused kernels of the tensors' device (CPU: numba,
#: :mod:`dsrbody.render.fused`; CUDA: Triton, :mod:`dsrbody.render.fused_triton`), ``"reference"`` the
#: pure-PyTorch path of this module (CPU and CUDA), ``"auto"`` the fused kernels where they run, else the
#: reference path.
BACKENDS = ("auto", "fused", "reference")


@dataclass(frozen=True)
class SoftRasterSettings:
    """The soft rasteriser's settings, one object for :func:`soft_render`, :class:`SoftRasterizer` and
    :class:`~dsrbody.losses.dsr.DSRLoss` (the defaults are DSR's: sigma 1e-5, gamma 0.1).

    Attributes:
        sigma: coverage sharpness, squared NDC distance (one pixel is ``2 / max(H, W)``); finite, > 0.
        gamma: depth softmax temperature (normalised depth in [0, 1]); finite, > 0.
        near, far: depth range, metres (camera z); finite, ``far > near``.
        eps: background depth of the softmax (normalised depth); finite.
        max_pairs_per_chunk: peak-memory knob: candidate face-pixel pairs processed at once (transient
            memory about ``max_pairs_per_chunk * (150 + 12 C)`` bytes in float32); >= 1.
        nonfinite: ``"raise"`` (ValueError naming the batch indices with non-finite vertices) or
            ``"mask"`` (those samples come out as NaN images with zero gradient; others unaffected).
        backend: ``"auto"`` (default: the fused kernels where they run, else, with a one-line warning
            once, the reference path: on CPU tensors the numba kernels of :mod:`dsrbody.render.fused`,
            on CUDA tensors with per-face features the Triton kernels of
            :mod:`dsrbody.render.fused_triton`; per-vertex features on CUDA take the reference path),
            ``"fused"`` (those kernels; an error where they cannot run) or ``"reference"`` (this
            module's pure-PyTorch pair passes, CPU and CUDA). All give the same images and gradients
            to float rounding.

    Raises:
        ValueError: a one-line message naming the bad setting.
    """

    sigma: float = 1e-5
    gamma: float = 1e-1
    near: float = 1.0
    far: float = 100.0
    eps: float = 1e-3
    max_pairs_per_chunk: int = DEFAULT_MAX_PAIRS
    nonfinite: str = "raise"
    backend: str = "auto"

    def __post_init__(self) -> None:
        for name in ("sigma", "gamma", "near", "far", "eps"):
            value = getattr(self, name)
            try:
                number = float(value)
            except (TypeError, ValueError):
                raise ValueError(f"SoftRasterSettings: {name} must be a number, got {value!r}") from None
            if not math.isfinite(number):
                raise ValueError(f"SoftRasterSettings: {name} must be finite, got {value!r}")
            object.__setattr__(self, name, number)
        for name in ("sigma", "gamma"):
            if not getattr(self, name) > 0:
                raise ValueError(f"SoftRasterSettings: {name} must be > 0, got {getattr(self, name)!r}")
        if not self.far > self.near:
            raise ValueError(f"SoftRasterSettings: need far > near, got near={self.near!r}, far={self.far!r}")
        try:
            chunk = int(self.max_pairs_per_chunk)
        except (TypeError, ValueError):
            chunk = 0
        if chunk < 1:
            raise ValueError(
                f"SoftRasterSettings: max_pairs_per_chunk must be an integer >= 1, "
                f"got {self.max_pairs_per_chunk!r}"
            )
        object.__setattr__(self, "max_pairs_per_chunk", chunk)
        if self.nonfinite not in NONFINITE_MODES:
            raise ValueError(
                f"SoftRasterSettings: nonfinite must be 'raise' or 'mask', got {self.nonfinite!r}"
            )
        if self.backend not in BACKENDS:
            raise ValueError(
                f"SoftRasterSettings: backend must be 'auto', 'fused' or 'reference', got {self.backend!r}"
            )


_DEFAULT_SETTINGS = SoftRasterSettings()
#: The names of the settings (keyword arguments of :func:`soft_render` and :class:`SoftRasterizer`).
SETTING_NAMES = tuple(f.name for f in fields(SoftRasterSettings))


def _resolve_settings(settings: SoftRasterSettings | None, keywords: dict, where: str) -> SoftRasterSettings:
    """``settings``, or the settings made of the individual keywords; both at once is an error unless the
    keywords are all at their defaults."""
    if settings is None:
        return SoftRasterSettings(**keywords)
    if not isinstance(settings, SoftRasterSettings):
        raise TypeError(f"{where}: settings must be a SoftRasterSettings, got {type(settings).__name__}")
    changed = [k for k, v in keywords.items() if v != getattr(_DEFAULT_SETTINGS, k)]
    if changed:
        raise ValueError(f"{where}: give settings= or the keywords {', '.join(changed)}, not both")
    return settings


def coverage_threshold(sigma: float) -> float:
    """Squared NDC distance beyond which an outside pair has ``D < 1e-4``: ``ln(1/1e-4 - 1) * sigma``."""
    return math.log(1.0 / COVERAGE_EPS - 1.0) * sigma


# ----------------------------------------------------------------------------------------------------
# pair geometry


def _depth(
    w: torch.Tensor, iz: torch.Tensor, near: float, far: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """SoftRas depth of each pair.

    Args:
        w: ``(3, P)`` barycentric coordinates; iz: ``(3, P)`` inverse vertex depths (1/m).

    Returns:
        ``zn (P,)`` normalised depth ``(far - zp) / (far - near)``, ``in_range (P,)`` (``near <= zp <= far``),
        ``wc (3, P)`` clipped renormalised barycentrics, ``sw (P,)`` their sum before renormalising,
        ``s (P,)`` = ``1 / zp``.
    """
    wcl = w.clamp(0.0, 1.0)
    sw = wcl.sum(0)
    wc = wcl / sw
    s = (wc * iz).sum(0)
    zp = 1.0 / s
    zn = (far - zp) / (far - near)
    in_range = (zp >= near) & (zp <= far)
    return zn, in_range, wc, sw, s


class _Call:
    """Non-tensor state of one render call: ``raster`` (the :class:`SoftRasterSettings`), the sizes, and
    the pair enumeration (footprints and chunks)."""

    def __init__(self, **kw):
        self.__dict__.update(kw)


def _pair_features(
    cfg: _Call,
    feat: torch.Tensor,
    fid: torch.Tensor,
    wc: torch.Tensor,
    iz: torch.Tensor,
    s: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """Feature vector ``(P, C)`` of each pair; for vertex features also the perspective-correct
    barycentrics ``wp (3, P)`` and the gathered vertex features ``(P, 3, C)``."""
    if not cfg.vertex_mode:
        return feat.index_select(0, fid), None, None
    vf = feat.index_select(0, fid)  # (P, 3, C)
    wp = wc * iz / s
    return torch.einsum("kp,pkc->pc", wp, vf), wp, vf


class _SoftRasterize(torch.autograd.Function):
    """Aggregation of all face-pixel pairs; inputs are the per-face table and feature table."""

    @staticmethod
    def forward(ctx, table: torch.Tensor, feat: torch.Tensor, cfg: _Call):  # noqa: D102
        dtype, dev = table.dtype, table.device
        H, W, C = cfg.H, cfg.W, cfg.C
        N = cfg.B * H * W
        tableT = localize_(table.t().contiguous(), cfg.c0, cfg.r0)
        k_sig = cfg.dist_scale / cfg.raster.sigma  # pixel^2 -> x = d^2 / sigma in NDC units
        L = torch.zeros(N, dtype=dtype, device=dev)  # sum_j log(1 - D_j)
        if cfg.per_pixel_max:
            m = torch.full((N,), cfg.raster.eps, dtype=dtype, device=dev)
            Z = torch.ones(N, dtype=dtype, device=dev)
        else:
            m = None
            Z = torch.full((N,), math.exp((cfg.raster.eps - 1.0) / cfg.raster.gamma), dtype=dtype, device=dev)
        num = torch.zeros(N, C, dtype=dtype, device=dev)
        saved: list[tuple[torch.Tensor, ...]] = []
        for f0, f1, n in cfg.chunks:
            fid, pix, coff, roff = enumerate_pairs(f0, f1, n, cfg.counts, cfg.base, cfg.bw, W)
            px = coff.to(dtype)
            py = roff.to(dtype)
            tab = gather_rows(tableT, fid, slice(0, ROW_IZ))  # the 1/z rows only for kept pairs
            w, d2, _ = barycentric_distance(tab, px, py)
            inside = w.amin(0) > 0
            keep = (inside | (d2 < cfg.thr_px)).nonzero().squeeze(1)
            fid, pix, d2, inside, coff, roff = (
                t.index_select(0, keep) for t in (fid, pix, d2, inside, coff, roff)
            )
            w = gather_rows(w, keep)
            iz = gather_rows(tableT, fid, slice(ROW_IZ, None))
            del tab, px, py, keep
            x = torch.where(inside, d2, d2.neg()).mul_(k_sig)
            L.index_add_(0, pix, torch.nn.functional.softplus(x), alpha=-1.0)
            D = x.sigmoid_()
            zn, in_range, wc, _, s = _depth(w, iz, cfg.raster.near, cfg.raster.far)
            if cfg.per_pixel_max:
                # running per-pixel max of z (online softmax), updated on the pixels this chunk touches
                zm = zn.masked_fill_(~in_range, -math.inf)
                upix, inv = torch.unique(pix, return_inverse=True)
                m_old = m.index_select(0, upix)
                m_new = m_old.scatter_reduce(0, inv, zm, "amax")
                scale = torch.exp((m_old - m_new) / cfg.raster.gamma)
                Z.index_copy_(0, upix, Z.index_select(0, upix) * scale)
                num.index_copy_(0, upix, num.index_select(0, upix) * scale[:, None])
                m.index_copy_(0, upix, m_new)
                e = zm.sub_(m_new.index_select(0, inv)).div_(cfg.raster.gamma).exp_().mul_(D)
            else:
                e = zn.sub_(1.0).div_(cfg.raster.gamma).exp_().mul_(D).masked_fill_(~in_range, 0.0)
            Fj, _, _ = _pair_features(cfg, feat, fid, wc, iz, s)
            Z.index_add_(0, pix, e)
            num.index_add_(0, pix, Fj.mul_(e[:, None]))
            saved.append((fid, pix, coff.to(torch.int32), roff.to(torch.int32)))
        I = num.div_(Z[:, None])
        S = 1.0 - torch.exp(L)
        ctx.cfg = cfg
        ctx.saved = saved
        ctx.save_for_backward(table, feat, I, L, Z, m if m is not None else Z.new_ones(()))
        return I, S

    @staticmethod
    def backward(ctx, gI: torch.Tensor, gS: torch.Tensor):  # noqa: D102
        cfg = ctx.cfg
        table, feat, I, L, Z, m = ctx.saved_tensors
        dtype = table.dtype
        tableT = localize_(table.t().contiguous(), cfg.c0, cfg.r0)
        k_sig = cfg.dist_scale / cfg.raster.sigma
        g_feat = torch.zeros_like(feat) if ctx.needs_input_grad[1] else None
        gI = gI.contiguous() if gI is not None else torch.zeros_like(I)
        a = (gS * torch.exp(L)) if gS is not None else torch.zeros_like(L)  # dS/dx_j = (1 - S) D_j
        invZ = 1.0 / Z
        q = torch.linalg.vecdot(gI, I)
        if cfg.per_pixel_max:
            stats = torch.stack([a, q, invZ, m])
        else:
            stats = torch.stack([a, q, invZ])
        g_tabT = torch.zeros(TABLE_ROWS, table.shape[0], dtype=dtype, device=table.device)
        inv_range = 1.0 / (cfg.raster.far - cfg.raster.near)
        for fid, pix, coff, roff in ctx.saved:
            px, py = coff.to(dtype), roff.to(dtype)
            tab = gather_rows(tableT, fid)
            w, d2, edges = barycentric_distance(tab, px, py, with_edges=True)
            del px, py
            inside = w.amin(0) > 0
            sgn_k = inside.to(dtype).mul_(2.0 * k_sig).sub_(k_sig)  # dx_j / d(d2) = +-k_sig
            D = torch.sigmoid(d2 * sgn_k)
            iz = tab[ROW_IZ:]
            zn, in_range, wc, sw, s = _depth(w, iz, cfg.raster.near, cfg.raster.far)
            st = gather_rows(stats, pix)
            if cfg.per_pixel_max:
                zn.sub_(st[3])
            else:
                zn.sub_(1.0)
            e = zn.div_(cfg.raster.gamma).exp_().mul_(D).masked_fill_(~in_range, 0.0)
            Fj, wp, vf = _pair_features(cfg, feat, fid, wc, iz, s)
            gIp = gI.index_select(0, pix)
            ge = torch.linalg.vecdot(gIp, Fj).sub_(st[1]).mul_(st[2])  # dL/de_j
            del Fj
            gx = (1.0 - D).mul_(e).mul_(ge).addcmul_(st[0], D)  # dL/dx_j
            gzn = ge.mul_(e).div_(cfg.raster.gamma)  # dL/dzn_j
            G = gIp.mul_((e * st[2])[:, None])  # dL/dF_j = w_j gI_p
            del gIp, e, D, st
            # depth chain: zn = (far - 1/s) / (far - near), s = sum_k wc_k iz_k
            gs = gzn.div_(s.square()).mul_(inv_range)
            g_iz = gs * wc
            if cfg.vertex_mode:
                g_wp = torch.einsum("pc,pkc->kp", G, vf)  # wp_k = wc_k iz_k / s
                if g_feat is not None:
                    g_feat.index_add_(0, fid, wp.t()[:, :, None] * G[:, None, :])
                g_wc = gs * iz
                inv_s = 1.0 / s
                gs2 = -(g_wp * wp).sum(0) * inv_s
                g_wc += (g_wp * inv_s + gs2) * iz
                g_iz += (g_wp * inv_s + gs2) * wc
                g_wcl = (g_wc - (g_wc * wc).sum(0)) / sw
            else:
                if g_feat is not None:
                    g_feat.index_add_(0, fid, G)
                g_wcl = (iz - s).mul_(gs / sw)  # (g_wc - sum_m g_wc_m wc_m) / sw with g_wc = gs iz
            del G
            g_w = g_wcl.masked_fill_((w < 0) | (w > 1), 0.0)  # clamp(0, 1) passes gradient on [0, 1]
            idet = tab[ROW_IDET]
            g_idet = (g_w * w).sum(0).div_(idet)  # w = cr * idet
            g_w.mul_(idet)  # now dL/dcr
            # distance: d2 = min_k |d_k - t_k e_k|^2; d/dv_k = -2 r, d/de_k = -2 t r (envelope theorem)
            g_d2 = gx.mul_(sgn_k).mul_(-2.0)
            taken = None
            g_rows = torch.empty(TABLE_ROWS, len(fid), dtype=dtype, device=table.device)
            g_rows[4:15:5] = 0.0  # 1/|e|^2 gets no gradient (envelope theorem)
            for k in range(3):
                dx, dy, t, rx, ry, dk = edges[k]
                g_cr = g_w[(k + 2) % 3]
                ex, ey = tab[5 * k + 2], tab[5 * k + 3]
                if k < 2:
                    sel = dk == d2
                    if taken is not None:
                        sel &= ~taken
                        taken |= sel
                    else:
                        taken = sel
                else:
                    sel = ~taken
                gd = g_d2 * sel
                g_x, g_y, g_ex, g_ey = g_rows[5 * k : 5 * k + 4]
                torch.mul(gd, rx, out=g_x)
                torch.mul(gd, ry, out=g_y)
                torch.mul(g_x, t, out=g_ex).addcmul_(g_cr, dy)
                torch.mul(g_y, t, out=g_ey).addcmul_(g_cr, dx, value=-1.0)
                g_x.addcmul_(g_cr, ey)
                g_y.addcmul_(g_cr, ex, value=-1.0)
            g_rows[ROW_IDET] = g_idet
            g_rows[ROW_IZ:] = g_iz
            g_tabT.index_add_(1, fid, g_rows)
        g_table = g_tabT.t()
        return g_table, g_feat, None


def soft_render(
    vertices: torch.Tensor,
    faces: torch.Tensor,
    *,
    face_features: torch.Tensor | None = None,
    vertex_features: torch.Tensor | None = None,
    focal: float | torch.Tensor,
    principal_point: float | torch.Tensor,
    image_size: tuple[int, int],
    sigma: float = 1e-5,
    gamma: float = 1e-1,
    near: float = 1.0,
    far: float = 100.0,
    eps: float = 1e-3,
    max_pairs_per_chunk: int = DEFAULT_MAX_PAIRS,
    nonfinite: str = "raise",
    backend: str = "auto",
    settings: SoftRasterSettings | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Render soft feature images and soft silhouettes (SoftRas formulation, module docstring).

    Args:
        vertices: ``(B, V, 3)`` camera frame (x right, y down, z forward), metres.
        faces: ``(F, 3)`` long vertex indices (shared by the batch). No back-face culling.
        face_features: ``(F, C)`` or ``(B, F, C)`` per-face features, or
        vertex_features: ``(B, V, C)`` per-vertex features, interpolated with SoftRas's clipped,
            perspective-corrected barycentrics. Exactly one of the two (or neither: silhouette only, C=0).
        focal: pixels, scalar, ``(B,)`` or ``(B, 2)``.
        principal_point: pixels, ``(2,)`` or ``(B, 2)``.
        image_size: ``(H, W)`` pixels.
        sigma, gamma, near, far, eps, max_pairs_per_chunk, nonfinite, backend: the settings one by one
            (see :class:`SoftRasterSettings`), or
        settings: all of them in one :class:`SoftRasterSettings` (then leave the eight keywords at their
            defaults).

    Returns:
        ``features (B, C, H, W)`` and ``silhouette (B, 1, H, W)`` in the dtype of ``vertices``.
    """
    if vertices.dim() != 3 or vertices.shape[-1] != 3:
        raise ValueError(f"vertices must be (B, V, 3), got {tuple(vertices.shape)}")
    faces = torch.as_tensor(faces, device=vertices.device)
    if faces.dim() != 2 or faces.shape[-1] != 3:
        raise ValueError(f"faces must be (F, 3), got {tuple(faces.shape)}")
    faces = faces.long()
    keywords = dict(sigma=sigma, gamma=gamma, near=near, far=far, eps=eps)
    keywords.update(max_pairs_per_chunk=max_pairs_per_chunk, nonfinite=nonfinite, backend=backend)
    settings = _resolve_settings(settings, keywords, "soft_render")
    B, V, _ = vertices.shape
    F = faces.shape[0]
    H, W = (int(v) for v in image_size)
    if H <= 0 or W <= 0:
        raise ValueError(f"image_size must be positive (H, W), got {image_size}")
    if F and (int(faces.min()) < 0 or int(faces.max()) >= V):
        raise ValueError(f"faces index vertices outside [0, {V})")
    if not vertices.is_floating_point():
        vertices = vertices.float()
    dtype, dev = vertices.dtype, vertices.device

    if face_features is not None and vertex_features is not None:
        raise ValueError("give face_features or vertex_features, not both")
    vertex_mode = vertex_features is not None
    if vertex_mode:
        if vertex_features.dim() != 3 or vertex_features.shape[:2] != (B, V):
            raise ValueError(f"vertex_features must be (B={B}, V={V}, C), got {tuple(vertex_features.shape)}")
        C = vertex_features.shape[-1]
        feat = vertex_features.to(dtype)[:, faces].reshape(B * F, 3, C)
    else:
        if face_features is None:
            face_features = vertices.new_zeros(F, 0)
        if not (
            (face_features.dim() == 2 and face_features.shape[0] == F)
            or (face_features.dim() == 3 and face_features.shape[:2] == (B, F))
        ):
            raise ValueError(
                f"face_features must be (F={F}, C) or (B={B}, F, C), got {tuple(face_features.shape)}"
            )
        C = face_features.shape[-1]
        feat = face_features.to(dtype)  # (F, C) shared by the batch or (B, F, C)

    finite = torch.isfinite(vertices).all(-1).all(-1)
    bad = (~finite).nonzero().flatten().tolist()
    if bad and settings.nonfinite == "raise":
        raise ValueError(f"soft_render: non-finite vertices in batch sample(s) {bad}")
    safe_vertices = torch.where(finite[:, None, None], vertices, torch.ones((), dtype=dtype, device=dev))
    dist_scale = (2.0 / max(H, W)) ** 2  # pixel^2 -> NDC^2
    thr_px = coverage_threshold(settings.sigma) / dist_scale
    per_pixel_max = settings.gamma < _PER_PIXEL_MAX_GAMMA
    if _use_triton(settings.backend, dev, dtype, vertex_mode):
        from dsrbody.render.fused_triton import triton_render

        if feat.dim() == 3:
            feat = feat.reshape(B * F, C)
        I, S = triton_render(
            safe_vertices, faces, feat, finite, focal, principal_point, H, W, settings, dist_scale, thr_px,
            per_pixel_max,
        )  # fmt: skip
    elif _use_fused(settings.backend, dev, dtype):
        from dsrbody.render.fused import fused_render

        if feat.dim() == 3 and not vertex_mode:
            feat = feat.reshape(B * F, C)
        I, S = fused_render(
            safe_vertices, faces, feat, finite, focal, principal_point, H, W, settings, dist_scale, thr_px,
            per_pixel_max,
        )  # fmt: skip
    else:
        if not vertex_mode:
            feat = feat.expand(B, F, C).reshape(B * F, C)
        I, S = _reference_render(
            safe_vertices, faces, feat, bad, finite, focal, principal_point, B, F, H, W, C, settings,
            dist_scale, thr_px, vertex_mode, per_pixel_max,
        )  # fmt: skip
    features = I.reshape(B, H, W, C).permute(0, 3, 1, 2)
    silhouette = S.reshape(B, 1, H, W)
    if bad:
        nan = torch.full((), math.nan, dtype=dtype, device=dev)
        features = torch.where(finite[:, None, None, None], features, nan)
        silhouette = torch.where(finite[:, None, None, None], silhouette, nan)
    return features, silhouette


def _use_fused(backend: str, device: torch.device, dtype: torch.dtype = torch.float32) -> bool:
    """Whether this call goes through the fused kernels (see :class:`SoftRasterSettings`, ``backend``)."""
    if backend == "reference":
        return False
    from dsrbody.render import fused

    if device.type != "cpu":
        if backend == "fused" and device.type != "cuda":
            raise ValueError(
                f"soft_render: backend='fused' runs on CPU and CUDA tensors, got a {device.type} tensor"
            )
        return False
    if fused.ready(dtype):
        return True
    if backend == "fused":
        raise RuntimeError(f"soft_render: backend='fused' needs numba ({fused.unavailable_reason()})")
    fused.notice_fallback()
    return False


def _use_triton(backend: str, device: torch.device, dtype: torch.dtype, vertex_mode: bool) -> bool:
    """Whether this call goes through the Triton kernels: CUDA tensors, per-face features, and the
    kernels ready (see :class:`SoftRasterSettings`, ``backend``)."""
    if backend == "reference" or device.type != "cuda":
        return False
    if vertex_mode:
        if backend == "fused":
            raise ValueError(
                "soft_render: backend='fused' on CUDA takes per-face features; per-vertex features run on "
                "the reference path (backend='reference' or 'auto')"
            )
        return False
    from dsrbody.render import fused_triton

    if fused_triton.ready(device, dtype):
        return True
    if backend == "fused":
        raise RuntimeError(
            f"soft_render: backend='fused' on CUDA needs Triton ({fused_triton.unavailable_reason()})"
        )
    fused_triton.notice_fallback()
    return False


def _reference_render(
    safe_vertices, faces, feat, bad, finite, focal, principal_point, B, F, H, W, C, settings, dist_scale,
    thr_px, vertex_mode, per_pixel_max,
) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    """The pure-PyTorch path: ``(I (B H W, C), S (B H W,))``."""
    fc = prepare_faces(safe_vertices, faces, focal, principal_point, H, W, math.sqrt(thr_px), sort=True)
    if bad:
        with torch.no_grad():
            ok = finite.repeat_interleave(F).index_select(0, fc.order)
            fc.counts = fc.counts * ok
    chunks = chunk_ranges(fc.counts, settings.max_pairs_per_chunk)
    feat = feat.index_select(0, fc.order)
    cfg = _Call(
        raster=settings, B=B, F=F, H=H, W=W, C=C, dist_scale=dist_scale, thr_px=thr_px,
        vertex_mode=vertex_mode, per_pixel_max=per_pixel_max, counts=fc.counts,
        base=fc.base, bw=fc.bw, c0=fc.c0, r0=fc.r0, chunks=chunks,
    )  # fmt: skip
    return _SoftRasterize.apply(fc.table, feat, cfg)


class SoftRasterizer(nn.Module):
    """Holds soft-rendering settings; ``forward`` calls :func:`soft_render`.

    Args:
        image_size: ``(H, W)`` or an int for square images.
        focal, principal_point: default intrinsics (pixels); may be overridden per call.
        sigma, gamma, near, far, eps, max_pairs_per_chunk, nonfinite, backend: the settings one by one, or
        settings: all of them (:class:`SoftRasterSettings`; then leave the eight keywords at their
            defaults). The module keeps one :class:`SoftRasterSettings`, ``.settings``; its fields read
            and write as attributes too (``module.sigma = 1e-4`` replaces the settings).
    """

    def __init__(
        self,
        image_size: int | tuple[int, int] = 224,
        *,
        focal: float | None = 5000.0,
        principal_point: tuple[float, float] | None = None,
        sigma: float = 1e-5,
        gamma: float = 1e-1,
        near: float = 1.0,
        far: float = 100.0,
        eps: float = 1e-3,
        max_pairs_per_chunk: int = DEFAULT_MAX_PAIRS,
        nonfinite: str = "raise",
        backend: str = "auto",
        settings: SoftRasterSettings | None = None,
    ) -> None:
        super().__init__()
        self.image_size = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
        self.focal = focal
        H, W = self.image_size
        self.principal_point = principal_point if principal_point is not None else (W / 2.0, H / 2.0)
        keywords = dict(sigma=sigma, gamma=gamma, near=near, far=far, eps=eps)
        keywords.update(max_pairs_per_chunk=max_pairs_per_chunk, nonfinite=nonfinite, backend=backend)
        self.settings = _resolve_settings(settings, keywords, "SoftRasterizer")

    def forward(
        self,
        vertices: torch.Tensor,
        faces: torch.Tensor,
        face_features: torch.Tensor | None = None,
        vertex_features: torch.Tensor | None = None,
        focal: float | torch.Tensor | None = None,
        principal_point: float | torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(features (B, C, H, W), silhouette (B, 1, H, W))``; see :func:`soft_render`."""
        return soft_render(
            vertices,
            faces,
            face_features=face_features,
            vertex_features=vertex_features,
            focal=self.focal if focal is None else focal,
            principal_point=self.principal_point if principal_point is None else principal_point,
            image_size=self.image_size,
            settings=self.settings,
        )

    def extra_repr(self) -> str:  # noqa: D102
        return (
            f"image_size={self.image_size}, sigma={self.sigma}, gamma={self.gamma}, "
            f"near={self.near}, far={self.far}"
        )


def _setting_property(name: str) -> property:
    """An attribute of :class:`SoftRasterizer` that reads and replaces one field of its settings."""

    def get(self: SoftRasterizer):
        return getattr(self.settings, name)

    def set_(self: SoftRasterizer, value) -> None:
        self.settings = replace(self.settings, **{name: value})

    return property(get, set_, doc=f"``settings.{name}`` (see :class:`SoftRasterSettings`).")


for _name in SETTING_NAMES:
    setattr(SoftRasterizer, _name, _setting_property(_name))
del _name
