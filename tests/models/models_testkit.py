"""Helpers for the model tests: a tiny body model and a tiny backbone (cheap and exact)."""

from __future__ import annotations

import torch
from torch import nn

from dsrbody.body.base import BodyModel, BodyOutput
from dsrbody.geometry.rotations import axis_angle_to_matrix


class TinyBody(BodyModel):
    """A J-joint chain with linear shape blend shapes and linear blend skinning (float32).

    Vertices: ``V = 4 * J`` points around the joints; joints output = the skeleton joints plus the
    vertex centroid (K = J + 1).
    """

    name = "tiny"

    def __init__(self, num_joints: int = 5, shape_dim: int = 3, seed: int = 0, flip_mean: bool = True):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        J, S, V = num_joints, shape_dim, 4 * num_joints
        self.num_joints, self.shape_dim = J, S
        self.joint_names = [f"j{i}" for i in range(J)]
        self.register_buffer("parents", torch.tensor([-1] + list(range(J - 1))))
        joints = torch.zeros(J, 3)
        joints[:, 1] = torch.arange(J, dtype=torch.float32) * 0.2
        self.register_buffer("rest_joints", joints)
        owner = torch.arange(V) // 4
        self.register_buffer("v_template", joints[owner] + 0.05 * torch.randn(V, 3, generator=g))
        self.register_buffer("shapedirs", 0.02 * torch.randn(V, 3, S, generator=g))
        self.register_buffer("lbs_weights", torch.nn.functional.one_hot(owner, J).float())
        faces = torch.stack([torch.arange(V - 2), torch.arange(1, V - 1), torch.arange(2, V)], dim=1)
        self.register_buffer("faces", faces)
        self.flip_mean = flip_mean

    def forward(self, global_orient, body_pose, shape):
        self.check_inputs(global_orient, body_pose, shape)
        B = global_orient.shape[0]
        S = shape.shape[1]
        rest = self.v_template + torch.einsum("vcs,bs->bvc", self.shapedirs[..., :S], shape)
        rots = torch.cat([global_orient[:, None], body_pose], dim=1)
        J = self.num_joints
        Rg, tg = [], []
        for j in range(J):
            p = int(self.parents[j])
            if p < 0:
                Rg.append(rots[:, 0])
                tg.append(self.rest_joints[0].expand(B, 3))
            else:
                Rg.append(Rg[p] @ rots[:, j])
                tg.append(tg[p] + torch.einsum("bij,j->bi", Rg[p], self.rest_joints[j] - self.rest_joints[p]))
        Rg_t = torch.stack(Rg, 1)  # (B, J, 3, 3)
        tg_t = torch.stack(tg, 1)  # (B, J, 3)
        local = rest[:, :, None, :] - self.rest_joints[None, None]  # (B, V, J, 3)
        per_joint = torch.einsum("bjik,bvjk->bvji", Rg_t, local) + tg_t[:, None]
        verts = (self.lbs_weights[None, :, :, None] * per_joint).sum(2)
        joints = torch.cat([tg_t, verts.mean(1, keepdim=True)], dim=1)
        return BodyOutput(vertices=verts, joints=joints, skeleton_joints=tg_t, rest_vertices=rest)

    def mean_params(self):
        go = torch.diag(torch.tensor([1.0, -1.0, -1.0])) if self.flip_mean else torch.eye(3)
        bp = axis_angle_to_matrix(torch.full((self.num_joints - 1, 3), 0.1))
        return {"global_orient": go, "body_pose": bp, "shape": torch.full((self.shape_dim,), 0.3)}


def tiny_backbone(channels: int = 8) -> nn.Module:
    """A 2-layer conv net standing in for a ResNet: ``(B, 3, H, W) -> (B, channels, H/8, W/8)``."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, channels, 3, stride=4, padding=1),
        nn.ReLU(),
        nn.Conv2d(channels, channels, 3, stride=2, padding=1),
    )
