"""Run a recipe: :func:`run_training` (``dsrbody train``), usable from scripts.

Output folder layout::

    OUT/config.yaml              the resolved recipe of the run
    OUT/checkpoints/last.ckpt    the latest state (resume from it with resume=True / --resume)
    OUT/checkpoints/best.ckpt    the best validation score 1.5 PA-MPJPE + MPJPE (when there is validation;
                                 weights and self-description only, no optimiser state)
    OUT/tensorboard/version_N/   TensorBoard scalars and pictures
    OUT/csv/version_N/metrics.csv
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from dsrbody.train.config import ConfigError, to_container

__all__ = ["run_training", "output_dir", "build_trainer", "TrainResult", "Throughput"]


class TrainResult(str):
    """The path of the checkpoint to use (best if validated, else last), as a ``str`` with extras:
    ``.last``, ``.best`` (or None), ``.out_dir``, ``.global_step``, ``.epoch``, ``.metrics``,
    ``.skipped_steps`` (reason -> optimiser steps skipped in this run, :data:`STEP_SKIP_REASONS
    <dsrbody.train.module.STEP_SKIP_REASONS>`), ``.skipped_samples`` (reason -> distinct training
    samples left out, :data:`~dsrbody.data.spin_npz.DROP_REASONS`) and ``.partial_samples`` (reason ->
    samples trained with a target left out: no parsing map, or non-finite pose/shape in the file);
    :meth:`skip_summary` says it in words."""

    last: Path
    best: Path | None
    out_dir: Path
    global_step: int
    epoch: int
    metrics: dict[str, float]
    skipped_steps: dict[str, int]
    skipped_samples: dict[str, int]
    partial_samples: dict[str, int]

    def skip_summary(self) -> str:
        """The skipped steps and the left-out samples of the run, with their reasons (two lines; a third
        for samples trained with a target left out)."""
        from dsrbody.data import SkipLog
        from dsrbody.train.module import STEP_SKIP_REASONS

        def reasons(counts: dict[str, int], text) -> str:
            return ", ".join(f"{k} x {text(r)}" for r, k in counts.items())

        steps, samples = sum(self.skipped_steps.values()), sum(self.skipped_samples.values())
        lines = [
            f"skipped {steps} step(s)"
            + (f": {reasons(self.skipped_steps, lambda r: STEP_SKIP_REASONS.get(r, r))}" if steps else ""),
            f"skipped {samples} training sample(s)"
            + (f": {reasons(self.skipped_samples, SkipLog.reason_text)}" if samples else ""),
        ]
        if self.partial_samples:
            lines.append(
                f"trained with a target left out: {reasons(self.partial_samples, SkipLog.reason_text)}"
            )
        return "\n".join(lines)


def output_dir(cfg: DictConfig, out: str | os.PathLike | None = None) -> Path:
    """``out``, else ``cfg.out_dir``, else ``outputs/train/<cfg.name>``."""
    if out is not None:
        return Path(out)
    if cfg.out_dir:
        return Path(str(cfg.out_dir))
    return Path("outputs") / "train" / str(cfg.name)


def check_param_groups(path: Path, module: Any) -> None:
    """Refuse to resume a checkpoint whose optimiser has another number of parameter groups than the
    recipe gives (``optim.backbone_lr_ratio``: 1 gives one group, any other value two), with a one-line
    error instead of the optimiser's own. ``module``: the :class:`~dsrbody.train.module.DSRModule`.

    Raises:
        ConfigError: the counts differ.
    """
    import torch

    saved = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    states = saved.get("optimizer_states") or []
    if not states:
        return
    have = len(states[0].get("param_groups", []))
    opt = module.configure_optimizers()
    want = len((opt["optimizer"] if isinstance(opt, dict) else opt).param_groups)
    if have != want:
        raise ConfigError(
            f"{path}: its optimiser has {have} parameter group(s), this recipe gives {want} "
            f"(optim.backbone_lr_ratio={module.cfg.optim.get('backbone_lr_ratio', 1.0)}: 1 gives one group, "
            "other values two); resume with the value the run started with"
        )


def _devices(value: Any) -> Any:
    s = str(value)
    return int(s) if s.isdigit() else s


class Throughput:
    """Lightning callback: training images per second (wall clock, whole loop: data, step, logging),
    logged as ``train/images_per_s`` every ``logging.every_n_steps`` steps (the first window, which
    includes start-up, is skipped)."""

    def __new__(cls, every: int):
        import lightning as L

        class _Throughput(L.Callback):
            def __init__(self, every: int) -> None:
                self.every, self.t0, self.n = max(int(every), 1), None, 0

            def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
                now = time.perf_counter()
                self.n += int(batch["num_valid"]) * trainer.world_size
                if self.t0 is None:
                    self.t0, self.n = now, 0
                elif trainer.global_step % self.every == 0 and now > self.t0:
                    pl_module.log("train/images_per_s", self.n / (now - self.t0), on_step=True, batch_size=1)
                    self.t0, self.n = now, 0

            def on_validation_start(self, trainer, pl_module) -> None:
                self.t0 = None  # validation time is not training throughput

        return _Throughput(every)


def build_trainer(cfg: DictConfig, out: Path, callbacks: Sequence[Any] = (), has_val: bool = True):
    """The Lightning ``Trainer`` of ``cfg.trainer`` writing to ``out`` (checkpoint callbacks included)."""
    import lightning as L
    from lightning.pytorch.callbacks import ModelCheckpoint
    from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

    from dsrbody.train.datamodule import DataHealth

    t = cfg.trainer
    ckpt_dir = out / "checkpoints"
    every = int(t.checkpoint_every_n_steps)
    last_cb = ModelCheckpoint(
        dirpath=ckpt_dir,
        filename="last-unused",
        save_top_k=0,
        save_last=True,
        every_n_train_steps=every if every > 0 else None,
    )
    cbs: list[Any] = [last_cb, DataHealth(), Throughput(int(cfg.logging.every_n_steps))]
    if has_val:
        cbs.append(
            ModelCheckpoint(
                dirpath=ckpt_dir,
                filename="best",
                save_weights_only=True,  # best.ckpt is for evaluation and export: no optimiser state
                monitor="val/score",
                mode="min",
                save_top_k=1,
                save_last=False,
                auto_insert_metric_name=False,
                enable_version_counter=False,
            )
        )
    cbs.extend(callbacks)
    limit_train = float(t.limit_train_batches)
    limit_val = float(t.limit_val_batches)
    return L.Trainer(
        default_root_dir=str(out),
        max_epochs=int(t.max_epochs),
        max_steps=int(t.max_steps),
        accelerator=str(t.accelerator),
        devices=_devices(t.devices),
        strategy=str(t.strategy),
        num_nodes=int(t.num_nodes),
        precision=str(t.precision),
        limit_train_batches=int(limit_train) if limit_train > 1 else limit_train,
        limit_val_batches=(int(limit_val) if limit_val > 1 else limit_val) if has_val else 0,
        check_val_every_n_epoch=None if int(t.val_every_n_steps) > 0 else int(t.val_every_n_epochs),
        val_check_interval=int(t.val_every_n_steps) if int(t.val_every_n_steps) > 0 else None,
        gradient_clip_val=t.gradient_clip_val,
        log_every_n_steps=int(cfg.logging.every_n_steps),
        enable_progress_bar=bool(t.progress_bar),
        enable_model_summary=False,
        deterministic=bool(t.deterministic),
        num_sanity_val_steps=0,
        logger=[
            TensorBoardLogger(save_dir=str(out), name="tensorboard", default_hp_metric=False),
            CSVLogger(save_dir=str(out), name="csv"),
        ],
        callbacks=cbs,
    )


class _NoAdverts(logging.Filter):
    """Drops Lightning's "Tip: try installing litlogger/litmodels" records."""

    def filter(self, record: logging.LogRecord) -> bool:
        msg = str(record.getMessage())
        return not ("Tip:" in msg or "litlogger" in msg or "litmodels" in msg)


