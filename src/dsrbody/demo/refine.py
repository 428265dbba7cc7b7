"""Refine regressed bodies on the person's 2D keypoints (SMPLify-style), with ``dsrbody fit``'s machinery.

After regression, each person with 2D keypoints (a detector's, an OpenPose file's or annotated ones,
BODY_25 in image pixels) is optimised by :class:`~dsrbody.fit.fitter.BodyFitter`, started from the
regressor's estimate: rotations (6D), the raw shape vector and the crop's weak-perspective camera,
with ``dsrbody fit``'s objective (``docs/fitting.md``): SPIN's keypoint term on the 25 OpenPose
keypoints, normalised to the person's crop, plus the pose (angle Gaussian, joint limits), shape and
camera priors and a pull towards the regressor's pose (``init``: keypoints fix only the joints'
image positions, so depth and twist stay the regressor's). With a person mask (the detector's), a
mask term asks the rendered body to stay inside it: by default DSR-C's ``"inside"`` form, the share of
the rendered silhouette outside the mask (clothes and hair may stick out of the body; the naive
``1 - IoU``, ``mask_form="iou"``, pulls the body onto them).

The result replaces the person's :class:`~dsrbody.demo.run.PersonResult` (same camera; the crop's box
is unchanged), and :class:`RefineReport` records the keypoint error in pixels before and after and the
time it took.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace

import numpy as np
import torch
from scipy import ndimage

from dsrbody.body.factory import body_spec

__all__ = [
    "LIMB_KEYPOINTS",
    "RefineOptions",
    "RefineReport",
    "crop_keypoints",
    "keypoint_error_px",
    "keypoint_pck",
    "refine_people",
]

#: BODY_25 indices of the 12 limb joints: right shoulder, elbow, wrist, left shoulder, elbow, wrist,
#: right hip, knee, ankle, left hip, knee, ankle.
LIMB_KEYPOINTS: tuple[int, ...] = (2, 3, 4, 5, 6, 7, 9, 10, 11, 12, 13, 14)


@dataclass
class RefineOptions:
    """How to refine.

    Attributes:
        iters: Adam steps. lr: learning rate.
        threshold: keypoints at or below this confidence are ignored.
        min_keypoints: a person needs this many keypoints above ``threshold`` to be refined.
        init_weight: weight of ``||pose6d - regressor's||^2`` (``FitWeights.init``).
        pose_prior, shape_prior: the priors' weights (``FitWeights``; ``dsrbody fit``'s defaults are 0.01).
        silhouette: weight of the mask term where a person has a mask (0 turns it off).
        mask_form: ``"inside"`` (the share of the rendered body outside the person mask: the body
            stays inside it, clothes and hair may stick out; DSR-C's ``"inside"`` form) or ``"iou"``
            (``1 - IoU`` with the mask, the naive silhouette term, which pulls the body onto the
            clothes).
        mask_margin: for ``"inside"``, the mask is grown by this fraction of the crop side first (a
            segmentation misses thin limbs; the body may stick out that far for free).
    """

    iters: int = 40
    lr: float = 0.02
    threshold: float = 0.2
    min_keypoints: int = 4
    init_weight: float = 0.1
    pose_prior: float = 0.01
    shape_prior: float = 0.01
    silhouette: float = 0.1
    mask_form: str = "inside"
    mask_margin: float = 0.06


@dataclass
class RefineReport:
    """What refinement did to one person: mean keypoint error (pixels of the original image, over the
    keypoints used) before and after, the number of keypoints and the wall time (seconds)."""

    error_before_px: float
    error_after_px: float
    keypoints: int
    seconds: float


def crop_keypoints(keypoints: np.ndarray, center: np.ndarray, scale: float, threshold: float) -> np.ndarray:
    """BODY_25 keypoints ``(25, 3)`` (pixels, confidence) to the crop's normalised coordinates.

    The crop of side ``200 scale`` centred on ``center`` maps to [-1, 1]: ``u = (x - center) / (100 scale)``.
    Confidences at or below ``threshold`` become 0.

    Returns:
        ``(25, 3)`` float32.
    """
    kp = np.asarray(keypoints, np.float64).reshape(-1, 3)[:25].copy()
    kp[:, :2] = (kp[:, :2] - np.asarray(center, np.float64)) / (100.0 * float(scale))
    kp[:, 2] = np.where(kp[:, 2] > threshold, kp[:, 2], 0.0)
    return kp.astype(np.float32)


def keypoint_error_px(result, threshold: float = 0.2) -> tuple[float, int]:
    """Mean distance (pixels) between a result's projected BODY_25 joints and its person's keypoints
    above ``threshold``, over the keypoints the body model has; ``(nan, 0)`` without keypoints.

    Args:
        result: a :class:`~dsrbody.demo.run.PersonResult` whose joints are the SPIN-49 set (OpenPose first).
    """
    kp = result.person.keypoints
    if kp is None:
        return float("nan"), 0
    kp = np.asarray(kp, np.float64)[:25]
    proj = result.keypoints_2d()[:25]
    ok = kp[:, 2] > threshold
    if result.keypoint_confidence is not None:
        ok &= np.asarray(result.keypoint_confidence)[:25] > 0
    if not ok.any():
        return float("nan"), 0
    return float(np.linalg.norm(proj[ok] - kp[ok, :2], axis=1).mean()), int(ok.sum())


def keypoint_pck(
    result,
    keypoints: np.ndarray,
    size: float,
    fractions: tuple[float, ...] = (0.1, 0.2),
    joints: tuple[int, ...] = LIMB_KEYPOINTS,
    threshold: float = 0.2,
) -> tuple[np.ndarray, int]:
    """PCK counts of a result's projected BODY_25 joints against given keypoints.

    A joint of ``joints`` is scored when its keypoint's confidence is above ``threshold``; it is correct
    at fraction ``a`` when the projected joint lies within ``a * size`` pixels of it (a joint the body
    model lacks, ``keypoint_confidence`` 0, is scored and never correct).

    Args:
        result: a :class:`~dsrbody.demo.run.PersonResult` (SPIN-49 joints, OpenPose first).
        keypoints: ``(25, 3)`` BODY_25 pixels + confidence (e.g. the annotation, whatever the body was
            refined on).
        size: the reference length in pixels (e.g. the longer side of the person's box).
        fractions: the PCK thresholds as fractions of ``size``.
        joints: BODY_25 indices to score (default: :data:`LIMB_KEYPOINTS`).

    Returns:
        ``(hits (len(fractions),) int, scored joints)``; PCK = hits / scored.
    """
    kp = np.asarray(keypoints, np.float64).reshape(-1, 3)[:25]
    idx = [j for j in joints if kp[j, 2] > threshold]
    hits = np.zeros(len(fractions), np.int64)
    if not idx:
        return hits, 0
    dist = np.linalg.norm(result.keypoints_2d()[idx] - kp[idx, :2], axis=1)
    has = np.ones(len(idx), bool)
    if result.keypoint_confidence is not None:
        has = np.asarray(result.keypoint_confidence)[idx] > 0
    for k, a in enumerate(fractions):
        hits[k] = int(((dist <= a * float(size)) & has).sum())
    return hits, len(idx)


def _mask_targets(people, res: int, outside_image_allowed: bool = False, margin: float = 0.0):
    """DSR targets of the people's masks in their crops (labelled "upperclothes": they feed the mask
    terms only), grown by ``margin`` x the crop side (a disk). With ``outside_image_allowed``, the crop's
    pixels beyond the image border count as the
    person too: a person cut by the border has a body there that the mask cannot show."""
    from dsrbody.data.crop_augment import AugmentParams, parsing_processing
    from dsrbody.losses import DSRTargets
    from dsrbody.semantics.labels import CIHP

    upper = list(CIHP.names).index("upperclothes")
    maps = []
    for p in people:
        m = parsing_processing(
            np.where(p.mask, upper, 0).astype(np.uint8), p.center, p.scale, AugmentParams(), res
        )
        if margin > 0:
            r = max(1, round(margin * res))
            disk = np.hypot(*np.mgrid[-r : r + 1, -r : r + 1]) <= r
            m = np.where(ndimage.binary_dilation(np.asarray(m) > 0, structure=disk), upper, 0)
        if outside_image_allowed:
            inside = parsing_processing(
                np.ones(p.mask.shape, np.uint8), p.center, p.scale, AugmentParams(), res
            )
            m = np.where(np.asarray(inside) > 0, m, upper)
        maps.append(m)
    return DSRTargets.from_parsing(torch.from_numpy(np.stack(maps)).long())


def refine_people(regressor, results: list, options: RefineOptions | None = None, prior=None):
    """Refine every result whose person has enough keypoints (the others are returned unchanged).

    Args:
        regressor: the :class:`~dsrbody.models.Regressor` the results came from (its body model,
            camera and shape mapping; its weights are not changed).
        results: :class:`~dsrbody.demo.run.PersonResult` list (one image).
        options: :class:`RefineOptions`.
        prior: a clothing prior of the mesh, needed only for people with a mask (default: the shipped
            prior for the families it fits, Anny; other people's masks, SMPL's, are ignored without one).

    Returns:
        ``(results, reports)``: the refined results (same order) and a :class:`RefineReport` per
        result (None where it was not refined).
    """
    from dsrbody.demo.run import result_from_prediction
    from dsrbody.fit.fitter import BodyFitter, FitConfig, FitWeights

    o = options or RefineOptions()
    out, reports = list(results), [None] * len(results)
    todo = [
        i
        for i, r in enumerate(results)
        if r.person.keypoints is not None
        and int((np.asarray(r.person.keypoints)[:25, 2] > o.threshold).sum()) >= o.min_keypoints
    ]
    if not todo:
        return out, reports
    with_mask = [i for i in todo if results[i].person.mask is not None and o.silhouette > 0]
    spec = body_spec(regressor.body_model.name, missing_ok=True)
    if with_mask and prior is None and spec is not None and spec.shipped_prior:
        from dsrbody.garments import default_prior

        prior = default_prior(regressor.body_model)
    if prior is None:
        with_mask = []
    weights = FitWeights(
        openpose=1.0,
        gt=0.0,
        init=o.init_weight,
        pose_prior=o.pose_prior,
        shape_prior=o.shape_prior,
        silhouette=o.silhouette,
        dsr_c=o.silhouette,
    )
    if o.mask_form not in ("inside", "iou"):
        raise ValueError(f"mask_form must be 'inside' or 'iou', got {o.mask_form!r}")
    mask_losses = ("kp", "c") if o.mask_form == "inside" else ("kp", "sil")
    dev = next(regressor.parameters()).device
    n_kp = int(results[todo[0]].joints_cam.shape[0])  # the regressor's keypoint set (SPIN-49)
    for group, losses in (([i for i in todo if i not in with_mask], ("kp",)), (with_mask, mask_losses)):
        if not group:
            continue
        t0 = time.perf_counter()
        fitter = BodyFitter(
            regressor,
            FitConfig(losses=losses, iters=o.iters, lr=o.lr, weights=weights, c_form="inside"),
            prior,
        )
        kp = np.zeros((len(group), max(n_kp, 25), 3), np.float32)
        for k, i in enumerate(group):
            p = results[i].person
            kp[k, :25] = crop_keypoints(p.keypoints, p.center, p.scale, o.threshold)
        start = {
            "rotmat": torch.from_numpy(np.stack([results[i].rotmat for i in group])).float(),
            "shape_raw": torch.from_numpy(np.stack([results[i].shape_raw for i in group])).float(),
            "cam": torch.from_numpy(np.stack([results[i].cam for i in group])).float(),
        }
        targets = (
            _mask_targets(
                [results[i].person for i in group],
                int(regressor.img_res),
                o.mask_form == "inside",
                o.mask_margin if o.mask_form == "inside" else 0.0,
            )
            if len(losses) > 1
            else None
        )
        fit = fitter.fit(torch.from_numpy(kp).to(dev), targets, start)
        with torch.no_grad():
            pred = regressor.pose_body(fit.rotmat.to(dev), fit.shape.to(dev), fit.cam.to(dev))
        seconds = (time.perf_counter() - t0) / len(group)
        for k, i in enumerate(group):
            before, n = keypoint_error_px(results[i], o.threshold)
            new = result_from_prediction(regressor, results[i].person, pred, k, shape_raw=fit.shape_raw[k])
            after, _ = keypoint_error_px(new, o.threshold)
            out[i] = replace(new, refined=True)
            reports[i] = RefineReport(before, after, n, seconds)
    return out, reports
