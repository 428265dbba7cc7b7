"""Independent brute-force SoftRas reference for the tests: every face against every pixel, textbook
formulas, float64, plain autograd. Deliberately simple; shares no code with dsrbody.render.soft."""

from __future__ import annotations

import math

import torch


def _seg_dist2(p, a, b):
    """Squared distance from points p (..., 2) to segments [a, b] (..., 2)."""
    ab = b - a
    t = ((p - a) * ab).sum(-1) / (ab * ab).sum(-1)
    t = t.clamp(0.0, 1.0)
    q = a + t[..., None] * ab
    return ((p - q) ** 2).sum(-1)


def reference_render(
    vertices, faces, *, face_features=None, vertex_features=None, focal, principal_point, image_size,
    sigma=1e-5, gamma=1e-1, near=1.0, far=100.0, eps=1e-3,
):  # fmt: skip
    """Returns (features (B, C, H, W), silhouette (B, 1, H, W)) following docs/design.md, Soft rasteriser
    literally."""
    H, W = image_size
    B = vertices.shape[0]
    f = torch.as_tensor(focal, dtype=vertices.dtype).reshape(-1)
    f = f.expand(2) if f.numel() == 1 else f
    c = torch.as_tensor(principal_point, dtype=vertices.dtype)
    ndc = 2.0 / max(H, W)  # one pixel in NDC distance units
    rows, cols = torch.meshgrid(
        torch.arange(H, dtype=vertices.dtype), torch.arange(W, dtype=vertices.dtype), indexing="ij"
    )
    pts = torch.stack([cols + 0.5, rows + 0.5], -1).reshape(-1, 2) * ndc  # (HW, 2) NDC-scaled
    thr = math.log(1.0 / 1e-4 - 1.0) * sigma
    feats_out, sils = [], []
    for b in range(B):
        v = vertices[b]
        z = v[:, 2]
        uv = (v[:, :2] / z[:, None] * f + c) * ndc
        tri = uv[faces]  # (F, 3, 2)
        tz = z[faces]
        a, bb, cc = tri[:, 0], tri[:, 1], tri[:, 2]
        area2 = (bb - a)[:, 0] * (cc - a)[:, 1] - (bb - a)[:, 1] * (cc - a)[:, 0]
        ok = (tz > 0).all(-1) & (area2.abs() / ndc**2 > 1e-10)
        tri, tz, a, bb, cc, area2 = tri[ok], tz[ok], a[ok], bb[ok], cc[ok], area2[ok]
        p = pts[:, None, :]  # (HW, 1, 2)

        def cross(u, w):
            return u[..., 0] * w[..., 1] - u[..., 1] * w[..., 0]

        w0 = cross(cc - bb, p - bb) / area2
        w1 = cross(a - cc, p - cc) / area2
        w2 = cross(bb - a, p - a) / area2
        w = torch.stack([w0, w1, w2], -1)  # (HW, F, 3)
        inside = (w > 0).all(-1)
        d2 = torch.stack([_seg_dist2(p, a, bb), _seg_dist2(p, bb, cc), _seg_dist2(p, cc, a)], -1).amin(-1)
        keep = inside | (d2 < thr)
        x = torch.where(inside, d2, -d2) / sigma
        D = torch.where(keep, torch.sigmoid(x), torch.zeros_like(x))
        sil = 1.0 - torch.prod(1.0 - D, dim=1)
        wc = w.clamp(0.0, 1.0)
        wc = wc / wc.sum(-1, keepdim=True)
        zp = 1.0 / (wc / tz).sum(-1)
        zn = (far - zp) / (far - near)
        use = keep & (zp >= near) & (zp <= far)
        logit = torch.where(use, torch.log(torch.where(use, D, torch.ones_like(D))) + zn / gamma, -math.inf)
        bg = torch.full((logit.shape[0], 1), eps / gamma, dtype=logit.dtype)
        wts = torch.softmax(torch.cat([logit, bg], 1), 1)[:, :-1]  # (HW, F)
        if vertex_features is not None:
            vf = vertex_features[b][faces][ok]  # (F, 3, C)
            wp = wc / tz
            wp = wp / wp.sum(-1, keepdim=True)
            col = torch.einsum("pfk,fkc->pfc", wp, vf)
            img = (wts[..., None] * col).sum(1)
        else:
            ff = face_features if face_features.dim() == 2 else face_features[b]
            img = wts @ ff[ok]
        feats_out.append(img.t().reshape(-1, H, W))
        sils.append(sil.reshape(1, H, W))
    return torch.stack(feats_out), torch.stack(sils)
