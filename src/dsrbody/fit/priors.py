"""Pose and shape priors for optimisation-based fitting, per body family.

Fitting a body to 2D evidence is ill-posed; these terms keep it a plausible body. All are per-sample
``(B,)`` tensors, differentiable, zero at the rest pose / mean shape.

- :func:`pose_angle_prior`: a Gaussian on the relative joint rotations (mean squared rotation angle,
  radians^2, over the body joints): pulls towards the model's rest pose (SMPL: T-pose; Anny: A-pose).
- :func:`joint_limit_penalty`: squared excess of the XYZ Euler angles over the anatomical limits of
  :data:`dsrbody.data.synth.poses.JOINT_LIMITS` (radians). The limits are written for SMPL's joints
  in T-pose semantics, so they apply to the joints a body model lists in ``limited_joints``: every SMPL
  joint; for Anny (same axes, A-pose rest) the joints whose rest direction is the T-pose's: legs, spine,
  neck, head (:data:`dsrbody.body.anny.ANNY_LIMITED_JOINTS`; the arm chain rests 47 degrees lower, so
  its limits do not transfer as they are and it gets the angle prior only).
  Like SMPLify's angle prior, this stops knees and elbows bending backwards.
- :func:`shape_prior`: SMPL: mean squared beta (betas are unit-variance PCA coefficients); bounded
  shape spaces (Anny's phenotypes): mean squared logit of the position in the box (the fitter
  optimises that logit, so the phenotypes cannot leave their range; this keeps them off the edges
  where the sigmoid saturates).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import roma
import torch

if TYPE_CHECKING:
    from dsrbody.body.base import BodyModel

__all__ = [
    "pose_angle_prior",
    "joint_limit_table",
    "joint_limit_penalty",
    "shape_prior",
]


def pose_angle_prior(body_pose: torch.Tensor) -> torch.Tensor:
    """Mean squared rotation angle of the relative joint rotations.

    Args:
        body_pose: ``(B, J-1, 3, 3)`` rotations relative to the parents (root excluded).

    Returns:
        ``(B,)`` radians^2.
    """
    aa = roma.rotmat_to_rotvec(body_pose)
    return (aa**2).sum(-1).mean(-1)


def joint_limit_table(body_model: BodyModel) -> tuple[torch.Tensor, torch.Tensor]:
    """Which joints of a body model have limits, and the limits.

    Args:
        body_model: a body model; its ``smpl_equivalents`` restricted to its ``limited_joints`` get the
            limits of their SMPL24 joint (SMPL: every joint but the root; Anny: legs, spine, neck, head).

    Returns:
        ``(index (L,) long`` into the model's joints (root = 0), ``limits (L, 3, 2)`` radians: XYZ Euler
        low/high``)``. Empty for a model with no known correspondence.
    """
    from dsrbody.body.keypoints import SMPL24
    from dsrbody.data.synth.poses import JOINT_LIMITS

    names = list(body_model.joint_names)
    limited = set(body_model.limited_joints)
    smpl_of = {k: v for k, v in body_model.smpl_equivalents.items() if v in limited and k in names}
    idx = [names.index(k) for k in smpl_of]
    lim = np.stack([JOINT_LIMITS[SMPL24.index(v)] for v in smpl_of.values()]) if idx else np.zeros((0, 3, 2))
    return torch.tensor(idx, dtype=torch.long), torch.as_tensor(lim, dtype=torch.float32)


def joint_limit_penalty(rotmat: torch.Tensor, index: torch.Tensor, limits: torch.Tensor) -> torch.Tensor:
    """Squared excess of Euler angles over their limits.

    Args:
        rotmat: ``(B, J, 3, 3)`` relative rotations (root first).
        index: ``(L,)`` limited joints. limits: ``(L, 3, 2)`` radians (:func:`joint_limit_table`).

    Returns:
        ``(B,)`` sum over limited joints and axes of ``relu(lo - e)^2 + relu(e - hi)^2`` (radians^2).
    """
    if index.numel() == 0:
        return rotmat.new_zeros(rotmat.shape[0])
    e = roma.rotmat_to_euler("XYZ", rotmat[:, index.to(rotmat.device)])  # (B, L, 3)
    lim = limits.to(rotmat)
    lo, hi = lim[..., 0], lim[..., 1]
    return (torch.relu(lo - e) ** 2 + torch.relu(e - hi) ** 2).sum(dim=(1, 2))


def shape_prior(shape_raw: torch.Tensor, bounded: bool, mean: torch.Tensor | None = None) -> torch.Tensor:
    """Mean squared distance of the shape vector from the mean body's: betas (SMPL) or the logits of
    bounded phenotypes (Anny).

    Args:
        shape_raw: ``(B, S)`` the optimised shape vector (betas, or logits when ``bounded``).
        bounded: whether it is a logit of a bounded shape space.
        mean: ``(S,)`` or ``(1, S)`` the mean body's raw shape (the regressor head's ``init_shape``);
            None: zero. For Anny it is not zero (a phenotype whose box is not centred on its mean
            value has a non-zero mean logit), and a prior centred on zero pulls that phenotype, the
            body's size among them, away from the mean body.

    Returns:
        ``(B,)``.
    """
    d = shape_raw if mean is None else shape_raw - mean.reshape(1, -1).to(shape_raw)
    return (d**2).mean(-1)
