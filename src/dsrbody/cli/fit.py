"""``dsrbody fit``: optimisation-based fitting (SMPLify/EFT-like) with the training losses.

    dsrbody fit --data DIR_OR_NPZ [--ckpt K] [--losses kp,mc,c] [--iters N] --out DIR

``--data`` is a SPIN/DSR annotation file (images and ``grph_sequences/`` parsing maps relative to its
folder), a folder holding one, or a folder of photos (then the people come from ``--openpose``,
``--bbox`` or a person detector (``--detector``, default the built-in BlazePose), parsing maps from
``DIR/grph_sequences/<stem>.png`` when they exist; with the detector, its person masks feed the
silhouette term ``sil``). Each sample starts from
the checkpoint's estimate (``--start regressor``, the default with ``--ckpt``) or from the mean body.
Writes ``OUT/fits.npz`` (the input file with the fitted ``pose``/``shape``; usable as training targets)
and ``OUT/fit_metrics.json``, and prints the objective's terms and, when the file has ground truth for
the fitted body model, MPJPE / PA-MPJPE / PVE / PVE-T (mm) before and after fitting.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from dsrbody.cli import CLIError


def add_parser(parser: argparse.ArgumentParser) -> None:
    """Options of ``dsrbody fit``."""
    parser.description = "Fit body models to images by optimisation (2D keypoints, DSR-MC, DSR-C, priors)."
    parser.add_argument(
        "--data", required=True, help="SPIN/DSR .npz, a folder holding one, or a folder of photos"
    )
    parser.add_argument(
        "--ckpt",
        default=None,
        help="regressor checkpoint: start point and body model (default: the shipped model, unless "
        "--start mean or --body smpl)",
    )
    parser.add_argument(
        "--losses", default="kp,mc,c", help="data terms among kp, mc, c, sil (default kp,mc,c)"
    )
    parser.add_argument("--iters", type=int, default=100, help="optimiser steps per batch (default 100)")
    parser.add_argument("--lr", type=float, default=0.01, help="Adam learning rate (default 0.01)")
    parser.add_argument(
        "--flip-start",
        action="store_true",
        help="also fit from the start turned round (180 degrees about the vertical) and keep the better "
        "fit per sample (SMPLify's two orientations; twice the time)",
    )
    parser.add_argument(
        "--flip",
        action="store_true",
        help="start from the regressor's flip test-time estimate: each crop's averaged with its mirror's "
        "(as dsrbody eval --flip; only with --start regressor)",
    )
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument(
        "--start",
        default=None,
        metavar="{regressor,mean,FITS.npz}",
        help="start point (default: regressor; mean: the mean body, no checkpoint needed; or an earlier "
        "fit's OUT/fits.npz of the same data, to continue it with other terms)",
    )
    parser.add_argument(
        "--pose-prior",
        default="default",
        metavar="{default,none,FILE.npz}",
        help="Gaussian-mixture pose prior (dsrbody prior pose): default: the body model's shipped one "
        "(Anny), none, or a file",
    )
    parser.add_argument(
        "--record-every",
        type=int,
        default=0,
        metavar="N",
        help="keep metrics and objective every N steps in OUT/fit_per_sample.npz (curves; default off)",
    )
    parser.add_argument(
        "--weight",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="objective weight override, e.g. dsr_c=0.2 (names: see dsrbody.fit.FitWeights); repeatable",
    )
    from dsrbody.cli.options import add_body_options

    add_body_options(parser, from_checkpoint=True, topology=True, checkpoint_mesh="training")
    parser.add_argument(
        "--prior", default=None, help="clothing prior .npz/.npy for the mesh (default: shipped Anny prior)"
    )
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--limit", type=int, default=None, help="fit only the first N samples")
    parser.add_argument("--sigma", type=float, default=1e-5, help="soft rasteriser sigma (official 1e-5)")
    parser.add_argument(
        "--no-clean-parsing", action="store_true", help="keep parsing pixels far from the keypoints"
    )
    parser.add_argument("--bbox", default=None, help="photos: [x, y, w, h] box JSON")
    parser.add_argument("--openpose", default=None, help="photos: OpenPose JSON folder (or file)")
    parser.add_argument(
        "--detector",
        default="auto",
        choices=("auto", "blazepose", "hog", "mediapipe", "none"),
        help="photos without boxes: the person detector (auto: the built-in BlazePose; none: whole image)",
    )
    parser.add_argument(
        "--device", default="auto", help="torch device: auto (CUDA when present, else CPU), cpu, cuda, ..."
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def _weights(overrides: list[str]):
    from dataclasses import fields

    from dsrbody.fit import FitWeights

    w = FitWeights()
    names = {f.name for f in fields(w)}
    for item in overrides:
        name, _, value = item.partition("=")
        if name not in names or not value:
            raise CLIError(
                f"--weight {item!r}: expected NAME=VALUE with NAME among {', '.join(sorted(names))}"
            )
        try:
            setattr(w, name, float(value))
        except ValueError:
            raise CLIError(f"--weight {item!r}: {value!r} is not a number") from None
    return w


def _models(args: argparse.Namespace):
    """``(regressor, eval_body, start)``."""
    from dsrbody.body.factory import DEFAULT_BODY_MODEL, body_spec, build_body_model
    from dsrbody.fit import mean_regressor

    name = args.body or DEFAULT_BODY_MODEL
    # the shipped model regresses the default body model
    if not args.ckpt and args.start in (None, "regressor") and name == DEFAULT_BODY_MODEL:
        from dsrbody.cli.eval import default_checkpoint

        default_checkpoint(args, "fit")  # the shipped model: the regressor's estimate is the start point
    if args.ckpt:
        from dsrbody.models.loader import load_model

        loaded = load_model(
            args.ckpt,
            body=args.body,
            model_path=args.model_path,
            gender=args.gender,
            topology=args.topology,
            mesh="train",
            device=args.device,
        )
        reg = loaded.regressor
        eval_body = reg.body_model
        cfg_body = (loaded.meta.get("config") or {}).get("body") or {}
        eval_topo = cfg_body.get("eval_topology")
        if (
            body_spec(loaded.body_name).topologies
            and eval_topo
            and str(eval_topo) != reg.body_model.mesh_name
        ):
            eval_body = build_body_model(loaded.body_name, topology=str(eval_topo)).to(args.device)
        if not args.quiet:
            print(f"dsrbody fit: {loaded.describe()}", file=sys.stderr)
        return reg, eval_body, args.start or "regressor"
    if args.start not in (None, "regressor", "mean"):
        start = args.start  # an earlier fit
    else:
        start = "mean"
    if args.start == "regressor":
        raise CLIError("--start regressor needs --ckpt")
    kwargs = body_spec(name).mesh_options(args.topology)
    body = build_body_model(name, model_path=args.model_path, gender=args.gender or "neutral", **kwargs)
    eval_body = body  # metrics on the family's default mesh, as for a checkpoint's evaluation mesh
    spec = body_spec(name)
    if spec.topologies and body.mesh_name != spec.default_topology:
        eval_body = build_body_model(name, topology=spec.default_topology)
    return mean_regressor(body).to(args.device), eval_body.to(args.device), start


def _pose_prior(args: argparse.Namespace, body):
    """The ``pose_gmm`` prior of ``--pose-prior`` (None: none)."""
    from dsrbody.fit.priors import PoseGMM, default_pose_prior

    if args.pose_prior == "none":
        return None
    if args.pose_prior == "default":
        return default_pose_prior(body)
    gmm = PoseGMM.load(args.pose_prior)
    if gmm.num_joints != int(body.num_joints) - 1:
        raise CLIError(
            f"{args.pose_prior}: the pose prior covers {gmm.num_joints} body joints, the {body.name} "
            f"model has {int(body.num_joints) - 1}"
        )
    return gmm


def _prior(args: argparse.Namespace, body):
    import warnings

    if args.prior:
        from dsrbody.semantics.prior import ClothingPrior

        p = Path(args.prior)
        if not p.is_file():
            raise FileNotFoundError(f"{p}: clothing prior file not found")
        return ClothingPrior.load(p, expected_topology=body.faces)
    from dsrbody.garments import default_prior

    with warnings.catch_warnings():  # the nearest-face transfer to another Anny mesh is expected
        warnings.simplefilter("ignore", UserWarning)
        return default_prior(body)


def _fmt(v) -> str:
    return f"{v:.2f}" if isinstance(v, float) else str(v)


def print_report(report: dict) -> None:
    """The before/after table of :func:`dsrbody.fit.fit_dataset`'s report."""
    ms, mf = report["metrics_start"], report["metrics_fit"]
    ts, tf = report["terms_start"], report["terms_fit"]
    print(f"fitted {report['n_fitted']} samples ({report['n_skipped']} skipped) -> {report['fits']}")
    print(f"{'':16s}{'start':>12s}{'fit':>12s}")
    for k in (
        "keypoints",
        "dsr_mc",
        "dsr_c",
        "silhouette",
        "pose_prior",
        "pose_gmm",
        "joint_limits",
        "shape_prior",
    ):
        if k in ts or k in tf:
            print(f"{k:16s}{_fmt(ts.get(k, float('nan'))):>12s}{_fmt(tf.get(k, float('nan'))):>12s}")
    for k in ("mpjpe", "pa_mpjpe", "pve", "pve_t", "pve_t_sc"):
        if k in ms or k in mf:
            print(
                f"{k + ' (mm)':16s}{_fmt(ms.get(k, float('nan'))):>12s}{_fmt(mf.get(k, float('nan'))):>12s}"
            )
    if not any(k in mf for k in ("mpjpe", "pve")):
        print("(no ground truth for this body model in the file: no metrics)")


