"""Body-reconstruction metrics in millimetres (docs/design.md, Metrics).

- :func:`mpjpe`: mean per-joint position error after aligning both skeletons at their pelvis.
- :func:`pa_mpjpe`: the same after a similarity Procrustes alignment (scale, rotation, translation)
  of the prediction onto the ground truth (:func:`dsrbody.geometry.procrustes.similarity_procrustes`).
- :func:`pve`: mean per-vertex error without alignment, as the official evaluation (both meshes in
  the body frame: rotated by the global orientation, no camera translation).
- :func:`pve_t`: per-vertex error of the meshes in the rest pose (shape only, no pose, no alignment).
- :func:`pve_t_sc`: the same after scale correction (both rest meshes centred, the prediction scaled to
  the ground truth's RMS size; the PVE-T-SC of SSP-3D evaluations): body proportions without stature,
  which a crop cannot show (docs/model_card.md).

Every function returns one value per sample (``(B,)``, millimetres, inputs in metres);
:class:`MetricAccumulator` averages them over a dataset. :func:`eval_joints` picks the evaluation
joints of a body model: the 14 LSP joints of SPIN's 49-keypoint set (its "GT" part, indices
25..38) where the model provides them (SMPL: all 14; Anny: the 12 limb joints, it has no LSP neck
and head top), pelvis = the midpoint of the two hips.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch

from dsrbody.geometry.procrustes import centre_and_scale, similarity_procrustes

__all__ = [
    "LSP14_IN_SPIN49",
    "EvalJoints",
    "eval_joints",
    "align_pelvis",
    "mpjpe",
    "pa_mpjpe",
    "pve",
    "pve_t",
    "pve_t_sc",
    "selection_score",
    "MetricAccumulator",
]

#: The 14 LSP joints inside SPIN's 49-keypoint set (its 24 "GT" joints start at 25; LSP order:
#: R ankle, R knee, R hip, L hip, L knee, L ankle, R wrist, R elbow, R shoulder, L shoulder,
#: L elbow, L wrist, neck, head top).
LSP14_IN_SPIN49: tuple[int, ...] = tuple(range(25, 39))
_MM = 1000.0


@dataclass(frozen=True)
class EvalJoints:
    """Which keypoints of a body model's joint set the joint metrics use.

    Attributes:
        indices: keypoint indices into the model's ``joints (B, K, 3)``.
        pelvis: positions *within* ``indices`` whose mean is the pelvis (the two hips).
        names: their names (for reports).
    """

    indices: tuple[int, ...]
    pelvis: tuple[int, ...]
    names: tuple[str, ...] = ()


def eval_joints(body_model) -> EvalJoints:
    """The evaluation joints of a body model whose ``joints`` are SPIN's 49 keypoints.

    The LSP-14 joints (``joints[:, 25:39]``) for which ``body_model.keypoint_confidence`` is positive
    (all when the model has no such attribute), pelvis = the midpoint of the right and left hips
    (LSP 2 and 3). This is SPIN's 14-joint set; for SMPL the official protocols regress it from the
    H36M regressor instead (``dsrbody.eval.protocols``).
    """
    from dsrbody.body.keypoints import SPIN49

    conf = body_model.keypoint_confidence
    idx = [i for i in LSP14_IN_SPIN49 if conf is None or float(conf[i]) > 0]
    if 27 not in idx or 28 not in idx:
        raise ValueError("the body model provides no hip keypoints: cannot align at the pelvis")
    names = tuple(SPIN49.names[i] for i in idx)
    return EvalJoints(tuple(idx), (idx.index(27), idx.index(28)), names)


def _check_pair(pred: torch.Tensor, gt: torch.Tensor, what: str) -> None:
    if pred.shape != gt.shape or pred.dim() != 3 or pred.shape[-1] != 3:
        raise ValueError(
            f"{what}: expected two (B, N, 3) tensors, got {tuple(pred.shape)} and {tuple(gt.shape)}"
        )


def align_pelvis(joints: torch.Tensor, pelvis: int | Sequence[int]) -> torch.Tensor:
    """Translate ``(B, N, 3)`` joints so that the pelvis (one joint, or the mean of several) is at 0."""
    idx = [pelvis] if isinstance(pelvis, int) else list(pelvis)
    return joints - joints[:, idx].mean(dim=1, keepdim=True)


def mpjpe(pred: torch.Tensor, gt: torch.Tensor, pelvis: int | Sequence[int] | None = (2, 3)) -> torch.Tensor:
    """Mean per-joint position error, pelvis-aligned.

    Args:
        pred, gt: ``(B, N, 3)`` joints in metres.
        pelvis: joint index(es) whose mean is the pelvis, in both sets; ``None``: no alignment.

    Returns:
        ``(B,)`` millimetres.
    """
    _check_pair(pred, gt, "mpjpe")
    if pelvis is not None:
        pred, gt = align_pelvis(pred, pelvis), align_pelvis(gt, pelvis)
    return (pred - gt).norm(dim=-1).mean(dim=-1) * _MM


def pa_mpjpe(pred: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """Mean per-joint error after a similarity Procrustes alignment of ``pred`` onto ``gt``.

    Args:
        pred, gt: ``(B, N, 3)`` joints in metres (any translation: the alignment removes it).

    Returns:
        ``(B,)`` millimetres.
    """
    _check_pair(pred, gt, "pa_mpjpe")
    aligned, _, _, _ = similarity_procrustes(pred.double(), gt.double())
    return ((aligned - gt.double()).norm(dim=-1).mean(dim=-1) * _MM).to(pred.dtype)


def pve(pred_vertices: torch.Tensor, gt_vertices: torch.Tensor) -> torch.Tensor:
    """Per-vertex error without alignment (the official 3DPW evaluation's PVE).

    Args:
        pred_vertices, gt_vertices: ``(B, V, 3)`` metres, same topology, same frame (body frame,
            rotated, no camera translation).

    Returns:
        ``(B,)`` millimetres.
    """
    _check_pair(pred_vertices, gt_vertices, "pve")
    return (pred_vertices - gt_vertices).norm(dim=-1).mean(dim=-1) * _MM


def pve_t(pred_rest: torch.Tensor, gt_rest: torch.Tensor) -> torch.Tensor:
    """Per-vertex error of the rest-pose meshes (shape only; pose and orientation play no part).

    Args:
        pred_rest, gt_rest: ``(B, V, 3)`` rest-pose vertices (``BodyOutput.rest_vertices``), metres, in
            the body model's canonical frame, no alignment (SMPL's is the template's; Anny's rest mesh
            stands with its soles at a fixed height whatever the phenotypes, so stature shows as error
            at the head; its rest pose is Anny's A-pose).

    Returns:
        ``(B,)`` millimetres.
    """
    _check_pair(pred_rest, gt_rest, "pve_t")
    return (pred_rest - gt_rest).norm(dim=-1).mean(dim=-1) * _MM


def pve_t_sc(pred_rest: torch.Tensor, gt_rest: torch.Tensor) -> torch.Tensor:
    """Scale-corrected PVE-T: per-vertex error of the rest-pose meshes after centring both on their
    vertex mean and scaling the prediction to the ground truth's RMS radius (no rotation).

    A crop fixes a person's size in pixels, so stature (distance and height trade off) is not in the
    image; this measures the shape the image does show.

    Args:
        pred_rest, gt_rest: ``(B, V, 3)`` rest-pose vertices, metres, same mesh and frame.

    Returns:
        ``(B,)`` millimetres.
    """
    _check_pair(pred_rest, gt_rest, "pve_t_sc")
    p, g = centre_and_scale(pred_rest, gt_rest)
    return (p - g).norm(dim=-1).mean(dim=-1) * _MM


def selection_score(pa_mpjpe_mm: float, mpjpe_mm: float) -> float:
    """The official best-checkpoint criterion ``1.5 * PA-MPJPE + MPJPE`` (lower is better)."""
    return 1.5 * float(pa_mpjpe_mm) + float(mpjpe_mm)


class MetricAccumulator:
    """Sums of per-sample metric values over a dataset (``add`` per batch, ``means`` at the end)."""

    def __init__(self) -> None:
        self.sums: dict[str, float] = {}
        self.counts: dict[str, int] = {}

    def add(self, values: Mapping[str, torch.Tensor]) -> None:
        """Add ``{name: (B,) per-sample values}``; non-finite values are left out (and not counted)."""
        for name, v in values.items():
            v = v.detach().double().reshape(-1)
            v = v[torch.isfinite(v)]
            self.sums[name] = self.sums.get(name, 0.0) + float(v.sum())
            self.counts[name] = self.counts.get(name, 0) + int(v.numel())

    def means(self) -> dict[str, float]:
        """``{name: mean}`` over every added sample (names with no sample are left out)."""
        return {k: self.sums[k] / self.counts[k] for k in self.sums if self.counts[k] > 0}

    def count(self, name: str) -> int:
        """Samples averaged for ``name``."""
        return self.counts.get(name, 0)

    def reset(self) -> None:
        """Forget everything."""
        self.sums.clear()
        self.counts.clear()
