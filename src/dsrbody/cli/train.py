"""``dsrbody train``: train a regressor from a YAML recipe (``configs/*.yaml``)."""

from __future__ import annotations

import argparse


def add_parser(parser: argparse.ArgumentParser) -> None:
    """Options of ``dsrbody train``."""
    parser.description = (
        "Train the HMR regressor with SPIN and DSR losses from a YAML recipe. Overrides are key=value "
        "pairs in the recipe's dotted keys, e.g. trainer.max_epochs=3 optim.lr=1e-4 data.root=DATA. "
        "Writes OUT/config.yaml, OUT/checkpoints/{last,best}.ckpt, TensorBoard and CSV logs."
    )
    parser.add_argument("--config", required=True, help="YAML recipe (configs/synth_dsr.yaml, ...)")
    parser.add_argument(
        "--out", default=None, help="output folder (default: out_dir, or outputs/train/<name>)"
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue from OUT/checkpoints/last.ckpt (epoch, step, optimiser)",
    )
    parser.add_argument(
        "--resume-if-any",
        action="store_true",
        help="resume when OUT/checkpoints/last.ckpt exists, else start (for scripts that may be rerun)",
    )
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides")


def run(args: argparse.Namespace) -> int:
    """Train; prints the checkpoint to use."""
    from dsrbody.train import load_config
    from dsrbody.train.run import output_dir, run_training

    cfg = load_config(args.config, args.overrides)
    resume = args.resume or (
        args.resume_if_any and (output_dir(cfg, args.out) / "checkpoints" / "last.ckpt").is_file()
    )
    res = run_training(cfg, out_dir=args.out, resume=resume)
    from lightning.pytorch.utilities import rank_zero_only

    if rank_zero_only.rank == 0:
        score = res.metrics.get("val/score")
        extra = f", validation score {score:.1f} mm" if score is not None else ""
        print(f"trained {res.epoch} epoch(s), {res.global_step} step(s){extra}")
        print(res.skip_summary())
        print(f"checkpoint: {res}")
        print(f"last: {res.last}")
    return 0
