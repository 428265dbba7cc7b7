"""dsrbody.geometry.mesh: the one home of face and vertex normals (the renderer and the garments use it)."""

from __future__ import annotations

import torch

import dsrbody.garments
import dsrbody.garments.geometry
import dsrbody.render.hard
from dsrbody.geometry import face_normals, vertex_normals


def _tetrahedron() -> tuple[torch.Tensor, torch.Tensor]:
    """A closed tetrahedron around the origin, faces counter-clockwise seen from outside."""
    v = torch.tensor([[1.0, 1, 1], [1, -1, -1], [-1, 1, -1], [-1, -1, 1]], dtype=torch.float64)
    f = torch.tensor([[0, 1, 2], [0, 3, 1], [0, 2, 3], [1, 3, 2]])
    return v, f


def test_one_vertex_normals_everywhere():
    assert dsrbody.render.hard.vertex_normals is vertex_normals
    assert dsrbody.render.hard.face_normals is face_normals
    assert dsrbody.garments.vertex_normals is vertex_normals
    assert dsrbody.garments.geometry.vertex_normals is vertex_normals


def test_normals_of_a_tetrahedron():
    v, f = _tetrahedron()
    fn = face_normals(v[None], f)[0]
    centres = v[f].mean(1)
    assert torch.allclose(fn.norm(dim=-1), torch.ones(4, dtype=torch.float64))
    assert ((fn * centres).sum(-1) > 0).all()  # outward
    # regular tetrahedron: the vertex normal is the direction of the vertex from the centre
    vn = vertex_normals(v, f)
    assert vn.shape == (4, 3)
    assert torch.allclose(vn, v / v.norm(dim=-1, keepdim=True), atol=1e-12)
    # batched input gives the same per sample; an unused vertex gets a zero normal
    vb = torch.cat([v, torch.zeros(1, 3, dtype=v.dtype)])[None].repeat(2, 1, 1)
    vb[1] *= 2.0
    nb = vertex_normals(vb, f)
    assert nb.shape == (2, 5, 3)
    assert torch.allclose(nb[0, :4], vn) and torch.allclose(nb[1, :4], vn)
    assert float(nb[:, 4].abs().sum()) == 0.0


def test_mesh_volume_against_trimesh():
    import trimesh

    from dsrbody.geometry.mesh import mesh_volume

    shapes = [trimesh.creation.icosphere(subdivisions=2, radius=0.7), trimesh.creation.box((0.3, 0.5, 1.7))]
    for m in shapes:
        v = torch.as_tensor(m.vertices, dtype=torch.float64)[None] + torch.tensor(
            [1.0, -2.0, 3.0], dtype=torch.float64
        )
        f = torch.as_tensor(m.faces, dtype=torch.long)
        torch.testing.assert_close(mesh_volume(v, f), torch.tensor([m.volume], dtype=torch.float64))
        torch.testing.assert_close(mesh_volume(2 * v, f), torch.tensor([8 * m.volume], dtype=torch.float64))
