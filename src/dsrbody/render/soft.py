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
bounding box grown by ``sqrt(ln(1/1e-4 - 1) sigma)``), fully vectorised over pairs, processed in chunks
of at most ``max_pairs_per_chunk`` candidate pairs (the peak-memory knob: about
``max_pairs_per_chunk * (150 + 12 C)`` bytes of transient memory in float32, on top of the per-pixel
accumulators, ``B H W (C + 4)`` floats, and the pair list kept for the backward pass, 24 bytes per kept
pair). The default, 65,536 pairs, keeps a chunk's working set in the CPU caches. A custom
``torch.autograd.Function`` recomputes the pair geometry in the backward pass and applies hand-derived
gradients; all C channels are aggregated in the same pass. The same code runs on CPU and CUDA.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from dsrbody.geometry.cameras import project_vertices

# project_vertices lives in dsrbody.geometry.cameras; it stays importable from here.
__all__ = ["soft_render", "SoftRasterizer", "project_vertices", "coverage_threshold"]

#: Coverage below which a pair outside its triangle is dropped (SoftRas's ``eps`` of the distance test).
COVERAGE_EPS = 1e-4
#: Default peak-memory knob: candidate face-pixel pairs processed at once.
DEFAULT_MAX_PAIRS = 1 << 16
#: Faces whose doubled projected area (pixel^2) is at most this are excluded.
MIN_DOUBLE_AREA_PX = 1e-10
#: Below this gamma the depth softmax is stabilised per pixel (running max); above it a fixed shift
#: suffices because z lies in [0, 1] (exp(1 / gamma) cannot overflow float32).
_PER_PIXEL_MAX_GAMMA = 1.0 / 80.0

# Rows of the per-face table (edge k runs from vertex k to vertex k+1, in pixel units).
_K = 19
_IDET = 15
_IZ = 16


def coverage_threshold(sigma: float) -> float:
    """Squared NDC distance beyond which an outside pair has ``D < 1e-4``: ``ln(1/1e-4 - 1) * sigma``."""
    return math.log(1.0 / COVERAGE_EPS - 1.0) * sigma


# ----------------------------------------------------------------------------------------------------
# per-face table


class _Faces:
    """Per-face data of one render call (faces flattened over the batch, in visiting order).

    Attributes:
        table: ``(N, 19)`` differentiable per-face table, ``N = B F``: per edge k (vertex k -> k+1)
            ``x_k, y_k, ex_k, ey_k, 1/|e_k|^2`` (pixels), then ``1/det`` (doubled signed area,
            pixel^2), then ``1/z_k`` (1/metres). Rows of invalid faces hold finite placeholders.
        order: ``(N,)`` original index (``b F + f``) of each row.
        valid: ``(N,)`` bool. c0, r0, bw, bh: footprint (first column/row, width, height; 0 if invalid).
        counts: ``bw * bh``. base: flat pixel index of each footprint's first pixel.
    """

    __slots__ = ("table", "order", "valid", "c0", "r0", "bw", "bh", "counts", "base")


