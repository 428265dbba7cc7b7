"""``dsrbody export``: inference weights of a training checkpoint (what the shipped model is).

dsrbody export --ckpt runs/cpu/checkpoints/best.ckpt --out model.pt [--fp32]
"""

from __future__ import annotations

import argparse


def add_parser(parser: argparse.ArgumentParser) -> None:
    """Options of ``dsrbody export``."""
    parser.description = (
        "Write the inference weights of a dsrbody train checkpoint: its self-description and the regressor "
        "weights (fp16 by default), no optimiser or loop state. demo, eval, fit and model.init_checkpoint "
        "read the file like any dsrbody checkpoint."
    )
    parser.add_argument("--ckpt", required=True, help="checkpoint of dsrbody train (best.ckpt, last.ckpt)")
    parser.add_argument("--out", required=True, help="file to write (.pt)")
    parser.add_argument("--fp32", action="store_true", help="keep float32 weights (default: fp16)")


def run(args: argparse.Namespace) -> int:
    """Export and print the file's size."""
    from dsrbody.models.shipped import export_inference

    out = export_inference(args.ckpt, args.out, half=not args.fp32)
    print(f"wrote {out} ({out.stat().st_size / 2**20:.1f} MiB, {'fp32' if args.fp32 else 'fp16'})")
    return 0
