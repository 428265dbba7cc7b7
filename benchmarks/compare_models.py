"""Two or more regressors on the same held-out synthetic samples, with the uncertainty of their difference.

A 256-person split measures one model's PA-MPJPE to about +-2 mm and the difference between two similar
models, paired per sample, to about +-0.8 mm (one standard error): per-sample differences spread by
12-15 mm. Improvements of a millimetre or two between training stages need more samples than that to be
told from noise. This script runs each checkpoint on every sample of the given ``dsrbody synth`` folders
(the metrics of ``dsrbody eval``: :func:`dsrbody.eval.synth_eval.batch_metrics` on the full Anny mesh),
and prints per model the mean and its standard error, then per later model the mean paired difference
to the first, its standard error and their ratio (``z``; |z| > 2 is a difference the samples support).

    .venv/bin/python benchmarks/compare_models.py --data DATA/test128_big --ckpt shipped --ckpt RUN/best.ckpt
        [--flip] [--json out.json]

A larger split for it: ``dsrbody synth --out DATA/test128_big --num 2048 --split test --seed 11 --res 128``
(a seed no recipe trains on; 85 s with one worker here).
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np
import torch


def per_sample(
    ckpt: str, folders: list[Path], flip: bool, batch_size: int, body_model_path: str | None = None
) -> dict[str, np.ndarray]:
    """``{metric: (N,) mm}`` of one checkpoint over the folders' samples, in order (NaN where a metric
    does not apply). A gendered body model's samples with a ``gender`` are scored against that gender's
    model, which ``dsrbody synth`` rendered (as ``dsrbody eval``), from ``body_model_path`` or the
    checkpoint recipe's ``body.model_path``."""
    from torch.utils.data import DataLoader

    from dsrbody.body.factory import body_spec
    from dsrbody.data import SpinNpzDataset, collate_samples
    from dsrbody.eval.metrics import eval_joints
    from dsrbody.eval.protocols import FlipAveraged
    from dsrbody.eval.synth_eval import batch_metrics, gender_models
    from dsrbody.models.loader import load_model
    from dsrbody.models.shipped import shipped_model_path

    loaded = load_model(str(shipped_model_path()) if ckpt == "shipped" else ckpt)
    reg = loaded.regressor.eval()
    body = reg.body_model  # the recipe's evaluation mesh (the full Anny mesh), as dsrbody eval
    path = body_model_path or ((loaded.meta.get("config") or {}).get("body") or {}).get("model_path")
    gt_models = gender_models(body, path)
    joints = eval_joints(body)
    model = FlipAveraged(reg) if flip else reg
    out: dict[str, list[np.ndarray]] = {}
    for folder in folders:
        (npz,) = sorted(folder.glob("synth_*.npz"))
        ds = SpinNpzDataset(npz, folder, parsing=False, res=int(reg.img_res))
        spec = body_spec(str(body.name), missing_ok=True)
        if gt_models is None and spec is not None and spec.gendered and np.isin(ds.gender, (0, 1)).any():
            raise SystemExit(
                f"{npz}: male and female {body.name} bodies; pass --body-model-path, the folder with the "
                "male and female files"
            )
        for batch in DataLoader(ds, batch_size=batch_size, collate_fn=collate_samples):
            with torch.no_grad():
                pred = model(batch["img"])
            for k, v in batch_metrics(pred, batch, body, joints, gt_models=gt_models).items():
                out.setdefault(k, []).append(v.double().numpy())
    return {k: np.concatenate(v) for k, v in out.items()}


def _mean_se(x: np.ndarray) -> tuple[float, float, int]:
    x = x[np.isfinite(x)]
    if len(x) < 2:
        return math.nan, math.nan, len(x)
    return float(x.mean()), float(x.std(ddof=1) / math.sqrt(len(x))), len(x)


def _z(mean: float, se: float) -> float:
    """``mean / se``; 0 for a difference of exactly nothing, NaN for an undefined one."""
    if se > 0:
        return mean / se
    return 0.0 if mean == 0 else math.nan


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", nargs="+", required=True, help="dsrbody synth folders (held out)")
    ap.add_argument(
        "--ckpt", action="append", required=True, help="a checkpoint, or 'shipped'; twice or more"
    )
    ap.add_argument("--flip", action="store_true", help="flip test-time augmentation for every model")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--metrics", nargs="+", default=["mpjpe", "pa_mpjpe", "pve", "pve_t", "pve_t_sc"])
    ap.add_argument("--json", help="write the table here")
    ap.add_argument(
        "--body-model-path",
        help="SMPL checkpoints: the folder with the male and female files (default: the recipe's)",
    )
    args = ap.parse_args(argv)
    if len(args.ckpt) < 2:
        raise SystemExit("--ckpt: give two checkpoints or more (the first is the baseline)")
    torch.set_num_threads(1)
    folders = [Path(d) for d in args.data]
    for f in folders:
        if not any(f.glob("synth_*.npz")):
            raise SystemExit(f"{f}: no synth_<split>.npz (a dsrbody synth folder)")
    results = {c: per_sample(c, folders, args.flip, args.batch_size, args.body_model_path) for c in args.ckpt}
    n = len(next(iter(results[args.ckpt[0]].values())))
    print(f"{n} samples from {', '.join(str(f) for f in folders)}" + (", flip TTA" if args.flip else ""))
    table: dict = {"samples": n, "flip": args.flip, "models": {}, "differences": {}}
    print(f"{'model':<40} " + " ".join(f"{m:>16}" for m in args.metrics))
    for c in args.ckpt:
        cells = [_mean_se(results[c][m]) for m in args.metrics]
        table["models"][c] = {m: {"mean": a, "se": s, "n": k} for m, (a, s, k) in zip(args.metrics, cells)}
        print(f"{c[-40:]:<40} " + " ".join(f"{a:>9.2f} +-{s:4.2f}" for a, s, _ in cells))
    base = results[args.ckpt[0]]
    for c in args.ckpt[1:]:
        cells = [_mean_se(results[c][m] - base[m]) for m in args.metrics]
        table["differences"][c] = {
            m: {"mean": a, "se": s, "z": _z(a, s)} for m, (a, s, _) in zip(args.metrics, cells)
        }
        label = f"{c[-30:]} - first"  # the marker survives a long path
        print(f"{label:<40} " + " ".join(f"{a:>+7.2f} z{_z(a, s):>+6.1f}" for a, s, _ in cells))
    if args.json:
        Path(args.json).write_text(json.dumps(table, indent=2))


if __name__ == "__main__":
    main()
