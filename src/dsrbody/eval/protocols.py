"""The paper's evaluation protocols, computed as the field's official code computes them (docs/design.md,
Data formats, Metrics).

Protocols (``PROTOCOLS``; the annotation files of :data:`dsrbody.data.spin_npz.DATASET_FILES`):

===================  ==================================  ==========================================
protocol             file                                ground truth / joints / metrics
===================  ==================================  ==========================================
``3dpw``             ``3dpw_test.npz`` (SPIN) or          gender-specific SMPL bodies from ``pose``,
                     ``3dpw_test_with_mmpose.npz`` (DSR)  ``shape``, ``gender``; 14 LSP joints; MPJPE,
                                                          PA-MPJPE, PVE
``h36m-p1``          ``h36m_valid_protocol1.npz``        ``S`` (24 GT joints -> 14); MPJPE, PA-MPJPE
``h36m-p2``          ``h36m_valid_protocol2.npz``        same
``mpi-inf-3dhp``     ``mpi_inf_3dhp_valid.npz``          ``S`` (24 GT joints -> 17); MPJPE, PA-MPJPE,
                                                          PCK@150 mm, AUC 0-150 mm (not in the
                                                          official code)
``synth``            ``synth_test.npz`` (dsrbody synth)  the file's body parameters through the
                                                          checkpoint's own body model; 14 LSP joints;
                                                          MPJPE, PA-MPJPE, PVE, PVE-T
===================  ==================================  ==========================================

What SPIN's ``eval.py`` (and DSR's ``validation_step``, which builds the same ground truth in its
dataset) does, and therefore what this module does:

- Predicted joints: the 17 H36M joints regressed from the predicted SMPL vertices with
  ``J_regressor_h36m.npy``; the pelvis is **H36M joint 0** of those 17, subtracted from the selected
  joints (``H36M_TO_J14``, or ``H36M_TO_J17`` for MPI-INF-3DHP). The mid-hip pelvis is what the
  *training* 3D keypoint loss uses, not the evaluation.
- 3DPW ground truth: the male or female SMPL model (by ``gender``) posed with ``pose``/``shape``,
  the same regressor and the same H36M-joint-0 pelvis. PVE compares the predicted (neutral) and
  ground-truth vertices without any alignment, both in the model frame without translation.
- Human3.6M / MPI-INF-3DHP ground truth: ``S`` as stored, through SPIN's ``J24_TO_J14`` /
  ``J24_TO_J17`` (its 14th joint is ``Head (H36M)``, row 18, not the LSP head top), the confidence
  column dropped. The files store ``S`` already centred on the H36M pelvis (SPIN's preprocessing
  subtracts it), so no centring is applied here; a file whose pelvis is not at the origin gets a note.
- PA-MPJPE: similarity Procrustes (scale, rotation, translation; no reflection) of the predicted
  joints onto the ground truth per sample, then MPJPE.
- Millimetres, averaged per sample, then over samples.

Added here (not in the official code): MPI-INF-3DHP PCK@150 mm and AUC (mean PCK over thresholds
0, 5, ..., 150 mm), over the 14 LSP joints of its 17 (the pelvis is at 0 error by construction,
spine and jaw are not scored by the benchmark's 14-joint PCK); a joint counts as correct when its
error is <= the threshold. Optional flip test-time augmentation (:class:`RegressorPredictor`).

Predictions are pluggable: a predictor is any callable ``batch -> dict`` returning at least
``vertices (B, V, 3)`` (metres, model frame rotated into the camera, no translation; SPIN's
``pred_vertices``), optionally ``translation (B, 3)`` (for the report's overlays), ``joints``,
``rest_vertices`` (PVE-T), and exposing ``body_model`` / ``faces`` attributes when it can.
:class:`RegressorPredictor` wraps a :class:`~dsrbody.models.hmr.Regressor`.
"""

from __future__ import annotations

import heapq
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dsrbody.body.keypoints import LSP14, swap_left_right
from dsrbody.eval.ground_truth import (  # their home; re-exported here for callers
    GROUND_TRUTHS,
    J24_TO_J14,
    J24_TO_J17,
    GroundTruth,
    IncompatibleBodyModelError,
    gt_eval_joints_from_S,
    h36m_eval_joints,
)
from dsrbody.eval.metrics import pve_t_sc
from dsrbody.geometry.procrustes import similarity_procrustes

__all__ = [
    "Protocol",
    "METRIC_LABELS",
    "PROTOCOLS",
    "PAPER_FIGURES",
    "J24_TO_J17",
    "J24_TO_J14",
    "EVAL14_NAMES",
    "EVAL17_NAMES",
    "PCK_THRESHOLD_MM",
    "AUC_THRESHOLDS_MM",
    "SMPLKit",
    "Predictor",
    "RegressorPredictor",
    "FlipAveraged",
    "EvalResult",
    "get_protocol",
    "find_protocol_file",
    "resolve_image_dir",
    "h36m_eval_joints",
    "gt_eval_joints_from_S",
    "joint_errors",
    "vertex_errors",
    "pck",
    "auc",
    "mirror_rotations",
    "flip_average",
    "evaluate",
    "IncompatibleBodyModelError",
]

#: Names of the 14 evaluation joints (LSP order; the head is H36M's head, as SPIN evaluates it).
EVAL14_NAMES: tuple[str, ...] = LSP14.names[:13] + ("Head (H36M)",)
#: Names of MPI-INF-3DHP's 17 evaluation joints.
EVAL17_NAMES: tuple[str, ...] = EVAL14_NAMES + ("Pelvis", "Spine (H36M)", "Jaw (H36M)")

