"""Losses: SPIN's keypoint, parameter and camera terms; the DSR semantic-rendering terms (docs/design.md,
Losses).

Every term is a ``(B,)`` per-sample tensor with a ``(B,)`` validity mask; :func:`combine_losses`
reduces them (NaN/infinite samples dropped and counted) and applies the weights and the overall factor.
A training step::

    reg = build_regressor(body_model, "resnet50")                   # dsrbody.models
    dsr = DSRLoss(body_model.faces, prior)                          # prior: ClothingPrior for the mesh
    pred = reg(batch["img"])
    terms = spin_loss_terms(pred, batch, weights)                   # keypoints, pose, betas, camera
    if dsr_on:                                                      # e.g. epoch > start_dsr
        out = dsr(pred["vertices_cam"], DSRTargets.from_parsing(batch["parsing"], batch["has_parsing"]))
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
from dsrbody.losses.total import TERM_NAMES, LossWeights, combine_losses, spin_loss_terms

__all__ = [
    "C_FORMS",
    "MC_FORMS",
    "TERM_NAMES",
    "DSRLoss",
    "DSRTargets",
    "LossWeights",
    "as_rotmat",
    "betas_loss",
    "camera_loss",
    "combine_losses",
    "drop_nonfinite",
    "dsr_c_loss",
    "dsr_mc_loss",
    "keypoint_2d_loss",
    "keypoint_3d_loss",
    "pose_loss",
    "silhouette_loss",
    "soft_iou_loss",
    "spin_loss_terms",
    "vertex_loss",
]
