"""The evaluation report: ``metrics.json``, a per-sample CSV and a self-contained ``report.html``.

``report.html`` embeds its pictures as base64 PNGs (matplotlib, Agg backend), so it can be mailed
or attached as one file:

- our metrics beside the paper's figures (a table and a bar chart);
- error histograms (one panel per per-sample metric, mean / median / paper lines);
- per-joint errors (MPJPE and PA-MPJPE, mean with the inter-quartile range);
- error against what the file says about each sample: camera distance (``cam_t`` or the position of
  non-centred 3D joints), person size in the image (box side in pixels) and occlusion (share of the
  annotated 2D keypoints with confidence < 0.3), with binned medians;
- error per sequence (the folder of ``imgname``: 3DPW sequences, H36M subjects/actions) when the
  file has several;
- the worst samples as image | overlay | side view;
- the skipped samples (missing or unreadable images) and the notes of the evaluation.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from dsrbody.eval.protocols import METRIC_LABELS, EvalResult

__all__ = [
    "write_report",
    "write_metrics_json",
    "write_per_sample_csv",
    "worst_sample_panels",
    "figures",
    "sequence_of",
]

#: colours of the report (colour-blind safe pairs).
OURS = "#1f77b4"
PA = "#ff7f0e"
PAPER = "#d62728"
GREY = "#7f7f7f"
#: mesh colours of the side view: prediction (clay) and ground truth (green), RGB in [0, 1].
PRED_RGB = (0.78, 0.74, 0.70)
GT_RGB = (0.35, 0.72, 0.45)

#: per-sample descriptor -> (plot title, x label)
_FACTOR_LABELS = {
    "distance_m": ("Error against camera distance", "camera distance (m)"),
    "box_px": ("Error against person size", "person box side (px, original image)"),
    "occlusion": ("Error against occlusion", "share of 2D keypoints with confidence < 0.3"),
}


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    plt.rcParams.update(
        {
            "figure.dpi": 100,
            "axes.spines.top": False,
            "axes.spines.right": False,
            "axes.grid": True,
            "grid.alpha": 0.25,
            "font.size": 10,
            "axes.titlesize": 11,
            "axes.titleweight": "bold",
        }
    )
    return plt


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight", facecolor="white")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return buf.getvalue()


# ------------------------------------------------------------------------------------------------
# data files
# ------------------------------------------------------------------------------------------------


def write_metrics_json(result: EvalResult, path: str | Path) -> Path:
    """``metrics.json``: protocol, counts, metrics (mm; PCK/AUC %), the paper's figures, per-joint
    MPJPE, notes, the skipped samples."""
    path = Path(path)
    path.write_text(json.dumps(result.to_json(), indent=2) + "\n")
    return path


def write_per_sample_csv(result: EvalResult, path: str | Path) -> Path:
    """The per-sample table: ``sample_index, imgname``, each per-sample metric (mm), the sample's
    descriptors (``distance_m``, ``box_px``, ``occlusion``, ``gender`` where present), one row per
    evaluated sample in file order; skipped samples are listed with ``skipped=<reason>``."""
    path = Path(path)
    cols = list(result.per_sample)
    rows: list[tuple[int, list[Any]]] = []
    for i in range(result.num_evaluated):
        row = []
        for c in cols:
            v = result.per_sample[c][i]
            row.append(f"{float(v):.4f}" if isinstance(v, (float, np.floating)) else v)
        rows.append((int(result.per_sample["sample_index"][i]), row + [""]))
    for s in result.skipped:
        row = [s["sample_index"], s["imgname"]] + [""] * (len(cols) - 2) + [s["reason"]]
        rows.append((int(s["sample_index"]), row))
    rows.sort(key=lambda r: r[0])
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(cols + ["skipped"])
        for _, row in rows:
            w.writerow(row)
    return path


# ------------------------------------------------------------------------------------------------
# figures
# ------------------------------------------------------------------------------------------------


def _summary_figure(result: EvalResult) -> bytes:
    plt = _plt()
    groups = [
        [k for k in result.metrics if k not in ("pck150", "auc")],
        [k for k in result.metrics if k in ("pck150", "auc")],
    ]
    groups = [g for g in groups if g]
    widths = [len(g) for g in groups]
    fig, axes = plt.subplots(1, len(groups), figsize=(1.6 + 1.55 * sum(widths), 3.6), squeeze=False,
                             gridspec_kw={"width_ratios": widths})  # fmt: skip
    has_paper_any = any(k in result.paper for k in result.metrics)
    for ax, keys in zip(axes[0], groups):
        x = np.arange(len(keys))
        ours = [result.metrics[k] for k in keys]
        paper = [result.paper.get(k, np.nan) for k in keys]
        w = 0.38 if has_paper_any else 0.6
        b1 = ax.bar(x - (w / 2 if has_paper_any else 0), ours, w, color=OURS, label="dsrbody")
        ax.bar_label(b1, fmt="%.1f", padding=2)
        if has_paper_any:
            b2 = ax.bar(
                x + w / 2, np.nan_to_num(paper, nan=0.0), w, color=PAPER, alpha=0.8, label="DSR paper"
            )
            ax.bar_label(b2, labels=["" if not np.isfinite(p) else f"{p:.1f}" for p in paper], padding=2)
        ax.set_xticks(x, [METRIC_LABELS[k] for k in keys])
        pct = keys[0] in ("pck150", "auc")
        ax.set_ylabel("%" if pct else "mm")
        top = 100.0 if pct else max([v for v in ours + paper if np.isfinite(v)] + [1.0])
        ax.set_ylim(0, top * 1.15)
        ax.grid(axis="x", visible=False)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, frameon=False, loc="lower center", ncol=2, bbox_to_anchor=(0.5, -0.06))
    title = f"{result.protocol}: {result.num_evaluated} samples" + (" (flip TTA)" if result.flip else "")
    fig.suptitle(title, fontweight="bold")
    fig.tight_layout()
    return _png(fig)


def _histogram_figure(result: EvalResult) -> bytes:
    plt = _plt()
    keys = [k for k in ("mpjpe", "pa_mpjpe", "pve", "pve_t", "pve_t_sc") if k in result.per_sample]
    fig, axes = plt.subplots(1, len(keys), figsize=(4.2 * len(keys), 3.3), squeeze=False)
    for ax, k, color in zip(axes[0], keys, [OURS, PA, "#2ca02c", "#9467bd", "#8c564b"]):
        v = np.asarray(result.per_sample[k], dtype=np.float64)
        v = v[np.isfinite(v)]
        hi = np.percentile(v, 99.5) if v.size else 1.0
        ax.hist(np.clip(v, 0, hi), bins=min(60, max(10, v.size // 8)), range=(0, max(hi, 1e-6)), color=color,
                alpha=0.85)  # fmt: skip
        ax.axvline(np.mean(v), color="black", lw=1.5, label=f"mean {np.mean(v):.1f}")
        ax.axvline(np.median(v), color="black", lw=1.2, ls="--", label=f"median {np.median(v):.1f}")
        if k in result.paper:
            ax.axvline(result.paper[k], color=PAPER, lw=2, label=f"paper {result.paper[k]:.1f}")
        ax.set_xlabel(METRIC_LABELS[k] + (" (clipped at p99.5)" if v.size and v.max() > hi else ""))
        ax.set_ylabel("samples")
        ax.set_title(METRIC_LABELS[k].split(" (")[0])
        ax.legend(frameon=False, fontsize=8)
    return _png(fig)


def _per_joint_figure(result: EvalResult) -> bytes:
    plt = _plt()
    names = result.joint_names
    J = len(names)
    fig, ax = plt.subplots(figsize=(8.5, 0.34 * J + 1.2))
    y = np.arange(J)
    h = 0.38
    for off, key, color, label in ((-h / 2, "mpjpe", OURS, "MPJPE"), (h / 2, "pa_mpjpe", PA, "PA-MPJPE")):
        e = result.per_joint[key]
        mean = np.nanmean(e, axis=0)
        q1, q3 = np.nanpercentile(e, 25, axis=0), np.nanpercentile(e, 75, axis=0)
        ax.barh(y + off, mean, h, color=color, label=f"{label} (mean, whisker: 25-75 %)")
        ax.errorbar(mean, y + off, xerr=[np.maximum(mean - q1, 0), np.maximum(q3 - mean, 0)], fmt="none",
                    ecolor="black", elinewidth=0.8, capsize=2)  # fmt: skip
    ax.set_yticks(y, names)
    ax.invert_yaxis()
    ax.set_xlabel("mm")
    ax.set_title("Error per joint")
    ax.legend(frameon=False, loc="lower right", fontsize=8)
    ax.grid(axis="y", visible=False)
    return _png(fig)


def _binned(
    x: np.ndarray, y: np.ndarray, bins: int = 10
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Centres, medians, 25th and 75th percentiles of ``y`` in quantile bins of ``x``."""
    edges = np.unique(np.nanpercentile(x, np.linspace(0, 100, bins + 1)))
    if edges.size < 2:
        return (np.array([np.nanmedian(x)]), np.array([np.nanmedian(y)]), np.array([np.nanpercentile(y, 25)]),
                np.array([np.nanpercentile(y, 75)]))  # fmt: skip
    which = np.clip(np.searchsorted(edges, x, side="right") - 1, 0, edges.size - 2)
    c, m, lo, hi = [], [], [], []
    for b in range(edges.size - 1):
        sel = which == b
        if sel.sum() == 0:
            continue
        c.append(np.median(x[sel]))
        m.append(np.median(y[sel]))
        lo.append(np.percentile(y[sel], 25))
        hi.append(np.percentile(y[sel], 75))
    return np.array(c), np.array(m), np.array(lo), np.array(hi)