#: MPI-INF-3DHP PCK threshold (mm) and AUC thresholds (mm).
PCK_THRESHOLD_MM = 150.0
AUC_THRESHOLDS_MM: tuple[float, ...] = tuple(float(t) for t in np.linspace(0.0, 150.0, 31))

#: The DSR paper's figures (mm), for the table beside ours. The paper gives one Human3.6M number
#: (PA-MPJPE 40.3); in SPIN's and DSR's tables that is protocol 2.
PAPER_FIGURES: dict[str, dict[str, float]] = {
    "3dpw": {"pa_mpjpe": 51.7},
    "h36m-p2": {"pa_mpjpe": 40.3},
    "mpi-inf-3dhp": {"mpjpe": 104.7},
}

METRIC_LABELS = {
    "mpjpe": "MPJPE (mm)",
    "pa_mpjpe": "PA-MPJPE (mm)",
    "pve": "PVE (mm)",
    "pve_t": "PVE-T (mm)",
    "pve_t_sc": "PVE-T-SC (mm)",
    "pck150": "PCK@150mm (%)",
    "auc": "AUC 0-150mm (%)",
}


@dataclass(frozen=True)
class Protocol:
    """One evaluation protocol.

    Attributes:
        name: ``"3dpw"``, ``"h36m-p1"``, ``"h36m-p2"``, ``"mpi-inf-3dhp"`` or ``"synth"``.
        files: annotation file names, in order of preference (the data layer's
            :data:`~dsrbody.data.spin_npz.DATASET_FILES` entries of this protocol, or the protocol's own).
        ground_truth: a kind of :data:`~dsrbody.eval.ground_truth.GROUND_TRUTHS`: ``"smpl"`` (gendered
            SMPL bodies from pose/shape/gender), ``"S"`` (3D joints of the file) or ``"params"`` (the
            file's parameters through the checkpoint's own body model).
        num_joints: 14 or 17 evaluation joints.
        metrics: the metrics reported, in order (keys of :data:`METRIC_LABELS`).
        required: annotation keys the protocol needs.
        description: one line.
    """

    name: str
    files: tuple[str, ...]
    ground_truth: str
    num_joints: int
    metrics: tuple[str, ...]
    required: tuple[str, ...]
    description: str

    def make_ground_truth(self) -> GroundTruth:
        """A fresh ground-truth strategy of this protocol (:mod:`dsrbody.eval.ground_truth`)."""
        return GROUND_TRUTHS[self.ground_truth]()

    @property
    def smpl_only(self) -> bool:
        """Needs SMPL predictions (6890 vertices and the H36M regressor)."""
        return GROUND_TRUTHS[self.ground_truth].needs_smpl

    @property
    def joint_names(self) -> tuple[str, ...]:
        """Names of the evaluation joints."""
        return EVAL17_NAMES if self.num_joints == 17 else EVAL14_NAMES

    @property
    def paper(self) -> dict[str, float]:
        """The paper's figures for this protocol (mm), possibly empty."""
        return dict(PAPER_FIGURES.get(self.name, {}))

    @property
    def primary_metric(self) -> str:
        """The metric that ranks samples (worst samples of the report)."""
        return "pa_mpjpe"


def _files(protocol: str, own: tuple[str, ...] = ()) -> tuple[str, ...]:
    """The annotation files the data layer registers for ``protocol`` (``DATASET_FILES``), in order."""
    from dsrbody.data.spin_npz import DATASET_FILES

    return tuple(f.filename for f in DATASET_FILES.values() if f.protocol == protocol) + own


#: every evaluation protocol by name; ``dsrbody eval --dataset`` offers these names.
PROTOCOLS: dict[str, Protocol] = {
    p.name: p
    for p in [
        Protocol("3dpw", _files("3dpw"), "smpl", 14, ("mpjpe", "pa_mpjpe", "pve"),
                 ("pose", "shape", "gender"),
                 "3DPW test: gender-specific SMPL ground truth, 14 LSP joints from the H36M regressor"),
        Protocol("h36m-p1", _files("h36m-p1"), "S", 14, ("mpjpe", "pa_mpjpe"), ("S",),
                 "Human3.6M protocol 1 (all cameras, S9 and S11): 3D joints S, 14 joints"),
        Protocol("h36m-p2", _files("h36m-p2"), "S", 14, ("mpjpe", "pa_mpjpe"), ("S",),
                 "Human3.6M protocol 2 (frontal camera, S9 and S11): 3D joints S, 14 joints"),
        Protocol("mpi-inf-3dhp", _files("mpi-inf-3dhp"), "S", 17,
                 ("mpjpe", "pa_mpjpe", "pck150", "auc"), ("S",),
                 "MPI-INF-3DHP test: 3D joints S, 17 joints; PCK/AUC on their 14 LSP joints"),
        Protocol("synth", _files("synth", ("synth_test.npz",)), "params", 14,
                 ("mpjpe", "pa_mpjpe", "pve", "pve_t", "pve_t_sc"), ("pose", "shape"),
                 "dsrbody synthetic test split: the file's body parameters through the checkpoint's body "
                 "model; the LSP joints it has (dsrbody.eval.metrics.eval_joints), mid-hip pelvis"),
    ]
}  # fmt: skip


