"""Face-pixel pairs: the enumeration both rasterisers are built on (docs/design.md, Soft rasteriser).

A render call turns its mesh into candidate face-pixel pairs in four steps:

1. :func:`prepare_faces` projects the vertices (:func:`dsrbody.geometry.cameras.project_vertices`),
   drops faces that cannot be drawn (a vertex with ``z <= 0``, a doubled projected area of at most
   :data:`MIN_DOUBLE_AREA_PX` pixel^2, a non-finite corner), computes each face's *footprint* (the pixels
   whose centre lies in its screen bounding box grown by ``radius_px``) and a differentiable per-face
   table (:data:`TABLE_ROWS` rows, below), optionally in screen order.
2. :func:`chunk_ranges` splits the faces into consecutive ranges of at most ``max_pairs`` candidates.
3. :func:`enumerate_pairs` lists a range's candidates: every pixel of every footprint, as face index,
   flat pixel index and the pixel's offset inside the footprint.
4. :func:`localize_` moves the table into footprint coordinates once per call, so that a pair's pixel
   centre is simply its offset; :func:`gather_rows` fetches the table columns of the pairs, and
   :func:`barycentric` / :func:`barycentric_distance` give their screen geometry.

Conventions (docs/design.md, Cameras): pixel ``(r, c)`` covers ``[c, c+1) x [r, r+1)``, its centre is
``(c + 0.5, r + 0.5)``; the flat pixel index of pixel ``(b, r, c)`` is ``b H W + r W + c``. Faces are
flattened over the batch: face ``i`` of the ``N = B F`` faces is face ``i % F`` of sample ``i // F`` (before
any screen-order permutation). All lengths are in pixels unless said otherwise.

Face table (``(TABLE_ROWS, N)`` once transposed), per face: for each edge ``k`` in 0, 1, 2 (from vertex
``k`` to vertex ``k + 1``) the rows ``5k .. 5k+4`` = ``x_k, y_k`` (vertex ``k``), ``ex_k, ey_k`` (the edge
vector) and ``1 / |e_k|^2``; row :data:`ROW_IDET` = ``1 / det`` (``det`` the doubled signed area,
pixel^2); rows :data:`ROW_IZ` ``..`` ``ROW_IZ + 2`` = ``1 / z_k`` (1/metres, camera depth).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from dsrbody.geometry.cameras import project_vertices

__all__ = [
    "TABLE_ROWS",
    "ROW_IDET",
    "ROW_IZ",
    "MIN_DOUBLE_AREA_PX",
    "ProjectedFaces",
    "project",
    "prepare_faces",
    "table_from_corners",
    "face_footprints",
    "screen_order",
    "footprint_base",
    "chunk_ranges",
    "enumerate_pairs",
    "localize_",
    "gather_rows",
    "barycentric",
    "barycentric_distance",
]

#: Rows of the per-face table (module docstring).
TABLE_ROWS = 19
#: Row of ``1 / det`` (inverse doubled signed area, 1/pixel^2).
ROW_IDET = 15
#: First of the three rows of ``1 / z_k`` (inverse vertex depths, 1/metres).
ROW_IZ = 16
#: Faces whose doubled projected area (pixel^2) is at most this are excluded.
MIN_DOUBLE_AREA_PX = 1e-10


@dataclass(eq=False)
class ProjectedFaces:
    """Per-face data of one render call (faces flattened over the batch, in visiting order).

    Attributes:
        table: ``(N, TABLE_ROWS)`` differentiable per-face table (module docstring), ``N = B F``. Rows of
            invalid faces hold finite placeholders.
        order: ``(N,)`` long, original index (``b F + f``) of each row.
        valid: ``(N,)`` bool, the face can be drawn.
        c0, r0: ``(N,)`` long, first column and row of the footprint (pixels).
        bw, bh: ``(N,)`` long, footprint width and height (pixels; 0 for invalid faces).
        counts: ``(N,)`` long, candidate pairs per face, ``bw * bh``.
        base: ``(N,)`` long, flat pixel index (``b H W + r0 W + c0``) of each footprint's first pixel.
    """

    table: torch.Tensor
    order: torch.Tensor
    valid: torch.Tensor
    c0: torch.Tensor
    r0: torch.Tensor
    bw: torch.Tensor
    bh: torch.Tensor
    counts: torch.Tensor
    base: torch.Tensor


def prepare_faces(
    vertices: torch.Tensor,
    faces: torch.Tensor,
    focal: float | torch.Tensor,
    principal_point: float | torch.Tensor,
    H: int,
    W: int,
    radius_px: float,
    sort: bool,
) -> ProjectedFaces:
    """Project, validate and (optionally) sort the faces, and build the differentiable face table.

    Args:
        vertices: ``(B, V, 3)`` camera frame (x right, y down, z forward), metres. Must be finite: the
            caller replaces non-finite samples by finite values and excludes their faces itself.
        faces: ``(F, 3)`` long vertex indices, shared by the batch.
        focal: pixels, scalar, ``(B,)`` or ``(B, 2)``. principal_point: pixels, ``(2,)`` or ``(B, 2)``.
        H, W: image size, pixels.
        radius_px: footprint growth beyond the bounding box (pixels, >= 0).
        sort: visit faces in screen order (by footprint corner, within each sample) so that a chunk's
            pairs touch a compact band of pixels and the per-pixel accumulators stay in cache.

    Returns:
        :class:`ProjectedFaces`; only ``table`` carries gradients (to ``vertices``).
    """
    B, V, _ = vertices.shape
    F = faces.shape[0]
    dev = vertices.device
    z = vertices[..., 2]
    zsafe = torch.where(z > 0, z, torch.ones((), dtype=z.dtype, device=dev))
    proj = torch.cat([project(vertices, focal, principal_point)[..., :2], zsafe[..., None]], -1)
    proj = proj.reshape(B * V, 3)
    flat = (faces[None] + (torch.arange(B, device=dev) * V)[:, None, None]).reshape(B * F, 3)
    with torch.no_grad():
        corners = proj.detach().index_select(0, flat.reshape(-1)).view(B * F, 3, 3)
        zmin = z.detach().reshape(-1).index_select(0, flat.reshape(-1)).view(B * F, 3).amin(1)
        xy = corners[..., :2]
        e0, e2 = xy[:, 1] - xy[:, 0], xy[:, 0] - xy[:, 2]
        det = e2[:, 0] * e0[:, 1] - e0[:, 0] * e2[:, 1]
        valid = (zmin > 0) & (det.abs() > MIN_DOUBLE_AREA_PX) & torch.isfinite(det)
        c0, r0, bw, bh = face_footprints(xy[..., 0], xy[..., 1], valid, H, W, radius_px)
        order = screen_order(c0, r0, valid, B, F, H, W) if sort else torch.arange(B * F, device=dev)
        if sort:
            c0, r0, bw, bh, valid = c0[order], r0[order], bw[order], bh[order], valid[order]
            flat = flat.index_select(0, order)
        counts = bw * bh
        base = footprint_base(c0, r0, F, H, W)
    fv = proj.index_select(0, flat.reshape(-1)).view(B * F, 3, 3)  # differentiable
    return ProjectedFaces(
        table=table_from_corners(fv, valid),
        order=order,
        valid=valid,
        c0=c0,
        r0=r0,
        bw=bw,
        bh=bh,
        counts=counts,
        base=base,
    )


def project(
    vertices: torch.Tensor, focal: float | torch.Tensor, principal_point: float | torch.Tensor
) -> torch.Tensor:
    """``(B, V, 3)`` projected vertices ``(u, v, z)``: pixels
    (:func:`~dsrbody.geometry.cameras.project_vertices`) and the camera depth in metres, differentiable.
    A vertex with ``z <= 0`` is projected as if at ``z = 1`` (finite placeholders; faces with such a
    vertex are not drawn) and keeps its own ``z``."""
    z = vertices[..., 2:3]
    zsafe = torch.where(z > 0, z, torch.ones((), dtype=z.dtype, device=z.device))
    uv = project_vertices(torch.cat([vertices[..., :2], zsafe], -1), focal, principal_point)
    return torch.cat([uv, z], -1)


def table_from_corners(fv: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """The face table (module docstring) from projected corners.

    Args:
        fv: ``(N, 3, 3)`` corners ``(u, v, z)``: pixels and metres (``z > 0``, placeholders for invalid
            faces).
        valid: ``(N,)`` bool; invalid faces get ``1 / det = 1``.

    Returns:
        ``(N, TABLE_ROWS)``, differentiable in ``fv``.
    """
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


def face_footprints(
    xs: torch.Tensor, ys: torch.Tensor, valid: torch.Tensor, H: int, W: int, radius_px: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Pixel-index footprint of each face: columns ``[c0, c0 + bw)``, rows ``[r0, r0 + bh)``.

    Pixel ``(r, c)`` is in the footprint when its centre ``(c + 0.5, r + 0.5)`` lies within the face's
    bounding box grown by ``radius_px`` (bounds included) and inside the ``H x W`` image. Invalid faces
    get an empty footprint (``bw = bh = 0``).

    Args:
        xs, ys: ``(N, 3)`` projected corners, pixels.
        valid: ``(N,)`` bool.
        H, W: image size, pixels. radius_px: growth, pixels.

    Returns:
        ``c0, r0, bw, bh``, each ``(N,)`` long.
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


def screen_order(
    c0: torch.Tensor, r0: torch.Tensor, valid: torch.Tensor, B: int, F: int, H: int, W: int
) -> torch.Tensor:
    """``(B F,)`` long permutation that sorts each sample's faces by footprint corner (row-major), keeping
    samples in their blocks of ``F`` (invalid faces last in their block; ties in face order).

    Args:
        c0, r0: ``(B F,)`` footprint corners (pixels). valid: ``(B F,)`` bool.
    """
    key = torch.where(valid, r0 * W + c0, torch.full_like(c0, H * W))
    if B * F:
        key = key + torch.arange(B, device=c0.device).repeat_interleave(F) * (H * W + 1)
    return torch.sort(key, stable=True).indices


def footprint_base(c0: torch.Tensor, r0: torch.Tensor, F: int, H: int, W: int) -> torch.Tensor:
    """``(N,)`` flat pixel index ``b H W + r0 W + c0`` of each footprint's first pixel, where face ``i``
    belongs to sample ``b = i // F`` (``c0, r0``: ``(N,)`` long, pixels)."""
    b = torch.div(torch.arange(c0.shape[0], device=c0.device), max(F, 1), rounding_mode="floor")
    return b * (H * W) + r0 * W + c0


