"""DSR fitting ablation (issue 15, part 1): does the semantic signal exist, without any learning?

Per-sample optimisation (``dsrbody fit``) from the mean body with the ground-truth 2D keypoints, on a
synthetic test split and on a ``--hard`` (heavy clothing) one. Two stages, SMPLify-like:

    stage 1 (shared)   keypoints + priors (pose GMM, angle prior, joint limits, shape prior), both
                       orientations (``--flip-start``), ``--stage1-iters`` steps: the pose is found
    stage 2 (variant)  from stage 1's fit, ``--iters`` more steps with the variant's data terms

    a  keypoints + priors                      c  a + DSR-MC
    b  a + naive silhouette (whole clothed      d  a + DSR-C
       person mask, 1 - IoU)                    e  a + DSR-MC + DSR-C

Every variant has the same start, iterations, weights and samples, so per-sample differences are
paired. Reported per split: PVE-T, PVE, PA-MPJPE, MPJPE (mm) and the rest-pose volume ratio (fitted /
true; > 1: an inflated body), each as the mean with a 95 % t-interval over samples, and the paired
difference of every variant against (a) with its 95 % interval and the share of samples it improves.
Curves of the metrics and of the objective against iterations (both stages) come with it, to check
that the iteration counts reach convergence.

Everything goes under ``--out`` (default ``outputs/fit_ablation``)::

    OUT/data/, OUT/data_hard/   the test splits (``dsrbody synth``, 224 px, seeds 7 and 8) unless
                                --data / --hard-data name existing ones
    OUT/<split>/stage1/, OUT/<split>/<variant>/   fits.npz, fit_metrics.json, fit_per_sample.npz
    OUT/results.json, OUT/table.md, OUT/fit_ablation.png, OUT/fit_ablation_curves.png

``--doc docs/ablation.md`` also replaces the text between ``<!-- fit-ablation:begin -->`` and
``<!-- fit-ablation:end -->`` of that file with the tables and the command, and writes the two pictures
beside it. ``--skip-done`` keeps the stages that finished (their ``fit_metrics.json`` exists).
``--quick`` is the smoke test the test suite runs (4 samples, a few steps).

Example (the numbers in docs/ablation.md; about 45 min on one core of the 2-core CPU)::

    .venv/bin/python benchmarks/dsr_fit_ablation.py --num 128 --doc docs/ablation.md
"""

from __future__ import annotations

import argparse
import json
import math
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

VARIANTS: dict[str, tuple[str, str]] = {
    "a": ("keypoints + priors", "kp"),
    "b": ("a + naive silhouette", "kp,sil"),
    "c": ("a + DSR-MC", "kp,mc"),
    "d": ("a + DSR-C", "kp,c"),
    "e": ("a + DSR-MC + DSR-C", "kp,mc,c"),
}
METRICS = ("pve_t", "pve", "pa_mpjpe", "mpjpe", "volume_ratio")
LABELS = {
    "pve_t": "PVE-T",
    "pve": "PVE",
    "pa_mpjpe": "PA-MPJPE",
    "mpjpe": "MPJPE",
    "volume_ratio": "volume ratio",
}
BEGIN, END = "<!-- fit-ablation:begin -->", "<!-- fit-ablation:end -->"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter
    )
    p.add_argument("--out", default="outputs/fit_ablation", help="output folder")
    p.add_argument("--data", default=None, help="normal test split (folder or .npz; default OUT/data)")
    p.add_argument("--hard-data", default=None, help="hard-clothing test split (default OUT/data_hard)")
    p.add_argument("--no-hard", action="store_true", help="leave out the hard split")
    p.add_argument("--num", type=int, default=128, help="samples per split (default 128)")
    p.add_argument("--res", type=int, default=224, help="image side of generated splits (default 224)")
    p.add_argument("--stage1-iters", type=int, default=300, help="stage 1 steps (default 300)")
    p.add_argument("--iters", type=int, default=150, help="stage 2 steps of every variant (default 150)")
    p.add_argument("--lr", type=float, default=0.01, help="Adam learning rate of both stages")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--topology", default="notoes_collapse10pc", help="Anny mesh fitted (metrics: full mesh)")
    p.add_argument("--variants", default="abcde", help="variants to run, e.g. ae (default abcde)")
    p.add_argument("--record-every", type=int, default=10, help="curve resolution in steps")
    p.add_argument(
        "--weight",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="fit weight override (both stages)",
    )
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--skip-done", action="store_true", help="keep finished stages (fit_metrics.json exists)")
    p.add_argument("--doc", default=None, help="markdown file whose fit-ablation block gets the tables")
    p.add_argument("--quick", action="store_true", help="smoke test: 4 samples, 64 px, a few steps")
    args = p.parse_args(argv)
    if args.quick:
        args.num, args.res, args.stage1_iters, args.iters, args.record_every = 4, 64, 4, 3, 2
        args.batch_size = 4
    bad = set(args.variants) - set(VARIANTS)
    if bad or not args.variants:
        p.error(f"--variants: unknown {sorted(bad)}; choose among {''.join(VARIANTS)}")
    if "a" not in args.variants:
        args.variants = "a" + args.variants  # the paired differences are against (a)
    return args


