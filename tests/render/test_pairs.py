"""dsrbody.render.pairs against a brute force: every pixel against every face of tiny scenes.

The brute force is written here in NumPy (float64) from the definitions (footprint = pixel centres in the
bounding box grown by the radius, edges included; point in triangle by the signs of the edge functions;
distance to the boundary as the smallest point-to-segment distance) and shares no code with the module.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from dsrbody.render.pairs import (
    MIN_DOUBLE_AREA_PX,
    ROW_IDET,
    ROW_IZ,
    TABLE_ROWS,
    barycentric,
    barycentric_distance,
    chunk_ranges,
    enumerate_pairs,
    gather_rows,
    localize_,
    prepare_faces,
    screen_order,
)

H, W = 9, 11
FOCAL, PP = 12.0, (5.0, 4.5)


def tiny_scene(seed: int, B: int = 2, V: int = 12, F: int = 10) -> tuple[torch.Tensor, torch.Tensor]:
    """Random triangles of a few pixels, some reaching outside the image, plus three that must be
    excluded: a vertex behind the camera, a vertex on the camera plane, and a zero-area triangle."""
    g = torch.Generator().manual_seed(seed)
    z = 2.0 + torch.rand(B, V, 1, generator=g, dtype=torch.float64)
    xy = (torch.rand(B, V, 2, generator=g, dtype=torch.float64) - 0.5) * 1.9  # beyond the image edges
    v = torch.cat([xy * z, z], -1)
    extra = torch.tensor(
        [[0.1, 0.1, -1.0], [0.5, 0.0, 2.0], [0.0, 0.5, 2.0],  # behind the camera
         [0.0, 0.0, 0.0], [0.3, 0.2, 2.0], [0.1, 0.4, 2.0],  # on the camera plane
         [0.0, 0.0, 2.0], [0.2, 0.2, 2.0], [0.4, 0.4, 2.0]],  # collinear
        dtype=torch.float64,
    )  # fmt: skip
    v = torch.cat([v, extra[None].expand(B, -1, -1)], 1)
    faces = torch.stack([torch.randperm(V, generator=g)[:3] for _ in range(F)])
    faces = torch.cat([faces, torch.arange(V, V + 9).reshape(3, 3)])
    return v, faces


def _brute(v: torch.Tensor, faces: torch.Tensor, radius: float) -> dict[str, set]:
    """Every (face, pixel) of the scene, face = b F + f (original order), pixel = b H W + r W + c:
    ``box`` (centre in the grown bounding box), ``inside`` (centre in the triangle, edges included),
    ``near`` (inside, or closer than ``radius`` to the boundary); and ``d2`` per near pair."""
    vn = v.numpy()
    fn = faces.numpy()
    B, F = vn.shape[0], fn.shape[0]
    cy, cx = np.mgrid[0:H, 0:W] + 0.5
    out: dict = {"box": set(), "inside": set(), "near": set(), "d2": {}}
    for b, f in itertools.product(range(B), range(F)):
        tri = vn[b, fn[f]]  # (3, 3)
        if (tri[:, 2] <= 0).any():
            continue
        uv = tri[:, :2] / tri[:, 2:] * FOCAL + np.array(PP)
        a, bb, c = uv
        det = (bb[0] - a[0]) * (c[1] - a[1]) - (bb[1] - a[1]) * (c[0] - a[0])
        if not abs(det) > MIN_DOUBLE_AREA_PX:
            continue
        box = (
            (cx >= uv[:, 0].min() - radius)
            & (cx <= uv[:, 0].max() + radius)
            & (cy >= uv[:, 1].min() - radius)
            & (cy <= uv[:, 1].max() + radius)
        )
        edge = []
        d2 = np.full((H, W), np.inf)
        for k in range(3):
            p, q = uv[k], uv[(k + 1) % 3]
            e = q - p
            edge.append(e[0] * (cy - p[1]) - e[1] * (cx - p[0]))
            t = np.clip(((cx - p[0]) * e[0] + (cy - p[1]) * e[1]) / (e @ e), 0.0, 1.0)
            d2 = np.minimum(d2, (cx - p[0] - t * e[0]) ** 2 + (cy - p[1] - t * e[1]) ** 2)
        edge = np.stack(edge)
        inside = (edge >= 0).all(0) | (edge <= 0).all(0)
        near = inside | (d2 < radius**2)
        for r, col in zip(*np.nonzero(box)):
            out["box"].add((b * F + f, b * H * W + r * W + col))
        for r, col in zip(*np.nonzero(inside)):
            out["inside"].add((b * F + f, b * H * W + r * W + col))
        for r, col in zip(*np.nonzero(near)):
            out["near"].add((b * F + f, b * H * W + r * W + col))
            out["d2"][(b * F + f, b * H * W + r * W + col)] = d2[r, col]
    return out


def _enumerated(v: torch.Tensor, faces: torch.Tensor, radius: float, sort: bool, max_pairs: int):
    """All pairs of the module: original face index, flat pixel, and their geometry."""
    fc = prepare_faces(v, faces, FOCAL, PP, H, W, radius, sort=sort)
    tableT = fc.table.detach().t().contiguous()
    localT = localize_(tableT.clone(), fc.c0, fc.r0)
    face, pix, w_loc, w_abs, d2 = [], [], [], [], []
    for f0, f1, n in chunk_ranges(fc.counts, max_pairs):
        fid, p, coff, roff = enumerate_pairs(f0, f1, n, fc.counts, fc.base, fc.bw, W)
        assert fid.shape == p.shape == coff.shape == roff.shape == (n,)
        assert ((fid >= f0) & (fid < f1)).all()
        tab = gather_rows(localT, fid)
        w, dd, _ = barycentric_distance(tab, coff.double(), roff.double())
        col, row = p % W, (p // W) % H
        w_loc.append(barycentric(tab, coff.double(), roff.double()))
        w_abs.append(barycentric(gather_rows(tableT, fid), col.double() + 0.5, row.double() + 0.5))
        assert torch.allclose(w, w_loc[-1], rtol=0, atol=1e-12)
        face.append(fc.order[fid])
        pix.append(p)
        d2.append(dd)
    cat = torch.cat
    return fc, cat(face), cat(pix), cat(w_loc, 1), cat(w_abs, 1), cat(d2)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("radius", [0.0, 1.3])
@pytest.mark.parametrize("sort, max_pairs", [(True, 1 << 20), (False, 1 << 20), (True, 7), (False, 1)])
def test_enumeration_equals_brute_force(seed, radius, sort, max_pairs):
    v, faces = tiny_scene(seed)
    ref = _brute(v, faces, radius)
    fc, face, pix, w_loc, w_abs, d2 = _enumerated(v, faces, radius, sort, max_pairs)
    got = list(zip(face.tolist(), pix.tolist()))
    # every candidate once, and the candidates are exactly the footprints
    assert len(got) == len(set(got)) == int(fc.counts.sum())
    assert set(got) == ref["box"] and len(ref["box"]) > 50
    # localised coordinates give the pixel centres' barycentrics
    assert torch.allclose(w_loc, w_abs, rtol=0, atol=1e-9)
    # point in triangle: no pixel inside a face is missed by its footprint, none is invented
    inside = w_loc.amin(0) >= 0
    assert set(itertools.compress(got, inside.tolist())) == ref["inside"] and len(ref["inside"]) > 10
    # boundary distance: the soft rasteriser's keep test (inside, or nearer than the radius)
    near = inside | (d2 < radius**2)
    kept = list(itertools.compress(got, near.tolist()))
    assert set(kept) == ref["near"]
    d2_by_pair = dict(zip(got, d2.tolist()))
    assert max(abs(d2_by_pair[k] - ref["d2"][k]) for k in kept) < 1e-9


def test_excluded_faces_have_no_pairs_and_faces_keep_their_samples():
    v, faces = tiny_scene(3)
    F = faces.shape[0]
    fc = prepare_faces(v, faces, FOCAL, PP, H, W, 1.0, sort=True)
    invalid = [F - 3, F - 2, F - 1]  # behind the camera, on the camera plane, zero area
    for b in range(2):
        for f in invalid:
            i = int((fc.order == b * F + f).nonzero())
            assert not fc.valid[i] and fc.counts[i] == 0
    # screen order: a permutation within each sample's block, by footprint corner, invalid faces last
    assert sorted(fc.order.tolist()) == list(range(2 * F))
    assert (fc.order[:F] < F).all() and (fc.order[F:] >= F).all()
    for b in range(2):
        blk = slice(b * F, (b + 1) * F)
        key = torch.where(fc.valid[blk], fc.r0[blk] * W + fc.c0[blk], torch.full_like(fc.c0[blk], H * W))
        assert (key[1:] >= key[:-1]).all()
    assert torch.equal(fc.base, torch.arange(2 * F) // F * H * W + fc.r0 * W + fc.c0)
    # the same order from screen_order on the unsorted footprints
    un = prepare_faces(v, faces, FOCAL, PP, H, W, 1.0, sort=False)
    assert torch.equal(un.order, torch.arange(2 * F))
    assert torch.equal(screen_order(un.c0, un.r0, un.valid, 2, F, H, W), fc.order)


def test_face_table_layout_by_hand():
    v = torch.tensor([[[0.0, 0.0, 2.0], [1.0, 0.0, 4.0], [0.0, 1.0, 2.0]]], dtype=torch.float64)
    v.requires_grad_(True)
    fc = prepare_faces(v, torch.tensor([[0, 1, 2]]), 10.0, (1.0, 2.0), 16, 16, 0.0, sort=False)
    t = fc.table[0]
    assert fc.table.shape == (1, TABLE_ROWS)
    x = torch.tensor([1.0, 3.5, 1.0], dtype=torch.float64)  # u = 10 x / z + 1
    y = torch.tensor([2.0, 2.0, 7.0], dtype=torch.float64)  # v = 10 y / z + 2
    for k in range(3):
        ex, ey = x[(k + 1) % 3] - x[k], y[(k + 1) % 3] - y[k]
        expected = torch.stack([x[k], y[k], ex, ey, 1.0 / (ex * ex + ey * ey)])
        assert torch.allclose(t[5 * k : 5 * k + 5], expected)
    assert torch.isclose(t[ROW_IDET], torch.tensor(1.0 / (2.5 * 5.0), dtype=torch.float64))  # 1 / det
    assert torch.allclose(t[ROW_IZ:], torch.tensor([0.5, 0.25, 0.5], dtype=torch.float64))
    # footprint without growth: the pixel centres of columns 1..3 (centre 3.5 is on the edge), rows 2..6
    assert (fc.c0.item(), fc.r0.item(), fc.bw.item(), fc.bh.item()) == (1, 2, 3, 5)
    fc.table.sum().backward()  # differentiable in the vertices
    assert torch.isfinite(v.grad).all() and float(v.grad.abs().sum()) > 0


def test_chunk_ranges():
    counts = torch.tensor([3, 0, 5, 2, 9])
    assert chunk_ranges(counts, 100) == [(0, 5, 19)]
    assert chunk_ranges(counts, 6) == [(0, 2, 3), (2, 3, 5), (3, 4, 2), (4, 5, 9)]  # 9 > 6: alone
    assert chunk_ranges(counts, 2) == [(0, 1, 3), (2, 3, 5), (3, 4, 2), (4, 5, 9)]  # face 1: no pairs
    for max_pairs in (1, 2, 5, 8, 11, 18):
        ranges = chunk_ranges(counts, max_pairs)
        assert all(a[1] <= b[0] for a, b in zip(ranges, ranges[1:]))  # in order, disjoint
        covered = {f for f0, f1, _ in ranges for f in range(f0, f1)}
        assert {0, 2, 3, 4} <= covered  # every face with pairs
        for f0, f1, n in ranges:
            assert n == int(counts[f0:f1].sum()) > 0
            assert n <= max_pairs or int(counts[f0:f1].count_nonzero()) == 1  # over: one face alone
    assert chunk_ranges(torch.zeros(0, dtype=torch.long), 10) == []
    assert chunk_ranges(torch.zeros(4, dtype=torch.long), 10) == []


def test_enumerate_pairs_row_major_inside_footprints():
    # two footprints: 2 x 3 at (c0, r0) = (1, 0) of sample 0, 1 x 2 at (4, 2) of sample 1; W = 6, H = 4
    counts = torch.tensor([6, 2])
    bw = torch.tensor([3, 1])
    base = torch.tensor([0 * 24 + 0 * 6 + 1, 1 * 24 + 2 * 6 + 4])
    fid, pix, coff, roff = enumerate_pairs(0, 2, 8, counts, base, bw, 6)
    assert fid.tolist() == [0, 0, 0, 0, 0, 0, 1, 1]
    assert coff.tolist() == [0, 1, 2, 0, 1, 2, 0, 0] and roff.tolist() == [0, 0, 0, 1, 1, 1, 0, 1]
    assert pix.tolist() == [1, 2, 3, 7, 8, 9, 40, 46]
    fid, pix, _, _ = enumerate_pairs(1, 2, 2, counts, base, bw, 6)
    assert fid.tolist() == [1, 1] and pix.tolist() == [40, 46]


def test_gather_rows_is_column_indexing():
    t = torch.arange(5 * 7, dtype=torch.float64).reshape(5, 7)
    idx = torch.tensor([6, 0, 0, 3])
    assert torch.equal(gather_rows(t, idx), t[:, idx])
    assert torch.equal(gather_rows(t, idx, slice(1, 3)), t[1:3][:, idx])
    assert gather_rows(t, idx).is_contiguous()


def test_radius_grows_footprints_by_whole_pixels():
    """A pixel centre exactly at the grown box's edge is in the footprint (bounds included)."""
    v = torch.tensor([[[0.0, 0.0, 1.0], [0.2, 0.0, 1.0], [0.0, 0.2, 1.0]]], dtype=torch.float64)
    f = torch.tensor([[0, 1, 2]])
    # corners at pixels (5, 4.5), (7.4, 4.5), (5, 6.9): the centres 5.5 .. 6.5 in x, 4.5 .. 6.5 in y
    fc = prepare_faces(v, f, FOCAL, PP, H, W, 0.0, False)
    assert (fc.c0.item(), fc.bw.item(), fc.r0.item(), fc.bh.item()) == (5, 2, 4, 3)
    fc = prepare_faces(v, f, FOCAL, PP, H, W, 1.0, False)  # 4.0 .. 8.4 and 3.5 .. 7.9
    assert (fc.c0.item(), fc.bw.item(), fc.r0.item(), fc.bh.item()) == (4, 4, 3, 5)
    fc = prepare_faces(v, f, FOCAL, PP, H, W, 100.0, False)  # clipped to the image
    assert (fc.c0.item(), fc.bw.item(), fc.r0.item(), fc.bh.item()) == (0, W, 0, H)
    assert math.isclose(float(fc.table[0, ROW_IDET]), 1.0 / (2.4 * 2.4), rel_tol=1e-12)