def _factor_figure(result: EvalResult) -> bytes | None:
    factors = [f for f in _FACTOR_LABELS if f in result.per_sample and np.nanstd(result.per_sample[f]) > 0]
    if not factors:
        return None
    plt = _plt()
    fig, axes = plt.subplots(1, len(factors), figsize=(4.8 * len(factors), 3.5), squeeze=False)
    for ax, f in zip(axes[0], factors):
        x = np.asarray(result.per_sample[f], dtype=np.float64)
        for key, color, label in (("mpjpe", OURS, "MPJPE"), ("pa_mpjpe", PA, "PA-MPJPE")):
            y = np.asarray(result.per_sample[key], dtype=np.float64)
            ok = np.isfinite(x) & np.isfinite(y)
            ax.scatter(x[ok], y[ok], s=6, alpha=min(0.5, 40.0 / max(ok.sum(), 1) + 0.05), color=color, lw=0)
            c, m, lo, hi = _binned(x[ok], y[ok])
            ax.plot(c, m, color=color, lw=2, marker="o", ms=4, label=f"{label} (binned median)")
            ax.fill_between(c, lo, hi, color=color, alpha=0.15)
        ax.set_xlabel(_FACTOR_LABELS[f][1])
        ax.set_ylabel("mm")
        ax.set_ylim(0, np.nanpercentile(result.per_sample["mpjpe"], 99) * 1.1 + 1)
        ax.set_title(_FACTOR_LABELS[f][0])
        ax.legend(frameon=False, fontsize=8)
    return _png(fig)