# ----------------------------------------------------------------------------------------------- data
def ensure_split(folder: Path, num: int, seed: int, hard: bool, res: int) -> Path:
    """``folder/synth_test.npz`` with at least ``num`` samples, generated with ``dsrbody synth`` if absent."""
    npz = folder / "synth_test.npz"
    if npz.is_file():
        with np.load(npz, allow_pickle=False) as z:
            if len(z["imgname"]) >= num:
                return npz
    cmd = [sys.executable, "-m", "dsrbody.cli", "synth", "--out", str(folder), "--num", str(num),
           "--split", "test", "--seed", str(seed), "--res", str(res), "--quiet"]  # fmt: skip
    cmd += ["--hard"] if hard else []
    cmd += ["--overwrite"] if folder.exists() else []
    print("+", shlex.join(cmd), flush=True)
    subprocess.run(cmd, check=True)
    return npz


def _resolve(data: str) -> Path:
    from dsrbody.fit import resolve_data

    return resolve_data(data)[0]


# ---------------------------------------------------------------------------------------------- fits
class Fitting:
    """The models every fit shares (built once): the mean-body regressor on the fitted mesh, the full
    mesh for the metrics, the clothing prior and the pose prior."""

    def __init__(self, topology: str):
        import warnings

        from dsrbody.body.factory import build_body_model
        from dsrbody.fit import mean_regressor
        from dsrbody.fit.priors import default_pose_prior
        from dsrbody.garments import default_prior

        body = build_body_model("anny", topology=topology)
        self.reg = mean_regressor(body)
        self.eval_body = build_body_model("anny")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            self.prior = default_prior(body)
        self.pose_gmm = default_pose_prior(body)

    def run(self, npz: Path, out: Path, losses: str, iters: int, start: str | Path, args) -> dict[str, Any]:
        """One ``dsrbody fit`` (in process); returns its report."""
        from dsrbody.cli.fit import _weights as fit_weights
        from dsrbody.fit import FitConfig, fit_dataset, parse_losses

        cfg = FitConfig(
            losses=parse_losses(losses),
            iters=iters,
            lr=args.lr,
            weights=fit_weights(args.weight),
            flip_start=start == "mean",
            record_every=args.record_every,
        )
        t0 = time.perf_counter()
        report = fit_dataset(
            self.reg,
            npz,
            npz.parent,
            out,
            cfg,
            prior=self.prior,
            eval_body=self.eval_body,
            start=start,
            batch_size=args.batch_size,
            limit=args.num,
            progress=not args.quick,
            pose_gmm=self.pose_gmm,
        )
        report["seconds"] = time.perf_counter() - t0
        (out / "fit_metrics.json").write_text(json.dumps(report, indent=1))
        return report


@torch.no_grad()
def _gt_start(fitter, batch) -> dict[str, torch.Tensor]:
    """The true pose and shape of a batch, with the weak-perspective camera that best matches its 2D
    keypoints (200 Adam steps on the camera only; the synthetic images use a perspective camera)."""
    from dsrbody.geometry.rotations import axis_angle_to_matrix

    reg = fitter.reg
    B = batch["pose"].shape[0]
    rot = axis_angle_to_matrix(batch["pose"].float().reshape(B, -1, 3))
    raw = reg.raw_from_shape(batch["betas"].float())
    cam = fitter.start_from_mean(B)["cam"].clone()
    kp = batch["keypoints"].float()
    with torch.enable_grad():
        cam.requires_grad_(True)
        opt = torch.optim.Adam([cam], lr=0.02)
        for _ in range(200):
            terms = fitter.terms(reg.pose_body(rot, reg.shape_from_raw(raw), cam), raw, kp, None)
            loss = terms["keypoints"].sum() + terms["camera"].sum()
            opt.zero_grad()
            loss.backward()
            opt.step()
    return {"rotmat": rot, "shape_raw": raw, "cam": cam.detach()}