def _prepare(
    vertices: torch.Tensor,
    faces: torch.Tensor,
    focal: float | torch.Tensor,
    principal_point: float | torch.Tensor,
    H: int,
    W: int,
    radius_px: float,
    sort: bool,
) -> _Faces:
    """Project, validate and (optionally) sort the faces, and build the differentiable face table.

    Args:
        vertices: ``(B, V, 3)`` camera frame, metres; non-finite samples must already be replaced by
            finite values (they are excluded through the validity of their faces by the caller).
        faces: ``(F, 3)`` long.
        radius_px: footprint growth (pixels).
        sort: visit faces in screen order (by footprint corner, within each sample) so that a chunk's
            pairs touch a compact band of pixels and the per-pixel accumulators stay in cache.
    """
    B, V, _ = vertices.shape
    F = faces.shape[0]
    dev = vertices.device
    z = vertices[..., 2]
    zsafe = torch.where(z > 0, z, torch.ones((), dtype=z.dtype, device=dev))
    uv = project_vertices(torch.cat([vertices[..., :2], zsafe[..., None]], -1), focal, principal_point)
    proj = torch.cat([uv, zsafe[..., None]], -1).reshape(B * V, 3)
    flat = (faces[None] + (torch.arange(B, device=dev) * V)[:, None, None]).reshape(B * F, 3)
    out = _Faces()
    with torch.no_grad():
        corners = proj.detach().index_select(0, flat.reshape(-1)).view(B * F, 3, 3)
        zmin = z.detach().reshape(-1).index_select(0, flat.reshape(-1)).view(B * F, 3).amin(1)
        xy = corners[..., :2]
        e0, e2 = xy[:, 1] - xy[:, 0], xy[:, 0] - xy[:, 2]
        det = e2[:, 0] * e0[:, 1] - e0[:, 0] * e2[:, 1]
        valid = (zmin > 0) & (det.abs() > MIN_DOUBLE_AREA_PX) & torch.isfinite(det)
        c0, r0, bw, bh = _face_boxes(xy[..., 0], xy[..., 1], valid, H, W, radius_px)
        order = _screen_order(c0, r0, valid, B, F, H, W) if sort else torch.arange(B * F, device=dev)
        if sort:
            c0, r0, bw, bh, valid = c0[order], r0[order], bw[order], bh[order], valid[order]
            flat = flat.index_select(0, order)
        out.counts = bw * bh
        out.base = _footprint_base(c0, r0, F, H, W)
    out.order, out.valid, out.c0, out.r0, out.bw, out.bh = order, valid, c0, r0, bw, bh
    fv = proj.index_select(0, flat.reshape(-1)).view(B * F, 3, 3)  # differentiable
    out.table = _table_from_corners(fv, valid)
    return out


