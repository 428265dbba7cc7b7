"""Triangle-mesh normals (the renderer's shading and the procedural garments use the same ones) and volume."""

from __future__ import annotations

import torch

__all__ = ["face_normals", "vertex_normals", "mesh_volume"]


def face_normals(vertices: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    """Unit face normals.

    Args:
        vertices: ``(B, V, 3)``, any frame and unit.
        faces: ``(F, 3)`` long vertex indices; the normal is ``(v1 - v0) x (v2 - v0)`` (right-handed).

    Returns:
        ``(B, F, 3)`` unit normals (zero for degenerate faces).
    """
    tri = vertices[:, faces]
    n = torch.linalg.cross(tri[:, :, 1] - tri[:, :, 0], tri[:, :, 2] - tri[:, :, 0], dim=-1)
    return torch.nn.functional.normalize(n, dim=-1, eps=1e-12)


def vertex_normals(vertices: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    """Area-weighted unit vertex normals: the normalised sum of the adjacent faces' ``(v1 - v0) x (v2 - v0)``.

    Args:
        vertices: ``(B, V, 3)`` or ``(V, 3)`` (counter-clockwise faces seen from outside give outward
            normals).
        faces: ``(F, 3)`` vertex indices (moved to the vertices' device).

    Returns:
        Normals with the shape of ``vertices`` (unit length; zero for vertices on no face).
    """
    squeeze = vertices.dim() == 2
    v = vertices[None] if squeeze else vertices
    f = faces.to(v.device).long()
    a, b, c = v[:, f[:, 0]], v[:, f[:, 1]], v[:, f[:, 2]]
    fn = torch.cross(b - a, c - a, dim=-1)  # (B, F, 3), length = 2 * area
    n = torch.zeros_like(v)
    for k in range(3):
        n.index_add_(1, f[:, k], fn)
    n = n / n.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    return n[0] if squeeze else n


def mesh_volume(vertices: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    """Enclosed volume of closed meshes (divergence theorem, about each mesh's mean vertex).

    Args:
        vertices: ``(B, V, 3)``. faces: ``(F, 3)`` consistently oriented triangles of a watertight mesh.

    Returns:
        ``(B,)`` in the cube of the vertices' unit (m^3 for metres); the sign of the orientation is
        dropped. An open mesh gives the volume of the cone from the mean vertex over its surface.
    """
    v = vertices - vertices.mean(dim=1, keepdim=True)
    a, b, c = (v[:, faces[:, k]] for k in range(3))
    return (a * torch.cross(b, c, dim=-1)).sum(dim=(-1, -2)).abs() / 6.0