_GENERIC_DIRS = {"images", "image", "imagesequence", "imagefiles", "imgs", "frames"}


def sequence_of(imgname: str) -> str:
    """The sequence an image belongs to: its innermost folder that is not a generic one (3DPW
    ``imageFiles/<seq>/image_00000.jpg`` -> ``<seq>``; MPI-INF-3DHP ``.../TS1/imageSequence/img_1.jpg``
    -> ``TS1``), else its file name without frame number and camera (Human3.6M
    ``images/S9_Directions_1.54138969_000001.jpg`` -> ``S9_Directions_1``)."""
    p = Path(imgname)
    dirs = [d for d in p.parts[:-1] if d.lower() not in _GENERIC_DIRS]
    if dirs:
        return dirs[-1]
    stem = re.sub(r"[_-]?\d+$", "", p.stem)
    return re.sub(r"\.\d+$", "", stem)


def _sequence_figure(result: EvalResult, max_groups: int = 40) -> bytes | None:
    seqs = np.array([sequence_of(n) for n in result.per_sample["imgname"]])
    groups = np.unique(seqs)
    if groups.size < 2:
        return None
    key = "pa_mpjpe"
    stats = [
        (g, float(np.nanmean(result.per_sample[key][seqs == g])), int((seqs == g).sum())) for g in groups
    ]
    stats.sort(key=lambda t: -t[1])
    shown = stats[:max_groups]
    plt = _plt()
    fig, ax = plt.subplots(figsize=(8.5, 0.3 * len(shown) + 1.3))
    y = np.arange(len(shown))
    ax.barh(y, [s[1] for s in shown], color=PA)
    for yi, (_, v, n) in zip(y, shown):
        ax.text(v, yi, f" {v:.1f} (n={n})", va="center", fontsize=8)
    ax.set_yticks(y, [s[0] for s in shown], fontsize=8)
    ax.invert_yaxis()
    if key in result.paper:
        ax.axvline(result.paper[key], color=PAPER, lw=1.5, ls="--", label=f"paper {result.paper[key]:.1f}")
        ax.legend(frameon=False, fontsize=8, loc="lower right")
    ax.set_xlabel("PA-MPJPE (mm)")
    more = f", worst {max_groups} of {len(stats)}" if len(stats) > max_groups else ""
    ax.set_title(f"PA-MPJPE per sequence{more}")
    ax.grid(axis="y", visible=False)
    return _png(fig)


