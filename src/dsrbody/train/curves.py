"""Learning curves of a training run: validation metrics against samples seen, beside the mean body.

:func:`read_validation_log` collects ``val/*`` and ``val_mean_body/*`` rows from every
``OUT/csv/version_*/metrics.csv`` of a run (a resumed run writes a new version), and
:func:`plot_learning_curve` draws MPJPE, PA-MPJPE and PVE-T against the number of training samples seen
(``step * data.batch_size * processes``), with the mean body's values as dashed lines
(``dsrbody curve RUN --out curve.png``). A run that continues another one from its checkpoint
(``model.init_checkpoint``) is drawn after it: ``dsrbody curve FIRST SECOND --out curve.png`` counts the
second run's samples from the step stored in the checkpoint it started from (:func:`read_continued_log`),
and marks where each run begins; ``--zoom`` fits the axes to the validation values rather than to zero
and the mean body (whose values then go in the panels' titles).
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import yaml

__all__ = [
    "ValidationLog",
    "read_validation_log",
    "read_continued_log",
    "plot_learning_curve",
    "CURVE_METRICS",
]

#: (metric key, label) drawn by :func:`plot_learning_curve`.
CURVE_METRICS = (("mpjpe", "MPJPE"), ("pa_mpjpe", "PA-MPJPE"), ("pve_t", "PVE-T"), ("pve_t_sc", "PVE-T-SC"))


class ValidationLog(dict):
    """``{"step": [...], "samples": [...], "<metric>": [...]}`` (mm), with ``.reference`` (the mean body's
    metrics, ``{}`` when not logged), ``.batch`` (samples per step), ``.run`` (the run folder) and
    ``.starts`` (``[(samples seen when the run began, run folder name), ...]``, one per run of a chain)."""

    reference: dict[str, float]
    batch: int
    run: Path
    starts: list[tuple[int, str]]


def _samples_per_step(run: Path) -> int:
    cfg_file = run / "config.yaml"
    if not cfg_file.is_file():
        raise FileNotFoundError(f"{cfg_file}: not a dsrbody train output folder (no config.yaml)")
    cfg = yaml.safe_load(cfg_file.read_text()) or {}
    bs = int((cfg.get("data") or {}).get("batch_size", 64))
    trainer = cfg.get("trainer") or {}
    devices = str(trainer.get("devices", "1"))
    procs = int(devices) if devices.isdigit() else 1
    return bs * procs * int(trainer.get("num_nodes", 1) or 1)


def read_validation_log(run: str | Path) -> ValidationLog:
    """Validation rows of a ``dsrbody train`` output folder, in step order (last value per step).

    Raises:
        FileNotFoundError: no ``config.yaml`` or no ``csv/version_*/metrics.csv``.
        ValueError: no validation row in the logs.
    """
    run = Path(run)
    per_step = _samples_per_step(run)
    files = sorted(
        (run / "csv").glob("version_*/metrics.csv"), key=lambda p: int(p.parent.name.split("_")[-1])
    )
    if not files:
        raise FileNotFoundError(f"{run}/csv: no version_*/metrics.csv (was the run logged?)")
    rows: dict[int, dict[str, float]] = {}
    reference: dict[str, float] = {}
    for f in files:
        with f.open(newline="") as fh:
            for r in csv.DictReader(fh):
                if not r.get("step"):
                    continue
                step = int(float(r["step"]))
                for k, v in r.items():
                    if not v or not k:
                        continue
                    if k.startswith("val_mean_body/"):
                        reference[k.split("/", 1)[1]] = float(v)
                    elif k.startswith("val/"):
                        rows.setdefault(step, {})[k.split("/", 1)[1]] = float(v)
    steps = sorted(s for s, d in rows.items() if "mpjpe" in d)
    if not steps:
        raise ValueError(f"{run}: the logs hold no validation metrics (val/*)")
    log = ValidationLog(step=steps, samples=[(s + 1) * per_step for s in steps])
    for key in {k for d in rows.values() for k in d}:
        log[key] = [rows[s].get(key, math.nan) for s in steps]
    log.reference, log.batch, log.run = reference, per_step, run
    log.starts = [(0, run.name)]
    return log


def _init_checkpoint_step(run: Path) -> tuple[Path, int]:
    """``(checkpoint, global step)`` of the ``model.init_checkpoint`` a run started from.

    Raises:
        ValueError: the run names no init checkpoint, or the file stores no step.
        FileNotFoundError: the checkpoint no longer exists.
    """
    from dsrbody.models.checkpoint import torch_load_file

    cfg = yaml.safe_load((run / "config.yaml").read_text()) or {}
    ckpt = (cfg.get("model") or {}).get("init_checkpoint")
    if not ckpt:
        raise ValueError(f"{run}: does not continue another run (its model.init_checkpoint is empty)")
    path = Path(ckpt)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: the checkpoint {run} started from is gone (its step is needed)")
    obj = torch_load_file(path)
    step = obj.get("global_step") if isinstance(obj, dict) else None
    if step is None and isinstance(obj, dict):
        step = (obj.get("dsrbody", {}).get("export") or {}).get("global_step")
    if step is None or int(step) < 0:
        raise ValueError(f"{path}: stores no training step, so {run}'s samples cannot be counted on")
    return path, int(step)


def read_continued_log(runs: list[str | Path]) -> ValidationLog:
    """Validation rows of a chain of runs, each later one started from a checkpoint of the one before
    (``model.init_checkpoint``), on one axis of samples seen.

    The second run's samples are counted from the first run's samples at the step stored in that
    checkpoint (and so on); the mean body's values are the first run's.

    Raises:
        ValueError, FileNotFoundError: as :func:`read_validation_log`, and a later run that does not
        name the checkpoint it started from.
    """
    logs = [read_validation_log(r) for r in runs]
    merged = ValidationLog(step=[], samples=[])
    offset_samples, offset_steps = 0, 0
    starts: list[tuple[int, str]] = []
    keys = sorted({k for lg in logs for k in lg if k not in ("step", "samples")})
    for i, lg in enumerate(logs):
        if i > 0:
            _, step = _init_checkpoint_step(lg.run)
            offset_samples += (step + 1) * logs[i - 1].batch
            offset_steps += step + 1
            # the earlier run's validations after the checkpoint are not part of the chain
            keep = [j for j, s in enumerate(merged["step"]) if s < offset_steps]
            for k in list(merged):
                merged[k] = [merged[k][j] for j in keep]
        starts.append((offset_samples, lg.run.name))
        for j, s in enumerate(lg["step"]):
            merged["step"].append(offset_steps + s)
            merged["samples"].append(offset_samples + lg["samples"][j])
            for k in keys:
                merged.setdefault(k, [math.nan] * (len(merged["step"]) - 1)).append(
                    lg[k][j] if k in lg else math.nan
                )
    merged.reference, merged.batch, merged.run = logs[0].reference, logs[0].batch, logs[0].run
    merged.starts = starts
    return merged


def plot_learning_curve(
    run: str | Path | list[str | Path],
    out: str | Path,
    title: str | None = None,
    targets: dict[str, float] | None = None,
    zoom: bool = False,
) -> Path:
    """Draw MPJPE, PA-MPJPE, PVE-T and PVE-T-SC (mm) against samples seen, the mean body dashed (a metric
    the run did not log gets no panel). In a chain of runs, a grey line marks where each later run
    begins, named in the first panel.

    Args:
        run: the ``dsrbody train`` output folder, or a list of them where each later run continues the
            one before from a checkpoint (:func:`read_continued_log`).
        out: the picture to write (``.png``).
        title: the figure title (default: the run folder's name).
        targets: optional ``{metric: mm}`` drawn as dotted lines (e.g. the model card's targets).
        zoom: fit each panel's axis to its validation values and target rather than to zero and the
            mean body; a mean body off the axis is given in the panel's title instead.

    Returns:
        ``out``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = run if isinstance(run, (list, tuple)) else [run]
    log = read_continued_log(list(runs)) if len(runs) > 1 else read_validation_log(runs[0])
    panels = [(k, label) for k, label in CURVE_METRICS if k in log or k in log.reference]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.4), squeeze=False)
    axes = axes[0]
    x = [s / 1000.0 for s in log["samples"]]
    for ax, (key, label) in zip(axes, panels):
        panel_title = f"{label} (mm)"
        vals = [v for v in log.get(key, []) if math.isfinite(v)]
        if targets and key in targets:
            vals.append(targets[key])
        if zoom and vals:
            pad = 0.1 * (max(vals) - min(vals)) + 0.01 * max(abs(v) for v in vals)
            lo, hi = min(vals) - pad, max(vals) + pad
        if key in log:
            ax.plot(x, log[key], marker="o", ms=3, color="tab:blue", label="validation")
        if key in log.reference:
            ref = log.reference[key]
            if zoom and vals and not lo <= ref <= hi:
                panel_title = f"{label} (mm; mean body {ref:.1f})"
            else:
                ax.axhline(ref, ls="--", color="tab:red", label="mean body")
        if targets and key in targets:
            ax.axhline(targets[key], ls=":", color="tab:green", label="target")
        for k, (start, name) in enumerate(log.starts[1:]):
            ax.axvline(start / 1000.0, color="0.6", lw=0.8)
            if ax is axes[0]:
                ax.annotate(
                    name,
                    (start / 1000.0, 1.0),
                    xycoords=("data", "axes fraction"),
                    xytext=(2, -4 - 9 * (k % 2)),
                    textcoords="offset points",
                    fontsize=6,
                    color="0.4",
                    va="top",
                )
        ax.set_title(panel_title)
        ax.set_xlabel("training samples seen (thousands)")
        ax.grid(alpha=0.3)
        if zoom and vals:
            ax.set_ylim(lo, hi)
        else:
            ax.set_ylim(bottom=0)
    axes[0].legend(loc="lower left" if zoom else "upper right", fontsize=8)
    fig.suptitle(title or " + ".join(Path(r).name for r in runs))
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
