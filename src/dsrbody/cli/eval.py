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
        "Prints a table; with --out writes metrics_<split>.json and a picture of the first predictions."
    )
    parser.add_argument("--config", required=True, help="the YAML recipe the checkpoint was trained with")
    parser.add_argument("--ckpt", required=True, help="checkpoint (.ckpt of dsrbody train)")
    parser.add_argument(
        "--split", default="test", choices=["test", "val", "train"], help="data.<split> files"
    )
    parser.add_argument(
        "--out", default=None, help="folder for metrics_<split>.json and overlays_<split>.png"
    )
    parser.add_argument("--batch-size", type=int, default=None, help="default: data.val_batch_size")
    parser.add_argument("--pictures", type=int, default=4, help="samples in the overlay picture (0: none)")
    parser.add_argument("--device", default="cpu", help="torch device (cpu, cuda)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides")


def load_trained(cfg, ckpt: str | Path, device: str = "cpu"):
    """``(regressor, eval body model)`` of a checkpoint, checked against the recipe.

    Raises:
        FileNotFoundError: missing checkpoint. ValueError: another body model/backbone, unreadable file.
    """
    from dsrbody.models import build_regressor, load_regressor_checkpoint
    from dsrbody.train.build import build_body
    from dsrbody.train.module import check_checkpoint, read_checkpoint_meta

    check_checkpoint(read_checkpoint_meta(ckpt), cfg, ckpt)
    body = build_body(cfg, for_eval=True)
    reg = build_regressor(body, backbone=str(cfg.model.backbone), n_iter=int(cfg.model.n_iter),
                          dropout=float(cfg.model.dropout))  # fmt: skip
    load_regressor_checkpoint(reg, ckpt)
    reg.to(device).eval()
    return reg, reg.body_model


def _picture(batch, pred, faces, focal: float, body, rows: list, limit: int) -> None:
    import torch

    from dsrbody.eval.synth_eval import gt_body, params_valid
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


def run(args: argparse.Namespace) -> int:
    """Evaluate and report."""
    import torch
    from rich.console import Console
    from rich.table import Table
    from torch.utils.data import DataLoader

    from dsrbody.data import collate_samples
    from dsrbody.eval.metrics import eval_joints
    from dsrbody.eval.synth_eval import evaluate
    from dsrbody.train import load_config
    from dsrbody.train.build import build_eval_set

    cfg = load_config(args.config, args.overrides)
    reg, body = load_trained(cfg, args.ckpt, args.device)
    dataset = build_eval_set(cfg, args.split)
    if dataset is None:
        raise ValueError(f"{args.config}: the recipe lists no '{args.split}' data (data.{args.split})")
    loader = DataLoader(
        dataset,
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

    with torch.no_grad():
        res = evaluate(reg, body, loader, joints, device=args.device, skip_log=dataset.skipped,
                       progress=not args.quiet, on_batch=on_batch)  # fmt: skip
    res = {
        "checkpoint": str(args.ckpt),
        "config": str(args.config),
        "split": args.split,
        "body_model": str(body.name),
        "mesh": getattr(body, "topology", str(body.topology_id)),
        "joints": list(joints.names),
        **res,
    }
    table = Table(title=f"dsrbody eval: {args.split} split ({res['n_samples']} samples), mm")
    for col in ("metric", "value", "samples"):
        table.add_column(col, justify="right" if col != "metric" else "left")
    labels = {"mpjpe": "MPJPE", "pa_mpjpe": "PA-MPJPE", "pve": "PVE", "pve_t": "PVE-T"}
    for k, label in labels.items():
        if k in res:
            table.add_row(label, f"{res[k]:.1f}", str(res[f"n_{k}"]))
        else:
            table.add_row(label, "n/a", "0")
    if "score" in res:
        table.add_row("1.5 PA-MPJPE + MPJPE", f"{res['score']:.1f}", "")
    console = Console()
    console.print(table)
    if res["n_skipped"]:
        console.print(dataset.skipped.summary())
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