@torch.no_grad()
def terms_at_truth(
    fitting: Fitting, npz: Path, args, scales=(0.97, 1.0, 1.03)
) -> dict[str, dict[str, float]]:
    """Mean unweighted data terms at the true body (``"1.00"``) and at the true body scaled in the image
    by ``scales`` (camera scale x s: a bigger or smaller body in the same place), and at stage 1's fit.

    Where a term is lower at a scaled or fitted body than at the truth, fitting with it moves away from
    the truth; scale > 1 lower means the term prefers inflated bodies."""
    from torch.utils.data import DataLoader, Subset

    from dsrbody.data import SpinNpzDataset, collate_samples
    from dsrbody.fit import BodyFitter, FitConfig
    from dsrbody.losses.targets import dsr_targets

    reg = fitting.reg
    ds = SpinNpzDataset(npz, npz.parent, augment=False, parsing=True, res=int(reg.img_res))
    idx = list(range(min(args.num, len(ds))))
    fitter = BodyFitter(reg, FitConfig(losses=("kp", "mc", "c", "sil")), prior=fitting.prior)
    sums: dict[str, dict[str, list[torch.Tensor]]] = {}
    for batch in DataLoader(Subset(ds, idx), batch_size=args.batch_size, collate_fn=collate_samples):
        kp = batch["keypoints"].float()
        targets = dsr_targets(batch, int(reg.img_res), clean=True)
        gt = _gt_start(fitter, batch)
        for s in scales:
            cam = gt["cam"].clone()
            cam[:, 0] *= s
            pred = reg.pose_body(gt["rotmat"], reg.shape_from_raw(gt["shape_raw"]), cam)
            for k, v in fitter.terms(pred, gt["shape_raw"], kp, targets).items():
                sums.setdefault(f"{s:.2f}", {}).setdefault(k, []).append(v)
    out = {}
    for key, terms in sums.items():
        out[key] = {}
        for k, chunks in terms.items():
            v = torch.cat(chunks)
            out[key][k] = float(v[torch.isfinite(v)].mean())
    return out


@torch.no_grad()
def mean_body_volume_ratio(fitting: Fitting, npz: Path, n: int) -> tuple[float, float, int]:
    """``interval`` of the mean body's rest-pose volume over each true body's (the start's ratio)."""
    from dsrbody.geometry.mesh import mesh_volume

    body = fitting.eval_body
    with np.load(npz, allow_pickle=False) as z:
        shape = torch.as_tensor(z["shape"][:n], dtype=torch.float32)
    n = len(shape)
    mean = fitting.reg.shape_from_raw(fitting.reg.head.init_shape.reshape(1, -1))
    eye = torch.eye(3)
    rest = body(eye.expand(1, 3, 3), eye.expand(1, body.num_joints - 1, 3, 3), mean).rest_vertices
    truth = body(eye.expand(n, 3, 3), eye.expand(n, body.num_joints - 1, 3, 3), shape).rest_vertices
    return interval((mesh_volume(rest, body.faces) / mesh_volume(truth, body.faces)).numpy())


def truth_table(split: str, at: dict[str, dict[str, float]], fit_terms: dict[str, dict[str, float]]) -> str:
    """Markdown: the data terms at the true body, scaled, and at the fits."""
    names = ("keypoints", "silhouette", "dsr_mc", "dsr_c")
    head = "| body | " + " | ".join(names) + " |\n|---|" + "---|" * len(names)
    lines = [f"**{split}: data terms (unweighted means) at the true body and at the fits** (lower is what "
             "the fit seeks)", "", head]  # fmt: skip
    for key in sorted(at):
        label = "true body" if key == "1.00" else f"true body, {float(key) - 1:+.0%} in size"
        lines.append(f"| {label} | " + " | ".join(f"{at[key].get(n, math.nan):.4g}" for n in names) + " |")
    for name, t in fit_terms.items():
        lines.append(f"| fit {name} | " + " | ".join(
            f"{t[n]:.4g}" if n in t else "" for n in names) + " |")  # fmt: skip
    return "\n".join(lines) + "\n"


