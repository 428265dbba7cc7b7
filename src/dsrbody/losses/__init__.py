"""Losses: SPIN's keypoint, parameter and camera terms; the DSR semantic-rendering terms (docs/design.md,
Losses).

Every term is a ``(B,)`` per-sample tensor with a ``(B,)`` validity mask; :func:`combine_losses`
reduces them (NaN/infinite samples dropped and counted) and applies the weights and the overall factor.
:mod:`dsrbody.losses.targets` turns a batch into the terms' targets, for training and fitting alike.
A training step::

    reg = build_regressor(body_model, "resnet50")                   # dsrbody.models
    dsr = DSRLoss(body_model.faces, prior)                          # prior: ClothingPrior for the mesh
    pred = reg(batch["img"])
    gt = spin_targets(batch, body_model, weights)                   # ground truth of the SPIN terms
    terms = spin_loss_terms(pred, gt, weights)                      # keypoints, pose, betas, camera
    if dsr_on:                                                      # e.g. epoch > start_dsr
        out = dsr(pred["vertices_cam"], dsr_targets(batch, reg.img_res))   # cleaned parsing maps
        terms["dsr_mc"] = (out["dsr_mc"], out["dsr_mc_valid"])
        terms["dsr_c"] = (out["dsr_c"], out["dsr_c_valid"])
    total, means, dropped = combine_losses(terms, weights)           # log means and dropped counts
    total.backward()
"""

from dsrbody.losses.dsr import (
    C_FORMS,
    MC_FORMS,
    DSRLoss,
    DSRTargets,
    dsr_c_loss,
    dsr_mc_loss,
    silhouette_loss,
    soft_iou_loss,
)
from dsrbody.losses.keypoints import keypoint_2d_loss, keypoint_3d_loss
from dsrbody.losses.params import as_rotmat, betas_loss, camera_loss, pose_loss, vertex_loss
from dsrbody.losses.reduce import drop_nonfinite
from dsrbody.losses.targets import (
    apply_keypoint_confidence,
    dsr_targets,
    gt_body,
    params_valid,
    spin_targets,
)
from dsrbody.losses.total import TERM_NAMES, LossWeights, combine_losses, spin_loss_terms

__all__ = [
    "C_FORMS",
    "MC_FORMS",
    "TERM_NAMES",
    "DSRLoss",
    "DSRTargets",
    "LossWeights",
    "apply_keypoint_confidence",
    "as_rotmat",
    "betas_loss",
    "camera_loss",
    "combine_losses",
    "drop_nonfinite",
    "dsr_c_loss",
    "dsr_mc_loss",
    "dsr_targets",
    "gt_body",
    "keypoint_2d_loss",
    "keypoint_3d_loss",
    "params_valid",
    "pose_loss",
    "silhouette_loss",
    "soft_iou_loss",
    "spin_loss_terms",
    "spin_targets",
    "vertex_loss",
]
