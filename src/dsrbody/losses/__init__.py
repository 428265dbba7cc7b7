"""Losses: SPIN's keypoint, parameter and camera terms; the DSR semantic-rendering terms (DESIGN 7)."""

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
