"""``dsrbody eval``: evaluate a trained checkpoint (MPJPE, PA-MPJPE, PVE, PVE-T in mm)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def add_parser(parser: argparse.ArgumentParser) -> None:
    """Options of ``dsrbody eval``."""
    parser.description = (
        "Evaluate a checkpoint on a recipe's evaluation split (the synthetic test split for the synthetic "
        "recipes): MPJPE and PA-MPJPE on the LSP joints the body model has, PVE and PVE-T, in millimetres. "
        "Prints a table; with --out writes metrics_<split>.json and a picture of the first predictions. "
        "With --dataset, runs the paper's protocols instead (3DPW, Human3.6M P1/P2, MPI-INF-3DHP, or a "
        "synthetic test split) on the SPIN/DSR files under --data-root, with SPIN/DSR released weights or a "
        "dsrbody checkpoint; --out then gets metrics.json, per_sample.csv and report.html."
    )
    parser.add_argument(
        "--config",
        default=None,
        help="the YAML recipe the checkpoint was trained with (default: the checkpoint's stored recipe)",
    )
    parser.add_argument(
        "--ckpt", default=None, help="checkpoint of dsrbody train (default: the shipped model)"
    )
    parser.add_argument(
        "--data",
        default=None,
        help="a dsrbody synth folder (synth_<split>.npz + images) to evaluate instead of the recipe's split",
    )
    parser.add_argument(
        "--mean-body",
        action="store_true",
        help="also evaluate the mean body (the regressor's start point) and print it beside the model",
    )
    parser.add_argument(
        "--split", default="test", choices=["test", "val", "train"], help="data.<split> files"
    )
    parser.add_argument(
        "--out", default=None, help="folder for metrics_<split>.json and overlays_<split>.png"
    )
    parser.add_argument("--batch-size", type=int, default=None, help="default: data.val_batch_size")
    parser.add_argument("--pictures", type=int, default=4, help="samples in the overlay picture (0: none)")
    parser.add_argument(
        "--device", default="auto", help="torch device: auto (CUDA when present, else CPU), cpu, cuda, ..."
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    proto = parser.add_argument_group("paper protocols (dsrbody.eval.protocols)")
    proto.add_argument(
        "--dataset",
        default=None,
        metavar="PROTOCOL",
        help="run this benchmark's protocol (a name of dsrbody.eval.protocols.PROTOCOLS: 3DPW, Human3.6M, "
        "MPI-INF-3DHP, the synthetic split; docs/evaluation.md)",
    )
    proto.add_argument(
        "--data-root",
        default=None,
        help="folder with the annotation .npz (or dataset_extras/) and the images; or the .npz itself",
    )
    proto.add_argument(
        "--img-dir", default=None, help="folder imgname is relative to (default: found under --data-root)"
    )
    proto.add_argument(
        "--smpl-dir",
        default=None,
        help="SMPL_{NEUTRAL,MALE,FEMALE}.pkl + J_regressor_h36m.npy (default: the checkpoint's SMPL folder)",
    )
    proto.add_argument(
        "--backbone",
        default=None,
        help="backbone of SPIN/DSR released weights (default: read from the weights)",
    )
    proto.add_argument("--workers", type=int, default=2, help="DataLoader workers")
    parser.add_argument(
        "--max-samples",
        type=int,
        default=None,
        help="evaluate only the first N samples of the split (all when not given)",
    )
    parser.add_argument(
        "--flip",
        action="store_true",
        help="flip test-time augmentation: average the estimates on the crop and on its mirror "
        "(twice the time; docs/evaluation.md)",
    )
    parser.add_argument(
        "--known-stature",
        action="store_true",
        help="give each prediction its ground truth's stature first (its height coefficient set so its "
        "rest mesh is as tall as the true one; --data/--config only): shape without the scale a crop "
        "does not show (docs/evaluation.md, 'Known stature')",
    )
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides")


def load_trained(cfg, ckpt: str | Path, device: str = "cpu"):
    """``(regressor, eval body model)`` of a checkpoint built from a recipe
    (:func:`dsrbody.models.loader.load_model` with ``config``: checked against the checkpoint, the
    recipe's evaluation mesh).

    Raises:
        FileNotFoundError: missing checkpoint. ValueError: another body model/backbone, unreadable file.
    """
    from dsrbody.models.loader import load_model

    reg = load_model(ckpt, config=cfg, mesh="eval", device=device).regressor
    return reg, reg.body_model


def _picture(batch, pred, faces, focal: float, body, rows: list, limit: int) -> None:
    import torch

    from dsrbody.losses.targets import gt_body, params_valid
    from dsrbody.render.overlay import side_view
    from dsrbody.train.visual import denormalize_image, hstack, mesh_overlay

    valid = params_valid(batch, str(body.name))
    for i in range(int(batch["num_valid"])):
        if len(rows) >= limit:
            return
        rgb = denormalize_image(batch["img"][i])
        H, W = rgb.shape[:2]
        c = (W / 2.0, H / 2.0)
        v = pred["vertices_cam"][i].detach().cpu()
        panels = [rgb, mesh_overlay(rgb, v, faces, focal, c)]
        if bool(valid[i]) and "crop_cam_t" in batch:
            sel = torch.zeros_like(valid)
            sel[i] = True
            g = gt_body(body, batch, sel)
            gv = g.vertices[0].cpu() + batch["crop_cam_t"][i].float()
            f = tuple(float(x) for x in batch["crop_focal_length"][i].reshape(-1)[:2])
            pp = tuple(float(x) for x in batch["crop_principal_point"][i].reshape(-1)[:2])
            panels.append(mesh_overlay(rgb, gv, faces, f, pp))
        else:
            panels.append(rgb // 3)
        panels.append(side_view(v, faces, focal=focal, image_size=(H, W)))
        rows.append(hstack(panels))


def default_checkpoint(args: argparse.Namespace, command: str) -> None:
    """Set ``args.ckpt`` to the shipped model when none is given, and say so in one line."""
    if args.ckpt is not None:
        return
    import sys

    from dsrbody.models.shipped import shipped_model_path

    args.ckpt = str(shipped_model_path())
    if not getattr(args, "quiet", False):
        print(f"dsrbody {command}: no --ckpt: using the shipped model {args.ckpt} (docs/model_card.md)",
              file=sys.stderr)  # fmt: skip


def synth_folder_spec(folder: str | Path, split: str) -> dict:
    """``{"npz", "img_dir"}`` of a ``dsrbody synth`` folder: ``synth_<split>.npz``, else its only split.

    Raises:
        FileNotFoundError: no such folder, or no (single) annotation file in it.
    """
    d = Path(folder)
    if not d.is_dir():
        raise FileNotFoundError(f"{d}: --data is not a folder")
    npz = d / f"synth_{split}.npz"
    if not npz.is_file():
        found = sorted(d.glob("synth_*.npz"))
        if len(found) != 1:
            names = ", ".join(p.name for p in found) or "none"
            raise FileNotFoundError(
                f"{d}: expected synth_{split}.npz or a single synth_*.npz from dsrbody synth (found {names})"
            )
        npz = found[0]
    return {"npz": str(npz), "img_dir": str(d)}


def eval_config(args: argparse.Namespace):
    """The recipe of ``dsrbody eval``: ``--config`` or the checkpoint's stored one, overrides applied,
    the evaluated split replaced by ``--data`` when given."""
    from omegaconf import OmegaConf

    from dsrbody.cli import CLIError
    from dsrbody.models.loader import read_checkpoint_meta
    from dsrbody.train import load_config
    from dsrbody.train.config import apply_overrides, config_from_dict

    if args.config is not None:
        cfg = load_config(args.config, args.overrides)
    else:
        meta = read_checkpoint_meta(args.ckpt)
        if meta is None or not isinstance(meta.get("config"), dict):
            raise CLIError(f"{args.ckpt} stores no recipe: pass --config (or --dataset for released weights)")
        cfg = apply_overrides(
            config_from_dict(meta["config"], f"{args.ckpt} (stored recipe)"), args.overrides
        )
    if args.data is not None:
        from dsrbody.train.config import DatasetSpec

        cfg.data[args.split] = [OmegaConf.structured(DatasetSpec(**synth_folder_spec(args.data, args.split)))]
    return cfg


def run(args: argparse.Namespace) -> int:
    """Evaluate and report."""
    from dsrbody.cli import CLIError

    if args.max_samples is not None and args.max_samples < 1:
        raise CLIError(f"--max-samples must be at least 1, got {args.max_samples}")
    default_checkpoint(args, "eval")
    if args.dataset is not None:
        if args.known_stature:
            raise CLIError("--known-stature is for --data/--config (synthetic splits with body ground truth)")
        return _run_protocol(args)
    import torch
    from rich.console import Console
    from rich.table import Table
    from torch.utils.data import DataLoader, Subset

    from dsrbody.data import collate_samples
    from dsrbody.eval.metrics import eval_joints
    from dsrbody.eval.synth_eval import evaluate, gender_models
    from dsrbody.models import at_mean
    from dsrbody.train.build import build_eval_set

    cfg = eval_config(args)
    reg, body = load_trained(cfg, args.ckpt, args.device)
    if args.known_stature and body.stature_index is None:
        raise CLIError(f"--known-stature: the {body.name} body model has no stature coefficient")
    model = reg
    if args.flip:
        from dsrbody.eval.protocols import FlipAveraged

        model = FlipAveraged(reg)
    dataset = build_eval_set(cfg, args.split, features=False)  # the backbone runs on the images
    if dataset is None:
        raise ValueError(
            f"{args.config or args.ckpt}: the recipe lists no '{args.split}' data (data.{args.split})"
        )
    evaluated = dataset
    if args.max_samples is not None:
        evaluated = Subset(dataset, range(min(len(dataset), args.max_samples)))
    loader = DataLoader(
        evaluated,
        batch_size=args.batch_size or int(cfg.data.val_batch_size),
        shuffle=False,
        num_workers=int(cfg.data.num_workers),
        collate_fn=collate_samples,
    )
    joints = eval_joints(body)
    rows: list = []
    faces = body.faces.cpu()

    def on_batch(batch, pred):
        if args.out and len(rows) < args.pictures:
            _picture(batch, pred, faces, float(reg.focal), body, rows, args.pictures)

    gt_models = gender_models(body, cfg.body.model_path)
    with torch.no_grad():
        known = bool(args.known_stature)
        res = evaluate(model, body, loader, joints, device=args.device, skip_log=dataset.skipped,
                       progress=not args.quiet, on_batch=on_batch, gt_models=gt_models,
                       known_stature=known)  # fmt: skip
        ref = None
        if args.mean_body:
            dataset.skipped.reset()
            ref = evaluate(at_mean(reg), body, loader, joints, device=args.device, skip_log=dataset.skipped,
                           progress=not args.quiet, gt_models=gt_models, known_stature=known)  # fmt: skip
    res = {
        "checkpoint": str(args.ckpt),
        "config": str(args.config) if args.config else "stored in the checkpoint",
        "data": str(args.data) if args.data else None,
        "split": args.split,
        "flip": bool(args.flip),
        "known_stature": bool(args.known_stature),
        "body_model": str(body.name),
        "mesh": str(body.mesh_name),
        "joints": list(joints.names),
        **res,
    }
    if ref is not None:
        res["mean_body"] = ref
    table = Table(title=f"dsrbody eval: {args.split} split ({res['n_samples']} samples), mm")
    cols = ["metric", "model"] + (["mean body"] if ref is not None else []) + ["samples"]
    for col in cols:
        table.add_column(col, justify="right" if col != "metric" else "left")
    labels = {
        "mpjpe": "MPJPE", "pa_mpjpe": "PA-MPJPE", "pve": "PVE", "pve_t": "PVE-T", "pve_t_sc": "PVE-T-SC",
    }  # fmt: skip
    for k, label in labels.items():
        row = [label, f"{res[k]:.1f}" if k in res else "n/a"]
        if ref is not None:
            row.append(f"{ref[k]:.1f}" if k in ref else "n/a")
        table.add_row(*row, str(res.get(f"n_{k}", 0)))
    if "score" in res:
        row = ["1.5 PA-MPJPE + MPJPE", f"{res['score']:.1f}"]
        if ref is not None:
            row.append(f"{ref['score']:.1f}" if "score" in ref else "")
        table.add_row(*row, "")
    console = Console()
    console.print(table)
    if args.flip:
        console.print("flip test-time augmentation: each crop and its mirror, averaged (model column)")
    if args.known_stature:
        console.print("known stature: each body given its ground truth's height first (every column)")
        for name, col in (("model", res), ("mean body", ref or {})):
            if col.get("n_stature_clamped"):
                console.print(
                    f"{name}: {col['n_stature_clamped']} sample(s) could not reach their true stature with "
                    "the rest of their shape and were scored at the nearest they allow"
                )
    if res["n_skipped"]:
        console.print(dataset.skipped.summary())
    if res.get("n_excluded"):
        from dsrbody.eval.synth_eval import EXCLUSION_REASONS

        why = ", ".join(f"{k} x {EXCLUSION_REASONS.get(r, r)}" for r, k in res["excluded"].items())
        console.print(f"{res['n_excluded']} sample(s) read but left out of the means: {why}")
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        path = out / f"metrics_{args.split}.json"
        path.write_text(json.dumps(res, indent=2) + "\n")
        console.print(f"wrote {path}")
        if rows:
            import cv2

            from dsrbody.train.visual import grid

            pic = out / f"overlays_{args.split}.png"
            if not cv2.imwrite(str(pic), cv2.cvtColor(grid(rows), cv2.COLOR_RGB2BGR)):
                raise ValueError(f"{pic}: could not write the picture")
            console.print(f"wrote {pic} (input | prediction | ground truth | prediction from the side)")
    return 0


def _load_for_protocol(args: argparse.Namespace):
    """``(regressor, SMPL folder or None, description)`` for ``--dataset``: a dsrbody checkpoint with its
    stored recipe (or ``--config``), else SPIN/DSR released weights on the neutral SMPL of ``--smpl-dir``."""
    from dsrbody.body.factory import body_spec, spin_body_model
    from dsrbody.cli import CLIError
    from dsrbody.models.loader import load_model, read_checkpoint_meta
    from dsrbody.train import config_from_dict, load_config

    meta = read_checkpoint_meta(args.ckpt)
    if args.config is not None or meta is not None:
        cfg = (
            load_config(args.config, args.overrides)
            if args.config is not None
            else config_from_dict(meta["config"], source=f"{args.ckpt} (stored recipe)")
        )
        reg, body = load_trained(cfg, args.ckpt, args.device)
        smpl_dir = args.smpl_dir
        if smpl_dir is None and body_spec(str(body.name)).spin_params and cfg.body.model_path:
            p = Path(str(cfg.body.model_path))
            smpl_dir = str(p.parent if p.is_file() else p)
        return reg, smpl_dir, f"{args.ckpt} (dsrbody, {body.name})"
    if args.smpl_dir is None:
        raise CLIError(
            f"{args.ckpt} is not a dsrbody checkpoint (SPIN/DSR weights?): pass --smpl-dir, the folder with "
            "SMPL_NEUTRAL.pkl, SMPL_MALE.pkl, SMPL_FEMALE.pkl and J_regressor_h36m.npy"
        )
    loaded = load_model(
        args.ckpt, body=spin_body_model(), model_path=args.smpl_dir, gender="neutral", device=args.device
    )
    if args.backbone is not None and args.backbone != loaded.backbone:
        raise CLIError(f"{args.ckpt}: holds {loaded.backbone} weights, not --backbone {args.backbone}")
    print(loaded.summary)
    return loaded.regressor, args.smpl_dir, f"{args.ckpt} (SPIN/DSR weights, {loaded.backbone})"


def _run_protocol(args: argparse.Namespace) -> int:
    """``dsrbody eval --dataset ...``: one of the paper's protocols, a printed table beside the paper's
    figures, and with ``--out`` metrics.json, per_sample.csv, report.html."""
    import numpy as np

    from dsrbody.cli import CLIError
    from dsrbody.eval.protocols import (
        RegressorPredictor,
        evaluate,
        find_protocol_file,
        get_protocol,
        resolve_image_dir,
    )
    from dsrbody.eval.report import write_report

    try:
        args.dataset = get_protocol(args.dataset).name
    except ValueError as e:
        raise CLIError(f"--dataset: {e}") from None

    if args.data_root is None:
        raise CLIError(
            "--dataset needs --data-root (the folder with the SPIN/DSR annotation files and images)"
        )
    npz = find_protocol_file(args.dataset, args.data_root)
    reg, smpl_dir, described = _load_for_protocol(args)
    if args.img_dir is not None:
        img_dir = Path(args.img_dir)
    else:
        with np.load(npz) as f:
            names = [n.decode() if isinstance(n, bytes) else str(n) for n in f["imgname"][:20]]
        img_dir = resolve_image_dir(args.dataset, args.data_root, names)
    res = evaluate(
        args.dataset, npz, img_dir, RegressorPredictor(reg, flip=args.flip, device=args.device),
        smpl_dir=smpl_dir, batch_size=args.batch_size or 32, workers=args.workers,
        max_samples=args.max_samples, progress=not args.quiet, device=args.device,
    )  # fmt: skip
    res.checkpoint = described
    print(res.format_table())
    for note in res.notes:
        print(f"note: {note}")
    if args.out:
        paths = write_report(res, args.out, worst=args.pictures > 0)
        print(f"wrote {paths['metrics']}, {paths['per_sample']}, {paths['report']}")
    return 0
