"""Triton kernels of the fused soft rasteriser on CUDA (:mod:`dsrbody.render.fused_triton`); imported
only by it (once compiled for the GPU, and once more under Triton's interpreter for CPU tensors, which is
how the tests check them on a machine without a GPU).

Work is split by screen tiles: one program per ``(sample, tile)`` of ``TH x TW`` pixels, looping over
the faces whose footprint meets the tile (the tile's slice of ``face_list``, ``tile_ptr``; the binning is
done in PyTorch by the caller). For each face, every pixel of the tile at once: barycentrics, segment
distances, the keep test (footprint and ``inside or d^2 < thr``), coverage, silhouette term, depth
softmax term and the ``C`` feature channels (``CP``, the next power of two, lanes). Nothing is written
per pair: the forward pass accumulates per pixel in registers and stores ``I``, ``S`` and the statistics
the backward pass needs (``log prod (1 - D)``, ``Z`` and, with ``PPM``, the running maximum ``m``); the
backward pass recomputes each pair, applies the hand-derived gradients of the reference path
(``_SoftRasterize`` in :mod:`dsrbody.render.soft`), sums them over the tile's pixels and adds them to the
face's row of the face-table gradient with one vector atomic add (a face meets 1-4 tiles).

Conventions as :mod:`dsrbody.render.pairs`: the face table ``(N, 19)`` in absolute pixel coordinates
(rows ``5k .. 5k+4``: ``x_k, y_k, ex_k, ey_k, 1/|e_k|^2``; row 15 ``1/det``; rows 16-18 ``1/z_k``), pixel
centre ``(c + 0.5, r + 0.5)``, flat pixel index ``b H W + r W + c``, face ``i`` of sample ``i // F``.
Arithmetic is in the table's dtype (float32 or float64).
"""

from __future__ import annotations

import triton
import triton.language as tl

ROWS = 19


@triton.jit
def _pair_geometry(tab, f, px, py):
    """Barycentrics ``w0, w1, w2``, squared boundary distance ``d2`` and the per-edge ``dx, dy, t, rx,
    ry, dk`` of face row ``f`` at pixel centres ``px, py`` (vectors)."""
    base = tab + f * 19
    x0 = tl.load(base + 0)
    y0 = tl.load(base + 1)
    ex0 = tl.load(base + 2)
    ey0 = tl.load(base + 3)
    il0 = tl.load(base + 4)
    x1 = tl.load(base + 5)
    y1 = tl.load(base + 6)
    ex1 = tl.load(base + 7)
    ey1 = tl.load(base + 8)
    il1 = tl.load(base + 9)
    x2 = tl.load(base + 10)
    y2 = tl.load(base + 11)
    ex2 = tl.load(base + 12)
    ey2 = tl.load(base + 13)
    il2 = tl.load(base + 14)
    idet = tl.load(base + 15)
    dx0 = px - x0
    dy0 = py - y0
    dx1 = px - x1
    dy1 = py - y1
    dx2 = px - x2
    dy2 = py - y2
    # the weight of the vertex opposite edge k is cross(e_k, p - v_k) / det
    w2 = (ex0 * dy0 - ey0 * dx0) * idet
    w0 = (ex1 * dy1 - ey1 * dx1) * idet
    w1 = (ex2 * dy2 - ey2 * dx2) * idet
    t0 = tl.minimum(tl.maximum((dx0 * ex0 + dy0 * ey0) * il0, 0.0), 1.0)
    t1 = tl.minimum(tl.maximum((dx1 * ex1 + dy1 * ey1) * il1, 0.0), 1.0)
    t2 = tl.minimum(tl.maximum((dx2 * ex2 + dy2 * ey2) * il2, 0.0), 1.0)
    rx0 = dx0 - t0 * ex0
    ry0 = dy0 - t0 * ey0
    rx1 = dx1 - t1 * ex1
    ry1 = dy1 - t1 * ey1
    rx2 = dx2 - t2 * ex2
    ry2 = dy2 - t2 * ey2
    dk0 = rx0 * rx0 + ry0 * ry0
    dk1 = rx1 * rx1 + ry1 * ry1
    dk2 = rx2 * rx2 + ry2 * ry2
    d2 = tl.minimum(tl.minimum(dk0, dk1), dk2)
    return (w0, w1, w2, d2, idet, ex0, ey0, ex1, ey1, ex2, ey2, dx0, dy0, dx1, dy1, dx2, dy2,
            t0, t1, t2, rx0, ry0, rx1, ry1, rx2, ry2, dk0, dk1)  # fmt: skip


