"""``dsrbody curve``: the learning curve of a training run (validation metrics against samples seen)."""

from __future__ import annotations

import argparse


def add_parser(parser: argparse.ArgumentParser) -> None:
    """Options of ``dsrbody curve``."""
    parser.description = (
        "Plot MPJPE, PA-MPJPE and PVE-T of a dsrbody train run's validations against the number of training "
        "samples seen, with the mean body's values (logged at the first validation) as dashed lines."
    )
    parser.add_argument(
        "run",
        nargs="+",
        help="output folder of dsrbody train (with config.yaml and csv/); several: each later run continues "
        "the one before from a checkpoint (model.init_checkpoint), drawn on one axis",
    )
    parser.add_argument("--out", required=True, help="picture to write (.png)")
    parser.add_argument("--title", default=None, help="figure title (default: the folder's name)")
    parser.add_argument(
        "--target",
        action="append",
        default=[],
        metavar="METRIC=MM",
        help="a target line, e.g. pa_mpjpe=65 (repeatable)",
    )
    parser.add_argument(
        "--zoom",
        action="store_true",
        help="fit each axis to the validation values and target, not to zero and the mean body",
    )


def run(args: argparse.Namespace) -> int:
    """Plot and print the last validation beside the mean body."""
    from dsrbody.cli import CLIError
    from dsrbody.train.curves import (
        CURVE_METRICS,
        plot_learning_curve,
        read_continued_log,
        read_validation_log,
    )

    targets = {}
    for item in args.target:
        key, _, value = item.partition("=")
        try:
            targets[key.strip()] = float(value)
        except ValueError:
            raise CLIError(f"--target {item!r}: expected METRIC=MM, e.g. pa_mpjpe=65") from None
    runs = list(args.run)
    out = plot_learning_curve(runs, args.out, title=args.title, targets=targets, zoom=args.zoom)
    log = read_continued_log(runs) if len(runs) > 1 else read_validation_log(runs[0])
    parts = []
    for key, label in CURVE_METRICS:
        if key in log:
            ref = log.reference.get(key)
            parts.append(
                f"{label} {log[key][-1]:.1f}" + (f" (mean body {ref:.1f})" if ref is not None else "")
            )
    print(f"{len(log['step'])} validations, last at {log['samples'][-1]:,} samples: " + ", ".join(parts))
    print(f"wrote {out}")
    return 0
