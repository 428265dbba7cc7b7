"""``dsrbody fetch``: the public weights and data, with checksums, resume and progress.

dsrbody fetch --list
dsrbody fetch spin [--out data]               # data.tar.gz, dataset_extras.tar.gz, model_checkpoint.pt
dsrbody fetch imagenet-resnet50 [--out data]  # torchvision's ImageNet ResNet-50: model.pretrained_backbone
dsrbody fetch spin --url http://mirror.example/spin/   # a mirror (file names appended)
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(parser: argparse.ArgumentParser) -> None:
    """Options of ``dsrbody fetch``."""
    from dsrbody.data.fetch import DEFAULT_OUT, asset_names

    parser.description = (
        "Download the public weights and data into a data folder: SPIN's data (model constants, "
        "evaluation .npz files, released checkpoint) and torchvision's ImageNet ResNet-50. Downloads are "
        "resumed after an interruption, checked against SHA-256 checksums and unpacked safely. Licensed "
        "files (SMPL, DSR checkpoints, the datasets) need a registration: see the README."
    )
    parser.add_argument(
        "asset", nargs="?", metavar="ASSET", help=f"what to fetch: {', '.join(asset_names())} (see --list)"
    )
    parser.add_argument("--list", action="store_true", help="list the assets, their sources and checksums")
    parser.add_argument(
        "--out", default=DEFAULT_OUT, help=f"data folder (default: {DEFAULT_OUT}/, data.root)"
    )
    parser.add_argument(
        "--url",
        action="append",
        default=[],
        metavar="URL",
        help="source replacing the registry's (repeat for mirrors): the file's URL, a folder URL ending in / "
        "(file names appended; always so for a bundle such as spin), or ASSET=URL for one file of a bundle",
    )
    parser.add_argument(
        "--sha256",
        action="append",
        default=[],
        metavar="HEX",
        help="pin the expected SHA-256 (HEX, or ASSET=HEX for one file of a bundle); replaces the registry's",
    )
    parser.add_argument("--force", action="store_true", help="download again even when the files are there")
    parser.add_argument(
        "--keep-archive", action="store_true", help="keep downloaded archives in OUT/.fetch/ after unpacking"
    )
    parser.add_argument(
        "--retries", type=int, default=3, help="resume attempts of a cut download (default 3)"
    )
    parser.add_argument("--timeout", type=float, default=30.0, help="network timeout in seconds (default 30)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def _next_steps(name: str, out: Path, results) -> list[str]:
    lines: list[str] = []
    if name == "spin":
        lines += [
            "next: the licensed files (see the README, 'Real weights and data'):",
            "  SMPL_NEUTRAL.pkl (+ SMPL_MALE.pkl, SMPL_FEMALE.pkl for 3DPW) from https://smpl.is.tue.mpg.de "
            f"-> {out / 'smpl'}/",
            f"  evaluate SPIN: dsrbody eval --dataset 3dpw --data-root {out} "
            f"--ckpt {out / 'model_checkpoint.pt'} --smpl-dir {out / 'smpl'}",
        ]
    for r in results:
        if r.asset.check == "resnet50":
            path = out / r.asset.filename
            lines += [
                "use it as the backbone's ImageNet start (config override):",
                f"  model.backbone=resnet50 model.pretrained_backbone={path}",
                f"  e.g. dsrbody train --config configs/dsr_paper.yaml data.root={out} "
                f"model.init_checkpoint=null model.pretrained_backbone={path}",
            ]
    return lines


def run(args: argparse.Namespace) -> int:
    """Fetch, then print what is where and what to do next."""
    from dsrbody.cli import CLIError
    from dsrbody.data.fetch import FetchError, fetch, format_asset_list, split_overrides

    if args.list:
        print(format_asset_list())
        return 0
    if not args.asset:
        raise CLIError("name what to fetch (e.g. `dsrbody fetch spin`), or --list to see the assets")
    if args.retries < 0:
        raise CLIError(f"--retries must be >= 0, got {args.retries}")
    out = Path(args.out)
    try:
        urls, shas = split_overrides(args.asset, args.url, args.sha256)
        results = fetch(
            args.asset,
            out,
            urls=urls,
            sha256=shas,
            force=args.force,
            keep_archive=args.keep_archive,
            retries=args.retries,
            timeout=args.timeout,
            progress=False if args.no_progress else None,
        )
    except FetchError as e:
        raise CLIError(str(e)) from None
    for r in results:
        what = "downloaded" if r.status == "downloaded" else "already there"
        files = r.files if len(r.files) <= 4 else [*r.files[:3], f"... ({len(r.files)} files)"]
        print(f"{r.asset.name}: {what}: {', '.join(str(f) for f in files)}")
        if r.sha256:
            print(f"  sha256 {r.sha256}")
        for note in r.notes:
            print(f"  {note}")
    for line in _next_steps(args.asset, out, results):
        print(line)
    return 0