@triton.jit
def _depth(tab, f, w0, w1, w2, near, far, HI: tl.constexpr):
    """SoftRas depth: clipped renormalised barycentrics ``wc``, their sum ``sw``, ``iz_k``, ``s = 1 / zp``,
    the normalised depth ``zn`` and ``in_range`` (``near <= zp <= far``); in float64 with ``HI`` (small
    gamma, where ``exp(zn / gamma)`` magnifies the depth's rounding)."""
    base = tab + f * 19
    iz0 = tl.load(base + 16)
    iz1 = tl.load(base + 17)
    iz2 = tl.load(base + 18)
    if HI:
        w0, w1, w2 = w0.to(tl.float64), w1.to(tl.float64), w2.to(tl.float64)
        iz0, iz1, iz2 = iz0.to(tl.float64), iz1.to(tl.float64), iz2.to(tl.float64)
        near, far = near.to(tl.float64), far.to(tl.float64)
    c0 = tl.minimum(tl.maximum(w0, 0.0), 1.0)
    c1 = tl.minimum(tl.maximum(w1, 0.0), 1.0)
    c2 = tl.minimum(tl.maximum(w2, 0.0), 1.0)
    sw = c0 + c1 + c2
    wc0 = c0 / sw
    wc1 = c1 / sw
    wc2 = c2 / sw
    s = wc0 * iz0 + wc1 * iz1 + wc2 * iz2
    zp = 1.0 / s
    zn = (far - zp) / (far - near)
    in_range = (zp >= near) & (zp <= far)
    return wc0, wc1, wc2, sw, iz0, iz1, iz2, s, zn, in_range


@triton.jit
def _params(params):
    """The call's numbers, stored in the table's dtype (scalar arguments would be float32): the keep
    threshold ``thr`` (pixel^2), ``k_sig`` (pixel^2 -> ``d^2 / sigma``), ``near``, ``far``, ``gamma``,
    ``eps`` and ``1 / (far - near)``."""
    return (tl.load(params + 0), tl.load(params + 1), tl.load(params + 2), tl.load(params + 3),
            tl.load(params + 4), tl.load(params + 5), tl.load(params + 6))  # fmt: skip


@triton.jit
def _lane(k: tl.constexpr, x):
    """``sum(x)`` (a tile's pixels) in lane ``k`` of a 32-lane vector, zeros elsewhere."""
    return tl.where(tl.arange(0, 32) == k, tl.sum(x, axis=0), 0.0)


@triton.jit
def _tile(pid, H, W, nTx, nTy, TH: tl.constexpr, TW: tl.constexpr):
    """The pixels of program ``pid``'s tile: rows, columns, inside-the-image mask, flat pixel indices."""
    per = nTx * nTy
    b = pid // per
    t = pid - b * per
    ty = t // nTx
    tx = t - ty * nTx
    offs = tl.arange(0, TH * TW)
    rr = ty * TH + offs // TW
    cc = tx * TW + offs % TW
    in_img = (rr < H) & (cc < W)
    pix = b * H * W + rr * W + cc
    return rr, cc, in_img, pix


@triton.jit
def _kept(foot, f, rr, cc, inside, d2, thr, in_img):
    """Pairs of face ``f`` that the reference path keeps: pixel in the footprint, inside or close."""
    c0 = tl.load(foot + f * 4 + 0)
    r0 = tl.load(foot + f * 4 + 1)
    bw = tl.load(foot + f * 4 + 2)
    bh = tl.load(foot + f * 4 + 3)
    in_fp = (cc >= c0) & (cc < c0 + bw) & (rr >= r0) & (rr < r0 + bh)
    return in_img & in_fp & (inside | (d2 < thr))


