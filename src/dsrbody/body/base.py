"""The ``BodyModel`` interface shared by every body family (docs/design.md, Body models).

A body model maps a global orientation, per-joint relative rotations and a shape vector to a mesh
and a keypoint set, in the SMPL canonical frame: metres, y up, the body facing +z, +x the
subject's left. Camera and global-orientation conventions are therefore identical for SMPL and
Anny.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn


@dataclass
class BodyOutput:
    """What a :class:`BodyModel` returns.

    Attributes:
        vertices: ``(B, V, 3)`` posed vertices, metres, model frame (y up, facing +z).
        joints: ``(B, K, 3)`` the model's keypoint set in metres (see ``BodyModel.keypoint_set``).
        skeleton_joints: ``(B, J, 3)`` posed kinematic joints (the skinning skeleton), metres.
        rest_vertices: ``(B, V, 3)`` shaped vertices in the rest pose (zero pose), metres.
    """

    vertices: torch.Tensor
    joints: torch.Tensor
    skeleton_joints: torch.Tensor
    rest_vertices: torch.Tensor


def topology_id(faces: np.ndarray | torch.Tensor) -> str:
    """A short stable hash of a face array ``(F, 3)``; two meshes share a topology iff equal."""
    arr = faces.detach().cpu().numpy() if isinstance(faces, torch.Tensor) else np.asarray(faces)
    arr = np.ascontiguousarray(arr.astype(np.int64))
    h = hashlib.sha1(arr.tobytes()).hexdigest()[:16]
    return f"{arr.shape[0]}f-{h}"


class BodyModel(nn.Module):
    """Abstract body model.

    Subclasses set these attributes (registered as buffers where tensors):

    - ``faces``: ``(F, 3)`` long
    - ``parents``: ``(J,)`` long, ``-1`` for the root
    - ``lbs_weights``: ``(V, J)`` float skinning weights
    - ``joint_names``: list of ``J`` names of the kinematic joints
    - ``num_joints`` (J), ``shape_dim`` (S), ``name`` (``"smpl"``, ``"anny"``, ...)

    and implement :meth:`forward`.
    """

    name: str = "body"
    num_joints: int
    shape_dim: int
    joint_names: list[str]
    faces: torch.Tensor
    parents: torch.Tensor
    lbs_weights: torch.Tensor

    @property
    def num_vertices(self) -> int:
        """Number of mesh vertices V."""
        return int(self.lbs_weights.shape[0])

    @property
    def topology_id(self) -> str:
        """Hash of ``faces``; used to check that a clothing prior fits this mesh."""
        return topology_id(self.faces)

    def forward(  # pragma: no cover - interface
        self, global_orient: torch.Tensor, body_pose: torch.Tensor, shape: torch.Tensor
    ) -> BodyOutput:
        """Pose and shape the body.

        Args:
            global_orient: ``(B, 3, 3)`` rotation of the root in the model frame.
            body_pose: ``(B, J-1, 3, 3)`` rotations of the other joints relative to their parents.
            shape: ``(B, S')`` shape coefficients, ``S' <= S`` (missing trailing ones are zero).

        Returns:
            :class:`BodyOutput`.
        """
        raise NotImplementedError

    def mean_params(self) -> dict[str, torch.Tensor]:  # pragma: no cover - interface
        """Mean parameters the regressor starts from.

        Returns:
            ``{"global_orient": (3, 3), "body_pose": (J-1, 3, 3), "shape": (S,)}``.
        """
        raise NotImplementedError

    def check_inputs(self, global_orient: torch.Tensor, body_pose: torch.Tensor, shape: torch.Tensor) -> None:
        """Raise ``ValueError`` with a clear message when the input shapes do not fit this model."""
        B = global_orient.shape[0] if global_orient.dim() >= 1 else -1
        if global_orient.dim() != 3 or tuple(global_orient.shape[1:]) != (3, 3):
            raise ValueError(
                f"{self.name}: global_orient must be (B, 3, 3) rotation matrices, got "
                f"{tuple(global_orient.shape)}"
            )
        if body_pose.dim() != 4 or tuple(body_pose.shape[1:]) != (self.num_joints - 1, 3, 3):
            raise ValueError(
                f"{self.name}: body_pose must be (B, {self.num_joints - 1}, 3, 3) rotation matrices, "
                f"got {tuple(body_pose.shape)}"
            )
        if shape.dim() != 2:
            raise ValueError(f"{self.name}: shape must be (B, S), got {tuple(shape.shape)}")
        if shape.shape[1] > self.shape_dim:
            raise ValueError(
                f"{self.name}: shape has {shape.shape[1]} coefficients but this model supports at "
                f"most {self.shape_dim}"
            )
        if body_pose.shape[0] != B or shape.shape[0] != B:
            raise ValueError(
                f"{self.name}: batch sizes differ: global_orient {B}, body_pose {body_pose.shape[0]}, "
                f"shape {shape.shape[0]}"
            )
