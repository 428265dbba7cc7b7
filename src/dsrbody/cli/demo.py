"""``dsrbody demo``: bodies from photos, image folders and videos.

    dsrbody demo [--ckpt K] (--image P | --folder D | --video V) [--bbox JSON | --openpose DIR]
                 [--detector auto|mediapipe|none] [--model-path SMPL] --out DIR

The checkpoint may be a ``dsrbody train`` checkpoint (self-describing), SPIN's ``model_checkpoint.pt``
or DSR's ``dsr_w3DPW_checkpoint.pt`` (SMPL: ``--model-path`` with the SMPL files), or a bare regressor
state dict (``--body``). Boxes: OpenPose JSON (``--openpose``: a file, or a folder of
``<image stem>_keypoints.json``), ``[x, y, w, h]`` box JSON (``--bbox``: a file, possibly with several
boxes or a ``{"image name": box}`` map, or a folder of ``<image stem>.json``), else the optional
MediaPipe detector (``pip install 'dsrbody[detect]'``), else the whole image. Outputs: see
:mod:`dsrbody.demo.run`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

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
    parser.add_argument(
        "--detector",
        default="auto",
        choices=("auto", "mediapipe", "none"),
        help="without --bbox/--openpose: auto (MediaPipe if installed, else the whole image), "
        "mediapipe (required), none (whole image)",
    )
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument(
        "--body", default=None, choices=("anny", "smpl"), help="body model of a bare state dict"
    )
    parser.add_argument("--model-path", default=None, help="SMPL model file or folder (SMPL checkpoints)")
    parser.add_argument("--gender", default=None, choices=("neutral", "male", "female"), help="SMPL gender")
    parser.add_argument(
        "--topology", default=None, help="Anny mesh (default: the checkpoint's evaluation mesh)"
    )
    parser.add_argument("--no-mesh", action="store_true", help="do not write .obj meshes")
    parser.add_argument("--side-size", type=int, default=448, help="side-view picture size in pixels")
    parser.add_argument("--batch-size", type=int, default=16, help="crops per forward pass")
    parser.add_argument("--max-frames", type=int, default=None, help="video: stop after this many frames")
    parser.add_argument("--device", default="cpu", help="torch device (default cpu)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def _detector(args: argparse.Namespace):
    if args.bbox or args.openpose or args.detector == "none":
        return None
    from dsrbody.demo.detect import INSTALL_HINT, DetectorUnavailable, MediaPipeDetector, detector_available

    if args.detector == "auto" and not detector_available():
        print(
            f"dsrbody demo: no --bbox/--openpose and no person detector installed ({INSTALL_HINT}): "
            "the whole image is used as the person's box",
            file=sys.stderr,
        )
        return None
    try:
        return MediaPipeDetector()
    except DetectorUnavailable as e:
        raise CLIError(str(e)) from None


def run(args: argparse.Namespace) -> int:
    """Run ``dsrbody demo``."""
    from dsrbody.cli.eval import default_checkpoint
    from dsrbody.demo.model import load_model
    from dsrbody.demo.run import BoxSource, DemoOptions, list_images, run_images, run_video

    for opt in ("image", "video", "bbox", "openpose"):
        value = getattr(args, opt)
        if value and not Path(value).exists():
            raise FileNotFoundError(f"{value}: --{opt} does not exist")
    if args.folder and not Path(args.folder).is_dir():
        raise FileNotFoundError(f"{args.folder}: --folder is not a folder")
    if args.ckpt is None and args.body not in (None, "anny"):
        raise CLIError(f"the shipped model regresses Anny bodies; --body {args.body} needs --ckpt")
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
        detector=_detector(args),
    )
    options = DemoOptions(
        side_size=int(args.side_size),
        batch_size=int(args.batch_size),
        mesh=not args.no_mesh,
        progress=not args.quiet,
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
        if not written and boxes.messages:
            for m in boxes.messages:
                print(f"dsrbody demo: {m}", file=sys.stderr)
            raise CLIError(f"nothing reconstructed ({len(boxes.messages)} problems listed above)")
    for m in boxes.messages:
        print(f"dsrbody demo: {m}", file=sys.stderr)
    print(f"dsrbody demo: {summary}")
    return 0