@triton.jit
def forward_kernel(
    tab, feat, feat_rows, foot, face_list, tile_ptr,
    out_I, out_L, out_Z, out_m, params,
    H, W, nTx, nTy, C,
    TH: tl.constexpr, TW: tl.constexpr, CP: tl.constexpr, PPM: tl.constexpr,
):  # fmt: skip
    """Per pixel of one tile: ``I = num / Z`` (``(BHW, C)``), ``L = sum log(1 - D)``, ``Z`` and ``m``.
    ``params``: :func:`_params`' numbers in the table's dtype."""
    pid = tl.program_id(0)
    thr, k_sig, near, far, gamma, eps, inv_range = _params(params)
    rr, cc, in_img, pix = _tile(pid, H, W, nTx, nTy, TH, TW)
    px = cc.to(tab.dtype.element_ty) + 0.5
    py = rr.to(tab.dtype.element_ty) + 0.5
    zero = tl.zeros([TH * TW], dtype=tab.dtype.element_ty)
    L = zero
    if PPM:
        m = zero.to(tl.float64) + eps  # the running maximum of zn, float64 as zn
        Z = zero + 1.0
    else:
        m = zero
        Z = zero + tl.exp((eps - 1.0) / gamma)
    ch = tl.arange(0, CP)
    ch_ok = ch < C
    num = tl.zeros([TH * TW, CP], dtype=tab.dtype.element_ty)
    start = tl.load(tile_ptr + pid)
    end = tl.load(tile_ptr + pid + 1)
    for j in range(start, end):
        f = tl.load(face_list + j)
        (w0, w1, w2, d2, idet, ex0, ey0, ex1, ey1, ex2, ey2, dx0, dy0, dx1, dy1, dx2, dy2,
         t0, t1, t2, rx0, ry0, rx1, ry1, rx2, ry2, dk0, dk1) = _pair_geometry(tab, f, px, py)  # fmt: skip
        inside = (w0 > 0) & (w1 > 0) & (w2 > 0)
        keep = _kept(foot, f, rr, cc, inside, d2, thr, in_img)
        x = tl.where(inside, d2, -d2) * k_sig
        # log(1 - D) = -softplus(x), computed stably
        sp = tl.maximum(x, 0.0) + tl.log(1.0 + tl.exp(-tl.abs(x)))
        L = L - tl.where(keep, sp, 0.0)
        D = 1.0 / (1.0 + tl.exp(-x))
        wc0, wc1, wc2, sw, iz0, iz1, iz2, s, zn, in_range = _depth(tab, f, w0, w1, w2, near, far, PPM)
        use = keep & in_range
        fj = tl.load(feat + (f % feat_rows) * C + ch, mask=ch_ok, other=0.0)
        if PPM:
            zm = tl.where(use, zn, -float("inf"))
            m_new = tl.maximum(m, zm)
            scale = tl.exp((m - m_new) / gamma).to(Z.dtype)
            Z = Z * scale
            num = num * scale[:, None]
            m = m_new
            e = tl.where(use, tl.exp((zn - m_new) / gamma).to(D.dtype) * D, 0.0)
        else:
            e = tl.where(use, tl.exp((zn - 1.0) / gamma) * D, 0.0)
        Z = Z + e
        num = num + e[:, None] * fj[None, :]
    I = num / Z[:, None]
    tl.store(out_I + pix[:, None] * C + ch[None, :], I, mask=in_img[:, None] & ch_ok[None, :])
    tl.store(out_L + pix, L, mask=in_img)
    tl.store(out_Z + pix, Z, mask=in_img)
    if PPM:
        tl.store(out_m + pix, m, mask=in_img)