def run(args: argparse.Namespace) -> int:
    """Run ``dsrbody fit``."""
    from dsrbody.fit import FitConfig, fit_dataset, parse_losses, resolve_data

    losses = parse_losses(args.losses)
    if args.iters < 0:
        raise CLIError(f"--iters must be >= 0, got {args.iters}")
    if args.record_every < 0:
        raise CLIError(f"--record-every must be >= 0, got {args.record_every}")
    if args.start not in (None, "regressor", "mean") and not Path(args.start).is_file():
        raise CLIError(f"--start {args.start}: neither regressor, mean nor an existing fits.npz")
    data = Path(args.data)
    if not data.exists():
        raise FileNotFoundError(f"{data}: --data does not exist")
    out = Path(args.out)
    parsing_root = None
    if data.is_dir() and not any(data.glob("*.npz")):
        from dsrbody.demo.detect import DetectorUnavailable
        from dsrbody.fit.photos import photos_to_npz

        try:
            npz, img_dir, parsing_root = photos_to_npz(
                data, out, bbox=args.bbox, openpose=args.openpose, detector=args.detector
            )
        except DetectorUnavailable as e:
            raise CLIError(str(e)) from None
    else:
        npz, img_dir = resolve_data(data)
    reg, eval_body, start = _models(args)
    if args.flip and str(start) != "regressor":
        raise CLIError(f"--flip averages the regressor's estimate; it needs --start regressor, not {start}")
    prior = _prior(args, reg.body_model) if any(t in losses for t in ("mc", "c", "sil")) else None
    config = FitConfig(
        losses=losses,
        iters=int(args.iters),
        lr=float(args.lr),
        weights=_weights(args.weight),
        sigma=float(args.sigma),
        flip_start=bool(args.flip_start),
        record_every=int(args.record_every),
    )
    report = fit_dataset(
        reg,
        npz,
        img_dir,
        out,
        config,
        prior=prior,
        eval_body=eval_body,
        start=start,
        batch_size=int(args.batch_size),
        limit=args.limit,
        clean_parsing=not args.no_clean_parsing,
        progress=not args.quiet,
        parsing_root=parsing_root,
        pose_gmm=_pose_prior(args, reg.body_model),
        flip=bool(args.flip),
    )
    for s in report["skipped"][:10]:
        print(f"dsrbody fit: skipped {s}", file=sys.stderr)
    if report["n_fitted"] == 0:
        raise CLIError(f"{npz}: no sample could be fitted ({report['n_skipped']} skipped)")
    print_report(report)
    return 0
