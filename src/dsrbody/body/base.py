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

from dsrbody.body.keypoints import SMPL24


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
    - ``num_joints`` (J), ``shape_dim`` (S), ``name`` (``"smpl"``, ``"anny"``, ...: the name it is
      registered under in :mod:`dsrbody.body.factory`)

    and implement :meth:`forward` and :meth:`mean_params`.

    Capabilities. What code outside ``body/`` needs to know about a body model is asked here, never
    by comparing its ``name``; each has a default a subclass overrides where it differs:

    - ``keypoint_confidence``: ``(K,)`` buffer, 1 for the keypoints of ``forward().joints`` the model
      produces and 0 for those it cannot (Anny has no LSP neck or head top), or ``None`` (default:
      every keypoint is real). Losses, evaluation joints and synthetic keypoints mask with it.
    - :attr:`mesh_name`: which mesh this is: the mesh option it was built with, for families with
      several meshes (Anny: ``"anny"`` or ``"notoes_collapse10pc"``), else its :attr:`topology_id`.
    - ``shape_bounds``: the box of a bounded shape space, or ``None`` (unbounded, the default).
    - :meth:`pad_shape`: a shape vector completed to ``S`` values as ``forward`` completes it.
    - :meth:`default_shape`, :meth:`check_shape`, :attr:`shape_help`: a shape given by a user.
    - :attr:`smpl_equivalents`, :attr:`limited_joints`: which joints are SMPL's (pose retargeting,
      joint limits).
    - :meth:`sample_shape`: the synthetic data's shape distribution.
    - :attr:`stature_index`, :attr:`stature_range`: the shape coefficient that sets the body's height
      and the range searched (:func:`dsrbody.body.stature.with_stature`).

    Facts needed before a model is built (its options, files, genders, what data files hold) are the
    fields of its :class:`~dsrbody.body.factory.BodySpec` in the registry.
    """

    name: str = "body"
    num_joints: int
    shape_dim: int
    joint_names: list[str]
    faces: torch.Tensor
    parents: torch.Tensor
    lbs_weights: torch.Tensor
    keypoint_confidence: torch.Tensor | None
    #: ``(lo, hi)``, each ``(S,)``, of a bounded shape space, or None (unbounded; the default). With
    #: bounds the regressor predicts an unbounded vector and maps it into the box with a sigmoid
    #: (:mod:`dsrbody.models.hmr`), and fitting optimises that logit. A class or instance attribute,
    #: or a property (Anny).
    shape_bounds: tuple[torch.Tensor, torch.Tensor] | None = None
    #: The shape coefficient that sets the body's stature, which :func:`dsrbody.body.stature.with_stature`
    #: searches when a person's height is known, or None (the body's height cannot be set).
    stature_index: int | None = None
    #: ``(lo, hi)``: the range of that coefficient searched. A bounded shape space searches its bounds.
    stature_range: tuple[float, float] = (-5.0, 5.0)

    def __init__(self) -> None:
        super().__init__()
        # every keypoint is real unless a subclass registers a (K,) 0/1 confidence under this name
        self.register_buffer("keypoint_confidence", None, persistent=False)

    @property
    def num_vertices(self) -> int:
        """Number of mesh vertices V."""
        return int(self.lbs_weights.shape[0])

    @property
    def topology_id(self) -> str:
        """Hash of ``faces``; used to check that a clothing prior fits this mesh."""
        return topology_id(self.faces)

    @property
    def mesh_name(self) -> str:
        """The mesh: its option name for families with several meshes (Anny's ``topology``), else
        :attr:`topology_id`."""
        return self.topology_id

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

    # ------------------------------------------------------------------------------------------
    # Capabilities (see the class docstring)
    # ------------------------------------------------------------------------------------------
    def pad_shape(self, shape: torch.Tensor) -> torch.Tensor:
        """``(B, S')`` shape coefficients, ``S' <= S``, completed to ``(B, S)`` with the values
        :meth:`forward` takes for the missing trailing ones: zeros here (SMPL's betas)."""
        missing = self.shape_dim - shape.shape[1]
        return torch.nn.functional.pad(shape, (0, missing)) if missing > 0 else shape

    def default_shape(self, gender: str = "neutral") -> list[float]:
        """The ``S`` shape values of the body to show when a user gives none: zeros (the average body
        of the model; a gendered family picks its file by gender instead)."""
        return [0.0] * self.shape_dim

    def check_shape(self, values, source: str = "shape") -> list[float]:
        """Check shape values given by a user (``--shape``, a pose file); raise ``ValueError`` (one
        line naming ``source``) for values the model would not honour. Any finite value is fine here."""
        return [float(v) for v in values]

    @property
    def shape_help(self) -> str:
        """What the shape values are, for messages (``"10 betas"``, Anny's phenotype names)."""
        return f"{self.shape_dim} shape coefficients"

    @property
    def smpl_equivalents(self) -> dict[str, str]:
        """Joint name -> the SMPL-24 joint (:data:`~dsrbody.body.keypoints.SMPL24` name) that is the
        same anatomical joint, for the joints that have one, in joint order. A skeleton named as
        SMPL-24 maps onto itself (the default); other skeletons have none unless they say."""
        names = tuple(self.joint_names)
        return {n: n for n in names} if names == SMPL24.names else {}

    @property
    def limited_joints(self) -> tuple[str, ...]:
        """SMPL-24 names of the joints to which the anatomical limits written for SMPL's T-pose
        (:data:`dsrbody.data.synth.poses.JOINT_LIMITS`) apply as they are: default, every joint of
        :attr:`smpl_equivalents` but the root (a T-pose rest pose, as SMPL's)."""
        return tuple(v for v in self.smpl_equivalents.values() if v != SMPL24.names[0])

    def sample_shape(self, rng: np.random.Generator) -> tuple[np.ndarray, str]:
        """A random shape of the synthetic data (``dsrbody synth``) and its gender, ``"m"`` or ``"f"``
        (or ``"n"``), drawn from ``rng`` only.

        Raises:
            NotImplementedError: the model has no shape distribution for synthetic data.
        """
        raise NotImplementedError(f"{self.name}: no shape distribution for synthetic data")

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
