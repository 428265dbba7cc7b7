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
- :class:`PoseGMM`: SMPLify's Gaussian-mixture pose prior, fitted to example poses
  (:func:`fit_pose_gmm`, ``dsrbody prior pose``); a shipped one for Anny (:func:`default_pose_prior`).
"""

from __future__ import annotations

import zipfile
from pathlib import Path
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
    "PoseGMM",
    "fit_pose_gmm",
    "default_pose_prior",
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


class PoseGMM:
    """A Gaussian mixture over the body pose (SMPLify's pose prior), as a fitting term.

    The pose is the axis-angle vector of the body joints' relative rotations (root excluded),
    ``D = 3 (J - 1)`` numbers (SMPL and Anny: 69). The term is the mixture's negative log-density up to
    a constant, ``-log sum_k w_k N(x; mu_k, P_k^-1) - c`` with ``c`` the largest component peak
    (so it is about 0 at the most probable pose and grows as the pose leaves the data), in nats. SMPLify
    takes the best component (``min_k``); the log-sum-exp used here is its smooth version, the same
    wherever one component dominates.

    Build one with :func:`fit_pose_gmm` (``dsrbody prior pose``); a file is an ``.npz`` with ``means
    (K, D)``, ``precisions (K, D, D)``, ``weights (K,)`` and ``body_model`` (loaded without pickle).

    Attributes:
        means: ``(K, D)`` radians. precisions: ``(K, D, D)`` inverse covariances. weights: ``(K,)``.
        body_model: the body family the poses came from (``""``: unknown).
    """

    def __init__(
        self, means: torch.Tensor, precisions: torch.Tensor, weights: torch.Tensor, body_model: str = ""
    ):
        means = torch.as_tensor(means, dtype=torch.float32)
        precisions = torch.as_tensor(precisions, dtype=torch.float32)
        weights = torch.as_tensor(weights, dtype=torch.float32)
        K, D = means.shape
        if D % 3 or precisions.shape != (K, D, D) or weights.shape != (K,):
            raise ValueError(
                f"pose GMM: means {tuple(means.shape)}, precisions {tuple(precisions.shape)} and weights "
                f"{tuple(weights.shape)} do not make K components over 3 (J - 1) numbers"
            )
        if not (torch.isfinite(means).all() and torch.isfinite(precisions).all()):
            raise ValueError("pose GMM: non-finite means or precisions")
        if (weights <= 0).any() or not torch.isfinite(weights).all():
            raise ValueError("pose GMM: weights must be positive")
        self.means, self.precisions, self.weights = means, precisions, weights / weights.sum()
        self.body_model = str(body_model)
        chol, info = torch.linalg.cholesky_ex(precisions.double())
        if (info != 0).any():
            raise ValueError("pose GMM: a precision matrix is not symmetric positive definite")
        logdet = 2.0 * torch.log(torch.diagonal(chol, dim1=-2, dim2=-1)).sum(-1)  # (K,)
        peak = torch.log(self.weights.double()) + 0.5 * logdet  # (K,) log peak density + const
        self._log_peak = (peak - peak.max()).float()

    @property
    def num_joints(self) -> int:
        """Body joints the prior covers (root excluded)."""
        return self.means.shape[1] // 3

    def to(self, device: torch.device | str) -> PoseGMM:
        """The same prior with its tensors on ``device``."""
        out = PoseGMM.__new__(PoseGMM)
        out.means, out.precisions, out.weights = (
            t.to(device) for t in (self.means, self.precisions, self.weights)
        )
        out.body_model, out._log_peak = self.body_model, self._log_peak.to(device)
        return out

    def __call__(self, body_pose: torch.Tensor) -> torch.Tensor:
        """Negative log-density of poses.

        Args:
            body_pose: ``(B, J-1, 3, 3)`` relative rotations of the body joints (root excluded).

        Returns:
            ``(B,)`` nats (class docstring).
        """
        if body_pose.shape[1] != self.num_joints:
            raise ValueError(
                f"pose GMM covers {self.num_joints} body joints, the body model has {body_pose.shape[1]}"
            )
        x = roma.rotmat_to_rotvec(body_pose).flatten(1)  # (B, D)
        d = x[:, None] - self.means.to(x)[None]  # (B, K, D)
        maha = torch.einsum("bki,kij,bkj->bk", d, self.precisions.to(x), d)
        return -torch.logsumexp(self._log_peak.to(x)[None] - 0.5 * maha, dim=1)

    def save(self, path: str | Path) -> None:
        """Write the ``.npz`` (class docstring)."""
        np.savez(
            path,
            means=self.means.cpu().numpy(),
            precisions=self.precisions.cpu().numpy(),
            weights=self.weights.cpu().numpy(),
            body_model=np.array(self.body_model),
        )

    @classmethod
    def load(cls, path: str | Path) -> PoseGMM:
        """Read a prior written by :meth:`save`; a bad file is a one-line ``ValueError`` naming it."""
        p = Path(path)
        if not p.is_file():
            raise FileNotFoundError(f"{p}: pose prior file not found")
        try:
            with np.load(p, allow_pickle=False) as z:
                missing = [k for k in ("means", "precisions", "weights") if k not in z.files]
                if missing:
                    raise ValueError(f"missing {', '.join(missing)}")
                body = str(z["body_model"]) if "body_model" in z.files else ""
                return cls(z["means"], z["precisions"], z["weights"], body)
        except (OSError, ValueError, RuntimeError, EOFError, zipfile.BadZipFile) as e:
            raise ValueError(f"{p}: not a pose prior file ({e})") from None


def fit_pose_gmm(
    poses: np.ndarray, components: int = 8, seed: int = 0, reg_covar: float = 1e-4, body_model: str = ""
) -> PoseGMM:
    """Fit a :class:`PoseGMM` to example poses by EM (scikit-learn's ``GaussianMixture``, full
    covariances).

    Args:
        poses: ``(N, J-1, 3)`` or ``(N, 3 (J-1))`` axis-angle body poses (root excluded), radians.
        components: ``K``. seed: EM initialisation seed. reg_covar: added to the covariance diagonals
            (radians^2; keeps the precisions finite along directions the examples do not vary in).
        body_model: recorded in the prior.

    Raises:
        ImportError: scikit-learn is not installed (``pip install 'dsrbody[prior]'``).
        ValueError: fewer examples than ten per component, or non-finite poses.
    """
    try:
        from sklearn.mixture import GaussianMixture
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError(
            "fitting a pose prior needs scikit-learn: pip install 'dsrbody[prior]' (or scikit-learn)"
        ) from e
    x = np.asarray(poses, dtype=np.float64).reshape(len(poses), -1)
    if not np.isfinite(x).all():
        raise ValueError("pose prior: the example poses hold non-finite values")
    if len(x) < 10 * components:
        raise ValueError(f"pose prior: {len(x)} example poses for {components} components (need >= 10 each)")
    gmm = GaussianMixture(
        components, covariance_type="full", reg_covar=reg_covar, random_state=seed, max_iter=200
    ).fit(x)
    return PoseGMM(gmm.means_, gmm.precisions_, gmm.weights_, body_model)


def default_pose_prior(body_model: BodyModel) -> PoseGMM | None:
    """The shipped pose prior of a body model's family (its registry entry's ``shipped_pose_prior``),
    or None where the family has none or the prior covers other joints."""
    from importlib.resources import files

    from dsrbody.body.factory import body_spec

    spec = body_spec(str(body_model.name), missing_ok=True)
    if spec is None or not spec.shipped_pose_prior:
        return None
    prior = PoseGMM.load(Path(str(files("dsrbody") / "assets" / spec.shipped_pose_prior)))
    return prior if prior.num_joints == int(body_model.num_joints) - 1 else None
