"""Fit every sample of a SPIN/DSR annotation file and write the fits in the same format.

:func:`fit_dataset` reads the crops, 2D keypoints and parsing maps of a file with
:class:`~dsrbody.data.SpinNpzDataset` (no augmentation), starts each sample from a regressor's
estimate (or the mean body), fits with :class:`~dsrbody.fit.fitter.BodyFitter` in batches, and writes
``fits.npz``: a copy of the input file in which ``pose`` (axis-angle, ``J*3``, camera-frame global
orientation as in the SPIN/DSR files) and ``shape`` are the fits, ``has_params`` (and for SMPL
``has_smpl``) is set for the fitted samples, ``body_model`` names the fitted family, and
``fit_cam (N, 3)``, ``fit_ok (N,)`` and ``fit_<term> (N,)`` (final objective terms) are added. Like
EFT's fits of COCO, the file can serve as pseudo ground truth for training. Samples whose image or 2D
keypoints hold NaN/infinite values are skipped before fitting (reason ``keypoints_nonfinite`` /
``image_nonfinite``), a fit that does not stay finite is not written (``fit_nonfinite``); the other
samples are fitted and written as usual. When the input holds
ground-truth parameters of the fitted body model, the metrics (MPJPE, PA-MPJPE, PVE, PVE-T in mm,
:mod:`dsrbody.eval.synth_eval`) of the start and of the fit are computed on the evaluation mesh, and
``fit_per_sample.npz`` keeps them per sample (``sample_index``, ``start_<metric>``, ``fit_<metric>``,
``volume_ratio`` = fitted / true rest-pose body volume, ``term_<name>``) and, with
``config.record_every``, against iterations (``curve_iters (T,)``, ``curve_<metric> (T, N)``,
``curve_objective (T, N)``), in the order of ``sample_index``.

The start can also be an earlier ``fits.npz`` (``start=path``): a fit continued with other terms, as in
staged fitting.
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dsrbody.fit.fitter import BodyFitter, FitConfig
from dsrbody.geometry.mesh import mesh_volume

__all__ = ["fit_dataset", "resolve_data", "summarize_terms"]


def resolve_data(data: str | Path) -> tuple[Path, Path]:
    """``(annotation .npz, image root)`` of ``--data``: an ``.npz`` file (images relative to its folder)
    or a folder holding exactly one ``.npz`` (or a ``synth_test.npz`` among several).

    Raises:
        FileNotFoundError: nothing there. ValueError: no or several candidate files.
    """
    p = Path(data)
    if p.is_file():
        if p.suffix != ".npz":
            raise ValueError(f"{p}: --data must be a SPIN/DSR .npz annotation file or a folder holding one")
        return p, p.parent
    if not p.is_dir():
        raise FileNotFoundError(f"{p}: --data does not exist")
    files = sorted(f for f in p.glob("*.npz") if not f.name.startswith("fits"))
    if len(files) > 1 and (p / "synth_test.npz").is_file():
        files = [p / "synth_test.npz"]
    if len(files) != 1:
        found = ", ".join(f.name for f in files) or "none"
        raise ValueError(
            f"{p}: expected one .npz annotation file in the folder (found: {found}); pass the file"
        )
    return files[0], p


def summarize_terms(terms: dict[str, list[torch.Tensor]]) -> dict[str, float]:
    """Mean of each per-sample term over the samples where it is finite."""
    out = {}
    for k, chunks in terms.items():
        v = torch.cat(chunks).double()
        v = v[torch.isfinite(v)]
        if v.numel():
            out[k] = float(v.mean())
            out[f"n_{k}"] = int(v.numel())
    return out


def fit_dataset(
    regressor,
    npz_path: str | Path,
    img_dir: str | Path,
    out_dir: str | Path,
    config: FitConfig,
    *,
    prior=None,
    eval_body=None,
    start: str | Path = "regressor",
    batch_size: int = 16,
    limit: int | None = None,
    clean_parsing: bool = True,
    progress: bool = True,
    parsing_root: str | Path | None = None,
    pose_gmm=None,
    flip: bool = False,
) -> dict[str, Any]:
    """Fit a dataset file (module docstring).

    Args:
        regressor: a :class:`~dsrbody.models.Regressor` (its body model is fitted) or
            :func:`~dsrbody.fit.fitter.mean_regressor`.
        npz_path, img_dir: the annotation file and its image root.
        out_dir: where ``fits.npz`` and ``fit_metrics.json`` go.
        config: :class:`FitConfig`.
        prior: clothing prior of the regressor's mesh (DSR terms).
        eval_body: body model whose mesh the metrics use (default: the regressor's).
        start: ``"regressor"`` (its estimate from the crop), ``"mean"``, or the path of an earlier
            ``fits.npz`` of the same file (its ``pose``, ``shape`` and ``fit_cam``; rows it did not fit
            start from the mean body).
        batch_size: samples fitted together.
        limit: fit only the first ``limit`` samples.
        clean_parsing: clear parsing pixels far from the keypoints (docs/design.md, Clothing labels), as
            training does.
        parsing_root: root of ``grph_sequences`` (default ``img_dir``).
        pose_gmm: a :class:`~dsrbody.fit.priors.PoseGMM` (the fit's ``pose_gmm`` term), or None.
        flip: start from the regressor's flip test-time estimate
            (:class:`~dsrbody.eval.protocols.FlipAveraged`); only with ``start="regressor"``.

    Returns:
        ``{"fits": path, "metrics_start": {...}, "metrics_fit": {...}, "terms_start": {...},
        "terms_fit": {...}, "n_fitted": int, "n_skipped": int, "skipped": [...]}``.
    """
    from torch.utils.data import DataLoader, Subset
    from tqdm import tqdm

    from dsrbody.data import SpinNpzDataset, collate_samples, drop_nonfinite_samples
    from dsrbody.eval.metrics import MetricAccumulator, eval_joints
    from dsrbody.eval.protocols import FlipAveraged
    from dsrbody.eval.synth_eval import batch_metrics, summarize
    from dsrbody.geometry.rotations import matrix_to_axis_angle
    from dsrbody.losses.targets import dsr_targets

    if flip and str(start) != "regressor":
        raise ValueError(f"flip test-time augmentation is of the regressor's estimate; the start is {start}")
    start_fits = None
    if str(start) not in ("regressor", "mean"):
        start_fits = _read_start_fits(start, regressor)
        start = "fits"
    body = regressor.body_model
    body_name = str(body.name)
    eval_body = eval_body or body
    ds = SpinNpzDataset(
        npz_path, img_dir, augment=False, parsing=True, parsing_root=parsing_root, res=int(regressor.img_res)
    )
    if "kp" in config.losses and not ds.keypoint_keys:
        raise ValueError(
            f"{npz_path}: no 2D keypoints (neither 'part' nor 'openpose'), which the kp term of the fit "
            "needs; add them or fit without kp (--losses)"
        )
    n = len(ds)
    idx = list(range(n if limit is None else min(limit, n)))
    loader = DataLoader(Subset(ds, idx), batch_size=batch_size, shuffle=False, collate_fn=collate_samples)
    fitter = BodyFitter(regressor, config, prior=prior, pose_gmm=pose_gmm)
    if start_fits is not None and len(start_fits["ok"]) != n:
        raise ValueError(f"--start {start_fits['path']}: {len(start_fits['ok'])} rows, {npz_path} has {n}")
    J, S = int(body.num_joints), int(body.shape_dim)
    pose_out = np.zeros((n, 3 * J), np.float64)
    shape_out = np.zeros((n, S), np.float64)
    cam_out = np.zeros((n, 3), np.float32)
    ok = np.zeros(n, bool)
    term_out: dict[str, np.ndarray] = {}
    joints = eval_joints(eval_body)
    acc_start, acc_fit = MetricAccumulator(), MetricAccumulator()
    t_start: dict[str, list[torch.Tensor]] = {}
    t_fit: dict[str, list[torch.Tensor]] = {}
    skipped: list[dict] = []
    per_sample: dict[str, list[np.ndarray]] = {}
    curves: dict[str, list[np.ndarray]] = {}
    curve_iters: list[int] = []
    dev = body.faces.device
    res = int(regressor.img_res)
    for batch in tqdm(loader, desc="fit", unit="batch", disable=not progress):
        batch, _ = drop_nonfinite_samples(batch, ("img", "keypoints"))  # NaN inputs: skipped, listed
        skipped += batch["skipped"]
        if batch["num_valid"] == 0:
            continue
        kp = batch["keypoints"].to(dev).float()
        targets = None
        if fitter.dsr is not None:  # the same targets as training's (losses/targets.py)
            targets = dsr_targets(batch, res, clean=clean_parsing, with_distance=config.mc_form == "distance")
        if start == "regressor":
            with torch.no_grad():
                p = (FlipAveraged(regressor) if flip else regressor)(batch["img"].to(dev))
            s = {"rotmat": p["rotmat"], "shape_raw": p["shape_raw"], "cam": p["cam"]}
        elif start_fits is not None:
            s = _rows_start(start_fits, batch["sample_index"], fitter)
        else:
            s = None
        result = fitter.fit(kp, targets, s)
        done = _finite_rows(result.rotmat, result.shape, result.cam)  # (B,) a fit that stayed finite
        if not bool(done.all()):
            skipped += [
                {
                    "imgname": batch["imgname"][i],
                    "reason": "fit_nonfinite",
                    "sample_index": int(batch["sample_index"][i]),
                }
                for i in torch.nonzero(~done).flatten().tolist()
            ]
        for k, v in result.terms_start.items():
            t_start.setdefault(k, []).append(v)
        for k, v in result.terms_end.items():
            t_fit.setdefault(k, []).append(v)
        with torch.no_grad():
            st = s or fitter.start_from_mean(kp.shape[0])
            start_pred = {"rotmat": st["rotmat"], "shape": regressor.shape_from_raw(st["shape_raw"].to(dev))}
            fit_pred = {"rotmat": result.rotmat.to(dev), "shape": result.shape.to(dev)}
            start_metrics = batch_metrics(start_pred, batch, eval_body, joints, rerun=True)
            acc_start.add(start_metrics)
            fit_metrics = batch_metrics(fit_pred, batch, eval_body, joints, rerun=True)
            fit_metrics = {k: v.masked_fill(~done.to(v.device), float("nan")) for k, v in fit_metrics.items()}
            acc_fit.add(fit_metrics)
            row = {"sample_index": np.asarray(batch["sample_index"]).reshape(-1)}
            row.update({f"start_{k}": v.cpu().numpy() for k, v in start_metrics.items()})
            row.update({f"fit_{k}": v.cpu().numpy() for k, v in fit_metrics.items()})
            row["volume_ratio"] = _volume_ratio(fit_pred["shape"], batch, eval_body).numpy()
            row.update({f"term_{k}": v.numpy() for k, v in result.terms_end.items()})
            for k, v in row.items():
                per_sample.setdefault(k, []).append(v)
            if result.snapshots:
                curve_iters = [it for it, *_ in result.snapshots]
                per_it = []
                for _, rot, shp, obj in result.snapshots:
                    m = batch_metrics({"rotmat": rot.to(dev), "shape": shp.to(dev)}, batch, eval_body, joints)
                    per_it.append({**{k: v.cpu().numpy() for k, v in m.items()}, "objective": obj.numpy()})
                for k in per_it[0]:
                    curves.setdefault(k, []).append(np.stack([p_[k] for p_ in per_it]))
        rows = (
            batch["sample_index"].numpy()
            if torch.is_tensor(batch["sample_index"])
            else np.asarray(batch["sample_index"])
        )
        keep = done.numpy()
        rows = rows[keep]
        pose_out[rows] = matrix_to_axis_angle(result.rotmat[done].double()).reshape(len(rows), -1).numpy()
        shape_out[rows] = result.shape[done].double().numpy()
        cam_out[rows] = result.cam[done].numpy()
        ok[rows] = True
        for k, v in result.terms_end.items():
            term_out.setdefault(k, np.full(n, np.nan, np.float32))[rows] = v[done].numpy()

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    fits_path = out / "fits.npz"
    _write_fits(npz_path, fits_path, body_name, pose_out, shape_out, cam_out, ok, term_out)
    report = {
        "data": str(npz_path),
        "fits": str(fits_path),
        "body_model": body_name,
        "start": start,
        "flip": bool(flip),
        "config": {**asdict(config), "losses": list(config.losses)},
        "n_fitted": int(ok.sum()),
        "n_skipped": len(skipped),
        "skipped": [f"{s['imgname']}: {s['reason']}" for s in skipped],
        "metrics_start": summarize(acc_start),
        "metrics_fit": summarize(acc_fit),
        "terms_start": summarize_terms(t_start),
        "terms_fit": summarize_terms(t_fit),
    }
    if per_sample:
        arrays = {k: np.concatenate(v) for k, v in per_sample.items()}
        order = np.argsort(arrays["sample_index"], kind="stable")
        arrays = {k: v[order] for k, v in arrays.items()}
        if curves:
            arrays["curve_iters"] = np.asarray(curve_iters)
            arrays.update({f"curve_{k}": np.concatenate(v, axis=1)[:, order] for k, v in curves.items()})
        tmp = out / "fit_per_sample.part.npz"  # a killed fit leaves no half-written file under the name
        np.savez(tmp, **arrays)
        tmp.replace(out / "fit_per_sample.npz")
        report["per_sample"] = str(out / "fit_per_sample.npz")
    (out / "fit_metrics.json").write_text(json.dumps(report, indent=1))
    return report


def _read_start_fits(path: str | Path, regressor) -> dict[str, Any]:
    """The start point of every row of an earlier ``fits.npz`` (:func:`fit_dataset`)."""
    from dsrbody.geometry.rotations import axis_angle_to_matrix

    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{p}: start fits file not found")
    try:
        with np.load(p, allow_pickle=False) as z:
            missing = [k for k in ("pose", "shape", "fit_cam", "fit_ok") if k not in z.files]
            if missing:
                raise ValueError(f"no {', '.join(missing)}")
            pose, shape, cam, ok = z["pose"], z["shape"], z["fit_cam"], z["fit_ok"].astype(bool)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise ValueError(f"{p}: not a dsrbody fits file ({e})") from None
    J, S = int(regressor.body_model.num_joints), int(regressor.body_model.shape_dim)
    if pose.shape[1] != 3 * J or shape.shape[1] != S:
        raise ValueError(
            f"{p}: pose/shape of {pose.shape[1] // 3} joints / {shape.shape[1]} shape values, "
            f"the body model has {J} / {S}"
        )
    rot = axis_angle_to_matrix(torch.as_tensor(pose, dtype=torch.float32).reshape(len(pose), J, 3))
    raw = regressor.raw_from_shape(torch.as_tensor(shape, dtype=torch.float32))
    return {
        "path": p,
        "rotmat": rot,
        "shape_raw": raw,
        "cam": torch.as_tensor(cam, dtype=torch.float32),
        "ok": ok,
    }


def _rows_start(fits: dict[str, Any], rows, fitter: BodyFitter) -> dict[str, torch.Tensor]:
    """Start of a batch's rows from :func:`_read_start_fits` (the mean body where a row was not fitted)."""
    idx = torch.as_tensor(np.asarray(rows).reshape(-1), dtype=torch.long)
    mean = fitter.start_from_mean(len(idx))
    ok = torch.as_tensor(fits["ok"])[idx]
    out = {}
    for k in ("rotmat", "shape_raw", "cam"):
        v = fits[k][idx].to(mean[k])
        out[k] = torch.where(ok.view(-1, *([1] * (v.dim() - 1))).to(v.device), v, mean[k])
    return out


def _volume_ratio(shape: torch.Tensor, batch: dict, eval_body) -> torch.Tensor:
    """``(B,)`` fitted / true rest-pose body volume (NaN without ground-truth parameters)."""
    from dsrbody.losses.targets import gt_body, params_valid

    valid = params_valid(batch, str(eval_body.name))
    out = torch.full((shape.shape[0],), float("nan"))
    if not bool(valid.any()):
        return out
    dev = eval_body.faces.device
    n = int(valid.sum())
    rest = torch.eye(3, device=dev).expand(n, 3, 3)
    body_pose = torch.eye(3, device=dev).expand(n, int(eval_body.num_joints) - 1, 3, 3)
    pred = eval_body(rest, body_pose, shape[valid.to(shape.device)].to(dev))
    gt = gt_body(eval_body, batch, valid)
    faces = eval_body.faces
    out[valid] = (mesh_volume(pred.rest_vertices, faces) / mesh_volume(gt.rest_vertices, faces)).float().cpu()
    return out


def _finite_rows(*tensors: torch.Tensor) -> torch.Tensor:
    """``(B,)`` bool: the samples whose values are finite in every ``(B, ...)`` tensor."""
    ok = torch.ones(tensors[0].shape[0], dtype=torch.bool)
    for t in tensors:
        ok &= torch.isfinite(t.detach().reshape(t.shape[0], -1).cpu()).all(dim=1)
    return ok


def _write_fits(
    src: str | Path,
    dst: Path,
    body_name: str,
    pose: np.ndarray,
    shape: np.ndarray,
    cam: np.ndarray,
    ok: np.ndarray,
    terms: dict[str, np.ndarray],
) -> None:
    """The input file with the fitted parameters in place of ``pose``/``shape`` (module docstring)."""
    from dsrbody.body.factory import body_spec, spin_body_model

    with np.load(src, allow_pickle=False) as z:
        data = {k: z[k] for k in z.files}
    n = len(ok)
    if "pose" in data and data["pose"].shape == pose.shape:
        pose = np.where(ok[:, None], pose, data["pose"])
    if "shape" in data and data["shape"].shape == shape.shape:
        shape = np.where(ok[:, None], shape, data["shape"])
    elif "shape" in data or "pose" in data:
        # the file's parameters belong to another body model: only the fitted rows remain valid
        for key in ("has_smpl", "has_params"):
            data[key] = np.zeros(n, np.float32)
    data["pose"] = pose
    data["shape"] = shape
    prev = data.get("has_params", np.zeros(n, np.float32)).astype(np.float32)
    data["has_params"] = np.where(ok, 1.0, prev).astype(np.float32)
    spec = body_spec(body_name, missing_ok=True)
    if spec is not None and spec.spin_params:  # SPIN's flag of its parameters (SMPL)
        prev = data.get("has_smpl", np.zeros(n, np.float32)).astype(np.float32)
        data["has_smpl"] = np.where(ok, 1.0, prev).astype(np.float32)
    elif "has_smpl" in data:
        data["has_smpl"] = np.where(ok, 0.0, data["has_smpl"]).astype(np.float32)
    names = data.get("body_model")
    # a file without names holds the parameters of SPIN's body model
    names = names.astype("<U16") if names is not None else np.full(n, spin_body_model(), "<U16")
    names[ok] = body_name
    data["body_model"] = names
    data["fit_cam"] = cam
    data["fit_ok"] = ok
    for k, v in terms.items():
        data[f"fit_{k}"] = v
    np.savez(dst, **data)
