"""Ground truth of an evaluation protocol, as small strategy objects (docs/design.md, Metrics).

:func:`dsrbody.eval.protocols.evaluate` runs one loop for every protocol; what differs between them is
where the ground truth comes from and how the predicted joints are read, which is one class here:

- :class:`GenderedSMPLBodies` (3DPW): the male/female SMPL model of each sample's ``gender`` posed with
  the file's ``pose``/``shape``; joints from ``J_regressor_h36m`` on both meshes, pelvis = H36M joint 0;
- :class:`FileJoints3D` (Human3.6M, MPI-INF-3DHP): the file's 3D joints ``S`` as stored; predicted
  joints from ``J_regressor_h36m`` on the SMPL mesh;
- :class:`BodyParameters` (dsrbody's synthetic split): the file's parameters through the predictor's
  own body model (:func:`dsrbody.losses.targets.gt_body`), its evaluation joints
  (:func:`dsrbody.eval.metrics.eval_joints`), pelvis = mid-hips, PVE, PVE-T and PVE-T-SC.

A new kind of ground truth is a subclass with :meth:`GroundTruth.prepare` and :meth:`GroundTruth.batch`
and a :class:`~dsrbody.eval.protocols.Protocol` that names it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dsrbody.body.keypoints import H36M_TO_J17, H36M_TO_LSP14

__all__ = [
    "J24_TO_J17",
    "J24_TO_J14",
    "h36m_eval_joints",
    "gt_eval_joints_from_S",
    "GroundTruth",
    "GroundTruthBatch",
    "GenderedSMPLBodies",
    "FileJoints3D",
    "BodyParameters",
    "IncompatibleBodyModelError",
    "GROUND_TRUTHS",
]


#: SPIN's ``J24_TO_J17``: rows of the 24 GT joints (``S``) giving the evaluation joints (14 LSP-like
#: joints whose 14th is ``Head (H36M)``, then pelvis, spine, jaw). Same order as ``H36M_TO_J17``.
J24_TO_J17: list[int] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 18, 14, 16, 17]
#: SPIN's ``J24_TO_J14``.
J24_TO_J14: list[int] = J24_TO_J17[:14]


def h36m_eval_joints(h36m17: torch.Tensor, num_joints: int = 14) -> torch.Tensor:
    """Evaluation joints from the 17 H36M-regressed joints, as SPIN's ``eval.py``.

    Args:
        h36m17: ``(B, 17, 3)`` metres (``J_regressor_h36m @ vertices``).
        num_joints: 14 (``H36M_TO_J14``) or 17 (``H36M_TO_J17``, MPI-INF-3DHP).

    Returns:
        ``(B, num_joints, 3)`` metres, relative to H36M joint 0 (the pelvis).
    """
    idx = H36M_TO_LSP14 if num_joints == 14 else H36M_TO_J17
    return h36m17[:, idx] - h36m17[:, :1]


def gt_eval_joints_from_S(S: torch.Tensor, num_joints: int = 14) -> torch.Tensor:
    """Ground-truth evaluation joints from a file's ``S`` as SPIN's ``eval.py`` takes them.

    Args:
        S: ``(B, 24, 3 or 4)`` the 24 GT joints (SPIN_GT24 order) in metres (+ confidence).
        num_joints: 14 (``J24_TO_J14``) or 17 (``J24_TO_J17``).

    Returns:
        ``(B, num_joints, 3)`` metres, as stored (the files are already pelvis-centred).
    """
    idx = J24_TO_J14 if num_joints == 14 else J24_TO_J17
    return S[:, idx, :3]


class IncompatibleBodyModelError(ValueError):
    """The checkpoint's body model cannot be compared with the protocol's ground truth."""


@dataclass
class GroundTruthBatch:
    """The ground truth of one batch and the predicted joints read to match it.

    Attributes:
        pred_joints, gt_joints: ``(B, J, 3)`` metres, each centred on its pelvis.
        mask: ``(B, J)`` bool, joints that exist (None: all).
        gt_vertices: ``(B, V, 3)`` metres (model frame) where the ground truth is a mesh, else None.
        gt_rest_vertices: ``(B, V, 3)`` rest-pose ground truth (PVE-T), else None.
        gt_bad: ``(B,)`` bool, samples whose ground truth is known to be unusable (None: none).
    """

    pred_joints: torch.Tensor
    gt_joints: torch.Tensor
    mask: torch.Tensor | None = None
    gt_vertices: torch.Tensor | None = None
    gt_rest_vertices: torch.Tensor | None = None
    gt_bad: torch.Tensor | None = None


class GroundTruth:
    """Where a protocol's ground truth comes from (subclasses below).

    Attributes:
        kind: short name (``metrics.json``, descriptions).
        needs_smpl: the protocol compares SMPL meshes (6890 vertices, ``J_regressor_h36m``).
        genders: SMPL models the ground truth needs (``SMPLKit`` builds them).
    """

    kind = ""
    needs_smpl = False
    genders: tuple[str, ...] = ("neutral",)

    def prepare(
        self, protocol, ds, n_total: int, predictor, smpl_kit, annotation_file: Path, smpl_dir=None
    ) -> list[str]:
        """Check the file and the predictor against this ground truth before the loop.

        Args:
            protocol: the :class:`~dsrbody.eval.protocols.Protocol`.
            ds: the :class:`~dsrbody.data.SpinNpzDataset` of the annotation file.
            n_total: samples evaluated (the first ``n_total``).
            predictor: the predictor (``body_model`` attribute where it has one).
            smpl_kit: the :class:`~dsrbody.eval.protocols.SMPLKit` or None.
            annotation_file: for messages.
            smpl_dir: the SMPL folder when one was given (gendered ground truth of SMPL parameters).

        Returns:
            notes for the report.

        Raises:
            IncompatibleBodyModelError, ValueError: the predictor or the file cannot be evaluated.
        """
        from dsrbody.body.factory import body_spec

        bm = getattr(predictor, "body_model", None)
        if self.needs_smpl:
            name = getattr(bm, "name", None)
            spec = None if name is None else body_spec(str(name), missing_ok=True)
            if name is not None and not (spec is not None and spec.spin_params):
                raise IncompatibleBodyModelError(
                    f"protocol {protocol.name!r} compares SMPL meshes (J_regressor_h36m on SMPL's 6890 "
                    f"vertices{self._smpl_note()}); the checkpoint's body model is {bm.name!r} "
                    f"({bm.num_vertices} vertices), which cannot be evaluated against SMPL ground truth. "
                    "Use --dataset synth, or a checkpoint trained with SMPL"
                )
            if smpl_kit is None:
                raise ValueError(
                    f"protocol {protocol.name!r} needs the SMPL files and J_regressor_h36m.npy "
                    "(pass smpl_dir)"
                )
        return []

    def _smpl_note(self) -> str:
        return ""

    def extra_columns(self, ds) -> dict[str, np.ndarray]:
        """Per-sample columns of the report beyond the metrics (all samples of the file)."""
        return {}

    def joint_names(self, protocol) -> list[str]:
        """Names of the evaluation joints."""
        return list(protocol.joint_names)

    def batch(
        self, protocol, ds, index: torch.Tensor, pred, pred_vertices, smpl_kit, device
    ) -> GroundTruthBatch:
        """The ground truth of the samples ``index`` (``(B,)`` long) and the matching predicted joints
        (``pred``: the predictor's output; ``pred_vertices``: ``(B, V, 3)`` float on ``device``)."""
        raise NotImplementedError


def _smpl_pred_joints(protocol, smpl_kit, pred_vertices: torch.Tensor) -> torch.Tensor:
    if pred_vertices.shape[1] != smpl_kit.num_vertices:
        raise IncompatibleBodyModelError(
            f"protocol {protocol.name!r} needs SMPL meshes ({smpl_kit.num_vertices} vertices); the "
            f"predictions have {pred_vertices.shape[1]} vertices: the checkpoint's body model cannot be "
            "evaluated against SMPL ground truth"
        )
    return h36m_eval_joints(smpl_kit.h36m_joints(pred_vertices), protocol.num_joints)


class GenderedSMPLBodies(GroundTruth):
    """3DPW: gender-specific SMPL bodies from the file's ``pose``, ``shape``, ``gender``."""

    kind = "smpl"
    needs_smpl = True
    genders = ("neutral", "male", "female")

    def _smpl_note(self) -> str:
        return ", gender-specific SMPL ground truth"

    def prepare(
        self, protocol, ds, n_total, predictor, smpl_kit, annotation_file, smpl_dir=None
    ) -> list[str]:
        notes = super().prepare(protocol, ds, n_total, predictor, smpl_kit, annotation_file, smpl_dir)
        g = torch.as_tensor(ds.gender)[:n_total]
        unknown = int(((g != 0) & (g != 1)).sum())
        if unknown:
            notes.append(f"{unknown} samples have no gender; the neutral SMPL model is their ground truth")
        return notes

    def extra_columns(self, ds) -> dict[str, np.ndarray]:
        cols = _distance_from_file(ds)
        cols["gender"] = ds.gender
        return cols

    def batch(self, protocol, ds, index, pred, pred_vertices, smpl_kit, device) -> GroundTruthBatch:
        rows = index.numpy()
        pose = torch.as_tensor(ds.pose[rows], dtype=torch.float32, device=device)
        shape = torch.as_tensor(ds.betas[rows], dtype=torch.float32, device=device)
        with torch.no_grad():
            gv = smpl_kit.gendered_vertices(pose, shape, torch.as_tensor(ds.gender)[index].to(device))
        return GroundTruthBatch(
            pred_joints=_smpl_pred_joints(protocol, smpl_kit, pred_vertices),
            gt_joints=h36m_eval_joints(smpl_kit.h36m_joints(gv), protocol.num_joints),
            gt_vertices=gv,
        )


class FileJoints3D(GroundTruth):
    """Human3.6M / MPI-INF-3DHP: the file's 3D joints ``S`` as stored (SPIN's ``J24_TO_J14/J17``)."""

    kind = "S"
    needs_smpl = True

    def prepare(
        self, protocol, ds, n_total, predictor, smpl_kit, annotation_file, smpl_dir=None
    ) -> list[str]:
        notes = super().prepare(protocol, ds, n_total, predictor, smpl_kit, annotation_file, smpl_dir)
        if ds.pose_3d is not None and n_total:
            pelvis = torch.as_tensor(ds.pose_3d)[:n_total, 14, :3].norm(dim=-1)
            if float(pelvis.median()) > 0.01:
                notes.append(
                    f"S is not centred on the pelvis in {Path(annotation_file).name} (median |S[:,14]| "
                    f"{1000 * float(pelvis.median()):.0f} mm); it is used as stored, as the official "
                    "code does"
                )
        return notes

    def extra_columns(self, ds) -> dict[str, np.ndarray]:
        if "cam_t" in ds.extras:
            return {"distance_m": np.linalg.norm(ds.extras["cam_t"].astype(np.float64), axis=1)}
        return {}

    def batch(self, protocol, ds, index, pred, pred_vertices, smpl_kit, device) -> GroundTruthBatch:
        S = torch.as_tensor(ds.pose_3d)[index].to(device=device, dtype=torch.float32)
        return GroundTruthBatch(
            pred_joints=_smpl_pred_joints(protocol, smpl_kit, pred_vertices),
            gt_joints=gt_eval_joints_from_S(S, protocol.num_joints),
        )


class BodyParameters(GroundTruth):
    """dsrbody's synthetic split: the file's parameters through the predictor's own body model, or, for a
    gendered family (SMPL) and samples with a ``gender``, through that gender's model, which is the body
    ``dsrbody synth`` rendered (as :func:`dsrbody.eval.synth_eval.batch_metrics` with ``gt_models``)."""

    kind = "params"

    def __init__(self) -> None:
        self.body_model: Any = None
        self.joints: Any = None
        self.gt_models: dict[int, Any] | None = None

    def prepare(
        self, protocol, ds, n_total, predictor, smpl_kit, annotation_file, smpl_dir=None
    ) -> list[str]:
        from dsrbody.body.factory import body_spec
        from dsrbody.eval.metrics import eval_joints
        from dsrbody.eval.synth_eval import gender_models

        bm = getattr(predictor, "body_model", None)
        if bm is None:
            raise ValueError(
                f"protocol {protocol.name!r} needs the predictor's body model (a predictor with .body_model)"
            )
        self.body_model, self.joints = bm, eval_joints(bm)
        if "body_model" in ds.extras:
            file_models = set(np.unique(ds.extras["body_model"].astype(str)))
            if file_models != {bm.name}:
                raise IncompatibleBodyModelError(
                    f"{annotation_file}: its bodies are {', '.join(sorted(file_models))} parameters but "
                    f"the checkpoint's body model is {bm.name!r}; evaluate with a checkpoint of that "
                    "body model"
                )
        if ds.pose_dim != 3 * bm.num_joints:
            raise IncompatibleBodyModelError(
                f"{annotation_file}: 'pose' has {ds.pose_dim // 3} joints but the checkpoint's body model "
                f"{bm.name!r} has {bm.num_joints}"
            )
        spec = body_spec(str(bm.name), missing_ok=True)
        n_gendered = int(np.isin(np.asarray(ds.gender)[:n_total], (0, 1)).sum())
        self.gt_models = None
        if spec is not None and spec.gendered and n_gendered:
            if smpl_kit is not None and {"male", "female"} <= set(smpl_kit.models):
                self.gt_models = {0: smpl_kit.models["male"], 1: smpl_kit.models["female"]}
            else:
                self.gt_models = gender_models(bm, smpl_dir)
            if self.gt_models is None:
                raise ValueError(
                    f"{annotation_file}: {n_gendered} of its bodies are male or female {bm.name} "
                    f"parameters, whose ground truth is that gender's model; pass the {bm.name} folder "
                    "with the male and female files (smpl_dir / --smpl-dir)"
                )
            self.gt_models = {c: m.to(bm.faces.device) for c, m in self.gt_models.items()}
        return []

    def extra_columns(self, ds) -> dict[str, np.ndarray]:
        return _distance_from_file(ds)

    def joint_names(self, protocol) -> list[str]:
        return list(self.joints.names)

    def batch(self, protocol, ds, index, pred, pred_vertices, smpl_kit, device) -> GroundTruthBatch:
        from dsrbody.eval.synth_eval import gender_groups
        from dsrbody.losses.targets import gt_body

        rows = index.numpy()
        sel = torch.as_tensor(ds.has_params[rows])
        params = {
            "pose": torch.as_tensor(ds.pose[rows], dtype=torch.float32),
            "betas": torch.as_tensor(ds.betas[rows], dtype=torch.float32),
        }
        jidx, pel = list(self.joints.indices), list(self.joints.pelvis)
        gender = torch.as_tensor(np.asarray(ds.gender)[rows]) if self.gt_models else None
        every = torch.ones(len(rows), dtype=torch.bool)
        groups = gender_groups(gender, self.gt_models, self.body_model, every)
        gj = gv = gr = None
        with torch.no_grad():
            for rows_in, model in groups:
                if not bool(rows_in.any()):
                    continue
                g = gt_body(model, params, rows_in)
                if gj is None:  # filled group by group (the groups partition the batch)
                    gj = g.joints.new_zeros((len(rows), *g.joints.shape[1:]))
                    gv = g.vertices.new_zeros((len(rows), *g.vertices.shape[1:]))
                    gr = g.rest_vertices.new_zeros((len(rows), *g.rest_vertices.shape[1:]))
                gj[rows_in], gv[rows_in], gr[rows_in] = (
                    g.joints,
                    g.vertices,
                    g.rest_vertices,
                )  # gt_body: rows_in only
        pj = pred["joints"].detach().to(device=device, dtype=torch.float32)[:, jidx]
        gj = gj.float().to(device)[:, jidx]
        sel_d = sel.to(device)
        finite = torch.isfinite(gj.reshape(gj.shape[0], -1)).all(dim=1)
        return GroundTruthBatch(
            pred_joints=pj - pj[:, pel].mean(dim=1, keepdim=True),
            gt_joints=gj - gj[:, pel].mean(dim=1, keepdim=True),
            mask=sel_d[:, None].expand(-1, len(jidx)),
            gt_vertices=gv.float().to(device),
            gt_rest_vertices=gr,
            gt_bad=(~finite & sel_d) | torch.as_tensor(ds.params_nonfinite[rows], device=device),
        )


def _distance_from_file(ds) -> dict[str, np.ndarray]:
    """Camera distance per sample: ``cam_t`` where the file has it, else the mid-hip of ``S``."""
    if "cam_t" in ds.extras:
        return {"distance_m": np.linalg.norm(ds.extras["cam_t"].astype(np.float64), axis=1)}
    if ds.pose_3d is not None:
        S = torch.as_tensor(ds.pose_3d)
        return {"distance_m": S[:, 2:4, :3].mean(dim=1).norm(dim=-1).numpy()}
    return {}


#: ground-truth kinds by name (``Protocol.ground_truth``).
GROUND_TRUTHS: dict[str, type[GroundTruth]] = {
    c.kind: c for c in (GenderedSMPLBodies, FileJoints3D, BodyParameters)
}