def cli_command(npz: Path, out: Path, losses: str, iters: int, start: str | Path, args) -> str:
    """The ``dsrbody fit`` command that makes the same fit."""
    cmd = ["dsrbody", "fit", "--data", str(npz), "--start", str(start), "--losses", losses,
           "--iters", str(iters), "--lr", str(args.lr), "--topology", args.topology,
           "--limit", str(args.num), "--batch-size", str(args.batch_size),
           "--record-every", str(args.record_every), "--out", str(out)]  # fmt: skip
    cmd += ["--flip-start"] if start == "mean" else []
    for w in args.weight:
        cmd += ["--weight", w]
    return shlex.join(cmd)


# ------------------------------------------------------------------------------------------ statistics
def interval(x: np.ndarray) -> tuple[float, float, int]:
    """``(mean, half-width of the 95 % t-interval, n)`` over the finite values."""
    from scipy.stats import t

    x = x[np.isfinite(x)]
    n = len(x)
    if n == 0:
        return math.nan, math.nan, 0
    if n == 1:
        return float(x[0]), math.nan, 1
    return float(x.mean()), float(t.ppf(0.975, n - 1) * x.std(ddof=1) / math.sqrt(n)), n


def per_sample(folder: Path) -> dict[str, np.ndarray]:
    """The per-sample metrics of one fit: ``{metric: (N,)}`` (and the start's as ``start_<metric>``)."""
    z = np.load(folder / "fit_per_sample.npz")
    out = {m: z[f"fit_{m}"] for m in METRICS if f"fit_{m}" in z.files}
    out["volume_ratio"] = z["volume_ratio"]
    out.update({f"start_{m}": z[f"start_{m}"] for m in METRICS if f"start_{m}" in z.files})
    out["sample_index"] = z["sample_index"]
    return out


def curves(folder: Path) -> dict[str, np.ndarray]:
    """``{"iters": (T,), metric or "objective": (T,) mean over samples}`` of one fit."""
    z = np.load(folder / "fit_per_sample.npz")
    out = {"iters": z["curve_iters"]}
    for k in (*METRICS[:4], "objective"):
        out[k] = np.nanmean(z[f"curve_{k}"], axis=1)
    return out


def summarize_split(folder: Path, variants: str) -> dict[str, Any]:
    """Means, intervals and paired differences against (a) of one split's fits."""
    ref = per_sample(folder / "a")
    res: dict[str, Any] = {"variants": {}, "mean_body": {}, "stage1": {}}
    s1 = per_sample(folder / "stage1")
    for m in METRICS[:4]:
        res["mean_body"][m] = interval(s1[f"start_{m}"])
        res["stage1"][m] = interval(s1[m])
    res["stage1"]["volume_ratio"] = interval(s1["volume_ratio"])
    res["mean_body"]["volume_ratio"] = (math.nan, math.nan, 0)
    for v in variants:
        d = per_sample(folder / v)
        if not np.array_equal(d["sample_index"], ref["sample_index"]):
            raise ValueError(f"{folder / v}: other samples than (a)")
        row: dict[str, Any] = {"metrics": {}, "paired": {}}
        for m in METRICS:
            row["metrics"][m] = interval(d[m])
            diff = d[m] - ref[m]
            if m == "volume_ratio":  # "better" means closer to 1
                better = np.abs(d[m] - 1) < np.abs(ref[m] - 1)
            else:
                better = d[m] < ref[m]
            ok = np.isfinite(diff)
            row["paired"][m] = (*interval(diff), float(better[ok].mean()) if ok.any() else math.nan)
        res["variants"][v] = row
    return res


def _fmt(mean: float, half: float, digits: int) -> str:
    if not math.isfinite(mean):
        return ""
    return f"{mean:.{digits}f} ± {half:.{digits}f}" if math.isfinite(half) else f"{mean:.{digits}f}"