def _table_from_corners(fv: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """``(N, 19)`` face table (see :class:`_Faces`) from corners ``(N, 3, 3)`` = ``(u, v, z)``."""
    xy = fv[..., :2]
    e = xy.roll(-1, dims=1) - xy  # e_k = v_{k+1} - v_k
    det = e[:, 2, 0] * e[:, 0, 1] - e[:, 0, 0] * e[:, 2, 1]  # cross(v1 - v0, v2 - v0)
    len2 = (e * e).sum(-1)
    one = torch.ones((), dtype=fv.dtype, device=fv.device)
    il = 1.0 / torch.where(len2 > 0, len2, one)
    idet = 1.0 / torch.where(valid, det, one)
    iz = 1.0 / fv[..., 2]  # z > 0 (placeholders for invalid faces)
    per_edge = torch.cat([xy, e, il[..., None]], dim=-1).flatten(1)  # (N, 15)
    return torch.cat([per_edge, idet[:, None], iz], dim=1)


def _face_boxes(
    xs: torch.Tensor, ys: torch.Tensor, valid: torch.Tensor, H: int, W: int, radius_px: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Pixel-index footprint of each face: columns ``[c0, c0 + bw)``, rows ``[r0, r0 + bh)``.

    Args:
        xs, ys: ``(N, 3)`` projected corners, pixels.

    Pixel ``(r, c)`` is in the footprint when its centre ``(c + 0.5, r + 0.5)`` lies within the face's
    bounding box grown by ``radius_px``. Invalid faces get an empty footprint.
    """
    x_lo = (xs.amin(1) - radius_px - 0.5).clamp(-1.0, W + 1.0).ceil()
    x_hi = (xs.amax(1) + radius_px - 0.5).clamp(-2.0, W + 1.0).floor()
    y_lo = (ys.amin(1) - radius_px - 0.5).clamp(-1.0, H + 1.0).ceil()
    y_hi = (ys.amax(1) + radius_px - 0.5).clamp(-2.0, H + 1.0).floor()
    c0 = x_lo.clamp(min=0).long()
    r0 = y_lo.clamp(min=0).long()
    bw = (x_hi.clamp(max=W - 1).long() - c0 + 1).clamp(min=0)
    bh = (y_hi.clamp(max=H - 1).long() - r0 + 1).clamp(min=0)
    bw = torch.where(valid, bw, torch.zeros_like(bw))
    bh = torch.where(valid, bh, torch.zeros_like(bh))
    return c0, r0, bw, bh


def _screen_order(
    c0: torch.Tensor, r0: torch.Tensor, valid: torch.Tensor, B: int, F: int, H: int, W: int
) -> torch.Tensor:
    """Permutation of the ``B*F`` faces that sorts each sample's faces by footprint corner (row-major),
    keeping samples in their blocks of ``F`` (invalid faces last in their block)."""
    key = torch.where(valid, r0 * W + c0, torch.full_like(c0, H * W))
    if B * F:
        key = key + torch.arange(B, device=c0.device).repeat_interleave(F) * (H * W + 1)
    return torch.sort(key, stable=True).indices


def _chunks(counts: torch.Tensor, max_pairs: int) -> list[tuple[int, int, int]]:
    """Split faces into consecutive ranges ``(f0, f1, pairs)`` of at most ``max_pairs`` candidates
    (a single face with more candidates gets its own range)."""
    cum = counts.cumsum(0)
    n = counts.shape[0]
    if n == 0:
        return []
    total = int(cum[-1])
    if total <= max_pairs:
        return [(0, n, total)] if total > 0 else []
    cum_cpu = cum.cpu()
    out = []
    f0, done = 0, 0
    while f0 < n:
        f1 = int(torch.searchsorted(cum_cpu, done + max_pairs, right=True))
        f1 = max(f1, f0 + 1)
        end = int(cum_cpu[f1 - 1])
        if end > done:
            out.append((f0, f1, end - done))
        f0, done = f1, end
    return out


def _enumerate(
    f0: int, f1: int, n_pairs: int, counts: torch.Tensor, base: torch.Tensor, bw: torch.Tensor, W: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Candidate pairs of faces ``[f0, f1)``.

    Args:
        counts: ``(N,)`` candidates per face (``bw * bh``); base: ``(N,)`` flat pixel index of each
            footprint's first pixel (``b H W + r0 W + c0``); bw: ``(N,)`` footprint widths.

    Returns:
        face index (into the N faces), flat pixel index (into B*H*W), and the pixel's column and row
        offsets inside the footprint (int64).
    """
    dev = counts.device
    cnt = counts[f0:f1]
    rel = torch.repeat_interleave(torch.arange(f1 - f0, device=dev), cnt, output_size=n_pairs)
    start = cnt.cumsum(0).sub_(cnt)  # exclusive prefix within the chunk
    local = torch.arange(n_pairs, device=dev).sub_(start.index_select(0, rel))
    w = bw[f0:f1].index_select(0, rel)
    roff = torch.div(local, w, rounding_mode="floor")
    coff = local.sub_(roff * w)
    pix = base[f0:f1].index_select(0, rel).add_(roff * W).add_(coff)
    return rel.add_(f0), pix, coff, roff


def _footprint_base(c0: torch.Tensor, r0: torch.Tensor, F: int, H: int, W: int) -> torch.Tensor:
    """Flat pixel index of each footprint's first pixel; face ``i`` belongs to sample ``i // F``."""
    b = torch.div(torch.arange(c0.shape[0], device=c0.device), max(F, 1), rounding_mode="floor")
    return b * (H * W) + r0 * W + c0


def _localize_(tableT: torch.Tensor, c0: torch.Tensor, r0: torch.Tensor) -> torch.Tensor:
    """In place on a ``(19, N)`` transposed table: vertex positions relative to the centre of the
    footprint's first pixel, so that a pair's pixel centre is its (column, row) offset in the footprint.
    Translations leave every gradient of the table unchanged."""
    cx = c0.to(tableT.dtype).add_(0.5)
    cy = r0.to(tableT.dtype).add_(0.5)
    for k in range(3):
        tableT[5 * k].sub_(cx)
        tableT[5 * k + 1].sub_(cy)
    return tableT


# ----------------------------------------------------------------------------------------------------
# pair geometry


def _barycentric_distance(
    tab: torch.Tensor, px: torch.Tensor, py: torch.Tensor, with_edges: bool = False
) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor] | None]:
    """Barycentric coordinates and squared distance to the triangle boundary (pixel^2) of each pair.

    Args:
        tab: ``(19, P)`` gathered face table (see :func:`_face_table`).
        px, py: ``(P,)`` pixel centres, pixels.
        with_edges: also return per-edge intermediates ``(dx, dy, t, rx, ry, d2_k)`` for edges 0, 1, 2
            (the backward pass needs them).

    Returns:
        ``w (3, P)`` barycentric coordinates, ``d2 (P,)`` squared distance to the closest point of the
        boundary (segment distances, valid inside and outside), and the edge intermediates or None.
    """
    P = px.shape[0]
    w = torch.empty(3, P, dtype=px.dtype, device=px.device)
    edges = []
    d2 = None
    for k in range(3):
        x, y, ex, ey, il = tab[5 * k : 5 * k + 5]
        dx = px - x
        dy = py - y
        wk = w[(k + 2) % 3]  # weight of the vertex opposite edge k: cross(e_k, p - v_k) / det
        torch.mul(ex, dy, out=wk)
        wk.addcmul_(ey, dx, value=-1.0).mul_(tab[_IDET])
        t = dx * ex
        t.addcmul_(dy, ey).mul_(il).clamp_(0.0, 1.0)
        rx = torch.addcmul(dx, t, ex, value=-1.0)
        ry = torch.addcmul(dy, t, ey, value=-1.0)
        dk = rx * rx
        dk.addcmul_(ry, ry)
        if with_edges:
            edges.append((dx, dy, t, rx, ry, dk))
            d2 = dk.clone() if k == 0 else torch.minimum(d2, dk, out=d2)
        else:
            d2 = dk if k == 0 else torch.minimum(d2, dk, out=d2)
    return w, d2, (edges if with_edges else None)


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


