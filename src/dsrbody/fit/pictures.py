"""Pictures that compare fits: one row per sample, the crop then the body of each source over it.

    from dsrbody.fit.pictures import comparison_rows
    img = comparison_rows(regressor, "DATA/synth_test.npz", "DATA", [0, 1, 2],
                          {"kp": "OUT/kp/fits.npz", "kp+DSR": "OUT/kp_mc_c/fits.npz"})

Columns: the crop, the ground truth (when the file has parameters of the regressor's body model),
the regressor's estimate, then every fits file (``pose``, ``shape``, ``fit_cam``). The ground truth is
drawn with the file's own camera (``cam_t``, ``focal_length``, ``principal_point`` of the synthetic
data, carried into the crop) when it has one, else with the first fit's camera.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

__all__ = ["comparison_rows"]


def _label(img: np.ndarray, text: str) -> np.ndarray:
    import cv2

    out = img.copy()
    cv2.putText(out, text, (4, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 3, cv2.LINE_AA)
    cv2.putText(out, text, (4, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1, cv2.LINE_AA)
    return out


def _draw(regressor, crop, rot, shape, cam, name, translation=None, focal=None, pp=None) -> np.ndarray:
    """One labelled overlay: the body of ``rot (J, 3, 3)``, ``shape (S,)``, ``cam (3,)`` over ``crop``;
    ``translation``/``focal``/``pp`` replace the camera derived from ``cam`` (crop pixels)."""
    from dsrbody.render.overlay import overlay

    res = int(regressor.img_res)
    out = regressor.pose_body(rot[None].float(), shape[None].float(), cam[None].float())
    v = out["vertices"][0] + (out["translation"][0] if translation is None else translation)
    f = regressor.focal if focal is None else tuple(float(a) for a in focal)
    p = (res / 2, res / 2) if pp is None else tuple(float(a) for a in pp)
    return _label(overlay(crop, v, regressor.faces.cpu(), focal=f, principal_point=p), name)


@torch.no_grad()
def comparison_rows(
    regressor,
    npz_path: str | Path,
    img_dir: str | Path,
    indices: list[int],
    fits: dict[str, str | Path],
) -> np.ndarray:
    """``(len(indices) * R, C * R, 3)`` uint8 picture (R = the crop size), labelled columns.

    Args:
        regressor: a :class:`~dsrbody.models.Regressor` (its body model draws every column).
        npz_path, img_dir: the dataset.
        indices: sample indices.
        fits: column name -> ``fits.npz`` of :func:`~dsrbody.fit.fit_dataset`.
    """
    from dsrbody.data import SpinNpzDataset
    from dsrbody.data.crop_augment import IMG_NORM_MEAN, IMG_NORM_STD
    from dsrbody.geometry.rotations import axis_angle_to_matrix

    ds = SpinNpzDataset(npz_path, img_dir, parsing=False)
    loaded = {k: np.load(v) for k, v in fits.items()}
    body = regressor.body_model
    J = int(body.num_joints)
    rows = []
    for i in indices:
        item = ds[i]
        x = item["img"][None]
        crop = x[0].permute(1, 2, 0).numpy() * np.asarray(IMG_NORM_STD) + np.asarray(IMG_NORM_MEAN)
        crop = (np.clip(crop, 0, 1) * 255 + 0.5).astype(np.uint8)
        cols = [_label(crop, "image")]

        first = next(iter(loaded.values()), None)
        if bool(item["has_params"]) and item["pose"].numel() == 3 * J:
            rot = axis_angle_to_matrix(item["pose"].reshape(J, 3).double())
            betas = item["betas"][: body.shape_dim]
            if "crop_cam_t" in item and "crop_focal_length" in item:  # the file's own camera
                cam = regressor.head.init_cam[0]
                t, f, pp = item["crop_cam_t"].float(), item["crop_focal_length"], item["crop_principal_point"]
                cols.append(_draw(regressor, crop, rot, betas, cam, "ground truth", t, f, pp))
            elif first is not None:
                cols.append(
                    _draw(regressor, crop, rot, betas, torch.as_tensor(first["fit_cam"][i]), "ground truth")
                )
        pred = regressor(x)
        cols.append(_draw(regressor, crop, pred["rotmat"][0], pred["shape"][0], pred["cam"][0], "checkpoint"))
        for name, f in loaded.items():
            rot = axis_angle_to_matrix(torch.as_tensor(f["pose"][i]).reshape(J, 3))
            cols.append(
                _draw(
                    regressor,
                    crop,
                    rot,
                    torch.as_tensor(f["shape"][i]),
                    torch.as_tensor(f["fit_cam"][i]),
                    name,
                )
            )
        rows.append(np.concatenate(cols, axis=1))
    return np.concatenate(rows, axis=0)
