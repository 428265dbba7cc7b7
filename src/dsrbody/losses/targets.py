"""Loss targets from a batch, built in one place for training and fitting (docs/design.md, A training step).

- :func:`spin_targets`: the ground-truth dict of :func:`~dsrbody.losses.total.spin_loss_terms`: the 2D
  keypoints and 3D joints with the body model's keypoint confidence applied, the pose/shape parameters of
  the samples whose parameters belong to the trained body model, and the ground-truth posed / rest-pose
  vertices when their loss weights are non-zero. :class:`~dsrbody.train.module.DSRModule` uses it.
- :func:`dsr_targets`: the :class:`~dsrbody.losses.dsr.DSRTargets` of the batch's parsing maps, cleaned
  around the keypoints when asked (docs/design.md, Clothing labels). Training and
  :func:`~dsrbody.fit.dataset.fit_dataset` use it.
- :func:`params_valid` and :func:`gt_body`: which samples hold parameters of a body model, and the
  ground-truth body they give; the training losses and the evaluation (:mod:`dsrbody.eval.synth_eval`)
  share them.
- :func:`apply_keypoint_confidence`: keypoints the body model cannot produce (Anny has no LSP neck, head
  top, ...: confidence 0) get confidence 0 (training and :class:`~dsrbody.fit.fitter.BodyFitter`).

A batch is :func:`~dsrbody.data.collate_samples`'s dict: ``keypoints (B, K, 3)`` normalised to [-1, 1]
plus confidence, optional ``pose_3d (B, K3, 4)`` metres plus confidence and ``has_pose_3d (B,)``,
optional ``pose (B, J*3)`` axis-angle and ``betas (B, S')`` with ``has_smpl (B,)`` (SMPL) or
``has_params (B,)`` and ``body_model`` (B names; other models), ``parsing (B, H, W)`` CIHP labels and
``has_parsing (B,)``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import torch

from dsrbody.body.factory import body_spec
from dsrbody.geometry.cameras import denormalize_keypoints
from dsrbody.losses.dsr import DSRTargets
from dsrbody.losses.params import as_rotmat
from dsrbody.losses.total import LossWeights

if TYPE_CHECKING:
    from dsrbody.body.base import BodyModel

__all__ = ["params_valid", "gt_body", "apply_keypoint_confidence", "spin_targets", "dsr_targets"]


def params_valid(batch: Mapping[str, Any], body_name: str) -> torch.Tensor:
    """``(B,)`` bool: samples whose ``pose``/``betas`` are parameters of the body model ``body_name``.

    The model whose parameters SPIN/DSR files hold (its registry entry's ``spin_params``: SMPL):
    ``has_smpl``. Another model: ``has_params`` where the file's per-sample ``body_model`` field names
    it (files without that field hold SMPL parameters).
    """
    n = int(batch["keypoints"].shape[0])
    spec = body_spec(body_name, missing_ok=True)
    if spec is not None and spec.spin_params:
        return batch["has_smpl"].bool() if "has_smpl" in batch else torch.zeros(n, dtype=torch.bool)
    names = batch.get("body_model")
    if names is None or "has_params" not in batch:
        return torch.zeros(n, dtype=torch.bool)
    same = torch.tensor([str(x).lower() == body_name for x in names], dtype=torch.bool)
    return batch["has_params"].bool().cpu() & same


def gt_body(body_model: BodyModel, batch: Mapping[str, Any], valid: torch.Tensor) -> Any:
    """The ground-truth body of the samples ``valid``.

    Args:
        body_model: the body model the parameters belong to (:class:`~dsrbody.body.base.BodyModel`).
        batch: ``pose (B, J*3)`` axis-angle (or ``(B, J, 3, 3)``), ``betas (B, S')``; shape vectors
            shorter than the model's ``S`` are completed by its ``pad_shape`` (SMPL: zeros; Anny: the
            mid phenotypes, as its ``forward`` would).
        valid: ``(B,)`` bool, the samples to run (:func:`params_valid`).

    Returns:
        the :class:`~dsrbody.body.base.BodyOutput` of the ``N = valid.sum()`` samples, in batch order:
        ``vertices (N, V, 3)``, ``joints (N, K, 3)``, ``rest_vertices (N, V, 3)``, metres, body frame.
    """
    dev = body_model.faces.device
    J, S = int(body_model.num_joints), int(body_model.shape_dim)
    pose = batch["pose"][valid.to(batch["pose"].device)].to(dev, torch.float32)
    rot = as_rotmat(pose, J)
    betas = batch["betas"][valid.to(batch["betas"].device)].to(dev, torch.float32)
    return body_model(rot[:, 0], rot[:, 1:], body_model.pad_shape(betas[:, :S]))


def apply_keypoint_confidence(keypoints: torch.Tensor, confidence: torch.Tensor | None) -> torch.Tensor:
    """Keypoints with their confidence (last column) multiplied by a per-keypoint factor.

    Args:
        keypoints: ``(B, K, D)``, coordinates then the confidence in column ``D - 1`` (2D: ``D = 3``,
            normalised; 3D: ``D = 4``, metres).
        confidence: ``(K,)`` the body model's keypoint confidence for these ``K`` keypoints (0 where the
            model cannot produce one), or None (keypoints unchanged).

    Returns:
        a new ``(B, K, D)`` tensor (the input is not modified).
    """
    out = keypoints.clone()
    if confidence is not None:
        out[..., -1] = out[..., -1] * confidence.to(device=out.device, dtype=out.dtype)
    return out


def spin_targets(
    batch: Mapping[str, Any],
    body_model: BodyModel,
    weights: LossWeights | None = None,
    keypoint_confidence: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """The ground-truth dict of :func:`~dsrbody.losses.total.spin_loss_terms` for a batch.

    Args:
        batch: the collated batch (module docstring).
        body_model: the trained body model (``name``, ``num_joints`` J, ``shape_dim`` S).
        weights: the loss weights; the ground-truth meshes are computed only for the non-zero
            ``vertices`` / ``vertices_sc`` / ``rest_vertices`` / ``rest_vertices_sc`` terms (default
            :class:`LossWeights`: none).
        keypoint_confidence: ``(K,)`` per-keypoint factor on the confidences (default: the body
            model's ``keypoint_confidence``; None there: every keypoint is real).

    Returns:
        ``keypoints (B, K, 3)`` (confidence times the body model's); where the batch has 3D joints of some
        sample, ``pose_3d (B, K3, 4)`` (confidence times the last K3 entries of the body model's) and
        ``has_pose_3d (B,)``; where some sample's parameters belong to ``body_model`` (:func:`params_valid`)
        and have its sizes (``pose`` ``(B, 3J)``, ``betas`` at most S wide), ``pose``, ``betas`` as in the
        batch and ``has_smpl (B,)`` bool (those samples); with them, for non-zero weights,
        ``vertices (B, V, 3)`` and ``rest_vertices (B, V, 3)`` (metres, body frame, no gradient; zero
        rows for the other samples).
    """
    w = weights or LossWeights()
    conf = keypoint_confidence
    if conf is None:
        conf = body_model.keypoint_confidence
    kp = apply_keypoint_confidence(batch["keypoints"], conf)
    gt: dict[str, torch.Tensor] = {"keypoints": kp}
    if "pose_3d" in batch and bool(batch["has_pose_3d"].any()):
        p3 = batch["pose_3d"]
        gt["pose_3d"] = apply_keypoint_confidence(p3, None if conf is None else conf[-p3.shape[1] :])
        gt["has_pose_3d"] = batch["has_pose_3d"]
    valid = params_valid(batch, str(body_model.name)).to(kp.device)
    J, S = int(body_model.num_joints), int(body_model.shape_dim)
    if (
        "pose" in batch
        and bool(valid.any())
        and batch["pose"].shape[1] == 3 * J
        and batch["betas"].shape[1] <= S
    ):
        gt["pose"], gt["betas"], gt["has_smpl"] = batch["pose"], batch["betas"], valid
        want = {
            "vertices": w.vertices != 0 or w.vertices_sc != 0,
            "rest_vertices": w.rest_vertices != 0 or w.rest_vertices_sc != 0,
        }
        if any(want.values()):
            with torch.no_grad():
                g = gt_body(body_model, batch, valid.cpu())
            for key, value in (("vertices", g.vertices), ("rest_vertices", g.rest_vertices)):
                if want[key]:
                    verts = kp.new_zeros(kp.shape[0], value.shape[1], 3)
                    verts[valid] = value.to(verts.dtype)
                    gt[key] = verts
    return gt


def dsr_targets(
    batch: Mapping[str, Any], img_res: int, *, clean: bool = True, with_distance: bool = False
) -> DSRTargets:
    """The DSR targets of a batch's parsing maps.

    Args:
        batch: ``parsing (B, H, W)`` integer CIHP labels of the crops, ``has_parsing (B,)`` (False where
            the map is missing: no DSR loss), ``keypoints (B, K, 3)`` normalised to [-1, 1] plus
            confidence (for the cleaning).
        img_res: the crop's side in pixels (the parsing map's), to bring the keypoints to pixels.
        clean: set to background the pixels outside the box of the keypoints with confidence > 0.3, grown
            by 30 px (docs/design.md, Clothing labels; the batch's own confidences, not the body model's).
        with_distance: also the distance maps (pixels) to the MC masks (DSR-MC's ``"distance"`` form).

    Returns:
        :meth:`DSRTargets.from_parsing <dsrbody.losses.dsr.DSRTargets.from_parsing>` of the (cleaned)
        labels: ``mc_present (B, 20)``, ``mc_mask (B, H, W)``, ``merged (B, H, W)``,
        ``class_weights (B, 8)``, ``distance (B, H, W)`` or None, ``has_parsing``.
    """
    labels = batch["parsing"].long()
    if clean:
        from dsrbody.semantics.parsing import clean_parsing_batch

        kp = denormalize_keypoints(batch["keypoints"].float(), int(img_res))
        labels = clean_parsing_batch(labels, kp)
    return DSRTargets.from_parsing(labels, has_parsing=batch["has_parsing"], with_distance=with_distance)
