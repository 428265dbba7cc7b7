"""Evaluation on data with body-model ground truth (the synthetic test split; any SPIN-format file whose
pose/shape belong to the evaluated body model).

Per sample, the ground-truth body is the evaluation body model run on the file's pose and shape (for
SMPL with a model folder, the male/female model of the sample's ``gender``, as 3DPW's ground truth);
the prediction is the evaluation body model run on the regressed rotations and shape. Joint metrics use
:func:`dsrbody.eval.metrics.eval_joints` (LSP-14 of the SPIN-49 set where the model has them, pelvis
= mid-hips); samples without parameters but with 3D joints (``S``) get joint metrics against those.
A metric that does not apply to a sample is NaN for it and left out of the means.

Which samples hold parameters of a body model (:func:`params_valid`) and their ground-truth body
(:func:`gt_body`) live in :mod:`dsrbody.losses.targets`, shared with the training losses; they are
importable from here too.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from dsrbody.body.stature import stature, with_stature
from dsrbody.eval.metrics import (
    EvalJoints,
    MetricAccumulator,
    mpjpe,
    pa_mpjpe,
    pve,
    pve_t,
    pve_t_sc,
    selection_score,
)
from dsrbody.losses.targets import gt_body, params_valid  # their home; re-exported here for callers

__all__ = [
    "METRIC_NAMES",
    "params_valid",
    "gt_body",
    "gender_models",
    "gender_groups",
    "batch_metrics",
    "evaluate",
    "exclusion_reasons",
    "EXCLUSION_REASONS",
    "summarize",
]

#: per-sample metrics, millimetres.
METRIC_NAMES = ("mpjpe", "pa_mpjpe", "pve", "pve_t", "pve_t_sc")


def gender_models(body_model, model_path) -> dict[int, Any] | None:
    """``{0: male, 1: female}`` SMPL models for gender-specific ground truth (3DPW), when
    ``body_model`` is SMPL and ``model_path`` is a folder with both files; None otherwise."""
    from pathlib import Path

    from dsrbody.body.factory import body_spec, build_body_model

    spec = body_spec(str(getattr(body_model, "name", "")), missing_ok=True)
    if spec is None or not spec.gendered or not model_path or not Path(str(model_path)).is_dir():
        return None

    try:
        models = {
            c: build_body_model(spec.name, model_path=model_path, gender=g)
            for c, g in ((0, "male"), (1, "female"))
        }
    except (FileNotFoundError, ValueError):
        return None
    dev = body_model.faces.device
    return {c: m.to(dev) for c, m in models.items()}


def gender_groups(
    gender: torch.Tensor | None,
    gt_models: Mapping[int, Any] | None,
    default: Any,
    valid: torch.Tensor,
) -> list[tuple[torch.Tensor, Any]]:
    """The samples ``valid`` split by the body model of their ground truth.

    Args:
        gender: ``(B,)`` int gender codes (0 male, 1 female; anything else: unknown), or None.
        gt_models: gender code -> that gender's body model (:func:`gender_models`), or None.
        default: the body model of every other sample (unknown gender, or no gendered models); any
            object, so a caller may pass names instead of models.
        valid: ``(B,)`` bool, the samples to split.

    Returns:
        ``[(mask (B,) bool, model), ...]``: one group per entry of ``gt_models`` and a last one for
        ``default``, pairwise disjoint, their union ``valid``; a group may be empty.
    """
    valid = torch.as_tensor(valid).bool()
    if not gt_models or gender is None:
        return [(valid, default)]
    gender = torch.as_tensor(gender).to(valid.device)
    rest = valid.clone()
    groups = []
    for code, model in gt_models.items():
        sel = valid & (gender == int(code))
        rest &= ~sel
        groups.append((sel, model))
    groups.append((rest, default))
    return groups


@torch.no_grad()
def batch_metrics(
    pred: Mapping[str, torch.Tensor],
    batch: Mapping[str, Any],
    body_model,
    joints: EvalJoints,
    rerun: bool = True,
    gt_models: Mapping[int, Any] | None = None,
    known_stature: bool = False,
) -> dict[str, torch.Tensor]:
    """Per-sample metrics of one batch.

    Args:
        pred: :class:`~dsrbody.models.Regressor` output (``rotmat``, ``shape``, ``joints``, ``vertices``,
            ``rest_vertices``).
        batch: the collated batch (``pose``, ``betas``, ``has_smpl``/``has_params``, ``body_model``,
            ``pose_3d``, ``has_pose_3d``).
        body_model: the evaluation body model (its mesh defines PVE/PVE-T).
        joints: the evaluation joints (:func:`~dsrbody.eval.metrics.eval_joints`).
        rerun: run ``body_model`` on the predicted parameters (needed when the regressor's own body
            model has another mesh); False uses ``pred``'s vertices and joints as they are.
        gt_models: gender code (0 male, 1 female; the batch's ``gender``) -> body model of the ground
            truth for those samples (3DPW's gender-specific SMPL); others use ``body_model``.
        known_stature: give the prediction the ground truth's stature first: its stature coefficient
            is set so its rest mesh is as tall as the true one (:func:`dsrbody.body.stature.with_stature`;
            needs ``pred["rotmat"]`` and ``pred["shape"]``). Samples with body ground truth only: those
            with 3D joints alone have no stature to give and get no metric.

    Returns:
        ``{name: (B,) mm}`` for :data:`METRIC_NAMES`, NaN where a metric does not apply; with
        ``known_stature`` also ``stature_clamped (B,)``: 1 where the true stature was out of the
        prediction's reach (scored at the nearest it allows), 0 where it was given, NaN elsewhere.
    """
    dev = body_model.faces.device
    B = int(pred["shape"].shape[0])
    if rerun:
        out = body_model(pred["rotmat"][:, 0].to(dev), pred["rotmat"][:, 1:].to(dev), pred["shape"].to(dev))
        p_joints, p_verts, p_rest = out.joints, out.vertices, out.rest_vertices
    else:
        p_joints, p_verts, p_rest = pred["joints"], pred["vertices"], pred["rest_vertices"]
    nan = torch.full((B,), float("nan"), device=dev)
    res = {k: nan.clone() for k in METRIC_NAMES + (("stature_clamped",) if known_stature else ())}
    idx = list(joints.indices)
    valid = params_valid(batch, str(body_model.name)).to(dev)
    groups = gender_groups(batch.get("gender"), gt_models, body_model, valid)
    # a NaN/infinite prediction or ground truth leaves the sample's metrics NaN (it would break the SVD)
    pred_ok = _finite_rows(p_joints[:, idx], p_verts, p_rest)
    for sel, model in groups:
        sel = sel & pred_ok
        if not sel.any():
            continue
        g = gt_body(model, batch, sel.cpu())
        g_ok = _finite_rows(g.joints[:, idx], g.vertices, g.rest_vertices)
        if not bool(g_ok.all()):
            sel = sel.clone()
            sel[sel.nonzero().flatten()[~g_ok]] = False
            if not sel.any():
                continue
        gj, gv, gr = g.joints[g_ok][:, idx].float(), g.vertices[g_ok].float(), g.rest_vertices[g_ok].float()
        pj, pv, pr = p_joints[sel][:, idx].float(), p_verts[sel].float(), p_rest[sel].float()
        if known_stature:
            pj, pv, pr, clamped = _at_stature(pred, sel, body_model, stature(gr))
            pj = pj[:, idx]
            res["stature_clamped"][sel] = clamped.to(dev).float()
        res["mpjpe"][sel] = mpjpe(pj, gj, joints.pelvis)
        res["pa_mpjpe"][sel] = pa_mpjpe(pj, gj)
        res["pve"][sel] = pve(pv, gv)
        res["pve_t"][sel] = pve_t(pr, gr)
        res["pve_t_sc"][sel] = pve_t_sc(pr, gr)
    # joints only, from the file's 3D joints (SPIN_GT24 = SPIN-49 indices 25..48)
    if "pose_3d" in batch and "has_pose_3d" in batch and not known_stature:
        s3 = batch["pose_3d"].to(dev).float()
        gt_idx = [i - 25 for i in idx]
        full = (s3[:, gt_idx, 3] > 0).all(dim=1)
        use = batch["has_pose_3d"].to(dev).bool() & full & ~valid & pred_ok & _finite_rows(s3[:, gt_idx, :3])
        if use.any():
            pj, gj = p_joints[use][:, idx].float(), s3[use][:, gt_idx, :3]
            res["mpjpe"][use] = mpjpe(pj, gj, joints.pelvis)
            res["pa_mpjpe"][use] = pa_mpjpe(pj, gj)
    return res


def _finite_rows(*tensors: torch.Tensor) -> torch.Tensor:
    """``(B,)`` bool: the samples whose values are finite in every ``(B, ...)`` tensor."""
    ok = torch.ones(tensors[0].shape[0], dtype=torch.bool, device=tensors[0].device)
    for t in tensors:
        ok &= torch.isfinite(t.detach().reshape(t.shape[0], -1)).all(dim=1).to(ok.device)
    return ok


def summarize(acc: MetricAccumulator) -> dict[str, float | int]:
    """Means, sample counts and the selection score ``1.5 PA-MPJPE + MPJPE`` of an accumulator."""
    means = acc.means()
    out: dict[str, float | int] = {k: means[k] for k in METRIC_NAMES if k in means}
    for k in METRIC_NAMES:
        out[f"n_{k}"] = acc.count(k)
    if "mpjpe" in means and "pa_mpjpe" in means:
        out["score"] = selection_score(means["pa_mpjpe"], means["mpjpe"])
    return out


@torch.no_grad()
def _at_stature(
    pred: Mapping[str, torch.Tensor], sel: torch.Tensor, body_model, height: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``joints (N, K, 3), vertices (N, V, 3), rest_vertices (N, V, 3)`` of the predictions ``sel``
    with their stature set to ``height`` (``(N,)`` metres), through ``body_model``, and ``clamped (N,)``
    bool (:class:`~dsrbody.body.stature.StatureFit`)."""
    dev = body_model.faces.device
    rot = pred["rotmat"][sel.to(pred["rotmat"].device)].to(dev, torch.float32)
    fit = with_stature(body_model, pred["shape"][sel.to(pred["shape"].device)], height.to(dev))
    out = body_model(rot[:, 0], rot[:, 1:], fit.shape)
    return out.joints.float(), out.vertices.float(), out.rest_vertices.float(), fit.clamped


def evaluate(
    regressor,
    body_model,
    loader,
    joints: EvalJoints,
    device: str | torch.device = "cpu",
    skip_log=None,
    progress: bool = True,
    on_batch=None,
    gt_models: Mapping[int, Any] | None = None,
    known_stature: bool = False,
) -> dict[str, float | int]:
    """Evaluate a regressor over a DataLoader of :func:`~dsrbody.data.collate_samples` batches.

    Args:
        regressor: the trained :class:`~dsrbody.models.Regressor` (eval mode is set here).
        body_model: the evaluation body model (may differ from the regressor's in mesh only).
        loader: the DataLoader. joints: evaluation joints.
        skip_log: a :class:`~dsrbody.data.SkipLog` to update with skipped samples.
        progress: show a tqdm bar.
        on_batch: optional ``callable(batch, pred)`` (e.g. to draw pictures).
        gt_models: gender-specific ground-truth body models (see :func:`batch_metrics`).
        known_stature: each prediction is given its ground truth's stature (see :func:`batch_metrics`).

    Returns:
        :func:`summarize` of the whole set, plus ``n_samples`` (the samples behind the means: those
        with at least one metric), ``n_skipped`` (samples dropped by the data: unreadable images...),
        ``n_excluded`` and ``excluded`` (reason -> samples read but with no metric:
        :data:`EXCLUSION_REASONS`); with ``known_stature`` also ``n_stature_clamped`` (samples whose
        true stature the prediction could not reach: scored at the nearest it allows).
    """
    from tqdm import tqdm

    regressor.eval()
    acc = MetricAccumulator()
    excluded: dict[str, int] = {}
    n_seen = n_skipped = n_clamped = 0
    rerun = regressor.body_model is not body_model
    for batch in tqdm(loader, desc="eval", unit="batch", disable=not progress):
        if skip_log is not None:
            skip_log.update(batch)
        n_skipped += len(batch.get("skipped", []))
        if batch["num_valid"] == 0:
            continue
        pred = regressor(batch["img"].to(device))
        values = batch_metrics(
            pred, batch, body_model, joints, rerun=rerun, gt_models=gt_models, known_stature=known_stature
        )
        clamped = values.pop("stature_clamped", None)
        if clamped is not None:
            n_clamped += int((clamped == 1).sum())
        acc.add(values)
        for reason in exclusion_reasons(values, pred, batch, known_stature=known_stature):
            excluded[reason] = excluded.get(reason, 0) + 1
        n_seen += int(batch["num_valid"])
        if on_batch is not None:
            on_batch(batch, pred)
    out = summarize(acc)
    out["n_samples"] = n_seen - sum(excluded.values())
    out["n_skipped"] = n_skipped
    out["n_excluded"] = sum(excluded.values())
    out["excluded"] = excluded
    if known_stature:
        out["n_stature_clamped"] = n_clamped
    return out


#: why a sample that was read has no metric -> text for reports.
EXCLUSION_REASONS = {
    "nonfinite_prediction": "non-finite prediction",
    "nonfinite_ground_truth": "non-finite ground truth (pose/shape or 3D joints)",
    "no_ground_truth": "no ground truth for the body model (no parameters of it, no complete 3D joints)",
    "joints_only_known_stature": "3D joints only: no body whose stature --known-stature could give",
}


def exclusion_reasons(
    values: Mapping[str, torch.Tensor],
    pred: Mapping[str, torch.Tensor],
    batch: Mapping[str, Any],
    known_stature: bool = False,
) -> list[str]:
    """The reason (a key of :data:`EXCLUSION_REASONS`) of each sample of a batch that got no metric.

    Args:
        values: :func:`batch_metrics` of the batch (``{name: (B,)}``).
        pred: the prediction (``rotmat``, ``shape``).
        batch: the batch (``params_nonfinite``, ``pose_3d``, ``has_pose_3d`` where present).
        known_stature: the metrics were computed with ``known_stature`` (3D joints alone give none).

    Returns:
        one reason per sample whose every metric is NaN, in batch order.
    """
    none = ~torch.stack([torch.isfinite(v.detach().cpu()) for v in values.values()]).any(dim=0)
    if not bool(none.any()):
        return []
    B = none.shape[0]
    pred_ok = torch.ones(B, dtype=torch.bool)
    for k in ("rotmat", "shape", "joints", "vertices"):
        if k in pred:
            pred_ok &= _finite_rows(pred[k].detach().cpu())
    gt_bad = torch.zeros(B, dtype=torch.bool)
    if torch.is_tensor(batch.get("params_nonfinite")):
        gt_bad |= batch["params_nonfinite"].cpu().bool()
    if torch.is_tensor(batch.get("pose_3d")) and torch.is_tensor(batch.get("has_pose_3d")):
        gt_bad |= batch["has_pose_3d"].cpu().bool() & ~_finite_rows(batch["pose_3d"].cpu())
    joints_only = torch.zeros(B, dtype=torch.bool)
    if known_stature and torch.is_tensor(batch.get("has_pose_3d")):
        joints_only = batch["has_pose_3d"].cpu().bool()
    return [
        "nonfinite_prediction"
        if not pred_ok[i]
        else "nonfinite_ground_truth"
        if gt_bad[i]
        else "joints_only_known_stature"
        if joints_only[i]
        else "no_ground_truth"
        for i in torch.nonzero(none).flatten().tolist()
    ]