def worst_sample_panels(result: EvalResult, res: int = 224) -> list[dict[str, Any]]:
    """Pictures of :attr:`EvalResult.worst`: for each, the crop the network saw, the predicted mesh
    over it and the mesh seen from the side (``None`` where the prediction has no camera or the image
    cannot be read).

    Returns:
        dicts with ``sample_index``, ``imgname``, ``error``, ``image`` / ``overlay`` / ``side``
        ``(res, res, 3)`` uint8 arrays (or ``None``) and ``has_gt`` (the side view also shows the
        ground-truth mesh, in green).
    """
    if not result.worst:
        return []
    import torch

    from dsrbody.data.spin_npz import SpinNpzDataset
    from dsrbody.geometry.cameras import FOCAL_LENGTH
    from dsrbody.render.overlay import overlay, side_view

    try:
        ds = SpinNpzDataset(result.annotation_file, result.image_dir, augment=False, parsing=False, res=res)
    except (FileNotFoundError, ValueError):
        ds = None
    mean = np.array([0.485, 0.456, 0.406], np.float32)[:, None, None]
    std = np.array([0.229, 0.224, 0.225], np.float32)[:, None, None]
    focal = FOCAL_LENGTH * res / 224.0
    panels = []
    for w in result.worst:
        img = None
        if ds is not None:
            item = ds[int(w["sample_index"])]
            if bool(item["valid"]):
                x = item["img"].numpy() * std + mean
                img = (np.clip(x.transpose(1, 2, 0), 0, 1) * 255 + 0.5).astype(np.uint8)
        ov = sv = None
        if result.faces is not None and w.get("translation") is not None:
            v = torch.as_tensor(w["vertices"]) + torch.as_tensor(w["translation"])[None]
            base = img if img is not None else np.full((res, res, 3), 235, np.uint8)
            pp = (res / 2.0, res / 2.0)
            ov = overlay(base, v, result.faces, focal=focal, principal_point=pp, alpha=0.8)
            sv_verts, sv_faces, sv_colors = v, torch.as_tensor(result.faces), None
            if w.get("gt_vertices") is not None:  # ground truth beside: same camera translation
                gt = torch.as_tensor(w["gt_vertices"]) + torch.as_tensor(w["translation"])[None]
                F = sv_faces.shape[0]
                sv_verts = torch.cat([v, gt])
                sv_faces = torch.cat([sv_faces, sv_faces + v.shape[0]])
                sv_colors = torch.cat(
                    [torch.tensor(PRED_RGB).expand(F, 3), torch.tensor(GT_RGB).expand(F, 3)]
                )
            sv = side_view(sv_verts, sv_faces, focal=focal, image_size=(res, res), principal_point=pp,
                           background=(245, 245, 245), face_colors=sv_colors)  # fmt: skip
        panels.append(
            {k: w[k] for k in ("sample_index", "imgname", "error")}
            | {
                "image": img,
                "overlay": ov,
                "side": sv,
                "has_gt": sv is not None and w.get("gt_vertices") is not None,
            }
        )
    return panels


