"""The weighted total of SPIN's and DSR's losses (docs/design.md, Losses; official weights as defaults).

``total = overall * sum_t w_t * mean_t``, where ``mean_t`` is the mean of term ``t`` over the samples it
applies to, NaN/infinite samples dropped and counted (:func:`~dsrbody.losses.reduce.drop_nonfinite`).
The overall factor (60) multiplies the DSR terms too, so their effective weight is 60 x 0.1 = 6.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import asdict, dataclass

import torch

from dsrbody.losses.keypoints import NUM_OPENPOSE, keypoint_2d_loss, keypoint_3d_loss
from dsrbody.losses.params import (
    betas_loss,
    camera_loss,
    pose_loss,
    rest_vertex_loss,
    scale_free_vertex_loss,
    vertex_loss,
)
from dsrbody.losses.reduce import drop_nonfinite

__all__ = ["LossWeights", "spin_loss_terms", "combine_losses", "TERM_NAMES"]

#: names of the terms :func:`combine_losses` knows, in logging order.
TERM_NAMES = (
    "keypoints_2d",
    "keypoints_2d_direct",
    "keypoints_3d",
    "pose",
    "betas",
    "vertices",
    "vertices_sc",
    "rest_vertices",
    "rest_vertices_sc",
    "camera",
    "dsr_mc",
    "dsr_c",
    "silhouette",
)


@dataclass
class LossWeights:
    """Loss weights; defaults are the official SPIN/DSR recipe (``configs/dsr_train.cfg``).

    Attributes:
        keypoints_2d, keypoints_3d: SPIN's ``keypoint_loss_weight`` (5) for both.
        keypoints_2d_direct: the same 2D term on the keypoints of the regressor's keypoint branch
            (``pred["keypoints_2d_direct"]``, the last K ground-truth keypoints; dsrbody's, 0 = off).
        pose, betas: SMPL-parameter terms (1, 0.001).
        vertices: per-vertex L1 (SPIN's ``shape_loss_weight``, 0).
        vertices_sc: the posed vertices' distance after removing size and placement
            (:func:`~dsrbody.losses.params.scale_free_vertex_loss`, metres; dsrbody's, 0 in the official
            recipe).
        rest_vertices: metric shape term, the mean rest-pose vertex distance in metres
            (:func:`~dsrbody.losses.params.rest_vertex_loss`; dsrbody's, 0 in the official recipe).
        rest_vertices_sc: the same after removing size and placement (PVE-T-SC in metres,
            :func:`~dsrbody.losses.params.scale_free_vertex_loss`; dsrbody's, 0 in the official recipe).
        camera: the ``exp(-10 s)^2`` regulariser (1, not configurable in SPIN).
        dsr_mc, dsr_c: DSR terms (0.1 each; the code calls them SRP/SRV).
        silhouette: naive silhouette term (0; ablation only).
        openpose, gt: per-keypoint weights of the OpenPose and GT keypoints in the 2D term (0, 1).
        overall: factor on the whole sum (60).
    """

    keypoints_2d: float = 5.0
    keypoints_2d_direct: float = 0.0
    keypoints_3d: float = 5.0
    pose: float = 1.0
    betas: float = 0.001
    vertices: float = 0.0
    vertices_sc: float = 0.0
    rest_vertices: float = 0.0
    rest_vertices_sc: float = 0.0
    camera: float = 1.0
    dsr_mc: float = 0.1
    dsr_c: float = 0.1
    silhouette: float = 0.0
    openpose: float = 0.0
    gt: float = 1.0
    overall: float = 60.0

    def as_dict(self) -> dict[str, float]:
        """Plain dict (for configs and logs)."""
        return asdict(self)


Term = tuple[torch.Tensor, torch.Tensor | None]


def spin_loss_terms(
    pred: Mapping[str, torch.Tensor],
    gt: Mapping[str, torch.Tensor],
    weights: LossWeights | None = None,
    num_openpose: int = NUM_OPENPOSE,
) -> dict[str, Term]:
    """SPIN's per-sample loss terms with their validity masks.

    Args:
        pred: :class:`~dsrbody.models.hmr.Regressor` output: ``keypoints_2d (B, K, 2)``,
            ``joints (B, K, 3)``, ``rotmat (B, J, 3, 3)``, ``shape (B, S)``, ``cam (B, 3)``, ``vertices``,
            optional ``keypoint_confidence (K,)`` (the body model's: 0 for keypoints it cannot produce,
            which then count in neither keypoint term), optional ``keypoints_2d_direct (B, Kd, 2)`` (the
            keypoint branch's, compared with the last ``Kd`` ground-truth keypoints).
        gt: batch with ``keypoints (B, K, 3)`` normalised 2D + confidence (SPIN's 49 = 25 OpenPose + 24 GT);
            optional ``pose_3d (B, K - num_openpose, 4)`` + ``has_pose_3d (B,)``; optional ``pose``
            (``(B, J*3)`` axis-angle or ``(B, J, 3, 3)``), ``betas (B, S')`` + ``has_smpl (B,)``; optional
            ``vertices (B, V, 3)`` (GT mesh for the vertex term, valid where ``has_smpl``); optional
            ``rest_vertices (B, V, 3)`` (GT rest-pose mesh for the metric shape terms, same mask; the
            prediction's ``rest_vertices`` must be on the same mesh).
        weights: for the OpenPose/GT keypoint weights (defaults: official).
        num_openpose: leading OpenPose keypoints; the 3D term uses ``joints[:, num_openpose:]``.

    Returns:
        ``{name: (per_sample (B,), valid (B,) bool or None for all)}`` for the terms whose inputs exist.
    """
    w = weights or LossWeights()
    kp2d = gt["keypoints"]
    kp_conf = pred.get("keypoint_confidence")
    if kp_conf is not None:  # keypoints the body model cannot produce (Anny: confidence 0) do not count
        kp2d = torch.cat([kp2d[..., :2], kp2d[..., 2:] * kp_conf.to(kp2d)[None, :, None]], dim=-1)
    terms: dict[str, Term] = {
        "keypoints_2d": (
            keypoint_2d_loss(pred["keypoints_2d"], kp2d, w.openpose, w.gt, num_openpose),
            None,
        ),
        "camera": (camera_loss(pred["cam"]), None),
    }
    direct = pred.get("keypoints_2d_direct")
    if direct is not None:
        kd = direct.shape[1]
        terms["keypoints_2d_direct"] = (keypoint_2d_loss(direct, kp2d[:, -kd:], 0.0, 1.0, 0), None)
    if "pose_3d" in gt:
        has3d = gt.get("has_pose_3d")
        kp3d = gt["pose_3d"]
        if kp_conf is not None:
            c = kp_conf[num_openpose:].to(kp3d)[None, :, None]
            kp3d = torch.cat([kp3d[..., :3], kp3d[..., 3:] * c], dim=-1)
        terms["keypoints_3d"] = (
            keypoint_3d_loss(pred["joints"][:, num_openpose:], kp3d),
            None if has3d is None else has3d.bool(),
        )
    has_smpl = gt.get("has_smpl")
    valid = None if has_smpl is None else has_smpl.bool()
    if "pose" in gt:
        terms["pose"] = (pose_loss(pred["rotmat"], gt["pose"]), valid)
    if "betas" in gt:
        terms["betas"] = (betas_loss(pred["shape"], gt["betas"]), valid)
    if "vertices" in gt and w.vertices != 0:
        terms["vertices"] = (vertex_loss(pred["vertices"], gt["vertices"]), valid)
    if "vertices" in gt and w.vertices_sc != 0:
        terms["vertices_sc"] = (scale_free_vertex_loss(pred["vertices"], gt["vertices"]), valid)
    if "rest_vertices" in gt and w.rest_vertices != 0:
        terms["rest_vertices"] = (rest_vertex_loss(pred["rest_vertices"], gt["rest_vertices"]), valid)
    if "rest_vertices" in gt and w.rest_vertices_sc != 0:
        sc = scale_free_vertex_loss(pred["rest_vertices"], gt["rest_vertices"])
        terms["rest_vertices_sc"] = (sc, valid)
    return terms


def combine_losses(
    terms: Mapping[str, Term], weights: LossWeights | None = None, batch_mean: Collection[str] = ()
) -> tuple[torch.Tensor, dict[str, torch.Tensor], dict[str, int]]:
    """Weighted total of per-sample terms.

    Args:
        terms: ``{name: (per_sample (B,), valid (B,) or None)}``; names among :data:`TERM_NAMES`.
        weights: :class:`LossWeights` (official by default).
        batch_mean: terms averaged over the whole batch, samples they do not apply to counting 0
            (the official DSR code does this for DSR-MC/DSR-C; give ``("dsr_mc", "dsr_c")`` to reproduce
            it); the others are averaged over the samples they apply to.

    Returns:
        ``(total, means, dropped)``: the scalar total (``overall * sum w_t mean_t``), each term's mean
        (unweighted, for logging) and the number of NaN/infinite samples dropped per term.
    """
    w = (weights or LossWeights()).as_dict()
    total = None
    means: dict[str, torch.Tensor] = {}
    dropped: dict[str, int] = {}
    for name, (per_sample, valid) in terms.items():
        if name not in TERM_NAMES:
            raise ValueError(f"unknown loss term {name!r}; known terms: {TERM_NAMES}")
        mean, n_bad = drop_nonfinite(per_sample, valid, "batch" if name in batch_mean else "valid")
        means[name], dropped[name] = mean, n_bad
        if w[name] != 0:
            total = w[name] * mean if total is None else total + w[name] * mean
    if total is None:
        raise ValueError("no loss term with a non-zero weight")
    return w["overall"] * total, means, dropped
