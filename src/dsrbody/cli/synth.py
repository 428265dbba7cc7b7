"""``dsrbody synth``: generate a synthetic clothed-human dataset (images, parsing maps, SPIN .npz)."""

from __future__ import annotations

import argparse
import os
import shlex
import sys


def add_parser(parser: argparse.ArgumentParser) -> None:
    """Options of ``dsrbody synth``."""
    parser.description = (
        "Render clothed bodies with exact pose/shape ground truth and parsing maps, written in the "
        "SPIN/DSR format: DIR/images/, DIR/grph_sequences/, DIR/synth_<split>.npz and a dataset card."
    )
    parser.add_argument("--out", required=True, help="dataset folder")
    parser.add_argument("--num", type=int, required=True, help="number of samples")
    parser.add_argument("--seed", type=int, default=0, help="random seed (train and test streams differ)")
    parser.add_argument("--split", default="train", choices=["train", "test", "val"])
    from dsrbody.cli.options import add_body_options

    add_body_options(parser, flag="--model", gender=False)
    parser.add_argument("--res", type=int, default=224, help="image side in pixels")
    parser.add_argument("--hard", action="store_true", help="heavier clothing (coats, dresses, long skirts)")
    parser.add_argument(
        "--subjects",
        type=int,
        default=0,
        metavar="K",
        help="bodies from K subjects only, fixed by --seed (a few-subject 3D set); 0: a new body per sample",
    )
    parser.add_argument(
        "--labels",
        default="full",
        choices=("full", "3d", "2d"),
        help="what the files keep: full; 3d: no pose/shape parameters; 2d: only 2D keypoints and parsing",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=min(2, os.cpu_count() or 1),
        help="processes (results do not depend on it)",
    )
    g = parser.add_mutually_exclusive_group()
    g.add_argument("--resume", action="store_true", help="continue an interrupted split")
    g.add_argument("--overwrite", action="store_true", help="replace a previous synthetic dataset in --out")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument(
        "--contact-sheet", metavar="PNG", default=None,
        help="also write a picture of the first 16 samples (image | parsing map | keypoints)",
    )  # fmt: skip


def run(args: argparse.Namespace) -> int:
    """Generate the split."""
    from dsrbody.cli import CLIError
    from dsrbody.data.synth import SynthConfig, generate
    from dsrbody.data.synth.generator import SynthError

    cfg = SynthConfig(
        num=args.num, seed=args.seed, split=args.split, model=args.model, model_path=args.model_path,
        res=args.res, hard=args.hard, subjects=args.subjects, labels=args.labels,
    )  # fmt: skip
    command = (
        "dsrbody " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if sys.argv[1:2] == ["synth"] else None
    )
    import time

    t0 = time.perf_counter()
    try:
        npz = generate(cfg, args.out, workers=args.workers, resume=args.resume, overwrite=args.overwrite,
                       progress=not args.quiet, command=command)  # fmt: skip
    except SynthError as exc:  # a dead worker, a full disk, a sample that failed: one line
        raise CLIError(str(exc)) from exc
    if not args.quiet:  # the generator's own account (samples made now, rate) is logged: dsrbody -v synth
        print(f"{npz}: {cfg.num} samples ready ({time.perf_counter() - t0:.1f} s)")
    if args.contact_sheet:
        from PIL import Image

        from dsrbody.data.synth.sheet import contact_sheet

        sheet = contact_sheet(args.out, split=args.split)
        # a 256-colour palette keeps the picture readable at a tenth of the file size
        img = Image.fromarray(sheet).quantize(
            colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE
        )
        try:
            img.save(args.contact_sheet, optimize=True)
        except (OSError, ValueError) as exc:
            raise ValueError(f"{args.contact_sheet}: could not write the contact sheet ({exc})") from None
        print(f"wrote {args.contact_sheet}")
    return 0
