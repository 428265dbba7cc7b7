"""The HMR regressor: image backbone + iterative-error-feedback head + a body model (docs/design.md,
Cameras, Paper recipe).

:class:`HMRHead` is SPIN's ``hmr.py`` head with the same parameter names (``fc1``, ``drop1``,
``fc2``, ``drop2``, ``decpose``, ``decshape``, ``deccam``; buffers ``init_pose``, ``init_shape``,
``init_cam``), so SPIN's and DSR's released weights load by name, but its sizes come from the body
model: ``fc1`` takes ``feature_dim + J*6 + S + 3`` inputs (2048 + 144 + 10 + 3 for SMPL).

:class:`Regressor` runs the body model on the head's output and places it in the camera.

Global orientation convention. Body models work in the SMPL canonical frame (y up, facing +z) while
the camera frame is y down, z forward (OpenCV). As in SPIN, no fixed flip is inserted between the
two: the predicted global orientation maps the body frame straight into the camera frame, so an
upright person facing the camera has ``global_orient`` = the 180 deg rotation about x,
``diag(1, -1, -1)``. SMPL's ``smpl_mean_params.npz`` mean pose already contains that flip (and the
pose annotations of the SPIN/DSR datasets too); a body model's :meth:`~BodyModel.mean_params` must
do the same. If a body model's mean orientation is the identity (the person upside down and facing
away in the camera), :class:`Regressor` composes the flip in and says so in ``init_note``.

Bounded shape spaces. Anny's phenotypes live in a box (the model clamps them), where a plain
additive update could leave the box and stop receiving gradients. When the body model's
``shape_bounds`` is a box (``(lo, hi)``, each ``(S,)``; Anny: the ranges of
``dsrbody.body.anny.PHENOTYPE_RANGES``, ``[0, 1]`` and ``[-1/3, 1]`` for age), the head regresses an
unbounded vector ``z`` and the shape is ``lo + (hi - lo) * sigmoid(z)``; ``init_shape`` is then the
``logit`` of the mean's position in the box (0 for Anny's mid phenotypes 0.5, except age: 0.51). The
sigmoid keeps gradients alive where a clamp would cut them and keeps every prediction a valid body.
SMPL's betas are unbounded and used as regressed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

from dsrbody.geometry.cameras import (
    IMG_RES,
    focal_for_res,
    normalize_keypoints,
    perspective_projection,
    weak_perspective_to_translation,
)
from dsrbody.geometry.rotations import matrix_to_rot6d, rot6d_to_matrix
from dsrbody.models.keypoint_branch import KeypointBranch

if TYPE_CHECKING:
    from dsrbody.body.base import BodyModel

__all__ = [
    "HMRHead",
    "Regressor",
    "SPIN_MEAN_CAM",
    "CAMERA_FLIP",
    "at_mean",
    "build_regressor",
    "feature_grid",
]

#: SPIN's mean weak-perspective camera (``smpl_mean_params.npz['cam']``): scale 0.9, centred.
SPIN_MEAN_CAM = (0.9, 0.0, 0.0)
#: 180 deg about x: the body frame (y up, facing +z) seen upright and facing an OpenCV camera.
CAMERA_FLIP = torch.tensor([[1.0, 0.0, 0.0], [0.0, -1.0, 0.0], [0.0, 0.0, -1.0]])


class HMRHead(nn.Module):
    """Iterative error feedback regressor (HMR/SPIN) of 6D joint rotations, shape and camera.

    Args:
        feature_dim: channels of the backbone's feature map.
        num_joints: J (rotations regressed, root included).
        shape_dim: S.
        init_pose: ``(J*6,)`` mean pose, 6D SPIN layout (``x.view(J, 3, 2)`` columns).
        init_shape: ``(S,)`` mean of the regressed shape vector.
        init_cam: ``(3,)`` mean weak-perspective camera ``(s, tx, ty)``.
        hidden: width of ``fc1``/``fc2`` (SPIN: 1024).
        n_iter: IEF iterations (SPIN/DSR: 3).
        dropout: dropout probability of ``drop1``/``drop2`` (SPIN: 0.5).
        spatial_channels: 0 (SPIN: the feature map is average-pooled) or the channels of a spatial
            summary added to the pooled features: a 1x1 convolution to ``spatial_channels``, batch norm
            and ReLU on the feature map, flattened (``spatial_channels * h * w`` more inputs to ``fc1``).
            Average pooling discards where things are in the crop; a network trained from random
            weights learns limb positions much faster when it keeps them (docs/training.md).
        grid: ``(h, w)`` of the feature map, required with ``spatial_channels``.
        keypoints: 0, or K: a :class:`~dsrbody.models.keypoint_branch.KeypointBranch` predicts K 2D
            keypoints from the backbone's feature pyramid (``head.keypoints.*``); their ``2K``
            coordinates are more inputs to ``fc1`` and :meth:`forward` returns them.
        pyramid_channels: channels of the pyramid levels (finest first), required with ``keypoints``.
    """

    def __init__(
        self,
        feature_dim: int,
        num_joints: int = 24,
        shape_dim: int = 10,
        init_pose: torch.Tensor | None = None,
        init_shape: torch.Tensor | None = None,
        init_cam: torch.Tensor | None = None,
        hidden: int = 1024,
        n_iter: int = 3,
        dropout: float = 0.5,
        spatial_channels: int = 0,
        grid: tuple[int, int] | None = None,
        keypoints: int = 0,
        pyramid_channels: tuple[int, ...] | None = None,
    ):
        super().__init__()
        npose = num_joints * 6
        self.feature_dim, self.num_joints, self.shape_dim, self.n_iter = (
            feature_dim,
            num_joints,
            shape_dim,
            n_iter,
        )
        self.spatial_channels = int(spatial_channels)
        self.grid = tuple(int(g) for g in grid) if grid is not None else None
        self.spatial: nn.Module | None = None
        spatial_dim = 0
        if self.spatial_channels > 0:
            if self.grid is None or len(self.grid) != 2:
                raise ValueError("HMRHead: spatial_channels needs grid=(h, w) of the feature map")
            self.spatial = nn.Sequential(
                nn.Conv2d(feature_dim, self.spatial_channels, 1, bias=False),
                nn.BatchNorm2d(self.spatial_channels),
                nn.ReLU(inplace=True),
            )
            spatial_dim = self.spatial_channels * self.grid[0] * self.grid[1]
        self.num_keypoints = int(keypoints)
        self.keypoints: KeypointBranch | None = None
        if self.num_keypoints > 0:
            if not pyramid_channels:
                raise ValueError("HMRHead: keypoints needs pyramid_channels of the backbone")
            self.keypoints = KeypointBranch(tuple(pyramid_channels), self.num_keypoints)
        extra = spatial_dim + 2 * self.num_keypoints
        self.fc1 = nn.Linear(feature_dim + extra + npose + shape_dim + 3, hidden)
        self.drop1 = nn.Dropout(dropout)
        self.fc2 = nn.Linear(hidden, hidden)
        self.drop2 = nn.Dropout(dropout)
        self.decpose = nn.Linear(hidden, npose)
        self.decshape = nn.Linear(hidden, shape_dim)
        self.deccam = nn.Linear(hidden, 3)
        for dec in (self.decpose, self.decshape, self.deccam):
            nn.init.xavier_uniform_(dec.weight, gain=0.01)
        if init_pose is None:
            init_pose = matrix_to_rot6d(torch.eye(3).expand(num_joints, 3, 3)).reshape(-1)
        if init_shape is None:
            init_shape = torch.zeros(shape_dim)
        if init_cam is None:
            init_cam = torch.tensor(SPIN_MEAN_CAM)
        for name, value, n in (
            ("init_pose", init_pose, npose),
            ("init_shape", init_shape, shape_dim),
            ("init_cam", init_cam, 3),
        ):
            value = torch.as_tensor(value, dtype=torch.float32).reshape(-1)
            if value.numel() != n:
                raise ValueError(f"HMRHead: {name} must have {n} values, got {value.numel()}")
            # (1, n) exactly as SPIN's buffers, so checkpoints load by shape too.
            self.register_buffer(name, value.reshape(1, n).clone())

    def forward(
        self,
        features: torch.Tensor | list[torch.Tensor],
        n_iter: int | None = None,
        return_iterations: bool = False,
    ) -> dict[str, torch.Tensor | list[dict[str, torch.Tensor]]]:
        """Regress parameters from a feature map.

        Args:
            features: ``(B, C, h, w)`` feature map (average-pooled here; SPIN's 7x7 AvgPool2d on a
                224 crop; with ``spatial_channels`` also summarised per cell, ``(h, w)`` must be
                ``grid``) or ``(B, C)`` pooled features (only without ``spatial_channels``), or the
                backbone's feature pyramid (a list, finest first, the last being that map), which a
                head with ``keypoints`` needs.
            n_iter: IEF iterations (default ``self.n_iter``).
            return_iterations: also return the estimate after each iteration under ``"iterations"``.

        Returns:
            ``{"pose6d": (B, J*6), "shape": (B, S) raw shape vector, "cam": (B, 3)}`` (+ ``"iterations"``;
            with ``keypoints``: ``"keypoints_2d_direct" (B, K, 2)`` in [-1, 1]).
        """
        pyramid = None
        if isinstance(features, (list, tuple)):
            pyramid, features = list(features), features[-1]
        xf = features.mean(dim=(2, 3)) if features.dim() == 4 else features
        if xf.dim() != 2 or xf.shape[1] != self.feature_dim:
            raise ValueError(
                f"HMRHead expects features (B, {self.feature_dim}[, h, w]), got {tuple(features.shape)}"
            )
        if self.spatial is not None:
            if features.dim() != 4 or tuple(features.shape[2:]) != self.grid:
                raise ValueError(
                    f"HMRHead with a spatial summary expects features (B, {self.feature_dim}, "
                    f"{self.grid[0]}, {self.grid[1]}), got {tuple(features.shape)} (another crop size?)"
                )
            xf = torch.cat([xf, self.spatial(features).flatten(1)], dim=1)
        kp = None
        if self.keypoints is not None:
            if pyramid is None:
                raise ValueError(
                    "HMRHead with a keypoint branch expects the backbone's feature pyramid (a list)"
                )
            kp, _ = self.keypoints(pyramid)
            xf = torch.cat([xf, kp.flatten(1).to(xf.dtype)], dim=1)
        B = xf.shape[0]
        pose = self.init_pose.expand(B, -1)
        shape = self.init_shape.expand(B, -1)
        cam = self.init_cam.expand(B, -1)
        iterations = []
        for _ in range(self.n_iter if n_iter is None else n_iter):
            xc = torch.cat([xf, pose, shape, cam], dim=1)
            xc = self.drop2(self.fc2(self.drop1(self.fc1(xc))))
            pose = self.decpose(xc) + pose
            shape = self.decshape(xc) + shape
            cam = self.deccam(xc) + cam
            if return_iterations:
                iterations.append({"pose6d": pose, "shape": shape, "cam": cam})
        out: dict = {"pose6d": pose, "shape": shape, "cam": cam}
        if kp is not None:
            out["keypoints_2d_direct"] = kp
        if return_iterations:
            out["iterations"] = iterations
        return out


def _shape_bounds(body_model: BodyModel) -> tuple[torch.Tensor, torch.Tensor] | None:
    """``(lo, hi)`` of a bounded shape space, or None (see the module docstring)."""
    bounds = body_model.shape_bounds
    if bounds is None:
        return None
    lo, hi = (torch.as_tensor(b, dtype=torch.float32).reshape(-1) for b in bounds)
    return lo.expand(body_model.shape_dim).clone(), hi.expand(body_model.shape_dim).clone()


class Regressor(nn.Module):
    """Backbone + :class:`HMRHead` + body model: images to posed bodies in the camera.

    The body model moves with the regressor (``.to()``) but its tensors are not part of the
    regressor's ``state_dict`` (they come from the body model's own files); checkpoints hold
    ``backbone.*`` and ``head.*`` only.

    Args:
        backbone: a module mapping ``(B, 3, H, W)`` images to ``(B, feature_dim, h, w)``.
        feature_dim: channels of the backbone output.
        body_model: a :class:`dsrbody.body.base.BodyModel`.
        n_iter: IEF iterations (3).
        dropout: head dropout (0.5).
        focal: focal length in pixels of the ``img_res`` crop (default
            :func:`~dsrbody.geometry.cameras.focal_for_res`: 5000 at 224).
        img_res: crop size in pixels (224).
        init_cam: mean camera (default: ``body_model.mean_params()["cam"]`` when present, else
            SPIN's ``(0.9, 0, 0)``).
        head_hidden: width of the head's ``fc1``/``fc2`` (SPIN/DSR: 1024; released checkpoints need it).
        spatial_channels: the head's spatial summary (:class:`HMRHead`; 0: SPIN's average pooling).
        keypoints: 0, or the number of 2D keypoints of the head's keypoint branch (:class:`HMRHead`;
            the backbone must have ``forward_pyramid`` and ``pyramid_channels``). Its keypoints are
            the body's last K keypoints (SPIN-49's 24 ground-truth joints for K = 24).

    Attributes:
        init_note: how the start point was derived (mentions an inserted camera flip).
    """

    def __init__(
        self,
        backbone: nn.Module,
        feature_dim: int,
        body_model: nn.Module,
        n_iter: int = 3,
        dropout: float = 0.5,
        focal: float | None = None,
        img_res: int = IMG_RES,
        init_cam: torch.Tensor | None = None,
        head_hidden: int = 1024,
        spatial_channels: int = 0,
        keypoints: int = 0,
    ):
        super().__init__()
        self.backbone = backbone
        self.body_model = body_model
        for p in body_model.parameters():  # the body model is fixed; only backbone and head train
            p.requires_grad_(False)
        self.img_res = int(img_res)
        self.focal = float(focal) if focal is not None else focal_for_res(self.img_res)
        J, S = int(body_model.num_joints), int(body_model.shape_dim)
        mean = {k: torch.as_tensor(v).detach().cpu() for k, v in body_model.mean_params().items()}
        go = torch.as_tensor(mean["global_orient"], dtype=torch.float32).reshape(3, 3)
        bp = torch.as_tensor(mean["body_pose"], dtype=torch.float32).reshape(J - 1, 3, 3)
        self.init_note = "mean parameters of the body model"
        # Facing the camera means the body's +y (up) maps to camera -y (image up): R[1, 1] < 0.
        if go[1, 1] > 0:
            go = CAMERA_FLIP @ go
            self.init_note += (
                "; mean global orientation composed with the 180 deg x flip into the camera frame"
            )
        init_pose = matrix_to_rot6d(torch.cat([go[None], bp], dim=0)).reshape(-1)
        shape_mean = torch.as_tensor(mean["shape"], dtype=torch.float32).reshape(-1)
        if shape_mean.numel() < S:
            shape_mean = torch.cat([shape_mean, shape_mean.new_zeros(S - shape_mean.numel())])
        bounds = _shape_bounds(body_model)
        if bounds is not None:
            self.register_buffer("shape_lo", bounds[0], persistent=False)
            self.register_buffer("shape_hi", bounds[1], persistent=False)
        else:
            self.shape_lo = self.shape_hi = None
        init_shape = self._raw_shape(shape_mean)
        if init_cam is None:
            init_cam = torch.as_tensor(mean.get("cam", SPIN_MEAN_CAM), dtype=torch.float32)
        grid = feature_grid(backbone, self.img_res) if spatial_channels else None
        pyramid_channels = None
        if keypoints:
            pyramid_channels = getattr(backbone, "pyramid_channels", None)
            if pyramid_channels is None or not hasattr(backbone, "forward_pyramid"):
                raise ValueError(f"{type(backbone).__name__} has no feature pyramid for a keypoint branch")
        self.head = HMRHead(
            feature_dim,
            J,
            S,
            init_pose=init_pose,
            init_shape=init_shape,
            init_cam=init_cam,
            hidden=head_hidden,
            n_iter=n_iter,
            dropout=dropout,
            spatial_channels=spatial_channels,
            grid=grid,
            keypoints=keypoints,
            pyramid_channels=pyramid_channels,
        )
        self.register_state_dict_post_hook(_drop_body_model_keys)
        self.register_load_state_dict_post_hook(_ignore_missing_body_model_keys)

    @property
    def faces(self) -> torch.Tensor:
        """``(F, 3)`` long triangles of the body mesh."""
        return self.body_model.faces

    def shape_from_raw(self, raw: torch.Tensor) -> torch.Tensor:
        """Map the head's shape vector ``(B, S)`` to the body model's shape (identity unless bounded)."""
        if self.shape_lo is None:
            return raw
        return self.shape_lo + (self.shape_hi - self.shape_lo) * torch.sigmoid(raw)

    def raw_from_shape(self, shape: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`shape_from_raw`: ``(B, S)`` body-model shape to the head's shape vector
        (a bounded value is clamped 1e-4 of its range inside the box, where the logit is finite)."""
        if self.shape_lo is None:
            return shape
        u = ((shape - self.shape_lo) / (self.shape_hi - self.shape_lo)).clamp(1e-4, 1 - 1e-4)
        return torch.log(u) - torch.log1p(-u)

    def forward(self, images: torch.Tensor, n_iter: int | None = None) -> dict[str, torch.Tensor]:
        """Regress bodies from image crops.

        Args:
            images: ``(B, 3, img_res, img_res)`` ImageNet-normalised crops.
            n_iter: IEF iterations (default: the head's).

        Returns:
            dict with
            ``rotmat (B, J, 3, 3)`` (root first; camera-frame global orientation),
            ``global_orient (B, 3, 3)``, ``body_pose (B, J-1, 3, 3)``, ``pose6d (B, J*6)``,
            ``shape (B, S)`` (body-model shape), ``shape_raw (B, S)`` (head output),
            ``cam (B, 3)`` weak perspective ``(s, tx, ty)``, ``translation (B, 3)`` metres,
            ``vertices (B, V, 3)`` and ``joints (B, K, 3)`` metres in the rotated body frame (no
            translation; SPIN's ``pred_vertices``), ``vertices_cam (B, V, 3)`` = vertices + translation
            (camera frame, for the renderer), ``keypoints_2d (B, K, 2)`` perspective projections
            normalised to [-1, 1] (``px / (img_res / 2) - 1``), ``rest_vertices (B, V, 3)``,
            ``keypoint_confidence (K,)`` (1, or the body model's ``keypoint_confidence``: Anny lacks some
            SPIN-49 points; the keypoint losses ignore those); with a keypoint branch also
            ``keypoints_2d_direct (B, Kd, 2)``, the branch's keypoints (normalised like ``keypoints_2d``).
        """
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"Regressor expects images (B, 3, H, W), got {tuple(images.shape)}")
        if self.head.keypoints is not None:
            return self.forward_features(self.backbone.forward_pyramid(images), n_iter=n_iter)
        return self.forward_features(self.backbone(images), n_iter=n_iter)

    def forward_features(
        self, features: torch.Tensor | list[torch.Tensor], n_iter: int | None = None
    ) -> dict[str, torch.Tensor]:
        """:meth:`forward` from backbone features ``(B, C, h, w)``, or the feature pyramid (a list,
        finest first) for a head with a keypoint branch (same outputs)."""
        head = self.head(features, n_iter=n_iter)
        last = features[-1] if isinstance(features, (list, tuple)) else features
        B, J = last.shape[0], self.head.num_joints
        rotmat = rot6d_to_matrix(head["pose6d"].reshape(B, J, 6))
        extra = {"pose6d": head["pose6d"], "shape_raw": head["shape"]}
        if "keypoints_2d_direct" in head:
            extra["keypoints_2d_direct"] = head["keypoints_2d_direct"]
        return self.pose_body(rotmat, self.shape_from_raw(head["shape"]), head["cam"]) | extra

    def forward_cached(self, rows: torch.Tensor, n_iter: int | None = None) -> dict[str, torch.Tensor]:
        """:meth:`forward` from a feature cache's rows ``(B, cache_dim)``: what the backbone's frozen part
        gave for each crop (:mod:`dsrbody.data.feature_cache`); its trainable part, if any, runs here.

        Raises:
            ValueError: the backbone has no cacheable part (``cache_rows`` / ``from_cache``).
        """
        if not hasattr(self.backbone, "from_cache"):
            raise ValueError(f"backbone {type(self.backbone).__name__} has no cacheable part")
        return self.forward_features(self.backbone.from_cache(rows), n_iter=n_iter)

    def _raw_shape(self, shape: torch.Tensor) -> torch.Tensor:
        """``(S,)`` shape in the body model's units -> the head's regressed vector (``logit`` of its
        position in a bounded box, clamped to ``[1e-4, 1 - 1e-4]``; unbounded: itself)."""
        if self.shape_lo is None:
            return shape
        lo, hi = self.shape_lo.to(shape), self.shape_hi.to(shape)
        u = ((shape - lo) / (hi - lo)).clamp(1e-4, 1 - 1e-4)
        return torch.log(u) - torch.log1p(-u)

    def set_init_shape(self, shape: torch.Tensor | list[float], source: str = "init_shape") -> None:
        """Start the IEF at another shape (SPIN starts at its training data's mean parameters).

        Args:
            shape: ``(S',)`` in the body model's units (Anny: phenotypes), ``S' <= S``; the entries
                past ``S'`` are set to the body model's mean (also on a model whose start point was
                loaded from a checkpoint).
            source: where the values come from, for the error message.

        Raises:
            ValueError: none or too many values, non-finite ones, or (bounded shape spaces) values outside the
                box, in one line naming ``source``.
        """
        s = torch.as_tensor(shape, dtype=torch.float32).reshape(-1)
        S = self.head.shape_dim
        if not 0 < s.numel() <= S or not bool(torch.isfinite(s).all()):
            got = [round(v, 6) for v in s.tolist()]
            raise ValueError(f"{source}: expected 1 to {S} finite values, got {got}")
        full = self.body_model_mean_shape().clone()
        full[: s.numel()] = s
        if self.shape_lo is not None:
            lo, hi = self.shape_lo.cpu(), self.shape_hi.cpu()
            bad = [i for i in range(s.numel()) if not (lo[i] <= full[i] <= hi[i])]
            if bad:
                i = bad[0]
                raise ValueError(
                    f"{source}: entry {i} = {float(full[i]):g} is outside the body model's range "
                    f"[{float(lo[i]):g}, {float(hi[i]):g}]"
                )
        with torch.no_grad():
            self.head.init_shape.copy_(self._raw_shape(full)[None])  # float32 on CPU, then copied over
        self.init_note += f"; shape start set from {source}"

    def body_model_mean_shape(self) -> torch.Tensor:
        """``(S,)`` the body model's mean shape (zeros past what it gives), CPU float32."""
        S = self.head.shape_dim
        m = torch.as_tensor(self.body_model.mean_params()["shape"], dtype=torch.float32).reshape(-1).cpu()
        return torch.cat([m, m.new_zeros(max(0, S - m.numel()))])[:S]

    def pose_body(
        self, rotmat: torch.Tensor, shape: torch.Tensor, cam: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """Run the body model and the camera on given parameters.

        Args:
            rotmat: ``(B, J, 3, 3)``; shape: ``(B, S)``; cam: ``(B, 3)``.

        Returns:
            The dict of :meth:`forward` without ``pose6d``/``shape_raw``.
        """
        body = self.body_model(rotmat[:, 0], rotmat[:, 1:], shape)
        translation = weak_perspective_to_translation(cam, focal=self.focal, img_res=self.img_res)
        c = self.img_res / 2.0
        kp_px = perspective_projection(body.joints, translation, focal=self.focal, principal_point=(c, c))
        return {
            "rotmat": rotmat,
            "global_orient": rotmat[:, 0],
            "body_pose": rotmat[:, 1:],
            "shape": shape,
            "cam": cam,
            "translation": translation,
            "vertices": body.vertices,
            "joints": body.joints,
            "rest_vertices": body.rest_vertices,
            "vertices_cam": body.vertices + translation[:, None, :],
            "keypoints_2d": normalize_keypoints(kp_px, self.img_res),
            "keypoint_confidence": self._keypoint_confidence(body.joints),
        }

    def _keypoint_confidence(self, joints: torch.Tensor) -> torch.Tensor:
        """``(K,)``: the body model's ``keypoint_confidence`` (Anny: 0 for points it lacks), else 1."""
        conf = self.body_model.keypoint_confidence
        if conf is None or conf.shape[0] != joints.shape[1]:
            return joints.new_ones(joints.shape[1])
        return conf.to(joints)


def feature_grid(backbone: nn.Module, img_res: int) -> tuple[int, int]:
    """``(h, w)`` of ``backbone``'s feature map for ``(img_res, img_res)`` crops (one dummy forward
    in eval mode, so batch-norm statistics are untouched)."""
    was_training = backbone.training
    backbone.eval()
    try:
        with torch.no_grad():
            p = next(backbone.parameters(), None)
            x = torch.zeros(1, 3, img_res, img_res, device=p.device if p is not None else "cpu")
            h, w = backbone(x).shape[2:]
    finally:
        backbone.train(was_training)
    return int(h), int(w)


def _drop_body_model_keys(module: nn.Module, state_dict: dict, prefix: str, local_metadata: dict) -> None:
    for k in [k for k in state_dict if k.startswith(prefix + "body_model.")]:
        del state_dict[k]


def _ignore_missing_body_model_keys(module: nn.Module, incompatible_keys) -> None:
    missing = incompatible_keys.missing_keys
    missing[:] = [k for k in missing if ".body_model." not in f".{k}" and not k.startswith("body_model.")]


def build_regressor(
    body_model: nn.Module,
    backbone: str = "resnet50",
    pretrained_backbone: str | None = None,
    checkpoint: str | None = None,
    n_iter: int = 3,
    dropout: float = 0.5,
    head_hidden: int = 1024,
    img_res: int = IMG_RES,
    spatial_channels: int = 0,
    keypoints: int = 0,
) -> Regressor:
    """A :class:`Regressor` by names.

    Args:
        body_model: the body model.
        backbone: ``"resnet18"``, ``"resnet34"`` or ``"resnet50"``.
        pretrained_backbone: optional backbone weights (torchvision / SPIN / DSR file), loaded strictly.
        checkpoint: optional full regressor weights (SPIN ``model_checkpoint.pt``, DSR Lightning
            checkpoint, dsrbody's), loaded strictly after the backbone weights.
        n_iter, dropout, head_hidden: head settings.
        img_res: crop side in pixels (the focal length follows it, :func:`focal_for_res`).
        spatial_channels: the head's spatial summary of the feature map (:class:`HMRHead`; 0: SPIN's
            average pooling only, as released SPIN/DSR weights expect).
        keypoints: the head's 2D keypoint branch (:class:`HMRHead`; 0: none).
    """
    from dsrbody.models.backbones import build_backbone
    from dsrbody.models.checkpoint import load_regressor_checkpoint

    net, dim = build_backbone(backbone, pretrained=pretrained_backbone)
    reg = Regressor(
        net,
        dim,
        body_model,
        n_iter=n_iter,
        dropout=dropout,
        head_hidden=head_hidden,
        img_res=img_res,
        spatial_channels=spatial_channels,
        keypoints=keypoints,
    )
    if checkpoint is not None:
        load_regressor_checkpoint(reg, checkpoint)
    return reg


def at_mean(regressor: Regressor) -> Regressor:
    """A copy of ``regressor`` that predicts its start point (the mean body, mean camera) for every image.

    The head's decoders are zeroed, so every IEF update is 0 and the output is ``init_pose``,
    ``init_shape``, ``init_cam``: the reference that a trained regressor has to beat.
    """
    import copy

    ref = copy.deepcopy(regressor)
    with torch.no_grad():
        for dec in (ref.head.decpose, ref.head.decshape, ref.head.deccam):
            dec.weight.zero_()
            dec.bias.zero_()
    return ref
