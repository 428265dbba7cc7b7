"""Numba kernels of the fused soft rasteriser (:mod:`dsrbody.render.fused`); imported only by it.

Importing this module imports numba; the kernels compile on first use and are cached on disk
(``cache=True``: next to this file, or in numba's user-wide cache folder when that is read-only).

Every kernel works on numpy views of CPU tensors. Conventions (as :mod:`dsrbody.render.pairs`):
``proj (B V, 3)`` projected vertices ``(u, v, z)`` (pixels, pixels, metres), ``faces (F, 3)`` int64, faces
flattened over the batch (face ``i`` is face ``i % F`` of sample ``i // F``), flat pixel index
``b H W + r W + c``, pixel centre ``(c + 0.5, r + 0.5)``. ``foot (N, 4)`` int32 is each face's footprint
``(c0, r0, bw, bh)`` (``bw = bh = 0`` for a face that cannot be drawn) and ``off (N,)`` int64 the index
of its first candidate pair in ``De (2, candidates)``, which holds per candidate pair (row-major in the
footprint) the coverage ``D`` (-1 for a pair that is not kept) and the softmax term ``e`` the forward pass
computed, so that the backward pass needs neither the keep test nor an exponential. Geometry is computed
in float64 whatever the input dtype, in coordinates local to the footprint's first pixel centre;
per-pixel sums and statistics are kept in the input dtype (as the reference path does), the statistics
in float64 for small gamma (fused.py).

Speed: per face, the geometry of its candidate pairs (and in the forward pass their two exponentials)
is computed first by a loop without branches into a small scratch, which the compiler vectorises (8
float64 lanes: ``_exp_parts`` is an exponential without a libm call), together with each candidate's pixel
offset; the kept candidates are then listed without a branch, and a scalar loop applies them to their
pixels (a fifth of the candidates are dropped in no predictable pattern: the list spares the pair loops
that branch). The backward pass lists a face's kept pairs from the ``D`` the forward pass stored, gathers
their per-pixel statistics (scalar), then runs one vectorised loop over the kept pairs only (padded to
whole vectors) that recomputes their geometry and applies the chain rule, without a scratch of the
geometry in between. The number of channels ``C`` is a constant of the compiled kernels (the length of
the ``chans`` tuple, one compilation per ``C``), so that the channel loops are unrolled. The kernels use
numpy's error model (a division by zero gives inf instead of
raising): Python's ``ZeroDivisionError`` check is a branch per division, which stops the vectorisation.

A face's edge ``k`` goes from vertex ``k`` to vertex ``k + 1``; the barycentric coordinate of the vertex
opposite edge ``k`` (vertex ``(k + 2) % 3``) is ``cross(e_k, p - v_k) / det``, ``det`` the doubled signed
area ``cross(v1 - v0, v2 - v0)``; the formulas and the hand-derived backward are those of
:mod:`dsrbody.render.soft` (its ``_SoftRasterize``), per pair instead of per pass.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from dsrbody.render.pairs import MIN_DOUBLE_AREA_PX

_FM = {"contract", "arcp", "nsz", "reassoc"}


@njit(cache=True, nogil=True, fastmath=_FM, error_model="numpy")
def _corners(proj, faces, V, F, i):
    """Vertex rows of face ``i`` in ``proj``."""
    b = i // F
    f = i - b * F
    base = b * V
    return base + faces[f, 0], base + faces[f, 1], base + faces[f, 2]


@njit(cache=True, nogil=True, parallel=True, fastmath=_FM, error_model="numpy")
def footprints(proj, faces, V, ok, H, W, radius, foot):
    """Validity and footprint of every face (as :func:`dsrbody.render.pairs.prepare_faces`): a face is drawn
    when its sample is ``ok``, its three vertices have ``z > 0`` and its doubled projected area exceeds
    :data:`~dsrbody.render.pairs.MIN_DOUBLE_AREA_PX`; its footprint holds the pixels whose centre lies in its
    screen bounding box grown by ``radius`` (pixels)."""
    F = faces.shape[0]
    N = foot.shape[0]
    for i in prange(N):
        a, b_, c = _corners(proj, faces, V, F, i)
        x0, y0, z0 = float(proj[a, 0]), float(proj[a, 1]), float(proj[a, 2])
        x1, y1, z1 = float(proj[b_, 0]), float(proj[b_, 1]), float(proj[b_, 2])
        x2, y2, z2 = float(proj[c, 0]), float(proj[c, 1]), float(proj[c, 2])
        ex0, ey0 = x1 - x0, y1 - y0
        ex2, ey2 = x0 - x2, y0 - y2
        det = ex2 * ey0 - ex0 * ey2
        good = ok[i // F] and min(z0, z1, z2) > 0.0 and abs(det) > MIN_DOUBLE_AREA_PX and math.isfinite(det)
        if not good:
            foot[i, 0] = 0
            foot[i, 1] = 0
            foot[i, 2] = 0
            foot[i, 3] = 0
            continue
        x_lo = math.ceil(min(max(min(x0, x1, x2) - radius - 0.5, -1.0), W + 1.0))
        x_hi = math.floor(min(max(max(x0, x1, x2) + radius - 0.5, -2.0), W + 1.0))
        y_lo = math.ceil(min(max(min(y0, y1, y2) - radius - 0.5, -1.0), H + 1.0))
        y_hi = math.floor(min(max(max(y0, y1, y2) + radius - 0.5, -2.0), H + 1.0))
        c0 = max(int(x_lo), 0)
        r0 = max(int(y_lo), 0)
        bw = max(min(int(x_hi), W - 1) - c0 + 1, 0)
        bh = max(min(int(y_hi), H - 1) - r0 + 1, 0)
        if bw == 0 or bh == 0:
            bw = 0
            bh = 0
        foot[i, 0] = c0
        foot[i, 1] = r0
        foot[i, 2] = bw
        foot[i, 3] = bh


@njit(cache=True, nogil=True, error_model="numpy")
def pair_offsets(foot, off):
    """``off[i]``: the first slot of face ``i``'s candidate pairs (``bw bh`` of them, row-major in its
    footprint) in ``De``; returns the number of candidates in all."""
    total = 0
    for i in range(foot.shape[0]):
        off[i] = total
        total += np.int64(foot[i, 2]) * np.int64(foot[i, 3])
    return total


@njit(cache=True, nogil=True, fastmath=_FM, error_model="numpy")
def _setup(proj, faces, V, F, i, c0, r0):
    """Face ``i`` in coordinates local to its footprint's first pixel centre: vertices, edge vectors,
    inverse squared edge lengths, ``1 / det`` and inverse depths."""
    a, b_, c = _corners(proj, faces, V, F, i)
    ox = c0 + 0.5
    oy = r0 + 0.5
    x0, y0 = proj[a, 0] - ox, proj[a, 1] - oy
    x1, y1 = proj[b_, 0] - ox, proj[b_, 1] - oy
    x2, y2 = proj[c, 0] - ox, proj[c, 1] - oy
    ex0, ey0 = x1 - x0, y1 - y0
    ex1, ey1 = x2 - x1, y2 - y1
    ex2, ey2 = x0 - x2, y0 - y2
    il0 = 1.0 / (ex0 * ex0 + ey0 * ey0)
    il1 = 1.0 / (ex1 * ex1 + ey1 * ey1)
    il2 = 1.0 / (ex2 * ex2 + ey2 * ey2)
    idet = 1.0 / (ex2 * ey0 - ex0 * ey2)
    iz0 = 1.0 / proj[a, 2]
    iz1 = 1.0 / proj[b_, 2]
    iz2 = 1.0 / proj[c, 2]
    return (x0, y0, x1, y1, x2, y2, ex0, ey0, ex1, ey1, ex2, ey2, il0, il1, il2, idet, iz0, iz1, iz2)


@njit(cache=True, nogil=True, fastmath=_FM, error_model="numpy")
def _segment(dx, dy, ex, ey, il):
    """Clamped parameter, residual and squared distance of the point at offset ``(dx, dy)`` from an edge's
    first vertex to the edge segment ``t (ex, ey)``, ``t`` in [0, 1]."""
    t = min(max((dx * ex + dy * ey) * il, 0.0), 1.0)
    rx = dx - t * ex
    ry = dy - t * ey
    return t, rx, ry, rx * rx + ry * ry


@njit(cache=True, nogil=True, fastmath=_FM, error_model="numpy")
def _geometry(px, py, x0, y0, x1, y1, x2, y2, ex0, ey0, ex1, ey1, ex2, ey2, il0, il1, il2, idet, thr):
    """One pair: ``keep, inside, d2, sel, w0, w1, w2``: the keep test (inside, or squared distance below
    ``thr``), the squared distance ``d2`` to the triangle boundary (the least of the three segment
    distances, as :func:`dsrbody.render.pairs.barycentric_distance`), the edge ``sel`` it comes from (the
    lowest on ties) and the barycentric coordinates. Written without data-dependent branches: about a
    quarter of the candidates are rejected in no predictable pattern."""
    dx0 = px - x0
    dy0 = py - y0
    dx1 = px - x1
    dy1 = py - y1
    dx2 = px - x2
    dy2 = py - y2
    w2 = (ex0 * dy0 - ey0 * dx0) * idet  # edge k -> coordinate of vertex (k + 2) % 3
    w0 = (ex1 * dy1 - ey1 * dx1) * idet
    w1 = (ex2 * dy2 - ey2 * dx2) * idet
    d0 = _segment(dx0, dy0, ex0, ey0, il0)[3]
    d1 = _segment(dx1, dy1, ex1, ey1, il1)[3]
    dd = _segment(dx2, dy2, ex2, ey2, il2)[3]
    d01 = min(d0, d1)
    sel = np.int64(d1 < d0)
    d2 = min(d01, dd)
    sel = np.int64(2) if dd < d01 else sel
    inside = (w0 > 0.0) & (w1 > 0.0) & (w2 > 0.0)
    return inside | (d2 < thr), inside, d2, sel, w0, w1, w2


#: Candidates whose geometry is computed in one vectorised block (:func:`_pair_block`).
_CHUNK = 64
_LOG2E = 1.4426950408889634
_LN2_HI = 0.6931471803691238  # ln 2 in two parts (Cody and Waite)
_LN2_LO = 1.9082149292705877e-10


@njit(cache=True, nogil=True, fastmath=_FM, error_model="numpy", inline="always")
def _exp_parts(x):
    """``exp(x) = p 2^n`` for ``x`` clamped to [-708, 709]: ``p = exp(r)``, ``r = x - n ln 2`` in
    [-0.35, 0.35], by its Taylor polynomial of degree 11 (relative error below 1e-13), and the bits of
    ``2^n`` as an int64 (``(n + 1023) << 52``), to be viewed as float64. Branch-free and without a call into
    libm, so that a loop of them vectorises (glibc's ``exp`` does not: 14-32 ns each in a loop of them on
    this machine, against 1.3 ns per element)."""
    x = min(max(x, -708.0), 709.0)
    n = math.floor(x * _LOG2E + 0.5)
    r = (x - n * _LN2_HI) - n * _LN2_LO
    q = 1.0 / 39916800.0
    q = 1.0 / 3628800.0 + r * q
    q = 1.0 / 362880.0 + r * q
    q = 1.0 / 40320.0 + r * q
    q = 1.0 / 5040.0 + r * q
    q = 1.0 / 720.0 + r * q
    q = 1.0 / 120.0 + r * q
    q = 1.0 / 24.0 + r * q
    q = 1.0 / 6.0 + r * q
    q = 0.5 + r * q
    q = 1.0 + r * q
    q = 1.0 + r * q
    return q, (np.int64(n) + 1023) << 52


@njit(cache=True, nogil=True, fastmath=_FM, error_model="numpy")
def _depth(w0, w1, w2, iz0, iz1, iz2):
    """Clipped renormalised barycentrics, the inverse of their sum before renormalising, and
    ``s = 1 / zp``."""
    c0 = min(max(w0, 0.0), 1.0)
    c1 = min(max(w1, 0.0), 1.0)
    c2 = min(max(w2, 0.0), 1.0)
    sw = c0 + c1 + c2
    isw = 1.0 / sw
    c0 *= isw
    c1 *= isw
    c2 *= isw
    return c0, c1, c2, isw, c0 * iz0 + c1 * iz1 + c2 * iz2


@njit(cache=True, nogil=True, fastmath=_FM, error_model="numpy")
def _forward_band(
    b, R0, R1, proj, faces, V, foot, off, feat, chans, B, H, W, thr, ksig, gamma, near, far, eps,
    per_pixel_max, I, S, P, Z, M, De, store,
):  # fmt: skip
    """:func:`forward` for rows ``[R0, R1)`` of sample ``b``."""
    F = faces.shape[0]
    C = len(chans)  # a constant of the compiled code (see forward)
    K = feat.shape[1]
    shared = feat.shape[0] != B * F
    inv_range = 1.0 / (far - near)
    inv_gamma = 1.0 / gamma
    z_init = 1.0 if per_pixel_max else math.exp((eps - 1.0) * inv_gamma)
    g_D = np.empty(_CHUNK)
    g_omD = np.empty(_CHUNK)
    g_z = np.empty(_CHUNK)
    g_n1 = np.empty(_CHUNK, dtype=np.int64)
    g_n2 = np.empty(_CHUNK, dtype=np.int64)
    g_s1 = g_n1.view(np.float64)
    g_s2 = g_n2.view(np.float64)
    g_pix = np.empty(_CHUNK)  # pixel offset of each candidate from the band's first footprint pixel
    g_kept = np.empty(_CHUNK, dtype=np.int64)  # the kept candidates of a block, in order
    for p in range(b * H * W + R0 * W, b * H * W + R1 * W):
        for ch in range(C):
            I[p, ch] = 0.0
        P[p] = 1.0
        Z[p] = z_init
        if per_pixel_max:
            M[p] = eps
    for f in range(F):
        i = b * F + f
        bw = foot[i, 2]
        bh = foot[i, 3]
        r0 = foot[i, 1]
        if bw == 0 or r0 >= R1 or r0 + bh <= R0:
            continue
        c0 = foot[i, 0]
        fi = f if shared else i
        (x0, y0, x1, y1, x2, y2, ex0, ey0, ex1, ey1, ex2, ey2, il0, il1, il2, idet, iz0, iz1, iz2) = _setup(
            proj, faces, V, F, i, c0, r0
        )
        rs = max(r0, R0)
        n = (min(r0 + bh, R1) - rs) * bw  # this band's candidates of the face, row-major
        o = off[i] + (rs - r0) * bw  # their first slot in De
        inv_bw = 1.0 / bw
        py0 = float(rs - r0)
        for k0 in range(0, n, _CHUNK):
            k1 = min(n, k0 + _CHUNK)
            # Everything of candidates k0 .. k1 - 1 that does not touch a pixel, into the scratch from index
            # 0: g_D the coverage D (-1 for a pair that is not kept), g_omD 1 - D and g_z the softmax term e
            # (0 where the depth lies outside [near, far]) or, with per_pixel_max, the normalised depth (-1
            # outside; its exponential needs the pixel's running maximum). Two loops without branches
            # (the exponentials split by _exp_parts), which the compiler vectorises over the candidates
            # (8 float64 lanes), padded to whole vectors (the extra candidates are ignored); the pair loop
            # below, with its scattered pixel updates, does not vectorise. Written out here rather than as
            # a function: a call per face with its arrays costs more than the loops.
            for k in range(k0, k0 + (k1 - k0 + 7) // 8 * 8):
                kf = float(k)
                rf = math.floor((kf + 0.5) * inv_bw)  # exact: (k + 0.5) / bw is >= 0.5 / bw from an integer
                kp, inside, d2, _, w0, w1, w2 = _geometry(
                    kf - rf * bw, py0 + rf, x0, y0, x1, y1, x2, y2, ex0, ey0, ex1, ey1, ex2, ey2, il0, il1,
                    il2, idet, thr,
                )  # fmt: skip
                j = k - k0
                g_pix[j] = rf * W + (kf - rf * bw)  # exact integers in float64
                # sigmoid(x) = 1 / (1 + exp(-x)), x = +-d2 ksig: kept pairs have x > ln(1e-4 / (1 - 1e-4))
                q1, g_n1[j] = _exp_parts(-d2 * ksig if inside else d2 * ksig)
                g_D[j] = q1 if kp else -1.0
                _, _, _, _, s = _depth(w0, w1, w2, iz0, iz1, iz2)
                zp = 1.0 / s
                valid = (zp >= near) & (zp <= far)
                zn = (far - zp) * inv_range
                q2, g_n2[j] = _exp_parts((zn - 1.0) * inv_gamma)  # (unused with per_pixel_max)
                g_omD[j] = q2
                g_z[j] = (zn if valid else -1.0) if per_pixel_max else (1.0 if valid else 0.0)
            for j in range((k1 - k0 + 7) // 8 * 8):  # padded as above: no scalar remainder
                q1 = g_D[j]
                ex = q1 * g_s1[j]
                D = 1.0 / (1.0 + ex)
                ez = g_omD[j] * g_s2[j]
                g_D[j] = D if q1 >= 0.0 else -1.0
                g_omD[j] = ex * D
                if not per_pixel_max:
                    g_z[j] = D * ez * g_z[j]
            # the kept candidates' indices, without a branch (a fifth of the candidates are dropped in no
            # predictable pattern), then the pairs applied to their pixels in the same order as before
            nk = 0
            for j in range(k1 - k0):
                g_kept[nk] = j
                nk += g_D[j] >= 0.0
            if store:  # every candidate's D, -1 for those not kept: the backward pass lists the kept ones
                for j in range(k1 - k0):
                    De[0, o + k0 + j] = g_D[j]
            p_base = b * H * W + rs * W + c0
            for t in range(nk):
                j = g_kept[t]
                D = g_D[j]
                p = p_base + np.int64(g_pix[j])
                P[p] *= g_omD[j]
                if per_pixel_max:
                    zn = g_z[j]
                    if zn < 0.0:  # depth outside [near, far]
                        continue
                    m = M[p]
                    if zn > m:
                        scale = math.exp((m - zn) * inv_gamma)
                        Z[p] *= scale
                        for ch in range(C):
                            I[p, ch] *= scale
                        M[p] = zn
                        m = zn
                    e = D * math.exp((zn - m) * inv_gamma)  # the final maximum is known only at the end
                else:
                    e = g_z[j]  # 0 outside [near, far], which adds nothing below
                    if store:
                        De[1, o + k0 + j] = e
                Z[p] += e
                et = I.dtype.type(e)  # the channel sums in the input dtype (vectorised), as the reference
                if K == 1:
                    for ch in range(C):
                        I[p, ch] += et * feat[fi, 0, ch]
                else:
                    rr = (k0 + j) // bw  # row and column in the band's part of the footprint
                    cc = k0 + j - rr * bw
                    _, _, _, _, w0, w1, w2 = _geometry(
                        float(cc), float(rs - r0 + rr), x0, y0, x1, y1, x2, y2, ex0, ey0, ex1, ey1, ex2, ey2,
                        il0, il1, il2, idet, thr,
                    )  # fmt: skip
                    wc0, wc1, wc2, _, s = _depth(w0, w1, w2, iz0, iz1, iz2)
                    wp0 = wc0 * iz0 / s
                    wp1 = wc1 * iz1 / s
                    wp2 = wc2 * iz2 / s
                    for ch in range(C):
                        I[p, ch] += e * (
                            wp0 * feat[fi, 0, ch] + wp1 * feat[fi, 1, ch] + wp2 * feat[fi, 2, ch]
                        )
    for p in range(b * H * W + R0 * W, b * H * W + R1 * W):
        S[p] = 1.0 - P[p]
        if P[p] == 1.0:  # no kept pair: the channels are still 0
            continue
        iz = 1.0 / Z[p]
        for ch in range(C):
            I[p, ch] *= iz


@njit(cache=True, nogil=True, parallel=True, error_model="numpy")
def forward(
    proj, faces, V, foot, off, feat, chans, B, H, W, nband, thr, ksig, gamma, near, far, eps, per_pixel_max,
    I, S, P, Z, M, De, store,
):  # fmt: skip
    """The soft render: every kept face-pixel pair aggregated into its pixel.

    ``feat (Nf, K, C)``: per-face features (``K = 1``) or the three corner features of each face
    (``K = 3``, interpolated with the perspective-corrected clipped barycentrics); ``Nf = B F`` or, shared by
    the batch, ``Nf = F``. Out, per pixel: ``I (B H W, C)`` the features ``sum_j e_j C_j / Z``, ``S`` the
    silhouette ``1 - P``, and for the backward pass ``P = prod_j (1 - D_j)``, ``Z = sum_j e_j + exp((eps -
    shift) / gamma)`` and ``M`` (the running maximum of the normalised depth, from ``eps``, when
    ``per_pixel_max``), with ``e_j = D_j exp((z_j - shift) / gamma)``, ``shift = M`` or 1.

    ``De`` gets each candidate pair's ``D`` (-1 where it is not kept) and each kept pair's ``e`` (``e`` only
    without ``per_pixel_max``) when ``store``.
    Parallel over (sample, band of rows) tasks (``nband`` bands per sample), each of which owns its pixels:
    it initialises them, visits every face whose footprint reaches the band, and finishes them.
    """
    band_h = (H + nband - 1) // nband
    for task in prange(B * nband):
        b = task // nband
        R0 = (task - b * nband) * band_h
        _forward_band(
            b, R0, min(R0 + band_h, H), proj, faces, V, foot, off, feat, chans, B, H, W, thr, ksig, gamma,
            near, far, eps, per_pixel_max, I, S, P, Z, M, De, store,
        )  # fmt: skip


@njit(cache=True, nogil=True, parallel=True, fastmath=_FM, error_model="numpy")
def pixel_stats(gI, gS, I, P, Z, M, per_pixel_max, st):
    """Per-pixel quantities of the backward pass, ``st (B H W, 4)``: ``a = gS (1 - S)`` (so that
    ``dL/dx_j = ... + a D_j``), ``q = gI . I``, ``1 / Z`` and the softmax shift (``M`` or 1); left unset
    for the pixels that no kept pair reaches (most of an image), which the backward kernel never reads."""
    C = I.shape[1]
    for p in prange(P.shape[0]):
        if P[p] == 1.0:  # no kept pair (D >= 1e-4 for each): nothing reads this pixel's statistics
            continue
        q = 0.0
        for ch in range(C):
            q += float(gI[p, ch]) * float(I[p, ch])
        st[p, 0] = gS[p] * P[p]
        st[p, 1] = q
        st[p, 2] = 1.0 / Z[p]
        st[p, 3] = M[p] if per_pixel_max else 1.0


@njit(cache=True, nogil=True, fastmath=_FM, error_model="numpy")
def _backward_faces(
    i0, i1, proj, faces, V, foot, off, feat, chans, H, W, thr, ksig, gamma, near, far, per_pixel_max, De, gI,
    st, want_feat, g_corner, g_feat,
):  # fmt: skip
    """:func:`backward` for faces ``[i0, i1)`` (a plain loop: numba optimises it better than the body of a
    parallel loop)."""
    F = faces.shape[0]
    N = foot.shape[0]
    C = len(chans)  # a constant of the compiled code
    K = feat.shape[1]
    shared = feat.shape[0] != N
    inv_range = 1.0 / (far - near)
    inv_gamma = 1.0 / gamma
    m = 64
    g_w0 = np.empty(m)
    g_w1 = np.empty(m)
    g_w2 = np.empty(m)
    g_gx = np.empty(m)
    g_gs = np.empty(m)
    g_gp0 = np.empty(m)
    g_gp1 = np.empty(m)
    g_gp2 = np.empty(m)
    g_kept = np.empty(m, dtype=np.int64)
    need_w = per_pixel_max or K != 1  # the gather needs the barycentrics of the kept pairs
    for i in range(i0, i1):
        bw = foot[i, 2]
        if bw == 0:
            for k in range(3):
                for j in range(3):
                    g_corner[i, k, j] = 0.0
            continue
        c0 = foot[i, 0]
        r0 = foot[i, 1]
        bh = foot[i, 3]
        b = i // F
        f = i - b * F
        fi = f if shared else i
        (x0, y0, x1, y1, x2, y2, ex0, ey0, ex1, ey1, ex2, ey2, il0, il1, il2, idet, iz0, iz1, iz2) = _setup(
            proj, faces, V, F, i, c0, r0
        )
        det = 1.0 / idet
        # accumulated gradients of the face table: vertices, edges, 1/det, 1/z
        gx0 = gy0 = gx1 = gy1 = gx2 = gy2 = 0.0
        gex0 = gey0 = gex1 = gey1 = gex2 = gey2 = 0.0
        gidet = giz0 = giz1 = giz2 = 0.0
        n = bw * bh
        npad = (n + 7) // 8 * 8
        if npad > g_gx.shape[0]:  # a footprint larger than any so far: grow the scratch
            m = max(npad, 2 * g_gx.shape[0])
            g_w0 = np.empty(m)
            g_w1 = np.empty(m)
            g_w2 = np.empty(m)
            g_gx = np.empty(m)
            g_gs = np.empty(m)
            g_gp0 = np.empty(m)
            g_gp1 = np.empty(m)
            g_gp2 = np.empty(m)
            g_kept = np.empty(m, dtype=np.int64)
        # Where the gather below needs them, the candidates' barycentrics (a loop without branches that
        # vectorises, padded to whole vectors of 8).
        inv_bw = 1.0 / bw
        if need_w:
            for k in range(npad):
                kf = float(k)
                rf = math.floor((kf + 0.5) * inv_bw)
                _, _, _, _, w0, w1, w2 = _geometry(
                    kf - rf * bw, rf, x0, y0, x1, y1, x2, y2, ex0, ey0, ex1, ey1, ex2, ey2, il0, il1, il2,
                    idet, thr,
                )  # fmt: skip
                g_w0[k] = w0
                g_w1[k] = w1
                g_w2[k] = w2
        # the kept candidates, listed without a branch (a fifth are dropped in no predictable pattern)
        slot0 = off[i]
        nk = 0
        for k in range(n):  # the forward pass stored D = -1 for the candidates it did not keep
            g_kept[nk] = k
            nk += De[0, slot0 + k] >= 0.0
        # Per kept pair, what needs its pixel (scalar: gathers from the per-pixel statistics and gI), into
        # the scratch at the pair's place t in the list: g_gx = dL/dx_j (x_j = +-d2 ksig, the coverage's
        # argument), g_gs = dL/de_j e_j and g_gp_k = dL/dwp_k (the corner weights of per-corner features; 0
        # for per-face ones); zeros for the depth terms of pairs whose depth lies outside [near, far] (e_j =
        # 0), and for the padding of the list to whole vectors, so that they add nothing below. The feature
        # gradient is summed here.
        p_base = b * H * W + r0 * W + c0
        for t in range(nk):
            k = g_kept[t]
            kf = float(k)
            rf = math.floor((kf + 0.5) * inv_bw)  # the candidate's row and column in the footprint
            p = p_base + np.int64(rf * W + (kf - rf * bw))  # exact integers in float64
            slot = slot0 + k
            D = De[0, slot]
            gx = st[p, 0] * D  # dL/dx_j from the silhouette, a D_j
            gs_t = gp0_t = gp1_t = gp2_t = 0.0
            if per_pixel_max:  # small gamma: the depth from the geometry (float64), not De
                _, _, _, _, s = _depth(g_w0[k], g_w1[k], g_w2[k], iz0, iz1, iz2)
                zp = 1.0 / s
                valid = zp >= near and zp <= far
                e = D * math.exp(((far - zp) * inv_range - st[p, 3]) * inv_gamma) if valid else 0.0
            else:
                e = De[1, slot]  # 0 outside [near, far]
            if e != 0.0:
                iZ = st[p, 2]
                we = e * iZ  # the pair's softmax weight
                if K == 1:
                    dot = gI[p, 0] * feat[fi, 0, 0] if C > 0 else gI.dtype.type(0.0)
                    for ch in range(1, C):
                        dot += gI[p, ch] * feat[fi, 0, ch]  # in the input dtype, as the reference
                    if want_feat:
                        wet = g_feat.dtype.type(we)
                        for ch in range(C):
                            g_feat[i, 0, ch] += gI[p, ch] * wet
                else:
                    wc0, wc1, wc2, _, s = _depth(g_w0[k], g_w1[k], g_w2[k], iz0, iz1, iz2)
                    wp0 = wc0 * iz0 / s
                    wp1 = wc1 * iz1 / s
                    wp2 = wc2 * iz2 / s
                    dot = 0.0
                    gp0 = gp1 = gp2 = 0.0  # dL/dwp_k
                    for ch in range(C):
                        gi = float(gI[p, ch])
                        f0 = float(feat[fi, 0, ch])
                        f1 = float(feat[fi, 1, ch])
                        f2 = float(feat[fi, 2, ch])
                        dot += gi * (wp0 * f0 + wp1 * f1 + wp2 * f2)
                        gp0 += gi * f0
                        gp1 += gi * f1
                        gp2 += gi * f2
                        if want_feat:
                            g = gi * we
                            g_feat[i, 0, ch] += wp0 * g
                            g_feat[i, 1, ch] += wp1 * g
                            g_feat[i, 2, ch] += wp2 * g
                    gp0_t = gp0 * we
                    gp1_t = gp1 * we
                    gp2_t = gp2 * we
                ge = (dot - st[p, 1]) * iZ  # dL/de_j
                gx += (1.0 - D) * e * ge
                gs_t = ge * e
            g_gx[t] = gx
            g_gs[t] = gs_t
            g_gp0[t] = gp0_t
            g_gp1[t] = gp1_t
            g_gp2[t] = gp2_t
        nkpad = (nk + 7) // 8 * 8
        for t in range(nk, nkpad):
            g_kept[t] = 0
            g_gx[t] = 0.0
            g_gs[t] = 0.0
            g_gp0[t] = 0.0
            g_gp1[t] = 0.0
            g_gp2[t] = 0.0
        # The chain from those to the face table, for the kept pairs only (their list padded to whole
        # vectors: a loop without branches that vectorises; its sums are reductions). With zp = 1 / s, s =
        # sum_k wc_k iz_k, wc the clipped renormalised barycentrics, zn = (far - zp) / (far - near), e_j = D_j
        # exp((zn - shift) / gamma), and wp_k = wc_k iz_k zp the perspective-correct corner weights.
        c_gs = inv_gamma * inv_range
        for t in range(nkpad):
            k = g_kept[t]
            kf = float(k)
            py = math.floor((kf + 0.5) * inv_bw)
            px = kf - py * bw
            # the geometry again, here rather than from a scratch (the loop stays without branches)
            _, inside, _, isel, w0, w1, w2 = _geometry(
                px, py, x0, y0, x1, y1, x2, y2, ex0, ey0, ex1, ey1, ex2, ey2, il0, il1, il2, idet, thr
            )
            sel = float(isel)
            t0, rx0, ry0, _ = _segment(px - x0, py - y0, ex0, ey0, il0)
            t1, rx1, ry1, _ = _segment(px - x1, py - y1, ex1, ey1, il1)
            t2, rx2, ry2, _ = _segment(px - x2, py - y2, ex2, ey2, il2)
            wc0, wc1, wc2, isw, s = _depth(w0, w1, w2, iz0, iz1, iz2)
            zp = 1.0 / s
            gs = g_gs[t] * c_gs * zp * zp  # dL/ds
            gp0 = g_gp0[t]
            gp1 = g_gp1[t]
            gp2 = g_gp2[t]
            gs2 = -(gp0 * wc0 * iz0 + gp1 * wc1 * iz1 + gp2 * wc2 * iz2) * zp * zp
            h0 = gs + gp0 * zp + gs2  # dL/d(wc_k iz_k) through s and the corner weights
            h1 = gs + gp1 * zp + gs2
            h2 = gs + gp2 * zp + gs2
            giz0 += h0 * wc0
            giz1 += h1 * wc1
            giz2 += h2 * wc2
            gc0 = h0 * iz0
            gc1 = h1 * iz1
            gc2 = h2 * iz2
            sm = gc0 * wc0 + gc1 * wc1 + gc2 * wc2
            # renormalisation, then clamp(0, 1), which passes the gradient on [0, 1]
            gw0 = (gc0 - sm) * isw if (w0 >= 0.0) & (w0 <= 1.0) else 0.0
            gw1 = (gc1 - sm) * isw if (w1 >= 0.0) & (w1 <= 1.0) else 0.0
            gw2 = (gc2 - sm) * isw if (w2 >= 0.0) & (w2 <= 1.0) else 0.0
            # w_k = cr_k idet
            gidet += (gw0 * w0 + gw1 * w1 + gw2 * w2) * det
            gw0 *= idet
            gw1 *= idet
            gw2 *= idet
            # cr opposite edge k: ex_k dy_k - ey_k dx_k (edge 0 -> w2, 1 -> w0, 2 -> w1)
            dx0 = px - x0
            dy0 = py - y0
            dx1 = px - x1
            dy1 = py - y1
            dx2 = px - x2
            dy2 = py - y2
            # distance: d2 = min_k |d_k - t_k e_k|^2, d/dv_k = -2 r, d/de_k = -2 t r (envelope theorem);
            # ties go to the lowest edge
            gd = -2.0 * g_gx[t] * (ksig if inside else -ksig)
            gvx = gd * (rx0 if isel == 0 else (rx1 if isel == 1 else rx2))
            gvy = gd * (ry0 if isel == 0 else (ry1 if isel == 1 else ry2))
            tc = t0 if isel == 0 else (t1 if isel == 1 else t2)
            gvex = gvx * tc
            gvey = gvy * tc
            s0 = 1.0 if sel == 0.0 else 0.0
            s1 = 1.0 if sel == 1.0 else 0.0
            s2 = 1.0 if sel == 2.0 else 0.0
            gex0 += gw2 * dy0 + gvex * s0
            gey0 += gvey * s0 - gw2 * dx0
            gx0 += gw2 * ey0 + gvx * s0
            gy0 += gvy * s0 - gw2 * ex0
            gex1 += gw0 * dy1 + gvex * s1
            gey1 += gvey * s1 - gw0 * dx1
            gx1 += gw0 * ey1 + gvx * s1
            gy1 += gvy * s1 - gw0 * ex1
            gex2 += gw1 * dy2 + gvex * s2
            gey2 += gvey * s2 - gw1 * dx2
            gx2 += gw1 * ey2 + gvx * s2
            gy2 += gvy * s2 - gw1 * ex2
        # face table -> corners: e_k = v_{k+1} - v_k, det = ex2 ey0 - ex0 ey2, iz_k = 1 / z_k
        gdet = -gidet * idet * idet
        gex2 += gdet * ey0
        gey0 += gdet * ex2
        gex0 -= gdet * ey2
        gey2 -= gdet * ex0
        g_corner[i, 0, 0] = gx0 - gex0 + gex2
        g_corner[i, 0, 1] = gy0 - gey0 + gey2
        g_corner[i, 1, 0] = gx1 - gex1 + gex0
        g_corner[i, 1, 1] = gy1 - gey1 + gey0
        g_corner[i, 2, 0] = gx2 - gex2 + gex1
        g_corner[i, 2, 1] = gy2 - gey2 + gey1
        g_corner[i, 0, 2] = -giz0 * iz0 * iz0
        g_corner[i, 1, 2] = -giz1 * iz1 * iz1
        g_corner[i, 2, 2] = -giz2 * iz2 * iz2


@njit(cache=True, nogil=True, parallel=True, error_model="numpy")
def backward(
    proj, faces, V, foot, off, feat, chans, H, W, thr, ksig, gamma, near, far, per_pixel_max, De, gI, st,
    want_feat, g_corner, g_feat, nchunk,
):  # fmt: skip
    """Gradients of every face, parallel over ``nchunk`` ranges of faces (each face writes only its own
    rows): ``g_corner (N, 3, 3)`` with respect to its projected corners ``(u, v, z)``; ``g_feat (N, K, C)``
    with respect to its features when ``want_feat``. Pairs are enumerated and their geometry recomputed
    as in :func:`forward` (``D`` and ``e`` read from ``De``); the per-pixel statistics come from
    :func:`pixel_stats`."""
    N = foot.shape[0]
    for t in prange(nchunk):
        _backward_faces(
            t * N // nchunk, (t + 1) * N // nchunk, proj, faces, V, foot, off, feat, chans, H, W, thr, ksig,
            gamma, near, far, per_pixel_max, De, gI, st, want_feat, g_corner, g_feat,
        )  # fmt: skip


@njit(cache=True, nogil=True, parallel=True, fastmath=_FM, error_model="numpy")
def scatter_corners(g_corner, faces, V, g_proj):
    """``g_proj (B V, 3) += `` the corner gradients of every face, parallel over samples."""
    F = faces.shape[0]
    B = g_proj.shape[0] // V if V > 0 else 0
    for b in prange(B):
        if F == 0:
            continue
        for f in range(F):
            i = b * F + f
            for k in range(3):
                row = b * V + faces[f, k]
                for j in range(3):
                    g_proj[row, j] += g_corner[i, k, j]