def get_protocol(name: str | Protocol) -> Protocol:
    """A protocol by name (``ValueError`` listing the known ones otherwise)."""
    if isinstance(name, Protocol):
        return name
    key = str(name).strip().lower()
    if key not in PROTOCOLS:
        raise ValueError(f"unknown evaluation protocol {name!r}; choose one of: {', '.join(PROTOCOLS)}")
    return PROTOCOLS[key]


def find_protocol_file(protocol: str | Protocol, data_root: str | Path) -> Path:
    """The protocol's annotation file under ``data_root`` (``data_root/<file>`` or
    ``data_root/dataset_extras/<file>``, the first of ``protocol.files`` found; an ``.npz`` path is
    taken as it is).

    Raises:
        FileNotFoundError: naming every place looked at.
    """
    p = get_protocol(protocol)
    root = Path(data_root)
    if root.is_file():
        return root
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: data root does not exist")
    looked = []
    for name in p.files:
        for cand in (root / name, root / "dataset_extras" / name):
            looked.append(str(cand))
            if cand.is_file():
                return cand
    raise FileNotFoundError(
        f"no annotation file for protocol {p.name!r}: looked for {', '.join(looked)} (SPIN/DSR "
        "dataset_extras files; 3DPW: 3dpw_test.npz or 3dpw_test_with_mmpose.npz)"
    )


#: Sub-folders where the benchmarks' images usually live under a shared data root.
IMAGE_DIR_CANDIDATES: dict[str, tuple[str, ...]] = {
    "3dpw": ("3DPW", "3dpw", "3DPW_ROOT"),
    "h36m-p1": ("h36m", "H36M", "Human3.6M", "human36m"),
    "h36m-p2": ("h36m", "H36M", "Human3.6M", "human36m"),
    "mpi-inf-3dhp": ("mpi_inf_3dhp", "MPI-INF-3DHP", "mpi-inf-3dhp", "mpi_inf_3dhp_test_set"),
    "synth": (),
}


def resolve_image_dir(
    protocol: str | Protocol, data_root: str | Path, imgnames: Sequence[str], probe: int = 20
) -> Path:
    """The folder that ``imgname`` paths are relative to: ``data_root``, its parent (for an annotation
    file in ``dataset_extras/``) or a usual dataset sub-folder (``3DPW/``, ``h36m/``, ...), whichever
    holds the most of the first ``probe`` images (``data_root`` when none holds any)."""
    p = get_protocol(protocol)
    root = Path(data_root)
    if root.is_file():
        root = root.parent
    cands = [root]
    if root.name == "dataset_extras":
        cands.append(root.parent)
    for base in list(cands):
        cands += [base / sub for sub in IMAGE_DIR_CANDIDATES.get(p.name, ())]
    names = list(imgnames[:probe])
    best, best_hits = root, 0
    for c in cands:
        if not c.is_dir():
            continue
        hits = sum((c / n).is_file() for n in names)
        if hits > best_hits:
            best, best_hits = c, hits
    return best


# ------------------------------------------------------------------------------------------------
# the math, one function per step
# ------------------------------------------------------------------------------------------------


