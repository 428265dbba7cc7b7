"""DSR ablation on synthetic data (issue 6; the paper's Table 4 question, on `dsrbody synth` data).

With the same seed, data, data order, initial weights and step budget, train the synthetic recipe with

    a  keypoints only: SPIN's terms (2D + 3D keypoints, pose/shape parameters, camera)
    b  a + a naive silhouette loss (1 - IoU of the rendered body and the whole clothed-person mask)
    c  a + DSR-MC
    d  a + DSR-C
    e  a + DSR-MC + DSR-C

evaluate each final checkpoint on the synthetic test split (and on a ``--hard`` clothing test split)
and print the table: PVE-T, PVE, PA-MPJPE, MPJPE (mm), the rest-pose volume ratio prediction / ground
truth (> 1: inflated bodies; the paper predicts that (b) inflates them) and the training wall time.

Everything goes under ``--out`` (default ``outputs/ablation``)::

    OUT/data/        synthetic train + test split      OUT/data_hard/  hard-clothing test split
    OUT/runs/<variant>_s<seed>/   training output (checkpoints, logs) and result.json
    OUT/results.json              every run's numbers     OUT/table.md   the tables

``--doc docs/ablation.md`` also replaces the text between the markers ``<!-- ablation:begin -->`` and
``<!-- ablation:end -->`` of that file with the tables and the exact command. ``--skip-done`` keeps runs
whose result.json exists (to continue an interrupted ablation or add seeds).

Example (the 192-step budget of docs/ablation.md, about 20 min on an idle 2-core CPU)::

    .venv/bin/python benchmarks/dsr_ablation.py --num-train 192 --num-test 32 --hard-test 32 \
        --epochs 16 --start-dsr -1 --noise-seeds 1 --doc docs/ablation.md

A bigger budget (e.g. on a GPU), with a second seed of (a) and (e) for the run-to-run spread::

    .venv/bin/python benchmarks/dsr_ablation.py --num-train 2048 --num-test 256 --hard-test 256 --epochs 30 \
        --accelerator gpu --device cuda --noise-seeds 1 2 --doc docs/ablation.md
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

VARIANTS: dict[str, tuple[str, dict[str, float]]] = {
    "a": ("keypoints only (SPIN terms)", {"dsr_mc": 0.0, "dsr_c": 0.0, "silhouette": 0.0}),
    "b": ("a + naive silhouette", {"dsr_mc": 0.0, "dsr_c": 0.0, "silhouette": None}),
    "c": ("a + DSR-MC", {"dsr_mc": None, "dsr_c": 0.0, "silhouette": 0.0}),
    "d": ("a + DSR-C", {"dsr_mc": 0.0, "dsr_c": None, "silhouette": 0.0}),
    "e": ("a + DSR-MC + DSR-C", {"dsr_mc": None, "dsr_c": None, "silhouette": 0.0}),
}
METRICS = ("pve_t", "pve", "pa_mpjpe", "mpjpe")
LABELS = {"pve_t": "PVE-T", "pve": "PVE", "pa_mpjpe": "PA-MPJPE", "mpjpe": "MPJPE"}
BEGIN, END = "<!-- ablation:begin -->", "<!-- ablation:end -->"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter
    )
    p.add_argument(
        "--config", default="configs/synth_dsr.yaml", help="base recipe (its DSR settings, network)"
    )
    p.add_argument("--out", default="outputs/ablation", help="output folder")
    p.add_argument("--data", default=None, help="synthetic data folder (default OUT/data)")
    p.add_argument("--hard-data", default=None, help="hard-clothing test folder (default OUT/data_hard)")
    p.add_argument("--num-train", type=int, default=192, help="training samples")
    p.add_argument("--num-test", type=int, default=32, help="test samples")
    p.add_argument("--hard-test", type=int, default=32, help="hard-clothing test samples (0: none)")
    p.add_argument("--reuse-data", action="store_true", help="use the data already in the folders (checked)")
    p.add_argument(
        "--recipe-data",
        action="store_true",
        help="train and test on the recipe's own data sets under --data (data.root; e.g.\n"
        "configs/synth_regime.yaml): nothing is generated, --num-* are ignored",
    )
    p.add_argument(
        "--hard-npz", default=None, help="with --recipe-data: the hard-clothing test .npz (images beside)"
    )
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--synth-workers", type=int, default=2, help="processes of dsrbody synth")
    p.add_argument("--epochs", type=int, default=10, help="training epochs (epoch = the training set)")
    p.add_argument("--max-steps", type=int, default=-1, help="also stop after this many steps (-1: no limit)")
    p.add_argument("--batch-size", type=int, default=None, help="default: the recipe's")
    p.add_argument(
        "--start-dsr",
        type=int,
        default=None,
        help="DSR/silhouette on when epoch > this (default: the recipe's)",
    )
    p.add_argument("--dsr-weight", type=float, default=0.1, help="weight of DSR-MC and DSR-C when on")
    p.add_argument(
        "--silhouette-weight", type=float, default=0.1, help="weight of the silhouette term in (b)"
    )
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    p.add_argument("--seed", type=int, default=0, help="seed of every variant")
    p.add_argument("--noise-seeds", type=int, nargs="*", default=[], help="extra seeds for --noise-variants")
    p.add_argument("--noise-variants", nargs="+", default=["a", "e"], choices=list(VARIANTS))
    p.add_argument("--accelerator", default="cpu", help="trainer.accelerator (cpu, gpu)")
    p.add_argument("--device", default="cpu", help="torch device of the evaluation")
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="more recipe overrides")
    p.add_argument("--no-reference", dest="reference", action="store_false",
                   help="leave out the untrained-network row")  # fmt: skip
    p.add_argument("--skip-done", action="store_true", help="keep runs whose result.json exists")
    p.add_argument("--doc", default=None, help="markdown file whose ablation block gets the tables")
    p.add_argument(
        "--quick",
        action="store_true",
        help="smoke test: variants a and e, 2 steps of 2 samples (and 8/4/4 generated samples)",
    )
    args = p.parse_args(argv)
    if args.quick:
        args.num_train, args.num_test, args.hard_test = 8, 4, 4
        args.max_steps, args.batch_size, args.variants, args.noise_seeds = 2, 2, ["a", "e"], []
    return args


# ----------------------------------------------------------------------------------------------- data
def _count(npz: Path) -> int:
    import numpy as np

    with np.load(npz, allow_pickle=False) as z:
        return int(z["imgname"].shape[0])


def ensure_split(folder: Path, split: str, num: int, hard: bool, reuse: bool, workers: int) -> float:
    """Make (or, with ``reuse``, check) ``folder/synth_<split>.npz`` with ``num`` samples; seconds spent."""
    npz = folder / f"synth_{split}.npz"
    if reuse and npz.is_file():
        have = _count(npz)
        if have != num:
            raise ValueError(f"{npz}: has {have} samples, the ablation asks for {num} (drop --reuse-data)")
        return 0.0
    cmd = [
        sys.executable,
        "-m",
        "dsrbody.cli",
        "synth",
        "--out",
        str(folder),
        "--num",
        str(num),
        "--split",
        split,
        "--workers",
        str(workers),
        "--quiet",
    ]
    cmd += ["--hard"] if hard else []
    cmd += ["--overwrite"] if npz.is_file() else []
    t0 = time.perf_counter()
    print("+", shlex.join(cmd), flush=True)
    subprocess.run(cmd, check=True)
    return time.perf_counter() - t0


# ----------------------------------------------------------------------------------------- training
def variant_overrides(v: str, args: argparse.Namespace) -> list[str]:
    """Recipe overrides of variant ``v`` (loss weights; the rest is shared by every variant)."""
    on = {"dsr_mc": args.dsr_weight, "dsr_c": args.dsr_weight, "silhouette": args.silhouette_weight}
    return [f"loss.weights.{k}={on[k] if w is None else w}" for k, w in VARIANTS[v][1].items()]


def common_overrides(args: argparse.Namespace, data: Path, seed: int) -> list[str]:
    """Overrides shared by every run: data, seed, budget, no validation (the final state is evaluated)."""
    ov = [
        f"data.root={data}",
        f"seed={seed}",
        f"trainer.max_epochs={args.epochs}",
        f"trainer.max_steps={args.max_steps}",
        f"trainer.accelerator={args.accelerator}",
        "trainer.devices=1",
        "trainer.progress_bar=false",
        "logging.images_every_n_steps=0",
    ]
    if args.batch_size is not None:
        ov.append(f"data.batch_size={args.batch_size}")
    if args.start_dsr is not None:
        ov.append(f"loss.start_dsr={args.start_dsr}")
    return ov + list(args.set)


def evaluate_run(cfg, ckpt: Path | None, device: str, model: tuple | None = None) -> dict[str, Any]:
    """Metrics (mm) of ``ckpt`` (or of ``model`` = ``(regressor, eval body model)``) on ``cfg``'s test
    split, plus the mean rest-pose volume ratio prediction / ground truth."""
    from torch.utils.data import DataLoader

    from dsrbody.cli.eval import load_trained
    from dsrbody.data import collate_samples
    from dsrbody.eval.metrics import eval_joints
    from dsrbody.eval.synth_eval import evaluate
    from dsrbody.geometry.mesh import mesh_volume
    from dsrbody.losses.targets import gt_body, params_valid
    from dsrbody.train.build import build_eval_set

    reg, body = load_trained(cfg, ckpt, device) if model is None else model
    dataset = build_eval_set(cfg, "test")
    loader = DataLoader(
        dataset,
        batch_size=int(cfg.data.val_batch_size),
        shuffle=False,
        num_workers=0,
        collate_fn=collate_samples,
    )
    faces = body.faces
    ratios: list[torch.Tensor] = []

    def on_batch(batch, pred):
        valid = params_valid(batch, str(body.name))
        if not valid.any():
            return
        d = faces.device
        p = body(
            pred["rotmat"][valid.to(pred["rotmat"].device), 0].to(d),
            pred["rotmat"][valid.to(pred["rotmat"].device), 1:].to(d),
            pred["shape"][valid.to(pred["shape"].device)].to(d),
        )
        g = gt_body(body, batch, valid)
        ratios.append((mesh_volume(p.rest_vertices, faces) / mesh_volume(g.rest_vertices, faces)).cpu())

    with torch.no_grad():
        res = evaluate(reg, body, loader, eval_joints(body), device=device, progress=False, on_batch=on_batch)
    r = torch.cat(ratios) if ratios else torch.empty(0)
    res["volume_ratio"] = float(r.mean()) if r.numel() else float("nan")
    res["volume_ratio_sd"] = float(r.std()) if r.numel() > 1 else float("nan")
    return res


def hard_config(args: argparse.Namespace, ov: list[str], hard: Path):
    """The recipe evaluating the hard-clothing test split: ``hard`` as ``data.root`` (generated data)
    or, with ``--hard-npz``, that file as ``data.test``."""
    from dsrbody.train import load_config

    if args.hard_npz:
        return load_config(
            args.config, [*ov, f"data.test.0.npz={hard}", f"data.test.0.img_dir={hard.parent}"]
        )
    return load_config(args.config, [*ov, f"data.root={hard}"])


def finished_training(run_dir: Path, args: argparse.Namespace):
    """The training result of ``run_dir`` when its ``last.ckpt`` reached the step budget
    (``--max-steps``), else None."""
    from types import SimpleNamespace

    last = run_dir / "checkpoints" / "last.ckpt"
    if args.max_steps <= 0 or not last.is_file():
        return None
    state = torch.load(last, map_location="cpu", weights_only=True, mmap=True)
    if int(state.get("global_step", -1)) < args.max_steps:
        return None
    # wall time: from the run's resolved recipe (written first) to its last checkpoint
    config = run_dir / "config.yaml"
    wall = last.stat().st_mtime - config.stat().st_mtime if config.is_file() else None
    return SimpleNamespace(
        last=last, global_step=int(state["global_step"]), epoch=int(state.get("epoch", 0)), metrics={},
        wall_s=wall,
    )  # fmt: skip


def run_one(v: str, seed: int, args: argparse.Namespace, out: Path, data: Path, hard: Path | None) -> dict:
    """Train variant ``v`` with ``seed``, evaluate it; the result dict (also written to result.json)."""
    from dsrbody.train import load_config, run_training

    run_dir = out / "runs" / f"{v}_s{seed}"
    res_file = run_dir / "result.json"
    if args.skip_done and res_file.is_file():
        print(f"[{v} seed {seed}] kept {res_file}", flush=True)
        return json.loads(res_file.read_text())
    ov = common_overrides(args, data, seed) + variant_overrides(v, args)
    cfg = load_config(args.config, ov + ["data.val=[]"])
    load0 = os.getloadavg()[0]
    t0, c0 = time.perf_counter(), time.process_time()
    ckpt = finished_training(run_dir, args) if args.skip_done else None
    if ckpt is not None:  # trained to the budget, not evaluated (e.g. stopped in the evaluation)
        print(f"[{v} seed {seed}] kept the finished training in {run_dir}", flush=True)
    else:
        if run_dir.exists():
            import shutil

            shutil.rmtree(run_dir)
        print(
            f"[{v} seed {seed}] {VARIANTS[v][0]}: training ({' '.join(variant_overrides(v, args))})",
            flush=True,
        )
        ckpt = run_training(cfg, out_dir=run_dir)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    if getattr(ckpt, "wall_s", None) is not None:
        wall, cpu = ckpt.wall_s, math.nan
    load1 = os.getloadavg()[0]
    result: dict[str, Any] = {
        "variant": v,
        "label": VARIANTS[v][0],
        "seed": seed,
        "overrides": ov,
        "train_wall_s": wall,
        "train_cpu_s": cpu,
        "loadavg_start": load0,
        "loadavg_end": load1,
        "steps": int(ckpt.global_step),
        "epochs": int(ckpt.epoch),
        "final_train_loss": ckpt.metrics.get("train/loss_epoch", ckpt.metrics.get("train/loss")),
    }
    t0 = time.perf_counter()
    result["test"] = evaluate_run(load_config(args.config, ov), ckpt.last, args.device)
    if hard is not None:
        result["hard"] = evaluate_run(hard_config(args, ov, hard), ckpt.last, args.device)
    result["eval_wall_s"] = time.perf_counter() - t0
    res_file.write_text(json.dumps(result, indent=2) + "\n")
    t = result["test"]
    print(
        f"[{v} seed {seed}] {wall:.0f} s, {result['steps']} steps: PVE-T {t['pve_t']:.1f} PVE {t['pve']:.1f} "
        f"PA-MPJPE {t['pa_mpjpe']:.1f} MPJPE {t['mpjpe']:.1f} mm, volume x{t['volume_ratio']:.3f}",
        flush=True,
    )
    return result


def untrained_reference(args: argparse.Namespace, data: Path, hard: Path | None) -> dict:
    """The network every run starts from (seeded like every run: untrained, its head at the body
    model's mean parameters, or the recipe's ``model.init_checkpoint``), evaluated like the trained
    ones: what 0 steps give."""
    from dsrbody.train import load_config
    from dsrbody.train.build import build_body, build_model

    ov = common_overrides(args, data, args.seed)
    cfg = load_config(args.config, ov)
    load = os.getloadavg()[0]
    torch.manual_seed(args.seed)
    body = build_body(cfg, for_eval=True)
    reg = build_model(cfg, body).to(args.device).eval()
    label = "start: model.init_checkpoint (0 steps)" if cfg.model.init_checkpoint else "untrained network"
    result: dict[str, Any] = {
        "variant": "0", "label": label, "seed": args.seed, "overrides": ov,
        "train_wall_s": 0.0, "train_cpu_s": 0.0, "loadavg_start": load, "loadavg_end": load, "steps": 0,
        "epochs": 0, "final_train_loss": None,
    }  # fmt: skip
    result["test"] = evaluate_run(cfg, None, args.device, model=(reg, body))
    if hard is not None:
        result["hard"] = evaluate_run(hard_config(args, ov, hard), None, args.device, model=(reg, body))
    print(f"[untrained] PVE-T {result['test']['pve_t']:.1f} mm, volume x{result['test']['volume_ratio']:.3f}")
    return result


# ------------------------------------------------------------------------------------------- report
def _fmt(x: Any, nd: int = 1) -> str:
    return "n/a" if x is None or x != x else f"{x:.{nd}f}"


def tables(results: list[dict], has_hard: bool) -> str:
    """Markdown tables of the results (one per test split; seeds side by side as rows)."""
    lines: list[str] = []
    splits = [("test", "synthetic test split")] + ([("hard", "hard-clothing test split")] if has_hard else [])
    for key, title in splits:
        lines += [
            f"**{title}** (mm; volume = predicted / ground-truth rest-pose body volume, mean over samples)",
            "",
        ]
        lines.append("| variant | seed | PVE-T | PVE | PA-MPJPE | MPJPE | volume | train wall | steps |")
        lines.append("|---|---|---|---|---|---|---|---|---|")
        for r in results:
            m = r.get(key)
            if m is None:
                continue
            vals = " | ".join(_fmt(m.get(k)) for k in METRICS)
            lines.append(
                f"| ({r['variant']}) {r['label']} | {r['seed']} | {vals} | {_fmt(m.get('volume_ratio'), 3)} "
                f"| {r['train_wall_s'] / 60:.1f} min | {r['steps']} |"
            )
        by_variant: dict[str, list[dict]] = {}
        for r in results:
            if r.get(key) is not None and r["steps"] > 0:
                by_variant.setdefault(r["variant"], []).append(r[key])
        for v, runs in by_variant.items():
            if len(runs) < 2:
                continue
            cells = []
            for k in (*METRICS, "volume_ratio"):
                x = np.array([m.get(k, np.nan) for m in runs], dtype=float)
                nd = 3 if k == "volume_ratio" else 1
                cells.append(f"{x.mean():.{nd}f} ± {x.std(ddof=1):.{nd}f}")
            lines.append(f"| ({v}) mean ± sd over {len(runs)} seeds | | " + " | ".join(cells) + " | | |")
        lines.append("")
    return "\n".join(lines)


def plot(results: list[dict], path: Path, has_hard: bool) -> Path:
    """PVE-T and volume ratio per variant: every seed as a dot, the mean over seeds as a bar with
    +- one standard deviation where there are several; the start (row 0) as a dashed line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    splits = [("test", "test split")] + ([("hard", "hard-clothing split")] if has_hard else [])
    variants = [v for v in VARIANTS if any(r["variant"] == v for r in results)]
    fig, axes = plt.subplots(len(splits), 2, figsize=(9, 3.2 * len(splits)), squeeze=False)
    for i, (key, title) in enumerate(splits):
        for j, (m, label) in enumerate((("pve_t", "PVE-T (mm)"), ("volume_ratio", "volume ratio"))):
            ax = axes[i, j]
            for x, v in enumerate(variants):
                vals = np.array([r[key][m] for r in results if r["variant"] == v and r.get(key)], dtype=float)
                ax.scatter(np.full(len(vals), x), vals, color="C0", s=14, zorder=3)
                if len(vals) > 1:
                    ax.errorbar(x + 0.15, vals.mean(), yerr=vals.std(ddof=1), fmt="s", color="C1", capsize=4)
            ref = next((r[key][m] for r in results if r["variant"] == "0" and r.get(key)), None)
            if ref is not None:
                ax.axhline(ref, color="grey", ls="--", lw=1, label="start (0 steps)")
            if m == "volume_ratio":
                ax.axhline(1.0, color="black", ls=":", lw=1, label="true volume")
            ax.set_xticks(range(len(variants)), [f"({v})" for v in variants])
            ax.set_title(f"{title}: {label}", fontsize=10)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
    fig.suptitle("Training ablation: dots = seeds, squares = mean +- sd over seeds", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_doc(doc: Path, block: str) -> None:
    """Replace the marked block of ``doc`` (or append one) with ``block``."""
    text = doc.read_text() if doc.is_file() else "# DSR ablation on synthetic data\n\n"
    new = f"{BEGIN}\n{block.rstrip()}\n{END}"
    if BEGIN in text and END in text:
        text = re.sub(re.escape(BEGIN) + r".*?" + re.escape(END), lambda _: new, text, flags=re.S)
    else:
        text = text.rstrip() + "\n\n" + new + "\n"
    doc.write_text(text)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out)
    data = Path(args.data) if args.data else out / "data"
    hard = (Path(args.hard_data) if args.hard_data else out / "data_hard") if args.hard_test > 0 else None
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    synth_s = 0.0
    if args.recipe_data:
        if not args.data:
            raise SystemExit("--recipe-data needs --data (the recipe's data.root)")
        hard = Path(args.hard_npz) if args.hard_npz else None
    else:
        synth_s += ensure_split(data, "train", args.num_train, False, args.reuse_data, args.synth_workers)
        synth_s += ensure_split(data, "test", args.num_test, False, args.reuse_data, args.synth_workers)
    if hard is not None and not args.recipe_data:
        synth_s += ensure_split(hard, "test", args.hard_test, True, args.reuse_data, args.synth_workers)
    plan = [(v, args.seed) for v in args.variants]
    plan += [
        (v, s) for s in args.noise_seeds for v in args.noise_variants if v in args.variants and s != args.seed
    ]
    results: list[dict] = [untrained_reference(args, data, hard)] if args.reference else []
    for v, s in plan:
        results.append(run_one(v, s, args, out, data, hard))
        (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    total = time.perf_counter() - t_start

    from rich.console import Console
    from rich.table import Table

    console = Console(width=150)
    for key, title in [("test", "test split")] + ([("hard", "hard-clothing test split")] if hard else []):
        table = Table(title=f"DSR ablation, {title} (mm)")
        for c in ["variant", "seed", *[LABELS[k] for k in METRICS], "volume", "train wall", "steps"]:
            table.add_column(c, justify="left" if c == "variant" else "right")
        for r in results:
            m = r[key]
            table.add_row(
                f"({r['variant']}) {r['label']}",
                str(r["seed"]),
                *[_fmt(m.get(k)) for k in METRICS],
                _fmt(m.get("volume_ratio"), 3),
                f"{r['train_wall_s']:.0f} s",
                str(r["steps"]),
            )
        console.print(table)
    cmd = shlex.join(
        [".venv/bin/python", "benchmarks/dsr_ablation.py", *(sys.argv[1:] if argv is None else argv)]
    )
    train_min = sum(r["train_wall_s"] for r in results) / 60
    first = next((r for r in results if r["steps"] > 0), {})
    setup = (
        f"Command: `{cmd}`\n\n"
        f"Recipe `{args.config}` with `{' '.join(common_overrides(args, data, args.seed))}`; "
        + (
            "the recipe's own training and test sets"
            + (f" and `{hard}` as the hard-clothing test split" if hard else "")
            if args.recipe_data
            else f"{args.num_train} training / {args.num_test} test"
            + (f" / {args.hard_test} hard-clothing test" if hard else "")
            + " samples"
        )
        + f"; {first.get('steps', '?')} steps"
        + (f" ({args.epochs} epochs)" if args.max_steps <= 0 else "")
        + f"; torch {torch.__version__}, "
        f"{os.cpu_count()} CPU(s), {platform.machine()}; training {train_min:.0f} min "
        f"summed over the runs; this invocation {total / 60:.0f} min (data {synth_s / 60:.1f} min). "
        "Load average (1 min) at the start and end of each run: "
        + ", ".join(
            f"{r['variant']}/{r['seed']} {r['loadavg_start']:.1f}-{r['loadavg_end']:.1f}" for r in results
        )
        + ".\n"
    )
    block = setup + "\n" + tables(results, hard is not None)
    png = plot(results, out / "dsr_ablation.png", hard is not None)
    (out / "table.md").write_text(block)
    console.print(f"wrote {out / 'results.json'}, {out / 'table.md'} and {png}")
    if args.doc:
        import shutil

        shutil.copy(png, Path(args.doc).parent / png.name)
        block += f"\n![training ablation]({png.name})\n"
        write_doc(Path(args.doc), block)
        console.print(f"wrote the tables into {args.doc}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