def chunk_ranges(counts: torch.Tensor, max_pairs: int) -> list[tuple[int, int, int]]:
    """Split faces into consecutive ranges of at most ``max_pairs`` candidate pairs.

    Args:
        counts: ``(N,)`` long, candidate pairs per face (``bw * bh``).
        max_pairs: the most candidates per range; a single face with more gets a range of its own.

    Returns:
        ``[(f0, f1, pairs), ...]``: faces ``[f0, f1)`` with ``pairs > 0`` candidates in all, in order,
        covering every face with candidates.
    """
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


def enumerate_pairs(
    f0: int, f1: int, n_pairs: int, counts: torch.Tensor, base: torch.Tensor, bw: torch.Tensor, W: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Candidate pairs of faces ``[f0, f1)``: every pixel of every footprint, face by face, row-major
    inside a footprint.

    Args:
        f0, f1, n_pairs: one range of :func:`chunk_ranges` (``n_pairs = counts[f0:f1].sum()``).
        counts: ``(N,)`` candidates per face (``bw * bh``).
        base: ``(N,)`` flat pixel index of each footprint's first pixel (:func:`footprint_base`).
        bw: ``(N,)`` footprint widths (pixels). W: image width (pixels).

    Returns:
        ``(n_pairs,)`` int64 each: face index (into the ``N`` faces), flat pixel index (into ``B H W``),
        and the pixel's column and row offsets inside the footprint.
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


def localize_(tableT: torch.Tensor, c0: torch.Tensor, r0: torch.Tensor) -> torch.Tensor:
    """Footprint coordinates, in place: vertex positions of a transposed table relative to the centre of
    the footprint's first pixel, so that a pair's pixel centre is its (column, row) offset in the
    footprint. A translation leaves every gradient of the table unchanged.

    Args:
        tableT: ``(TABLE_ROWS, N)`` transposed face table (modified and returned).
        c0, r0: ``(N,)`` footprint corners (pixels).
    """
    cx = c0.to(tableT.dtype).add_(0.5)
    cy = r0.to(tableT.dtype).add_(0.5)
    for k in range(3):
        tableT[5 * k].sub_(cx)
        tableT[5 * k + 1].sub_(cy)
    return tableT


def gather_rows(tableT: torch.Tensor, idx: torch.Tensor, rows: slice = slice(None)) -> torch.Tensor:
    """``tableT[rows][:, idx]`` as a contiguous ``(K, P)`` tensor (row-wise 1-D gathers are the fastest).

    Args:
        tableT: ``(R, N)`` (a transposed face table, or any per-column data such as ``(3, P)``
            barycentrics). idx: ``(P,)`` long column indices. rows: the rows to keep (``K`` of them).
    """
    src = tableT[rows]
    out = torch.empty(src.shape[0], idx.shape[0], dtype=src.dtype, device=src.device)
    for r in range(src.shape[0]):
        torch.index_select(src[r], 0, idx, out=out[r])
    return out


def barycentric(tab: torch.Tensor, px: torch.Tensor, py: torch.Tensor) -> torch.Tensor:
    """Screen-space barycentric coordinates of points in their faces.

    Args:
        tab: ``(TABLE_ROWS, P)`` gathered table columns (at least the rows up to :data:`ROW_IDET`).
        px, py: ``(P,)`` points in the table's coordinates (pixels; pixel centres, or footprint offsets
            of a :func:`localize_`-d table).

    Returns:
        ``(3, P)``; coordinate ``k`` belongs to vertex ``k``, all >= 0 inside the triangle (edges
        included), summing to 1.
    """
    ws = [px, px, px]
    for k in range(3):
        x, y, ex, ey = tab[5 * k : 5 * k + 4]
        ws[(k + 2) % 3] = (ex * (py - y) - ey * (px - x)) * tab[ROW_IDET]
    return torch.stack(ws)


def barycentric_distance(
    tab: torch.Tensor, px: torch.Tensor, py: torch.Tensor, with_edges: bool = False
) -> tuple[torch.Tensor, torch.Tensor, list[tuple[torch.Tensor, ...]] | None]:
    """Barycentric coordinates and squared distance to the triangle boundary of each pair.

    Args:
        tab: ``(TABLE_ROWS, P)`` (or the rows up to :data:`ROW_IDET`) gathered, localised table columns.
        px, py: ``(P,)`` pixel centres in the table's coordinates, pixels.
        with_edges: also return per-edge intermediates ``(dx, dy, t, rx, ry, d2_k)`` for edges 0, 1, 2
            (the soft rasteriser's backward pass needs them).

    Returns:
        ``w (3, P)`` barycentric coordinates (as :func:`barycentric`, computed in place), ``d2 (P,)``
        squared distance (pixel^2) to the closest point of the boundary (segment distances, valid inside
        and outside), and the edge intermediates or None.
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
        wk.addcmul_(ey, dx, value=-1.0).mul_(tab[ROW_IDET])
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
