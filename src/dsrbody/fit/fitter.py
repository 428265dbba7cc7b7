"""Optimisation-based fitting of a body model to images (SMPLify/EFT-like), with the training losses.

Per sample, the optimised variables are the joint rotations (6D, root included, camera-frame global
orientation as the regressor's), the regressor's raw shape vector (SMPL betas; for Anny the logits of
the phenotypes in their box, see :class:`~dsrbody.models.hmr.Regressor`) and the weak-perspective
camera ``(s, tx, ty)`` of the 224 crop. They start from a regressor's estimate or from the mean body
(the regressor head's start point). The objective of sample ``b`` is the weighted sum

    w_kp   * keypoint_2d_loss          (SPIN's 2D term on the 49 keypoints, normalised coordinates)
  + w_mc   * DSR-MC                    (minimally clothed parts inside their mask, docs/design.md, Losses)
  + w_c    * DSR-C                     (rendered clothing classes vs the parsing map)
  + w_sil  * silhouette                (1 - IoU with the person mask; off by default)
  + w_pose * pose_angle_prior + w_gmm * pose_gmm + w_lim * joint_limit_penalty + w_shape * shape_prior
  + w_cam  * camera_loss               (SPIN's exp(-10 s)^2)
  + w_init * ||pose6d - pose6d_start||^2 (optional: stay near the starting estimate)

with SPIN/DSR's relative weights by default (keypoints 5, DSR 0.1 each); ``pose_gmm`` is SMPLify's
Gaussian-mixture pose prior (:class:`~dsrbody.fit.priors.PoseGMM`), on where one is given. Samples are
independent: the batch objective is the sum over samples, so the batch size does not change any
sample's fit. Adam on all variables; a sample whose objective becomes non-finite keeps its last finite state.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

import torch
from torch import nn

from dsrbody.fit.priors import (
    PoseGMM,
    joint_limit_penalty,
    joint_limit_table,
    pose_angle_prior,
    shape_prior,
)
from dsrbody.geometry.rotations import matrix_to_rot6d, rot6d_to_matrix
from dsrbody.losses import DSRLoss, DSRTargets, camera_loss, keypoint_2d_loss
from dsrbody.losses.targets import apply_keypoint_confidence

__all__ = [
    "LOSS_NAMES",
    "FitWeights",
    "FitConfig",
    "FitResult",
    "BodyFitter",
    "parse_losses",
    "mean_regressor",
]

#: 180-degree rotation about the camera's vertical (y) axis: a body turned round in place.
TURN_AROUND = torch.diag(torch.tensor([-1.0, 1.0, -1.0]))

#: names accepted by ``--losses``: keypoints, DSR-MC, DSR-C, silhouette.
LOSS_NAMES = ("kp", "mc", "c", "sil")


def parse_losses(spec: str) -> tuple[str, ...]:
    """``"kp,mc,c"`` -> ``("kp", "mc", "c")``; raises ``ValueError`` on unknown names."""
    names = tuple(s.strip() for s in str(spec).split(",") if s.strip())
    bad = [n for n in names if n not in LOSS_NAMES]
    if bad or not names:
        raise ValueError(f"--losses: unknown term(s) {bad or spec!r}; choose among {', '.join(LOSS_NAMES)}")
    return names


@dataclass
class FitWeights:
    """Weights of the fitting objective (module docstring)."""

    keypoints: float = 5.0
    openpose: float = 1.0  # weight of the 25 OpenPose keypoints inside the keypoint term
    gt: float = 1.0  # weight of the 24 "GT" keypoints inside the keypoint term
    dsr_mc: float = 0.1
    dsr_c: float = 0.1
    silhouette: float = 0.1
    pose_prior: float = 0.01
    pose_gmm: float = 3e-5  # nats; the GMM is far steeper than the angle prior (docs/fitting.md)
    joint_limits: float = 1.0
    shape_prior: float = 0.01
    camera: float = 1.0
    init: float = 0.0


@dataclass
class FitConfig:
    """How to fit.

    Attributes:
        losses: data terms among :data:`LOSS_NAMES` (priors are always on).
        iters: optimiser steps. lr: Adam learning rate.
        weights: :class:`FitWeights`.
        mc_form, c_form, sigma, gamma: DSR settings (docs/design.md, Losses; official sigma 1e-5, gamma 0.1).
        shape: optimise the shape (False keeps the starting shape).
        flip_start: also fit from the start point turned 180 degrees about the camera's vertical axis
            and keep, per sample, the fit with the lower final objective (SMPLify's two orientations: a
            gradient fit from a body facing the camera rarely turns round to one seen from behind, where
            the 2D keypoints are matched with the limbs crossed). Twice the time.
        record_every: every this many steps (and at the end) keep the state of every sample in
            :attr:`FitResult.snapshots` (0: none), to plot metrics against iterations.
    """

    losses: tuple[str, ...] = ("kp", "mc", "c")
    iters: int = 100
    lr: float = 0.01
    weights: FitWeights = field(default_factory=FitWeights)
    mc_form: str = "iou"
    c_form: str = "nll"
    sigma: float = 1e-5
    gamma: float = 1e-1
    shape: bool = True
    flip_start: bool = False
    record_every: int = 0


@dataclass
class FitResult:
    """Fitted parameters and the objective's terms (all ``(B, ...)``, CPU, detached).

    Attributes:
        rotmat: ``(B, J, 3, 3)``. shape: ``(B, S)`` body-model shape. shape_raw: ``(B, S)``.
        cam: ``(B, 3)``. translation: ``(B, 3)`` metres.
        terms_start / terms_end: ``{term: (B,)}`` unweighted terms at the start and at the end
            (DSR terms are NaN where a sample has none).
        history: total objective (summed over the batch) per iteration.
        snapshots: with ``config.record_every``: ``(iteration, rotmat (B, J, 3, 3), shape (B, S),
            objective (B,))`` from iteration 0 to the last, of the start each sample's result came from.
    """

    rotmat: torch.Tensor
    shape: torch.Tensor
    shape_raw: torch.Tensor
    cam: torch.Tensor
    translation: torch.Tensor
    terms_start: dict[str, torch.Tensor]
    terms_end: dict[str, torch.Tensor]
    history: list[float]
    snapshots: list[tuple[int, torch.Tensor, torch.Tensor, torch.Tensor]] = field(default_factory=list)


def mean_regressor(body_model: nn.Module) -> nn.Module:
    """A :class:`~dsrbody.models.Regressor` without an image backbone: its head's start point is the
    mean body, and its ``pose_body``/``shape_from_raw`` serve fitting without a checkpoint."""
    from dsrbody.models.hmr import Regressor

    return Regressor(nn.Identity(), 1, body_model, head_hidden=1, dropout=0.0)


class BodyFitter:
    """Fit a regressor's body model to batches of crops.

    Args:
        regressor: a :class:`~dsrbody.models.Regressor` (its body model, camera and shape mapping are
            used; its weights are not changed) or :func:`mean_regressor`.
        config: :class:`FitConfig`.
        prior: a :class:`~dsrbody.semantics.prior.ClothingPrior` of the mesh (needed for DSR terms).
        pose_gmm: a :class:`~dsrbody.fit.priors.PoseGMM` of the body model's joints (the ``pose_gmm``
            term), or None.
    """

    def __init__(
        self,
        regressor: nn.Module,
        config: FitConfig | None = None,
        prior=None,
        pose_gmm: PoseGMM | None = None,
    ):
        self.reg = regressor
        self.pose_gmm = pose_gmm
        self.cfg = config or FitConfig()
        body = regressor.body_model
        self.body = body
        conf = body.keypoint_confidence
        self.kp_conf = None if conf is None else conf.detach().float()
        self.limit_index, self.limits = joint_limit_table(body)
        self.bounded = getattr(regressor, "shape_lo", None) is not None
        needs_render = any(t in self.cfg.losses for t in ("mc", "c", "sil"))
        self.dsr = None
        if needs_render:
            if prior is None:
                raise ValueError("DSR/silhouette fitting terms need a clothing prior for the body mesh")
            self.dsr = DSRLoss(
                body.faces,
                prior,
                mc_form=self.cfg.mc_form,
                c_form=self.cfg.c_form,
                sigma=self.cfg.sigma,
                gamma=self.cfg.gamma,
                focal=regressor.focal,
                img_res=regressor.img_res,
            ).to(body.faces.device)

    def start_from_mean(self, batch_size: int) -> dict[str, torch.Tensor]:
        """The mean body's ``rotmat (B, J, 3, 3)``, ``shape_raw (B, S)``, ``cam (B, 3)``."""
        head = self.reg.head
        J = head.num_joints
        rot = rot6d_to_matrix(head.init_pose.reshape(1, J, 6)).expand(batch_size, -1, -1, -1)
        return {
            "rotmat": rot.clone(),
            "shape_raw": head.init_shape.expand(batch_size, -1).clone(),
            "cam": head.init_cam.expand(batch_size, -1).clone(),
        }

    def terms(
        self,
        pred: dict[str, torch.Tensor],
        shape_raw: torch.Tensor,
        keypoints: torch.Tensor,
        targets: DSRTargets | None,
    ) -> dict[str, torch.Tensor]:
        """Unweighted per-sample terms ``{name: (B,)}`` (DSR terms NaN where not applicable)."""
        w, losses = self.cfg.weights, self.cfg.losses
        conf = None if self.kp_conf is None else self.kp_conf[: keypoints.shape[1]]
        kp = apply_keypoint_confidence(keypoints, conf)  # as training's targets (losses/targets.py)
        out = {
            "keypoints": keypoint_2d_loss(pred["keypoints_2d"], kp, w.openpose, w.gt),
            "pose_prior": pose_angle_prior(pred["body_pose"]),
            **({"pose_gmm": self.pose_gmm(pred["body_pose"])} if self.pose_gmm is not None else {}),
            "joint_limits": joint_limit_penalty(pred["rotmat"], self.limit_index, self.limits),
            "shape_prior": shape_prior(shape_raw, self.bounded, self.reg.head.init_shape),
            "camera": camera_loss(pred["cam"]),
        }
        if self.dsr is not None and targets is not None:
            d = self.dsr(
                pred["vertices_cam"],
                targets,
                mc="mc" in losses,
                clothing="c" in losses,
                silhouette="sil" in losses,
            )
            for name, key in (("dsr_mc", "dsr_mc"), ("dsr_c", "dsr_c"), ("silhouette", "silhouette")):
                if key in d:
                    out[name] = torch.where(d[key + "_valid"], d[key], torch.full_like(d[key], float("nan")))
        return out

    def objective(
        self, terms: dict[str, torch.Tensor], pose6d: torch.Tensor, pose6d_start: torch.Tensor
    ) -> torch.Tensor:
        """Per-sample weighted objective ``(B,)`` (NaN DSR terms count 0)."""
        w = self.cfg.weights
        weights = {f.name: getattr(w, f.name) for f in fields(w)}
        total = 0.0
        for name, v in terms.items():
            if name == "keypoints" and "kp" not in self.cfg.losses:
                continue
            total = total + weights[name] * torch.nan_to_num(v, nan=0.0)
        if w.init:
            total = total + w.init * ((pose6d - pose6d_start) ** 2).flatten(1).mean(-1)
        return total

    def fit(
        self,
        keypoints: torch.Tensor,
        targets: DSRTargets | None = None,
        start: dict[str, torch.Tensor] | None = None,
    ) -> FitResult:
        """Fit a batch (twice with ``config.flip_start``: from the start and from it turned round).

        Args:
            keypoints: ``(B, K, 3)`` the 2D keypoints of the crops, normalised to [-1, 1], + confidence;
                a keypoint with a NaN/infinite value counts as absent (confidence 0).
            targets: DSR targets of the crops (:func:`~dsrbody.losses.targets.dsr_targets`), or None.
            start: ``rotmat (B, J, 3, 3)``, ``shape_raw (B, S)``, ``cam (B, 3)`` (default: the mean body).

        Returns:
            :class:`FitResult`.
        """
        s = start or self.start_from_mean(keypoints.shape[0])
        first = self._fit_once(keypoints, targets, s)
        if not self.cfg.flip_start:
            return first
        turned = dict(s)
        turned["rotmat"] = s["rotmat"].clone()
        turned["rotmat"][:, 0] = TURN_AROUND.to(s["rotmat"]) @ s["rotmat"][:, 0]
        second = self._fit_once(keypoints, targets, turned)
        better = self.final_objective(second) < self.final_objective(first)  # (B,) NaN compares False
        pick = {}
        for name in ("rotmat", "shape", "shape_raw", "cam", "translation"):
            a, b = getattr(first, name), getattr(second, name)
            pick[name] = torch.where(better.view(-1, *([1] * (a.dim() - 1))), b, a)
        ends = {k: torch.where(better, second.terms_end[k], v) for k, v in first.terms_end.items()}
        history = [x + y for x, y in zip(first.history, second.history, strict=True)]
        snaps = [
            (
                it,
                torch.where(better.view(-1, 1, 1, 1), r2, r1),
                torch.where(better.view(-1, 1), s2, s1),
                torch.where(better, o2, o1),
            )
            for (it, r1, s1, o1), (_, r2, s2, o2) in zip(first.snapshots, second.snapshots, strict=True)
        ]
        return FitResult(
            **pick, terms_start=first.terms_start, terms_end=ends, history=history, snapshots=snaps
        )

    def final_objective(self, result: FitResult) -> torch.Tensor:
        """``(B,)`` the weighted objective of a result's final terms (without the ``init`` term)."""
        w = self.cfg.weights
        total = torch.zeros_like(next(iter(result.terms_end.values())))
        for name, v in result.terms_end.items():
            if name == "keypoints" and "kp" not in self.cfg.losses:
                continue
            total = total + getattr(w, name) * torch.nan_to_num(v, nan=0.0)
        return total

    def _fit_once(
        self, keypoints: torch.Tensor, targets: DSRTargets | None, s: dict[str, torch.Tensor]
    ) -> FitResult:
        """One gradient fit of a batch from the start point ``s`` (:meth:`fit`)."""
        dev = self.body.faces.device
        pose6d0 = matrix_to_rot6d(s["rotmat"].detach().to(dev).float())  # (B, J, 6)
        pose6d = pose6d0.clone().requires_grad_(True)
        shape_raw = s["shape_raw"].detach().to(dev).float().clone().requires_grad_(self.cfg.shape)
        cam = s["cam"].detach().to(dev).float().clone().requires_grad_(True)
        params = [pose6d, cam] + ([shape_raw] if self.cfg.shape else [])
        opt = torch.optim.Adam(params, lr=self.cfg.lr)
        kp = keypoints.to(dev).float()
        # a non-finite keypoint counts as absent: masked before the loss, so no NaN reaches a gradient
        # (a term masked after it is computed still gives 0 * NaN = NaN in the backward pass)
        kp_ok = torch.isfinite(kp).all(dim=-1, keepdim=True)
        kp = torch.where(kp_ok, kp, torch.zeros_like(kp))
        best = [p.detach().clone() for p in (pose6d, shape_raw, cam)]
        history: list[float] = []
        snapshots: list[tuple[int, torch.Tensor, torch.Tensor, torch.Tensor]] = []
        terms_start: dict[str, torch.Tensor] = {}
        for it in range(self.cfg.iters + 1):
            pred = self._pose(pose6d, shape_raw, cam)
            terms = self.terms(pred, shape_raw, kp, targets)
            per_sample = self.objective(terms, pose6d, pose6d0)
            finite = torch.isfinite(per_sample) & torch.isfinite(pose6d.detach()).flatten(1).all(1)
            finite &= torch.isfinite(cam.detach()).all(1) & torch.isfinite(shape_raw.detach()).all(1)
            if it == 0:
                terms_start = {k: v.detach().cpu() for k, v in terms.items()}
            with torch.no_grad():  # keep the last finite state of every sample
                for b_, p in zip(best, (pose6d, shape_raw, cam)):
                    b_[finite] = p.detach()[finite]
                every = self.cfg.record_every
                if every and (it % every == 0 or it == self.cfg.iters):
                    snapshots.append(
                        (
                            it,
                            rot6d_to_matrix(best[0]).cpu(),
                            self.reg.shape_from_raw(best[1]).detach().cpu(),
                            torch.where(finite, per_sample.detach(), torch.nan).cpu(),
                        )
                    )
            if it == self.cfg.iters:
                break
            total = per_sample[finite].sum()
            history.append(float(total.detach()))
            opt.zero_grad(set_to_none=True)
            total.backward()
            opt.step()
        with torch.no_grad():
            pose6d_b, shape_b, cam_b = best
            pred = self._pose(pose6d_b, shape_b, cam_b)
            terms_end = {k: v.detach().cpu() for k, v in self.terms(pred, shape_b, kp, targets).items()}
        return FitResult(
            rotmat=pred["rotmat"].detach().cpu(),
            shape=pred["shape"].detach().cpu(),
            shape_raw=shape_b.detach().cpu(),
            cam=cam_b.detach().cpu(),
            translation=pred["translation"].detach().cpu(),
            terms_start=terms_start,
            terms_end=terms_end,
            history=history,
            snapshots=snapshots,
        )

    def _pose(
        self, pose6d: torch.Tensor, shape_raw: torch.Tensor, cam: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        B, J = pose6d.shape[:2]
        rot = rot6d_to_matrix(pose6d.reshape(B, J, 6))
        return self.reg.pose_body(rot, self.reg.shape_from_raw(shape_raw), cam)