@triton.jit
def backward_kernel(
    tab, feat, feat_rows, foot, face_list, tile_ptr,
    stats_a, stats_q, stats_invZ, stats_m, gI, g_tab, g_feat, params,
    H, W, nTx, nTy, C,
    TH: tl.constexpr, TW: tl.constexpr, CP: tl.constexpr, PPM: tl.constexpr, FEAT_GRAD: tl.constexpr,
):  # fmt: skip
    """The gradients of one tile's pairs, summed per face into ``g_tab (N, 19)`` and ``g_feat``.

    Per-pixel statistics (from the forward outputs and the incoming gradients): ``a = gS (1 - S)``,
    ``q = gI . I``, ``invZ = 1 / Z`` and, with ``PPM``, ``m``.
    """
    pid = tl.program_id(0)
    thr, k_sig, near, far, gamma, eps, inv_range = _params(params)
    rr, cc, in_img, pix = _tile(pid, H, W, nTx, nTy, TH, TW)
    px = cc.to(tab.dtype.element_ty) + 0.5
    py = rr.to(tab.dtype.element_ty) + 0.5
    a = tl.load(stats_a + pix, mask=in_img, other=0.0)
    q = tl.load(stats_q + pix, mask=in_img, other=0.0)
    invZ = tl.load(stats_invZ + pix, mask=in_img, other=0.0)
    if PPM:
        m = tl.load(stats_m + pix, mask=in_img, other=0.0)  # float64
    else:
        m = a * 0.0 + 1.0
    ch = tl.arange(0, CP)
    ch_ok = ch < C
    gIb = tl.load(gI + pix[:, None] * C + ch[None, :], mask=in_img[:, None] & ch_ok[None, :], other=0.0)
    start = tl.load(tile_ptr + pid)
    end = tl.load(tile_ptr + pid + 1)
    for j in range(start, end):
        f = tl.load(face_list + j)
        (w0, w1, w2, d2, idet, ex0, ey0, ex1, ey1, ex2, ey2, dx0, dy0, dx1, dy1, dx2, dy2,
         t0, t1, t2, rx0, ry0, rx1, ry1, rx2, ry2, dk0, dk1) = _pair_geometry(tab, f, px, py)  # fmt: skip

        inside = (w0 > 0) & (w1 > 0) & (w2 > 0)
        keep = _kept(foot, f, rr, cc, inside, d2, thr, in_img)
        sgn = tl.where(inside, k_sig, -k_sig)
        D = 1.0 / (1.0 + tl.exp(-(d2 * sgn)))
        wc0, wc1, wc2, sw, iz0, iz1, iz2, s, zn, in_range = _depth(tab, f, w0, w1, w2, near, far, PPM)
        use = keep & in_range
        e = tl.where(use, tl.exp((zn - m) / gamma).to(D.dtype) * D, 0.0)
        fj = tl.load(feat + (f % feat_rows) * C + ch, mask=ch_ok, other=0.0)
        ge = (tl.sum(gIb * fj[None, :], axis=1) - q) * invZ  # dL/de
        gx = tl.where(keep, (1.0 - D) * e * ge + a * D, 0.0)  # dL/dx
        gzn = ge * e / gamma
        if FEAT_GRAD:
            G = tl.sum(gIb * (e * invZ)[:, None], axis=0)
            tl.atomic_add(g_feat + (f % feat_rows) * C + ch, G, mask=ch_ok)
        # depth chain: zn = (far - 1/s) / (far - near), s = sum_k wc_k iz_k
        gs = tl.where(use, gzn / (s * s) * inv_range, 0.0).to(D.dtype)
        wc0, wc1, wc2 = wc0.to(D.dtype), wc1.to(D.dtype), wc2.to(D.dtype)
        g_iz0 = gs * wc0
        g_iz1 = gs * wc1
        g_iz2 = gs * wc2
        gsw = gs / sw.to(D.dtype)
        s = s.to(D.dtype)
        g_w0 = tl.where((w0 < 0) | (w0 > 1), 0.0, (iz0.to(D.dtype) - s) * gsw)
        g_w1 = tl.where((w1 < 0) | (w1 > 1), 0.0, (iz1.to(D.dtype) - s) * gsw)
        g_w2 = tl.where((w2 < 0) | (w2 > 1), 0.0, (iz2.to(D.dtype) - s) * gsw)
        g_idet = (g_w0 * w0 + g_w1 * w1 + g_w2 * w2) / idet
        gc0 = g_w0 * idet  # dL/d cross product of the vertex's opposite edge
        gc1 = g_w1 * idet
        gc2 = g_w2 * idet
        # distance: d2 = min_k |r_k|^2; d/dv_k = -2 r, d/de_k = -2 t r on the closest edge
        g_d2 = gx * sgn * -2.0
        s0 = dk0 == d2
        s1 = (dk1 == d2) & (~s0)
        s2 = ~(s0 | s1)
        gd0 = tl.where(s0, g_d2, 0.0)
        gd1 = tl.where(s1, g_d2, 0.0)
        gd2 = tl.where(s2, g_d2, 0.0)
        # the face's 19 table rows at once (rows 4, 9, 14, the inverse squared edge lengths, get nothing:
        # the envelope theorem); edge 0 carries the weight of vertex 2, edge 1 of vertex 0, edge 2 of
        # vertex 1
        sums = (
            _lane(0, gd0 * rx0 + gc2 * ey0) + _lane(1, gd0 * ry0 - gc2 * ex0)
            + _lane(2, gd0 * rx0 * t0 + gc2 * dy0) + _lane(3, gd0 * ry0 * t0 - gc2 * dx0)
            + _lane(5, gd1 * rx1 + gc0 * ey1) + _lane(6, gd1 * ry1 - gc0 * ex1)
            + _lane(7, gd1 * rx1 * t1 + gc0 * dy1) + _lane(8, gd1 * ry1 * t1 - gc0 * dx1)
            + _lane(10, gd2 * rx2 + gc1 * ey2) + _lane(11, gd2 * ry2 - gc1 * ex2)
            + _lane(12, gd2 * rx2 * t2 + gc1 * dy2) + _lane(13, gd2 * ry2 * t2 - gc1 * dx2)
            + _lane(15, g_idet) + _lane(16, g_iz0) + _lane(17, g_iz1) + _lane(18, g_iz2)
        )  # fmt: skip
        rows = tl.arange(0, 32)
        write = (rows < 19) & (rows != 4) & (rows != 9) & (rows != 14)
        tl.atomic_add(g_tab + f * 19 + rows, sums.to(g_tab.dtype.element_ty), mask=write)
