"""The LightningDataModule of a recipe and the callback that keeps the data honest.

:class:`DSRDataModule` builds the training mix (:class:`~dsrbody.data.MixedDataset`) and the
validation set (:class:`~dsrbody.data.EvalConcatDataset`) with :func:`~dsrbody.data.collate_samples`
(unreadable samples are dropped from their batch and listed). :class:`DataHealth` sets the data's
epoch (augmentation draws, dataset choice), feeds each batch's skipped samples into the datasets'
:class:`~dsrbody.data.SkipLog`, and at every epoch end prints the summary, logs the counts
(``data/skipped``, ``data/no_parsing``, ``data/no_params``) and resets the log.
"""

from __future__ import annotations

import logging
from typing import Any

import lightning as L
from torch.utils.data import DataLoader

from dsrbody.data import SkipLog, collate_samples
from dsrbody.data.spin_npz import PARSING_REASONS
from dsrbody.train.build import build_eval_set, build_train_set

__all__ = ["DSRDataModule", "DataHealth"]

_log = logging.getLogger(__name__)


class DSRDataModule(L.LightningDataModule):
    """Training and validation data of a recipe (``cfg.data``)."""

    def __init__(self, cfg) -> None:
        super().__init__()
        self.cfg = cfg
        self.train_set = None
        self.val_set = None

    def prepare_data(self) -> None:
        """Build the feature caches of the backbone's frozen part (``model.feature_cache``) before
        ``setup``: Lightning calls this in one process per machine, so DDP ranks never write the same
        cache file at once; ``setup`` then finds them complete and only attaches them."""
        if bool(self.cfg.model.get("feature_cache", False)):
            build_train_set(self.cfg)
            build_eval_set(self.cfg, "val")

    def setup(self, stage: str | None = None) -> None:
        if stage in (None, "fit") and self.train_set is None:
            self.train_set = build_train_set(self.cfg)
        if stage in (None, "fit", "validate") and self.val_set is None:
            self.val_set = build_eval_set(self.cfg, "val")

    def _loader(self, dataset, batch_size: int, shuffle: bool, drop_last: bool) -> DataLoader:
        nw = int(self.cfg.data.num_workers)
        return DataLoader(
            dataset,
            batch_size=batch_size,
            shuffle=shuffle,
            num_workers=nw,
            collate_fn=collate_samples,
            drop_last=drop_last,
            persistent_workers=nw > 0,
        )

    def train_dataloader(self) -> DataLoader:
        bs = int(self.cfg.data.batch_size)
        # BatchNorm cannot train on a last batch of one sample: drop the incomplete batch when possible
        return self._loader(self.train_set, bs, shuffle=True, drop_last=len(self.train_set) >= bs)

    def val_dataloader(self) -> DataLoader | list:
        if self.val_set is None:
            return []
        return self._loader(self.val_set, int(self.cfg.data.val_batch_size), shuffle=False, drop_last=False)


class DataHealth(L.Callback):
    """Epoch setting and skip accounting for the datasets of a :class:`DSRDataModule`.

    Attributes:
        run_log: the training samples skipped (or without parsing map) over the whole run, every epoch's
            log merged into it (a sample counts once per reason however many epochs skip it).
    """

    def __init__(self) -> None:
        self.run_log = SkipLog()

    def _sets(self, trainer: L.Trainer) -> tuple[Any, Any]:
        dm = trainer.datamodule
        return getattr(dm, "train_set", None), getattr(dm, "val_set", None)

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        train, _ = self._sets(trainer)
        if train is not None:
            train.set_epoch(trainer.current_epoch)
            train.skipped.reset()

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        train, _ = self._sets(trainer)
        if train is not None:
            train.skipped.update(batch)

    def on_validation_epoch_start(self, trainer, pl_module) -> None:
        _, val = self._sets(trainer)
        if val is not None:
            val.skipped.reset()

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0) -> None:
        _, val = self._sets(trainer)
        if val is not None:
            val.skipped.update(batch)

    def _report(self, pl_module: L.LightningModule, log, prefix: str, epoch: int) -> None:
        dropped = float(log.dropped)
        no_parsing = float(sum(log.count(r) for r in PARSING_REASONS))
        no_params = float(log.count("params_target_nonfinite"))
        pl_module.log(f"data/{prefix}_skipped", dropped, reduce_fx="sum", sync_dist=True, batch_size=1)
        pl_module.log(f"data/{prefix}_no_parsing", no_parsing, reduce_fx="sum", sync_dist=True, batch_size=1)
        pl_module.log(f"data/{prefix}_no_params", no_params, reduce_fx="sum", sync_dist=True, batch_size=1)
        if pl_module.global_rank == 0:  # samples dropped are worth a warning; the rest is for -v
            _log.log(logging.WARNING if dropped else logging.INFO, f"epoch {epoch} {prefix} " + log.summary())

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        train, _ = self._sets(trainer)
        if train is not None:
            self.run_log.merge(train.skipped)
            self._report(pl_module, train.skipped, "train", trainer.current_epoch)

    def on_train_end(self, trainer, pl_module) -> None:
        train, _ = self._sets(trainer)
        if train is not None:  # a run stopped inside an epoch (max_steps)
            self.run_log.merge(train.skipped)

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        _, val = self._sets(trainer)
        if val is not None and not trainer.sanity_checking:
            self._report(pl_module, val.skipped, "val", trainer.current_epoch)