def _worst_figure(result: EvalResult, panels: Sequence[dict[str, Any]]) -> bytes | None:
    if not panels:
        return None
    plt = _plt()
    per_row = 2
    rows = (len(panels) + per_row - 1) // per_row
    fig, axes = plt.subplots(rows, 3 * per_row, figsize=(2.05 * 3 * per_row, 2.25 * rows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for k, p in enumerate(panels):
        r, c0 = divmod(k, per_row)
        for j, key in enumerate(("image", "overlay", "side")):
            ax = axes[r, 3 * c0 + j]
            if p[key] is not None:
                ax.imshow(p[key])
            else:
                ax.text(0.5, 0.5, "no image" if key == "image" else "no camera", ha="center", va="center",
                        color=GREY, transform=ax.transAxes)  # fmt: skip
        name = p["imgname"] if len(p["imgname"]) <= 42 else "..." + p["imgname"][-39:]
        axes[r, 3 * c0].set_title(f"#{k + 1}  PA-MPJPE {p['error']:.0f} mm", loc="left", fontsize=9)
        axes[r, 3 * c0 + 1].set_title(name, loc="left", fontsize=7, color=GREY, fontweight="normal")
    gt = " (green: ground truth)" if any(p.get("has_gt") for p in panels) else ""
    fig.suptitle(f"The {len(panels)} worst samples by PA-MPJPE: image | overlay | side view{gt}", y=1.0,
                 fontweight="bold")  # fmt: skip
    fig.tight_layout(pad=0.4, h_pad=0.9, w_pad=0.2)
    return _png(fig)


def figures(result: EvalResult, *, worst: bool = True) -> dict[str, bytes]:
    """Every picture of the report as PNG bytes: ``summary``, ``histograms``, ``per_joint``, and where
    the data allow ``factors``, ``sequences``, ``worst``."""
    out = {
        "summary": _summary_figure(result),
        "histograms": _histogram_figure(result),
        "per_joint": _per_joint_figure(result),
    }
    for name, fig in (("factors", _factor_figure(result)), ("sequences", _sequence_figure(result))):
        if fig is not None:
            out[name] = fig
    if worst:
        fig = _worst_figure(result, worst_sample_panels(result))
        if fig is not None:
            out["worst"] = fig
    return out


# ------------------------------------------------------------------------------------------------
# html
# ------------------------------------------------------------------------------------------------

_CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;max-width:1180px;margin:24px auto;
color:#222;padding:0 16px}
h1{font-size:24px;margin-bottom:4px} h2{font-size:18px;margin-top:34px;border-bottom:1px solid #ddd;
padding-bottom:4px} .sub{color:#666;margin-top:0}
table{border-collapse:collapse;margin:8px 0} td,th{padding:5px 12px;border-bottom:1px solid #eee;
text-align:right} th{background:#f6f6f6} td:first-child,th:first-child{text-align:left}
.big{font-size:20px;font-weight:600} .note{background:#fff8e1;border-left:4px solid #ffb300;
padding:6px 12px;margin:6px 0} img{max-width:100%} .muted{color:#888;font-size:12px}
code{background:#f3f3f3;padding:1px 4px;border-radius:3px}
"""

_CAPTIONS = {
    "summary": "",
    "histograms": "How the per-sample errors spread: a long right tail means a few failures carry the mean.",
    "per_joint": "Mean error per evaluation joint (whiskers: 25th to 75th percentile over samples).",
    "factors": "Each dot is a sample; lines are medians in ten equally populated bins (band: 25-75 %).",
    "sequences": "Mean PA-MPJPE per sequence (3DPW sequence, Human3.6M subject and action, MPI-INF-3DHP "
    "test sequence), worst first.",
    "worst": "The network's input crop, the predicted mesh over it, and the mesh turned 90 degrees (with the "
    "ground-truth mesh in green where the ground truth is a mesh: 3DPW, synthetic data).",
}

_TITLES = {
    "summary": "Summary",
    "histograms": "Error distributions",
    "per_joint": "Per-joint error",
    "factors": "Error against distance, person size and occlusion",
    "sequences": "Error per sequence",
    "worst": "Worst samples",
}


def _img_tag(png: bytes, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode()}">'


def _html(result: EvalResult, figs: dict[str, bytes]) -> str:
    e = html.escape
    rows = []
    for label, ours, paper in result.table():
        diff = f"{ours - paper:+.1f}" if paper is not None else ""
        rows.append(
            f"<tr><td>{e(label)}</td><td class=big>{ours:.1f}</td>"
            f"<td>{'' if paper is None else f'{paper:.1f}'}</td><td>{diff}</td></tr>"
        )
    notes = "".join(f"<div class=note>{e(n)}</div>" for n in result.notes)
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'>",
        f"<title>dsrbody eval: {e(result.protocol)}</title><style>{_CSS}</style></head><body>",
        f"<h1>Evaluation on {e(result.protocol)}</h1>",
        f"<p class=sub>{e(result.to_json()['description'])}</p>",
        "<table>",
        f"<tr><td>checkpoint</td><td>{e(result.checkpoint or '-')}</td></tr>",
        f"<tr><td>annotations</td><td>{e(result.annotation_file)}</td></tr>",
        f"<tr><td>images</td><td>{e(result.image_dir)}</td></tr>",
        f"<tr><td>samples</td><td>{result.num_evaluated} evaluated of {result.num_samples}"
        f" ({len(result.skipped)} skipped)</td></tr>",
        f"<tr><td>flip test-time augmentation</td><td>{'on' if result.flip else 'off'}</td></tr>",
        f"<tr><td>speed</td><td>{result.samples_per_second:.1f} samples/s ({result.seconds:.1f} s)</td></tr>",
        "</table>",
        "<h2>Metrics beside the paper</h2><table><tr><th>metric</th><th>dsrbody</th><th>DSR paper</th>"
        "<th>difference</th></tr>" + "".join(rows) + "</table>",
        f"<p class=muted>Metrics computed on {result.num_evaluated} samples. Paper figures: DSR (ICCV 2021): "
        "3DPW PA-MPJPE 51.7, Human3.6M PA-MPJPE 40.3 (protocol 2), MPI-INF-3DHP MPJPE 104.7.</p>",
        notes,
    ]
    for key in ("summary", "histograms", "per_joint", "factors", "sequences", "worst"):
        if key not in figs:
            continue
        if key != "summary":
            parts.append(f"<h2>{_TITLES[key]}</h2>")
        if _CAPTIONS[key]:
            parts.append(f"<p class=muted>{_CAPTIONS[key]}</p>")
        parts.append(_img_tag(figs[key], _TITLES[key]))
    if result.num_evaluated:
        jm = np.nanmean(result.per_joint["mpjpe"], axis=0)
        jp = np.nanmean(result.per_joint["pa_mpjpe"], axis=0)
        parts.append("<h2>Per-joint table</h2><table><tr><th>joint</th><th>MPJPE</th><th>PA-MPJPE</th></tr>")
        parts += [f"<tr><td>{e(n)}</td><td>{a:.1f}</td><td>{b:.1f}</td></tr>" for n, a, b in
                  zip(result.joint_names, jm, jp)]  # fmt: skip
        parts.append("</table>")
    parts.append(f"<h2>Skipped samples ({len(result.skipped)})</h2>")
    if result.skipped:
        shown = result.skipped[:200]
        parts.append("<table><tr><th>index</th><th>reason</th><th>path</th></tr>")
        parts += [
            f"<tr><td>{s['sample_index']}</td><td>{e(s['reason'])}</td><td>{e(s['path'])}</td></tr>"
            for s in shown
        ]
        parts.append("</table>")
        if len(result.skipped) > len(shown):
            parts.append(
                f"<p class=muted>... and {len(result.skipped) - len(shown)} more (per_sample.csv).</p>"
            )
    else:
        parts.append("<p>None: every image was found.</p>")
    parts.append(
        "<p class=muted>Made by dsrbody eval. Files: metrics.json, per_sample.csv.</p></body></html>"
    )
    return "\n".join(parts)


def write_report(
    result: EvalResult, out_dir: str | Path, *, worst: bool = True, save_pngs: bool = True
) -> dict[str, Path]:
    """Write ``metrics.json``, ``per_sample.csv`` and ``report.html`` (plus the plots as PNGs under
    ``plots/`` when ``save_pngs``).

    Args:
        result: an :class:`~dsrbody.eval.protocols.EvalResult`.
        out_dir: output folder (created).
        worst: render the worst samples (reads their images again; costs a few seconds).
        save_pngs: also write each plot as a PNG file.

    Returns:
        name -> path of every file written.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {
        "metrics": write_metrics_json(result, out / "metrics.json"),
        "per_sample": write_per_sample_csv(result, out / "per_sample.csv"),
    }
    figs = figures(result, worst=worst)
    report = out / "report.html"
    report.write_text(_html(result, figs))
    paths["report"] = report
    if save_pngs:
        (out / "plots").mkdir(exist_ok=True)
        for name, png in figs.items():
            p = out / "plots" / f"{name}.png"
            p.write_bytes(png)
            paths[f"plot_{name}"] = p
    return paths
