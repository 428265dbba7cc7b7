"""SMPL from the official model files (docs/design.md, Body models).

``SMPL(model_path, gender)`` reads ``SMPL_{NEUTRAL,MALE,FEMALE}.pkl`` / ``.npz`` (or the
``basicModel_*`` names) without chumpy (see :mod:`dsrbody.body.smpl_io`) and poses it with linear
blend skinning and pose blend shapes (:mod:`dsrbody.body.lbs`); its output equals the ``smplx``
package's on the same file.

Optional files, looked for in ``regressor_dir`` (default: the model file's folder, then its parent,
which is SPIN's ``data/`` when the model sits in ``data/smpl/``):

- ``J_regressor_extra.npy`` (9 x 6890): with it, ``joints`` is SPIN's 49-keypoint set
  (:data:`~dsrbody.body.keypoints.SPIN49`, built with
  :data:`~dsrbody.body.keypoints.SMPL_SPIN49_SOURCES`); without it, ``joints`` is the 24 SMPL joints.
- ``J_regressor_h36m.npy`` (17 x 6890): :meth:`SMPL.h36m_joints`.
- ``smpl_mean_params.npz``: :meth:`SMPL.mean_params`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from dsrbody.body import lbs
from dsrbody.body.base import BodyModel, BodyOutput
from dsrbody.body.keypoints import H36M17, SMPL24, SMPL_SPIN49_SOURCES, SPIN49, KeypointSet
from dsrbody.body.smpl_io import find_aux_file, load_mean_params, load_regressor, load_smpl

__all__ = ["SMPL", "EXTRA_REGRESSOR_FILE", "H36M_REGRESSOR_FILE", "MEAN_PARAMS_FILE"]

EXTRA_REGRESSOR_FILE = "J_regressor_extra.npy"
H36M_REGRESSOR_FILE = "J_regressor_h36m.npy"
MEAN_PARAMS_FILE = "smpl_mean_params.npz"


class SMPL(BodyModel):
    """The SMPL body model (neutral, male or female) from the official files.

    Args:
        model_path: a model file (``.pkl`` / ``.npz``) or a folder holding ``SMPL_{GENDER}.pkl`` (or
            ``.npz``, or the ``basicModel_*`` names; also looked for in its ``smpl/`` subfolder).
        gender: ``"neutral"``, ``"male"`` or ``"female"`` (picks the file when ``model_path`` is a folder).
        num_betas: shape components to use (default: all in the file; more than the file has is an
            error).
        regressor_dir: folder of ``J_regressor_extra.npy``, ``J_regressor_h36m.npy`` and
            ``smpl_mean_params.npz`` (default: the model file's folder, then its parent).
        dtype: floating dtype of the buffers.

    Attributes:
        keypoint_set: :data:`SPIN49` when ``J_regressor_extra.npy`` was found, else :data:`SMPL24`;
            ``forward(...).joints`` follows it.
        model_file: the file read.

    Buffers: ``faces (F, 3)`` long, ``parents (24,)`` long, ``lbs_weights (V, 24)``, ``v_template
    (V, 3)``, ``shapedirs (S, 3, V)`` and ``posedirs (207, 3, V)`` (coordinate-major: ``shapedirs[s]``
    is component ``s`` as a ``(3, V)`` array, i.e. the file's ``(V, 3, S)`` transposed),
    ``J_regressor (24, V)``, plus the joint
    bases ``joint_template (24, 3)`` and ``joint_shapedirs (S, 72)`` (``J_regressor`` applied to the
    template and to each shape component, computed in float64). Index buffers of the keypoint maps
    (``_kp_*``) and ``_v_template_t`` are not persistent.
    """

    name = "smpl"
    #: The first beta: the first principal component of SMPL's shape space, mostly stature; +-5 standard
    #: deviations are searched (docs/design.md, "Known stature").
    stature_index = 0
    stature_range = (-5.0, 5.0)

    def __init__(
        self,
        model_path: str | Path,
        gender: str = "neutral",
        num_betas: int | None = None,
        regressor_dir: str | Path | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        super().__init__()
        data = load_smpl(model_path, gender=gender, num_joints=24)
        self.model_file = data.path
        self.gender = gender
        S = data.num_betas
        if num_betas is not None:
            if num_betas > S:
                raise ValueError(f"num_betas={num_betas} but {data.path} has only {S} shape components")
            if num_betas < 0:
                raise ValueError(f"num_betas must be >= 0, got {num_betas}")
            S = num_betas
        self.num_joints = 24
        self.shape_dim = S
        self.joint_names = list(SMPL24.names)
        self.dtype = dtype
        V = data.v_template.shape[0]
        shapedirs = data.shapedirs[:, :, :S]

        def buf(name: str, arr: np.ndarray, dt: torch.dtype = dtype) -> None:
            self.register_buffer(name, torch.as_tensor(np.ascontiguousarray(arr)).to(dt))

        buf("faces", data.faces, torch.long)
        buf("parents", data.parents, torch.long)
        buf("lbs_weights", data.weights)
        buf("v_template", data.v_template)
        # blend-shape bases coordinate-major: component k is a (3, V) array (see forward)
        buf("shapedirs", shapedirs.transpose(2, 1, 0))
        buf("posedirs", data.posedirs.transpose(2, 1, 0))
        self.register_buffer(
            "_v_template_t", torch.as_tensor(data.v_template.T.reshape(-1)).to(dtype), persistent=False
        )
        buf("J_regressor", data.J_regressor)
        buf("joint_template", data.J_regressor @ data.v_template)
        buf("joint_shapedirs", np.einsum("jv,vcs->sjc", data.J_regressor, shapedirs).reshape(S, -1))
        self._parent_list = tuple(int(p) for p in data.parents)
        lbs.kinematic_levels(self._parent_list)  # checks the tree

        if regressor_dir is not None:
            self.search_dirs = [Path(regressor_dir)]
        else:
            self.search_dirs = [data.path.parent, data.path.parent.parent]
        self.keypoint_set: KeypointSet = SMPL24
        extra_path = find_aux_file(EXTRA_REGRESSOR_FILE, self.search_dirs)
        if extra_path is not None:
            extra = load_regressor(EXTRA_REGRESSOR_FILE, self.search_dirs, 9, V, "SPIN's 49 keypoints")
            buf("J_regressor_extra", extra)
            self.keypoint_set = SPIN49
            # gather map into cat([skeleton joints (24), vertices used (n), extra joints (9)])
            verts = sorted({i for kind, i in SMPL_SPIN49_SOURCES if kind == "vertex"})
            self.register_buffer("_kp_vertex_ids", torch.as_tensor(verts, dtype=torch.long), persistent=False)
            pos = {"vertex": {v: 24 + k for k, v in enumerate(verts)}}
            gather = []
            for kind, i in SMPL_SPIN49_SOURCES:
                gather.append(
                    i if kind == "joint" else pos["vertex"][i] if kind == "vertex" else 24 + len(verts) + i
                )
            self.register_buffer("_kp_gather", torch.as_tensor(gather, dtype=torch.long), persistent=False)
        else:
            self.register_buffer("J_regressor_extra", None)
        h36m_path = find_aux_file(H36M_REGRESSOR_FILE, self.search_dirs)
        if h36m_path is not None:
            buf(
                "J_regressor_h36m",
                load_regressor(H36M_REGRESSOR_FILE, self.search_dirs, 17, V, "H36M joints"),
            )
        else:
            self.register_buffer("J_regressor_h36m", None)
        self.mean_params_file = find_aux_file(MEAN_PARAMS_FILE, self.search_dirs)

    # capabilities (BodyModel; the others keep the defaults: no keypoint confidence, unbounded betas
    # padded with zeros, SMPL-24 joints, limits on every joint but the root) -----------------------
    @property
    def shape_help(self) -> str:
        return f"{self.shape_dim} betas"

    def sample_shape(self, rng: np.random.Generator) -> tuple[np.ndarray, str]:
        """The synthetic data's betas: standard normal (they are unit-variance PCA coefficients); the
        gender is the model file's (``"m"``, ``"f"``, ``"n"``)."""
        return rng.normal(0.0, 1.0, self.shape_dim), self.gender[0]

    # ------------------------------------------------------------------------------------------
    def forward(
        self, global_orient: torch.Tensor, body_pose: torch.Tensor, shape: torch.Tensor
    ) -> BodyOutput:
        """Pose and shape SMPL.

        Args:
            global_orient: ``(B, 3, 3)`` root rotation.
            body_pose: ``(B, 23, 3, 3)`` joint rotations relative to the parent (SMPL joint order).
            shape: ``(B, S')`` betas, ``S' <= shape_dim`` (missing trailing ones are zero).

        Returns:
            :class:`BodyOutput`: ``vertices (B, V, 3)``, ``joints`` (``(B, 49, 3)`` SPIN-49 when
            ``keypoint_set`` is SPIN49, else ``(B, 24, 3)``), ``skeleton_joints (B, 24, 3)``,
            ``rest_vertices (B, V, 3)``; metres, model frame, no translation.
        """
        self.check_inputs(global_orient, body_pose, shape)
        rot_mats = torch.cat([global_orient.unsqueeze(1), body_pose], dim=1)
        rot_mats = rot_mats.to(self.v_template.dtype)
        shape = shape.to(self.v_template.dtype)
        B, V = rot_mats.shape[0], self.v_template.shape[0]
        # everything per vertex runs coordinate-major, (B, 3, V): one fused product per blend shape,
        # and the skinning's multiply-adds vectorise over vertices
        rest_t = lbs.blend(self._v_template_t, shape, self.shapedirs.flatten(1))
        rest_joints = lbs.joints_from_shape(shape, self.joint_template, self.joint_shapedirs)
        posed_t = lbs.blend(rest_t, lbs.pose_features(rot_mats), self.posedirs.flatten(1)).view(B, 3, V)
        skeleton, transforms = lbs.batch_rigid_transform(rot_mats, rest_joints, self._parent_list)
        out_t = lbs.skin_vertices_t(posed_t, self.lbs_weights, transforms)
        vertices = out_t.transpose(1, 2).contiguous()
        rest_vertices = rest_t.view(B, 3, V).transpose(1, 2).contiguous()
        joints = self._keypoints_t(out_t, skeleton) if self.keypoint_set is SPIN49 else skeleton
        return BodyOutput(
            vertices=vertices, joints=joints, skeleton_joints=skeleton, rest_vertices=rest_vertices
        )

    def _keypoints_t(self, v_t: torch.Tensor, skeleton: torch.Tensor) -> torch.Tensor:
        """SPIN's 49 keypoints ``(B, 49, 3)`` from coordinate-major posed vertices ``(B, 3, V)`` and the
        posed joints ``(B, 24, 3)``."""
        B = v_t.shape[0]
        extra = (v_t.reshape(B * 3, -1) @ self.J_regressor_extra.transpose(0, 1)).view(B, 3, -1)
        pool = torch.cat([v_t[:, :, self._kp_vertex_ids], extra], dim=2).transpose(1, 2)
        return torch.cat([skeleton, pool], dim=1)[:, self._kp_gather]

    def spin49_joints(self, vertices: torch.Tensor, skeleton_joints: torch.Tensor) -> torch.Tensor:
        """SPIN's 49 keypoints from a forward pass's ``vertices (B, V, 3)`` and ``skeleton_joints
        (B, 24, 3)``: ``(B, 49, 3)`` metres. Needs ``J_regressor_extra.npy``."""
        if self.J_regressor_extra is None:
            load_regressor(
                EXTRA_REGRESSOR_FILE, self.search_dirs, 9, self.num_vertices, "SPIN's 49 keypoints"
            )
            raise FileNotFoundError(  # only reached if the file appeared after construction
                f"{EXTRA_REGRESSOR_FILE} was not found when this model was built; build it again"
            )
        return self._keypoints_t(vertices.transpose(1, 2), skeleton_joints)

    def h36m_joints(self, vertices: torch.Tensor) -> torch.Tensor:
        """The 17 H36M joints (:data:`~dsrbody.body.keypoints.H36M17` order) regressed from vertices.

        Args:
            vertices: ``(B, V, 3)`` metres.

        Returns:
            ``(B, 17, 3)`` metres.

        Raises:
            FileNotFoundError: ``J_regressor_h36m.npy`` was not found (the message says where to get it).
        """
        if self.J_regressor_h36m is None:
            reg = load_regressor(
                H36M_REGRESSOR_FILE, self.search_dirs, len(H36M17), self.num_vertices, "H36M joints"
            )
            self.J_regressor_h36m = torch.as_tensor(
                reg, dtype=self.v_template.dtype, device=self.v_template.device
            )
        if vertices.dim() != 3 or vertices.shape[1:] != (self.num_vertices, 3):
            raise ValueError(
                f"smpl: vertices must be (B, {self.num_vertices}, 3), got {tuple(vertices.shape)}"
            )
        return lbs.vertices_to_joints(self.J_regressor_h36m.to(vertices.dtype), vertices)

    def mean_params(self) -> dict[str, torch.Tensor]:
        """Mean parameters the regressor starts from.

        From ``smpl_mean_params.npz`` when it was found (SPIN's file: ``pose`` 24 x 6D converted to
        rotation matrices, ``shape`` truncated or zero-padded to ``shape_dim``, and ``cam`` (3,)); without
        it, the zero pose (identity rotations) and zero betas, and no ``"cam"`` entry.

        Returns:
            ``{"global_orient": (3, 3), "body_pose": (23, 3, 3), "shape": (S,)}`` (+ ``"cam": (3,)``).
        """
        dt = self.v_template.dtype
        dev = self.v_template.device
        if self.mean_params_file is None:
            eye = torch.eye(3, dtype=dt, device=dev)
            return {
                "global_orient": eye.clone(),
                "body_pose": eye.expand(23, 3, 3).clone(),
                "shape": torch.zeros(self.shape_dim, dtype=dt, device=dev),
            }
        from dsrbody.geometry.rotations import rot6d_to_matrix

        data = load_mean_params(self.mean_params_file)
        rot = rot6d_to_matrix(torch.as_tensor(data["pose"]).view(24, 6)).to(dt).to(dev)
        shape = np.zeros(self.shape_dim)
        n = min(self.shape_dim, data["shape"].shape[0])
        shape[:n] = data["shape"][:n]
        return {
            "global_orient": rot[0],
            "body_pose": rot[1:],
            "shape": torch.as_tensor(shape, dtype=dt, device=dev),
            "cam": torch.as_tensor(data["cam"], dtype=dt, device=dev),
        }