def joint_errors(
    pred: torch.Tensor, gt: torch.Tensor, mask: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-joint Euclidean errors before and after similarity Procrustes alignment.

    Args:
        pred: ``(B, J, 3)`` predicted joints, metres (pelvis-aligned).
        gt: ``(B, J, 3)`` ground-truth joints, metres (pelvis-aligned).
        mask: optional ``(B, J)`` bool, joints that exist; Procrustes then uses only those (the
            official protocols have no mask).

    Returns:
        ``(mpjpe_per_joint (B, J), pa_mpjpe_per_joint (B, J))`` in metres (masked joints are NaN).
    """
    err = torch.linalg.norm(pred - gt, dim=-1)
    p64, g64 = pred.double(), gt.double()
    if mask is None or bool(mask.all()):
        aligned = similarity_procrustes(p64, g64)[0]
        return err, torch.linalg.norm(aligned - g64, dim=-1).to(err.dtype)
    pa = torch.full_like(err, float("nan"))
    for b in range(pred.shape[0]):
        m = mask[b]
        if int(m.sum()) >= 3:
            aligned = similarity_procrustes(p64[b : b + 1, m], g64[b : b + 1, m])[0]
            pa[b, m] = torch.linalg.norm(aligned[0] - g64[b, m], dim=-1).to(err.dtype)
    return err.masked_fill(~mask, float("nan")), pa


def vertex_errors(pred_vertices: torch.Tensor, gt_vertices: torch.Tensor) -> torch.Tensor:
    """Mean per-vertex Euclidean error without alignment (PVE, as the official evaluation).

    Args:
        pred_vertices, gt_vertices: ``(B, V, 3)`` metres, same topology.

    Returns:
        ``(B,)`` metres.
    """
    if pred_vertices.shape != gt_vertices.shape:
        raise ValueError(
            f"PVE needs meshes of the same topology, got {tuple(pred_vertices.shape)} and "
            f"{tuple(gt_vertices.shape)}"
        )
    return torch.linalg.norm(pred_vertices - gt_vertices, dim=-1).mean(dim=-1)


def pck(errors_mm: np.ndarray, threshold_mm: float = PCK_THRESHOLD_MM) -> float:
    """Percentage of correct keypoints: the share (in %) of joint errors ``<= threshold_mm`` over every
    joint of every sample (NaN entries, absent joints, are left out).

    Args:
        errors_mm: ``(N, J)`` per-joint errors in mm.
    """
    e = np.asarray(errors_mm, dtype=np.float64)
    e = e[np.isfinite(e)]
    if e.size == 0:
        return float("nan")
    return float(100.0 * np.mean(e <= threshold_mm))


def auc(errors_mm: np.ndarray, thresholds_mm: Sequence[float] = AUC_THRESHOLDS_MM) -> float:
    """Area under the PCK curve: the mean of :func:`pck` over ``thresholds_mm`` (default 0, 5, ...,
    150 mm), in % (100 = every joint within 0 mm)."""
    return float(np.mean([pck(errors_mm, t) for t in thresholds_mm]))


# ------------------------------------------------------------------------------------------------
# predictions
# ------------------------------------------------------------------------------------------------

#: ``batch -> {"vertices": (B, V, 3), ...}``; see the module docstring.
Predictor = Callable[[Mapping[str, Any]], Mapping[str, torch.Tensor]]

_MIRROR = torch.tensor([-1.0, 1.0, 1.0])


def flip_permutation(joint_names: Sequence[str]) -> list[int]:
    """Permutation ``p`` with ``mirrored[i] = original[p[i]]`` for a body model's joints (left <-> right
    by name; a joint whose mirror name is absent maps to itself)."""
    index = {n: i for i, n in enumerate(joint_names)}
    return [index.get(swap_left_right(n), i) for i, n in enumerate(joint_names)]


def mirror_rotations(rotmat: torch.Tensor, joint_names: Sequence[str]) -> torch.Tensor:
    """Mirror per-joint rotations for a horizontal image flip (SPIN's ``flip_pose`` on matrices).

    ``R'_j = M R_{perm(j)} M`` with ``M = diag(-1, 1, 1)``: the same as negating the y and z components
    of axis-angle vectors and swapping left and right joints. Applies to the camera-frame global
    orientation (joint 0) too. Its own inverse.

    Args:
        rotmat: ``(B, J, 3, 3)``, joints in ``joint_names`` order.
        joint_names: the body model's ``J`` joint names.

    Returns:
        ``(B, J, 3, 3)``.
    """
    perm = flip_permutation(joint_names)
    m = _MIRROR.to(rotmat)
    return rotmat[:, perm] * m[:, None] * m[None, :]


def flip_average(
    out: Mapping[str, torch.Tensor], out_flipped: Mapping[str, torch.Tensor], joint_names: Sequence[str]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Average a regressor's estimate on an image with its estimate on the mirrored image.

    The mirrored estimate is mirrored back (:func:`mirror_rotations`; camera ``(s, tx, ty) -> (s, -tx,
    ty)``), rotations are averaged as matrices and projected back onto SO(3)
    (``roma.special_procrustes``), shape and camera averaged.

    Args:
        out, out_flipped: dicts with ``rotmat (B, J, 3, 3)``, ``shape (B, S)``, ``cam (B, 3)``.
        joint_names: the body model's joint names.

    Returns:
        ``(rotmat (B, J, 3, 3), shape (B, S), cam (B, 3))``.
    """
    import roma

    back = mirror_rotations(out_flipped["rotmat"], joint_names)
    rot = roma.special_procrustes(0.5 * (out["rotmat"] + back))
    cam_back = out_flipped["cam"] * torch.tensor([1.0, -1.0, 1.0]).to(out_flipped["cam"])
    return rot, 0.5 * (out["shape"] + out_flipped["shape"]), 0.5 * (out["cam"] + cam_back)


class FlipAveraged(torch.nn.Module):
    """A :class:`~dsrbody.models.hmr.Regressor` with flip test-time augmentation: its parameters on the
    crop and on the mirrored crop, averaged by :func:`flip_average`, then posed once
    (:meth:`~dsrbody.models.hmr.Regressor.pose_body`). Twice the regressor's time. Its output has the
    regressor's ``pose6d`` and ``shape_raw`` too (of the averaged parameters), so the demo's refinement
    and ``dsrbody fit`` start from it as from the regressor.

    Args:
        regressor: the regressor (not copied; its ``body_model``, ``focal`` and ``img_res`` are this
            module's).
    """

    def __init__(self, regressor: torch.nn.Module):
        super().__init__()
        self.regressor = regressor

    @property
    def body_model(self) -> torch.nn.Module:
        """The regressor's body model."""
        return self.regressor.body_model

    @property
    def focal(self) -> float:
        """The regressor's focal length (pixels of its crop)."""
        return self.regressor.focal

    @property
    def img_res(self) -> int:
        """The regressor's crop side (pixels)."""
        return self.regressor.img_res

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """``images (B, 3, H, W)`` normalised crops -> the dict of ``pose_body`` for the averaged
        parameters, with ``pose6d (B, J*6)`` and ``shape_raw (B, S)`` (the head's vectors for them)."""
        from dsrbody.geometry.rotations import matrix_to_rot6d

        out = self.regressor(images)
        out_f = self.regressor(images.flip(-1))
        rot, shape, cam = flip_average(out, out_f, self.regressor.body_model.joint_names)
        extra = {"pose6d": matrix_to_rot6d(rot).flatten(1), "shape_raw": self.regressor.raw_from_shape(shape)}
        return self.regressor.pose_body(rot, shape, cam) | extra


class RegressorPredictor:
    """A :class:`~dsrbody.models.hmr.Regressor` as a predictor, optionally with flip test-time
    augmentation (:class:`FlipAveraged`).

    Args:
        regressor: the regressor (put in eval mode here).
        flip: flip test-time augmentation.
        device: where to run.
    """

    def __init__(self, regressor: torch.nn.Module, flip: bool = False, device: str | torch.device = "cpu"):
        self.regressor = regressor.to(device).eval()
        self.flip = bool(flip)
        self.device = torch.device(device)

    @property
    def body_model(self) -> torch.nn.Module:
        """The regressor's body model."""
        return self.regressor.body_model

    @property
    def faces(self) -> torch.Tensor:
        """``(F, 3)`` mesh triangles."""
        return self.regressor.body_model.faces

    @property
    def img_res(self) -> int:
        """The regressor's crop side (pixels): the size :func:`evaluate` crops the samples at."""
        return int(self.regressor.img_res)

    @torch.no_grad()
    def __call__(self, batch: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        images = batch["img"].to(self.device)
        return (FlipAveraged(self.regressor) if self.flip else self.regressor)(images)


# ------------------------------------------------------------------------------------------------
# ground-truth bodies
# ------------------------------------------------------------------------------------------------


class SMPLKit:
    """The SMPL models and the H36M regressor the SMPL protocols need.

    Args:
        smpl_dir: folder with ``SMPL_{NEUTRAL,MALE,FEMALE}.pkl`` (or ``.npz``) and
            ``J_regressor_h36m.npy`` (in it or its parent, as :class:`dsrbody.body.smpl.SMPL` looks).
        genders: which models to build (3DPW needs male and female).
        device: where the models live.
    """

    def __init__(
        self,
        smpl_dir: str | Path,
        genders: Sequence[str] = ("neutral", "male", "female"),
        device: str | torch.device = "cpu",
    ):
        from dsrbody.body.smpl import SMPL

        self.models = {g: SMPL(smpl_dir, gender=g).to(device).eval() for g in genders}
        any_model = next(iter(self.models.values()))
        if any_model.J_regressor_h36m is None:
            from dsrbody.body.smpl import H36M_REGRESSOR_FILE

            raise FileNotFoundError(
                f"{H36M_REGRESSOR_FILE} not found beside the SMPL files in {smpl_dir} (or its parent); the "
                "evaluation protocols regress their joints with it; it comes with SPIN's data "
                "(fetch_data.sh in https://github.com/nkolot/SPIN)"
            )
        self.J_regressor_h36m = any_model.J_regressor_h36m
        self.num_vertices = any_model.num_vertices

    def h36m_joints(self, vertices: torch.Tensor) -> torch.Tensor:
        """``(B, 17, 3)`` H36M joints regressed from ``(B, 6890, 3)`` vertices (metres)."""
        if vertices.dim() != 3 or vertices.shape[1] != self.num_vertices:
            raise IncompatibleBodyModelError(
                f"the H36M joint regressor needs SMPL meshes ({self.num_vertices} vertices), got "
                f"{tuple(vertices.shape)}"
            )
        return torch.einsum("jv,bvc->bjc", self.J_regressor_h36m.to(vertices), vertices)

    def gendered_vertices(
        self, pose: torch.Tensor, shape: torch.Tensor, gender: torch.Tensor
    ) -> torch.Tensor:
        """Posed SMPL vertices of each sample's gender (0 male, 1 female, else neutral).

        Args:
            pose: ``(B, 72)`` axis-angle; shape: ``(B, 10)``; gender: ``(B,)`` int.

        Returns:
            ``(B, 6890, 3)`` metres, model frame, no translation.
        """
        from dsrbody.eval.synth_eval import gender_groups
        from dsrbody.geometry.rotations import axis_angle_to_matrix

        B = pose.shape[0]
        rot = axis_angle_to_matrix(pose.reshape(B, 24, 3))
        out = None
        every = torch.ones(B, dtype=torch.bool, device=gender.device)
        for sel, g in gender_groups(gender, {0: "male", 1: "female"}, "neutral", every):
            if not bool(sel.any()):
                continue
            if g not in self.models:
                raise ValueError(f"ground truth needs the {g} SMPL model, which was not loaded")
            m = self.models[g]
            v = m(rot[sel, 0], rot[sel, 1:], shape[sel]).vertices
            if out is None:
                out = v.new_zeros(B, v.shape[1], 3)
            out[sel] = v
        assert out is not None
        return out


# ------------------------------------------------------------------------------------------------
# results
# ------------------------------------------------------------------------------------------------


@dataclass
class EvalResult:
    """What :func:`evaluate` returns.

    Attributes:
        protocol: the protocol name.
        annotation_file, image_dir: what was read.
        num_samples: samples in the file (or the ``max_samples`` subset).
        num_evaluated: samples the metrics are computed on.
        skipped: one dict per skipped sample (``sample_index``, ``imgname``, ``reason``, ``path``).
        metrics: protocol metric -> mean over the evaluated samples (mm; PCK and AUC in %).
        per_sample: column name -> ``(num_evaluated,)`` array: ``sample_index``, ``imgname``, each
            per-sample metric (mm), and where the file allows ``distance_m`` (camera distance),
            ``box_px`` (person box side in pixels), ``occlusion`` (fraction of annotated 2D keypoints
            with confidence < 0.3), ``gender``.
        per_joint: ``"mpjpe"`` / ``"pa_mpjpe"`` -> ``(num_evaluated, J)`` mm.
        joint_names: the ``J`` evaluation joint names.
        worst: the samples with the largest primary metric, worst first: dicts with ``sample_index``,
            ``imgname``, ``error`` (mm), ``vertices`` ``(V, 3)`` numpy (model frame), ``translation``
            ``(3,)`` or ``None``, ``gt_vertices`` ``(V, 3)`` (model frame) where the ground truth is a
            mesh (3DPW, synth), else ``None``.
        faces: ``(F, 3)`` of the predicted meshes (``None`` if the predictor did not say).
        flip: whether flip test-time augmentation was on.
        notes: remarks (ground-truth conventions detected, unknown genders...).
        seconds: wall time of the evaluation loop.
        checkpoint: description of the prediction source (set by callers).
    """

    protocol: str
    annotation_file: str
    image_dir: str
    num_samples: int
    num_evaluated: int
    skipped: list[dict]
    metrics: dict[str, float]
    per_sample: dict[str, np.ndarray]
    per_joint: dict[str, np.ndarray]
    joint_names: list[str]
    worst: list[dict] = field(default_factory=list)
    faces: np.ndarray | None = None
    flip: bool = False
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    checkpoint: str = ""

    @property
    def paper(self) -> dict[str, float]:
        """The paper's figures for this protocol."""
        return dict(PAPER_FIGURES.get(self.protocol, {}))

    @property
    def samples_per_second(self) -> float:
        """Evaluated samples per second of the loop."""
        return self.num_evaluated / self.seconds if self.seconds > 0 else float("nan")

    def table(self) -> list[tuple[str, float, float | None]]:
        """``(metric label, ours, paper or None)`` rows."""
        return [(METRIC_LABELS[k], v, self.paper.get(k)) for k, v in self.metrics.items()]

    def format_table(self) -> str:
        """A printable table of our metrics beside the paper's figures."""
        head = (
            f"{self.protocol}: {self.num_evaluated} of {self.num_samples} samples evaluated"
            + (f" ({len(self.skipped)} skipped: {_reason_counts(self.skipped)})" if self.skipped else "")
            + (", flip TTA" if self.flip else "")
        )
        lines = [head, f"  {'metric':<18}{'dsrbody':>10}{'paper':>10}"]
        for label, ours, paper in self.table():
            p = f"{paper:10.1f}" if paper is not None else f"{'-':>10}"
            lines.append(f"  {label:<18}{ours:10.1f}{p}")
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        """The JSON-able summary written to ``metrics.json``."""

        def num(x: float) -> float | None:
            return None if x is None or not math.isfinite(x) else round(float(x), 4)

        return {
            "protocol": self.protocol,
            "description": get_protocol(self.protocol).description,
            "checkpoint": self.checkpoint,
            "annotation_file": self.annotation_file,
            "image_dir": self.image_dir,
            "flip_tta": self.flip,
            "num_samples": self.num_samples,
            "num_evaluated": self.num_evaluated,
            "num_skipped": len(self.skipped),
            "metrics": {k: num(v) for k, v in self.metrics.items()},
            "metric_units": {k: METRIC_LABELS[k] for k in self.metrics},
            "paper": self.paper,
            "per_joint_mpjpe": {
                n: num(v) for n, v in zip(self.joint_names, np.nanmean(self.per_joint["mpjpe"], axis=0))
            }
            if self.num_evaluated
            else {},
            "seconds": round(self.seconds, 3),
            "samples_per_second": num(self.samples_per_second),
            "notes": self.notes,
            "skipped": self.skipped,
        }


# ------------------------------------------------------------------------------------------------
# the loop
# ------------------------------------------------------------------------------------------------


#: reasons of samples read but left out of the means -> text.
EXCLUSION_TEXT = {
    "nonfinite_prediction": "non-finite prediction",
    "nonfinite_ground_truth": "non-finite ground truth",
    "no_ground_truth": "no ground truth",
}


def _reason_counts(skipped: list[dict]) -> str:
    """``"2 x missing image, 1 x non-finite ground truth"`` of skipped-sample dicts."""
    from dsrbody.data.spin_npz import SkipLog

    counts: dict[str, int] = {}
    for s in skipped:
        counts[s["reason"]] = counts.get(s["reason"], 0) + 1
    return ", ".join(
        f"{k} x {EXCLUSION_TEXT.get(r) or SkipLog.reason_text(r)}" for r, k in sorted(counts.items())
    )


def _finite_rows(t: torch.Tensor) -> torch.Tensor:
    """``(B,)`` bool: rows of a ``(B, ...)`` tensor without NaN/infinite values."""
    return torch.isfinite(t.reshape(t.shape[0], -1)).all(dim=1)


def _column_mask(values: np.ndarray) -> np.ndarray:
    """Keypoint columns annotated anywhere in the file (confidence > 0 in some sample)."""
    return (values > 0).any(axis=0)


def evaluate(
    protocol: str | Protocol,
    annotation_file: str | Path,
    image_dir: str | Path,
    predictor: Predictor,
    *,
    smpl_kit: SMPLKit | None = None,
    smpl_dir: str | Path | None = None,
    batch_size: int = 32,
    workers: int = 0,
    num_worst: int = 16,
    max_samples: int | None = None,
    progress: bool = True,
    device: str | torch.device = "cpu",
) -> EvalResult:
    """Run a protocol: predict every sample of an annotation file and compute the metrics.

    Args:
        protocol: a name of :data:`PROTOCOLS` or a :class:`Protocol`.
        annotation_file: the SPIN/DSR ``.npz``.
        image_dir: the folder ``imgname`` is relative to.
        predictor: ``batch -> {"vertices": (B, V, 3), ...}`` (see the module docstring), e.g. a
            :class:`RegressorPredictor`. Batches are those of
            :func:`dsrbody.data.spin_npz.collate_samples` (``img``, ``sample_index``, ...), cropped at
            the predictor's ``img_res`` (pixels; 224, SPIN's, for a predictor without one).
        smpl_kit / smpl_dir: SMPL models and H36M regressor (SMPL protocols; one of them).
        batch_size, workers: DataLoader settings.
        num_worst: how many of the worst samples to keep (vertices) for the report.
        max_samples: evaluate only the first ``max_samples`` samples.
        progress: show a progress bar.
        device: where ground-truth bodies are computed.

    Returns:
        :class:`EvalResult`. Samples whose image is missing or unreadable are skipped, counted and
        listed; the metrics say on how many samples they were computed.

    Raises:
        FileNotFoundError: the annotation file or image folder does not exist.
        ValueError: a key the protocol needs is missing (names key and file); nothing to evaluate.
        IncompatibleBodyModelError: the checkpoint's body model cannot be compared with the ground truth.
    """
    from torch.utils.data import DataLoader, Subset

    from dsrbody.data.spin_npz import SpinNpzDataset, collate_samples

    p = get_protocol(protocol)
    gt = p.make_ground_truth()
    if gt.needs_smpl and smpl_kit is None and smpl_dir is not None:
        smpl_kit = SMPLKit(smpl_dir, genders=gt.genders, device=device)

    annotation_file = Path(annotation_file)
    res = int(getattr(predictor, "img_res", 224))  # the crop the model was trained on
    ds = SpinNpzDataset(
        annotation_file, image_dir, augment=False, parsing=False, required=p.required, res=res
    )
    n_total = len(ds) if max_samples is None else min(len(ds), int(max_samples))
    notes = gt.prepare(p, ds, n_total, predictor, smpl_kit, annotation_file, smpl_dir)

    # box size / distance / occlusion columns
    extra_cols: dict[str, np.ndarray] = {"box_px": (ds.scale * 200.0).astype(np.float32)}
    gt_cols = gt.extra_columns(ds)
    gender_col = gt_cols.pop("gender", None)
    extra_cols |= gt_cols
    part_conf = ds.keypoints[:, 25:, 2]
    annotated = _column_mask(part_conf)
    if annotated.any():
        extra_cols["occlusion"] = (part_conf[:, annotated] < 0.3).mean(axis=1)
    if gender_col is not None:
        extra_cols["gender"] = gender_col

    subset = Subset(ds, range(n_total)) if n_total < len(ds) else ds
    loader = DataLoader(
        subset, batch_size=batch_size, shuffle=False, num_workers=workers, collate_fn=collate_samples
    )
    cols: dict[str, list] = {"sample_index": [], "imgname": [], "excluded": []}
    for m in p.metrics:
        if m not in ("pck150", "auc"):
            cols[m] = []
    pj_mpjpe: list[np.ndarray] = []
    pj_pa: list[np.ndarray] = []
    skipped: list[dict] = []
    worst_heap: list[tuple[float, int, dict]] = []
    faces = getattr(predictor, "faces", None)
    from tqdm import tqdm

    t0 = time.perf_counter()
    bar = tqdm(loader, desc=f"eval {p.name}", unit="batch", disable=not progress)
    for batch in bar:
        for s in batch["skipped"]:
            skipped.append(
                {k: s[k] for k in ("sample_index", "imgname", "reason", "path")}
                | {"dataset": s["dataset_name"]}
            )
        if batch["num_valid"] == 0:
            continue
        idx = batch["sample_index"]
        idx_t = idx if torch.is_tensor(idx) else torch.as_tensor(idx)
        pred = predictor(batch)
        if "vertices" not in pred:
            raise ValueError("the predictor must return 'vertices' (B, V, 3)")
        pv = pred["vertices"].detach().to(device=device, dtype=torch.float32)
        g = gt.batch(p, ds, idx_t, pred, pv, smpl_kit, device)
        pred_j, gt_j, mask, gv = g.pred_joints, g.gt_joints, g.mask, g.gt_vertices
        # a NaN/infinite prediction or ground truth would break the SVD: such rows get no metric and
        # are excluded below with their reason
        pred_bad = ~_finite_rows(pred_j) | ~_finite_rows(pv)
        gt_bad = ~_finite_rows(gt_j) if g.gt_bad is None else g.gt_bad.to(pred_bad.device)
        bad = (pred_bad | gt_bad)[:, None, None]
        pred_j = torch.where(bad, torch.zeros_like(pred_j), pred_j)
        gt_j = torch.where(bad, torch.zeros_like(gt_j), gt_j)
        e_joint, pa_joint = joint_errors(pred_j, gt_j, mask)
        e_joint = e_joint.masked_fill(bad[:, :, 0], float("nan"))
        pa_joint = pa_joint.masked_fill(bad[:, :, 0], float("nan"))
        per_mpjpe = 1000.0 * torch.nanmean(e_joint, dim=1)
        per_pa = 1000.0 * torch.nanmean(pa_joint, dim=1)
        cols["excluded"] += [
            "" if math.isfinite(m) and math.isfinite(a)
            else "nonfinite_prediction" if pb else "nonfinite_ground_truth" if gb else "no_ground_truth"
            for m, a, pb, gb in zip(per_mpjpe.tolist(), per_pa.tolist(), pred_bad.tolist(), gt_bad.tolist())
        ]  # fmt: skip
        cols["mpjpe"] += per_mpjpe.cpu().tolist()
        cols["pa_mpjpe"] += per_pa.cpu().tolist()
        row_ok = None if mask is None else mask.any(dim=1)
        if "pve" in cols:
            e = 1000.0 * vertex_errors(pv, gv.to(pv))
            cols["pve"] += (e if row_ok is None else e.masked_fill(~row_ok, float("nan"))).cpu().tolist()
        if "pve_t" in cols:
            if "rest_vertices" not in pred:
                raise ValueError("PVE-T needs the predictor's 'rest_vertices' (B, V, 3)")
            prv = pred["rest_vertices"].detach().to(pv)
            e = 1000.0 * vertex_errors(prv, g.gt_rest_vertices.to(prv))
            cols["pve_t"] += (e if row_ok is None else e.masked_fill(~row_ok, float("nan"))).cpu().tolist()
            if "pve_t_sc" in cols:
                e = pve_t_sc(prv, g.gt_rest_vertices.to(prv))
                e = e if row_ok is None else e.masked_fill(~row_ok, float("nan"))
                cols["pve_t_sc"] += e.cpu().tolist()
        pj_mpjpe.append(1000.0 * e_joint.cpu().numpy())
        pj_pa.append(1000.0 * pa_joint.cpu().numpy())
        cols["sample_index"] += idx_t.tolist()
        cols["imgname"] += list(batch["imgname"])
        # keep the worst samples' meshes for the report
        primary = per_pa.cpu().numpy()
        trans = pred.get("translation")
        for b in range(len(primary)):
            err = float(primary[b])
            if not math.isfinite(err) or num_worst <= 0:
                continue
            item = (err, int(idx_t[b]), {})
            if len(worst_heap) < num_worst:
                heapq.heappush(worst_heap, item)
            elif err > worst_heap[0][0]:
                heapq.heapreplace(worst_heap, item)
            else:
                continue
            item[2].update(
                sample_index=int(idx_t[b]),
                imgname=str(batch["imgname"][b]),
                error=err,
                vertices=pv[b].cpu().numpy(),
                translation=None if trans is None else trans[b].detach().cpu().numpy().astype(np.float32),
                gt_vertices=None if gv is None else gv[b].detach().cpu().float().numpy(),
            )
        if progress and cols["pa_mpjpe"]:
            bar.set_postfix(
                pa_mpjpe=f"{np.mean(cols['pa_mpjpe']):.1f}", mpjpe=f"{np.mean(cols['mpjpe']):.1f}"
            )
    seconds = time.perf_counter() - t0

    # samples read but without a metric leave the means and are listed, with their reason
    why = cols.pop("excluded")
    keep = [i for i, w in enumerate(why) if not w]
    skipped += [
        {"sample_index": cols["sample_index"][i], "imgname": cols["imgname"][i], "reason": w, "path": "",
         "dataset": ds.name}
        for i, w in enumerate(why) if w
    ]  # fmt: skip
    cols = {k: [v[i] for i in keep] for k, v in cols.items()}
    pj_mpjpe = [np.concatenate(pj_mpjpe)[keep]] if pj_mpjpe else []
    pj_pa = [np.concatenate(pj_pa)[keep]] if pj_pa else []
    n_eval = len(cols["sample_index"])
    if n_eval == 0:
        raise ValueError(
            f"{annotation_file}: no sample could be evaluated ({len(skipped)} skipped: "
            f"{', '.join(sorted({s['reason'] for s in skipped}))}; images looked for under {image_dir})"
        )
    order = np.argsort(np.asarray(cols["sample_index"]), kind="stable")
    per_sample: dict[str, np.ndarray] = {}
    for k, v in cols.items():
        arr = np.asarray(v)
        per_sample[k] = arr[order]
    sidx = per_sample["sample_index"]
    for k, v in extra_cols.items():
        per_sample[k] = np.asarray(v)[sidx]
    per_joint = {"mpjpe": np.concatenate(pj_mpjpe)[order], "pa_mpjpe": np.concatenate(pj_pa)[order]}
    metrics: dict[str, float] = {}
    for m in p.metrics:
        if m == "pck150":
            metrics[m] = pck(per_joint["mpjpe"][:, :14])
        elif m == "auc":
            metrics[m] = auc(per_joint["mpjpe"][:, :14])
        else:
            metrics[m] = float(np.nanmean(per_sample[m]))
    worst = [d for _, _, d in sorted(worst_heap, key=lambda t: -t[0])]
    if skipped:
        notes.append(f"{len(skipped)} samples skipped ({_reason_counts(skipped)}); metrics on {n_eval}")
    return EvalResult(
        protocol=p.name,
        annotation_file=str(annotation_file),
        image_dir=str(image_dir),
        num_samples=n_total,
        num_evaluated=n_eval,
        skipped=sorted(skipped, key=lambda s: s["sample_index"]),
        metrics=metrics,
        per_sample=per_sample,
        per_joint=per_joint,
        joint_names=gt.joint_names(p),
        worst=worst,
        faces=None if faces is None else torch.as_tensor(faces).cpu().numpy(),
        flip=bool(getattr(predictor, "flip", False)),
        notes=notes,
        seconds=seconds,
    )
