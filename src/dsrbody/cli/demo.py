"""``dsrbody demo``: bodies from photos, image folders and videos.

    dsrbody demo [--ckpt K] (--image P | --folder D | --video V) [--bbox JSON | --openpose DIR | --coco JSON]
                 [--detector auto|blazepose|hog|mediapipe|none] [--whole-image-if-none] [--no-refine]
                 [--flip] [--height M] [--model-path SMPL] --out DIR

The checkpoint may be a ``dsrbody train`` checkpoint (self-describing), SPIN's ``model_checkpoint.pt``
or DSR's ``dsr_w3DPW_checkpoint.pt`` (SMPL: ``--model-path`` with the SMPL files), or a bare regressor
state dict (``--body``). Boxes: OpenPose JSON (``--openpose``: a file, or a folder of
``<image stem>_keypoints.json``), ``[x, y, w, h]`` box JSON (``--bbox``: a file, possibly with several
boxes or a ``{"image name": box}`` map, or a folder of ``<image stem>.json``), COCO keypoint
annotations (``--coco``), else a person detector (:data:`dsrbody.demo.detect.DETECTORS`): by default
the built-in BlazePose (every person, with 2D keypoints and a mask; :mod:`dsrbody.demo.blazepose`).
An image where the detector finds nobody is skipped with a message (``--whole-image-if-none``: the
whole image is the box). Bodies whose person has 2D keypoints
are refined on them (:mod:`dsrbody.demo.refine`; ``--no-refine`` turns it off). ``--flip`` averages
each crop's estimate with its mirror's before refinement (as ``dsrbody eval --flip``). ``--height``
gives every person that stature (metres): a crop does not show how tall a person is, so their size
and distance from the camera follow from it (:func:`dsrbody.demo.run.with_known_stature`). Outputs:
see :mod:`dsrbody.demo.run`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from dsrbody.cli import CLIError


def add_parser(parser: argparse.ArgumentParser) -> None:
    """Options of ``dsrbody demo``."""
    parser.description = "Reconstruct bodies in images, image folders or videos with a trained regressor."
    parser.add_argument(
        "--ckpt",
        default=None,
        help="checkpoint (dsrbody, SPIN, DSR or a bare state dict; default: the shipped model)",
    )
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--image", help="one image")
    src.add_argument("--folder", help="a folder of images")
    src.add_argument("--video", help="a video file (decoded with imageio's ffmpeg plugin)")
    box = parser.add_mutually_exclusive_group()
    box.add_argument("--bbox", help="[x, y, w, h] box JSON (file) or folder of <image stem>.json")
    box.add_argument("--openpose", help="OpenPose JSON (file) or folder of <image stem>_keypoints.json")
    box.add_argument("--coco", help="COCO keypoint JSON (annotated people and their 17 keypoints)")
    from dsrbody.demo.detect import DEFAULT_DETECTOR, DETECTORS

    parser.add_argument(
        "--detector",
        default="auto",
        choices=("auto", *DETECTORS, "none"),
        help="without --bbox/--openpose/--coco: "
        + "; ".join(f"{k}: {v[1]}" for k, v in DETECTORS.items())
        + f"; auto: {DEFAULT_DETECTOR}; none: the whole image",
    )
    parser.add_argument(
        "--whole-image-if-none",
        action="store_true",
        help="use the whole image as the box where the detector finds nobody (default: skip the image)",
    )
    parser.add_argument(
        "--no-refine", action="store_true", help="do not refine the bodies on the people's 2D keypoints"
    )
    parser.add_argument(
        "--flip",
        action="store_true",
        help="flip test-time augmentation: average each crop's estimate with its mirror's (twice the "
        "regressor's time; docs/evaluation.md)",
    )
    parser.add_argument(
        "--height",
        type=float,
        default=None,
        metavar="M",
        help="every person's stature in metres, when known: the body is made that tall and placed at the "
        "distance its size needs (a crop shows neither; docs/demo.md, 'Known height')",
    )
    parser.add_argument(
        "--refine-iters", type=int, default=None, help="refinement steps per person (default 40)"
    )
    parser.add_argument(
        "--refine-mask",
        default="inside",
        choices=("inside", "iou", "none"),
        help="refinement's mask term where the detector gives a person mask: inside (the body stays "
        "inside the mask, grown by 6%% of the crop; default), iou (1 - IoU with the mask), none",
    )
    parser.add_argument(
        "--smooth",
        type=float,
        default=1.5,
        help="video: Gaussian smoothing of each tracked person's parameters, in frames (0: none)",
    )
    parser.add_argument("--out", required=True, help="output folder")
    from dsrbody.cli.options import add_body_options

    add_body_options(parser, from_checkpoint=True, topology=True, checkpoint_mesh="evaluation")
    parser.add_argument("--no-mesh", action="store_true", help="do not write .obj meshes")
    parser.add_argument("--side-size", type=int, default=448, help="side-view picture size in pixels")
    parser.add_argument("--batch-size", type=int, default=16, help="crops per forward pass")
    parser.add_argument("--max-frames", type=int, default=None, help="video: stop after this many frames")
    parser.add_argument(
        "--device", default="auto", help="torch device: auto (CUDA when present, else CPU), cpu, cuda, ..."
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def _detector(args: argparse.Namespace):
    if args.bbox or args.openpose or args.coco or args.detector == "none":
        return None
    from dsrbody.demo.detect import DetectorUnavailable, make_detector

    try:
        return make_detector(args.detector)
    except DetectorUnavailable as e:
        raise CLIError(str(e)) from None


def run(args: argparse.Namespace) -> int:
    """Run ``dsrbody demo``."""
    from dsrbody.cli.eval import default_checkpoint
    from dsrbody.demo.run import BoxSource, DemoOptions, list_images, run_images, run_video
    from dsrbody.models.loader import load_model

    for opt in ("image", "video", "bbox", "openpose", "coco"):
        value = getattr(args, opt)
        if value and not Path(value).exists():
            raise FileNotFoundError(f"{value}: --{opt} does not exist")
    if args.folder and not Path(args.folder).is_dir():
        raise FileNotFoundError(f"{args.folder}: --folder is not a folder")
    if args.height is not None and not 0.3 <= args.height <= 3.0:
        raise CLIError(f"--height is a stature in metres (0.3-3), got {args.height}")
    from dsrbody.body.factory import DEFAULT_BODY_MODEL, body_spec

    if args.ckpt is None and args.body not in (None, DEFAULT_BODY_MODEL):  # the shipped model's body
        raise CLIError(
            f"the shipped model regresses {body_spec(DEFAULT_BODY_MODEL).label} bodies; "
            f"--body {args.body} needs --ckpt"
        )
    default_checkpoint(args, "demo")
    loaded = load_model(
        args.ckpt,
        body=args.body,
        model_path=args.model_path,
        gender=args.gender,
        topology=args.topology,
        device=args.device,
    )
    if not args.quiet:
        print(f"dsrbody demo: {loaded.describe()}", file=sys.stderr)
    boxes = BoxSource(
        openpose=Path(args.openpose) if args.openpose else None,
        bbox=Path(args.bbox) if args.bbox else None,
        coco=Path(args.coco) if args.coco else None,
        detector=_detector(args),
        whole_image_if_none=bool(args.whole_image_if_none),
    )
    from dsrbody.demo.refine import RefineOptions

    if args.refine_iters is not None and args.refine_iters < 1:
        raise CLIError(f"--refine-iters must be at least 1, got {args.refine_iters}")
    if args.max_frames is not None and args.max_frames < 1:
        raise CLIError(f"--max-frames must be at least 1, got {args.max_frames}")
    refine_opts = RefineOptions()
    if args.refine_iters is not None:
        refine_opts.iters = int(args.refine_iters)
    if args.refine_mask == "none":
        refine_opts.silhouette = 0.0
    else:
        refine_opts.mask_form = args.refine_mask
    options = DemoOptions(
        side_size=int(args.side_size),
        batch_size=int(args.batch_size),
        mesh=not args.no_mesh,
        progress=not args.quiet,
        refine=not args.no_refine,
        refine_options=refine_opts,
        flip=bool(args.flip),
        smooth_sigma=max(0.0, float(args.smooth)),
        height=args.height,
    )
    out = Path(args.out)
    reg = loaded.regressor
    if args.video:
        files = run_video(reg, loaded.body_name, args.video, boxes, out, options, max_frames=args.max_frames)
        summary = f"wrote {files['video']} and {files['params_npz'].name}"
    else:
        images = [Path(args.image)] if args.image else list_images(args.folder)
        written = run_images(reg, loaded.body_name, images, boxes, out, options, strict=bool(args.image))
        n_people = sum(1 for files in written.values() for f in files if f.name.endswith("_params.npz"))
        summary = f"{n_people} people from {len(written)} of {len(images)} images written to {out}"
        n_refined = sum(
            1
            for files in written.values()
            for f in files
            if f.name.endswith("_params.npz") and bool(np.load(f)["refined"])
        )
        if n_refined:
            summary += f" ({n_refined} refined on their keypoints)"
        if not written and boxes.messages:
            for m in boxes.messages:
                print(f"dsrbody demo: {m}", file=sys.stderr)
            raise CLIError(f"nothing reconstructed ({len(boxes.messages)} problems listed above)")
    for m in boxes.messages:
        print(f"dsrbody demo: {m}", file=sys.stderr)
    print(f"dsrbody demo: {summary}")
    return 0