def _gather_rows(tableT: torch.Tensor, idx: torch.Tensor, rows: slice = slice(None)) -> torch.Tensor:
    """``tableT[rows][:, idx]`` as a contiguous ``(K, P)`` tensor (row-wise 1-D gathers are the fastest)."""
    src = tableT[rows]
    out = torch.empty(src.shape[0], idx.shape[0], dtype=src.dtype, device=src.device)
    for r in range(src.shape[0]):
        torch.index_select(src[r], 0, idx, out=out[r])
    return out


class _Settings:
    """Non-tensor settings of one render call."""

    def __init__(self, **kw):
        self.__dict__.update(kw)


def _pair_features(
    cfg: _Settings, feat: torch.Tensor, fid: torch.Tensor, wc: torch.Tensor, iz: torch.Tensor, s: torch.Tensor
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
    def forward(ctx, table: torch.Tensor, feat: torch.Tensor, cfg: _Settings):  # noqa: D102
        dtype, dev = table.dtype, table.device
        H, W, C = cfg.H, cfg.W, cfg.C
        N = cfg.B * H * W
        tableT = _localize_(table.t().contiguous(), cfg.c0, cfg.r0)
        k_sig = cfg.dist_scale / cfg.sigma  # pixel^2 -> x = d^2 / sigma in NDC units
        L = torch.zeros(N, dtype=dtype, device=dev)  # sum_j log(1 - D_j)
        if cfg.per_pixel_max:
            m = torch.full((N,), cfg.eps, dtype=dtype, device=dev)
            Z = torch.ones(N, dtype=dtype, device=dev)
        else:
            m = None
            Z = torch.full((N,), math.exp((cfg.eps - 1.0) / cfg.gamma), dtype=dtype, device=dev)
        num = torch.zeros(N, C, dtype=dtype, device=dev)
        saved: list[tuple[torch.Tensor, ...]] = []
        for f0, f1, n in cfg.chunks:
            fid, pix, coff, roff = _enumerate(f0, f1, n, cfg.counts, cfg.base, cfg.bw, W)
            px = coff.to(dtype)
            py = roff.to(dtype)
            tab = _gather_rows(tableT, fid, slice(0, _IZ))  # the 1/z rows only for kept pairs
            w, d2, _ = _barycentric_distance(tab, px, py)
            inside = w.amin(0) > 0
            keep = (inside | (d2 < cfg.thr_px)).nonzero().squeeze(1)
            fid, pix, d2, inside, coff, roff = (
                t.index_select(0, keep) for t in (fid, pix, d2, inside, coff, roff)
            )
            w = _gather_rows(w, keep)
            iz = _gather_rows(tableT, fid, slice(_IZ, None))
            del tab, px, py, keep
            x = torch.where(inside, d2, d2.neg()).mul_(k_sig)
            L.index_add_(0, pix, torch.nn.functional.softplus(x), alpha=-1.0)
            D = x.sigmoid_()
            zn, in_range, wc, _, s = _depth(w, iz, cfg.near, cfg.far)
            if cfg.per_pixel_max:
                # running per-pixel max of z (online softmax), updated on the pixels this chunk touches
                zm = zn.masked_fill_(~in_range, -math.inf)
                upix, inv = torch.unique(pix, return_inverse=True)
                m_old = m.index_select(0, upix)
                m_new = m_old.scatter_reduce(0, inv, zm, "amax")
                scale = torch.exp((m_old - m_new) / cfg.gamma)
                Z.index_copy_(0, upix, Z.index_select(0, upix) * scale)
                num.index_copy_(0, upix, num.index_select(0, upix) * scale[:, None])
                m.index_copy_(0, upix, m_new)
                e = zm.sub_(m_new.index_select(0, inv)).div_(cfg.gamma).exp_().mul_(D)
            else:
                e = zn.sub_(1.0).div_(cfg.gamma).exp_().mul_(D).masked_fill_(~in_range, 0.0)
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
        tableT = _localize_(table.t().contiguous(), cfg.c0, cfg.r0)
        k_sig = cfg.dist_scale / cfg.sigma
        g_feat = torch.zeros_like(feat) if ctx.needs_input_grad[1] else None
        gI = gI.contiguous() if gI is not None else torch.zeros_like(I)
        a = (gS * torch.exp(L)) if gS is not None else torch.zeros_like(L)  # dS/dx_j = (1 - S) D_j
        invZ = 1.0 / Z
        q = torch.linalg.vecdot(gI, I)
        if cfg.per_pixel_max:
            stats = torch.stack([a, q, invZ, m])
        else:
            stats = torch.stack([a, q, invZ])
        g_tabT = torch.zeros(_K, table.shape[0], dtype=dtype, device=table.device)
        inv_range = 1.0 / (cfg.far - cfg.near)
        for fid, pix, coff, roff in ctx.saved:
            px, py = coff.to(dtype), roff.to(dtype)
            tab = _gather_rows(tableT, fid)
            w, d2, edges = _barycentric_distance(tab, px, py, with_edges=True)
            del px, py
            inside = w.amin(0) > 0
            sgn_k = inside.to(dtype).mul_(2.0 * k_sig).sub_(k_sig)  # dx_j / d(d2) = +-k_sig
            D = torch.sigmoid(d2 * sgn_k)
            iz = tab[_IZ:]
            zn, in_range, wc, sw, s = _depth(w, iz, cfg.near, cfg.far)
            st = _gather_rows(stats, pix)
            if cfg.per_pixel_max:
                zn.sub_(st[3])
            else:
                zn.sub_(1.0)
            e = zn.div_(cfg.gamma).exp_().mul_(D).masked_fill_(~in_range, 0.0)
            Fj, wp, vf = _pair_features(cfg, feat, fid, wc, iz, s)
            gIp = gI.index_select(0, pix)
            ge = torch.linalg.vecdot(gIp, Fj).sub_(st[1]).mul_(st[2])  # dL/de_j
            del Fj
            gx = (1.0 - D).mul_(e).mul_(ge).addcmul_(st[0], D)  # dL/dx_j
            gzn = ge.mul_(e).div_(cfg.gamma)  # dL/dzn_j
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
            idet = tab[_IDET]
            g_idet = (g_w * w).sum(0).div_(idet)  # w = cr * idet
            g_w.mul_(idet)  # now dL/dcr
            # distance: d2 = min_k |d_k - t_k e_k|^2; d/dv_k = -2 r, d/de_k = -2 t r (envelope theorem)
            g_d2 = gx.mul_(sgn_k).mul_(-2.0)
            taken = None
            g_rows = torch.empty(_K, len(fid), dtype=dtype, device=table.device)
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
            g_rows[_IDET] = g_idet
            g_rows[_IZ:] = g_iz
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
        sigma: coverage sharpness (squared NDC distance; one pixel is ``2 / max(H, W)``).
        gamma: depth softmax temperature. near, far: depth range (metres). eps: background depth.
        max_pairs_per_chunk: peak-memory knob: candidate face-pixel pairs processed at once (transient
            memory about ``max_pairs_per_chunk * (120 + 12 C)`` bytes in float32).
        nonfinite: ``"raise"`` (ValueError naming the batch indices with non-finite vertices) or
            ``"mask"`` (those samples come out as NaN images with zero gradient; others unaffected).

    Returns:
        ``features (B, C, H, W)`` and ``silhouette (B, 1, H, W)`` in the dtype of ``vertices``.
    """
    if vertices.dim() != 3 or vertices.shape[-1] != 3:
        raise ValueError(f"vertices must be (B, V, 3), got {tuple(vertices.shape)}")
    faces = torch.as_tensor(faces, device=vertices.device)
    if faces.dim() != 2 or faces.shape[-1] != 3:
        raise ValueError(f"faces must be (F, 3), got {tuple(faces.shape)}")
    faces = faces.long()
    if sigma <= 0 or gamma <= 0 or not far > near:
        raise ValueError(f"need sigma > 0, gamma > 0 and far > near, got {sigma}, {gamma}, {near}, {far}")
    if nonfinite not in ("raise", "mask"):
        raise ValueError(f"nonfinite must be 'raise' or 'mask', got {nonfinite!r}")
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
        if face_features.dim() == 2:
            face_features = face_features[None].expand(B, *face_features.shape)
        if face_features.dim() != 3 or face_features.shape[:2] != (B, F):
            raise ValueError(
                f"face_features must be (F={F}, C) or (B={B}, F, C), got {tuple(face_features.shape)}"
            )
        C = face_features.shape[-1]
        feat = face_features.to(dtype).reshape(B * F, C)

    finite = torch.isfinite(vertices).all(-1).all(-1)
    bad = (~finite).nonzero().flatten().tolist()
    if bad and nonfinite == "raise":
        raise ValueError(f"soft_render: non-finite vertices in batch sample(s) {bad}")
    safe_vertices = torch.where(finite[:, None, None], vertices, torch.ones((), dtype=dtype, device=dev))
    dist_scale = (2.0 / max(H, W)) ** 2  # pixel^2 -> NDC^2
    thr_px = coverage_threshold(sigma) / dist_scale
    fc = _prepare(safe_vertices, faces, focal, principal_point, H, W, math.sqrt(thr_px), sort=True)
    if bad:
        with torch.no_grad():
            ok = finite.repeat_interleave(F).index_select(0, fc.order)
            fc.counts = fc.counts * ok
    chunks = _chunks(fc.counts, int(max_pairs_per_chunk))
    feat = feat.index_select(0, fc.order)
    cfg = _Settings(
        B=B, F=F, H=H, W=W, C=C, sigma=float(sigma), gamma=float(gamma), near=float(near), far=float(far),
        eps=float(eps), dist_scale=dist_scale, thr_px=thr_px, vertex_mode=vertex_mode,
        per_pixel_max=gamma < _PER_PIXEL_MAX_GAMMA, counts=fc.counts, base=fc.base, bw=fc.bw, c0=fc.c0,
        r0=fc.r0, chunks=chunks,
    )  # fmt: skip
    I, S = _SoftRasterize.apply(fc.table, feat, cfg)
    features = I.reshape(B, H, W, C).permute(0, 3, 1, 2)
    silhouette = S.reshape(B, 1, H, W)
    if bad:
        nan = torch.full((), math.nan, dtype=dtype, device=dev)
        features = torch.where(finite[:, None, None, None], features, nan)
        silhouette = torch.where(finite[:, None, None, None], silhouette, nan)
    return features, silhouette


class SoftRasterizer(nn.Module):
    """Holds soft-rendering settings; ``forward`` calls :func:`soft_render`.

    Args:
        image_size: ``(H, W)`` or an int for square images.
        focal, principal_point: default intrinsics (pixels); may be overridden per call.
        sigma, gamma, near, far, eps, max_pairs_per_chunk, nonfinite: see :func:`soft_render`.
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
    ) -> None:
        super().__init__()
        self.image_size = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
        self.focal = focal
        H, W = self.image_size
        self.principal_point = principal_point if principal_point is not None else (W / 2.0, H / 2.0)
        self.sigma, self.gamma, self.near, self.far, self.eps = sigma, gamma, near, far, eps
        self.max_pairs_per_chunk = max_pairs_per_chunk
        self.nonfinite = nonfinite

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
            sigma=self.sigma,
            gamma=self.gamma,
            near=self.near,
            far=self.far,
            eps=self.eps,
            max_pairs_per_chunk=self.max_pairs_per_chunk,
            nonfinite=self.nonfinite,
        )

    def extra_repr(self) -> str:  # noqa: D102
        return (
            f"image_size={self.image_size}, sigma={self.sigma}, gamma={self.gamma}, "
            f"near={self.near}, far={self.far}"
        )
