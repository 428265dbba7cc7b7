"""``dsrbody cache``: build the frozen backbone's feature caches of a recipe's datasets, in parallel.

dsrbody cache --config configs/synth_blazepose_tuned8.yaml --jobs 2 data.root=DATA
"""

from __future__ import annotations

import argparse

SPLITS = ("train", "val", "test")


def add_parser(parser: argparse.ArgumentParser) -> None:
    """Options of ``dsrbody cache``."""
    parser.description = (
        "Build the feature caches that a recipe with model.feature_cache (the BlazePose recipes) reads: "
        "the frozen part of its backbone run once on every sample of its training and validation files, "
        "JOBS files at a time in as many processes (dsrbody train builds missing ones itself, one after "
        "the other, in its own process). Caches already built are kept; a killed build resumes."
    )
    parser.add_argument(
        "--config", required=True, help="YAML recipe (configs/synth_blazepose_tuned8.yaml, ...)"
    )
    parser.add_argument(
        "--jobs",
        type=int,
        default=1,
        help="processes, one file each at a time (default 1; the number of cores is the useful most)",
    )
    parser.add_argument(
        "--splits",
        nargs="+",
        default=["train", "val"],
        metavar="{train,val,test}",
        help="which of the recipe's data.train / data.val / data.test to cache (default: train val, "
        "what training reads); KEY=VALUE overrides may follow",
    )
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides (data.root=DATA)")


def run(args: argparse.Namespace) -> int:
    """Build the caches; print one line per cache file and the time taken."""
    import time

    from dsrbody.cli import CLIError
    from dsrbody.train import load_config
    from dsrbody.train.build import build_feature_caches

    if args.jobs < 1:
        raise CLIError(f"--jobs must be at least 1, got {args.jobs}")
    # --splits takes every word after it, so overrides written after it arrive there: move them back
    args.overrides = [*args.overrides, *(s for s in args.splits if "=" in s)]
    args.splits = [s for s in args.splits if "=" not in s]
    if not args.splits or any(s not in SPLITS for s in args.splits):
        got = " ".join(args.splits) or "none"
        raise CLIError(f"--splits: expected some of {', '.join(SPLITS)}, got {got}")
    cfg = load_config(args.config, args.overrides)
    t0 = time.perf_counter()
    rows = build_feature_caches(cfg, jobs=args.jobs, splits=tuple(args.splits))
    for path, n, built in rows:
        print(f"{path}: {n} samples ({'built' if built else 'already there'})")
    print(
        f"{len(rows)} cache file(s) of backbone {cfg.model.backbone} ready ({time.perf_counter() - t0:.1f} s)"
    )
    return 0