def table(split: str, s: dict[str, Any]) -> str:
    """The markdown tables of one split."""
    d = {m: 3 if m == "volume_ratio" else 1 for m in METRICS}
    head = "| | " + " | ".join(LABELS[m] for m in METRICS) + " |\n|---|" + "---|" * len(METRICS) + "\n"
    lines = [f"**{split}: mean ± 95 % interval over {s['stage1']['pve_t'][2]} samples** (mm; volume "
             "ratio = fitted / true rest-pose body volume)", "", head.rstrip("\n")]  # fmt: skip
    lines.append(
        "| mean body (start) | " + " | ".join(_fmt(*s["mean_body"][m][:2], d[m]) for m in METRICS) + " |"
    )
    lines.append(
        "| stage 1 (shared) | " + " | ".join(_fmt(*s["stage1"][m][:2], d[m]) for m in METRICS) + " |"
    )
    for v, row in s["variants"].items():
        lines.append(
            f"| ({v}) {VARIANTS[v][0]} | "
            + " | ".join(_fmt(*row["metrics"][m][:2], d[m]) for m in METRICS)
            + " |"
        )
    lines += ["", f"**{split}: paired difference against (a)**, mean ± 95 % interval (share of samples "
              "improved: lower error, volume ratio closer to 1)", "", head.rstrip("\n")]  # fmt: skip
    for v, row in s["variants"].items():
        if v == "a":
            continue
        cells = []
        for m in METRICS:
            mean, half, _, share = row["paired"][m]
            digits = 3 if m == "volume_ratio" else 1
            cells.append(f"{mean:+.{digits}f} ± {half:.{digits}f} ({100 * share:.0f} %)")
        lines.append(f"| ({v}) | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------- plots
def plot(results: dict[str, Any], out_dir: Path, variants: str) -> list[Path]:
    """PVE-T (and volume ratio) per variant with intervals; metrics and objective against iterations."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    splits = list(results["splits"])
    panels = ("pve_t", "pve_t_paired", "volume_ratio")
    fig, axes = plt.subplots(len(splits), len(panels), figsize=(4.6 * len(panels), 3.4 * len(splits)),
                             squeeze=False)  # fmt: skip
    xs = np.arange(len(variants))
    for i, split in enumerate(splits):
        s = results["splits"][split]["summary"]
        for j, m in enumerate(panels):
            ax = axes[i, j]
            if m == "pve_t_paired":
                means = [s["variants"][v]["paired"]["pve_t"][0] for v in variants]
                halves = [s["variants"][v]["paired"]["pve_t"][1] for v in variants]
                ax.axhline(0.0, color="grey", ls="--", lw=1, label="(a)")
                title = f"{split}: PVE-T minus (a)'s, same sample (mm)"
            else:
                means = [s["variants"][v]["metrics"][m][0] for v in variants]
                halves = [s["variants"][v]["metrics"][m][1] for v in variants]
                ref = s["mean_body"][m][0] if m != "volume_ratio" else 1.0
                label = "mean body" if m != "volume_ratio" else "true"
                ax.axhline(ref, color="grey", ls="--", lw=1, label=label)
                title = f"{split}: {LABELS[m]}" + (" (mm)" if m != "volume_ratio" else "")
            ax.errorbar(xs, means, yerr=halves, fmt="o", capsize=4, color="C0")
            ax.set_xticks(xs, [f"({v})" for v in variants])
            ax.set_title(title, fontsize=10)
            ax.legend(fontsize=8)
            ax.grid(alpha=0.3)
    fig.suptitle("Fitting ablation: mean and 95 % interval over samples; " +
                 ", ".join(f"({v}) {VARIANTS[v][0]}" for v in variants), fontsize=8)  # fmt: skip
    fig.tight_layout()
    bars = out_dir / "fit_ablation.png"
    fig.savefig(bars, dpi=110)
    plt.close(fig)

    shown = ("objective", "pa_mpjpe", "pve_t", "mpjpe")
    fig, axes = plt.subplots(
        len(splits), len(shown), figsize=(4.2 * len(shown), 3.2 * len(splits)), squeeze=False
    )
    for i, split in enumerate(splits):
        c = {
            name: {k: np.asarray(v) for k, v in cv.items()}
            for name, cv in results["splits"][split]["curves"].items()
        }
        s1 = c["stage1"]
        n1 = int(s1["iters"][-1])
        for j, k in enumerate(shown):
            ax = axes[i, j]
            ax.plot(s1["iters"], s1[k], color="black", label="stage 1")
            for n, v in enumerate(variants):
                cv = c[v]
                ax.plot(n1 + cv["iters"], cv[k], color=f"C{n}", label=f"({v})")
            ax.axvline(n1, color="grey", lw=0.8, ls=":")
            ax.set_title(f"{split}: {k if k == 'objective' else LABELS[k] + ' (mm)'}", fontsize=10)
            ax.set_xlabel("iteration")
            if k == "objective":
                ax.set_yscale("log")
            ax.grid(alpha=0.3)
        axes[i, 0].legend(fontsize=7)
    fig.tight_layout()
    curve_png = out_dir / "fit_ablation_curves.png"
    fig.savefig(curve_png, dpi=110)
    plt.close(fig)
    return [bars, curve_png]


def write_doc(doc: Path, text: str) -> None:
    """Replace the fit-ablation block of ``doc`` (appended when absent)."""
    body = doc.read_text() if doc.is_file() else ""
    block = f"{BEGIN}\n{text}\n{END}"
    if BEGIN in body and END in body:
        body = re.sub(re.escape(BEGIN) + ".*?" + re.escape(END), lambda _: block, body, flags=re.S)
    else:
        body = body.rstrip("\n") + "\n\n" + block + "\n"
    doc.write_text(body)


# ------------------------------------------------------------------------------------------------ main
def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    splits = {"normal": (args.data, 7, False)}
    if not args.no_hard:
        splits["hard"] = (args.hard_data, 8, True)
    fitting = Fitting(args.topology)
    results: dict[str, Any] = {
        "command": shlex.join([Path(sys.executable).name, *sys.argv]) if argv is None else shlex.join(argv),
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "threads": torch.get_num_threads(),
        "args": vars(args),
        "splits": {},
    }
    t_all = time.perf_counter()
    for split, (data, seed, hard) in splits.items():
        folder = out / ("data" if split == "normal" else "data_hard")
        npz = _resolve(data) if data else ensure_split(folder, args.num, seed, hard, args.res)
        sdir = out / split
        info: dict[str, Any] = {"data": str(npz), "commands": {}, "seconds": {}, "curves": {}}
        stages = [("stage1", "kp", args.stage1_iters, "mean")]
        stages += [(v, VARIANTS[v][1], args.iters, sdir / "stage1" / "fits.npz") for v in args.variants]
        for name, losses, iters, start in stages:
            dest = sdir / name
            info["commands"][name] = cli_command(npz, dest, losses, iters, start, args)
            if args.skip_done and (dest / "fit_metrics.json").is_file():  # written last
                rep = json.loads((dest / "fit_metrics.json").read_text())
            else:
                print(f"[{split}] {name}: {losses}, {iters} steps", flush=True)
                rep = fitting.run(npz, dest, losses, iters, start, args)
            info["seconds"][name] = rep.get("seconds", math.nan)
            info["curves"][name] = {k: v.tolist() for k, v in curves(dest).items()}
            m = rep["metrics_fit"]
            print(f"[{split}] {name}: PVE-T {m.get('pve_t', math.nan):.1f}  PA-MPJPE "
                  f"{m.get('pa_mpjpe', math.nan):.1f}  MPJPE {m.get('mpjpe', math.nan):.1f} mm "
                  f"({info['seconds'][name]:.0f} s)", flush=True)  # fmt: skip
        info["summary"] = summarize_split(sdir, args.variants)
        info["summary"]["mean_body"]["volume_ratio"] = mean_body_volume_ratio(fitting, npz, args.num)
        print(f"[{split}] data terms at the true body ...", flush=True)
        info["at_truth"] = terms_at_truth(fitting, npz, args)
        info["fit_terms"] = {
            name: json.loads((sdir / name / "fit_metrics.json").read_text())["terms_fit"]
            for name in ("stage1", *args.variants)
        }
        info["curves"] = {k: {kk: np.asarray(vv) for kk, vv in v.items()} for k, v in info["curves"].items()}
        results["splits"][split] = info
    results["seconds"] = time.perf_counter() - t_all

    minutes = results["seconds"] / 60
    text = [f"Command (machine: {results['machine']}, {results['threads']} torch thread(s), "
            f"{minutes:.0f} min in all):", "", "```", results["command"], "```", ""]  # fmt: skip
    for split, info in results["splits"].items():
        text.append(table(split, info["summary"]))
        text.append(truth_table(split, info["at_truth"], info["fit_terms"]))
        secs = ", ".join(f"{k} {v:.0f} s" for k, v in info["seconds"].items())
        text.append(f"Wall time ({split}): {secs}.\n")
    text = "\n".join(text)
    (out / "table.md").write_text(text)
    pics = plot(results, out, args.variants)
    if args.doc:
        doc = Path(args.doc)
        import shutil

        for p in pics:
            shutil.copy(p, doc.parent / p.name)
        figs = "\n".join(f"![{p.stem}]({p.name})" for p in pics)
        write_doc(doc, text + "\n" + figs + "\n")
    serial = json.loads(json.dumps(results, default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o)))
    (out / "results.json").write_text(json.dumps(serial, indent=1))
    print(text)
    return results


if __name__ == "__main__":
    main()
