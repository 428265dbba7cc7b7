"""Evaluation throughput (samples per second), without and with flip test-time augmentation.

Runs :func:`dsrbody.eval.protocols.evaluate` with the ``synth`` protocol on a synthetic test split
(``configs/synth_dsr.yaml``'s model: ResNet-18 + Anny, evaluated on the full Anny mesh), in the same
process, alternating the two settings ``--repeats`` times, and prints per setting:

- ``eval loop``: the whole loop (DataLoader: read, crop, collate; regressor; ground-truth bodies;
  metrics; the 16 worst meshes kept) in samples per second;
- ``regressor``: the predictor alone on one batch (forward; with flip: two forwards, the average, one
  more body-model pass), samples per second;

and the flip / no-flip ratios. Without ``--ckpt`` the regressor keeps its initial weights: speed does
not depend on them. Without ``--data`` a test split of ``--num`` samples is generated in a temporary
folder first (``dsrbody.data.synth.generate``).

    .venv/bin/python benchmarks/eval.py [--data DIR] [--ckpt K] [--num 64] [--batch 16] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch


def _regressor(config: str, ckpt: str | None, overrides: list[str]):
    from dsrbody.train import load_config
    from dsrbody.train.build import build_body

    cfg = load_config(config, overrides)
    if ckpt is not None:
        from dsrbody.cli.eval import load_trained

        return load_trained(cfg, ckpt)[0]
    from dsrbody.models import build_regressor

    m = cfg.model
    return build_regressor(build_body(cfg, for_eval=True), backbone=str(m.backbone), n_iter=int(m.n_iter))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="configs/synth_dsr.yaml")
    ap.add_argument("--ckpt", default=None, help="trained checkpoint (default: initial weights)")
    ap.add_argument("--data", default=None, help="folder with synth_test.npz (generated if absent)")
    ap.add_argument("--num", type=int, default=64, help="samples of the generated split")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("overrides", nargs="*", help="config overrides key=value")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)

    from dsrbody.data.spin_npz import SpinNpzDataset, collate_samples
    from dsrbody.eval.protocols import RegressorPredictor, evaluate

    tmp = None
    data = Path(args.data) if args.data else None
    if data is None or not (data / "synth_test.npz").is_file():
        from dsrbody.data.synth import SynthConfig, generate

        if data is None:
            tmp = tempfile.TemporaryDirectory()
            data = Path(tmp.name)
        t0 = time.perf_counter()
        generate(SynthConfig(num=args.num, split="test"), data, progress=False)
        print(f"generated {args.num} synthetic test samples in {time.perf_counter() - t0:.0f} s ({data})")
    npz = data / "synth_test.npz"
    torch.manual_seed(0)  # the same initial weights (and metrics) on every run
    reg = _regressor(args.config, args.ckpt, args.overrides)
    body = reg.body_model
    print(f"model: {args.config} ({body.name}, {body.num_vertices} vertices), batch {args.batch}, "
          f"{args.workers} workers, {torch.get_num_threads()} threads")  # fmt: skip

    preds = {False: RegressorPredictor(reg, flip=False), True: RegressorPredictor(reg, flip=True)}
    ds = SpinNpzDataset(npz, data, augment=False, parsing=False)
    batch = collate_samples([ds[i] for i in range(min(args.batch, len(ds)))])
    loop: dict[bool, list[float]] = {False: [], True: []}
    fwd: dict[bool, list[float]] = {False: [], True: []}
    metrics = {}
    for flip in (False, True):  # warm-up
        preds[flip](batch)
    for _ in range(args.repeats):
        for flip in (False, True):
            t0 = time.perf_counter()
            preds[flip](batch)
            fwd[flip].append(batch["img"].shape[0] / (time.perf_counter() - t0))
            res = evaluate("synth", npz, data, preds[flip], batch_size=args.batch, workers=args.workers,
                           progress=False)  # fmt: skip
            loop[flip].append(res.samples_per_second)
            metrics[flip] = res
    n = metrics[False].num_evaluated
    print(f"\nsynthetic test split: {n} samples, median of {args.repeats} runs (samples per second)")
    print(f"{'':14}{'no flip':>10}{'flip TTA':>10}{'flip/no':>9}")
    for name, d in (("eval loop", loop), ("regressor", fwd)):
        a, b = statistics.median(d[False]), statistics.median(d[True])
        print(f"{name:14}{a:10.1f}{b:10.1f}{b / a:9.2f}")
    for flip in (False, True):
        m = metrics[flip].metrics
        print(
            f"metrics {'flip TTA' if flip else 'no flip '}: "
            + ", ".join(f"{k} {v:.1f}" for k, v in m.items())
        )
    if tmp is not None:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