def quiet_lightning() -> None:
    """Keep Lightning's console to what matters: its loggers at the level of dsrbody's (warnings unless
    ``dsrbody -v``; "GPU available", the model summary and such are informational), its advertising
    tips never, and torch's ``_pytree`` deprecation warnings that Lightning's own code triggers (not
    ours to fix) silenced."""
    import warnings

    level = max(logging.getLogger("dsrbody").getEffectiveLevel(), logging.DEBUG)
    for name in (
        "lightning",
        "lightning.pytorch",
        "lightning.fabric",
        "pytorch_lightning",
        "lightning_fabric",
    ):
        logger = logging.getLogger(name)
        logger.setLevel(level)
        if not any(isinstance(f, _NoAdverts) for f in logger.filters):
            logger.addFilter(_NoAdverts())
        for handler in logger.handlers:
            if not any(isinstance(f, _NoAdverts) for f in handler.filters):
                handler.addFilter(_NoAdverts())
    warnings.filterwarnings("ignore", category=FutureWarning, message=r".*(_pytree|LeafSpec|treespec)")


def run_training(
    cfg: DictConfig,
    out_dir: str | os.PathLike | None = None,
    resume: bool = False,
    callbacks: Sequence[Any] = (),
) -> TrainResult:
    """Train a recipe.

    Args:
        cfg: the recipe (:func:`~dsrbody.train.config.load_config`; overrides already applied).
        out_dir: output folder (default: :func:`output_dir`).
        resume: continue from ``OUT/checkpoints/last.ckpt`` (epoch, step, optimiser, best score).
        callbacks: extra Lightning callbacks.

    Returns:
        :class:`TrainResult`: the best checkpoint's path (last when there is no validation).

    Raises:
        FileNotFoundError: resume without a last checkpoint; a dataset path that does not exist.
        ValueError: a checkpoint of another body model/backbone; bad settings.
    """
    import warnings

    import lightning as L

    from dsrbody.models.loader import check_checkpoint, read_checkpoint_meta
    from dsrbody.train.datamodule import DSRDataModule
    from dsrbody.train.module import DSRModule

    out = output_dir(cfg, out_dir)
    started = time.time()
    ckpt_path = None
    last = out / "checkpoints" / "last.ckpt"
    if resume:
        if not last.is_file():
            raise FileNotFoundError(f"{last}: no checkpoint to resume from (train without --resume first)")
        check_checkpoint(read_checkpoint_meta(last), cfg, last)
        ckpt_path = str(last)
    # Under DDP the epoch values of train/* are rank 0's: which terms a batch has depends on its samples,
    # and synchronising a key that only some ranks log would dead-lock. Validation metrics are gathered.
    warnings.filterwarnings("ignore", message=r".*when logging on epoch level in distributed setting.*")
    quiet_lightning()
    L.seed_everything(int(cfg.seed), workers=True, verbose=False)
    dm = DSRDataModule(cfg)
    dm.setup("fit")  # fail early, with the dataset's message, before any process is started
    out.mkdir(parents=True, exist_ok=True)
    module = DSRModule(to_container(cfg))
    if ckpt_path is not None:
        check_param_groups(last, module)
    trainer = build_trainer(cfg, out, callbacks, has_val=dm.val_set is not None)
    if trainer.global_rank == 0:
        OmegaConf.save(cfg, out / "config.yaml", resolve=True)
    # resuming reads the checkpoint with the safe weights_only loader (no code from the file runs); the
    # metadata was read so above. Lightning < 2.5 has no such argument: torch >= 2.6 then defaults to it.
    import inspect

    safe = {"weights_only": True} if "weights_only" in inspect.signature(trainer.fit).parameters else {}
    trainer.fit(module, datamodule=dm, ckpt_path=ckpt_path, **safe)
    if trainer.interrupted:
        raise KeyboardInterrupt("training interrupted")
    trainer.save_checkpoint(str(last))  # the final state, whatever the step-wise saving schedule
    best = out / "checkpoints" / "best.ckpt"
    # a best.ckpt left by an earlier run in the same folder does not count (unless this run resumed it)
    has_best = best.is_file() and (resume or best.stat().st_mtime >= started - 1.0)
    res = TrainResult(str(best if has_best else last))
    res.last, res.best, res.out_dir = last, (best if has_best else None), out
    res.global_step, res.epoch = int(trainer.global_step), int(trainer.current_epoch)
    res.metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1}
    from dsrbody.data.spin_npz import DROP_REASONS
    from dsrbody.train.datamodule import DataHealth

    res.skipped_steps = dict(module.step_skips)
    health = next((c for c in trainer.callbacks if isinstance(c, DataHealth)), None)
    counts = health.run_log.reasons() if health is not None else {}
    res.skipped_samples = {r: k for r, k in counts.items() if r in DROP_REASONS}
    res.partial_samples = {r: k for r, k in counts.items() if r not in DROP_REASONS}
    return res
