"""Z-buffer rasteriser with flat / Lambert shading (pure PyTorch, no OpenGL).

It makes every picture in the project (demos, training logs, docs). The face-pixel pairs come from
:mod:`dsrbody.render.pairs` (footprints without growth), as for :mod:`dsrbody.render.soft`, whose
conventions it keeps: camera frame x right, y down, z forward (metres); pixel ``(r, c)`` has its
centre at ``(c + 0.5, r + 0.5)``; a pixel belongs to a face when its centre lies inside the projected
triangle (edges included); the nearest face (perspective-correct depth) wins, ties going to the lower face
index. Faces with a vertex on or behind the camera plane (``z <= 0``) and zero-area faces are skipped.
No back-face culling; shading is two-sided.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from dsrbody.geometry.mesh import face_normals, vertex_normals
from dsrbody.render.pairs import (
    ROW_IZ,
    barycentric,
    chunk_ranges,
    enumerate_pairs,
    gather_rows,
    localize_,
    prepare_faces,
)

# face_normals and vertex_normals live in dsrbody.geometry.mesh; they stay importable from here.
__all__ = [
    "Fragments",
    "HardRender",
    "rasterize",
    "face_normals",
    "vertex_normals",
    "render_mesh",
    "DEFAULT_COLOR",
    "DEFAULT_LIGHT",
]

#: Default mesh colour (RGB in [0, 1]): a light clay.
DEFAULT_COLOR = (0.78, 0.74, 0.70)
#: Default light direction in the camera frame (from the surface towards the light): above-left of the
#: camera, so that the body reads in relief.
DEFAULT_LIGHT = (-0.35, -0.55, -1.0)


@dataclass
class Fragments:
    """Per-pixel result of :func:`rasterize`.

    Attributes:
        face_index: ``(B, H, W)`` long, index into ``faces`` or -1 for background.
        depth: ``(B, H, W)`` perspective-correct camera depth (metres), ``inf`` for background.
        bary: ``(B, H, W, 3)`` perspective-correct barycentric coordinates of the pixel centre in its face
            (zeros for background).
    """

    face_index: torch.Tensor
    depth: torch.Tensor
    bary: torch.Tensor

    @property
    def mask(self) -> torch.Tensor:
        """``(B, H, W)`` bool, True where a face covers the pixel."""
        return self.face_index >= 0


@dataclass
class HardRender:
    """Shaded picture and buffers from :func:`render_mesh`.

    Attributes:
        rgba: ``(B, H, W, 4)`` float in [0, 1]; alpha is 1 on the mesh and 0 elsewhere.
        fragments: the :class:`Fragments` (face index, depth and barycentric buffers).
    """

    rgba: torch.Tensor
    fragments: Fragments

    @property
    def depth(self) -> torch.Tensor:
        """``(B, H, W)`` depth buffer, metres (``inf`` for background)."""
        return self.fragments.depth

    @property
    def face_index(self) -> torch.Tensor:
        """``(B, H, W)`` face-index buffer (-1 for background)."""
        return self.fragments.face_index

    def to_uint8(self, background: tuple[float, float, float] | None = (1.0, 1.0, 1.0)) -> np.ndarray:
        """``(B, H, W, 3)`` uint8 RGB composited over ``background`` (or ``(B, H, W, 4)`` RGBA if None)."""
        rgba = self.rgba.detach().cpu()
        if background is None:
            out = rgba
        else:
            bg = torch.tensor(background, dtype=rgba.dtype)
            out = rgba[..., :3] * rgba[..., 3:] + bg * (1.0 - rgba[..., 3:])
        return (out.clamp(0, 1) * 255.0 + 0.5).to(torch.uint8).numpy()


def _as_batch(vertices: torch.Tensor | np.ndarray) -> tuple[torch.Tensor, bool]:
    v = torch.as_tensor(vertices)
    if not v.is_floating_point():
        v = v.float()
    if v.dim() == 2:
        return v[None], True
    if v.dim() != 3 or v.shape[-1] != 3:
        raise ValueError(f"vertices must be (V, 3) or (B, V, 3), got {tuple(v.shape)}")
    return v, False


@torch.no_grad()
def rasterize(
    vertices: torch.Tensor | np.ndarray,
    faces: torch.Tensor | np.ndarray,
    *,
    focal: float | torch.Tensor,
    principal_point: float | torch.Tensor | tuple[float, float],
    image_size: tuple[int, int],
    max_pairs_per_chunk: int = 1 << 20,
) -> Fragments:
    """Z-buffer rasterisation.

    Args:
        vertices: ``(B, V, 3)`` (or ``(V, 3)``) camera frame, metres.
        faces: ``(F, 3)`` vertex indices.
        focal: pixels, scalar, ``(B,)`` or ``(B, 2)``. principal_point: pixels, ``(2,)`` or ``(B, 2)``.
        image_size: ``(H, W)``.
        max_pairs_per_chunk: candidate face-pixel pairs processed at once (memory knob).

    Returns:
        :class:`Fragments` with batch dimension (``B = 1`` for unbatched input).
    """
    v, _ = _as_batch(vertices)
    faces_t = torch.as_tensor(faces, device=v.device).long()
    if faces_t.dim() != 2 or faces_t.shape[-1] != 3:
        raise ValueError(f"faces must be (F, 3), got {tuple(faces_t.shape)}")
    B, V, _ = v.shape
    F = faces_t.shape[0]
    H, W = (int(s) for s in image_size)
    if F and (int(faces_t.min()) < 0 or int(faces_t.max()) >= V):
        raise ValueError(f"faces index vertices outside [0, {V})")
    dev, dtype = v.device, v.dtype
    finite = torch.isfinite(v).all(-1).all(-1)
    v = torch.where(finite[:, None, None], v, torch.ones((), dtype=dtype, device=dev))
    fc = prepare_faces(v, faces_t, focal, principal_point, H, W, 0.0, sort=False)
    counts = fc.counts * finite.repeat_interleave(F)
    tableT = fc.table.t().contiguous()
    localT = localize_(tableT.clone(), fc.c0, fc.r0)
    N = B * H * W
    zbuf = torch.full((N,), math.inf, dtype=dtype, device=dev)
    hits = []
    for f0, f1, n in chunk_ranges(counts, max_pairs_per_chunk):
        fid, pix, coff, roff = enumerate_pairs(f0, f1, n, counts, fc.base, fc.bw, W)
        tab = gather_rows(localT, fid)
        w = barycentric(tab, coff.to(dtype), roff.to(dtype))
        inside = w.amin(0) >= 0
        fid, pix, w, tab = fid[inside], pix[inside], w[:, inside], tab[:, inside]
        depth = 1.0 / (w * tab[ROW_IZ:]).sum(0)
        zbuf.scatter_reduce_(0, pix, depth, "amin")
        hits.append((fid, pix, depth))
    face_index = torch.full((N,), -1, dtype=torch.long, device=dev)
    if hits:
        fid = torch.cat([h[0] for h in hits])
        pix = torch.cat([h[1] for h in hits])
        depth = torch.cat([h[2] for h in hits])
        win = depth == zbuf[pix]
        big = torch.full((N,), B * F, dtype=torch.long, device=dev)
        big.scatter_reduce_(0, pix[win], fid[win], "amin")
        face_index = torch.where(big < B * F, big, face_index)
    covered = (face_index >= 0).nonzero().squeeze(1)
    bary = torch.zeros(N, 3, dtype=dtype, device=dev)
    if covered.numel():
        fid = face_index[covered]
        W_ = torch.as_tensor(W, device=dev)
        col = covered % W_
        row = torch.div(covered, W_, rounding_mode="floor") % H
        tab = gather_rows(tableT, fid)
        w = barycentric(tab, col.to(dtype) + 0.5, row.to(dtype) + 0.5)
        wp = w * tab[ROW_IZ:]
        bary[covered] = (wp / wp.sum(0)).t()
        face_index[covered] = fid % max(F, 1)
    return Fragments(
        face_index=face_index.reshape(B, H, W),
        depth=zbuf.reshape(B, H, W),
        bary=bary.reshape(B, H, W, 3),
    )


@torch.no_grad()
def render_mesh(
    vertices: torch.Tensor | np.ndarray,
    faces: torch.Tensor | np.ndarray,
    *,
    focal: float | torch.Tensor,
    principal_point: float | torch.Tensor | tuple[float, float],
    image_size: tuple[int, int],
    face_colors: torch.Tensor | np.ndarray | None = None,
    vertex_colors: torch.Tensor | np.ndarray | None = None,
    shading: str = "smooth",
    light_dir: tuple[float, float, float] = DEFAULT_LIGHT,
    ambient: float = 0.35,
    diffuse: float = 0.65,
) -> HardRender:
    """Render a shaded mesh with the z-buffer.

    Args:
        vertices: ``(B, V, 3)`` or ``(V, 3)`` camera frame, metres.
        faces: ``(F, 3)``.
        focal, principal_point, image_size: as in :func:`rasterize`.
        face_colors: ``(F, 3)`` or ``(B, F, 3)`` RGB in [0, 1] (per-face, flat), or
        vertex_colors: ``(V, 3)`` or ``(B, V, 3)`` RGB in [0, 1], interpolated perspective-correctly.
            Neither: :data:`DEFAULT_COLOR`.
        shading: ``"flat"`` (Lambert with face normals), ``"smooth"`` (Lambert with interpolated vertex
            normals) or ``"none"`` (unlit colours, e.g. label maps).
        light_dir: direction towards a directional light, camera frame. Lambert is two-sided
            (``|n . l|``): no back-face culling.
        ambient, diffuse: light intensities (colour x (ambient + diffuse |n . l|), clipped to 1).

    Returns:
        :class:`HardRender` (``rgba (B, H, W, 4)`` in [0, 1] and the fragments).
    """
    if shading not in ("flat", "smooth", "none"):
        raise ValueError(f"shading must be 'flat', 'smooth' or 'none', got {shading!r}")
    if face_colors is not None and vertex_colors is not None:
        raise ValueError("give face_colors or vertex_colors, not both")
    v, _ = _as_batch(vertices)
    faces_t = torch.as_tensor(faces, device=v.device).long()
    B, V, _ = v.shape
    F = faces_t.shape[0]
    frags = rasterize(v, faces_t, focal=focal, principal_point=principal_point, image_size=image_size)
    H, W = frags.face_index.shape[1:]
    rgba = torch.zeros(B, H, W, 4, dtype=v.dtype, device=v.device)
    mask = frags.face_index >= 0
    if not bool(mask.any()):
        return HardRender(rgba=rgba, fragments=frags)
    bidx = torch.arange(B, device=v.device)[:, None, None].expand(B, H, W)[mask]
    fidx = frags.face_index[mask]
    bary = frags.bary[mask]  # (M, 3)
    corners = faces_t[fidx]  # (M, 3)
    if face_colors is not None:
        fc = torch.as_tensor(face_colors, dtype=v.dtype, device=v.device)
        fc = fc[None].expand(B, F, 3) if fc.dim() == 2 else fc
        if fc.shape != (B, F, 3):
            raise ValueError(f"face_colors must be (F, 3) or (B, F, 3), got {tuple(fc.shape)}")
        color = fc[bidx, fidx]
    elif vertex_colors is not None:
        vc = torch.as_tensor(vertex_colors, dtype=v.dtype, device=v.device)
        vc = vc[None].expand(B, V, 3) if vc.dim() == 2 else vc
        if vc.shape != (B, V, 3):
            raise ValueError(f"vertex_colors must be (V, 3) or (B, V, 3), got {tuple(vc.shape)}")
        color = (vc[bidx[:, None], corners] * bary[..., None]).sum(1)
    else:
        color = torch.tensor(DEFAULT_COLOR, dtype=v.dtype, device=v.device).expand(len(fidx), 3)
    if shading != "none":
        light = torch.nn.functional.normalize(torch.tensor(light_dir, dtype=v.dtype, device=v.device), dim=0)
        if shading == "flat":
            n = face_normals(v, faces_t)[bidx, fidx]
        else:
            vn = vertex_normals(v, faces_t)
            n = torch.nn.functional.normalize((vn[bidx[:, None], corners] * bary[..., None]).sum(1), dim=-1)
        lam = (n @ light).abs()
        color = (color * (ambient + diffuse * lam)[:, None]).clamp(0.0, 1.0)
    rgba[mask] = torch.cat([color, torch.ones_like(color[:, :1])], dim=1)
    return HardRender(rgba=rgba, fragments=frags)
